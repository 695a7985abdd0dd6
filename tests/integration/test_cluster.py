"""A 3-process cluster over TCP on 127.0.0.1, driven with redis-py: kill -9 and restart.

No acknowledged broadcast may be lost or duplicated, and every node must
deliver the same sequence. A broadcast is acknowledged when PAXOS.BROADCAST
answered with its position; one that got an error may or may not be
delivered (at most once), as the API documents.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from .cluster import LOGGED, Cluster, Node, started_cluster

WAIT_MS = 30_000


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with started_cluster(tmp_path) as c:
        yield c


def broadcast(node: Node, payload: str) -> int | None:
    """The position of ``payload``, or None when the node could not confirm it."""
    try:
        pos, sender = node.call("PAXOS.BROADCAST", payload)
    except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError):
        return None
    assert sender.decode() == node.node_id
    return int(pos)


def sequence(node: Node, through: int) -> list[tuple[int, str, str]]:
    """Every broadcast ``node`` delivered through position ``through``, in order."""
    node.call("PAXOS.WAIT", through, WAIT_MS, timeout_s=WAIT_MS / 1000 + 5)
    rows = node.call("PAXOS.READ", 1, 100_000)
    return [(int(p), s.decode(), m.decode()) for p, s, m in rows if int(p) <= through]


def check(cluster: Cluster, acked: dict[str, int], tried: set[str]) -> None:
    """Same order everywhere; every acked broadcast once at its position; nothing invented."""
    through = max(acked.values())
    seqs = {i: sequence(n, through) for i, n in cluster.nodes.items()}
    first = next(iter(seqs.values()))
    for i, seq in seqs.items():
        assert seq == first, f"node {i} delivered another sequence"
    positions = [p for p, _, _ in first]
    assert positions == sorted(set(positions)), "positions repeat or go back"
    payloads = [m for _, _, m in first]
    assert len(payloads) == len(set(payloads)), "a broadcast was delivered twice"
    assert set(payloads) <= tried, "a payload nobody broadcast was delivered"
    at = {m: p for p, _, m in first}
    for m, p in acked.items():
        assert at.get(m) == p, f"acknowledged {m!r} at {p} is not there"


def leader_of(cluster: Cluster, asked: str) -> str:
    leader = cluster.status(asked)[b"leader_id"]
    assert isinstance(leader, bytes) and leader, "no leader known"
    return leader.decode()


def test_broadcasts_from_every_node_are_delivered_everywhere_in_one_order(
    cluster: Cluster,
) -> None:
    acked: dict[str, int] = {}
    tried: set[str] = set()
    for k in range(30):
        node = cluster.nodes[str(k % 3 + 1)]
        payload = f"m{k}-from-{node.node_id}"
        tried.add(payload)
        pos = broadcast(node, payload)
        assert pos is not None, "a healthy cluster must acknowledge"
        acked[payload] = pos
    check(cluster, acked, tried)


def test_leader_killed_the_others_go_on_and_it_catches_up_after_restart(
    cluster: Cluster,
) -> None:
    acked: dict[str, int] = {}
    tried: set[str] = set()

    def send(node: Node, payload: str) -> None:
        tried.add(payload)
        pos = broadcast(node, payload)
        if pos is not None:
            acked[payload] = pos

    for k in range(10):
        send(cluster.nodes["1"], f"before{k}")
    leader = leader_of(cluster, "1")
    cluster.nodes[leader].kill9()
    others = [i for i in cluster.nodes if i != leader]
    for k in range(10):
        send(cluster.nodes[others[k % 2]], f"after{k}")
    assert sum(m.startswith("after") for m in acked) >= 8, "the survivors must make progress"
    assert leader_of(cluster, others[0]) != leader
    cluster.nodes[leader].start()
    cluster.nodes[leader].wait_ready()
    send(cluster.nodes[leader], "from-the-restarted-node")
    assert "from-the-restarted-node" in acked
    check(cluster, acked, tried)


def test_follower_killed_mid_traffic_and_restarted_loses_nothing(cluster: Cluster) -> None:
    leader = leader_of(cluster, "1") if cluster.status("1")[b"leader_id"] else None
    if leader is None:
        assert broadcast(cluster.nodes["1"], "warm-up") is not None
        leader = leader_of(cluster, "1")
    follower = next(i for i in cluster.nodes if i != leader)
    sender = next(i for i in cluster.nodes if i not in (leader, follower))
    acked: dict[str, int] = {}
    tried: set[str] = {"warm-up"}
    halfway = threading.Event()

    def traffic() -> None:
        for k in range(60):
            payload = f"t{k}"
            tried.add(payload)
            pos = broadcast(cluster.nodes[sender], payload)
            if pos is not None:
                acked[payload] = pos
            if k == 20:
                halfway.set()

    t = threading.Thread(target=traffic)
    t.start()
    assert halfway.wait(60)
    cluster.nodes[follower].kill9()
    cluster.nodes[follower].start()
    cluster.nodes[follower].wait_ready()
    t.join(120)
    assert not t.is_alive()
    assert len([m for m in acked if m.startswith("t")]) >= 55
    check(cluster, acked, tried)


def test_a_node_with_the_wrong_secret_cannot_join(tmp_path: Path) -> None:
    c = Cluster(tmp_path, secrets={"3": b"not-the-cluster-secret-at-all!!"})
    c.start()
    try:
        pos = broadcast(c.nodes["1"], "without-3")
        assert pos is not None, "1 and 2 are a quorum"
        assert sequence(c.nodes["2"], pos) == [(pos, "1", "without-3")]
        # Node 3 learned nothing and was refused by (or refused) its peers.
        st3 = c.status("3")
        assert st3[b"delivered"] == 0 and st3[b"applied"] == 0
        assert c.nodes["3"].call("PAXOS.READ", 1, 10) == []

        def refused() -> bool:
            logs = "\n".join(c.nodes["1"].lines + c.nodes["2"].lines + c.nodes["3"].lines)
            return "refused a connection" in logs or "bad proof" in logs.lower()

        # Node 3 dials again after a backoff: the refusal may come after the
        # broadcast above was committed (a bound, not a pause).
        with LOGGED:
            assert LOGGED.wait_for(refused, timeout=30), "nobody logged the refused handshake"
    finally:
        c.stop()


def test_sigterm_stops_a_node_cleanly(cluster: Cluster) -> None:
    assert broadcast(cluster.nodes["2"], "x") is not None
    assert cluster.nodes["2"].stop() == 0
    assert any("stopped" in line for line in cluster.nodes["2"].lines)
