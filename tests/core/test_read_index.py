"""Scripted scenarios for ReadIndex reads in the Multi-Paxos core (core/reads.py).

A read stepped as ``ReadIndex(id)`` leaves in ``Ready.reads`` once the
node's applied state holds every value chosen before the read was asked:
the leader confirms its leadership with one round of ``ReadProbe`` answered
by a quorum, and a follower asks the leader for its index. Each scenario
records what the read saw (the number of deliveries applied when it was
served) and compares it with what was acknowledged before it.
"""

from __future__ import annotations

from paxostob.core.events import Campaign, Propose, ReadIndex, Receive, Restore
from paxostob.core.messages import (
    Accepted,
    Envelope,
    Heartbeat,
    ReadIndexAsk,
    ReadIndexGrant,
    ReadProbe,
    ReadProbeReply,
)
from paxostob.core.multipaxos import LogConfig
from paxostob.core.types import ZERO_BALLOT

from .scenario import Net


def elect(net: Net, node: str) -> None:
    net.r[node].step(Campaign())
    net.settle()
    assert net.leaders() == [node] or net.isolated == set(net.leaders()) - {node}


def write(net: Net, node: str, payload: bytes) -> None:
    net.r[node].step(Propose(payload))
    net.settle()


def test_leader_serves_a_read_once_a_quorum_answered_its_probe() -> None:
    net = Net("abc")
    elect(net, "a")
    write(net, "a", b"x")
    net.r["a"].step(ReadIndex(1))
    sent = net.out("a")
    probes = [e for e in sent if isinstance(e.message, ReadProbe)]
    assert sorted(e.dst for e in probes) == ["b", "c"]
    assert net.served == []  # no answer yet: not served
    net.deliver([probes[0]])  # only b hears it
    replies = net.out(probes[0].dst)
    assert [type(e.message) for e in replies] == [ReadProbeReply]
    net.deliver(replies)
    net.out("a")
    assert net.served == [("a", 1, 1)]  # a and b: a quorum; x applied


def test_a_follower_read_waits_for_the_leaders_index_to_be_applied() -> None:
    net = Net("abc")
    elect(net, "a")
    write(net, "a", b"x")
    # c misses the next write's commit: it accepted slot 2 but does not know it is decided.
    net.r["a"].step(Propose(b"y"))
    for _ in range(3):
        sent = [e for m in "abc" for e in net.out(m)]
        net.deliver(e for e in sent if not (e.dst == "c" and isinstance(e.message, Heartbeat)))
    assert len(net.rows("a")) == 2 and len(net.rows("c")) == 1
    net.r["c"].step(ReadIndex(7))
    asks = net.out("c")
    assert [type(e.message) for e in asks] == [ReadIndexAsk]
    net.deliver(asks)
    probes = [e for e in net.out("a") if isinstance(e.message, ReadProbe)]
    net.deliver(p for p in probes if p.dst == "b")
    net.deliver(net.out("b"))
    grants = [e for e in net.out("a") if isinstance(e.message, ReadIndexGrant)]
    assert [(e.dst, e.message.index) for e in grants] == [("c", 2)]  # type: ignore[union-attr]
    net.deliver(grants)
    net.out("c")
    assert net.served == []  # c has applied slot 1 only
    net.deliver(p for p in probes if p.dst == "c")  # it carries the commit: c learns slot 2
    net.out("c")
    assert net.served == [("c", 7, 2)]


def test_a_grant_for_an_ask_of_an_earlier_life_serves_no_read_of_this_life() -> None:
    """A grant in flight across a follower's restart must not answer the new life's ask.

    The grant comes from a round that began before the new read was asked, so
    its index may miss writes acknowledged in between: serving on it would be
    a stale read. Asks are numbered above every earlier life's (the incarnation).
    """
    net = Net("abc")
    elect(net, "a")
    write(net, "a", b"x")
    net.r["c"].step(ReadIndex(7))
    net.deliver(net.out("c"))  # the ask reaches a
    probes = [e for e in net.out("a") if isinstance(e.message, ReadProbe)]
    net.deliver(p for p in probes if p.dst == "b")
    net.deliver(net.out("b"))
    old_grants = [e for e in net.out("a") if isinstance(e.message, ReadIndexGrant)]
    assert [e.dst for e in old_grants] == ["c"]
    # c restarts (its next life) before the grant arrives, with slot 1 on its disk.
    decided = net.r["c"].log.chunk(1, 10, 1 << 20)
    assert [e.slot for e in decided] == [1]
    net.restart_empty("c").step(Restore(ZERO_BALLOT, [], decided, incarnation=1))
    net.run(10)  # a's heartbeats: c knows the leader again
    assert net.r["c"].leader == "a"
    net.r["c"].step(ReadIndex(8))
    new_asks = net.out("c")
    assert [type(e.message) for e in new_asks] == [ReadIndexAsk]
    net.deliver(old_grants)
    net.out("c")
    assert [s for s in net.served if s[0] == "c"] == []


def test_a_deposed_leader_never_serves_a_stale_read() -> None:
    """The old leader, cut off, still believes it leads; the others moved on."""
    net = Net("abc")
    elect(net, "a")
    write(net, "a", b"x")
    net.isolated = {"a"}
    elect(net, "b")
    write(net, "b", b"y")  # acknowledged to its caller: applied at b
    assert len(net.rows("b")) == 2
    net.r["a"].step(ReadIndex(1))
    net.run(5)  # a's probes reach nobody
    assert net.served == []
    # Healed. a probes again; b and c promised b's ballot: they refuse a's.
    net.isolated = set()
    probes: list[Envelope] = []
    for _ in range(20):
        net.tick(["a"])
        probes = [e for e in net.out("a") if isinstance(e.message, ReadProbe)]
        if probes:
            break
    net.deliver(probes)
    net.deliver(e for m in "bc" for e in net.out(m))
    net.out("a")
    assert net.served == []
    # a learned it was deposed: it asks b, the leader, for the index.
    net.run(40, until=lambda: bool(net.served))
    assert net.served == [("a", 1, 2)]  # it saw y


def test_a_new_leaders_index_covers_a_value_chosen_before_it_led() -> None:
    """x was chosen (a and b accepted it) and acknowledged by a, but no one else
    learned it decided; b then leads and must not read before x is decided there."""
    net = Net("abc")
    elect(net, "a")
    net.r["a"].step(Propose(b"x"))
    accepts = net.out("a")
    net.deliver(e for e in accepts if e.dst == "b")
    votes = net.out("b")
    assert [type(e.message) for e in votes] == [Accepted]
    net.deliver(votes)
    net.out("a")
    assert len(net.rows("a")) == 1  # a decided and applied x; b and c did not learn it
    net.isolated = {"a"}
    net.r["b"].step(Campaign())
    prepares = net.out("b")
    net.deliver(e for e in prepares if e.dst == "c")
    net.deliver(net.out("c"))  # c's promise: b leads, re-proposes x in slot 1
    net.r["b"].step(ReadIndex(5))
    held: list[Envelope] = []
    for _ in range(3):  # every message of b reaches c, but c's votes are held
        net.deliver(e for e in net.out("b") if e.dst == "c")
        for e in net.out("c"):
            (held if isinstance(e.message, Accepted) else []).append(e)
            if not isinstance(e.message, Accepted):
                net.deliver([e])
    assert net.served == []  # probes answered, but slot 1 is not decided at b yet
    net.deliver(held)
    net.out("b")
    assert net.served == [("b", 5, 1)]


def test_a_read_that_finds_no_leader_fails_after_its_timeout() -> None:
    config = LogConfig(read_timeout_ticks=20, pre_vote=False)
    net = Net("abc", config=config)
    elect(net, "a")
    net.isolated = {"b"}
    net.r["b"].step(ReadIndex(3))
    for _ in range(25):
        net.tick(["b"])
        net.out("b")
        if net.read_failed:
            break
    assert net.served == [] and net.read_failed == [("b", 3)]


def test_one_member_serves_at_once_and_many_reads_share_one_round() -> None:
    net = Net("a")
    net.run(5, until=lambda: net.leaders() == ["a"])
    net.r["a"].step(ReadIndex(1))
    net.out("a")
    assert net.served == [("a", 1, 0)]
    three = Net("abc")
    elect(three, "a")
    for rid in range(10):
        three.r["a"].step(ReadIndex(rid))
    probes = [e for e in three.out("a") if isinstance(e.message, ReadProbe)]
    assert len(probes) == 2  # one round for ten reads
    three.deliver(probes)
    three.settle()
    assert sorted(rid for _, rid, _ in three.served) == list(range(10))


def test_a_reply_to_an_earlier_round_confirms_no_later_read() -> None:
    net = Net("abc")
    elect(net, "a")
    net.r["a"].step(ReadIndex(1))
    first = [e for e in net.out("a") if isinstance(e.message, ReadProbe)]
    net.deliver(e for e in first if e.dst == "b")
    old_reply = net.out("b")
    net.r["a"].step(ReadIndex(2))
    net.out("a")  # round 2 starts
    net.deliver(old_reply)
    net.out("a")
    assert [rid for _, rid, _ in net.served] == [1]  # round 1 only
    net.r["a"].step(Receive(old_reply[0]))  # a duplicate counts no more
    net.out("a")
    assert [rid for _, rid, _ in net.served] == [1]
