"""How long compaction blocks the event loop, with a large key space.

Three ``KeyValueStore`` replicas in one process (``MemoryNetwork``) are loaded
with ``--keys`` keys (``MSET`` entries of 1,000 keys), then ``--writes`` more
``SET`` entries are applied, enough to pass ``snapshot_entries_max`` so each
replica snapshots its whole state at least once. A probe task measures the
longest time the loop went without running it (its 1 ms timer firing late):
that is how long a leader could not send heartbeats (wall clock: on a busy
machine it includes time the process was not scheduled). The CPU time of the
longest single piece of snapshot work the loop ran is reported too. The same
load without compaction (``snapshot_entries_max`` above it) is the control row.

    python bench/compaction_stall.py                 # 100,000 keys
    python bench/compaction_stall.py --keys 20000    # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from paxostob import KeyValueStore, MemoryNetwork, TotalOrderBroadcast
from paxostob.kv.state_machine import KvStateMachine

MEMBERS = ["r1", "r2", "r3"]
MSET_KEYS = 1000
TIMEOUT_S = 60.0
PROBE_S = 0.001


class TimedMachine(KvStateMachine):
    """Times (in CPU time, not disturbed by other processes) each piece of snapshot work.

    ``snapshot`` (one synchronous call) is what a node without
    ``snapshot_copy`` runs; with it, the copy and every encoding step.
    """

    def __init__(self) -> None:
        super().__init__()
        self.longest_s = 0.0
        self.snapshots = 0

    def _timed(self, t0: float) -> None:
        self.longest_s = max(self.longest_s, time.thread_time() - t0)

    def snapshot(self) -> bytes:
        t0 = time.thread_time()
        data = super().snapshot()
        self.snapshots += 1
        self._timed(t0)
        return data

    def snapshot_copy(self) -> Callable[[], bytes | None]:
        t0 = time.thread_time()
        step = super().snapshot_copy()
        self._timed(t0)
        self.snapshots += 1

        def timed_step() -> bytes | None:
            t0 = time.thread_time()
            data = step()
            self._timed(t0)
            return data

        return timed_step


class Probe:
    """Longest gap between two runs of a task that only sleeps ``PROBE_S``."""

    def __init__(self) -> None:
        self.longest_s = 0.0
        self._stop = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not self._stop:
            await asyncio.sleep(PROBE_S)
            now = loop.time()
            self.longest_s = max(self.longest_s, now - last - PROBE_S)
            last = now

    def stop(self) -> None:
        self._stop = True


@dataclass(frozen=True, slots=True)
class Outcome:
    #: The longest time the probe task waited beyond its timer (all replicas share the loop).
    loop_stall_s: float
    #: The longest single piece of snapshot work on the loop (one replica's), CPU time.
    snapshot_piece_s: float
    writes_s: float
    snapshots: int
    #: Replicas whose ballot changed during the writes (an election happened).
    elections: int


async def run(keys: int, writes: int, snapshot_entries_max: int) -> Outcome:
    net = MemoryNetwork(seed=1)
    machines = [TimedMachine() for _ in MEMBERS]
    nodes = [
        TotalOrderBroadcast(
            net.transport(m),
            MEMBERS,
            seed=1,
            snapshot_entries_max=snapshot_entries_max,
            state_machine=sm,
        )
        for m, sm in zip(MEMBERS, machines, strict=True)
    ]
    stores = [
        KeyValueStore(n, machine=sm, timeout_s=TIMEOUT_S)
        for n, sm in zip(nodes, machines, strict=True)
    ]
    for n in nodes:
        await n.start()
    try:
        for start in range(0, keys, MSET_KEYS):
            args = [b"MSET"]
            for i in range(start, min(keys, start + MSET_KEYS)):
                args += [b"key:%010d" % i, b"v" * 100]
            await stores[0].execute([args])
        ballots = [n.status().ballot for n in nodes]
        probe = Probe()
        probe_task = asyncio.ensure_future(probe.run())
        sem = asyncio.Semaphore(50)

        async def one(i: int) -> None:
            async with sem:
                await stores[i % len(stores)].execute([[b"SET", b"w:%d" % i, b"x"]])

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(writes)))
        # Every replica has applied every write: a snapshot still encoding finishes.
        for n in nodes:
            while n.status().delivered < nodes[0].status().delivered:
                await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - t0
        await asyncio.sleep(0.3)
        probe.stop()
        await probe_task
        snapshots = sum(sm.snapshots for sm in machines)
        piece = max(sm.longest_s for sm in machines)
        elections = sum(1 for n, b in zip(nodes, ballots, strict=True) if n.status().ballot != b)
        return Outcome(probe.longest_s, piece, elapsed, snapshots, elections)
    finally:
        for n in nodes:
            await n.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--keys", type=int, default=100_000)
    p.add_argument("--writes", type=int, default=3000)
    p.add_argument("--snapshot-entries-max", type=int, default=2000)
    args = p.parse_args(argv)
    print(f"{args.keys} keys of 100 B, then {args.writes} SETs, 3 replicas in one loop")
    print(
        "| compaction | longest loop stall ms | longest snapshot piece, CPU ms "
        "| snapshots | writes s | elections |"
    )
    print("|---|---|---|---|---|---|")
    every = args.snapshot_entries_max
    for label, entries_max in (("off", 10**9), (f"every {every} entries", every)):
        o = asyncio.run(run(args.keys, args.writes, entries_max))
        print(
            f"| {label} | {o.loop_stall_s * 1000:.1f} | {o.snapshot_piece_s * 1000:.1f} "
            f"| {o.snapshots} | {o.writes_s:.2f} | {o.elections} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
