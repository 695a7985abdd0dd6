"""``paxostob cluster --nodes N`` on a data directory of a running cluster changes its membership.

The first run makes 3 nodes; a run with ``--nodes 5`` starts them again, adds
nodes 4 and 5 as learners (started with ``serve --join``) and promotes each;
a run with ``--nodes 4`` removes the highest id, which is then stopped (and is
not started by later runs).
Writes acknowledged before a resize are read back from the nodes after it
(real processes on 127.0.0.1; every wait is on a line of the supervisor's
output or a reply, under a timeout).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .kv_client import PatientRedis, call, status
from .test_cluster_supervisor import Supervisor, free_base

#: Real processes on a machine shared with other jobs: more than the default 120 s.
pytestmark = pytest.mark.timeout(600)

KEYS = 50
#: A resize elects, adds, catches up and promotes two nodes: seconds alone,
#: longer on a loaded machine.
RESIZE_WAIT_S = 150.0


def client(port: int) -> PatientRedis:
    """A client that waits for a leader when the node knows none (a restart, an election)."""
    return PatientRedis(port=port, socket_timeout=60, protocol=2)


def members(port: int) -> dict[str, str]:
    with client(port) as c:
        # A barrier: a change in effect elsewhere is in effect here once it is delivered.
        call(c, "PAXOS.BROADCAST", "barrier")
        reply = call(c, "PAXOS.MEMBERS")
    fields = dict(zip(reply[::2], reply[1::2], strict=True))
    return {row[0].decode(): row[1].decode() for row in fields[b"members"]}


def run(base: int, data: Path, nodes: int) -> Supervisor:
    return Supervisor(
        "--nodes", str(nodes), "--base-port", str(base), "--data-dir", str(data),
        "--interval", "0.2", "--duration", "300",
    )  # fmt: skip


def test_grow_to_five_then_shrink_to_four(tmp_path: Path) -> None:
    base = free_base(6)
    data = tmp_path / "data"
    first = run(base, data, 3)
    try:
        first.wait_for("leader=", timeout_s=RESIZE_WAIT_S)
        with client(base + 1000) as c:
            for k in range(KEYS):
                assert c.set(f"key{k}", f"v{k}") is True
    finally:
        assert first.stop() == 0

    grown = run(base, data, 5)
    try:
        grown.wait_for("node 5 is a voter", timeout_s=RESIZE_WAIT_S)
        assert members(base + 1000) == dict.fromkeys("12345", "voter")
        with client(base + 1004) as c:  # node 5
            assert c.mget([f"key{k}" for k in range(KEYS)]) == [
                f"v{k}".encode() for k in range(KEYS)
            ]
    finally:
        assert grown.stop() == 0
    assert (data / "founders").read_text().strip() == "1,2,3"

    shrunk = run(base, data, 4)
    try:
        # Node 5 is started with the others (they may need it for a majority), removed
        # through the log, stopped, and shown no more.
        removed = shrunk.wait_for("node 5 removed", timeout_s=RESIZE_WAIT_S)
        assert members(base + 1000) == dict.fromkeys("1234", "voter")
        after = shrunk.lines.index(removed) + 1
        shrunk.wait_for("node 4 ", after)  # a status refresh after the removal
        assert not any(line.startswith("node 5 ") for line in shrunk.lines[after:])
        with client(base + 1003) as c:  # node 4, joined
            assert c.set("after-shrink", "1") is True
            assert c.get("key0") == b"v0"
    finally:
        assert shrunk.stop() == 0
    assert (data / "removed").read_text().strip() == "5"

    again = run(base, data, 4)  # the same size: nothing changes, node 5 stays out
    try:
        again.wait_for("leader=", timeout_s=RESIZE_WAIT_S)
        assert members(base + 1003) == dict.fromkeys("1234", "voter")
        assert not any("node 5" in line for line in again.lines)
        # A change asked of a follower reaches the leader (at its peer port + 1000).
        with client(base + 1000) as c:
            leader = status(c)[b"leader_id"].decode()
        follower = next(i for i in "1234" if i != leader)
        asked = subprocess.run(
            [
                sys.executable, "-m", "paxostob", "member", "remove", "4" if leader != "4" else "3",
                "--port", str(base + 999 + int(follower)),
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        assert len(members(base + 1000)) == 3
    finally:
        assert again.stop() == 0
