"""A node whose data directory was wiped, with real ``paxostob serve`` processes.

The red-team sequence that lost acknowledged writes: node 3 down; writes
acknowledged by nodes {1, 2}; node 1 stopped and its directory deleted; node
2 killed; nodes 1 (empty) and 3 (stale) started. An empty node 1 must refuse
to start (it would form a majority with node 3 that knows none of the
writes); once node 2 is back, {2, 3} serve every acknowledged write.

And a store made again (``--bootstrap`` on a wiped node, the operator's
explicit choice) draws a new incarnation, so the rebuilt node's proposal ids
never repeat its earlier life's: its writes reach every node.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster, Node, started_cluster
from .kv_client import await_leader

KEYS = 100
EXIT_TIMEOUT_S = 30.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with started_cluster(tmp_path) as c:
        yield c


def exit_code(node: Node) -> int:
    assert node.proc is not None
    try:
        return node.proc.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"node {node.node_id} kept running on an empty directory") from None


def test_a_wiped_node_refuses_to_start_and_no_acknowledged_write_is_lost(
    cluster: Cluster,
) -> None:
    n1, n2, n3 = (cluster.nodes[i] for i in ("1", "2", "3"))
    n3.stop()
    await_leader(n1.resp_port, None)
    for k in range(KEYS):
        assert n1.call("SET", f"key{k}", f"value{k}") is True
    n1.stop()
    shutil.rmtree(n1.data_dir)
    n2.kill9()
    n1.start()  # not its first start: no --bootstrap
    n3.start()
    assert exit_code(n1) != 0
    refusal = "\n".join(n1.lines)
    assert "has no store here" in refusal and "own latest directory" in refusal, refusal
    n3.wait_ready()
    n2.start()
    n2.wait_ready()
    for node in (n2, n3):
        await_leader(node.resp_port, None)
        values = node.call("MGET", *[f"key{k}" for k in range(KEYS)])
        assert values == [f"value{k}".encode() for k in range(KEYS)], node.node_id


def test_a_store_made_again_does_not_reuse_proposal_ids(cluster: Cluster) -> None:
    n1, n2, n3 = (cluster.nodes[i] for i in ("1", "2", "3"))
    await_leader(n1.resp_port, None)
    # Enough writes through node 1 that a new life reusing its ids would collide.
    for k in range(20):
        assert n1.call("SET", f"old{k}", "1") is True
    n1.stop()
    shutil.rmtree(n1.data_dir)
    n1.start(bootstrap=True)  # the operator makes its store again
    n1.wait_ready()
    await_leader(n1.resp_port, None)
    for k in range(20):
        assert n1.call("SET", f"new{k}", f"v{k}", timeout_s=20) is True
    for node in (n1, n2, n3):
        got = node.call("MGET", *[f"new{k}" for k in range(20)])
        assert got == [f"v{k}".encode() for k in range(20)], node.node_id
