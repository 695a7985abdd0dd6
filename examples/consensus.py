"""Three nodes each propose a value for one consensus instance; all decide the same.

The decided value is one of the proposals (validity), the same at every node
(agreement). Run with ``python examples/consensus.py``.
"""

from __future__ import annotations

import asyncio

from paxostob import Consensus, MemoryNetwork

MEMBERS = ["peer1", "peer2", "peer3"]
#: Everything below finishes in milliseconds; this only bounds a bug.
TIMEOUT_S = 10.0


async def main() -> None:
    net = MemoryNetwork()
    nodes = [Consensus(net.transport(m), MEMBERS, instance="config-v7") for m in MEMBERS]
    for node in nodes:
        await node.start()
    try:
        proposals = [f"value of {node.address}".encode() for node in nodes]
        decisions = await asyncio.gather(
            *(
                node.propose(value, timeout=TIMEOUT_S)
                for node, value in zip(nodes, proposals, strict=True)
            )
        )
    finally:
        for node in nodes:
            await node.close()

    for node, proposed, decided in zip(nodes, proposals, decisions, strict=True):
        print(f"{node.address} proposed {proposed!r}, decided {decided!r}")
    agreed = len(set(decisions)) == 1
    print("all three decided the same value:", agreed)
    if not agreed:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
