"""A node whose disk is lost must not come back as a voter: the swarm's ``wipes`` fault.

A wiped node crashes, its store is wiped (``MemoryStorage.wipe``), and at its
restart it tries to start again. The runtime's rule (storage/base.py: no
store, no start) makes it refuse, so it stays down like a crash-stop, and
every property holds. Two deliberate bugs (the runner's ``wiped`` option,
never drawn) show that the swarm sees the fault when the rule is broken:

- ``rejoin``: the node starts on an empty store whose incarnations start
  over, as a store made again used to (its proposal ids repeat its first
  life's, so peers take new broadcasts for old ones);
- ``rejoin-new-ids``: an empty store with fresh incarnations: amnesia alone
  (it forgot its promises and accepted values).
"""

from __future__ import annotations

import pytest

from paxostob.sim.runner import plan, simulate

#: Seeds searched; about a fifth of the swarm's seeds wipe a disk.
SEEDS = range(0, 60)


def _wiping_seeds() -> list[int]:
    return [seed for seed in SEEDS if plan(seed)[1].wipes]


def test_the_swarm_wipes_disks_and_the_wiped_nodes_stay_out() -> None:
    seeds = _wiping_seeds()
    assert len(seeds) >= 5, seeds
    refused = 0
    for seed in seeds:
        outcome = simulate(seed)
        assert outcome.failure is None, str(outcome.failure)
        refused += outcome.result.refused
        # A refused node is reported as stopped, never as a live replica.
        for line in outcome.result.replicas:
            node = line.split(":")[0]
            if node in outcome.result.crashed:
                assert "crash-stopped" in line, line
    assert refused >= len(seeds) // 2, (refused, seeds)


@pytest.mark.parametrize(
    ("mode", "caught_by"),
    [("rejoin", {"no creation", "durability"}), ("rejoin-new-ids", {"durability"})],
)
def test_a_wiped_node_that_rejoins_is_caught(mode: str, caught_by: set[str]) -> None:
    for seed in _wiping_seeds():
        outcome = simulate(seed, wiped=mode)
        if outcome.failure is None:
            continue
        assert outcome.failure.prop in caught_by, str(outcome.failure)
        assert simulate(seed).ok, f"seed {seed} fails with the refusal too"
        return
    pytest.fail(f"no seed of {SEEDS} caught a wiped node rejoining ({mode})")
