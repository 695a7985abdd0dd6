"""Total-order broadcast across processes: 3 durable paxostob nodes on loopback.

``PAXOS.BROADCAST <100 bytes>`` over RESP from the Python asyncio generator,
with 1 and 50 concurrent broadcasters (full mode: also 10) spread over the
three nodes (any node accepts a broadcast; a follower forwards it to the
leader). A broadcast's latency is until its reply: the message is delivered
on the node the client talks to, after a majority stored it with an fsync.

    python bench/tob_cluster.py --quick
    python bench/tob_cluster.py --requests 50 --runs 1 --clients 1,50   # tiny
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchcommon import VALUE_BYTES, Measurement, Progress, SystemInfo, rows_table, save_json
from drivers import Budget, add_budget_args, budget_from_args, python_load
from kv import system_info
from loadgen import ClientFactory, resp_factory
from paxos_cluster import PaxosCluster

SYSTEM = "paxostob"


def run(
    budget: Budget, progress: Progress, cluster: PaxosCluster | None = None
) -> tuple[SystemInfo, list[Measurement]]:
    if cluster is None:
        with PaxosCluster(3) as own:
            return run(budget, progress, own)
    payload = b"m" * VALUE_BYTES
    ports = cluster.resp_ports()

    def factory() -> ClientFactory:
        return resp_factory(ports, lambda i: lambda n: (b"PAXOS.BROADCAST", payload))

    rows = python_load(SYSTEM, "broadcast", factory, budget, progress)
    return system_info(), rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_budget_args(p)
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    with Progress() as progress:
        info, rows = run(budget_from_args(args), progress)
    print(rows_table(rows))
    if args.json:
        save_json(args.json, [info], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
