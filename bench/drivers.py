"""The two ways the suite drives a server: ``redis-benchmark`` and the Python asyncio generator.

Both turn runs into ``Measurement`` rows (medians of ``Budget.repeats`` runs)
and bound every run in count and time:

- ``redis-benchmark`` has no time limit, only ``-n``: the request count of a
  run is sized from the rate measured so far (a small probe first) so a run
  lasts about ``Budget.run_s``; a run that still overruns is killed at
  ``RB_TIMEOUT_S`` and reported as an error.
- the Python generator stops at ``Budget.requests`` or ``Budget.run_s``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from benchcommon import (
    VALUE_BYTES,
    Measurement,
    Progress,
    cpu_total_s,
    median_of,
    optional_module,
)
from loadgen import ClientFactory, LoadResult, run_load

T = TypeVar("T")

#: A single redis-benchmark run longer than this is a hung server.
RB_TIMEOUT_S = 300.0
#: Runs of redis-benchmark repeated after an error reply (an election), and the pause first.
RB_ATTEMPTS = 4
RB_RETRY_PAUSE_S = 1.0
#: Random keys for redis-benchmark (-r): GETs hit keys the SETs wrote.
KEYSPACE = 100_000


@dataclass(frozen=True, slots=True)
class Budget:
    """How much of each measurement to do."""

    #: Target (Python generator: maximum) seconds of one run.
    run_s: float
    #: Runs per configuration; the row holds their medians.
    repeats: int
    #: Client counts of the Python generator's rows.
    clients: tuple[int, ...]
    #: Maximum requests of one Python generator run / one redis-benchmark run.
    requests: int
    #: redis-benchmark configurations: (clients, pipeline).
    rb_configs: tuple[tuple[int, int], ...] = ((1, 1), (1, 16), (50, 1), (50, 16))
    #: Skip what is slow and known to lose (PySyncObj with batching on).
    quick: bool = False


#: --quick: CI's smoke run of the whole suite, under 2 minutes with every peer installed.
QUICK = Budget(
    run_s=1.0,
    repeats=1,
    clients=(1, 50),
    requests=200_000,
    rb_configs=((1, 1), (50, 1), (50, 16)),
    quick=True,
)
FULL = Budget(run_s=4.0, repeats=3, clients=(1, 10, 50), requests=2_000_000)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on a fresh uvloop loop when uvloop is installed (what the nodes use too)."""
    uvloop = optional_module("uvloop")
    if uvloop is not None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


def python_load(
    system: str,
    workload: str,
    factory: Callable[[], ClientFactory],
    budget: Budget,
    progress: Progress,
    *,
    clients: Sequence[int] | None = None,
) -> list[Measurement]:
    """Rows of the Python generator for each client count (``factory()`` per run)."""
    rows = []
    for n in clients if clients is not None else budget.clients:
        runs = []
        for k in range(budget.repeats):
            label = f"{system}: {workload}, {n} clients (run {k + 1}/{budget.repeats})"
            with progress.task(label, budget.requests) as advance:
                result: LoadResult = run_async(
                    run_load(
                        factory(),
                        clients=n,
                        requests=budget.requests,
                        time_max_s=budget.run_s,
                        progress=advance,
                    )
                )
            runs.append(
                Measurement(
                    system=system,
                    workload=workload,
                    tool="python-asyncio",
                    clients=n,
                    pipeline=1,
                    ops_s=result.ops_s,
                    p50_ms=result.ms(0.50),
                    p99_ms=result.ms(0.99),
                    p999_ms=result.ms(0.999),
                    requests=result.completed,
                    errors=result.errors,
                )
            )
        row = median_of(runs)
        progress.log(
            f"  {system:<28} {workload:<9} c={n:<3} {row.ops_s:>10,.0f} ops/s  "
            f"p50 {row.p50_ms:.2f} ms  p99 {row.p99_ms:.2f} ms  p999 {row.p999_ms or 0:.2f} ms"
        )
        rows.append(row)
    return rows


def redis_benchmark_available() -> str | None:
    """None if redis-benchmark is installed, else why not."""
    if shutil.which("redis-benchmark") is None:
        return "redis-benchmark not installed (Debian: redis-tools)"
    return None


def redis_benchmark_once(
    port: int, test: str, clients: int, pipeline: int, requests: int
) -> dict[str, float]:
    """One run; its CSV line as floats (rps, p50_latency_ms, p99_latency_ms, ...)."""
    cmd = [
        "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test,
        "-d", str(VALUE_BYTES), "-r", str(KEYSPACE), "-c", str(clients),
        "-P", str(pipeline), "-n", str(requests), "--csv",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=RB_TIMEOUT_S, check=False)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    if done.returncode != 0 or not rows:
        raise RuntimeError(f"redis-benchmark failed: {done.stderr.strip()[-300:]}")
    return {k: float(v) for k, v in rows[0].items() if k != "test"}


class Retried:
    """Runs again a redis-benchmark run that met an error reply (it stops at the first).

    A paxostob leader change answers -TRYAGAIN until the new leader is known;
    the run is repeated (against the leader ``port()`` names then) up to
    ``RB_ATTEMPTS`` times, and the row's note says how often that happened.
    """

    def __init__(self, port: int | Callable[[], int], progress: Progress) -> None:
        self.port = port
        self.progress = progress
        self.retries = 0
        self.last_error = ""

    def __call__(self, test: str, clients: int, pipeline: int, requests: int) -> dict[str, float]:
        for attempt in range(RB_ATTEMPTS):
            port = self.port() if callable(self.port) else self.port
            try:
                return redis_benchmark_once(port, test, clients, pipeline, requests)
            except RuntimeError as e:
                if attempt == RB_ATTEMPTS - 1:
                    raise
                self.retries += 1
                text = str(e).replace("redis-benchmark failed: ", "")
                self.last_error = text.replace("Error from server: ", "").split(";")[0][:70]
                self.progress.log(f"  retrying after: {self.last_error}")
                time.sleep(RB_RETRY_PAUSE_S)
        raise AssertionError("unreachable")


def redis_benchmark(
    system: str,
    port: int | Callable[[], int],
    budget: Budget,
    progress: Progress,
    tests: Sequence[str] = ("set", "get"),
    server_pids: Callable[[], Iterable[int]] | None = None,
) -> list[Measurement]:
    """Rows of ``redis-benchmark -t TEST -d 100 -c C -P P`` for every test and configuration.

    ``port`` may be a function: it is asked again before a retried run (the leader moved).
    With ``server_pids``, each row also has the servers' CPU time per request
    (every process summed: all replicas), read from /proc around each run.
    """
    rows = []
    once = Retried(port, progress)
    for test in tests:
        for clients, pipeline in budget.rb_configs:
            runs = []
            retries_before = once.retries
            floor = clients * pipeline * 2
            # A small probe, not recorded, sizes the runs: rates differ by 1000x between
            # configurations and systems.
            probe = max(floor, 100)
            rate_seen = once(test, clients, pipeline, probe)["rps"]
            for _ in range(4):
                if 0 < rate_seen < float("inf"):
                    break
                probe *= 10  # it was done within the clock's resolution
                rate_seen = once(test, clients, pipeline, probe)["rps"]
            for k in range(budget.repeats):
                requests = max(floor, min(budget.requests, int(rate_seen * budget.run_s)))
                label = f"{system}: redis-benchmark -t {test} -c {clients} -P {pipeline}"
                pids = list(server_pids()) if server_pids is not None else []
                cpu_before = cpu_total_s(pids)
                with progress.task(f"{label} (run {k + 1}, n={requests})", 1) as advance:
                    out = once(test, clients, pipeline, requests)
                    advance(1)
                cpu_us = (cpu_total_s(pids) - cpu_before) * 1e6 / requests if pids else None
                rate_seen = out["rps"]
                runs.append(
                    Measurement(
                        system=system,
                        workload=test,
                        tool="redis-benchmark",
                        clients=clients,
                        pipeline=pipeline,
                        ops_s=out["rps"],
                        p50_ms=out["p50_latency_ms"],
                        p99_ms=out["p99_latency_ms"],
                        requests=requests,
                        cpu_us_per_op=cpu_us,
                    )
                )
            row = median_of(runs)
            if once.retries > retries_before:
                retried = once.retries - retries_before
                row = replace(row, note=f"{retried} run(s) repeated after `{once.last_error}`")
            progress.log(
                f"  {system:<28} {test:<9} c={clients:<3} P={pipeline:<3} "
                f"{row.ops_s:>10,.0f} ops/s  p50 {row.p50_ms:.2f} ms  p99 {row.p99_ms:.2f} ms"
            )
            rows.append(row)
    return rows


def add_budget_args(p: Any) -> None:
    """--quick, --runs, --run-s, --requests, --clients (an argparse parser)."""
    p.add_argument("--quick", action="store_true", help="1 run of ~1 s per row (CI's mode)")
    p.add_argument("--runs", type=int, help="runs per row, medians reported (full: 3)")
    p.add_argument("--run-s", type=float, help="seconds per run (full: 4, quick: 1)")
    p.add_argument("--requests", type=int, help="requests cap per run")
    p.add_argument("--clients", help="client counts of the Python generator, e.g. 1,50")


def budget_from_args(args: Any) -> Budget:
    base = QUICK if args.quick else FULL
    clients = base.clients
    if args.clients:
        clients = tuple(int(x) for x in args.clients.split(",") if x.strip())
    budget = Budget(
        run_s=args.run_s if args.run_s is not None else base.run_s,
        repeats=args.runs if args.runs is not None else base.repeats,
        clients=clients,
        requests=args.requests if args.requests is not None else base.requests,
        rb_configs=base.rb_configs,
        quick=args.quick,
    )
    if budget.run_s <= 0 or budget.repeats < 1 or budget.requests < 1 or not clients:
        raise SystemExit("--run-s, --runs, --requests and --clients must be positive")
    return budget
