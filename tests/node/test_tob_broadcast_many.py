"""``broadcast_many``: many broadcasts in one call, each with ``broadcast``'s guarantees."""

from __future__ import annotations

import asyncio

import pytest

from paxostob import MemoryNetwork
from paxostob.errors import NotRunningError, PayloadTooLargeError, QuorumTimeoutError

from .test_tob import WAIT_S, Cluster, names, take


async def test_every_payload_is_delivered_once_everywhere_and_listed_in_call_order() -> None:
    net = MemoryNetwork(seed=11, loss=0.05, duplicate=0.05)
    members = names(3)
    payloads = [b"m%d" % i for i in range(200)]
    async with Cluster(net, members) as nodes:
        got = await nodes["peer2"].broadcast_many(payloads, timeout=WAIT_S)
        assert [d.payload for d in got] == payloads
        assert {d.sender for d in got} == {"peer2"}
        sequences = [await take(nodes[m], len(payloads)) for m in members]
        assert sequences[0] == sequences[1] == sequences[2]
        assert sorted(d.payload for d in sequences[0]) == sorted(payloads)  # once each
        assert sorted(got, key=lambda d: d.slot) == sequences[0]


async def test_back_pressure_bounds_what_one_call_has_pending() -> None:
    net = MemoryNetwork(seed=12)
    members = names(3)
    async with Cluster(net, members, pending_max=3) as nodes:
        p1 = nodes["peer1"]
        seen = 0

        async def sample() -> None:
            nonlocal seen
            while True:
                seen = max(seen, p1.status().pending)
                await asyncio.sleep(0)

        sampler = asyncio.ensure_future(sample())
        try:
            got = await p1.broadcast_many([b"x%d" % i for i in range(20)], timeout=WAIT_S)
        finally:
            sampler.cancel()
            await asyncio.wait({sampler})
        assert len(got) == 20 and seen <= 3


async def test_a_refused_payload_refuses_the_whole_call() -> None:
    net = MemoryNetwork(seed=13)
    async with Cluster(net, names(1)) as nodes:
        node = nodes["peer1"]
        with pytest.raises(PayloadTooLargeError):
            await node.broadcast_many([b"ok", b"x" * (2 << 20)], timeout=WAIT_S)
        with pytest.raises(TypeError):
            await node.broadcast_many([b"ok", "text"], timeout=WAIT_S)  # type: ignore[list-item]
        assert node.status().pending == 0 and node.status().delivered == 0
    with pytest.raises(NotRunningError):
        await node.broadcast_many([b"late"])


async def test_without_a_quorum_the_call_times_out_and_nothing_is_withdrawn() -> None:
    net = MemoryNetwork(seed=14)
    members = names(3)
    net.partition(*([m] for m in members))
    async with Cluster(net, members) as nodes:
        p1 = nodes["peer1"]
        with pytest.raises(QuorumTimeoutError):
            await p1.broadcast_many([b"a", b"b"], timeout=0.05)
        net.heal()
        delivered = await take(p1, 2)
        assert sorted(d.payload for d in delivered) == [b"a", b"b"]
