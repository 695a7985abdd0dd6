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
  the limit is claimed, the new connection is closed at once;
- a member dials this node over one connection at a time, so there is at
  most one claimed handshake per member: a newer claim of the same member
  takes the place of the older one.

Why a new connection may push out an old one, instead of always being
refused: a limit that refuses newcomers is first come, first served, and a
stranger who reopens every connection the moment it closes keeps it full
for as long as it likes. A node's real peer dials one connection at a time
and sends its ``Hello`` in its first packet, so its connection is among
the newest; before a handshake is pushed out, the transport looks (without
reading) for a ``Hello`` already waiting in its socket, and claims it
instead. A stranger who sends nothing, garbage or a trickle stays
anonymous and is pushed out. On one source address (peers and a stranger
on one host, or behind one NAT) this is what lets the peer in at all.

What is left: a ``Hello`` that asyncio has taken from the socket and the
handshake has not read yet (one loop pass) is not seen, so a flood of
more than ``per_address_max`` new connections in that pass can still push
a peer's connection out; the peer dials again after its backoff. A
``Hello`` is not a secret (it names the cluster and two members): one who
sends a member's ``Hello`` and then stalls holds one slot per member,
until its deadline or that member's next dial, whichever comes first.
Mutual TLS keeps both out: a stranger without a certificate never reaches
this accounting.

``WarningLimiter`` writes at most one log line per key (a source address)
per interval; what it holds back is counted and reported in one line when
the interval ends.

This module keeps the accounting; the transport closes the connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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
        #: Claimed handshakes by the member their Hello names, and back.
        self._claims: dict[str, H] = {}
        self._claimant: dict[H, str] = {}

    def __len__(self) -> int:
        return len(self._address)

    def count(self, address: str) -> int:
        return self._count.get(address, 0)

    def admit(
        self, address: str, handle: H, peek: Callable[[H], str | None] | None = None
    ) -> tuple[bool, list[H]]:
        """Whether ``handle`` (from ``address``) is served, and the handshakes to close.

        ``(False, [])``: close the new connection. ``(True, closing)``: serve
        it, and close every handshake in ``closing`` (they are no longer
        counted). Before an anonymous handshake is pushed out, ``peek`` may
        name the member whose ``Hello`` already waits in its socket: it is
        claimed instead (a claim may push out an older one of that member).
        """
        closing: list[H] = []
        while True:
            if self._count.get(address, 0) >= self.per_address_max:
                victim = next(iter(self._anonymous.get(address, ())), None)
            elif len(self._address) >= self.total_max:
                victim = next(iter(self._anonymous_all), None)
            else:
                self._add(address, handle)
                return True, closing
            if victim is None:
                return False, closing
            member = None if peek is None else peek(victim)
            if member is None:
                self.remove(victim)
                self._add(address, handle)
                return True, [*closing, victim]
            older = self.claim(victim, member)  # a peer's, not a stranger's: keep it
            if older is not None:
                closing.append(older)

    def claim(self, handle: H, member: str) -> H | None:
        """``handle`` sent an acceptable ``Hello`` from ``member``; it is no longer anonymous.

        Returns the older handshake claiming ``member``, if any: close it (it
        is no longer counted).
        """
        if handle not in self._address:
            return None
        self._unlist(handle)
        older = self._claims.get(member)
        if older is not None and older is not handle:
            self.remove(older)
        else:
            older = None
        self._claims[member] = handle
        self._claimant[handle] = member
        return older

    def remove(self, handle: H) -> None:
        """``handle``'s handshake ended (done, failed or pushed out); idempotent."""
        self._unlist(handle)
        member = self._claimant.pop(handle, None)
        if member is not None and self._claims.get(member) is handle:
            del self._claims[member]
        address = self._address.pop(handle, None)
        if address is None:
            return
        left = self._count[address] - 1
        if left:
            self._count[address] = left
        else:
            del self._count[address]

    def _unlist(self, handle: H) -> None:
        """Take ``handle`` off the anonymous lists."""
        address = self._address.get(handle)
        if address is None:
            return
        self._anonymous_all.pop(handle, None)
        anonymous = self._anonymous.get(address)
        if anonymous is not None:
            anonymous.pop(handle, None)
            if not anonymous:
                del self._anonymous[address]

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
