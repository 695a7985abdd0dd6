"""What a leader keeps while it leads: open slots, the proposal queue, heartbeats, check-quorum.

Theory of operation (multipaxos.py has the protocol): a replica whose phase
1 succeeded for ballot ``b`` creates one ``Leadership`` and runs phase 2
only, until it steps down (a higher ballot, a lost slot, no quorum heard)
and drops the object: nothing of it outlives the ballot, so a later
leadership of the same replica never sees a stale slot or proposal.

- Pipelining: at most ``window_slots_max`` slots above the decided prefix
  are open (proposed in ``b``, not yet learned chosen).
- Batching: proposals wait in ``queue`` (at most ``queue_max``: more are
  refused and their origin retries) and are cut into batches of at most
  ``batch_count_max`` proposals and ``batch_bytes_max`` bytes, the leader's
  clock stamp first (only leaders stamp: the log's time is never a
  proposer's).
- Every open slot keeps the distinct acceptors that accepted it; those that
  have not get the ``Accept`` again every ``accept_retry_ticks``.
- Heartbeats carry the commit watermark every ``heartbeat_ticks`` (and at
  once when the prefix grew, ``commit_sent``); a leader that heard from no
  quorum within two election timeouts steps down (check-quorum).

- Membership (membership.py): slot ``s`` is proposed to, and counted among,
  the voters of ``config_for(s)`` only. The leader opens ``s`` only while
  (a) it is a voter of ``config_for(s)``, and (b) the voters that promised
  its ballot (``promised``) hold a quorum of ``config_for(s)``; when a new
  configuration's slots come into the window without (b), it sends
  ``Prepare`` (the same ballot) to that configuration's voters that have
  not promised, and proposes in each slot the highest-ballot value their
  promises report (``reports``, P2c) before any new batch. A decided change
  is followed by no-ops up to its effective slot, so it takes effect
  promptly on an idle cluster; at most one change is proposed at a time
  (``change``, ``change_slot``).

Invariants: every open slot is above the decided prefix when opened and
below ``next_slot``, and within ``membership.delay`` of the decided prefix
(``window_slots_max <= delay``); a proposal is queued at most once
(``queued``) and never once delivered.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from . import rules
from .log import DecidedLog
from .membership import Configuration
from .messages import Accept, Accepted, Forward, Heartbeat, Message, Prepare, Promise
from .types import CLOCK_STAMP_BYTES, NOOP, Ballot, Batch, Proposal, ProposalId, clock_stamp

__all__ = ["Leadership", "OpenSlot"]


@dataclass(slots=True)
class OpenSlot:
    """A slot the leader proposed in its ballot and not yet learned chosen."""

    value: Batch
    tally: rules.Tally
    sent_at: int
    #: The voters of ``config_for(slot)``: the only acceptors asked and counted.
    voters: frozenset[str]


class Leadership:
    """The state of one ballot's leadership (the module docstring has the rules)."""

    __slots__ = (
        "_accept_retry_ticks",
        "_batch_bytes_max",
        "_batch_count_max",
        "_checked",
        "_heartbeat_ticks",
        "_instance",
        "_log",
        "_me",
        "_queue_max",
        "_quorum_window",
        "_send",
        "_window_slots_max",
        "acked",
        "ballot",
        "change",
        "change_slot",
        "commit_sent",
        "heard",
        "heartbeat_due",
        "next_slot",
        "open",
        "prepare_due",
        "promised",
        "queue",
        "queued",
        "quorum_check_due",
        "recovered_through",
        "reports",
    )

    def __init__(
        self,
        *,
        ballot: Ballot,
        now: int,
        me: str,
        promised: set[str],
        instance: str,
        log: DecidedLog,
        send: Callable[[str, Message], None],
        window_slots_max: int,
        batch_count_max: int,
        batch_bytes_max: int,
        queue_max: int,
        heartbeat_ticks: int,
        accept_retry_ticks: int,
        election_timeout_ticks: int,
    ) -> None:
        self.ballot = ballot
        self._me = me
        self._instance = instance
        self._log = log
        self._send = send
        self._window_slots_max = window_slots_max
        self._batch_count_max = batch_count_max
        self._batch_bytes_max = batch_bytes_max
        self._queue_max = queue_max
        self._heartbeat_ticks = heartbeat_ticks
        self._accept_retry_ticks = accept_retry_ticks
        self._quorum_window = 2 * election_timeout_ticks
        #: The next slot to open (the caller sets it once phase 1's slots are open).
        self.next_slot = 1
        #: The highest slot phase 1 found accepted or decided (set with
        #: ``next_slot``): a read index never goes below it (core/reads.py).
        self.recovered_through = 0
        self.open: dict[int, OpenSlot] = {}
        self.queue: deque[Proposal] = deque()
        self.queued: set[ProposalId] = set()
        self.heartbeat_due = 0
        #: The commit watermark last sent (in an Accept or a Heartbeat).
        self.commit_sent = 0
        #: The tick each peer was last heard answering this ballot.
        self.heard: dict[str, int] = {}
        self.quorum_check_due = now + self._quorum_window
        #: Acceptors that promised ``ballot``, and what later promises (from
        #: voters of a new configuration) reported for slots not yet opened.
        self.promised = promised
        self.reports: dict[int, list[tuple[Ballot, Batch]]] = {}
        self.prepare_due = now
        #: The decided prefix each member last reported (HeartbeatReply): learners' lag.
        self.acked: dict[str, int] = {}
        #: A membership change waiting for a slot, and the slot holding ours.
        self.change: Proposal | None = None
        self.change_slot = 0
        #: The last configuration ``_may_propose`` judged, and its verdict.
        self._checked: tuple[Configuration, bool] | None = None

    def enqueue(self, proposal: Proposal) -> bool:
        """Queue ``proposal`` for a slot; False when the queue is full (the origin retries)."""
        pid = proposal.id
        if pid in self.queued or self._log.is_delivered(pid):
            return True
        if len(self.queue) >= self._queue_max:
            return False
        self.queue.append(proposal)
        self.queued.add(pid)
        return True

    def enqueue_forward(self, m: Forward) -> int:
        """Queue a follower's forwarded proposals; how many were refused."""
        refused = 0
        for p in m.proposals:
            if p.id.origin != m.sender or not self.enqueue(p):
                refused += 1
        return refused

    def fill_window(self, now: int) -> None:
        """Cut batches from the queue into new slots while the window has room."""
        queue = self.queue
        count_max = self._batch_count_max
        bytes_max = self._batch_bytes_max
        log = self._log
        is_delivered = log.is_delivered
        while self.next_slot <= log.decided_through + self._window_slots_max:
            slot = self.next_slot
            if not self._may_open(slot, now):
                break
            reported = self.reports.pop(slot, None)
            special = self._special(slot, reported)
            if special is not None:
                self.next_slot += 1
                self.open_slot(slot, special, now)
                continue
            if not queue:
                break
            # The leader's clock stamp goes first. Without a clock, none.
            est = log.clock_estimate_ms
            batch: list[Proposal] = [clock_stamp(est)] if est else []
            stamped = len(batch)
            size = CLOCK_STAMP_BYTES * stamped
            while queue and len(batch) - stamped < count_max:
                p = queue[0]
                pid = p.id
                if is_delivered(pid):
                    queue.popleft()
                    self.queued.discard(pid)
                    continue
                cost = len(p.payload) + 16 + len(pid.origin)
                if len(batch) > stamped and size + cost > bytes_max:
                    break
                queue.popleft()
                batch.append(p)
                size += cost
            if len(batch) == stamped:
                break
            self.next_slot += 1
            self.open_slot(slot, tuple(batch), now)

    def _may_open(self, slot: int, now: int) -> bool:
        """Whether we may propose in ``slot``: a voter there, with a quorum of its voters promised.

        Without the quorum, ask the voters that have not promised (the same
        ballot), at most every ``accept_retry_ticks``.
        """
        if self._may_propose(slot):
            return True
        config = self._log.membership.config_for(slot)
        if self._me in config.voters and now >= self.prepare_due:
            self.prepare_due = now + self._accept_retry_ticks
            msg = Prepare(self._instance, self._me, self.ballot, slot)
            for dst in sorted(config.voters - self.promised):
                self._send(dst, msg)
        return False

    def _may_propose(self, slot: int) -> bool:
        config = self._log.membership.config_for(slot)
        checked = self._checked
        if checked is None or checked[0] is not config:
            # (Asked at every has_ready: judged once per configuration and promise.)
            checked = self._checked = (
                config,
                self._me in config.voters and config.is_quorum(self.promised),
            )
        return checked[1]

    def _special(self, slot: int, reported: list[tuple[Ballot, Batch]] | None) -> Batch | None:
        """What ``slot`` holds before any new batch: a reported value (P2c), a change, a no-op."""
        if reported:
            best = rules.highest_accepted(reported)
            assert best is not None
            return best[1]
        if self.change is not None:
            change, self.change = self.change, None
            self.change_slot = slot
            return (change,)
        pending = self._log.membership.pending(self._log.decided_through)
        if not self.queue and pending is not None and slot < pending.effective_slot:
            return NOOP  # let a decided change take effect on an idle cluster
        return None

    def on_promise(self, m: Promise) -> None:
        """A promise of our ballot from a voter asked later (``_may_open``)."""
        self.promised.add(m.sender)
        self._checked = None
        for e in m.entries:
            if not e.decided and e.slot >= self.next_slot:
                self.reports.setdefault(e.slot, []).append((e.ballot, e.value))

    def on_accepted(self, m: Accepted, now: int) -> Batch | None:
        """Count a vote of our ballot (``m.ballot == ballot``); the value once ``m.slot`` is chosen.

        Only the voters of ``config_for(m.slot)`` count (``OpenSlot.voters``);
        every vote counts as hearing its sender (check-quorum).
        """
        self.heard[m.sender] = now
        o = self.open.get(m.slot)
        if o is not None and m.sender in o.voters and o.tally.add(m.sender):
            return o.value
        return None

    def open_slot(self, slot: int, value: Batch, now: int) -> None:
        """Phase 2a for ``slot``: propose ``value`` in our ballot to every acceptor."""
        decided_through = self._log.decided_through
        assert slot > decided_through, (slot, decided_through)
        config = self._log.membership.config_for(slot)
        self.open[slot] = OpenSlot(value, rules.Tally(config.quorum), now, config.voters)
        msg = Accept(self._instance, self._me, self.ballot, slot, value, decided_through)
        for dst in sorted(config.voters):
            self._send(dst, msg)
        self.commit_sent = max(self.commit_sent, decided_through)

    def lost(self, slot: int, value: Batch) -> bool:
        """``slot`` was decided as ``value``: did a higher ballot choose it? (Then step down.)

        Someone with a higher ballot chose a value here (another than ours,
        or above everything we proposed), so our ballot is stale: we must
        never propose into, nor advertise a commit covering, a slot where
        followers may hold our losing proposal.
        """
        o = self.open.pop(slot, None)
        return (o is not None and o.value != value) or (o is None and slot >= self.next_slot)

    def covers(self, slot: int) -> bool:
        """Whether a snapshot through ``slot`` reaches a slot we hold open (or above them all)."""
        return slot >= self.next_slot or bool(self.open and slot >= min(self.open))

    def tick(self, now: int) -> bool:
        """Heartbeats, Accept retries, check-quorum; False when we must step down.

        An isolated leader cannot commit anything; stepping down lets its
        clients' proposals go to a leader that can.
        """
        if now >= self.heartbeat_due:
            self.send_heartbeats(now)
        self._resend_open(now)
        if self.next_slot <= self._log.decided_through + self._window_slots_max:
            self._may_open(self.next_slot, now)  # ask new voters for promises
        if now >= self.quorum_check_due:
            window = self._quorum_window
            self.quorum_check_due = now + window
            newest = self._log.membership.newest
            alive = {p for p, t in self.heard.items() if t > now - window} | {self._me}
            if not newest.is_quorum(alive):
                return False
        return True

    def _resend_open(self, now: int) -> None:
        due = now - self._accept_retry_ticks
        for slot, o in self.open.items():
            if o.sent_at <= due:
                o.sent_at = now
                msg = Accept(
                    self._instance,
                    self._me,
                    self.ballot,
                    slot,
                    o.value,
                    self._log.decided_through,
                )
                for dst in sorted(o.voters - o.tally.senders):
                    if dst != self._me:
                        self._send(dst, msg)

    def heartbeat_sent(self, now: int, commit: int) -> None:
        """A message that counts as a heartbeat (a read probe) announced ``commit``."""
        self.heartbeat_due = now + self._heartbeat_ticks
        self.commit_sent = max(self.commit_sent, commit)

    def send_heartbeats(self, now: int) -> None:
        self.heartbeat_due = now + self._heartbeat_ticks
        self.commit_sent = self._log.decided_through
        msg = Heartbeat(self._instance, self._me, self.ballot, self.commit_sent)
        log = self._log
        members = set().union(
            *(c.members for c in log.membership.governing_from(log.decided_through + 1))
        )
        for dst in sorted(members - {self._me}):
            self._send(dst, msg)

    def has_work(self) -> bool:
        """Whether ``ready`` has something to send: a commit to announce, or slots to open."""
        decided_through = self._log.decided_through
        if self.commit_sent < decided_through:
            return True
        if self.next_slot > decided_through + self._window_slots_max:
            return False
        if not self._may_propose(self.next_slot):
            return False  # tick() asks the missing voters (fill_window)
        if self.queue or self.change is not None or self.next_slot in self.reports:
            return True
        pending = self._log.membership.pending(decided_through)
        return pending is not None and self.next_slot < pending.effective_slot
