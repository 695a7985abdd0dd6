"""The asyncio driver that owns one sans-IO replica, and the per-transport mux.

Theory of operation: exactly one task (the driver) touches the replica, so the
core needs no locks. Envelopes from the transport and calls from the public
API land in one inbox; the driver loop wakes on the inbox or on the next tick
and runs: step every queued event -> ``ready()`` -> persist (if a storage is
attached) -> send -> deliver -> ``advance``. The order is DESIGN.md §3's and
is what makes a promise durable before any peer can rely on it.

Several protocol instances may share one transport (a ``Consensus`` per
instance name and a ``TotalOrderBroadcast``): the ``Mux`` reads the transport
once and routes each envelope by ``message.instance``. Messages for an
instance nobody attached are dropped and counted — Paxos tolerates loss, and
late learners ask their peers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..core.events import Event, Ready, Receive, Tick
from ..core.messages import Envelope
from ..errors import ConfigurationError, NotRunningError, TransportClosedError
from ..transport.base import Transport

__all__ = ["Driver", "Mux", "ReplicaLike"]

log = logging.getLogger("paxostob.node")


class ReplicaLike(Protocol):
    def step(self, event: Event) -> None: ...
    def has_ready(self) -> bool: ...
    def ready(self) -> Ready: ...
    def advance(self, ready: Ready) -> None: ...


class Mux:
    """One reader per transport; routes envelopes to the instance they name."""

    _muxes: dict[int, Mux] = {}  # noqa: RUF012 - a registry keyed by transport identity

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._handlers: dict[str, Callable[[Envelope], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.unrouted = 0

    @classmethod
    def attach(
        cls, transport: Transport, instance: str, handler: Callable[[Envelope], None]
    ) -> Mux:
        mux = cls._muxes.get(id(transport))
        if mux is None:
            mux = cls._muxes[id(transport)] = Mux(transport)
        if instance in mux._handlers:
            raise ConfigurationError(f"instance {instance!r} is already running on this transport")
        mux._handlers[instance] = handler
        if mux._task is None:
            mux._task = asyncio.get_running_loop().create_task(mux._read())
        return mux

    def detach(self, instance: str) -> None:
        self._handlers.pop(instance, None)
        if not self._handlers:
            if self._task is not None:
                self._task.cancel()
                self._task = None
            self._muxes.pop(id(self.transport), None)

    async def _read(self) -> None:
        receive = self.transport.receive
        handlers = self._handlers
        while True:
            try:
                envelope = await receive()
            except TransportClosedError:
                return  # the node crashed (or was closed): nothing more arrives
            handler = handlers.get(envelope.message.instance)
            if handler is None:
                self.unrouted += 1
            else:
                handler(envelope)


class Driver:
    """Runs ``replica`` on a transport: ticks, inbox, and the Ready pipeline."""

    def __init__(
        self,
        replica: ReplicaLike,
        transport: Transport,
        instance: str,
        *,
        tick_interval_s: float,
        on_ready: Callable[[Ready], None],
        persist: Callable[[Ready], None] | None = None,
        room: Callable[[], Awaitable[None]] | None = None,
        inbox_max: int = 100_000,
    ) -> None:
        if tick_interval_s <= 0:
            raise ValueError("tick_interval_s must be > 0")
        self.replica = replica
        self.transport = transport
        self.instance = instance
        self.tick_interval_s = tick_interval_s
        self._on_ready = on_ready
        self._persist = persist
        #: Awaited before each Ready: the application's back-pressure.
        self._room = room
        self._inbox: deque[Envelope | Callable[[], None]] = deque()
        #: Envelopes beyond this many unprocessed are dropped (and counted):
        #: a node that falls behind loses messages, as on a real network,
        #: instead of buffering without bound. API calls are never dropped.
        self.inbox_max = inbox_max
        self.inbox_dropped = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._mux: Mux | None = None
        self._closed = False
        self._persisting: asyncio.Future[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is not None:
            return
        if self._closed:
            raise NotRunningError("a closed node cannot be started again; make a new one")
        self._mux = Mux.attach(self.transport, self.instance, self._on_envelope)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.instance)

    async def close(self) -> None:
        self._closed = True
        if self._mux is not None:
            self._mux.detach(self.instance)
            self._mux = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # ``wait`` (not ``await task``) so that a cancellation of *our*
            # caller still propagates instead of being swallowed here.
            await asyncio.wait({task})
        if self._persisting is not None and not self._persisting.done():
            await asyncio.wait({self._persisting})

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` inside the driver task, between two steps (it owns the replica)."""
        if not self.running:
            raise NotRunningError("the node is not running: use 'async with' or start()")
        self._inbox.append(fn)
        self._wake.set()

    def _on_envelope(self, envelope: Envelope) -> None:
        if len(self._inbox) >= self.inbox_max:
            self.inbox_dropped += 1
            return
        self._inbox.append(envelope)
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        replica = self.replica
        inbox = self._inbox
        wake = self._wake
        next_tick = loop.time() + self.tick_interval_s
        try:
            while True:
                delay = next_tick - loop.time()
                if not inbox and delay > 0:
                    # A timer that sets the same event: no task per wait, and a
                    # cancellation reaches us directly (wait_for can lose it).
                    timer = loop.call_later(delay, wake.set)
                    try:
                        await wake.wait()
                    finally:
                        timer.cancel()
                wake.clear()
                while inbox:
                    item = inbox.popleft()
                    if isinstance(item, Envelope):
                        replica.step(Receive(item))
                    else:
                        item()
                now = loop.time()
                if now >= next_tick:
                    replica.step(Tick())
                    # After a long stall, do not replay every missed tick at once.
                    next_tick = max(next_tick + self.tick_interval_s, now)
                while replica.has_ready():
                    if self._room is not None:
                        await self._room()
                    ready = replica.ready()
                    if self._persist is not None and (
                        ready.promised is not None
                        or ready.accepted
                        or ready.decided
                        or ready.snapshot is not None
                    ):
                        # Shielded and remembered: a close() in the middle waits
                        # for the save to finish before the store is closed.
                        self._persisting = asyncio.ensure_future(
                            asyncio.to_thread(self._persist, ready)
                        )
                        await asyncio.shield(self._persisting)
                    send = self.transport.send
                    for envelope in ready.messages:
                        send(envelope)
                    self._on_ready(ready)
                    replica.advance(ready)
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - a bug in the core: crash loudly, not silently
            log.exception("driver of %s crashed", self.instance)
            raise
