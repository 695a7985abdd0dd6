"""When faults strike in the asyncio property tests: at protocol milestones, not after sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def after_completions(
    futures: Iterable[asyncio.Future[Any]], count: int, timeout_s: float
) -> None:
    """Return once ``count`` more of ``futures`` completed, or after ``timeout_s``.

    A fault schedule's "moment" is a point of the protocol's progress (the
    k-th decision or delivery from now), waited for as events; the timeout
    only bounds schedules whose faults stop all progress.
    """
    pending = {f for f in futures if not f.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    seen = 0
    while seen < count and pending:
        left = deadline - loop.time()
        if left <= 0:
            return
        done, pending = await asyncio.wait(
            pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
        )
        seen += len(done)
