"""The Mux: one reader per transport, routing by instance; pushed to or reading.

A transport with ``set_receiver`` (TcpTransport) pushes envelopes to the Mux
(no reading task); one without it (MemoryNetwork's) is read by a task looping
on ``receive()``. Both route the same way. Waits are on futures the handlers
resolve, under a timeout; nothing sleeps.
"""

from __future__ import annotations

import asyncio

from paxostob.core.messages import Envelope
from paxostob.node.driver import Mux
from paxostob.transport.base import SupportsReceiver, Transport
from paxostob.transport.memory import MemoryNetwork

from ..transport.conformance import RECEIVE_TIMEOUT_S, envelope, receive_n
from ..transport.test_tcp import close_all, start_cluster


async def _routes(sender: Transport, receiver: Transport) -> Mux:
    """Attach two instances on ``receiver``; check routing in order; return the Mux."""
    loop = asyncio.get_running_loop()
    xs: list[Envelope] = []
    ys: list[Envelope] = []
    done = loop.create_future()

    def on_y(e: Envelope) -> None:
        ys.append(e)
        if len(ys) == 3 and not done.done():
            done.set_result(None)

    dst = receiver.address
    mux = Mux.attach(receiver, "x", xs.append)
    assert Mux.attach(receiver, "y", on_y) is mux, "one Mux per transport"
    for n in range(3):
        sender.send(envelope(sender.address, dst, n, instance="x"))
        sender.send(envelope(sender.address, dst, n, instance="nobody"))
        sender.send(envelope(sender.address, dst, n, instance="y"))
    async with asyncio.timeout(RECEIVE_TIMEOUT_S):
        await done
    assert xs == [envelope(sender.address, dst, n, instance="x") for n in range(3)]
    assert ys == [envelope(sender.address, dst, n, instance="y") for n in range(3)]
    assert mux.unrouted == 3
    return mux


async def test_mux_reads_a_transport_without_set_receiver() -> None:
    net = MemoryNetwork()
    a, b = net.transport("a"), net.transport("b")
    assert not isinstance(b, SupportsReceiver)
    try:
        mux = await _routes(a, b)
        assert mux._task is not None, "the fallback: a task looping on receive()"
        mux.detach("x")
        mux.detach("y")
        assert mux._task is None
    finally:
        await a.close()
        await b.close()


async def test_mux_is_pushed_to_by_a_transport_with_set_receiver() -> None:
    _, ts = await start_cluster("ab")
    a, b = ts["a"], ts["b"]
    assert isinstance(b, SupportsReceiver)
    try:
        mux = await _routes(a, b)
        assert mux._task is None, "pushed: no reading task"
        mux.detach("x")
        mux.detach("y")
        # Detached: the transport is back to receive().
        a.send(envelope("a", "b", 7, instance="x"))
        assert await receive_n(b, 1) == [envelope("a", "b", 7, instance="x")]
        assert mux.unrouted == 3
    finally:
        await close_all(ts.values())
