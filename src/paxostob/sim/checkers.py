"""Checkers: what a run recorded, judged against the properties Paxos promises.

Theory of operation: the runner records a *history* (what was broadcast or
proposed, what every replica decided and delivered and when, which replicas
crashed, when the network healed); the checkers only read it. Safety is
checked over every replica, crashed ones included, up to the moment they
crashed; liveness only over *correct* replicas (never crashed), and only
after the network healed.

Total-order broadcast (``check_tob``), safety first:

- agreement: no consensus slot is decided with two different values, by two
  replicas or by one replica twice (its ``Ready.decided`` and final ``log``);
- positions: each replica's delivery slots are 1, 2, 3, ... with no gap;
- no duplication: no ``ProposalId`` is delivered twice at a replica;
- no creation: only broadcast payloads are delivered, under the id and
  sender they were broadcast with;
- log order: a replica delivers exactly the proposals of its decided log,
  in slot order, each id once (no-ops take no position);
- total order: every two replicas' delivery sequences are prefix-consistent;
- validity and liveness: every broadcast of a correct node, and every
  message any replica delivered (uniform agreement), is delivered by every
  correct replica within ``liveness_ticks`` after the heal.

Single-decree consensus (``check_synod``): validity (the decision was
proposed), integrity (a replica decides at most once, and never changes its
decision), uniform agreement (no two replicas decide differently), and
termination (every correct replica decides within ``liveness_ticks`` after
the heal).

A violation raises ``CheckFailure`` naming the property, the replicas, the
slot and the values involved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..core.events import Delivered
from ..core.types import Batch, DecidedEntry, Proposal, ProposalId

__all__ = [
    "Broadcast",
    "CheckFailure",
    "SynodHistory",
    "SynodTrace",
    "TobHistory",
    "TobTrace",
    "check_synod",
    "check_tob",
    "describe_batch",
]


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


@dataclass(slots=True)
class TobTrace:
    """What one Multi-Paxos replica did in a run."""

    node: str
    #: The tick it crashed (crash-stop), or None for a correct replica.
    crashed_at: int | None = None
    #: (tick, delivery) in the order the replica produced them.
    deliveries: list[tuple[int, Delivered]] = field(default_factory=list)
    #: (tick, entry) for every ``Ready.decided`` entry, in order.
    decided: list[tuple[int, DecidedEntry]] = field(default_factory=list)
    #: The replica's decided log at the end (at its crash for a crashed one).
    log: dict[int, Batch] = field(default_factory=dict)


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

    @property
    def correct(self) -> list[str]:
        return [n for n in self.members if self.traces[n].crashed_at is None]


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


def _text(payload: bytes) -> str:
    text = payload.decode("utf-8", "backslashreplace")
    return text if len(text) <= 40 else text[:37] + "..."


def _describe_proposal(p: Proposal) -> str:
    return f"{p.id.origin}/{p.id.seq}:{_text(p.payload)}"


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
    return f"(slot {dv.slot}, {dv.sender}, {_text(dv.payload)!r}, id {d.id.origin}/{d.id.seq})"


def _crash_note(trace: TobTrace | SynodTrace) -> str:
    return f" (crashed at tick {trace.crashed_at})" if trace.crashed_at is not None else ""


# ==================================================== total-order broadcast


def check_tob(history: TobHistory) -> None:
    """Every property in the module docstring; raises ``CheckFailure`` on the first broken one."""
    check_agreement(history)
    check_positions(history)
    check_no_duplication(history)
    check_no_creation(history)
    check_log_order(history)
    check_total_order(history)
    check_validity_and_liveness(history)


def check_agreement(history: TobHistory) -> None:
    """No slot decided with two values, across replicas (crashed included) or within one."""
    chosen: dict[int, tuple[Batch, str]] = {}
    for trace in history.traces.values():
        observed: dict[int, Batch] = {}
        sources: Iterable[tuple[str, int, Batch]] = [
            *((f"tick {t}", e.slot, e.value) for t, e in trace.decided),
            *(("final log", s, v) for s, v in sorted(trace.log.items())),
        ]
        for where, slot, value in sources:
            mine = observed.get(slot)
            if mine is None:
                observed[slot] = value
            elif mine != value:
                raise CheckFailure(
                    "agreement",
                    f"{trace.node}{_crash_note(trace)} decided slot {slot} as "
                    f"{describe_batch(mine)} and later as {describe_batch(value)} ({where})",
                )
            elif where != "final log":
                raise CheckFailure(
                    "agreement",
                    f"{trace.node} reported slot {slot} decided twice in its Readys ({where})",
                )
            other = chosen.get(slot)
            if other is None:
                chosen[slot] = (value, f"{trace.node}{_crash_note(trace)}")
            elif other[0] != value:
                raise CheckFailure(
                    "agreement",
                    f"slot {slot} decided as {describe_batch(other[0])} at {other[1]} "
                    f"but as {describe_batch(value)} at {trace.node}{_crash_note(trace)}",
                )


def check_positions(history: TobHistory) -> None:
    """Delivery slots at each replica are exactly 1, 2, 3, ..."""
    for trace in history.traces.values():
        for i, (tick, d) in enumerate(trace.deliveries, start=1):
            if d.delivery.slot != i:
                raise CheckFailure(
                    "positions",
                    f"{trace.node}'s delivery number {i} at tick {tick} has slot "
                    f"{d.delivery.slot}: {_describe_delivered(d)}",
                )


def check_no_duplication(history: TobHistory) -> None:
    for trace in history.traces.values():
        first: dict[ProposalId, int] = {}
        for tick, d in trace.deliveries:
            if d.id in first:
                raise CheckFailure(
                    "no duplication",
                    f"{trace.node} delivered {d.id.origin}/{d.id.seq} twice: at tick "
                    f"{first[d.id]} and again at tick {tick} as {_describe_delivered(d)}",
                )
            first[d.id] = tick


def check_no_creation(history: TobHistory) -> None:
    """Only what was broadcast is delivered, with the sender and payload it was broadcast with."""
    for trace in history.traces.values():
        for tick, d in trace.deliveries:
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
                f"{trace.node} delivered {_describe_delivered(d)} at tick {tick}, which {problem}",
            )


def _log_deliveries(log: dict[int, Batch]) -> tuple[list[tuple[ProposalId, bytes]], int] | None:
    """The deliveries a decided log implies and the slot its gap-free prefix ends at.

    None if the log does not start at slot 1 (a compacted log).
    """
    if log and 1 not in log:
        return None
    seen: set[ProposalId] = set()
    out: list[tuple[ProposalId, bytes]] = []
    slot = 1
    while slot in log:
        for p in log[slot]:
            if p.id not in seen:
                seen.add(p.id)
                out.append((p.id, p.payload))
        slot += 1
    return out, slot - 1


def check_log_order(history: TobHistory) -> None:
    """A replica's deliveries are its decided log's proposals, in slot order, each once."""
    for trace in history.traces.values():
        implied = _log_deliveries(trace.log)
        if implied is None:
            continue  # a compacted log: the other checks still hold
        expected, through = implied
        got = [(d.id, d.delivery.payload) for _, d in trace.deliveries]
        if got == expected:
            continue
        for i, (g, e) in enumerate(zip(got, expected, strict=False), start=1):
            if g != e:
                raise CheckFailure(
                    "log order",
                    f"{trace.node}'s delivery {i} is {g[0].origin}/{g[0].seq}:{_text(g[1])} "
                    f"but its decided log puts {e[0].origin}/{e[0].seq}:{_text(e[1])} there",
                )
        raise CheckFailure(
            "log order",
            f"{trace.node} delivered {len(got)} messages but its decided log, gap-free "
            f"through slot {through}, holds {len(expected)}",
        )


def check_total_order(history: TobHistory) -> None:
    """Every two delivery sequences are prefix-consistent by (slot, sender, payload)."""
    traces = sorted(history.traces.values(), key=lambda t: -len(t.deliveries))
    if not traces:
        return
    ref = traces[0]
    for trace in traces[1:]:
        for (_, mine), (_, theirs) in zip(trace.deliveries, ref.deliveries, strict=False):
            if mine.delivery != theirs.delivery:
                raise CheckFailure(
                    "total order",
                    f"at position {mine.delivery.slot} {ref.node}{_crash_note(ref)} delivered "
                    f"{_describe_delivered(theirs)} but {trace.node}{_crash_note(trace)} "
                    f"delivered {_describe_delivered(mine)}",
                )


def check_validity_and_liveness(history: TobHistory) -> None:
    """Correct replicas deliver every correct broadcast and every delivered message, in time."""
    deadline = history.heal_tick + history.liveness_ticks
    correct = history.correct
    delivered_by: dict[ProposalId, str] = {}
    for trace in history.traces.values():
        for _, d in trace.deliveries:
            delivered_by.setdefault(d.id, trace.node)
    must: dict[ProposalId, str] = {}
    for b in sorted(history.broadcasts.values(), key=lambda b: (b.tick, b.id)):
        if b.id.origin in correct:
            must[b.id] = f"broadcast by correct {b.id.origin} at tick {b.tick}"
    for pid, node in delivered_by.items():
        if pid not in must:
            must[pid] = f"delivered by {node}"
    for node in correct:
        at = {d.id: tick for tick, d in history.traces[node].deliveries}
        for pid, why in must.items():
            tick = at.get(pid)
            if tick is not None and tick <= deadline:
                continue
            prop = "validity" if why.startswith("broadcast") else "uniform agreement"
            when = "never" if tick is None else f"only at tick {tick}"
            raise CheckFailure(
                prop,
                f"correct {node} delivered {pid.origin}/{pid.seq} ({why}) {when}: liveness "
                f"bound is {history.liveness_ticks} ticks after the heal at tick "
                f"{history.heal_tick}; the run ended at tick {history.end_tick}",
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
