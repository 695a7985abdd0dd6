"""What an installed paxostob says about itself: its version, and the Python it needs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

import paxostob
from paxostob.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_version_comes_from_pyproject_and_paxostob_version_prints_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version("paxostob") == declared, "reinstall: the installed metadata is stale"
    assert paxostob.__version__ == declared
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"paxostob {declared}"


def test_an_older_python_gets_one_clear_message_at_import() -> None:
    # The interpreter here is new enough: pretend it is 3.10 before the import.
    code = "import sys; sys.version_info = (3, 10, 12, 'final', 0); import paxostob"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: paxostob needs Python 3.11 or newer"), proc.stderr
