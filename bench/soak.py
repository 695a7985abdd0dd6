"""Soak: N minutes of 50 clients writing to the 3-node durable cluster; is memory flat?

The Python asyncio generator sends ``SET`` of 100-byte values over a fixed
keyspace (``--keyspace``, 10,000 keys: the data set stops growing within the
warm-up, so growth after it is the node's own: the log, replies, buffers).
Every ``--sample-s`` seconds it reads, for each node process, its resident
memory (``VmRSS`` in ``/proc/PID/status``), its open file descriptors
(``/proc/PID/fd``) and the size of its data directory, and the cluster's
write rate.

Verdict per node, over the samples after the warm-up (the first 20% of the
run, at most 2 minutes):

- memory flat: every sample within +/-10% of their median, and the mean of
  the last quarter within 10% of the mean of the first quarter;
- fds flat: the count after warm-up never grows by more than ``FDS_SLACK``.

It prints the verdicts, plots ``docs/bench/soak.png`` and rewrites the soak
block of ``docs/benchmarks.md`` (``--no-doc``: neither).

    python bench/soak.py                  # 10 minutes (the issue's soak)
    python bench/soak.py --minutes 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import report
from benchcommon import (
    REPO,
    VALUE_BYTES,
    Progress,
    format_table,
    machine_info,
    optional_module,
)
from drivers import run_async
from loadgen import RespClient, ServerError, resp_factory, run_load, set_command
from paxos_cluster import PaxosCluster

FLAT_TOLERANCE = 0.10
FDS_SLACK = 5
WARMUP_FRACTION = 0.2
WARMUP_MAX_S = 120.0


@dataclass
class NodeSamples:
    node_id: str
    pid: int
    rss_mib: list[float] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    disk_mib: list[float] = field(default_factory=list)


@dataclass
class Soak:
    minutes: float
    clients: int
    warmup_s: float
    times_s: list[float] = field(default_factory=list)
    ops_s: list[float] = field(default_factory=list)
    #: Errors (-TRYAGAIN during an election) per sample interval, and their texts.
    errors_per_sample: list[int] = field(default_factory=list)
    error_texts: dict[str, int] = field(default_factory=dict)
    #: Whether the load still ran at each sample (the last one is after it, clients gone).
    under_load: list[bool] = field(default_factory=list)
    #: The ballot node 1 reports at each sample: a change is an election.
    ballots: list[str] = field(default_factory=list)
    nodes: dict[str, NodeSamples] = field(default_factory=dict)
    completed: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    elapsed_s: float = 0.0


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def dir_mib(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a file compaction just removed
                total += os.stat(os.path.join(root, name)).st_size
    return total / (1024 * 1024)


async def node_ballot(client: RespClient) -> str:
    try:
        reply = await asyncio.wait_for(client.call(b"PAXOS.STATUS"), 5.0)
    except (ServerError, TimeoutError, ConnectionError) as e:
        return f"? ({type(e).__name__})"
    if not isinstance(reply, list):
        return "?"
    fields = dict(zip(reply[::2], reply[1::2], strict=True))
    ballot = fields.get(b"ballot")
    return ballot.decode() if isinstance(ballot, bytes) else "?"


def elections(soak: Soak) -> int:
    known = [b for b in soak.ballots if not b.startswith("?")]
    return sum(1 for a, b in itertools.pairwise(known) if a != b)


def after_warmup(soak: Soak, values: Sequence[float]) -> list[float]:
    """The samples taken after the warm-up while the load ran."""
    return [
        v
        for t, running, v in zip(soak.times_s, soak.under_load, values, strict=True)
        if t >= soak.warmup_s and running
    ]


def memory_verdict(soak: Soak, node: NodeSamples) -> tuple[bool, str]:
    vals = after_warmup(soak, node.rss_mib)
    if len(vals) < 4:
        return False, "too few samples after warm-up"
    med = statistics.median(vals)
    lo, hi = min(vals), max(vals)
    quarter = max(1, len(vals) // 4)
    first, last = statistics.mean(vals[:quarter]), statistics.mean(vals[-quarter:])
    growth = (last - first) / first if first else 0.0
    band = max(abs(lo - med), abs(hi - med)) / med if med else 0.0
    flat = band <= FLAT_TOLERANCE and abs(growth) <= FLAT_TOLERANCE
    text = (
        f"{lo:.1f}..{hi:.1f} MiB (median {med:.1f}, within {band * 100:+.1f}%), "
        f"last quarter vs first {growth * 100:+.1f}%"
    )
    return flat, text


def fds_verdict(soak: Soak, node: NodeSamples) -> tuple[bool, str]:
    vals = after_warmup(soak, [float(x) for x in node.fds])
    if not vals:
        return False, "no samples"
    text = f"{int(min(vals))}..{int(max(vals))} under load"
    if node.fds and not soak.under_load[-1]:
        text += f", {node.fds[-1]} after the clients left"
    return max(vals) - vals[0] <= FDS_SLACK, text


async def soak_run(
    cluster: PaxosCluster, port: int, soak: Soak, sample_s: float, keyspace: int, progress: Progress
) -> None:
    value = b"v" * VALUE_BYTES
    for node_id, node in cluster.nodes.items():
        soak.nodes[node_id] = NodeSamples(node_id, node.pid)
    done_count = 0
    error_count = 0

    def count(n: int) -> None:
        nonlocal done_count
        done_count += n

    def on_error(text: str) -> None:
        nonlocal error_count
        error_count += 1
        key = text[:80]
        soak.error_texts[key] = soak.error_texts.get(key, 0) + 1

    duration_s = soak.minutes * 60
    load = asyncio.ensure_future(
        run_load(
            resp_factory([port], lambda i: set_command(i, value, keyspace)),
            clients=soak.clients,
            requests=10**9,  # bounded by time: duration_s
            time_max_s=duration_s,
            progress=count,
            on_error=on_error,
        )
    )
    status = await RespClient.connect(cluster.nodes["1"].resp_port, lambda n: ())
    start = time.perf_counter()
    last_t, last_count, last_errors = start, 0, 0
    total = int(duration_s)
    with progress.task(f"soak: {soak.clients} clients for {soak.minutes:g} min", total) as advance:
        shown = 0
        while not load.done():
            await asyncio.wait({load}, timeout=sample_s)
            now = time.perf_counter()
            soak.times_s.append(now - start)
            soak.under_load.append(not load.done())
            soak.ops_s.append((done_count - last_count) / (now - last_t))
            last_t, last_count = now, done_count
            soak.errors_per_sample.append(error_count - last_errors)
            last_errors = error_count
            soak.ballots.append(await node_ballot(status))
            for node_id, node in cluster.nodes.items():
                s = soak.nodes[node_id]
                try:
                    s.rss_mib.append(rss_mib(node.pid))
                    s.fds.append(fd_count(node.pid))
                except OSError:  # the node died: the verdicts will say so
                    s.rss_mib.append(0.0)
                    s.fds.append(0)
                s.disk_mib.append(dir_mib(node.data_dir))
            step = min(total, int(now - start)) - shown
            advance(step)
            shown += step
    await status.close()
    result = load.result()
    soak.completed, soak.errors, soak.elapsed_s = result.completed, result.errors, result.elapsed_s
    soak.p50_ms, soak.p99_ms, soak.p999_ms = result.ms(0.5), result.ms(0.99), result.ms(0.999)


def plot(soak: Soak, path: Path) -> str | None:
    mpl = optional_module("matplotlib")
    if mpl is None:
        return None
    mpl.use("Agg")
    plt = optional_module("matplotlib.pyplot")
    assert plt is not None
    fig, axes = plt.subplots(4, 1, figsize=(8, 10), sharex=True)
    minutes = [t / 60 for t in soak.times_s]
    for s in soak.nodes.values():
        axes[0].plot(minutes, s.rss_mib, label=f"node {s.node_id}")
        axes[1].plot(minutes, s.fds, label=f"node {s.node_id}")
        axes[2].plot(minutes, s.disk_mib, label=f"node {s.node_id}")
    axes[3].plot(minutes, soak.ops_s, color="black", label="SET/s")
    if any(soak.errors_per_sample):
        spans = [b - a for a, b in itertools.pairwise([0.0, *soak.times_s])]
        per_s = [e / max(1e-9, s) for e, s in zip(soak.errors_per_sample, spans, strict=True)]
        axes[3].plot(minutes, per_s, color="red", label="errors/s (-TRYAGAIN)")
        axes[3].legend(fontsize=8)
    labels = ("RSS, MiB", "open fds", "data dir, MiB", "SET/s (cluster)")
    for ax, label in zip(axes, labels, strict=True):
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.axvspan(0, soak.warmup_s / 60, color="grey", alpha=0.15)
    axes[0].set_ylim(bottom=0)
    axes[1].set_ylim(bottom=0)
    axes[0].legend(fontsize=8)
    axes[3].set_xlabel("minutes (grey: warm-up)")
    fig.suptitle(f"Soak: {soak.clients} clients, SET 100 B, 3 durable nodes, {soak.minutes:g} min")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def summary(soak: Soak, plot_path: str | None, command: str) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = machine_info()
    rows: list[tuple[str, ...]] = [
        ("node", "memory flat", "RSS after warm-up", "fds flat", "fds", "data dir MiB")
    ]
    all_flat = True
    for s in soak.nodes.values():
        mem_ok, mem_text = memory_verdict(soak, s)
        fds_ok, fds_text = fds_verdict(soak, s)
        all_flat = all_flat and mem_ok and fds_ok
        disk = after_warmup(soak, s.disk_mib)
        disk_text = f"{min(disk):.1f}..{max(disk):.1f}" if disk else "-"
        rows.append(
            (
                s.node_id,
                "yes" if mem_ok else "**no**",
                mem_text,
                "yes" if fds_ok else "**no**",
                fds_text,
                disk_text,
            )
        )
    rate = soak.completed / soak.elapsed_s if soak.elapsed_s else 0.0
    lines = [
        f"Generated {when} by `{command}` ({machine['cpu']}, {machine['cores']} cores, "
        f"{machine['python']}).",
        "",
        f"{soak.minutes:g} minutes, {soak.clients} clients, SET of {VALUE_BYTES}-byte values; "
        f"warm-up: the first {soak.warmup_s:.0f} s. {soak.completed:,} writes "
        f"({rate:,.0f}/s), {soak.errors} errors; latency p50 {soak.p50_ms:.1f} ms, "
        f"p99 {soak.p99_ms:.1f} ms, p99.9 {soak.p999_ms:.1f} ms. Elections seen (ballot "
        f"changes at node 1 between samples): {elections(soak)}.",
        "",
        f"**Memory and fds flat after warm-up (+/-{FLAT_TOLERANCE * 100:.0f}%): "
        f"{'yes' if all_flat else 'no'}.**",
        "",
        format_table(rows),
        "",
    ]
    if soak.error_texts:
        lines += ["Errors: " + "; ".join(f"{n} x `{t}`" for t, n in soak.error_texts.items()), ""]
    if plot_path:
        lines += [f"![soak](bench/{Path(plot_path).name})", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--minutes", type=float, default=10.0, help="how long (10)")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--sample-s", type=float, default=5.0, help="sampling period (5 s)")
    p.add_argument("--keyspace", type=int, default=10_000)
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    p.add_argument("--plot", type=Path, default=REPO / "docs" / "bench" / "soak.png")
    p.add_argument("--no-doc", action="store_true", help="print only; no plot, no doc")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.clients < 1 or args.sample_s <= 0 or args.keyspace < 1:
        p.error("--minutes, --clients, --sample-s and --keyspace must be positive")
    warmup_s = min(WARMUP_MAX_S, WARMUP_FRACTION * args.minutes * 60)
    soak = Soak(args.minutes, args.clients, warmup_s)
    command = "python bench/soak.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with Progress() as progress, PaxosCluster(3) as cluster:
        progress.log(f"nodes (pid): {cluster.pids()}, leader {cluster.leader_id()}")
        port = cluster.leader_port()
        run_async(soak_run(cluster, port, soak, args.sample_s, args.keyspace, progress))
    plot_path = None if args.no_doc else plot(soak, args.plot)
    text = summary(soak, plot_path, command.strip())
    print(text)
    if not args.no_doc:
        report.update_doc(args.doc, "soak", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
