"""``paxostob cluster``: N local nodes with durable storage, a live status, Ctrl-C stops all.

Each node is a separate OS process (``paxostob serve``), with its state in
``DATA_DIR/nodeI`` and its log in ``DATA_DIR/nodeI.log``. The cluster secret
is generated once into ``DATA_DIR/secret`` (mode 0600) unless one is given.
A node that exits is reported with the last error line of its log (why it
stopped, and what to do). One that exits with a non-zero status is started
again after a backoff (1 s, doubling up to 30 s; back to 1 s once it ran for
a minute), as systemd's ``Restart=on-failure`` would; ``--no-restart``
turns that off. Every peer and client port is bound once before anything
is made or started, so a port in use is one clear error, not a node that
fails later.

The first run on a data directory makes the cluster: it draws a random
cluster id into ``DATA_DIR/cluster-id`` and starts every node with
``--bootstrap``. Later runs start the nodes without it, so a node whose
directory was deleted refuses to start (its log says why) instead of
rejoining with its votes forgotten.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TextIO

from .config import RESP_PORT_OFFSET, ConfigError
from .status import fetch_status, format_status

__all__ = ["configure", "run"]

NODES_MAX = 9
#: The first wait before starting a failed node again, and the longest: a node
#: that fails at once (a full disk, a missing store) is retried without
#: spinning, and one that recovers is back within seconds.
RESTART_BACKOFF_S = 1.0
RESTART_BACKOFF_MAX_S = 30.0
#: A node that ran this long before failing is retried after the first backoff again.
RESTART_RESET_S = 60.0
STOP_GRACE_S = 10.0
#: How much of the end of a node's log is searched for its last error line:
#: the line is logged as the node stops, so only a few lines follow it.
LOG_TAIL_BYTES = 64 << 10


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nodes", type=int, default=3, metavar="N", help="how many nodes (3)")
    p.add_argument(
        "--data-dir",
        dest="data_dir",
        type=Path,
        default=Path("data"),
        metavar="DIR",
        help="state, logs and secret of every node (./data)",
    )
    p.add_argument(
        "--base-port",
        dest="base_port",
        type=int,
        default=7001,
        metavar="P",
        help="node I listens to peers on P+I-1 and to clients on P+I-1+1000 (7001)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address every node binds (127.0.0.1)")
    p.add_argument(
        "--secret-file",
        dest="secret_file",
        type=Path,
        metavar="F",
        help="cluster secret (default: DATA_DIR/secret, created if missing)",
    )
    p.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="stop by itself after S seconds (default: run until Ctrl-C)",
    )
    p.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="status refresh period (1 s)"
    )
    p.add_argument(
        "--no-restart",
        dest="restart",
        action="store_false",
        help="do not start a node again when it exits with a failure",
    )


def _secret_file(ns: argparse.Namespace) -> Path:
    if ns.secret_file is not None:
        if not ns.secret_file.is_file():
            raise ConfigError(f"--secret-file {ns.secret_file}: no such file")
        return Path(ns.secret_file)
    path = Path(ns.data_dir) / "secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    return path


#: The file that marks a data directory whose cluster was made, holding its id.
CLUSTER_ID_FILE = "cluster-id"
#: The id of clusters made before the id was drawn (``serve``'s default).
LEGACY_CLUSTER_ID = "paxostob"


def _cluster_id(data: Path, ids: list[str]) -> tuple[str, bool]:
    """The cluster's id, and whether this run makes the cluster (bootstraps its nodes)."""
    path = data / CLUSTER_ID_FILE
    if path.exists():
        cluster_id = path.read_text().strip()
        if not cluster_id:
            raise ConfigError(f"{path} is empty: it should hold the cluster id")
        return cluster_id, False
    if any((data / f"node{i}").exists() for i in ids):
        # Made by a version that did not draw an id: its stores carry the default.
        cluster_id, new = LEGACY_CLUSTER_ID, False
    else:
        cluster_id, new = f"local-{secrets.token_hex(8)}", True
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(cluster_id + "\n")
    tmp.replace(path)
    return cluster_id, new


def run(ns: argparse.Namespace, out: TextIO) -> int:
    if not 1 <= ns.nodes <= NODES_MAX:
        raise ConfigError(f"--nodes must be 1..{NODES_MAX}")
    if not 1 <= ns.base_port <= 65535 - ns.nodes - RESP_PORT_OFFSET:
        raise ConfigError(f"--base-port {ns.base_port} leaves no room for {ns.nodes} nodes")
    if ns.interval <= 0 or (ns.duration is not None and ns.duration <= 0):
        raise ConfigError("--interval and --duration must be > 0")
    ids = [str(i) for i in range(1, ns.nodes + 1)]
    peer = {i: (ns.host, ns.base_port + k) for k, i in enumerate(ids)}
    _check_ports(peer)  # before anything is made: a failed start must not mark the cluster made
    data = Path(ns.data_dir)
    try:
        data.mkdir(parents=True, exist_ok=True)
        secret = _secret_file(ns)
    except OSError as e:
        raise ConfigError(f"cannot prepare {data}: {e.strerror}") from None

    try:
        cluster_id, bootstrap = _cluster_id(data, ids)
    except OSError as e:
        raise ConfigError(f"cannot prepare {data}: {e.strerror}") from None
    members = ",".join(f"{i}={h}:{p}" for i, (h, p) in peer.items())
    out.write(f"starting {ns.nodes} nodes (data in {data}/, secret in {secret})\n")
    restart_cmd: dict[str, list[str]] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, IO[bytes]] = {}
    for i in ids:
        log_path = data / f"node{i}.log"
        log_file = logs[i] = log_path.open("ab")
        cmd = [
            sys.executable, "-m", "paxostob", "serve", "--id", i, "--members", members,
            "--data-dir", str(data / f"node{i}"), "--secret-file", str(secret),
            "--cluster-id", cluster_id,
        ]  # fmt: skip
        # Only the first start of a new cluster makes the stores: a restart never does.
        procs[i] = _start(cmd + (["--bootstrap"] if bootstrap else []), log_file)
        restart_cmd[i] = cmd
        host, port = peer[i]
        out.write(
            f"  node {i}: pid {procs[i].pid}, peers {host}:{port}, clients "
            f"{host}:{port + RESP_PORT_OFFSET}, log {log_path}\n"
        )
    first = peer[ids[0]][1] + RESP_PORT_OFFSET
    out.write(
        f"talk to it: redis-cli -p {first} PAXOS.BROADCAST hello ; "
        f"redis-cli -p {first} PAXOS.READ 1 10 ; paxostob status --members {members}\n"
        "Ctrl-C stops every node.\n"
    )
    out.flush()
    supervisor = _Supervisor(procs, restart_cmd, logs, restart=ns.restart)
    try:
        return asyncio.run(_watch(ns, out, supervisor, peer))
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_all(procs, out)
        for f in logs.values():
            f.close()


def _start(cmd: list[str], log_file: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)


def _check_ports(peer: dict[str, tuple[str, int]]) -> None:
    """Bind every node's peer and client port once; a ConfigError names the first one taken."""
    for i, (host, port) in peer.items():
        for what, p in (("peer", port), ("client", port + RESP_PORT_OFFSET)):
            try:
                infos = socket.getaddrinfo(host, p, type=socket.SOCK_STREAM)
            except OSError as e:
                raise ConfigError(f"--host {host}: {e.strerror}") from None
            family, _, _, _, address = infos[0]
            with socket.socket(family, socket.SOCK_STREAM) as s:
                # As the node's listener binds (asyncio sets it): a port left in
                # TIME_WAIT by an earlier run is free, one with a listener is not.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(address)
                except OSError as e:
                    raise ConfigError(
                        f"node {i}'s {what} port {host}:{p} cannot be bound ({e.strerror}): "
                        "is another cluster or program using it? Pick other ports with "
                        "--base-port"
                    ) from None


class _Supervisor:
    """Starts a failed node again after a backoff (see the module docstring)."""

    def __init__(
        self,
        procs: dict[str, subprocess.Popen[bytes]],
        commands: dict[str, list[str]],
        logs: dict[str, IO[bytes]],
        *,
        restart: bool,
    ) -> None:
        self.procs = procs
        self.commands = commands
        self.logs = logs
        self.restart = restart
        now = time.monotonic()
        self.started = dict.fromkeys(procs, now)
        self.backoff = dict.fromkeys(procs, RESTART_BACKOFF_S)
        #: node -> when it is started again (a node that exited and waits).
        self.due: dict[str, float] = {}
        self.restarts = dict.fromkeys(procs, 0)

    def exited(self, i: str, code: int) -> str:
        """Note that node ``i`` exited; what the status line says about it."""
        if not self.restart or code == 0:
            return "not restarted"
        now = time.monotonic()
        if i not in self.due:
            if now - self.started[i] >= RESTART_RESET_S:
                self.backoff[i] = RESTART_BACKOFF_S
            self.due[i] = now + self.backoff[i]
            self.backoff[i] = min(2 * self.backoff[i], RESTART_BACKOFF_MAX_S)
        return f"restarting in {max(0.0, self.due[i] - now):.0f} s"

    def restart_due(self) -> list[str]:
        """Start every node whose backoff ended; the ids started."""
        now = time.monotonic()
        ready = [i for i, t in self.due.items() if t <= now]
        for i in ready:
            del self.due[i]
            self.procs[i] = _start(self.commands[i], self.logs[i])
            self.started[i] = now
            self.restarts[i] += 1
        return ready

    def next_due(self) -> float | None:
        return min(self.due.values(), default=None)


def last_error(log_path: Path) -> str | None:
    """The message of the last ERROR line in a node's log (``paxostob serve``'s format), if any."""
    try:
        with log_path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            tail = f.read().decode(errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        _, level, rest = line.partition(" ERROR ")
        if level:
            # "node ID LOGGER: MESSAGE": the message says what failed and what to do.
            return rest.split(": ", 1)[-1]
    return None


async def _watch(
    ns: argparse.Namespace,
    out: TextIO,
    supervisor: _Supervisor,
    peer: dict[str, tuple[str, int]],
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    deadline = None if ns.duration is None else time.monotonic() + ns.duration
    tty = out.isatty()
    drawn = 0
    procs = supervisor.procs
    reported: set[tuple[str, int]] = set()  # (node, its pid) whose exit was reported
    while not stop.is_set():
        lines = []
        reasons = []
        for i in supervisor.restart_due():
            reasons.append(f"node {i} started again (pid {procs[i].pid})")
        for i, proc in procs.items():
            host, port = peer[i]
            address = f"{host}:{port + RESP_PORT_OFFSET}"
            code = proc.poll()
            if code is not None:
                what = supervisor.exited(i, code)
                lines.append(f"node {i:<4} {address:<21} exited with code {code} ({what})")
                if (i, proc.pid) not in reported:
                    reported.add((i, proc.pid))
                    why = last_error(Path(ns.data_dir) / f"node{i}.log")
                    reasons.append(f"node {i} exited with code {code}: {why or 'no error logged'}")
                continue
            st = await fetch_status(host, port + RESP_PORT_OFFSET, timeout_s=ns.interval)
            lines.append(format_status(i, address, st))
        if tty and drawn:
            out.write(f"\x1b[{drawn}F\x1b[J")  # redraw the status block in place
        # Above the block and never redrawn: a long reason may wrap on screen.
        for reason in reasons:
            out.write(reason + "\n")
        out.write("\n".join(lines) + "\n")
        out.flush()
        drawn = len(lines)
        if deadline is not None and time.monotonic() >= deadline:
            break
        if all(p.poll() is not None for p in procs.values()) and supervisor.next_due() is None:
            return 1
        wait = ns.interval if tty else 5 * ns.interval
        due = supervisor.next_due()
        if due is not None:  # wake for the next restart, not a refresh later
            wait = max(0.0, min(wait, due - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
    return 0


def _stop_all(procs: dict[str, subprocess.Popen[bytes]], out: TextIO) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for i, proc in procs.items():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.write(f"node {i} stopped (exit code {proc.returncode})\n")
