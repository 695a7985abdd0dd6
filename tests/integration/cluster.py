"""Real node processes on 127.0.0.1 for integration tests: start, kill -9, restart.

Every node is ``python -m paxostob serve`` in its own OS process. A reader
thread follows its stderr and sets an event when the node logs its ready
line, so tests wait on that event (with a timeout), never on a sleep.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

READY_MARK = "ready:"
START_TIMEOUT_S = 30.0


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now on 127.0.0.1 (the OS picks them)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


#: Notified whenever any node logs a line: wait for a log line without sleeping.
LOGGED = threading.Condition()


@dataclass
class Node:
    node_id: str
    peer_port: int
    resp_port: int
    data_dir: Path
    members: str
    secret_file: Path
    #: More ``paxostob serve`` flags, e.g. ``("--requirepass", "pw")``.
    extra_args: tuple[str, ...] = ()
    #: Run in the child before ``paxostob serve`` starts, e.g. to set a resource limit.
    preexec: Callable[[], None] | None = None
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    #: Starts so far: the first one makes the node's store (``--bootstrap``).
    starts: int = 0

    def start(self, *, bootstrap: bool | None = None) -> None:
        """Start the process; ``bootstrap`` defaults to "this is its first start"."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.ready = threading.Event()
        if bootstrap is None:
            bootstrap = self.starts == 0
        self.starts += 1
        cmd = [
            sys.executable, "-m", "paxostob", "serve", "--id", self.node_id,
            "--members", self.members, "--data-dir", str(self.data_dir),
            "--secret-file", str(self.secret_file), "--resp-port", str(self.resp_port),
            "--tick-interval", "0.005", *self.extra_args,
            *(["--bootstrap"] if bootstrap else []),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=self.preexec,
        )
        threading.Thread(target=self._follow, args=(self.proc, self.ready), daemon=True).start()

    def _follow(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with LOGGED:
                self.lines.append(line.rstrip())
                LOGGED.notify_all()
            if READY_MARK in line:
                ready.set()

    def wait_ready(self) -> None:
        if not self.ready.wait(START_TIMEOUT_S):
            tail = "\n".join(self.lines[-20:])
            raise AssertionError(f"node {self.node_id} did not start:\n{tail}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"node {self.node_id} ignored SIGTERM") from None

    def client(self, timeout_s: float = 15.0) -> redis.Redis:
        return redis.Redis(port=self.resp_port, socket_timeout=timeout_s)

    def call(self, *args: object, timeout_s: float = 15.0) -> Any:
        """One command on a fresh connection (redis-py's ``execute_command`` is untyped)."""
        with self.client(timeout_s) as c:
            return c.execute_command(*args)


class Cluster:
    def __init__(
        self,
        tmp: Path,
        n: int = 3,
        secrets: dict[str, bytes] | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        ports = free_ports(2 * n)
        ids = [str(i) for i in range(1, n + 1)]
        members = ",".join(f"{i}=127.0.0.1:{ports[k]}" for k, i in enumerate(ids))
        self.nodes: dict[str, Node] = {}
        for k, i in enumerate(ids):
            secret = (secrets or {}).get(i, b"integration-test-secret-0123456789")
            secret_file = tmp / f"secret{i}"
            secret_file.write_bytes(secret)
            self.nodes[i] = Node(
                i, ports[k], ports[n + k], tmp / f"node{i}", members, secret_file, extra_args
            )

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()
        for node in self.nodes.values():
            node.wait_ready()

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.stop()

    def status(self, node_id: str) -> dict[bytes, bytes | int]:
        reply = self.nodes[node_id].call("PAXOS.STATUS")
        if isinstance(reply, dict):
            return reply
        return dict(zip(reply[::2], reply[1::2], strict=True))


@contextmanager
def started_cluster(tmp: Path, *, extra_args: tuple[str, ...] = ()) -> Iterator[Cluster]:
    """A started 3-node ``Cluster`` for a ``with`` block (a fixture's body), then stopped."""
    cluster = Cluster(tmp, extra_args=extra_args)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
