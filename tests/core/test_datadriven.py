"""Runs every scenario script in ``tests/core/testdata`` (the language: ``datadriven.py``).

Each script's blocks must print exactly their expected output. With
``PAXOSTOB_REWRITE=1`` in the environment the scripts are rewritten with
the outputs of this run instead (review the diff before committing it).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from .datadriven import render, run_script

TESTDATA = Path(__file__).parent / "testdata"
SCRIPTS = sorted(TESTDATA.glob("*.txt"))


def test_there_are_scenario_scripts() -> None:
    assert len(SCRIPTS) >= 5, SCRIPTS


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_scenario_script(path: Path) -> None:
    script, outputs = run_script(path)
    actual = render(script, outputs)
    if os.environ.get("PAXOSTOB_REWRITE") == "1":
        path.write_text(actual)
        return
    expected = path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{path.name} (expected)",
                tofile=f"{path.name} (actual)",
            )
        )
        pytest.fail(f"{path.name}: output differs (PAXOSTOB_REWRITE=1 accepts it):\n{diff}")
