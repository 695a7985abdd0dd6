"""Durable vs in-memory total-order broadcast, and fsyncs per broadcast (group commit).

Three replicas in one process on a fault-free ``MemoryNetwork``; each either
keeps its state in memory or in its own directory with the default durable
store (``default_storage``: fsync on every save that changed a promise or
accepted entries). ``K``
concurrent broadcasters (1 and 50) send a bounded number of 100-byte
messages, spread over the replicas. Reported per configuration: broadcasts/s
(delivered at their origin), p50/p99 latency of ``broadcast()``, and for the
durable store the fsyncs (durable commits) of all replicas per broadcast —
group commit makes that far below 1 under concurrency.

    python bench/tob_durable.py             # 2,000 messages per configuration
    python bench/tob_durable.py --quick     # a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from paxostob import MemoryNetwork, TotalOrderBroadcast
from paxostob.storage.default import default_storage

MEMBERS = ["peer1", "peer2", "peer3"]
PAYLOAD = b"x" * 100
TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Row:
    durable: bool
    concurrency: int
    messages: int
    elapsed_s: float
    p50_ms: float
    p99_ms: float
    fsyncs: int

    @property
    def rate(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s else 0.0


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def measure(durable: bool, concurrency: int, messages: int, tmp: Path) -> Row:
    net = MemoryNetwork(seed=1)
    storages = {m: default_storage(tmp / m) for m in MEMBERS} if durable else {}
    nodes = [
        TotalOrderBroadcast(
            net.transport(m), MEMBERS, storage=storages.get(m), seed=1, bootstrap=True
        )
        for m in MEMBERS
    ]
    for n in nodes:
        await n.start()
    try:
        await nodes[0].broadcast(b"warm-up", timeout=TIMEOUT_S)  # an elected leader
        syncs_before = sum(s.sync_count for s in storages.values())
        latencies: list[float] = []
        left = messages

        async def worker(k: int) -> None:
            nonlocal left
            node = nodes[k % len(nodes)]
            while left > 0:
                left -= 1
                t = time.perf_counter()
                await node.broadcast(PAYLOAD, timeout=TIMEOUT_S)
                latencies.append(time.perf_counter() - t)

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - start
        fsyncs = sum(s.sync_count for s in storages.values()) - syncs_before
    finally:
        for n in nodes:
            await n.close()
    return Row(
        durable,
        concurrency,
        len(latencies),
        elapsed,
        _pct(latencies, 0.5),
        _pct(latencies, 0.99),
        fsyncs,
    )


async def main_async(messages: int) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (durable, concurrency) in enumerate(
            [(False, 1), (True, 1), (False, 50), (True, 50)]
        ):
            rows.append(await measure(durable, concurrency, messages, Path(tmp) / str(k)))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--quick", action="store_true", help="300 messages per configuration")
    args = p.parse_args(argv)
    messages = 300 if args.quick else args.messages
    rows = asyncio.run(main_async(messages))
    print(f"machine: {platform.processor() or platform.machine()}, python {sys.version.split()[0]}")
    print("| store | K | broadcasts | msg/s | p50 ms | p99 ms | fsyncs/broadcast |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        per = f"{r.fsyncs / r.messages:.3f}" if r.durable else "-"
        store = "durable (fsync)" if r.durable else "memory"
        print(
            f"| {store} | {r.concurrency} | {r.messages} | {r.rate:,.0f} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {per} |"
        )
    mem = {r.concurrency: r.rate for r in rows if not r.durable}
    for r in rows:
        if r.durable:
            print(f"K={r.concurrency}: durable/memory = {r.rate / mem[r.concurrency]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
