"""The rules of one Paxos slot, shared by single-decree consensus and Multi-Paxos.

Theory of operation ("Paxos Made Simple" §2.2-2.3):

- Acceptor, phase 1b (P1a): an acceptor promises ballot *b* only if *b* is
  higher than every ballot it promised before; then it never accepts a lower
  ballot again.
- Acceptor, phase 2b: it accepts a proposal of ballot *b* unless it promised a
  ballot higher than *b* (so *b* equal to the promise is accepted).
- Proposer, phase 2a (P2c): with promises for *b* from a quorum, the proposer
  must propose the value of the highest-ballot proposal accepted by any member
  of that quorum, or its own value if none accepted anything.
- Quorums are majorities of *distinct* acceptors. The Go original counted
  messages, so a duplicated promise counted twice (docs/design.md, 'Five
  defects of the Go original', 3);
  ``Tally`` counts senders.
- Learner: a value is chosen when a quorum of distinct acceptors accepted it
  in the same ballot.
- Dueling proposers: a proposer that sees a higher ballot retries with a
  larger round after a randomized backoff, so that one of them eventually
  finishes both phases undisturbed (FLP says some randomness is needed).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import TypeVar

from .types import Ballot

__all__ = [
    "Tally",
    "backoff_ticks",
    "highest_accepted",
    "is_quorum",
    "may_accept",
    "may_promise",
    "quorum_size",
]

V = TypeVar("V")


def quorum_size(members: int) -> int:
    """The smallest majority: any two quorums of this size intersect."""
    assert members >= 1
    return members // 2 + 1


def is_quorum(voters: Iterable[str], members: Sequence[str]) -> bool:
    """Whether the distinct ``voters`` among ``members`` make a quorum of them.

    The one question every count of votes asks; sets of senders that are
    not members count for nothing.
    """
    member_set = set(members)
    return len(member_set.intersection(voters)) >= quorum_size(len(member_set))


def may_promise(promised: Ballot, ballot: Ballot) -> bool:
    """P1a: promise only a ballot strictly higher than any promised before."""
    return ballot > promised


def may_accept(promised: Ballot, ballot: Ballot) -> bool:
    """Phase 2b: accept at or above the promised ballot, never below it."""
    return ballot >= promised


def highest_accepted(reports: Iterable[tuple[Ballot, V] | None]) -> tuple[Ballot, V] | None:
    """P2c: among a quorum's accepted proposals, the one with the highest ballot.

    ``None`` reports (acceptors that accepted nothing) are skipped. The Go
    original took the wrong value here (docs/design.md, 'Five defects of the
    Go original', 4).
    """
    best: tuple[Ballot, V] | None = None
    for report in reports:
        if report is not None and (best is None or report[0] > best[0]):
            best = report
    return best


class Tally:
    """Distinct senders that agreed to one thing (a ballot, or a slot in a ballot)."""

    __slots__ = ("_needed", "senders")

    def __init__(self, needed: int) -> None:
        assert needed >= 1
        self._needed = needed
        self.senders: set[str] = set()

    def add(self, sender: str) -> bool:
        """Count ``sender`` once; True when the quorum is reached (and after)."""
        self.senders.add(sender)
        return len(self.senders) >= self._needed

    @property
    def reached(self) -> bool:
        return len(self.senders) >= self._needed


def backoff_ticks(rng: random.Random, attempt: int, base_ticks: int, cap_ticks: int) -> int:
    """Randomized exponential backoff before retrying with a higher round.

    Drawn uniformly in ``[base, base * 2**attempt]`` (capped) so that two
    proposers that collided are unlikely to collide again.
    """
    hi = min(cap_ticks, base_ticks * (2 ** min(attempt, 16)))
    return rng.randint(base_ticks, max(base_ticks, hi))
