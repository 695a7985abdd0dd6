"""A bounded attacker for the peer port: connections that never finish a handshake.

``Attack`` keeps ``tasks`` connections open to an address, each silent,
sending garbage, or half a frame, and reopens each the moment the node
closes it; it stops when told, or after ``connections_max`` connections in
all. It counts what it did, so a test can wait for it (``until_opened``)
and check that it was still going when the test measured.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .conformance import RECEIVE_TIMEOUT_S as WAIT_S

__all__ = ["KINDS", "Attack", "attack"]

#: What each attacking connection does after it connects.
KINDS = ("silent", "garbage", "half-frame")


class Attack:
    """``tasks`` connections to ``address`` held open at once, each reopened when closed.

    At most ``connections_max`` connections in all: the loop ends by itself.
    """

    def __init__(self, address: tuple[str, int], tasks: int, connections_max: int) -> None:
        self.address = address
        self.connections_max = connections_max
        self.opened = 0
        self.live = 0
        self.stop = asyncio.Event()
        self._opened_enough: tuple[int, asyncio.Event] | None = None
        self._tasks = [
            asyncio.get_running_loop().create_task(self._one(KINDS[k % len(KINDS)]))
            for k in range(tasks)
        ]

    @property
    def exhausted(self) -> bool:
        return self.opened >= self.connections_max

    async def until_opened(self, n: int) -> None:
        """Wait (bounded) until the attack has opened ``n`` connections."""
        event = asyncio.Event()
        self._opened_enough = (n, event)
        if self.opened >= n:
            event.set()
        async with asyncio.timeout(WAIT_S):
            await event.wait()

    async def _one(self, kind: str) -> None:
        while not self.stop.is_set() and not self.exhausted:
            try:
                reader, writer = await asyncio.open_connection(*self.address)
            except OSError:
                continue  # the listener's backlog is full: try again, still bounded
            self.opened += 1
            if self._opened_enough and self.opened >= self._opened_enough[0]:
                self._opened_enough[1].set()
            self.live += 1
            try:
                if kind == "garbage":
                    writer.write(b"GET / HTTP/1.1\r\nHost: paxostob\r\n\r\n")
                elif kind == "half-frame":
                    writer.write(b"\x00\x00\x00\x40\x01\x95")  # a 64-byte frame, 2 bytes of it
                # Then hold the connection until the node closes it (or the test ends).
                reading = asyncio.ensure_future(reader.read(4096))
                stopping = asyncio.ensure_future(self.stop.wait())
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                for f in (reading, stopping):
                    f.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await reading
            finally:
                self.live -= 1
                writer.transport.abort()

    async def close(self) -> None:
        self.stop.set()
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(*self._tasks)


@contextlib.asynccontextmanager
async def attack(
    address: tuple[str, int], tasks: int, connections_max: int
) -> AsyncIterator[Attack]:
    a = Attack(address, tasks, connections_max)
    try:
        yield a
    finally:
        await a.close()
