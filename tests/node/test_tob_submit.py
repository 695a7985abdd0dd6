"""``TotalOrderBroadcast.submit``: a proposal resolves with its own node's ``apply`` result.

Each node's state machine answers a delivery with something only that node
can know (its own name and the count it applied so far); each caller must
get the answer of *its* node for *its* payload, never another node's or
another payload's.
"""

from __future__ import annotations

import asyncio

import pytest

from paxostob import ConfigurationError, Delivery, MemoryNetwork, TotalOrderBroadcast

MEMBERS = ["n1", "n2", "n3"]
TICK_S = 0.002
TIMEOUT_S = 20.0
PER_NODE = 20


class Answering:
    """Answers each delivery with (this node, deliveries applied here so far, the payload)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.applied = 0

    def apply(self, delivery: Delivery) -> tuple[str, int, bytes]:
        self.applied += 1
        return (self.name, self.applied, delivery.payload)

    def snapshot(self) -> bytes:
        return str(self.applied).encode()

    def restore(self, data: bytes) -> None:
        self.applied = int(data)


async def test_each_submit_resolves_with_its_own_nodes_result_for_its_payload() -> None:
    net = MemoryNetwork(seed=21, loss=0.05)
    tobs = {
        m: TotalOrderBroadcast(
            net.transport(m), MEMBERS, tick_interval_s=TICK_S, state_machine=Answering(m)
        )
        for m in MEMBERS
    }
    for tob in tobs.values():
        await tob.start()
    try:
        calls = [(m, f"{m}-{i}".encode()) for m in MEMBERS for i in range(PER_NODE)]
        results = await asyncio.gather(
            *(tobs[m].submit(payload, timeout=TIMEOUT_S) for m, payload in calls)
        )
        positions = set()
        for (m, payload), result in zip(calls, results, strict=True):
            assert isinstance(result, tuple), result
            node, position, echoed = result
            assert (node, echoed) == (m, payload)
            positions.add(position)
        # Every delivery has its own position: no two callers got the same apply's result.
        assert len(positions) == len(calls)
    finally:
        for tob in tobs.values():
            await tob.close()


async def test_submit_needs_a_state_machine() -> None:
    net = MemoryNetwork(seed=22)
    async with TotalOrderBroadcast(net.transport("n1"), ["n1"], tick_interval_s=TICK_S) as tob:
        with pytest.raises(ConfigurationError, match="needs a state_machine"):
            await tob.submit(b"x")
        assert (await tob.broadcast(b"y", timeout=TIMEOUT_S)).payload == b"y"
