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
import functools
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from .client import RespClientError
from .config import RESP_PORT_OFFSET, ConfigError
from .member import MemberClient, Members, promote_when_caught_up
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
#: The founding members' ids (they start with ``--members``; the others with ``--join``).
FOUNDERS_FILE = "founders"
#: Ids removed by a smaller ``--nodes``: never started again, never reused.
REMOVED_FILE = "removed"
#: A node that joined asks the others for the members this long while they start.
JOIN_WAIT_S = 30.0
#: A resize waits this long for a leader, and for each new learner to catch up.
RESIZE_TIMEOUT_S = 120.0
#: Between two looks for a leader while resizing.
RESIZE_RETRY_S = 0.5
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


@dataclass(slots=True)
class _Layout:
    """Which nodes a data directory holds, and which of them founded the cluster."""

    cluster_id: str
    #: This run makes the cluster (bootstraps the founders).
    new: bool
    founders: list[str]
    #: Ids removed from the membership: never started, never used again.
    removed: list[str]
    #: The nodes to start now (their stores exist, or this run makes them).
    running: list[str]


def _ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [i.strip() for i in path.read_text().split(",") if i.strip()]


def _write_ids(path: Path, ids: list[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(",".join(ids) + "\n")
    tmp.replace(path)


def _layout(data: Path, nodes: int) -> _Layout:
    """What ``data`` holds, read only (nothing is written before the ports are checked)."""
    made = (data / CLUSTER_ID_FILE).exists()
    removed = _ids(data / REMOVED_FILE)
    stores = sorted(
        (p.name[4:] for p in data.glob("node*") if p.is_dir() and p.name[4:].isdigit()),
        key=int,
    )
    present = [i for i in stores if i not in removed]
    ids = present if made and present else [str(i) for i in range(1, nodes + 1)]
    # A directory made before founders were recorded: its nodes are the founders.
    founders = _ids(data / FOUNDERS_FILE) or ids
    return _Layout("", False, founders, removed, ids)


def _make(data: Path, layout: _Layout) -> None:
    """Draw or read the cluster id, and record the founders (the ports were checked)."""
    layout.cluster_id, layout.new = _cluster_id(data, layout.running)
    if not (data / FOUNDERS_FILE).exists():
        _write_ids(data / FOUNDERS_FILE, layout.founders)


def run(ns: argparse.Namespace, out: TextIO) -> int:
    if not 1 <= ns.nodes <= NODES_MAX:
        raise ConfigError(f"--nodes must be 1..{NODES_MAX}")
    if ns.interval <= 0 or (ns.duration is not None and ns.duration <= 0):
        raise ConfigError("--interval and --duration must be > 0")
    data = Path(ns.data_dir)
    try:
        layout = _layout(data, ns.nodes)
    except OSError as e:
        raise ConfigError(f"cannot read {data}: {e.strerror}") from None
    used = [int(i) for i in [*layout.running, *layout.removed]]
    added = [str(i) for i in range(max(used) + 1, max(used) + 1 + ns.nodes - len(layout.running))]
    if not 1 <= ns.base_port <= 65535 - max(used + [int(i) for i in added]) - RESP_PORT_OFFSET:
        raise ConfigError(f"--base-port {ns.base_port} leaves no room for {ns.nodes} nodes")
    peer = {
        i: (ns.host, ns.base_port + int(i) - 1)
        for i in sorted({*layout.running, *added, *layout.founders}, key=int)
    }
    # Before anything is made: a failed start must not mark the cluster made.
    _check_ports({i: peer[i] for i in [*layout.running, *added]})
    try:
        data.mkdir(parents=True, exist_ok=True)
        secret = _secret_file(ns)
        _make(data, layout)
    except OSError as e:
        raise ConfigError(f"cannot prepare {data}: {e.strerror}") from None
    cmds = _Commands(ns, data, secret, layout, peer)
    out.write(f"starting {len(layout.running)} nodes (data in {data}/, secret in {secret})\n")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, IO[bytes]] = {}
    for i in layout.running:
        cmd = cmds.node(i)
        # Only the first start of a new cluster makes the stores: a restart never does.
        procs[i] = cmds.start(i, cmd + (["--bootstrap"] if layout.new else []), logs)
        out.write(cmds.started_line(i, procs[i]))
    supervisor = _Supervisor(procs, cmds.restart, logs, restart=ns.restart)
    members = ",".join(f"{i}={h}:{p}" for i, (h, p) in peer.items() if i in procs)
    first = peer[layout.running[0]][1] + RESP_PORT_OFFSET
    out.write(
        f"talk to it: redis-cli -p {first} PAXOS.BROADCAST hello ; "
        f"redis-cli -p {first} PAXOS.READ 1 10 ; paxostob status --members {members} ; "
        f"paxostob member list --port {first}\n"
        "Ctrl-C stops every node.\n"
    )
    out.flush()
    resize = None
    if len(layout.running) != ns.nodes:
        resize = functools.partial(_resize, ns, out, cmds, supervisor, layout, added)
    try:
        return asyncio.run(_watch(ns, out, supervisor, peer, resize))
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_all(procs, out)
        for f in logs.values():
            f.close()


class _Commands:
    """How each node of the local cluster is started."""

    def __init__(
        self,
        ns: argparse.Namespace,
        data: Path,
        secret: Path,
        layout: _Layout,
        peer: dict[str, tuple[str, int]],
    ) -> None:
        self.data = data
        self.secret = secret
        self.layout = layout
        self.peer = peer
        self.restart: dict[str, list[str]] = {}

    def node(self, i: str) -> list[str]:
        """``serve``'s command line for node ``i`` (without ``--bootstrap``)."""
        common = [
            sys.executable, "-m", "paxostob", "serve", "--id", i,
            "--data-dir", str(self.data / f"node{i}"), "--secret-file", str(self.secret),
            "--cluster-id", self.layout.cluster_id,
        ]  # fmt: skip
        if i in self.layout.founders:
            founders = ",".join(
                f"{f}={':'.join(map(str, self.peer[f]))}" for f in self.layout.founders
            )
            cmd = [*common, "--members", founders]
        else:
            # A node that joined: it learns the members from any running one.
            seeds = ",".join(
                f"{h}:{p + RESP_PORT_OFFSET}"
                for m, (h, p) in self.peer.items()
                if m != i and m not in self.layout.removed
            )
            cmd = [*common, "--join", seeds, "--join-wait", str(JOIN_WAIT_S)]
        self.restart[i] = cmd
        return cmd

    def start(self, i: str, cmd: list[str], logs: dict[str, IO[bytes]]) -> subprocess.Popen[bytes]:
        if i not in logs:
            logs[i] = (self.data / f"node{i}.log").open("ab")
        return _start(cmd, logs[i])

    def started_line(self, i: str, proc: subprocess.Popen[bytes]) -> str:
        host, port = self.peer[i]
        return (
            f"  node {i}: pid {proc.pid}, peers {host}:{port}, clients "
            f"{host}:{port + RESP_PORT_OFFSET}, log {self.data / f'node{i}.log'}\n"
        )


async def _leader_client(
    cmds: _Commands, ids: list[str], timeout_s: float
) -> tuple[MemberClient, Members]:
    """A client of a running node that knows a leader, and the configuration it knows."""
    deadline = time.monotonic() + timeout_s
    last = "no node answered"
    while True:
        for i in ids:
            host, port = cmds.peer[i]
            client = MemberClient(host, port + RESP_PORT_OFFSET)
            try:
                members = await client.members()
            except RespClientError as e:
                last = f"node {i}: {e}"
                continue
            if members.leader_id:
                return client, members
            last = f"node {i} knows no leader yet"
        if time.monotonic() >= deadline:
            raise RespClientError(f"no leader within {timeout_s:g} s ({last})")
        await asyncio.sleep(RESIZE_RETRY_S)


async def _resize(
    ns: argparse.Namespace,
    out: TextIO,
    cmds: _Commands,
    supervisor: _Supervisor,
    layout: _Layout,
    added: list[str],
) -> None:
    """Grow the running cluster to ``--nodes`` (learners, then promoted) or shrink it.

    Shrinking removes the highest ids, one change at a time; growing adds the
    next unused ids (a removed id is never used again).
    """
    procs = supervisor.procs
    try:
        client, members = await _leader_client(cmds, list(procs), RESIZE_TIMEOUT_S)
        present = [m.node_id for m in members.members]
        for i in sorted(present, key=int, reverse=True)[: max(0, len(present) - ns.nodes)]:
            out.write(f"removing node {i} (--nodes {ns.nodes}) ...\n")
            out.flush()
            await client.change("REMOVE", i)
            layout.removed.append(i)
            _write_ids(cmds.data / REMOVED_FILE, layout.removed)
            proc = procs.pop(i, None)
            if proc is not None:
                supervisor.forget(i)
                await asyncio.to_thread(_stop, proc)
            out.write(f"node {i} removed (not started again; its id is not used again)\n")
            client, _ = await _leader_client(cmds, list(procs), RESIZE_TIMEOUT_S)
        for i in added[: max(0, ns.nodes - len(present))]:
            host, port = cmds.peer[i]
            out.write(f"adding node {i} as a learner, then promoting it once it caught up ...\n")
            out.flush()
            await client.change("ADD", i, f"{host}:{port}")
            procs[i] = cmds.start(i, cmds.node(i), supervisor.logs)
            supervisor.started[i] = time.monotonic()
            supervisor.backoff[i] = RESTART_BACKOFF_S
            supervisor.restarts[i] = 0
            out.write(cmds.started_line(i, procs[i]))
            out.flush()
            await promote_when_caught_up(client, i, RESIZE_TIMEOUT_S)
            out.write(f"node {i} is a voter\n")
    except RespClientError as e:
        out.write(f"could not change the membership to {ns.nodes} nodes: {e}\n")
    out.flush()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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

    def forget(self, i: str) -> None:
        """Node ``i`` left the cluster: never start it again."""
        self.due.pop(i, None)
        self.commands.pop(i, None)

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
    resize: Callable[[], Awaitable[None]] | None = None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Beside the status display, which shows the new nodes as they start.
    resizing = None if resize is None else asyncio.ensure_future(resize())
    try:
        return await _show(ns, out, supervisor, peer, stop)
    finally:
        if resizing is not None:
            resizing.cancel()
            await asyncio.wait({resizing})


async def _show(
    ns: argparse.Namespace,
    out: TextIO,
    supervisor: _Supervisor,
    peer: dict[str, tuple[str, int]],
    stop: asyncio.Event,
) -> int:
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
        for i, proc in list(procs.items()):  # a resize adds and removes nodes meanwhile
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
