"""Storage: what a replica keeps across crashes (layer 1 adapters).

``base`` is the interface the runtime sees (``Storage``, ``DurableState``,
``Snapshot``) and imports no implementation; ``memory``, ``log`` (the durable
default) and ``sqlite`` implement it; ``default`` picks the store that
``data_dir=`` means; ``encoding`` is the on-disk layout of a slot's value.
docs/storage.md states the guarantees.
"""
