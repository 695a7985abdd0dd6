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
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from ..errors import DecodeError
from . import rules
from .events import (
    AcceptedEntry,
    Campaign,
    Delivered,
    Dropped,
    Event,
    Persisted,
    Propose,
    Ready,
    Receive,
    Tick,
)
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
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    PromiseEntry,
    SnapshotChunk,
)
from .snapshot import SnapshotMeta, decode_meta, encode_meta
from .types import (
    CLOCK_ORIGIN,
    CLOCK_STAMP_BYTES,
    NOOP,
    ZERO_BALLOT,
    Ballot,
    Batch,
    DecidedEntry,
    Delivery,
    Proposal,
    ProposalId,
    Snapshot,
    batch_size_bytes,
    clock_stamp,
    stamp_ms,
)

__all__ = ["LogConfig", "MultiPaxosReplica", "Role", "Status"]

#: Sequence numbers are ``incarnation << SEQ_BITS | counter``: every life of
#: an origin has its own range, so a restarted node never reuses an id.
SEQ_BITS = 32
#: Snapshot transfers assembled at once (from different peers or points).
INCOMING_SNAPSHOTS_MAX = 3
#: A leader whose catch-up makes no progress this many times runs phase 1 again.
CATCHUP_TRIES_BEFORE_PHASE1 = 8
COUNTER_MASK = (1 << SEQ_BITS) - 1
_CONFLICT = (
    "an earlier life of this node used this proposal id (its store was made again and drew "
    "an incarnation already used): restart the node to draw another"
)
#: Messages that may leave before the Ready that produced them is durable
#: (the module docstring argues each); every other type waits.
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
)


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


class _Seen:
    """Counters of one origin's life already delivered: a low mark plus sparse ones above.

    Kept per ``(origin, incarnation)``: lives need not be ordered (a node
    without storage picks a random incarnation), and within one life an
    origin retries until delivered, so ``above`` only holds what is in flight.
    """

    __slots__ = ("above", "low")

    def __init__(self) -> None:
        self.low = 0
        self.above: set[int] = set()

    def __contains__(self, counter: int) -> bool:
        return counter <= self.low or counter in self.above

    def add(self, counter: int) -> None:
        self.above.add(counter)
        while self.low + 1 in self.above:
            self.above.remove(self.low + 1)
            self.low += 1


@dataclass(slots=True)
class _Open:
    """A slot the leader proposed in its ballot and not yet learned chosen."""

    value: Batch
    tally: rules.Tally
    sent_at: int


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
        #: The log's clock through ``decided_through`` (Unix ms; 0: no stamp yet).
        self.clock_ms = 0
        #: This replica's estimate of the log's clock now: what it stamps as
        #: leader (0: unknown). The last wall-clock reading of the runtime.
        self.clock_estimate_ms = 0
        self._wall_ms: int | None = None
        #: (tick, ballot) of our last HeartbeatReply or Accepted to a leader.
        self._replied: tuple[int, Ballot] = (-1, ZERO_BALLOT)

        # Acceptor: durable state.
        self.promised: Ballot = ZERO_BALLOT
        self.accepted: dict[int, tuple[Ballot, Batch]] = {}
        # Learner: the decided log and what was delivered from it.
        self.log: dict[int, Batch] = {}
        self.decided_through = 0
        self.known_commit = 0
        self.delivered = 0
        self._seen: dict[tuple[str, int], _Seen] = {}
        self._catchup_due = 0
        self._catchup_from = 0
        self._catchup_tries = 0
        # Compaction: the log holds only slots above ``compacted_through``.
        self.compacted_through = 0
        self.snapshot: Snapshot | None = None
        self._snapshot_out: Snapshot | None = None
        self._restore_at: int | None = None
        # Snapshots being assembled, by (slot, meta, size): each its own chunks,
        # so chunks of two snapshots never mix; a few at once, so a transfer
        # that lost a chunk cannot starve a newer or older complete one.
        self._incoming: dict[tuple[int, bytes, int], dict[int, bytes]] = {}
        self._snapshot_sent: dict[str, int] = {}
        #: (slot, meta) of the latest ``snapshot_point`` not yet compacted.
        self._point: tuple[int, bytes] | None = None

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
        # Leader.
        self._next_slot = 1
        self._open: dict[int, _Open] = {}
        self._queue: deque[Proposal] = deque()
        self._queued: set[ProposalId] = set()
        self._heartbeat_due = 0
        self._commit_sent = 0
        self._heard: dict[str, int] = {}
        self._quorum_check_due = 0

        # Own proposals not yet delivered here, oldest forward first.
        self._seq = incarnation << SEQ_BITS
        self.pending: dict[ProposalId, Proposal] = {}
        self._forwarded_at: dict[ProposalId, int] = {}
        self._to_forward: list[Proposal] = []

        # Effects not yet handed out in a Ready.
        self._out: list[Envelope] = []  # late: sent once this Ready is durable
        self._out_early: list[Envelope] = []
        self._loopback: deque[Message] = deque()
        # Our own Accepted votes, with the seq of the Ready carrying the
        # acceptance: counted once ``Persisted`` covers it.
        self._held: deque[tuple[int, Accepted]] = deque()
        self._ready_seq = 0  # the seq of the last Ready advanced
        self._promised_dirty = False
        self._accepted_new: list[AcceptedEntry] = []
        self._decided_new: list[DecidedEntry] = []
        self._deliveries: list[Delivered] = []
        self._dropped: list[Dropped] = []
        self.ignored = 0
        if cfg.batch_bytes_max < 64:
            raise ValueError("batch_bytes_max is too small for any proposal")

    # ================================================================ events

    def step(self, event: Event) -> None:
        """Feed one event. Never raises because of what peers or the network did."""
        if isinstance(event, Receive):
            self._receive(event.envelope.message)
        elif isinstance(event, Tick):
            if event.clock_ms is not None:
                self._advance_clock(event.clock_ms, event.elapsed_ms)
            self._tick()
        elif isinstance(event, Propose):
            self.propose(event.payload)
        elif isinstance(event, Campaign):
            self._campaign()
        elif isinstance(event, Persisted):
            self._on_persisted(event.seq)
        else:  # pragma: no cover - the Event union is closed
            raise TypeError(f"not a core event: {event!r}")
        self._drain_loopback()

    def propose(self, payload: bytes) -> ProposalId:
        """Broadcast ``payload``; returns the id its delivery will carry."""
        self._seq += 1
        pid = ProposalId(self.node_id, self._seq)
        proposal = Proposal(pid, payload)
        if batch_size_bytes((proposal,)) + CLOCK_STAMP_BYTES > self.config.batch_bytes_max:
            self._dropped.append(Dropped(pid, "payload larger than batch_bytes_max"))
            return pid
        if self._is_delivered(pid):
            # An earlier life with this incarnation had this id delivered:
            # every replica would skip it as a retry, so it would never come.
            self._dropped.append(Dropped(pid, _CONFLICT, conflict=True))
            return pid
        self.pending[pid] = proposal
        if self.role is Role.LEADER:
            self._enqueue(proposal)
        elif self.leader is not None:
            self._to_forward.append(proposal)
            self._forwarded_at[pid] = self._now
        else:
            self._forwarded_at[pid] = self._now - self.config.forward_retry_ticks
        return pid

    def restore(
        self,
        promised: Ballot,
        accepted: Iterable[AcceptedEntry],
        decided: Iterable[DecidedEntry],
        *,
        incarnation: int,
        snapshot: Snapshot | None = None,
    ) -> None:
        """Rebuild the durable state of a restarted replica, before its first step.

        ``incarnation`` must grow with every restart (storage counts opens):
        proposal seqs of this life start above every earlier life's.

        The acceptor gets back its promise and accepted proposals, so it never
        contradicts what it told peers before the crash. The decided log is
        re-delivered from its first slot, in the same positions as before
        (the next ``Ready`` carries those deliveries), so an in-memory
        application rebuilds its state by replay.
        """
        assert self._now == 0 and not self.log, "restore() runs before the first step"
        if not 0 <= incarnation < 1 << SEQ_BITS:
            raise ValueError("incarnation out of range")
        self._seq = incarnation << SEQ_BITS
        if snapshot is not None:
            self._adopt_snapshot(snapshot, decode_meta(snapshot.meta))
        self.promised = self._highest_seen = promised
        for a in accepted:
            if a.slot > self.compacted_through:
                self.accepted[a.slot] = (a.ballot, a.value)
        for d in decided:
            if d.slot > self.compacted_through:
                self.log[d.slot] = d.value
                self.accepted.pop(d.slot, None)
        self._deliver_ready_slots()
        # Decided slots above a gap are known; fetch the gap from peers.
        self.known_commit = max([self.decided_through, *self.log])

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
            promised=self.promised,
            decided_through=self.decided_through,
            known_commit=self.known_commit,
            delivered=self.delivered,
            pending=len(self.pending),
            elections=self.elections,
            pre_votes_lost=self.pre_votes_lost,
        )

    # ================================================================= ticks

    def _tick(self) -> None:
        self._now += 1
        now = self._now
        if self.role is Role.LEADER:
            if now >= self._heartbeat_due:
                self._send_heartbeats()
            self._resend_open()
            if now >= self._quorum_check_due:
                self._check_quorum()
        else:
            if now >= self._election_due:
                self._on_election_timeout()
            elif self.role is Role.CANDIDATE and now >= self._prepare_due:
                self._send_prepare(only_missing=True)
            self._reforward_due()
        if self.decided_through < self.known_commit and now >= self._catchup_due:
            self._ask_catchup()

    def _advance_clock(self, wall_ms: int, elapsed_ms: int) -> None:
        """One tick of the clock estimate (the rule is in the module docstring)."""
        self._wall_ms = wall_ms
        step = self.config.clock_step_ms_max
        est = self.clock_estimate_ms
        if est == 0:
            if self._may_start_clock():
                est = wall_ms
        else:
            ran = est + min(max(elapsed_ms, 0), step)
            if self.role is Role.LEADER:
                ran = max(ran, min(wall_ms, est + step))
            est = ran
        self.clock_estimate_ms = max(est, self.clock_ms)

    def _may_start_clock(self) -> bool:
        """Whether this leader may start the log's clock at its own wall clock.

        Only when it knows no stamp *and* has every slot a quorum reported
        decided: then the decided log has no stamp (a chosen stamped value
        is reported by every promise quorum). A leader still catching up
        (say, a new member of a compacted group) proposes unstamped batches,
        which move no clock, until it learned the log's clock.
        """
        return self.role is Role.LEADER and self.decided_through >= self.known_commit

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
        top = max(self.promised, self.ballot, self._highest_seen, self._leader_ballot)
        # Stop following (and forwarding to) the leader we no longer hear,
        # as a candidate would, but raise nothing: nobody promises anything.
        self.role = Role.FOLLOWER
        self.leader = None
        self._promises = {}
        self._pre_ballot = ballot = Ballot(top.round + 1, self.node_id)
        self._pre_votes = {self.node_id}
        self._election_due = self._now + self._election_timeout()
        msg = PreVote(self.instance, self.node_id, ballot, self.decided_through)
        for dst in self.peers:
            self._send(dst, msg)

    def _grants_pre_vote(self, m: PreVote) -> bool:
        """Would we let ``m.sender`` campaign now? (The module docstring argues both rules.)"""
        if self.role is Role.LEADER:
            return False  # we lead: check-quorum steps us down once we cannot
        if (
            self.leader is not None
            and self._now - self._leader_heard_at < self.config.election_timeout_ticks
        ):
            return False  # our leader spoke recently
        return m.decided_through >= self.decided_through

    def _on_pre_vote(self, m: PreVote) -> None:
        granted = self._grants_pre_vote(m)
        self._send(
            m.sender,
            PreVoteReply(self.instance, self.node_id, m.ballot, granted, self.promised),
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
        top = max(self.promised, self.ballot, self._highest_seen, self._leader_ballot)
        if self.role is Role.LEADER:
            # Phase 1 again (a stalled catch-up, or Campaign): leave leadership
            # as a step-down does, or the proposals of our open slots would
            # stay "queued" forever should another leader fill those slots.
            self._drop_leadership()
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
        msg = Prepare(self.instance, self.node_id, self.ballot, self.decided_through + 1)
        for dst in self.members:
            if not (only_missing and dst in self._promises):
                self._send(dst, msg)

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
        max_decided = max([self.decided_through] + [p.decided_through for p in promises])
        self.known_commit = max(self.known_commit, max_decided)
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
        self._open = {}
        self._heard = {}
        self._quorum_check_due = self._now + 2 * self.config.election_timeout_ticks
        # Never reuse a slot we know decided, even one above every report.
        top = max([max_decided, *reports, max(self.log, default=0)])
        # P2c per open slot: the highest-ballot value reported, else a no-op.
        for slot in range(max_decided + 1, top + 1):
            if slot in self.log:
                continue
            best = rules.highest_accepted(reports.get(slot, ()))
            self._open_slot(slot, best[1] if best is not None else NOOP)
        self._next_slot = top + 1
        # Our stamps continue from every stamp we know the log may hold.
        known = max(
            (
                t
                for value in (*self.log.values(), *(o.value for o in self._open.values()))
                for p in value[:1]
                if (t := stamp_ms(p)) is not None
            ),
            default=0,
        )
        est = max(self.clock_estimate_ms, self.clock_ms, known)
        if est == 0 and self._wall_ms is not None and self._may_start_clock():
            est = self._wall_ms
        self.clock_estimate_ms = est
        # Everything we proposed ourselves and have not delivered goes first.
        for proposal in self.pending.values():
            self._enqueue(proposal)
        self._to_forward.clear()
        self._send_heartbeats()
        if self.decided_through < self.known_commit:
            self._ask_catchup()

    # ================================================================ leader

    def _enqueue(self, proposal: Proposal) -> bool:
        pid = proposal.id
        if pid in self._queued or self._is_delivered(pid):
            return True
        if len(self._queue) >= self.config.queue_max:
            return False
        self._queue.append(proposal)
        self._queued.add(pid)
        return True

    def _fill_window(self) -> None:
        """Cut batches from the queue into new slots while the window has room."""
        cfg = self.config
        queue = self._queue
        count_max = cfg.batch_count_max
        bytes_max = cfg.batch_bytes_max
        is_delivered = self._is_delivered
        while queue and self._next_slot <= self.decided_through + cfg.window_slots_max:
            # The leader's clock stamp goes first (only leaders stamp: the
            # log's time is never a proposer's). Without a clock, none.
            est = self.clock_estimate_ms
            batch: list[Proposal] = [clock_stamp(est)] if est else []
            stamped = len(batch)
            size = CLOCK_STAMP_BYTES * stamped
            while queue and len(batch) - stamped < count_max:
                p = queue[0]
                pid = p.id
                if is_delivered(pid):
                    queue.popleft()
                    self._queued.discard(pid)
                    continue
                cost = len(p.payload) + 16 + len(pid.origin)
                if len(batch) > stamped and size + cost > bytes_max:
                    break
                queue.popleft()
                batch.append(p)
                size += cost
            if len(batch) == stamped:
                break
            slot = self._next_slot
            self._next_slot += 1
            self._open_slot(slot, tuple(batch))

    def _open_slot(self, slot: int, value: Batch) -> None:
        self._open[slot] = _Open(value, rules.Tally(self._quorum), self._now)
        msg = Accept(self.instance, self.node_id, self.ballot, slot, value, self.decided_through)
        for dst in self.members:
            self._send(dst, msg)
        self._commit_sent = max(self._commit_sent, self.decided_through)

    def _resend_open(self) -> None:
        due = self._now - self.config.accept_retry_ticks
        for slot, o in self._open.items():
            if o.sent_at <= due:
                o.sent_at = self._now
                msg = Accept(
                    self.instance, self.node_id, self.ballot, slot, o.value, self.decided_through
                )
                for dst in self.peers:
                    if dst not in o.tally.senders:
                        self._send(dst, msg)

    def _send_heartbeats(self) -> None:
        self._heartbeat_due = self._now + self.config.heartbeat_ticks
        self._commit_sent = self.decided_through
        msg = Heartbeat(self.instance, self.node_id, self.ballot, self.decided_through)
        for dst in self.peers:
            self._send(dst, msg)

    def _check_quorum(self) -> None:
        """Step down when a quorum has not answered for a whole election timeout.

        An isolated leader cannot commit anything; stepping down lets its
        clients' proposals go to a leader that can.
        """
        window = 2 * self.config.election_timeout_ticks
        self._quorum_check_due = self._now + window
        alive = 1 + sum(1 for t in self._heard.values() if t > self._now - window)
        if alive < self._quorum:
            self._step_down(None)

    def _on_accepted(self, m: Accepted) -> None:
        if m.ballot != self.ballot or self.role is not Role.LEADER:
            self.ignored += 1
            return
        self._heard[m.sender] = self._now
        o = self._open.get(m.slot)
        if o is not None and o.tally.add(m.sender):
            self._decide(m.slot, o.value)

    def _on_forward(self, m: Forward) -> None:
        if self.role is not Role.LEADER:
            self.ignored += 1  # the origin re-forwards once it learns the leader
            return
        for p in m.proposals:
            if p.id.origin != m.sender or not self._enqueue(p):
                self.ignored += 1

    def _drop_leadership(self) -> None:
        """Forget our open slots and queue: the next leader re-proposes what was
        accepted; our own proposals stay pending (re-queued or re-forwarded),
        and other origins re-forward theirs."""
        self._open.clear()
        self._queue.clear()
        self._queued.clear()

    def _step_down(self, leader: str | None) -> None:
        """Become a follower. Our open slots are re-proposed by the next leader."""
        if self.role is Role.LEADER:
            self._drop_leadership()
        self.role = Role.FOLLOWER
        self.leader = leader
        self._promises = {}
        self._pre_ballot = None
        self._election_due = self._now + self._election_timeout()
        # Our own undelivered proposals go to whoever leads next (due now).
        due = self._now - self.config.forward_retry_ticks
        self._forwarded_at = dict.fromkeys(self.pending, due)
        self._to_forward.clear()

    # ============================================================== acceptor

    def _on_prepare(self, m: Prepare) -> None:
        if not rules.may_promise(self.promised, m.ballot):
            self._send(m.sender, Nack(self.instance, self.node_id, m.ballot, self.promised))
            return
        self._set_promised(m.ballot)
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
            for e in self._decided_chunk(m.slot)
        ]
        low = max(m.slot, self.decided_through + 1)
        entries.extend(
            PromiseEntry(s, ZERO_BALLOT, v, decided=True)
            for s, v in self.log.items()
            if s >= low and s > self.decided_through
        )
        entries.extend(
            PromiseEntry(s, b, v, decided=False)
            for s, (b, v) in self.accepted.items()
            if s >= low and s not in self.log
        )
        entries.sort(key=lambda e: e.slot)
        promise = Promise(
            self.instance, self.node_id, m.ballot, self.decided_through, tuple(entries)
        )
        self._send(m.sender, promise)

    def _on_accept(self, m: Accept) -> None:
        if not rules.may_accept(self.promised, m.ballot):
            self._send(m.sender, Nack(self.instance, self.node_id, m.ballot, self.promised))
            return
        if m.ballot > self.promised:
            self._set_promised(m.ballot)
        self._follow(m.ballot)
        chosen = self.log.get(m.slot)
        if chosen is not None:
            if chosen != m.value:
                # Only a broken proposer could propose another value for a
                # chosen slot; never count towards its quorum.
                self.ignored += 1
                return
        elif m.slot > self.decided_through:
            old = self.accepted.get(m.slot)
            if old is None or old[0] != m.ballot:
                self.accepted[m.slot] = (m.ballot, m.value)
                self._accepted_new.append(AcceptedEntry(m.slot, m.ballot, m.value))
        self._send(m.sender, Accepted(self.instance, self.node_id, m.ballot, m.slot, None))
        self._replied = (self._now, m.ballot)  # the leader heard from us this tick
        self._learn_commit(m.ballot, m.commit)

    def _set_promised(self, ballot: Ballot) -> None:
        self.promised = ballot
        self._promised_dirty = True
        self._highest_seen = max(self._highest_seen, ballot)

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
        if m.ballot < self.promised:
            # A deposed leader: tell it, so it steps down.
            self._send(m.sender, Nack(self.instance, self.node_id, m.ballot, self.promised))
            return
        self._follow(m.ballot)
        self._learn_commit(m.ballot, m.commit)
        # The leader only needs to hear from us now and then (its quorum check
        # spans two election timeouts), and an Accepted counts as hearing:
        # answer at most once per tick and ballot. Under load a commit
        # heartbeat follows every decision; answering each doubled our frames.
        if self._replied != (self._now, m.ballot):
            self._replied = (self._now, m.ballot)
            reply = HeartbeatReply(self.instance, self.node_id, m.ballot, self.decided_through)
            self._send(m.sender, reply)

    def _on_nack(self, m: Nack) -> None:
        self._highest_seen = max(self._highest_seen, m.promised)
        if self.role is not Role.FOLLOWER and m.ballot == self.ballot and m.promised > self.ballot:
            self._step_down(None)

    # =============================================================== learner

    def _learn_commit(self, ballot: Ballot, commit: int) -> None:
        if commit <= self.decided_through:
            return
        if commit > self.known_commit:
            self.known_commit = commit
        # Safe only for slots we accepted in the leader's own ballot.
        for slot in sorted(s for s in self.accepted if s <= commit):
            b, v = self.accepted[slot]
            if b == ballot:
                self._decide(slot, v)
        if self.decided_through < self.known_commit and self._now >= self._catchup_due:
            self._ask_catchup()

    def _ask_catchup(self) -> None:
        self._catchup_due = self._now + self.config.catchup_retry_ticks
        if self.decided_through > self._catchup_from:
            self._catchup_from, self._catchup_tries = self.decided_through, 0
        self._catchup_tries += 1
        if self.role is Role.LEADER and self._catchup_tries > CATCHUP_TRIES_BEFORE_PHASE1:
            # Nobody alive answers for the slots we miss: the promiser that
            # knew them decided may have crashed. Phase 1 again, with a new
            # ballot: a quorum of live acceptors then reports what it
            # accepted above its own prefix, and P2c re-proposes it.
            self._catchup_tries = 0
            self._campaign()
            return
        target = self.leader if self.leader not in (None, self.node_id) else None
        if target is None and self.peers:
            target = self._rng.choice(self.peers)
        if target is not None:
            self._send(target, CatchUp(self.instance, self.node_id, self.decided_through + 1))

    def _decided_chunk(self, slot: int) -> list[DecidedEntry]:
        """Decided slots from ``slot`` on, contiguous, bounded by the catch-up limits."""
        cfg = self.config
        entries: list[DecidedEntry] = []
        size = 0
        slot = max(slot, self.compacted_through + 1)  # below: only the snapshot has them
        while slot <= self.decided_through and len(entries) < cfg.catchup_entries_max:
            value = self.log[slot]
            size += batch_size_bytes(value) + 16
            if entries and size > cfg.catchup_bytes_max:
                break
            entries.append(DecidedEntry(slot, value))
            slot += 1
        return entries

    def _on_catchup(self, m: CatchUp) -> None:
        if m.slot <= self.compacted_through:
            self._send_snapshot(m.sender)
        entries = self._decided_chunk(m.slot)
        if entries:
            self._send(m.sender, Decided(self.instance, self.node_id, tuple(entries)))

    def _on_decided(self, m: Decided) -> None:
        before = self.decided_through
        for e in m.entries:
            self._decide(e.slot, e.value)
        if self.decided_through > before and self.decided_through < self.known_commit:
            self._ask_catchup()  # the next chunk right away

    # ============================================================ snapshots

    def compact(self, data: bytes, *, slot: int | None = None) -> Snapshot:
        """Snapshot the application's state ``data`` and drop the log through its slot.

        Without ``slot``: call it only when the application has applied every
        delivery handed out so far (right after a ``Ready``'s deliveries):
        ``data`` then reflects exactly the log through ``decided_through``.

        With ``slot``: ``data`` is the state at an earlier point, marked by
        ``snapshot_point()`` when the application copied its state (the state
        is then encoded off the hot path); only the log through ``slot`` is
        dropped. ``slot`` must be the latest marked point (or
        ``decided_through``), at most ``decided_through`` and above the
        current snapshot's slot: a stale point (a snapshot from a peer
        overtook it) raises ``ValueError``; check ``compacted_through`` first.

        The next ``Ready`` carries the snapshot for storage.
        """
        if slot is None:
            slot = self.decided_through
            if self.snapshot is not None and slot <= self.snapshot.slot:
                return self.snapshot
            meta = self._snapshot_meta()
        else:
            if slot > self.decided_through:
                raise ValueError(f"slot {slot} is not decided here ({self.decided_through})")
            if slot <= self.compacted_through:
                raise ValueError(
                    f"slot {slot} is at or below the snapshot ({self.compacted_through})"
                )
            point = self._point
            if point is not None and point[0] == slot:
                meta = point[1]
            elif slot == self.decided_through:
                meta = self._snapshot_meta()
            else:
                raise ValueError(f"no snapshot point was marked at slot {slot}")
        self._point = None
        snap = Snapshot(slot, meta, data)
        self._drop_through(snap)
        self._snapshot_out = snap
        return snap

    def snapshot_point(self) -> int:
        """Mark the current delivery point for a later ``compact(data, slot=...)``.

        Call it when the application copies its state, having applied every
        delivery handed out so far; returns the slot that state corresponds
        to (``decided_through``). What ``compact`` needs of the log at that
        point (positions, the ids delivered) is recorded now, so deliveries
        after it do not leak into the snapshot. Only the latest point is kept.
        """
        self._point = (self.decided_through, self._snapshot_meta())
        return self.decided_through

    def _snapshot_meta(self) -> bytes:
        seen = {life: (s.low, frozenset(s.above)) for life, s in self._seen.items()}
        return encode_meta(SnapshotMeta(self.decided_through, self.delivered, seen, self.clock_ms))

    def _drop_through(self, snap: Snapshot) -> None:
        slot = snap.slot
        self.snapshot = snap
        self.compacted_through = slot
        for s in [s for s in self.log if s <= slot]:
            del self.log[s]
        for s in [s for s in self.accepted if s <= slot]:
            del self.accepted[s]

    def _adopt_snapshot(self, snap: Snapshot, meta: SnapshotMeta) -> None:
        """Jump to ``snap``: everything through its slot is decided and delivered."""
        self._drop_through(snap)
        self.decided_through = snap.slot
        self.known_commit = max(self.known_commit, snap.slot)
        self.delivered = meta.delivered
        self.clock_ms = max(self.clock_ms, meta.clock_ms)
        self.clock_estimate_ms = max(self.clock_estimate_ms, self.clock_ms)
        self._seen = {}
        for life, (low, above) in meta.seen.items():
            seen = self._seen[life] = _Seen()
            seen.low, seen.above = low, set(above)

    def _send_snapshot(self, dst: str) -> None:
        snap = self.snapshot
        if snap is None:
            return
        last = self._snapshot_sent.get(dst)
        if last is not None and self._now - last < self.config.snapshot_resend_ticks:
            return  # a transfer to it is still under way
        self._snapshot_sent[dst] = self._now
        step = self.config.snapshot_chunk_bytes_max
        size = len(snap.data)
        for offset in range(0, max(size, 1), step):
            chunk = snap.data[offset : offset + step]
            msg = SnapshotChunk(
                self.instance, self.node_id, snap.slot, snap.meta, size, offset, chunk
            )
            self._send(dst, msg)

    def _on_snapshot_chunk(self, m: SnapshotChunk) -> None:
        if m.slot <= self.decided_through or m.offset < 0 or m.offset + len(m.chunk) > m.size:
            self.ignored += 1
            return
        key = (m.slot, m.meta, m.size)
        chunks = self._incoming.get(key)
        if chunks is None:
            if len(self._incoming) >= INCOMING_SNAPSHOTS_MAX:
                del self._incoming[next(iter(self._incoming))]  # the oldest transfer
            chunks = self._incoming[key] = {}
        chunks[m.offset] = m.chunk
        if sum(len(c) for c in chunks.values()) < m.size:
            return
        data = b"".join(chunks[o] for o in sorted(chunks))
        del self._incoming[key]
        if len(data) != m.size:
            self.ignored += 1  # overlapping chunks from a confused sender
            return
        try:
            meta = decode_meta(m.meta)
        except DecodeError:
            self.ignored += 1
            return
        if meta.slot != m.slot:
            self.ignored += 1
            return
        snap = Snapshot(m.slot, m.meta, data)
        for stale in [k for k in self._incoming if k[0] <= m.slot]:
            del self._incoming[stale]
        if self.role is Role.LEADER and (
            m.slot >= self._next_slot or (self._open and m.slot >= min(self._open))
        ):
            # A snapshot over a slot we hold open (or above all we proposed)
            # means a higher ballot chose it, and opaque state cannot be
            # compared with our proposals: never lead across it (see
            # ``_decide``). Below our open slots it only fills our gap.
            self._step_down(None)
        # Deliveries already handed out stay before the restore point.
        self._restore_at = len(self._deliveries)
        pending_before = set(self.pending)
        self._adopt_snapshot(snap, meta)
        self._snapshot_out = snap
        # Own proposals delivered inside the snapshot: never delivered here.
        for pid in pending_before:
            if self._is_delivered(pid):
                del self.pending[pid]
                self._forwarded_at.pop(pid, None)
                self._dropped.append(
                    Dropped(pid, "delivered inside a snapshot from a peer", delivered=True)
                )
        self._deliver_ready_slots()
        if self.decided_through < self.known_commit:
            self._ask_catchup()

    def _decide(self, slot: int, value: Batch) -> None:
        if slot <= self.decided_through or slot in self.log:
            return
        self.log[slot] = value
        self.accepted.pop(slot, None)
        self._decided_new.append(DecidedEntry(slot, value))
        o = self._open.pop(slot, None)
        if self.role is Role.LEADER and (
            (o is not None and o.value != value) or (o is None and slot >= self._next_slot)
        ):
            # Someone with a higher ballot chose a value here (another than
            # ours, or above everything we proposed), so our ballot is stale:
            # we must never propose into, nor advertise a commit covering, a
            # slot where followers may hold our losing proposal.
            self._step_down(None)
        self._deliver_ready_slots()

    def _deliver_ready_slots(self) -> None:
        # The hot loop of every replica: names bound locally, and a
        # ProposalId (whose hash is a Python call) hashed only where needed.
        log = self.log
        if self.decided_through + 1 not in log:
            return
        seen_by_life = self._seen
        deliveries = self._deliveries
        pending = self.pending
        queued = self._queued
        me = self.node_id
        slot = self.decided_through
        delivered = self.delivered
        clock = self.clock_ms
        while slot + 1 in log:
            slot += 1
            for p in log[slot]:
                pid = p.id
                origin = pid.origin
                if origin == CLOCK_ORIGIN:
                    # A clock stamp: it moves the log's clock, never backwards.
                    t = stamp_ms(p)
                    if t is not None and t > clock:
                        clock = t
                    continue
                seq = pid.seq
                life = (origin, seq >> SEQ_BITS)
                counter = seq & COUNTER_MASK
                seen = seen_by_life.get(life)
                if seen is None:
                    seen = seen_by_life[life] = _Seen()
                elif counter <= seen.low or counter in seen.above:
                    continue  # a retried proposal, delivered before
                if counter == seen.low + 1 and not seen.above:
                    seen.low = counter  # in order: the common case
                else:
                    seen.add(counter)
                delivered += 1
                deliveries.append(Delivered(pid, Delivery(delivered, origin, p.payload, clock)))
                if origin == me and pid in pending:
                    mine = pending.pop(pid)
                    self._forwarded_at.pop(pid, None)
                    if mine.payload != p.payload:
                        # Another proposal under our id (an earlier life that
                        # drew this incarnation): ours is skipped everywhere
                        # as its retry. Fail it; never report that one as ours.
                        self._dropped.append(Dropped(pid, _CONFLICT, conflict=True))
                if queued:
                    queued.discard(pid)
        self.decided_through = slot
        self.delivered = delivered
        self.clock_ms = clock
        if self.clock_estimate_ms < clock:
            self.clock_estimate_ms = clock
        if self.known_commit < slot:
            self.known_commit = slot

    def _is_delivered(self, pid: ProposalId) -> bool:
        seq = pid.seq
        seen = self._seen.get((pid.origin, seq >> SEQ_BITS))
        if seen is None:
            return False
        counter = seq & COUNTER_MASK
        return counter <= seen.low or counter in seen.above

    # ============================================================= followers

    def _reforward_due(self) -> None:
        if self.leader is None or self.leader == self.node_id or not self.pending:
            return
        due = self._now - self.config.forward_retry_ticks
        fwd = self._forwarded_at
        again: list[ProposalId] = []
        for pid, at in fwd.items():
            if at > due:
                break  # (roughly) oldest first: the rest were forwarded later
            again.append(pid)
        for pid in again:
            del fwd[pid]
            fwd[pid] = self._now
            self._to_forward.append(self.pending[pid])

    def _flush_forwards(self) -> None:
        if not self._to_forward:
            return
        if self.role is Role.LEADER:
            for p in self._to_forward:
                self._enqueue(p)
            self._to_forward.clear()
            return
        leader = self.leader
        if leader is None:
            self._to_forward.clear()  # still pending: re-forwarded once a leader is known
            return
        chunk = self.config.batch_count_max
        fwd = self._to_forward
        for i in range(0, len(fwd), chunk):
            self._send(leader, Forward(self.instance, self.node_id, tuple(fwd[i : i + chunk])))
        fwd.clear()

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
            if m.ballot == self.ballot and self.role is Role.LEADER:
                self._heard[m.sender] = self._now
        elif isinstance(m, Forward):
            self._on_forward(m)
        elif isinstance(m, Prepare):
            self._on_prepare(m)
        elif isinstance(m, Promise):
            self._on_promise(m)
        elif isinstance(m, Nack):
            self._on_nack(m)
        elif isinstance(m, CatchUp):
            self._on_catchup(m)
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

    def _send(self, dst: str, msg: Message) -> None:
        if dst == self.node_id:
            if isinstance(msg, Accepted):
                self._hold(msg)
            else:
                self._loopback.append(msg)
        elif isinstance(msg, EARLY):
            self._out_early.append(Envelope(dst, msg))
        else:
            self._out.append(Envelope(dst, msg))

    def _hold(self, vote: Accepted) -> None:
        """Count our own acceptance only once the Ready carrying it is durable."""
        self._held.append((self._ready_seq + 1, vote))

    def _on_persisted(self, seq: int) -> None:
        # Never beyond the Readys handed out: the acceptance of a vote tagged
        # ``_ready_seq + 1`` is not in any Ready yet.
        through = min(seq, self._ready_seq)
        held = self._held
        while held and held[0][0] <= through:
            self._receive(held.popleft()[1])

    def _drain_loopback(self) -> None:
        loop = self._loopback
        while loop:
            self._receive(loop.popleft())

    # ================================================================= ready

    def has_ready(self) -> bool:
        return bool(
            self._out
            or self._out_early
            or self._deliveries
            or self._promised_dirty
            or self._accepted_new
            or self._decided_new
            or self._dropped
            or self._snapshot_out is not None
            or self._to_forward
            or (
                self.role is Role.LEADER
                and (
                    self._commit_sent < self.decided_through
                    or (
                        self._queue
                        and self._next_slot <= self.decided_through + self.config.window_slots_max
                    )
                )
            )
        )

    def ready(self) -> Ready:
        """Cut batches, then hand out every effect produced since the last ``advance``."""
        self._flush_forwards()
        if self.role is Role.LEADER:
            self._fill_window()
            self._drain_loopback()
            if self._commit_sent < self.decided_through:
                self._send_heartbeats()
        return Ready(
            promised=self.promised if self._promised_dirty else None,
            accepted=tuple(self._accepted_new),
            decided=tuple(self._decided_new),
            messages=tuple(self._out),
            deliveries=tuple(self._deliveries),
            dropped=tuple(self._dropped),
            snapshot=self._snapshot_out,
            restore_at=self._restore_at,
            must_sync=self._promised_dirty or bool(self._accepted_new),
            early=tuple(self._out_early),
            seq=self._ready_seq + 1,
        )

    def advance(self, ready: Ready) -> None:
        """Everything in ``ready`` was handled; forget it (newer effects stay)."""
        del self._out[: len(ready.messages)]
        del self._out_early[: len(ready.early)]
        self._ready_seq = max(self._ready_seq, ready.seq)
        del self._deliveries[: len(ready.deliveries)]
        del self._accepted_new[: len(ready.accepted)]
        del self._decided_new[: len(ready.decided)]
        del self._dropped[: len(ready.dropped)]
        if ready.snapshot is not None:
            # The restore point belonged to that Ready alone (a compaction in
            # between may have replaced the snapshot still to persist).
            self._restore_at = None
            if ready.snapshot is self._snapshot_out:
                self._snapshot_out = None
        if ready.promised is not None and ready.promised == self.promised:
            self._promised_dirty = False
