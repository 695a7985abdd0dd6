"""Small helpers shared by the public runtime classes."""

from __future__ import annotations

import abc
import asyncio
import random
from collections.abc import Awaitable
from types import TracebackType
from typing import Self, TypeVar

from ..errors import ConfigurationError, QuorumTimeoutError

T = TypeVar("T")


def check_membership(address: str, members: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The sorted membership; refuses duplicates, empties and a node outside it."""
    names = [str(m) for m in members]
    if not names or any(not m for m in names):
        raise ConfigurationError("members must be a non-empty list of non-empty node ids")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"members has duplicates: {names}")
    if address not in names:
        raise ConfigurationError(
            f"this node ({address!r}) must be one of the members {names}: "
            "the membership is the whole cluster, this node included"
        )
    return tuple(sorted(names))


def make_rng(seed: int | None, address: str) -> random.Random:
    """Seeded per node (so runs replay); fresh entropy when no seed is given."""
    if seed is None:
        return random.Random()
    return random.Random(f"{seed}:{address}")


async def within(aw: Awaitable[T], timeout: float | None, what: str) -> T:
    """Await ``aw``; on timeout raise ``QuorumTimeoutError`` naming ``what``.

    ``asyncio.timeout`` rather than ``wait_for``: no extra task per call on
    the hot path of every broadcast.
    """
    if timeout is None:
        return await aw
    try:
        async with asyncio.timeout(timeout):
            return await aw
    except TimeoutError:
        raise QuorumTimeoutError(
            f"{what} did not complete within {timeout:.3g} s (is a quorum of members reachable?)"
        ) from None


class AsyncLifetime(abc.ABC):
    """``async with node:`` for classes with ``start()`` and ``close()``."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
