"""The acceptor of every slot: the safety kernel of Multi-Paxos.

Theory of operation ("Paxos Made Simple" §2.2-2.3, §3; rules.py has the
per-slot rules): one promise covers every slot (a ``Prepare`` asks for all
slots from one on), and each slot keeps the last proposal accepted in it.
What this object holds is what a peer may have been told, so it is the
replica's durable state: ``promised`` and ``accepted`` are saved (the
``Ready`` carries them) before any ``Promise`` or ``Accepted`` that reports
them leaves (multipaxos.py argues the message order).

Invariants (asserted where they could break):

- ``promised`` never decreases, and is raised only by a ``Prepare`` with a
  higher ballot (P1a) or an ``Accept`` at a higher one (phase 2b);
- every accepted proposal's ballot is at most ``promised``: a proposal is
  accepted only at or above the promise, which it raises to its ballot;
- a slot's accepted proposal is replaced only by one of another (higher)
  ballot, and each acceptance is handed out once for saving
  (``accepted_new``).

Everything else (whom to answer, leader changes, learning) is the replica's:
this object never sends anything.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from . import rules
from .events import AcceptedEntry
from .messages import PromiseEntry
from .types import ZERO_BALLOT, Ballot, Batch

__all__ = ["Acceptor"]


class Acceptor:
    """Promises and acceptances of every slot (the module docstring has the rules)."""

    __slots__ = ("accepted", "accepted_new", "promised", "promised_dirty")

    def __init__(self) -> None:
        self.promised: Ballot = ZERO_BALLOT
        #: slot -> (ballot, value) of the last proposal accepted there.
        self.accepted: dict[int, tuple[Ballot, Batch]] = {}
        #: Not yet handed out for saving: the promise changed; new acceptances.
        self.promised_dirty = False
        self.accepted_new: list[AcceptedEntry] = []

    def restore(self, promised: Ballot, accepted: Iterable[AcceptedEntry], *, above: int) -> None:
        """What was saved before a restart; acceptances through ``above`` are compacted."""
        self.promised = promised
        for a in accepted:
            if a.slot > above:
                self.accepted[a.slot] = (a.ballot, a.value)

    def promise(self, ballot: Ballot) -> bool:
        """Phase 1b (P1a): promise ``ballot`` if it is above every promise made."""
        if not rules.may_promise(self.promised, ballot):
            return False
        self._raise(ballot)
        return True

    def admit(self, ballot: Ballot) -> bool:
        """Phase 2b's test: may a proposal of ``ballot`` be accepted? (It raises the promise.)"""
        if not rules.may_accept(self.promised, ballot):
            return False
        if ballot > self.promised:
            self._raise(ballot)
        return True

    def accept(self, slot: int, ballot: Ballot, value: Batch) -> None:
        """Accept ``value`` in ``slot`` at ``ballot``, which ``admit`` let in."""
        assert ballot <= self.promised, (ballot, self.promised)  # never above the promise
        old = self.accepted.get(slot)
        if old is None or old[0] != ballot:
            self.accepted[slot] = (ballot, value)
            self.accepted_new.append(AcceptedEntry(slot, ballot, value))

    def report(self, low: int, decided: Container[int]) -> list[PromiseEntry]:
        """For a ``Promise``: what was accepted from ``low`` on, in slots not known ``decided``."""
        return [
            PromiseEntry(s, b, v, decided=False)
            for s, (b, v) in self.accepted.items()
            if s >= low and s not in decided
        ]

    def forget_through(self, slot: int) -> None:
        """Slots through ``slot`` are in a snapshot: their acceptances matter no more."""
        for s in [s for s in self.accepted if s <= slot]:
            del self.accepted[s]

    def _raise(self, ballot: Ballot) -> None:
        assert ballot > self.promised, (ballot, self.promised)
        self.promised = ballot
        self.promised_dirty = True
