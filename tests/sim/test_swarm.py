"""Thousands of seeded fault schedules against the real core (docs/design.md, 'The simulator').

Each test runs a chunk of consecutive seeds and reports every failing seed
with the command that replays it (``paxostob sim --seed N``). The seed
counts can be raised for a longer soak: ``PAXOSTOB_SIM_RUNS=20000``.

About half the Multi-Paxos runs crash and restart nodes on their storage
(any of them, a majority or all at once), and most compact their logs; see
``test_the_swarm_covers_every_feature`` for the planned shares and the
chunk tests for what the runs actually did.

A core bug these runs found is replayed as a scripted scenario in
``test_recovery_edge_cases.py``; a finding seed beyond the default chunks is
kept in ``FINDING_SEEDS``.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest

from paxostob.sim.runner import RunOutcome, plan, run_many
from paxostob.sim.swarm import MEMBERSHIP_PLANS, PARTITION_KINDS

MULTIPAXOS_RUNS = int(os.environ.get("PAXOSTOB_SIM_RUNS", "2000"))
SYNOD_RUNS = int(os.environ.get("PAXOSTOB_SIM_SYNOD_RUNS", "500"))
CHUNK = 50

#: Seeds past the default chunks that found a core bug (test_recovery_edge_cases.py, bug 3).
FINDING_SEEDS = (17053,)


def _chunks(total: int, size: int) -> list[object]:
    return [
        pytest.param(
            start, min(start + size, total), id=f"seeds{start}-{min(start + size, total) - 1}"
        )
        for start in range(0, total, size)
    ]


def _failures(outcomes: list[RunOutcome]) -> list[str]:
    return [str(o.failure) for o in outcomes if o.failure is not None]


@pytest.mark.parametrize(("start", "stop"), _chunks(MULTIPAXOS_RUNS, CHUNK))
def test_multipaxos_schedules_keep_every_property(start: int, stop: int) -> None:
    outcomes = list(run_many(range(start, stop)))
    failures = _failures(outcomes)
    assert not failures, f"{len(failures)} failing seeds:\n\n" + "\n\n".join(failures)
    if stop - start == CHUNK:
        # The runs themselves (not only their plans) restart nodes, compact
        # and move snapshots between replicas.
        did: Counter[str] = Counter()
        for o in outcomes:
            did["restarts"] += o.result.restarts > 0
            did["snapshots"] += o.result.snapshots > 0
            did["installs"] += o.result.installs > 0
        assert min(did["restarts"], did["snapshots"]) >= CHUNK // 5, did
        assert did["installs"] >= 1, did


@pytest.mark.parametrize(("start", "stop"), _chunks(SYNOD_RUNS, 4 * CHUNK))
def test_single_decree_schedules_keep_every_property(start: int, stop: int) -> None:
    failures = _failures(list(run_many(range(start, stop), synod=True)))
    assert not failures, f"{len(failures)} failing seeds:\n\n" + "\n\n".join(failures)


def test_the_seeds_that_found_core_bugs_pass() -> None:
    failures = _failures(list(run_many(FINDING_SEEDS)))
    assert not failures, "\n\n".join(failures)


def test_the_swarm_covers_every_feature() -> None:
    """The seeds above do exercise 5 replicas, crashes, restarts, every partition kind, ...

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
        seen["outages"] += bool(schedule.outages)
        seen["outage of the leader"] += bool(schedule.outages) and o.outage_leader
        seen["outage of a majority"] += any(len(x.nodes) > o.n // 2 for x in schedule.outages)
        seen["outage of all"] += any(len(x.nodes) == o.n for x in schedule.outages)
        seen["long outage"] += any(x.restart - x.tick > 100 for x in schedule.outages)
        seen["outage and crash-stop"] += bool(schedule.outages) and o.crashes > 0
        seen["compaction"] += o.snapshot_every > 0
        seen["compaction every <= 5"] += 0 < o.snapshot_every <= 5
        seen["small snapshot chunks"] += o.snapshot_every > 0 and o.snapshot_chunk_bytes_max <= 64
        seen["outage and compaction"] += bool(schedule.outages) and o.snapshot_every > 0
        seen["slow disk"] += o.persist_delay_ticks[1] >= 3
        seen["slow disk and outage"] += o.persist_delay_ticks[1] >= 3 and bool(schedule.outages)
        seen["rejoining laggard"] += bool(schedule.laggards)
        seen["laggard back before the heal"] += any(
            g.restart < o.heal_tick for g in schedule.laggards
        )
        seen[f"membership {o.membership}"] += bool(o.membership)
        seen["membership and crash-stop"] += bool(o.membership) and o.crashes > 0
        seen["membership and outage"] += bool(o.membership) and bool(schedule.outages)
        seen["membership and compaction"] += bool(o.membership) and o.snapshot_every > 0
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
        "outages",
        "outage of the leader",
        "outage of a majority",
        "outage of all",
        "long outage",
        "outage and crash-stop",
        "compaction",
        "compaction every <= 5",
        "small snapshot chunks",
        "outage and compaction",
        "slow disk",
        "slow disk and outage",
        "rejoining laggard",
        "laggard back before the heal",
        *(f"membership {p}" for p in MEMBERSHIP_PLANS),
        "membership and crash-stop",
        "membership and outage",
        "membership and compaction",
        *(f"partition {k}" for k in PARTITION_KINDS),
    ):
        assert seen[feature] >= MULTIPAXOS_RUNS // 50, (feature, seen)
    assert seen["n=5"] >= MULTIPAXOS_RUNS // 3, seen
    assert seen["outages"] >= MULTIPAXOS_RUNS * 2 // 5, seen
    assert seen["compaction"] >= MULTIPAXOS_RUNS // 2, seen
