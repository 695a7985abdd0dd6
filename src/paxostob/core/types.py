"""Identifiers and values shared by every protocol in the core.

Theory of operation: a *ballot* names one attempt of one proposer to get a
value chosen. Ballots must be totally ordered and unique across proposers, so
a ballot is the pair ``(round, node_id)`` compared lexicographically (the Go
original added node ids to a counter, so two proposers could own the same
ballot: docs/design.md, 'Five defects of the Go original', 2).

A *value* in a slot is a ``Batch``: a tuple of proposals, each identified by a
``ProposalId(origin, seq)`` so that a proposal retried after a leader change
is delivered once. The empty batch is the no-op that fills gaps.

The log's clock: a leader puts a *clock stamp* first in every batch it
proposes, a proposal of the reserved origin ``CLOCK_ORIGIN`` whose payload
is its clock reading in milliseconds (``clock_stamp``). A stamp is never
delivered as a message; every replica folds the stamps of the decided log
into the log's clock (``multipaxos`` states the rule), which each
``Delivery`` carries. The same origin with seq 1 marks a membership change
(``membership.CHANGE_SEQ``), never delivered either.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

__all__ = [
    "CLOCK_ORIGIN",
    "CLOCK_STAMP_BYTES",
    "NOOP",
    "ZERO_BALLOT",
    "Ballot",
    "Batch",
    "DecidedEntry",
    "Delivery",
    "Proposal",
    "ProposalId",
    "Snapshot",
    "batch_size_bytes",
    "clock_stamp",
    "new_delivery",
    "new_proposal",
    "stamp_ms",
]


@dataclass(frozen=True, slots=True, order=True)
class Ballot:
    """``(round, node_id)``, ordered lexicographically; unique per proposer."""

    round: int
    node_id: str

    def __post_init__(self) -> None:
        assert self.round >= 0, "ballot rounds are non-negative"

    def successor(self, node_id: str) -> Ballot:
        """The smallest ballot of ``node_id`` that is larger than this one."""
        if node_id > self.node_id:
            return Ballot(self.round, node_id)
        return Ballot(self.round + 1, node_id)

    def __str__(self) -> str:
        return f"{self.round}.{self.node_id}" if self.node_id else "0"


#: Smaller than every ballot a proposer can own (node ids are non-empty).
ZERO_BALLOT = Ballot(0, "")


class ProposalId(NamedTuple):
    """Who proposed (``origin``) and that node's sequence number (from 1).

    A named tuple, not a dataclass: it is the key of every proposal in
    flight (pending at its origin, queued at the leader, waited for by its
    broadcast), and a tuple is hashed and compared in C where a dataclass
    calls a Python ``__hash__`` each time (eight per message).
    """

    origin: str
    seq: int


@dataclass(frozen=True, slots=True)
class Proposal:
    id: ProposalId
    payload: bytes


#: The value of one slot. ``()`` is a no-op: it takes a slot but no position.
Batch = tuple[Proposal, ...]
NOOP: Batch = ()


def batch_size_bytes(batch: Batch) -> int:
    """Bytes counted against ``batch_bytes_max`` (payloads plus a small header each)."""
    return sum(len(p.payload) + 16 + len(p.id.origin) for p in batch)


#: The origin of clock stamps. Node ids are never empty, so no node's own
#: proposal carries it, and a ``Forward`` is only taken for its sender's own
#: proposals: only a leader's ``Accept`` (or a decided value) brings a stamp.
CLOCK_ORIGIN = ""
_STAMP = struct.Struct(">Q")
#: What a stamp costs in a batch (``batch_size_bytes`` of one stamp).
CLOCK_STAMP_BYTES = _STAMP.size + 16


def clock_stamp(ms: int) -> Proposal:
    """The stamp of a batch proposed when the leader's clock read ``ms``."""
    return Proposal(ProposalId(CLOCK_ORIGIN, 0), _STAMP.pack(ms))


def stamp_ms(p: Proposal) -> int | None:
    """The time of a clock stamp; ``None`` for any other proposal (or a malformed stamp)."""
    if p.id.origin != CLOCK_ORIGIN or p.id.seq != 0 or len(p.payload) != _STAMP.size:
        return None
    return int(_STAMP.unpack(p.payload)[0])


@dataclass(frozen=True, slots=True)
class DecidedEntry:
    """A slot whose value is chosen: known to every learner, never changes."""

    slot: int
    value: Batch


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message delivered by total-order broadcast.

    ``slot`` is the message's position in the total order: the same on every
    node, strictly increasing from one delivery to the next, counting messages
    (not consensus instances; no-ops take no position). ``sender`` is the node
    that broadcast it.
    """

    slot: int
    sender: str
    payload: bytes
    #: The log's clock at this message (Unix ms): the same on every node,
    #: never decreasing along the order; 0 while the log holds no clock stamp
    #: (a runtime that gives its replicas no clock). Metadata of the
    #: position, not of the message: equality and ``repr`` leave it out.
    clock_ms: int = field(default=0, compare=False, repr=False)


# Building frozen values in the hot loops. A frozen dataclass's ``__init__``
# sets each field through ``object.__setattr__`` (its own ``__setattr__``
# refuses), about twice the cost of plain assignments, and the log builds a
# ``Delivery`` per message per replica, the proposer a ``ProposalId`` and a
# ``Proposal`` per broadcast: a tenth of a replica's CPU per message went to
# these ``__init__``s. The builders below make the very same values by setting
# the slots directly; ``slot_setters`` checks that they set every field of a
# class that has no ``__post_init__`` (no check is skipped).
_new = object.__new__
_tuple_new = tuple.__new__


def slot_setters(cls: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The slot setters of frozen slotted dataclass ``cls``'s fields, which must be ``names``."""
    assert tuple(f.name for f in fields(cls)) == names, (cls, names)
    assert not hasattr(cls, "__post_init__"), cls
    return tuple(cls.__dict__[name].__set__ for name in names)


_SET_PROPOSAL_ID, _SET_PROPOSAL_PAYLOAD = slot_setters(Proposal, "id", "payload")
_SET_SLOT, _SET_SENDER, _SET_PAYLOAD, _SET_CLOCK = slot_setters(
    Delivery, "slot", "sender", "payload", "clock_ms"
)


def new_proposal(origin: str, seq: int, payload: bytes) -> Proposal:
    """``Proposal(ProposalId(origin, seq), payload)``, built for a hot loop."""
    pid = _tuple_new(ProposalId, (origin, seq))
    p = _new(Proposal)
    _SET_PROPOSAL_ID(p, pid)
    _SET_PROPOSAL_PAYLOAD(p, payload)
    return p


def new_delivery(slot: int, sender: str, payload: bytes, clock_ms: int) -> Delivery:
    """``Delivery(slot, sender, payload, clock_ms)``, built for a hot loop."""
    d = _new(Delivery)
    _SET_SLOT(d, slot)
    _SET_SENDER(d, sender)
    _SET_PAYLOAD(d, payload)
    _SET_CLOCK(d, clock_ms)
    return d


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of everything through consensus slot ``slot``.

    ``meta`` is the core's own bookkeeping (``core.snapshot.SnapshotMeta``:
    delivery position and delivered proposals), ``data`` the application's
    state; both are opaque bytes to storage and transports.
    """

    slot: int
    meta: bytes
    data: bytes
