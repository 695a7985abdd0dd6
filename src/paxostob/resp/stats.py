"""Per-command counters of a node's client port: ``INFO commandstats`` and the metrics port.

Plain integers updated on the request path (a dictionary lookup and a few
additions per command, no lock and no library): ``INFO`` formats them as
Redis does and ``paxostob serve --metrics-port`` turns them into Prometheus
series when it is scraped, so nothing is computed for a reader that never
comes. Only commands the node knows get an entry: a client's unknown
command names are counted together (``unknown``), so clients cannot grow
the table.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Final

from ..kv.replies import Error

__all__ = ["LATENCY_BUCKETS_S", "CommandStat", "CommandStats"]

#: Upper bounds (seconds) of the latency histogram: from a read served
#: locally (~100 us) to a write that waited out an election (seconds).
LATENCY_BUCKETS_S: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class CommandStat:
    """One command's counters (Redis's ``cmdstat_<name>`` fields, and latency buckets).

    ``calls``: executed (Redis counts a call that returned an error reply,
    ``failed``, as a call too). ``rejected``: refused before executing
    (wrong arity, not authenticated, no leader known): not calls, as in
    Redis. ``usec``: the sum of the latencies of the calls, from dispatch
    to the reply being ready; unlike Redis's (the CPU time in the command),
    it includes the consensus round a write waits for. ``buckets[i]``:
    calls whose latency was at most ``LATENCY_BUCKETS_S[i]`` and above the
    bound before; the last one counts those above every bound.
    """

    __slots__ = ("buckets", "calls", "failed", "rejected", "usec")

    def __init__(self) -> None:
        self.calls = 0
        self.failed = 0
        self.rejected = 0
        self.usec = 0
        self.buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)


class CommandStats:
    """The counters of every command a node executed, by lower-case name."""

    def __init__(self) -> None:
        self.by_name: dict[bytes, CommandStat] = {}
        #: Commands whose name the node does not know (Redis's ``-ERR unknown command``).
        self.unknown = 0

    def _stat(self, name: bytes) -> CommandStat:
        stat = self.by_name.get(name)
        if stat is None:
            stat = self.by_name[name] = CommandStat()
        return stat

    def record(self, name: bytes, seconds: float, failed: bool) -> None:
        """One call of the known command ``name`` (lower case) took ``seconds``."""
        stat = self.by_name.get(name)
        if stat is None:
            stat = self._stat(name)
        stat.calls += 1
        stat.usec += int(seconds * 1_000_000)
        stat.buckets[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        if failed:
            stat.failed += 1

    def record_group(self, ops: Sequence[Sequence[bytes]], seconds: float, replies: object) -> None:
        """The commands of one log entry completed together after ``seconds``.

        ``replies``: their replies in order, or the exception that failed them all.
        """
        by_name = self.by_name
        usec = int(seconds * 1_000_000)
        bucket = bisect_left(LATENCY_BUCKETS_S, seconds)
        each = replies if isinstance(replies, list) else None
        for k, op in enumerate(ops):
            name = op[0].lower()
            stat = by_name.get(name)
            if stat is None:
                stat = self._stat(name)
            stat.calls += 1
            stat.usec += usec
            stat.buckets[bucket] += 1
            if each is None or type(each[k]) is Error:
                stat.failed += 1

    def reject(self, name: bytes, count: int = 1) -> None:
        """``count`` calls of the known command ``name`` (lower case) were refused."""
        self._stat(name).rejected += count

    @property
    def calls(self) -> int:
        """Every call of every command: Redis's ``total_commands_processed``."""
        return sum(s.calls for s in self.by_name.values())

    @property
    def errors(self) -> int:
        """Error replies: failed and rejected calls, and unknown commands
        (Redis's ``total_error_replies``)."""
        return self.unknown + sum(s.failed + s.rejected for s in self.by_name.values())

    def info_lines(self) -> list[str]:
        """``INFO commandstats``'s lines, in Redis 7's format."""
        lines = []
        for name in sorted(self.by_name):
            s = self.by_name[name]
            per_call = s.usec / s.calls if s.calls else 0.0
            lines.append(
                f"cmdstat_{name.decode(errors='replace')}:calls={s.calls},usec={s.usec},"
                f"usec_per_call={per_call:.2f},rejected_calls={s.rejected},failed_calls={s.failed}"
            )
        return lines
