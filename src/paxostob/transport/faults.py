"""What an unreliable network does to one message: a pure, seeded fault model.

Theory of operation: Paxos must stay safe when the network loses, duplicates,
delays and reorders messages, and when it splits into partitions. A
``FaultModel`` describes such a network; ``arrival_delays`` decides, for one
message and one ``random.Random``, after which delays its copies arrive:

- ``[]``: the message is lost (by chance, or because a partition separates the
  two nodes);
- ``[d]``: one copy arrives after ``d``;
- ``[d1, d2]``: the message is duplicated; each copy has its own delay.

Reordering needs no rule of its own: two messages with independent delays
drawn from ``delay_s`` arrive in either order.

Partitions are a set of disjoint groups of node ids. Two nodes in different
groups cannot talk to each other. A node named in no group is reachable by and
can reach every node (so ``partition({"a"})`` cuts nothing: name both sides).
A node can always talk to itself.

This module does no IO and reads no clock, so the in-memory asyncio network
and the virtual-time simulator share it. Delays are plain floats: seconds for
``MemoryNetwork``, ticks for the simulator; the unit is the caller's.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from ..errors import ConfigurationError

__all__ = ["FaultModel"]


def _check_probability(name: str, p: float) -> None:
    if not (isinstance(p, int | float) and 0.0 <= p <= 1.0):
        raise ConfigurationError(f"{name} must be a probability in [0, 1], got {p!r}")


def _check_delay(delay_s: tuple[float, float]) -> None:
    if not (isinstance(delay_s, tuple) and len(delay_s) == 2):
        raise ConfigurationError(f"delay_s must be a pair (lo, hi), got {delay_s!r}")
    lo, hi = delay_s
    if not all(isinstance(d, int | float) and math.isfinite(d) for d in delay_s):
        raise ConfigurationError(f"delay_s bounds must be finite numbers, got {delay_s!r}")
    if not 0 <= lo <= hi:
        raise ConfigurationError(f"delay_s must satisfy 0 <= lo <= hi, got {delay_s!r}")


def _normalize_groups(groups: Iterable[Iterable[str]]) -> tuple[frozenset[str], ...]:
    normalized: list[frozenset[str]] = []
    seen: set[str] = set()
    for group in groups:
        # A bare string is an iterable of characters: almost surely a caller's slip.
        if isinstance(group, str):
            raise ConfigurationError(f"a partition group is a set of node ids, got {group!r}")
        members = frozenset(group)
        if not all(isinstance(m, str) for m in members):
            raise ConfigurationError(f"node ids in a partition must be str, got {set(members)!r}")
        if overlap := members & seen:
            raise ConfigurationError(f"partition groups must be disjoint, {sorted(overlap)} repeat")
        seen |= members
        if members:
            normalized.append(members)
    return tuple(normalized)


@dataclass(frozen=True, slots=True)
class FaultModel:
    """Faults applied independently to every message.

    ``loss``: probability that a message is lost. ``duplicate``: probability
    that a message that was not lost arrives twice. ``delay_s``: each copy's
    delay is drawn uniformly from ``[lo, hi]``. ``partitions``: disjoint groups
    of node ids (see the module docstring); any iterable of iterables is
    accepted and stored as a tuple of frozensets.

    Invalid values raise ``ConfigurationError``.
    """

    loss: float = 0.0
    duplicate: float = 0.0
    delay_s: tuple[float, float] = (0.0, 0.0)
    partitions: tuple[frozenset[str], ...] = field(default=())

    def __post_init__(self) -> None:
        _check_probability("loss", self.loss)
        _check_probability("duplicate", self.duplicate)
        _check_delay(self.delay_s)
        object.__setattr__(self, "partitions", _normalize_groups(self.partitions))

    def partitioned(self, *groups: Iterable[str]) -> FaultModel:
        """This model with ``groups`` as its partitions (replacing any previous ones)."""
        return replace(self, partitions=_normalize_groups(groups))

    def healed(self) -> FaultModel:
        """This model without partitions."""
        return replace(self, partitions=())

    def can_reach(self, src: str, dst: str) -> bool:
        """False when a partition separates ``src`` from ``dst``."""
        if src == dst:
            return True
        src_group = next((g for g in self.partitions if src in g), None)
        dst_group = next((g for g in self.partitions if dst in g), None)
        return src_group is None or dst_group is None or src_group is dst_group

    def arrival_delays(self, rng: random.Random, src: str, dst: str) -> list[float]:
        """The delays after which copies of one message from ``src`` to ``dst`` arrive.

        Draws from ``rng`` only, in a fixed pattern per outcome, so the same
        seed and the same sequence of calls give the same decisions.
        """
        if not self.can_reach(src, dst):
            return []
        if rng.random() < self.loss:
            return []
        copies = 2 if rng.random() < self.duplicate else 1
        lo, hi = self.delay_s
        # uniform() may round past hi; the bounds are a promise to the caller.
        return [min(hi, rng.uniform(lo, hi)) for _ in range(copies)]
