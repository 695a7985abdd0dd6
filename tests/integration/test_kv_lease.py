"""``paxostob serve --reads lease``: a 3-process cluster serves point reads from the leader's lease.

Every node runs with leader leases. The leader answers GETs from its lease
with no round (INFO ``reads_leased`` grows), followers ask the leader, and
every read sees the last write acknowledged before it was sent, at every
node, also after the leader is killed with SIGKILL and another takes over
(the survivors' guards hold the new election back until the old lease ran
out).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster, Node, started_cluster

WAIT_S = 30.0
WRITES = 30


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with started_cluster(tmp_path, extra_args=("--reads", "lease")) as c:
        yield c


def info(node: Node) -> dict[str, object]:
    reply: dict[str, object] = node.call("INFO", "paxos")
    return reply


def leader_of(nodes: dict[str, Node]) -> str:
    # A broadcast from each node is delivered there: each knows the leader now.
    for node in nodes.values():
        node.call("PAXOS.BROADCAST", f"hello from {node.node_id}", timeout_s=WAIT_S)
    leaders = [i for i, n in nodes.items() if info(n)["role"] == "leader"]
    assert len(leaders) == 1, leaders
    return leaders[0]


def test_lease_reads_are_served_with_no_round_and_see_every_acknowledged_write(
    cluster: Cluster,
) -> None:
    nodes = cluster.nodes
    assert {i: info(n)["read_mode"] for i, n in nodes.items()} == dict.fromkeys(nodes, "lease")
    leader = leader_of(nodes)
    before = int(str(info(nodes[leader])["reads_leased"]))
    for k in range(WRITES):
        writer = nodes[str(1 + k % 3)]
        assert writer.call("SET", "counter", k) is True
        for node in nodes.values():  # the write was acknowledged: every read sees it
            assert node.call("GET", "counter") == str(k).encode(), (k, node.node_id)
    leased = int(str(info(nodes[leader])["reads_leased"])) - before
    assert leased > 0  # the leader's GETs (one per write) took no round

    # The leader dies; the survivors elect another once their guards lapse.
    nodes[leader].kill9()
    survivors = {i: n for i, n in nodes.items() if i != leader}
    for k in range(WRITES, WRITES + 5):
        writer = next(iter(survivors.values()))
        assert writer.call("SET", "counter", k, timeout_s=WAIT_S) is True
        for node in survivors.values():
            assert node.call("GET", "counter", timeout_s=WAIT_S) == str(k).encode()
    assert leader_of(survivors) != leader
