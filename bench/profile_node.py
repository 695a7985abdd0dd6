"""Where a paxostob node spends its time under ``redis-benchmark -t set -c 50 -P 1``.

Starts the 3-node durable cluster, drives its leader with redis-benchmark
(a bounded request count, stopped when the profile is taken) and samples the
leader and one follower with py-spy (``pip install py-spy``) for
``--seconds``. Prints, per node, the functions with the most samples: *self*
(the function was running) and *total* (it was on the stack), in % of the
samples where the process was busy (py-spy leaves out threads idle in a
system call, such as the event loop waiting in epoll or the storage thread
waiting in fsync). The raw stacks are kept in ``--out-dir`` (flamegraph:
``py-spy record --format flamegraph`` or https://www.speedscope.app/ on the
raw file).

    python bench/profile_node.py --seconds 20
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchcommon import VALUE_BYTES, format_table
from paxos_cluster import PaxosCluster

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (to/module.py)``."""
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("/paxostob/", "/site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({path})"


def summarize(raw: Path, top: int) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """(samples, [(function, self %)], [(function, total %)]) from py-spy's raw (collapsed) file."""
    self_counts: collections.Counter[str] = collections.Counter()
    total_counts: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        self_counts[frames[-1]] += count
        for f in set(frames):
            total_counts[f] += count
    if samples == 0:
        return 0, [], []

    def pct(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(f, 100 * n / samples) for f, n in c.most_common(top)]

    return samples, pct(self_counts), pct(total_counts)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--seconds", type=float, default=20.0, help="profile length (20)")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second (250)")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument(
        "--native", action="store_true", help="also C frames (uvloop, sqlite3, the kernel calls)"
    )
    p.add_argument("--out-dir", type=Path, help="keep the raw stacks here (default: a temp dir)")
    args = p.parse_args(argv)
    spy = py_spy()
    if spy is None:
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="paxostob-profile-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with PaxosCluster(3) as cluster:
        leader = cluster.leader_id()
        follower = next(i for i in cluster.nodes if i != leader)
        port = cluster.nodes[leader].resp_port
        # Bounded: at most this many requests; stopped once the profile is taken.
        bench = subprocess.Popen(
            [
                "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set",
                "-d", str(VALUE_BYTES), "-r", "100000", "-c", str(args.clients), "-P", "1",
                "-n", "5000000", "-q",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        spies = {}
        try:
            for role, node_id in (("leader", leader), ("follower", follower)):
                raw = out_dir / f"{role}.txt"
                cmd = [
                    spy, "record", "--pid", str(cluster.nodes[node_id].pid),
                    "--duration", str(int(args.seconds)), "--rate", str(args.rate),
                    "--format", "raw", "--output", str(raw),
                ]  # fmt: skip
                if args.native:
                    cmd.append("--native")
                spies[role] = (
                    raw,
                    subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
                )
            for _raw, proc in spies.values():
                proc.wait(args.seconds + 60)
        finally:
            if bench.poll() is None:
                bench.terminate()
            bench.wait()
    for role, (raw, proc) in spies.items():
        if not raw.exists():
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            print(f"{role}: py-spy wrote nothing: {err.strip()[-400:]}")
            continue
        samples, self_pct, total_pct = summarize(raw, args.top)
        print(
            f"\n### {role} (node {leader if role == 'leader' else follower}), {samples} samples\n"
        )
        print(format_table([("self %", "function")] + [(f"{v:.1f}", f) for f, v in self_pct]))
        print()
        print(format_table([("total %", "function")] + [(f"{v:.1f}", f) for f, v in total_pct]))
    print(f"\nraw stacks: {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
