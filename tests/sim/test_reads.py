"""The simulator checks ReadIndex reads, and catches a read served without its guarantees.

With ``reads="read-index"`` every broadcast of a run is followed by a
``ReadIndex`` at a random live node; each read served is checked fresh
(``checkers.check_read_fresh``: it sees every position applied anywhere
before it was asked) under the run's partitions, crashes, outages, loss and
clock skew. Two broken rules must be caught on the same seeds, and only
counted at a seed the intact core passes:

- ``reads="no-quorum"``: the runner forges every peer's answer to a
  leader's read probe (a leader serves reads without a quorum confirming
  it still leads). Measured when written: 2 of seeds 0..39 (18 and 31).
- the read index without the slots phase 1 recovered (a new leader's
  decided prefix only): 6 of seeds 0..149 (first at 18).
"""

from __future__ import annotations

import pytest

from paxostob.core import reads
from paxostob.core.leadership import Leadership
from paxostob.core.log import DecidedLog
from paxostob.sim.runner import simulate

SEEDS = range(60)


def test_reads_stay_fresh_under_partitions_crashes_and_clock_skew() -> None:
    served = 0
    kinds = {"partitions": 0, "crashes or outages": 0, "clock skew": 0}
    for seed in SEEDS:
        outcome = simulate(seed, reads="read-index")
        assert outcome.ok, outcome.failure
        served += outcome.result.reads_served
        o = outcome.result.options
        kinds["partitions"] += o.partitions > 0
        kinds["crashes or outages"] += o.crashes + o.outages > 0
        kinds["clock skew"] += o.clock_skewed + o.clock_jumps > 0
    assert served > 1000  # reads were served, not only asked
    assert all(kinds.values()), kinds


def stale_reads(seeds: range, reads: str) -> list[int]:
    """The seeds whose run serves a stale read."""
    found = []
    for seed in seeds:
        outcome = simulate(seed, reads=reads)
        if outcome.failure is not None and outcome.failure.prop == "read freshness":
            found.append(seed)
    return found


def test_a_leader_serving_reads_without_a_quorum_is_caught() -> None:
    seeds = stale_reads(SEEDS, reads="no-quorum")
    assert seeds, f"reads='no-quorum' passes seeds {SEEDS}"
    assert simulate(seeds[0], reads="read-index").ok  # the intact rule passes it


def test_a_read_index_below_the_slots_phase_1_recovered_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def decided_only(lead: Leadership, log: DecidedLog) -> int:
        return log.decided_through

    with monkeypatch.context() as m:
        m.setattr(reads, "read_index", decided_only)
        seeds = stale_reads(SEEDS, reads="read-index")
    assert seeds, f"an index without phase 1's slots passes seeds {SEEDS}"
    assert simulate(seeds[0], reads="read-index").ok  # the intact rule passes it


@pytest.mark.parametrize("seed", [5081, 5102])
def test_reads_stay_fresh_when_a_grant_outlives_the_follower_that_asked(seed: int) -> None:
    """Seeds where a follower restarts between its ask and the leader's grant.

    With asks numbered from 1 in every life, the old life's grant answered the
    new life's ask and the read was served stale ("read freshness").
    """
    outcome = simulate(seed, membership="", reads="read-index", outages=2, outage_nodes_max=1)
    assert outcome.ok, outcome.failure
