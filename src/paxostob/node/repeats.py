"""Rate-limiting of log lines that can repeat many times a second.

A refusal (a command while no leader is known, a client beyond
``maxclients``, a slow disk) can happen for every request; one log line
each would flood the log exactly when an operator reads it. A
``RepeatLimiter`` lets the first line of a kind through, holds back the
repeats for ``interval_s`` and reports how many it held back with the next
one it lets through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

__all__ = ["REPEAT_INTERVAL_S_DEFAULT", "RepeatLimiter"]

#: One line of a kind per this many seconds: a refusal storm shows up as one
#: line per 10 s with a count, still soon enough to see when it started and ended.
REPEAT_INTERVAL_S_DEFAULT = 10.0


class RepeatLimiter:
    """Lets one line per key through every ``interval_s`` and counts the others.

    ``keys_max`` bounds the keys remembered (callers use a few fixed kinds;
    the bound is against a caller that puts a client's data in the key):
    beyond it everything is forgotten, which at worst lets a repeat through.
    Not locked: a save thread and the event loop may share one, and a race
    at worst lets one extra line through or miscounts a repeat.
    """

    def __init__(
        self,
        interval_s: float = REPEAT_INTERVAL_S_DEFAULT,
        *,
        clock: Callable[[], float] = time.monotonic,
        keys_max: int = 1024,
    ) -> None:
        if interval_s < 0 or keys_max < 1:
            raise ValueError("interval_s must be >= 0 and keys_max >= 1")
        self.interval_s = interval_s
        self.keys_max = keys_max
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def allow(self, key: Hashable) -> int | None:
        """None: hold this line back (it is counted). Else log it: the number held back since."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        if last is None and len(self._last) >= self.keys_max:
            self._last.clear()
            self._held.clear()
        self._last[key] = now
        return self._held.pop(key, 0)

    @staticmethod
    def suffix(held: int) -> str:
        """What to append to the line let through: how many like it were held back."""
        return f" ({held} more like this since the last one logged)" if held else ""
