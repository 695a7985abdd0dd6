"""Small helpers shared by the public runtime classes."""

from __future__ import annotations

import abc
import asyncio
import errno
import functools
import logging
import os
import random
from collections.abc import Awaitable
from types import TracebackType
from typing import Self, TypeVar

from ..errors import (
    ConfigurationError,
    ProposalIdsExhaustedError,
    QuorumTimeoutError,
    StorageError,
)
from ..storage.base import DurableState, Storage
from ..storage.default import default_storage
from ..transport.base import reaches_other_processes

T = TypeVar("T")

log = logging.getLogger("paxostob.node")


def check_membership(
    address: str, members: list[str] | tuple[str, ...], *, join: bool = False
) -> tuple[str, ...]:
    """The sorted membership; refuses duplicates, empties and a node outside it.

    With ``join`` (a node added later, TotalOrderBroadcast only), ``members``
    are the founding members and this node must not be one of them.
    """
    names = [str(m) for m in members]
    if not names or any(not m for m in names):
        raise ConfigurationError("members must be a non-empty list of non-empty node ids")
    if len(set(names)) != len(names):
        raise ConfigurationError(f"members has duplicates: {names}")
    if join:
        if address in names:
            raise ConfigurationError(
                f"this node ({address!r}) joins, but it is a founding member {names}: "
                "a founding member starts without join"
            )
    elif address not in names:
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


#: What the operator does, by the name of the OS error under a storage failure.
_ADVICE = {
    "ENOSPC": "free space on {where} and restart the node",
    "EDQUOT": "raise the disk quota of {where} (or free space) and restart the node",
    "EFBIG": "raise the file size limit (ulimit -f) of the node and restart it",
    "EMFILE": "raise the open-file limit (ulimit -n, systemd LimitNOFILE=) and restart the node",
    "ENFILE": "the system is out of open files: raise fs.file-max or stop what holds them, "
    "and restart the node",
    "EROFS": "make {where} writable again and restart the node",
}
_ADVICE_OTHER = "check the disk of {where} (the kernel log shows I/O errors) and restart the node"


def choose_storage(
    transport: object,
    storage: Storage | None,
    data_dir: str | os.PathLike[str] | None,
    *,
    in_memory: bool,
) -> Storage | None:
    """The node's store: ``storage``, the default one in ``data_dir``, or none.

    None only when asked for: over a network transport a restart is real,
    and a node that restarts without its promises can lose acknowledged
    writes.
    """
    if data_dir is not None:
        if storage is not None:
            raise ConfigurationError("give data_dir or storage, not both")
        storage = default_storage(data_dir)
    if storage is None and not in_memory and reaches_other_processes(transport):
        raise ConfigurationError(
            "a node on a network transport needs durable storage (data_dir= or "
            "storage=): one that restarts without its promises can lose acknowledged "
            "writes; pass in_memory=True to run without it knowingly"
        )
    return storage


async def open_store(
    storage: Storage,
    cluster_id: str,
    address: str,
    members: tuple[str, ...],
    *,
    bootstrap: bool,
) -> DurableState:
    """Open ``storage`` for this node (making it only with ``bootstrap``), checked and logged.

    A store made for other members is closed and refused: restarting with
    another membership does not change it safely (quorums of the two need
    not overlap).
    """
    founding = members if bootstrap else None
    state = await asyncio.to_thread(
        functools.partial(storage.open, cluster_id, address, bootstrap=founding)
    )
    if state.members and state.members != members:
        await asyncio.to_thread(storage.close)
        raise ConfigurationError(
            f"node {address!r}: its store ({cluster_id}) was made for the members "
            f"{list(state.members)}, but it was started with {list(members)}; "
            "restarting with other members does not change a membership safely "
            "(quorums of the two need not overlap)"
        )
    if state.created:
        log.info(
            "%s: made a new store for cluster %r, members %s (first incarnation %d)",
            address,
            cluster_id,
            ",".join(members),
            state.incarnation,
        )
    elif bootstrap:
        log.warning(
            "%s: bootstrap was asked for but the store exists (it was left alone): "
            "bootstrap only a founding member's first start; if this node's data "
            "directory were lost, bootstrap would bring it back with its votes forgotten",
            address,
        )
    return state


def store_directory(store: object) -> str | None:
    """The directory of a store with a ``path`` (the file, as in ``LogStorage``), if it has one."""
    path = getattr(store, "path", None)
    return None if path is None else os.path.dirname(os.fspath(path))


def _os_error_of(error: BaseException) -> OSError | None:
    """The OS error under ``error`` (itself, or its cause), if any."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno is not None:
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def failure_message(node: str, error: BaseException, where: str | None = None) -> str:
    """One line for the log and the ``NodeFailedError``: what failed, its errno, what to do.

    ``where`` is the node's data directory: the place to fix.
    """
    if isinstance(error, ProposalIdsExhaustedError):
        return f"{node}: the node stopped: {error}"
    if not isinstance(error, StorageError | OSError):
        return (
            f"{node}: the node stopped: its driver failed: {type(error).__name__}: {error}; "
            "this is a bug (report it with this log); restart the node: it recovers its "
            "state from its data"
        )
    os_error = _os_error_of(error)
    name = None
    if os_error is not None and os_error.errno is not None:
        name = errno.errorcode.get(os_error.errno, f"errno {os_error.errno}")
    place = where or "its data directory"
    advice = _ADVICE.get(name or "", _ADVICE_OTHER).format(where=place)
    cause = f"{error} ({name})" if name else str(error)
    # Safe: a broadcast resolves (a client gets its reply) only once a quorum
    # saved it, and a failed save closes the store, which open() recovers.
    return (
        f"{node}: the node stopped: storage failed: {cause}. To do: {advice}; "
        "the writes it acknowledged are safe"
    )


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
