"""This replica's own proposals: naming them, and getting them to whoever leads.

Theory of operation (multipaxos.py, 'Followers forward proposals'): a
proposal is named ``ProposalId(origin, seq)``, with ``seq =
incarnation << SEQ_BITS | counter``, so no two lives of a node share an id.
It stays ``pending`` here until delivered here (``DecidedLog.deliver``
removes it), and goes to the leader: queued at once when we lead, else
forwarded (``Forward``, at most ``batch_count_max`` proposals per message)
when ``ready()`` cuts batches, so everything proposed since the last
``Ready`` travels together. One not delivered within
``forward_retry_ticks`` is forwarded again, and a leader change makes every
pending one due at once; replicas skip ids already delivered, so a retried
proposal is delivered once.

Invariants: every id in ``forwarded_at`` is pending; ids grow within a life.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ProposalIdsExhaustedError
from .events import Dropped
from .leadership import Leadership
from .log import CONFLICT, COUNTER_MASK, SEQ_BITS, DecidedLog
from .messages import Forward, Message
from .types import CLOCK_STAMP_BYTES, Proposal, ProposalId, batch_size_bytes, new_proposal

__all__ = ["OwnProposals"]


class OwnProposals:
    """Proposals of this replica not yet delivered here (the module docstring has the rules)."""

    __slots__ = (
        "_batch_bytes_max",
        "_batch_count_max",
        "_dropped",
        "_instance",
        "_log",
        "_me",
        "_overhead",
        "_retry_ticks",
        "_send",
        "_seq",
        "forwarded_at",
        "last_id",
        "pending",
        "to_forward",
    )

    def __init__(
        self,
        *,
        me: str,
        instance: str,
        incarnation: int,
        log: DecidedLog,
        send: Callable[[str, Message], None],
        dropped: list[Dropped],
        retry_ticks: int,
        batch_count_max: int,
        batch_bytes_max: int,
    ) -> None:
        self._me = me
        self._instance = instance
        self._log = log
        self._send = send
        #: The replica's list of proposals it will not deliver (handed out in a Ready).
        self._dropped = dropped
        self._retry_ticks = retry_ticks
        self._batch_count_max = batch_count_max
        self._batch_bytes_max = batch_bytes_max
        #: What a batch of one of our proposals costs beyond its payload:
        #: ``batch_size_bytes`` of it, plus the leader's clock stamp.
        self._overhead = batch_size_bytes((Proposal(ProposalId(me, 0), b""),)) + CLOCK_STAMP_BYTES
        self.restart(incarnation)
        self.pending: dict[ProposalId, Proposal] = {}
        #: When each pending proposal was last forwarded, oldest first.
        self.forwarded_at: dict[ProposalId, int] = {}
        self.to_forward: list[Proposal] = []
        #: The id of the last proposal made: what its delivery will carry.
        self.last_id: ProposalId | None = None

    def restart(self, incarnation: int) -> None:
        """Number this life's proposals above every earlier life's."""
        if not 0 <= incarnation < 1 << SEQ_BITS:
            raise ValueError("incarnation out of range")
        self._seq = incarnation << SEQ_BITS

    def propose(
        self, payload: bytes, now: int, *, leader: str | None, leading: Leadership | None
    ) -> None:
        """Name ``payload`` (``last_id``) and send it on its way, or drop it.

        Raises ``ProposalIdsExhaustedError`` once this life numbered
        ``COUNTER_MASK`` proposals: the next number would be the next life's.
        """
        if self._seq & COUNTER_MASK == COUNTER_MASK:
            raise ProposalIdsExhaustedError(
                f"{self._me}: this life of the node has numbered {COUNTER_MASK} proposals, "
                "the most one life may (another would repeat an id of its next life); "
                "restart the node: nothing is lost, and it numbers from 1 again"
            )
        self._seq += 1
        proposal = new_proposal(self._me, self._seq, payload)
        self.last_id = pid = proposal.id
        if len(payload) + self._overhead > self._batch_bytes_max:
            self._dropped.append(Dropped(pid, "payload larger than batch_bytes_max"))
            return
        if self._log.is_delivered(pid):
            # An earlier life with this incarnation had this id delivered:
            # every replica would skip it as a retry, so it would never come.
            self._dropped.append(Dropped(pid, CONFLICT, conflict=True))
            return
        self.pending[pid] = proposal
        if leading is not None:
            leading.enqueue(proposal)
        elif leader is not None:
            self.to_forward.append(proposal)
            self.forwarded_at[pid] = now
        else:
            self.forwarded_at[pid] = now - self._retry_ticks

    def reforward_due(self, now: int, leader: str | None) -> None:
        """Forward again what the leader we follow has not delivered in time."""
        if leader is None or leader == self._me or not self.pending:
            return
        due = now - self._retry_ticks
        fwd = self.forwarded_at
        again: list[ProposalId] = []
        for pid, at in fwd.items():
            if at > due:
                break  # (roughly) oldest first: the rest were forwarded later
            again.append(pid)
        for pid in again:
            del fwd[pid]
            fwd[pid] = now
            self.to_forward.append(self.pending[pid])

    def flush(self, leader: str | None, leading: Leadership | None) -> None:
        """Hand what is to forward to our own queue, or send it to the leader."""
        fwd = self.to_forward
        if not fwd:
            return
        if leading is not None:
            for p in fwd:
                leading.enqueue(p)
            fwd.clear()
            return
        if leader is None:
            fwd.clear()  # still pending: re-forwarded once a leader is known
            return
        chunk = self._batch_count_max
        for i in range(0, len(fwd), chunk):
            self._send(leader, Forward(self._instance, self._me, tuple(fwd[i : i + chunk])))
        fwd.clear()

    def all_due(self, now: int) -> None:
        """The leader changed: every pending proposal goes to whoever leads next."""
        self.forwarded_at = dict.fromkeys(self.pending, now - self._retry_ticks)
        self.to_forward.clear()

    def settle(self, before: set[ProposalId]) -> None:
        """Of ``before``, drop those a snapshot from a peer delivered (never delivered here)."""
        for pid in before:
            if self._log.is_delivered(pid):
                del self.pending[pid]
                self.forwarded_at.pop(pid, None)
                self._dropped.append(
                    Dropped(pid, "delivered inside a snapshot from a peer", delivered=True)
                )
