"""Virtual time for asyncio tests: a fresh event loop whose clock jumps to its next timer.

``run_virtual(main)`` runs ``main()`` on a new selector event loop whose
``time()`` is a counter from 0 that the loop itself moves: where it would
block in ``select`` for ``t`` seconds (nothing ready before its next timer),
the clock advances by ``t`` and the selector is only polled. Ticks,
``call_later`` delays (the ``MemoryNetwork``'s message delays), ``wait_for``
and every other timeout then happen at exact virtual moments, whatever the
machine's load, and a run is a function of its seed: nothing is left over
from an earlier run on the loop, since every run has its own.

Only for code that does all its waiting on the loop's timers: no threads
(a node with ``storage=None`` saves nothing, so its driver starts none), no
sockets, no ``time.monotonic()``. With no timer at all the loop would wait
forever: that raises instead.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]]) -> tuple[T, float]:
    """``main()``'s result on a new loop on virtual time, and the virtual seconds it took."""
    loop = asyncio.SelectorEventLoop()
    selector: selectors.BaseSelector = loop._selector  # type: ignore[attr-defined]
    real_select = selector.select
    clock = VirtualClock()

    def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("virtual time: the loop would wait forever (no timer is set)")
        clock.now += max(timeout, 0.0)
        return real_select(0)

    setattr(loop, "time", clock.time)  # noqa: B010 - an instance attribute over the method
    setattr(selector, "select", select)  # noqa: B010
    try:
        result = loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_asyncgens())
        return result, clock.now
    finally:
        loop.close()
