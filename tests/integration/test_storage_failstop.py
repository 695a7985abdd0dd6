"""A ``paxostob serve`` whose disk fills up stops: status 1, one clear line, no acked write lost.

The data directory of node 1 is a small tmpfs (``small_disk.py``): a real
full file system under the node's real storage code. Clients write through
node 1 until it fails. It must exit on its own, promptly, with status 1 and
one log line naming the file, the error and what to do; after the operator
frees space and restarts the cluster, every write node 1 acknowledged is
there. ``paxostob cluster`` must show that line, not only the exit code.
"""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

from paxostob.storage.log import LogStorage

from .cluster import LOGGED, Cluster, Node, free_ports
from .small_disk import SmallDisk

#: Node 1's disk: its log grows in 1 MiB steps, so the second step fails.
DISK_BYTES = 1536 << 10
VALUE_BYTES = 4096
#: Bounds of the writing loop (about 130 writes fill the disk).
WRITES_MAX = 2000
WRITE_BUDGET_S = 60.0
#: How soon after a client sees the failure the node must have exited.
EXIT_WITHIN_S = 10.0
CLUSTER_ID = "paxostob"  # serve's default


def bootstrap(data_dir: Path, node_id: str, members: list[str]) -> None:
    """Make a founding member's store, as a first start with bootstrap does."""
    store = LogStorage(data_dir)
    store.open(CLUSTER_ID, node_id, bootstrap=members)
    store.close()


def wait_for_a_leader(node: Node) -> None:
    """A broadcast waits for a leader (key-value commands answer TRYAGAIN without one)."""
    node.call("PAXOS.BROADCAST", "a leader is known", timeout_s=30)


def write_until_the_node_fails(node: Node, rng: random.Random) -> dict[bytes, bytes]:
    """SET new keys through ``node`` until it stops answering; the acknowledged ones."""
    wait_for_a_leader(node)
    acked: dict[bytes, bytes] = {}
    deadline = time.monotonic() + WRITE_BUDGET_S
    with node.client() as c:
        for i in range(WRITES_MAX):
            if time.monotonic() > deadline:
                break
            key, value = f"k{i}".encode(), rng.randbytes(VALUE_BYTES)
            try:
                reply = c.set(key, value)
            except (redis.ConnectionError, redis.TimeoutError):
                return acked  # the node is gone
            except redis.ResponseError as e:
                if "shutting down" in str(e):
                    return acked  # the node stopped (or, before the fix, limps on)
                continue  # e.g. no leader known yet: not acknowledged, try the next key
            assert reply is True
            acked[key] = value
    raise AssertionError(f"the disk never filled: {len(acked)} writes were acknowledged")


def exit_code(node: Node) -> int:
    """Node's exit status once it exits on its own; fails if it is still up after the bound."""
    assert node.proc is not None
    try:
        return node.proc.wait(EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        code = node.stop()
        raise AssertionError(
            f"node {node.node_id} was still up {EXIT_WITHIN_S:.0f} s after its disk filled "
            f"(then SIGTERM made it exit with status {code})"
        ) from None


def test_a_node_whose_disk_fills_exits_non_zero_with_one_clear_line_and_loses_no_acked_write(
    tmp_path: Path,
) -> None:
    seed = random.randrange(1 << 32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    cluster = Cluster(tmp_path)
    node = cluster.nodes["1"]
    ids = list(cluster.nodes)
    with SmallDisk(node.data_dir, DISK_BYTES) as disk:
        node.preexec = disk.preexec()
        try:
            for n in cluster.nodes.values():
                bootstrap(n.data_dir, n.node_id, ids)
            cluster.start()
            acked = write_until_the_node_fails(node, rng)
            assert exit_code(node) == 1
            with LOGGED:  # its stderr read to the end (serve's last line)
                assert LOGGED.wait_for(lambda: node.lines[-1:] and "stopped" in node.lines[-1], 10)
            errors = [line for line in node.lines if " ERROR " in line]
            assert len(errors) == 1, "\n".join(node.lines[-20:])
            line = errors[0]
            print(line)
            for part in (str(node.data_dir), disk.errno_name, disk.advice, "acknowledged are safe"):
                assert part in line, f"{part!r} missing from: {line}"
            assert not any("Traceback" in x for x in node.lines), "\n".join(node.lines)
            assert len(acked) >= 10, f"only {len(acked)} writes acknowledged: too few to check"

            # The operator frees space and restarts the cluster.
            for other in ("2", "3"):
                assert cluster.nodes[other].stop() == 0
            disk.free()
            node.preexec = disk.preexec()
            cluster.start()
            keys = list(acked)
            wait_for_a_leader(node)
            with node.client(timeout_s=30) as c:
                values = c.mget(keys)
            lost = [k for k, v in zip(keys, values, strict=True) if v != acked[k]]
            assert not lost, f"{len(lost)} of {len(keys)} acknowledged writes lost: {lost[:5]}"
        finally:
            cluster.stop()


def free_base_port() -> int:
    """A port P with P and P + 1000 free (``paxostob cluster``'s peer and client ports)."""
    for port in free_ports(20):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1000))
            except OSError:
                continue
            return port
    raise AssertionError("no free port pair")


def test_paxostob_cluster_shows_why_a_node_exited(tmp_path: Path) -> None:
    data = tmp_path / "data"
    base = free_base_port()
    lines: list[str] = []
    seen = threading.Condition()

    def follow(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with seen:
                lines.append(line.rstrip())
                seen.notify_all()

    with SmallDisk(data / "node1", DISK_BYTES) as disk:
        bootstrap(data / "node1", "1", ["1"])
        cmd = [
            sys.executable, "-m", "paxostob", "cluster", "--nodes", "1",
            "--data-dir", str(data), "--base-port", str(base),
            "--duration", "100", "--interval", "0.2", "--no-restart",
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=disk.preexec(),  # inherited by its node
        )
        try:
            threading.Thread(target=follow, args=(proc,), daemon=True).start()
            with seen:
                up = seen.wait_for(lambda: any("leader=1" in x for x in lines), 30)
            assert up, "\n".join(lines)
            node = Node("1", base, base + 1000, data / "node1", "", data / "secret")
            write_until_the_node_fails(node, random.Random(0))
            try:
                # With every node gone, the cluster command ends by itself.
                assert proc.wait(30) == 1
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
                raise AssertionError("the node never exited:\n" + "\n".join(lines)) from None
            with seen:
                seen.wait_for(lambda: any("stopped (exit code" in x for x in lines), 10)
            why = [x for x in lines if x.startswith("node 1 exited with code 1: ")]
            assert len(why) == 1, "\n".join(lines)
            print(why[0])
            for part in (disk.errno_name, disk.advice, "the node stopped: storage failed"):
                assert part in why[0], f"{part!r} missing from: {why[0]}"
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
