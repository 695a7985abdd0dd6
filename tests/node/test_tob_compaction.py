"""Snapshots and compaction: bounded logs, snapshot transfer, restart from a snapshot."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from paxostob import Delivery, LogConfig, MemoryNetwork, TotalOrderBroadcast
from paxostob.node.tob import SNAPSHOT_BYTES_MAX_DEFAULT
from paxostob.storage.memory import MemoryStorage
from paxostob.transport.base import Transport

TICK = 0.002
MEMBERS = ["peer1", "peer2", "peer3"]
WAIT_S = 20.0


class ListMachine:
    """A state machine that remembers every delivery; snapshots as JSON."""

    def __init__(self) -> None:
        self.items: list[tuple[int, str, str]] = []
        self.restores = 0
        #: How many deliveries each snapshot covered.
        self.snapshots_at: list[int] = []
        self.changed = asyncio.Event()

    def apply(self, delivery: Delivery) -> None:
        assert not self.items or delivery.slot == self.items[-1][0] + 1, "gap or reorder"
        self.items.append((delivery.slot, delivery.sender, delivery.payload.decode()))
        self.changed.set()

    def snapshot(self) -> bytes:
        self.snapshots_at.append(len(self.items))
        return json.dumps(self.items).encode()

    def restore(self, data: bytes) -> None:
        self.items = [(s, n, p) for s, n, p in json.loads(data)]
        self.restores += 1
        self.changed.set()

    async def until(self, pred: Callable[[ListMachine], bool]) -> None:
        async def wait() -> None:
            while not pred(self):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), WAIT_S)


#: The snapshot thresholds are staggered by member, up to this factor (node/tob.py).
STAGGER_MAX = 1.5


class Group:
    def __init__(
        self,
        seed: int,
        config: LogConfig,
        snapshot_entries_max: int,
        snapshot_bytes_max: int = SNAPSHOT_BYTES_MAX_DEFAULT,
    ) -> None:
        self.net = MemoryNetwork(seed=seed)
        self.config = config
        self.snapshot_entries_max = snapshot_entries_max
        self.snapshot_bytes_max = snapshot_bytes_max
        self.storage = {m: MemoryStorage() for m in MEMBERS}
        self.transport: dict[str, Transport] = {}
        self.sm: dict[str, ListMachine] = {}
        self.node: dict[str, TotalOrderBroadcast] = {}
        #: Members started once: later starts find their store (no bootstrap).
        self.started: set[str] = set()

    async def start(self, m: str) -> None:
        self.transport[m] = self.net.transport(m)
        self.sm[m] = ListMachine()
        self.node[m] = TotalOrderBroadcast(
            self.transport[m],
            MEMBERS,
            tick_interval_s=TICK,
            config=self.config,
            storage=self.storage[m],
            state_machine=self.sm[m],
            bootstrap=m not in self.started,
            snapshot_entries_max=self.snapshot_entries_max,
            snapshot_bytes_max=self.snapshot_bytes_max,
        )
        await self.node[m].start()
        self.started.add(m)

    async def crash(self, m: str) -> None:
        await self.node[m].close()
        await self.transport[m].close()
        self.storage[m].crash()

    async def close(self) -> None:
        for n in self.node.values():
            await n.close()


@asynccontextmanager
async def running(g: Group) -> AsyncIterator[Group]:
    """Every member started; every node closed on exit."""
    for m in MEMBERS:
        await g.start(m)
    try:
        yield g
    finally:
        await g.close()


async def broadcast_many(node: TotalOrderBroadcast, prefix: str, count: int) -> None:
    sem = asyncio.Semaphore(20)

    async def one(i: int) -> None:
        async with sem:
            await node.broadcast(f"{prefix}{i}".encode(), timeout=WAIT_S)

    await asyncio.gather(*(one(i) for i in range(count)))


async def test_the_log_stays_bounded_under_traffic() -> None:
    g = Group(seed=1, config=LogConfig(batch_count_max=4), snapshot_entries_max=25)
    async with running(g):
        await broadcast_many(g.node["peer1"], "m", 300)
        for m in MEMBERS:
            await g.sm[m].until(lambda sm: len(sm.items) >= 300)
        assert g.sm["peer1"].items == g.sm["peer2"].items == g.sm["peer3"].items
        assert [s for s, _, _ in g.sm["peer1"].items] == list(range(1, 301))
        for m in MEMBERS:
            replica = g.node[m]._replica
            # >= 75 slots were decided (4 per slot at most); far fewer are kept
            # (the bound is staggered by member, up to 1.5 times).
            assert replica.log.compacted_through > 0
            assert len(replica.log.entries) <= 25 * STAGGER_MAX + replica.config.window_slots_max


async def test_members_compact_at_different_points_of_the_same_log() -> None:
    # All deliver the same log; with one threshold all would snapshot at the same
    # deliveries, and every follower's votes would wait for its snapshot at once.
    g = Group(seed=4, config=LogConfig(batch_count_max=1), snapshot_entries_max=20)
    async with running(g):
        for i in range(60):  # one at a time: a Ready delivers one entry
            await g.node["peer1"].broadcast(b"m%d" % i, timeout=WAIT_S)
        for m in MEMBERS:
            await g.sm[m].until(lambda sm: len(sm.items) >= 60)
        firsts = [g.sm[m].snapshots_at[0] for m in MEMBERS]
        assert len(set(firsts)) == len(MEMBERS), firsts
        # And each within its bound (20, 23, 26 entries: 1 + k / 2n times 20).
        for m, first in zip(MEMBERS, firsts, strict=True):
            assert first <= 20 * STAGGER_MAX + 1, (m, first)


async def test_the_log_stays_bounded_in_bytes_whatever_the_entry_count() -> None:
    # Few, large entries: the byte bound, not the entry bound, triggers compaction.
    g = Group(
        seed=3, config=LogConfig(batch_count_max=4), snapshot_entries_max=10**6,
        snapshot_bytes_max=4_000,
    )  # fmt: skip
    async with running(g):
        sem = asyncio.Semaphore(10)

        async def one(i: int) -> None:
            async with sem:
                await g.node["peer1"].broadcast(b"%03d" % i + b"x" * 497, timeout=WAIT_S)

        await asyncio.gather(*(one(i) for i in range(120)))  # 60,000 bytes
        for m in MEMBERS:
            await g.sm[m].until(lambda sm: len(sm.items) >= 120)
        for m in MEMBERS:
            replica = g.node[m]._replica
            assert replica.log.compacted_through > 0
            kept = sum(len(p.payload) for batch in replica.log.entries.values() for p in batch)
            # The (staggered) bound plus the Ready that crossed it (at most the 10 in flight).
            assert kept <= 4_000 * STAGGER_MAX + 10 * 500, kept


async def test_a_lagging_replica_catches_up_from_a_snapshot_in_chunks() -> None:
    # Tiny chunks: the snapshot must travel in many pieces.
    config = LogConfig(batch_count_max=4, snapshot_chunk_bytes_max=256)
    g = Group(seed=2, config=config, snapshot_entries_max=20)
    async with running(g):
        await broadcast_many(g.node["peer1"], "a", 10)
        await g.sm["peer3"].until(lambda sm: len(sm.items) >= 10)
        g.net.partition(["peer3"], ["peer1", "peer2"])
        await broadcast_many(g.node["peer1"], "b", 200)
        assert (
            g.node["peer1"]._replica.log.compacted_through
            > g.node["peer3"]._replica.log.decided_through
        )
        g.net.heal()
        await g.sm["peer3"].until(lambda sm: len(sm.items) >= 210)
        assert g.sm["peer3"].restores >= 1, "peer3 should have jumped via a snapshot"
        assert g.sm["peer3"].items[:210] == g.sm["peer1"].items[:210]
        # It is a full member again: its own broadcast is delivered everywhere.
        d = await g.node["peer3"].broadcast(b"back", timeout=WAIT_S)
        for m in MEMBERS:
            await g.sm[m].until(lambda sm: len(sm.items) >= d.slot)
            assert g.sm[m].items[d.slot - 1] == (d.slot, "peer3", "back")


async def test_a_restarted_replica_restores_its_snapshot_then_replays_the_rest() -> None:
    g = Group(seed=3, config=LogConfig(batch_count_max=4), snapshot_entries_max=30)
    async with running(g):
        await broadcast_many(g.node["peer2"], "m", 100)
        await g.sm["peer2"].until(lambda sm: len(sm.items) >= 100)
        before = list(g.sm["peer2"].items)
        assert g.node["peer2"]._replica.log.compacted_through > 0
        await g.crash("peer2")
        await g.start("peer2")
        # Restored from the snapshot, then the decided slots after it replayed.
        assert g.sm["peer2"].restores == 1
        await g.sm["peer2"].until(lambda sm: len(sm.items) >= 100)
        assert g.sm["peer2"].items[:100] == before
        d = await g.node["peer2"].broadcast(b"after", timeout=WAIT_S)
        assert d.slot == 101
