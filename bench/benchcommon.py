"""What every part of the benchmark suite shares: results, percentiles, the machine, progress.

A part (``tob_cluster``, ``kv``, ``peers``, ...) returns a list of
``Measurement`` rows; ``run_all`` collects them, prints ratios and writes
``docs/benchmarks.md`` and the plots. Nothing here times anything.

Progress: ``Progress`` shows a live rich bar when rich is installed (the
``bench`` extra) and stderr is a terminal, and plain one-line updates
otherwise, so the parts run (and the smoke test passes) without the extra.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parent.parent
VALUE_BYTES = 100


@dataclass(frozen=True, slots=True)
class Measurement:
    """One row: a system under one load, medians over ``runs`` runs."""

    system: str
    #: "set", "get", "broadcast", "write" (the peers' equivalent of SET).
    workload: str
    #: Who generated the load: "redis-benchmark", "python-asyncio", "in-process".
    tool: str
    clients: int
    pipeline: int
    ops_s: float
    p50_ms: float
    p99_ms: float
    p999_ms: float | None = None
    runs: int = 1
    requests: int = 0
    errors: int = 0
    note: str = ""
    #: CPU microseconds per request of the servers' processes, all replicas summed
    #: (user + system, from /proc): None where it was not measured.
    cpu_us_per_op: float | None = None

    def key(self) -> tuple[str, str, int, int]:
        return (self.workload, self.tool, self.clients, self.pipeline)


@dataclass(slots=True)
class SystemInfo:
    """A system of the comparison, measured or not (and why not)."""

    name: str
    version: str = "?"
    #: "fsync", "no fsync", "memory only, never fsyncs", ...
    durability: str = "?"
    replicas: int = 3
    uvloop: str = "n/a"
    #: None when it ran; otherwise "not available: <reason>".
    unavailable: str | None = None
    notes: list[str] = field(default_factory=list)


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by nearest rank; 0 for no samples."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` and all its threads so far (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def cpu_total_s(pids: Iterable[int]) -> float:
    """User plus system CPU seconds of every process of ``pids`` so far."""
    return sum(sum(cpu_seconds(pid)) for pid in pids)


def median_of(rows: Sequence[Measurement]) -> Measurement:
    """Per-metric medians of repeated runs of one configuration."""
    assert rows, "no runs"
    first = rows[0]
    p999s = [r.p999_ms for r in rows if r.p999_ms is not None]
    cpus = [r.cpu_us_per_op for r in rows if r.cpu_us_per_op is not None]
    return replace(
        first,
        ops_s=statistics.median(r.ops_s for r in rows),
        p50_ms=statistics.median(r.p50_ms for r in rows),
        p99_ms=statistics.median(r.p99_ms for r in rows),
        p999_ms=statistics.median(p999s) if p999s else None,
        runs=len(rows),
        requests=sum(r.requests for r in rows),
        errors=sum(r.errors for r in rows),
        cpu_us_per_op=statistics.median(cpus) if cpus else None,
    )


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free right now on 127.0.0.1 (the OS picks them).

    Fixed ports are not an option: other clusters (tests, other benchmarks)
    run on this machine too.
    """
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, timeout_s: float, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``port`` within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.1)
    return False


def optional_module(name: str) -> Any | None:
    """The module, or None when it is not installed (bench extras are optional)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def uvloop_version() -> str | None:
    mod = optional_module("uvloop")
    return None if mod is None else str(getattr(mod, "__version__", "?"))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def filesystem_of(path: Path) -> str:
    """The file system type (ext4, tmpfs, ...) holding ``path``: fsync costs depend on it."""
    best, fs = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                    best, fs = parts[1], parts[2]
    except OSError:
        pass
    return fs


def code_version() -> str:
    """The commit measured, and whether src/ had uncommitted changes (the nodes run the tree)."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" + uncommitted changes in src/" if dirty else "")


def machine_info(data_dir: Path | None = None) -> dict[str, str]:
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    info = {
        "cpu": cpu_model(),
        "cores": f"{cores} ({usable} usable)",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "uvloop": uvloop_version() or "not installed",
        "load average at start": " ".join(f"{x:.2f}" for x in load),
        "paxostob code": code_version(),
    }
    if data_dir is not None:
        info["data dir file system"] = filesystem_of(data_dir.resolve())
    return info


def save_json(
    path: Path,
    systems: Sequence[SystemInfo],
    rows: Sequence[Measurement],
    machine: dict[str, str] | None = None,
) -> None:
    doc = {
        "machine": machine or {},
        "systems": [asdict(s) for s in systems],
        "rows": [asdict(r) for r in rows],
    }
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def load_machine(path: Path) -> dict[str, str]:
    """The machine a saved run was measured on (empty for files without it)."""
    machine = json.loads(path.read_text(encoding="utf-8")).get("machine") or {}
    return {str(k): str(v) for k, v in machine.items()}


def load_json(path: Path) -> tuple[list[SystemInfo], list[Measurement]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    return (
        [SystemInfo(**s) for s in doc["systems"]],
        [Measurement(**r) for r in doc["rows"]],
    )


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """A markdown table; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines: list[str] = []
    for k, row in enumerate(rows):
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
        if k == 0:
            lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(lines)


def fmt_ops(x: float) -> str:
    return f"{x:,.0f}"


def fmt_ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def rows_table(rows: Sequence[Measurement]) -> str:
    header = (
        "system",
        "load",
        "tool",
        "clients",
        "-P",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "errors",
        "note",
    )
    body = [
        (
            r.system,
            r.workload,
            r.tool,
            str(r.clients),
            str(r.pipeline),
            fmt_ops(r.ops_s),
            fmt_ms(r.p50_ms),
            fmt_ms(r.p99_ms),
            fmt_ms(r.p999_ms),
            str(r.errors),
            r.note,
        )
        for r in rows
    ]
    return format_table([header, *body])


class Progress:
    """Live progress: a rich bar on a terminal, plain lines otherwise.

    ``task(description, total)`` is a context manager yielding an ``advance(n)``
    function; a part calls it as requests complete.
    """

    def __init__(self, out: TextIO | None = None, *, live: bool | None = None) -> None:
        self.out = out if out is not None else sys.stderr
        rich_progress = optional_module("rich.progress")
        if live is None:
            live = self.out.isatty()
        self._rich: Any | None = None
        if live and rich_progress is not None:
            rp = rich_progress
            self._rich = rp.Progress(
                rp.TextColumn("{task.description}"),
                rp.BarColumn(),
                rp.MofNCompleteColumn(),
                rp.TimeElapsedColumn(),
                transient=True,
            )

    def __enter__(self) -> Progress:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.stop()

    def log(self, message: str) -> None:
        if self._rich is not None:
            self._rich.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.out, flush=True)

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Any]:
        if self._rich is not None:
            rich = self._rich
            task_id = rich.add_task(description, total=total)

            def advance(n: int = 1) -> None:
                rich.advance(task_id, n)

            try:
                yield advance
            finally:
                rich.remove_task(task_id)
            return
        print(f"  {description} ...", file=self.out, flush=True)
        yield lambda n=1: None


def quiet_progress() -> Progress:
    """Progress for tests and nested use: plain lines to stderr, no bars."""
    return Progress(sys.stderr, live=False)
