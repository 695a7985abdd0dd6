"""A virtual-time network for the simulator: every fault, one seed, no clock.

Theory of operation: time is an integer tick. ``send`` asks a ``FaultModel``
(the same one ``MemoryNetwork`` uses; its delays are read as ticks here) how
many copies of a message arrive and after which delays, then files each copy
in a priority queue keyed by ``(arrival tick, sequence number)``. The sequence
number makes the order of copies due at the same tick the order they were
sent, so a run depends on nothing but the seed. ``due(now)`` pops, in that
order, every copy whose tick has come.

Rules:

- Every copy takes at least one tick: a message sent while tick *t* is
  handled arrives at *t + 1* or later, so handling a tick always terminates.
- Reordering comes from independent delays; a *spike* adds a long extra
  delay to a few messages (a stalled link, a GC pause), long enough to fire
  election timeouts and to carry stale messages into a later phase.
- Partitions cut both at send time (the fault model) and at arrival time: a
  copy in flight when a partition starts is dropped if the cut separates its
  ends when it arrives.
- Crashes: a crashed node sends nothing, and copies to it are dropped,
  including those already in flight. ``restart`` brings it back as a new
  life: copies addressed to an earlier life are still dropped when they
  arrive (they were in the dead process's socket buffers), while copies an
  earlier life *sent* still arrive (they had left the node). A crash-stop is
  a crash without a restart.
- All randomness comes from the one ``random.Random`` handed in (the runner
  derives it from the run's seed).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from ..core.messages import Envelope
from ..transport.faults import FaultModel

__all__ = ["NetworkStats", "SimNetwork"]


@dataclass(slots=True)
class NetworkStats:
    """Counters for one run.

    ``sent``: messages handed to ``send`` by live nodes. ``duplicated``: extra
    copies. ``delivered``: copies handed to their destination. ``dropped``:
    messages or copies that never arrived, for any reason (``lost``: by chance
    or a partition at send time; ``cut``: a partition at arrival time;
    ``crashed``: the sender or the destination had crashed, or the
    destination restarted since the copy was sent).
    Invariant once nothing is in flight: ``sent + duplicated == delivered + dropped``.
    """

    sent: int = 0
    duplicated: int = 0
    delivered: int = 0
    dropped: int = 0
    lost: int = 0
    cut: int = 0
    crashed: int = 0
    spiked: int = 0


class SimNetwork:
    """Messages between ``members`` on virtual ticks."""

    def __init__(
        self,
        members: Iterable[str],
        rng: random.Random,
        faults: FaultModel | None = None,
        *,
        spike_probability: float = 0.0,
        spike_ticks: tuple[int, int] = (10, 40),
    ) -> None:
        self.members = tuple(members)
        self._rng = rng
        self.faults = faults or FaultModel(delay_s=(1.0, 1.0))
        if not 0.0 <= spike_probability <= 1.0:
            raise ValueError("spike_probability must be in [0, 1]")
        if not 1 <= spike_ticks[0] <= spike_ticks[1]:
            raise ValueError("spike_ticks must satisfy 1 <= lo <= hi")
        self.spike_probability = spike_probability
        self.spike_ticks = spike_ticks
        self.crashed: set[str] = set()
        #: Node -> the tick until which nothing reaches it (what it sends
        #: still arrives): a rejoining node whose peers have not reconnected.
        self.deaf: dict[str, int] = {}
        self.stats = NetworkStats()
        #: The tick being handled; the runner sets it before anything is sent in it.
        self.now = 0
        #: Lives per node: a copy is delivered only to the life it was sent to.
        self._life = dict.fromkeys(self.members, 0)
        self._queue: list[tuple[int, int, int, Envelope]] = []
        self._seq = 0

    # ---------------------------------------------------------------- faults

    def set_faults(self, faults: FaultModel, *, spike_probability: float | None = None) -> None:
        """Replace the fault model (its partitions included)."""
        self.faults = faults
        if spike_probability is not None:
            self.spike_probability = spike_probability

    def partition(self, *groups: Iterable[str]) -> None:
        self.faults = self.faults.partitioned(*groups)

    def heal(self) -> None:
        """No partitions, loss, duplication, spikes or deaf nodes: only the base delays remain."""
        self.faults = replace(self.faults, loss=0.0, duplicate=0.0, partitions=())
        self.spike_probability = 0.0
        self.deaf.clear()

    def crash(self, node: str) -> None:
        assert node in self.members, f"unknown node {node!r}"
        self.crashed.add(node)

    def restart(self, node: str) -> None:
        """``node`` is up again, as a new life: what was in flight to it stays lost."""
        assert node in self.crashed, f"{node!r} is not crashed"
        self.crashed.discard(node)
        self._life[node] += 1

    # -------------------------------------------------------------- messages

    def send(self, envelope: Envelope) -> None:
        src, dst = envelope.message.sender, envelope.dst
        stats = self.stats
        if src in self.crashed:
            return  # a crashed node sends nothing (the runner never steps it anyway)
        stats.sent += 1
        if dst in self.crashed:
            stats.dropped += 1
            stats.crashed += 1
            return
        delays = self.faults.arrival_delays(self._rng, src, dst)
        if not delays:
            stats.dropped += 1
            stats.lost += 1
            return
        stats.duplicated += len(delays) - 1
        for delay in delays:
            ticks = max(1, round(delay))
            if self.spike_probability and self._rng.random() < self.spike_probability:
                ticks += self._rng.randint(*self.spike_ticks)
                stats.spiked += 1
            self._seq += 1
            heapq.heappush(self._queue, (self.now + ticks, self._seq, self._life[dst], envelope))

    def due(self, now: int) -> Iterator[Envelope]:
        """Pop, in (tick, send order), every copy due at ``now`` that may still arrive.

        A generator: copies sent while it is being consumed are due later than
        ``now`` (every copy takes at least one tick), so they are not yielded.
        """
        assert now == self.now, "set ``now`` before handling a tick"
        queue = self._queue
        stats = self.stats
        while queue and queue[0][0] <= now:
            _, _, life, envelope = heapq.heappop(queue)
            src, dst = envelope.message.sender, envelope.dst
            if dst in self.crashed or life != self._life[dst]:
                stats.dropped += 1
                stats.crashed += 1
            elif not self.faults.can_reach(src, dst) or self.deaf.get(dst, 0) > now:
                stats.dropped += 1
                stats.cut += 1
            else:
                stats.delivered += 1
                yield envelope

    @property
    def in_flight(self) -> int:
        return len(self._queue)
