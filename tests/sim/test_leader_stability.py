"""Rejoining laggards: a follower down for a long while under load, then back.

The simulator's ``laggards`` fault (sim/swarm.py) crashes a follower for
10-40 election timeouts while the others keep writing, restarts it on its
storage far behind, and for a while lets nothing reach it (its peers'
links are not back yet) while what it sends arrives: its election timer
fires with a healthy leader present. ``check_leader_stability`` fails a
run in which a leader change follows such a rejoin in an otherwise quiet
run (no loss, spikes, partitions, crashes or outages nearby).

Without pre-vote the laggard's phase 1 reaches the others and deposes the
leader; with it (``LogConfig.pre_vote``, the default) its peers refuse,
since they hear the leader and the laggard is behind them.
"""

from __future__ import annotations

from typing import Any

from paxostob.sim.runner import run_many, simulate

#: A quiet run with two rejoining laggards: any leader change is needless.
QUIET: dict[str, Any] = {
    "loss": 0.0,
    "duplicate": 0.0,
    "spike_probability": 0.0,
    "partitions": 0,
    "crashes": 0,
    "outages": 0,
    "laggards": 2,
    "fault_ticks": 1500,
}
SEEDS = range(20)


def test_a_rejoining_laggard_causes_no_leader_change_with_pre_vote() -> None:
    outcomes = list(run_many(SEEDS, **QUIET))
    failures = [str(o.failure) for o in outcomes if o.failure is not None]
    assert not failures, "\n\n".join(failures)
    assert sum(o.result.quiet_rejoins for o in outcomes) >= len(SEEDS)  # the runs did test it
    assert sum(o.result.needless_elections for o in outcomes) == 0


def test_without_pre_vote_the_same_runs_fail_the_leader_stability_check() -> None:
    """The switch off (as releases before pre-vote): the same seeds depose
    healthy leaders, and only this check fails (safety held)."""
    outcomes = list(run_many(SEEDS, pre_vote=False, **QUIET))
    failed = [o for o in outcomes if o.failure is not None]
    assert {o.failure.prop for o in failed if o.failure is not None} == {"leader stability"}
    assert len(failed) >= len(SEEDS) // 2, [o.result.status_line() for o in outcomes]
    assert all(o.result.needless_elections > 0 for o in failed)
    first = failed[0].failure
    assert (
        first is not None and "rejoined at tick" in first.detail and "led instead" in first.detail
    )
    assert "paxostob sim --seed" in str(first)


def test_the_rejoin_statistics_count_only_quiet_rejoins() -> None:
    """With loss on, a rejoin is never quiet: leader changes then have other causes."""
    outcome = simulate(0, **{**QUIET, "loss": 0.1})
    assert outcome.result.rejoins >= 1
    assert outcome.result.quiet_rejoins == outcome.result.needless_elections == 0
