"""Events into the core, and the ``Ready`` batch of effects out of it.

The runtime handles a ``Ready`` in this order (docs/design.md, 'The Ready
contract'), then calls ``advance(ready)``:

1. send ``early`` at once: messages that depend on no state of this Ready
   (the core decides which, per message type: see ``outbox.EARLY``);
2. deliver ``deliveries`` (gap-free, in total order, each proposal once) and
   fail ``dropped`` proposals, in the order of the Readys;
3. persist ``promised``, ``accepted``, ``decided`` and ``snapshot`` (fsync if
   ``must_sync``), after every earlier Ready's durable part;
4. only once this Ready *and every earlier one* are durable, send
   ``messages`` — a promise or an accept acknowledgement that reached a peer
   before it reached the disk could be forgotten by a crash, and a restarted
   acceptor would contradict it — and step ``Persisted(ready.seq)``, which
   lets the core count its own votes of this Ready (a leader's own
   acceptance must be durable before a decision rests on it).

Steps 3 and 4 may overlap with later Readys: the runtime may step events
and take further Readys (sending their ``early`` messages and applying their
deliveries) while a save is in flight, and may persist several queued Readys
in one save (``coalesce``: one transaction, one fsync). A runtime without
storage does step 3 as a no-op: it sends ``messages`` and steps ``Persisted``
right away. Deliveries need not wait for the decided entries behind them to
be durable: a decided value can always be learned again from peers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .membership import Configuration
from .messages import Envelope
from .types import Ballot, Batch, DecidedEntry, Delivery, ProposalId, Snapshot

__all__ = [
    "AcceptedEntry",
    "Campaign",
    "ChangeOutcome",
    "Compact",
    "Delivered",
    "Dropped",
    "Event",
    "MarkSnapshotPoint",
    "Persisted",
    "Propose",
    "ProposeChange",
    "ReadIndex",
    "Ready",
    "Receive",
    "Restore",
    "Tick",
    "coalesce",
]


@dataclass(frozen=True, slots=True)
class Tick:
    """One unit of logical time passed (the runtime maps it to ``tick_interval_s``).

    A runtime that keeps the log's clock (``multipaxos``: clock stamps) also
    reads its clocks for each tick: ``clock_ms`` is its wall clock (Unix
    ms), ``elapsed_ms`` the time its monotonic clock says passed since its
    previous ``Tick`` (0 for the first). Without ``clock_ms`` the replica
    keeps no clock and stamps nothing.
    """

    clock_ms: int | None = None
    elapsed_ms: int = 0


@dataclass(frozen=True, slots=True)
class Receive:
    """A message arrived. ``elapsed_ms``: as ``ReadIndex.elapsed_ms``, read after it arrived.

    A leader with a lease grants a follower's ``ReadIndexAsk`` with no round
    when this fresh reading shows its lease still holds; without it the ask
    joins the next round.
    """

    envelope: Envelope
    elapsed_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Propose:
    """Propose ``payload``; the core names it ``ProposalId(node_id, next seq)``."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class ReadIndex:
    """A linearizable read named ``request_id`` (the runtime's own number) wants its index.

    The replica reports it in ``Ready.reads`` once a read of the
    application's state, right after that Ready's deliveries are applied,
    sees every value chosen before this event (core/reads.py); or in
    ``Ready.reads_failed`` when it could not within ``read_timeout_ticks``.

    ``elapsed_ms``: the monotonic ms since the last ``Tick``'s reading,
    read after the read was asked. A leader with a lease (``LogConfig.leases``)
    serves the read at once, with no round, when this fresh reading shows
    its lease still holds; without it the read takes a round.
    """

    request_id: int
    elapsed_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Campaign:
    """Start phase 1 now instead of waiting for the election timeout."""


@dataclass(frozen=True, slots=True)
class Persisted:
    """Every ``Ready`` up to and including ``Ready.seq == seq`` is durable.

    Stepped by the runtime after the save of that Ready (and of every
    earlier one) returned; only for Readys with ``seq > 0``.
    """

    seq: int


@dataclass(frozen=True, slots=True)
class AcceptedEntry:
    """The acceptor accepted ``value`` for ``slot`` in ``ballot`` (durable state)."""

    slot: int
    ballot: Ballot
    value: Batch


@dataclass(frozen=True, slots=True)
class Restore:
    """Rebuild the durable state of a restarted replica: its first event, or none.

    ``incarnation`` must grow with every restart (storage counts opens):
    proposal seqs of this life start above every earlier life's. The
    acceptor gets back its promise and accepted proposals, so it never
    contradicts what it told peers before the crash; the decided log (after
    ``snapshot``, if any) is delivered again from its first slot, in the
    same positions as before, so an in-memory application rebuilds its
    state by replay.
    """

    promised: Ballot
    accepted: Sequence[AcceptedEntry]
    decided: Sequence[DecidedEntry]
    incarnation: int
    snapshot: Snapshot | None = None


@dataclass(frozen=True, slots=True)
class MarkSnapshotPoint:
    """The application copied its state, having applied every delivery handed out so far.

    The replica records what a later ``Compact(data, slot=decided_through)``
    needs of the log at this point (positions, the ids delivered), so
    deliveries after it do not leak into the snapshot. Only the latest
    point is kept; the slot it marks is the replica's ``decided_through``.
    """


@dataclass(frozen=True, slots=True)
class Compact:
    """Snapshot the application's state ``data`` and drop the log through its slot.

    Without ``slot``: ``data`` reflects every delivery handed out so far
    (the log through ``decided_through``). With ``slot``: ``data`` is the
    state at the latest ``MarkSnapshotPoint`` (or at ``decided_through``);
    a stale point (a snapshot from a peer overtook it, check
    ``compacted_through``) makes ``step`` raise ``ValueError``. The next
    ``Ready`` carries the snapshot for storage.
    """

    data: bytes
    slot: int | None = None


@dataclass(frozen=True, slots=True)
class ProposeChange:
    """Change the membership (``op``: ``add`` a learner, ``promote`` it, ``remove``).

    Only the leader proposes a change (elsewhere it is refused at once,
    naming the leader). ``request`` is the runtime's number for it: the
    ``ChangeOutcome`` carrying it says when the change took effect here, or
    why it was refused. ``address`` (for ``add``) is opaque to the core.
    """

    op: str
    node_id: str
    request: int
    address: str = ""


Event = (
    Tick
    | Receive
    | Propose
    | Campaign
    | Persisted
    | Restore
    | MarkSnapshotPoint
    | Compact
    | ProposeChange
    | ReadIndex
)


class Delivered(NamedTuple):
    """A delivery and the proposal it came from (the runtime resolves waiters by ``id``).

    A named tuple: one is made per message per replica, and a tuple is made
    at a fraction of a frozen dataclass's cost.
    """

    id: ProposalId
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class Dropped:
    """A proposal this node will not see delivered: refused, or delivered unseen.

    ``delivered``: it *was* delivered, inside a snapshot installed from a
    peer, so its position is unknown here (do not propose it again).
    ``conflict``: its id was already taken by another proposal (an earlier
    life of this node used the same incarnation), so peers will never
    deliver it; the delivery carrying that id, if any, is not this one.
    """

    id: ProposalId
    reason: str
    delivered: bool = False
    conflict: bool = False


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    """What became of ``ProposeChange(request=...)``: in effect here, or refused.

    ``configuration`` is set once the change governs the next slot to
    decide here; otherwise ``error`` says why it was refused (``leader``:
    the leader this replica knows, when the refusal is that it does not lead).
    """

    request: int
    configuration: Configuration | None = None
    error: str | None = None
    leader: str | None = None


@dataclass(frozen=True, slots=True)
class Ready:
    promised: Ballot | None = None
    accepted: tuple[AcceptedEntry, ...] = ()
    decided: tuple[DecidedEntry, ...] = ()
    #: Sent only once this Ready and every earlier one are durable.
    messages: tuple[Envelope, ...] = ()
    deliveries: tuple[Delivered, ...] = ()
    dropped: tuple[Dropped, ...] = ()
    #: A snapshot to persist (it replaces the log through ``snapshot.slot``).
    snapshot: Snapshot | None = None
    #: When set, ``snapshot`` came from a peer: the application restores its
    #: state from ``snapshot.data`` after ``deliveries[:restore_at]`` and
    #: before ``deliveries[restore_at:]``.
    restore_at: int | None = None
    #: True when ``promised`` or ``accepted`` changed: those must hit the disk
    #: before ``messages`` leave. Decided entries alone can be re-learned.
    must_sync: bool = field(default=False)
    #: May be sent at once, before this Ready (or an earlier one) is durable.
    early: tuple[Envelope, ...] = ()
    #: 1, 2, ... per replica: what ``Persisted`` names. 0 for a core that keeps
    #: nothing waiting for storage (it takes no ``Persisted``).
    seq: int = 0
    #: Membership change requests of this replica that took effect or were refused.
    changes: tuple[ChangeOutcome, ...] = ()
    #: ``ReadIndex`` requests that may run now, after this Ready's
    #: deliveries are applied (they wait for no save), and those given up.
    reads: tuple[int, ...] = ()
    reads_failed: tuple[int, ...] = ()

    def is_empty(self) -> bool:
        return not (
            self.promised is not None
            or self.accepted
            or self.decided
            or self.messages
            or self.early
            or self.deliveries
            or self.dropped
            or self.changes
            or self.snapshot is not None
            or self.reads
            or self.reads_failed
        )


def coalesce(readies: Sequence[Ready]) -> Ready:
    """One Ready whose durable part is that of ``readies`` saved in order (group commit).

    The latest promise wins, entries keep their order (a later entry for a
    slot replaces an earlier one, as separate saves would), and one fsync
    covers all when any needed one. A snapshot may only come first: it is
    installed before the entries are saved, as for a single Ready. The late
    ``messages`` of all come along (in order) for the runtime's bookkeeping;
    ``seq`` is the last one's, so ``Persisted(seq)`` covers them all.
    """
    if len(readies) == 1:
        return readies[0]
    if any(r.snapshot is not None for r in readies[1:]):
        raise ValueError("only the first Ready of a coalesced save may carry a snapshot")
    promised = None
    for r in readies:
        if r.promised is not None:
            promised = r.promised
    return Ready(
        promised=promised,
        accepted=tuple(a for r in readies for a in r.accepted),
        decided=tuple(d for r in readies for d in r.decided),
        messages=tuple(m for r in readies for m in r.messages),
        snapshot=readies[0].snapshot,
        must_sync=any(r.must_sync for r in readies),
        seq=readies[-1].seq,
    )
