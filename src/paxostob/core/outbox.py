"""A replica's effects waiting for the next ``Ready``, and the messages it sends itself.

Theory of operation (events.py has the ``Ready`` contract, multipaxos.py why
each message type may or may not leave early): every effect a step produces
gathers here until the runtime takes a ``Ready`` and ``advance``s past it.

- A message to a peer is *early* (``EARLY``: it vouches for no state of
  this replica, so it may leave before the Ready is durable) or *late* (it
  reports a promise or an acceptance: it leaves once the Ready is durable).
- A message to ourselves never touches the network: it goes to the
  loopback, handled right after the step that sent it, except our own
  ``Accepted``, a vote like a peer's, which is *held* with the seq of the
  Ready that carries the acceptance (``ready_seq + 1``) and counted only
  once the runtime steps ``Persisted`` for it.
- ``advance`` forgets exactly what the Ready handed out; effects produced
  after it was taken stay for the next one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from .acceptor import Acceptor
from .events import ChangeOutcome, Delivered, Dropped, Ready
from .messages import (
    Accept,
    Accepted,
    CatchUp,
    Decided,
    Envelope,
    Forward,
    Heartbeat,
    HeartbeatReply,
    Message,
    PreVote,
    PreVoteReply,
    ReadIndexAsk,
    ReadIndexGrant,
    ReadProbe,
    ReadProbeReply,
    SnapshotChunk,
)
from .types import DecidedEntry, Snapshot, slot_setters

__all__ = ["EARLY", "Outbox"]

#: Messages that may leave before the Ready that produced them is durable
#: (multipaxos.py's docstring argues each); every other type waits.
EARLY: tuple[type[Message], ...] = (
    Accept,
    Heartbeat,
    HeartbeatReply,
    Forward,
    CatchUp,
    Decided,
    SnapshotChunk,
    PreVote,
    PreVoteReply,
    ReadProbe,
    ReadProbeReply,
    ReadIndexAsk,
    ReadIndexGrant,
)


# Made for every message to a peer, and at every Ready the runtime takes: the
# slots set directly, not through the frozen dataclasses' __init__
# (``types.slot_setters``).
_new = object.__new__
_SET_DST, _SET_MESSAGE = slot_setters(Envelope, "dst", "message")
(
    _SET_PROMISED,
    _SET_ACCEPTED,
    _SET_DECIDED,
    _SET_MESSAGES,
    _SET_DELIVERIES,
    _SET_DROPPED,
    _SET_SNAPSHOT,
    _SET_RESTORE_AT,
    _SET_MUST_SYNC,
    _SET_EARLY,
    _SET_SEQ,
    _SET_CHANGES,
    _SET_READS,
    _SET_READS_FAILED,
) = slot_setters(
    Ready,
    "promised",
    "accepted",
    "decided",
    "messages",
    "deliveries",
    "dropped",
    "snapshot",
    "restore_at",
    "must_sync",
    "early",
    "seq",
    "changes",
    "reads",
    "reads_failed",
)


class Outbox:
    """Effects not yet handed out (the module docstring has the rules)."""

    __slots__ = (
        "_me",
        "changes",
        "decided_new",
        "deliveries",
        "dropped",
        "early",
        "held",
        "loopback",
        "out",
        "reads",
        "reads_failed",
        "ready_seq",
        "restore_at",
        "snapshot",
    )

    def __init__(self, me: str) -> None:
        self._me = me
        self.out: list[Envelope] = []  # late: sent once this Ready is durable
        self.early: list[Envelope] = []
        self.loopback: deque[Message] = deque()
        #: Our own Accepted votes, with the seq of the Ready carrying the
        #: acceptance: counted once ``Persisted`` covers it.
        self.held: deque[tuple[int, Accepted]] = deque()
        self.ready_seq = 0  # the seq of the last Ready advanced
        self.decided_new: list[DecidedEntry] = []
        self.deliveries: list[Delivered] = []
        self.dropped: list[Dropped] = []
        self.changes: list[ChangeOutcome] = []
        #: A snapshot to save, and (when it came from a peer) where among
        #: ``deliveries`` the application restores it.
        self.snapshot: Snapshot | None = None
        self.restore_at: int | None = None
        #: ``ReadIndex`` requests that may run (after this Ready's deliveries), or failed.
        self.reads: list[int] = []
        self.reads_failed: list[int] = []

    def send(self, dst: str, msg: Message) -> None:
        if dst == self._me:
            if isinstance(msg, Accepted):
                self.hold(msg)
            else:
                self.loopback.append(msg)
        else:
            envelope = _new(Envelope)
            _SET_DST(envelope, dst)
            _SET_MESSAGE(envelope, msg)
            if isinstance(msg, EARLY):
                self.early.append(envelope)
            else:
                self.out.append(envelope)

    def hold(self, vote: Accepted) -> None:
        """Count our own acceptance only once the Ready carrying it is durable."""
        self.held.append((self.ready_seq + 1, vote))

    def durable(self, seq: int) -> Iterator[Accepted]:
        """Our held votes whose acceptance is durable once ``Persisted(seq)``, oldest first.

        Never beyond the Readys handed out: the acceptance of a vote tagged
        ``ready_seq + 1`` is not in any Ready yet.
        """
        through = min(seq, self.ready_seq)
        held = self.held
        while held and held[0][0] <= through:
            yield held.popleft()[1]

    def has_effects(self) -> bool:
        return bool(
            self.out
            or self.early
            or self.deliveries
            or self.decided_new
            or self.dropped
            or self.changes
            or self.snapshot is not None
            or self.reads
            or self.reads_failed
        )

    def ready(self, acceptor: Acceptor) -> Ready:
        """Every effect gathered since the last ``advance``, with what ``acceptor`` must save."""
        r = _new(Ready)
        _SET_PROMISED(r, acceptor.promised if acceptor.promised_dirty else None)
        _SET_ACCEPTED(r, tuple(acceptor.accepted_new))
        _SET_DECIDED(r, tuple(self.decided_new))
        _SET_MESSAGES(r, tuple(self.out))
        _SET_DELIVERIES(r, tuple(self.deliveries))
        _SET_DROPPED(r, tuple(self.dropped))
        _SET_SNAPSHOT(r, self.snapshot)
        _SET_RESTORE_AT(r, self.restore_at)
        _SET_MUST_SYNC(r, acceptor.promised_dirty or bool(acceptor.accepted_new))
        _SET_EARLY(r, tuple(self.early))
        _SET_SEQ(r, self.ready_seq + 1)
        _SET_CHANGES(r, tuple(self.changes))
        _SET_READS(r, tuple(self.reads))
        _SET_READS_FAILED(r, tuple(self.reads_failed))
        return r

    def advance(self, ready: Ready, acceptor: Acceptor) -> None:
        """Everything in ``ready`` was handled; forget it (newer effects stay)."""
        del self.out[: len(ready.messages)]
        del self.early[: len(ready.early)]
        self.ready_seq = max(self.ready_seq, ready.seq)
        del self.deliveries[: len(ready.deliveries)]
        del acceptor.accepted_new[: len(ready.accepted)]
        del self.decided_new[: len(ready.decided)]
        del self.dropped[: len(ready.dropped)]
        del self.changes[: len(ready.changes)]
        if ready.reads:
            del self.reads[: len(ready.reads)]
        if ready.reads_failed:
            del self.reads_failed[: len(ready.reads_failed)]
        if ready.snapshot is not None:
            # The restore point belonged to that Ready alone (a compaction in
            # between may have replaced the snapshot still to persist).
            self.restore_at = None
            if ready.snapshot is self.snapshot:
                self.snapshot = None
        if ready.promised is not None and ready.promised == acceptor.promised:
            acceptor.promised_dirty = False
