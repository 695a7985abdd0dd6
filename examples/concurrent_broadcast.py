"""Three nodes broadcast concurrently; all three deliver the same sequence.

Each node broadcasts ``MESSAGES_PER_NODE`` messages at once over a network
that loses, duplicates and reorders messages; then every node's delivery
sequence is compared. Run with ``python examples/concurrent_broadcast.py``.

(Not ``concurrent.py``: a script's directory comes first on ``sys.path``, and
a file of that name would shadow the standard library's ``concurrent``
package, which asyncio imports.)
"""

from __future__ import annotations

import asyncio

from paxostob import Delivery, MemoryNetwork, TotalOrderBroadcast

MEMBERS = ["peer1", "peer2", "peer3"]
MESSAGES_PER_NODE = 20
#: Everything below finishes well within a second; this only bounds a bug.
TIMEOUT_S = 10.0


async def collect(node: TotalOrderBroadcast, count: int) -> list[Delivery]:
    """The first ``count`` deliveries of ``node``, in its delivery order."""
    return [await node.deliver() for _ in range(count)]


async def main() -> None:
    # A mildly hostile network: 5 % loss, 5 % duplication, up to 2 ms delay (reorders).
    net = MemoryNetwork(seed=7, loss=0.05, duplicate=0.05, delay_s=(0.0, 0.002))
    nodes = [TotalOrderBroadcast(net.transport(m), MEMBERS, tick_interval_s=0.002) for m in MEMBERS]
    total = MESSAGES_PER_NODE * len(nodes)
    for node in nodes:
        await node.start()
    try:
        readers = [asyncio.ensure_future(collect(node, total)) for node in nodes]
        await asyncio.wait_for(
            asyncio.gather(
                *(
                    node.broadcast(f"{node.address}#{i}".encode())
                    for i in range(MESSAGES_PER_NODE)
                    for node in nodes
                )
            ),
            TIMEOUT_S,
        )
        sequences = await asyncio.wait_for(asyncio.gather(*readers), TIMEOUT_S)
    finally:
        for node in nodes:
            await node.close()

    for node, seq in zip(nodes, sequences, strict=True):
        head = " ".join(d.payload.decode() for d in seq[:8])
        print(f"{node.address} delivered {len(seq)} messages: {head} ...")
    identical = all(seq == sequences[0] for seq in sequences)
    print("all three delivery sequences are identical:", identical)
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
