"""How fast the durable stores save, and how many fsyncs a save costs (docs/storage.md quotes it).

For each case and each store (``SqliteStorage``, ``LogStorage``, and
``floor``: one bare ``write`` and ``fdatasync`` per save, the cost of the
system calls alone, to tell a store's own CPU from the kernel's; ``--store``
picks some) it opens a fresh store in a temporary directory (``--dir`` picks
the file system: measure on the disk the nodes will use) and times
``--rounds`` rounds of ``--saves`` saves, the stores alternating round by
round so both see the same machine load; it prints the median round. It
measures wall time per save and CPU time per save (``time.process_time``:
this process's user + system time, which is what a save takes from a busy
node, whatever the disk's flush latency). A save
of *k* entries is one ``Ready`` with a new promise, *k* accepted entries and
*k* decided entries, each value one proposal of ``--payload-bytes`` bytes:
what a follower persists when it accepts *k* slots at once and learns *k*
commits.

Cases: ``must_sync`` saves of 1 and of 50 entries (the group commit); to
compare, unsynced saves of 1 decided entry (how a follower stores commits);
and the two synced cases' saves without ``must_sync``: what the store itself
costs, without the kernel's flush.

``fsyncs/save`` counts the process's real ``fsync``/``fdatasync`` system
calls with ``strace`` when it is installed (one extra run of each case, in a
child process), and ``sync_count/save`` is what the storage reports.

Usage: ``python bench/storage_bench.py [--saves N] [--rounds R] [--dir DIR] [--store S]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from paxostob.core.events import AcceptedEntry, Ready
from paxostob.core.types import ZERO_BALLOT, Ballot, Batch, DecidedEntry, Proposal, ProposalId
from paxostob.storage.base import DurableState, Snapshot, Storage
from paxostob.storage.log import LogStorage
from paxostob.storage.sqlite import SqliteStorage

NODE = "n1"


class FloorStorage:
    """Not a store: the least any append-only store must do, to compare the real ones with.

    Each save appends as many bytes as the entries' payloads plus 64 per
    entry with one ``os.write``, and ``os.fdatasync``s when ``must_sync``:
    the system calls, without encoding, checksums or indexes.
    """

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, "floor")
        self._fd = -1
        self._sync_count = 0

    def open(
        self, cluster_id: str, node_id: str, *, bootstrap: Sequence[str] | None = None
    ) -> DurableState:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        return DurableState(ZERO_BALLOT, (), (), None, 1)

    def save(self, ready: Ready) -> None:
        values = [a.value for a in ready.accepted] + [d.value for d in ready.decided]
        size = sum(64 + sum(len(p.payload) for p in value) for value in values)
        os.write(self._fd, bytes(size))
        if ready.must_sync:
            os.fdatasync(self._fd)
            self._sync_count += 1

    def install_snapshot(self, snapshot: Snapshot) -> None:
        raise NotImplementedError("the bench never snapshots")

    @property
    def sync_count(self) -> int:
        return self._sync_count

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


STORES: dict[str, Callable[[str], Storage]] = {
    "sqlite": SqliteStorage,
    "log": LogStorage,
    "floor": FloorStorage,
}


@dataclass(frozen=True)
class Case:
    name: str
    entries: int
    must_sync: bool
    full: bool = True  # a promise, accepted and decided entries; else decided entries only

    def ready(self, n: int, payload: bytes) -> Ready:
        """Save number ``n`` (from 0) of this case."""
        slots = range(n * self.entries + 1, (n + 1) * self.entries + 1)

        def value(slot: int) -> Batch:
            return (Proposal(ProposalId(NODE, slot), payload),)

        if not self.full:
            return Ready(decided=tuple(DecidedEntry(s, value(s)) for s in slots))
        return Ready(
            promised=Ballot(n + 1, NODE),
            accepted=tuple(AcceptedEntry(s, Ballot(n + 1, NODE), value(s)) for s in slots),
            decided=tuple(DecidedEntry(s, value(s)) for s in slots),
            must_sync=self.must_sync,
        )


CASES = {
    "sync-1": Case("must_sync, 1 entry", 1, True),
    "sync-50": Case("must_sync, 50 entries", 50, True),
    "nosync-1": Case("unsynced, 1 decided", 1, False, full=False),
    # The synced cases' saves without their fsync: the store's own CPU, without the
    # kernel's flush (whose CPU cost varies with the disk and is the same for any store).
    "nofsync-1": Case("sync-1 without fsync", 1, False),
    "nofsync-50": Case("sync-50 without fsync", 50, False),
}


@dataclass(frozen=True)
class Round:
    wall_s: float  # for all the saves of the round
    cpu_s: float
    syncs_per_save: float  # as the storage reports them


def run_case(store: str, case: Case, saves: int, payload: bytes, base_dir: str | None) -> Round:
    """One round of ``saves`` saves of ``case`` on a fresh ``store``."""
    data_dir = tempfile.mkdtemp(prefix="paxostob-bench-", dir=base_dir)
    try:
        storage = STORES[store](data_dir)
        storage.open("bench", NODE, bootstrap=[NODE])
        readies = [case.ready(n, payload) for n in range(saves)]
        syncs = storage.sync_count
        os.getppid()  # a marker for strace: the timed part starts
        cpu_started = time.process_time()
        started = time.perf_counter()
        for ready in readies:
            storage.save(ready)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        os.getppid()  # the timed part ends
        per_save = (storage.sync_count - syncs) / saves
        storage.close()
        return Round(elapsed, cpu, per_save)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def fsyncs_per_save(
    store: str, key: str, saves: int, payload_bytes: int, base_dir: str | None
) -> float | None:
    """Real fsync/fdatasync calls per save in the timed part, counted by strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        command = [sys.executable, __file__, "--one", key, "--store", store]
        command += ["--saves", str(saves), "--payload-bytes", str(payload_bytes)]
        if base_dir:
            command += ["--dir", base_dir]
        trace = "trace=fsync,fdatasync,getppid"
        subprocess.run(
            [strace, "-f", "-qq", "-e", trace, "-o", out.name, *command],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        lines = open(out.name, encoding="utf-8").read().splitlines()  # noqa: SIM115
    marks = [i for i, line in enumerate(lines) if "getppid(" in line]
    start, end = marks[-2], marks[-1]
    calls = sum(1 for line in lines[start:end] if "fsync(" in line or "fdatasync(" in line)
    return calls / saves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--saves", type=int, default=1000, help="saves per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--payload-bytes", type=int, default=100)
    parser.add_argument("--dir", default=None, help="where the temporary stores go")
    parser.add_argument(
        "--store", choices=sorted(STORES), action="append", help="a store to run (default: all)"
    )
    parser.add_argument("--one", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    stores = args.store or list(STORES)
    payload = b"x" * args.payload_bytes
    if args.one:  # the child strace watches
        run_case(stores[0], CASES[args.one], args.saves, payload, args.dir)
        return
    version = sys.version.split()[0]
    print(f"{args.rounds} rounds of {args.saves} saves, medians; python {version}")
    header = ["case", "store", "saves/s", "entries/s", "ms/save", "CPU us/save"]
    header += ["sync_count/save", "fsyncs/save"]
    print("{:24} {:6} {:>9} {:>10} {:>8} {:>11} {:>16} {:>12}".format(*header))
    for key, case in CASES.items():
        rounds: dict[str, list[Round]] = {store: [] for store in stores}
        for _ in range(args.rounds):
            for store in stores:  # back to back: each round of each store sees the same load
                rounds[store].append(run_case(store, case, args.saves, payload, args.dir))
        for store in stores:
            elapsed = statistics.median(r.wall_s for r in rounds[store])
            cpu = statistics.median(r.cpu_s for r in rounds[store])
            syncs = statistics.median(r.syncs_per_save for r in rounds[store])
            fsyncs = fsyncs_per_save(store, key, args.saves, args.payload_bytes, args.dir)
            rate = args.saves / elapsed
            shown = "n/a (no strace)" if fsyncs is None else f"{fsyncs:.2f}"
            print(
                f"{case.name:24} {store:6} {rate:9.0f} {rate * case.entries:10.0f} "
                f"{1000 * elapsed / args.saves:8.3f} {1e6 * cpu / args.saves:11.1f} "
                f"{syncs:16.2f} {shown:>12}"
            )


if __name__ == "__main__":
    main()
