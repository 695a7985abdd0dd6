"""The simulator's driver: replicas of the pure core on a virtual-time network.

Theory of operation: ``run(seed)`` builds everything from one
``random.Random(seed)``: it derives separate generators for the options, the
schedule, the network and each replica (so overriding an option changes the
schedule drawn for it, but not the network's or the replicas' streams), then
handles ticks 1, 2, ... one at a time:

1. the schedule's events for this tick: restarts, heal, partitions,
   crash-stops, outages (crashes that restart later), rejoining laggards
   (a follower down long, then back and deaf for a while); then the saves
   due;
2. the scheduled broadcasts (single-decree: proposals) of live nodes;
3. every message copy due at this tick, in (tick, send order);
4. one ``Tick`` to every live replica, in member order; a Multi-Paxos
   replica's carries its wall clock (the true time, ``SIM_EPOCH_MS`` plus
   ``SIM_TICK_MS`` per tick, plus the node's offset, which the schedule's
   clock jumps change) and 10 ms of monotonic time (in lease runs, what the
   node's own clock rate, ``Schedule.drift``, makes of 10 ms; a read then
   carries a fresh reading too, ``ReadIndex.elapsed_ms``).

Multi-Paxos replicas run as the asyncio runtime runs them, each on a
``MemoryStorage`` with a small application (``app.SimApp``): their Readys go
through ``core.pipeline.Pipeline``, the very object the asyncio driver
(``node.driver``) drives. After each event: take a Ready, send its
``early`` messages (the late ones too when nothing is to be waited for),
apply the deliveries (restoring a peer's snapshot at ``restore_at``), hand
it back (``handled``: ``advance``), compact when the application applied
``snapshot_every`` deliveries since its last snapshot, and let the pipeline
say what to write. Each save completes ``persist_delay_ticks`` later (drawn
per save from its own stream; 0: at once), at the start of a tick; Readys
taken meanwhile queue behind it and are written together by the next save
(group commit), as the driver's saver thread does; once a save lands, the
late ``messages`` of what it made durable leave and ``Persisted`` is
stepped. A crash is a power loss: the saves in flight are
lost, the storage drops what it had not synced, and the replica, its
application and the messages in flight to it are gone. A restart opens the
storage, builds a new replica (with a new generator) and ``restore``s it,
restores the application from the snapshot, and drains the replay.

The run ends when every correct replica has delivered everything (after the
heal), when the liveness bound passes, or when the core raises; then the
checkers judge the history. A failure carries the command that replays it.

Everything is a function of the seed: no clock, no global randomness, no
iteration over unordered containers where order could matter.
"""

from __future__ import annotations

import abc
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

from ..core.events import (
    Campaign,
    ChangeOutcome,
    Compact,
    Event,
    Persisted,
    Propose,
    ProposeChange,
    ReadIndex,
    Ready,
    Receive,
    Tick,
)
from ..core.events import Restore as RestoreEvent
from ..core.lease import Guard
from ..core.membership import CONFIG_DELAY_SLOTS, Configuration
from ..core.messages import (
    Accept,
    Accepted,
    Envelope,
    Prepare,
    Promise,
    ReadProbe,
    ReadProbeReply,
)
from ..core.multipaxos import LogConfig, MultiPaxosReplica, Role
from ..core.pipeline import Complete, Pipeline
from ..core.snapshot import decode_meta
from ..core.synod import SynodReplica
from ..core.types import Ballot, Batch, ProposalId, Snapshot, stamp_ms
from ..errors import DecodeError, StoreMissingError
from ..storage.base import has_durable_part
from ..storage.memory import MemoryStorage
from ..transport.faults import FaultModel
from .app import SimApp
from .checkers import (
    Broadcast,
    CheckFailure,
    ClockRecord,
    ReadRecord,
    Recovered,
    Rejoin,
    Restore,
    SynodHistory,
    SynodTrace,
    TobHistory,
    TobLife,
    TobTrace,
    check_leader_stability,
    check_read_fresh,
    check_synod,
    check_tob,
    needless_leader_changes,
)
from .network import SimNetwork
from .swarm import (
    MEMBERSHIP_PLANS,
    Laggard,
    Outage,
    PartitionEpisode,
    Schedule,
    SwarmOptions,
    Wipe,
    draw_options,
    draw_schedule,
    liveness_bound,
)

__all__ = [
    "CLUSTER_ID",
    "READY_LOOP_MAX",
    "RunOutcome",
    "RunResult",
    "plan",
    "replay_command",
    "run",
    "run_many",
    "simulate",
]

#: ``Ready`` batches drained after one event before the runner calls it a
#: livelock in the core (a healthy replica needs a handful).
READY_LOOP_MAX = 10_000
#: Generators derived per run; fixed so that option overrides never shift them.
_REPLICA_STREAMS = 8
SYNOD_INSTANCE = "sim/consensus"
#: The cluster id every simulated storage is opened with.
CLUSTER_ID = "sim"
_TICK = Tick()
#: The true time at tick 0 (2026-01-01T00:00:00Z) and one tick, on the replicas' clocks.
SIM_EPOCH_MS = 1_767_225_600_000
SIM_TICK_MS = 10
#: Every broadcast stands for a key with this TTL, for the expiry checker.
KEY_TTL_MS = 1_000


def replay_command(seed: int, *, synod: bool = False) -> str:
    """The command that replays ``seed`` (the CLI's ``sim`` subcommand)."""
    return f"paxostob sim --seed {seed}" + (" --synod" if synod else "")


@dataclass(frozen=True, slots=True)
class RunResult:
    seed: int
    mode: str  # "tob" or "synod"
    options: SwarmOptions
    schedule: Schedule
    #: The last tick handled, and the tick the network healed.
    ticks: int
    heal_tick: int
    #: Broadcasts (single-decree: proposals) and deliveries summed over replicas
    #: (replays after a restart included).
    broadcasts: int
    deliveries: int
    messages_sent: int
    messages_dropped: int
    messages_duplicated: int
    #: Multi-Paxos: distinct ballots in which some replica became leader;
    #: single-decree: distinct ballots some proposer started phase 1 with.
    elections: int
    #: Nodes that crash-stopped (never restarted).
    crashed: tuple[str, ...]
    #: One line per replica: its final status.
    replicas: tuple[str, ...]
    #: Crashes of any kind, restarts on storage, snapshots the replicas took
    #: (compaction), and peer snapshots restored by lagging replicas.
    crashes: int = 0
    restarts: int = 0
    snapshots: int = 0
    installs: int = 0
    #: Rejoining laggards restarted, those in a quiet run, and the leader
    #: changes that followed those (``checkers.needless_leader_changes``).
    rejoins: int = 0
    quiet_rejoins: int = 0
    needless_elections: int = 0
    #: Restarts refused because the node's store was wiped.
    refused: int = 0
    #: Membership changes of the plan that took effect, and the final voters.
    member_changes: int = 0
    voters: tuple[str, ...] = ()
    #: ``ReadIndex`` reads asked, served (each checked fresh), and given up.
    reads: int = 0
    reads_served: int = 0
    reads_failed: int = 0

    def status_line(self) -> str:
        crashed = ",".join(self.crashed) or "-"
        return (
            f"seed={self.seed} {self.mode} n={self.options.n} ticks={self.ticks} "
            f"heal@{self.heal_tick} bcast={self.broadcasts} deliv={self.deliveries} "
            f"msgs={self.messages_sent} drop={self.messages_dropped} "
            f"dup={self.messages_duplicated} elections={self.elections} "
            f"crashes={self.crashes} restarts={self.restarts} snapshots={self.snapshots} "
            f"installs={self.installs} rejoins={self.rejoins} "
            f"needless_elections={self.needless_elections} refused={self.refused} "
            f"reads={self.reads_served}/{self.reads} stopped={crashed}"
            + (
                f" member_changes={self.member_changes} voters={','.join(self.voters)}"
                if self.options.membership
                else ""
            )
        )


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A run's result, and the property it broke (with the command replaying it), if any."""

    seed: int
    result: RunResult
    failure: CheckFailure | None

    @property
    def ok(self) -> bool:
        return self.failure is None


def _streams(
    seed: int,
) -> tuple[random.Random, random.Random, random.Random, list[int], random.Random]:
    root = random.Random(seed)
    options_rng = random.Random(root.getrandbits(64))
    schedule_rng = random.Random(root.getrandbits(64))
    network_rng = random.Random(root.getrandbits(64))
    replica_seeds = [root.getrandbits(64) for _ in range(_REPLICA_STREAMS)]
    # Drawn last: the streams above are those of runs before saves took time.
    persist_rng = random.Random(root.getrandbits(64))
    return options_rng, schedule_rng, network_rng, replica_seeds, persist_rng


def _options(options_rng: random.Random, overrides: dict[str, Any]) -> SwarmOptions:
    options = draw_options(options_rng)
    names = {f.name for f in fields(SwarmOptions)}
    if unknown := set(overrides) - names:
        raise TypeError(f"unknown simulator options {sorted(unknown)}; known: {sorted(names)}")
    return replace(options, **overrides) if overrides else options


class _Run(abc.ABC):
    """State shared by both modes: the network, the schedule, the clock, crashes."""

    def __init__(self, seed: int, synod: bool, overrides: dict[str, Any]) -> None:
        options_rng, schedule_rng, network_rng, self.replica_seeds, self.persist_rng = _streams(
            seed
        )
        self.seed = seed
        self.synod = synod
        self.overrides = overrides
        self.options = o = _options(options_rng, overrides)
        self.schedule = draw_schedule(o, schedule_rng, synod=synod)
        #: The founding voters; ``members`` adds the spare nodes of the
        #: membership plan (started as learners-to-be: ``join``).
        self.founders = self.schedule.members
        self.members = self.schedule.members + self.schedule.spares
        # Runtime choices (whom to crash when no leader is known, how much of
        # an unsynced tail survives a power loss) share the network's stream.
        self.rng = network_rng
        self.faults = FaultModel(
            loss=o.loss, duplicate=o.duplicate, delay_s=(float(o.delay_ticks[0]), o.delay_ticks[1])
        )
        self.net = SimNetwork(
            self.members,
            network_rng,
            self.faults,
            spike_probability=o.spike_probability,
            spike_ticks=o.spike_ticks,
        )
        #: Nodes up now, in member order (the order ticks are handed out).
        self.live: list[str] = list(self.members)
        #: Crash-stopped nodes and the tick they stopped.
        self.crashed_at: dict[str, int] = {}
        #: Nodes down in an outage, and the tick they restart.
        self.down_until: dict[str, int] = {}
        self.crash_count = 0
        self.restart_count = 0
        self.now = 0
        #: What is being handled, for the report if the core raises.
        self.doing: tuple[str, str | Envelope] = ("-", "setup")
        self.heal_tick = o.heal_tick
        self.liveness_ticks = liveness_bound(o, self.schedule)
        self.deadline = o.heal_tick + self.liveness_ticks
        self._partition_events = self._partition_timeline(self.schedule.partitions)
        # Several crashes, outages and restarts may share a tick.
        self._crash_targets: dict[int, list[str | None]] = {}
        for c in self.schedule.crashes:
            self._crash_targets.setdefault(c.tick, []).append(c.node)
        self._outages: dict[int, list[Outage]] = {}
        for outage in self.schedule.outages:
            self._outages.setdefault(outage.tick, []).append(outage)
        self._wipes: dict[int, list[Wipe]] = {}
        for wipe in self.schedule.wipes:
            self._wipes.setdefault(wipe.tick, []).append(wipe)
        #: Restarts refused (a wiped store), and wiped nodes that rejoined anyway.
        self.refused_count = 0
        self._restarts: dict[int, list[str]] = {}
        self._laggards: dict[int, list[Laggard]] = {}
        for g in self.schedule.laggards:
            self._laggards.setdefault(g.tick, []).append(g)
        #: Laggards down now, and the tick until which each is deaf once back.
        self._deaf_after: dict[str, Laggard] = {}
        self.rejoins: list[Rejoin] = []

    @staticmethod
    def _partition_timeline(
        episodes: Iterable[PartitionEpisode],
    ) -> dict[int, PartitionEpisode | None]:
        """Tick -> the episode starting then, or None for an end (starts win over ends)."""
        timeline: dict[int, PartitionEpisode | None] = {}
        for e in episodes:
            timeline.setdefault(e.end, None)
            timeline[e.start] = e
        return timeline

    def replay(self) -> str:
        cmd = replay_command(self.seed, synod=self.synod)
        if self.overrides:
            given = ", ".join(f"{k}={v!r}" for k, v in sorted(self.overrides.items()))
            cmd += f"  (with run() overrides {given})"
        return cmd

    def leader(self) -> str | None:
        """The live node that leads now, if any (the target of ``leader`` faults)."""
        return None

    @abc.abstractmethod
    def drain(self, node: str) -> None: ...

    @abc.abstractmethod
    def propose(self, node: str, tick: int) -> None: ...

    @abc.abstractmethod
    def converged(self) -> bool: ...

    def on_heal(self) -> None:  # noqa: B027 - an optional hook: nothing to do by default
        """Called once the heal tick was handled (no crash comes after it)."""

    def on_crash(self, node: str) -> None:  # noqa: B027 - an optional hook
        """``node`` (up until now) crashes: its process and unsynced writes are gone."""

    def on_tick_start(self, tick: int) -> None:  # noqa: B027 - an optional hook
        """After the faults of ``tick``, before its proposals and messages (saves due now)."""

    def on_restart(self, node: str) -> bool:
        """``node`` starts again on its storage (it is up again when this is called)."""
        raise TypeError(f"{type(self).__name__} runs have no restarts (crash-stop only)")

    @abc.abstractmethod
    def step(self, node: str, event: Event) -> None: ...

    def tick_event(self, node: str) -> Tick:
        """The ``Tick`` ``node`` gets this tick (plain: no clock)."""
        return _TICK

    def loop(self) -> tuple[int, CheckFailure | None]:
        """Handle ticks until converged after the heal, or the deadline.

        Returns the last tick handled, and the failure that stopped the run
        early (the core raised, or livelocked), if any.
        """
        proposals: dict[int, list[str]] = {}
        for p in self.schedule.proposals:
            proposals.setdefault(p.tick, []).append(p.node)
        net = self.net
        tick = 0
        try:
            for tick in range(1, self.deadline + 1):
                self.now = net.now = tick
                self.apply_faults(tick)
                self.on_tick_start(tick)
                for node in proposals.get(tick, ()):
                    if node in self.live:
                        self.doing = (node, "propose")
                        self.propose(node, tick)
                for env in net.due(tick):
                    self.doing = (env.dst, env)
                    self.step(env.dst, Receive(env))
                for node in self.live:
                    self.doing = (node, "tick")
                    self.step(node, self.tick_event(node))
                if tick == self.heal_tick:
                    self.on_heal()
                if tick >= self.heal_tick and self.converged():
                    break
        except CheckFailure as stopped:
            return tick, stopped
        except Exception as exc:
            node, what = self.doing
            if isinstance(what, Envelope):
                what = f"receiving {type(what.message).__name__} from {what.message.sender}"
            raised = CheckFailure(
                "core raised",
                f"{node} raised {type(exc).__name__}: {exc} at tick {tick} while handling {what}",
            )
            raised.__cause__ = exc
            return tick, raised
        return tick, None

    def livelock(self, node: str) -> CheckFailure:
        return CheckFailure(
            "progress",
            f"{node} still has_ready() after {READY_LOOP_MAX} Ready batches at "
            f"tick {self.now}: a livelock in the core",
        )

    def outcome(self) -> RunOutcome:
        tick, failure = self.loop()
        result = self.result(tick)
        if failure is None:
            try:
                self.check(tick)
            except CheckFailure as found:
                failure = found
        if failure is not None:
            context = f"seed {self.seed} ({result.mode}, {self.options.summary()}): "
            failure = failure.with_replay(self.replay(), context)
        return RunOutcome(self.seed, result, failure)

    @abc.abstractmethod
    def result(self, tick: int) -> RunResult: ...

    @abc.abstractmethod
    def check(self, tick: int) -> None: ...

    def apply_faults(self, tick: int) -> None:
        """Restarts, heal, partitions, crash-stops and outages scheduled for ``tick``."""
        for node in self._restarts.pop(tick, ()):
            if node in self.down_until and node not in self.crashed_at:
                self._restart(node)
        if tick == self.heal_tick:
            self.net.heal()
            return
        if tick > self.heal_tick:
            return
        if tick in self._partition_events:
            episode = self._partition_events[tick]
            if episode is None:
                self.net.partition()
            elif episode.groups is not None:
                self.net.partition(*episode.groups)
            else:
                candidates = self.live or list(self.members)
                isolated = self.leader() or self.rng.choice(candidates)
                self.net.partition([isolated], [m for m in self.members if m != isolated])
        for target in self._crash_targets.get(tick, ()):
            self._crash_stop(target)
        for outage in self._outages.get(tick, ()):
            victims = list(outage.nodes)
            leader = self.leader() if outage.leader else None
            if leader is not None and leader not in victims:
                victims[0] = leader
            for victim in sorted(victims, key=self.members.index):
                if victim in self.live:
                    self._crash(victim)
                    self.down_until[victim] = outage.restart
                    self._restarts.setdefault(outage.restart, []).append(victim)
        for laggard in self._laggards.get(tick, ()):
            leader = self.leader()
            followers = [m for m in self.live if m != leader]
            if len(self.live) > 1 and followers:
                victim = self.rng.choice(followers)
                self._crash(victim)
                self.down_until[victim] = laggard.restart
                self._restarts.setdefault(laggard.restart, []).append(victim)
                self._deaf_after[victim] = laggard
        for wipe in self._wipes.get(tick, ()):
            if wipe.node in self.crashed_at:
                continue  # crash-stopped already: its disk no longer matters
            if wipe.node in self.live:
                self._crash(wipe.node)
            self.on_wipe(wipe.node)
            self.down_until[wipe.node] = wipe.restart
            self._restarts.setdefault(wipe.restart, []).append(wipe.node)

    def _crash_stop(self, target: str | None) -> None:
        """Crash ``target`` (the leader when None) for good; a node already down stays down."""
        victim = target if target is not None else self.leader()
        if victim is None or victim in self.crashed_at:
            candidates = self.live or [m for m in self.members if m not in self.crashed_at]
            victim = self.rng.choice(candidates)
        if victim in self.live:
            self._crash(victim)
        self.down_until.pop(victim, None)
        self.crashed_at[victim] = self.now

    def _crash(self, node: str) -> None:
        self.on_crash(node)
        self.crash_count += 1
        self.live.remove(node)
        self.net.crash(node)

    def on_wipe(self, node: str) -> None:  # noqa: B027 - an optional hook
        """``node`` (down) lost its disk."""

    def _restart(self, node: str) -> None:
        del self.down_until[node]
        self.restart_count += 1
        self.net.restart(node)
        self.live = [m for m in self.members if m in self.live or m == node]
        self.doing = (node, "restart")
        started = self.on_restart(node)
        laggard = self._deaf_after.pop(node, None)
        if not started:
            # It refused to start (no store): down for good, like a crash-stop.
            self.refused_count += 1
            self.live.remove(node)
            self.net.crash(node)
            self.crashed_at[node] = self.now
            return
        if laggard is not None and laggard.restart == self.now:
            self.net.deaf[node] = laggard.deaf_until
            self.rejoins.append(self._rejoin(node, laggard))

    #: A rejoin is judged from this long before it (an election then under
    #: way is not its doing) until two check-quorum windows after it hears.
    REJOIN_CALM_BEFORE = 100
    REJOIN_SETTLE_AFTER = 60

    def leader_since(self) -> tuple[Ballot | None, int]:
        """The ballot leading now and the tick it first led (None: no leader)."""
        return None, 0

    def _rejoin(self, node: str, laggard: Laggard) -> Rejoin:
        o = self.options
        lo = self.now - self.REJOIN_CALM_BEFORE
        until = laggard.deaf_until + self.REJOIN_SETTLE_AFTER
        s = self.schedule
        events = [t for e in s.partitions for t in (e.start, e.end)]
        events += [c.tick for c in s.crashes]
        events += [t for x in s.outages for t in (x.tick, x.restart)]
        events += [t for g in s.laggards if g is not laggard for t in (g.tick, g.restart)]
        events += [t for w in s.wipes for t in (w.tick, w.restart)]
        # An explicit campaign (lease runs) changes the leader by design.
        events += [c.tick for c in s.campaigns]
        ballot, since = self.leader_since()
        quiet = (
            o.loss == 0
            and o.spike_probability == 0
            and not any(lo <= t <= until for t in events)
            and ballot is not None
            and since <= lo
        )
        return Rejoin(node, self.now, laggard.deaf_until, until, ballot, quiet)


# ============================================================ Multi-Paxos


class _NoGuard(Guard):
    """The planted ``no-guard`` bug: replies as guarding, yet lets anyone campaign."""

    __slots__ = ()

    def refuses(self, candidate: str) -> bool:
        return False


class _TobRun(_Run):
    def __init__(self, seed: int, overrides: dict[str, Any]) -> None:
        super().__init__(seed, False, overrides)
        o = self.options
        self.config = LogConfig(
            window_slots_max=o.window_slots_max,
            batch_count_max=o.batch_count_max,
            snapshot_chunk_bytes_max=o.snapshot_chunk_bytes_max,
            # Two chunks per tick: with the small chunks some options pick, a
            # transfer spans several ticks (CatchUps and a newer snapshot
            # arrive during it), as a snapshot of many MiB does in production.
            snapshot_send_bytes_per_tick_max=2 * o.snapshot_chunk_bytes_max,
            pre_vote=o.pre_vote,
            leases=o.reads == "lease",
            # The planted ignore-drift: replicas that assume exact clocks.
            lease_drift_max=0.0 if o.lease_rule == "ignore-drift" else o.lease_drift_max,
            tick_ms=SIM_TICK_MS,
        )
        #: Lease runs: each node's monotonic clock rate, the reading its
        #: replica got last (its last Tick's), and the explicit campaigns.
        self.rates = dict.fromkeys(self.members, 1.0)
        self.rates.update(self.schedule.drift)
        self.mono_read = dict.fromkeys(self.members, 0)
        self._campaigns: dict[int, list[str]] = {}
        for c in self.schedule.campaigns:
            self._campaigns.setdefault(c.tick, []).append(c.node)
        self.campaign_count = 0
        #: alpha: production's with the production window, small with small
        #: windows (a change then takes effect within a few round trips).
        self.alpha = CONFIG_DELAY_SLOTS if o.window_slots_max > 8 else 8
        self.seeds = dict(zip(self.members, self.replica_seeds, strict=False))
        for spare in self.schedule.spares:  # (beyond the fixed streams: derived)
            self.seeds[spare] = random.Random(f"{seed}/{spare}").getrandbits(64)
        #: The membership plan: its steps left, the request in flight (number,
        #: step, tick asked), the next tick to ask, outcomes not yet read.
        self.plan = list(MEMBERSHIP_PLANS[o.membership][1]) if o.membership else []
        self.plan_next = self.schedule.membership_start
        self.plan_asked: tuple[int, str, int] | None = None
        self.plan_requests = 0
        self.member_changes = 0
        self.change_outcomes: list[ChangeOutcome] = []
        # Incarnations from 1, as a store's opens count, so a life's seed is fixed.
        self.storages = {m: MemoryStorage(incarnation_base=1) for m in self.members}
        self.replicas: dict[str, MultiPaxosReplica] = {}
        self.apps: dict[str, SimApp] = {}
        self.traces = {m: TobTrace(m, lives=[]) for m in self.members}
        #: Readys handed out and not yet durable, oldest first, with the tick
        #: their save completes (non-decreasing).
        self.pipelines: dict[str, Pipeline] = {}
        #: The save each node has in flight, and the tick it lands.
        self.saving: dict[str, tuple[int, Ready]] = {}
        #: (slot, ballot) -> the value, and the acceptors whose storage holds
        #: it synced (with the first tick each did): what a decision may rest on.
        self.durable: dict[tuple[int, Ballot], tuple[Batch, dict[str, int]]] = {}
        self.broadcasts: dict[ProposalId, Broadcast] = {}
        self.counters = dict.fromkeys(self.members, 0)
        # Liveness bookkeeping: the position of everything delivered anywhere,
        # and the broadcasts of lives still up (owed even if nobody has them yet).
        self.position_of: dict[ProposalId, int] = {}
        self.max_position = 0
        self.owed: set[ProposalId] = set()
        self.leader_ballots: set[Ballot] = set()
        #: Ballot -> the tick some replica first led in it.
        self.leader_first: dict[Ballot, int] = {}
        #: (slot, ballot) -> the value proposed and who accepted it (first tick each).
        self.acceptances: dict[tuple[int, Ballot], tuple[Batch, dict[str, int]]] = {}
        self.conflicts: list[tuple[int, Ballot, Batch, Batch, int]] = []
        self.snapshot_count = 0
        self.install_count = 0
        #: Each node's wall-clock offset from the true time (ms), and the jumps.
        self.offsets = dict.fromkeys(self.members, 0)
        self._jumps: dict[int, list[tuple[str | None, int]]] = {}
        for j in self.schedule.clock_jumps:
            if j.tick == 0 and j.node is not None:
                self.offsets[j.node] = j.offset_ms
            else:
                self._jumps.setdefault(j.tick, []).append((j.node, j.offset_ms))
        self.clock = ClockRecord(self.config.clock_step_ms_max, KEY_TTL_MS)
        #: Each node's offset in the last wall clock its replica read (its last
        #: ``Tick``; None: this life read none yet). A jump changes ``offsets``
        #: at the start of a tick, but the replica only sees it at its Tick:
        #: until then its clock is the one it read before the jump.
        self.read_offsets: dict[str, int | None] = dict.fromkeys(self.members)
        #: The largest offset a node had in the wall clock it read while it led,
        #: so far (None: nobody led).
        self.leader_offset_max: int | None = None
        #: Reads (``options.reads``): where each is asked, from a stream of its
        #: own (the others draw as without reads); asked and not yet served.
        self.read_rng = random.Random(seed * 7919 + 1)
        self.reads_asked: dict[int, tuple[str, int, int]] = {}
        self.read_count = 0
        self.reads_served = 0
        self.reads_failed = 0
        for m in self.members:
            self._start(m, bootstrap=True)

    # ------------------------------------------------------------- lives

    def _start(self, node: str, *, bootstrap: bool = False) -> None:
        """Open the node's storage, build and restore a replica, restore the app, replay."""
        spare = node not in self.founders
        founding = self.founders if bootstrap or spare else None
        state = self.storages[node].open(CLUSTER_ID, node, bootstrap=founding)
        # A new generator per life: a restarted node must not replay its old timeouts.
        rng = random.Random(self.seeds[node] + (state.incarnation - 1) * (1 << 64))
        replica = MultiPaxosReplica(
            node,
            self.founders,
            rng,
            config=self.config,
            join=spare,
            config_delay_slots=self.alpha,
        )
        if self.options.membership_rule == "no-delay":
            # The planted bug: a change governs the slot right after its own.
            replica.log.membership.delay = 1
        if self.options.lease_rule == "no-guard" and replica.guard is not None:
            replica.guard.__class__ = _NoGuard  # the planted bug
        self.mono_read[node] = self.mono_ms(node)  # the clock base of this life
        replica.step(
            RestoreEvent(
                state.promised,
                state.accepted,
                state.decided,
                incarnation=state.incarnation,
                snapshot=state.snapshot,
            )
        )
        app = SimApp()
        life = TobLife(self.now)
        if state.incarnation > 1:
            life.recovered = Recovered(
                promised=state.promised,
                accepted={a.slot: a.ballot for a in state.accepted},
                decided={d.slot: d.value for d in state.decided},
                snapshot_slot=0 if state.snapshot is None else state.snapshot.slot,
            )
        if state.snapshot is not None:
            life.restores.append(self._restore_app(app, state.snapshot, 0, "storage"))
        self.traces[node].lives.append(life)
        self.replicas[node] = replica
        self.read_offsets[node] = None  # a new replica has read no wall clock
        # The runtime's own ordering of sends and saves (its default queue bound too).
        self.pipelines[node] = Pipeline(replica, durable=True)
        self.apps[node] = app
        self.drain(node)  # the replay of the restored log

    def _restore_app(self, app: SimApp, snap: Snapshot, index: int, source: str) -> Restore:
        try:
            state = app.restore(snap.data)
        except DecodeError as e:
            raise CheckFailure(
                "snapshot state",
                f"{self.doing[0]} restored a {source} snapshot of slots through {snap.slot} "
                f"at tick {self.now} whose application state is not one the application "
                f"wrote ({len(snap.data)} bytes): {e}",
            ) from e
        position = decode_meta(snap.meta).delivered
        return Restore(self.now, index, snap.slot, position, state, source)

    def _end_life(self, node: str, ended: int | None) -> None:
        r = self.replicas[node]
        life = self.traces[node].life
        life.ended = ended
        life.log = dict(r.log.entries)
        life.decided_through = r.log.decided_through
        life.state = tuple(self.apps[node].entries)

    def on_crash(self, node: str) -> None:
        self._end_life(node, self.now)
        storage = self.storages[node]
        self.saving.pop(node, None)  # a save in flight never reaches the disk
        del self.pipelines[node]
        # A power loss: the unsynced tail is lost, or (a disk that wrote part
        # of it) only a prefix of it survives.
        tail = storage.unsynced_saves
        keep = self.rng.randint(0, tail) if tail and self.rng.random() < 0.5 else 0
        storage.crash(keep)
        del self.replicas[node], self.apps[node]
        # Its undelivered broadcasts died with it; delivered ones stay owed by position.
        self.owed = {pid for pid in self.owed if pid.origin != node}
        # So did its reads.
        self.reads_asked = {k: v for k, v in self.reads_asked.items() if v[0] != node}

    def on_restart(self, node: str) -> bool:
        try:
            self._start(node)
        except StoreMissingError:
            if self.options.wiped == "refuse":
                return False
            # The deliberate bugs: start on an empty store.
            if self.options.wiped == "rejoin-new-ids":
                self.storages[node] = MemoryStorage(incarnation_base=1 << 20)
            self._start(node, bootstrap=True)
        return True

    def on_wipe(self, node: str) -> None:
        self.storages[node].wipe()

    # ------------------------------------------------------------- Readys

    def leader(self) -> str | None:
        leaders = [(r.ballot, m) for m in self.live if (r := self.replicas[m]).role is Role.LEADER]
        return max(leaders)[1] if leaders else None

    def leader_since(self) -> tuple[Ballot | None, int]:
        node = self.leader()
        if node is None:
            return None, 0
        ballot = self.replicas[node].ballot
        return ballot, self.leader_first.get(ballot, self.now)

    def _persist(self, node: str, rd: Ready) -> None:
        """Save ``rd`` (a coalesced group); record the acceptances now synced."""
        storage = self.storages[node]
        if rd.snapshot is not None:
            storage.install_snapshot(rd.snapshot)
        if has_durable_part(rd):
            if self.options.persist == "skip-accepted":
                rd = replace(rd, accepted=())
            storage.save(rd)
        if storage.unsynced_saves == 0:
            for a in rd.accepted:
                self.durable.setdefault((a.slot, a.ballot), (a.value, {}))[1].setdefault(
                    node, self.now
                )

    def _save_delay(self) -> int:
        lo, hi = self.options.persist_delay_ticks
        delay = self.persist_rng.randint(lo, hi)
        if self.options.persist in ("send-first", "early-vote"):
            delay = max(1, delay)  # the bug needs a window to show
        return delay

    def _pump(self, node: str) -> None:
        """Send what the pipeline completed; write its next group, at once or some ticks later."""
        pipeline = self.pipelines[node]
        r = self.replicas[node]
        life = self.traces[node].life
        mode = self.options.persist
        while node not in self.saving:
            action = pipeline.poll()
            if action is None:
                return
            if isinstance(action, Complete):
                self._saw_clock(node, r)  # the pipeline stepped Persisted
                for rd in action.readies:
                    if mode != "send-first":
                        for env in rd.messages:
                            self._sent(node, r, life, env)
                            self.net.send(env)
                    if mode != "early-vote":
                        self._counted(node, rd, life)
                continue
            delay = self._save_delay()
            if delay:
                self.saving[node] = (self.now + delay, action.ready)
                return
            self._persist(node, action.ready)
            pipeline.saved()

    def tick_event(self, node: str) -> Tick:
        offset = self.read_offsets[node] = self.offsets[node]
        wall = SIM_EPOCH_MS + self.now * SIM_TICK_MS + offset
        if self.options.reads != "lease":
            return Tick(wall, SIM_TICK_MS)
        reading = self.mono_ms(node)
        elapsed, self.mono_read[node] = reading - self.mono_read[node], reading
        return Tick(wall, elapsed)

    def mono_ms(self, node: str) -> int:
        """``node``'s monotonic clock now, in whole ms (its rate times the true time)."""
        return int(self.now * SIM_TICK_MS * self.rates[node])

    def _campaign(self, tick: int) -> None:
        """The explicit campaigns due at ``tick`` (lease runs): phase 1 at once, and a write."""
        for node in self._campaigns.pop(tick, ()):
            r = self.replicas.get(node)
            if node in self.live and r is not None and r.role is not Role.LEADER:
                self.campaign_count += 1
                self.doing = (node, "campaign")
                r.step(Campaign())
                self.drain(node)
                # A client writes there at once: the first batch the new
                # leader decides moves the applied position past what an
                # old leader's state holds.
                self.propose(node, tick)

    def on_tick_start(self, tick: int) -> None:
        if self.plan or self.plan_asked is not None:
            self._membership_step(tick)
        if self._campaigns:
            self._campaign(tick)
        if self.options.reads == "lease":
            # Clients keep reading at whoever believes it leads, every tick:
            # a deposed leader cut off with a minority serves from its lease,
            # if anywhere.
            for leading in [m for m in self.live if self.replicas[m].role is Role.LEADER]:
                self._read_at(leading, tick)
        for target, offset in self._jumps.pop(tick, ()):
            node = target if target is not None else self.leader()
            if node is not None:
                self.offsets[node] = offset
        for node in self.live:
            saving = self.saving.get(node)
            if saving is None or saving[0] > tick:
                continue
            del self.saving[node]
            self.doing = (node, "save")
            self._persist(node, saving[1])
            self.pipelines[node].saved()
            self._pump(node)
            self.drain(node)

    def drain(self, node: str) -> None:
        """Take ``node``'s Readys through its pipeline, as the asyncio driver does."""
        r = self.replicas[node]
        pipeline = self.pipelines[node]
        app = self.apps[node]
        life = self.traces[node].life
        net = self.net
        now = self.now
        mode = self.options.persist
        every = self.options.snapshot_every
        loops = 0
        while pipeline.can_take():
            loops += 1
            if loops > READY_LOOP_MAX:
                raise self.livelock(node)
            rd: Ready = pipeline.take()
            # 1. early messages leave at once (the broken send-first: all of
            # them), the late ones too when nothing is to be waited for.
            at_once = pipeline.completes_at_once(rd)
            for env in (*rd.early, *rd.messages) if at_once or mode == "send-first" else rd.early:
                self._sent(node, r, life, env)
                net.send(env)
            self.change_outcomes.extend(rd.changes)
            # 2. decisions and deliveries, the peer's snapshot at its restore point.
            for e in rd.decided:
                life.decided.append((now, e))
                if self.clock.first_decided is None and e.value and stamp_ms(e.value[0]):
                    self.clock.first_decided = now
            restore_at = rd.restore_at if rd.snapshot is not None else None
            for i, d in enumerate(rd.deliveries):
                if i == restore_at:
                    self._install(app, rd, life)
                app.apply(d.delivery)
                life.deliveries.append((now, d))
                if d.id not in self.position_of:
                    self.position_of[d.id] = d.delivery.slot
                    self.max_position = max(self.max_position, d.delivery.slot)
            if restore_at is not None and restore_at == len(rd.deliveries):
                self._install(app, rd, life)
            if rd.reads or rd.reads_failed:
                self._served(node, app, rd)
            pipeline.handled(rd)  # (may step Persisted)
            if self.options.reads == "no-quorum":
                self._forge_probe_replies(r, rd)
            self._saw_clock(node, r)
            if at_once and mode != "early-vote":
                self._counted(node, rd, life)
            # 3. compaction, once every delivery handed out is applied.
            if every and app.since_snapshot >= every:
                before = r.log.snapshot
                r.step(Compact(app.snapshot()))
                if r.log.snapshot is not before:
                    self.snapshot_count += 1
            if mode == "early-vote":
                # The bug: the core hears "durable" before the save lands.
                self._counted(node, rd, life)
                r.step(Persisted(rd.seq))
                self._saw_clock(node, r)
            # 4. the saves, and the late messages of what they made durable.
            self._pump(node)
        if r.role is Role.LEADER and r.ballot not in self.leader_ballots:
            self.leader_ballots.add(r.ballot)
            self.leader_first[r.ballot] = now

    def _served(self, node: str, app: SimApp, rd: Ready) -> None:
        """Check each read ``rd`` serves against what was applied before it was asked."""
        saw = app.entries[-1][0] if app.entries else 0
        for rid in rd.reads:
            asked = self.reads_asked.pop(rid, None)
            if asked is None:
                continue  # (a read of an earlier life of the node: never served)
            self.reads_served += 1
            check_read_fresh(ReadRecord(node, rid, asked[1], asked[2], self.now, saw))
        for rid in rd.reads_failed:
            if self.reads_asked.pop(rid, None) is not None:
                self.reads_failed += 1

    def _forge_probe_replies(self, r: MultiPaxosReplica, rd: Ready) -> None:
        """The deliberate bug ``no-quorum``: every peer "answers" a read probe at once."""
        for env in rd.early:
            m = env.message
            if isinstance(m, ReadProbe):
                reply = ReadProbeReply(m.instance, env.dst, m.ballot, m.round)
                r.step(Receive(Envelope(m.sender, reply)))

    def ask_read(self, tick: int) -> None:
        """A ``ReadIndex`` at a live node drawn from the reads' own stream."""
        self._read_at(self.live[self.read_rng.randrange(len(self.live))], tick)

    def _read_at(self, node: str, tick: int) -> None:
        self.read_count += 1
        rid = self.read_count
        self.reads_asked[rid] = (node, tick, self.max_position)
        if self.options.reads == "lease":
            # A reading taken now, after the read was asked.
            fresh = self.mono_ms(node) - self.mono_read[node]
            self.replicas[node].step(ReadIndex(rid, elapsed_ms=fresh))
        else:
            self.replicas[node].step(ReadIndex(rid))
        self.drain(node)

    def _counted(self, node: str, rd: Ready, life: TobLife) -> None:
        """``rd`` is durable (as far as the core knows): the acceptor may count on its state.

        A candidate counts its own promise and a leader its own acceptance
        towards their quorums; from here on they are the acceptor's word.
        """
        now = self.now
        if rd.promised is not None and rd.promised > life.promised_sent[0]:
            life.promised_sent = (rd.promised, now)
        for a in rd.accepted:
            self._ack(life, a.slot, a.ballot)
            if a.ballot.node_id == node:  # the leader accepted its own proposal
                self.acceptances.setdefault((a.slot, a.ballot), (a.value, {}))[1].setdefault(
                    node, now
                )

    def _sent(self, node: str, r: MultiPaxosReplica, life: TobLife, env: Envelope) -> None:
        """What a message leaving now tells others the acceptor promised and accepted.

        An ``Accepted`` for a slot the acceptor knew decided is not an
        acceptance to keep (the slot is chosen already).
        """
        m = env.message
        now = self.now
        if isinstance(m, Accept):
            stamp = stamp_ms(m.value[0]) if m.value else None
            if stamp is not None and stamp > self.clock.highest.get(now, 0):
                self.clock.highest[now] = stamp
            proposed = self.acceptances.setdefault((m.slot, m.ballot), (m.value, {}))[0]
            if proposed != m.value:
                self.conflicts.append((m.slot, m.ballot, proposed, m.value, now))
        elif isinstance(m, Promise | Accepted):
            if m.ballot > life.promised_sent[0]:
                life.promised_sent = (m.ballot, now)
            if isinstance(m, Accepted):
                if m.slot not in r.log.entries:
                    self._ack(life, m.slot, m.ballot)
                known = self.acceptances.get((m.slot, m.ballot))
                if known is not None:  # (an Accept from the leader came first)
                    known[1].setdefault(node, now)

    def _ack(self, life: TobLife, slot: int, ballot: Ballot) -> None:
        old = life.acked.get(slot)
        if old is None or ballot > old[0]:
            life.acked[slot] = (ballot, self.now)

    def _install(self, app: SimApp, rd: Ready, life: TobLife) -> None:
        assert rd.snapshot is not None
        life.restores.append(self._restore_app(app, rd.snapshot, len(life.deliveries), "peer"))
        self.install_count += 1
        self.max_position = max(self.max_position, life.restores[-1].position)

    def converged(self) -> bool:
        """Everyone is back, every owed broadcast is delivered somewhere, and every
        live replica reached the furthest position delivered anywhere."""
        if self.down_until or self.plan:
            return False
        members = self._newest().members
        owed = {pid for pid in self.owed if pid.origin in members}
        if not owed <= self.position_of.keys():
            return False
        top = self.max_position
        return all(self.replicas[m].log.delivered >= top for m in self.live if m in members)

    def _newest(self) -> Configuration:
        """The newest configuration any live replica knows (the runner's view, not a check)."""
        configs = [self.replicas[m].membership.newest for m in self.live]
        return max(configs, key=lambda c: c.effective_slot)

    # ----------------------------------------------------- membership plan

    def _membership_step(self, tick: int) -> None:
        """Read the plan's outcomes; ask the leader for its next change when due."""
        outcomes, self.change_outcomes = self.change_outcomes, []
        asked = self.plan_asked
        for c in outcomes:
            if asked is None or c.request != asked[0]:
                continue
            self.plan_asked = asked = None
            retry = c.error is not None and any(
                why in c.error
                for why in ("not the leader", "in progress", "lags", "has not answered")
            )
            if c.configuration is not None:
                self.member_changes += 1
            if not retry:
                self.plan.pop(0)  # done, or refused for good (e.g. already removed)
            self.plan_next = tick + self.rng.randint(1, 30)
        if asked is not None and tick - asked[2] > 300:
            # No outcome (the node asked crashed or stopped leading): ask
            # again, unless the change is in the newest configuration already.
            self.plan_asked = None
            op, target = self.plan[0][0], asked[1]
            newest = self._newest() if self.live else None
            if newest is not None and (
                (op == "remove" and target not in newest.members)
                or (op == "add" and target in newest.members)
                or (op == "promote" and target in newest.voters)
            ):
                self.plan.pop(0)
        if not self.plan or self.plan_asked is not None or tick < self.plan_next:
            return
        leader = self.leader()
        if leader is None:
            self.plan_next = tick + 5
            return
        op, target = self.plan[0]
        voters = self.replicas[leader].membership.newest.voters
        if target == "leader":
            target = leader
        elif target == "founder":
            others = sorted(v for v in voters if v in self.founders and v != leader)
            if not others:
                self.plan.pop(0)
                return
            target = self.rng.choice(others)
        if op in ("remove", "promote") and not self._keeps_quorum(
            voters - {target} if op == "remove" else voters | {target}
        ):
            self.plan.pop(0)  # it could leave no live quorum: skip it
            return
        self.plan_requests += 1
        self.plan_asked = (self.plan_requests, target, tick)
        self.doing = (leader, f"membership {op} {target}")
        self.step(leader, ProposeChange(op, target, self.plan_requests))

    def _keeps_quorum(self, voters: frozenset[str]) -> bool:
        """Whether ``voters`` keep a majority up through the rest of the fault schedule."""
        dead = set(self.crashed_at) | {
            m for m in self.members if m not in self.live and m not in self.down_until
        }
        # A wiped node is refused at its restart: out for good.
        dead |= {w.node for w in self.schedule.wipes if w.tick <= self.now}
        future = sum(1 for c in self.schedule.crashes if c.tick > self.now) + sum(
            1 for w in self.schedule.wipes if w.tick > self.now
        )
        return len(voters - dead) - future >= len(voters) // 2 + 1

    def propose(self, node: str, tick: int) -> None:
        self.counters[node] += 1
        # Unique, and names its sender and its number: readable in any failure.
        payload = f"{node}#{self.counters[node]}".encode()
        replica = self.replicas[node]
        replica.step(Propose(payload))
        pid = replica.proposals.last_id
        assert pid is not None
        assert pid.origin == node, f"{node}'s proposal is named {pid}"
        self.broadcasts[pid] = Broadcast(pid, payload, tick)
        self.owed.add(pid)
        self.drain(node)
        if self.options.reads != "off" and self.live:
            self.ask_read(tick)

    def step(self, node: str, event: Event) -> None:
        r = self.replicas[node]
        if self.options.reads == "lease" and isinstance(event, Receive):
            # A reading taken now, after the message arrived (a lease may grant an ask).
            event = Receive(event.envelope, self.mono_ms(node) - self.mono_read[node])
        r.step(event)
        self._saw_clock(node, r)
        self.drain(node)

    def _saw_clock(self, node: str, r: MultiPaxosReplica) -> None:
        """Record ``r``'s clock estimate, and whether a non-leader's clock got into it."""
        clock = r.log.clock_estimate_ms
        highest = self.clock.highest
        if clock > highest.get(self.now, 0):
            highest[self.now] = clock
        # A leader's clock is the wall clock it read: a jump it has not read
        # yet (one at the start of this tick, before its Tick) is not in its
        # estimate, and a leader that read none yet has no clock of its own.
        offset = self.read_offsets[node]
        if r.role is Role.LEADER and offset is not None:
            top = self.leader_offset_max
            self.leader_offset_max = offset if top is None else max(top, offset)
        if clock and self.clock.ahead is None:
            top = self.leader_offset_max
            bound = SIM_EPOCH_MS + self.now * SIM_TICK_MS + (top if top is not None else 0)
            if self.options.reads == "lease":
                # A follower's estimate runs on its monotonic clock: one that
                # runs fast gains up to the drift bound on the true time.
                bound += math.ceil(self.now * SIM_TICK_MS * self.options.lease_drift_max)
            if top is None or clock > bound:
                self.clock.ahead = (self.now, node, clock, bound)

    def check(self, tick: int) -> None:
        for m in self.live:
            self._end_life(m, None)
        for m, at in self.crashed_at.items():
            self.traces[m].crashed_at = at
        history = TobHistory(
            members=self.members,
            broadcasts=self.broadcasts,
            traces=self.traces,
            heal_tick=self.heal_tick,
            liveness_ticks=self.liveness_ticks,
            end_tick=tick,
            acceptances=self.acceptances,
            conflicts=self.conflicts,
            durable=self.durable,
            clock=self.clock,
            founding=self.founders,
            config_delay=self.alpha,
        )
        check_tob(history)
        check_leader_stability(self.rejoins, self.leader_first)

    def result(self, tick: int) -> RunResult:
        stats = self.net.stats
        return RunResult(
            seed=self.seed,
            mode="tob",
            options=self.options,
            schedule=self.schedule,
            ticks=tick,
            heal_tick=self.heal_tick,
            broadcasts=len(self.broadcasts),
            deliveries=sum(len(life.deliveries) for t in self.traces.values() for life in t.lives),
            messages_sent=stats.sent,
            messages_dropped=stats.dropped,
            messages_duplicated=stats.duplicated,
            elections=len(self.leader_ballots),
            crashed=tuple(sorted(self.crashed_at, key=self.members.index)),
            replicas=tuple(self._describe(m) for m in self.members),
            crashes=self.crash_count,
            restarts=self.restart_count,
            snapshots=self.snapshot_count,
            installs=self.install_count,
            rejoins=len(self.rejoins),
            quiet_rejoins=sum(r.quiet for r in self.rejoins),
            needless_elections=needless_leader_changes(self.rejoins, self.leader_first),
            refused=self.refused_count,
            member_changes=self.member_changes,
            voters=tuple(sorted(self._newest().voters)) if self.live else (),
            reads=self.read_count,
            reads_served=self.reads_served,
            reads_failed=self.reads_failed,
        )

    def _describe(self, node: str) -> str:
        lives = self.traces[node].lives
        history = ", ".join(
            f"{life.started}-{life.ended if life.ended is not None else 'end'}" for life in lives
        )
        ups = f" lives={len(lives)} ({history})" if len(lives) > 1 else ""
        if node not in self.replicas:
            stopped = self.crashed_at.get(node)
            why = f"crash-stopped@{stopped}" if stopped is not None else "down"
            return f"{node}: {why}{ups}"
        s = self.replicas[node].status()
        snap = self.replicas[node].log.snapshot
        return (
            f"{node}: {s.role.value} leader={s.leader or '-'} ballot={s.ballot} "
            f"promised={s.promised} decided_through={s.decided_through} "
            f"delivered={s.delivered} pending={s.pending} "
            f"snapshot@{snap.slot if snap is not None else '-'}{ups}"
        )


# =============================================================== Synod


class _SynodRun(_Run):
    def __init__(self, seed: int, overrides: dict[str, Any]) -> None:
        super().__init__(seed, True, overrides)
        self.replicas = {
            m: SynodReplica(m, self.members, SYNOD_INSTANCE, random.Random(s))
            for m, s in zip(self.members, self.replica_seeds, strict=False)
        }
        self.traces = {m: SynodTrace(m) for m in self.members}
        self.proposals: dict[ProposalId, Broadcast] = {}
        self.rounds: set[Ballot] = set()

    def leader(self) -> str | None:
        return None  # no stable leader in single-decree Paxos

    def drain(self, node: str) -> None:
        r = self.replicas[node]
        trace = self.traces[node]
        loops = 0
        while r.has_ready():
            loops += 1
            if loops > READY_LOOP_MAX:
                raise self.livelock(node)
            rd = r.ready()
            for env in rd.messages:
                if isinstance(env.message, Prepare) and env.message.sender == node:
                    self.rounds.add(env.message.ballot)
                self.net.send(env)
            for e in rd.decided:
                trace.decisions.append((self.now, e.value))
            for d in rd.deliveries:
                trace.deliveries.append((self.now, d))
            r.advance(rd)

    def propose(self, node: str, tick: int) -> None:
        payload = f"{node}:value".encode()
        self.replicas[node].step(Propose(payload))
        # The single-decree core names a node's one proposal (node, 1).
        pid = ProposalId(node, 1)
        self.proposals[pid] = Broadcast(pid, payload, tick)
        self.drain(node)

    def step(self, node: str, event: Event) -> None:
        self.replicas[node].step(event)
        self.drain(node)

    def converged(self) -> bool:
        return all(self.traces[m].decisions for m in self.live)

    def check(self, tick: int) -> None:
        for m, r in self.replicas.items():
            trace = self.traces[m]
            trace.crashed_at = self.crashed_at.get(m)
            trace.final = r.decision
        history = SynodHistory(
            members=self.members,
            proposals=self.proposals,
            traces=self.traces,
            heal_tick=self.heal_tick,
            liveness_ticks=self.liveness_ticks,
            end_tick=tick,
        )
        check_synod(history)

    def result(self, tick: int) -> RunResult:
        stats = self.net.stats
        return RunResult(
            seed=self.seed,
            mode="synod",
            options=self.options,
            schedule=self.schedule,
            ticks=tick,
            heal_tick=self.heal_tick,
            broadcasts=len(self.proposals),
            deliveries=sum(len(t.deliveries) for t in self.traces.values()),
            messages_sent=stats.sent,
            messages_dropped=stats.dropped,
            messages_duplicated=stats.duplicated,
            elections=len(self.rounds),
            crashed=tuple(sorted(self.crashed_at, key=self.members.index)),
            replicas=tuple(self._describe(m) for m in self.members),
            crashes=self.crash_count,
        )

    def _describe(self, node: str) -> str:
        r = self.replicas[node]
        crashed = f" crashed@{self.crashed_at[node]}" if node in self.crashed_at else ""
        decision = "-" if r.decision is None else r.decision[0].payload.decode()
        return f"{node}: promised={r.promised} decision={decision}{crashed}"


# ================================================================ API


def run(seed: int, *, synod: bool = False, **overrides: Any) -> RunResult:
    """Run the schedule of ``seed``; raises ``CheckFailure`` (with its replay command) if broken.

    ``overrides`` replace drawn ``SwarmOptions`` fields (``n=5``, ``loss=0.0``, ...);
    the schedule is then drawn for the overridden options.
    """
    outcome = simulate(seed, synod=synod, **overrides)
    if outcome.failure is not None:
        raise outcome.failure
    return outcome.result


def plan(seed: int, *, synod: bool = False, **overrides: Any) -> tuple[SwarmOptions, Schedule]:
    """The options and schedule ``seed`` runs with, without running it (cheap)."""
    options_rng, schedule_rng, _, _, _ = _streams(seed)
    options = _options(options_rng, overrides)
    return options, draw_schedule(options, schedule_rng, synod=synod)


def simulate(seed: int, *, synod: bool = False, **overrides: Any) -> RunOutcome:
    """Like ``run``, but a broken property is returned with the run's result, not raised."""
    r: _TobRun | _SynodRun = _SynodRun(seed, overrides) if synod else _TobRun(seed, overrides)
    return r.outcome()


def run_many(
    seeds: Iterable[int], *, synod: bool = False, **overrides: Any
) -> Iterator[RunOutcome]:
    """``simulate`` each seed: failures are returned, not raised, so every seed is tried."""
    for seed in seeds:
        yield simulate(seed, synod=synod, **overrides)
