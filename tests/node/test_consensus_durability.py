"""``Consensus`` on durable storage: a restarted node keeps its word and its decision.

Without storage a restarted node forgets what it promised and accepted: it
could then vote for a value against its own earlier votes. With ``storage``
or ``data_dir`` the promise and accepted value are saved before any message
that depends on them leaves, and a restart gives them back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from paxostob import Consensus, MemoryNetwork, StoreMissingError
from paxostob.core.types import ZERO_BALLOT
from paxostob.storage.memory import MemoryStorage

TICK = 0.002
MEMBERS = ["peer1", "peer2", "peer3"]


async def test_a_restarted_node_knows_its_decision_and_its_promise() -> None:
    net = MemoryNetwork(seed=11)
    storages = {m: MemoryStorage() for m in MEMBERS}
    nodes = {
        m: Consensus(
            net.transport(m), MEMBERS, tick_interval_s=TICK, storage=storages[m], bootstrap=True
        )
        for m in MEMBERS
    }
    for n in nodes.values():
        await n.start()
    try:
        decided = await nodes["peer1"].propose(b"v1", timeout=10)
        for n in nodes.values():
            assert await n.decided(timeout=10) == decided
        promised = nodes["peer3"]._replica.promised
        assert promised != ZERO_BALLOT
        await nodes["peer3"].close()
        storages["peer3"].crash()  # a power loss: only what was synced survives
        # Alone on the network: what it knows now comes from its disk.
        alone = MemoryNetwork(seed=12)
        again = Consensus(
            alone.transport("peer3"), MEMBERS, tick_interval_s=TICK, storage=storages["peer3"]
        )
        async with again:
            assert again._replica.promised == promised
            assert await again.decided(timeout=5) == decided
    finally:
        for n in nodes.values():
            await n.close()


async def test_an_accepted_value_is_on_disk_after_a_power_loss() -> None:
    # What peer2 accepted is what it must report to any later proposer.
    net = MemoryNetwork(seed=13)
    storage = MemoryStorage()
    node = Consensus(
        net.transport("peer2"), MEMBERS, tick_interval_s=TICK, storage=storage, bootstrap=True
    )
    proposer = Consensus(net.transport("peer1"), MEMBERS, tick_interval_s=TICK)
    async with node, proposer:
        assert await proposer.propose(b"first", timeout=10) == b"first"
        accepted = node._replica.accepted
        assert accepted is not None and accepted[1][0].payload == b"first"
    storage.crash()
    state = storage.open("default/default", "peer2")
    storage.close()
    assert [a.value for a in state.accepted] == [accepted[1]]


async def test_a_node_without_its_store_refuses_to_start(tmp_path: Path) -> None:
    net = MemoryNetwork(seed=14)
    c = Consensus(net.transport("peer1"), MEMBERS, data_dir=tmp_path / "gone")
    with pytest.raises(StoreMissingError, match="no store here"):
        await c.start()
    assert not (tmp_path / "gone" / "paxostob.log").exists()


async def test_a_data_dir_keeps_the_decision_across_processes_worth_of_objects(
    tmp_path: Path,
) -> None:
    net = MemoryNetwork(seed=15)
    nodes = [
        Consensus(
            net.transport(m), MEMBERS, tick_interval_s=TICK, data_dir=tmp_path / m, bootstrap=True
        )
        for m in MEMBERS
    ]
    for n in nodes:
        await n.start()
    try:
        decided = await nodes[0].propose(b"durable", timeout=10)
        await asyncio.wait_for(nodes[2].decided(), 10)
    finally:
        for n in nodes:
            await n.close()
    lonely = MemoryNetwork(seed=16)
    again = Consensus(lonely.transport("peer3"), MEMBERS, data_dir=tmp_path / "peer3")
    async with again:
        assert await again.decided(timeout=5) == decided
