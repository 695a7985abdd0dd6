"""Acceptor, proposer and learner rules, driven step by step on the sans-IO core.

Each test names the rule of "Paxos Made Simple" it checks. No asyncio: we hand
messages to replicas and read their ``Ready``.
"""

from __future__ import annotations

import random

from paxostob.core import rules
from paxostob.core.events import Propose, Ready, Receive, Tick
from paxostob.core.messages import (
    Accept,
    Accepted,
    Envelope,
    Message,
    Nack,
    Prepare,
    Promise,
    PromiseEntry,
)
from paxostob.core.synod import SynodReplica
from paxostob.core.types import ZERO_BALLOT, Ballot, Batch, Proposal, ProposalId

MEMBERS = ("a", "b", "c")
INST = "x"


def value(origin: str, payload: bytes) -> Batch:
    return (Proposal(ProposalId(origin, 1), payload),)


def node(node_id: str, seed: int = 0) -> SynodReplica:
    return SynodReplica(node_id, MEMBERS, INST, random.Random(seed))


def drain(r: SynodReplica) -> Ready:
    rd = r.ready()
    r.advance(rd)
    return rd


def deliver(r: SynodReplica, msg: Message) -> Ready:
    r.step(Receive(Envelope(r.node_id, msg)))
    return drain(r)


def sent(rd: Ready, kind: type) -> list[Envelope]:
    return [e for e in rd.messages if isinstance(e.message, kind)]


# ------------------------------------------------------------------ acceptor


def test_p1a_acceptor_promises_only_a_strictly_higher_ballot() -> None:
    b = node("b")
    rd = deliver(b, Prepare(INST, "a", Ballot(2, "a"), 0))
    (promise,) = [e.message for e in sent(rd, Promise)]
    assert isinstance(promise, Promise) and promise.ballot == Ballot(2, "a")
    assert rd.promised == Ballot(2, "a") and rd.must_sync
    # Equal and lower ballots are refused with the promise that beats them.
    for ballot in (Ballot(2, "a"), Ballot(1, "c"), Ballot(2, "")):
        rd = deliver(b, Prepare(INST, "c", ballot, 0))
        nacks = [e.message for e in sent(rd, Nack)]
        assert len(nacks) == 1 and isinstance(nacks[0], Nack)
        assert nacks[0].promised == Ballot(2, "a")
        assert not sent(rd, Promise) and rd.promised is None


def test_acceptor_accepts_at_or_above_the_promise_never_below() -> None:
    b = node("b")
    deliver(b, Prepare(INST, "a", Ballot(2, "a"), 0))
    rd = deliver(b, Accept(INST, "c", Ballot(1, "c"), 0, value("c", b"low"), -1))
    assert sent(rd, Nack) and not sent(rd, Accepted) and b.accepted is None
    rd = deliver(b, Accept(INST, "a", Ballot(2, "a"), 0, value("a", b"eq"), -1))
    assert b.accepted == (Ballot(2, "a"), value("a", b"eq"))
    assert rd.must_sync and rd.accepted
    # Accepted goes to every learner.
    assert sorted(e.dst for e in sent(rd, Accepted)) == list(MEMBERS)
    rd = deliver(b, Accept(INST, "c", Ballot(3, "c"), 0, value("c", b"hi"), -1))
    assert b.accepted == (Ballot(3, "c"), value("c", b"hi"))
    assert b.promised == Ballot(3, "c")


def test_promise_reports_the_accepted_proposal() -> None:
    b = node("b")
    deliver(b, Accept(INST, "a", Ballot(1, "a"), 0, value("a", b"v"), -1))
    rd = deliver(b, Prepare(INST, "c", Ballot(2, "c"), 0))
    (promise,) = [e.message for e in sent(rd, Promise)]
    assert isinstance(promise, Promise)
    assert promise.entries == (PromiseEntry(0, Ballot(1, "a"), value("a", b"v"), False),)


# ------------------------------------------------------------------ proposer


def start(a: SynodReplica, payload: bytes) -> Ballot:
    a.step(Propose(payload))
    rd = drain(a)
    prepares = [e.message for e in sent(rd, Prepare)]
    assert sorted(e.dst for e in sent(rd, Prepare)) == list(MEMBERS)
    assert isinstance(prepares[0], Prepare)
    return prepares[0].ballot


def test_p2c_proposer_adopts_the_highest_ballot_value_of_the_quorum() -> None:
    a = node("a")
    ballot = start(a, b"mine")
    low = PromiseEntry(0, Ballot(1, "b"), value("b", b"old"), False)
    high = PromiseEntry(0, Ballot(1, "c"), value("c", b"newer"), False)
    deliver(a, Promise(INST, "c", ballot, -1, (high,)))
    rd = deliver(a, Promise(INST, "b", ballot, -1, (low,)))
    accepts = [e.message for e in sent(rd, Accept)]
    assert accepts and all(isinstance(m, Accept) for m in accepts)
    assert {m.value for m in accepts if isinstance(m, Accept)} == {value("c", b"newer")}


def test_proposer_uses_its_own_value_when_the_quorum_accepted_nothing() -> None:
    a = node("a")
    ballot = start(a, b"mine")
    deliver(a, Promise(INST, "b", ballot, -1, ()))
    rd = deliver(a, Promise(INST, "c", ballot, -1, ()))
    accepts = [e.message for e in sent(rd, Accept)]
    assert {m.value for m in accepts if isinstance(m, Accept)} == {value("a", b"mine")}


def test_quorum_counts_distinct_senders_not_messages() -> None:
    a = node("a")
    ballot = start(a, b"mine")
    p = Promise(INST, "b", ballot, -1, ())
    for _ in range(5):  # one acceptor, many copies: still no quorum of 2
        rd = deliver(a, p)
        assert not sent(rd, Accept)
    rd = deliver(a, Promise(INST, "c", ballot, -1, ()))
    assert sent(rd, Accept)


def test_learner_needs_a_quorum_of_distinct_acceptors_in_one_ballot() -> None:
    c = node("c")
    v = value("a", b"v")
    rd = deliver(c, Accepted(INST, "a", Ballot(1, "a"), 0, v))
    for _ in range(3):
        rd = deliver(c, Accepted(INST, "a", Ballot(1, "a"), 0, v))
    # Two acceptors but in different ballots: not chosen either.
    rd = deliver(c, Accepted(INST, "b", Ballot(2, "b"), 0, v))
    assert c.decision is None and not rd.deliveries
    rd = deliver(c, Accepted(INST, "b", Ballot(1, "a"), 0, v))
    assert c.decision == v
    assert [d.delivery.payload for d in rd.deliveries] == [b"v"]


def test_nack_makes_the_proposer_retry_with_a_larger_round_after_backoff() -> None:
    a = node("a")
    ballot = start(a, b"mine")
    rd = deliver(a, Nack(INST, "b", ballot, Ballot(7, "c")))
    assert not rd.messages  # backing off, not retrying at once
    for _ in range(200):
        a.step(Tick())
        rd = drain(a)
        prepares = [e.message for e in sent(rd, Prepare)]
        if prepares:
            assert isinstance(prepares[0], Prepare)
            assert prepares[0].ballot == Ballot(8, "a")
            return
    raise AssertionError("the proposer never retried")


def test_backoff_is_randomized_and_bounded() -> None:
    rng = random.Random(4)
    draws = {rules.backoff_ticks(rng, 3, 2, 64) for _ in range(200)}
    assert len(draws) > 5 and min(draws) >= 2 and max(draws) <= 16


def test_messages_of_another_instance_are_ignored() -> None:
    b = node("b")
    rd = deliver(b, Prepare("other", "a", Ballot(2, "a"), 0))
    assert not rd.messages and b.promised == ZERO_BALLOT
    rd = deliver(b, Prepare(INST, "stranger", Ballot(2, "stranger"), 0))
    assert not rd.messages and b.promised == ZERO_BALLOT


def test_ballots_of_different_proposers_never_collide() -> None:
    """Defect 2 of the Go original: ``id += node_id`` let two proposers own one ballot."""
    seen: dict[Ballot, str] = {}
    for nid in MEMBERS:
        r = node(nid)
        r.step(Propose(nid.encode()))
        for attempt in range(30):
            rd = drain(r)
            for e in sent(rd, Prepare):
                assert isinstance(e.message, Prepare)
                owner = seen.setdefault(e.message.ballot, nid)
                assert owner == nid, f"{e.message.ballot} owned by {owner} and {nid}"
            r.step(Receive(Envelope(nid, Nack(INST, "b", r._ballot, Ballot(attempt, "c")))))
            for _ in range(70):
                r.step(Tick())
    assert len(seen) > 30
