"""``StreamValue``: a Redis stream as the key space holds it.

Theory of operation: a stream is its live entries in ID order (an ID is a
``(ms, seq)`` pair of unsigned 64-bit integers), each entry's field-value
pairs, and the largest ID ever added (``last_id``: an ID once used is never
handed out again, even after its entry was deleted). Entries are appended
at the end only, so the IDs stay sorted and a range is a bisect and a slice.

Redis keeps a stream in nodes of at most ``stream-node-max-entries`` (100)
entries, and trimming with ``~`` removes whole nodes only, so how many
entries a ``~`` trim removes depends on where the node boundaries are. This
value keeps the same boundaries (``StreamNode``: each node's first and last
ID ever added, its slots used, its live entries), so ``XTRIM ... ~`` removes
exactly what Redis removes, on every replica, restored from a snapshot or
not. Redis also closes a node at ``stream-node-max-bytes`` (4096 bytes of
listpack); this one counts entries only (docs/commands.md).

Mutated only through ``Keyspace.writable`` (copy-on-write, like every
aggregate): ``clone`` copies the lists, and the nodes, which change in place.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

__all__ = ["NODE_ENTRIES_MAX", "StreamId", "StreamNode", "StreamValue"]

#: Redis' default ``stream-node-max-entries``: ``~`` trims whole nodes of this many.
NODE_ENTRIES_MAX = 100

StreamId = tuple[int, int]


class StreamNode:
    """A run of consecutive entries that ``~`` trimming keeps or removes together."""

    __slots__ = ("first", "last", "live", "slots")

    def __init__(self, first: StreamId, last: StreamId, slots: int, live: int) -> None:
        #: The IDs of the first and last entries ever added to the node (deleted or not).
        self.first = first
        self.last = last
        #: Entries ever added to the node, and those not deleted yet.
        self.slots = slots
        self.live = live

    def copy(self) -> StreamNode:
        return StreamNode(self.first, self.last, self.slots, self.live)


class StreamValue:
    """A stream: live entries by ID, the last ID added, and the node boundaries."""

    __slots__ = ("entries", "gen", "ids", "last_id", "nodes")

    def __init__(self, gen: int) -> None:
        self.gen = gen
        #: Live entry IDs, ascending.
        self.ids: list[StreamId] = []
        #: Each live entry's fields and values, alternating.
        self.entries: dict[StreamId, tuple[bytes, ...]] = {}
        self.last_id: StreamId = (0, 0)
        #: Nodes in ID order; a node whose every entry was deleted is removed.
        self.nodes: list[StreamNode] = []

    def __len__(self) -> int:
        return len(self.ids)

    def clone(self, gen: int) -> StreamValue:
        copy = StreamValue(gen)
        copy.ids = self.ids.copy()
        copy.entries = self.entries.copy()
        copy.last_id = self.last_id
        copy.nodes = [node.copy() for node in self.nodes]
        return copy

    def append(self, entry_id: StreamId, fields: tuple[bytes, ...]) -> None:
        """Add an entry with an ID above ``last_id`` (the caller checked it)."""
        assert entry_id > self.last_id
        self.ids.append(entry_id)
        self.entries[entry_id] = fields
        self.last_id = entry_id
        nodes = self.nodes
        if not nodes or nodes[-1].slots >= NODE_ENTRIES_MAX:
            nodes.append(StreamNode(entry_id, entry_id, 1, 1))
        else:
            node = nodes[-1]
            node.last = entry_id
            node.slots += 1
            node.live += 1

    def delete(self, entry_id: StreamId) -> bool:
        """Remove the entry ``entry_id``; whether it was there."""
        if self.entries.pop(entry_id, None) is None:
            return False
        ids = self.ids
        del ids[bisect_left(ids, entry_id)]
        nodes = self.nodes
        at = bisect_right([node.first for node in nodes], entry_id) - 1
        node = nodes[at]
        node.live -= 1
        if not node.live:
            del nodes[at]
        return True

    def range(self, start: StreamId, end: StreamId) -> tuple[int, int]:
        """The indexes of ``ids`` from ``start`` to ``end`` (both included)."""
        ids = self.ids
        low = bisect_left(ids, start)
        return low, max(low, bisect_right(ids, end))

    def trim(self, *, maxlen: int | None, minid: StreamId | None, approx: bool, limit: int) -> int:
        """Redis' ``streamTrim``: remove the oldest entries; how many were removed.

        By length (``maxlen``) or below an ID (``minid``). With ``approx``
        only whole nodes go; ``limit`` (0: none) caps the entries removed.
        """
        removed = 0
        nodes, ids = self.nodes, self.ids
        while nodes:
            if maxlen is not None and len(ids) <= maxlen:
                break
            node = nodes[0]
            if limit and removed + node.live > limit:
                break
            if maxlen is not None:
                whole = len(ids) - node.live >= maxlen
            else:
                assert minid is not None
                whole = node.last < minid
            if whole:
                self._drop_first(node.live)
                del nodes[0]
                removed += node.live
                continue
            if approx:
                break
            # Entries within the node, oldest first; the node stays (as in Redis,
            # even when MINID leaves it with no live entry: its last slot was deleted).
            count = 0
            while count < node.live:
                if maxlen is not None:
                    if len(ids) - count <= maxlen:
                        break
                elif ids[count] >= minid:  # type: ignore[operator]
                    break
                count += 1
            self._drop_first(count)
            node.live -= count
            removed += count
            break
        return removed

    def _drop_first(self, count: int) -> None:
        entries = self.entries
        for entry_id in self.ids[:count]:
            del entries[entry_id]
        del self.ids[:count]
