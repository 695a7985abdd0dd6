"""bench/resp_parse.py still runs (a tiny configuration; no timing is asserted)."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench" / "resp_parse.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("resp_parse", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_parses_every_command_it_builds() -> None:
    out = io.StringIO()
    argv = ["--commands", "300", "--chunk-bytes", "1000", "--repeat", "2"]
    assert load_bench().main(argv, out=out) == 0
    assert "parsed 300 x SET (100 B values" in out.getvalue()
    assert "commands/s" in out.getvalue()
