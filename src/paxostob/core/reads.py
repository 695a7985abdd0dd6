"""ReadIndex: linearizable reads with no log entry, confirmed by one round of probes.

Theory of operation (Raft's ReadIndex, Ongaro's thesis §6.4, in Paxos terms;
docs/design.md, 'The key-value store and reads'). A read must see every
value chosen before it was asked for. Instead of proposing an entry and
waiting for it, the node asking (``ReadIndex(request_id)``) gets a *read
index*, a slot, and runs the read on its own state once it has applied the
log through that slot:

1. **The index.** The leader of ballot ``b`` takes
   ``max(decided_through, recovered_through)``: every slot it knows decided,
   and every slot its phase 1 found accepted (``Leadership.recovered_through``).
   A value chosen in a ballot below ``b`` was accepted by a quorum, which
   meets the quorum that promised ``b``, so phase 1 re-proposed it at or
   below ``recovered_through``; a value chosen in ``b`` was learned chosen by
   this leader first (only it counts ``b``'s votes), so it is under
   ``decided_through`` before anyone could have applied it.
2. **The round.** The leader may have been deposed without knowing it: a
   higher ballot may have chosen values since. So it sends ``ReadProbe(b,
   round)`` to its peers (a heartbeat that must be answered) and hands out
   the indexes of that round only once a quorum, itself included, answered
   ``ReadProbeReply(b, round)`` (counted by ``rules.is_quorum``; with a
   membership change decided and not yet in effect, a quorum of the voters
   of each configuration governing the slots above the leader's decided
   prefix, as phase 1 needs). A peer
   answers only while it promised nothing above ``b``. Any ballot above
   ``b`` that chose a value needed a quorum of promises, and that quorum
   meets the round's in a peer that promised after answering, that is after
   the read arrived: the value was chosen after the read began, which the
   read need not see. A reply to a later round confirms every earlier one
   (it was sent after them). Replies to another ballot, or an earlier
   leadership, count for nothing; a leadership that ends drops its rounds
   (the node's own reads are asked again; a follower's asks are retried
   by that follower).
3. **Followers** ask the leader (``ReadIndexAsk``), which puts the ask in
   its next round and answers ``ReadIndexGrant(index)`` once it is
   confirmed. An ask unanswered after ``retry_ticks`` goes again to whoever
   leads then; any grant for an open ask is valid, whoever sent it (it was
   confirmed after the ask was sent).
4. **Serving.** A read with its index leaves in ``Ready.reads`` once the
   node's decided prefix reaches the index: the deliveries of that Ready
   and every earlier one take the application's state through the index.
   A read not served within ``timeout_ticks`` leaves in
   ``Ready.reads_failed``, so the core keeps nothing a caller gave up on.

No save is waited for: a probe vouches for nothing durable (an acceptor
that lost an unsynced promise in a crash only promised less), and the
state read is the decided log's, chosen by a quorum of durable votes.

Batching: every read asked between two ``Ready``s shares one round (or one
ask), so many concurrent reads cost one probe and one reply per peer. A
round's probe carries the commit watermark and counts as the leader's
heartbeat.

Leases (``LogConfig.leases``, off by default; core/lease.py has the pieces).
A leader whose lease holds serves a read at ``read_index(lead, log)`` at
once, with no round. The rule:

1. **The guard** (the one acceptor rule that changes). A node with leases
   that hears the leader it follows (an ``Accept``, ``Heartbeat`` or
   ``ReadProbe`` of a ballot ``b`` it admits, from ``b``'s owner, ``b`` not
   below the ballot it guards already) refuses every ``Prepare`` of a
   ballot above its promise from any other node than ``b``'s owner
   (``Campaign`` and catch-up elections skip pre-vote, so pre-vote alone
   guards nothing), and starts no phase 1 of its own (a ``Campaign``, its
   timer or a stuck catch-up waits, ``Election.deferred``; its own
   ``Prepare`` is never refused instead: its promise must be saved before
   the ``Prepare`` leaves, or a crash could let it reuse the ballot: the
   simulator found that), until ``guard_ms`` (the shortest
   election timeout, in ms) of its own monotonic clock have passed since
   a reading taken at or after the message arrived: the guard is
   *pending* on receipt and ``until = next reading + guard_ms`` (the
   core's clock only moves on ``Tick``, and a stalled loop steps messages
   long after the last one). Refused means dropped, unanswered: the
   candidate retries without raising its ballot. A node (re)starts with
   the guard on against everybody for ``guard_ms`` from its first reading:
   it may have vouched for a lease before a crash erased that memory.
2. **The lease.** A ``ReadProbeReply`` carries ``guard_ms`` when its
   sender guards the probe's ballot (0 otherwise: no leases, or it guards
   a newer leader). When the replies of round ``r`` from guarding voters,
   with the leader, make a quorum of every configuration ahead (as a
   round does), ``lease_until = s_r + floor(g * (1 - rho) / (1 + rho)) -
   2``, where ``s_r`` is the leader's reading when it sent round ``r`` (the
   last tick's: at or before the real send), ``g`` the smallest
   ``guard_ms`` counted and ``rho`` = ``lease_drift_max``; the 2 ms cover
   readings in whole ms. A read is served from the lease only if a reading
   taken after it was asked (``ReadIndex.elapsed_ms``, added to the last
   tick's) is below ``lease_until``: a stale tick reading would let a
   leader whose loop stalled serve after its lease ended, and only while
   the round's guarding voters are a quorum of every configuration ahead
   *at that reading*: a change decided since the round may have put a
   configuration ahead whose quorums miss them. A leader with
   leases sends a round at every heartbeat, so the lease stays fresh idle
   or busy. The lease belongs to one ballot's leadership (phase 1 done),
   and ends with it.
3. **Why it is safe.** Let ``T1`` be the first real time a ballot above
   ``b`` has a quorum of promises. Before ``T1`` nobody leads such a
   ballot, so nobody sends an ``Accept``, ``Heartbeat`` or ``ReadProbe`` of
   one: every voter that answered round ``r`` guarding still guards ``b``
   (renewed, never moved). A higher ballot can only choose a new value in
   a slot this leader has not decided, whose configuration is one of those
   ahead when the read is checked, so its quorum of promises includes a
   quorum of that configuration, which the lease's voters are (rule 2).
   That quorum meets the lease's quorum in a voter
   ``N`` (or in the leader itself, which stops leading before it promises
   any higher ballot, and so stops serving from the lease). ``N`` promised
   after its guard lapsed (its own campaign waited for that too), unless
   the candidate was ``b``'s owner, which gave up ``b`` before campaigning
   again. ``N``'s guard lasts ``g`` of its
   clock from a reading at or after the probe arrived, after ``s_r``; its
   clock runs at most ``1 + rho`` times real time, so ``T1 >= s_r +
   g / (1 + rho)``. The leader's clock runs at least ``1 - rho`` times
   real time, so the lease ends by real time ``s_r + g (1 - rho) / (1 +
   rho) / (1 - rho) = s_r + g / (1 + rho) <= T1``. A read served from the
   lease was checked after it was asked and before the lease ended, so
   before ``T1``: every value of a higher ballot is chosen after ``T1``,
   after the read began, and need not be seen; values of ``b`` and below
   are under the read index (rule 1 of ReadIndex). A restart only
   lengthens ``N``'s guard, and a voter without leases never counts (mixed clusters
   fall back to rounds).
4. **Followers** still ask the leader. A runtime with leases steps each
   ``Receive`` with a reading taken after the message arrived
   (``Receive.elapsed_ms``: the driver reads its clock once per batch of
   its inbox, after the batch arrived); a leader whose lease holds at that
   reading grants the ask at once (``grant_leased``), with no round: the
   grant is confirmed after the ask was sent, as a round's is. Otherwise
   the ask joins the next round.
5. **What it assumes.** Every monotonic clock's rate stays within
   ``rho`` of real time (5% by default: NTP slews by at most 0.05%). The
   runtime's clock counts a suspended machine (node/driver.py reads
   CLOCK_BOOTTIME where there is one; CLOCK_MONOTONIC stops while a VM or
   laptop is suspended, and a leader suspended with a lease would resume
   inside it). A process paused between the lease check and the reply only
   delays the reply, which linearizability allows: the read took effect at
   the check. A clock that jumps or a VM migrated with a stale clock breaks
   the bound; use ReadIndex there (the default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import rules
from .leadership import Leadership
from .lease import lease_ms
from .log import SEQ_BITS, DecidedLog
from .membership import Configuration
from .messages import (
    Heartbeat,
    Message,
    ReadIndexAsk,
    ReadIndexGrant,
    ReadProbe,
    ReadProbeReply,
)
from .types import Ballot

__all__ = ["Reads", "read_index"]


def read_index(lead: Leadership, log: DecidedLog) -> int:
    """The slot a read confirmed in ``lead``'s ballot must see applied (rule 1 above)."""
    return max(log.decided_through, lead.recovered_through)


@dataclass(slots=True)
class _Ask:
    """A follower's ask: its reads, whom it went to last, and when."""

    request_ids: list[int]
    sent_at: int


class Reads:
    """A replica's ``ReadIndex`` requests and, while it leads, its rounds (module docstring)."""

    __slots__ = (
        "_acked",
        "_applying",
        "_ask_seq",
        "_asks",
        "_ballot",
        "_configs",
        "_done",
        "_failed",
        "_guarded",
        "_instance",
        "_lease_ms_max",
        "_lease_voters",
        "_leases",
        "_me",
        "_probed_at",
        "_queued",
        "_retry_ticks",
        "_rounds",
        "_send",
        "_sent_ms",
        "_timeout_ticks",
        "_unsent",
        "lease_until",
        "leased",
        "mono_ms",
        "round",
        "round_at",
        "waiting",
    )

    def __init__(
        self,
        *,
        me: str,
        configs: Callable[[], list[Configuration]],
        instance: str,
        send: Callable[[str, Message], None],
        done: list[int],
        failed: list[int],
        retry_ticks: int,
        timeout_ticks: int,
        incarnation: int,
        lease_drift_max: float | None = None,
        guard_ms: int = 0,
    ) -> None:
        self._me = me
        #: The configurations governing the slots above the decided prefix
        #: (membership.py): a round needs a quorum of each.
        self._configs = configs
        self._instance = instance
        self._send = send
        self._done = done
        self._failed = failed
        self._retry_ticks = retry_ticks
        self._timeout_ticks = timeout_ticks
        #: Every read of this node not yet served or failed -> the tick it was asked.
        self.waiting: dict[int, int] = {}
        #: Reads of this node not yet in a round or an ask.
        self._unsent: list[int] = []
        #: Follower: asks in flight, by ask number.
        self._asks: dict[int, _Ask] = {}
        self.restart(incarnation)
        #: (index, request id) of reads that have their index, waiting to be applied.
        self._applying: list[tuple[int, int]] = []
        # Leader: the ballot whose rounds are kept, the last round started,
        # each unconfirmed round's reads (origin, number, index: a number
        # is a request id when the origin is us, else the origin's ask),
        # asks queued for the next round, and each peer's highest reply.
        self._ballot: Ballot | None = None
        self.round = 0
        self._rounds: dict[int, list[tuple[str, int, int]]] = {}
        self._queued: list[tuple[str, int]] = []
        self._acked: dict[str, int] = {}
        #: When the last round started; None: a round is due (its probes may be lost).
        self._probed_at: int | None = 0
        #: The tick the last round started (leases: one is due every heartbeat).
        self.round_at = 0
        # Leases ('Leases' above; None: off): the drift bound, the longest
        # lease one of our rounds can give, the monotonic reading of the
        # last Tick (set by the replica), each round's reading when sent,
        # each guarding peer's highest reply (round, guard_ms), and the
        # lease of our current leadership (None: none).
        self._leases = lease_drift_max
        self._lease_ms_max = 0 if lease_drift_max is None else lease_ms(guard_ms, lease_drift_max)
        self.mono_ms = 0
        self._sent_ms: dict[int, int] = {}
        self._guarded: dict[str, tuple[int, int]] = {}
        self.lease_until: int | None = None
        #: The guarding voters (with us) of the round that gave ``lease_until``.
        self._lease_voters: frozenset[str] = frozenset()
        #: Reads served and asks granted from the lease (no round), for INFO and tests.
        self.leased = 0

    # ------------------------------------------------------------- requests

    def restart(self, incarnation: int) -> None:
        """Number this life's asks above every earlier life's.

        A grant answers an ask by number, and one sent for an ask of an
        earlier life (granted from a round that began before this life's
        read was asked) may arrive after a restart: it must match no ask
        of this life, or a read would be served at a stale index.
        """
        self._ask_seq = incarnation << SEQ_BITS

    def read(self, request_id: int, now: int) -> None:
        """``ReadIndex(request_id)``: routed at the next ``flush``."""
        if request_id in self.waiting:
            return  # asked twice: one answer
        self.waiting[request_id] = now
        self._unsent.append(request_id)

    def read_leased(
        self, request_id: int, now: int, fresh_ms: int, lead: Leadership | None, log: DecidedLog
    ) -> bool:
        """Serve ``ReadIndex(request_id)`` from our lease, with no round; False: no lease holds.

        ``fresh_ms`` is a monotonic reading taken after the read was asked
        (never the last tick's: a loop that stalled would stretch the lease).
        """
        self._sync(lead)
        if lead is None or not self._lease_holds(fresh_ms):
            return False
        if request_id not in self.waiting:
            self.waiting[request_id] = now
            self._applying.append((read_index(lead, log), request_id))
            self.leased += 1
        return True

    def lease_round(self, now: int, lead: Leadership, log: DecidedLog) -> None:
        """A round in place of the heartbeat: the lease stays fresh, idle or busy."""
        self._sync(lead)
        self._start_round(now, lead, log)

    def has_work(self, leader: str | None, lead: Leadership | None, decided: int) -> bool:
        """Whether ``flush`` has something to do (never True when it would do nothing)."""
        if not (self._unsent or self._queued or self._rounds or self._applying):
            return False  # the common case, asked on every step: no read at all
        if self._unsent and (lead is not None or leader is not None):
            return True
        if lead is not None and (self._queued or (self._rounds and self._probed_at is None)):
            return True
        return any(index <= decided for index, _ in self._applying)

    def flush(self, now: int, leader: str | None, lead: Leadership | None, log: DecidedLog) -> None:
        """Start a round (leader) or an ask (follower) for what arrived; serve what is applied."""
        if lead is None and self._ballot is None and not (self._unsent or self._applying):
            return  # a follower with no read: nothing to route or serve
        self._sync(lead)
        if lead is not None:
            if self._unsent or self._queued or (self._rounds and self._probed_at is None):
                self._start_round(now, lead, log)
        elif leader is not None and self._unsent:
            self._ask_seq += 1
            self._asks[self._ask_seq] = _Ask(self._unsent, now)
            self._unsent = []
            self._send(leader, ReadIndexAsk(self._instance, self._me, self._ask_seq))
        self._serve(log.decided_through)

    def _start_round(self, now: int, lead: Leadership, log: DecidedLog) -> None:
        self.round += 1
        index = read_index(lead, log)
        entries = [(self._me, rid, index) for rid in self._unsent]
        entries += [(origin, ask, index) for origin, ask in self._queued]
        self._unsent = []
        self._queued = []
        self._rounds[self.round] = entries
        self._probed_at = self.round_at = now
        # The probe is the leader's heartbeat too: one frame per peer, not two.
        commit = log.decided_through
        probe = ReadProbe(self._instance, self._me, lead.ballot, self.round, commit)
        configs = self._configs()
        voters = frozenset().union(*(c.voters for c in configs))
        for dst in sorted(voters - {self._me}):
            self._send(dst, probe)
        if self._leases is not None:
            sent = self._sent_ms
            sent[self.round] = self.mono_ms  # read before the send: never later
            oldest = self.mono_ms - self._lease_ms_max
            for r in [r for r, at in sent.items() if at < oldest]:
                del sent[r]  # any lease it could give has ended
            # With leases every heartbeat is a round: learners get the
            # heartbeat itself, whose reply reports how far they are.
            learners = frozenset().union(*(c.members for c in configs)) - voters
            if learners:
                beat = Heartbeat(self._instance, self._me, lead.ballot, commit)
                for dst in sorted(learners - {self._me}):
                    self._send(dst, beat)
        lead.heartbeat_sent(now, commit)
        self._confirm()  # a single member is its own quorum

    def _sync(self, lead: Leadership | None) -> None:
        """Drop the rounds of a leadership that ended; its own reads are asked again."""
        ballot = lead.ballot if lead is not None else None
        if ballot == self._ballot:
            return
        self._ballot = ballot
        for entries in self._rounds.values():
            self._unsent += [n for origin, n, _ in entries if origin == self._me]
        self._rounds.clear()
        self._queued.clear()
        self._acked.clear()
        # A lease belongs to one ballot and ends with its leadership.
        self.lease_until = None
        self._lease_voters = frozenset()
        self._sent_ms.clear()
        self._guarded.clear()
        if lead is not None:
            # Asks of our own life as a follower: our rounds serve their reads now.
            for ask in self._asks.values():
                self._unsent += ask.request_ids
            self._asks.clear()

    # ------------------------------------------------------------- messages

    def on_message(
        self, m: ReadProbeReply | ReadIndexAsk | ReadIndexGrant, lead: Leadership | None, now: int
    ) -> bool:
        """A read message for us (voter.py answers ``ReadProbe``); False when it is ignored."""
        if isinstance(m, ReadProbeReply):
            if lead is not None and m.ballot == lead.ballot:
                lead.heard[m.sender] = now  # it counts for check-quorum too
            return self.on_probe_reply(m, lead)
        if isinstance(m, ReadIndexAsk):
            return self.on_ask(m, lead)
        return self.on_grant(m)

    def _lease_holds(self, fresh_ms: int) -> bool:
        """Whether our lease covers a reading of ``fresh_ms`` (rule 2 of 'Leases').

        A configuration decided after the lease's round was confirmed may
        govern slots ahead now, and a rival's phase 1 for such a slot needs a
        quorum of it: the lease's guarding voters must be a quorum of every
        configuration ahead at the reading, not only of those of its round.
        """
        until = self.lease_until
        if until is None or fresh_ms >= until:
            return False
        voters = self._lease_voters
        return all(c.is_quorum(voters) for c in self._configs())

    def grant_leased(
        self, m: ReadIndexAsk, lead: Leadership | None, fresh_ms: int, log: DecidedLog
    ) -> bool:
        """Grant a follower's ask from our lease, with no round; False: no lease holds.

        ``fresh_ms`` was read after the ask arrived: the grant is confirmed
        after the follower asked, as a round's would be.
        """
        self._sync(lead)
        if lead is None or not self._lease_holds(fresh_ms):
            return False
        self._send(m.sender, ReadIndexGrant(self._instance, self._me, m.ask, read_index(lead, log)))
        self.leased += 1
        return True

    def on_ask(self, m: ReadIndexAsk, lead: Leadership | None) -> bool:
        """A follower's ask: into the next round; False when we do not lead (ignored)."""
        self._sync(lead)
        if lead is None:
            return False
        self._queued.append((m.sender, m.ask))
        return True

    def on_probe_reply(self, m: ReadProbeReply, lead: Leadership | None) -> bool:
        """Count a reply; False when it answers no round of our current leadership."""
        self._sync(lead)
        if lead is None or m.ballot != lead.ballot or m.round > self.round:
            return False
        if m.round > self._acked.get(m.sender, 0):
            self._acked[m.sender] = m.round
            self._confirm()
        if self._leases is not None:
            self._on_guard(m)
        return True

    def _on_guard(self, m: ReadProbeReply) -> None:
        """Count a guarding reply towards a lease; a reply without a guard withdraws the peer's."""
        guarded = self._guarded
        if not m.guard_ms:
            guarded.pop(m.sender, None)  # (mixed leases, or it guards a newer leader)
            return
        got = guarded.get(m.sender)
        if got is not None and got[0] >= m.round:
            return
        guarded[m.sender] = (m.round, m.guard_ms)
        configs = self._configs()
        sent = self._sent_ms
        for r in sorted({r for r, _ in guarded.values()}, reverse=True):
            if r not in sent:
                continue  # too old to give a lease that still holds
            peers = [g for got_r, g in guarded.values() if got_r >= r]
            voters = {self._me, *(p for p, (got_r, _) in guarded.items() if got_r >= r)}
            if all(c.is_quorum(voters) for c in configs):
                assert self._leases is not None
                until = sent[r] + lease_ms(min(peers), self._leases)
                if self.lease_until is None or until > self.lease_until:
                    self.lease_until = until
                    self._lease_voters = frozenset(voters)
                for old in [x for x in sent if x < r]:
                    del sent[old]
                return

    def on_grant(self, m: ReadIndexGrant) -> bool:
        """The leader's index for one of our asks; False for an ask not open (ignored)."""
        ask = self._asks.pop(m.ask, None)
        if ask is None:
            return False
        waiting = self.waiting
        self._applying += [(m.index, rid) for rid in ask.request_ids if rid in waiting]
        return True

    def _confirm(self) -> None:
        """Hand out the indexes of every round a quorum answered (with us)."""
        if not self._rounds:
            return
        acked = self._acked
        configs = self._configs()
        confirmed = 0
        for r in sorted(self._rounds, reverse=True):
            voters = [self._me, *(p for p, got in acked.items() if got >= r)]
            if all(rules.is_quorum(voters, sorted(c.voters)) for c in configs):
                confirmed = r
                break
        if not confirmed:
            return
        for r in [r for r in self._rounds if r <= confirmed]:
            for origin, n, index in self._rounds.pop(r):
                if origin == self._me:
                    if n in self.waiting:
                        self._applying.append((index, n))
                else:
                    self._send(origin, ReadIndexGrant(self._instance, self._me, n, index))

    def _serve(self, decided: int) -> None:
        applying = self._applying
        if not applying or all(index > decided for index, _ in applying):
            return
        keep = []
        waiting = self.waiting
        for index, rid in applying:
            if index > decided:
                keep.append((index, rid))
            elif waiting.pop(rid, None) is not None:
                self._done.append(rid)
        self._applying = keep

    # ----------------------------------------------------------------- time

    def tick(self, now: int, leader: str | None, leading: bool) -> None:
        """Ask again what went unanswered; fail what waited ``timeout_ticks``.

        A leader whose rounds went unconfirmed for ``retry_ticks`` starts
        another (its probes or their replies may be lost): an answer to it
        confirms every earlier round.
        """
        if leading:
            at = self._probed_at
            if self._rounds and at is not None and at <= now - self._retry_ticks:
                self._probed_at = None
        elif leader is not None:
            due = now - self._retry_ticks
            for number, ask in self._asks.items():
                if ask.sent_at <= due:
                    ask.sent_at = now
                    self._send(leader, ReadIndexAsk(self._instance, self._me, number))
        waiting = self.waiting
        if not waiting:
            return
        oldest = now - self._timeout_ticks
        expired = [rid for rid, at in waiting.items() if at <= oldest]
        if not expired:
            return
        for rid in expired:
            del waiting[rid]
            self._failed.append(rid)
        # Forget them everywhere (asks and rounds skip ids no longer waiting).
        self._unsent = [rid for rid in self._unsent if rid in waiting]
        self._applying = [(i, rid) for i, rid in self._applying if rid in waiting]
        asks = self._asks
        for number in [n for n, a in asks.items() if not any(r in waiting for r in a.request_ids)]:
            del asks[number]
