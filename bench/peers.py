"""The systems paxostob is compared with, measured in the same run on the same machine.

- ``redis``: one plain ``redis-server`` (no persistence) — the ceiling of a
  RESP server on this machine; ``redis-fsync``: the same with
  ``appendonly yes, appendfsync always``. Driven like paxostob's kv part
  (redis-benchmark and the Python generator).
- ``zookeeper``: 3 servers (Debian ``zookeeper``) on loopback, fsync on
  (``forceSync=yes``, the default); ``setData`` of 100 bytes.
- ``etcd``: 3 members (Debian ``etcd-server``) on loopback, fsync on (the
  default); ``put`` of 100 bytes through the v3 JSON gateway.
- ``pysyncobj``: 3 processes with a ``ReplDict`` (PyPI ``pysyncobj``),
  memory only; the writers run inside the leader's process (PySyncObj has no
  client protocol), batching on and off.

Every peer's writes are 100-byte values from 1 and 50 concurrent writers
(full mode: also 10). Clients talk to the leader where there is one (a
follower would forward, one more hop).

A peer whose programs are missing or that fails to start is reported as
"not available: <reason>" in the table, never skipped. ``--install-peers``
installs the missing ones first (``apt-get install zookeeper etcd-server
etcd-client redis-server redis-tools``, ``pip install pysyncobj``); without it
nothing is installed.

    python bench/peers.py --quick                     # whatever is installed
    python bench/peers.py --install-peers --only zookeeper,etcd
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from benchcommon import (
    VALUE_BYTES,
    Measurement,
    Progress,
    SystemInfo,
    free_ports,
    median_of,
    optional_module,
    rows_table,
    save_json,
    wait_port,
)
from drivers import (
    Budget,
    add_budget_args,
    budget_from_args,
    python_load,
    redis_benchmark,
    redis_benchmark_available,
)
from loadgen import ClientFactory, ZkClient, etcd_factory, resp_factory, set_command, zk_factory

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
APT_PACKAGES = ("zookeeper", "etcd-server", "etcd-client", "redis-server", "redis-tools")
PIP_PACKAGES = ("pysyncobj>=0.3.12,<0.4",)
ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
ZK_JAR = Path("/usr/share/java/zookeeper.jar")


class Unavailable(Exception):
    """The peer cannot be measured here; the message says why."""


def install_peers(progress: Progress) -> None:
    """apt-get/pip install what the peers need (only with --install-peers)."""
    missing_apt = [p for p in APT_PACKAGES if not _dpkg_installed(p)]
    if missing_apt:
        if shutil.which("apt-get") is None:
            progress.log(f"cannot install {missing_apt}: no apt-get on this machine")
        else:
            progress.log(f"apt-get install {' '.join(missing_apt)}")
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
            cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing_apt]
            subprocess.run(cmd, check=False, env=env)
    if optional_module("pysyncobj") is None:
        progress.log(f"pip install {' '.join(PIP_PACKAGES)}")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *PIP_PACKAGES], check=False)


def _dpkg_installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return False
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}", package], capture_output=True, text=True
    )
    return done.returncode == 0 and "install ok installed" in done.stdout


def _dpkg_version(package: str) -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "?"


class Processes:
    """Processes a peer started: stopped by their own PIDs, SIGTERM then SIGKILL."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as f:
            proc = subprocess.Popen(
                list(cmd), stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT
            )
        self.procs.append(proc)
        return proc

    def check_alive(self, what: str, log_of: Callable[[int], Path]) -> None:
        for k, proc in enumerate(self.procs):
            if proc.poll() is not None:
                tail = log_of(k).read_text(errors="replace")[-400:] if log_of(k).exists() else ""
                raise Unavailable(f"{what} exited with code {proc.returncode}: {tail.strip()}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


class Peer:
    name = "?"

    def __init__(self, work_dir: Path) -> None:
        self.dir = work_dir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs = Processes()

    def info(self) -> SystemInfo:
        raise NotImplementedError

    def missing(self) -> str | None:
        """Why it cannot run here (a program is not installed), or None."""
        raise NotImplementedError

    def measure(self, budget: Budget, progress: Progress) -> list[Measurement]:
        raise NotImplementedError

    def run(self, budget: Budget, progress: Progress) -> tuple[SystemInfo, list[Measurement]]:
        """Measure, or report why not; always stops what it started."""
        info = self.info()
        reason = self.missing()
        if reason is not None:
            info.unavailable = f"not available: {reason}"
            progress.log(f"{self.name}: {info.unavailable}")
            return info, []
        try:
            return info, self.measure(budget, progress)
        except Unavailable as e:
            info.unavailable = f"not available: {e}"
        except Exception as e:
            info.unavailable = f"not available: failed while measuring: {type(e).__name__}: {e}"
        finally:
            self.procs.stop()
        progress.log(f"{self.name}: {info.unavailable}")
        return info, []


# --- Redis ----------------------------------------------------------------------


class RedisPeer(Peer):
    name = "redis"
    fsync = False

    def info(self) -> SystemInfo:
        version = "?"
        if shutil.which("redis-server"):
            out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
            version = out.stdout.split("v=")[1].split()[0] if "v=" in out.stdout else "?"
        durability = "fsync (appendfsync always)" if self.fsync else "none (no persistence)"
        return SystemInfo(self.name, version, durability, replicas=1, uvloop="n/a (C, ae loop)")

    def missing(self) -> str | None:
        if shutil.which("redis-server") is None:
            return "redis-server not installed (Debian: redis-server)"
        return None

    def measure(self, budget: Budget, progress: Progress) -> list[Measurement]:
        (port,) = free_ports(1)
        persistence = ["--appendonly", "no"]
        if self.fsync:
            persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        cmd = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--dir", str(self.dir), *persistence,
        ]  # fmt: skip
        log = self.dir / "redis.log"
        self.procs.start(cmd, log)
        if not wait_port(port, START_TIMEOUT_S):
            self.procs.check_alive("redis-server", lambda k: log)
            raise Unavailable(f"redis-server did not listen on {port}")
        value = b"v" * VALUE_BYTES

        def factory() -> ClientFactory:
            return resp_factory([port], lambda i: set_command(i, value, 100_000))

        rows = python_load(self.name, "set", factory, budget, progress)
        if redis_benchmark_available() is None:
            rows += redis_benchmark(self.name, port, budget, progress)
        return rows


class RedisFsyncPeer(RedisPeer):
    name = "redis-fsync"
    fsync = True


# --- ZooKeeper ------------------------------------------------------------------


class ZooKeeperPeer(Peer):
    name = "zookeeper"

    def info(self) -> SystemInfo:
        version = _dpkg_version("zookeeper") if _dpkg_installed("zookeeper") else "?"
        return SystemInfo(
            self.name, version, "fsync (forceSync=yes, the default)", 3, uvloop="n/a (Java)"
        )

    def missing(self) -> str | None:
        if not ZK_JAR.exists():
            return f"{ZK_JAR} not found (Debian: zookeeper; run with --install-peers)"
        if shutil.which("java") is None:
            return "java not installed"
        return None

    def measure(self, budget: Budget, progress: Progress) -> list[Measurement]:
        ports = free_ports(9)
        client_ports = ports[:3]
        servers = "\n".join(
            f"server.{k + 1}=127.0.0.1:{ports[3 + k]}:{ports[6 + k]}" for k in range(3)
        )
        logs = [self.dir / f"zk{k + 1}.log" for k in range(3)]
        for k in range(3):
            data = self.dir / f"zk{k + 1}"
            data.mkdir(exist_ok=True)
            (data / "myid").write_text(f"{k + 1}\n")
            cfg = self.dir / f"zoo{k + 1}.cfg"
            cfg.write_text(
                "tickTime=500\ninitLimit=20\nsyncLimit=10\n"
                f"dataDir={data}\nclientPort={client_ports[k]}\nclientPortAddress=127.0.0.1\n"
                "admin.enableServer=false\n4lw.commands.whitelist=srvr\n"
                "maxClientCnxns=0\n" + servers + "\n"
            )
            cmd = [
                "java", "-Xmx1g", "-Dzookeeper.log.dir=" + str(self.dir),
                "-Dzookeeper.root.logger=WARN,CONSOLE", "-cp", ZK_CLASSPATH,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg),
            ]  # fmt: skip
            self.procs.start(cmd, logs[k])
        progress.log("zookeeper: waiting for the ensemble")
        leader = self._wait_leader(client_ports, lambda k: logs[k])
        value = b"v" * VALUE_BYTES

        def factory() -> ClientFactory:
            return zk_factory([leader], value)

        return python_load(self.name, "write", factory, budget, progress)

    def _wait_leader(self, ports: list[int], log_of: Callable[[int], Path]) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self.procs.check_alive("zookeeper", log_of)
            for port in ports:
                if _zk_mode(port) == "leader" and _zk_write_ok(port):
                    return port
            time.sleep(0.3)
        raise Unavailable(f"no zookeeper leader within {START_TIMEOUT_S:.0f} s")


def _zk_mode(port: int) -> str | None:
    """The server's mode from the ``srvr`` four-letter command."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"srvr")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return None
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


def _zk_write_ok(port: int) -> bool:
    async def write() -> bool:
        c = await ZkClient.connect(port, b"/bench-ready", b"x")
        try:
            await c.request(0)
            return True
        finally:
            await c.close()

    try:
        return asyncio.run(asyncio.wait_for(write(), 10))
    except Exception:
        return False


# --- etcd -----------------------------------------------------------------------


class EtcdPeer(Peer):
    name = "etcd"

    def info(self) -> SystemInfo:
        version = _dpkg_version("etcd-server") if _dpkg_installed("etcd-server") else "?"
        return SystemInfo(self.name, version, "fsync (the default)", 3, uvloop="n/a (Go)")

    def missing(self) -> str | None:
        if shutil.which("etcd") is None:
            return "etcd not installed (Debian: etcd-server; run with --install-peers)"
        return None

    def measure(self, budget: Budget, progress: Progress) -> list[Measurement]:
        ports = free_ports(6)
        client, peer = ports[:3], ports[3:]
        cluster = ",".join(f"e{k + 1}=http://127.0.0.1:{peer[k]}" for k in range(3))
        logs = [self.dir / f"etcd{k + 1}.log" for k in range(3)]
        for k in range(3):
            cmd = [
                "etcd", "--name", f"e{k + 1}", "--data-dir", str(self.dir / f"e{k + 1}"),
                "--listen-client-urls", f"http://127.0.0.1:{client[k]}",
                "--advertise-client-urls", f"http://127.0.0.1:{client[k]}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer[k]}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer[k]}",
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", "paxostob-bench", "--log-level", "warn",
            ]  # fmt: skip
            self.procs.start(cmd, logs[k])
        progress.log("etcd: waiting for the cluster")
        leader = self._wait_leader(client, lambda k: logs[k])
        value = b"v" * VALUE_BYTES

        def factory() -> ClientFactory:
            return etcd_factory([leader], value)

        return python_load(self.name, "write", factory, budget, progress)

    def _wait_leader(self, ports: list[int], log_of: Callable[[int], Path]) -> int:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self.procs.check_alive("etcd", log_of)
            for port in ports:
                status = _etcd_post(port, "/v3/maintenance/status", {})
                header = status.get("header") if status else None
                leader = status.get("leader") if status else None
                if isinstance(header, dict) and leader and header.get("member_id") == leader:
                    key = {"key": "YmVuY2g=", "value": "eA=="}
                    if _etcd_post(port, "/v3/kv/put", key) is not None:
                        return port
            time.sleep(0.3)
        raise Unavailable(f"no etcd leader within {START_TIMEOUT_S:.0f} s")


def _etcd_post(port: int, path: str, body: dict[str, str]) -> dict[str, object] | None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=3) as resp:
            doc = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# --- PySyncObj ------------------------------------------------------------------


class PySyncObjPeer(Peer):
    name = "pysyncobj"
    node_script = Path(__file__).resolve().parent / "pysyncobj_node.py"

    def info(self) -> SystemInfo:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("pysyncobj")
        except PackageNotFoundError:
            v = "?"
        return SystemInfo(
            self.name, v, "memory only, never fsyncs", replicas=3, uvloop="n/a (threads)"
        )

    def missing(self) -> str | None:
        if optional_module("pysyncobj") is None:
            return "pysyncobj not installed (pip install pysyncobj; or --install-peers)"
        return None

    def measure(self, budget: Budget, progress: Progress) -> list[Measurement]:
        rows = []
        # Batching on waits for appendEntriesPeriod (0.1 s) per round: 10-100x slower here.
        for batching in ("off",) if budget.quick else ("off", "on"):
            rows += self._measure(budget, progress, batching)
        return rows

    def _measure(self, budget: Budget, progress: Progress, batching: str) -> list[Measurement]:
        ports = free_ports(3)
        addrs = [f"127.0.0.1:{p}" for p in ports]
        logs = [self.dir / f"node{k + 1}-batching-{batching}.log" for k in range(3)]
        clients = ",".join(str(c) for c in budget.clients)
        outputs: list[list[str]] = [[] for _ in range(3)]
        procs = []
        for k in range(3):
            cmd = [
                sys.executable, str(self.node_script), "--self", addrs[k],
                "--partners", ",".join(a for j, a in enumerate(addrs) if j != k),
                "--batching", batching, "--clients", clients,
                "--repeats", str(budget.repeats), "--requests", str(budget.requests),
                "--run-s", str(budget.run_s), "--value-bytes", str(VALUE_BYTES),
            ]  # fmt: skip
            with logs[k].open("ab") as log:
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True
                )
            self.procs.procs.append(proc)  # type: ignore[arg-type]
            procs.append(proc)
        done = threading.Event()

        def follow(k: int) -> None:
            stdout = procs[k].stdout
            assert stdout is not None
            for line in stdout:
                outputs[k].append(line.strip())
                if line.strip() == "done" or '"error"' in line:
                    done.set()

        for k in range(3):
            threading.Thread(target=follow, args=(k,), daemon=True).start()
        runs = len(budget.clients) * budget.repeats
        expected_s = runs * (budget.run_s + 5) + START_TIMEOUT_S
        label = f"pysyncobj (batching {batching}): {runs} runs in the leader's process"
        with progress.task(label, 1) as advance:
            finished = done.wait(expected_s)
            advance(1)
        self.procs.stop()
        if not finished:
            raise Unavailable(f"pysyncobj did not finish within {expected_s:.0f} s")
        lines = next((out for out in outputs if out and out[-1] == "done"), None)
        if lines is None:
            raise Unavailable(f"pysyncobj failed: {[o[-1:] for o in outputs]}")
        by_clients: dict[int, list[Measurement]] = {}
        for line in lines[:-1]:
            r = json.loads(line)
            by_clients.setdefault(r["clients"], []).append(
                Measurement(
                    system=f"pysyncobj (batching {batching})",
                    workload="write",
                    tool="in-process",
                    clients=r["clients"],
                    pipeline=1,
                    ops_s=r["ops_s"],
                    p50_ms=r["p50_ms"],
                    p99_ms=r["p99_ms"],
                    p999_ms=r["p999_ms"],
                    requests=r["completed"],
                    errors=r["errors"],
                )
            )
        rows = [median_of(v) for v in by_clients.values()]
        for row in rows:
            progress.log(
                f"  {row.system:<28} write     c={row.clients:<3} {row.ops_s:>10,.0f} ops/s  "
                f"p50 {row.p50_ms:.2f} ms  p99 {row.p99_ms:.2f} ms"
            )
        return rows


PEERS: dict[str, type[Peer]] = {
    "pysyncobj": PySyncObjPeer,
    "zookeeper": ZooKeeperPeer,
    "etcd": EtcdPeer,
    "redis": RedisPeer,
    "redis-fsync": RedisFsyncPeer,
}


def run(
    budget: Budget,
    progress: Progress,
    *,
    only: Sequence[str] | None = None,
    work_dir: Path | None = None,
) -> tuple[list[SystemInfo], list[Measurement]]:
    """Measure every peer (or ``only`` these); unavailable ones come back with the reason."""
    base = Path(tempfile.mkdtemp(prefix="paxostob-peers-", dir=work_dir))
    infos, rows = [], []
    try:
        for name in only if only is not None else PEERS:
            started = time.monotonic()
            info, peer_rows = PEERS[name](base).run(budget, progress)
            progress.log(f"   ({name} took {time.monotonic() - started:.0f} s)")
            infos.append(info)
            rows += peer_rows
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return infos, rows


def best_of(rows: Sequence[Measurement]) -> float:
    return max((r.ops_s for r in rows), default=0.0)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_budget_args(p)
    p.add_argument("--only", help=f"comma-separated subset of {','.join(PEERS)}")
    p.add_argument("--install-peers", action="store_true", help="apt-get/pip install them first")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    only = [x for x in args.only.split(",") if x] if args.only else None
    for name in only or ():
        if name not in PEERS:
            p.error(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    with Progress() as progress:
        if args.install_peers:
            install_peers(progress)
        infos, rows = run(budget_from_args(args), progress, only=only)
    print(rows_table(rows) if rows else "(no rows)")
    for info in infos:
        if info.unavailable:
            print(f"{info.name}: {info.unavailable}")
    if args.json:
        save_json(args.json, infos, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
