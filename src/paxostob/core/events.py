"""Events into the core, and the ``Ready`` batch of effects out of it.

The runtime handles a ``Ready`` strictly in this order (DESIGN.md §3), then
calls ``advance(ready)``:

1. persist ``promised``, ``accepted`` and ``decided`` (fsync if ``must_sync``);
2. only then send ``messages`` — a promise or accept that reached a peer
   before it reached the disk could be forgotten by a crash, and a restarted
   acceptor would contradict it;
3. deliver ``deliveries`` (gap-free, in total order, each proposal once);
4. fail ``dropped`` proposals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import Envelope
from .types import Ballot, Batch, DecidedEntry, Delivery, ProposalId, Snapshot

__all__ = [
    "AcceptedEntry",
    "Campaign",
    "Delivered",
    "Dropped",
    "Event",
    "Propose",
    "Ready",
    "Receive",
    "Tick",
]


@dataclass(frozen=True, slots=True)
class Tick:
    """One unit of logical time passed (the runtime maps it to ``tick_interval_s``)."""


@dataclass(frozen=True, slots=True)
class Receive:
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Propose:
    """Propose ``payload``; the core names it ``ProposalId(node_id, next seq)``."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Campaign:
    """Start phase 1 now instead of waiting for the election timeout."""


Event = Tick | Receive | Propose | Campaign


@dataclass(frozen=True, slots=True)
class AcceptedEntry:
    """The acceptor accepted ``value`` for ``slot`` in ``ballot`` (durable state)."""

    slot: int
    ballot: Ballot
    value: Batch


@dataclass(frozen=True, slots=True)
class Delivered:
    """A delivery and the proposal it came from (the runtime resolves waiters by ``id``)."""

    id: ProposalId
    delivery: Delivery


@dataclass(frozen=True, slots=True)
class Dropped:
    """A proposal this node will not see delivered: refused, or delivered unseen.

    ``delivered``: it *was* delivered, inside a snapshot installed from a
    peer, so its position is unknown here (do not propose it again).
    """

    id: ProposalId
    reason: str
    delivered: bool = False


@dataclass(frozen=True, slots=True)
class Ready:
    promised: Ballot | None = None
    accepted: tuple[AcceptedEntry, ...] = ()
    decided: tuple[DecidedEntry, ...] = ()
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

    def is_empty(self) -> bool:
        return not (
            self.promised is not None
            or self.accepted
            or self.decided
            or self.messages
            or self.deliveries
            or self.dropped
            or self.snapshot is not None
        )
