"""The transport's Endpoint: one reader per transport, routing by instance.

A transport with ``set_receiver`` (TcpTransport) pushes envelopes to the
endpoint (no reading task); one without it (MemoryNetwork's) is read by a
task looping on ``receive()``. Both route the same way. The endpoint lives on
its transport (no process-wide registry): several instances share it, the
last one out hands the transport back to ``receive()``, and a later one
takes it again. Waits are on futures the handlers resolve, under a timeout;
nothing sleeps.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

import pytest

from paxostob import Consensus, MemoryNetwork, TotalOrderBroadcast
from paxostob.core.messages import Envelope
from paxostob.errors import ConfigurationError, TransportClosedError
from paxostob.node.driver import ENDPOINT_ATTRIBUTE, Endpoint
from paxostob.transport.base import Receiver, SupportsReceiver, Transport

from ..transport.conformance import RECEIVE_TIMEOUT_S, envelope, receive_n
from ..transport.test_tcp import close_all, start_cluster

TICK = 0.002


async def _routes(sender: Transport, receiver: Transport, *, sent_before: int = 0) -> Endpoint:
    """Attach two instances on ``receiver``; check routing in order; return the endpoint."""
    loop = asyncio.get_running_loop()
    xs: list[Envelope] = []
    ys: list[Envelope] = []
    done = loop.create_future()

    def on_y(e: Envelope) -> None:
        ys.append(e)
        if len(ys) == 3 and not done.done():
            done.set_result(None)

    dst = receiver.address
    endpoint = Endpoint.of(receiver)
    assert Endpoint.of(receiver) is endpoint, "one endpoint per transport"
    endpoint.attach("x", xs.append)
    endpoint.attach("y", on_y)
    unrouted = endpoint.unrouted
    for n in range(sent_before, sent_before + 3):
        sender.send(envelope(sender.address, dst, n, instance="x"))
        sender.send(envelope(sender.address, dst, n, instance="nobody"))
        sender.send(envelope(sender.address, dst, n, instance="y"))
    async with asyncio.timeout(RECEIVE_TIMEOUT_S):
        await done
    sent = range(sent_before, sent_before + 3)
    assert xs == [envelope(sender.address, dst, n, instance="x") for n in sent]
    assert ys == [envelope(sender.address, dst, n, instance="y") for n in sent]
    assert endpoint.unrouted == unrouted + 3
    return endpoint


async def _detach_all(endpoint: Endpoint, sender: Transport, receiver: Transport) -> None:
    """Detach both instances; the transport is back to ``receive()``."""
    endpoint.detach("x")
    assert endpoint._task is not None or endpoint._pushed, "one instance still attached"
    endpoint.detach("y")
    assert endpoint._task is None and not endpoint._pushed, "the last one out stops reading"
    sender.send(envelope(sender.address, receiver.address, 99, instance="x"))
    assert await receive_n(receiver, 1) == [
        envelope(sender.address, receiver.address, 99, instance="x")
    ]


async def test_endpoint_reads_a_transport_without_set_receiver() -> None:
    net = MemoryNetwork()
    a, b = net.transport("a"), net.transport("b")
    assert not isinstance(b, SupportsReceiver)
    try:
        endpoint = await _routes(a, b)
        assert endpoint._task is not None, "the fallback: a task looping on receive()"
        await _detach_all(endpoint, a, b)
    finally:
        await a.close()
        await b.close()


async def test_endpoint_is_pushed_to_by_a_transport_with_set_receiver() -> None:
    _, ts = await start_cluster("ab")
    a, b = ts["a"], ts["b"]
    assert isinstance(b, SupportsReceiver)
    try:
        endpoint = await _routes(a, b)
        assert endpoint._task is None and endpoint._pushed, "pushed: no reading task"
        await _detach_all(endpoint, a, b)
    finally:
        await close_all(ts.values())


@pytest.fixture(params=["memory", "tcp"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Transport, Transport]]:
    if request.param == "memory":
        net = MemoryNetwork()
        a, b = net.transport("a"), net.transport("b")
        yield a, b
        await a.close()
        await b.close()
    else:
        _, ts = await start_cluster("ab")
        yield ts["a"], ts["b"]
        await close_all(ts.values())


async def test_endpoint_routes_again_after_every_instance_detached(
    pair: tuple[Transport, Transport],
) -> None:
    a, b = pair
    endpoint = await _routes(a, b)
    await _detach_all(endpoint, a, b)
    # The same instance names again, on the same transport: routed again.
    assert await _routes(a, b, sent_before=10) is endpoint


async def test_an_instance_name_runs_once_per_transport() -> None:
    net = MemoryNetwork()
    a = net.transport("a")
    endpoint = Endpoint.of(a)
    endpoint.attach("x", lambda e: None)
    try:
        with pytest.raises(ConfigurationError, match="'x' is already running"):
            endpoint.attach("x", lambda e: None)
    finally:
        endpoint.detach("x")
        await a.close()


class _Pushing:
    """The smallest transport with the push path: nothing arrives."""

    def __init__(self, address: str) -> None:
        self._address = address
        self.receiver: Receiver | None = None

    @property
    def address(self) -> str:
        return self._address

    def send(self, envelope: Envelope) -> None:
        pass

    async def receive(self) -> Envelope:
        raise TransportClosedError("push only")

    async def close(self) -> None:
        pass

    def set_receiver(self, receiver: Receiver | None) -> None:
        self.receiver = receiver


def test_an_endpoint_never_outlives_its_transport() -> None:
    """Nothing process-wide holds a transport: dropped with an instance attached, it is freed.

    (A registry of endpoints keyed by transport would keep every transport
    whose instances were never closed, and its endpoint with it.)
    """
    transport = _Pushing("a")
    Endpoint.of(transport).attach("x", lambda e: None)
    assert transport.receiver is not None
    gone = weakref.ref(transport)
    del transport
    gc.collect()
    assert gone() is None


class _Forwarding:
    """A wrapper that forwards attribute reads to the transport it wraps."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_forwarding_wrapper_gets_an_endpoint_of_its_own() -> None:
    net = MemoryNetwork()
    inner = net.transport("a")
    wrapper: Transport = _Forwarding(inner)  # type: ignore[assignment]
    try:
        assert Endpoint.of(wrapper) is not Endpoint.of(inner)
        assert Endpoint.of(wrapper).transport is wrapper
    finally:
        await inner.close()


class _Slotted:
    __slots__ = ()


def test_a_transport_without_attributes_is_refused_with_a_reason() -> None:
    with pytest.raises(ConfigurationError, match=ENDPOINT_ATTRIBUTE):
        Endpoint.of(_Slotted())  # type: ignore[arg-type]


async def _decide_together(members: list[str], transports: list[Transport], tag: str) -> None:
    """Two ``TotalOrderBroadcast`` instances per transport, plus two ``Consensus`` on memory."""
    tobs = {
        name: [
            TotalOrderBroadcast(
                t, members, instance=name + tag, tick_interval_s=TICK, in_memory=True
            )
            for t in transports
        ]
        for name in ("alpha", "beta")
    }
    votes: dict[str, list[Consensus]] = {}
    if not isinstance(transports[0], SupportsReceiver):
        votes = {
            name: [
                Consensus(t, members, instance=name + tag, tick_interval_s=TICK, in_memory=True)
                for t in transports
            ]
            for name in ("gamma", "delta")
        }
    nodes = [*(n for ns in tobs.values() for n in ns), *(n for ns in votes.values() for n in ns)]
    for node in nodes:
        await node.start()
    try:
        decided = await asyncio.gather(
            *(ns[0].broadcast(f"{name}{tag}".encode(), timeout=10) for name, ns in tobs.items()),
            *(
                c.propose(f"{name}{tag}".encode(), timeout=10)
                for name, cs in votes.items()
                for c in cs
            ),
        )
        assert decided[len(tobs) :] == [
            f"{name}{tag}".encode() for name, cs in votes.items() for _ in cs
        ]
        for name, ns in tobs.items():
            for node in ns:
                d = await asyncio.wait_for(node.deliver(), 10)
                assert (d.sender, d.payload) == (members[0], f"{name}{tag}".encode())
    finally:
        for node in nodes:
            await node.close()


async def test_instances_share_a_transport_and_come_back_after_all_closed(
    pair: tuple[Transport, Transport],
) -> None:
    """Several instances per node on one transport (pushed or read), twice.

    Between the rounds every instance closes: the endpoint hands the transport
    back to ``receive()``; the next round's instances take it again.
    """
    transports = list(pair)
    members = [t.address for t in transports]
    for round_ in range(2):
        await _decide_together(members, transports, str(round_))
        for t in transports:
            endpoint = Endpoint.of(t)
            assert not endpoint._pushed and endpoint._task is None
