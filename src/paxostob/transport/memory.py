"""An in-memory network of transports with seeded faults, for tests and examples.

Theory of operation: a ``MemoryNetwork`` owns one ``MemoryTransport`` per open
address. ``send`` asks the network's ``FaultModel`` (shared with the
simulator) for the delays of the message's copies and schedules each arrival
on the running asyncio loop: ``call_later`` for a delay, and for no delay one
``call_soon`` per loop iteration that delivers every such copy in send order.
Nothing is ever delivered synchronously inside ``send``, so a node
that sends to itself does not re-enter its own driver.

Rules:

- All randomness comes from one ``random.Random(seed)``: the same seed and the
  same sequence of sends give the same loss and duplication decisions (the
  arrival order of delayed messages also depends on the loop's clock). While
  the network is fault-free, sends draw nothing.
- A closed transport is a crashed node: it sends nothing more, its inbox is
  discarded, a pending ``receive`` is woken with ``TransportClosedError``.
  Messages already in flight when their sender crashed still arrive, as they
  would on a real wire.
- The destination is looked up when a copy arrives: if the address is closed
  at that time the copy is dropped; if the node was restarted (``transport``
  asked again for a closed address) the new incarnation receives it.
- Partitions are decided at send time.
- Unknown destinations and full inboxes drop the message; every drop is
  counted in ``stats``.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ..core.messages import Envelope
from ..errors import ConfigurationError, TransportClosedError
from .faults import FaultModel

__all__ = ["INBOX_MAX_DEFAULT", "MemoryNetwork", "MemoryTransport", "NetworkStats"]

#: Far above what a healthy test keeps queued (a node drains its inbox
#: continuously), yet small enough that a runaway sender fails loudly in the
#: stats instead of exhausting memory.
INBOX_MAX_DEFAULT = 100_000
#: The arrival delays of a message on a fault-free network: one copy, now.
_AT_ONCE = (0.0,)


@dataclass(slots=True)
class NetworkStats:
    """Counters for a whole ``MemoryNetwork``.

    ``sent``: messages handed to ``send`` by open transports. ``duplicated``:
    extra copies created. ``delivered``: copies put in an open inbox.
    ``dropped``: messages or copies that never reached an inbox, for any
    reason; ``unknown_dst`` and ``inbox_full`` count two of those reasons
    (the others are chance loss, partitions and closed destinations).
    Invariant once nothing is in flight:
    ``sent + duplicated == delivered + dropped``.
    """

    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    delivered: int = 0
    unknown_dst: int = 0
    inbox_full: int = 0


class MemoryTransport:
    """One node's endpoint on a ``MemoryNetwork``; implements ``Transport``.

    Create it with ``MemoryNetwork.transport(address)``.
    """

    def __init__(self, network: MemoryNetwork, address: str, inbox_max: int) -> None:
        self._network = network
        self._address = address
        self._inbox_max = inbox_max
        self._inbox: deque[Envelope] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def address(self) -> str:
        return self._address

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, envelope: Envelope) -> None:
        """Hand ``envelope`` to the network; a no-op once this transport is closed.

        Must be called with an asyncio loop running (deliveries are scheduled
        on it); otherwise raises ``ConfigurationError``.
        """
        if self._closed:
            return
        self._network._send(self._address, envelope)

    async def receive(self) -> Envelope:
        """The next envelope in the inbox, waiting if it is empty.

        Raises ``TransportClosedError`` once the transport is closed, also in
        a ``receive`` that was waiting when ``close`` was called.
        """
        while True:
            if self._closed:
                raise TransportClosedError(f"transport {self._address!r} is closed")
            if self._inbox:
                return self._inbox.popleft()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Woken and cancelled at once: pass the wake-up on, or the
                # message would sit in the inbox while another receive sleeps.
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()
                raise
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def close(self) -> None:
        """Crash this node: drop its inbox, wake pending receives; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._inbox.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _arrive(self, envelope: Envelope) -> bool:
        """Put ``envelope`` in the inbox; False when the inbox is full."""
        assert not self._closed, "the network routes arrivals to open transports only"
        if len(self._inbox) >= self._inbox_max:
            return False
        self._inbox.append(envelope)
        self._wake_one()
        return True

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"MemoryTransport({self._address!r}, {state}, inbox={len(self._inbox)})"


class MemoryNetwork:
    """A seeded, fault-injecting network of in-memory transports.

    ``loss``, ``duplicate`` and ``delay_s`` (seconds) are the initial
    ``FaultModel``; change them while running with ``set_faults``, split the
    network with ``partition`` and rejoin it with ``heal``. ``inbox_max``
    bounds each transport's inbox; arrivals beyond it are dropped and counted
    in ``stats.inbox_full``.
    """

    def __init__(
        self,
        seed: int = 0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        delay_s: tuple[float, float] = (0.0, 0.0),
        *,
        inbox_max: int = INBOX_MAX_DEFAULT,
    ) -> None:
        if not (isinstance(inbox_max, int) and inbox_max >= 1):
            raise ConfigurationError(f"inbox_max must be a positive int, got {inbox_max!r}")
        self._set_faults(FaultModel(loss=loss, duplicate=duplicate, delay_s=delay_s))
        self._rng = random.Random(seed)
        self._inbox_max = inbox_max
        self._transports: dict[str, MemoryTransport] = {}
        self._stats = NetworkStats()
        #: Envelopes sent with no delay, arriving at the next loop iteration.
        self._due: list[Envelope] = []
        self._due_loop: asyncio.AbstractEventLoop | None = None

    @property
    def faults(self) -> FaultModel:
        """The fault model in force (immutable; change it with the methods below)."""
        return self._faults

    @property
    def stats(self) -> NetworkStats:
        """Live counters (read them; do not modify them)."""
        return self._stats

    def transport(self, address: str) -> MemoryTransport:
        """The transport of ``address``: a new node, or a restarted one if it was closed.

        Raises ``ConfigurationError`` if ``address`` already has an open transport.
        """
        if not (isinstance(address, str) and address):
            raise ConfigurationError(f"an address is a non-empty str, got {address!r}")
        current = self._transports.get(address)
        if current is not None and not current.closed:
            raise ConfigurationError(f"address {address!r} already has an open transport")
        fresh = MemoryTransport(self, address, self._inbox_max)
        self._transports[address] = fresh
        return fresh

    def set_faults(
        self,
        *,
        loss: float | None = None,
        duplicate: float | None = None,
        delay_s: tuple[float, float] | None = None,
    ) -> None:
        """Change the given fault parameters for messages sent from now on.

        Invalid values raise ``ConfigurationError`` and change nothing.
        """
        faults = self._faults
        if loss is not None:
            faults = replace(faults, loss=loss)
        if duplicate is not None:
            faults = replace(faults, duplicate=duplicate)
        if delay_s is not None:
            faults = replace(faults, delay_s=delay_s)
        self._set_faults(faults)

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network: nodes in different groups cannot talk.

        Replaces any earlier partition. A node named in no group still talks
        to everyone (see ``transport.faults``).
        """
        self._set_faults(self._faults.partitioned(*groups))

    def heal(self) -> None:
        """Remove every partition."""
        self._set_faults(self._faults.healed())

    def _set_faults(self, faults: FaultModel) -> None:
        self._faults = faults
        #: No fault at all: every message arrives once, at once, so asking
        #: the model (several draws per message) is skipped; with these
        #: parameters its draws decided nothing.
        self._fault_free = (
            faults.loss == 0
            and faults.duplicate == 0
            and faults.delay_s == (0.0, 0.0)
            and not faults.partitions
        )

    def _send(self, src: str, envelope: Envelope) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError("MemoryTransport.send needs a running asyncio loop") from None
        stats = self._stats
        stats.sent += 1
        if envelope.dst not in self._transports:
            stats.unknown_dst += 1
            stats.dropped += 1
            return
        delays = (
            _AT_ONCE
            if self._fault_free
            else self._faults.arrival_delays(self._rng, src, envelope.dst)
        )
        if not delays:
            stats.dropped += 1
            return
        stats.duplicated += len(delays) - 1
        for delay in delays:
            if delay > 0:
                loop.call_later(delay, self._arrive, envelope)
            else:
                # Immediate arrivals share one scheduled callback (in send
                # order), not one loop handle per message.
                due = self._due
                due.append(envelope)
                if len(due) == 1 or self._due_loop is not loop:
                    # (A network reused on a new loop must not wait for a
                    # flush scheduled on a loop that has stopped.)
                    self._due_loop = loop
                    loop.call_soon(self._arrive_due)

    def _arrive_due(self) -> None:
        due, self._due = self._due, []
        arrive = self._arrive
        for envelope in due:
            arrive(envelope)

    def _arrive(self, envelope: Envelope) -> None:
        stats = self._stats
        target = self._transports.get(envelope.dst)
        if target is None or target.closed:
            stats.dropped += 1
        elif target._arrive(envelope):
            stats.delivered += 1
        else:
            stats.inbox_full += 1
            stats.dropped += 1

    def __repr__(self) -> str:
        return f"MemoryNetwork(faults={self._faults!r}, stats={self._stats!r})"
