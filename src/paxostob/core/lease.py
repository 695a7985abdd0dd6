"""Leader leases: a follower's guard, and the length of the lease a leader draws from it.

core/reads.py ('Leases') argues the rule; this module holds its two pieces:

- ``Guard``, the acceptor's side: after it heard the leader it follows, a
  node refuses every other node's ``Prepare`` for ``guard_ms`` of its own
  monotonic clock, counted from a reading taken at or after the message
  arrived (the next ``Tick``'s: the core's clock only moves on ticks, and a
  stalled loop hands messages over long after the last one).
- ``lease_ms``, the leader's side: how long after sending a probe round a
  quorum of guarding voters answered, by its own clock, no other node can
  have been promised a higher ballot by any of them.

All readings are ms of the monotonic clock the runtime reports in ``Tick``
(and ``ReadIndex``): one base for every reading of a replica.
"""

from __future__ import annotations

import math

from .types import Ballot

__all__ = ["READING_SLACK_MS", "Guard", "lease_ms"]

#: Readings are whole ms: the core's clock may trail the true one by up to
#: one ms per reading, and a lease compares two of the leader's readings
#: with one of the follower's. Two ms off every lease covers that.
READING_SLACK_MS = 2


def lease_ms(guard_ms: int, drift_max: float) -> int:
    """The lease a round confirmed by voters guarding ``guard_ms`` gives, in the leader's ms.

    The follower's guard lasts at least ``guard_ms / (1 + r)`` of real time
    from a reading at or after the probe arrived (its clock runs at most
    ``1 + r`` fast); a lease of ``L`` of the leader's ms from the probe's
    send lasts at most ``L / (1 - r)`` of real time. ``L = guard_ms *
    (1 - r) / (1 + r)`` ends first, rounded down, less the readings' slack.
    """
    return max(0, math.floor(guard_ms * (1 - drift_max) / (1 + drift_max)) - READING_SLACK_MS)


class Guard:
    """A node's promise to let no other node become leader for a while (module docstring).

    ``ballot`` is the leader's ballot it guards (None: everybody is refused,
    as after a start: a node may have vouched for a lease before a crash
    erased its memory of it). The guard holds while ``pending`` (heard since
    the last reading) or while ``now_ms < until``.
    """

    __slots__ = ("ballot", "guard_ms", "now_ms", "pending", "until")

    def __init__(self, guard_ms: int) -> None:
        self.guard_ms = guard_ms
        #: The latest monotonic reading (the last Tick's).
        self.now_ms = 0
        self.ballot: Ballot | None = None
        # On from the start: the first reading sets ``until``.
        self.pending = True
        self.until = 0

    def heard(self, ballot: Ballot) -> bool:
        """The owner of ``ballot`` spoke as leader: guard it; False when we guard a newer one.

        A leader of an older ballot than the one guarded gets no guard (its
        lease must not count on us: we follow someone else).
        """
        guarded = self.ballot
        if guarded is not None and ballot < guarded:
            return False
        self.ballot = ballot
        self.pending = True
        return True

    def tick(self, now_ms: int) -> None:
        """A new monotonic reading (taken after every message stepped before it)."""
        self.now_ms = now_ms
        if self.pending:
            self.pending = False
            self.until = max(self.until, now_ms + self.guard_ms)

    def refuses(self, candidate: str) -> bool:
        """Whether a ``Prepare`` of a higher ballot from ``candidate`` must go unanswered."""
        if not (self.pending or self.now_ms < self.until):
            return False
        guarded = self.ballot
        return guarded is None or candidate != guarded.node_id
