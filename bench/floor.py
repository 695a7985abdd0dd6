"""The physical floor of this machine for a replicated durable write, and paxostob against it.

Measures, in one run on the same machine:

- **fdatasync latency** on the data directory's file system (``--dir``): an
  append of 256 bytes and an ``os.fdatasync`` per save, on a fresh file and
  on the same file after it grew by ``--grow-mib`` MiB (does the flush get
  slower as the log file grows?);
- **loopback TCP round trip**: a 1-byte ping-pong between this process and a
  child process over 127.0.0.1 (Python on both ends: ``recv``/``send`` system
  calls and two wake-ups per round trip), and ``redis-benchmark -t ping -c 1``
  against ``redis-server`` (C on both ends);
- **CPU per operation of a C server**: ``redis-server`` (no persistence, and
  ``appendfsync always``) under the same ``redis-benchmark`` rows as paxostob,
  its CPU from ``/proc/PID/stat`` and ``redis-benchmark``'s own from
  ``getrusage(RUSAGE_CHILDREN)``;
- **paxostob**: the 3-node durable cluster under the same rows, each node's
  CPU per operation.

It prints each measurement and, for each paxostob row, the two floors it is
held against: the latency floor of one request (client -> leader ->
followers -> leader -> client is two round trips, plus one fdatasync for a
write: the leader's and the followers' run in parallel; a read-index read is
two round trips and no fsync) turned into a rate by Little's law (requests in
flight / latency), and the CPU floor (2 cores shared by the load generator and
the servers; a C replica costing what ``redis-server`` costs per request).

    python bench/floor.py                      # ~2 minutes
    python bench/floor.py --dir /var/lib/paxostob --grow-mib 64
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchcommon import cpu_seconds, free_ports, machine_info, wait_port
from paxos_cluster import PaxosCluster
from pipeline_gap import KEYSPACE, redis_benchmark

#: (test, clients, pipeline, requests for paxostob); redis gets ``REDIS_SCALE`` times more.
ROWS: tuple[tuple[str, int, int, int], ...] = (
    ("set", 1, 1, 3_000),
    ("set", 50, 1, 40_000),
    ("set", 50, 16, 100_000),
    ("get", 1, 1, 3_000),
    ("get", 50, 1, 40_000),
)
REDIS_SCALE = 5
SAVES = 2_000
PINGS = 20_000
START_TIMEOUT_S = 30.0
CORES = os.cpu_count() or 1

ECHO_CHILD = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while (b := s.recv(1)):
    s.sendall(b)
"""


def percentile(xs: Sequence[float], q: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(q * len(ys)))]


def fdatasync_latency(directory: Path, grow_mib: int) -> dict[str, float]:
    """Median and p99 microseconds of append+fdatasync, fresh file and grown file."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=directory, prefix="floor-") as tmp:
        path = os.path.join(tmp, "log")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            record = bytes(256)
            for label in ("fresh", "grown"):
                if label == "grown":
                    chunk = bytes(1 << 20)
                    for _ in range(grow_mib):
                        os.write(fd, chunk)
                    os.fsync(fd)
                times = []
                for _ in range(SAVES):
                    t0 = time.perf_counter()
                    os.write(fd, record)
                    os.fdatasync(fd)
                    times.append(1e6 * (time.perf_counter() - t0))
                out[f"{label} p50"] = statistics.median(times)
                out[f"{label} p99"] = percentile(times, 0.99)
        finally:
            os.close(fd)
    return out


def python_rtt() -> dict[str, float]:
    """Microseconds per 1-byte round trip over loopback TCP to a child process."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        child = subprocess.Popen([sys.executable, "-c", ECHO_CHILD, str(port)])
        try:
            server.settimeout(START_TIMEOUT_S)
            conn, _ = server.accept()
            with conn:
                conn.settimeout(START_TIMEOUT_S)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                times = []
                for _ in range(PINGS):
                    t0 = time.perf_counter()
                    conn.sendall(b"x")
                    if not conn.recv(1):
                        raise RuntimeError("echo child closed the connection")
                    times.append(1e6 * (time.perf_counter() - t0))
        finally:
            child.kill()
            child.wait()
    return {"p50": statistics.median(times), "p99": percentile(times, 0.99)}


def measured(pids: Sequence[int], run: Callable[[], dict[str, float]], n: int) -> dict[str, float]:
    """``run()``'s CSV row plus CPU us per request of each pid and of redis-benchmark."""
    before = [cpu_seconds(p) for p in pids]
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = run()
    kids2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = [cpu_seconds(p) for p in pids]
    for k, (b, a) in enumerate(zip(before, after, strict=True)):
        out[f"cpu{k}"] = 1e6 * (sum(a) - sum(b)) / n
    gen = (kids2.ru_utime + kids2.ru_stime) - (kids.ru_utime + kids.ru_stime)
    out["cpu_gen"] = 1e6 * gen / n
    return out


def redis_rows(fsync: bool, work: Path) -> dict[tuple[str, int, int], dict[str, float]]:
    (port,) = free_ports(1)
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if fsync else []
    cmd = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--dir", str(work), *persistence,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = {}
    try:
        if not wait_port(port, START_TIMEOUT_S):
            raise RuntimeError("redis-server did not start")
        ping = redis_benchmark(port, 1, 1, PINGS, 1, ("PING",))
        rows[("ping", 1, 1)] = ping
        for test, c, p, n in ROWS:
            n *= REDIS_SCALE

            def run(test: str = test, c: int = c, p: int = p, n: int = n) -> dict[str, float]:
                return redis_benchmark(port, c, p, n, KEYSPACE, ("-t", test, "-d", "100"))

            rows[(test, c, p)] = measured([proc.pid], run, n)
    finally:
        proc.terminate()
        proc.wait(timeout=START_TIMEOUT_S)
    return rows


def paxostob_rows(data_dir: Path | None) -> dict[tuple[str, int, int], dict[str, float]]:
    rows = {}
    with PaxosCluster(3, base_dir=data_dir) as cluster:
        port = cluster.leader_port()
        pids = list(cluster.pids().values())
        redis_benchmark(port, 50, 1, 5_000, KEYSPACE)  # warm-up
        for test, c, p, n in ROWS:

            def run(test: str = test, c: int = c, p: int = p, n: int = n) -> dict[str, float]:
                return redis_benchmark(port, c, p, n, KEYSPACE, ("-t", test, "-d", "100"))

            r = measured(pids, run, n)
            r["cpu_nodes"] = sum(r.pop(f"cpu{k}") for k in range(len(pids)))
            rows[(test, c, p)] = r
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp"), help="file system to fsync on")
    ap.add_argument("--grow-mib", type=int, default=128, help="MiB appended before 'grown'")
    args = ap.parse_args(argv)
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (Debian: redis-server, redis-tools)", file=sys.stderr)
            return 2
    for k, v in machine_info(args.dir).items():
        print(f"{k}: {v}")
    sync = fdatasync_latency(args.dir, args.grow_mib)
    print(
        f"fdatasync after a 256-byte append: fresh file p50 {sync['fresh p50']:.0f} us"
        f" p99 {sync['fresh p99']:.0f}; after +{args.grow_mib} MiB p50 {sync['grown p50']:.0f}"
        f" p99 {sync['grown p99']:.0f}"
    )
    rtt = python_rtt()
    print(
        f"loopback TCP round trip, Python both ends: p50 {rtt['p50']:.1f} us p99 {rtt['p99']:.1f}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="floor-redis-") as tmp:
        redis = redis_rows(False, Path(tmp))
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="floor-redis-") as tmp:
        redis_fsync = redis_rows(True, Path(tmp))
    ping = redis[("ping", 1, 1)]
    c_rtt_us = 1e6 / ping["rps"]
    print(f"loopback round trip, redis PING -c 1 (C both ends): {c_rtt_us:.1f} us per request")
    ours = paxostob_rows(args.dir if args.dir != Path("/tmp") else None)
    fsync_us = sync["fresh p50"]
    print()
    header = (
        "| row | paxostob ops/s | p50 ms | CPU us/op 3 nodes | generator | redis ops/s"
        " | redis CPU us/op | redis-fsync ops/s | redis-fsync CPU | latency floor ms"
        " | rate floor (Little) | CPU floor (C) |"
    )
    print(header)
    print("|" + " --- |" * header.count(" | ") + " --- |")
    for test, c, p, _ in ROWS:
        o, r, rf = ours[(test, c, p)], redis[(test, c, p)], redis_fsync[(test, c, p)]
        # One request: two round trips (client-leader, leader-followers), plus the
        # fdatasync of a write; each hop costs a C server's CPU for a request at
        # least (the leader handles two requests' worth per round).
        hop_us = c_rtt_us + (fsync_us if test == "set" else 0.0)
        latency_us = c_rtt_us + hop_us
        little = c * p * 1e6 / latency_us
        # CPU: the generator's cost per request plus, for three C replicas, the
        # leader's redis-like request and one more message at leader and follower.
        c_cpu = r["cpu_gen"] + 3 * r["cpu0"]
        cpu_floor = CORES * 1e6 / c_cpu
        print(
            f"| {test.upper()} -c {c} -P {p} | {o['rps']:,.0f} | {o['p50_latency_ms']:.2f}"
            f" | {o['cpu_nodes']:.1f} | {o['cpu_gen']:.1f} | {r['rps']:,.0f} | {r['cpu0']:.1f}"
            f" | {rf['rps']:,.0f} | {rf['cpu0']:.1f} | {latency_us / 1000:.2f}"
            f" | {little:,.0f} | {cpu_floor:,.0f} |"
        )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
