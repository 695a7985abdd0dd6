"""Who may hold a handshake open on the peer port, and how often a source may be logged.

Before the handshake completes a connection is a stranger's: anyone who can
reach the port can open one. ``PendingHandshakes`` decides, at accept time,
whether a new connection is served, so that strangers cannot keep a node's
peers out:

- at most ``per_address_max`` handshakes in progress per source address and
  ``total_max`` in all (each holds a socket and a task until it completes or
  its deadline passes);
- a handshake is *anonymous* until the connection has sent an acceptable
  first message (a ``Hello`` from a member allowed to dial this node), and
  *claimed* after that;
- a new connection beyond a limit takes the place of the oldest anonymous
  handshake under that limit, which is closed; when every handshake under
  the limit is claimed, the new connection is closed at once.

Why a new connection may push out an old one, instead of always being
refused: a limit that refuses newcomers is first come, first served, and a
stranger who reopens every connection the moment it closes keeps it full
for as long as it likes. A node's real peer dials one connection at a time
and sends its ``Hello`` in its first packet, so its connection is the
newest, and it is claimed one round trip after the accept; a stranger who
sends nothing, garbage or a trickle stays anonymous and is pushed out. On
one source address (peers and a stranger on one host, or behind one NAT)
this is what lets the peer in at all.

``WarningLimiter`` writes at most one log line per key (a source address)
per interval; what it holds back is counted and reported in one line when
the interval ends.

This module keeps the accounting; the transport closes the connections.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["PendingHandshakes", "WarningLimiter"]

H = TypeVar("H")


class PendingHandshakes(Generic[H]):
    """Handshakes in progress (``H`` is the caller's handle of one), by source address."""

    def __init__(self, *, total_max: int, per_address_max: int) -> None:
        self.total_max = total_max
        self.per_address_max = per_address_max
        self._address: dict[H, str] = {}
        self._count: dict[str, int] = {}
        #: Anonymous handshakes, oldest first: per address and in all.
        self._anonymous: dict[str, dict[H, None]] = {}
        self._anonymous_all: dict[H, None] = {}

    def __len__(self) -> int:
        return len(self._address)

    def count(self, address: str) -> int:
        return self._count.get(address, 0)

    def admit(self, address: str, handle: H) -> tuple[bool, H | None]:
        """Whether ``handle`` (from ``address``) is served, and the handshake it pushes out.

        ``(False, None)``: close the new connection. ``(True, victim)``: serve
        it; if ``victim`` is not None, close that one (it is no longer counted).
        """
        victim: H | None = None
        if self._count.get(address, 0) >= self.per_address_max:
            victim = next(iter(self._anonymous.get(address, ())), None)
        elif len(self._address) >= self.total_max:
            victim = next(iter(self._anonymous_all), None)
        else:
            self._add(address, handle)
            return True, None
        if victim is None:
            return False, None
        self.remove(victim)
        self._add(address, handle)
        return True, victim

    def claim(self, handle: H) -> None:
        """``handle`` sent an acceptable first message: it is no longer pushed out."""
        address = self._address.get(handle)
        if address is None:
            return
        self._anonymous_all.pop(handle, None)
        anonymous = self._anonymous.get(address)
        if anonymous is not None:
            anonymous.pop(handle, None)
            if not anonymous:
                del self._anonymous[address]

    def remove(self, handle: H) -> None:
        """``handle``'s handshake ended (done, failed or pushed out); idempotent."""
        self.claim(handle)
        address = self._address.pop(handle, None)
        if address is None:
            return
        left = self._count[address] - 1
        if left:
            self._count[address] = left
        else:
            del self._count[address]

    def _add(self, address: str, handle: H) -> None:
        self._address[handle] = address
        self._count[address] = self._count.get(address, 0) + 1
        self._anonymous.setdefault(address, {})[handle] = None
        self._anonymous_all[handle] = None


@dataclass(slots=True)
class _Window:
    suppressed: int = 0
    last: str = ""
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class WarningLimiter:
    """At most one warning per key per ``interval_s``; the rest are counted, then summed up.

    The first event of a key is logged at once and opens an interval; events
    during it are counted. When it ends, a count above zero is logged in one
    line, which opens the next interval; a quiet interval forgets the key.
    So a key never gets more than one line per interval, and nothing held
    back goes unreported. At most ``keys_max`` keys are tracked (each costs
    a timer); events of further keys share the key ``"other addresses"``.
    Needs a running event loop (the intervals are timers).
    """

    OTHER = "other addresses"

    def __init__(
        self, logger: logging.Logger, prefix: str, interval_s: float, keys_max: int = 1024
    ) -> None:
        self._log = logger
        self._prefix = prefix
        self.interval_s = interval_s
        self._keys_max = keys_max
        self._windows: dict[str, _Window] = {}

    def warn(self, key: str, message: str) -> bool:
        """Log ``message`` about ``key`` unless ``key`` had a line this interval; True if logged."""
        window = self._windows.get(key)
        if window is None and len(self._windows) >= self._keys_max:
            key = self.OTHER
            window = self._windows.get(key)
        if window is not None:
            window.suppressed += 1
            window.last = message
            return False
        self._log.warning("%s: %s", self._prefix, message)
        self._open(key, _Window())
        return True

    def close(self) -> None:
        """Report what is held back now and stop the timers (the transport is closing)."""
        for key in list(self._windows):
            window = self._windows.pop(key)
            if window.timer is not None:
                window.timer.cancel()
            self._summary(key, window)

    def _open(self, key: str, window: _Window) -> None:
        loop = asyncio.get_running_loop()
        window.timer = loop.call_later(self.interval_s, self._end, key)
        self._windows[key] = window

    def _end(self, key: str) -> None:
        window = self._windows.pop(key, None)
        if window is None or not window.suppressed:
            return
        self._summary(key, window)
        self._open(key, _Window())

    def _summary(self, key: str, window: _Window) -> None:
        if window.suppressed:
            self._log.warning(
                "%s: %d more from %s not logged in the last %g s (the last: %s)",
                self._prefix,
                window.suppressed,
                key,
                self.interval_s,
                window.last,
            )
