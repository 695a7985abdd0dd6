"""Swarm testing: every seed draws its own mix of faults, then a schedule of them.

Theory of operation (Groce et al., "Swarm Testing", 2012): a run that turns
on every fault at once tends to test none of them well (a 30% lossy network
with constant partitions mostly elects leaders). So each seed first draws
*which* features are on and how hard (``SwarmOptions``), then a concrete
*schedule* for that mix (``Schedule``): partition episodes, crash-stops,
outages (crash and restart on storage), and proposals at random ticks.
Over thousands of seeds every combination shows up, including the quiet
ones. New features are drawn *after* the old ones, from the same stream,
so adding one leaves the old fields of every seed as they were.

A run has two phases. The *fault phase* (ticks ``1..fault_ticks``) has all
the drawn faults; at ``heal_tick = fault_ticks + 1`` the network heals (no
loss, duplication, spikes or partitions; the base delays stay) and the
*heal phase* lasts until every correct replica delivered everything, or
``liveness_ticks`` more ticks have passed, which the checkers report as a
liveness failure.

Bounds, and why:

- ``n`` is 3 or 5 (half the runs each): 3 is the smallest replicated case,
  5 the smallest where two nodes can crash and two minorities can exist.
- At most ``(n - 1) // 2`` nodes crash-stop, so a majority stays correct
  and liveness after the heal is a fair demand.
- Outages are crashes with a restart: any nodes, a majority or all of them
  at once, each losing what its storage had not synced (a power loss). Every
  restart happens by the heal tick, so they never cost liveness after it.
  Multi-Paxos only: the single-decree core has no durable state to restore.
- Compaction every ``snapshot_every`` deliveries: 3 to 100 (small values
  make many snapshots and lagging replicas that need one), or never.
- Loss is at most ``LOSS_MAX`` (30%): more mostly tests elections.
- Rejoining laggards (``laggards``): a follower is down for a long while
  (``LAGGARD_DOWN_TICKS``: 10-40 election timeouts) while the others keep
  writing, then restarts on its storage far behind; for ``laggard_deaf_ticks``
  after the restart nothing reaches it (its peers' links to it are not back
  yet: a reconnect backoff) while what it sends arrives, so its election
  timer fires with a healthy leader present. ``check_leader_stability``
  counts the leader changes that follow in a quiet run (the red team's
  "follower restarted after 60 s down forced two leader changes").
- Proposals per node and phase lengths are bounded so a run costs tens of
  milliseconds and thousands fit in a CI run.
- Clocks: every node's wall clock is the true time plus its own offset; in
  about half the runs some nodes start skewed and ``clock_jumps`` offsets
  change during the fault phase (to a node, or to whoever leads then), by
  anything from 50 ms to two days either way (``CLOCK_OFFSETS_MS``).
- Leases (``reads="lease"`` only, drawn after everything else so that the
  schedules of other runs stay as they were): every node's monotonic clock
  runs at its own rate within ``lease_drift_max`` of real time (40% of the
  nodes at each bound, the rest anywhere between), and ``campaigns``
  explicit ``Campaign`` events (no pre-vote: a leadership transfer) hit
  random nodes during the fault phase, so a deposed leader cut off in a
  minority may still hold a lease while another leads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = [
    "CLOCK_OFFSETS_MS",
    "LEASE_RULES",
    "LIVENESS_TICKS_DEFAULT",
    "LOSS_MAX",
    "MEMBERSHIP_PLANS",
    "MEMBERSHIP_RULES",
    "PARTITION_KINDS",
    "PERSIST_DELAYS",
    "PERSIST_MODES",
    "READ_MODES",
    "WIPED_MODES",
    "CampaignAt",
    "ClockJump",
    "Crash",
    "Laggard",
    "Outage",
    "PartitionEpisode",
    "ProposeAt",
    "Schedule",
    "SwarmOptions",
    "Wipe",
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
#: How a replica persists a ``Ready``. ``save-first`` is the order of docs/design.md's
#: 'The Ready pipeline' (early messages at once, the rest and ``Persisted`` once durable) and the
#: only one ever drawn; the others are deliberate bugs, for tests that show
#: the checkers catch them: ``send-first`` sends every message before the save
#: lands (at least a tick later), so a crash in between loses what peers were
#: told; ``skip-accepted`` never saves accepted entries; ``early-vote`` steps
#: ``Persisted`` at once, so a leader counts its own acceptance before it is
#: durable (the save lands at least a tick later).
PERSIST_MODES = ("save-first", "send-first", "skip-accepted", "early-vote")
#: Membership plans: how many spare nodes each needs, and its changes in order.
#: A target is a spare (``s1``...), ``leader`` (whoever leads when the change
#: is asked) or ``founder`` (a founding voter that does not lead then).
MEMBERSHIP_PLANS: dict[str, tuple[int, tuple[tuple[str, str], ...]]] = {
    "grow": (2, (("add", "s1"), ("promote", "s1"), ("add", "s2"), ("promote", "s2"))),
    "replace": (1, (("remove", "founder"), ("add", "s1"), ("promote", "s1"))),
    "replace-leader": (1, (("remove", "leader"), ("add", "s1"), ("promote", "s1"))),
    "grow-shrink": (
        2,
        (
            ("add", "s1"),
            ("promote", "s1"),
            ("add", "s2"),
            ("promote", "s2"),
            ("remove", "s1"),
            ("remove", "leader"),
        ),
    ),
    "learner": (1, (("add", "s1"), ("remove", "s1"))),
}
#: ``alpha`` as shipped; ``no-delay`` is the planted bug (never drawn).
MEMBERSHIP_RULES = ("alpha", "no-delay")
#: Linearizable reads (``ReadIndex``) the run asks, one at a random live node per
#: broadcast: ``off`` (the default: the draws and schedules of existing seeds
#: stay as they were), ``read-index`` (the core's rule), the deliberate bug
#: ``no-quorum``: the runner forges every peer's answer to a leader's read
#: probe, so a leader serves reads without a quorum confirming it still leads,
#: or ``lease``: every replica runs with leader leases, and the run draws clock
#: drift and explicit campaigns (module docstring) and reads at every node that
#: believes it leads, every tick.
READ_MODES = ("off", "read-index", "no-quorum", "lease")
#: With ``reads="lease"``: ``intact`` (the core's rule, the only one ever drawn)
#: or a deliberate bug the simulator must catch as a stale read:
#: ``ignore-drift`` builds the replicas with no drift bound (lease = guard)
#: while their clocks drift by up to ``lease_drift_max``; ``no-guard`` makes
#: followers answer probes as guarding but promise any candidate at once.
LEASE_RULES = ("intact", "ignore-drift", "no-guard")
#: Explicit campaigns per lease run (drawn: one of these).
LEASE_CAMPAIGNS = (2, 4, 8, 16)
#: What a node whose disk was wiped does at its restart: ``refuse`` (the
#: runtime's rule: no store, no start), or one of two deliberate bugs for the
#: tests: ``rejoin`` starts on an empty store whose incarnations start over
#: (its proposal ids repeat an earlier life's), ``rejoin-new-ids`` on an empty
#: store with fresh incarnations (amnesia alone).
WIPED_MODES = ("refuse", "rejoin", "rejoin-new-ids")
#: Ranges a save's latency is drawn from, in ticks (0: done before the node's
#: next event). Long ones make a slow disk that a round trip outruns; at most
#: 6, so that a phase-1 round (two saves, two network delays) still fits in an
#: election timeout (15-30 ticks): with 3-12 ticks, 5 nodes, 2 crashed and
#: 3-9 tick delays, candidates dueled past the liveness bound (seed 360).
PERSIST_DELAYS = ((0, 0), (0, 1), (0, 3), (1, 2), (0, 6), (2, 6))
#: How long a rejoining laggard is down, in ticks: long enough that the
#: others decide many slots meanwhile (10-40 election timeouts of 15 ticks).
LAGGARD_DOWN_TICKS = (150, 600)
_DAY_MS = 86_400_000
#: Offsets a node's wall clock may have from the true time: a little (NTP
#: noise), seconds, an hour (a time zone mistake), two days (a red team's
#: libfaketime), either way.
CLOCK_OFFSETS_MS = (
    *(-2 * _DAY_MS, -3_600_000, -5_000, -50),
    *(50, 5_000, 3_600_000, 2 * _DAY_MS),
)


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
    #: Crash-restart episodes in the fault phase; each crashes between 1 and
    #: ``outage_nodes_max`` nodes at once (``n``: possibly all), the current
    #: leader among them when ``outage_leader``, and restarts them after
    #: ``outage_ticks`` (by the heal tick at the latest).
    outages: int = 0
    outage_nodes_max: int = 1
    outage_ticks: tuple[int, int] = (1, 1)
    outage_leader: bool = False
    #: Compact after this many deliveries applied since the last snapshot (0: never).
    snapshot_every: int = 0
    #: A snapshot travels in chunks of at most this many bytes (small: many chunks).
    snapshot_chunk_bytes_max: int = 1 << 20
    #: One of ``PERSIST_MODES``; never drawn (always ``save-first``).
    persist: str = "save-first"
    #: One of ``READ_MODES``; never drawn (``off`` unless a caller sets it).
    reads: str = "off"
    #: Each save completes ``randint(lo, hi)`` ticks after its Ready (in order:
    #: never before an earlier save). Meanwhile the node runs on, its early
    #: messages gone; a crash loses the saves still in flight.
    persist_delay_ticks: tuple[int, int] = (0, 0)
    #: Rejoining-laggard episodes (Multi-Paxos only): a follower down for
    #: ``LAGGARD_DOWN_TICKS`` (by the heal tick at the latest), deaf for
    #: ``laggard_deaf_ticks`` after its restart.
    laggards: int = 0
    laggard_deaf_ticks: int = 1
    #: The core's ``LogConfig.pre_vote`` (never drawn: always on, as shipped).
    pre_vote: bool = True
    #: Nodes whose disk is lost in the fault phase: each crashes, its store is
    #: wiped, and at its restart it tries to start again. Counted with the
    #: crash-stops (at most ``(n - 1) // 2`` in all): it must stay out.
    wipes: int = 0
    #: One of ``WIPED_MODES``; never drawn (always ``refuse``).
    wiped: str = "refuse"
    #: Nodes whose clock is off from the start, and offset changes (clock
    #: jumps) in the fault phase; half of the jumps hit whoever leads then.
    clock_skewed: int = 0
    clock_jumps: int = 0
    #: A membership plan (``MEMBERSHIP_PLANS``, "" for none; Multi-Paxos only):
    #: changes the runner asks the leader for, one after the other, from
    #: ``Schedule.membership_start`` on, among the other faults.
    membership: str = ""
    #: One of ``MEMBERSHIP_RULES``; never drawn (always ``alpha``): ``no-delay``
    #: plants the bug of a configuration that governs the slot right after its
    #: change instead of i + alpha, which the simulator must catch.
    membership_rule: str = "alpha"
    #: With ``reads="lease"``: the drift bound the replicas are configured
    #: with (``LogConfig.lease_drift_max``) and that the drawn clock rates
    #: stay within, and the rule (``LEASE_RULES``; never drawn: ``intact``).
    lease_drift_max: float = 0.05
    lease_rule: str = "intact"

    def __post_init__(self) -> None:  # noqa: C901 - one flat check per field
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
        if self.outages < 0 or not 1 <= self.outage_nodes_max <= self.n:
            raise ConfigurationError(
                f"outages >= 0 and 1 <= outage_nodes_max <= n required, got "
                f"{self.outages} and {self.outage_nodes_max}"
            )
        lo, hi = self.outage_ticks
        if not 1 <= lo <= hi:
            raise ConfigurationError(f"outage_ticks must satisfy 1 <= lo <= hi, got {(lo, hi)}")
        if self.snapshot_every < 0 or self.snapshot_chunk_bytes_max < 1:
            raise ConfigurationError("snapshot_every >= 0 and snapshot_chunk_bytes_max >= 1")
        lo, hi = self.persist_delay_ticks
        if not 0 <= lo <= hi:
            raise ConfigurationError(
                f"persist_delay_ticks must satisfy 0 <= lo <= hi, got {(lo, hi)}"
            )
        if self.laggards < 0 or self.laggard_deaf_ticks < 1:
            raise ConfigurationError("laggards >= 0 and laggard_deaf_ticks >= 1 required")
        if not 0 <= self.wipes <= (self.n - 1) // 2 - self.crashes:
            raise ConfigurationError(
                f"wipes must be in [0, (n-1)//2 - crashes = "
                f"{(self.n - 1) // 2 - self.crashes}], got {self.wipes}"
            )
        if self.wiped not in WIPED_MODES:
            raise ConfigurationError(f"wiped must be one of {WIPED_MODES}, got {self.wiped!r}")
        if not 0 <= self.clock_skewed <= self.n or self.clock_jumps < 0:
            raise ConfigurationError("clock_skewed must be in [0, n] and clock_jumps >= 0")
        if self.membership and self.membership not in MEMBERSHIP_PLANS:
            raise ConfigurationError(
                f"membership must be '' or one of {sorted(MEMBERSHIP_PLANS)}, "
                f"got {self.membership!r}"
            )
        if self.membership_rule not in MEMBERSHIP_RULES:
            raise ConfigurationError(
                f"membership_rule must be one of {MEMBERSHIP_RULES}, got {self.membership_rule!r}"
            )
        if self.lease_rule not in LEASE_RULES:
            raise ConfigurationError(
                f"lease_rule must be one of {LEASE_RULES}, got {self.lease_rule!r}"
            )
        if not 0 <= self.lease_drift_max < 1:
            raise ConfigurationError(
                f"lease_drift_max must be in [0, 1), got {self.lease_drift_max}"
            )
        if self.reads not in READ_MODES:
            raise ConfigurationError(f"reads must be one of {READ_MODES}, got {self.reads!r}")
        if self.persist not in PERSIST_MODES:
            raise ConfigurationError(
                f"persist must be one of {PERSIST_MODES}, got {self.persist!r}"
            )

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
        if self.outages:
            parts.append(
                "outages={}x<={}{} down={}-{}".format(
                    self.outages,
                    self.outage_nodes_max,
                    "(leader)" if self.outage_leader else "",
                    *self.outage_ticks,
                )
            )
        if self.snapshot_every:
            parts.append(f"snap/{self.snapshot_every} chunk={self.snapshot_chunk_bytes_max}")
        if self.persist != "save-first":
            parts.append(f"persist={self.persist}")
        if self.reads != "off":
            parts.append(f"reads={self.reads}")
        if self.reads == "lease":
            parts.append(f"drift<={self.lease_drift_max:g}")
        if self.lease_rule != "intact":
            parts.append(f"lease-rule={self.lease_rule}")
        if self.persist_delay_ticks != (0, 0):
            parts.append("disk={}-{}t".format(*self.persist_delay_ticks))
        if self.laggards:
            parts.append(f"laggards={self.laggards} deaf={self.laggard_deaf_ticks}t")
        if not self.pre_vote:
            parts.append("pre-vote=off")
        if self.clock_skewed or self.clock_jumps:
            parts.append(f"clocks={self.clock_skewed}skewed+{self.clock_jumps}jumps")
        if self.membership:
            parts.append(f"members={self.membership}")
        if self.membership_rule != "alpha":
            parts.append(f"member-rule={self.membership_rule}")
        parts.append(f"props<={self.proposals_per_node_max}/node")
        parts.append(f"win={self.window_slots_max} batch={self.batch_count_max}")
        parts.append(f"fault={self.fault_ticks}t")
        return " ".join(parts)


def draw_options(rng: random.Random) -> SwarmOptions:
    """This seed's fault mix: each feature is on about half the time.

    Draws happen in the order of the fields as they were added, the newest
    last, so a new feature does not change the older ones of any seed.
    """

    def maybe(p: float, value: float) -> float:
        return value if rng.random() < p else 0.0

    n = rng.choice((3, 5))
    lo = rng.randint(1, 3)
    spike_lo = rng.randint(5, 20)
    kinds = tuple(k for k in PARTITION_KINDS if rng.random() < 0.6) or (
        rng.choice(PARTITION_KINDS),
    )
    loss = maybe(0.6, rng.uniform(0.0, LOSS_MAX))
    duplicate = maybe(0.5, rng.uniform(0.0, 0.3))
    delay_ticks = (lo, lo + rng.choice((0, 1, 3, 6)))
    spike_probability = maybe(0.4, rng.choice((0.002, 0.01, 0.03)))
    spike_ticks = (spike_lo, spike_lo + rng.randint(0, 40))
    partitions = rng.choice((0, 0, 1, 2, 4, 8, 12))
    crashes = rng.randint(0, (n - 1) // 2) if rng.random() < 0.5 else 0
    crash_leader = rng.random() < 0.5
    proposals_per_node_max = rng.choice((1, 5, 15, 40))
    fault_ticks = rng.randint(100, 800)
    window_slots_max = rng.choice((1, 3, 64))
    batch_count_max = rng.choice((1, 4, 512))
    # Durability and compaction (drawn after the older features).
    outages = rng.choice((1, 1, 2, 3, 6)) if rng.random() < 0.55 else 0
    majority = n // 2 + 1
    outage_nodes_max = rng.choice((1, 1, majority, n))
    down_lo = rng.choice((1, 5, 20))
    outage_ticks = (down_lo, down_lo + rng.choice((0, 10, 50, 200)))
    outage_leader = rng.random() < 0.4
    snapshot_every = rng.choice((3, 5, 10, 30, 100)) if rng.random() < 0.7 else 0
    snapshot_chunk_bytes_max = rng.choice((64, 512, 1 << 20))
    # The pipelined runtime (drawn after the older features).
    persist_delay_ticks = rng.choice(PERSIST_DELAYS)
    # Rejoining laggards (drawn after the older features). Deaf for 2-5
    # election timeouts: longer than a timer, so the laggard's fires.
    laggards = rng.choice((1, 1, 2)) if rng.random() < 0.3 else 0
    laggard_deaf_ticks = rng.choice((30, 45, 75))
    # Lost disks (drawn after the older features).
    room = (n - 1) // 2 - crashes
    wipes = rng.randint(1, room) if room > 0 and rng.random() < 0.3 else 0
    # Clocks (drawn after the older features).
    clocks_on = rng.random() < 0.5
    clock_skewed = rng.randint(0, n) if clocks_on else 0
    clock_jumps = rng.choice((0, 1, 3, 8)) if clocks_on else 0
    # Membership changes (drawn after the older features).
    membership = rng.choice(sorted(MEMBERSHIP_PLANS)) if rng.random() < 0.2 else ""
    return SwarmOptions(
        n=n,
        loss=loss,
        duplicate=duplicate,
        delay_ticks=delay_ticks,
        spike_probability=spike_probability,
        spike_ticks=spike_ticks,
        partitions=partitions,
        partition_kinds=kinds,
        crashes=crashes,
        crash_leader=crash_leader,
        proposals_per_node_max=proposals_per_node_max,
        fault_ticks=fault_ticks,
        liveness_ticks=LIVENESS_TICKS_DEFAULT,
        window_slots_max=window_slots_max,
        batch_count_max=batch_count_max,
        outages=outages,
        outage_nodes_max=outage_nodes_max,
        outage_ticks=outage_ticks,
        outage_leader=outage_leader,
        snapshot_every=snapshot_every,
        snapshot_chunk_bytes_max=snapshot_chunk_bytes_max,
        persist_delay_ticks=persist_delay_ticks,
        laggards=laggards,
        laggard_deaf_ticks=laggard_deaf_ticks,
        wipes=wipes,
        clock_skewed=clock_skewed,
        clock_jumps=clock_jumps,
        membership=membership,
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
class Outage:
    """At ``tick`` the ``nodes`` crash (power loss: their unsynced saves are lost),
    and at ``restart`` they start again on their storage.

    With ``leader`` the runner swaps the node leading at ``tick`` (if any, and
    not already among them) for the first of ``nodes``. Nodes already down
    when the outage starts are left alone (their own restart stands).
    """

    tick: int
    restart: int
    nodes: tuple[str, ...]
    leader: bool


@dataclass(frozen=True, slots=True)
class Laggard:
    """At ``tick`` a follower (the runner picks a live non-leader) crashes; at
    ``restart`` it starts again on its storage, and hears nothing until
    ``deaf_until`` (what it sends arrives)."""

    tick: int
    restart: int
    deaf_until: int


@dataclass(frozen=True, slots=True)
class Wipe:
    """At ``tick`` ``node`` crashes and its disk is lost; at ``restart`` it tries to start."""

    tick: int
    restart: int
    node: str


@dataclass(frozen=True, slots=True)
class ClockJump:
    """At ``tick`` the wall clock of ``node`` (whoever leads then, if None) is
    set to the true time plus ``offset_ms`` (tick 0: its offset from the start)."""

    tick: int
    node: str | None
    offset_ms: int


@dataclass(frozen=True, slots=True)
class CampaignAt:
    """At ``tick`` ``node`` (if up and not leading) starts phase 1 at once: ``Campaign``."""

    tick: int
    node: str


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
    outages: tuple[Outage, ...] = ()
    laggards: tuple[Laggard, ...] = ()
    wipes: tuple[Wipe, ...] = ()
    clock_jumps: tuple[ClockJump, ...] = ()
    #: Nodes outside the founding members, started as learners-to-be
    #: (``join``) for the membership plan, and the tick the plan starts.
    spares: tuple[str, ...] = ()
    membership_start: int = 0
    #: Lease runs: each node's monotonic clock rate (1.0: real time; missing: 1.0),
    #: and the explicit campaigns.
    drift: tuple[tuple[str, float], ...] = ()
    campaigns: tuple[CampaignAt, ...] = ()


def liveness_bound(options: SwarmOptions, schedule: Schedule) -> int:
    """Ticks after the heal by which every correct replica must have delivered everything.

    ``liveness_ticks`` for recovering from the faults, plus the time a leader
    needs to order the whole backlog at the configured throughput: each round
    trip (at most ``2 * delay_hi + 2`` ticks, plus the saves) decides at most
    ``window_slots_max`` slots of at most ``batch_count_max`` proposals.
    """
    per_round = options.window_slots_max * options.batch_count_max
    rounds = -(-len(schedule.proposals) // per_round)
    # A round also waits for the acceptors' saves (the leader's runs alongside).
    disk = 2 * options.persist_delay_ticks[1]
    return options.liveness_ticks + rounds * (2 * options.delay_ticks[1] + 2 + disk)


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


def _draw_membership(
    options: SwarmOptions, rng: random.Random, *, synod: bool
) -> tuple[tuple[str, ...], int]:
    """The spare nodes of the membership plan, and when it starts (drawn after the clocks)."""
    if not options.membership or synod:
        return (), 0
    spares = tuple(f"s{i}" for i in range(1, 1 + MEMBERSHIP_PLANS[options.membership][0]))
    return spares, rng.randint(1, max(1, options.fault_ticks // 2))


def draw_schedule(options: SwarmOptions, rng: random.Random, *, synod: bool = False) -> Schedule:
    """Concrete partitions, crashes, proposals and outages for ``options``.

    Single-decree runs (``synod``) crash fixed nodes (there is no stable
    leader to aim at), have no outages (the single-decree core keeps no
    durable state), and let every node, or a random subset that always
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

    # Drawn last, so that the draws above are those of a schedule without outages.
    outages: list[Outage] = []
    if not synod:
        for _ in range(options.outages):
            tick = rng.randint(1, fault)
            down = rng.randint(*options.outage_ticks)
            nodes = tuple(rng.sample(members, rng.randint(1, options.outage_nodes_max)))
            outages.append(
                Outage(tick, min(tick + down, options.heal_tick), nodes, options.outage_leader)
            )
        outages.sort(key=lambda o: (o.tick, o.nodes))
    # Drawn after the outages, for the same reason.
    laggards: list[Laggard] = []
    if not synod:
        for _ in range(options.laggards):
            tick = rng.randint(1, fault)
            restart = min(tick + rng.randint(*LAGGARD_DOWN_TICKS), options.heal_tick)
            laggards.append(Laggard(tick, restart, restart + options.laggard_deaf_ticks))
        laggards.sort(key=lambda g: g.tick)
    # Drawn after the laggards, for the same reason.
    wipes: list[Wipe] = []
    if not synod:
        for node in rng.sample(members, options.wipes):
            tick = rng.randint(1, fault)
            restart = min(tick + rng.randint(*options.outage_ticks), options.heal_tick)
            wipes.append(Wipe(tick, max(restart, tick + 1), node))
        wipes.sort(key=lambda w: (w.tick, w.node))

    # Drawn after the outages, for the same reason.
    jumps: list[ClockJump] = []
    if not synod:
        for node in rng.sample(members, options.clock_skewed):
            jumps.append(ClockJump(0, node, rng.choice(CLOCK_OFFSETS_MS)))
        for _ in range(options.clock_jumps):
            tick = rng.randint(1, fault)
            target = None if rng.random() < 0.5 else rng.choice(members)
            jumps.append(ClockJump(tick, target, rng.choice((0, *CLOCK_OFFSETS_MS))))
        jumps.sort(key=lambda j: (j.tick, j.node or ""))
    spares, membership_start = _draw_membership(options, rng, synod=synod)
    drift, campaigns = _draw_lease_faults(
        options, rng, members + spares, tuple(episodes), synod=synod
    )
    return Schedule(
        members,
        tuple(episodes),
        tuple(crashes),
        tuple(proposals),
        tuple(outages),
        laggards=tuple(laggards),
        wipes=tuple(wipes),
        clock_jumps=tuple(jumps),
        spares=spares,
        membership_start=membership_start,
        drift=drift,
        campaigns=campaigns,
    )


def _draw_lease_faults(
    options: SwarmOptions,
    rng: random.Random,
    nodes: tuple[str, ...],
    episodes: tuple[PartitionEpisode, ...],
    *,
    synod: bool,
) -> tuple[tuple[tuple[str, float], ...], tuple[CampaignAt, ...]]:
    """Clock rates and explicit campaigns of a lease run (drawn after everything else).

    Every partition episode gets a campaign within a few ticks of its
    start: a new leader elected while the old one, cut off, may still hold
    its lease (where a broken lease shows).
    """
    if options.reads != "lease" or synod:
        return (), ()
    bound = options.lease_drift_max
    drift = []
    for node in nodes:
        pick = rng.random()
        if pick < 0.4:
            rate = 1 - bound  # slow: a leader's lease looks longer to it
        elif pick < 0.8:
            rate = 1 + bound  # fast: a follower's guard ends sooner
        else:
            rate = rng.uniform(1 - bound, 1 + bound)
        drift.append((node, rate))
    campaigns = [
        CampaignAt(rng.randint(1, options.fault_ticks), rng.choice(nodes))
        for _ in range(rng.choice(LEASE_CAMPAIGNS))
    ]
    for e in episodes:
        campaigns.append(CampaignAt(e.start + rng.randint(0, 3), rng.choice(nodes)))
    campaigns.sort(key=lambda c: (c.tick, c.node))
    return tuple(drift), tuple(campaigns)
