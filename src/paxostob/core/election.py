"""Who leads, as this replica sees it, and how it comes to lead or stops.

Theory of operation (multipaxos.py has the protocol and argues pre-vote):

- A follower follows the owner of the highest ballot it accepts messages of
  (``follow``); hearing nobody for a randomized election timeout, it asks
  its peers whether it may campaign (pre-candidate: ``PreVote``, unless
  ``LogConfig.pre_vote`` is off) and campaigns once a quorum said yes.
- A candidate runs phase 1 for every slot above its decided prefix with a
  ballot above every ballot it saw (``campaign``), and leads once a quorum
  of distinct acceptors promised it: it learns the slots a promise reports
  decided, re-proposes the highest-ballot value of every other open slot
  (P2c), fills gaps with no-ops, and creates a ``Leadership``.
- A leader steps down on a higher ballot (a ``Nack``, a ``Prepare`` it
  promised), on check-quorum, or when a slot it holds open was chosen by
  another ballot; its ``Leadership`` is dropped with it.

Membership (membership.py): only a voter of the newest configuration it
knows campaigns, asks for pre-votes, or has its pre-votes counted;
pre-vote and check-quorum count the newest configuration's voters (both
are liveness rules). Phase 1 is safety: a candidate sends ``Prepare`` to
the voters of every configuration governing a slot above its decided
prefix (the one in effect and a decided one not yet in effect), and leads
only with a quorum of *each*, so every slot it will propose in has a
quorum of its own acceptor set behind the ballot. It leads only if every
slot the promises report lies within ``delay`` of its decided prefix
(after learning what the promises report decided): otherwise it does not
know those slots' configurations, and it catches up first.

Invariants: ``leading`` is set exactly while ``role`` is LEADER, and then
``leader`` is this replica and ``leading.ballot == ballot``; a new ballot
is above every ballot this replica promised, owned, followed or heard of
(``highest_seen``), and carries this replica's id.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from . import rules
from .acceptor import Acceptor
from .catchup import Catchup
from .config import LogConfig, Role
from .leadership import Leadership
from .lease import Guard
from .log import DecidedLog
from .messages import Message, Nack, Prepare, PreVote, PreVoteReply, Promise
from .outbox import Outbox
from .proposals import OwnProposals
from .types import NOOP, ZERO_BALLOT, Ballot, Batch, stamp_ms

__all__ = ["Election"]


class Election:
    """The replica's role and the transitions between roles (the module docstring has them)."""

    __slots__ = (
        "_acceptor",
        "_catchup",
        "_config",
        "_decide",
        "_guard",
        "_instance",
        "_log",
        "_me",
        "_proposals",
        "_rng",
        "_send",
        "ballot",
        "deferred",
        "due",
        "elections",
        "highest_seen",
        "leader",
        "leader_ballot",
        "leader_heard_at",
        "leading",
        "pre_ballot",
        "pre_votes",
        "pre_votes_lost",
        "prepare_due",
        "promises",
        "role",
    )

    def __init__(
        self,
        *,
        me: str,
        instance: str,
        rng: random.Random,
        config: LogConfig,
        acceptor: Acceptor,
        log: DecidedLog,
        proposals: OwnProposals,
        catchup: Catchup,
        outbox: Outbox,
        decide: Callable[[int, Batch], None],
        now: int,
        guard: Guard | None = None,
    ) -> None:
        self._me = me
        self._instance = instance
        self._rng = rng
        self._config = config
        self._acceptor = acceptor
        self._log = log
        self._proposals = proposals
        self._catchup = catchup
        self._send: Callable[[str, Message], None] = outbox.send
        self._decide = decide
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        #: The ballot of the leader we follow, and the highest ballot heard of.
        self.leader_ballot: Ballot = ZERO_BALLOT
        self.highest_seen: Ballot = ZERO_BALLOT
        #: The election timer: campaign (or ask to) at this tick.
        self.due = now + self._timeout()
        #: Our own ballot (the last we campaigned with).
        self.ballot: Ballot = ZERO_BALLOT
        #: The tick we last heard the leader we follow (Accept or Heartbeat).
        self.leader_heard_at = -config.election_timeout_ticks
        # Pre-candidate: the ballot we asked about, and who said yes.
        self.pre_ballot: Ballot | None = None
        self.pre_votes: set[str] = set()
        self.elections = 0
        self.pre_votes_lost = 0
        # Candidate: the promises for ``ballot``, and when to ask the rest again.
        self.promises: dict[str, Promise] = {}
        self.prepare_due = 0
        #: Leader: the state of our leadership, None unless ``role`` is LEADER.
        self.leading: Leadership | None = None
        #: With leases: our guard, and whether a campaign waits for it to lapse
        #: (core/reads.py, 'Leases': we may have vouched for a leader's lease).
        self._guard = guard
        self.deferred = False

    def _voters(self) -> frozenset[str]:
        """The voters of the newest configuration we know (liveness rules use them)."""
        return self._log.membership.newest.voters

    def _may_lead(self) -> bool:
        """A voter of every configuration governing a slot above our prefix.

        Not a learner being promoted before its promotion takes effect (it
        could open none of the slots before it), nor a member being removed.
        """
        configs = self._log.membership.governing_from(self._log.decided_through + 1)
        return all(self._me in c.voters for c in configs)

    def _timeout(self) -> int:
        t = self._config.election_timeout_ticks
        history = self._log.membership
        if len(history.newest.voters) == 1 and all(
            c.voters == {self._me} for c in history.governing_from(self._log.decided_through + 1)
        ):
            return 1  # nobody to wait for (not even the voters of a configuration ending)
        return self._rng.randint(t, 2 * t)

    def tick(self, now: int) -> None:
        """A leader's heartbeats and check-quorum; a follower's or candidate's timers."""
        if self.leading is not None:
            if not self.leading.tick(now):
                self.step_down(now, None)
        elif self.deferred and self._guard is not None and not self._guard.refuses(self._me):
            self.deferred = False
            self.campaign(now)
        elif now >= self.due:
            self._on_timeout(now)
        elif self.role is Role.CANDIDATE and now >= self.prepare_due:
            self._send_prepare(now, only_missing=True)

    # ======================================================== pre-candidate

    def _on_timeout(self, now: int) -> None:
        voters = self._voters()
        if not self._may_lead():
            self.due = now + self._timeout()  # a learner or a removed member never campaigns
            return
        peers = sorted(voters - {self._me})
        if not self._config.pre_vote or not peers:
            self.campaign(now)
            return
        if self.pre_ballot is not None:
            self.pre_votes_lost += 1  # the last round found no quorum in time
        top = max(self._acceptor.promised, self.ballot, self.highest_seen, self.leader_ballot)
        # Stop following (and forwarding to) the leader we no longer hear,
        # as a candidate would, but raise nothing: nobody promises anything.
        self.role = Role.FOLLOWER
        self.leader = None
        self.promises = {}
        self.pre_ballot = ballot = Ballot(top.round + 1, self._me)
        self.pre_votes = {self._me}
        self.due = now + self._timeout()
        msg = PreVote(self._instance, self._me, ballot, self._log.decided_through)
        for dst in peers:
            self._send(dst, msg)

    def on_pre_vote(self, m: PreVote, now: int) -> None:
        """Would we let ``m.sender`` campaign now? (multipaxos.py argues both rules.)"""
        if m.sender in self._log.membership.newest.removed:
            granted = False  # removed: it must not campaign
        elif self.role is Role.LEADER:
            granted = False  # we lead: check-quorum steps us down once we cannot
        elif (
            self.leader is not None
            and now - self.leader_heard_at < self._config.election_timeout_ticks
        ):
            granted = False  # our leader spoke recently
        else:
            # Not behind us, or we could not lead ourselves (a learner being
            # promoted, a member being removed): refusing then could leave no
            # one able to campaign. An id we do not know as a voter may be one
            # added in slots we have not learned yet: pre-vote is liveness
            # only, and the candidate's phase 1 still needs a quorum of every
            # configuration it governs.
            granted = m.decided_through >= self._log.decided_through or not self._may_lead()
        reply = PreVoteReply(self._instance, self._me, m.ballot, granted, self._acceptor.promised)
        self._send(m.sender, reply)

    def on_pre_vote_reply(self, m: PreVoteReply, now: int) -> bool:
        """Count a yes; False when the reply is for no round of ours (ignored)."""
        self.highest_seen = max(self.highest_seen, m.promised)
        if m.ballot != self.pre_ballot or self.role is not Role.FOLLOWER or self.leader is not None:
            return False  # an older round, or we follow someone again
        if not m.granted:
            return True
        self.pre_votes.add(m.sender)
        if self._log.membership.newest.is_quorum(self.pre_votes):
            self.campaign(now)
        return True

    # ============================================================ candidate

    def campaign(self, now: int) -> None:
        """Phase 1 for every slot above our decided prefix, with a fresh ballot."""
        if not self._may_lead():
            return  # a learner or a removed member never leads
        guard = self._guard
        if guard is not None and guard.refuses(self._me):
            # We may have vouched for the lease of the leader we guard: no
            # ballot of ours until the guard lapses (then ``tick`` campaigns).
            # Our own Prepare must never be refused instead: a leader whose
            # own promise was not saved could reuse its ballot after a crash.
            self.deferred = True
            return
        self.deferred = False
        top = max(self._acceptor.promised, self.ballot, self.highest_seen, self.leader_ballot)
        # Phase 1 again (a stalled catch-up, or Campaign) leaves leadership
        # as a step-down does, or the proposals of our open slots would stay
        # "queued" forever should another leader fill those slots.
        self.leading = None
        self.ballot = Ballot(top.round + 1, self._me)
        self.elections += 1
        self.pre_ballot = None
        self.role = Role.CANDIDATE
        self.leader = None
        self.promises = {}
        self.due = now + self._timeout()
        self._send_prepare(now, only_missing=False)

    def _send_prepare(self, now: int, *, only_missing: bool) -> None:
        self.prepare_due = now + self._config.accept_retry_ticks
        first = self._log.decided_through + 1
        msg = Prepare(self._instance, self._me, self.ballot, first)
        configs = self._log.membership.governing_from(first)
        for dst in sorted(frozenset().union(*(c.voters for c in configs))):
            if not (only_missing and dst in self.promises):
                self._send(dst, msg)

    def on_promise(self, m: Promise, now: int) -> bool:
        """Count a promise; False when it is for no phase 1 of ours (ignored)."""
        lead = self.leading
        if lead is not None and m.ballot == lead.ballot:
            # A voter of a new configuration, asked while we lead.
            for e in m.entries:
                if e.decided:
                    self._decide(e.slot, e.value)
            if self.leading is lead:
                lead.on_promise(m)
            return True
        if self.role is not Role.CANDIDATE or m.ballot != self.ballot:
            return False
        self.promises[m.sender] = m
        if self._has_quorums():
            self._become_leader(now)
        return True

    def _has_quorums(self) -> bool:
        """A quorum of every configuration governing a slot above our prefix promised."""
        configs = self._log.membership.governing_from(self._log.decided_through + 1)
        ids = set(self.promises)
        return all(c.is_quorum(ids) for c in configs)

    def _become_leader(self, now: int) -> None:
        log = self._log
        promises = list(self.promises.values())
        # Slots every acceptor of some promise knows decided: learn, never propose.
        for p in promises:
            for e in p.entries:
                if e.decided:
                    self._decide(e.slot, e.value)
        max_decided = max([log.decided_through] + [p.decided_through for p in promises])
        log.known_commit = max(log.known_commit, max_decided)
        reports: dict[int, list[tuple[Ballot, Batch]]] = {}
        for p in promises:
            for e in p.entries:
                if not e.decided and e.slot > max_decided:
                    reports.setdefault(e.slot, []).append((e.ballot, e.value))
        top = max([max_decided, *reports, max(log.entries, default=0)])
        if self.role is not Role.CANDIDATE:
            return  # learning the decided slots made us step down
        if not self._has_quorums():
            # What we learned brought a configuration whose quorum has not promised.
            self._send_prepare(now, only_missing=True)
            return
        if top > log.decided_through + log.membership.delay:
            # We do not know the configurations of the slots to re-propose
            # (the alpha rule): catch up, the timer campaigns again.
            self.ask_catchup(now)
            return
        self.promises = {}
        self.role = Role.LEADER
        self.leader = self._me
        self.leader_ballot = self.ballot
        cfg = self._config
        self.leading = lead = Leadership(
            ballot=self.ballot,
            now=now,
            me=self._me,
            promised={p.sender for p in promises},
            instance=self._instance,
            log=log,
            send=self._send,
            window_slots_max=cfg.window_slots_max,
            batch_count_max=cfg.batch_count_max,
            batch_bytes_max=cfg.batch_bytes_max,
            queue_max=cfg.queue_max,
            heartbeat_ticks=cfg.heartbeat_ticks,
            accept_retry_ticks=cfg.accept_retry_ticks,
            election_timeout_ticks=cfg.election_timeout_ticks,
        )
        # Never reuse a slot we know decided, even one above every report.
        # P2c per open slot: the highest-ballot value reported, else a no-op.
        for slot in range(max_decided + 1, top + 1):
            if slot in log.entries:
                continue
            best = rules.highest_accepted(reports.get(slot, ()))
            lead.open_slot(slot, best[1] if best is not None else NOOP, now)
        lead.next_slot = top + 1
        lead.recovered_through = top
        # Our stamps continue from every stamp we know the log may hold.
        known = max(
            (
                t
                for value in (*log.entries.values(), *(o.value for o in lead.open.values()))
                for p in value[:1]
                if (t := stamp_ms(p)) is not None
            ),
            default=0,
        )
        est = max(log.clock_estimate_ms, log.clock_ms, known)
        if est == 0 and log.wall_ms is not None and log.may_start_clock(leading=True):
            est = log.wall_ms
        log.clock_estimate_ms = est
        # Everything we proposed ourselves and have not delivered goes first.
        for proposal in self._proposals.pending.values():
            lead.enqueue(proposal)
        self._proposals.to_forward.clear()
        lead.send_heartbeats(now)
        if log.decided_through < log.known_commit:
            self.ask_catchup(now)

    def ask_catchup(self, now: int) -> None:
        """Ask for the slots we miss; a leader whose catch-up is stuck runs phase 1 again."""
        if not self._catchup.ask(now, self.leader, leading=self.role is Role.LEADER):
            self.campaign(now)

    # ======================================================= following, stepping down

    def step_down(self, now: int, leader: str | None) -> None:
        """Become a follower (of ``leader``, if known).

        Our leadership (open slots, queue) is dropped: the next leader
        re-proposes what was accepted; our own proposals stay pending
        (re-forwarded), and other origins re-forward theirs.
        """
        self.leading = None
        self.role = Role.FOLLOWER
        self.leader = leader
        self.promises = {}
        self.pre_ballot = None
        self.due = now + self._timeout()
        # Our own undelivered proposals go to whoever leads next (due now).
        self._proposals.all_due(now)

    def follow(self, ballot: Ballot, now: int) -> None:
        """``ballot``'s owner leads: reset the election timer, forward to it."""
        if ballot.node_id == self._me:
            return
        following = self.role is Role.FOLLOWER and self.leader is not None
        if following and ballot < self.leader_ballot:
            return  # an older leader than the one we follow
        if not following or self.leader != ballot.node_id:
            self.step_down(now, ballot.node_id)
            # A campaign put off for a lease was asked against the leader we
            # followed then; run once another leads, it would depose a live
            # leader without a pre-vote.
            self.deferred = False
        self.leader_ballot = max(self.leader_ballot, ballot)
        self.leader_heard_at = now
        self.due = now + self._timeout()

    def promised(self, m: Prepare, now: int) -> None:
        """Our acceptor promised ``m.ballot``: a peer campaigning with it may finish."""
        self.highest_seen = max(self.highest_seen, m.ballot)
        if m.sender != self._me:
            if self.role is not Role.FOLLOWER or self.leader is not None:
                self.step_down(now, None)
            self.pre_ballot = None  # and not start a phase 1 of our own
            self.due = now + self._timeout()

    def on_nack(self, m: Nack, now: int) -> None:
        self.highest_seen = max(self.highest_seen, m.promised)
        if self.role is not Role.FOLLOWER and m.ballot == self.ballot and m.promised > self.ballot:
            self.step_down(now, None)
