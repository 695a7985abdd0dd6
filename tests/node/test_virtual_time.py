"""The virtual-time loop of the asyncio property tests (virtual_time.py) and their replays."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from types import ModuleType

import pytest

from . import test_consensus, test_tob
from .virtual_time import run_virtual


def test_an_hour_of_timers_passes_at_once_in_order() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        fired: list[str] = []
        hour = asyncio.Event()

        def ring() -> None:
            fired.append("hour")
            hour.set()

        loop.call_later(3600, ring)
        loop.call_later(0.001, fired.append, "tick")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 1800)
        fired.append(f"timeout at {loop.time():.3f}")
        await asyncio.wait_for(hour.wait(), 7200)
        return fired

    started = time.monotonic()
    fired, took = run_virtual(main)
    assert fired == ["tick", "timeout at 1800.000", "hour"]
    assert took == pytest.approx(3600.0)
    assert time.monotonic() - started < 5


def test_a_loop_with_nothing_to_wait_for_is_refused() -> None:
    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(RuntimeError, match="wait forever"):
        run_virtual(main)


@pytest.mark.parametrize("module", [test_consensus, test_tob], ids=["consensus", "tob"])
def test_a_fault_schedule_replays_to_the_same_virtual_instant(module: ModuleType) -> None:
    took = []
    for seed in range(20):
        schedule = partial(module.one_schedule, seed)
        first = run_virtual(schedule)[1]
        assert run_virtual(schedule)[1] == first, f"seed {seed} took another virtual time"
        took.append(first)
    assert len(set(took)) > 5, f"the schedules hardly differ: {took}"
