"""The replicated key-value store: a 3-node durable paxostob cluster driven as a Redis server.

- ``redis-benchmark -t set,get -d 100 -r 100000`` with ``-c 1``/``-c 50`` and
  ``-P 1``/``-P 16``, with the CPU time per request of the three node
  processes summed (GETs are linearizable: read-index reads, the default);
- the Python asyncio generator: SET of 100-byte values with 1 and 50 clients
  (full mode: also 10), with p50/p99/p999 latency.

All clients talk to the leader's RESP port (a follower would forward to it,
one more hop). Each node fsyncs (its append-only log, one fsync per batch) before it
answers. Nothing is written unless ``--json FILE`` is given.

    python bench/kv.py --quick          # ~20 s
    python bench/kv.py                  # 3 runs of ~4 s per row, medians
    python bench/kv.py --requests 200 --runs 1 --clients 1,50   # tiny (the smoke test)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchcommon import (
    VALUE_BYTES,
    Measurement,
    Progress,
    SystemInfo,
    rows_table,
    save_json,
    uvloop_version,
)
from drivers import (
    Budget,
    add_budget_args,
    budget_from_args,
    python_load,
    redis_benchmark,
    redis_benchmark_available,
)
from loadgen import ClientFactory, resp_factory, set_command
from paxos_cluster import PaxosCluster

SYSTEM = "paxostob"
KEYSPACE = 100_000


def system_info() -> SystemInfo:
    from importlib.metadata import version

    uv = uvloop_version()
    return SystemInfo(
        name=SYSTEM,
        version=version("paxostob"),
        durability="fsync (append-only log, one fdatasync per batch, before acknowledging)",
        replicas=3,
        uvloop=f"on ({uv})" if uv else "off (not installed)",
    )


def run(
    budget: Budget,
    progress: Progress,
    cluster: PaxosCluster | None = None,
    *,
    use_redis_benchmark: bool = True,
) -> tuple[SystemInfo, list[Measurement]]:
    """Measure the kv store; starts (and stops) a cluster unless one is given."""
    if cluster is None:
        with PaxosCluster(3) as own:
            return run(budget, progress, own, use_redis_benchmark=use_redis_benchmark)
    info = system_info()
    port = cluster.leader_port()
    value = b"v" * VALUE_BYTES
    rows: list[Measurement] = []

    def factory() -> ClientFactory:
        return resp_factory([port], lambda i: set_command(i, value, KEYSPACE))

    rows += python_load(SYSTEM, "set", factory, budget, progress)
    missing = redis_benchmark_available() if use_redis_benchmark else "not asked for"
    if missing is None:
        try:
            rows += redis_benchmark(
                SYSTEM,
                cluster.leader_port,
                budget,
                progress,
                server_pids=lambda: cluster.pids().values(),
            )
        except Exception as e:  # keep the rows measured so far; say what failed
            info.notes.append(f"redis-benchmark rows failed: {type(e).__name__}: {str(e)[-200:]}")
    else:
        info.notes.append(f"redis-benchmark rows: not available: {missing}")
    return info, rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_budget_args(p)
    p.add_argument("--no-redis-benchmark", action="store_true", help="Python generator only")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    budget = budget_from_args(args)
    with Progress() as progress:
        info, rows = run(budget, progress, use_redis_benchmark=not args.no_redis_benchmark)
    print(rows_table(rows))
    for note in info.notes:
        print(note)
    if args.json:
        save_json(args.json, [info], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
