"""A proposal whose id an earlier life of its node used fails; it never takes that life's delivery.

Proposal ids are ``(origin, incarnation << SEQ_BITS | counter)``. Replicas
skip an id they delivered before (a retry), so if a node's store is made
again and draws an incarnation an earlier store of that node id used, its
new proposals are skipped everywhere as retries of old ones. The core must
then fail them (``Dropped(conflict=True)``), not report the old delivery as
theirs: that made a write that is on no node look acknowledged.
"""

from __future__ import annotations

import random

import pytest

from paxostob.core.events import Propose, Receive, Restore
from paxostob.core.messages import Decided, Envelope
from paxostob.core.multipaxos import SEQ_BITS, MultiPaxosReplica
from paxostob.core.types import ZERO_BALLOT, DecidedEntry, Proposal, ProposalId
from paxostob.errors import ProposalIdsExhaustedError

MEMBERS = ("a", "b", "c")
INCARNATION = 5


def old_life_entry(slot: int, counter: int, payload: bytes) -> DecidedEntry:
    pid = ProposalId("a", INCARNATION << SEQ_BITS | counter)
    return DecidedEntry(slot, (Proposal(pid, payload),))


def replica() -> MultiPaxosReplica:
    return MultiPaxosReplica("a", MEMBERS, random.Random(1))


def test_a_proposal_whose_id_was_delivered_before_fails_at_once() -> None:
    r = replica()
    # This life's decided log already holds the earlier life's first proposal.
    r.step(Restore(ZERO_BALLOT, (), (old_life_entry(1, 1, b"old"),), incarnation=INCARNATION))
    r.advance(r.ready())
    r.step(Propose(b"new"))
    ready = r.ready()
    assert [d.id for d in ready.dropped] == [ProposalId("a", INCARNATION << SEQ_BITS | 1)]
    assert ready.dropped[0].conflict and "earlier life" in ready.dropped[0].reason
    assert not r.proposals.pending


def test_a_delivery_under_our_pending_id_with_another_payload_fails_ours() -> None:
    r = replica()
    r.step(Restore(ZERO_BALLOT, (), (), incarnation=INCARNATION))
    r.step(Propose(b"new"))
    r.advance(r.ready())
    (pid,) = r.proposals.pending
    # A peer reports the earlier life's proposal, under the same id, as chosen.
    decided = Decided("tob", "b", (old_life_entry(1, 1, b"old"),))
    r.step(Receive(Envelope("a", decided)))
    ready = r.ready()
    assert [d.id for d in ready.dropped] == [pid] and ready.dropped[0].conflict
    # The delivery itself is the old proposal's, as on every other replica.
    assert [(d.id, d.delivery.payload) for d in ready.deliveries] == [(pid, b"old")]
    assert not r.proposals.pending


def test_our_own_delivery_is_no_conflict() -> None:
    r = replica()
    r.step(Restore(ZERO_BALLOT, (), (), incarnation=INCARNATION))
    r.step(Propose(b"mine"))
    r.advance(r.ready())
    (pid,) = r.proposals.pending
    r.step(Receive(Envelope("a", Decided("tob", "b", (old_life_entry(1, 1, b"mine"),)))))
    ready = r.ready()
    assert ready.dropped == ()
    assert [(d.id, d.delivery.payload) for d in ready.deliveries] == [(pid, b"mine")]


def test_a_life_that_numbered_every_counter_stops_instead_of_using_the_next_lifes_ids() -> None:
    r = replica()
    r.step(Restore(ZERO_BALLOT, (), (), incarnation=INCARNATION))
    last = (1 << SEQ_BITS) - 1
    # As if this life had already made all but one of its proposals.
    r.proposals._seq = INCARNATION << SEQ_BITS | (last - 1)
    r.step(Propose(b"the last one"))
    assert r.proposals.last_id == ProposalId("a", INCARNATION << SEQ_BITS | last)
    with pytest.raises(ProposalIdsExhaustedError, match="restart the node"):
        r.step(Propose(b"one too many"))
    # No id of the next incarnation (the next life's own) was handed out.
    assert all(pid.seq >> SEQ_BITS == INCARNATION for pid in r.proposals.pending)
