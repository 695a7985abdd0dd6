"""Single-decree Paxos (the Synod protocol) for one named instance.

Theory of operation: every member is proposer, acceptor and learner
("Paxos Made Simple" §2). A proposer picks a ballot higher than any it has
seen, runs phase 1 to a quorum of distinct acceptors, proposes the
highest-ballot value among their reports (or its own), and runs phase 2.
Acceptors send ``Accepted`` to every member, so every learner sees a quorum
accept one ballot and learns the value without an extra round. A learner
that has no proposal of its own asks its peers for the decision on a timer,
so a node that never proposed still learns it (termination).

Retransmission on ticks makes the protocol live under loss; the randomized
backoff after a ``Nack`` makes dueling proposers terminate. The acceptor and
proposer rules come from ``rules`` and are the same ones Multi-Paxos applies
per slot.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import rules
from .events import AcceptedEntry, Campaign, Delivered, Event, Propose, Ready, Receive, Tick
from .messages import (
    Accept,
    Accepted,
    CatchUp,
    Decided,
    Envelope,
    Message,
    Nack,
    Prepare,
    Promise,
    PromiseEntry,
)
from .types import ZERO_BALLOT, Ballot, Batch, DecidedEntry, Delivery, Proposal, ProposalId

__all__ = ["SynodConfig", "SynodReplica"]

#: The one slot a single-decree instance decides.
SLOT = 0


@dataclass(frozen=True, slots=True)
class SynodConfig:
    #: Resend the current phase's message to silent acceptors this often.
    retry_ticks: int = 4
    #: Base and cap of the randomized backoff after a higher ballot was seen.
    backoff_base_ticks: int = 2
    backoff_cap_ticks: int = 64
    #: A node without a decision asks its peers for it this often.
    learn_retry_ticks: int = 8

    def __post_init__(self) -> None:
        assert min(self.retry_ticks, self.backoff_base_ticks, self.learn_retry_ticks) >= 1
        assert self.backoff_cap_ticks >= self.backoff_base_ticks


class SynodReplica:
    """One member of a single-decree Paxos instance (sans-IO)."""

    def __init__(
        self,
        node_id: str,
        members: list[str] | tuple[str, ...],
        instance: str,
        rng: random.Random,
        config: SynodConfig | None = None,
    ) -> None:
        assert node_id in members, "a node is a member of its own membership"
        self.node_id = node_id
        self.members = tuple(sorted(set(members)))
        self.instance = instance
        self.config = config or SynodConfig()
        self._rng = rng
        self._quorum = rules.quorum_size(len(self.members))
        self._now = 0
        # Acceptor (durable).
        self.promised: Ballot = ZERO_BALLOT
        self.accepted: tuple[Ballot, Batch] | None = None
        # Learner.
        self.decision: Batch | None = None
        self._learned: dict[Ballot, rules.Tally] = {}
        self._learn_due = self.config.learn_retry_ticks
        # Proposer.
        self._own: Batch | None = None
        self._ballot: Ballot = ZERO_BALLOT
        self._phase = 0  # 0 idle or backing off, 1 preparing, 2 accepting
        self._value: Batch = ()
        self._tally = rules.Tally(self._quorum)
        self._reports: dict[str, tuple[Ballot, Batch] | None] = {}
        self._retry_due = 0
        self._restart_due: int | None = None
        self._attempt = 0
        self._highest_seen: Ballot = ZERO_BALLOT
        # Effects not yet handed out.
        self._out: list[Envelope] = []
        self._promised_dirty = False
        self._accepted_dirty = False
        self._decided_new = False
        self._deliveries: list[Delivered] = []
        self.ignored = 0

    def restore(
        self,
        promised: Ballot,
        accepted: tuple[AcceptedEntry, ...],
        decided: tuple[DecidedEntry, ...],
    ) -> None:
        """Take back a restarted node's durable state, before its first step.

        The acceptor gets its promise and accepted value back, so it never
        contradicts what it told peers; a decision it had is delivered again
        (in the next ``Ready``).
        """
        assert self._now == 0 and self.decision is None, "restore() runs before the first step"
        self.promised = self._highest_seen = promised
        for a in accepted:
            if a.slot == SLOT:
                self.accepted = (a.ballot, a.value)
        for d in decided:
            if d.slot == SLOT and d.value:
                self._decide(d.value)

    # ----------------------------------------------------------------- events

    def step(self, event: Event) -> None:
        if isinstance(event, Tick):
            self._tick()
        elif isinstance(event, Receive):
            self._receive(event.envelope.message)
        elif isinstance(event, Propose):
            self._propose(event.payload)
        elif isinstance(event, Campaign):
            if self._own is not None and self.decision is None:
                self._start_round()
        else:  # pragma: no cover - the Event union is closed
            raise TypeError(f"not a core event: {event!r}")

    def _propose(self, payload: bytes) -> None:
        if self._own is not None or self.decision is not None:
            return  # one proposal per node and instance; a decision is final
        self._own = (Proposal(ProposalId(self.node_id, 1), payload),)
        self._start_round()

    def _tick(self) -> None:
        self._now += 1
        if self.decision is not None:
            return
        if self._restart_due is not None and self._now >= self._restart_due:
            self._start_round()
        elif self._phase and self._now >= self._retry_due:
            self._resend()
        if self._own is None and self._now >= self._learn_due:
            self._learn_due = self._now + self.config.learn_retry_ticks
            msg = CatchUp(self.instance, self.node_id, SLOT)
            for dst in self.members:
                if dst != self.node_id:
                    self._send(dst, msg)

    # --------------------------------------------------------------- proposer

    def _start_round(self) -> None:
        top = max(self.promised, self._ballot, self._highest_seen)
        self._ballot = Ballot(top.round + 1, self.node_id)
        self._phase = 1
        self._tally = rules.Tally(self._quorum)
        self._reports = {}
        self._restart_due = None
        self._resend()

    def _resend(self) -> None:
        self._retry_due = self._now + self.config.retry_ticks
        missing = [m for m in self.members if m not in self._tally.senders]
        msg: Message
        if self._phase == 1:
            msg = Prepare(self.instance, self.node_id, self._ballot, SLOT)
        else:
            msg = Accept(self.instance, self.node_id, self._ballot, SLOT, self._value, -1)
        for dst in missing:
            self._send(dst, msg)

    def _on_promise(self, m: Promise) -> None:
        if self._phase != 1 or m.ballot != self._ballot:
            self.ignored += 1
            return
        report = next(((e.ballot, e.value) for e in m.entries if e.slot == SLOT), None)
        self._reports[m.sender] = report
        if not self._tally.add(m.sender):
            return
        assert self._own is not None
        best = rules.highest_accepted(self._reports.values())
        self._value = best[1] if best is not None else self._own
        self._phase = 2
        self._tally = rules.Tally(self._quorum)
        self._resend()

    def _on_nack(self, m: Nack) -> None:
        self._highest_seen = max(self._highest_seen, m.promised)
        if self._phase == 0 or m.ballot != self._ballot:
            return
        self._phase = 0
        self._attempt += 1
        cfg = self.config
        wait = rules.backoff_ticks(
            self._rng, self._attempt, cfg.backoff_base_ticks, cfg.backoff_cap_ticks
        )
        self._restart_due = self._now + wait

    # --------------------------------------------------------------- acceptor

    def _on_prepare(self, m: Prepare) -> None:
        if self.decision is not None:
            self._send_decision(m.sender)
        elif rules.may_promise(self.promised, m.ballot):
            self._set_promised(m.ballot)
            entries: tuple[PromiseEntry, ...] = ()
            if self.accepted is not None:
                b, v = self.accepted
                entries = (PromiseEntry(SLOT, b, v, decided=False),)
            self._send(m.sender, Promise(self.instance, self.node_id, m.ballot, -1, entries))
        else:
            self._send(m.sender, Nack(self.instance, self.node_id, m.ballot, self.promised))

    def _on_accept(self, m: Accept) -> None:
        if self.decision is not None:
            self._send_decision(m.sender)
        elif rules.may_accept(self.promised, m.ballot):
            if m.ballot > self.promised:
                self._set_promised(m.ballot)
            if self.accepted is None or self.accepted[0] != m.ballot:
                self.accepted = (m.ballot, m.value)
                self._accepted_dirty = True
            # Every member learns: no extra round-trip through the proposer.
            for dst in self.members:
                self._send(dst, Accepted(self.instance, self.node_id, m.ballot, SLOT, m.value))
        else:
            self._send(m.sender, Nack(self.instance, self.node_id, m.ballot, self.promised))

    def _set_promised(self, ballot: Ballot) -> None:
        self.promised = ballot
        self._promised_dirty = True

    # ---------------------------------------------------------------- learner

    def _on_accepted(self, m: Accepted) -> None:
        if self.decision is not None or m.value is None:
            return
        if m.ballot == self._ballot and self._phase == 2:
            self._tally.add(m.sender)  # no need to resend Accept to it
        tally = self._learned.setdefault(m.ballot, rules.Tally(self._quorum))
        if tally.add(m.sender):
            self._decide(m.value)

    def _decide(self, value: Batch) -> None:
        if self.decision is not None:
            if value != self.decision:
                self.ignored += 1  # only a broken peer could send this; keep ours
            return
        assert value, "a single-decree value is never a no-op"
        self.decision = value
        self._phase = 0
        self._restart_due = None
        self._learned.clear()
        self._decided_new = True
        first = value[0]
        delivery = Delivery(SLOT, first.id.origin, first.payload)
        self._deliveries.append(Delivered(first.id, delivery))

    def _send_decision(self, dst: str) -> None:
        assert self.decision is not None
        entry = DecidedEntry(SLOT, self.decision)
        self._send(dst, Decided(self.instance, self.node_id, (entry,)))

    # -------------------------------------------------------------- messages

    def _receive(self, m: Message) -> None:
        if m.instance != self.instance or m.sender not in self.members:
            self.ignored += 1  # another instance's, or a stranger's: not ours
            return
        if isinstance(m, Prepare):
            self._on_prepare(m)
        elif isinstance(m, Promise):
            self._on_promise(m)
        elif isinstance(m, Nack):
            self._on_nack(m)
        elif isinstance(m, Accept):
            self._on_accept(m)
        elif isinstance(m, Accepted):
            self._on_accepted(m)
        elif isinstance(m, Decided):
            for e in m.entries:
                if e.slot == SLOT and e.value:
                    self._decide(e.value)
        elif isinstance(m, CatchUp):
            if self.decision is not None:
                self._send_decision(m.sender)
        else:
            self.ignored += 1

    def _send(self, dst: str, msg: Message) -> None:
        self._out.append(Envelope(dst, msg))

    # ------------------------------------------------------------------ ready

    def has_ready(self) -> bool:
        return bool(
            self._out
            or self._deliveries
            or self._promised_dirty
            or self._accepted_dirty
            or self._decided_new
        )

    def ready(self) -> Ready:
        accepted: tuple[AcceptedEntry, ...] = ()
        if self._accepted_dirty and self.accepted is not None:
            accepted = (AcceptedEntry(SLOT, *self.accepted),)
        decided: tuple[DecidedEntry, ...] = ()
        if self._decided_new and self.decision is not None:
            decided = (DecidedEntry(SLOT, self.decision),)
        return Ready(
            promised=self.promised if self._promised_dirty else None,
            accepted=accepted,
            decided=decided,
            messages=tuple(self._out),
            deliveries=tuple(self._deliveries),
            must_sync=self._promised_dirty or self._accepted_dirty,
        )

    def advance(self, ready: Ready) -> None:
        """Everything in ``ready`` was handled; forget it (new effects stay)."""
        del self._out[: len(ready.messages)]
        del self._deliveries[: len(ready.deliveries)]
        if ready.promised is not None and ready.promised == self.promised:
            self._promised_dirty = False
        if (
            ready.accepted
            and self.accepted is not None
            and ready.accepted[-1].ballot == self.accepted[0]
        ):
            self._accepted_dirty = False
        if ready.decided:
            self._decided_new = False
