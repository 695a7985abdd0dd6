"""One seed, one run: everything the simulator does is a function of the seed."""

from __future__ import annotations

import pytest

from paxostob.core import rules
from paxostob.sim.runner import plan, run, simulate


@pytest.mark.parametrize("seed", [0, 3, 17, 42])
def test_the_same_seed_gives_the_identical_result(seed: int) -> None:
    assert run(seed) == run(seed)


@pytest.mark.parametrize("seed", [1, 5])
def test_the_same_seed_gives_the_identical_single_decree_result(seed: int) -> None:
    assert run(seed, synod=True) == run(seed, synod=True)


def test_a_failure_replays_identically(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rules, "quorum_size", lambda n: n // 2)
    seed = next(seed for seed in range(100) if not simulate(seed).ok)
    first, second = simulate(seed), simulate(seed)
    assert first.failure is not None and second.failure is not None
    assert str(first.failure) == str(second.failure)
    assert first.result == second.result


def test_different_seeds_give_different_runs() -> None:
    results = {run(seed).status_line().split(" ", 1)[1] for seed in range(5)}
    assert len(results) == 5


def test_overrides_change_the_options_and_only_them() -> None:
    options, _ = plan(9, n=5, loss=0.0)
    assert (options.n, options.loss) == (5, 0.0)
    drawn, _ = plan(9)
    assert options.fault_ticks == drawn.fault_ticks
    result = run(9, n=5, loss=0.0)
    assert result.options == options


def test_unknown_override_is_refused() -> None:
    with pytest.raises(TypeError, match="unknown simulator options"):
        run(1, bogus=1)
