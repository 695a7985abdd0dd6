"""Messages between replicas. Every message names its instance and sender.

The Go original's messages carried no instance id, so consensus instances
sharing a transport consumed each other's messages (docs/design.md, 'Five
defects of the Go original', 1).
Here every message carries ``instance`` (which protocol instance it belongs
to) and ``sender`` (the node that produced it; quorums count distinct
senders), and every slot-specific message carries its ``slot``.

Phase names follow "Paxos Made Simple": Prepare/Promise are phase 1a/1b,
Accept/Accepted are phase 2a/2b. ``Prepare.slot`` is the first slot the
prepare covers: in Multi-Paxos one phase 1 covers every slot >= it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import Ballot, Batch, DecidedEntry, Proposal

__all__ = [
    "Accept",
    "Accepted",
    "CatchUp",
    "Decided",
    "Envelope",
    "Forward",
    "Heartbeat",
    "HeartbeatReply",
    "Message",
    "Nack",
    "PreVote",
    "PreVoteReply",
    "Prepare",
    "Promise",
    "PromiseEntry",
    "ReadIndexAsk",
    "ReadIndexGrant",
    "ReadProbe",
    "ReadProbeReply",
    "SnapshotChunk",
]


@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1a: promise ``ballot`` for every slot >= ``slot``."""

    instance: str
    sender: str
    ballot: Ballot
    slot: int


@dataclass(frozen=True, slots=True)
class PromiseEntry:
    """What an acceptor reports for one slot in a promise.

    ``decided`` entries are chosen values the acceptor already knows;
    otherwise ``ballot``/``value`` is the acceptor's highest accepted proposal.
    """

    slot: int
    ballot: Ballot
    value: Batch
    decided: bool


@dataclass(frozen=True, slots=True)
class Promise:
    """Phase 1b: the sender promised ``ballot``.

    ``decided_through``: every slot <= it is decided at the sender (its
    contiguous prefix; -1 when none is, as for a single-decree instance,
    whose one slot is 0); ``entries`` covers the slots above it (and >= the
    prepare's slot) that the sender accepted or knows decided.
    """

    instance: str
    sender: str
    ballot: Ballot
    decided_through: int
    entries: tuple[PromiseEntry, ...]


@dataclass(frozen=True, slots=True)
class Nack:
    """The sender refused ``ballot`` because it promised ``promised`` > it."""

    instance: str
    sender: str
    ballot: Ballot
    promised: Ballot


@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a: accept ``value`` for ``slot`` in ``ballot``.

    ``commit``: every slot <= it is decided at the leader; a follower may mark
    such a slot decided if it accepted it in this same ballot (the leader
    proposes exactly one value per slot and ballot).
    """

    instance: str
    sender: str
    ballot: Ballot
    slot: int
    value: Batch
    commit: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """Phase 2b: the sender accepted ``slot`` in ``ballot``.

    ``value`` is carried when the message goes to learners that may not have
    seen the Accept (single-decree consensus); ``None`` when it goes back to
    a Multi-Paxos leader that knows the value.
    """

    instance: str
    sender: str
    ballot: Ballot
    slot: int
    value: Batch | None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The leader of ``ballot`` is alive; every slot <= ``commit`` is decided."""

    instance: str
    sender: str
    ballot: Ballot
    commit: int


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """A follower still follows ``ballot``; it has delivered through ``decided_through``."""

    instance: str
    sender: str
    ballot: Ballot
    decided_through: int


@dataclass(frozen=True, slots=True)
class Forward:
    """A follower hands proposals to the leader it knows."""

    instance: str
    sender: str
    proposals: tuple[Proposal, ...]


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Ask for the decided values of slots >= ``slot`` (a bounded chunk comes back)."""

    instance: str
    sender: str
    slot: int


@dataclass(frozen=True, slots=True)
class Decided:
    """Chosen values, to learners that missed them (catch-up, late learners)."""

    instance: str
    sender: str
    entries: tuple[DecidedEntry, ...]


@dataclass(frozen=True, slots=True)
class PreVote:
    """Would you let me run phase 1 now? Asked before ``Prepare``; changes no promise.

    ``ballot`` is the ballot the sender would campaign with (it names this
    round of asking: replies echo it); ``decided_through`` is the sender's
    contiguous decided prefix, which the receiver compares with its own.
    """

    instance: str
    sender: str
    ballot: Ballot
    decided_through: int


@dataclass(frozen=True, slots=True)
class PreVoteReply:
    """The answer to ``PreVote(ballot)``; ``promised`` lets the asker pick a ballot above it."""

    instance: str
    sender: str
    ballot: Ballot
    granted: bool
    promised: Ballot


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """Bytes ``[offset, offset + len(chunk))`` of a snapshot at ``slot``, to a lagging replica.

    A replica that asks for slots the sender compacted gets the snapshot in
    chunks of at most ``snapshot_chunk_bytes_max``; ``size`` is the length of
    the whole ``data``; ``meta`` (small) rides on every chunk.
    """

    instance: str
    sender: str
    slot: int
    meta: bytes
    size: int
    offset: int
    chunk: bytes


@dataclass(frozen=True, slots=True)
class ReadProbe:
    """A heartbeat that must be answered: does ``ballot`` still lead, for read ``round``?

    ``commit`` is the leader's commit watermark, as in ``Heartbeat``. The
    leader serves the reads of ``round`` (and earlier) once a quorum,
    itself included, answered it in ``ballot`` (core/reads.py).
    """

    instance: str
    sender: str
    ballot: Ballot
    round: int
    commit: int


@dataclass(frozen=True, slots=True)
class ReadProbeReply:
    """The sender had promised no ballot above ``ballot`` when it answered read ``round``.

    ``guard_ms`` > 0: the sender runs with leases and guards ``ballot``'s
    leader: it refuses every other candidate for that many ms of its
    monotonic clock from (at or after) the probe's arrival (core/lease.py).
    """

    instance: str
    sender: str
    ballot: Ballot
    round: int
    guard_ms: int = 0


@dataclass(frozen=True, slots=True)
class ReadIndexAsk:
    """A follower asks the leader for a read index, for its reads named ``ask``."""

    instance: str
    sender: str
    ask: int


@dataclass(frozen=True, slots=True)
class ReadIndexGrant:
    """The answer to ``ReadIndexAsk(ask)``: the reads may run once slot ``index`` is applied."""

    instance: str
    sender: str
    ask: int
    index: int


Message = (
    Prepare
    | Promise
    | Nack
    | Accept
    | Accepted
    | Heartbeat
    | HeartbeatReply
    | Forward
    | CatchUp
    | Decided
    | SnapshotChunk
    | PreVote
    | PreVoteReply
    | ReadProbe
    | ReadProbeReply
    | ReadIndexAsk
    | ReadIndexGrant
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message on its way to ``dst``. The source is ``message.sender``."""

    dst: str
    message: Message
