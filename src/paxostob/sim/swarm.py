"""Swarm testing: every seed draws its own mix of faults, then a schedule of them.

Theory of operation (Groce et al., "Swarm Testing", 2012): a run that turns
on every fault at once tends to test none of them well (a 30% lossy network
with constant partitions mostly elects leaders). So each seed first draws
*which* features are on and how hard (``SwarmOptions``), then a concrete
*schedule* for that mix (``Schedule``): partition episodes, crash-stops,
and proposals at random ticks. Over thousands of seeds every combination
shows up, including the quiet ones.

A run has two phases. The *fault phase* (ticks ``1..fault_ticks``) has all
the drawn faults; at ``heal_tick = fault_ticks + 1`` the network heals (no
loss, duplication, spikes or partitions; the base delays stay) and the
*heal phase* lasts until every correct replica delivered everything, or
``liveness_ticks`` more ticks have passed, which the checkers report as a
liveness failure.

Bounds, and why:

- ``n`` is 3 or 5 (half the runs each): 3 is the smallest replicated case,
  5 the smallest where two nodes can crash and two minorities can exist.
- At most ``(n - 1) // 2`` nodes crash, so a majority stays correct and
  liveness after the heal is a fair demand.
- Loss is at most ``LOSS_MAX`` (30%): more mostly tests elections.
- Proposals per node and phase lengths are bounded so a run costs tens of
  milliseconds and thousands fit in a CI run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = [
    "LIVENESS_TICKS_DEFAULT",
    "LOSS_MAX",
    "PARTITION_KINDS",
    "Crash",
    "PartitionEpisode",
    "ProposeAt",
    "Schedule",
    "SwarmOptions",
    "draw_options",
    "draw_schedule",
    "liveness_bound",
    "members_of",
]

LOSS_MAX = 0.3
#: Kinds of partition episode: ``leader`` cuts off whoever leads when the episode
#: starts; ``split`` cuts a minority from a majority; ``random`` draws groups,
#: possibly leaving a node in no group (it then bridges the others).
PARTITION_KINDS = ("leader", "split", "random")
#: Ticks after the heal within which every correct replica must have delivered
#: everything, on top of the throughput allowance of ``liveness_bound``. Recovery
#: needs an election (up to two randomized timeouts of 15-30 ticks when
#: candidates collide), a re-forward (30 ticks) and some catch-up rounds (5
#: ticks each); 600 leaves a wide margin so that only a stuck run fails.
LIVENESS_TICKS_DEFAULT = 600


@dataclass(frozen=True, slots=True)
class SwarmOptions:
    """The fault mix of one run. Ticks are the core's ``Tick`` (10 ms in production)."""

    n: int
    loss: float
    duplicate: float
    #: Each message copy takes ``randint(lo, hi)``-ish ticks (never below 1).
    delay_ticks: tuple[int, int]
    spike_probability: float
    #: A spiked copy takes this many extra ticks.
    spike_ticks: tuple[int, int]
    #: Partition episodes in the fault phase, and which kinds may be drawn.
    partitions: int
    partition_kinds: tuple[str, ...]
    #: Nodes that crash-stop in the fault phase; ``crash_leader`` makes each
    #: crash take the current leader (when there is one) instead of a random node.
    crashes: int
    crash_leader: bool
    #: Each node broadcasts between 1 and this many messages in the fault phase.
    proposals_per_node_max: int
    fault_ticks: int
    liveness_ticks: int
    #: Multi-Paxos pipelining and batching bounds (small values stress them).
    window_slots_max: int
    batch_count_max: int

    def __post_init__(self) -> None:
        if self.n not in (1, 2, 3, 4, 5, 6, 7):
            raise ConfigurationError(f"n must be between 1 and 7, got {self.n}")
        for name in ("loss", "duplicate", "spike_probability"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigurationError(f"{name} must be a probability, got {p}")
        for name in ("delay_ticks", "spike_ticks"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                raise ConfigurationError(f"{name} must satisfy 1 <= lo <= hi, got {(lo, hi)}")
        if not 0 <= self.crashes <= (self.n - 1) // 2:
            raise ConfigurationError(
                f"crashes must be in [0, (n-1)//2 = {(self.n - 1) // 2}], got {self.crashes}"
            )
        if unknown := set(self.partition_kinds) - set(PARTITION_KINDS):
            raise ConfigurationError(f"unknown partition kinds {sorted(unknown)}")
        if self.partitions and not self.partition_kinds:
            raise ConfigurationError("partitions need at least one partition kind")
        if self.partitions < 0 or self.proposals_per_node_max < 1:
            raise ConfigurationError("partitions >= 0 and proposals_per_node_max >= 1 required")
        if self.fault_ticks < 1 or self.liveness_ticks < 1:
            raise ConfigurationError("fault_ticks and liveness_ticks must be >= 1")
        if self.window_slots_max < 1 or self.batch_count_max < 1:
            raise ConfigurationError("window_slots_max and batch_count_max must be >= 1")

    @property
    def heal_tick(self) -> int:
        return self.fault_ticks + 1

    def summary(self) -> str:
        """One line: the features this run turned on."""
        parts = [f"n={self.n}"]
        if self.loss:
            parts.append(f"loss={self.loss:.2f}")
        if self.duplicate:
            parts.append(f"dup={self.duplicate:.2f}")
        parts.append("delay={}-{}".format(*self.delay_ticks))
        if self.spike_probability:
            parts.append("spike={:.3f}x{}-{}".format(self.spike_probability, *self.spike_ticks))
        if self.partitions:
            parts.append(f"parts={self.partitions}({','.join(self.partition_kinds)})")
        if self.crashes:
            parts.append(f"crash={self.crashes}{'(leader)' if self.crash_leader else ''}")
        parts.append(f"props<={self.proposals_per_node_max}/node")
        parts.append(f"win={self.window_slots_max} batch={self.batch_count_max}")
        parts.append(f"fault={self.fault_ticks}t")
        return " ".join(parts)


def draw_options(rng: random.Random) -> SwarmOptions:
    """This seed's fault mix: each feature is on about half the time."""

    def maybe(p: float, value: float) -> float:
        return value if rng.random() < p else 0.0

    n = rng.choice((3, 5))
    lo = rng.randint(1, 3)
    spike_lo = rng.randint(5, 20)
    kinds = tuple(k for k in PARTITION_KINDS if rng.random() < 0.6) or (
        rng.choice(PARTITION_KINDS),
    )
    return SwarmOptions(
        n=n,
        loss=maybe(0.6, rng.uniform(0.0, LOSS_MAX)),
        duplicate=maybe(0.5, rng.uniform(0.0, 0.3)),
        delay_ticks=(lo, lo + rng.choice((0, 1, 3, 6))),
        spike_probability=maybe(0.4, rng.choice((0.002, 0.01, 0.03))),
        spike_ticks=(spike_lo, spike_lo + rng.randint(0, 40)),
        partitions=rng.choice((0, 0, 1, 2, 4, 8, 12)),
        partition_kinds=kinds,
        crashes=rng.randint(0, (n - 1) // 2) if rng.random() < 0.5 else 0,
        crash_leader=rng.random() < 0.5,
        proposals_per_node_max=rng.choice((1, 5, 15, 40)),
        fault_ticks=rng.randint(100, 800),
        liveness_ticks=LIVENESS_TICKS_DEFAULT,
        window_slots_max=rng.choice((1, 3, 64)),
        batch_count_max=rng.choice((1, 4, 512)),
    )


@dataclass(frozen=True, slots=True)
class PartitionEpisode:
    """A partition from ``start`` until ``end`` (exclusive).

    ``groups`` is None for the ``leader`` kind: the runner isolates whoever
    leads at ``start``.
    """

    start: int
    end: int
    kind: str
    groups: tuple[tuple[str, ...], ...] | None


@dataclass(frozen=True, slots=True)
class Crash:
    """At ``tick`` a node crash-stops: ``node``, or the current leader if None."""

    tick: int
    node: str | None


@dataclass(frozen=True, slots=True)
class ProposeAt:
    """``node`` broadcasts (or, single-decree, proposes) at ``tick``."""

    tick: int
    node: str


@dataclass(frozen=True, slots=True)
class Schedule:
    members: tuple[str, ...]
    partitions: tuple[PartitionEpisode, ...]
    crashes: tuple[Crash, ...]
    proposals: tuple[ProposeAt, ...]


def liveness_bound(options: SwarmOptions, schedule: Schedule) -> int:
    """Ticks after the heal by which every correct replica must have delivered everything.

    ``liveness_ticks`` for recovering from the faults, plus the time a leader
    needs to order the whole backlog at the configured throughput: each round
    trip (at most ``2 * delay_hi + 2`` ticks) decides at most
    ``window_slots_max`` slots of at most ``batch_count_max`` proposals.
    """
    per_round = options.window_slots_max * options.batch_count_max
    rounds = -(-len(schedule.proposals) // per_round)
    return options.liveness_ticks + rounds * (2 * options.delay_ticks[1] + 2)


def members_of(n: int) -> tuple[str, ...]:
    return tuple(f"n{i}" for i in range(1, n + 1))


def _draw_groups(
    rng: random.Random, kind: str, members: tuple[str, ...]
) -> tuple[tuple[str, ...], ...]:
    shuffled = list(members)
    rng.shuffle(shuffled)
    if kind == "split":
        k = rng.randint(1, max(1, (len(members) - 1) // 2))  # the minority's size
        return (tuple(sorted(shuffled[:k])), tuple(sorted(shuffled[k:])))
    # random: 2 or 3 groups; each node may stay out of every group (a bridge).
    groups: list[list[str]] = [[] for _ in range(rng.randint(2, 3))]
    for node in shuffled:
        if rng.random() < 0.15:
            continue
        rng.choice(groups).append(node)
    return tuple(tuple(sorted(g)) for g in groups if g)


def draw_schedule(options: SwarmOptions, rng: random.Random, *, synod: bool = False) -> Schedule:
    """Concrete partitions, crashes and proposals for ``options``.

    Single-decree runs (``synod``) crash fixed nodes (there is no stable
    leader to aim at) and let every node, or a random subset that always
    contains a correct node, propose once.
    """
    members = members_of(options.n)
    fault = options.fault_ticks

    # Partition episodes: one per equal segment of the fault phase, never overlapping.
    episodes: list[PartitionEpisode] = []
    if options.partitions and options.n > 1:
        segment = max(1, fault // options.partitions)
        for i in range(options.partitions):
            lo, hi = 1 + i * segment, min(fault, (i + 1) * segment)
            if hi - lo < 2:
                continue
            start = rng.randint(lo, hi - 1)
            end = rng.randint(start + 1, hi)
            kind = rng.choice(options.partition_kinds)
            groups = None if kind == "leader" else _draw_groups(rng, kind, members)
            episodes.append(PartitionEpisode(start, end, kind, groups))

    crash_ticks = sorted(rng.randint(1, fault) for _ in range(options.crashes))
    victims = rng.sample(members, options.crashes)
    crashes: list[Crash] = []
    for tick, victim in zip(crash_ticks, victims, strict=True):
        aim_leader = options.crash_leader and not synod
        crashes.append(Crash(tick, None if aim_leader else victim))

    proposals: list[ProposeAt] = []
    if synod:
        proposers = (
            list(members)
            if rng.random() < 0.5
            else rng.sample(members, rng.randint(1, len(members)))
        )
        correct = [m for m in members if m not in victims]
        if not set(proposers) & set(correct):
            proposers.append(rng.choice(correct))
        # Proposals close together duel (the interesting case); spread out, the
        # later ones only learn the decision.
        first = rng.randint(1, fault)
        spread = rng.choice((0, 3, 10, 30, fault))
        proposals = [
            ProposeAt(min(fault, first + rng.randint(0, spread)), node)
            for node in sorted(proposers)
        ]
    else:
        for node in members:
            for _ in range(rng.randint(1, options.proposals_per_node_max)):
                proposals.append(ProposeAt(rng.randint(1, fault), node))
    proposals.sort(key=lambda p: (p.tick, p.node))
    return Schedule(members, tuple(episodes), tuple(crashes), tuple(proposals))
