"""Why ``SET -c 50 -P 16`` is slower inside ``make bench`` than on a fresh cluster, side by side.

Inside ``bench/run_all.py`` the ``-c 50 -P 16`` SET row runs on a cluster that
has already taken a few million writes (the broadcast rows, the Python
generator's rows, the other redis-benchmark rows): its key space is full
(100,000 keys) and its data directories have grown and been compacted many
times. A fresh cluster has none of that. This program measures the same
``redis-benchmark -t set -d 100 -r 100000 -c 50 -P 16 -n N`` run under each
condition, every condition on its own fresh 3-node cluster, conditions
alternating repetition by repetition so that they share the machine's load:

- ``fresh``: nothing before the measured run (``-n`` as given);
- ``fresh-short``: nothing before, and only ``--short-n`` requests (what
  ``bench/cpu_per_op.py -P 16`` measures: a run too short to reach a snapshot);
- ``keys``: first ``--prefill`` SETs over the same 100,000 keys (the state is
  full, the log has grown and been compacted, as inside ``make bench``);
- ``log``: first ``--prefill`` SETs over only 100 keys (the same log growth,
  fsyncs and snapshots, but a tiny state: tells the state's size from the
  log's and the data directory's);
- ``bench``: a cluster that also holds other workloads' state, as ``make bench``'s
  did when all its rows shared one cluster: 150,000 ``PAXOS.BROADCAST`` of 100
  bytes (the broadcast log keeps the last 100,000), ``--prefill``/2 SETs over a
  second family of 100,000 keys (the Python generator then wrote ``key:N``,
  redis-benchmark ``key:000000N``), then ``keys``' prefill.

For each run it prints the rate and latency ``redis-benchmark`` saw, the CPU
microseconds per SET of each node (``/proc/PID/stat``), how many snapshots
each node took during the run and how large the last one was, the data
directories' size, and the leader's fsyncs per SET (``INFO persistence``).
At the end, the median of each condition.

    python bench/pipeline_gap.py                       # 3 repetitions of every condition
    python bench/pipeline_gap.py --reps 1 --conditions fresh,keys
    PYTHONPATH=<a worktree>/src python bench/pipeline_gap.py   # measure that tree
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchcommon import VALUE_BYTES, cpu_seconds, machine_info
from loadgen import RespClient
from paxos_cluster import PaxosCluster

KEYSPACE = 100_000
#: A prefill or measured run that takes longer than this is stopped.
RUN_TIMEOUT_S = 300.0
CONDITIONS = ("fresh", "fresh-short", "keys", "log", "bench")
#: Broadcasts the ``bench`` condition sends first: more than the broadcast log keeps (100,000).
BROADCASTS = 150_000
PREFILL_ATTEMPTS = 3


@dataclass
class Run:
    condition: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: dict[str, float]  # role -> CPU us per SET
    snapshots: dict[str, int]  # role -> snapshots taken during the measured run
    snapshot_bytes: int  # the leader's last snapshot
    data_mib: float  # all three data directories after the run
    fsyncs_per_set: float  # the leader's
    extra: dict[str, float] = field(default_factory=dict)


def redis_benchmark(
    port: int, clients: int, pipeline: int, n: int, keyspace: int, command: Sequence[str] = ()
) -> dict[str, float]:
    """One ``redis-benchmark`` run of ``-t set`` (or of ``command``); its CSV row."""
    what = list(command) if command else ["-t", "set", "-d", str(VALUE_BYTES)]
    cmd = [
        "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-r", str(keyspace),
        "-c", str(clients), "-P", str(pipeline), "-n", str(n), "--csv", *what,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    if done.returncode != 0 or not rows:
        raise RuntimeError(f"redis-benchmark failed: {done.stderr.strip()[-300:]}")
    return {k: float(v) for k, v in rows[0].items() if k != "test"}


def persistence(port: int) -> dict[str, int]:
    """The integer fields of ``INFO persistence`` of the node on ``port``."""

    async def ask() -> bytes:
        c = await RespClient.connect(port, lambda n: ())
        try:
            reply = await c.call(b"INFO", b"persistence")
        finally:
            await c.close()
        assert isinstance(reply, bytes)
        return reply

    fields = {}
    for line in asyncio.run(ask()).decode().splitlines():
        key, _, value = line.partition(":")
        if value.strip().lstrip("-").isdigit():
            fields[key] = int(value)
    return fields


def dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / (1 << 20)


def one_run(condition: str, args: argparse.Namespace) -> Run:
    with PaxosCluster(3, base_dir=args.data_dir) as cluster:
        port = cluster.leader_port()
        leader = cluster.leader_id()
        pids = cluster.pids()
        ports = {i: n.resp_port for i, n in cluster.nodes.items()}
        extra: dict[str, float] = {}
        t0 = time.monotonic()

        def prefill(n: int, keyspace: int, command: Sequence[str] = ()) -> None:
            # A snapshot stall may cost the leader its lease under load: ask again.
            for attempt in range(PREFILL_ATTEMPTS):
                try:
                    redis_benchmark(cluster.leader_port(), 50, 16, n, keyspace, command)
                    return
                except RuntimeError as e:
                    if "TRYAGAIN" not in str(e) or attempt == PREFILL_ATTEMPTS - 1:
                        raise
                    extra["prefill_retries"] = extra.get("prefill_retries", 0) + 1

        if condition == "bench":
            # What the broadcast rows and the Python generator's rows leave behind:
            # a full broadcast log and a second family of 100,000 keys.
            payload = "b" * VALUE_BYTES
            prefill(BROADCASTS, KEYSPACE, ("PAXOS.BROADCAST", payload))
            other = ("SET", "k:__rand_int__", "v" * VALUE_BYTES)
            prefill(args.prefill // 2, KEYSPACE, other)
        if condition in ("keys", "log", "bench"):
            keyspace = 100 if condition == "log" else KEYSPACE
            prefill(args.prefill, keyspace)
            extra["prefill_s"] = time.monotonic() - t0
        port = cluster.leader_port()
        leader = cluster.leader_id()
        n = args.short_n if condition == "fresh-short" else args.n
        roles = {leader: "leader", **{k: f"follower {k}" for k in pids if k != leader}}
        before_info = {k: persistence(p) for k, p in ports.items()}
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        out = redis_benchmark(port, 50, 16, n, KEYSPACE)
        after = {k: cpu_seconds(p) for k, p in pids.items()}
        after_info = {k: persistence(p) for k, p in ports.items()}
        cpu = {
            roles[k]: 1e6 * (sum(after[k]) - sum(before[k])) / n
            for k in sorted(pids, key=lambda k: (k != leader, k))
        }
        snaps = {roles[k]: after_info[k]["rdb_saves"] - before_info[k]["rdb_saves"] for k in pids}
        fsyncs = (after_info[leader]["log_fsyncs"] - before_info[leader]["log_fsyncs"]) / n
        return Run(
            condition=condition,
            rps=out["rps"],
            p50_ms=out["p50_latency_ms"],
            p99_ms=out["p99_latency_ms"],
            cpu_us=cpu,
            snapshots=snaps,
            snapshot_bytes=after_info[leader].get("snapshot_last_bytes", 0),
            data_mib=dir_mib(cluster.dir),
            fsyncs_per_set=fsyncs,
            extra=extra,
        )


def show(run: Run) -> str:
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in run.cpu_us.items())
    snaps = "/".join(str(run.snapshots[k]) for k in sorted(run.snapshots))
    extra = "".join(f" {k}={v:,.1f}" for k, v in run.extra.items())
    return (
        f"{run.condition:<12} {run.rps:>9,.0f} SET/s p50 {run.p50_ms:.2f} p99 {run.p99_ms:.2f} ms"
        f" | CPU us/SET {cpu}; total {sum(run.cpu_us.values()):.1f}"
        f" | snapshots in run {snaps} (last {run.snapshot_bytes / 1e6:.1f} MB)"
        f" | data {run.data_mib:.0f} MiB | fsyncs/SET {run.fsyncs_per_set:.4f}{extra}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("-n", type=int, default=300_000, help="requests of a measured run (~4 s)")
    ap.add_argument("--short-n", type=int, default=40_000, help="requests of fresh-short")
    ap.add_argument("--prefill", type=int, default=1_000_000, help="SETs before keys/log")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--data-dir", type=Path, help="where the nodes' data go (default: /tmp)")
    args = ap.parse_args(argv)
    conditions = [c for c in args.conditions.split(",") if c]
    for c in conditions:
        if c not in CONDITIONS:
            ap.error(f"unknown condition {c!r}; known: {', '.join(CONDITIONS)}")
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark is not installed (Debian: redis-tools)", file=sys.stderr)
        return 2
    for k, v in machine_info(args.data_dir or Path("/tmp")).items():
        print(f"{k}: {v}")
    runs: list[Run] = []
    for rep in range(args.reps):
        for condition in conditions:
            run = one_run(condition, args)
            runs.append(run)
            print(f"rep {rep} " + show(run), flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("medians:")
    for condition in conditions:
        mine = [r for r in runs if r.condition == condition]
        rps = statistics.median(r.rps for r in mine)
        p99 = statistics.median(r.p99_ms for r in mine)
        cpu = statistics.median(sum(r.cpu_us.values()) for r in mine)
        lead = statistics.median(r.cpu_us["leader"] for r in mine)
        lo, hi = min(r.rps for r in mine), max(r.rps for r in mine)
        print(
            f"  {condition:<12} {rps:>9,.0f} SET/s ({lo:,.0f}-{hi:,.0f}) p99 {p99:.1f} ms"
            f" | CPU us/SET three nodes {cpu:.1f}, leader {lead:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
