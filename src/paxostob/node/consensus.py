"""``Consensus``: uniform consensus (propose/decide) on one named instance.

Built on the single-decree Synod core. Properties (for crash-stop nodes and a
network that may lose, duplicate, delay and reorder messages):

- Validity: the decided value was proposed by some node.
- Integrity: a node decides at most once; its decision never changes.
- Uniform agreement: no two nodes decide differently.
- Termination: once a majority of members is up and can talk, every running
  node decides.
"""

from __future__ import annotations

import asyncio
import os

from ..core.events import Propose, Ready
from ..core.synod import SynodConfig, SynodReplica
from ..errors import ConfigurationError, NodeFailedError
from ..storage.base import Storage
from ..transport.base import Transport
from ._common import (
    AsyncLifetime,
    check_membership,
    choose_storage,
    failure_message,
    make_rng,
    open_store,
    store_directory,
    within,
)
from .driver import Driver

__all__ = ["Consensus"]

#: Consensus instances live in their own namespace on a shared transport.
INSTANCE_PREFIX = "consensus:"


class Consensus(AsyncLifetime):
    """One node's view of one single-decree consensus instance.

    ``members`` is the whole membership, this node included. Several
    instances (different ``instance`` names) and a ``TotalOrderBroadcast``
    may share one transport. The transport stays the caller's: closing a
    ``Consensus`` stops this instance only; closing the transport crashes the
    node.

    Durability, as for ``TotalOrderBroadcast``: with ``data_dir`` (one
    directory per node *and* instance) or ``storage``, the node's promise and
    accepted value are on disk before any message that depends on them
    leaves, so a restarted node keeps its word and knows its decision. The
    first start of each member passes ``bootstrap=True`` to make the store;
    a later start that finds no store refuses (``StoreMissingError``).
    Without either, the state is in memory: a node that restarts under the
    same id has forgotten its promises, which is safe only if no member
    counts on them (tests in one process, or instances whose every member
    restarts together).

    Failure: if a save fails (a full disk, a file limit, an I/O error) or the
    node's driver fails, the instance stops on its own (fail-stop) and logs
    one line: what failed, the OS error's name and what to do. ``failure`` is
    then a ``NodeFailedError`` naming the cause, which ``propose`` and
    ``decided`` raise, waiting ones included, and ``await wait_closed()``
    raises (it returns normally once ``close()`` is called).

    Membership is fixed: ``members`` is every acceptor of the instance for
    its whole life (``TotalOrderBroadcast`` is the one that changes its
    membership: docs/design.md, 'Membership change').
    """

    def __init__(
        self,
        transport: Transport,
        members: list[str] | tuple[str, ...],
        *,
        instance: str = "default",
        tick_interval_s: float = 0.01,
        seed: int | None = None,
        config: SynodConfig | None = None,
        storage: Storage | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        cluster_id: str = "default",
        bootstrap: bool = False,
        in_memory: bool = False,
    ) -> None:
        if not instance:
            raise ConfigurationError("instance must be a non-empty name")
        self.address = transport.address
        self.members = check_membership(self.address, members)
        self.instance = instance
        self._replica = SynodReplica(
            self.address,
            self.members,
            INSTANCE_PREFIX + instance,
            make_rng(seed, f"{instance}:{self.address}"),
            config,
        )
        storage = choose_storage(transport, storage, data_dir, in_memory=in_memory)
        self._storage = storage
        self._opened = False
        self.cluster_id = cluster_id
        self._bootstrap = bootstrap
        self._decision: bytes | None = None
        self._decided = asyncio.Event()
        self._driver = Driver(
            self._replica,
            transport,
            INSTANCE_PREFIX + instance,
            tick_interval_s=tick_interval_s,
            on_ready=self._on_ready,
            persist=None if storage is None else storage.save,
            on_failure=self._on_failure,
        )

    async def start(self) -> None:
        storage = self._storage
        if storage is not None and not self._opened and not self._driver.running:
            state = await open_store(
                storage,
                f"{self.cluster_id}/{self.instance}",
                self.address,
                self.members,
                bootstrap=self._bootstrap,
            )
            self._opened = True
            self._replica.restore(state.promised, state.accepted, state.decided)
        self._driver.start()

    async def close(self) -> None:
        await self._driver.close()
        if self._storage is not None and self._opened:
            self._opened = False
            await asyncio.to_thread(self._storage.close)

    @property
    def failure(self) -> NodeFailedError | None:
        """Why the instance stopped on its own, or None."""
        return self._driver.failure

    async def wait_closed(self) -> None:
        """Return once ``close()`` was called; raise ``failure`` if the instance failed first."""
        await self._driver.wait_closed()

    def _on_failure(self, error: Exception) -> NodeFailedError:
        self._decided.set()  # wake ``decided()``: it raises the failure
        where = store_directory(self._storage)
        return NodeFailedError(failure_message(self.address, error, where))

    @property
    def decision(self) -> bytes | None:
        """The decided value, or ``None`` while undecided."""
        return self._decision

    async def propose(self, value: bytes, *, timeout: float | None = None) -> bytes:
        """Propose ``value``; return the *decided* value (possibly another node's).

        After a decision this returns the decision at once. A node proposes
        at most once per instance: later proposals only wait for the decision.
        Raises ``QuorumTimeoutError`` after ``timeout`` seconds without a
        decision (the proposal may still win later).
        """
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError("propose() takes bytes")
        if self._decision is not None:
            return self._decision
        payload = bytes(value)
        self._driver.call(lambda: self._replica.step(Propose(payload)))
        return await self.decided(timeout=timeout)

    async def decided(self, *, timeout: float | None = None) -> bytes:
        """Wait for the decision without proposing."""
        if self._decision is not None:
            return self._decision
        if not self._driver.running:
            raise self._driver.not_running()
        await within(self._decided.wait(), timeout, f"consensus {self.instance!r}")
        if self._decision is None:
            raise self._driver.not_running()
        return self._decision

    def _on_ready(self, ready: Ready) -> None:
        for d in ready.deliveries:
            if self._decision is None:
                self._decision = d.delivery.payload
                self._decided.set()
