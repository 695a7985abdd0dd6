"""Scripted scenarios for pre-vote and check-quorum in the Multi-Paxos core.

Pre-vote (``LogConfig.pre_vote``, etcd-raft's PreVote) gates campaigning: a
node whose election timer fires asks ``PreVote`` first and raises its ballot
(sends ``Prepare``) only once a quorum said yes; a peer says no while it
hears a live leader, or when the asker's decided prefix is behind its own.
Check-quorum: a leader that has not heard a quorum for two election
timeouts steps down. The module docstring of ``core/multipaxos.py`` argues
why neither touches safety; these scenarios check what each promises for
liveness and stability, in the style of ``test_multipaxos_scenarios.py``
(virtual ticks, messages delivered as the script says, traces as lines).
"""

from __future__ import annotations

import dataclasses

import pytest

from paxostob.core.events import Campaign, Propose, Receive, Tick
from paxostob.core.messages import Envelope, Heartbeat, Prepare, PreVote, PreVoteReply
from paxostob.core.multipaxos import LogConfig, Role
from paxostob.core.types import ZERO_BALLOT, Ballot

from .scenario import Net, show

ON = LogConfig()
OFF = LogConfig(pre_vote=False)
T = ON.election_timeout_ticks


def elect(net: Net, node: str) -> None:
    net.r[node].step(Campaign())
    net.settle()
    assert net.leaders() == [node]


def tick_until_sends(net: Net, node: str) -> list[Envelope]:
    """Tick ``node`` alone until it sends something; what it sent."""
    for _ in range(10 * T):
        net.r[node].step(Tick())
        sent = net.out(node)
        if sent:
            return sent
    raise AssertionError(f"{node} sent nothing in {10 * T} ticks")


def prepares_by(net: Net, node: str) -> list[str]:
    return [
        show(e)
        for e in net.trace
        if isinstance(e.message, Prepare) and e.dst != node and e.message.sender == node
    ]


# ------------------------------------------------------ 1. the exchange


def test_a_timed_out_node_asks_first_and_raises_its_ballot_only_on_a_quorum_of_yes() -> None:
    """Nobody's promise moves while a node asks; one yes (plus its own) is a
    quorum of three, and only then does phase 1 start."""
    net = Net("abc", config=ON)
    a, b, c = net.r["a"], net.r["b"], net.r["c"]
    asks = tick_until_sends(net, "a")
    assert [show(e) for e in asks] == [
        "a->b PreVote 1.a decided_through=0",
        "a->c PreVote 1.a decided_through=0",
    ]
    assert (a.role, a.acceptor.promised, a.status().elections) == (Role.FOLLOWER, ZERO_BALLOT, 0)
    net.deliver(asks)
    replies = net.out("b") + net.out("c")
    assert [show(e) for e in replies] == [
        "b->a PreVoteReply 1.a yes promised=0",
        "c->a PreVoteReply 1.a yes promised=0",
    ]
    assert b.acceptor.promised == c.acceptor.promised == ZERO_BALLOT  # asking promised nothing
    net.deliver(replies[:1])
    prepares = net.out("a")
    assert [show(e) for e in prepares] == [
        "a->b Prepare 1.a from #1",
        "a->c Prepare 1.a from #1",
    ]
    assert (a.role, a.status().elections) == (Role.CANDIDATE, 1)
    net.deliver(prepares)
    net.settle()
    assert net.leaders() == ["a"]


def test_a_refused_node_picks_its_ballot_above_every_promise_it_was_told_of() -> None:
    """A reply carries the peer's promise: the next campaign starts above it,
    instead of learning it from a Nack one phase 1 later."""
    net = Net("abc", config=ON)
    net.r["b"].step(Campaign())
    net.r["b"].step(Campaign())  # b promised 2.b to itself; nobody else knows
    net.out("b")
    asks = tick_until_sends(net, "a")
    net.deliver(e for e in asks if e.dst == "b")
    (reply,) = net.out("b")
    assert show(reply) == "b->a PreVoteReply 1.a yes promised=2.b"
    net.deliver([reply])
    assert [show(e) for e in net.out("a")][:1] == ["a->b Prepare 3.a from #1"]


# ------------------------------------------- 2. who says yes, and why not

#: (what the responder b is, the asker's decided prefix, b's answer)
GRANTS = [
    ("leader", 3, "no"),  # it leads: the asker may not depose it
    ("follower, leader heard now", 3, "no"),  # stickiness
    ("follower, leader heard now", 9, "no"),  # even when the asker is ahead
    (f"follower, leader silent {T} ticks", 3, "yes"),  # the lease ran out
    (f"follower, leader silent {T} ticks", 2, "no"),  # the asker is behind b
    (f"follower, leader silent {T - 1} ticks", 3, "no"),  # one tick short
]


@pytest.mark.parametrize(("responder", "asker_decided", "answer"), GRANTS)
def test_who_grants_a_pre_vote(responder: str, asker_decided: int, answer: str) -> None:
    """b has decided slots 1-3 (as has its leader); c asks with a prefix of
    ``asker_decided``. A yes needs both: no live leader heard within the
    election timeout, and an asker whose decided prefix is not behind b's."""
    net = Net("abc", config=ON)
    b = net.r["b"]
    elect(net, "b" if responder == "leader" else "a")
    for p in (b"x1", b"x2", b"x3"):
        net.r["a"].step(Propose(p))
        net.settle()
    assert b.log.decided_through == 3
    if responder.startswith("follower, leader silent"):
        silent = int(responder.split()[-2])
        for _ in range(silent):  # b ticks alone: a's heartbeats stop reaching it
            b.step(Tick())
        assert b.role is Role.FOLLOWER and b.leader == "a"  # its own timer did not fire yet
    ask = PreVote("tob", "c", Ballot(9, "c"), asker_decided)
    b.step(Receive(Envelope("b", ask)))
    (reply,) = net.out("b")
    assert isinstance(reply.message, PreVoteReply)
    assert show(reply) == f"b->c PreVoteReply 9.c {answer} promised={b.acceptor.promised}"


# -------------------------- 3. a partitioned node rejoining a healthy leader


@pytest.mark.parametrize(
    ("config", "disrupted"), [(ON, False), (OFF, True)], ids=["pre-vote", "no pre-vote"]
)
def test_a_rejoining_partitioned_node_leaves_a_healthy_leader_alone(
    config: LogConfig, disrupted: bool
) -> None:
    """c is cut off for 20 election timeouts and keeps ticking: without
    pre-vote it raises its ballot at every timeout and, back, makes a and b
    promise that ballot, deposing a (a leader change for nothing). With
    pre-vote its ballot never moves, and back it follows a."""
    net = Net("abc", config=config, seed=3)
    a, c = net.r["a"], net.r["c"]
    elect(net, "a")
    ballot = a.ballot
    net.isolated = {"c"}
    for i in range(10):
        a.step(Propose(f"m{i}".encode()))
    net.run(20 * T)
    assert net.leaders() == ["a"]
    net.isolated = set()
    net.trace.clear()
    net.run(10 * T)
    net.r["b"].step(Propose(b"after"))
    net.run(200, until=lambda: all(r.log.delivered == 11 for r in net.r.values()))
    assert all(net.rows(n) == net.rows("a") for n in "bc")
    if disrupted:
        assert prepares_by(net, "c")  # c's stale campaign reached a and b
        assert (net.leaders(), a.ballot) != (["a"], ballot)
    else:
        assert prepares_by(net, "c") == []
        assert (net.leaders(), a.ballot) == (["a"], ballot)
        assert c.status().elections == 0 and c.status().pre_votes_lost > 10
        assert c.leader == "a"


def test_a_restarted_laggard_that_times_out_before_hearing_the_leader_cannot_depose_it() -> None:
    """c comes back empty (a restart far behind) and hears nothing from the
    leader before its timer fires (the leader's link to it is not back yet):
    its pre-vote reaches a and b, both refuse (a leads; b hears a; and c is
    behind both), so no ballot moves; c follows a as soon as a reaches it."""
    net = Net("abc", config=ON, seed=1)
    a = net.r["a"]
    elect(net, "a")
    for i in range(20):
        a.step(Propose(f"m{i}".encode()))
    net.settle()
    c = net.restart_empty("c")
    asks = tick_until_sends(net, "c")
    assert [show(e) for e in asks] == [
        "c->a PreVote 1.c decided_through=0",
        "c->b PreVote 1.c decided_through=0",
    ]
    net.deliver(asks)
    refusals = net.out("a") + net.out("b")
    assert [show(e) for e in refusals if isinstance(e.message, PreVoteReply)] == [
        "a->c PreVoteReply 1.c no promised=1.a",
        "b->c PreVoteReply 1.c no promised=1.a",
    ]
    net.deliver(e for e in refusals if isinstance(e.message, PreVoteReply))
    assert net.out("c") == [] and c.acceptor.promised == ZERO_BALLOT
    net.run(100, until=lambda: c.log.delivered == 20)
    assert net.leaders() == ["a"] and c.leader == "a"
    assert net.rows("c") == net.rows("a")


# ------------------------------------------------------------ 4. liveness


@pytest.mark.parametrize("seed", range(10))
def test_when_the_leader_is_gone_the_follower_that_is_not_behind_wins(seed: int) -> None:
    """Leader a crashes; b missed slots 1-3 (it was cut off), c has them. b
    cannot win a pre-vote (c refuses: b is behind), c can (b grants: c is
    ahead). c leads, b catches up, and nobody ever promised b's ballot."""
    net = Net("abc", config=ON, seed=seed)
    net.shuffle = True
    a, b, c = net.r["a"], net.r["b"], net.r["c"]
    elect(net, "a")
    net.isolated = {"b"}
    net.paused = {"b"}
    for p in (b"x1", b"x2", b"x3"):
        a.step(Propose(p))
        net.settle()
    assert (b.log.decided_through, c.log.decided_through) == (0, 3)
    net.isolated = {"a"}
    net.paused = {"a"}
    net.trace.clear()
    net.run(20 * T, until=lambda: net.leaders() == ["a", "c"] and b.leader == "c")
    assert prepares_by(net, "b") == []
    net.run(100, until=lambda: b.log.decided_through >= 3)
    assert net.rows("b") == net.rows("c")


@pytest.mark.parametrize("seed", range(12))
def test_a_node_refused_while_the_leader_lived_still_wins_once_it_is_gone(seed: int) -> None:
    """b's pre-vote is refused while c still hears a; then a crashes. Within
    a few timeouts a new leader is followed by both survivors, and a
    proposal made meanwhile is delivered."""
    net = Net("abc", config=ON, seed=seed)
    net.shuffle = True
    b, c = net.r["b"], net.r["c"]
    elect(net, "a")
    net.isolated = {"b"}  # b alone times out and asks; its asks are lost
    net.run(3 * T)
    ask = Envelope("c", PreVote("tob", "b", Ballot(2, "b"), b.log.decided_through))
    net.deliver([ask])
    (no,) = net.out("c")
    assert show(no) == "c->b PreVoteReply 2.b no promised=1.a"
    net.isolated = {"a"}
    net.paused = {"a"}
    b.step(Propose(b"late"))
    net.run(
        10 * T,
        until=lambda: (
            {b.leader, c.leader} <= {"b", "c"} and b.leader == c.leader and b.leader is not None
        ),
    )
    net.run(200, until=lambda: b.log.delivered == c.log.delivered == 1)
    assert net.rows("b") == net.rows("c") == [(1, "b", b"late")]


def test_a_single_member_needs_no_pre_vote() -> None:
    net = Net("a", config=ON)
    net.r["a"].step(Propose(b"hi"))
    net.run(10, until=lambda: net.r["a"].log.delivered == 1)
    assert not [e for e in net.trace if isinstance(e.message, PreVote)]


# --------------------------------------------------------- 5. check-quorum


@pytest.mark.parametrize("cut", [{"b", "c"}, {"a"}], ids=["followers gone", "leader cut off"])
def test_a_leader_that_hears_no_quorum_steps_down_within_two_check_windows(cut: set[str]) -> None:
    """Check-quorum: every ``2 * election_timeout_ticks`` the leader counts who
    answered in that window; short of a quorum it steps down (it could not
    commit anything, and pre-votes may then be granted)."""
    net = Net("abc", config=ON)
    a = net.r["a"]
    elect(net, "a")
    net.run(T)
    net.isolated = cut
    net.paused = {"b", "c"} & cut  # gone followers do not campaign either
    ticks = net.run(4 * T + 1, until=lambda: a.role is not Role.LEADER)
    assert ticks > 2 * T // 2  # not at the first silent tick
    assert (a.role, a.leader) == (Role.FOLLOWER, None)


def test_a_leader_that_hears_one_follower_of_two_keeps_leading() -> None:
    net = Net("abc", config=ON)
    a = net.r["a"]
    elect(net, "a")
    net.isolated = {"c"}
    net.paused = {"c"}
    ballot = a.ballot
    net.run(20 * T)
    assert (net.leaders(), a.ballot) == (["a"], ballot)


def test_followers_slow_to_persist_still_keep_their_leader() -> None:
    """Followers whose saves take longer than the check-quorum window (a
    large batch on a slow disk) cannot send their votes (``Accepted`` waits
    for the save), but they still answer heartbeats: a ``HeartbeatReply``
    vouches for no durable state, so it leaves at once and the leader does
    not step down for a slow disk (it did while the reply waited)."""
    net = Net("abc", config=ON)
    a = net.r["a"]
    elect(net, "a")
    ballot = a.ballot
    for i in range(8 * T):
        a.step(Propose(f"big{i}".encode()))
        for n in "abc":
            net.r[n].step(Tick())
        for _ in range(3):
            net.deliver(net.out("a"))
            for n in "bc":
                r = net.r[n]
                while r.has_ready():  # the saves never return: no late messages
                    rd = r.ready()
                    net.deliver(rd.early)
                    r.advance(rd)
        assert (a.role, a.ballot) == (Role.LEADER, ballot), f"stepped down at tick {i}"
    assert a.log.decided_through == 0  # nothing could be chosen: the votes wait for the disk


def test_pre_vote_is_a_config_switch() -> None:
    assert LogConfig().pre_vote is True
    assert dataclasses.replace(LogConfig(), pre_vote=False).pre_vote is False
    net = Net("abc", config=OFF)
    sent = tick_until_sends(net, "a")
    assert [show(e) for e in sent] == ["a->b Prepare 1.a from #1", "a->c Prepare 1.a from #1"]
    assert not [e for e in sent if isinstance(e.message, Heartbeat)]
