"""The asyncio runtime (layer 2): drives the sans-IO core over a transport."""
