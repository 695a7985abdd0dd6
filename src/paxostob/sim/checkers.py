"""Checkers: what a run recorded, judged against the properties Paxos promises.

Theory of operation: the runner records a *history* (what was broadcast or
proposed, what every replica decided, delivered, sent and read back from
storage, and when; which replicas crashed and restarted; when the network
healed); the checkers only read it. A Multi-Paxos replica's trace is a list
of *lives*: the first starts with the run, each restart on its storage
starts another, and a crash ends one. Safety is checked over every life of
every replica, crashed ones included, up to the moment they crashed;
liveness only over *correct* replicas (never crash-stopped: restarted ones
count once they are back), and only after the network healed.

Total-order broadcast (``check_tob``), safety first:

- agreement: no consensus slot is decided with two different values, by two
  replicas, by two lives of one replica, or by one life twice; the record
  holds every ``Ready.decided``, every log and what storage gave back;
- chosen values: a ballot proposes one value per slot, and a value a
  majority of acceptors accepted in one ballot (from the ``Accepted``
  messages actually sent, and a leader's own acceptance) is chosen, so its
  slot is never decided otherwise, and no two ballots get different values
  accepted by majorities for one slot;
- positions: each life delivers at consecutive positions from where it
  started (1, or the position of the snapshot it restored); it jumps ahead
  only where it restored a peer's snapshot;
- no duplication: no ``ProposalId`` is delivered at two positions, by any
  life of a replica, nor twice within one life;
- no creation: only broadcast payloads are delivered, under the id and
  sender they were broadcast with;
- replay: a restarted replica re-delivers, from its snapshot on, exactly
  what it delivered there before, and its snapshot holds the application
  state it had at that position;
- total order: all deliveries of all lives of all replicas agree on the
  message at each position;
- log order: the *chosen log* (the agreed value of every slot) implies one
  delivery sequence (proposals in slot order, each id once, no-ops taking
  no position); every delivery is that sequence's message at its position,
  every snapshot stands at the position its slot implies, and a life that
  decided through slot *s* delivered everything through *s*;
- snapshot state: the application state a snapshot brings back, and the
  state of every life at its end, is exactly the sequence's prefix;
- durability: a restarted acceptor never contradicts what it told peers
  (or counted itself): its promise is at least the highest ballot it
  promised or sent in a ``Promise`` or ``Accepted`` before the crash
  (persist before send), and for every slot it accepted or acknowledged
  it still holds that ballot or a higher one, unless the slot is decided
  or compacted in its storage;
- configurations: membership changes are values of the chosen log; every
  majority below (chosen values, durable quorum) is one of the voters of
  the slot's own configuration, which the checkers derive from the chosen
  log with the true alpha (``slot_configs``), never from what the replicas
  believed. Correct replicas (for liveness) are those never crash-stopped
  that are members of the final configuration; a broadcast of a removed
  origin is owed only once delivered somewhere;
- durable quorum: when a slot is first decided (anywhere), a majority of
  acceptors already hold its value, accepted in one ballot, synced in their
  storage: a decision never rests on a vote that a power loss can erase
  (a leader counting its own acceptance before its save returned);
- the log's clock (when the run recorded one, ``TobHistory.clock``): every
  replica delivers each position with the same clock (agreement), each
  life's clocks never decrease (monotonic); once a stamped slot was decided
  anywhere, the highest clock any replica holds (its estimate, which it
  stamps when it leads) grows by at most ``clock_step_ms_max`` per tick
  (step); and expiry: every delivered message stands for a key with a TTL
  of ``ttl_ms`` set at its clock, and no key expires (the log's clock
  passes its set time plus the TTL) sooner than ``ttl_ms /
  clock_step_ms_max`` ticks, less one, after the replicas' clocks first
  reached its set time: TTLs are measured on the clocks the leaders stamp
  with, which no node's wall clock moves faster than that; and source: no
  replica's estimate (so no stamp, and not the log's clock) is ever ahead
  of the true time by more than the largest offset that a node which led
  so far had while it led, in the wall clock it read (its last ``Tick``: a
  jump it has not read yet is not its clock): a follower's or forwarder's
  clock moves nothing;
- validity and liveness: a broadcast is *acknowledged* once its origin
  delivered it. Every message delivered anywhere (uniform agreement: an
  acknowledged or chosen value is never lost), and every broadcast of a
  life that is still up at the end, is reached (delivered, or restored from
  a snapshot) by every correct replica within ``liveness_ticks`` after the
  heal. A broadcast nobody delivered is not owed once its origin crashed.

Leader stability (``check_leader_stability``, not a Paxos property: pre-vote's
promise): a follower rejoining after a long outage (a rejoining laggard)
while a leader is healthy and nothing else goes wrong must not cause a
leader change. ``Rejoin`` records each such restart; the ballots that first
led from it until two check-quorum windows after it can hear again are the
*needless* leader changes (``needless_leader_changes``); with pre-vote on
there must be none.

Single-decree consensus (``check_synod``): validity (the decision was
proposed), integrity (a replica decides at most once, and never changes its
decision), uniform agreement (no two replicas decide differently), and
termination (every correct replica decides within ``liveness_ticks`` after
the heal).

A violation raises ``CheckFailure`` naming the property, the replicas, the
slot and the values involved.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..core.events import Delivered
from ..core.membership import CHANGE_SEQ, CONFIG_DELAY_SLOTS, ConfigHistory, Configuration
from ..core.multipaxos import SEQ_BITS
from ..core.types import (
    CLOCK_ORIGIN,
    ZERO_BALLOT,
    Ballot,
    Batch,
    DecidedEntry,
    Proposal,
    ProposalId,
)
from .app import AppEntry

__all__ = [
    "Broadcast",
    "CheckFailure",
    "ClockRecord",
    "Recovered",
    "Rejoin",
    "Restore",
    "SynodHistory",
    "SynodTrace",
    "TobHistory",
    "TobLife",
    "TobTrace",
    "check_agreement",
    "check_chosen_values",
    "check_clock",
    "check_durability",
    "check_durable_quorum",
    "check_leader_stability",
    "check_log_order",
    "check_no_creation",
    "check_no_duplication",
    "check_positions",
    "check_replay",
    "check_snapshot_state",
    "check_synod",
    "check_tob",
    "check_total_order",
    "check_validity_and_liveness",
    "chosen_log",
    "describe_batch",
    "needless_leader_changes",
]


@dataclass(frozen=True, slots=True)
class ReadRecord:
    """A ``ReadIndex`` read served: who asked, when, and what it saw.

    ``required``: the furthest position any replica had applied when the read
    was asked (every broadcast acknowledged by then is at or below it);
    ``saw``: the position of the state it read, applied at ``node`` when the
    replica served it.
    """

    node: str
    request_id: int
    asked_tick: int
    required: int
    served_tick: int
    saw: int


def check_read_fresh(read: ReadRecord) -> None:
    """Read freshness (linearizability of reads): a read sees everything applied before it.

    Stronger than "every acknowledged write": a position applied anywhere was
    chosen, and a read confirmed by a quorum of its leader's ballot after it
    was asked covers every chosen slot (core/reads.py).
    """
    if read.saw < read.required:
        raise CheckFailure(
            "read freshness",
            f"{read.node} served read {read.request_id} (asked at tick {read.asked_tick}) at "
            f"tick {read.served_tick} on its state through position {read.saw}, but position "
            f"{read.required} was applied somewhere before the read was asked: a stale read",
        )


class CheckFailure(AssertionError):
    """A run broke a property. ``prop`` names it; ``replay`` is the command that replays it."""

    def __init__(self, prop: str, detail: str, *, replay: str | None = None) -> None:
        self.prop = prop
        self.detail = detail
        self.replay = replay
        text = f"{prop}: {detail}"
        if replay is not None:
            text += f"\n  replay: {replay}"
        super().__init__(text)

    def with_replay(self, replay: str, context: str = "") -> CheckFailure:
        """The same failure, with the replay command (and ``context``) attached."""
        detail = f"{context}{self.detail}" if context else self.detail
        failure = CheckFailure(self.prop, detail, replay=replay)
        failure.__cause__ = self.__cause__  # the core's exception, if it raised
        return failure


# ============================================================== histories


@dataclass(frozen=True, slots=True)
class Broadcast:
    """``payload`` was broadcast as ``id`` (its origin is the sender) at ``tick``."""

    id: ProposalId
    payload: bytes
    tick: int


@dataclass(frozen=True, slots=True)
class Restore:
    """A replica's application state was replaced by a snapshot's.

    ``source`` is ``storage`` (a restart: before the life's first delivery)
    or ``peer`` (a lagging replica jumped ahead: between the life's
    ``deliveries[:index]`` and ``deliveries[index:]``). The snapshot covers
    consensus slots through ``slot`` and delivery positions through
    ``position``; ``state`` is the application state it carried.
    """

    tick: int
    index: int
    slot: int
    position: int
    state: tuple[AppEntry, ...]
    source: str


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a restarted replica read back from its storage."""

    promised: Ballot
    #: Slot -> the ballot of the accepted entry kept for it.
    accepted: dict[int, Ballot]
    decided: dict[int, Batch]
    #: The stored snapshot's slot (0 without one).
    snapshot_slot: int


@dataclass(slots=True)
class TobLife:
    """One life of a Multi-Paxos replica: from its start or restart to its crash or the end."""

    started: int
    #: The tick it crashed, or None if it was up at the end.
    ended: int | None = None
    #: What storage gave back at the start (None for the first life).
    recovered: Recovered | None = None
    #: (tick, delivery) in the order the replica produced them.
    deliveries: list[tuple[int, Delivered]] = field(default_factory=list)
    #: (tick, entry) for every ``Ready.decided`` entry, in order.
    decided: list[tuple[int, DecidedEntry]] = field(default_factory=list)
    #: Snapshots restored into the application, in order.
    restores: list[Restore] = field(default_factory=list)
    #: The highest ballot this life promised (in a handled ``Ready``) or sent
    #: in a ``Promise`` or ``Accepted``, and when.
    promised_sent: tuple[Ballot, int] = (ZERO_BALLOT, 0)
    #: Slot -> (highest ballot, tick) this life accepted (in a handled
    #: ``Ready``) or acknowledged in an ``Accepted`` sent without knowing the
    #: slot decided.
    acked: dict[int, tuple[Ballot, int]] = field(default_factory=dict)
    #: At the end of the life: its decided log (compacted slots are gone),
    #: its contiguous decided prefix, and its application's state (None when
    #: not recorded).
    log: dict[int, Batch] = field(default_factory=dict)
    decided_through: int | None = None
    state: tuple[AppEntry, ...] | None = None

    @property
    def reached(self) -> int:
        """The last position it delivered or restored."""
        last = self.deliveries[-1][1].delivery.slot if self.deliveries else 0
        for r in self.restores:
            if r.index >= len(self.deliveries):
                last = max(last, r.position)
        return last

    def segments(self) -> Iterator[tuple[Restore | None, list[tuple[int, Delivered]]]]:
        """The deliveries cut at each restore: (the restore they follow, or None; deliveries)."""
        base: Restore | None = None
        start = 0
        for r in self.restores:
            yield base, self.deliveries[start : r.index]
            base, start = r, r.index
        yield base, self.deliveries[start:]


@dataclass(slots=True)
class TobTrace:
    """What one Multi-Paxos replica did in a run, life by life."""

    node: str
    #: The tick it crash-stopped (never restarted), or None for a correct replica.
    crashed_at: int | None = None
    lives: list[TobLife] = field(default_factory=lambda: [TobLife(0)])

    @property
    def life(self) -> TobLife:
        """The current (last) life."""
        return self.lives[-1]


@dataclass(slots=True)
class ClockRecord:
    """What ``check_clock`` needs besides the deliveries (their ``clock_ms``)."""

    #: The core's ``LogConfig.clock_step_ms_max``.
    step_ms_max: int
    #: The TTL of the key each delivered message stands for.
    ttl_ms: int
    #: Tick -> the highest clock any replica held then: its estimate of the
    #: log's clock (what it stamps when it leads), or a stamp it proposed.
    highest: dict[int, int] = field(default_factory=dict)
    #: The first tick some replica decided a slot holding a stamp (None: never).
    first_decided: int | None = None
    #: The first (tick, node, estimate, bound) where a replica's clock estimate
    #: was above ``bound``: the true time plus the largest offset any node
    #: that led so far had, while it led, in the wall clock it read (None: never).
    ahead: tuple[int, str, int, int] | None = None


@dataclass(slots=True)
class TobHistory:
    members: tuple[str, ...]
    broadcasts: dict[ProposalId, Broadcast]
    traces: dict[str, TobTrace]
    #: From this tick on the network had no faults and no partitions.
    heal_tick: int
    #: Liveness bound: everything must be delivered by ``heal_tick + liveness_ticks``.
    liveness_ticks: int
    end_tick: int
    #: (slot, ballot) -> the value the leader of ``ballot`` proposed there, and
    #: the acceptors that accepted it (sent ``Accepted``, or the leader itself),
    #: with the tick each first did.
    acceptances: dict[tuple[int, Ballot], tuple[Batch, dict[str, int]]] = field(
        default_factory=dict
    )
    #: (slot, ballot, first value, other value, tick): an ``Accept`` proposed
    #: another value for a slot in a ballot that already proposed one there.
    conflicts: list[tuple[int, Ballot, Batch, Batch, int]] = field(default_factory=list)
    #: (slot, ballot) -> the value, and the acceptors whose storage held it
    #: synced, with the first tick each did. None: not recorded (not checked).
    durable: dict[tuple[int, Ballot], tuple[Batch, dict[str, int]]] | None = None
    #: The log's clock as the run saw it; None: not recorded (not checked).
    clock: ClockRecord | None = None
    #: The founding voters (None: ``members``) and alpha, from which the
    #: checkers derive every slot's configuration out of the chosen log
    #: (``slot_configs``), never from what the replicas believed.
    founding: tuple[str, ...] | None = None
    config_delay: int = CONFIG_DELAY_SLOTS

    @property
    def correct(self) -> list[str]:
        """Replicas never crash-stopped and members of the final configuration."""
        final = slot_configs(self).newest.members
        return [n for n in self.members if self.traces[n].crashed_at is None and n in final]


def slot_configs(history: TobHistory) -> ConfigHistory:
    """The configurations the chosen log makes (membership.py's rule), through its first gap."""
    founding = history.founding if history.founding is not None else history.members
    configs = ConfigHistory(Configuration(frozenset(founding)), delay=history.config_delay)
    chosen = chosen_log(history)
    slot = 1
    while slot in chosen:
        for p in chosen[slot]:
            if p.id.origin == CLOCK_ORIGIN and p.id.seq == CHANGE_SEQ:
                configs.decided(slot, p.payload)
        slot += 1
    return configs


def majority_of(voters: frozenset[str]) -> int:
    """Counted here, not with the core's rules, so a broken quorum rule cannot hide."""
    return len(voters) // 2 + 1


@dataclass(frozen=True, slots=True)
class Rejoin:
    """``node`` restarted at ``tick`` far behind, deaf until ``deaf_until``.

    ``quiet``: a leader had led since well before (``leader``, a ballot) and
    no other fault (loss, spikes, partitions, crashes, outages, other
    laggards) touched the run from well before ``tick`` until ``until``, so
    a leader change in ``(tick, until]`` has no cause but the rejoin.
    """

    node: str
    tick: int
    deaf_until: int
    until: int
    leader: Ballot | None
    quiet: bool


def needless_leader_changes(rejoins: Iterable[Rejoin], leaders: dict[Ballot, int]) -> int:
    """Ballots that first led (``leaders``: ballot -> tick) inside a quiet rejoin's window."""
    windows = [(r.tick, r.until) for r in rejoins if r.quiet]
    return sum(1 for at in leaders.values() if any(lo < at <= hi for lo, hi in windows))


def check_leader_stability(rejoins: Iterable[Rejoin], leaders: dict[Ballot, int]) -> None:
    for r in rejoins:
        if not r.quiet:
            continue
        new = sorted(b for b, at in leaders.items() if r.tick < at <= r.until)
        if new:
            raise CheckFailure(
                "leader stability",
                f"{r.node} rejoined at tick {r.tick} (deaf until {r.deaf_until}) while "
                f"{r.leader} led a healthy cluster, and by tick {r.until} "
                f"{', '.join(f'{b} (tick {leaders[b]})' for b in new)} led instead",
            )


@dataclass(slots=True)
class SynodTrace:
    """What one single-decree replica did in a run."""

    node: str
    crashed_at: int | None = None
    #: (tick, value) for every ``Ready.decided`` entry.
    decisions: list[tuple[int, Batch]] = field(default_factory=list)
    deliveries: list[tuple[int, Delivered]] = field(default_factory=list)
    #: The replica's ``decision`` at the end (at its crash for a crashed one).
    final: Batch | None = None


@dataclass(slots=True)
class SynodHistory:
    members: tuple[str, ...]
    #: What each proposer proposed (a proposer proposes at most once).
    proposals: dict[ProposalId, Broadcast]
    traces: dict[str, SynodTrace]
    heal_tick: int
    liveness_ticks: int
    end_tick: int

    @property
    def correct(self) -> list[str]:
        return [n for n in self.members if self.traces[n].crashed_at is None]


# ================================================================ helpers

_COUNTER_MASK = (1 << SEQ_BITS) - 1


def _text(payload: bytes) -> str:
    text = payload.decode("utf-8", "backslashreplace")
    return text if len(text) <= 40 else text[:37] + "..."


def _pid(pid: ProposalId) -> str:
    """``origin/seq``; ``origin/life.counter`` for a seq that carries an incarnation."""
    if pid.seq >> SEQ_BITS:
        return f"{pid.origin}/{pid.seq >> SEQ_BITS}.{pid.seq & _COUNTER_MASK}"
    return f"{pid.origin}/{pid.seq}"


def _describe_proposal(p: Proposal) -> str:
    return f"{_pid(p.id)}:{_text(p.payload)}"


def describe_batch(value: Batch) -> str:
    """``noop`` or ``[origin/seq:payload, ...]`` (long batches abbreviated)."""
    if not value:
        return "noop"
    shown = [_describe_proposal(p) for p in value[:4]]
    if len(value) > 4:
        shown.append(f"... {len(value) - 4} more")
    return "[" + ", ".join(shown) + "]"


def _describe_delivered(d: Delivered) -> str:
    dv = d.delivery
    return f"(slot {dv.slot}, {dv.sender}, {_text(dv.payload)!r}, id {_pid(d.id)})"


def _describe_entry(e: AppEntry) -> str:
    return f"({e[0]}, {e[1]}, {_text(e[2])!r})"


def _crash_note(trace: TobTrace | SynodTrace) -> str:
    return f" (crashed at tick {trace.crashed_at})" if trace.crashed_at is not None else ""


def _who(trace: TobTrace, i: int) -> str:
    """The replica, and which life when it had several."""
    if len(trace.lives) == 1:
        return f"{trace.node}{_crash_note(trace)}"
    life = trace.lives[i]
    end = f", crashed at tick {life.ended}" if life.ended is not None else ""
    return f"{trace.node} (life {i + 1}, from tick {life.started}{end})"


def _lives(history: TobHistory) -> Iterator[tuple[TobTrace, int, TobLife]]:
    for trace in history.traces.values():
        for i, life in enumerate(trace.lives):
            yield trace, i, life


# ==================================================== total-order broadcast


def check_tob(history: TobHistory) -> None:
    """Every property in the module docstring; raises ``CheckFailure`` on the first broken one."""
    check_agreement(history)
    check_chosen_values(history)
    check_positions(history)
    check_no_duplication(history)
    check_no_creation(history)
    check_replay(history)
    check_total_order(history)
    check_log_order(history)
    check_snapshot_state(history)
    check_durability(history)
    check_durable_quorum(history)
    check_clock(history)
    check_validity_and_liveness(history)


def chosen_log(history: TobHistory) -> dict[int, Batch]:
    """The value of every slot some life decided; raises ``CheckFailure`` on two values."""
    chosen: dict[int, tuple[Batch, str]] = {}
    for trace, i, life in _lives(history):
        who = _who(trace, i)
        observed: dict[int, Batch] = {}
        recovered = life.recovered.decided if life.recovered is not None else {}
        sources: Iterable[tuple[str, int, Batch]] = [
            *(("storage", s, v) for s, v in sorted(recovered.items())),
            *((f"tick {t}", e.slot, e.value) for t, e in life.decided),
            *(("final log", s, v) for s, v in sorted(life.log.items())),
        ]
        reported: set[int] = set()
        for where, slot, value in sources:
            mine = observed.get(slot)
            if mine is None:
                observed[slot] = value
            elif mine != value:
                raise CheckFailure(
                    "agreement",
                    f"{who} decided slot {slot} as {describe_batch(mine)} and later as "
                    f"{describe_batch(value)} ({where})",
                )
            if where.startswith("tick"):
                if slot in reported:
                    raise CheckFailure(
                        "agreement",
                        f"{who} reported slot {slot} decided twice in its Readys ({where})",
                    )
                reported.add(slot)
            other = chosen.get(slot)
            if other is None:
                chosen[slot] = (value, who)
            elif other[0] != value:
                raise CheckFailure(
                    "agreement",
                    f"slot {slot} decided as {describe_batch(other[0])} at {other[1]} "
                    f"but as {describe_batch(value)} at {who} ({where})",
                )
    return {slot: value for slot, (value, _) in chosen.items()}


def check_agreement(history: TobHistory) -> None:
    """No slot decided with two values, across replicas and lives (crashed ones too)."""
    chosen_log(history)


def check_chosen_values(history: TobHistory) -> None:
    """A value a majority accepted in one ballot is chosen: its slot is never decided otherwise.

    The majority is counted here (``n // 2 + 1`` distinct voters of the
    slot's configuration), not with the core's rules, so a broken quorum
    rule cannot hide a lost value.
    """
    for slot, ballot, proposed, again, tick in history.conflicts:
        raise CheckFailure(
            "chosen value",
            f"ballot {ballot} proposed {describe_batch(proposed)} for slot {slot} and at tick "
            f"{tick} {describe_batch(again)}: one ballot proposes one value per slot",
        )
    configs = slot_configs(history)
    chosen = chosen_log(history)
    first: dict[int, tuple[Batch, Ballot, int]] = {}
    for (slot, ballot), (value, all_acceptors) in sorted(history.acceptances.items()):
        voters = configs.config_for(slot).voters
        majority = majority_of(voters)
        acceptors = {a: t for a, t in all_acceptors.items() if a in voters}
        if len(acceptors) < majority:
            continue
        tick = sorted(acceptors.values())[majority - 1]
        names = ",".join(sorted(acceptors))
        what = (
            f"slot {slot}'s value {describe_batch(value)} was accepted by a majority "
            f"({names}) in ballot {ballot} by tick {tick}"
        )
        decided = chosen.get(slot)
        if decided is not None and decided != value:
            raise CheckFailure(
                "chosen value", f"{what}, but the slot was decided as {describe_batch(decided)}"
            )
        other = first.setdefault(slot, (value, ballot, tick))
        if other[0] != value:
            raise CheckFailure(
                "chosen value",
                f"{what}, but a majority had accepted {describe_batch(other[0])} there in "
                f"ballot {other[1]} by tick {other[2]}",
            )


def check_positions(history: TobHistory) -> None:
    """Each life delivers at consecutive positions; it jumps only forward, at a restore."""
    for trace, i, life in _lives(history):
        number = 0
        for base, segment in life.segments():
            if base is not None:
                if base.position < number:
                    raise CheckFailure(
                        "positions",
                        f"{_who(trace, i)} restored a {base.source} snapshot at position "
                        f"{base.position} (tick {base.tick}) after delivering through {number}",
                    )
                number = base.position
            for tick, d in segment:
                number += 1
                if d.delivery.slot != number:
                    raise CheckFailure(
                        "positions",
                        f"{_who(trace, i)}'s delivery at tick {tick} has position "
                        f"{d.delivery.slot} where {number} comes next: {_describe_delivered(d)}",
                    )


def check_no_duplication(history: TobHistory) -> None:
    """No id at two positions of one replica (any lives), nor twice in one life."""
    for trace in history.traces.values():
        at: dict[ProposalId, tuple[int, int]] = {}  # id -> (position, tick)
        for i, life in enumerate(trace.lives):
            in_life: set[ProposalId] = set()
            for tick, d in life.deliveries:
                first = at.get(d.id)
                twice = d.id in in_life
                if twice or (first is not None and first[0] != d.delivery.slot):
                    assert first is not None
                    raise CheckFailure(
                        "no duplication",
                        f"{_who(trace, i)} delivered {_pid(d.id)} twice: at position {first[0]} "
                        f"(tick {first[1]}) and again at tick {tick} as {_describe_delivered(d)}",
                    )
                in_life.add(d.id)
                at.setdefault(d.id, (d.delivery.slot, tick))


def check_no_creation(history: TobHistory) -> None:
    """Only what was broadcast is delivered, with the sender and payload it was broadcast with."""
    for trace, i, life in _lives(history):
        for tick, d in life.deliveries:
            b = history.broadcasts.get(d.id)
            if b is None:
                problem = "was never broadcast"
            elif d.delivery.sender != d.id.origin:
                problem = f"names sender {d.delivery.sender} but was broadcast by {d.id.origin}"
            elif d.delivery.payload != b.payload:
                problem = f"carries a payload other than the broadcast {_text(b.payload)!r}"
            else:
                continue
            raise CheckFailure(
                "no creation",
                f"{_who(trace, i)} delivered {_describe_delivered(d)} at tick {tick}, "
                f"which {problem}",
            )


def check_replay(history: TobHistory) -> None:
    """A restarted life re-delivers what the replica delivered before, at the same positions."""
    for trace in history.traces.values():
        before: dict[int, tuple[int, Delivered]] = {}  # position -> (tick, delivery)
        reached = 0
        for i, life in enumerate(trace.lives):
            who = _who(trace, i)
            for r in life.restores:
                if r.source != "storage":
                    continue
                if r.position > reached:
                    raise CheckFailure(
                        "replay",
                        f"{who} restarted from a snapshot at position {r.position}, but the "
                        f"replica had reached only position {reached} before",
                    )
                for entry in r.state:
                    old = before.get(entry[0])
                    if old is not None and entry != _as_entry(old[1]):
                        raise CheckFailure(
                            "replay",
                            f"{who} restored an application state holding "
                            f"{_describe_entry(entry)}, but the replica delivered "
                            f"{_describe_delivered(old[1])} there at tick {old[0]}",
                        )
            for tick, d in life.deliveries:
                old = before.get(d.delivery.slot)
                if old is not None and (old[1].id, old[1].delivery) != (d.id, d.delivery):
                    raise CheckFailure(
                        "replay",
                        f"{who} re-delivered position {d.delivery.slot} at tick {tick} as "
                        f"{_describe_delivered(d)}, but the replica delivered "
                        f"{_describe_delivered(old[1])} there at tick {old[0]}",
                    )
            for tick, d in life.deliveries:
                before.setdefault(d.delivery.slot, (tick, d))
            reached = max(reached, life.reached)


def _as_entry(d: Delivered) -> AppEntry:
    return (d.delivery.slot, d.delivery.sender, d.delivery.payload)


def check_total_order(history: TobHistory) -> None:
    """All deliveries of all lives of all replicas agree on the message at each position."""
    at: dict[int, tuple[Delivered, str]] = {}
    for trace, i, life in _lives(history):
        for _, d in life.deliveries:
            other = at.get(d.delivery.slot)
            if other is None:
                at[d.delivery.slot] = (d, _who(trace, i))
            elif (other[0].id, other[0].delivery) != (d.id, d.delivery):
                raise CheckFailure(
                    "total order",
                    f"at position {d.delivery.slot} {other[1]} delivered "
                    f"{_describe_delivered(other[0])} but {_who(trace, i)} delivered "
                    f"{_describe_delivered(d)}",
                )


def check_clock(history: TobHistory) -> None:
    """The log's clock: agreement, monotonic, step and expiry (the module docstring)."""
    record = history.clock
    if record is None:
        return
    at: dict[int, tuple[int, str]] = {}  # position -> (clock, who delivered it first)
    for trace, i, life in _lives(history):
        who = _who(trace, i)
        last = 0
        for tick, d in life.deliveries:
            clock = d.delivery.clock_ms
            if clock < last:
                raise CheckFailure(
                    "clock monotonic",
                    f"{who} delivered position {d.delivery.slot} at tick {tick} with clock "
                    f"{clock}, below the {last} of its previous delivery",
                )
            last = clock
            first = at.setdefault(d.delivery.slot, (clock, who))
            if first[0] != clock:
                raise CheckFailure(
                    "clock agreement",
                    f"{who} delivered position {d.delivery.slot} with clock {clock}, "
                    f"{first[1]} with {first[0]}",
                )
    if record.ahead is not None:
        tick, node, estimate, bound = record.ahead
        raise CheckFailure(
            "clock source",
            f"{node}'s clock estimate was {estimate} at tick {tick}, {estimate - bound} ms "
            f"ahead of every clock a leader had so far (at most {bound})",
        )
    if record.first_decided is None:
        return
    # G(t): the highest clock held by tick t; reached[k] is the first tick
    # at which G reached heights[k] (both increasing).
    heights: list[int] = []
    reached: list[int] = []
    for tick, stamp in sorted(record.highest.items()):
        if heights and stamp <= heights[-1]:
            continue
        if heights and tick > record.first_decided:
            rise = stamp - heights[-1]
            if rise > record.step_ms_max * (tick - reached[-1]):
                raise CheckFailure(
                    "clock step",
                    f"a replica held clock {stamp} at tick {tick}, {rise} ms above the "
                    f"highest before ({heights[-1]}, tick {reached[-1]}): more than "
                    f"clock_step_ms_max ({record.step_ms_max}) per tick",
                )
        heights.append(stamp)
        reached.append(tick)

    def when(clock: int) -> int:
        """The first tick some leader's stamp reached ``clock``."""
        k = bisect.bisect_left(heights, clock)
        return reached[k] if k < len(reached) else history.end_tick

    clocks = [at[p][0] for p in sorted(at)]
    positions = sorted(at)
    allowed = record.ttl_ms // record.step_ms_max - 1
    q = 0
    for k, p in enumerate(positions):
        set_at = clocks[k]
        t_set = when(set_at)
        if set_at == 0 or t_set <= record.first_decided:
            continue  # before the log had a clock, or while its first leader started it
        q = max(q, k)
        while q < len(clocks) and clocks[q] <= set_at + record.ttl_ms:
            q += 1
        if q == len(clocks):
            break  # no later key outlived it: nothing expired
        t_gone = when(clocks[q])
        if t_gone - t_set < allowed:
            raise CheckFailure(
                "expiry",
                f"the key of position {p} (set at clock {set_at}, stamped by tick {t_set}, "
                f"TTL {record.ttl_ms} ms) expired at position {positions[q]} (clock "
                f"{clocks[q]}, stamped by tick {t_gone}): {t_gone - t_set} ticks, fewer than "
                f"{allowed} (the TTL at clock_step_ms_max {record.step_ms_max} per tick)",
            )


def _sequence(chosen: dict[int, Batch]) -> tuple[list[Proposal], list[int]]:
    """The delivery sequence the chosen log implies, and the positions through each slot.

    ``through[s]`` is the number of messages in slots 1..s, for every s up to
    the end of the gap-free prefix of ``chosen`` (``len(through) - 1``).
    """
    seen: set[ProposalId] = set()
    order: list[Proposal] = []
    through = [0]
    slot = 1
    while slot in chosen:
        for p in chosen[slot]:
            if p.id.origin == CLOCK_ORIGIN:
                continue  # the leader's clock stamp: no message
            if p.id not in seen:
                seen.add(p.id)
                order.append(p)
        through.append(len(order))
        slot += 1
    return order, through


def check_log_order(history: TobHistory) -> None:
    """Every delivery, snapshot position and decided prefix agrees with the chosen log."""
    order, through = _sequence(chosen_log(history))
    gap = len(through)  # the first slot nobody reported decided
    for trace, i, life in _lives(history):
        who = _who(trace, i)
        for base, segment in life.segments():
            if base is not None and base.slot < gap and through[base.slot] != base.position:
                raise CheckFailure(
                    "log order",
                    f"{who} restored a {base.source} snapshot of slots through {base.slot} "
                    f"standing at position {base.position} (tick {base.tick}), but the chosen "
                    f"log puts {through[base.slot]} messages in those slots",
                )
            for tick, d in segment:
                p = d.delivery.slot
                if p > len(order):
                    raise CheckFailure(
                        "log order",
                        f"{who} delivered position {p} at tick {tick}, but the chosen log, "
                        f"gap-free through slot {gap - 1}, holds only {len(order)} messages",
                    )
                e = order[p - 1]
                if (e.id, e.payload) != (d.id, d.delivery.payload):
                    raise CheckFailure(
                        "log order",
                        f"{who}'s delivery at position {p} (tick {tick}) is "
                        f"{_pid(d.id)}:{_text(d.delivery.payload)} but the chosen log puts "
                        f"{_describe_proposal(e)} there",
                    )
        t = life.decided_through
        if t is None:
            continue
        if t >= gap:
            raise CheckFailure(
                "log order",
                f"{who} decided through slot {t}, but nobody reported slot {gap} decided",
            )
        if through[t] != life.reached:
            raise CheckFailure(
                "log order",
                f"{who} decided through slot {t}, which holds {through[t]} messages, but "
                f"delivered (or restored) through position {life.reached}",
            )


def check_snapshot_state(history: TobHistory) -> None:
    """Restored application states and every life's final state are prefixes of the order."""
    order, _ = _sequence(chosen_log(history))
    entries = [(n, p.id.origin, p.payload) for n, p in enumerate(order, start=1)]

    def compare(state: tuple[AppEntry, ...], position: int, what: str) -> None:
        if position > len(entries):
            raise CheckFailure(
                "snapshot state",
                f"{what} stands at position {position}, beyond the chosen log's "
                f"{len(entries)} messages",
            )
        for n, (mine, expected) in enumerate(zip(state, entries[:position], strict=False)):
            if mine != expected:
                raise CheckFailure(
                    "snapshot state",
                    f"{what} holds {_describe_entry(mine)} as entry {n + 1}, but the total "
                    f"order has {_describe_entry(expected)} there",
                )
        if len(state) != position:
            raise CheckFailure(
                "snapshot state",
                f"{what} holds {len(state)} entries where position {position} needs {position}",
            )

    for trace, i, life in _lives(history):
        who = _who(trace, i)
        for r in life.restores:
            compare(r.state, r.position, f"{who}'s {r.source} snapshot restored at tick {r.tick}")
        if life.state is not None:
            compare(life.state, life.reached, f"{who}'s application at the end of the life")


def check_durability(history: TobHistory) -> None:
    """A restarted acceptor keeps every promise and acknowledgement it sent before."""
    for trace in history.traces.values():
        promised, promised_tick = ZERO_BALLOT, 0
        acked: dict[int, tuple[Ballot, int]] = {}
        for i, life in enumerate(trace.lives):
            rec = life.recovered
            if i > 0 and rec is not None:
                who = _who(trace, i)
                if rec.promised < promised:
                    raise CheckFailure(
                        "durability",
                        f"{trace.node} promised ballot {promised} at tick {promised_tick} "
                        f"(in a Promise or Accepted it sent, or to itself), crashed at tick "
                        f"{trace.lives[i - 1].ended}, and {who} restarted having promised "
                        f"only {rec.promised}: the promise was not persisted before it counted",
                    )
                for slot, (ballot, tick) in sorted(acked.items()):
                    if slot <= rec.snapshot_slot or slot in rec.decided:
                        continue
                    kept = rec.accepted.get(slot)
                    if kept is None or kept < ballot:
                        has = "nothing accepted" if kept is None else f"only ballot {kept}"
                        raise CheckFailure(
                            "durability",
                            f"{trace.node} accepted slot {slot} in ballot {ballot} at tick "
                            f"{tick} (and acknowledged it, or counted it as the leader), "
                            f"crashed at tick {trace.lives[i - 1].ended}, and {who} restarted "
                            f"with {has} there, the slot neither decided nor compacted",
                        )
            if life.promised_sent[0] > promised:
                promised, promised_tick = life.promised_sent
            for slot, (ballot, tick) in life.acked.items():
                old = acked.get(slot)
                if old is None or ballot > old[0]:
                    acked[slot] = (ballot, tick)


def check_durable_quorum(history: TobHistory) -> None:
    """The first decision of every slot rests on a majority of synced acceptances of its value."""
    if history.durable is None:
        return
    configs = slot_configs(history)
    first: dict[int, tuple[int, Batch, str]] = {}
    for trace, i, life in _lives(history):
        for tick, e in life.decided:
            known = first.get(e.slot)
            if known is None or tick < known[0]:
                first[e.slot] = (tick, e.value, _who(trace, i))
    by_slot: dict[int, list[tuple[Ballot, Batch, dict[str, int]]]] = {}
    for (slot, ballot), (value, acceptors) in history.durable.items():
        by_slot.setdefault(slot, []).append((ballot, value, acceptors))
    for slot, (tick, value, who) in sorted(first.items()):
        best: list[str] = []
        # The acceptors of this slot: its configuration's voters (slot_configs).
        voters = configs.config_for(slot).voters
        majority = majority_of(voters)
        for _, v, acceptors in by_slot.get(slot, ()):
            if v != value:
                continue
            synced = sorted(a for a, t in acceptors.items() if t <= tick and a in voters)
            if len(synced) >= majority:
                break
            best = max(best, synced, key=len)
        else:
            raise CheckFailure(
                "durable quorum",
                f"{who} decided slot {slot} as {describe_batch(value)} at tick {tick}, when "
                f"at most {len(best)} acceptors ({','.join(best) or 'none'}) had that value "
                f"accepted in one ballot and synced, fewer than a majority ({majority}) of the "
                f"slot's voters ({','.join(sorted(voters))}): the decision rests on a vote a "
                "power loss can erase",
            )


def check_validity_and_liveness(history: TobHistory) -> None:
    """Correct replicas reach every message delivered anywhere and every surviving broadcast."""
    deadline = history.heal_tick + history.liveness_ticks
    position: dict[ProposalId, tuple[int, str]] = {}
    for trace, i, life in _lives(history):
        for _, d in life.deliveries:
            position.setdefault(d.id, (d.delivery.slot, _who(trace, i)))
    must: dict[ProposalId, str] = {}
    correct = history.correct
    for b in sorted(history.broadcasts.values(), key=lambda b: (b.tick, b.id)):
        origin = history.traces.get(b.id.origin)
        if origin is None or origin.crashed_at is not None or b.id.origin not in correct:
            continue  # (a removed origin hears no leader: not owed, unless delivered)
        if any(life.started <= b.tick and life.ended is None for life in origin.lives):
            must[b.id] = f"broadcast by correct {b.id.origin} at tick {b.tick}"
    for pid, (_, who) in position.items():
        if pid not in must:
            must[pid] = f"delivered by {who}"
    for node in correct:
        life = history.traces[node].life
        # (tick, position reached then), non-decreasing in both.
        steps = sorted(
            [(r.tick, r.position) for r in life.restores]
            + [(t, d.delivery.slot) for t, d in life.deliveries]
        )
        best: list[int] = []
        for _, p in steps:
            best.append(max(p, best[-1]) if best else p)
        for pid, why in must.items():
            at = position.get(pid)
            k = len(best) if at is None else bisect.bisect_left(best, at[0])
            tick = steps[k][0] if k < len(steps) else None
            if tick is not None and tick <= deadline:
                continue
            prop = "validity" if why.startswith("broadcast") else "uniform agreement"
            when = "never" if tick is None else f"only at tick {tick}"
            raise CheckFailure(
                prop,
                f"correct {node} delivered {_pid(pid)} ({why}) {when}: liveness bound is "
                f"{history.liveness_ticks} ticks after the heal at tick {history.heal_tick}; "
                f"the run ended at tick {history.end_tick}",
            )


# ================================================= single-decree consensus


def check_synod(history: SynodHistory) -> None:
    """Validity, integrity, uniform agreement, termination; raises ``CheckFailure``."""
    _check_synod_validity(history)
    _check_synod_integrity(history)
    _check_synod_agreement(history)
    _check_synod_termination(history)


def _check_synod_validity(history: SynodHistory) -> None:
    for trace in history.traces.values():
        values = [(t, v) for t, v in trace.decisions]
        if trace.final is not None:
            values.append((history.end_tick, trace.final))
        for tick, value in values:
            if not value:
                raise CheckFailure("validity", f"{trace.node} decided a no-op at tick {tick}")
            for p in value:
                b = history.proposals.get(p.id)
                if b is None or b.payload != p.payload:
                    raise CheckFailure(
                        "validity",
                        f"{trace.node}{_crash_note(trace)} decided {describe_batch(value)} at "
                        f"tick {tick}, but {_describe_proposal(p)} was never proposed",
                    )
        for tick, d in trace.deliveries:
            b = history.proposals.get(d.id)
            if b is None or b.payload != d.delivery.payload or d.delivery.sender != d.id.origin:
                raise CheckFailure(
                    "validity",
                    f"{trace.node} delivered {_describe_delivered(d)} at tick {tick}, "
                    "which no node proposed",
                )


def _check_synod_integrity(history: SynodHistory) -> None:
    for trace in history.traces.values():
        node = f"{trace.node}{_crash_note(trace)}"
        if len(trace.deliveries) > 1:
            ticks = ", ".join(str(t) for t, _ in trace.deliveries)
            raise CheckFailure("integrity", f"{node} delivered a decision at ticks {ticks}")
        if len(trace.decisions) > 1:
            (t1, v1), (t2, v2) = trace.decisions[:2]
            change = "changed it to" if v1 != v2 else "decided again"
            raise CheckFailure(
                "integrity",
                f"{node} decided {describe_batch(v1)} at tick {t1} and {change} "
                f"{describe_batch(v2)} at tick {t2}",
            )
        first = trace.decisions[0][1] if trace.decisions else None
        if first != trace.final:
            raise CheckFailure(
                "integrity",
                f"{node} reported the decision {describe_batch(first) if first else 'none'} "
                f"but ended with {describe_batch(trace.final) if trace.final else 'none'}",
            )
        if trace.deliveries and first is not None:
            d = trace.deliveries[0][1]
            if (d.id, d.delivery.payload) != (first[0].id, first[0].payload):
                raise CheckFailure(
                    "integrity",
                    f"{node} decided {describe_batch(first)} but delivered "
                    f"{_describe_delivered(d)}",
                )
        if bool(trace.deliveries) != (first is not None):
            raise CheckFailure(
                "integrity",
                f"{node} has {len(trace.deliveries)} deliveries and "
                f"{len(trace.decisions)} decisions: one of each is expected once it decides",
            )


def _check_synod_agreement(history: SynodHistory) -> None:
    seen: tuple[Batch, str] | None = None
    for trace in history.traces.values():
        for tick, value in trace.decisions:
            where = f"{trace.node}{_crash_note(trace)} at tick {tick}"
            if seen is None:
                seen = (value, where)
            elif seen[0] != value:
                raise CheckFailure(
                    "agreement",
                    f"{seen[1]} decided {describe_batch(seen[0])} but {where} decided "
                    f"{describe_batch(value)}",
                )


def _check_synod_termination(history: SynodHistory) -> None:
    deadline = history.heal_tick + history.liveness_ticks
    for node in history.correct:
        trace = history.traces[node]
        tick = trace.decisions[0][0] if trace.decisions else None
        if tick is None or tick > deadline:
            when = "never" if tick is None else f"only at tick {tick}"
            raise CheckFailure(
                "termination",
                f"correct {node} decided {when}: liveness bound is {history.liveness_ticks} "
                f"ticks after the heal at tick {history.heal_tick}; the run ended at tick "
                f"{history.end_tick}",
            )
