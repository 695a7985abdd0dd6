"""Transports: how envelopes travel between nodes (layer 1 adapters)."""
