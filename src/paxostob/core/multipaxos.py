"""Multi-Paxos: a replicated log of slots, the engine of total-order broadcast.

Theory of operation ("Paxos Made Simple" §3; docs/design.md, 'Multi-Paxos as
implemented'):

- Every replica is acceptor and learner for every slot; the per-slot rules are
  those of ``rules`` (the same ones single-decree consensus uses).
- A *leader* is the proposer whose phase 1 for all slots >= s succeeded: it
  sent ``Prepare(b, s)`` and a quorum of distinct acceptors promised ``b``,
  reporting for every slot >= s what they accepted or know decided. The
  leader re-proposes the highest-ballot value of every open slot (P2c),
  fills gaps with no-ops, and from then on runs only phase 2.
- Followers forward proposals to the leader they know. A proposal is named
  ``ProposalId(origin, seq)``; it stays pending at its origin until
  delivered there and is re-forwarded after a leader change; replicas skip
  ids already delivered, so a retried proposal is delivered once. A node
  whose proposal lost a slot therefore proposes *its own* value again
  later (the Go original re-proposed the winner: docs/design.md, 'Five
  defects of the Go original', 5).
- Leader failure is detected by missing heartbeats within a randomized
  election timeout; the suspecting node campaigns with a higher round.
  Leaders that hear a higher ballot (a ``Nack``) or lose contact with a
  quorum step down (check-quorum); randomized timeouts make dueling
  candidates terminate.
- Pre-vote (``LogConfig.pre_vote``, as etcd-raft's PreVote): before raising
  its ballot, a node whose election timer fired asks its peers whether they
  would let it campaign (``PreVote``), and sends ``Prepare`` only once a
  quorum (itself included) said yes. Asking changes nobody's promise, so a
  node that cannot win (a partitioned node rejoining, a restarted laggard
  whose leader's messages have not reached it yet) no longer makes every
  acceptor promise a higher ballot and so deposes a healthy leader. A peer
  says yes only if

  1. it has not heard from a live leader within ``election_timeout_ticks``
     (stickiness, the leader lease: a leader refuses while it leads, a
     follower while the leader it follows spoke within the timeout), and
  2. the asker is not behind it: ``PreVote.decided_through`` >= its own
     ``decided_through``.

  What "up to date" means here: Paxos needs no log comparison for safety
  (phase 1 reports every accepted value of a quorum and P2c re-proposes it,
  and a Promise carries the decided slots the candidate lacks), unlike Raft,
  whose election restriction is what keeps committed entries. It matters
  for liveness only: a leader opens slots only within ``window_slots_max``
  of its own decided prefix, so a leader elected far behind (a follower back
  after a long outage) proposes nothing until it has fetched the whole gap,
  and every client waits. Accepted-but-undecided slots are not compared:
  phase 1 recovers them from any quorum, so they make no candidate better.
  The decided prefix is also the one measure that only grows and that
  every replica keeps, compaction or not.

  Pre-vote only gates campaigning; no acceptor rule changes, so it cannot
  affect safety. Liveness: when the leader is really gone, every live peer
  stops refusing for (1) one timeout after it last heard it, and among any
  quorum of live, connected replicas the one with the highest
  ``decided_through`` is refused by none of them for (2), so it wins once
  its (randomized) timer fires; the others keep asking at every timeout.
  A refused node stays a follower without a leader and keeps catching up.
  The ``Campaign`` event and a leader's own re-run of phase 1 skip the
  pre-vote (an explicit request, and a node that leads already).
- Learning: the leader learns a slot is chosen from a quorum of
  ``Accepted`` in its ballot. Others learn from the leader's commit
  watermark: a follower marks slot s decided when the leader of ballot b says
  every slot <= c is decided, s <= c, and the follower accepted s in ballot
  b (a leader proposes one value per slot and ballot, and never advertises a
  slot where its own proposal lost). Anything else is fetched with
  ``CatchUp`` in bounded chunks.
- Delivery is gap-free and in slot order. Positions count delivered
  messages: no-ops and duplicates take no position, so every replica gives
  the same message the same position.
- Throughput: a window of at most ``window_slots_max`` open slots
  (pipelining), and many proposals per slot (batching, bounded by
  ``batch_count_max`` and ``batch_bytes_max``). Proposals and forwards are
  cut into batches when ``ready()`` is called, so everything that arrived
  since the last ``Ready`` shares slots.

Messages a replica sends to itself are handled in place (the local acceptor
and learner), never through the network.

The log's clock (time for applications, e.g. key expiry; docs/design.md, 'The log's clock':
the leader's clock governs, as a Redis primary's does). Time enters only as
data: the runtime steps ``Tick(clock_ms=W, elapsed_ms=e)`` with its wall
clock ``W`` and the monotonic time ``e`` since its previous tick. The rule:

- Stamps: a leader puts a clock stamp (``types.clock_stamp``) first in
  every batch it proposes, its *clock estimate* ``E``. Re-proposed values
  (P2c) keep their stamps; no-ops carry none. Nobody else adds stamps: a
  proposer's or forwarder's clock never enters the log.
- Replay: the clock of the log through slot ``s`` is
  ``C(s) = max(C(s-1), stamp(s))`` (``C(s-1)`` when ``s`` has no stamp;
  ``C = 0`` before the first stamp). It is a function of the decided log
  alone, so every replica computes the same clock for every position
  (``Delivery.clock_ms``), and it never moves backwards, whoever leads.
- The estimate ``E``, on every replica, per tick, with
  ``step = clock_step_ms_max``: never below the log's clock it learned
  (``E = max(E, C)``); a follower lets it run on the monotonic clock
  (``E += min(e, step)``), so it keeps up with the log without trusting its
  own wall clock; a leader also pulls it towards its wall clock, by at most
  ``step`` (``E' = max(E + min(e, step), min(W, E + step))``). A new leader
  starts from its estimate, raised to every stamp the promises reported.
  Only the very first leader of a log without any stamp starts at ``W``.

So the log's clock follows the leader's wall clock and advances by at most
``clock_step_ms_max`` per tick of any replica: a leader whose clock is far
ahead drags it forward at most that fast (twice real time with the
defaults), and a leader whose clock is behind does not move it back (the log
clock then runs on the leader's monotonic clock until the wall clock catches
up). A stale leader's stamps can reach the log later through P2c; they were
bounded the same way when taken.

Persistence and the pipeline (events.py has the runtime's side): a ``Ready``
splits its messages in two, by type (``EARLY``). Those that vouch for no
state of this replica leave at once, before the Ready is durable; those that
tell a peer what this acceptor promised or accepted wait until this Ready
and every earlier one are durable. Why each early type is safe:

- ``Accept`` (phase 2a) is a proposal, not a vote. Its ballot is durable
  before the replica leads it: with two or more members a leader needs a
  peer's ``Promise``, which answers a ``Prepare`` that left only after the
  Ready promising that ballot to ourselves was durable. A restarted replica
  campaigns above its durable promise, so a ballot never proposes two values
  for a slot, even across crashes. (A single member has no peer to send to.)
- ``Heartbeat`` carries the leader's ballot (durable, as above) and commit
  watermark: every slot under it was chosen by a quorum of durable votes.
- ``Decided``, ``SnapshotChunk``: chosen values, facts no crash undoes.
- ``Forward``, ``CatchUp``: requests; a proposal id is never reused by a
  later life (the incarnation is part of it).
- ``HeartbeatReply``: "I still hear ballot b". The leader uses it only for
  check-quorum (liveness: whether to step down); no decision and no ballot
  choice rests on it. Held behind our saves it made a leader step down
  while its followers were only slow to fsync a large batch.
- ``PreVote``, ``PreVoteReply``: no promise is made or reported as made; a
  reply's ``promised`` only lets the asker pick a higher ballot.

The rest wait: ``Promise`` and ``Accepted`` are the acceptor's votes;
``Prepare`` because its ballot is our own promise, which must be durable
before it can gather votes (or a restart could reuse the ballot); ``Nack``
conservatively (it reports our promise).

The leader's own acceptance is a vote like a peer's: it counts towards a
quorum only once durable, or a decision could rest on a vote that a crash
erases (3 nodes: leader and A decide, the leader crashes before its fsync,
and a new quorum {B, restarted leader} never saw the value). So an
``Accepted`` to ourselves is held, tagged with the Ready that carries the
acceptance (``_ready_seq + 1``), and processed when the runtime steps
``Persisted`` for that Ready. Our own ``Promise`` counts at once: becoming
leader needs a peer's promise as well, which answers a ``Prepare`` that left
after our promise was durable (one member: its decisions still wait for its
own durable acceptance, in the same Ready as the promise or a later one).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from . import rules
from .acceptor import Acceptor
from .catchup import Catchup
from .events import (
    Campaign,
    Compact,
    Event,
    MarkSnapshotPoint,
    Persisted,
    Propose,
    Ready,
    Receive,
    Restore,
    Tick,
)
from .leadership import Leadership
from .log import SEQ_BITS, DecidedLog
from .messages import (
    Accept,
    Accepted,
    CatchUp,
    Decided,
    Forward,
    Heartbeat,
    HeartbeatReply,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    PromiseEntry,
    SnapshotChunk,
)
from .outbox import EARLY, Outbox
from .proposals import OwnProposals
from .snapshot import SnapshotMeta, decode_meta
from .types import (
    NOOP,
    ZERO_BALLOT,
    Ballot,
    Batch,
    DecidedEntry,
    ProposalId,
    Snapshot,
    stamp_ms,
)

__all__ = ["EARLY", "SEQ_BITS", "LogConfig", "MultiPaxosReplica", "Role", "Status"]


class Role(Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Tunables, in ticks, counts and bytes. Defaults assume a 10 ms tick."""

    #: The leader tells followers it is alive (and its commit) this often.
    heartbeat_ticks: int = 3
    #: A follower campaigns after hearing no leader for a random time in
    #: ``[T, 2T]``; several heartbeats must be lost before that happens.
    election_timeout_ticks: int = 15
    #: Resend Accept / Prepare to acceptors that have not answered.
    accept_retry_ticks: int = 5
    #: Re-forward an undelivered own proposal after this long.
    forward_retry_ticks: int = 30
    #: Re-ask for missing decided slots after this long.
    catchup_retry_ticks: int = 5
    #: Open (proposed, not yet decided) slots at the leader: the pipeline.
    window_slots_max: int = 64
    #: Proposals in one slot, and their bytes.
    batch_count_max: int = 512
    batch_bytes_max: int = 1 << 20
    #: Proposals waiting at the leader for a slot; more are refused and the
    #: origin retries later (back-pressure instead of unbounded memory).
    queue_max: int = 50_000
    #: Decided slots per catch-up reply, and their bytes.
    catchup_entries_max: int = 256
    catchup_bytes_max: int = 4 << 20
    #: A snapshot travels to a lagging replica in chunks of at most this
    #: (well under a TCP frame), and is not resent to the same peer sooner
    #: than ``snapshot_resend_ticks`` (a big transfer outlives catch-up retries).
    snapshot_chunk_bytes_max: int = 1 << 20
    snapshot_resend_ticks: int = 50
    #: Ask peers (``PreVote``) before campaigning, and refuse to let others
    #: campaign while a live leader is heard (the module docstring). Off: a
    #: node whose timer fires runs phase 1 at once, as releases before it
    #: did (and as a rolling upgrade from one needs until every node reads
    #: the new messages).
    pre_vote: bool = True
    #: The log's clock advances by at most this many ms per tick (see the
    #: module docstring). Twice the 10 ms tick: the clock keeps up with a
    #: leader whose ticks come late, and a leader whose wall clock jumped
    #: ahead moves it at most at twice real time, so a key's TTL shrinks by
    #: at most half. Must be at least the tick interval (``tob`` checks),
    #: or the log's clock falls behind real time.
    clock_step_ms_max: int = 20

    def __post_init__(self) -> None:
        for name in (
            "heartbeat_ticks",
            "election_timeout_ticks",
            "accept_retry_ticks",
            "forward_retry_ticks",
            "catchup_retry_ticks",
            "window_slots_max",
            "batch_count_max",
            "batch_bytes_max",
            "queue_max",
            "catchup_entries_max",
            "catchup_bytes_max",
            "snapshot_chunk_bytes_max",
            "snapshot_resend_ticks",
            "clock_step_ms_max",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"LogConfig.{name} must be >= 1")
        if self.heartbeat_ticks >= self.election_timeout_ticks:
            raise ValueError("heartbeat_ticks must be below election_timeout_ticks")


@dataclass(frozen=True, slots=True)
class Status:
    node_id: str
    role: Role
    leader: str | None
    ballot: Ballot
    promised: Ballot
    #: Every slot <= it is decided here (the contiguous prefix).
    decided_through: int
    #: The highest commit watermark heard from any leader.
    known_commit: int
    #: Messages delivered so far (the position of the last delivery).
    delivered: int
    pending: int
    #: Phase 1 runs this replica started (each with a higher ballot), and
    #: pre-votes it asked for that a quorum refused.
    elections: int = 0
    pre_votes_lost: int = 0


#: What a replica that does not lead passes as its (empty, never filled) queue.
_NONE_QUEUED: set[ProposalId] = set()


class MultiPaxosReplica:
    """One replica of the Multi-Paxos log (sans-IO). Drive it with ``step``."""

    def __init__(
        self,
        node_id: str,
        members: list[str] | tuple[str, ...],
        rng: random.Random,
        *,
        instance: str = "tob",
        config: LogConfig | None = None,
        incarnation: int = 0,
    ) -> None:
        if node_id not in members:
            raise ValueError(f"node {node_id!r} is not in the membership {list(members)}")
        if not 0 <= incarnation < 1 << SEQ_BITS:
            raise ValueError("incarnation out of range")
        self.node_id = node_id
        self.members = tuple(sorted(set(members)))
        self.peers = tuple(m for m in self.members if m != node_id)
        self.instance = instance
        self.config = cfg = config or LogConfig()
        self._rng = rng
        self._quorum = rules.quorum_size(len(self.members))
        self._now = 0
        # Effects not yet handed out in a Ready, and messages to ourselves.
        self._outbox = box = Outbox(node_id)
        #: (tick, ballot) of our last HeartbeatReply or Accepted to a leader.
        self._replied: tuple[int, Ballot] = (-1, ZERO_BALLOT)

        # Acceptor: durable state.
        self.acceptor = Acceptor()
        # Learner: the decided log, what was delivered from it, its clock.
        self.log = DecidedLog()
        self._catchup = Catchup(
            me=node_id,
            peers=self.peers,
            instance=instance,
            rng=rng,
            log=self.log,
            send=box.send,
            retry_ticks=cfg.catchup_retry_ticks,
            entries_max=cfg.catchup_entries_max,
            bytes_max=cfg.catchup_bytes_max,
            chunk_bytes_max=cfg.snapshot_chunk_bytes_max,
            resend_ticks=cfg.snapshot_resend_ticks,
        )

        # Role.
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self._leader_ballot: Ballot = ZERO_BALLOT
        self._highest_seen: Ballot = ZERO_BALLOT
        self._election_due = self._now + self._election_timeout()
        self.ballot: Ballot = ZERO_BALLOT
        #: The tick we last heard the leader we follow (Accept or Heartbeat).
        self._leader_heard_at = -cfg.election_timeout_ticks
        # Pre-candidate: the ballot we asked about, and who said yes.
        self._pre_ballot: Ballot | None = None
        self._pre_votes: set[str] = set()
        self.elections = 0
        self.pre_votes_lost = 0
        # Candidate.
        self._promises: dict[str, Promise] = {}
        self._prepare_due = 0
        #: Leader: the state of our leadership, None unless ``role`` is LEADER.
        self._leading: Leadership | None = None

        self.ignored = 0
        # Own proposals not yet delivered here.
        self.proposals = OwnProposals(
            me=node_id,
            instance=instance,
            incarnation=incarnation,
            log=self.log,
            send=box.send,
            dropped=box.dropped,
            retry_ticks=cfg.forward_retry_ticks,
            batch_count_max=cfg.batch_count_max,
            batch_bytes_max=cfg.batch_bytes_max,
        )
        if cfg.batch_bytes_max < 64:
            raise ValueError("batch_bytes_max is too small for any proposal")

    # ================================================================ events

    def step(self, event: Event) -> None:
        """Feed one event. Never raises because of what peers or the network did."""
        if isinstance(event, Receive):
            self._receive(event.envelope.message)
        elif isinstance(event, Tick):
            if event.clock_ms is not None:
                self.log.tick_clock(
                    event.clock_ms,
                    event.elapsed_ms,
                    step_ms=self.config.clock_step_ms_max,
                    leading=self.role is Role.LEADER,
                )
            self._tick()
        elif isinstance(event, Propose):
            self.proposals.propose(
                event.payload, self._now, leader=self.leader, leading=self._leading
            )
        elif isinstance(event, Campaign):
            self._campaign()
        elif isinstance(event, Persisted):
            self._on_persisted(event.seq)
        elif isinstance(event, Compact):
            self._compact(event.data, slot=event.slot)
        elif isinstance(event, MarkSnapshotPoint):
            self.log.point = (self.log.decided_through, self.log.meta())
        elif isinstance(event, Restore):
            self._restore(event)
        else:  # pragma: no cover - the Event union is closed
            raise TypeError(f"not a core event: {event!r}")
        self._drain_loopback()

    def _restore(self, r: Restore) -> None:
        """``Restore`` (events.py says what it brings back), before any other event."""
        assert self._now == 0 and not self.log.entries, "Restore comes before every other event"
        self.proposals.restart(r.incarnation)
        if r.snapshot is not None:
            self._adopt_snapshot(r.snapshot, decode_meta(r.snapshot.meta))
        self.acceptor.restore(r.promised, r.accepted, above=self.log.compacted_through)
        self._highest_seen = r.promised
        for d in r.decided:
            if d.slot > self.log.compacted_through:
                self.log.entries[d.slot] = d.value
                self.acceptor.accepted.pop(d.slot, None)
        self._deliver()
        # Decided slots above a gap are known; fetch the gap from peers.
        self.log.known_commit = max([self.log.decided_through, *self.log.entries])

    @property
    def leader_ballot(self) -> Ballot:
        """The ballot of the leader we know (ours when we lead): ``status().ballot``, cheaply."""
        return self.ballot if self.role is not Role.FOLLOWER else self._leader_ballot

    def status(self) -> Status:
        return Status(
            node_id=self.node_id,
            role=self.role,
            leader=self.leader,
            ballot=self.ballot if self.role is not Role.FOLLOWER else self._leader_ballot,
            promised=self.acceptor.promised,
            decided_through=self.log.decided_through,
            known_commit=self.log.known_commit,
            delivered=self.log.delivered,
            pending=len(self.proposals.pending),
            elections=self.elections,
            pre_votes_lost=self.pre_votes_lost,
        )

    # ================================================================= ticks

    def _tick(self) -> None:
        self._now += 1
        now = self._now
        if self._leading is not None:
            if not self._leading.tick(now):
                self._step_down(None)
        else:
            if now >= self._election_due:
                self._on_election_timeout()
            elif self.role is Role.CANDIDATE and now >= self._prepare_due:
                self._send_prepare(only_missing=True)
            self.proposals.reforward_due(now, self.leader)
        if self.log.decided_through < self.log.known_commit and now >= self._catchup.due:
            self._ask_catchup()

    def _election_timeout(self) -> int:
        t = self.config.election_timeout_ticks
        if len(self.members) == 1:
            return 1  # nobody to wait for
        return self._rng.randint(t, 2 * t)

    # ======================================================== pre-candidate

    def _on_election_timeout(self) -> None:
        if not self.config.pre_vote or not self.peers:
            self._campaign()
            return
        if self._pre_ballot is not None:
            self.pre_votes_lost += 1  # the last round found no quorum in time
        top = max(self.acceptor.promised, self.ballot, self._highest_seen, self._leader_ballot)
        # Stop following (and forwarding to) the leader we no longer hear,
        # as a candidate would, but raise nothing: nobody promises anything.
        self.role = Role.FOLLOWER
        self.leader = None
        self._promises = {}
        self._pre_ballot = ballot = Ballot(top.round + 1, self.node_id)
        self._pre_votes = {self.node_id}
        self._election_due = self._now + self._election_timeout()
        msg = PreVote(self.instance, self.node_id, ballot, self.log.decided_through)
        for dst in self.peers:
            self._outbox.send(dst, msg)

    def _grants_pre_vote(self, m: PreVote) -> bool:
        """Would we let ``m.sender`` campaign now? (The module docstring argues both rules.)"""
        if self.role is Role.LEADER:
            return False  # we lead: check-quorum steps us down once we cannot
        if (
            self.leader is not None
            and self._now - self._leader_heard_at < self.config.election_timeout_ticks
        ):
            return False  # our leader spoke recently
        return m.decided_through >= self.log.decided_through

    def _on_pre_vote(self, m: PreVote) -> None:
        granted = self._grants_pre_vote(m)
        self._outbox.send(
            m.sender,
            PreVoteReply(self.instance, self.node_id, m.ballot, granted, self.acceptor.promised),
        )

    def _on_pre_vote_reply(self, m: PreVoteReply) -> None:
        self._highest_seen = max(self._highest_seen, m.promised)
        if (
            m.ballot != self._pre_ballot
            or self.role is not Role.FOLLOWER
            or self.leader is not None
        ):
            self.ignored += 1  # an older round, or we follow someone again
            return
        if not m.granted:
            return
        self._pre_votes.add(m.sender)
        if len(self._pre_votes) >= self._quorum:
            self._campaign()

    # ============================================================ candidate

    def _campaign(self) -> None:
        """Phase 1 for every slot above our decided prefix, with a fresh ballot."""
        top = max(self.acceptor.promised, self.ballot, self._highest_seen, self._leader_ballot)
        if self.role is Role.LEADER:
            # Phase 1 again (a stalled catch-up, or Campaign): leave leadership
            # as a step-down does, or the proposals of our open slots would
            # stay "queued" forever should another leader fill those slots.
            self._leading = None
        self.ballot = Ballot(top.round + 1, self.node_id)
        self.elections += 1
        self._pre_ballot = None
        self.role = Role.CANDIDATE
        self.leader = None
        self._promises = {}
        self._election_due = self._now + self._election_timeout()
        self._send_prepare(only_missing=False)

    def _send_prepare(self, *, only_missing: bool) -> None:
        self._prepare_due = self._now + self.config.accept_retry_ticks
        msg = Prepare(self.instance, self.node_id, self.ballot, self.log.decided_through + 1)
        for dst in self.members:
            if not (only_missing and dst in self._promises):
                self._outbox.send(dst, msg)

    def _on_promise(self, m: Promise) -> None:
        if self.role is not Role.CANDIDATE or m.ballot != self.ballot:
            self.ignored += 1
            return
        self._promises[m.sender] = m
        if len(self._promises) >= self._quorum:
            self._become_leader()

    def _become_leader(self) -> None:
        promises = list(self._promises.values())
        self._promises = {}
        # Slots every acceptor of some promise knows decided: learn, never propose.
        max_decided = max([self.log.decided_through] + [p.decided_through for p in promises])
        self.log.known_commit = max(self.log.known_commit, max_decided)
        reports: dict[int, list[tuple[Ballot, Batch]]] = {}
        for p in promises:
            for e in p.entries:
                if e.decided:
                    self._decide(e.slot, e.value)
                elif e.slot > max_decided:
                    reports.setdefault(e.slot, []).append((e.ballot, e.value))
        self.role = Role.LEADER
        self.leader = self.node_id
        self._leader_ballot = self.ballot
        cfg = self.config
        self._leading = lead = Leadership(
            ballot=self.ballot,
            now=self._now,
            me=self.node_id,
            members=self.members,
            instance=self.instance,
            log=self.log,
            send=self._outbox.send,
            window_slots_max=cfg.window_slots_max,
            batch_count_max=cfg.batch_count_max,
            batch_bytes_max=cfg.batch_bytes_max,
            queue_max=cfg.queue_max,
            heartbeat_ticks=cfg.heartbeat_ticks,
            accept_retry_ticks=cfg.accept_retry_ticks,
            election_timeout_ticks=cfg.election_timeout_ticks,
        )
        # Never reuse a slot we know decided, even one above every report.
        top = max([max_decided, *reports, max(self.log.entries, default=0)])
        # P2c per open slot: the highest-ballot value reported, else a no-op.
        for slot in range(max_decided + 1, top + 1):
            if slot in self.log.entries:
                continue
            best = rules.highest_accepted(reports.get(slot, ()))
            lead.open_slot(slot, best[1] if best is not None else NOOP, self._now)
        lead.next_slot = top + 1
        # Our stamps continue from every stamp we know the log may hold.
        known = max(
            (
                t
                for value in (*self.log.entries.values(), *(o.value for o in lead.open.values()))
                for p in value[:1]
                if (t := stamp_ms(p)) is not None
            ),
            default=0,
        )
        lg = self.log
        est = max(lg.clock_estimate_ms, lg.clock_ms, known)
        if est == 0 and lg.wall_ms is not None and lg.may_start_clock(leading=True):
            est = lg.wall_ms
        lg.clock_estimate_ms = est
        # Everything we proposed ourselves and have not delivered goes first.
        for proposal in self.proposals.pending.values():
            lead.enqueue(proposal)
        self.proposals.to_forward.clear()
        lead.send_heartbeats(self._now)
        if self.log.decided_through < self.log.known_commit:
            self._ask_catchup()

    # ================================================================ leader

    def _on_accepted(self, m: Accepted) -> None:
        lead = self._leading
        if lead is None or m.ballot != lead.ballot:
            self.ignored += 1
            return
        lead.heard[m.sender] = self._now
        o = lead.open.get(m.slot)
        if o is not None and o.tally.add(m.sender):
            self._decide(m.slot, o.value)

    def _on_forward(self, m: Forward) -> None:
        if self._leading is None:
            self.ignored += 1  # the origin re-forwards once it learns the leader
            return
        self.ignored += self._leading.enqueue_forward(m)

    def _step_down(self, leader: str | None) -> None:
        """Become a follower.

        Our leadership (open slots, queue) is dropped: the next leader
        re-proposes what was accepted; our own proposals stay pending
        (re-forwarded), and other origins re-forward theirs.
        """
        self._leading = None
        self.role = Role.FOLLOWER
        self.leader = leader
        self._promises = {}
        self._pre_ballot = None
        self._election_due = self._now + self._election_timeout()
        # Our own undelivered proposals go to whoever leads next (due now).
        self.proposals.all_due(self._now)

    # ============================================================== acceptor

    def _on_prepare(self, m: Prepare) -> None:
        acceptor = self.acceptor
        if not acceptor.promise(m.ballot):
            self._outbox.send(
                m.sender, Nack(self.instance, self.node_id, m.ballot, acceptor.promised)
            )
            return
        self._highest_seen = max(self._highest_seen, m.ballot)
        if m.sender != self.node_id:
            # Someone campaigns with a ballot we now promised: let them finish.
            if self.role is not Role.FOLLOWER or self.leader is not None:
                self._step_down(None)
            self._pre_ballot = None  # and not start a phase 1 of our own
            self._election_due = self._now + self._election_timeout()
        # Decided slots the candidate lacks, from its first missing one: the
        # candidate must learn them here, since we may be the only live node
        # that knows them (bounded like a catch-up chunk; the rest by catch-up).
        entries = [
            PromiseEntry(e.slot, ZERO_BALLOT, e.value, decided=True)
            for e in self._catchup.chunk(m.slot)
        ]
        low = max(m.slot, self.log.decided_through + 1)
        entries.extend(
            PromiseEntry(s, ZERO_BALLOT, v, decided=True)
            for s, v in self.log.entries.items()
            if s >= low and s > self.log.decided_through
        )
        entries.extend(acceptor.report(low, self.log.entries))
        entries.sort(key=lambda e: e.slot)
        promise = Promise(
            self.instance, self.node_id, m.ballot, self.log.decided_through, tuple(entries)
        )
        self._outbox.send(m.sender, promise)

    def _on_accept(self, m: Accept) -> None:
        acceptor = self.acceptor
        if not acceptor.admit(m.ballot):
            self._outbox.send(
                m.sender, Nack(self.instance, self.node_id, m.ballot, acceptor.promised)
            )
            return
        if m.ballot > self._highest_seen:
            self._highest_seen = m.ballot
        self._follow(m.ballot)
        log = self.log
        chosen = log.entries.get(m.slot)
        if chosen is not None:
            if chosen != m.value:
                # Only a broken proposer could propose another value for a
                # chosen slot; never count towards its quorum.
                self.ignored += 1
                return
        elif m.slot > log.decided_through:
            acceptor.accept(m.slot, m.ballot, m.value)
        self._outbox.send(m.sender, Accepted(self.instance, self.node_id, m.ballot, m.slot, None))
        self._replied = (self._now, m.ballot)  # the leader heard from us this tick
        self._learn_commit(m.ballot, m.commit)

    def _follow(self, ballot: Ballot) -> None:
        """``ballot``'s owner leads: reset the election timer, forward to it."""
        if ballot.node_id == self.node_id:
            return
        following = self.role is Role.FOLLOWER and self.leader is not None
        if following and ballot < self._leader_ballot:
            return  # an older leader than the one we follow
        if not following or self.leader != ballot.node_id:
            self._step_down(ballot.node_id)
        self._leader_ballot = max(self._leader_ballot, ballot)
        self._leader_heard_at = self._now
        self._election_due = self._now + self._election_timeout()

    def _on_heartbeat(self, m: Heartbeat) -> None:
        promised = self.acceptor.promised
        if m.ballot < promised:
            # A deposed leader: tell it, so it steps down.
            self._outbox.send(m.sender, Nack(self.instance, self.node_id, m.ballot, promised))
            return
        self._follow(m.ballot)
        self._learn_commit(m.ballot, m.commit)
        # The leader only needs to hear from us now and then (its quorum check
        # spans two election timeouts), and an Accepted counts as hearing:
        # answer at most once per tick and ballot. Under load a commit
        # heartbeat follows every decision; answering each doubled our frames.
        if self._replied != (self._now, m.ballot):
            self._replied = (self._now, m.ballot)
            reply = HeartbeatReply(self.instance, self.node_id, m.ballot, self.log.decided_through)
            self._outbox.send(m.sender, reply)

    def _on_nack(self, m: Nack) -> None:
        self._highest_seen = max(self._highest_seen, m.promised)
        if self.role is not Role.FOLLOWER and m.ballot == self.ballot and m.promised > self.ballot:
            self._step_down(None)

    # =============================================================== learner

    def _learn_commit(self, ballot: Ballot, commit: int) -> None:
        if commit <= self.log.decided_through:
            return
        if commit > self.log.known_commit:
            self.log.known_commit = commit
        # Safe only for slots we accepted in the leader's own ballot.
        accepted = self.acceptor.accepted
        for slot in sorted(s for s in accepted if s <= commit):
            b, v = accepted[slot]
            if b == ballot:
                self._decide(slot, v)
        if self.log.decided_through < self.log.known_commit and self._now >= self._catchup.due:
            self._ask_catchup()

    def _ask_catchup(self) -> None:
        if not self._catchup.ask(self._now, self.leader, leading=self.role is Role.LEADER):
            # Catch-up makes no progress (``catchup.py``): phase 1 again.
            self._campaign()

    def _on_decided(self, m: Decided) -> None:
        before = self.log.decided_through
        for e in m.entries:
            self._decide(e.slot, e.value)
        if self.log.decided_through > before and self.log.decided_through < self.log.known_commit:
            self._ask_catchup()  # the next chunk right away

    # ============================================================ snapshots

    def _compact(self, data: bytes, *, slot: int | None) -> Snapshot:
        """``Compact`` (events.py): a snapshot of ``data`` replaces the log through its slot."""
        snap = self.log.compact(data, slot)
        if snap is None:
            assert self.log.snapshot is not None
            return self.log.snapshot
        self._drop_through(snap)
        self._outbox.snapshot = snap
        return snap

    def _drop_through(self, snap: Snapshot) -> None:
        self.log.drop_through(snap)
        self.acceptor.forget_through(snap.slot)

    def _adopt_snapshot(self, snap: Snapshot, meta: SnapshotMeta) -> None:
        """Jump to ``snap``: everything through its slot is decided and delivered."""
        self.log.adopt(snap, meta)
        self.acceptor.forget_through(snap.slot)

    def _on_snapshot_chunk(self, m: SnapshotChunk) -> None:
        got = self._catchup.assemble(m)
        if got == "ignored":
            self.ignored += 1
            return
        if got == "partial":
            return
        snap, meta = got
        if self._leading is not None and self._leading.covers(m.slot):
            # A snapshot over a slot we hold open (or above all we proposed)
            # means a higher ballot chose it, and opaque state cannot be
            # compared with our proposals: never lead across it (see
            # ``_decide``). Below our open slots it only fills our gap.
            self._step_down(None)
        # Deliveries already handed out stay before the restore point.
        self._outbox.restore_at = len(self._outbox.deliveries)
        pending_before = set(self.proposals.pending)
        self._adopt_snapshot(snap, meta)
        self._outbox.snapshot = snap
        # Own proposals delivered inside the snapshot: never delivered here.
        self.proposals.settle(pending_before)
        self._deliver()
        if self.log.decided_through < self.log.known_commit:
            self._ask_catchup()

    def _decide(self, slot: int, value: Batch) -> None:
        if slot <= self.log.decided_through or slot in self.log.entries:
            return
        self.log.entries[slot] = value
        self.acceptor.accepted.pop(slot, None)
        self._outbox.decided_new.append(DecidedEntry(slot, value))
        if self._leading is not None and self._leading.lost(slot, value):
            self._step_down(None)  # a higher ballot chose it (``Leadership.lost``)
        self._deliver()

    def _deliver(self) -> None:
        self.log.deliver(
            self.node_id,
            self._outbox.deliveries,
            self.proposals.pending,
            self.proposals.forwarded_at,
            self._outbox.dropped,
            self._leading.queued if self._leading is not None else _NONE_QUEUED,
        )

    # ============================================================== plumbing

    def _receive(self, m: Message) -> None:
        if m.instance != self.instance or m.sender not in self.members:
            self.ignored += 1
            return
        if isinstance(m, Accept):
            self._on_accept(m)
        elif isinstance(m, Accepted):
            self._on_accepted(m)
        elif isinstance(m, Heartbeat):
            self._on_heartbeat(m)
        elif isinstance(m, HeartbeatReply):
            if self._leading is not None and m.ballot == self._leading.ballot:
                self._leading.heard[m.sender] = self._now
        elif isinstance(m, Forward):
            self._on_forward(m)
        elif isinstance(m, Prepare):
            self._on_prepare(m)
        elif isinstance(m, Promise):
            self._on_promise(m)
        elif isinstance(m, Nack):
            self._on_nack(m)
        elif isinstance(m, CatchUp):
            self._catchup.serve(m, self._now)
        elif isinstance(m, Decided):
            self._on_decided(m)
        elif isinstance(m, SnapshotChunk):
            self._on_snapshot_chunk(m)
        elif isinstance(m, PreVote):
            self._on_pre_vote(m)
        elif isinstance(m, PreVoteReply):
            self._on_pre_vote_reply(m)
        else:
            self.ignored += 1

    def _on_persisted(self, seq: int) -> None:
        # Never beyond the Readys handed out: the acceptance of a vote tagged
        # ``_ready_seq + 1`` is not in any Ready yet.
        box = self._outbox
        through = min(seq, box.ready_seq)
        held = box.held
        while held and held[0][0] <= through:
            self._receive(held.popleft()[1])

    def _drain_loopback(self) -> None:
        loop = self._outbox.loopback
        while loop:
            self._receive(loop.popleft())

    # ================================================================= ready

    def has_ready(self) -> bool:
        return bool(
            self._outbox.has_effects()
            or self.acceptor.promised_dirty
            or self.acceptor.accepted_new
            or self.proposals.to_forward
            or (self._leading is not None and self._leading.has_work())
        )

    def ready(self) -> Ready:
        """Cut batches, then hand out every effect produced since the last ``advance``."""
        self.proposals.flush(self.leader, self._leading)
        lead = self._leading
        if lead is not None:
            lead.fill_window(self._now)
            self._drain_loopback()
            if lead.commit_sent < self.log.decided_through:
                lead.send_heartbeats(self._now)
        return self._outbox.ready(self.acceptor)

    def advance(self, ready: Ready) -> None:
        """Everything in ``ready`` was handled; forget it (newer effects stay)."""
        self._outbox.advance(ready, self.acceptor)
