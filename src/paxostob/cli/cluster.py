"""``paxostob cluster``: N local nodes with durable storage, a live status, Ctrl-C stops all.

Each node is a separate OS process (``paxostob serve``), with its state in
``DATA_DIR/nodeI`` and its log in ``DATA_DIR/nodeI.log``. The cluster secret
is generated once into ``DATA_DIR/secret`` (mode 0600) unless one is given.
Nothing is restarted automatically: a node that exits is reported as such,
with the last error line of its log (why it stopped, and what to do).

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
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from .config import RESP_PORT_OFFSET, ConfigError
from .status import fetch_status, format_status

__all__ = ["configure", "run"]

NODES_MAX = 9
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
    data = Path(ns.data_dir)
    try:
        data.mkdir(parents=True, exist_ok=True)
        secret = _secret_file(ns)
    except OSError as e:
        raise ConfigError(f"cannot prepare {data}: {e.strerror}") from None

    ids = [str(i) for i in range(1, ns.nodes + 1)]
    try:
        cluster_id, bootstrap = _cluster_id(data, ids)
    except OSError as e:
        raise ConfigError(f"cannot prepare {data}: {e.strerror}") from None
    peer = {i: (ns.host, ns.base_port + k) for k, i in enumerate(ids)}
    members = ",".join(f"{i}={h}:{p}" for i, (h, p) in peer.items())
    out.write(f"starting {ns.nodes} nodes (data in {data}/, secret in {secret})\n")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = []
    for i in ids:
        log_path = data / f"node{i}.log"
        log_file = log_path.open("ab")
        logs.append(log_file)
        cmd = [
            sys.executable, "-m", "paxostob", "serve", "--id", i, "--members", members,
            "--data-dir", str(data / f"node{i}"), "--secret-file", str(secret),
            "--cluster-id", cluster_id, *(["--bootstrap"] if bootstrap else []),
        ]  # fmt: skip
        procs[i] = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
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
    try:
        return asyncio.run(_watch(ns, out, procs, peer))
    except KeyboardInterrupt:
        return 0
    finally:
        _stop_all(procs, out)
        for f in logs:
            f.close()


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
    procs: dict[str, subprocess.Popen[bytes]],
    peer: dict[str, tuple[str, int]],
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    deadline = None if ns.duration is None else time.monotonic() + ns.duration
    tty = out.isatty()
    drawn = 0
    reported: set[str] = set()
    while not stop.is_set():
        lines = []
        reasons = []
        for i, proc in procs.items():
            host, port = peer[i]
            address = f"{host}:{port + RESP_PORT_OFFSET}"
            code = proc.poll()
            if code is not None:
                lines.append(f"node {i:<4} {address:<21} exited with code {code} (not restarted)")
                if i not in reported:
                    reported.add(i)
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
        if all(p.poll() is not None for p in procs.values()):
            return 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ns.interval if tty else 5 * ns.interval)
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
