"""``paxostob sim``: one verbose replay, many runs with a summary, usage errors."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from paxostob.cli import COMMANDS, main
from paxostob.core import rules
from paxostob.sim.runner import simulate


def test_one_seed_runs_verbosely(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "options:\n  n = " in out
    assert "replicas at the end:\n  n1: " in out
    assert "status: seed=3 tob " in out
    assert "checks: ok" in out
    assert "replay: paxostob sim --seed 3\n" in out


def test_a_replay_shows_crashes_restarts_and_snapshots(capsys: pytest.CaptureFixture[str]) -> None:
    seed = next(s for s in range(50) if (r := simulate(s).result).restarts and r.snapshots)
    assert main(["sim", "--seed", str(seed)]) == 0
    out = capsys.readouterr().out
    status = re.search(r"crashes=(\d+) restarts=(\d+) snapshots=(\d+) installs=\d+", out)
    assert status is not None, out
    assert min(int(n) for n in status.groups()) >= 1, status.group(0)
    assert "\n  outages = " in out and " lives=" in out


def test_one_single_decree_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--seed", "4", "--synod"]) == 0
    out = capsys.readouterr().out
    assert "status: seed=4 synod " in out
    assert "replay: paxostob sim --seed 4 --synod\n" in out


def test_many_runs_print_a_line_each_and_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--runs", "3", "--start", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[:3]] == ["seed=10", "seed=11", "seed=12"]
    assert all(line.startswith("ok ") for line in lines[:3])
    assert lines[3].startswith("3 multi-paxos runs: 3 passed, 0 failed (")


def _break_quorums(monkeypatch: pytest.MonkeyPatch) -> int:
    """Make quorums minorities; the first seed that then fails."""
    monkeypatch.setattr(rules, "quorum_size", lambda n: n // 2)
    return next(seed for seed in range(100) if not simulate(seed).ok)


def test_a_failing_run_exits_1_and_prints_its_replay_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = _break_quorums(monkeypatch)
    assert main(["sim", "--runs", "1", "--start", str(seed)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL seed={seed} ")
    assert "1 multi-paxos runs: 0 passed, 1 failed" in out
    assert f"\nreplay:\n  paxostob sim --seed {seed}\n" in out


def test_a_failing_seed_replays_verbosely(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = _break_quorums(monkeypatch)
    assert main(["sim", "--seed", str(seed)]) == 1
    out = capsys.readouterr().out
    assert "options:" in out and f"status: seed={seed} " in out
    assert "checks: FAILED " in out
    assert f"replay: paxostob sim --seed {seed}" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["sim", "--seed", "3", "--bogus"],
        ["sim"],
        ["sim", "--seed", "x"],
        ["sim", "--runs", "0"],
        ["sim", "--seed", "1", "--runs", "2"],
        ["nope"],
        [],
    ],
)
def test_bad_usage_exits_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert "error:" in captured.err and "Traceback" not in captured.err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--help"]) == 0
    assert "--synod" in capsys.readouterr().out


def test_commands_are_a_table() -> None:
    assert "sim" in COMMANDS


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "paxostob", "sim", "--seed", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "replay: paxostob sim --seed 2" in done.stdout
