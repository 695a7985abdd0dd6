"""A member whose wall clock is two days ahead, in-process: its writes and reads expire nothing.

Three ``KeyValueStore`` nodes on a ``MemoryNetwork``; ``n3`` reads a wall
clock two days ahead (``TotalOrderBroadcast(wall_clock=...)``) and joins once
``n1``/``n2`` have a leader, so it follows. Keys with a TTL set through
``n1`` must survive a SET and a GET through ``n3`` with their TTLs intact,
on every node. (``tests/integration/test_clock_skew.py`` does the same with
real processes under libfaketime.)
"""

from __future__ import annotations

import time

from paxostob import MemoryNetwork, TotalOrderBroadcast
from paxostob.apps.kv import KeyValueStore
from paxostob.kv.replies import OK

MEMBERS = ["n1", "n2", "n3"]
TICK_S = 0.002
TIMEOUT_S = 20.0
DAY_S = 86_400.0
TTL_S = 100


def two_days_ahead() -> float:
    return time.time() + 2 * DAY_S


async def test_set_and_get_through_a_node_two_days_ahead_expire_nothing() -> None:
    net = MemoryNetwork(seed=7)
    transports = {m: net.transport(m) for m in MEMBERS}
    tobs = {
        m: TotalOrderBroadcast(
            transports[m],
            MEMBERS,
            tick_interval_s=TICK_S,
            wall_clock=two_days_ahead if m == "n3" else time.time,
        )
        for m in MEMBERS
    }
    kv = {m: KeyValueStore(tobs[m], timeout_s=TIMEOUT_S) for m in MEMBERS}
    try:
        await tobs["n1"].start()
        await tobs["n2"].start()
        await kv["n1"].put(b"warm", b"1")  # resolves once n1/n2 have a leader
        await tobs["n3"].start()
        for i in range(5):
            assert await kv["n1"].command("SET", f"ttl{i}", "v", "EX", TTL_S) == OK
        # The skewed node proposes a write (forwarded) and a read barrier.
        assert await kv["n3"].command("SET", "from-n3", "x") == OK
        assert await kv["n3"].get(b"ttl0") == b"v"
        assert tobs["n3"].leader in ("n1", "n2"), "n3 led: the test needs it to follow"
        for m in MEMBERS:
            await kv[m].put(b"sync", m.encode())  # applied on m: m's state is current
            for i in range(5):
                ttl = await kv[m].command("TTL", f"ttl{i}")
                assert isinstance(ttl, int) and TTL_S - 10 <= ttl <= TTL_S, (m, i, ttl)
            assert await kv[m].get(b"from-n3") == b"x"
    finally:
        for m in MEMBERS:
            await tobs[m].close()
            await transports[m].close()
