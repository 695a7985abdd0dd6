"""The benchmark still runs (a tiny configuration; no timing is asserted)."""

from __future__ import annotations

import importlib.util
import io
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "tob_inmemory.py"


def load_bench(path: Path = BENCH) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.mark.parametrize("loop", [[], ["--no-uvloop"]])
def test_the_bench_runs_a_tiny_configuration(loop: list[str], tmp_path: Path) -> None:
    bench = load_bench()
    out = io.StringIO()
    report = tmp_path / "report.txt"
    argv = ["--messages", "20", "--concurrency", "4", "--replicas", "3", "--large"]
    assert bench.main([*argv, *loop, "--out", str(report)], out=out) == 0
    text = out.getvalue()
    assert "machine: " in text and "python:  " in text and "loop:    " in text
    rows = [line for line in text.splitlines() if line.startswith("|") and "---" not in line]
    # A header, then batching on/off for 100 B and 4 KiB payloads.
    assert len(rows) == 5
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == "3" and cells[4] == "20", row
    assert report.read_text().endswith(rows[-1] + "\n")


def test_the_core_bench_delivers_every_message_at_every_replica() -> None:
    bench = load_bench(BENCH.parent / "tob_core.py")
    out = io.StringIO()
    assert bench.main(["--messages", "200", "--per-round", "7", "--replicas", "5"], out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("core only: 5 replicas, 200 messages")
    for line, mode in zip(lines[1:], ("on", "off"), strict=True):
        assert line.startswith(f"batching {mode}"), line
        assert float(line.split(":")[1]) > 0, line
    # run() itself refuses a round in which a replica missed a delivery.
    assert bench.run(3, 50, 10, True) > 0


def test_the_durable_bench_runs_and_counts_fsyncs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fsyncs it reports are real ones (the system calls, counted here), with group commit."""
    real = 0

    def counted(sync: Callable[[int], None]) -> Callable[[int], None]:
        def call(fd: int) -> None:
            nonlocal real
            sync(fd)
            real += stat.S_ISREG(os.fstat(fd).st_mode)  # a directory's sync is no commit

        return call

    for name in ("fdatasync", "fsync"):
        monkeypatch.setattr(os, name, counted(getattr(os, name)))
    path = BENCH.parent / "tob_durable.py"
    spec = importlib.util.spec_from_file_location("tob_durable", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        assert module.main(["--messages", "20"]) == 0
    finally:
        del sys.modules[spec.name]
    out = capsys.readouterr().out
    per = {}  # K -> fsyncs per broadcast, as reported
    for line in out.splitlines():
        if line.startswith("| durable (fsync) |"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[2] == "20", line
            per[int(cells[1])] = float(cells[6])
    assert set(per) == {1, 50}, out
    # One broadcast at a time: its value is synced by the leader and at least one acceptor.
    assert per[1] >= 2, out
    assert per[50] < per[1], f"no group commit under concurrency: {out}"
    reported = round(20 * (per[1] + per[50]))
    assert 0 < reported <= real, f"reported {reported} fsyncs, the system saw {real}"
