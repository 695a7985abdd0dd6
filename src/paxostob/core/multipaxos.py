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
- ``ReadProbe``, ``ReadProbeReply``, ``ReadIndexAsk``, ``ReadIndexGrant``:
  reads by read index (reads.py argues each).

The rest wait: ``Promise`` and ``Accepted`` are the acceptor's votes;
``Prepare`` because its ballot is our own promise, which must be durable
before it can gather votes (or a restart could reuse the ballot); ``Nack``
conservatively (it reports our promise).

The leader's own acceptance is a vote like a peer's: it counts towards a
quorum only once durable, or a decision could rest on a vote that a crash
erases (3 nodes: leader and A decide, the leader crashes before its fsync,
and a new quorum {B, restarted leader} never saw the value). So an
``Accepted`` to ourselves is held, tagged with the Ready that carries the
acceptance (``Outbox.ready_seq + 1``), and processed when the runtime steps
``Persisted`` for that Ready. Our own ``Promise`` counts at once: becoming
leader needs a peer's promise as well, which answers a ``Prepare`` that left
after our promise was durable (one member: its decisions still wait for its
own durable acceptance, in the same Ready as the promise or a later one).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from .acceptor import Acceptor
from .catchup import Catchup
from .config import LogConfig, Role
from .election import Election
from .events import (
    Campaign,
    Compact,
    Event,
    MarkSnapshotPoint,
    Persisted,
    Propose,
    ProposeChange,
    ReadIndex,
    Ready,
    Receive,
    Restore,
    Tick,
)
from .lease import Guard
from .log import SEQ_BITS, DecidedLog
from .membership import CONFIG_DELAY_SLOTS, ConfigHistory, Configuration
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
    ReadIndexAsk,
    ReadIndexGrant,
    ReadProbe,
    ReadProbeReply,
    SnapshotChunk,
)
from .outbox import EARLY, Outbox
from .proposals import OwnProposals
from .reads import Reads
from .reconfig import ChangeRequests
from .snapshot import decode_meta
from .types import (
    Ballot,
    Batch,
    DecidedEntry,
    ProposalId,
)
from .voter import Voter

__all__ = ["EARLY", "SEQ_BITS", "LogConfig", "MultiPaxosReplica", "Role", "Status"]


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


#: The messages the voter answers, and those of reads (a tuple made once:
#: ``A | B`` in an isinstance builds a union at every message received).
_TO_VOTER = (Accept, Heartbeat, Prepare, ReadProbe)
_TO_READS = (ReadProbeReply, ReadIndexAsk, ReadIndexGrant)

#: What a replica that does not lead passes as its (empty, never filled) queue.
_NONE_QUEUED: set[ProposalId] = set()


def _configs_ahead(log: DecidedLog) -> list[Configuration]:
    """The configurations governing the slots a read round must cover."""
    return log.membership.governing_from(log.decided_through + 1)


class MultiPaxosReplica:
    """One replica of the Multi-Paxos log (sans-IO). Drive it with ``step``.

    It composes the parts (each module's docstring has its rules): the
    ``acceptor`` (promises and acceptances) and the voter (its answers to a
    ballot's owner, learning from a commit watermark), the ``log`` (decided
    slots, delivery, the log's clock), the ``election`` (its role, pre-vote,
    phase 1, and the ``Leadership`` while it leads), its own ``proposals``,
    the ``reads``, catch-up and snapshot transfer, and the outbox of
    effects. It routes each message to them and learns: every slot learned
    decided goes through ``_decide``.
    """

    def __init__(
        self,
        node_id: str,
        members: list[str] | tuple[str, ...],
        rng: random.Random,
        *,
        instance: str = "tob",
        config: LogConfig | None = None,
        incarnation: int = 0,
        join: bool = False,
        config_delay_slots: int = CONFIG_DELAY_SLOTS,
    ) -> None:
        # ``members`` is the founding configuration (every voter); a node
        # that ``join``s is not in it: it learns the log (and so the
        # configurations) until a change adds it. ``config_delay_slots`` is
        # alpha (membership.py): every replica of a log must use the same.
        if (node_id in members) == join:
            raise ValueError(
                f"node {node_id!r} {'joins but is' if join else 'is not'} in the founding "
                f"membership {list(members)}"
            )
        if not 0 <= incarnation < 1 << SEQ_BITS:
            raise ValueError("incarnation out of range")
        self.node_id = node_id
        self.members = tuple(sorted(set(members)))
        self.peers = tuple(m for m in self.members if m != node_id)
        self.instance = instance
        self.config = cfg = config or LogConfig()
        if cfg.window_slots_max > config_delay_slots:
            raise ValueError(
                f"LogConfig.window_slots_max ({cfg.window_slots_max}) may not exceed the "
                f"configuration delay alpha ({config_delay_slots}): a leader must know the "
                "configuration of every slot it opens"
            )
        self._now = 0
        #: Messages ignored: not for this instance or membership, stale, malformed.
        self.ignored = 0
        # Effects not yet handed out in a Ready, and messages to ourselves.
        self._outbox = box = Outbox(node_id)
        # Acceptor: durable state.
        self.acceptor = Acceptor()
        # Learner: the decided log, what was delivered from it, its clock.
        self.log = DecidedLog(Configuration(frozenset(self.members)), config_delay_slots)
        self._changes = ChangeRequests(
            me=node_id, log=self.log, outcomes=box.changes, lag_max=cfg.learner_lag_max
        )
        self._changes.restart(incarnation)
        self._catchup = Catchup(
            me=node_id,
            instance=instance,
            rng=rng,
            log=self.log,
            send=box.send,
            retry_ticks=cfg.catchup_retry_ticks,
            entries_max=cfg.catchup_entries_max,
            bytes_max=cfg.catchup_bytes_max,
            chunk_bytes_max=cfg.snapshot_chunk_bytes_max,
            resend_ticks=cfg.snapshot_resend_ticks,
            send_bytes_per_tick_max=cfg.snapshot_send_bytes_per_tick_max,
        )
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
        # Leases (core/reads.py, 'Leases'): our guard as a follower, on from
        # the start, and the monotonic ms the runtime's ticks reported.
        self.guard = Guard(cfg.guard_ms) if cfg.leases else None
        self._mono_ms = 0
        # Who leads, and our own leadership.
        self.election = Election(
            me=node_id,
            instance=instance,
            rng=rng,
            config=cfg,
            acceptor=self.acceptor,
            log=self.log,
            proposals=self.proposals,
            catchup=self._catchup,
            outbox=box,
            decide=self._decide,
            now=self._now,
            guard=self.guard,
        )
        # The acceptor's answers to a ballot's owner, and learning from its watermark.
        self._voter = Voter(
            me=node_id,
            instance=instance,
            acceptor=self.acceptor,
            log=self.log,
            election=self.election,
            catchup=self._catchup,
            send=box.send,
            decide=self._decide,
            guard=self.guard,
        )
        # Linearizable reads without a log entry (ReadIndex, core/reads.py).
        log = (
            self.log
        )  # a partial, not a lambda: a replica must stay picklable (paxostob check copies it)
        self.reads = Reads(
            me=node_id,
            configs=functools.partial(_configs_ahead, log),
            instance=instance,
            send=box.send,
            done=box.reads,
            failed=box.reads_failed,
            retry_ticks=cfg.accept_retry_ticks,
            timeout_ticks=cfg.read_timeout_ticks,
            incarnation=incarnation,
            lease_drift_max=cfg.lease_drift_max if cfg.leases else None,
            guard_ms=cfg.guard_ms,
        )
        if cfg.batch_bytes_max < 64:
            raise ValueError("batch_bytes_max is too small for any proposal")

    # ================================================================ events

    def step(self, event: Event) -> None:
        """Feed one event. Never raises because of what peers or the network did."""
        if isinstance(event, Receive):
            m = event.envelope.message
            if event.elapsed_ms is not None and isinstance(m, ReadIndexAsk):
                # The one message a fresh reading serves: an ask a lease may grant.
                self._on_ask(m, self._mono_ms + event.elapsed_ms)
            else:
                self._receive(m)
        elif isinstance(event, Propose):
            # The runtime's most frequent event after Receive (one per
            # broadcast): tested second, and it returns at once since a
            # proposal sends nothing to ourselves (no loopback to drain).
            el = self.election
            self.proposals.propose(event.payload, self._now, leader=el.leader, leading=el.leading)
            return
        elif isinstance(event, Persisted):  # (third: one per Ready)
            for vote in self._outbox.durable(event.seq):
                self._receive(vote)
        elif isinstance(event, Tick):
            guard = self.guard
            if guard is not None:
                if event.clock_ms is None:
                    raise ValueError("leases need the runtime's clock in every Tick")
                self._mono_ms += event.elapsed_ms
                guard.tick(self._mono_ms)
                self.reads.mono_ms = self._mono_ms
            if event.clock_ms is not None:
                self.log.tick_clock(
                    event.clock_ms,
                    event.elapsed_ms,
                    step_ms=self.config.clock_step_ms_max,
                    leading=self.election.role is Role.LEADER,
                )
            self._tick()
        elif isinstance(event, ReadIndex):
            el = self.election
            if not (
                self.guard is not None
                and event.elapsed_ms is not None
                and self.reads.read_leased(
                    event.request_id,
                    self._now,
                    self._mono_ms + event.elapsed_ms,
                    el.leading,
                    self.log,
                )
            ):
                self.reads.read(event.request_id, self._now)
            return  # routed when the next Ready is cut: it sends nothing now
        elif isinstance(event, Campaign):
            self.election.campaign(self._now)
        elif isinstance(event, Compact):
            self._compact(event.data, slot=event.slot)
        elif isinstance(event, MarkSnapshotPoint):
            self.log.point = (self.log.decided_through, self.log.meta())
        elif isinstance(event, Restore):
            self._restore(event)
        elif isinstance(event, ProposeChange):
            self._changes.propose(event, self.election.leading, self.election.leader)
        else:  # pragma: no cover - the Event union is closed
            raise TypeError(f"not a core event: {event!r}")
        # Our messages to ourselves, in order, and those sent while they are handled.
        loopback = self._outbox.loopback
        while loopback:
            self._receive(loopback.popleft())

    def _restore(self, r: Restore) -> None:
        """``Restore`` (events.py says what it brings back), before any other event."""
        assert self._now == 0 and not self.log.entries, "Restore comes before every other event"
        self.proposals.restart(r.incarnation)
        self.reads.restart(r.incarnation)
        self._changes.restart(r.incarnation)
        if r.snapshot is not None:
            self.log.adopt(r.snapshot, decode_meta(r.snapshot.meta))
            self.acceptor.forget_through(r.snapshot.slot)
        self.acceptor.restore(r.promised, r.accepted, above=self.log.compacted_through)
        self.election.highest_seen = r.promised
        for d in r.decided:
            if d.slot > self.log.compacted_through:
                self.log.entries[d.slot] = d.value
                self.acceptor.accepted.pop(d.slot, None)
        self._deliver()
        # Decided slots above a gap are known; fetch the gap from peers.
        self.log.known_commit = max([self.log.decided_through, *self.log.entries])

    def _compact(self, data: bytes, *, slot: int | None) -> None:
        """``Compact`` (events.py): a snapshot of ``data`` replaces the log through its slot."""
        snap = self.log.compact(data, slot)
        if snap is not None:
            self.log.drop_through(snap)
            self.acceptor.forget_through(snap.slot)
            self._outbox.snapshot = snap

    def _tick(self) -> None:
        self._now += 1
        now = self._now
        el = self.election
        following = el.leading is None
        lead = el.leading
        if (
            self.guard is not None
            and lead is not None
            and now >= self.reads.round_at + self.config.heartbeat_ticks
        ):
            # A round every heartbeat, in place of it: a commit heartbeat
            # (under load, one per decision) does not refresh the lease.
            self.reads.lease_round(now, lead, self.log)
        el.tick(now)
        if following:
            self.proposals.reforward_due(now, el.leader)
        self.reads.tick(now, el.leader, el.leading is not None)
        self._catchup.tick(now)  # the next chunks of snapshot transfers under way
        if self.log.decided_through < self.log.known_commit and now >= self._catchup.due:
            el.ask_catchup(now)

    # ================================================================ status

    @property
    def role(self) -> Role:
        return self.election.role

    @property
    def leader(self) -> str | None:
        """The leader we know (ourselves when we lead), None while nobody is followed."""
        return self.election.leader

    @property
    def ballot(self) -> Ballot:
        """Our own ballot: the last we campaigned with."""
        return self.election.ballot

    @property
    def leader_ballot(self) -> Ballot:
        """The ballot of the leader we know (ours when we lead): ``status().ballot``, cheaply."""
        el = self.election
        return el.ballot if el.role is not Role.FOLLOWER else el.leader_ballot

    @property
    def membership(self) -> ConfigHistory:
        """The configurations as this replica's decided prefix says (``config_for(slot)``)."""
        return self.log.membership

    def status(self) -> Status:
        el = self.election
        return Status(
            node_id=self.node_id,
            role=el.role,
            leader=el.leader,
            ballot=self.leader_ballot,
            promised=self.acceptor.promised,
            decided_through=self.log.decided_through,
            known_commit=self.log.known_commit,
            delivered=self.log.delivered,
            pending=len(self.proposals.pending),
            elections=el.elections,
            pre_votes_lost=el.pre_votes_lost,
        )

    # ============================================================== routing

    def _receive(self, m: Message) -> None:
        # Any sender: a member we do not know yet (we lag behind its addition)
        # may lead; its votes count only where it is a voter (per slot). Only
        # a would-be leader we know was removed is ignored.
        if m.instance != self.instance or (
            isinstance(m, Prepare) and m.sender in self.log.membership.newest.removed
        ):
            self.ignored += 1
            return
        el = self.election
        now = self._now
        if isinstance(m, _TO_VOTER):
            self.ignored += not self._voter.on_message(m, now)  # False: not the chosen value
        elif isinstance(m, Accepted):
            lead = el.leading
            if lead is None or m.ballot != lead.ballot:
                self.ignored += 1
            elif (value := lead.on_accepted(m, now)) is not None:
                self._decide(m.slot, value)
        elif isinstance(m, HeartbeatReply):
            if el.leading is not None and m.ballot == el.leading.ballot:
                el.leading.heard[m.sender] = now
                el.leading.acked[m.sender] = m.decided_through
        elif isinstance(m, Forward):
            if el.leading is None:
                self.ignored += 1  # the origin re-forwards once it learns the leader
            else:
                self.ignored += el.leading.enqueue_forward(m)
        elif isinstance(m, Promise):
            self.ignored += not el.on_promise(m, now)  # False: no phase 1 of ours
        elif isinstance(m, Nack):
            el.on_nack(m, now)
        elif isinstance(m, CatchUp):
            self._catchup.serve(m, now)
        elif isinstance(m, Decided):
            self._on_decided(m)
        elif isinstance(m, SnapshotChunk):
            self._on_snapshot_chunk(m)
        elif isinstance(m, PreVote):
            el.on_pre_vote(m, now)
        elif isinstance(m, PreVoteReply):
            self.ignored += not el.on_pre_vote_reply(m, now)  # False: no round of ours
        elif isinstance(m, _TO_READS):
            self.ignored += not self.reads.on_message(m, el.leading, now)
        else:
            self.ignored += 1

    def _on_ask(self, m: ReadIndexAsk, fresh_ms: int) -> None:
        """A follower's ask, with a reading taken after it arrived (leases: ``Receive``)."""
        if m.instance != self.instance:
            self.ignored += 1
            return
        lead = self.election.leading
        if self.guard is None or not self.reads.grant_leased(m, lead, fresh_ms, self.log):
            self.ignored += not self.reads.on_ask(m, lead)

    # =============================================================== learner

    def _on_decided(self, m: Decided) -> None:
        log = self.log
        before = log.decided_through
        for e in m.entries:
            self._decide(e.slot, e.value)
        if log.decided_through > before and log.decided_through < log.known_commit:
            self.election.ask_catchup(self._now)  # the next chunk right away

    def _on_snapshot_chunk(self, m: SnapshotChunk) -> None:
        got = self._catchup.assemble(m)
        if got == "ignored":
            self.ignored += 1
            return
        if got == "partial":
            return
        snap, meta = got
        el = self.election
        if el.leading is not None and el.leading.covers(m.slot):
            # A snapshot over a slot we hold open (or above all we proposed)
            # means a higher ballot chose it, and opaque state cannot be
            # compared with our proposals: never lead across it (see
            # ``_decide``). Below our open slots it only fills our gap.
            el.step_down(self._now, None)
        # Deliveries already handed out stay before the restore point.
        box = self._outbox
        box.restore_at = len(box.deliveries)
        pending_before = set(self.proposals.pending)
        self.log.adopt(snap, meta)
        self.acceptor.forget_through(snap.slot)
        box.snapshot = snap
        # Own proposals delivered inside the snapshot: never delivered here.
        self.proposals.settle(pending_before)
        self._deliver()
        if self.log.decided_through < self.log.known_commit:
            el.ask_catchup(self._now)

    def _decide(self, slot: int, value: Batch) -> None:
        log = self.log
        if slot <= log.decided_through or slot in log.entries:
            return
        log.entries[slot] = value
        self.acceptor.accepted.pop(slot, None)
        self._outbox.decided_new.append(DecidedEntry(slot, value))
        lead = self.election.leading
        if lead is not None and lead.lost(slot, value):
            self.election.step_down(self._now, None)  # a higher ballot chose it
        self._deliver()

    def _deliver(self) -> None:
        el = self.election
        lead = el.leading
        log = self.log
        log.deliver(
            self.node_id,
            self._outbox.deliveries,
            self.proposals.pending,
            self.proposals.forwarded_at,
            self._outbox.dropped,
            lead.queued if lead is not None else _NONE_QUEUED,
        )
        self._changes.after_delivery()
        if (
            lead is not None
            and self.node_id not in log.membership.config_for(log.decided_through + 1).voters
        ):
            el.step_down(self._now, None)  # removed: the next slots are not ours to lead

    # ================================================================= ready

    def has_ready(self) -> bool:
        lead = self.election.leading
        return bool(
            self._outbox.has_effects()
            or self.acceptor.promised_dirty
            or self.acceptor.accepted_new
            or self.proposals.to_forward
            or (lead is not None and lead.has_work())
            or self.reads.has_work(self.election.leader, lead, self.log.decided_through)
        )

    def ready(self) -> Ready:
        """Cut batches, then hand out every effect produced since the last ``advance``."""
        el = self.election
        self.proposals.flush(el.leader, el.leading)
        lead = el.leading
        if lead is not None:
            lead.fill_window(self._now)
            loopback = self._outbox.loopback
            while loopback:
                self._receive(loopback.popleft())
            lead = el.leading  # (our own votes may have made us step down)
        # Reads after the window is filled: a round's probe is the heartbeat.
        self.reads.flush(self._now, el.leader, lead, self.log)
        if lead is not None and lead.commit_sent < self.log.decided_through:
            lead.send_heartbeats(self._now)
        return self._outbox.ready(self.acceptor)

    def advance(self, ready: Ready) -> None:
        """Everything in ``ready`` was handled; forget it (newer effects stay)."""
        self._outbox.advance(ready, self.acceptor)
