"""CPU time per operation of each node of the 3-node durable cluster under ``redis-benchmark``.

Wall-clock throughput on a shared 2-core machine swings 2-3x with what else
runs; the CPU time a node spends per operation does much less, so this is the
measure to compare two versions of the code by (alternate them, run each a few
times, compare medians). For each repetition it reads ``/proc/PID/stat`` of
every node before and after ``-n`` requests and prints the user and system
microseconds per request of the leader and of each follower, the request
rate ``redis-benchmark`` saw, and each node's context switches per request
(``/proc/PID/task/*/status``: every sleep and wake-up of its threads).

``--perf`` also records the leader with ``perf record -e cpu-clock`` (Debian's
``linux-perf``) during one more run, and prints how its CPU splits between the
kernel, the interpreter and the extension modules, and the kernel's top
symbols: on this machine the kernel's share (system calls, wake-ups, context
switches) is 40-50% of a node's CPU.

    python bench/cpu_per_op.py                        # SET, 50 clients, -P 1
    python bench/cpu_per_op.py -c 1 -n 3000 --reps 3  # one client
    python bench/cpu_per_op.py -t get --perf

Nodes run with this interpreter (``sys.executable -m paxostob serve``), so
``PYTHONPATH=<a worktree>/src python bench/cpu_per_op.py`` measures that tree.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchcommon import VALUE_BYTES, cpu_seconds
from paxos_cluster import PaxosCluster

KEYSPACE = "100000"
WARMUP_REQUESTS = "5000"
#: A run that takes longer than this is stopped (a stuck cluster must not hang the bench).
RUN_TIMEOUT_S = 600.0


def context_switches(pid: int) -> int:
    """Context switches of process ``pid`` so far, voluntary or not, over its live threads.

    Each is a sleep and a wake-up (or a preemption): the kernel's share of a
    node's CPU is mostly these. A thread that ended is not counted.
    """
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def benchmark(port: int, args: argparse.Namespace, requests: str) -> str:
    """Run ``redis-benchmark`` once; its last line (the rate and p50)."""
    out = subprocess.run(
        [
            "redis-benchmark", "-p", str(port), "-t", args.t, "-n", requests, "-c", str(args.c),
            "-P", str(args.P), "-q", "-d", str(VALUE_BYTES), "-r", KEYSPACE,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    ).stdout  # fmt: skip
    return out.strip().splitlines()[-1].split("\r")[-1].strip()


def perf_split(pid: int, port: int, args: argparse.Namespace) -> None:
    """Record ``pid`` with perf during one more run; print its CPU by module and kernel symbol."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        rec = subprocess.Popen(
            ["perf", "record", "-e", "cpu-clock", "-F", "2000", "-p", str(pid), "-o", str(data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            benchmark(port, args, str(args.n))
        finally:
            rec.send_signal(2)  # SIGINT: perf writes its file and exits
            rec.wait(timeout=RUN_TIMEOUT_S)
        for sort, rows in (("dso", 6), ("sym", 12)):
            report = subprocess.run(
                ["perf", "report", "-i", str(data), "--sort", sort, "--stdio"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            lines = [line for line in report.splitlines() if line.strip() and line[0] != "#"]
            print(f"leader CPU by {sort}:")
            for line in lines[:rows]:
                print("   ", line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("-t", default="set", help="redis-benchmark test (set, get)")
    ap.add_argument("-c", type=int, default=50, help="clients")
    ap.add_argument("-P", type=int, default=1, help="pipeline depth")
    ap.add_argument("-n", type=int, default=40_000, help="requests per repetition")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--perf", action="store_true", help="also profile the leader with perf")
    ap.add_argument(
        "--reads",
        default="read-index",
        choices=("read-index", "barrier", "lease"),
        help="the nodes' --reads (how point reads are ordered; default read-index)",
    )
    args = ap.parse_args(argv)
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark is not installed (Debian: redis-tools)", file=sys.stderr)
        return 2
    if args.perf and shutil.which("perf") is None:
        print("perf is not installed (Debian: linux-perf)", file=sys.stderr)
        return 2
    with PaxosCluster(3, extra_args=("--reads", args.reads)) as cluster:
        port = cluster.leader_port()
        leader = cluster.leader_id()
        pids = cluster.pids()
        benchmark(port, args, WARMUP_REQUESTS)
        order = [leader, *sorted(k for k in pids if k != leader)]
        for rep in range(args.reps):
            switched = {k: context_switches(p) for k, p in pids.items()}
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            rate = benchmark(port, args, str(args.n))
            after = {k: cpu_seconds(p) for k, p in pids.items()}
            switches = {k: context_switches(p) - switched[k] for k, p in pids.items()}
            parts = []
            total = 0.0
            for k in order:
                user = 1e6 * (after[k][0] - before[k][0]) / args.n
                system = 1e6 * (after[k][1] - before[k][1]) / args.n
                total += user + system
                role = "leader" if k == leader else "follower"
                parts.append(f"{role} {k}: {user + system:.1f} ({user:.0f}u+{system:.0f}s)")
            print(f"rep {rep}: CPU us/op " + ", ".join(parts) + f"; total {total:.1f} | {rate}")
            print(
                f"rep {rep}: context switches/op "
                + ", ".join(f"{k}: {switches[k] / args.n:.2f}" for k in order)
            )
        if args.perf:
            perf_split(pids[leader], port, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
