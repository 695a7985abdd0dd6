"""The Go original's KVS example: a key-value store replicated by total-order broadcast.

Three nodes on an in-memory network, each with a ``KeyValueStore``: a put on
one node, a get on another. The Go example applied each delivered put to a
local map and answered gets from that map, so a get on another node could
miss a put that had already returned. Here every command, gets included, goes
through the log, so a get on any node sees every put that returned before it
was issued (linearizable), with no waiting. Run with ``python examples/kvs.py``.
"""

from __future__ import annotations

import asyncio

from paxostob import KeyValueStore, MemoryNetwork, TotalOrderBroadcast

MEMBERS = ["peer1", "peer2", "peer3"]
#: Everything below finishes in milliseconds; this only bounds a bug.
TIMEOUT_S = 10.0


async def main() -> None:
    net = MemoryNetwork()
    nodes = [TotalOrderBroadcast(net.transport(m), MEMBERS) for m in MEMBERS]
    # A store attaches its state machine to its node: create it before start().
    kv1, kv2, kv3 = (KeyValueStore(node, timeout_s=TIMEOUT_S) for node in nodes)
    for node in nodes:
        await node.start()
    try:
        await kv1.put(b"greeting", b"hello, paxos!")  # returns once applied on peer1
        print("peer1: put greeting = 'hello, paxos!'")

        value = await kv2.get(b"greeting")
        print(f"peer2: get greeting -> {value!r}")

        # Any Redis string command; concurrent INCRs from every node never collide.
        counts = await asyncio.gather(*(kv.command("INCR", "visits") for kv in (kv1, kv2, kv3)))
        print(f"INCR visits on peer1, peer2, peer3 -> {counts}")

        deleted = await kv3.delete(b"greeting")
        after = await kv1.get(b"greeting")
        print(f"peer3: delete greeting -> {deleted}; peer1: get greeting -> {after!r}")
    finally:
        for node in nodes:
            await node.close()

    distinct = sorted(c for c in counts if isinstance(c, int))
    if value != b"hello, paxos!" or distinct != [1, 2, 3] or after is not None:
        raise SystemExit("the replicas disagree")


if __name__ == "__main__":
    asyncio.run(main())
