"""The checkers on hand-built histories: each property can fail, and a valid history passes.

Histories use three nodes a, b, c. ``valid_tob()`` is a correct run: a and b
broadcast, slot 2 is a no-op, c crashed after delivering a prefix.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from paxostob.core.events import Delivered
from paxostob.core.types import Batch, DecidedEntry, Delivery, Proposal, ProposalId
from paxostob.sim.checkers import (
    Broadcast,
    CheckFailure,
    SynodHistory,
    SynodTrace,
    TobHistory,
    TobTrace,
    check_agreement,
    check_log_order,
    check_no_creation,
    check_no_duplication,
    check_positions,
    check_synod,
    check_tob,
    check_total_order,
    check_validity_and_liveness,
    describe_batch,
)

A1 = Proposal(ProposalId("a", 1), b"a#1")
B1 = Proposal(ProposalId("b", 1), b"b#1")
A2 = Proposal(ProposalId("a", 2), b"a#2")
LOG: dict[int, Batch] = {1: (A1,), 2: (), 3: (B1, A1), 4: (A2,)}  # A1 retried in slot 3


def delivered(slot: int, p: Proposal) -> Delivered:
    return Delivered(p.id, Delivery(slot, p.id.origin, p.payload))


def trace(node: str, through: int, *, crashed_at: int | None = None) -> TobTrace:
    """A replica that decided slots 1..through of LOG and delivered their proposals."""
    t = TobTrace(node, crashed_at=crashed_at)
    log = {s: v for s, v in LOG.items() if s <= through}
    t.log = dict(log)
    t.decided = [(10 + s, DecidedEntry(s, v)) for s, v in log.items()]
    order = [p for s in sorted(log) for p in log[s]]
    seen: list[Proposal] = []
    for p in order:
        if p not in seen:
            seen.append(p)
    t.deliveries = [(20 + i, delivered(i, p)) for i, p in enumerate(seen, start=1)]
    return t


def valid_tob() -> TobHistory:
    return TobHistory(
        members=("a", "b", "c"),
        broadcasts={p.id: Broadcast(p.id, p.payload, 1) for p in (A1, B1, A2)},
        traces={"a": trace("a", 4), "b": trace("b", 4), "c": trace("c", 1, crashed_at=30)},
        heal_tick=50,
        liveness_ticks=100,
        end_tick=60,
    )


def test_a_valid_history_passes() -> None:
    check_tob(valid_tob())


def test_a_crashed_replica_owes_nothing_and_its_undelivered_broadcast_neither() -> None:
    h = valid_tob()
    lost = Proposal(ProposalId("c", 1), b"c#1")
    h.broadcasts[lost.id] = Broadcast(lost.id, lost.payload, 5)
    check_tob(h)


def _fails(check: Callable[[TobHistory], None], h: TobHistory, prop: str, *words: str) -> None:
    with pytest.raises(CheckFailure) as info:
        check(h)
    assert info.value.prop == prop
    for word in words:
        assert word in str(info.value), str(info.value)
    # The full check finds it too (perhaps through an earlier property).
    with pytest.raises(CheckFailure):
        check_tob(h)


def test_agreement_two_replicas_decide_differently() -> None:
    h = valid_tob()
    h.traces["b"].log[2] = (B1,)
    _fails(check_agreement, h, "agreement", "slot 2", "noop", "b/1:b#1")


def test_agreement_counts_a_crashed_replica() -> None:
    h = valid_tob()
    h.traces["c"].decided.append((29, DecidedEntry(3, (A2,))))
    _fails(check_agreement, h, "agreement", "slot 3", "crashed at tick 30")


def test_agreement_one_replica_changes_its_mind() -> None:
    h = valid_tob()
    h.traces["a"].decided.append((40, DecidedEntry(4, (B1,))))
    _fails(check_agreement, h, "agreement", "a decided slot 4")


def test_agreement_one_replica_decides_a_slot_twice() -> None:
    h = valid_tob()
    h.traces["a"].decided.append((40, DecidedEntry(4, (A2,))))
    _fails(check_agreement, h, "agreement", "decided twice")


def test_positions_must_count_from_one_without_gaps() -> None:
    h = valid_tob()
    tick, d = h.traces["a"].deliveries[1]
    h.traces["a"].deliveries[1] = (
        tick,
        Delivered(d.id, Delivery(3, d.delivery.sender, d.delivery.payload)),
    )
    _fails(check_positions, h, "positions", "a's delivery number 2")


def test_no_duplication() -> None:
    h = valid_tob()
    h.traces["a"].deliveries.append((45, delivered(4, A1)))
    _fails(check_no_duplication, h, "no duplication", "a/1 twice")


@pytest.mark.parametrize(
    ("forged", "why"),
    [
        (Delivered(ProposalId("b", 9), Delivery(4, "b", b"b#9")), "never broadcast"),
        (Delivered(A2.id, Delivery(3, "b", A2.payload)), "names sender b"),
        (Delivered(A2.id, Delivery(3, "a", b"evil")), "payload other than"),
    ],
)
def test_no_creation(forged: Delivered, why: str) -> None:
    h = valid_tob()
    h.traces["b"].deliveries[2] = (33, forged)
    _fails(check_no_creation, h, "no creation", why)


def test_log_order_deliveries_follow_the_decided_log() -> None:
    h = valid_tob()
    t = h.traces["a"]
    t.deliveries[0], t.deliveries[1] = (
        (t.deliveries[0][0], delivered(1, B1)),
        (t.deliveries[1][0], delivered(2, A1)),
    )
    _fails(check_log_order, h, "log order", "a's delivery 1 is b/1")


def test_log_order_no_decided_slot_left_undelivered() -> None:
    h = valid_tob()
    h.traces["a"].deliveries.pop()
    _fails(check_log_order, h, "log order", "delivered 2 messages", "holds 3")


def test_total_order_prefixes_must_agree() -> None:
    h = valid_tob()
    h.traces["b"].deliveries[1] = (33, delivered(2, A2))
    _fails(check_total_order, h, "total order", "position 2")


def test_validity_a_correct_broadcast_is_delivered_everywhere() -> None:
    h = valid_tob()
    late = Proposal(ProposalId("b", 2), b"b#2")
    h.broadcasts[late.id] = Broadcast(late.id, late.payload, 40)
    _fails(check_validity_and_liveness, h, "validity", "b/2", "never")


def test_uniform_agreement_what_a_crashed_replica_delivered() -> None:
    h = valid_tob()
    extra = Proposal(ProposalId("c", 1), b"c#1")
    h.broadcasts[extra.id] = Broadcast(extra.id, extra.payload, 5)
    h.traces["c"].deliveries.append((29, delivered(2, extra)))
    h.traces["c"].log[2] = (extra,)  # (c disagrees on slot 2 as well; check liveness alone)
    _fails(check_validity_and_liveness, h, "uniform agreement", "c/1", "delivered by c")


def test_liveness_delivered_but_too_late() -> None:
    h = valid_tob()
    h.end_tick = 400
    t = h.traces["b"]
    t.deliveries[-1] = (151, t.deliveries[-1][1])
    _fails(check_validity_and_liveness, h, "validity", "only at tick 151", "100 ticks")


def test_a_failure_carries_its_replay_command() -> None:
    failure = CheckFailure("agreement", "slot 1 ...").with_replay("paxostob sim --seed 7", "ctx: ")
    assert str(failure) == "agreement: ctx: slot 1 ...\n  replay: paxostob sim --seed 7"
    assert failure.replay == "paxostob sim --seed 7"


def test_describe_batch() -> None:
    assert describe_batch(()) == "noop"
    assert describe_batch((A1, B1)) == "[a/1:a#1, b/1:b#1]"
    assert describe_batch((A1,) * 6).endswith(", ... 2 more]")


# ================================================================= single decree

VA = (Proposal(ProposalId("a", 1), b"a:value"),)
VB = (Proposal(ProposalId("b", 1), b"b:value"),)


def synod_trace(node: str, value: Batch | None, tick: int = 10) -> SynodTrace:
    t = SynodTrace(node, final=value)
    if value is not None:
        t.decisions = [(tick, value)]
        t.deliveries = [
            (tick, Delivered(value[0].id, Delivery(0, node_of(value), value[0].payload)))
        ]
    return t


def node_of(value: Batch) -> str:
    return value[0].id.origin


def valid_synod() -> SynodHistory:
    return SynodHistory(
        members=("a", "b", "c"),
        proposals={v[0].id: Broadcast(v[0].id, v[0].payload, 1) for v in (VA, VB)},
        traces={"a": synod_trace("a", VA), "b": synod_trace("b", VA), "c": synod_trace("c", None)},
        heal_tick=50,
        liveness_ticks=100,
        end_tick=60,
    )


def _synod_fails(h: SynodHistory, prop: str, *words: str) -> None:
    with pytest.raises(CheckFailure) as info:
        check_synod(h)
    assert info.value.prop == prop, str(info.value)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_synod_valid_history_passes() -> None:
    h = valid_synod()
    h.traces["c"].crashed_at = 5  # a crashed node need not decide
    check_synod(h)


def test_synod_validity_the_decision_was_proposed() -> None:
    h = valid_synod()
    forged = (Proposal(ProposalId("c", 1), b"c:value"),)
    h.traces["a"] = synod_trace("a", forged)
    _synod_fails(h, "validity", "never proposed")


def test_synod_validity_no_noop() -> None:
    h = valid_synod()
    h.traces["a"].decisions = [(10, ())]
    _synod_fails(h, "validity", "no-op")


def test_synod_integrity_the_decision_never_changes() -> None:
    h = valid_synod()
    h.traces["a"].decisions.append((20, VB))
    _synod_fails(h, "integrity", "changed it to")


def test_synod_integrity_decides_once() -> None:
    h = valid_synod()
    h.traces["a"].decisions.append((20, VA))
    _synod_fails(h, "integrity", "decided again")


def test_synod_integrity_delivers_once() -> None:
    h = valid_synod()
    h.traces["a"].deliveries.append(h.traces["a"].deliveries[0])
    _synod_fails(h, "integrity", "delivered a decision at ticks 10, 10")


def test_synod_integrity_final_state_matches_what_was_reported() -> None:
    h = valid_synod()
    h.traces["a"].final = VB
    _synod_fails(h, "integrity", "ended with")


def test_synod_agreement_includes_crashed_nodes() -> None:
    h = valid_synod()
    h.traces["c"] = synod_trace("c", VB)
    h.traces["c"].crashed_at = 30
    _synod_fails(h, "agreement", "crashed at tick 30")


def test_synod_termination_of_correct_nodes() -> None:
    h = valid_synod()
    _synod_fails(h, "termination", "correct c decided never")


def test_synod_termination_within_the_bound() -> None:
    h = valid_synod()
    h.traces["c"] = synod_trace("c", VA, tick=151)
    _synod_fails(h, "termination", "only at tick 151")
