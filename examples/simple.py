"""The Go original's README example, in paxostob's API.

Two peers on an in-memory network: the sender broadcasts "hello, paxos!" and
the receiver delivers it. Run with ``make run`` or ``python examples/simple.py``.
"""

from __future__ import annotations

import asyncio

from paxostob import MemoryNetwork, TotalOrderBroadcast

#: Everything below finishes in milliseconds; this only bounds a bug.
TIMEOUT_S = 10.0


async def main() -> None:
    # Each peer needs its own transport; the network connects them all.
    net = MemoryNetwork()
    members = ["peer1", "peer2"]

    async with (
        TotalOrderBroadcast(net.transport("peer1"), members) as sender,
        TotalOrderBroadcast(net.transport("peer2"), members) as receiver,
    ):
        # Broadcast a message (resolves once it is delivered at the sender too).
        await sender.broadcast(b"hello, paxos!", timeout=TIMEOUT_S)

        # Receive the delivered message.
        delivered = await asyncio.wait_for(receiver.deliver(), TIMEOUT_S)
        print("Delivered:", delivered)


if __name__ == "__main__":
    asyncio.run(main())
