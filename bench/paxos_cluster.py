"""Start and stop a local paxostob cluster for the benchmarks: N ``paxostob serve`` processes.

Each node is ``python -m paxostob serve`` (this interpreter, so the venv's
uvloop) with durable storage in its own directory, on ports the OS picks on
127.0.0.1. A reader thread follows each node's stderr and sets an event on
its ready line; ``start`` waits on those events and then for a leader, never
on a sleep. ``stop`` sends SIGTERM to the PIDs it started (SIGKILL after a
grace period) and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchcommon import free_ports
from loadgen import RespClient, ServerError

READY_MARK = "ready:"
START_TIMEOUT_S = 30.0
LEADER_TIMEOUT_S = 30.0
STOP_GRACE_S = 15.0
SECRET = b"paxostob-bench-secret-0123456789abcdef"


@dataclass
class NodeProcess:
    node_id: str
    peer_port: int
    resp_port: int
    data_dir: Path
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    def follow(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if len(self.lines) < 1000:
                self.lines.append(line.rstrip())
            if READY_MARK in line:
                self.ready.set()

    @property
    def pid(self) -> int:
        return self.proc.pid


class PaxosCluster:
    """``with PaxosCluster(3) as c:`` — nodes up, a leader known; stopped on exit."""

    def __init__(
        self,
        n: int = 3,
        *,
        base_dir: Path | None = None,
        tick_interval_s: float | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.n = n
        self._own_dir = base_dir is None
        self.dir = Path(tempfile.mkdtemp(prefix="paxostob-bench-", dir=base_dir))
        self.tick_interval_s = tick_interval_s
        self.extra_args = extra_args
        self.nodes: dict[str, NodeProcess] = {}

    def start(self) -> None:
        ports = free_ports(2 * self.n)
        ids = [str(i) for i in range(1, self.n + 1)]
        members = ",".join(f"{i}=127.0.0.1:{ports[k]}" for k, i in enumerate(ids))
        secret = self.dir / "secret"
        secret.write_bytes(SECRET)
        secret.chmod(0o600)
        for k, i in enumerate(ids):
            data_dir = self.dir / f"node{i}"
            cmd = [
                sys.executable, "-m", "paxostob", "serve", "--id", i, "--members", members,
                "--data-dir", str(data_dir), "--secret-file", str(secret),
                "--resp-port", str(ports[self.n + k]), "--log-level", "INFO",
                # Each benchmark makes its cluster afresh.
                *([] if data_dir.exists() else ["--bootstrap"]),
            ]  # fmt: skip
            if self.tick_interval_s is not None:
                cmd += ["--tick-interval", str(self.tick_interval_s)]
            cmd += list(self.extra_args)
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            node = NodeProcess(i, ports[k], ports[self.n + k], data_dir, proc)
            threading.Thread(target=node.follow, daemon=True).start()
            self.nodes[i] = node
        for node in self.nodes.values():
            if not node.ready.wait(START_TIMEOUT_S):
                tail = "\n".join(node.lines[-20:])
                raise RuntimeError(f"paxostob node {node.node_id} did not start:\n{tail}")
        asyncio.run(self._wait_leader())

    async def _wait_leader(self) -> None:
        """Until a write goes through (a leader is elected and serving)."""
        deadline = time.monotonic() + LEADER_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            try:
                c = await RespClient.connect(self.resp_ports()[0], lambda n: ())
                try:
                    await asyncio.wait_for(c.call(b"SET", b"bench:warm-up", b"1"), 5.0)
                    return
                finally:
                    await c.close()
            except Exception as e:  # -TRYAGAIN while no leader is known, or a timeout
                last = str(e)
                await asyncio.sleep(0.1)
        raise RuntimeError(f"no leader within {LEADER_TIMEOUT_S} s: {last}")

    def leader_id(self) -> str:
        """The node that leads now (asked of node 1)."""

        async def ask() -> str:
            c = await RespClient.connect(self.resp_ports()[0], lambda n: ())
            try:
                reply = await c.call(b"PAXOS.STATUS")
            finally:
                await c.close()
            assert isinstance(reply, list)
            fields = dict(zip(reply[::2], reply[1::2], strict=True))
            leader = fields.get(b"leader_id")
            assert isinstance(leader, bytes) and leader, f"no leader in {fields}"
            return leader.decode()

        return asyncio.run(ask())

    def leader_port(self) -> int:
        """The leader's client port; while an election runs, waits for it (bounded)."""
        deadline = time.monotonic() + LEADER_TIMEOUT_S
        while True:
            try:
                return self.nodes[self.leader_id()].resp_port
            except (AssertionError, OSError, ServerError, KeyError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def resp_ports(self) -> list[int]:
        return [n.resp_port for n in self.nodes.values()]

    def pids(self) -> dict[str, int]:
        return {i: n.pid for i, n in self.nodes.items()}

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for node in self.nodes.values():
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PaxosCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_cluster(n: int = 3, base_dir: Path | None = None) -> Iterator[PaxosCluster]:
    with PaxosCluster(n, base_dir=base_dir) as cluster:
        yield cluster
