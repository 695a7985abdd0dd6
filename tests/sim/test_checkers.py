"""The checkers on hand-built histories: each property can fail, and a valid history passes.

Histories use three nodes a, b, c. ``valid_tob()`` is a correct run: a and b
broadcast, slot 2 is a no-op, c crashed after delivering a prefix.
``restarted_tob()`` adds a crash and restart: a crashes after delivering
two messages and restarts from its snapshot of slot 1, replaying from
position 2.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from paxostob.core.events import Delivered
from paxostob.core.types import Ballot, Batch, DecidedEntry, Delivery, Proposal, ProposalId
from paxostob.sim.checkers import (
    Broadcast,
    CheckFailure,
    Recovered,
    Restore,
    SynodHistory,
    SynodTrace,
    TobHistory,
    TobLife,
    TobTrace,
    check_agreement,
    check_chosen_values,
    check_durability,
    check_log_order,
    check_no_creation,
    check_no_duplication,
    check_positions,
    check_replay,
    check_snapshot_state,
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
#: The delivery sequence LOG implies.
ORDER = (A1, B1, A2)


def delivered(slot: int, p: Proposal) -> Delivered:
    return Delivered(p.id, Delivery(slot, p.id.origin, p.payload))


def entries(n: int) -> tuple[tuple[int, str, bytes], ...]:
    """The application state after the first ``n`` messages of ORDER."""
    return tuple((i, p.id.origin, p.payload) for i, p in enumerate(ORDER[:n], start=1))


def trace(node: str, through: int, *, crashed_at: int | None = None) -> TobTrace:
    """A replica that decided slots 1..through of LOG and delivered their proposals."""
    log = {s: v for s, v in LOG.items() if s <= through}
    positions = {1: 1, 2: 1, 3: 2, 4: 3}[through]
    life = TobLife(
        0,
        ended=crashed_at,
        log=dict(log),
        decided=[(10 + s, DecidedEntry(s, v)) for s, v in log.items()],
        deliveries=[(20 + i, delivered(i, p)) for i, p in enumerate(ORDER[:positions], 1)],
        decided_through=through,
        state=entries(positions),
    )
    return TobTrace(node, crashed_at=crashed_at, lives=[life])


def valid_tob() -> TobHistory:
    return TobHistory(
        members=("a", "b", "c"),
        broadcasts={p.id: Broadcast(p.id, p.payload, 1) for p in (A1, B1, A2)},
        traces={"a": trace("a", 4), "b": trace("b", 4), "c": trace("c", 1, crashed_at=30)},
        heal_tick=50,
        liveness_ticks=100,
        end_tick=60,
    )


def restarted_tob() -> TobHistory:
    """a: life 1 delivers A1, B1 and crashes at 25; life 2 (tick 30) restores its snapshot of
    slot 1 (position 1) and replays B1 at position 2, then delivers A2."""
    h = valid_tob()
    first = h.traces["a"].life
    first.ended = 25
    first.deliveries = first.deliveries[:2]
    first.decided = first.decided[:3]
    first.log = {2: LOG[2], 3: LOG[3]}  # slot 1 compacted
    first.decided_through = 3
    first.state = entries(2)
    first.promised_sent = (Ballot(1, "b"), 12)
    first.acked = {3: (Ballot(1, "b"), 12)}
    second = TobLife(
        30,
        recovered=Recovered(Ballot(1, "b"), {3: Ballot(1, "b")}, {2: LOG[2]}, snapshot_slot=1),
        restores=[Restore(30, 0, 1, 1, entries(1), "storage")],
        deliveries=[(30, delivered(2, B1)), (35, delivered(3, A2))],
        decided=[(30, DecidedEntry(3, LOG[3])), (35, DecidedEntry(4, LOG[4]))],
        log={2: LOG[2], 3: LOG[3], 4: LOG[4]},
        decided_through=4,
        state=entries(3),
    )
    h.traces["a"].lives.append(second)
    h.acceptances = {
        (3, Ballot(1, "b")): (LOG[3], {"a": 12, "b": 11}),
        (4, Ballot(1, "b")): (LOG[4], {"b": 33}),  # a minority: nothing follows from it
    }
    return h


def test_a_valid_history_passes() -> None:
    check_tob(valid_tob())


def test_a_valid_history_with_a_restart_passes() -> None:
    check_tob(restarted_tob())


def test_a_crashed_replica_owes_nothing_and_its_undelivered_broadcast_neither() -> None:
    h = valid_tob()
    lost = Proposal(ProposalId("c", 1), b"c#1")
    h.broadcasts[lost.id] = Broadcast(lost.id, lost.payload, 5)
    check_tob(h)


def _fails(check: Callable[[TobHistory], None], h: TobHistory, prop: str, *words: str) -> None:
    with pytest.raises(CheckFailure) as info:
        check(h)
    assert info.value.prop == prop, str(info.value)
    for word in words:
        assert word in str(info.value), str(info.value)
    # The full check finds it too (perhaps through an earlier property).
    with pytest.raises(CheckFailure):
        check_tob(h)


def test_agreement_two_replicas_decide_differently() -> None:
    h = valid_tob()
    h.traces["b"].life.log[2] = (B1,)
    _fails(check_agreement, h, "agreement", "slot 2", "noop", "b/1:b#1")


def test_agreement_counts_a_crashed_replica() -> None:
    h = valid_tob()
    h.traces["c"].life.decided.append((29, DecidedEntry(3, (A2,))))
    _fails(check_agreement, h, "agreement", "slot 3", "crashed at tick 30")


def test_agreement_one_replica_changes_its_mind() -> None:
    h = valid_tob()
    h.traces["a"].life.decided.append((40, DecidedEntry(4, (B1,))))
    _fails(check_agreement, h, "agreement", "a decided slot 4")


def test_agreement_one_replica_decides_a_slot_twice() -> None:
    h = valid_tob()
    h.traces["a"].life.decided.append((40, DecidedEntry(4, (A2,))))
    _fails(check_agreement, h, "agreement", "decided twice")


def test_agreement_a_restarted_life_may_learn_a_slot_again() -> None:
    h = restarted_tob()
    assert 3 in dict((e.slot, t) for t, e in h.traces["a"].lives[0].decided)
    check_agreement(h)  # slot 3 reported by both lives: the same value, no failure


def test_agreement_across_lives_of_one_replica() -> None:
    h = restarted_tob()
    h.traces["a"].life.decided[0] = (30, DecidedEntry(3, (A2,)))
    _fails(check_agreement, h, "agreement", "slot 3", "a (life 1", "a (life 2")


def test_agreement_counts_what_storage_gave_back() -> None:
    h = restarted_tob()
    recovered = h.traces["a"].life.recovered
    assert recovered is not None
    recovered.decided[2] = (B1,)
    _fails(check_agreement, h, "agreement", "slot 2", "(storage)")


def test_chosen_values_a_majority_acceptance_is_never_decided_otherwise() -> None:
    h = restarted_tob()
    h.acceptances[(4, Ballot(2, "c"))] = ((B1,), {"b": 40, "c": 41})
    _fails(check_chosen_values, h, "chosen value", "slot 4", "(b,c)", "ballot 2.c", "by tick 41")


def test_chosen_values_two_majorities_for_one_undecided_slot() -> None:
    h = restarted_tob()
    h.acceptances[(5, Ballot(1, "b"))] = ((A1,), {"a": 40, "b": 41})
    h.acceptances[(5, Ballot(2, "c"))] = ((B1,), {"b": 50, "c": 51})
    _fails(check_chosen_values, h, "chosen value", "slot 5", "ballot 1.b by tick 41")


def test_chosen_values_one_ballot_proposes_one_value_per_slot() -> None:
    h = restarted_tob()
    h.conflicts.append((4, Ballot(1, "b"), LOG[4], (B1,), 34))
    _fails(check_chosen_values, h, "chosen value", "ballot 1.b", "slot 4", "tick 34")


def test_positions_must_count_from_one_without_gaps() -> None:
    h = valid_tob()
    deliveries = h.traces["a"].life.deliveries
    tick, d = deliveries[1]
    deliveries[1] = (tick, Delivered(d.id, Delivery(3, d.delivery.sender, d.delivery.payload)))
    _fails(check_positions, h, "positions", "a's delivery at tick 22 has position 3")


def test_positions_a_restarted_life_continues_from_its_snapshot() -> None:
    h = restarted_tob()
    h.traces["a"].life.restores[0] = Restore(30, 0, 1, 0, (), "storage")
    _fails(check_positions, h, "positions", "a (life 2", "position 2 where 1 comes next")


def test_positions_a_peer_snapshot_never_goes_back() -> None:
    h = valid_tob()
    h.traces["b"].life.restores.append(Restore(40, 3, 1, 1, entries(1), "peer"))
    _fails(check_positions, h, "positions", "peer snapshot at position 1", "through 3")


def test_no_duplication() -> None:
    h = valid_tob()
    h.traces["a"].life.deliveries.append((45, delivered(4, A1)))
    _fails(check_no_duplication, h, "no duplication", "a/1 twice")


def test_no_duplication_across_lives() -> None:
    h = restarted_tob()
    h.traces["a"].life.deliveries[1] = (35, delivered(3, A1))
    _fails(check_no_duplication, h, "no duplication", "a/1 twice", "position 1")


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
    h.traces["b"].life.deliveries[2] = (33, forged)
    _fails(check_no_creation, h, "no creation", why)


def test_replay_redelivers_the_same_message_at_the_same_position() -> None:
    h = restarted_tob()
    # Life 2 replays position 2 as A2 (and then B1): not what life 1 delivered there.
    h.traces["a"].life.deliveries = [(30, delivered(2, A2)), (35, delivered(3, B1))]
    _fails(check_replay, h, "replay", "re-delivered position 2", "a/2", "b/1", "tick 22")


def test_replay_the_restored_state_is_the_one_delivered_there() -> None:
    h = restarted_tob()
    h.traces["a"].life.restores[0] = Restore(30, 0, 1, 1, ((1, "b", b"b#1"),), "storage")
    _fails(check_replay, h, "replay", "restored an application state", "(1, b, 'b#1')")


def test_replay_a_snapshot_beyond_what_the_replica_reached() -> None:
    h = restarted_tob()
    h.traces["a"].life.restores[0] = Restore(30, 0, 4, 3, entries(3), "storage")
    h.traces["a"].life.deliveries = []
    _fails(check_replay, h, "replay", "position 3", "reached only position 2")


def test_log_order_deliveries_follow_the_decided_log() -> None:
    h = valid_tob()
    deliveries = h.traces["a"].life.deliveries
    deliveries[0], deliveries[1] = (
        (deliveries[0][0], delivered(1, B1)),
        (deliveries[1][0], delivered(2, A1)),
    )
    _fails(check_log_order, h, "log order", "a's delivery at position 1", "b/1:b#1", "a/1:a#1")


def test_log_order_no_decided_slot_left_undelivered() -> None:
    h = valid_tob()
    h.traces["a"].life.deliveries.pop()
    _fails(check_log_order, h, "log order", "through slot 4, which holds 3", "position 2")


def test_log_order_a_snapshot_stands_where_its_slot_puts_it() -> None:
    h = restarted_tob()
    # Slots 1..3 hold two messages; a snapshot of slot 3 claiming position 1 lies.
    h.traces["b"].life.restores.append(Restore(40, 1, 3, 1, entries(1), "peer"))
    _fails(check_log_order, h, "log order", "slots through 3", "position 1", "puts 2")


def test_log_order_nothing_beyond_the_chosen_log() -> None:
    h = valid_tob()
    extra = Proposal(ProposalId("b", 2), b"b#2")
    h.broadcasts[extra.id] = Broadcast(extra.id, extra.payload, 5)
    h.traces["b"].life.deliveries.append((40, delivered(4, extra)))
    _fails(check_log_order, h, "log order", "position 4", "holds only 3 messages")


def test_total_order_prefixes_must_agree() -> None:
    h = valid_tob()
    h.traces["b"].life.deliveries[1] = (33, delivered(2, A2))
    _fails(check_total_order, h, "total order", "position 2")


def test_total_order_counts_every_life() -> None:
    h = restarted_tob()
    h.traces["a"].lives[0].deliveries[1] = (22, delivered(2, A2))
    _fails(check_total_order, h, "total order", "position 2", "a (life 1")


def test_snapshot_state_must_be_the_prefix_of_the_total_order() -> None:
    h = restarted_tob()
    h.traces["b"].life.restores.append(Restore(40, 3, 4, 3, entries(2), "peer"))
    _fails(check_snapshot_state, h, "snapshot state", "b's peer snapshot", "2 entries")


def test_snapshot_state_the_application_ends_where_the_replica_does() -> None:
    h = restarted_tob()
    h.traces["a"].life.state = entries(2)
    _fails(check_snapshot_state, h, "snapshot state", "a (life 2", "end of the life")


def test_durability_a_restarted_acceptor_keeps_its_promise() -> None:
    h = restarted_tob()
    h.traces["a"].lives[0].promised_sent = (Ballot(2, "c"), 20)
    _fails(check_durability, h, "durability", "promised ballot 2.c at tick 20", "only 1.b")


def test_durability_a_restarted_acceptor_keeps_what_it_accepted() -> None:
    h = restarted_tob()
    h.traces["a"].lives[0].acked[5] = (Ballot(1, "b"), 24)
    _fails(check_durability, h, "durability", "slot 5 in ballot 1.b at tick 24", "nothing")


def test_durability_decided_or_compacted_slots_need_no_accepted_entry() -> None:
    h = restarted_tob()
    h.traces["a"].lives[0].acked.update({1: (Ballot(1, "b"), 5), 2: (Ballot(1, "b"), 8)})
    check_durability(h)  # slot 1 is in the snapshot, slot 2 decided in storage


def test_validity_a_correct_broadcast_is_delivered_everywhere() -> None:
    h = valid_tob()
    late = Proposal(ProposalId("b", 2), b"b#2")
    h.broadcasts[late.id] = Broadcast(late.id, late.payload, 40)
    _fails(check_validity_and_liveness, h, "validity", "b/2", "never")


def test_validity_a_broadcast_dies_with_its_life_unless_delivered() -> None:
    h = restarted_tob()
    lost = Proposal(ProposalId("a", 3), b"a#3")
    h.broadcasts[lost.id] = Broadcast(lost.id, lost.payload, 20)  # a crashed at 25
    check_validity_and_liveness(h)
    h.broadcasts[lost.id] = Broadcast(lost.id, lost.payload, 31)  # the life that is still up
    _fails(check_validity_and_liveness, h, "validity", "a/3", "never")


def test_validity_a_restored_snapshot_counts_as_delivered() -> None:
    h = restarted_tob()
    b = h.traces["b"].life
    # b got positions 1-2 by a peer's snapshot at tick 40, then delivered position 3.
    b.deliveries = [(41, delivered(3, A2))]
    b.restores = [Restore(40, 0, 3, 2, entries(2), "peer")]
    check_tob(h)
    b.deliveries = [(401, delivered(3, A2))]
    b.restores = [Restore(400, 0, 3, 2, entries(2), "peer")]  # after the liveness bound
    _fails(check_validity_and_liveness, h, "validity", "correct b", "only at tick 400")


def test_uniform_agreement_what_a_crashed_replica_delivered() -> None:
    h = valid_tob()
    extra = Proposal(ProposalId("c", 1), b"c#1")
    h.broadcasts[extra.id] = Broadcast(extra.id, extra.payload, 5)
    c = h.traces["c"].life
    # c delivered a fourth message before crashing; nobody else ever does.
    c.deliveries = [(20 + i, delivered(i, p)) for i, p in enumerate((*ORDER, extra), start=1)]
    _fails(check_validity_and_liveness, h, "uniform agreement", "c/1", "delivered by c")


def test_liveness_delivered_but_too_late() -> None:
    h = valid_tob()
    h.end_tick = 400
    deliveries = h.traces["b"].life.deliveries
    deliveries[-1] = (151, deliveries[-1][1])
    _fails(check_validity_and_liveness, h, "validity", "only at tick 151", "100 ticks")


def test_a_failure_carries_its_replay_command() -> None:
    failure = CheckFailure("agreement", "slot 1 ...").with_replay("paxostob sim --seed 7", "ctx: ")
    assert str(failure) == "agreement: ctx: slot 1 ...\n  replay: paxostob sim --seed 7"
    assert failure.replay == "paxostob sim --seed 7"


def test_describe_batch() -> None:
    assert describe_batch(()) == "noop"
    assert describe_batch((A1, B1)) == "[a/1:a#1, b/1:b#1]"
    assert describe_batch((A1,) * 6).endswith(", ... 2 more]")
    life2 = Proposal(ProposalId("a", (2 << 32) + 7), b"x")
    assert describe_batch((life2,)) == "[a/2.7:x]"


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
