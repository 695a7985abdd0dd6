"""Membership change in the core: the alpha rule, learners, promotion, removal, refusals.

Driven by hand with ``scenario.Net`` (no clock, no asyncio). Each test names
the rule it checks; docs/design.md, 'Membership change', has the argument.
"""

from __future__ import annotations

import random

import pytest

from paxostob.core.events import (
    ChangeOutcome,
    Compact,
    Propose,
    ProposeChange,
    Restore,
)
from paxostob.core.membership import (
    CONFIG_DELAY_SLOTS,
    Change,
    ConfigHistory,
    Configuration,
    apply_change,
    decode_change,
    encode_change,
)
from paxostob.core.messages import Accept, Prepare
from paxostob.core.multipaxos import LogConfig, MultiPaxosReplica, Role
from paxostob.core.snapshot import SnapshotMeta, decode_meta, encode_meta
from paxostob.core.types import DecidedEntry

from .scenario import Net

CFG = LogConfig(window_slots_max=8)


def elect(net: Net, node: str = "a") -> None:
    from paxostob.core.events import Campaign

    net.r[node].step(Campaign())
    net.settle()
    assert net.leaders() == [node]


def change(net: Net, node: str, op: str, nid: str, address: str = "") -> ChangeOutcome:
    """Propose a change at ``node`` and run until its outcome comes back."""
    request = len(net.changes[node]) + 1000
    net.r[node].step(ProposeChange(op, nid, request, address))
    net.run(400, until=lambda: any(c.request == request for c in net.changes[node]))
    return next(c for c in net.changes[node] if c.request == request)


def broadcast(net: Net, node: str, payload: bytes) -> None:
    net.r[node].step(Propose(payload))
    among = voters(net) - net.isolated
    net.run(200, until=lambda: all(payload in [r[2] for r in net.rows(m)] for m in among))


def voters(net: Net) -> frozenset[str]:
    return next(iter(net.r.values())).membership.newest.voters


def test_change_values_round_trip_and_apply_by_the_rules() -> None:
    c = Change("add", "d", "127.0.0.1:7004", ("a", 7))
    assert decode_change(encode_change(c)) == c
    base = Configuration(frozenset("abc"))
    added = apply_change(base, c, 10, 64)
    assert isinstance(added, Configuration)
    assert added.learners == {"d"} and added.effective_slot == 74
    assert added.address("d") == "127.0.0.1:7004"
    # One change at a time: a change decided before the last takes effect is void.
    assert "in progress" in str(apply_change(added, Change("promote", "d"), 20, 64))
    promoted = apply_change(added, Change("promote", "d"), 74, 64)
    assert isinstance(promoted, Configuration) and promoted.voters == {"a", "b", "c", "d"}
    removed = apply_change(promoted, Change("remove", "d"), 200, 64)
    assert isinstance(removed, Configuration) and "d" in removed.removed
    assert "removed before" in str(apply_change(removed, Change("add", "d"), 300, 64))
    assert "last voter" in str(
        apply_change(Configuration(frozenset("a")), Change("remove", "a"), 1, 64)
    )
    assert "not a member" in str(apply_change(base, Change("remove", "z"), 1, 64))
    assert "not a learner" in str(apply_change(base, Change("promote", "a"), 1, 64))


def test_config_for_follows_the_alpha_rule() -> None:
    h = ConfigHistory(Configuration(frozenset("abc")), delay=8)
    h.decided(5, encode_change(Change("add", "d")))
    assert h.config_for(12).learners == frozenset()  # 5 + 8 = 13: still the old one
    assert h.config_for(13).learners == {"d"}
    assert [c.effective_slot for c in h.governing_from(6)] == [1, 13]
    assert h.pending(11) is not None and h.pending(12) is None


def test_snapshot_meta_carries_the_configurations() -> None:
    configs = (
        Configuration(frozenset("abc"), frozenset("d"), (("d", "h:1"),), 1),
        Configuration(frozenset("abcd"), frozenset(), (("d", "h:1"),), 70, frozenset("z")),
    )
    meta = SnapshotMeta(9, 4, {("a", 1): (3, frozenset({5}))}, 77, configs)
    assert decode_meta(encode_meta(meta)) == meta


def grown(seed: int = 0) -> Net:
    """a, b, c founding voters with a leading, then d and e added as learners and promoted."""
    net = Net("abc", config=CFG, seed=seed)
    elect(net)
    broadcast(net, "a", b"before")
    for nid in "de":
        net.join(nid)
        got = change(net, "a", "add", nid, f"127.0.0.1:700{nid}")
        assert got.error is None and got.configuration is not None
        assert nid in got.configuration.learners
    net.run(50)
    for nid in "de":
        got = change(net, "a", "promote", nid)
        assert got.error is None and got.configuration is not None, got
    net.run(30)  # the learners fetch the last slots (catch-up after a heartbeat)
    return net


def test_grow_three_to_five_then_shrink_back_to_three() -> None:
    net = grown()
    for r in net.r.values():
        assert r.membership.newest.voters == set("abcde"), r.node_id
    broadcast(net, "a", b"five")
    # The new voters vote: with b and c cut off, {a, d, e} is a quorum of five.
    net.isolated = {"b", "c"}
    broadcast(net, "a", b"without b and c")
    net.isolated = set()
    for nid in "de":
        assert change(net, "a", "remove", nid).error is None
    broadcast(net, "a", b"three again")
    rows = net.rows("a")
    for m in "bc":
        assert net.rows(m) == rows
    # Everything the joiners delivered is the same order as the founders'.
    for m in "de":
        got = net.rows(m)
        assert got == rows[: len(got)]
        assert net.r[m].role is Role.FOLLOWER


def test_a_new_configuration_counts_only_its_voters_per_slot() -> None:
    net = Net("abc", config=CFG)
    elect(net)
    net.join("d")
    assert change(net, "a", "add", "d").error is None
    net.run(20)
    # d is a learner: no Accept goes to it.
    net.r["a"].step(Propose(b"x"))
    sent = net.out("a")
    # (Its own acceptance goes through the loopback, never the network.)
    assert {e.dst for e in sent if isinstance(e.message, Accept)} == {"b", "c"}
    net.post(sent)
    net.settle()
    assert change(net, "a", "promote", "d").error is None
    net.r["a"].step(Propose(b"y"))
    sent = net.out("a")
    assert {e.dst for e in sent if isinstance(e.message, Accept)} == {"b", "c", "d"}


def test_leader_asks_new_voters_for_promises_when_its_quorum_misses_the_new_configuration() -> None:
    net = Net("abc", config=CFG)
    # c is gone from the start: a's ballot is promised by a and b only, not a
    # quorum of {a, b, c, d} (three), so a must get d's promise for the new slots.
    net.isolated = {"c"}
    elect(net)
    net.join("d")
    assert change(net, "a", "add", "d").error is None
    net.run(20)
    net.r["a"].step(ProposeChange("promote", "d", 1))
    net.run(200, until=lambda: any(c.request == 1 for c in net.changes["a"]))
    assert net.changes["a"][-1].configuration is not None
    prepares = [e for e in net.trace if isinstance(e.message, Prepare) and e.dst == "d"]
    assert prepares, "the leader never asked the new voter for its promise"
    broadcast(net, "a", b"with d")
    assert b"with d" in [r[2] for r in net.rows("d")]


def test_removed_leader_steps_down_and_the_others_elect() -> None:
    net = Net("abc", config=CFG)
    elect(net)
    broadcast(net, "a", b"one")
    got = change(net, "a", "remove", "a")
    assert got.error is None and got.configuration is not None
    assert net.r["a"].role is Role.FOLLOWER
    net.run(200, until=lambda: bool(net.leaders()))
    (leader,) = net.leaders()
    assert leader in "bc"
    broadcast(net, leader, b"two")
    assert [r[2] for r in net.rows("b")] == [b"one", b"two"]
    assert net.rows("b") == net.rows("c")
    # The removed node never campaigns again.
    net.run(100)
    assert net.r["a"].role is Role.FOLLOWER and net.r["a"].election.elections == 1


@pytest.mark.parametrize(
    ("op", "nid", "expect"),
    [
        ("remove", "z", "not a member"),
        ("promote", "b", "not a learner"),
        ("add", "b", "already a member"),
        ("rename", "b", "unknown membership change"),
    ],
)
def test_invalid_changes_are_refused_with_the_reason(op: str, nid: str, expect: str) -> None:
    net = Net("abc", config=CFG)
    elect(net)
    got = change(net, "a", op, nid)
    assert got.configuration is None and got.error is not None and expect in got.error


def test_refusals_one_at_a_time_not_leader_last_voter_and_lagging_learner() -> None:
    net = Net("abc", config=CFG)
    elect(net)
    got = change(net, "b", "add", "d")
    assert got.error is not None and "not the leader" in got.error and got.leader == "a"
    net.r["a"].step(ProposeChange("add", "d", 1))
    net.r["a"].step(ProposeChange("add", "e", 2))
    net.out("a")
    second = net.changes["a"][-1]
    assert (
        second.request == 2 and second.error is not None and "one change at a time" in second.error
    )
    # d was never started: it never answers, so it cannot be promoted.
    net.run(200, until=lambda: any(c.request == 1 for c in net.changes["a"]))
    got = change(net, "a", "promote", "d")
    assert got.error is not None and "has not answered" in got.error
    one = Net("a", config=CFG)
    elect(one)
    got = change(one, "a", "remove", "a")
    assert got.error is not None and "last voter" in got.error


def test_a_learner_further_behind_than_learner_lag_max_is_not_promoted() -> None:
    net = Net("abc", config=LogConfig(window_slots_max=8, learner_lag_max=3))
    elect(net)
    net.join("d")
    assert change(net, "a", "add", "d").error is None
    net.run(30)
    net.isolated = {"d"}
    for i in range(6):
        broadcast(net, "a", f"m{i}".encode())
    got = change(net, "a", "promote", "d")
    assert got.error is not None and "lags" in got.error
    net.isolated = set()
    net.run(60)
    assert change(net, "a", "promote", "d").error is None


def test_joiner_gets_the_configuration_from_a_snapshot_and_a_restart_rebuilds_it() -> None:
    net = Net("abc", config=CFG)
    elect(net)
    net.join("d")
    assert change(net, "a", "add", "d").error is None
    broadcast(net, "a", b"x")
    for m in "abc":
        net.r[m].step(Compact(b"state"))
    net.settle()
    net.join("e")
    assert change(net, "a", "add", "e").error is None
    net.run(60)
    e = net.r["e"]
    assert e.log.compacted_through > 0, "e should have installed a snapshot"
    assert e.membership.newest.learners == {"d", "e"}
    # A restart from the stored state rebuilds the configurations.
    a = net.r["a"]
    decided = [DecidedEntry(s, v) for s, v in sorted(a.log.entries.items())]
    fresh = MultiPaxosReplica("a", ["a", "b", "c"], random.Random(1), config=CFG)
    fresh.step(Restore(a.acceptor.promised, [], decided, incarnation=2, snapshot=a.log.snapshot))
    assert fresh.log.decided_through == a.log.decided_through
    assert fresh.membership.newest == a.membership.newest
    for slot in range(a.log.decided_through + 1, a.log.decided_through + 2 * CFG.window_slots_max):
        assert fresh.membership.config_for(slot) == a.membership.config_for(slot), slot


def test_window_larger_than_alpha_is_refused() -> None:
    with pytest.raises(ValueError, match="may not exceed"):
        MultiPaxosReplica(
            "a", ["a"], random.Random(0), config=LogConfig(window_slots_max=CONFIG_DELAY_SLOTS + 1)
        )


def test_acceptances_of_a_non_voter_never_count() -> None:
    from paxostob.core.events import Receive
    from paxostob.core.messages import Accepted, Envelope

    net = Net("abc", config=CFG)
    elect(net)
    net.join("d")
    assert change(net, "a", "add", "d").error is None
    net.run(20)
    a = net.r["a"]
    net.isolated = {"b", "c"}
    a.step(Propose(b"only a and a learner"))
    net.settle()
    lead = a.election.leading
    assert lead is not None and lead.open, "the slot should be open, waiting for a quorum"
    (slot,) = lead.open
    # The learner d's acceptance (it never gets an Accept: forged here) plus
    # a's own would be two of three if d counted.
    a.step(Receive(Envelope("a", Accepted(a.instance, "d", lead.ballot, slot, None))))
    net.settle()
    assert slot not in a.log.entries and a.log.decided_through < slot
