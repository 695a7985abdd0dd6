"""FaultModel: the pure decision of what the network does to one message."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paxostob.errors import ConfigurationError
from paxostob.transport.faults import FaultModel


def test_a_perfect_network_delivers_one_copy_at_once() -> None:
    assert FaultModel().arrival_delays(random.Random(0), "a", "b") == [0.0]


def test_loss_one_loses_and_duplicate_one_doubles() -> None:
    rng = random.Random(1)
    assert all(FaultModel(loss=1.0).arrival_delays(rng, "a", "b") == [] for _ in range(100))
    doubled = FaultModel(duplicate=1.0, delay_s=(1.0, 2.0))
    for _ in range(100):
        delays = doubled.arrival_delays(rng, "a", "b")
        assert len(delays) == 2 and all(1.0 <= d <= 2.0 for d in delays)


def test_same_seed_same_decisions() -> None:
    model = FaultModel(loss=0.4, duplicate=0.4, delay_s=(0.0, 5.0))

    def decisions(seed: int) -> list[list[float]]:
        rng = random.Random(seed)
        return [model.arrival_delays(rng, "a", "b") for _ in range(200)]

    assert decisions(3) == decisions(3)
    assert decisions(3) != decisions(4)
    lost = sum(1 for d in decisions(3) if not d)
    assert 40 < lost < 120


def test_partitions_cut_between_groups_only() -> None:
    model = FaultModel().partitioned(["a"], {"b", "c"})
    assert not model.can_reach("a", "b") and not model.can_reach("c", "a")
    assert model.can_reach("b", "c")
    assert model.can_reach("d", "a") and model.can_reach("b", "d"), "d is in no group"
    assert model.can_reach("a", "a")
    assert model.healed().can_reach("a", "b")
    assert model.partitioned(["a", "b"]).can_reach("a", "b"), "a new partition replaces the old"


def test_a_partitioned_message_is_lost_without_drawing() -> None:
    rng = random.Random(5)
    state = rng.getstate()
    assert FaultModel().partitioned(["a"], ["b"]).arrival_delays(rng, "a", "b") == []
    assert rng.getstate() == state


def test_a_group_named_alone_cuts_nothing() -> None:
    assert FaultModel().partitioned(["a"]).can_reach("a", "b")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": -0.01},
        {"loss": 1.01},
        {"loss": float("nan")},
        {"duplicate": 2},
        {"delay_s": (-1.0, 0.0)},
        {"delay_s": (2.0, 1.0)},
        {"delay_s": (0.0, float("inf"))},
        {"delay_s": (1.0,)},
        {"partitions": (frozenset("ab"), frozenset("bc"))},
        {"partitions": ("ab",)},
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        FaultModel(**kwargs)  # type: ignore[arg-type]


@given(
    seed=st.integers(0, 2**32),
    loss=st.floats(0.0, 1.0),
    duplicate=st.floats(0.0, 1.0),
    lo=st.floats(0.0, 100.0),
    width=st.floats(0.0, 100.0),
)
def test_copies_are_at_most_two_within_the_delay_bounds(
    seed: int, loss: float, duplicate: float, lo: float, width: float
) -> None:
    model = FaultModel(loss=loss, duplicate=duplicate, delay_s=(lo, lo + width))
    delays = model.arrival_delays(random.Random(seed), "a", "b")
    assert len(delays) <= 2
    assert all(lo <= d <= lo + width for d in delays)
