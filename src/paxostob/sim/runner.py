"""The simulator's driver: replicas of the pure core on a virtual-time network.

Theory of operation: ``run(seed)`` builds everything from one
``random.Random(seed)``: it derives separate generators for the options, the
schedule, the network and each replica (so overriding an option changes the
schedule drawn for it, but not the network's or the replicas' streams), then
handles ticks 1, 2, ... one at a time:

1. the schedule's events for this tick: heal, partitions, crash-stops;
2. the scheduled broadcasts (single-decree: proposals) of live nodes;
3. every message copy due at this tick, in (tick, send order);
4. one ``Tick`` to every live replica, in member order.

After each event the replica's ``Ready`` batches are drained in the order of
DESIGN.md §3 (there is no storage: crash-stop loses nothing a correct run
needs): messages go into the network, decided entries and deliveries into
the history. The run ends when every correct replica has delivered
everything (after the heal), when the liveness bound passes, or when the
core raises; then the checkers judge the history. A failure carries the
command that replays it.

Everything is a function of the seed: no clock, no global randomness, no
iteration over unordered containers where order could matter.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

from ..core.events import Event, Propose, Ready, Receive, Tick
from ..core.messages import Envelope, Prepare
from ..core.multipaxos import LogConfig, MultiPaxosReplica, Role
from ..core.synod import SynodReplica
from ..core.types import Ballot, ProposalId
from ..transport.faults import FaultModel
from .checkers import (
    Broadcast,
    CheckFailure,
    SynodHistory,
    SynodTrace,
    TobHistory,
    TobTrace,
    check_synod,
    check_tob,
)
from .network import SimNetwork
from .swarm import (
    PartitionEpisode,
    Schedule,
    SwarmOptions,
    draw_options,
    draw_schedule,
    liveness_bound,
)

__all__ = [
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
_TICK = Tick()


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
    #: Broadcasts (single-decree: proposals) and deliveries summed over replicas.
    broadcasts: int
    deliveries: int
    messages_sent: int
    messages_dropped: int
    messages_duplicated: int
    #: Multi-Paxos: distinct ballots in which some replica became leader;
    #: single-decree: distinct ballots some proposer started phase 1 with.
    elections: int
    crashed: tuple[str, ...]
    #: One line per replica: its final status.
    replicas: tuple[str, ...]

    def status_line(self) -> str:
        crashed = ",".join(self.crashed) or "-"
        return (
            f"seed={self.seed} {self.mode} n={self.options.n} ticks={self.ticks} "
            f"heal@{self.heal_tick} bcast={self.broadcasts} deliv={self.deliveries} "
            f"msgs={self.messages_sent} drop={self.messages_dropped} "
            f"dup={self.messages_duplicated} elections={self.elections} crashed={crashed}"
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


def _streams(seed: int) -> tuple[random.Random, random.Random, random.Random, list[int]]:
    root = random.Random(seed)
    options_rng = random.Random(root.getrandbits(64))
    schedule_rng = random.Random(root.getrandbits(64))
    network_rng = random.Random(root.getrandbits(64))
    replica_seeds = [root.getrandbits(64) for _ in range(_REPLICA_STREAMS)]
    return options_rng, schedule_rng, network_rng, replica_seeds


def _options(options_rng: random.Random, overrides: dict[str, Any]) -> SwarmOptions:
    options = draw_options(options_rng)
    names = {f.name for f in fields(SwarmOptions)}
    if unknown := set(overrides) - names:
        raise TypeError(f"unknown simulator options {sorted(unknown)}; known: {sorted(names)}")
    return replace(options, **overrides) if overrides else options


class _Run:
    """State shared by both modes: the network, the schedule, the clock."""

    def __init__(self, seed: int, synod: bool, overrides: dict[str, Any]) -> None:
        options_rng, schedule_rng, network_rng, self.replica_seeds = _streams(seed)
        self.seed = seed
        self.synod = synod
        self.overrides = overrides
        self.options = o = _options(options_rng, overrides)
        self.schedule = draw_schedule(o, schedule_rng, synod=synod)
        self.members = self.schedule.members
        # Runtime choices (whom to crash when no leader is known) share the network's stream.
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
        self.live: list[str] = list(self.members)
        self.crashed_at: dict[str, int] = {}
        self.now = 0
        #: What is being handled, for the report if the core raises.
        self.doing: tuple[str, str | Envelope] = ("-", "setup")
        self.heal_tick = o.heal_tick
        self.liveness_ticks = liveness_bound(o, self.schedule)
        self.deadline = o.heal_tick + self.liveness_ticks
        self._partition_events = self._partition_timeline(self.schedule.partitions)
        # Several crashes may share a tick.
        self._crash_targets: dict[int, list[str | None]] = {}
        for c in self.schedule.crashes:
            self._crash_targets.setdefault(c.tick, []).append(c.node)

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

    def drain(self, node: str) -> None:
        raise NotImplementedError

    def propose(self, node: str, tick: int) -> None:
        raise NotImplementedError

    def converged(self) -> bool:
        raise NotImplementedError

    def on_heal(self) -> None:
        """Called once the heal tick was handled (no crash comes after it)."""

    def step(self, node: str, event: Event) -> None:
        raise NotImplementedError

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
                for node in proposals.get(tick, ()):
                    if node not in self.crashed_at:
                        self.doing = (node, "propose")
                        self.propose(node, tick)
                for env in net.due(tick):
                    self.doing = (env.dst, env)
                    self.step(env.dst, Receive(env))
                for node in self.live:
                    self.doing = (node, "tick")
                    self.step(node, _TICK)
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

    def result(self, tick: int) -> RunResult:
        raise NotImplementedError

    def check(self, tick: int) -> None:
        raise NotImplementedError

    def apply_faults(self, tick: int) -> None:
        """Heal, partitions and crashes scheduled for ``tick``."""
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
                isolated = self.leader() or self.rng.choice(self.live)
                self.net.partition([isolated], [m for m in self.members if m != isolated])
        for target in self._crash_targets.get(tick, ()):
            victim = target if target is not None else self.leader()
            if victim is None or victim not in self.live:
                victim = self.rng.choice(self.live)
            self.live.remove(victim)
            self.crashed_at[victim] = tick
            self.net.crash(victim)


# ============================================================ Multi-Paxos


class _TobRun(_Run):
    def __init__(self, seed: int, overrides: dict[str, Any]) -> None:
        super().__init__(seed, False, overrides)
        o = self.options
        config = LogConfig(window_slots_max=o.window_slots_max, batch_count_max=o.batch_count_max)
        self.replicas = {
            m: MultiPaxosReplica(m, self.members, random.Random(s), config=config)
            for m, s in zip(self.members, self.replica_seeds, strict=False)
        }
        self.traces = {m: TobTrace(m) for m in self.members}
        self.broadcasts: dict[ProposalId, Broadcast] = {}
        self.counters = dict.fromkeys(self.members, 0)
        self.delivered_ids: dict[str, set[ProposalId]] = {m: set() for m in self.members}
        # What every correct replica owes: broadcasts of correct nodes and
        # everything delivered anywhere (uniform agreement).
        self.must: set[ProposalId] = set()
        self.leader_ballots: set[Ballot] = set()

    def leader(self) -> str | None:
        leaders = [(r.ballot, m) for m in self.live if (r := self.replicas[m]).role is Role.LEADER]
        return max(leaders)[1] if leaders else None

    def drain(self, node: str) -> None:
        r = self.replicas[node]
        trace = self.traces[node]
        net = self.net
        now = self.now
        loops = 0
        while r.has_ready():
            loops += 1
            if loops > READY_LOOP_MAX:
                raise self.livelock(node)
            rd: Ready = r.ready()
            for env in rd.messages:
                net.send(env)
            for e in rd.decided:
                trace.decided.append((now, e))
            if rd.deliveries:
                ids = self.delivered_ids[node]
                for d in rd.deliveries:
                    trace.deliveries.append((now, d))
                    ids.add(d.id)
                    self.must.add(d.id)
            r.advance(rd)
        if r.role is Role.LEADER:
            self.leader_ballots.add(r.ballot)

    def converged(self) -> bool:
        """Every live replica delivered each correct broadcast and everything delivered anywhere."""
        need = len(self.must)
        return all(len(self.delivered_ids[m]) == need for m in self.live)

    def propose(self, node: str, tick: int) -> None:
        self.counters[node] += 1
        # Unique, and names its sender and its number: readable in any failure.
        payload = f"{node}#{self.counters[node]}".encode()
        pid = self.replicas[node].propose(payload)
        assert pid.origin == node, f"{node}'s proposal is named {pid}"
        self.broadcasts[pid] = Broadcast(pid, payload, tick)
        self.must.add(pid)  # forgotten at the heal if the node crashed and nobody delivered it
        self.drain(node)

    def step(self, node: str, event: Event) -> None:
        self.replicas[node].step(event)
        self.drain(node)

    def on_heal(self) -> None:
        self._forget_crashed_broadcasts()

    def _forget_crashed_broadcasts(self) -> None:
        """A crashed node's broadcasts are owed only if somebody delivered them."""
        if not self.crashed_at:
            return
        delivered_any: set[ProposalId] = set().union(*self.delivered_ids.values())
        self.must = {
            pid for pid in self.must if pid.origin not in self.crashed_at or pid in delivered_any
        }

    def check(self, tick: int) -> None:
        for m, r in self.replicas.items():
            trace = self.traces[m]
            trace.crashed_at = self.crashed_at.get(m)
            trace.log = dict(r.log)
        history = TobHistory(
            members=self.members,
            broadcasts=self.broadcasts,
            traces=self.traces,
            heal_tick=self.heal_tick,
            liveness_ticks=self.liveness_ticks,
            end_tick=tick,
        )
        check_tob(history)

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
            deliveries=sum(len(t.deliveries) for t in self.traces.values()),
            messages_sent=stats.sent,
            messages_dropped=stats.dropped,
            messages_duplicated=stats.duplicated,
            elections=len(self.leader_ballots),
            crashed=tuple(sorted(self.crashed_at, key=self.members.index)),
            replicas=tuple(self._describe(m) for m in self.members),
        )

    def _describe(self, node: str) -> str:
        s = self.replicas[node].status()
        crashed = f" crashed@{self.crashed_at[node]}" if node in self.crashed_at else ""
        return (
            f"{node}: {s.role.value} leader={s.leader or '-'} ballot={s.ballot} "
            f"promised={s.promised} decided_through={s.decided_through} "
            f"delivered={s.delivered} pending={s.pending}{crashed}"
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
    options_rng, schedule_rng, _, _ = _streams(seed)
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
