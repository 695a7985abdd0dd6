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

from ..core.events import Propose, Ready
from ..core.synod import SynodConfig, SynodReplica
from ..errors import ConfigurationError, NotRunningError
from ..transport.base import Transport
from ._common import AsyncLifetime, check_membership, make_rng, within
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
        self._decision: bytes | None = None
        self._decided = asyncio.Event()
        self._driver = Driver(
            self._replica,
            transport,
            INSTANCE_PREFIX + instance,
            tick_interval_s=tick_interval_s,
            on_ready=self._on_ready,
        )

    async def start(self) -> None:
        self._driver.start()

    async def close(self) -> None:
        await self._driver.close()

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
            raise NotRunningError("the node is not running: use 'async with' or start()")
        await within(self._decided.wait(), timeout, f"consensus {self.instance!r}")
        assert self._decision is not None
        return self._decision

    def _on_ready(self, ready: Ready) -> None:
        for d in ready.deliveries:
            if self._decision is None:
                self._decision = d.delivery.payload
                self._decided.set()
