"""The core's side of the persistence pipeline: early vs late messages, the held own vote."""

from __future__ import annotations

import random

import pytest

from paxostob.core.events import (
    AcceptedEntry,
    Campaign,
    Persisted,
    Propose,
    Ready,
    Receive,
    coalesce,
)
from paxostob.core.messages import Accept, Accepted, Heartbeat, Prepare, Promise
from paxostob.core.multipaxos import MultiPaxosReplica, Role
from paxostob.core.types import Ballot, DecidedEntry, Snapshot

from .scenario import Net

MEMBERS = ("a", "b", "c")


def replicas() -> dict[str, MultiPaxosReplica]:
    return {m: MultiPaxosReplica(m, MEMBERS, random.Random(m)) for m in MEMBERS}


def drain(r: MultiPaxosReplica, *, persist: bool) -> list[Ready]:
    out = []
    while r.has_ready():
        rd = r.ready()
        r.advance(rd)
        if persist:
            r.step(Persisted(rd.seq))
        out.append(rd)
    return out


def test_votes_wait_for_durability_and_proposals_do_not() -> None:
    rs = replicas()
    a, b = rs["a"], rs["b"]
    a.step(Campaign())
    (rd,) = drain(a, persist=False)
    assert rd.promised is not None and rd.must_sync
    assert {type(e.message) for e in rd.messages} == {Prepare}, "Prepare waits for our promise"
    b.step(Receive(next(e for e in rd.messages if e.dst == "b")))
    (promise,) = drain(b, persist=True)
    assert [type(e.message) for e in promise.messages] == [Promise] and not promise.early
    a.step(Receive(promise.messages[0]))
    assert a.role is Role.LEADER
    first = drain(a, persist=True)
    assert any(isinstance(e.message, Heartbeat) for rd in first for e in rd.early)
    a.step(Propose(b"x"))
    (rd,) = drain(a, persist=False)
    # The proposal leaves before it is durable; our own acceptance is in this Ready.
    accepts = [e for e in rd.early if isinstance(e.message, Accept)]
    assert {e.dst for e in accepts} == {"b", "c"}
    assert [x.slot for x in rd.accepted] == [1] and rd.must_sync
    b.step(Receive(next(e for e in accepts if e.dst == "b")))
    (ack,) = drain(b, persist=True)
    assert [type(e.message) for e in ack.messages] == [Accepted] and not ack.early
    # b's vote alone is no quorum: a's own vote waits for a's save.
    a.step(Receive(ack.messages[0]))
    assert a.log.decided_through == 0 and not a.has_ready()
    a.step(Persisted(rd.seq - 1))
    assert a.log.decided_through == 0, "counted before the Ready carrying it was durable"
    a.step(Persisted(rd.seq))
    assert a.log.decided_through == 1
    (decided,) = drain(a, persist=True)
    assert [d.delivery.payload for d in decided.deliveries] == [b"x"]


def test_a_single_member_decides_only_once_its_acceptance_is_durable() -> None:
    r = MultiPaxosReplica("a", ("a",), random.Random(0))
    r.step(Campaign())
    r.step(Propose(b"x"))
    while r.has_ready():
        rd = r.ready()
        assert not rd.deliveries, "delivered before the acceptance was durable"
        r.advance(rd)
    assert r.log.decided_through == 0
    r.step(Persisted(rd.seq))
    assert r.log.decided_through == 1


def test_persisted_never_releases_a_vote_of_a_ready_not_handed_out() -> None:
    r = MultiPaxosReplica("a", ("a",), random.Random(0))
    r.step(Campaign())
    r.step(Propose(b"x"))
    r.step(Persisted(10))  # no Ready handed out yet
    assert r.log.decided_through == 0


def test_coalesce_is_the_saves_in_order() -> None:
    b1, b2 = Ballot(1, "a"), Ballot(2, "b")
    first = Ready(promised=b1, accepted=(AcceptedEntry(1, b1, ()),), seq=1, must_sync=True)
    second = Ready(decided=(DecidedEntry(1, ()),), seq=2)
    third = Ready(promised=b2, accepted=(AcceptedEntry(1, b2, ()),), seq=3, must_sync=True)
    merged = coalesce([first, second, third])
    assert merged.promised == b2 and merged.must_sync and merged.seq == 3
    assert [a.ballot for a in merged.accepted] == [b1, b2]
    assert merged.decided == second.decided
    assert coalesce([second]) is second
    snap = Snapshot(1, b"", b"")
    with pytest.raises(ValueError, match="snapshot"):
        coalesce([first, Ready(snapshot=snap, seq=2)])
    assert coalesce([Ready(snapshot=snap, seq=1), second]).snapshot is snap


def test_a_leader_that_runs_phase_1_again_proposes_its_stranded_proposals_later() -> None:
    """Found by the simulator with slow disks (seed 457, every save 2-6 ticks).

    A leader that re-runs phase 1 (a stalled catch-up, or ``Campaign``) kept
    its open slots and ``_queued`` ids; after losing the election and
    leading again, its proposals in those slots (decided otherwise by the
    other leader) were "already queued" and never proposed again.
    """
    net = Net("abc")
    a, c = net.r["a"], net.r["c"]
    a.step(Campaign())
    net.settle()
    assert a.role is Role.LEADER
    net.isolated = {"a"}
    a.step(Propose(b"x"))  # only a accepts it
    net.settle()
    a.step(Campaign())  # phase 1 again, unheard
    net.settle()
    assert a.status().role is Role.CANDIDATE
    c.step(Campaign())
    net.settle()
    c.step(Propose(b"y"))  # slot 1 is y, chosen by b and c
    net.settle()
    assert c.role is Role.LEADER and c.log.decided_through == 1
    net.isolated = set()
    a.step(Campaign())  # a leads again, above c
    net.settle()
    assert a.status().role is Role.LEADER
    net.run(100, until=lambda: b"x" in [row[2] for row in net.rows("a")])
