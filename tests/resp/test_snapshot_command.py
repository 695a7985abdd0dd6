"""``PAXOS.SNAPSHOT`` on a node that is behind: it answers with a state holding every write
acknowledged before the command arrived, not with what the node happened to have applied.

Three nodes on an in-memory network; the node asked is cut off from the
other two while they acknowledge writes, and is asked before the network
heals, so only the command's read barrier can bring those writes into its
answer.
"""

from __future__ import annotations

import asyncio

from paxostob import MemoryNetwork, TotalOrderBroadcast
from paxostob.apps.broadcast_log import BroadcastLog
from paxostob.apps.kv import KeyValueStore
from paxostob.apps.tagged import TaggedStateMachine
from paxostob.kv.state_machine import KvStateMachine
from paxostob.resp.commands import NodeCommands
from paxostob.resp.server import Connection

MEMBERS = ["n1", "n2", "n3"]
WRITES = 50
TIMEOUT_S = 20.0


def restored_keys(state: bytes, keys: list[bytes]) -> list[object]:
    kv = KvStateMachine()
    TaggedStateMachine({b"K": kv}, observer=BroadcastLog()).restore(state)
    [values] = kv.read([[b"MGET", *keys]])
    assert isinstance(values, list)
    return list(values)


async def test_a_node_cut_off_while_others_acknowledged_writes_snapshots_them_all() -> None:
    net = MemoryNetwork(seed=7)
    tobs: dict[str, TotalOrderBroadcast] = {}
    kvs: dict[str, KeyValueStore] = {}
    logs: dict[str, BroadcastLog] = {}
    for m in MEMBERS:
        logs[m], machine = BroadcastLog(), KvStateMachine()
        tobs[m] = TotalOrderBroadcast(
            net.transport(m),
            MEMBERS,
            state_machine=TaggedStateMachine({b"K": machine}, observer=logs[m]),
        )
        kvs[m] = KeyValueStore(tobs[m], machine=machine, tag=b"K")
    for tob in tobs.values():
        await tob.start()
    try:
        await asyncio.wait_for(kvs["n1"].put(b"warm", b"up"), TIMEOUT_S)
        for m in MEMBERS:  # every node knows the leader and applied the first write
            assert await asyncio.wait_for(kvs[m].get(b"warm"), TIMEOUT_S) == b"up"
        leader = tobs["n1"].leader
        assert leader is not None
        behind = next(m for m in MEMBERS if m != leader)
        majority = [m for m in MEMBERS if m != behind]
        net.partition(majority, [behind])
        keys = [f"k{i}".encode() for i in range(WRITES)]
        for key in keys:
            await asyncio.wait_for(kvs[leader].put(key, key), TIMEOUT_S)
        assert tobs[behind].leader == leader, "still knows the leader: the command is taken"
        commands = NodeCommands(tobs[behind], logs[behind], node_id=behind, kv=kvs[behind])
        reply = commands.dispatch(Connection(1, "test"), [b"PAXOS.SNAPSHOT"])
        assert asyncio.isfuture(reply) or asyncio.iscoroutine(reply), reply
        net.heal()
        answer = await asyncio.wait_for(reply, TIMEOUT_S)
        assert isinstance(answer, list) and len(answer) == 3, answer
        position, clock_ms, state = answer
        assert isinstance(state, bytes) and isinstance(position, int) and isinstance(clock_ms, int)
        assert restored_keys(state, keys) == keys, "writes acknowledged before it are missing"
        assert position >= WRITES + 1 and clock_ms > 0
    finally:
        for tob in tobs.values():
            await tob.close()
