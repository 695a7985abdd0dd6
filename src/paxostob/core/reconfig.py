"""This replica's membership change requests: refusing them, proposing them, reporting them.

Theory of operation (membership.py has the rule; docs/design.md,
'Membership change'): a ``ProposeChange`` is taken only by the leader, and
only when

- no other change is decided and not yet in effect, nor proposed and not
  yet decided (one change at a time; ``apply_change`` would void it anyway);
- it is valid against the newest configuration (the same ``apply_change``
  every replica runs when it is decided, so a refusal here is what would
  void it there);
- for ``promote``: the learner's lag (our decided prefix minus the prefix
  it last reported in a ``HeartbeatReply``) is at most
  ``LogConfig.learner_lag_max``: a voter far behind would slow every
  quorum it completes, and could not lead.

The change then goes into the next slot the leader opens (``Leadership``).
Its outcome (a ``ChangeOutcome`` in a ``Ready``) comes when it is decided
*void*, or once it is in effect here (the decided prefix reached its
effective slot - 1, so it governs the next slot to decide). A leader that
steps down before its change is decided keeps the request: the next
leader may still decide it (P2c), and then it is reported; otherwise the
runtime's timeout ends the wait.
"""

from __future__ import annotations

from .events import ChangeOutcome, ProposeChange
from .leadership import Leadership
from .log import SEQ_BITS, DecidedLog
from .membership import CHANGE_SEQ, OPS, Change, Configuration, apply_change, encode_change
from .types import CLOCK_ORIGIN, Proposal, ProposalId

__all__ = ["ChangeRequests"]


class ChangeRequests:
    """Change requests of this replica, from proposal to outcome."""

    __slots__ = ("_lag_max", "_life", "_log", "_me", "_outcomes", "_waiting")

    def __init__(
        self, *, me: str, log: DecidedLog, outcomes: list[ChangeOutcome], lag_max: int
    ) -> None:
        self._me = me
        self._log = log
        self._outcomes = outcomes
        self._lag_max = lag_max
        #: request -> the configuration it made (None until decided).
        self._waiting: dict[int, Configuration | None] = {}
        self._life = 0

    def restart(self, incarnation: int) -> None:
        """Name this life's requests apart from every earlier life's.

        The runtime numbers its requests from 1 in every life, and a change
        of an earlier life may be decided after a restart: its outcome must
        not be taken for this life's request of the same number.
        """
        self._life = incarnation

    def propose(self, e: ProposeChange, lead: Leadership | None, leader: str | None) -> None:
        """Take ``e`` into ``lead``'s next slot, or report at once why not."""
        error = self._refusal(e, lead)
        if error is not None:
            not_leader = lead is None and e.op in OPS
            self._outcomes.append(
                ChangeOutcome(e.request, error=error, leader=leader if not_leader else None)
            )
            return
        assert lead is not None
        change = Change(e.op, e.node_id, e.address, (self._me, self._life << SEQ_BITS | e.request))
        lead.change = Proposal(ProposalId(CLOCK_ORIGIN, CHANGE_SEQ), encode_change(change))
        self._waiting[e.request] = None

    def _refusal(self, e: ProposeChange, lead: Leadership | None) -> str | None:
        if e.op not in OPS:
            return f"unknown membership change {e.op!r} (one of {', '.join(OPS)})"
        if not e.node_id:
            return "a member needs a non-empty node id"
        if lead is None:
            return f"{self._me} is not the leader; propose membership changes at the leader"
        log = self._log
        history = log.membership
        pending = history.pending(log.decided_through)
        if pending is not None:
            return (
                f"another change is in progress (it takes effect at slot "
                f"{pending.effective_slot}); one change at a time"
            )
        if lead.change is not None or lead.change_slot in lead.open:
            return "another change is in progress (proposed, not yet decided); one change at a time"
        # Validity as every replica will judge it once decided (slot: as if next).
        got = apply_change(history.newest, Change(e.op, e.node_id, e.address), lead.next_slot, 1)
        if isinstance(got, str):
            return got
        if e.op == "promote":
            acked = lead.acked.get(e.node_id)
            if acked is None:
                return (
                    f"learner {e.node_id!r} has not answered this leader yet: it cannot be promoted"
                )
            lag = log.decided_through - acked
            if lag > self._lag_max:
                return (
                    f"learner {e.node_id!r} lags {lag} slots behind the leader "
                    f"(learner_lag_max {self._lag_max}): let it catch up first"
                )
        return None

    def after_delivery(self) -> None:
        """Report the changes of ours decided void, and those now in effect here."""
        history = self._log.membership
        waiting = self._waiting
        for _, change, got in history.outcomes:
            origin, nonce = change.nonce
            request = nonce & ((1 << SEQ_BITS) - 1)
            if origin != self._me or nonce >> SEQ_BITS != self._life or request not in waiting:
                continue
            if isinstance(got, str):
                del waiting[request]
                self._outcomes.append(ChangeOutcome(request, error=got))
            else:
                waiting[request] = got
        history.outcomes.clear()
        next_slot = self._log.decided_through + 1
        for request, config in list(waiting.items()):
            if config is not None and config.effective_slot <= next_slot:
                del waiting[request]
                self._outcomes.append(ChangeOutcome(request, configuration=config))
