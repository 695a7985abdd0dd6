"""A node's own proposal that it learns only inside a peer's snapshot has no result there.

Replies travel with deliveries (``TotalOrderBroadcast.submit`` resolves with
what the node's state machine returned), so a node that never applied its own
entry (it lagged behind, and the others compacted their logs past it) has no
reply to give. It must say so, clearly and retryably, and never answer with a
made-up or stale reply; the write itself took effect exactly once.

Three in-memory nodes; a follower goes deaf (it still sends, hears nothing)
after it knows the leader, proposes (its proposals reach the leader and are
chosen), the other two write on and compact, then it hears again and catches
up by a snapshot that covers its own proposals.
"""

from __future__ import annotations

import asyncio

from paxostob import (
    AlreadyDeliveredError,
    MemoryNetwork,
    ResultUnknownError,
    TotalOrderBroadcast,
)
from paxostob.apps.broadcast_log import TAG_BROADCAST, BroadcastLog
from paxostob.apps.kv import KeyValueStore
from paxostob.apps.tagged import TaggedStateMachine
from paxostob.core.messages import Envelope
from paxostob.kv.replies import Error
from paxostob.kv.state_machine import KvStateMachine
from paxostob.resp.commands import NodeCommands
from paxostob.resp.server import Connection
from paxostob.transport.memory import MemoryTransport

MEMBERS = ["n1", "n2", "n3"]
TICK_S = 0.002
TIMEOUT_S = 20.0
#: Writes the others make while the deaf node hears nothing: many times the
#: snapshot threshold, so their logs no longer hold the deaf node's entries.
WRITES_WHILE_DEAF = 60


class DeafTransport:
    """A memory transport that can stop hearing (it still sends): its node falls behind."""

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner = inner
        self.deaf = False

    @property
    def address(self) -> str:
        return self.inner.address

    def send(self, envelope: Envelope) -> None:
        self.inner.send(envelope)

    async def receive(self) -> Envelope:
        while True:
            envelope = await self.inner.receive()
            if not self.deaf:
                return envelope

    async def close(self) -> None:
        await self.inner.close()


async def test_an_own_entry_learned_in_a_snapshot_fails_with_result_unknown() -> None:
    net = MemoryNetwork(seed=11)
    transports = {m: DeafTransport(net.transport(m)) for m in MEMBERS}
    tobs: dict[str, TotalOrderBroadcast] = {}
    kvs: dict[str, KeyValueStore] = {}
    logs: dict[str, BroadcastLog] = {}
    for m in MEMBERS:
        logs[m], machine = BroadcastLog(), KvStateMachine()
        tobs[m] = TotalOrderBroadcast(
            transports[m],
            MEMBERS,
            tick_interval_s=TICK_S,
            state_machine=TaggedStateMachine({b"K": machine}, observer=logs[m]),
            snapshot_entries_max=5,
        )
        kvs[m] = KeyValueStore(tobs[m], machine=machine, tag=b"K", timeout_s=TIMEOUT_S)
    for tob in tobs.values():
        await tob.start()
    try:
        await asyncio.wait_for(kvs["n1"].put(b"warm", b"up"), TIMEOUT_S)
        for m in MEMBERS:  # every node knows the leader and applied the first write
            assert await asyncio.wait_for(kvs[m].get(b"warm"), TIMEOUT_S) == b"up"
        leader = tobs["n1"].leader
        assert leader is not None
        behind = next(m for m in MEMBERS if m != leader)
        assert tobs[behind].leader == leader
        transports[behind].deaf = True
        commands = NodeCommands(tobs[behind], logs[behind], node_id=behind, kv=kvs[behind])
        # Three proposals of the deaf node: a RESP write, a KeyValueStore call, a broadcast.
        resp_reply = commands.dispatch(Connection(1, "test"), [b"SET", b"from-behind", b"resp"])
        assert asyncio.isfuture(resp_reply), resp_reply
        incr = asyncio.ensure_future(kvs[behind].command("INCR", "counter"))
        raw = asyncio.ensure_future(
            tobs[behind].broadcast(TAG_BROADCAST + b"raw", timeout=TIMEOUT_S)
        )
        # The others choose them (it still sends) and write on, compacting past them.
        for i in range(WRITES_WHILE_DEAF):
            await asyncio.wait_for(kvs[leader].put(f"k{i}".encode(), b"v"), TIMEOUT_S)
        assert await asyncio.wait_for(kvs[leader].get(b"from-behind"), TIMEOUT_S) == b"resp"
        assert await asyncio.wait_for(kvs[leader].get(b"counter"), TIMEOUT_S) == b"1"
        assert not incr.done() and not raw.done(), "it heard nothing: nothing resolved yet"
        transports[behind].deaf = False
        # The RESP client gets the retryable reply Redis clients always got for it.
        assert await asyncio.wait_for(resp_reply, TIMEOUT_S) == Error(
            "TRYAGAIN applied elsewhere; the reply was not kept"
        )
        try:
            await asyncio.wait_for(incr, TIMEOUT_S)
        except ResultUnknownError as e:
            assert "applied, result not known here" in str(e)
        else:
            raise AssertionError("INCR resolved with a reply this node never computed")
        try:
            await asyncio.wait_for(raw, TIMEOUT_S)
        except ResultUnknownError:
            raise AssertionError("broadcast() raises the base class, as before") from None
        except AlreadyDeliveredError:
            pass
        else:
            raise AssertionError("broadcast resolved with a Delivery this node never saw")
        # Each took effect exactly once, and the node's state has them.
        assert await asyncio.wait_for(kvs[behind].get(b"from-behind"), TIMEOUT_S) == b"resp"
        assert await asyncio.wait_for(kvs[behind].command("GET", "counter"), TIMEOUT_S) == b"1"
        # And it answers its next command with its own reply again.
        assert await asyncio.wait_for(kvs[behind].command("INCR", "counter"), TIMEOUT_S) == 2
    finally:
        for tob in tobs.values():
            await tob.close()
