"""The runtime logs every leader change at INFO and counts them (``leader_changes``).

Three nodes on a ``MemoryNetwork``; the leader is closed (a crash, for the
others) and a survivor's broadcast resolves only once a new leader was
elected. No sleeping: every wait is a broadcast with a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from paxostob import MemoryNetwork, TotalOrderBroadcast

TICK = 0.002
WAIT_S = 10.0


async def test_a_leader_change_is_logged_with_old_and_new_leader_and_ballot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="paxostob.node")
    net = MemoryNetwork(seed=5)
    members = ["p1", "p2", "p3"]
    nodes = {
        m: TotalOrderBroadcast(net.transport(m), members, tick_interval_s=TICK, seed=i)
        for i, m in enumerate(members)
    }
    for node in nodes.values():
        await node.start()
    try:
        await asyncio.wait_for(nodes["p1"].broadcast(b"first"), WAIT_S)
        old = nodes["p1"].leader
        assert old is not None
        old_ballot = nodes[old].status().ballot
        survivors = [m for m in members if m != old]
        assert all(nodes[m].leader_changes == 0 for m in members)
        await nodes[old].close()
        await asyncio.wait_for(nodes[survivors[0]].broadcast(b"second"), WAIT_S)
        new = nodes[survivors[0]].leader
        assert new in survivors
        new_ballot = nodes[new].status().ballot
        assert new_ballot > old_ballot
        assert nodes[new].status().elections >= 1
        lines = [r.getMessage() for r in caplog.records if "leader is" in r.getMessage()]
        for m in survivors:
            mine = [line for line in lines if line.startswith(f"{m}: ")]
            # First the leader it found, then (last) the one that replaced it.
            assert mine[0] == (
                f"{m}: leader is {old} at ballot {old_ballot} (was none at ballot -; "
                "0 leader changes seen)"
            )
            assert re.fullmatch(
                rf"{m}: leader is {new} at ballot {re.escape(str(new_ballot))} \(was \S+ at "
                rf"ballot \S+; {nodes[m].leader_changes} leader changes seen\)",
                mine[-1],
            ), mine
            assert nodes[m].leader_changes >= 1
            assert f"(was {old} at ballot {old_ballot}; 1 leader changes seen)" in "\n".join(mine)
    finally:
        for node in nodes.values():
            await node.close()
