"""``delivery_queue_max``: a node whose application takes nothing stops applying, and resumes.

On a fault-free ``MemoryNetwork``; nothing sleeps to wait: each wait is on a
future with a timeout, or a bounded yield to the loop.
"""

from __future__ import annotations

import asyncio

from paxostob import Delivery, MemoryNetwork, TotalOrderBroadcast

TICK = 0.002
#: Far above what this needs (tens of milliseconds): only bounds a bug.
WAIT_S = 10.0
QUEUE_MAX = 4
MESSAGES = 20


async def test_a_full_delivery_queue_holds_the_node_until_the_application_takes_deliveries() -> (
    None
):
    net = MemoryNetwork(seed=11)
    members = ["peer1", "peer2", "peer3"]
    nodes = [
        TotalOrderBroadcast(
            net.transport(m),
            members,
            tick_interval_s=TICK,
            delivery_queue_max=QUEUE_MAX if m == "peer3" else 1_000_000,
            seed=11,
        )
        for m in members
    ]
    for node in nodes:
        await node.start()
    try:
        p1, _, p3 = nodes
        # One at a time, so that peer3 learns them over many Readys (the
        # bound is checked before each: a Ready's deliveries all go in).
        sent = [await asyncio.wait_for(p1.broadcast(b"m%d" % i), WAIT_S) for i in range(MESSAGES)]
        # peer3's application took nothing: it filled its queue to the bound
        # and stopped there (bounded yields to the loop, no timed wait).
        for _ in range(100_000):
            if len(p3._queue) >= QUEUE_MAX:
                break
            await asyncio.sleep(0)
        for _ in range(100):
            await asyncio.sleep(0)
        assert QUEUE_MAX <= len(p3._queue) < MESSAGES, "not held at delivery_queue_max"

        # Taking deliveries lets it apply the rest, in order: half with
        # deliver(), the rest from the deliveries() iterator.
        got: list[Delivery] = []
        for _ in range(MESSAGES // 2):
            got.append(await asyncio.wait_for(p3.deliver(), WAIT_S))

        async def rest() -> None:
            async for d in p3.deliveries():
                got.append(d)
                if len(got) == MESSAGES:
                    return

        await asyncio.wait_for(rest(), WAIT_S)
        assert [(d.slot, d.payload) for d in got] == sorted((d.slot, d.payload) for d in sent)
    finally:
        for node in nodes:
            await node.close()
