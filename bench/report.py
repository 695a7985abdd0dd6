"""Turn measurements into docs/benchmarks.md (tables, ratios, goals) and PNG plots.

``docs/benchmarks.md`` has blocks between markers that programs rewrite
(``<!-- BEGIN generated -->`` by ``run_all.py``, ``<!-- BEGIN soak -->`` by
``soak.py``); everything outside them is written by hand and kept as is.
Plots need matplotlib (the ``bench`` extra); without it the report says so.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchcommon import (
    Measurement,
    SystemInfo,
    fmt_ms,
    fmt_ops,
    format_table,
    optional_module,
    rows_table,
)

PAXOS = "paxostob"
INMEMORY = "paxostob (in-process)"
WRITE_LOADS = ("set", "write")
SKELETON = """# Benchmarks

How paxostob compares with what users would pick instead, measured side by side on the same
machine in the same run. Regenerate with `make bench` (about 30 minutes; `make bench
ARGS=--quick` in under 2) — it rewrites the marked blocks and the plots in `docs/bench/`; the
soak block comes from `python bench/soak.py`. Every number is from a shared, noisy 2-core
machine: compare ratios from the same run, not absolute numbers across runs.

<!-- BEGIN generated -->
<!-- END generated -->

## Soak

<!-- BEGIN soak -->
<!-- END soak -->
"""


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block ``name`` replaced by ``body`` (appended if missing)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip() + "\n\n" + block + "\n"


def update_doc(path: Path, name: str, body: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else SKELETON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_block(text, name, body), encoding="utf-8")


# --- picking rows -------------------------------------------------------------------


def find(
    rows: Iterable[Measurement],
    system: str,
    workloads: Sequence[str],
    tool: str | None,
    clients: int,
    pipeline: int = 1,
) -> Measurement | None:
    for r in rows:
        if (
            r.system == system
            and r.workload in workloads
            and (tool is None or r.tool == tool)
            and r.clients == clients
            and r.pipeline == pipeline
        ):
            return r
    return None


def write_systems(rows: Sequence[Measurement]) -> list[str]:
    """Systems with 100-byte write rows, in order; PySyncObj only its fastest variant."""
    names: list[str] = []
    for r in rows:
        if r.workload in WRITE_LOADS and r.tool != "redis-benchmark" and r.system not in names:
            names.append(r.system)
    variants = [n for n in names if n.startswith("pysyncobj")]
    if len(variants) > 1:

        def at50(name: str) -> float:
            return max((r.ops_s for r in rows if r.system == name), default=0.0)

        best = max(variants, key=at50)
        names = [n for n in names if not n.startswith("pysyncobj") or n == best]
    return names


def write_row(rows: Sequence[Measurement], system: str, clients: int) -> Measurement | None:
    """The Python generator's (or in-process) 100-byte write row of ``system``."""
    for tool in ("python-asyncio", "in-process"):
        r = find(rows, system, WRITE_LOADS, tool, clients)
        if r is not None:
            return r
    return None


def ratio(ours: float | None, theirs: float | None, lower_is_better: bool = False) -> str:
    if not ours or not theirs:
        return "-"
    x = theirs / ours if lower_is_better else ours / theirs
    return f"{x:.2f}x"


# --- the generated block ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Goal:
    text: str
    measured: str
    holds: bool | None
    vs: str = ""


def goals(rows: Sequence[Measurement]) -> list[Goal]:
    """The performance goals, each with what this run measured and whether it holds."""

    def rb(test: str, c: int, p: int) -> Measurement | None:
        return find(rows, PAXOS, (test,), "redis-benchmark", c, p)

    def peer_rate(name_prefix: str, clients: int) -> float | None:
        for system in write_systems(rows):
            if system.startswith(name_prefix):
                r = write_row(rows, system, clients)
                return r.ops_s if r else None
        return None

    out: list[Goal] = []
    s50 = rb("set", 50, 1)
    ours50 = write_row(rows, PAXOS, 50)
    zk50 = peer_rate("zookeeper", 50)
    if ours50:
        # Like with like: the peers' writes come from the Python generator (PySyncObj:
        # in-process), so ours do too; Redis is compared via redis-benchmark on both sides.
        vs = []
        if s50:
            vs.append(f"redis-benchmark {fmt_ops(s50.ops_s)} ops/s (long-run goal 25,000)")
        py50 = peer_rate("pysyncobj", 50)
        if py50:
            vs.append(f"{ours50.ops_s / py50:.2f}x PySyncObj")
        fs = find(rows, "redis-fsync", ("set",), "redis-benchmark", 50, 1)
        if fs and s50:
            vs.append(f"{s50.ops_s / fs.ops_s:.2f}x Redis appendfsync always")
        x = ours50.ops_s / zk50 if zk50 else None
        out.append(
            Goal(
                "SET `-c 50 -P 1` >= 1.5x ZooKeeper (long-run goal 2.3x)",
                f"{fmt_ops(ours50.ops_s)} ops/s = {x:.2f}x ZooKeeper"
                if x is not None
                else f"{fmt_ops(ours50.ops_s)} ops/s (ZooKeeper not measured)",
                None if x is None else x >= 1.5,
                "; ".join(vs),
            )
        )
    if s50 and s50.cpu_us_per_op is not None:
        out.append(
            Goal(
                "CPU per SET at `-c 50 -P 1`, three nodes summed <= 45 µs",
                f"{s50.cpu_us_per_op:.1f} µs",
                s50.cpu_us_per_op <= 45,
            )
        )
    s1 = rb("set", 1, 1)
    if s1:
        vs1 = ""
        py1, ours1 = peer_rate("pysyncobj", 1), write_row(rows, PAXOS, 1)
        if py1 and ours1:
            vs1 = f"{ours1.ops_s / py1:.2f}x PySyncObj's 1-client rate"
        out.append(
            Goal(
                "SET, 1 client: p50 <= 0.5 ms and >= 2,000 ops/s",
                f"p50 {fmt_ms(s1.p50_ms)} ms, {fmt_ops(s1.ops_s)} ops/s",
                s1.p50_ms <= 0.5 and s1.ops_s >= 2_000,
                vs1,
            )
        )
    g50 = rb("get", 50, 1)
    if g50:
        x_set = g50.ops_s / s50.ops_s if s50 else None
        out.append(
            Goal(
                "GET (linearizable) `-c 50 -P 1` >= 30,000 ops/s and >= 1.5x our SET",
                fmt_ops(g50.ops_s) + (f" = {x_set:.2f}x SET" if x_set is not None else ""),
                g50.ops_s >= 30_000 and (x_set is None or x_set >= 1.5),
            )
        )
    s16 = rb("set", 50, 16)
    if s16:
        out.append(
            Goal("SET `-c 50 -P 16` >= 100,000 ops/s", fmt_ops(s16.ops_s), s16.ops_s >= 100_000)
        )
    tob = next(
        (r for r in rows if r.system == INMEMORY and r.workload == "tob r=3 batching=on 100B"), None
    )
    if tob:
        out.append(
            Goal(
                "TOB in one process, 3 replicas, batching on >= 100,000 deliveries/s",
                fmt_ops(tob.ops_s),
                tob.ops_s >= 100_000,
            )
        )
    if s50:
        out.append(
            Goal(
                "p99 at 50 clients (SET `-c 50 -P 1`, redis-benchmark) <= 5 ms",
                f"{fmt_ms(s50.p99_ms)} ms",
                s50.p99_ms <= 5,
            )
        )
    out.append(Goal("memory flat after warm-up over a 10-minute soak (+/-10%)", "see Soak", None))
    return out


def ratios_table(rows: Sequence[Measurement]) -> str:
    """paxostob's 100-byte writes against each peer's, the same generator where possible."""
    header = (
        "peer",
        "peer 1 client",
        "paxostob / peer, 1 client",
        "peer 50 clients",
        "paxostob / peer, 50 clients",
        "peer p99 at 50",
        "p99 ratio (peer / ours; >1: ours lower)",
    )
    ours1 = write_row(rows, PAXOS, 1)
    ours50 = write_row(rows, PAXOS, 50)
    body = []
    for system in write_systems(rows):
        if system == PAXOS:
            continue
        t1, t50 = write_row(rows, system, 1), write_row(rows, system, 50)
        body.append(
            (
                system,
                fmt_ops(t1.ops_s) if t1 else "-",
                ratio(ours1.ops_s if ours1 else None, t1.ops_s if t1 else None),
                fmt_ops(t50.ops_s) if t50 else "-",
                ratio(ours50.ops_s if ours50 else None, t50.ops_s if t50 else None),
                f"{fmt_ms(t50.p99_ms)} ms" if t50 else "-",
                ratio(ours50.p99_ms if ours50 else None, t50.p99_ms if t50 else None, True),
            )
        )
    return format_table([header, *body]) if body else "(no peer measured)"


def rb_ratios_table(rows: Sequence[Measurement]) -> str:
    """redis-benchmark: paxostob against single-node Redis, per configuration."""
    header = (
        "test",
        "-c",
        "-P",
        "paxostob ops/s",
        "/ redis",
        "/ redis-fsync",
        "paxostob p99 ms",
        "CPU µs/op, 3 nodes",
    )
    body = []
    for r in rows:
        if r.system != PAXOS or r.tool != "redis-benchmark":
            continue
        cells = [r.workload.upper(), str(r.clients), str(r.pipeline), fmt_ops(r.ops_s)]
        for peer in ("redis", "redis-fsync"):
            theirs = find(rows, peer, (r.workload,), "redis-benchmark", r.clients, r.pipeline)
            cells.append(ratio(r.ops_s, theirs.ops_s if theirs else None))
        cells.append(fmt_ms(r.p99_ms))
        cells.append("-" if r.cpu_us_per_op is None else f"{r.cpu_us_per_op:.1f}")
        body.append(tuple(cells))
    return format_table([header, *body]) if body else "(redis-benchmark not run)"


def ratio_lines(rows: Sequence[Measurement]) -> list[str]:
    """The ratios as plain lines, for the terminal."""
    lines = []
    ours = {c: write_row(rows, PAXOS, c) for c in (1, 50)}
    for system in write_systems(rows):
        if system == PAXOS:
            continue
        parts = []
        for c in (1, 50):
            t, o = write_row(rows, system, c), ours[c]
            if t and o:
                parts.append(f"{c} client{'s' if c > 1 else ''}: {o.ops_s / t.ops_s:.2f}x")
        if parts:
            lines.append(f"paxostob vs {system}: " + ", ".join(parts))
    for r in rows:
        if r.system == PAXOS and r.tool == "redis-benchmark":
            for peer in ("redis", "redis-fsync"):
                t = find(rows, peer, (r.workload,), "redis-benchmark", r.clients, r.pipeline)
                if t:
                    lines.append(
                        f"paxostob vs {peer}: {r.workload.upper()} -c {r.clients} -P {r.pipeline}: "
                        f"{r.ops_s / t.ops_s:.3f}x"
                    )
    return lines


def systems_table(systems: Sequence[SystemInfo]) -> str:
    header = ("system", "version", "replicas", "durability (fsync)", "event loop", "status")
    body = [
        (
            s.name,
            s.version,
            str(s.replicas),
            s.durability,
            s.uvloop,
            s.unavailable or ("measured" + (f" ({'; '.join(s.notes)})" if s.notes else "")),
        )
        for s in systems
    ]
    return format_table([header, *body])


def generated_block(
    machine: dict[str, str],
    systems: Sequence[SystemInfo],
    rows: Sequence[Measurement],
    *,
    command: str,
    plots: Sequence[str],
    plots_note: str = "",
) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    runs = max((r.runs for r in rows), default=1)
    out = [
        f"Generated {when} by `{command}`; each row is the median of {runs} run(s).",
        "",
        "### Machine",
        "",
        format_table([("what", "value")] + [(k, v) for k, v in machine.items()]),
        "",
        "The load generators run on the same cores as the servers, and other work shares the",
        "machine (see the load averages): ratios within this run mean more than absolute numbers.",
        "",
        "### Systems",
        "",
        systems_table(systems),
        "",
        "### Performance goals",
        "",
        format_table(
            [("goal", "measured", "holds", "ratio in this run")]
            + [
                (
                    g.text,
                    g.measured,
                    "-" if g.holds is None else ("yes" if g.holds else "**no**"),
                    g.vs,
                )
                for g in goals(rows)
            ]
        ),
        "",
        "Ratios to ZooKeeper and PySyncObj use paxostob's SET rows from the Python generator (the",
        "one that drives ZooKeeper; PySyncObj writes in-process); ratios to Redis use",
        'redis-benchmark on both sides. A goal reads "-" in `holds` when its peer was not',
        "measured.",
        "",
        "### 100-byte writes against each peer (same load: closed-loop writers)",
        "",
        "paxostob and Redis: SET from the Python asyncio generator; ZooKeeper: `setData`, etcd:",
        "`put` from the same generator; PySyncObj: `ReplDict.set` from writers inside its leader's",
        "process (it has no client protocol), so it pays no client round trip at all.",
        "",
        ratios_table(rows),
        "",
        "### redis-benchmark: paxostob against single-node Redis",
        "",
        "`redis-benchmark -t set,get -d 100 -r 100000`, against the leader of the 3-node cluster",
        '(every GET is linearizable: a read-index read, the default; see "ReadIndex reads").',
        "The CPU column is the user and system time of the three node processes during the run,",
        "per request (from /proc; the load generator's own CPU is not in it).",
        "",
        rb_ratios_table(rows),
        "",
        "### Every row",
        "",
        rows_table(rows),
        "",
    ]
    if plots:
        out += ["### Plots", ""]
        out += [f"![{Path(p).stem}](bench/{Path(p).name})" for p in plots]
        out.append("")
    if plots_note:
        out += [plots_note, ""]
    return "\n".join(out)


# --- plots --------------------------------------------------------------------------


def make_plots(rows: Sequence[Measurement], out_dir: Path) -> tuple[list[str], str]:
    """Write the PNGs; returns their paths, or a note saying why there are none."""
    mpl = optional_module("matplotlib")
    if mpl is None:
        return [], "Plots: not made (matplotlib is not installed: `pip install -e '.[bench]'`)."
    mpl.use("Agg")
    plt = optional_module("matplotlib.pyplot")
    assert plt is not None
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    # Throughput against clients, one line per system.
    fig, ax = plt.subplots(figsize=(8, 5))
    for system in write_systems(rows):
        pts = sorted(
            (r.clients, r.ops_s)
            for r in rows
            if r.system == system and r.workload in WRITE_LOADS and r.tool != "redis-benchmark"
        )
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=system)
    pts = sorted(
        (r.clients, r.ops_s) for r in rows if r.system == PAXOS and r.workload == "broadcast"
    )
    if pts:
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="s",
            ls="--",
            label="paxostob PAXOS.BROADCAST",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent clients (closed loop)")
    ax.set_ylabel("100-byte writes per second (log)")
    ax.set_title("Throughput vs clients (3 replicas on loopback; Redis: 1 node)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path = out_dir / "throughput_vs_clients.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(str(path))

    # Latency percentiles at 50 clients.
    systems = [s for s in write_systems(rows) if write_row(rows, s, 50)]
    if systems:
        fig, ax = plt.subplots(figsize=(8, 5))
        width = 0.27
        for k, (q, label) in enumerate(
            (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9"))
        ):
            vals = []
            for s in systems:
                r = write_row(rows, s, 50)
                v = getattr(r, q) if r else None
                vals.append(v or 0.0)
            ax.bar([i + (k - 1) * width for i in range(len(systems))], vals, width, label=label)
        ax.set_xticks(range(len(systems)))
        ax.set_xticklabels(systems, rotation=15, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("latency, ms (log)")
        ax.set_title("Write latency percentiles at 50 clients")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend()
        path = out_dir / "latency_percentiles.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))

    # redis-benchmark per configuration.
    configs = sorted(
        {(r.workload, r.clients, r.pipeline) for r in rows if r.tool == "redis-benchmark"},
        key=lambda c: (c[0] != "set", c[1], c[2]),
    )
    rb_systems = [
        s
        for s in (PAXOS, "redis-fsync", "redis")
        if any(r.system == s and r.tool == "redis-benchmark" for r in rows)
    ]
    if configs and rb_systems:
        fig, ax = plt.subplots(figsize=(9, 5))
        width = 0.8 / len(rb_systems)
        for k, s in enumerate(rb_systems):
            vals = []
            for test, c, p in configs:
                r = find(rows, s, (test,), "redis-benchmark", c, p)
                vals.append(r.ops_s if r else 0.0)
            ax.bar(
                [i + (k - (len(rb_systems) - 1) / 2) * width for i in range(len(configs))],
                vals,
                width,
                label=s,
            )
        ax.set_xticks(range(len(configs)))
        ax.set_xticklabels([f"{t.upper()}\n-c {c} -P {p}" for t, c, p in configs], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("requests per second (log)")
        ax.set_title("redis-benchmark -d 100: paxostob (3 nodes, fsync) vs single-node Redis")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend()
        path = out_dir / "redis_benchmark.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(str(path))
    return paths, ""
