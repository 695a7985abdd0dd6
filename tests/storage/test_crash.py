"""Durable stores under real kill -9: what a process reported durable is on disk, intact.

Each durable store (``STORES``: SqliteStorage, LogStorage) runs the test.

A child process (crash_child.py) saves synced Readys in a loop on one data
directory and prints the number of each save once ``save`` returned. The
test reads those lines and SIGKILLs the child (only the PID it started) at a
random point: after a seeded random number of saves, while the child keeps
saving, so the kill lands anywhere in a save or a snapshot install. Then it
opens the store itself and checks it holds exactly saves 1..h for some h at
least the last one reported: nothing reported is missing, no save is there
in part (atomicity), nothing is corrupt (``open`` validates every row). The
next child continues on the same directory, so recovery is tested on top of
recovery.

Set ``PAXOSTOB_CRASH_SEED`` to replay a seed (the kill moments still depend
on timing; the seed fixes the number of saves before each kill).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from paxostob.core.types import Ballot
from paxostob.storage.base import DurableState

from .crash_child import (
    CLUSTER,
    NODE,
    SNAPSHOT_EVERY,
    STORES,
    expected_accepted,
    expected_decided,
)

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 30
#: Bounds the whole test well under a minute even on a slow disk.
DURATION_MAX_S = 40.0
#: A kill comes after 0..SAVES_BEFORE_KILL_MAX saves: spans several snapshot intervals.
SAVES_BEFORE_KILL_MAX = 3 * SNAPSHOT_EVERY
#: An early kill comes this soon after the start: start-up and open take about 0.1 s here.
KILL_EARLY_MAX_S = 0.2
#: Waiting for a child that is saving (or starting) should take far less.
CHILD_TIMEOUT_S = 20.0


@dataclass
class Run:
    """What one killed child reported before it died."""

    saves: int = 0  # the highest save it reported
    snapshot: int = 0  # the highest save whose snapshot it reported installed
    stderr: str = ""


def run_and_kill(
    data_dir: Path, kind: str, saves_before_kill: int, kill_after_s: float, log: Path
) -> Run:
    """Start a child; SIGKILL it after it reports ``saves_before_kill`` new saves.

    With ``saves_before_kill == 0`` the kill comes ``kill_after_s`` after the
    start instead: in start-up or in ``open`` (creating or recovering the store).
    """
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(data_dir), kind], stdout=subprocess.PIPE, stderr=stderr
        )
    assert proc.stdout is not None
    lines: list[bytes] = []
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    try:
        if saves_before_kill == 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(kill_after_s)  # the kill moment; the child never ends by itself
        first = None
        while saves_before_kill > 0 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break  # the child died by itself: its stderr says why
            lines.append(line)
            if line.startswith(b"open"):
                continue
            n = int(line.split()[-1])
            first = n if first is None else first
            if n - first + 1 >= saves_before_kill:
                break
    finally:
        proc.send_signal(signal.SIGKILL)  # only the child we started, by its PID
        proc.wait(CHILD_TIMEOUT_S)
    lines += proc.stdout.read().splitlines(keepends=True)  # printed before it died: durable too
    proc.stdout.close()
    run = Run(stderr=log.read_text(errors="replace"))
    for line in lines:
        if not line.endswith(b"\n"):
            continue  # cut by the kill mid-write: never a completed report
        words = line.split()
        if words[0] == b"snap":
            run.snapshot = max(run.snapshot, int(words[1]))
        elif words[0] != b"open":
            run.saves = max(run.saves, int(words[0]))
    if saves_before_kill > 0 and run.saves == 0:
        raise AssertionError(f"the child reported no save before its kill:\n{run.stderr}")
    return run


def check_exactly_saves_through(state: DurableState, run: Run) -> int:
    """The h such that ``state`` is exactly saves 1..h; asserts h covers all ``run`` reported."""
    h = state.promised.round
    assert state.promised == (Ballot(h, NODE) if h else Ballot(0, "")), state.promised
    assert h >= run.saves, f"save {run.saves} was reported durable, the store ends at {h}"
    snapshot_save = 0
    if state.snapshot is not None:
        snapshot_save = int(state.snapshot.data)
        assert state.snapshot.slot == 2 * snapshot_save
    # Not necessarily the newest multiple: a kill between save n and its snapshot skips it.
    assert snapshot_save % SNAPSHOT_EVERY == 0 and snapshot_save <= h, (snapshot_save, h)
    assert snapshot_save >= run.snapshot, "a snapshot reported installed is missing"
    floor = 2 * snapshot_save
    slots = range(floor + 1, 2 * h + 1)
    assert state.decided == tuple(expected_decided(s) for s in slots)
    assert state.accepted == tuple(expected_accepted(s, h) for s in slots)
    return h


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", sorted(STORES))
def test_what_was_reported_synced_survives_kill_9(tmp_path: Path, kind: str) -> None:
    seed = int(os.environ.get("PAXOSTOB_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    print(f"crash test seed {seed} (replay: PAXOSTOB_CRASH_SEED={seed})")
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    started = time.monotonic()
    incarnation = last_save = 0
    kills = 0
    mid_snapshot_interval = 0
    while kills < KILLS and time.monotonic() - started < DURATION_MAX_S:
        # One kill in ten comes early: in start-up, or in open (creating or recovering).
        saves_before_kill = 0 if rng.random() < 0.1 else rng.randint(1, SAVES_BEFORE_KILL_MAX)
        kill_after_s = rng.uniform(0.0, KILL_EARLY_MAX_S)
        log = tmp_path / f"child{kills}.log"
        run = run_and_kill(data_dir, kind, saves_before_kill, kill_after_s, log)
        kills += 1
        storage = STORES[kind](str(data_dir))
        try:
            state = storage.open(CLUSTER, NODE, bootstrap=[NODE])
        except Exception as e:
            raise AssertionError(f"seed {seed}, kill {kills}: {e}\n{run.stderr}") from e
        finally:
            storage.close()
        try:
            h = check_exactly_saves_through(state, run)
        except AssertionError as e:
            raise AssertionError(f"seed {seed}, kill {kills}: {e}") from e
        assert state.incarnation > incarnation, f"seed {seed}: incarnation went back"
        assert h >= last_save, f"seed {seed}: the store went back from save {last_save} to {h}"
        incarnation, last_save = state.incarnation, h
        mid_snapshot_interval += h % SNAPSHOT_EVERY != 0
    assert kills >= 10, f"only {kills} kills in {DURATION_MAX_S} s"
    assert mid_snapshot_interval > 0  # the kills did land between snapshots


@pytest.mark.parametrize("kind", sorted(STORES))
@pytest.mark.parametrize("n", [1, 2, 3])
def test_expected_state_matches_what_the_child_saves(tmp_path: Path, n: int, kind: str) -> None:
    """The checker itself: saves 1..n done in-process pass it, one save fewer fails it."""
    from .crash_child import ready_of_save

    storage = STORES[kind](str(tmp_path))
    storage.open(CLUSTER, NODE, bootstrap=[NODE])
    for i in range(1, n + 1):
        storage.save(ready_of_save(i))
    storage.close()
    state = storage.open(CLUSTER, NODE, bootstrap=[NODE])
    storage.close()
    assert check_exactly_saves_through(state, Run(saves=n)) == n
    with pytest.raises(AssertionError):
        check_exactly_saves_through(state, Run(saves=n + 1))
