"""Membership changes in the swarm: the plans run among every other fault, and the
simulator catches a broken alpha rule.

The default swarm (``test_swarm.py``) draws a membership plan for about a fifth
of its seeds; here each plan runs on its own seeds, so every plan is exercised
whatever the draw, and the runs must actually change the membership (not only
plan to). Then the planted bug: ``membership_rule="no-delay"`` (never drawn)
makes every replica let a change govern the slot right after its own instead
of i + alpha, while slots up to a window beyond were opened under the old
configuration; the checkers, which derive each slot's configuration from the
chosen log with the true alpha, must catch it as a safety failure.
"""

from __future__ import annotations

import pytest

from paxostob.sim.runner import simulate
from paxostob.sim.swarm import MEMBERSHIP_PLANS

from .safety import SAFETY

#: Seeds per plan (each run is a full fault schedule with the plan on top).
SEEDS_PER_PLAN = 20


@pytest.mark.parametrize("membership", sorted(MEMBERSHIP_PLANS))
def test_each_membership_plan_keeps_every_property_under_faults(membership: str) -> None:
    outcomes = [simulate(seed, membership=membership) for seed in range(SEEDS_PER_PLAN)]
    failures = [str(o.failure) for o in outcomes if o.failure is not None]
    assert not failures, f"{len(failures)} failing seeds:\n\n" + "\n\n".join(failures)
    changed = sum(o.result.member_changes > 0 for o in outcomes)
    # Most runs change the membership (some plans are skipped where a change
    # could leave no live quorum, e.g. after crash-stops).
    assert changed >= SEEDS_PER_PLAN // 2, (membership, changed)
    steps = len(MEMBERSHIP_PLANS[membership][1])
    assert max(o.result.member_changes for o in outcomes) == steps, membership


def test_a_configuration_that_ignores_alpha_is_caught() -> None:
    caught = None
    for seed in range(20):
        broken = simulate(seed, membership="grow-shrink", membership_rule="no-delay")
        if broken.failure is not None and broken.failure.prop in SAFETY:
            caught = (seed, broken.failure)
            break
    assert caught is not None, "no seed in 0..19 caught a configuration that ignores alpha"
    seed, failure = caught
    intact = simulate(seed, membership="grow-shrink")
    assert intact.failure is None, f"seed {seed} fails with the intact rule too: {intact.failure}"
    print(f"caught at seed {seed}: {failure}")


@pytest.mark.parametrize("seed", [901711, 901436, 903634])
def test_a_quorum_of_voters_elects_a_leader_after_a_change(seed: int) -> None:
    """Seeds that stayed without a leader for good after a membership change.

    A node ahead but unable to lead (a learner whose promotion was not in
    effect yet) refused every behind voter's pre-vote, and a node behind the
    change ignored the new voter's Prepare and pre-vote as a stranger's.
    """
    outcome = simulate(seed)
    assert outcome.ok, outcome.failure
