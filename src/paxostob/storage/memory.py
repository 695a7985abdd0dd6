"""``MemoryStorage``: the ``Storage`` protocol in memory, with power loss on demand.

Theory of operation: the store keeps a *synced* image (what the disk would
hold after a power loss) and the list of saves made since the last sync
(the unsynced ones, in order). A synced save, ``install_snapshot``, ``open``
and ``close`` fold the pending saves into the image, as one fsync of a
write-ahead log makes every earlier record durable too. ``crash()`` models a
power loss: the pending saves are dropped (or only a prefix of them is kept:
a log loses its tail, never a middle) and the store is closed, ready to be
opened again like a restarted node's disk.

It is pure Python with no clock, threads or IO, so the deterministic
simulator can use it; it never copies values (they are immutable).

Rules (beyond storage/base.py): pending saves are invisible until the next
``open``, which only happens on a closed store, so nothing ever reads them
before they are folded in or dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..core.events import AcceptedEntry, Ready
from ..core.types import ZERO_BALLOT, Ballot, DecidedEntry
from ..errors import ConfigurationError, StorageError, StoreMissingError
from .base import (
    DurableState,
    Snapshot,
    has_durable_part,
    missing_store_message,
    random_incarnation,
)

__all__ = ["MemoryStorage"]


@dataclass(slots=True)
class _Image:
    """The store's content; ``accepted``/``decided`` hold only slots above the snapshot."""

    ids: tuple[str, str] | None = None  # (cluster_id, node_id), set when the store is made
    members: tuple[str, ...] = ()
    incarnation: int = 0
    promised: Ballot = ZERO_BALLOT
    accepted: dict[int, AcceptedEntry] = field(default_factory=dict)
    decided: dict[int, DecidedEntry] = field(default_factory=dict)
    snapshot: Snapshot | None = None

    @property
    def snapshot_slot(self) -> int:
        return -1 if self.snapshot is None else self.snapshot.slot

    def apply(self, ready: Ready) -> None:
        if ready.promised is not None:
            self.promised = ready.promised
        floor = self.snapshot_slot
        for a in ready.accepted:
            if a.slot > floor:
                self.accepted[a.slot] = a
        for d in ready.decided:
            if d.slot > floor:
                self.decided[d.slot] = d

    def state(self) -> DurableState:
        return DurableState(
            promised=self.promised,
            accepted=tuple(self.accepted[s] for s in sorted(self.accepted)),
            decided=tuple(self.decided[s] for s in sorted(self.decided)),
            snapshot=self.snapshot,
            incarnation=self.incarnation,
            members=self.members,
        )


class MemoryStorage:
    """A ``Storage`` in memory whose ``crash()`` loses what was not synced.

    ``incarnation_base``: the first incarnation when the store is made
    (default: ``random_incarnation()``); a simulator passes one drawn from
    its seed so that its runs replay exactly. ``wipe()`` models a lost disk.
    """

    def __init__(self, *, incarnation_base: int | None = None) -> None:
        if incarnation_base is not None and incarnation_base < 1:
            raise ConfigurationError("incarnation_base must be >= 1")
        self._incarnation_base = incarnation_base
        self._synced = _Image()
        self._pending: list[Ready] = []
        self._is_open = False
        self._sync_count = 0

    # ------------------------------------------------------------------ Storage

    def open(
        self, cluster_id: str, node_id: str, *, bootstrap: Sequence[str] | None = None
    ) -> DurableState:
        if not cluster_id or not node_id:
            raise ConfigurationError("cluster_id and node_id must be non-empty")
        if self._is_open:
            raise StorageError("memory store: already open (close it first)")
        image = self._synced
        if image.ids is None:
            if bootstrap is None:
                raise StoreMissingError(missing_store_message("memory store", node_id))
            image.ids = (cluster_id, node_id)
            image.members = tuple(sorted(set(bootstrap)))
            base = self._incarnation_base
            image.incarnation = (random_incarnation() if base is None else base) - 1
            created = True
        else:
            created = False
        if image.ids != (cluster_id, node_id):
            mine_cluster, mine_node = image.ids
            raise StorageError(
                f"memory store: belongs to cluster {mine_cluster!r} node {mine_node!r}, "
                f"not cluster {cluster_id!r} node {node_id!r}; refusing to open it"
            )
        image.incarnation += 1
        self._sync_count += 1
        self._is_open = True
        return replace(image.state(), created=created)

    def save(self, ready: Ready) -> None:
        self._check_open("save")
        if not has_durable_part(ready):
            return
        self._pending.append(ready)
        if ready.must_sync:
            self._sync()

    def install_snapshot(self, snapshot: Snapshot) -> None:
        self._check_open("install_snapshot")
        self._sync()  # folds the pending saves first: they come before the snapshot
        image = self._synced
        if snapshot.slot < image.snapshot_slot:
            return
        image.snapshot = snapshot
        image.accepted = {s: a for s, a in image.accepted.items() if s > snapshot.slot}
        image.decided = {s: d for s, d in image.decided.items() if s > snapshot.slot}

    @property
    def sync_count(self) -> int:
        return self._sync_count

    def close(self) -> None:
        if not self._is_open:
            return
        if self._pending:
            self._sync()
        self._is_open = False

    # ------------------------------------------------------------------ power loss

    @property
    def unsynced_saves(self) -> int:
        """Saves made since the last sync: what a ``crash()`` now would lose."""
        return len(self._pending)

    def crash(self, keep_unsynced_saves: int = 0) -> None:
        """Power loss: drop the unsynced saves (all but the first ``keep_unsynced_saves``).

        The store is closed afterwards; ``open`` returns the surviving state.
        Keeping a prefix models a disk that wrote part of the log's tail
        before the power went; a simulator can draw it from its seeded
        ``random.Random``.
        """
        if keep_unsynced_saves < 0:
            raise ConfigurationError("keep_unsynced_saves must be >= 0")
        for ready in self._pending[:keep_unsynced_saves]:
            self._synced.apply(ready)
        self._pending.clear()
        self._is_open = False

    def wipe(self) -> None:
        """A lost disk: everything is gone, as if the store had never been made.

        The store is closed; ``open`` then refuses it unless bootstrapping.
        """
        self._synced = _Image()
        self._pending.clear()
        self._is_open = False

    # ------------------------------------------------------------------ internals

    def _check_open(self, what: str) -> None:
        if not self._is_open:
            raise StorageError(f"memory store: {what} on a store that is not open")

    def _sync(self) -> None:
        for ready in self._pending:
            self._synced.apply(ready)
        self._pending.clear()
        self._sync_count += 1
