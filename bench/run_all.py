"""The whole benchmark suite in one command: every part, then docs/benchmarks.md and the plots.

Parts (each also runs on its own, ``python bench/NAME.py --help``):

- ``tob_inmemory``: total-order broadcast, all replicas in one process;
- ``tob_cluster``: ``PAXOS.BROADCAST`` against 3 durable node processes;
- ``kv``: a fresh 3-node cluster as a Redis server (redis-benchmark and the Python
  asyncio generator);
- ``peers``: PySyncObj, ZooKeeper, etcd, Redis and Redis with
  ``appendfsync always``, with the same write load, in the same run.

It prints each row as it is measured (live progress bars on a terminal),
then the ratios of paxostob to each peer, and rewrites the generated block
of ``docs/benchmarks.md`` and the PNGs in ``docs/bench/``. A peer that is not
installed or does not start is reported as "not available: <reason>".
``--install-peers`` installs the peers first (apt-get and pip; nothing is
installed otherwise).

    python bench/run_all.py --quick                 # under 2 minutes (CI's mode)
    python bench/run_all.py                         # medians of 3 runs, ~30 minutes
    python bench/run_all.py --install-peers         # apt-get/pip install the peers first
    python bench/run_all.py --parts kv,peers --only-peers redis,redis-fsync
    python bench/run_all.py --from-json r.json      # re-render a saved run
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import kv
import peers
import report
import tob_cluster
import tob_inmemory
from benchcommon import (
    REPO,
    Measurement,
    Progress,
    SystemInfo,
    load_json,
    load_machine,
    machine_info,
    median_of,
    rows_table,
    save_json,
)
from drivers import Budget, add_budget_args, budget_from_args
from paxos_cluster import PaxosCluster

PARTS = ("tob_inmemory", "tob_cluster", "kv", "peers")


def run_tob_inmemory(budget: Budget, quick: bool, progress: Progress) -> list[Measurement]:
    """tob_inmemory's configurations as rows (``system = paxostob (in-process)``)."""
    loop_name, run = tob_inmemory.event_loop_runner(True)
    replica_counts = (3,) if quick else (3, 5)
    sizes: tuple[int, ...] = (tob_inmemory.SMALL_PAYLOAD_BYTES,)
    if not quick:
        sizes += (tob_inmemory.LARGE_PAYLOAD_BYTES,)
    messages = min(budget.requests, 2000 if quick else 10_000)
    rows = []
    for replicas in replica_counts:
        for size in sizes:
            for batching in (True, False):
                config = tob_inmemory.Config(
                    replicas=replicas,
                    batching=batching,
                    payload_bytes=size,
                    concurrency=50,
                    messages=messages,
                    time_max_s=max(budget.run_s * 3, 3.0),
                    tick_interval_s=0.01,
                )
                size_name = f"{size}B" if size < 1024 else f"{size // 1024}KiB"
                workload = f"tob r={replicas} batching={'on' if batching else 'off'} {size_name}"
                runs = []
                for k in range(budget.repeats):
                    with progress.task(f"tob_inmemory: {workload} (run {k + 1})", 1) as advance:
                        result = run(tob_inmemory.run_config(config))
                        advance(1)
                    runs.append(
                        Measurement(
                            system=report.INMEMORY,
                            workload=workload,
                            tool="in-process",
                            clients=50,
                            pipeline=1,
                            ops_s=result.throughput,
                            p50_ms=result.latency_ms(0.50),
                            p99_ms=result.latency_ms(0.99),
                            requests=result.completed,
                            note=loop_name,
                        )
                    )
                row = median_of(runs)
                progress.log(
                    f"  {report.INMEMORY:<28} {workload:<28} {row.ops_s:>10,.0f} deliveries/s  "
                    f"p50 {row.p50_ms:.2f} ms  p99 {row.p99_ms:.2f} ms"
                )
                rows.append(row)
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) if __doc__ else None,
    )
    add_budget_args(p)
    p.add_argument("--parts", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    p.add_argument("--only-peers", help=f"subset of {','.join(peers.PEERS)}")
    p.add_argument("--install-peers", action="store_true", help="apt-get/pip install the peers")
    p.add_argument(
        "--doc", type=Path, default=REPO / "docs" / "benchmarks.md", help="report to rewrite"
    )
    p.add_argument("--plots-dir", type=Path, default=REPO / "docs" / "bench")
    p.add_argument("--no-doc", action="store_true", help="print only; write no report or plots")
    p.add_argument("--json", type=Path, metavar="FILE", help="also save the rows as JSON")
    p.add_argument(
        "--from-json", type=Path, metavar="FILE", help="render a saved run, measure nothing"
    )
    p.add_argument("--data-dir", type=Path, help="where the nodes' data go (default: a temp dir)")
    args = p.parse_args(argv)
    args.parts = [x for x in args.parts.split(",") if x]
    for part in args.parts:
        if part not in PARTS:
            p.error(f"unknown part {part!r}; known: {', '.join(PARTS)}")
    args.only_peers = [x for x in args.only_peers.split(",") if x] if args.only_peers else None
    for name in args.only_peers or ():
        if name not in peers.PEERS:
            p.error(f"unknown peer {name!r}; known: {', '.join(peers.PEERS)}")
    return args


def measure(
    args: argparse.Namespace, progress: Progress
) -> tuple[list[SystemInfo], list[Measurement]]:
    budget = budget_from_args(args)
    systems: list[SystemInfo] = []
    rows: list[Measurement] = []
    if args.install_peers and "peers" in args.parts:
        peers.install_peers(progress)
    t0 = time.monotonic()

    def took(part: str) -> None:
        nonlocal t0
        progress.log(f"   ({part} took {time.monotonic() - t0:.0f} s)")
        t0 = time.monotonic()

    # A part that fails is reported in the paxostob row's status; the others still run.
    info = kv.system_info()

    def failed(part: str, e: Exception) -> None:
        info.notes.append(f"{part} failed: {type(e).__name__}: {str(e)[-200:]}")
        progress.log(f"   {info.notes[-1]}")

    if "tob_inmemory" in args.parts:
        progress.log("== tob_inmemory: 50 broadcasters, all replicas in one process")
        try:
            rows += run_tob_inmemory(budget, args.quick, progress)
        except Exception as e:
            failed("tob_inmemory", e)
        took("tob_inmemory")
    # Each part gets a fresh cluster: a row must not depend on what the rows before it left
    # in the state (the broadcast log and other key families make every snapshot larger;
    # docs/benchmarks.md, "The -P 16 gap", measures that condition on its own).
    if "tob_cluster" in args.parts:
        progress.log("== tob_cluster: PAXOS.BROADCAST from 1..50 broadcasters, 3 durable nodes")
        try:
            with PaxosCluster(3, base_dir=args.data_dir) as cluster:
                progress.log(f"   nodes (pid): {cluster.pids()}, leader {cluster.leader_id()}")
                rows += tob_cluster.run(budget, progress, cluster)[1]
        except Exception as e:
            failed("tob_cluster", e)
        took("tob_cluster")
    if "kv" in args.parts:
        progress.log("== kv: SET/GET, Python generator and redis-benchmark, 3 durable nodes")
        try:
            with PaxosCluster(3, base_dir=args.data_dir) as cluster:
                progress.log(f"   nodes (pid): {cluster.pids()}, leader {cluster.leader_id()}")
                kv_info, kv_rows = kv.run(budget, progress, cluster)
                info.notes += kv_info.notes
                rows += kv_rows
        except Exception as e:
            failed("kv", e)
        took("kv")
    if any(p in args.parts for p in ("tob_inmemory", "tob_cluster", "kv")):
        systems.append(info)
    if "peers" in args.parts:
        progress.log("== peers: the same write load on the systems users would pick instead")
        peer_infos, peer_rows = peers.run(budget, progress, only=args.only_peers)
        systems += peer_infos
        rows += peer_rows
        took("peers")
    return systems, rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    command = "python bench/run_all.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    machine = machine_info(args.data_dir or Path("/tmp"))
    with Progress() as progress:
        for k, v in machine.items():
            progress.log(f"{k}: {v}")
        if args.from_json:
            systems, rows = load_json(args.from_json)
            machine = load_machine(args.from_json) or machine
            # The command that measured them, not this re-rendering.
            command = machine.pop("measured by", command)
        else:
            systems, rows = measure(args, progress)
    print(rows_table(rows) if rows else "(no rows)")
    for s in systems:
        if s.unavailable:
            print(f"{s.name}: {s.unavailable}")
    print("\nRatios (paxostob / peer, ops/s):")
    for line in report.ratio_lines(rows):
        print("  " + line)
    print("\nPerformance goals:")
    for g in report.goals(rows):
        state = "-" if g.holds is None else ("holds" if g.holds else "DOES NOT HOLD")
        print(f"  {g.text}: {g.measured} [{state}] {g.vs}")
    if hasattr(os, "getloadavg") and not args.from_json:
        machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.json:
        save_json(args.json, systems, rows, {**machine, "measured by": command.strip()})
    if not args.no_doc:
        plots, note = report.make_plots(rows, args.plots_dir)
        block = report.generated_block(
            machine,
            systems,
            rows,
            command=command.strip(),
            plots=plots,
            plots_note=note,
        )
        report.update_doc(args.doc, "generated", block)
        print(
            f"\nwrote {args.doc}"
            + (f" and {len(plots)} plots in {args.plots_dir}" if plots else "")
        )
    print(f"took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
