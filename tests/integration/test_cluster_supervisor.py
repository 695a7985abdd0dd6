"""``paxostob cluster`` as a supervisor: a port in use stops it before anything starts, and a
node that dies is started again (real processes on 127.0.0.1)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import redis

from .cluster import free_ports

WAIT_S = 30.0


def free_base(n: int) -> int:
    """A port P with P..P+n-1 and P+1000..P+1000+n-1 all free right now."""
    for port in free_ports(30):
        wanted = [port + k for k in range(n)] + [port + 1000 + k for k in range(n)]
        socks = []
        try:
            for p in wanted:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free block of ports")


class Supervisor:
    """``paxostob cluster`` with its output followed line by line."""

    def __init__(self, *args: str) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "paxostob", "cluster", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip())
                self.changed.notify_all()

    def wait_for(self, text: str, after: int = 0, timeout_s: float = WAIT_S) -> str:
        with self.changed:
            found = self.changed.wait_for(
                lambda: any(text in x for x in self.lines[after:]), timeout_s
            )
        assert found, f"no {text!r} in:\n" + "\n".join(self.lines)
        return next(x for x in self.lines[after:] if text in x)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(WAIT_S)


def test_a_taken_port_is_one_clear_error_before_anything_starts(tmp_path: Path) -> None:
    base = free_base(3)
    data = tmp_path / "data"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1000 + 1))  # node 2's client port
        taken.listen()
        done = subprocess.run(
            [
                sys.executable, "-m", "paxostob", "cluster", "--nodes", "3",
                "--base-port", str(base), "--data-dir", str(data), "--duration", "5",
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"node 2's client port 127.0.0.1:{base + 1001}" in done.stderr
    assert "--base-port" in done.stderr
    assert "starting" not in done.stdout, "no node was started"
    assert not data.exists() or not any(data.iterdir()), "nothing was made"


def test_a_killed_node_is_started_again_and_serves(tmp_path: Path) -> None:
    base = free_base(3)
    sup = Supervisor(
        "--nodes", "3", "--base-port", str(base), "--data-dir", str(tmp_path / "data"),
        "--interval", "0.2", "--duration", "120",
    )  # fmt: skip
    try:
        line = sup.wait_for("node 2: pid ")
        pid = int(line.split("pid ")[1].split(",")[0])
        sup.wait_for("leader=")  # the cluster is up
        seen = len(sup.lines)
        os.kill(pid, signal.SIGKILL)
        sup.wait_for("node 2 exited with code -9", seen)
        restarted = sup.wait_for("node 2 started again (pid ", seen)
        new_pid = int(restarted.split("pid ")[1].rstrip(")"))
        assert new_pid != pid
        # The node is back and serves: its client port answers a write through the log.
        for _ in range(100):  # bounded; each try waits on the node, no sleep
            try:
                with redis.Redis(port=base + 1001, socket_timeout=10) as c:
                    assert c.set("after-restart", "ok") is True
                    break
            except (redis.ConnectionError, redis.exceptions.TryAgainError):
                sup.wait_for("node 2 ", len(sup.lines))  # the next status refresh
        else:
            raise AssertionError("node 2 never served again:\n" + "\n".join(sup.lines))
    finally:
        code = sup.stop()
    assert code == 0, "\n".join(sup.lines)
