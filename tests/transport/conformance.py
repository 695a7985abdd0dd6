"""The conformance suite of the ``Transport`` protocol (transport/base.py).

Every transport runs it: subclass ``TransportConformance`` in a ``test_*.py``
module as ``Test<Name>Conformance`` and implement ``make_trio`` to return three
open transports on a fault-free network plus the cleanup that closes them.
Because real transports may reorder, the suite never checks order, and it
waits on ``receive`` with a timeout instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from paxostob.core.messages import Envelope, Heartbeat
from paxostob.core.types import Ballot
from paxostob.errors import TransportClosedError
from paxostob.transport.base import Transport

__all__ = ["RECEIVE_TIMEOUT_S", "TransportConformance", "Trio", "envelope", "receive_n"]

#: Generous: a loaded CI machine must not turn a slow delivery into a failure.
RECEIVE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Trio:
    """Three transports (distinct addresses) on one network, and how to tear them down."""

    a: Transport
    b: Transport
    c: Transport
    cleanup: Callable[[], Awaitable[None]]


def envelope(src: str, dst: str, n: int, instance: str = "conformance") -> Envelope:
    """A small real message from ``src`` to ``dst``, told apart from others by ``n``."""
    return Envelope(dst, Heartbeat(instance=instance, sender=src, ballot=Ballot(1, src), commit=n))


async def receive_n(transport: Transport, n: int) -> list[Envelope]:
    """The next ``n`` envelopes of ``transport``; fails if they do not come in time."""
    return [await asyncio.wait_for(transport.receive(), RECEIVE_TIMEOUT_S) for _ in range(n)]


class TransportConformance:
    """The guarantees of transport/base.py, for the transport ``make_trio`` builds."""

    async def make_trio(self) -> Trio:
        raise NotImplementedError("a conformance subclass builds its transports here")

    @pytest.fixture
    async def trio(self) -> AsyncIterator[Trio]:
        trio = await self.make_trio()
        try:
            yield trio
        finally:
            await trio.cleanup()

    async def test_is_a_transport_with_distinct_addresses(self, trio: Trio) -> None:
        for t in (trio.a, trio.b, trio.c):
            assert isinstance(t, Transport)
        assert len({trio.a.address, trio.b.address, trio.c.address}) == 3

    async def test_delivers_to_dst(self, trio: Trio) -> None:
        sent = envelope(trio.a.address, trio.b.address, 1)
        trio.a.send(sent)
        assert await receive_n(trio.b, 1) == [sent]

    async def test_delivers_to_self(self, trio: Trio) -> None:
        sent = envelope(trio.a.address, trio.a.address, 1)
        trio.a.send(sent)
        assert await receive_n(trio.a, 1) == [sent]

    async def test_isolates_addresses(self, trio: Trio) -> None:
        a, b, c = trio.a, trio.b, trio.c
        # Interleaved, so a mix-up would put one of c's envelopes among b's and vice versa.
        to_b = [envelope(a.address, b.address, n) for n in range(0, 20, 2)]
        to_c = [envelope(a.address, c.address, n) for n in range(1, 20, 2)]
        for eb, ec in zip(to_b, to_c, strict=True):
            a.send(eb)
            a.send(ec)
        c.send(envelope(c.address, b.address, 100))
        got_b = await receive_n(b, len(to_b) + 1)
        got_c = await receive_n(c, len(to_c))
        assert sorted(e.message.commit for e in got_b if isinstance(e.message, Heartbeat)) == [
            *range(0, 20, 2),
            100,
        ]
        assert all(e.dst == b.address for e in got_b)
        assert sorted(got_c, key=str) == sorted(to_c, key=str)

    async def test_send_never_raises(self, trio: Trio) -> None:
        a, b = trio.a, trio.b
        for n in range(1000):
            a.send(envelope(a.address, b.address, n))
        a.send(envelope(a.address, "no-such-node", 0))
        await b.close()
        a.send(envelope(a.address, b.address, 0))  # to a crashed node
        await a.close()
        a.send(envelope(a.address, trio.c.address, 0))  # from a crashed node

    async def test_keeps_working_after_a_send_to_an_unknown_node(self, trio: Trio) -> None:
        a, b = trio.a, trio.b
        a.send(envelope(a.address, "no-such-node", 0))
        sent = envelope(a.address, b.address, 1)
        a.send(sent)
        assert await receive_n(b, 1) == [sent]

    async def test_close_is_idempotent(self, trio: Trio) -> None:
        await trio.a.close()
        await trio.a.close()

    async def test_receive_after_close_raises(self, trio: Trio) -> None:
        a, b = trio.a, trio.b
        a.send(envelope(a.address, b.address, 1))
        await b.close()
        with pytest.raises(TransportClosedError):
            await asyncio.wait_for(b.receive(), RECEIVE_TIMEOUT_S)
        with pytest.raises(TransportClosedError):
            await asyncio.wait_for(b.receive(), RECEIVE_TIMEOUT_S)

    async def test_close_wakes_a_pending_receive(self, trio: Trio) -> None:
        pending = asyncio.create_task(trio.b.receive())
        # Yield (not sleep) until the receive is parked waiting for a message.
        for _ in range(5):
            await asyncio.sleep(0)
        assert not pending.done()
        await trio.b.close()
        with pytest.raises(TransportClosedError):
            await asyncio.wait_for(pending, RECEIVE_TIMEOUT_S)

    async def test_a_cancelled_receive_loses_nothing(self, trio: Trio) -> None:
        a, b = trio.a, trio.b
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(b.receive(), 0.01)
        sent = envelope(a.address, b.address, 1)
        a.send(sent)
        assert await receive_n(b, 1) == [sent]
