"""Total-order broadcast throughput and latency, all replicas in one process.

For 3 and 5 replicas on a fault-free ``MemoryNetwork``, with batching on
(the default ``LogConfig``) and off (``batch_count_max=1``), ``K`` concurrent
broadcasters (spread over the replicas) send a bounded number of messages.
Reported per configuration:

- msg/s: messages delivered at *every* replica per second, from the first
  broadcast to the last replica's last delivery;
- CPU µs/msg: this process's CPU time (``time.process_time``) over the same
  span, divided by the messages delivered: the protocol's cost per message,
  steadier than msg/s when other work shares the machine's cores;
- p50 / p99: latency of ``broadcast()``, i.e. until the message is delivered
  at the broadcasting replica.

Every replica runs in this one process and one event loop, so this measures
the protocol's CPU cost plus the runtime's scheduling, not a network.
Each configuration stops at ``--messages`` or ``--time-max-s``, whichever
comes first. Nothing is written unless ``--out FILE`` is given.

    python bench/tob_inmemory.py            # a few thousand messages per configuration
    python bench/tob_inmemory.py --quick    # under ~20 s in all
    python bench/tob_inmemory.py --large    # also 4 KiB payloads
    python bench/tob_inmemory.py --many 64  # also broadcast_many, 64 messages per call
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, TextIO

from paxostob import LogConfig, MemoryNetwork, TotalOrderBroadcast

SMALL_PAYLOAD_BYTES = 100
LARGE_PAYLOAD_BYTES = 4096
#: A broadcast of a healthy in-memory cluster takes milliseconds: this only
#: bounds a bug (a hung configuration fails instead of hanging the bench).
BROADCAST_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Config:
    replicas: int
    batching: bool
    payload_bytes: int
    concurrency: int
    messages: int
    time_max_s: float
    tick_interval_s: float
    #: Messages per call: 1 is ``broadcast``; more is ``broadcast_many``.
    per_call: int = 1


@dataclass(frozen=True, slots=True)
class Result:
    config: Config
    #: Broadcasts that completed (delivered at their origin).
    completed: int
    #: From the first broadcast to the last delivery at the slowest replica.
    elapsed_s: float
    #: This process's CPU time over the same span.
    cpu_s: float
    latencies_s: tuple[float, ...]

    @property
    def throughput(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_us_per_message(self) -> float:
        return self.cpu_s / self.completed * 1e6 if self.completed else 0.0

    def latency_ms(self, q: float) -> float:
        return percentile(self.latencies_s, q) * 1000


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by nearest rank; 0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


class Counter:
    """Counts one replica's deliveries; ``reached`` fires once ``target`` is met."""

    def __init__(self) -> None:
        self.count = 0
        self.target: int | None = None
        self.reached = asyncio.Event()
        self.reached_at = 0.0
        self.reached_cpu = 0.0

    def check(self) -> None:
        if self.target is not None and self.count >= self.target and not self.reached.is_set():
            self.reached_at = time.perf_counter()
            self.reached_cpu = time.process_time()
            self.reached.set()


async def consume(node: TotalOrderBroadcast, counter: Counter) -> None:
    async for _ in node.deliveries():
        counter.count += 1
        counter.check()


async def run_config(config: Config) -> Result:
    """One configuration on a fresh network; returns its measurements."""
    net = MemoryNetwork(seed=1)
    members = [f"r{i}" for i in range(1, config.replicas + 1)]
    log_config = LogConfig() if config.batching else LogConfig(batch_count_max=1)
    nodes = [
        TotalOrderBroadcast(
            net.transport(m),
            members,
            tick_interval_s=config.tick_interval_s,
            config=log_config,
            seed=1,
        )
        for m in members
    ]
    for node in nodes:
        await node.start()
    try:
        # Warm up: elect a leader and deliver one message everywhere before timing.
        await nodes[0].broadcast(b"warm-up", timeout=BROADCAST_TIMEOUT_S)
        for node in nodes:
            await asyncio.wait_for(node.deliver(), BROADCAST_TIMEOUT_S)

        counters = [Counter() for _ in nodes]
        consumers = [
            asyncio.ensure_future(consume(node, c)) for node, c in zip(nodes, counters, strict=True)
        ]
        payload = b"x" * config.payload_bytes
        latencies: list[float] = []
        issued = 0
        start = time.perf_counter()
        start_cpu = time.process_time()
        deadline = start + config.time_max_s

        async def broadcaster(node: TotalOrderBroadcast) -> None:
            nonlocal issued
            while issued < config.messages and time.perf_counter() < deadline:
                if config.per_call == 1:
                    issued += 1
                    t0 = time.perf_counter()
                    await node.broadcast(payload, timeout=BROADCAST_TIMEOUT_S)
                    latencies.append(time.perf_counter() - t0)
                    continue
                n = min(config.per_call, config.messages - issued)
                issued += n
                t0 = time.perf_counter()
                await node.broadcast_many([payload] * n, timeout=BROADCAST_TIMEOUT_S)
                latencies.extend([time.perf_counter() - t0] * n)

        await asyncio.gather(
            *(broadcaster(nodes[i % len(nodes)]) for i in range(config.concurrency))
        )
        for c in counters:
            c.target = len(latencies)
            c.check()
        await asyncio.wait_for(
            asyncio.gather(*(c.reached.wait() for c in counters)), BROADCAST_TIMEOUT_S
        )
        elapsed = max(c.reached_at for c in counters) - start
        cpu = max(c.reached_cpu for c in counters) - start_cpu
    finally:
        for node in nodes:
            await node.close()
    await asyncio.gather(*consumers)
    return Result(config, len(latencies), elapsed, cpu, tuple(latencies))


def event_loop_runner(
    use_uvloop: bool,
) -> tuple[str, Callable[[Coroutine[Any, Any, Result]], Result]]:
    """The loop's name and a function running one coroutine on a fresh loop."""
    if use_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:

            def run_uvloop(coro: Coroutine[Any, Any, Result]) -> Result:
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    return runner.run(coro)

            return f"uvloop {getattr(uvloop, '__version__', '?')}", run_uvloop
    return "asyncio (default loop)", asyncio.run


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines(loop_name: str) -> list[str]:
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return [
        f"machine: {cpu_model()}, {cores} cores ({usable} usable), {platform.system()}",
        f"python:  {platform.python_implementation()} {platform.python_version()}",
        f"loop:    {loop_name} (one process, one loop, every replica in it)",
    ]


HEADER = (
    "replicas",
    "batching",
    "payload",
    "K",
    "messages",
    "elapsed s",
    "msg/s",
    "CPU µs/msg",
    "p50 ms",
    "p99 ms",
)


def table_row(r: Result) -> tuple[str, ...]:
    c = r.config
    size = f"{c.payload_bytes} B" if c.payload_bytes < 1024 else f"{c.payload_bytes // 1024} KiB"
    return (
        str(c.replicas),
        ("on" if c.batching else "off")
        + (f", broadcast_many x{c.per_call}" if c.per_call > 1 else ""),
        size,
        str(c.concurrency),
        str(r.completed),
        f"{r.elapsed_s:.2f}",
        f"{r.throughput:,.0f}",
        f"{r.cpu_us_per_message:.1f}",
        f"{r.latency_ms(0.50):.1f}",
        f"{r.latency_ms(0.99):.1f}",
    )


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines: list[str] = []
    for k, row in enumerate(rows):
        cells = [cell.rjust(w) for cell, w in zip(row, widths, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
        if k == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="fewer messages, shorter time cap (~20 s)")
    p.add_argument("--replicas", default="3,5", help="comma-separated cluster sizes (default: 3,5)")
    p.add_argument(
        "--messages", type=int, default=None, help="per configuration (default 5000; quick 2000)"
    )
    p.add_argument("--concurrency", "-K", type=int, default=50, help="concurrent broadcasters (50)")
    p.add_argument(
        "--time-max-s",
        type=float,
        default=None,
        help="per configuration cap (default 30; quick 3)",
    )
    p.add_argument("--large", action="store_true", help="also run 4 KiB payloads")
    p.add_argument(
        "--tick-interval-s",
        type=float,
        default=0.01,
        help="the nodes' tick (default 0.01, the library's default)",
    )
    p.add_argument(
        "--many",
        type=int,
        default=0,
        metavar="N",
        help="also a row per cluster size with broadcast_many of N messages per call",
    )
    p.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    p.add_argument("--out", metavar="FILE", help="also write the report to FILE")
    args = p.parse_args(argv)
    if args.messages is None:
        args.messages = 2000 if args.quick else 5000
    if args.time_max_s is None:
        args.time_max_s = 3.0 if args.quick else 30.0
    if args.messages < 1 or args.concurrency < 1 or args.time_max_s <= 0 or args.many < 0:
        p.error("--messages, --concurrency and --time-max-s must be positive, --many >= 0")
    return args


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = parse_args(argv)
    stream = out if out is not None else sys.stdout
    loop_name, run = event_loop_runner(not args.no_uvloop)
    sizes = [SMALL_PAYLOAD_BYTES] + ([LARGE_PAYLOAD_BYTES] if args.large else [])
    replica_counts = [int(x) for x in args.replicas.split(",") if x.strip()]
    report = [*machine_lines(loop_name)]
    report.append(
        f"setup:   tick {args.tick_interval_s * 1000:g} ms, up to {args.messages} messages "
        f"or {args.time_max_s:g} s per row, K={args.concurrency} broadcasters spread over "
        "the replicas, no faults"
    )
    for line in report:
        print(line, file=stream, flush=True)
    rows: list[tuple[str, ...]] = [HEADER]
    for replicas in replica_counts:
        for payload_bytes in sizes:
            for batching in (True, False):
                config = Config(
                    replicas=replicas,
                    batching=batching,
                    payload_bytes=payload_bytes,
                    concurrency=args.concurrency,
                    messages=args.messages,
                    time_max_s=args.time_max_s,
                    tick_interval_s=args.tick_interval_s,
                )
                configs = [config]
                if batching and args.many > 1:
                    configs.append(replace(config, per_call=args.many))
                for c in configs:
                    result = run(run_config(c))
                    rows.append(table_row(result))
                    print(f"  done: {table_row(result)[:3]}", file=stream, flush=True)
    table = format_table(rows)
    print(table, file=stream, flush=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("\n".join([*report, table]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
