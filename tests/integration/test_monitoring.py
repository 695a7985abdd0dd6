"""Monitoring a live 3-process cluster: ``/metrics``, ``/ready``, ``paxostob status``, JSON logs.

Every node is ``paxostob serve --metrics-port P --log-format json`` (node 3
also ``--reads barrier``, and each node reports its read mode in INFO). The
test scrapes each node over HTTP as Prometheus would, checks that the key
series move with the work the cluster does, then kills two nodes with
SIGKILL and checks that the survivor says it has no quorum everywhere an
operator would look: ``/ready``, ``has_leader``, ``paxostob status``'s exit
status, and its log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .cluster import LOGGED, Cluster, Node, free_ports

WAIT_S = 30.0
SETS = 20


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    for node, port in zip(c.nodes.values(), free_ports(len(c.nodes)), strict=True):
        node.extra_args = ("--metrics-port", str(port), "--log-format", "json")
    # Node 3 orders its point reads by an empty log entry (the rolling-upgrade mode).
    c.nodes["3"].extra_args += ("--reads", "barrier")
    c.start()
    try:
        yield c
    finally:
        c.stop()


def metrics_port(node: Node) -> int:
    return int(node.extra_args[node.extra_args.index("--metrics-port") + 1])


def fetch(node: Node, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{metrics_port(node)}{path}", timeout=10
        ) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def scrape(node: Node) -> dict[str, float]:
    """Every sample of ``node``'s /metrics, keyed ``name{label="value",...}``."""
    status, body = fetch(node, "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def status_command(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    members = cluster.nodes["1"].members
    resp = ",".join(f"{i}=127.0.0.1:{n.resp_port}" for i, n in cluster.nodes.items())
    return subprocess.run(
        [sys.executable, "-m", "paxostob", "status", "--members", members,
         "--resp-members", resp, "--timeout", "2"],
        capture_output=True, text=True, timeout=WAIT_S,
    )  # fmt: skip


def linked_to_every_peer(node: Node, peers: list[str]) -> bool:
    """Whether ``node``'s log says its last word on each peer's link was "connected"."""
    state: dict[str, bool] = {}
    for line in node.lines:
        for peer in peers:
            if f": connected to {peer} (" in line:
                state[peer] = True
            elif f": lost {peer} (" in line:
                state[peer] = False
    return all(state.get(peer, False) for peer in peers)


def test_metrics_health_status_and_logs_of_a_live_cluster(cluster: Cluster) -> None:
    nodes = cluster.nodes
    # A broadcast from each node is delivered there: each knows the leader now.
    for node in nodes.values():
        node.call("PAXOS.BROADCAST", f"hello from {node.node_id}")
    before = {i: scrape(n) for i, n in nodes.items()}
    assert [before[i]["paxostob_server_has_leader"] for i in nodes] == [1, 1, 1]
    leaders = [i for i in nodes if before[i]["paxostob_server_is_leader"] == 1]
    assert len(leaders) == 1, before
    assert all(before[i]["paxostob_server_is_leader"] == 0 for i in nodes if i not in leaders)
    assert cluster.status("1")[b"leader_id"] == leaders[0].encode()

    for k in range(SETS):
        assert nodes["1"].call("SET", f"key{k}", "v") is True  # redis-py: OK is True
    # Each node reads in the mode it was started with, and a barrier read sees the writes.
    modes = {i: n.call("INFO", "paxos")["read_mode"] for i, n in nodes.items()}
    assert modes == {"1": "read-index", "2": "read-index", "3": "barrier"}, modes
    assert nodes["3"].call("GET", f"key{SETS - 1}") == b"v"
    position = int(cluster.status("1")[b"applied"])
    for node in nodes.values():  # every node applied the writes
        node.call("PAXOS.WAIT", position, int(WAIT_S * 1000), timeout_s=WAIT_S + 5)
    # A link that was refused while its peer started is dialed again after a
    # backoff: wait for each node to log every link up, then scrape.
    with LOGGED:
        for i, node in nodes.items():
            peers = [p for p in nodes if p != i]
            up = LOGGED.wait_for(lambda: linked_to_every_peer(node, peers), WAIT_S)  # noqa: B023
            assert up, f"node {i} never logged a link to every peer"
    after = {i: scrape(n) for i, n in nodes.items()}

    one, one_before = after["1"], before["1"]
    set_ = 'command="set"'
    assert one[f"paxostob_commands_total{{{set_}}}"] == SETS
    assert one[f"paxostob_command_duration_seconds_count{{{set_}}}"] == SETS
    assert one[f"paxostob_command_duration_seconds_sum{{{set_}}}"] > 0
    assert (
        one["paxostob_clients_connections_total"] > one_before["paxostob_clients_connections_total"]
    )
    for i in nodes:
        a, b = after[i], before[i]
        assert (
            a["paxostob_server_proposals_committed_total"]
            > b["paxostob_server_proposals_committed_total"]
        ), i
        assert (
            a["paxostob_server_proposals_applied_total"]
            > b["paxostob_server_proposals_applied_total"]
        ), i
        assert a["paxostob_disk_wal_fsync_duration_seconds_count"] > 0, i
        assert a["process_resident_memory_bytes"] > 0
        assert a["paxostob_server_leader_changes_seen_total"] >= 0
        assert a["paxostob_server_ballot_round"] >= 1
        for peer in nodes:
            if peer != i:
                assert a[f'paxostob_network_peer_connected{{peer="{peer}"}}'] == 1
                assert a[f'paxostob_network_peer_sent_bytes_total{{peer="{peer}"}}'] > 0
                assert a[f'paxostob_network_peer_round_trip_time_seconds{{peer="{peer}"}}'] >= 0
        assert fetch(nodes[i], "/health")[0] == 200
        status, body = fetch(nodes[i], "/ready")
        assert status == 200 and json.loads(body)["leader"] == leaders[0]
    ok = status_command(cluster)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1].startswith(
        f"quorum: yes: 3 of 3 nodes follow leader {leaders[0]}"
    )

    # Two nodes die: the survivor has no quorum, and says so.
    survivor, *others = sorted(nodes)
    alone = nodes[survivor]
    # Only a loss logged after the kills counts: an election earlier in the
    # run (a slow machine) may have logged one already.
    with LOGGED:
        seen = len(alone.lines)
    for i in others:
        nodes[i].kill9()

    def lost() -> bool:
        return any('"event": "leader_lost"' in line for line in alone.lines[seen:])

    with LOGGED:
        assert LOGGED.wait_for(lost, WAIT_S), "the survivor never logged losing its leader"
    status, body = fetch(alone, "/ready")
    assert status == 503 and "no leader is known" in json.loads(body)["reason"]
    assert fetch(alone, "/health")[0] == 200  # alive all the same
    assert scrape(alone)["paxostob_server_has_leader"] == 0
    no = status_command(cluster)
    assert no.returncode == 1, no.stdout + no.stderr
    assert no.stdout.splitlines()[-1].startswith("quorum: NO:")
    assert "unreachable" in no.stdout

    # Every line the nodes logged is one JSON object with the standard keys.
    for node in nodes.values():
        assert node.lines
        for line in node.lines:
            record = json.loads(line)
            assert {"ts", "level", "node", "logger", "msg"} <= set(record), line
            assert record["node"] == node.node_id
    changes = [json.loads(x) for x in alone.lines if '"event": "leader_change"' in x]
    assert changes and changes[0]["leader"] == leaders[0] and changes[0]["ballot"]
