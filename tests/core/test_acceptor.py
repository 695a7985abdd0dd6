"""The acceptor object keeps the invariants its module docstring states (core/acceptor.py)."""

from __future__ import annotations

import pytest

from paxostob.core.acceptor import Acceptor
from paxostob.core.events import AcceptedEntry
from paxostob.core.types import Ballot, Proposal, ProposalId

V1 = (Proposal(ProposalId("a", 1), b"v1"),)
V2 = (Proposal(ProposalId("b", 1), b"v2"),)


def test_it_promises_only_a_ballot_above_every_promise_and_never_lowers_it() -> None:
    acc = Acceptor()
    assert acc.promise(Ballot(2, "a"))
    assert acc.promised_dirty
    acc.promised_dirty = False
    assert not acc.promise(Ballot(2, "a")), "the same ballot was promised twice"
    assert not acc.promise(Ballot(1, "z"))
    assert acc.promised == Ballot(2, "a") and not acc.promised_dirty


def test_it_admits_a_proposal_at_or_above_its_promise_and_raises_the_promise() -> None:
    acc = Acceptor()
    acc.promise(Ballot(2, "a"))
    assert not acc.admit(Ballot(1, "b")), "a proposal below the promise was admitted"
    assert acc.admit(Ballot(2, "a"))
    assert acc.admit(Ballot(3, "b"))
    assert acc.promised == Ballot(3, "b")


def test_each_acceptance_is_handed_out_for_saving_once_per_ballot() -> None:
    acc = Acceptor()
    b2, b3 = Ballot(2, "a"), Ballot(3, "b")
    assert acc.admit(b2)
    acc.accept(1, b2, V1)
    acc.accept(1, b2, V1)  # a resent Accept
    assert acc.accepted_new == [AcceptedEntry(1, b2, V1)]
    assert acc.admit(b3)
    acc.accept(1, b3, V2)
    assert acc.accepted[1] == (b3, V2)
    assert acc.accepted_new == [AcceptedEntry(1, b2, V1), AcceptedEntry(1, b3, V2)]


def test_nothing_is_accepted_above_the_promise_without_admitting_it_first() -> None:
    acc = Acceptor()
    acc.promise(Ballot(2, "a"))
    with pytest.raises(AssertionError):
        acc.accept(1, Ballot(3, "b"), V1)
    assert acc.accepted == {}


def test_a_promise_reports_what_was_accepted_from_its_slot_on_except_decided_slots() -> None:
    acc = Acceptor()
    b = Ballot(1, "a")
    acc.admit(b)
    for slot in (1, 2, 3):
        acc.accept(slot, b, V1)
    reported = acc.report(2, decided={3})
    assert [(e.slot, e.ballot, e.value, e.decided) for e in reported] == [(2, b, V1, False)]
    acc.forget_through(2)
    assert sorted(acc.accepted) == [3]
