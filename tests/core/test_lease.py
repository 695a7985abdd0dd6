"""Scripted scenarios for leader leases in the Multi-Paxos core (core/reads.py, 'Leases').

Three nodes with ``LogConfig(leases=True)``: the guard is the election
timeout (15 ticks of 10 ms: 150 ms), the drift bound 5%, so a lease lasts
``floor(150 * 0.95 / 1.05) - 2 = 133`` ms of the leader's clock from the
reading at which its probe round was sent. Every tick carries the clock
(10 ms of monotonic time unless a test says otherwise).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from paxostob.core.events import (
    Campaign,
    Propose,
    ProposeChange,
    ReadIndex,
    Receive,
    Restore,
    Tick,
)
from paxostob.core.lease import lease_ms
from paxostob.core.messages import (
    Envelope,
    Heartbeat,
    Nack,
    Prepare,
    Promise,
    ReadIndexAsk,
    ReadIndexGrant,
    ReadProbe,
    ReadProbeReply,
)
from paxostob.core.multipaxos import LogConfig, MultiPaxosReplica, Role
from paxostob.core.types import Ballot

from .scenario import Net

LEASES = LogConfig(leases=True, lease_drift_max=0.05)
LEASE_MS = 133


def clock_tick(net: Net, nodes: str, ms: int = 10) -> None:
    """One tick to each of ``nodes``, ``ms`` of monotonic time after its previous one."""
    for m in nodes:
        net.r[m].step(Tick(clock_ms=1_767_225_600_000, elapsed_ms=ms))


def past_start_guard(net: Net) -> None:
    """Tick every node past the guard it holds from its start; what they sent is dropped."""
    for _ in range(17):
        clock_tick(net, "".join(net.members))
        for m in net.members:
            net.out(m)


def leased(net: Net, leader: str = "a") -> None:
    """Elect ``leader``, write one value, and let one probe round give it a lease."""
    past_start_guard(net)
    net.r[leader].step(Campaign())
    net.settle()
    assert net.leaders() == [leader]
    net.r[leader].step(Propose(b"x"))
    net.settle()
    for _ in range(3):  # the heartbeat is due: a probe round
        clock_tick(net, "".join(net.members))
        net.settle()
    assert net.r[leader].reads.lease_until is not None


def probes(envs: list[Envelope]) -> list[Envelope]:
    return [e for e in envs if isinstance(e.message, ReadProbe)]


def prepare_from(net: Net, sender: str, dst: str) -> list[Envelope]:
    """A ``Prepare`` from ``sender`` to ``dst``, above every ballot ``dst`` promised."""
    r = net.r[dst]
    ballot = Ballot(r.acceptor.promised.round + 1, sender)
    return [Envelope(dst, Prepare(r.instance, sender, ballot, r.log.decided_through + 1))]


def next_round(net: Net, leader: str) -> tuple[int, list[Envelope]]:
    """Tick ``leader`` alone until it sends a probe round: its reading then, and the probes."""
    for _ in range(10):
        clock_tick(net, leader)
        sent = probes(net.out(leader))
        if sent:
            return net.r[leader].reads.mono_ms, sent
    raise AssertionError("no probe round in 10 ticks")


def test_the_lease_length_takes_the_drift_bound_off_the_guard() -> None:
    assert LEASES.guard_ms == 150
    assert lease_ms(150, 0.05) == LEASE_MS
    assert lease_ms(150, 0.0) == 148


def test_a_read_under_a_valid_lease_is_served_with_no_probe() -> None:
    net = Net("abc", config=LEASES)
    leased(net)
    net.r["a"].step(ReadIndex(1, elapsed_ms=1))
    sent = net.out("a")
    assert probes(sent) == []
    assert net.served == [("a", 1, 1)]


def test_the_lease_stays_fresh_under_load() -> None:
    """A commit heartbeat after every decision must not stand in for the lease's round."""
    net = Net("abc", config=LEASES)
    leased(net)
    a = net.r["a"]
    for k in range(30):  # 300 ms of writes, one decided every tick
        a.step(Propose(f"w{k}".encode()))
        clock_tick(net, "abc")
        net.settle()
    until = a.reads.lease_until
    assert until is not None and until - a.reads.mono_ms > LEASE_MS // 2
    a.step(ReadIndex(1, elapsed_ms=0))
    assert probes(net.out("a")) == []
    assert [rid for _, rid, _ in net.served] == [1]


def test_a_followers_ask_under_a_valid_lease_is_granted_with_no_round() -> None:
    net = Net("abc", config=LEASES)
    leased(net)
    net.r["c"].step(ReadIndex(1))
    asks = net.out("c")
    assert [type(e.message) for e in asks] == [ReadIndexAsk]
    net.r["a"].step(Receive(asks[0], elapsed_ms=1))  # read after the ask arrived
    sent = net.out("a")
    assert probes(sent) == []
    assert [(type(e.message), e.dst) for e in sent] == [(ReadIndexGrant, "c")]
    net.deliver(sent)
    net.out("c")
    assert net.served == [("c", 1, 1)]


def test_a_stalled_leader_grants_no_ask_from_its_lease() -> None:
    """The ask is stepped 500 ms after the last tick: the lease ended, the ask takes a round."""
    net = Net("abc", config=LEASES)
    leased(net)
    net.r["c"].step(ReadIndex(1))
    asks = net.out("c")
    net.r["a"].step(Receive(asks[0], elapsed_ms=500))
    sent = net.out("a")
    assert sorted(e.dst for e in probes(sent)) == ["b", "c"]
    assert not any(isinstance(e.message, ReadIndexGrant) for e in sent)


def test_a_read_without_a_fresh_reading_takes_a_round() -> None:
    net = Net("abc", config=LEASES)
    leased(net)
    net.r["a"].step(ReadIndex(1))
    assert sorted(e.dst for e in probes(net.out("a"))) == ["b", "c"]
    assert net.served == []


def test_replies_from_voters_without_leases_give_no_lease() -> None:
    net = Net("abc", config=LEASES)
    for m in "bc":  # mixed: b and c run without leases
        net.r[m] = MultiPaxosReplica(m, net.members, random.Random(m), config=LogConfig())
    past_start_guard(net)
    net.r["a"].step(Campaign())
    net.settle()
    net.r["a"].step(Propose(b"x"))
    net.settle()
    for _ in range(6):
        clock_tick(net, "abc")
        net.settle()
    replies = [e for e in net.trace if isinstance(e.message, ReadProbeReply)]
    assert replies and all(e.message.guard_ms == 0 for e in replies)  # type: ignore[union-attr]
    assert net.r["a"].reads.lease_until is None
    net.r["a"].step(ReadIndex(1, elapsed_ms=0))
    assert sorted(e.dst for e in probes(net.out("a"))) == ["b", "c"]  # a round after all
    assert net.served == []


def test_the_lease_ends_at_send_time_plus_the_drift_adjusted_guard() -> None:
    net = Net("abc", config=LEASES)
    leased(net)
    a = net.r["a"]
    s, round_probes = next_round(net, "a")  # the next heartbeat: a round sent at reading s
    net.deliver(p for p in round_probes if p.dst == "b")
    net.deliver(net.out("b"))
    net.out("a")
    assert a.reads.lease_until == s + LEASE_MS
    # One ms before the end (by a fresh reading): served with no round.
    a.step(ReadIndex(1, elapsed_ms=s + LEASE_MS - 1 - a.reads.mono_ms))
    assert probes(net.out("a")) == []
    assert [rid for _, rid, _ in net.served] == [1]
    # At the end: a round.
    a.step(ReadIndex(2, elapsed_ms=s + LEASE_MS - a.reads.mono_ms))
    assert probes(net.out("a")) != []
    assert [rid for _, rid, _ in net.served] == [1]


def test_a_stalled_loop_cannot_stretch_a_lease() -> None:
    """The last tick's reading is stale after a stall: the read's fresh reading decides."""
    net = Net("abc", config=LEASES)
    leased(net)
    a = net.r["a"]
    # The loop stalls for 500 ms after its last tick; then a read arrives.
    a.step(ReadIndex(1, elapsed_ms=500))
    assert probes(net.out("a")) != []  # the lease ended long ago: a round
    assert net.served == []


def test_the_guard_drops_another_nodes_prepare_until_it_lapses() -> None:
    net = Net("abc", config=LEASES)
    leased(net)
    ballot_a = net.r["a"].ballot
    net.deliver(next_round(net, "a")[1])  # b and c hear a (after their last tick)
    net.out("b")
    net.out("c")
    # a is cut off; c's Prepare (a campaign with no pre-vote) reaches b.
    to_b = prepare_from(net, "c", "b")
    net.deliver(to_b)
    assert net.out("b") == []  # dropped: neither Promise nor Nack
    assert net.r["b"].acceptor.promised == ballot_a
    # b heard a after its last tick: the guard lasts 150 ms of b's clock from
    # the next tick's reading.
    for _ in range(15):
        clock_tick(net, "bc")
        net.out("b")
        net.out("c")
    net.deliver(to_b)
    assert net.out("b") == []  # 140 ms after that reading: still guarding
    clock_tick(net, "bc")  # 150 ms
    net.out("c")
    net.deliver(to_b)
    answers = [e.message for e in net.out("b") if isinstance(e.message, Promise | Nack)]
    prepare = to_b[0].message
    assert isinstance(prepare, Prepare)
    assert [(type(m), m.ballot) for m in answers] == [(Promise, prepare.ballot)]


def test_a_guarding_node_defers_its_own_campaign_until_its_guard_lapses() -> None:
    """It may have vouched for the lease: no ballot of its own, and its own promise first."""
    net = Net("abc", config=LEASES)
    leased(net)
    ballot_a = net.r["a"].ballot
    net.deliver(next_round(net, "a")[1])
    net.out("b")
    c = net.r["c"]
    net.out("c")
    c.step(Campaign())  # explicit: no pre-vote
    assert [e for e in net.out("c") if isinstance(e.message, Prepare)] == []
    assert c.acceptor.promised == ballot_a and c.election.role is Role.FOLLOWER
    for _ in range(15):  # up to 140 ms after the reading that followed a's probe
        clock_tick(net, "c")
        assert [e for e in net.out("c") if isinstance(e.message, Prepare)] == []
    clock_tick(net, "c")  # 150 ms: the guard lapsed, the campaign goes ahead
    sent = [e for e in net.out("c") if isinstance(e.message, Prepare)]
    assert sorted(e.dst for e in sent) == ["a", "b"]
    assert c.role is Role.CANDIDATE and c.acceptor.promised == c.ballot  # its own promise first


def test_a_deferred_campaign_is_dropped_once_another_leader_is_followed() -> None:
    """Asked against a, deferred by the guard; b leads meanwhile: c must not depose b later."""
    net = Net("abc", config=LEASES)
    leased(net)
    net.deliver(next_round(net, "a")[1])
    net.out("b")
    c = net.r["c"]
    net.out("c")
    c.step(Campaign())
    assert c.election.deferred
    ballot_b = Ballot(c.acceptor.promised.round + 1, "b")
    c.step(Receive(Envelope("c", Heartbeat(c.instance, "b", ballot_b, c.log.decided_through))))
    assert c.election.leader == "b" and not c.election.deferred
    for _ in range(20):  # past the guard a's probe started, and the one b's heartbeat did
        clock_tick(net, "c")
        assert [e for e in net.out("c") if isinstance(e.message, Prepare)] == []


def test_the_guard_lets_the_leader_it_follows_prepare_again() -> None:
    net = Net("abc", config=LEASES)
    leased(net)
    net.r["a"].step(Campaign())  # a runs phase 1 again, with a higher ballot
    to_b = [e for e in net.out("a") if e.dst == "b" and isinstance(e.message, Prepare)]
    net.deliver(to_b)
    assert [type(e.message) for e in net.out("b")] == [Promise]


def test_a_guard_starts_from_the_reading_after_the_probe_arrived() -> None:
    """A follower whose loop stalled starts its guard at the next tick, not the stale one."""
    net = Net("abc", config=LEASES)
    leased(net)
    b = net.r["b"]
    round_probes = [p for p in next_round(net, "a")[1] if p.dst == "b"]
    # b's loop stalled 300 ms since its last tick; the probe is stepped, then the tick.
    net.deliver(round_probes)
    net.out("b")
    clock_tick(net, "b", ms=300)
    heard_at = b._mono_ms  # the reading after the probe arrived
    to_b = prepare_from(net, "c", "b")
    clock_tick(net, "b", ms=149)
    net.deliver(to_b)
    assert net.out("b") == [], b._mono_ms - heard_at  # 149 ms after: still guarding
    clock_tick(net, "b", ms=1)
    net.deliver(to_b)
    assert [type(e.message) for e in net.out("b")] == [Promise]


def test_the_guard_is_on_after_a_restart() -> None:
    """A restarted node may have vouched for a lease before it crashed: it guards from start."""
    net = Net("abc", config=LEASES)
    leased(net)
    b = net.r["b"]
    net.r["b"] = fresh = MultiPaxosReplica("b", net.members, random.Random("b2"), config=LEASES)
    fresh.step(Restore(b.acceptor.promised, [], [], incarnation=2))
    to_b = prepare_from(net, "c", "b")
    net.deliver(to_b)
    assert net.out("b") == []  # before its first reading
    clock_tick(net, "b")
    for _ in range(14):
        clock_tick(net, "b")
        net.deliver(to_b)
        assert net.out("b") == []
    clock_tick(net, "b")  # 150 ms after the first reading
    net.deliver(to_b)
    assert [type(e.message) for e in net.out("b")] == [Promise]


def test_a_follower_of_a_newer_leader_vouches_for_no_older_one() -> None:
    """A probe of an older ballot than the one guarded is answered, with no guard."""
    net = Net("abc", config=LEASES)
    leased(net)
    ballot_a = net.r["a"].ballot
    old_probes = [p for p in next_round(net, "a")[1] if p.dst == "b"]  # held back
    assert old_probes
    # c takes over with a (b is cut off); b promised nothing above a's ballot.
    net.isolated = {"b"}
    net.r["c"].step(Campaign())  # it waits until a is silent for c's guard
    for _ in range(30):
        clock_tick(net, "c")  # a's loop is frozen: it sends nothing on its own
        net.settle()
    c = net.r["c"]
    assert c.role is Role.LEADER
    net.deliver(p for p in next_round(net, "c")[1] if p.dst == "b")  # b hears c: it follows c
    to_c = [e.message for e in net.out("b") if isinstance(e.message, ReadProbeReply)]
    assert [(m.ballot, m.guard_ms) for m in to_c] == [(c.ballot, 150)]
    assert net.r["b"].acceptor.promised == ballot_a  # a probe raises no promise
    net.deliver(old_probes)  # a's older probe: answered (no promise above it), unguarded
    to_a = [e.message for e in net.out("b") if isinstance(e.message, ReadProbeReply)]
    assert [(m.ballot, m.guard_ms) for m in to_a] == [(ballot_a, 0)]


def run_clocked(net: Net, ticks: int, until: Callable[[], bool]) -> None:
    """Settle, then a clock tick to every member and settle, until ``until()``."""
    net.settle()
    for _ in range(ticks):
        clock_tick(net, "".join(net.members))
        net.settle()
        if until():
            return
    raise AssertionError(f"not reached in {ticks} ticks")


def change_at(net: Net, node: str, op: str, nid: str, request: int) -> None:
    net.r[node].step(ProposeChange(op, nid, request, f"127.0.0.1:{request}"))
    run_clocked(net, 100, lambda: any(c.request == request for c in net.changes[node]))
    outcome = next(c for c in net.changes[node] if c.request == request)
    assert outcome.error is None, outcome


def test_a_lease_serves_no_read_once_a_configuration_its_voters_are_no_quorum_of_is_ahead() -> None:
    """A change decided after the lease's round: the rival's phase 1 may need only the new quorum.

    c never answers, so a leads with leases from {a, b}. d joins, catches up,
    falls silent and is promoted: {a, b, c, d} governs the slots from the
    change's plus alpha, and {a, b} is no quorum of it (a rival could be
    promised by c, d and one more without asking a guarding node about the
    new configuration's slots). The lease's time has not run out, yet a read
    must now take a round.
    """
    net = Net("abc", config=LEASES)
    net.isolated.add("c")
    leased(net)
    net.join("d")
    change_at(net, "a", "add", "d", 1000)
    a, d = net.r["a"], net.r["d"]
    run_clocked(net, 50, lambda: d.log.decided_through == a.log.decided_through)
    net.isolated.add("d")
    change_at(net, "a", "promote", "d", 1001)
    assert a.membership.newest.voters == {"a", "b", "c", "d"}
    until = a.reads.lease_until
    assert until is not None and until > a.reads.mono_ms  # the lease's time is not over
    net.out("a")
    a.step(ReadIndex(1, elapsed_ms=0))
    assert sorted(e.dst for e in probes(net.out("a"))) == ["b", "c", "d"]
    assert [rid for _, rid, _ in net.served] == []


def test_a_lease_counts_from_the_rounds_send_not_from_its_replies_arrival() -> None:
    """Replies that arrive late must not move the lease's start past the round's send."""
    net = Net("abc", config=LEASES)
    leased(net)
    a = net.r["a"]
    s, round_probes = next_round(net, "a")
    clock_tick(net, "a", ms=60)  # b's reply is stepped 60 ms of a's clock after the round left
    net.out("a")
    net.deliver(p for p in round_probes if p.dst == "b")
    net.deliver(net.out("b"))
    net.out("a")
    assert a.reads.lease_until == s + LEASE_MS
    a.step(ReadIndex(1, elapsed_ms=s + LEASE_MS - a.reads.mono_ms))
    assert probes(net.out("a")) != []  # the lease ended: a round
    assert net.served == []


def test_a_reply_to_an_older_round_gives_no_lease_from_a_newer_rounds_send() -> None:
    """b and c answered round 1, only d round 2: the quorum {a, b, c, d} dates from round 1."""
    net = Net("abcde", config=LEASES)
    leased(net)
    a = net.r["a"]
    s1, first = next_round(net, "a")
    net.deliver(p for p in first if p.dst in "bc")
    net.deliver(net.out("b") + net.out("c"))
    net.out("a")
    assert a.reads.lease_until == s1 + LEASE_MS
    s2, second = next_round(net, "a")
    assert s2 > s1
    net.deliver(p for p in second if p.dst == "d")
    net.deliver(net.out("d"))
    net.out("a")
    assert a.reads.lease_until == s1 + LEASE_MS  # {a, d} alone is no quorum of five
    a.step(ReadIndex(1, elapsed_ms=s1 + LEASE_MS - a.reads.mono_ms))
    assert probes(net.out("a")) != []
    assert net.served == []


def test_a_lease_takes_the_shortest_guard_its_quorum_needs() -> None:
    """A quorum of five needs both b (guarding 150 ms) and c (guarding 60 ms): 60 ms counts."""
    net = Net("abcde", config=LEASES)
    leased(net)
    a = net.r["a"]
    clock_tick(net, "a", ms=200)  # the lease of the earlier rounds ends
    net.out("a")
    s, round_probes = next_round(net, "a")
    assert a.reads.lease_until is not None and a.reads.lease_until < s
    net.deliver(p for p in round_probes if p.dst == "b")
    from_b = net.out("b")
    replies = [e.message for e in from_b if isinstance(e.message, ReadProbeReply)]
    assert len(replies) == 1 and replies[0].guard_ms == 150
    m = replies[0]
    # c guards for a shorter time (its own, shorter election timeout).
    from_c = Envelope("a", ReadProbeReply(m.instance, "c", m.ballot, m.round, 60))
    net.deliver([from_c, *from_b])
    net.out("a")
    assert a.reads.lease_until == s + lease_ms(60, 0.05)
    a.step(ReadIndex(1, elapsed_ms=s + lease_ms(60, 0.05) - a.reads.mono_ms))
    assert probes(net.out("a")) != []
    assert net.served == []
