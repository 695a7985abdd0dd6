"""Real node processes while strangers hold 200 handshakes open on one node's peer port.

Node 3 starts alone and is attacked (tests/transport/strangers.py: 200
connections from 127.0.0.1, silent, garbage or half a frame, each reopened
the moment it is closed, bounded in number). Then nodes 1 and 2 start: they
must connect to node 3 through the attack, which a broadcast at node 3
proves (node 3 has the highest id, so it dials nobody: without its peers'
connections it cannot broadcast). While the attack runs, node 3's RSS stays
bounded and it writes a bounded number of warning lines.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.transport.strangers import Attack

from .cluster import Cluster, Node

#: A broadcast through the attack must complete within this (it takes
#: milliseconds once the peers are connected; connecting is the point).
BROADCAST_WITHIN_S = 5.0
RSS_GROWTH_MAX_BYTES = 32 << 20
#: The node logs a stranger's address at most once per 10 s (the default),
#: and the attack is shorter than that: its first line and a few others.
WARNING_LINES_MAX = 4


class AttackThread:
    """``Attack`` on its own event loop, in a thread; bounded and stopped by the test."""

    def __init__(self, port: int, tasks: int, connections_max: int) -> None:
        self._args = (("127.0.0.1", port), tasks, connections_max)
        self.started = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._attack: Attack | None = None
        self._thread = threading.Thread(target=self._run, name="attack", daemon=True)

    def start(self, opened_before_return: int) -> None:
        self._opened_goal = opened_before_return
        self._thread.start()
        assert self.started.wait(30), "the attack did not start"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported to the test thread
            self.error = e
            self.started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        address, tasks, connections_max = self._args
        self._attack = Attack(address, tasks, connections_max)
        try:
            await self._attack.until_opened(self._opened_goal)
            self.started.set()
            await self._attack.stop.wait()
        finally:
            await self._attack.close()

    def snapshot(self) -> tuple[int, int, bool]:
        """(connections opened, open now, budget used up), read across threads."""
        a = self._attack
        assert a is not None
        return a.opened, a.live, a.exhausted

    def stop(self) -> None:
        if self._loop is not None and self._attack is not None:
            self._loop.call_soon_threadsafe(self._attack.stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the attack did not stop"


def rss_bytes(node: Node) -> int:
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/<pid>/status")


def broadcast_once(node: Node, payload: str, timeout_s: float) -> int | None:
    """PAXOS.BROADCAST at ``node``: its position, or None if no answer within ``timeout_s``.

    One attempt (redis-py retries a timed-out command by default).
    """
    client = redis.Redis(port=node.resp_port, socket_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
    try:
        pos, _ = client.execute_command("PAXOS.BROADCAST", payload)  # type: ignore[no-untyped-call]
    except (redis.TimeoutError, redis.ResponseError):
        return None
    finally:
        client.close()
    return int(pos)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def test_a_node_under_200_stranger_handshakes_still_connects_to_its_peers(
    cluster: Cluster,
) -> None:
    node1, node2, node3 = (cluster.nodes[i] for i in "123")
    node3.start()
    node3.wait_ready()
    logged_before = len(node3.lines)
    rss_before = rss_bytes(node3)
    raid = AttackThread(node3.peer_port, tasks=200, connections_max=50_000)
    raid.start(opened_before_return=400)
    try:
        node1.start()
        node2.start()
        node1.wait_ready()
        node2.wait_ready()
        t0 = time.monotonic()
        pos = broadcast_once(node3, "through-the-attack", BROADCAST_WITHIN_S)
        took = time.monotonic() - t0
        opened, live, exhausted = raid.snapshot()
        rss_during = rss_bytes(node3)
        print(
            f"broadcast at node 3 took {took:.3f} s; attack: {opened} connections, {live} open; "
            f"node 3 RSS {rss_before >> 20} -> {rss_during >> 20} MiB"
        )
        assert pos is not None, f"no broadcast at node 3 within {BROADCAST_WITHIN_S} s"
        assert live > 0 and not exhausted, "the attack was over before the broadcast"
        node1.call("PAXOS.WAIT", int(pos), 10_000)
    finally:
        raid.stop()
    assert rss_during - rss_before <= RSS_GROWTH_MAX_BYTES
    warnings = [line for line in node3.lines[logged_before:] if " WARNING " in line]
    print(f"node 3 wrote {len(warnings)} warning lines")
    assert len(warnings) <= WARNING_LINES_MAX, warnings[:10]
