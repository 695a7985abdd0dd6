"""Membership change with real ``paxostob serve`` processes on 127.0.0.1, under client load.

- Grow 3 -> 5: two nodes are added as learners (``paxostob member add``),
  started with ``serve --join``, promoted once caught up, while clients write.
- Remove the leader while clients write: the others elect, writes go on.
- Replace a wiped node: its directory is deleted, it refuses to start (also
  with ``--join``), ``paxostob member replace`` removes it and adds a new id
  that joins empty; once promoted, the new node's vote is needed (a founder
  is stopped) and the cluster still serves.

In each, every write a client saw acknowledged is read back from every
member at the end, and client errors are counted: only retryable ones
(``TRYAGAIN``: no leader for a moment, an election) are allowed, at most
``CLIENT_ERRORS_MAX``. The load is bounded in count and in time and stops by
itself; every wait is on an event, a reply or a process, under a timeout.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import TryAgainError
from redis.retry import Retry

from .cluster import Cluster, Node, free_ports, started_cluster
from .kv_client import await_leader

#: Real processes on a machine shared with other jobs: more than the default 120 s.
pytestmark = pytest.mark.timeout(400)

#: Writes per load thread, at most; and the longest a load runs.
WRITES_MAX = 4000
LOAD_S_MAX = 90.0
#: Retryable errors a client may see over a whole test (elections, a leader
#: stepping down): each is a moment without a leader.
CLIENT_ERRORS_MAX = 50
CLI_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 30.0
#: Tries of ``member promote`` while a learner catches up; each is preceded by
#: a broadcast round on the leader (no sleep), so a few dozen suffice.
PROMOTE_TRIES_MAX = 200


@dataclass
class Load:
    """One client writing distinct keys to one node until stopped (or its bounds)."""

    port: int
    prefix: str
    acked: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + LOAD_S_MAX
        with redis.Redis(
            port=self.port, socket_timeout=30, retry=Retry(NoBackoff(), 0), protocol=2
        ) as c:
            for i in range(WRITES_MAX):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                key, value = f"{self.prefix}:{i}", f"v{i}"
                try:
                    if c.set(key, value) is True:
                        self.acked[key] = value
                except (TryAgainError, RedisConnectionError, RedisTimeoutError) as e:
                    self.errors.append(f"{type(e).__name__}: {e} (after {len(self.acked)} acks)")
                    if len(self.errors) > CLIENT_ERRORS_MAX:
                        return
                    self._await_leader(c)

    def _await_leader(self, c: redis.Redis) -> None:
        """As a client backs off: wait until a broadcast is delivered (a leader is back)."""
        with contextlib.suppress(TryAgainError, RedisConnectionError, RedisTimeoutError):
            c.execute_command("PAXOS.BROADCAST", "awaiting-a-leader")  # type: ignore[no-untyped-call]

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(LOAD_S_MAX + 30)
        assert not self.thread.is_alive(), "the load did not stop"


def member(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paxostob", "member", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def members_of(node: Node) -> dict[str, str]:
    """``{id: role}`` as ``node`` knows the configuration, after a barrier.

    A change answered by the node asked is in effect there; another node may
    not have applied it yet. A broadcast delivered on ``node`` now is in a slot
    after every change in effect before it was proposed, so once it is
    delivered there ``node`` knows those changes too.
    """
    await_leader(node.resp_port, None)
    reply = node.call("PAXOS.MEMBERS")
    fields = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    return {row[0].decode(): row[1].decode() for row in fields[b"members"]}


#: ``member replace`` runs asked again after a leader change under load.
REPLACE_ATTEMPTS_MAX = 3


def leader_of(node: Node) -> str:
    await_leader(node.resp_port, None)
    status = node.call("PAXOS.STATUS")
    fields = (
        status if isinstance(status, dict) else dict(zip(status[::2], status[1::2], strict=True))
    )
    return str(fields[b"leader_id"].decode())


def new_node(cluster: Cluster, tmp: Path, node_id: str) -> Node:
    peer, resp = free_ports(2)
    any_node = next(iter(cluster.nodes.values()))
    node = Node(
        node_id, peer, resp, tmp / f"node{node_id}", "", any_node.secret_file, any_node.extra_args
    )
    cluster.nodes[node_id] = node
    return node


def start_joining(node: Node, seed: Node) -> None:
    """``serve --join`` (no --members, no --bootstrap), followed as ``Node.start`` does."""
    node.ready = threading.Event()
    node.starts += 1
    cmd = [
        sys.executable, "-m", "paxostob", "serve", "--id", node.node_id,
        "--join", f"127.0.0.1:{seed.resp_port}", "--data-dir", str(node.data_dir),
        "--secret-file", str(node.secret_file), "--resp-port", str(node.resp_port),
        "--tick-interval", "0.005",
    ]  # fmt: skip
    node.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    threading.Thread(target=node._follow, args=(node.proc, node.ready), daemon=True).start()


def promote(node_id: str, leader: Node) -> None:
    """``paxostob member promote`` until the learner caught up (bounded tries, no sleep)."""
    last = None
    for _ in range(PROMOTE_TRIES_MAX):
        done = member("promote", node_id, "--port", str(leader.resp_port))
        if done.returncode == 0:
            return
        last = done.stderr
        assert "refused" in done.stderr or "TRYAGAIN" in done.stderr, done.stderr
        leader.call("PAXOS.BROADCAST", "a-round")  # the learner's next heartbeat reply
    raise AssertionError(f"{node_id} was never promoted: {last}")


def add_and_join(cluster: Cluster, tmp: Path, node_id: str, leader: Node) -> Node:
    node = new_node(cluster, tmp, node_id)
    added = member("add", node_id, f"127.0.0.1:{node.peer_port}", "--port", str(leader.resp_port))
    assert added.returncode == 0, added.stderr
    assert f"{node_id:<6} learner" in added.stdout
    start_joining(node, leader)
    node.wait_ready()
    assert any("this node is a learner (its store is made now" in line for line in node.lines)
    # It knows itself as a learner (never a voter of its own making).
    await_leader(node.resp_port, None)
    assert members_of(node)[node_id] == "learner"
    promote(node_id, leader)
    return node


def check_acked(loads: list[Load], nodes: list[Node]) -> None:
    acked = {k: v for load in loads for k, v in load.acked.items()}
    assert acked, "no write was acknowledged"
    keys = sorted(acked)
    for node in nodes:
        await_leader(node.resp_port, None)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            values = node.call("MGET", *chunk, timeout_s=60)
            got = {
                k: (v.decode() if v is not None else None)
                for k, v in zip(chunk, values, strict=True)
            }
            missing = {k: acked[k] for k in chunk if got[k] != acked[k]}
            assert not missing, f"node {node.node_id} lost acknowledged writes: {list(missing)[:5]}"


def check_errors(loads: list[Load]) -> int:
    errors = [e for load in loads for e in load.errors]
    assert len(errors) <= CLIENT_ERRORS_MAX, errors[:10]
    assert all(e.startswith("TryAgainError") for e in errors), errors[:10]
    return len(errors)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with started_cluster(tmp_path) as c:
        yield c


def test_grow_from_three_to_five_voters_under_load(cluster: Cluster, tmp_path: Path) -> None:
    n1 = cluster.nodes["1"]
    leader = cluster.nodes[leader_of(n1)]
    loads = [Load(node.resp_port, f"grow{node.node_id}") for node in list(cluster.nodes.values())]
    for load in loads:
        load.start()
    try:
        n4 = add_and_join(cluster, tmp_path, "4", leader)
        n5 = add_and_join(cluster, tmp_path, "5", leader)
    finally:
        for load in loads:
            load.finish()
    assert members_of(leader) == dict.fromkeys("12345", "voter")
    assert members_of(n5) == dict.fromkeys("12345", "voter")
    # The new voters count: with two founders down, 3 of 5 voters (4 and 5 among them) decide.
    others = [n for n in ("1", "2", "3") if n != leader.node_id][:2]
    for i in others:
        cluster.nodes[i].stop()
    assert n4.call("SET", "after-growth", "1", timeout_s=60) is True
    for i in others:
        cluster.nodes[i].start()
        cluster.nodes[i].wait_ready()
    # A joined node restarts on its store (the same --join: it makes no store now).
    n4.stop()
    seen = len(n4.lines)
    start_joining(n4, leader)
    n4.wait_ready()
    restart = n4.lines[seen:]
    assert any("this node is a voter" in line for line in restart), restart
    assert not any("its store is made now" in line for line in restart)
    check_acked(loads, list(cluster.nodes.values()))
    errors = check_errors(loads)
    print(f"grow: {sum(len(x.acked) for x in loads)} writes acknowledged, {errors} TRYAGAIN")


def test_remove_the_leader_under_load(cluster: Cluster) -> None:
    n1 = cluster.nodes["1"]
    old = cluster.nodes[leader_of(n1)]
    rest = [n for n in cluster.nodes.values() if n is not old]
    loads = [Load(node.resp_port, f"rm{node.node_id}") for node in rest]
    for load in loads:
        load.start()
    try:
        removed = member("remove", old.node_id, "--port", str(old.resp_port))
        assert removed.returncode == 0, removed.stderr
        assert old.node_id not in members_of(rest[0])
        # The others elect among themselves; the old leader leads no more.
        new = leader_of(rest[0])
        assert new != old.node_id
        assert rest[0].call("SET", "after-removal", "1", timeout_s=60) is True
    finally:
        for load in loads:
            load.finish()
    old.stop()
    assert members_of(rest[1]) == {n.node_id: "voter" for n in rest}
    check_acked(loads, rest)
    errors = check_errors(loads)
    print(
        f"remove leader: {sum(len(x.acked) for x in loads)} writes acknowledged, {errors} TRYAGAIN"
    )


def test_replace_a_wiped_node(cluster: Cluster, tmp_path: Path) -> None:
    # The wiped node is a follower; the changes are asked of the leader (a
    # change asked of a follower is redirected to the leader's default client
    # port, peer port + 1000, which these nodes do not use).
    leader = cluster.nodes[leader_of(cluster.nodes["1"])]
    wiped, other = (cluster.nodes[i] for i in ("1", "2", "3") if i != leader.node_id)
    load = Load(leader.resp_port, "replace")
    load.start()
    try:
        wiped.stop()
        shutil.rmtree(wiped.data_dir)
        # Wiped: it refuses to start, naming the replace procedure; with --join too.
        wiped.start(bootstrap=False)
        assert wiped.proc is not None and wiped.proc.wait(EXIT_TIMEOUT_S) != 0
        refusal = "\n".join(wiped.lines)
        assert "has no store here" in refusal and "member replace" in refusal, refusal
        start_joining(wiped, leader)
        assert wiped.proc.wait(EXIT_TIMEOUT_S) != 0
        assert "a voter that lost its store must never vote again" in "\n".join(wiped.lines)
        assert not wiped.data_dir.exists() or not any(wiped.data_dir.iterdir())
        # Replace it by node 6 (at a new address), started while replace waits for it.
        n6 = new_node(cluster, tmp_path, "6")
        # Asked of whoever leads now. Should leadership move under the load
        # (a follower redirects to a port these nodes do not use), replace is
        # run again against the new leader: it skips the steps already done,
        # as docs/operations.md tells an operator to.
        n6_started = False
        for _ in range(REPLACE_ATTEMPTS_MAX):
            port = cluster.nodes[leader_of(other)].resp_port
            replace = subprocess.Popen(
                [
                    sys.executable, "-m", "paxostob", "member", "replace", wiped.node_id, "6",
                    f"127.0.0.1:{n6.peer_port}", "--port", str(port), "--catch-up-timeout", "90",
                ],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert replace.stdout is not None
            said = []
            for line in replace.stdout:  # it says when to start the new node
                said.append(line)
                if line.startswith("start 6 now"):
                    break
            if not n6_started and said and said[-1].startswith("start 6 now"):
                start_joining(n6, leader)
                n6.wait_ready()
                n6_started = True
            _, err = replace.communicate(timeout=CLI_TIMEOUT_S)
            if replace.returncode == 0:
                break
            assert "NOTLEADER" in err, (said, err)  # only a leader change is retried
        else:
            raise AssertionError(f"replace did not finish in {REPLACE_ATTEMPTS_MAX} attempts")
        assert n6_started, "replace never said when to start the new node"
    finally:
        load.finish()
    voters = {leader.node_id, other.node_id, "6"}
    assert members_of(leader) == dict.fromkeys(voters, "voter")
    del cluster.nodes[wiped.node_id]
    # Node 6 votes: with the other founder down, {leader, 6} is the majority.
    other.stop()
    assert n6.call("SET", "after-replace", "1", timeout_s=60) is True
    other.start()
    other.wait_ready()
    check_acked([load], [leader, other, n6])
    errors = check_errors([load])
    print(f"replace: {len(load.acked)} writes acknowledged, {errors} TRYAGAIN")
