"""KvStateMachine under real total-order broadcast: three in-memory nodes, concurrent clients.

Every client's INCR reply comes from its own node (what its ``submit``
resolves with: the replies its node's state machine returned); together they
must be exactly 1..N, as a single Redis would answer, and every node must end
in the same state, snapshots and compaction included.
"""

from __future__ import annotations

import asyncio

from paxostob import Delivery, LogConfig, MemoryNetwork, TotalOrderBroadcast
from paxostob.kv.commands import Entry, Op, encode_entry
from paxostob.kv.replies import OK, Reply
from paxostob.kv.state_machine import KvStateMachine

from .util import T0_MS

MEMBERS = ["n1", "n2", "n3"]
PER_NODE = 30
WAIT_S = 20.0


class WatchedKv(KvStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.applied = 0
        self.changed = asyncio.Event()

    def apply(self, delivery: Delivery) -> list[Reply]:
        replies = super().apply(delivery)
        self.applied += 1
        self.changed.set()
        return replies

    async def until_applied(self, count: int) -> None:
        async def wait() -> None:
            while self.applied < count:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), WAIT_S)


async def test_replicas_agree_and_a_counter_is_linearizable() -> None:
    net = MemoryNetwork(seed=3)
    machines = {m: WatchedKv() for m in MEMBERS}
    nodes = {
        m: TotalOrderBroadcast(
            net.transport(m),
            MEMBERS,
            tick_interval_s=0.002,
            config=LogConfig(batch_count_max=8),
            state_machine=machines[m],
            snapshot_entries_max=10,
        )
        for m in MEMBERS
    }
    for node in nodes.values():
        await node.start()
    try:

        async def client(m: str, i: int) -> int:
            entry = Entry(
                T0_MS + i, (Op.of("INCR", "counter"), Op.of("SET", f"{m}:{i}", i, "PX", 50))
            )
            replies = await nodes[m].submit(encode_entry(entry), timeout=WAIT_S)
            assert isinstance(replies, list) and replies[1] == OK
            assert isinstance(replies[0], int)
            return replies[0]

        counts = await asyncio.gather(*(client(m, i) for m in MEMBERS for i in range(PER_NODE)))
        total = len(MEMBERS) * PER_NODE
        assert sorted(counts) == list(range(1, total + 1))
        for machine in machines.values():
            await machine.until_applied(total)
        snapshots = {m: machines[m].snapshot() for m in MEMBERS}
        assert len(set(snapshots.values())) == 1
        [reply] = machines["n1"].machine.apply(Entry(0, (Op.of("GET", "counter"),)))
        assert reply == str(total).encode()
    finally:
        for node in nodes.values():
            await node.close()
