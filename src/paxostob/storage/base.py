"""The ``Storage`` protocol: what a replica keeps across crashes, and the guarantees.

Theory of operation: a Paxos acceptor may answer a peer only with what it has
written down first. The core hands the runtime one ``Ready`` at a time; the
runtime calls ``save(ready)`` *before* sending ``ready.messages``
(docs/design.md, 'The Ready contract'), so a promise or an accepted value
that left the node is never forgotten by a crash. ``open`` gives back everything saved, as a
``DurableState``, when the node starts again.

The durable state of one replica:

- ``promised``: the highest ballot it promised (``ZERO_BALLOT`` when none);
- ``accepted``: per slot, the latest ``AcceptedEntry`` (ballot and value);
- ``decided``: the chosen value of each slot the node has learned;
- ``snapshot``: the state of everything through ``snapshot.slot``, which
  replaces the accepted and decided entries of those slots (compaction);
- ``incarnation``: this open's number, one more than the last open's. A
  new store starts from a random number (``random_incarnation``), so two
  lives of one node id never share an incarnation, even when the first
  life's disk was wiped and a store was made again: the runtime numbers its
  proposals by incarnation, and a reused number would make peers take new
  proposals for old ones.
- ``members``: the membership the store was made for (``open``'s
  ``bootstrap``), sorted; ``()`` for a store made before stores recorded it;
- ``created``: whether this open made the store.

A store is made once, when its cluster is made (``bootstrap``). Opening a
store that is not there is refused (``StoreMissingError``): a node whose
directory was wiped or lost has forgotten what it promised and accepted, and
a member that votes with lost state can let two different values be chosen.

Guarantees every implementation gives (and ``tests/storage/conformance.py``
checks):

1. ``save`` is atomic: after a crash the store holds all of a ``Ready``'s
   durable part or none of it, never a piece.
2. Saves are ordered: after a crash the store holds the saves up to some
   point, never a later save without an earlier one.
3. When ``save(ready)`` returns and ``ready.must_sync`` is set, that save and
   every save before it survive a crash of the process *and* a power loss
   (one fsync per ``Ready``, however many entries: group commit). Without
   ``must_sync`` a save survives a crash of the process but may be lost with
   the power until a later synced save, ``install_snapshot`` or ``close``.
4. ``install_snapshot`` and ``open`` are durable before they return.
5. ``open`` refuses a store that belongs to another cluster or node, a store
   that is damaged, and a store that is missing unless ``bootstrap`` is
   given, rather than starting from a partial or empty state: a node that
   forgot a promise could let two different values be chosen.
6. Every failure is a ``StorageError`` naming the store and what is wrong
   (``ConfigurationError`` for an empty id). After a ``StorageError`` from
   ``save`` or ``install_snapshot`` the store is closed: what reached the disk
   is unknown, so the node must stop; a later ``open`` recovers the last
   durable state.

Use: the runtime calls these methods from one worker thread at a time (the
calls may come from different threads, never concurrently). A store is opened
once, used, and closed; ``close`` is idempotent and an open after a close
works.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..core.events import AcceptedEntry, Ready
from ..core.types import Ballot, DecidedEntry, Snapshot
from ..errors import StoreMissingError

__all__ = [
    "INCARNATION_BASE_MAX",
    "INCARNATION_BASE_MIN",
    "DurableState",
    "Snapshot",
    "Storage",
    "StoreMissingError",
    "has_durable_part",
    "missing_store_message",
    "random_incarnation",
]

#: A new store's first incarnation is drawn from this range. Above every
#: count of opens a store made before incarnations were drawn could have
#: reached, and far enough below 2**32 (the core's limit) for 2**31 more
#: opens. Two stores of one node id then share an incarnation with a chance
#: of about (opens of both) / 2**31: one in a million for lives of a
#: thousand restarts each.
INCARNATION_BASE_MIN = 1 << 20
INCARNATION_BASE_MAX = 1 << 31


def random_incarnation() -> int:
    """A new store's first incarnation: random, so a remade store never repeats an old life."""
    return INCARNATION_BASE_MIN + secrets.randbelow(INCARNATION_BASE_MAX - INCARNATION_BASE_MIN)


def missing_store_message(where: object, node_id: str) -> str:
    """What ``StoreMissingError`` says: what happened, and what the operator can do."""
    return (
        f"{where}: node {node_id!r} has no store here (the data directory is empty or "
        "missing). If this node was a member of its cluster, its promises and votes are "
        "lost, and a member that votes without them can lose acknowledged writes: bring back "
        "this node's own latest directory (its disk; never an older copy or a backup, whose "
        "votes are stale), or replace the node under a new id: remove this one and add a "
        "learner that joins empty (paxostob member replace OLD_ID NEW_ID HOST:PORT, then "
        "paxostob serve --id NEW_ID --join A_MEMBER_HOST:CLIENT_PORT; docs/operations.md, "
        "'Membership change'). "
        "If this is the first start of a new cluster, start every founding member once "
        "with --bootstrap (library: bootstrap=True)."
    )


@dataclass(frozen=True, slots=True)
class DurableState:
    """What ``Storage.open`` returns: everything the replica saved.

    Invariants: ``accepted`` and ``decided`` are sorted by slot, one entry per
    slot, and hold only slots above ``snapshot.slot`` (all slots when
    ``snapshot`` is None); ``incarnation >= 1``.
    """

    promised: Ballot
    accepted: tuple[AcceptedEntry, ...]
    decided: tuple[DecidedEntry, ...]
    snapshot: Snapshot | None
    incarnation: int
    members: tuple[str, ...] = ()
    #: True when this ``open`` made the store (``bootstrap`` on a missing one).
    created: bool = False


def has_durable_part(ready: Ready) -> bool:
    """True when ``ready`` carries something to persist (a promise, accepts, decisions)."""
    return ready.promised is not None or bool(ready.accepted) or bool(ready.decided)


@runtime_checkable
class Storage(Protocol):
    """The durable state of one replica; see the module docstring for the guarantees."""

    def open(
        self, cluster_id: str, node_id: str, *, bootstrap: Sequence[str] | None = None
    ) -> DurableState:
        """Load the store and bump its incarnation.

        A store that is not there is made only when ``bootstrap`` gives the
        founding membership (recorded in it, ``DurableState.members``), with
        a random first incarnation; without it, ``StoreMissingError``. An
        existing store ignores ``bootstrap``.
        Raises ``StorageError`` when the store was made for another
        ``cluster_id`` or ``node_id`` (the message names both pairs), is
        damaged or unreadable, is already open, or is in use by another
        process. Never returns a partial state.
        """
        ...

    def save(self, ready: Ready) -> None:
        """Persist ``ready``'s promise, accepted and decided entries in one transaction.

        ``ready.promised`` (if not None) replaces the stored promise; an
        accepted entry replaces the slot's previous one; a decided entry is
        added. Entries at or below the snapshot's slot are already covered by
        the snapshot and are skipped. If ``ready.must_sync``, the transaction
        is durable (one fsync) before this returns. A ``Ready`` with no
        durable part (``has_durable_part``) is ignored at once.
        Messages, deliveries and drops are not storage's business.
        """
        ...

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """Store ``snapshot`` and drop accepted and decided entries at or below its slot.

        Atomic and durable before it returns. A snapshot older than the stored
        one (a smaller slot) is ignored: snapshots only move forward.
        """
        ...

    @property
    def sync_count(self) -> int:
        """How many durable commits (fsyncs) this object has made; for benchmarks and tests."""
        ...

    def close(self) -> None:
        """Release the store (making pending unsynced saves durable); idempotent."""
        ...
