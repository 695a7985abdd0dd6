"""Scripted scenarios for the Multi-Paxos core (docs/design.md, 'Testing').

Each scenario drives ``MultiPaxosReplica`` by hand (``tests/core/scenario.py``:
no asyncio, virtual ticks, messages delivered as the script says) and states
its expectation as a readable list: deliveries as (position, sender, payload)
and short message traces (``show``: ``a->b Accept 1.a #2 ['x'] commit=1``).
Each test names the rule of "Paxos Made Simple" (PMS) it checks.

Ballots print as ``round.node``; ``#n`` is a slot of the log.
"""

from __future__ import annotations

import random

import pytest

from paxostob.core.events import Campaign, Tick
from paxostob.core.messages import (
    Accept,
    CatchUp,
    Decided,
    Envelope,
    Forward,
    Heartbeat,
    Nack,
)
from paxostob.core.multipaxos import LogConfig, Role
from paxostob.core.types import NOOP, Ballot, DecidedEntry

from .scenario import Net, Row, payloads, show

#: One proposal per slot, so that slots and messages line up in the traces.
ONE_PER_SLOT = LogConfig(batch_count_max=1)


def elect(net: Net, node: str) -> None:
    """``node`` campaigns on a perfect network; every replica it reaches follows it."""
    net.r[node].step(Campaign())
    net.settle()
    assert net.leaders() == [node]
    reached = [r for n, r in net.r.items() if n not in net.isolated]
    assert {r.status().leader for r in reached} == {node}


def accepts(net: Net, ballot: Ballot) -> list[tuple[int, list[str]]]:
    """The distinct (slot, value) pairs proposed in ``ballot``, in the order sent."""
    seen: list[tuple[int, list[str]]] = []
    for env in net.trace:
        m = env.message
        if isinstance(m, Accept) and m.ballot == ballot:
            pair = (m.slot, payloads(m.value))
            if pair not in seen:
                seen.append(pair)
    return seen


def kinds(envelopes: list[Envelope], *types: type) -> list[str]:
    return [show(e) for e in envelopes if isinstance(e.message, types)]


# ------------------------------------------------------------ 1. election


def test_leader_election_then_forwarded_proposals_are_delivered_in_one_order() -> None:
    """PMS §3: one distinguished proposer runs phase 1 once for all slots (a
    quorum of promises, P1a), then only phase 2; followers send it their
    commands and every replica executes the same sequence."""
    net = Net("abc")
    a = net.r["a"]
    a.step(Campaign())
    prepares = net.out("a")
    assert [show(e) for e in prepares] == [
        "a->b Prepare 1.a from #1",
        "a->c Prepare 1.a from #1",
    ]
    net.deliver(prepares)
    promises = net.out("b") + net.out("c")
    assert [show(e) for e in promises] == [
        "b->a Promise 1.a decided_through=0 []",
        "c->a Promise 1.a decided_through=0 []",
    ]
    # a's own promise plus b's is a quorum (2 of 3): a leads after the first one.
    net.deliver(promises[:1])
    assert a.role is Role.LEADER and a.ballot == Ballot(1, "a")
    net.deliver(promises[1:])  # a late promise changes nothing
    heartbeats = net.out("a")
    assert [show(e) for e in heartbeats] == [
        "a->b Heartbeat 1.a commit=0",
        "a->c Heartbeat 1.a commit=0",
    ]
    net.deliver(heartbeats)
    net.settle()
    assert {n: (r.status().role, r.status().leader) for n, r in net.r.items()} == {
        "a": (Role.LEADER, "a"),
        "b": (Role.FOLLOWER, "a"),
        "c": (Role.FOLLOWER, "a"),
    }

    # Followers forward to the leader; the leader batches what arrived together.
    net.trace.clear()
    net.r["b"].propose(b"b1")
    net.r["c"].propose(b"c1")
    a.propose(b"a1")
    net.settle()
    assert kinds(net.trace, Forward) == ["b->a Forward ['b1']", "c->a Forward ['c1']"]
    assert accepts(net, Ballot(1, "a")) == [(1, ["a1"]), (2, ["b1", "c1"])]
    expected: list[Row] = [(1, "a", b"a1"), (2, "b", b"b1"), (3, "c", b"c1")]
    assert {n: net.rows(n) for n in "abc"} == {"a": expected, "b": expected, "c": expected}


# ------------------------------------------------- 2. isolated old leader


def test_isolated_leader_is_nacked_on_heal_steps_down_and_catches_up() -> None:
    """PMS §2.2 P1a: an acceptor that promised b2 refuses anything of b1 < b2
    (and tells it so with a Nack, the optimisation PMS §2.2 suggests). The old
    leader then learns the chosen slots (§2.3) and its own command, which lost
    its slot, is proposed again (§3; docs/design.md, 'Five defects of the Go
    original', 5)."""
    net = Net("abc")
    a, b, c = net.r["a"], net.r["b"], net.r["c"]
    elect(net, "a")
    a.propose(b"a1")
    net.settle()
    b1 = a.ballot

    # a is cut off and frozen (a long pause): it still believes it leads 1.a.
    net.isolated = {"a"}
    net.paused = {"a"}
    a.propose(b"m_a")  # a opens slot 2 at 1.a; nobody hears about it
    net.settle()
    assert a.role is Role.LEADER
    assert (a.accepted[2][0], payloads(a.accepted[2][1])) == (b1, ["m_a"])

    # b and c time out (randomized election timeout) and elect one of them.
    net.run(100, until=lambda: bool(set(net.leaders()) & {"b", "c"}))
    (new,) = set(net.leaders()) - {"a"}
    b2 = net.r[new].ballot
    assert b2 > b1
    b.propose(b"b1")
    c.propose(b"c1")
    net.settle()
    assert net.rows("b") == net.rows("c") == [(1, "a", b"a1"), (2, "b", b"b1"), (3, "c", b"c1")]

    # Heal. a's first message is still of ballot 1.a; both acceptors refuse it.
    net.isolated = set()
    net.paused = set()
    net.trace.clear()
    old: list[Envelope] = []
    while not old:
        a.step(Tick())
        old = net.out("a")
    assert all(isinstance(e.message, Accept | Heartbeat) for e in old)
    assert {e.message.ballot for e in old if isinstance(e.message, Accept | Heartbeat)} == {b1}
    net.deliver(old)
    nacks = net.out("b") + net.out("c")
    assert [show(e) for e in nacks] == [
        f"b->a Nack 1.a < promised {b2}",
        f"c->a Nack 1.a < promised {b2}",
    ]
    net.deliver(nacks[:1])
    assert (a.role, a.leader) == (Role.FOLLOWER, None)  # stepped down

    # It learns the new leader from its heartbeat, catches up, re-forwards m_a.
    net.trace.clear()
    net.run(200, until=lambda: all(r.delivered == 4 for r in net.r.values()))
    assert a.leader == new
    assert kinds(net.trace, Forward) == ["a->" + new + " Forward ['m_a']"]
    expected: list[Row] = [(1, "a", b"a1"), (2, "b", b"b1"), (3, "c", b"c1"), (4, "a", b"m_a")]
    assert {n: net.rows(n) for n in "abc"} == {"a": expected, "b": expected, "c": expected}
    net.run(100)  # and nothing is delivered twice later
    assert all(net.rows(n) == expected for n in "abc")


# ------------------------------------------------------ 3. dueling candidates


def test_dueling_candidates_both_win_phase_1_then_one_gives_way() -> None:
    """PMS §2.4: two proposers with crossing ballots can each finish phase 1
    (a with {a, c} at 1.a, b with {b, c} at 1.b, since c promises the higher
    one after the lower). Only the higher ballot can get anything accepted
    (P1a); the lower leader steps down on the first sign of it."""
    net = Net("abc")
    a, b = net.r["a"], net.r["b"]
    a.step(Campaign())
    b.step(Campaign())
    from_a, from_b = net.out("a"), net.out("b")
    assert [show(e) for e in from_a + from_b] == [
        "a->b Prepare 1.a from #1",
        "a->c Prepare 1.a from #1",
        "b->a Prepare 1.b from #1",
        "b->c Prepare 1.b from #1",
    ]
    # c hears a first, then b: it promises both (1.b > 1.a), and each
    # candidate completes a quorum with its own promise.
    net.deliver(e for e in from_a if e.dst == "c")
    net.deliver(net.out("c"))
    net.deliver(e for e in from_b if e.dst == "c")
    net.deliver(net.out("c"))
    assert (a.role, a.ballot, b.role, b.ballot) == (
        Role.LEADER,
        Ballot(1, "a"),
        Role.LEADER,
        Ballot(1, "b"),
    )
    # Both think they lead and both take a proposal.
    net.deliver(e for e in from_a if e.dst == "b")  # b already promised 1.b
    a.propose(b"x")
    b.propose(b"y")
    net.trace.clear()
    net.shuffle = True  # from here on the network reorders
    net.run(300, until=lambda: all(r.delivered == 2 for r in net.r.values()))
    assert kinds(net.trace, Nack)[:1] == ["b->a Nack 1.a < promised 1.b"]
    assert net.leaders() == ["b"]
    assert {r.status().leader for r in net.r.values()} == {"b"}
    # a's x lost slot 1 to y at the higher ballot and was proposed again.
    expected: list[Row] = [(1, "b", b"y"), (2, "a", b"x")]
    assert {n: net.rows(n) for n in "abc"} == {"a": expected, "b": expected, "c": expected}


@pytest.mark.parametrize("seed", range(12))
def test_dueling_candidates_under_loss_settle_on_one_leader(seed: int) -> None:
    """PMS §2.4: progress needs one distinguished proposer, and electing it
    needs randomness or real time. Two of five replicas campaign at the same
    tick while the network loses 30% and reorders; randomized election
    timeouts make exactly one leader remain, followed by all, and the log is
    one total order."""
    net = Net("abcde", seed=seed)
    net.shuffle = True
    net.loss = 0.3
    net.r["a"].step(Campaign())
    net.r["b"].step(Campaign())
    for n in "abcde":
        net.r[n].propose(n.encode())
    net.run(60)
    net.loss = 0.0

    def one_leader_followed_by_all() -> bool:
        leaders = net.leaders()
        return len(leaders) == 1 and all(r.leader == leaders[0] for r in net.r.values())

    net.run(600, until=one_leader_followed_by_all)
    (leader,) = net.leaders()
    net.run(100, until=lambda: all(r.delivered == 5 for r in net.r.values()))
    net.run(50)  # and it stays that way
    assert net.leaders() == [leader]
    assert {r.status().leader for r in net.r.values()} == {leader}
    first = net.rows("a")
    assert sorted(sender for _, sender, _ in first) == list("abcde")
    assert all(net.rows(n) == first for n in "abcde")


# ------------------------------------------------- 4. a follower 1,000 slots behind


def test_lagging_follower_catches_up_1000_slots_in_bounded_chunks() -> None:
    """PMS §2.3/§3: a learner that missed the decisions asks for them; the
    answers are decided values only (no new proposals), fetched in chunks of
    at most ``catchup_entries_max`` slots, and delivered in slot order."""
    config = LogConfig(batch_count_max=1, catchup_entries_max=100)
    net = Net("abc", config=config)
    a, b, c = net.r["a"], net.r["b"], net.r["c"]
    elect(net, "a")
    net.isolated = {"c"}
    net.paused = {"c"}  # frozen: it does not campaign meanwhile
    for i in range(1, 1001):
        (a if i % 2 else b).propose(f"m{i}".encode())
    net.settle()
    assert a.decided_through == b.decided_through == 1000
    assert c.decided_through == 0 and not c.accepted

    net.isolated = set()
    net.paused = set()
    net.trace.clear()
    net.run(50, until=lambda: c.decided_through == 1000)
    chunks = [e.message for e in net.trace if isinstance(e.message, Decided)]
    asks = [e.message for e in net.trace if isinstance(e.message, CatchUp)]
    assert [m.slot for m in asks] == list(range(1, 1001, 100))
    assert [len(m.entries) for m in chunks] == [100] * 10
    assert all(len(m.entries) <= config.catchup_entries_max for m in chunks)
    assert [e.slot for m in chunks for e in m.entries] == list(range(1, 1001))
    leader_rows = net.rows("a")
    assert len(leader_rows) == 1000 and leader_rows[-1] == (1000, "b", b"m1000")
    assert net.rows("c") == net.rows("b") == leader_rows


# ------------------------------------- 5. duplicated and reordered Accept stream


@pytest.mark.parametrize("seed", range(8))
def test_shuffled_duplicated_accepts_deliver_in_order_exactly_once(seed: int) -> None:
    """PMS §2 assumes messages may be lost, duplicated and reordered. A
    follower learns slot s from the commit watermark only if it accepted s in
    that ballot (§2.3: a chosen value), and it delivers gap-free in slot order
    (§3: a server executes command s only after commands 1..s-1)."""
    net = Net("abc", config=ONE_PER_SLOT)
    a, c = net.r["a"], net.r["c"]
    elect(net, "a")
    net.isolated = {"c"}
    for i in range(1, 21):
        a.propose(f"m{i}".encode())
        net.settle()  # one slot at a time: Accept(#i) carries commit=i-1
    leader_rows = net.rows("a")
    assert len(leader_rows) == 20
    to_c = [e for e in net.trace if e.dst == "c"]
    stream = [e for e in to_c if isinstance(e.message, Accept)]
    assert [show(e) for e in stream[:2]] == [
        "a->c Accept 1.a #1 ['m1'] commit=0",
        "a->c Accept 1.a #2 ['m2'] commit=1",
    ]
    rng = random.Random(seed)
    stream += rng.choices(stream, k=len(stream))
    rng.shuffle(stream)
    for env in stream:
        net.deliver([env])
        net.out("c")  # asserts positions consecutive and no proposal twice
        assert net.rows("c") == leader_rows[: len(net.rows("c"))]
    assert c.accepted.keys() | c.log.keys() == set(range(1, 21))
    # The leader's last heartbeat carries commit=20: the rest is learned.
    last = [e for e in to_c if isinstance(e.message, Heartbeat)][-1]
    assert show(last) == "a->c Heartbeat 1.a commit=20"
    net.deliver([last])
    net.out("c")
    assert net.rows("c") == leader_rows


@pytest.mark.parametrize("seed", range(10))
def test_two_leaders_accept_streams_interleaved_never_deliver_a_loser(seed: int) -> None:
    """PMS §2.2 P1a and §2.3: c receives, reordered and duplicated, the Accepts
    and heartbeats of a (1.a: slots 1-10 chosen, 11-12 open and then lost) and
    of b (2.b: slots 11-20). Whatever it learns, at every step it has delivered
    a prefix of the chosen sequence: never a's lost values, never a gap."""
    net = Net("abcde", config=ONE_PER_SLOT, seed=seed)
    a, b, c = net.r["a"], net.r["b"], net.r["c"]
    net.isolated = {"c"}
    elect(net, "a")
    for i in range(1, 11):
        a.propose(f"a{i}".encode())
        net.settle()
    a.propose(b"lost1")
    a.propose(b"lost2")
    net.out("a")  # slots 11 and 12 at 1.a: only a accepts them; then a crashes
    net.isolated = {"a", "c"}
    net.paused = {"a"}
    b.step(Campaign())
    net.settle()
    for i in range(1, 11):
        b.propose(f"b{i}".encode())
        net.settle()
    chosen = net.rows("b")
    assert [p for _, _, p in chosen] == [f"a{i}".encode() for i in range(1, 11)] + [
        f"b{i}".encode() for i in range(1, 11)
    ]
    assert accepts(net, b.ballot)[:2] == [(11, ["b1"]), (12, ["b2"])]

    stream = [e for e in net.trace if e.dst == "c" and isinstance(e.message, Accept | Heartbeat)]
    rng = random.Random(seed)
    # Every message once plus every other one again, each moved up to ~20
    # places: a's stream mostly comes first (if b's came first, c would
    # promise 2.b at once and refuse all of a's, which is a weaker test).
    order = list(range(len(stream))) + rng.choices(range(len(stream)), k=len(stream) // 2)
    order.sort(key=lambda i: i + rng.uniform(0, 20))
    for i in order:
        net.deliver([stream[i]])
        net.out("c")
        got = net.rows("c")
        assert got == chosen[: len(got)]
    assert net.rows("c")  # it did learn something from the streams alone

    net.isolated = {"a"}  # c rejoins and catches up the rest
    net.run(100, until=lambda: c.delivered == 20)
    assert net.rows("c") == chosen


# ---------------------------------------------------- 6. gaps filled with no-ops


def test_new_leader_adopts_accepted_slots_and_fills_the_gap_with_a_noop() -> None:
    """PMS §3: a new leader runs phase 1 for every slot above its prefix; for
    each slot some promise reports it proposes that value (P2c), and a gap
    (a slot nobody reported) gets a no-op, which takes no delivery position."""
    net = Net("abc", config=ONE_PER_SLOT)
    a, b, c = net.r["a"], net.r["b"], net.r["c"]
    elect(net, "a")
    for p in (b"x1", b"x2", b"x3"):
        a.propose(p)
    sent = net.out("a")
    to_b = [e for e in sent if e.dst == "b"]
    assert [show(e) for e in to_b] == [
        "a->b Accept 1.a #1 ['x1'] commit=0",
        "a->b Accept 1.a #2 ['x2'] commit=0",
        "a->b Accept 1.a #3 ['x3'] commit=0",
    ]
    # Only the Accepts of slots 2 and 3 reach b (none reaches c); then a crashes.
    net.deliver(to_b[1:])
    net.out("b")
    net.isolated = {"a"}
    net.paused = {"a"}

    net.trace.clear()
    c.step(Campaign())
    net.settle()
    assert [show(e) for e in net.trace if e.dst != "a"][:5] == [
        "c->b Prepare 2.c from #1",
        "b->c Promise 2.c decided_through=0 [(2, '1.a', ['x2'], False), (3, '1.a', ['x3'], False)]",
        "c->b Accept 2.c #1 [] commit=0",
        "c->b Accept 2.c #2 ['x2'] commit=0",
        "c->b Accept 2.c #3 ['x3'] commit=0",
    ]
    assert b.log == c.log == {1: NOOP, 2: a.accepted[2][1], 3: a.accepted[3][1]}
    # x1 was never chosen and its origin crashed: it is simply gone.
    expected: list[Row] = [(1, "a", b"x2"), (2, "a", b"x3")]
    assert net.rows("b") == net.rows("c") == expected


def test_new_leader_takes_the_highest_ballot_value_among_conflicting_reports() -> None:
    """PMS §2.2 P2c: of the values a quorum reports for a slot, the new leader
    must propose the one accepted in the highest ballot. Here slot 1 holds w
    at 1.b (at b) and x at 2.a (at c); x is even chosen (a and c accepted it),
    so proposing w would choose a second value (the Go original took the
    wrong one: docs/design.md, 'Five defects of the Go original', 4). b's w
    then gets a slot of its own."""
    net = Net("abc", config=ONE_PER_SLOT)
    a, b, c = net.r["a"], net.r["b"], net.r["c"]
    elect(net, "b")
    b.propose(b"w")
    net.out("b")  # slot 1 = w at 1.b: every Accept is lost, only b accepted it

    # b is cut off. a leads 2.a with c and gets x chosen in slot 1 by {a, c};
    # then a crashes before its commit leaves.
    net.isolated = {"b"}
    net.paused = {"b"}
    a.step(Campaign())
    net.settle()
    assert net.leaders() == ["a", "b"] and a.ballot == Ballot(2, "a")
    a.propose(b"x")
    net.deliver(e for e in net.out("a") if e.dst == "c")  # the Accept of slot 1
    net.deliver(e for e in net.out("c") if e.dst == "a")  # c's Accepted
    net.out("a")
    assert payloads(a.log[1]) == ["x"]  # chosen
    net.isolated = {"a"}
    net.paused = {"a"}

    # c campaigns; b (back, still leading 1.b in its mind) promises.
    net.trace.clear()
    c.step(Campaign())
    net.settle()
    assert [show(e) for e in net.trace if e.dst != "a"][:3] == [
        "c->b Prepare 3.c from #1",
        "b->c Promise 3.c decided_through=0 [(1, '1.b', ['w'], False)]",
        "c->b Accept 3.c #1 ['x'] commit=0",
    ]
    net.run(100, until=lambda: b.delivered == c.delivered == 2)
    expected: list[Row] = [(1, "a", b"x"), (2, "b", b"w")]
    assert net.rows("b") == net.rows("c") == expected
    assert accepts(net, Ballot(3, "c")) == [(1, ["x"]), (2, ["w"])]


# ------------------------------------ 7. Go defect 5: re-propose your own


def test_a_proposer_whose_value_lost_the_slot_reproposes_its_own_value() -> None:
    """Go defect 5 (docs/design.md, 'Five defects of the Go original'; PMS §3:
    a command that lost its instance is proposed again in a later one). a
    opens slot 1 with m_a, accepted only by a; b leads a higher ballot whose
    quorum {b, c} knows nothing of it, so m_b is chosen in slot 1. m_a must
    still be delivered, once, and m_b must not be delivered twice (the Go
    original re-proposed the winner)."""
    net = Net("abc", config=ONE_PER_SLOT)
    a, b = net.r["a"], net.r["b"]
    elect(net, "a")
    a.propose(b"m_a")
    net.out("a")  # lost: only a accepted slot 1
    assert payloads(a.accepted[1][1]) == ["m_a"]

    net.isolated = {"a"}
    net.paused = {"a"}
    b.step(Campaign())
    net.settle()
    b.propose(b"m_b")
    net.settle()
    assert net.rows("b") == net.rows("c") == [(1, "b", b"m_b")]

    net.isolated = set()
    net.paused = set()
    net.trace.clear()
    net.run(200, until=lambda: all(r.delivered == 2 for r in net.r.values()))
    assert a.role is Role.FOLLOWER and a.leader == "b"
    assert payloads(a.log[1]) == ["m_b"]  # a learned that it lost slot 1
    assert kinds(net.trace, Forward) == ["a->b Forward ['m_a']"]  # its own value
    assert accepts(net, Ballot(2, "b")) == [(2, ["m_a"])]
    net.run(100)
    expected: list[Row] = [(1, "b", b"m_b"), (2, "a", b"m_a")]
    assert {n: net.rows(n) for n in "abc"} == {"a": expected, "b": expected, "c": expected}


# ------------------------------------------ 8. a later decision waits for earlier ones


def _three_decided_slots_c_missed() -> Net:
    net = Net("abc", config=ONE_PER_SLOT)
    elect(net, "a")
    net.isolated = {"c"}
    for p in (b"x1", b"x2", b"x3"):
        net.r["a"].propose(p)
        net.settle()
    assert net.r["a"].decided_through == 3 and net.r["c"].decided_through == 0
    net.isolated = set()
    return net


def test_a_decided_slot_arriving_early_waits_for_the_slots_before_it() -> None:
    """PMS §3: a server that learned command 3 but not 1 and 2 cannot execute
    it until they are learned. (The Go original's test: decisions out of
    order are delivered in order.)"""
    net = _three_decided_slots_c_missed()
    a, c = net.r["a"], net.r["c"]

    def decided(slot: int) -> Envelope:
        return Envelope("c", Decided("tob", "a", (DecidedEntry(slot, a.log[slot]),)))

    net.deliver([decided(3)])
    net.out("c")
    assert (c.decided_through, sorted(c.log), net.rows("c")) == (0, [3], [])
    net.deliver([decided(2)])
    net.out("c")
    assert (c.decided_through, sorted(c.log), net.rows("c")) == (0, [2, 3], [])
    net.deliver([decided(1)])
    net.out("c")
    assert c.decided_through == 3
    assert net.rows("c") == net.rows("a") == [(1, "a", b"x1"), (2, "a", b"x2"), (3, "a", b"x3")]


def test_a_commit_for_a_later_slot_waits_and_the_gap_is_fetched() -> None:
    """PMS §2.3/§3: c accepted slot 3 only; the leader's commit=3 makes it
    chosen at c, but c delivers nothing until it asked for (CatchUp) and
    learned slots 1 and 2."""
    net = _three_decided_slots_c_missed()
    c = net.r["c"]
    to_c = [e for e in net.trace if e.dst == "c"]
    (accept3,) = [e for e in to_c if isinstance(e.message, Accept) and e.message.slot == 3]
    last = [e for e in to_c if isinstance(e.message, Heartbeat)][-1]
    assert show(last) == "a->c Heartbeat 1.a commit=3"
    net.deliver([accept3, last])
    reply = net.out("c")
    assert (c.decided_through, sorted(c.log), net.rows("c")) == (0, [3], [])
    assert kinds(reply, CatchUp) == ["c->a CatchUp from #1"]
    net.deliver(e for e in reply if isinstance(e.message, CatchUp))
    chunk = net.out("a")
    assert [show(e) for e in chunk] == ["a->c Decided #1..#3"]
    net.deliver(chunk)
    net.out("c")
    assert net.rows("c") == net.rows("a") == [(1, "a", b"x1"), (2, "a", b"x2"), (3, "a", b"x3")]


# ---------------------------------------------- 9. a retried proposal, once


def test_a_duplicated_and_reforwarded_proposal_is_delivered_once() -> None:
    """docs/design.md, 'Proposal ids and deduplication': a proposal carries
    ProposalId(origin, seq); a retry (a duplicated Forward, a re-forward after
    a leader change) may occupy a second slot, but every replica delivers it
    once (PMS §3 leaves duplicate commands to the state machine; here TOB
    removes them)."""
    net = Net("abc")
    a, b, c = net.r["a"], net.r["b"], net.r["c"]
    elect(net, "a")
    c.propose(b"y")
    (fwd,) = net.out("c")
    assert show(fwd) == "c->a Forward ['y']"
    net.deliver([fwd, fwd])  # the network duplicated it
    sent = net.out("a")
    assert kinds(sent, Accept) == [
        "a->b Accept 1.a #1 ['y'] commit=0",
        "a->c Accept 1.a #1 ['y'] commit=0",
    ]
    # Only b accepts; a learns y chosen and delivers it, then crashes before
    # its commit leaves. c never heard of slot 1.
    net.deliver(e for e in sent if e.dst == "b")
    net.deliver(net.out("b"))
    net.out("a")
    assert net.rows("a") == [(1, "c", b"y")]
    net.isolated = {"a"}
    net.paused = {"a"}

    # b takes over and adopts y for slot 1 (P2c); c re-forwards y to b before
    # slot 1 is decided there, so b proposes it again in slot 2.
    b.step(Campaign())
    net.deliver(e for e in net.out("b") if e.dst == "c")
    net.deliver(net.out("c"))
    assert b.role is Role.LEADER
    held = net.out("b")
    net.deliver(e for e in held if e.dst == "c" and isinstance(e.message, Heartbeat))
    net.out("c")
    c.step(Tick())
    (again,) = net.out("c")
    assert show(again) == "c->b Forward ['y']"
    net.deliver([again])
    net.post(held)
    net.settle()
    assert accepts(net, Ballot(2, "b")) == [(1, ["y"]), (2, ["y"])]
    assert b.log[1] == b.log[2] == c.log[1] == c.log[2]

    # a comes back and catches up; y is delivered once everywhere.
    net.isolated = set()
    net.paused = set()
    net.run(100, until=lambda: a.decided_through == 2)
    net.run(50)
    expected: list[Row] = [(1, "c", b"y")]
    assert {n: net.rows(n) for n in "abc"} == {"a": expected, "b": expected, "c": expected}
    assert c.status().pending == 0


# ------------------------------------------ 10. the Go original's TOB tests


def test_a_node_alone_delivers_its_own_message() -> None:
    """PMS §2: with one acceptor, a quorum is that acceptor."""
    net = Net("a")
    net.r["a"].propose(b"hello")
    net.run(10, until=lambda: net.r["a"].delivered == 1)
    assert net.rows("a") == [(1, "a", b"hello")]
    assert net.r["a"].status().leader == "a"


def test_two_nodes_both_broadcast_and_deliver_both_in_the_same_order() -> None:
    """PMS §3: both servers execute the same sequence of commands (a quorum
    of two is both of them)."""
    net = Net("ab")
    net.r["a"].propose(b"from a")
    net.r["b"].propose(b"from b")
    net.run(200, until=lambda: all(r.delivered == 2 for r in net.r.values()))
    net.run(20)
    assert net.rows("a") == net.rows("b")
    assert sorted(p for _, _, p in net.rows("a")) == [b"from a", b"from b"]
    assert [pos for pos, _, _ in net.rows("a")] == [1, 2]
