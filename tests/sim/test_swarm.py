"""Thousands of seeded fault schedules against the real core (DESIGN.md §6.3).

Each test runs a chunk of consecutive seeds and reports every failing seed
with the command that replays it (``paxostob sim --seed N``). The seed
counts can be raised for a longer soak: ``PAXOSTOB_SIM_RUNS=20000``.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from paxostob.sim.runner import plan, run_many
from paxostob.sim.swarm import PARTITION_KINDS

MULTIPAXOS_RUNS = int(os.environ.get("PAXOSTOB_SIM_RUNS", "2000"))
SYNOD_RUNS = int(os.environ.get("PAXOSTOB_SIM_SYNOD_RUNS", "500"))
CHUNK = 50


def _chunks(total: int, size: int) -> list[object]:
    return [
        pytest.param(
            start, min(start + size, total), id=f"seeds{start}-{min(start + size, total) - 1}"
        )
        for start in range(0, total, size)
    ]


def _failures(start: int, stop: int, *, synod: bool) -> list[str]:
    return [str(o.failure) for o in run_many(range(start, stop), synod=synod) if o.failure]


@pytest.mark.parametrize(("start", "stop"), _chunks(MULTIPAXOS_RUNS, CHUNK))
def test_multipaxos_schedules_keep_every_property(start: int, stop: int) -> None:
    failures = _failures(start, stop, synod=False)
    assert not failures, f"{len(failures)} failing seeds:\n\n" + "\n\n".join(failures)


@pytest.mark.parametrize(("start", "stop"), _chunks(SYNOD_RUNS, 4 * CHUNK))
def test_single_decree_schedules_keep_every_property(start: int, stop: int) -> None:
    failures = _failures(start, stop, synod=True)
    assert not failures, f"{len(failures)} failing seeds:\n\n" + "\n\n".join(failures)


def test_the_swarm_covers_every_feature() -> None:
    """The seeds above do exercise 5 replicas, crashes, every partition kind, ...

    Without this, a change to the option draw could quietly turn a feature off.
    """
    seen: Counter[str] = Counter()
    for seed in range(MULTIPAXOS_RUNS):
        o, schedule = plan(seed)
        seen["n=5"] += o.n == 5
        seen["n=3"] += o.n == 3
        seen["heavy loss"] += o.loss > 0.2
        seen["duplication"] += o.duplicate > 0
        seen["reordering"] += o.delay_ticks[0] < o.delay_ticks[1]
        seen["spikes"] += o.spike_probability > 0
        seen["crash"] += o.crashes > 0
        seen["crash the leader"] += o.crashes > 0 and o.crash_leader
        seen["two crashes"] += o.crashes == 2
        seen["window 1"] += o.window_slots_max == 1
        seen["batch 1"] += o.batch_count_max == 1
        seen["quiet"] += not (o.loss or o.duplicate or o.spike_probability or o.partitions)
        for e in schedule.partitions:
            seen[f"partition {e.kind}"] += 1
    for feature in (
        "n=5",
        "n=3",
        "heavy loss",
        "duplication",
        "reordering",
        "spikes",
        "crash",
        "crash the leader",
        "two crashes",
        "window 1",
        "batch 1",
        "quiet",
        *(f"partition {k}" for k in PARTITION_KINDS),
    ):
        assert seen[feature] >= MULTIPAXOS_RUNS // 50, (feature, seen)
    assert seen["n=5"] >= MULTIPAXOS_RUNS // 3, seen
