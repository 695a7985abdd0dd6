"""A snapshot encoded in steps (``snapshot_copy``) is exactly the state at its slot.

The node copies the state machine when it decides to snapshot, goes on
applying deliveries while the copy is encoded, and compacts only the log
through the copy's slot. Entries applied after the copy must not be in the
snapshot, and a node restored from it must replay them from its log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from paxostob import LogConfig, TotalOrderBroadcast
from paxostob.core.snapshot import decode_meta
from paxostob.node.tob import CopyingStateMachine

from .test_tob_compaction import MEMBERS, TICK, WAIT_S, Group, ListMachine, broadcast_many


class SteppedListMachine(ListMachine):
    """A ``ListMachine`` snapshotted in steps; the test says when encoding may finish."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = False
        self.copies: list[int] = []  # how many items each copy held
        self.encoded = asyncio.Event()
        self.steps = 0

    def snapshot_copy(self) -> Callable[[], bytes | None]:
        items = list(self.items)
        self.copies.append(len(items))

        def step() -> bytes | None:
            self.steps += 1
            if self.hold:
                return None
            self.hold = True  # hold the next copy: the test looks at this one
            self.encoded.set()
            return json.dumps(items).encode()

        return step


def stepped_node(g: Group, m: str, sm: SteppedListMachine, entries_max: int) -> TotalOrderBroadcast:
    g.transport[m] = g.net.transport(m)
    g.sm[m] = sm
    g.node[m] = TotalOrderBroadcast(
        g.transport[m],
        MEMBERS,
        tick_interval_s=TICK,
        config=g.config,
        storage=g.storage[m],
        state_machine=sm,
        snapshot_entries_max=entries_max,
        bootstrap=m not in g.started,
    )
    g.started.add(m)
    return g.node[m]


async def test_a_snapshot_in_steps_holds_exactly_the_entries_through_its_slot() -> None:
    g = Group(seed=5, config=LogConfig(batch_count_max=4), snapshot_entries_max=10_000)
    sm = SteppedListMachine()
    _: CopyingStateMachine = sm  # mypy checks it implements the protocol
    sm.hold = True
    node = stepped_node(g, "peer1", sm, entries_max=10)
    await node.start()
    for m in ("peer2", "peer3"):
        await g.start(m)
    try:
        await broadcast_many(node, "a", 10)
        await sm.until(lambda _: len(sm.copies) == 1)
        replica = node._replica
        k = sm.copies[0]
        assert k >= 10 and replica.log.compacted_through == 0  # copied, not yet compacted
        # Entries applied while the copy is being encoded (in steps).
        await broadcast_many(node, "b", 25)
        await sm.until(lambda s: len(s.items) == 35)
        assert sm.steps > 1 and sm.copies == [k]  # one snapshot in flight at a time
        assert replica.log.compacted_through == 0

        sm.hold = False
        await asyncio.wait_for(sm.encoded.wait(), WAIT_S)
        # The compaction is queued to the driver before this broadcast.
        await node.broadcast(b"c0", timeout=WAIT_S)
        snap = replica.log.snapshot
        assert snap is not None and snap.slot == replica.log.compacted_through > 0
        items = [tuple(i) for i in json.loads(snap.data)]
        assert items == sm.items[:k]  # nothing applied after the copy
        meta = decode_meta(snap.meta)
        assert meta.slot == snap.slot and meta.delivered == k
        # Only the log through the copy's slot is dropped.
        assert all(s > snap.slot for s in replica.log.entries)
        assert snap.slot + 1 in replica.log.entries or snap.slot == replica.log.decided_through
        before = list(sm.items)
        assert len(sm.copies) == 2  # the next snapshot is under way (held): close stops it

        # Restored from that snapshot, the node replays the rest from its log.
        await g.crash("peer1")
        again = SteppedListMachine()
        restarted = stepped_node(g, "peer1", again, entries_max=10_000)
        await restarted.start()
        await again.until(lambda s: len(s.items) >= len(before))
        assert again.restores == 1
        assert again.items == before
    finally:
        await g.close()


async def test_a_state_machine_without_snapshot_copy_is_snapshotted_at_once() -> None:
    g = Group(seed=6, config=LogConfig(batch_count_max=4), snapshot_entries_max=10)
    for m in MEMBERS:
        await g.start(m)
    try:
        await broadcast_many(g.node["peer1"], "a", 30)
        await g.sm["peer1"].until(lambda s: len(s.items) >= 30)
        replica = g.node["peer1"]._replica
        snap = replica.log.snapshot
        assert snap is not None
        delivered = decode_meta(snap.meta).delivered
        assert [tuple(i) for i in json.loads(snap.data)] == g.sm["peer1"].items[:delivered]
    finally:
        await g.close()
