"""The benchmark still runs (a tiny configuration; no timing is asserted)."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "tob_inmemory.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tob_inmemory", BENCH)
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


def test_the_durable_bench_runs_and_counts_fsyncs(capsys: pytest.CaptureFixture[str]) -> None:
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
    assert "| durable (fsync) | 50 | 20 |" in out and "fsyncs/broadcast" in out
