"""The Driver's monotonic readings for leader leases (node/driver.py, core/reads.py 'Leases').

With ``mono_ms`` (a node with leases) each ``Tick`` carries the ms since
the previous tick's reading, and every message of an inbox batch carries a
reading taken after the batch arrived (``Receive.elapsed_ms``, on the base
of the last tick's): a leader whose loop stalled must not grant a follower's
read from the stale tick reading. A scripted replica records what it gets;
the clock is the test's, moved by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from paxostob.core.events import Event, Ready, Receive, Tick
from paxostob.core.messages import Envelope, ReadIndexAsk
from paxostob.node.driver import Driver

from .test_driver_pipeline import WAIT_S, Transport


class Replica:
    """Records the elapsed ms of every Tick and Receive; never has a Ready."""

    def __init__(self) -> None:
        self.ticks: list[int] = []
        self.receives: list[int | None] = []
        self.stepped = asyncio.Event()

    def step(self, event: Event) -> None:
        if isinstance(event, Tick):
            assert event.elapsed_ms is not None
            self.ticks.append(event.elapsed_ms)
        elif isinstance(event, Receive):
            self.receives.append(event.elapsed_ms)
        self.stepped.set()

    def has_ready(self) -> bool:
        return False

    def ready(self) -> Ready:  # pragma: no cover - has_ready is always False
        raise AssertionError("no Ready here")

    def advance(self, rd: Ready) -> None:  # pragma: no cover
        raise AssertionError("no Ready here")


async def until(replica: Replica, done: Callable[[], bool]) -> None:
    """Wait (bounded) until ``done()`` holds, woken by every step of the replica."""
    async with asyncio.timeout(WAIT_S):
        while not done():
            replica.stepped.clear()
            await replica.stepped.wait()


async def test_a_message_after_a_stall_carries_a_reading_taken_after_it_arrived() -> None:
    now = [1_000]
    replica = Replica()
    driver = Driver(
        replica,
        Transport([]),
        "lease-clock-test",
        tick_interval_s=0.05,
        on_ready=lambda rd: None,
        wall_clock=lambda: 1_767_225_600.0,
        mono_ms=lambda: now[0],
    )
    driver.start()
    try:
        await until(replica, lambda: len(replica.ticks) >= 1)
        assert replica.ticks[0] == 0  # the first reading is the base
        ticks_before = len(replica.ticks)
        # The clock runs on 500 ms past the last tick's reading (a stalled loop), then an ask.
        now[0] = 1_500
        assert driver.since_tick_ms() == 500
        driver._on_envelope(Envelope("a", ReadIndexAsk("lease-clock-test", "b", 1)))
        await until(replica, lambda: len(replica.receives) == 1)
        # Stepped before any later tick (the batch comes first), with the fresh reading.
        assert sum(replica.ticks[:ticks_before]) + (replica.receives[0] or 0) == 500
        assert replica.receives == [500]
        # The next tick's elapsed ms is the difference of readings: the sum stays exact.
        await until(replica, lambda: len(replica.ticks) > ticks_before)
        assert sum(replica.ticks) == now[0] - 1_000
    finally:
        await driver.close()
