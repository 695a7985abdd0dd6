"""The asyncio driver that owns one sans-IO replica, and the per-transport endpoint.

Theory of operation: exactly one task (the driver) touches the replica, so the
core needs no locks. Envelopes from the transport and calls from the public
API land in one inbox; the driver loop wakes on the inbox, on the next tick
or on a finished save, and runs: step every queued event -> ``ready()`` ->
send its ``early`` messages -> deliver -> ``advance`` -> queue its durable
part (core/events.py has the contract).

The pipeline: the order of sends, saves and ``Persisted`` is
``core.pipeline.Pipeline``'s, the object the simulator and the scenario
tests drive too; the driver is its IO shell. Saves run in a worker thread,
one at a time and in order, while the driver keeps stepping events and
taking Readys, unless the hand-off would cost more than blocking the loop:
a save with no early message to overlap, one without a sync, or the
leader's Accepts of a small round while the disk is mostly idle (then the
Accepts are written first; ``_on_loop`` says when). A Ready's late ``messages``
leave, and ``Persisted`` is stepped, only once its save *and every earlier
one* returned; Readys that queue up behind a save in flight are saved
together in the next one (group commit); at most ``persist_queue_max``
Readys wait (back-pressure).

Several protocol instances may share one transport (a ``Consensus`` per
instance name and a ``TotalOrderBroadcast``): the transport's ``Endpoint``
reads it once and routes each envelope by ``message.instance``. The endpoint
lives on the transport it reads (``Endpoint.of``): it is found from the
transport itself, so there is no process-wide registry, and it goes away with
the transport. A transport with the optional ``set_receiver``
(transport/base.py) pushes envelopes straight to the endpoint's router,
saving a task switch per message; others are read by a task looping on
``receive()``. Messages for an instance nobody attached are dropped and
counted — Paxos tolerates loss, and late learners ask their peers.

Fail-stop: a save that raises (a full disk, a file limit: the store closed
itself) or any other error in the loop stops the node for good. The driver
stops routing, keeps nothing queued, logs one line saying what failed and
what to do, and keeps the error as ``failure``: a ``NodeFailedError`` that
every later call raises and ``wait_closed`` reports. Nothing waiting for that
save was released, so nothing unsaved was acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

from ..core.events import Ready, Receive, Tick
from ..core.messages import Envelope
from ..core.pipeline import Complete, Pipeline, ReplicaLike
from ..errors import (
    ConfigurationError,
    NodeFailedError,
    NotRunningError,
    ProposalIdsExhaustedError,
    StorageError,
    TransportClosedError,
)
from ..transport.base import Transport
from ._common import failure_message

__all__ = ["ENDPOINT_ATTRIBUTE", "Driver", "Endpoint", "ReplicaLike"]

log = logging.getLogger("paxostob.node")


#: The attribute of a transport that holds its ``Endpoint`` (in the
#: transport's own ``__dict__``: a wrapper that forwards attribute reads to
#: the transport it wraps still gets an endpoint of its own).
ENDPOINT_ATTRIBUTE = "_paxostob_endpoint"


class Endpoint:
    """The one reader of a transport; routes envelopes to the instance they name.

    One per transport, made on first use and kept on the transport
    (``Endpoint.of``). It reads while at least one instance is attached: the
    first ``attach`` starts the reading (``set_receiver``, or a task looping
    on ``receive()``), the last ``detach`` stops it and hands the transport
    back to ``receive()``; a later ``attach`` starts it again.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._handlers: dict[str, Callable[[Envelope], None]] = {}
        self._task: asyncio.Task[None] | None = None
        #: True while the transport pushes to ``_route`` (``set_receiver``).
        self._pushed = False
        self.unrouted = 0

    @staticmethod
    def of(transport: Transport) -> Endpoint:
        """``transport``'s endpoint: the one every instance on it shares."""
        attributes = getattr(transport, "__dict__", None)
        if attributes is None:
            raise ConfigurationError(
                f"{type(transport).__name__} keeps no attributes (__slots__ without "
                f"__dict__): paxostob keeps the transport's endpoint, the router that lets "
                f"several instances share it, in its {ENDPOINT_ATTRIBUTE!r} attribute"
            )
        endpoint = attributes.get(ENDPOINT_ATTRIBUTE)
        if endpoint is None:
            endpoint = attributes[ENDPOINT_ATTRIBUTE] = Endpoint(transport)
        assert isinstance(endpoint, Endpoint)
        return endpoint

    def attach(self, instance: str, handler: Callable[[Envelope], None]) -> None:
        """Route envelopes for ``instance`` to ``handler``; start reading if not yet."""
        if instance in self._handlers:
            raise ConfigurationError(f"instance {instance!r} is already running on this transport")
        self._handlers[instance] = handler
        if self._task is None and not self._pushed:
            set_receiver = getattr(self.transport, "set_receiver", None)
            if callable(set_receiver):
                set_receiver(self._route)
                self._pushed = True
            else:
                self._task = asyncio.get_running_loop().create_task(self._read())

    def detach(self, instance: str) -> None:
        """Stop routing to ``instance``; the last one out stops the reading."""
        self._handlers.pop(instance, None)
        if self._handlers:
            return
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._pushed:
            self._pushed = False
            self.transport.set_receiver(None)  # type: ignore[attr-defined]

    def _route(self, envelope: Envelope) -> None:
        handler = self._handlers.get(envelope.message.instance)
        if handler is None:
            self.unrouted += 1
        else:
            handler(envelope)

    async def _read(self) -> None:
        receive = self.transport.receive
        route = self._route
        while True:
            try:
                envelope = await receive()
            except TransportClosedError:
                return  # the node crashed (or was closed): nothing more arrives
            route(envelope)


#: A synced save with early messages runs on the loop only while syncs take
#: less than this (``Driver._on_loop``). ``fdatasync`` of an append takes
#: about 130 us on an idle SSD or virtio disk; at 1 ms the disk is busy with
#: other work, and blocking the loop that long would delay every client.
INLINE_SYNC_S_MAX = 0.001
#: ... and only while it carries at most this many bytes of proposals: one
#: client's round (a few commands). More means several clients share the
#: round, and the loop has their next commands to read while the disk syncs
#: (measured: always on the loop lost 45% of the writes/s at 50 clients on a
#: loaded machine). 1 KiB: about six 100-byte SETs.
INLINE_SAVE_BYTES_MAX = 1024

_SaveItem = tuple[Callable[[Ready], None], Ready, "asyncio.Future[None]"]


class _Saver:
    """One long-lived thread that runs the driver's saves, one at a time, in order.

    Cheaper than ``asyncio.to_thread`` per save (a pool submit, a concurrent
    future with its lock and condition, a context copy, a task and a chained
    asyncio future): here a save is one ``SimpleQueue.put`` and one
    ``call_soon_threadsafe`` back. The thread is a daemon: a save in flight
    when the process exits is cut off, as a crash would cut it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._items: queue.SimpleQueue[_SaveItem | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"save:{name}", daemon=True)
        self._thread.start()

    def submit(self, persist: Callable[[Ready], None], ready: Ready) -> asyncio.Future[None]:
        """Run ``persist(ready)`` after the saves submitted before; resolve on the loop."""
        fut = self._loop.create_future()
        self._items.put((persist, ready, fut))
        return fut

    def stop(self) -> None:
        """Let the thread end once the saves submitted before are done."""
        self._items.put(None)

    def _run(self) -> None:
        items = self._items
        while (item := items.get()) is not None:
            persist, ready, fut = item
            try:
                persist(ready)
            except BaseException as e:  # handed to the driver, which stops the node
                error: BaseException | None = e
            else:
                error = None
            try:
                self._loop.call_soon_threadsafe(_settle, fut, error)
            except RuntimeError:  # the loop is closed: nobody waits for this save
                return


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():  # cancelled by close()
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


#: The monotonic clock of a node with leader leases (``Driver(mono_ms=...)``):
#: CLOCK_BOOTTIME where there is one (Linux), which also counts time the
#: machine spent suspended; CLOCK_MONOTONIC (the loop's clock) does not, and a
#: leader suspended with a lease would resume believing no time passed and
#: serve reads while another node leads (its followers' guards ran out).
_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def monotonic_ms() -> int:
    """Whole ms of CLOCK_BOOTTIME (CLOCK_MONOTONIC where there is none): leases' clock."""
    if _BOOTTIME is not None:
        return time.clock_gettime_ns(_BOOTTIME) // 1_000_000
    return time.monotonic_ns() // 1_000_000


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
        persist_queue_max: int = 256,
        inline_saves: bool = True,
        inline_sync_s_max: float = INLINE_SYNC_S_MAX,
        inline_save_bytes_max: int = INLINE_SAVE_BYTES_MAX,
        clock: Callable[[], float] = time.monotonic,
        on_failure: Callable[[Exception], NodeFailedError] | None = None,
        wall_clock: Callable[[], float] | None = None,
        mono_ms: Callable[[], int] | None = None,
    ) -> None:
        if tick_interval_s <= 0:
            raise ValueError("tick_interval_s must be > 0")
        if persist_queue_max < 1:
            raise ValueError("persist_queue_max must be >= 1")
        self.replica = replica
        self.transport = transport
        self.instance = instance
        self.tick_interval_s = tick_interval_s
        #: Read (Unix seconds) for every tick, with the loop's monotonic
        #: clock, when the replica keeps the log's clock; None: plain ticks.
        self._wall_clock = wall_clock
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
        self._endpoint: Endpoint | None = None
        self._closed = False
        #: The order of saves and sends (core/pipeline.py); the save in
        #: flight in the saver thread, if any.
        self.pipeline = Pipeline(replica, durable=persist is not None, queue_max=persist_queue_max)
        self._saving: asyncio.Future[None] | None = None
        #: Save on the loop when no early message went out with the Readys
        #: (nothing to overlap the fsync with); else in a worker thread.
        self.inline_saves = inline_saves
        #: The thread of threaded saves, started by the first one.
        self._saver: _Saver | None = None
        #: The monotonic clock of ``Tick.elapsed_ms`` and of ``since_tick_ms``
        #: (whole ms; None: the loop's own clock, so a test on virtual time
        #: stays on it), and its reading at the last Tick (None: none yet).
        self._mono_ms = mono_ms
        self.tick_reading_ms: int | None = None
        #: A synced save with early messages runs on the loop only while syncs
        #: take less than this, the disk is mostly idle and the save is small
        #: (``_on_loop``); 0: always in the thread. ``clock`` times the saves.
        self.inline_sync_s_max = inline_sync_s_max
        self.inline_save_bytes_max = inline_save_bytes_max
        self._clock = clock
        #: When the last synced save returned and how long it took (``clock``):
        #: whether the next one may block the loop (``_on_loop``).
        self._synced_at = 0.0
        self._sync_s = 0.0
        #: Called once, in the driver task, when the node fails: makes the
        #: error every caller gets (and fails what waits on the node).
        self._on_failure = on_failure
        #: Why the node stopped on its own, once it did.
        self.failure: NodeFailedError | None = None
        self._ended = asyncio.Event()

    @property
    def saves(self) -> int:
        """Saves made (group commit: at most ``saved_readies``)."""
        return self.pipeline.saves

    @property
    def saved_readies(self) -> int:
        """Readys the saves covered."""
        return self.pipeline.saved_readies

    @property
    def persist_queue_max(self) -> int:
        """At most this many Readys wait for the disk (back-pressure)."""
        return self.pipeline.queue_max

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is not None:
            return
        if self._closed:
            raise NotRunningError("a closed node cannot be started again; make a new one")
        endpoint = Endpoint.of(self.transport)
        endpoint.attach(self.instance, self._on_envelope)
        self._endpoint = endpoint
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.instance)

    async def close(self) -> None:
        """Stop; wait for a save in flight, then save what is still queued.

        Nothing more is sent and nothing is stepped: the late messages of the
        Readys saved here are dropped, as if the node stopped right after the
        saves (the core relies on none of them being sent).
        """
        self._closed = True
        self._ended.set()
        if self._endpoint is not None:
            self._endpoint.detach(self.instance)
            self._endpoint = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # ``wait`` (not ``await task``) so that a cancellation of *our*
            # caller still propagates instead of being swallowed here.
            await asyncio.wait({task})
        saving, self._saving = self._saving, None
        saver, self._saver = self._saver, None
        if saver is not None:
            saver.stop()  # after the save in flight, if any
        if saving is not None:
            await asyncio.wait({saving})
            if saving.cancelled() or saving.exception() is not None or self.failure is not None:
                # The store is closed after a failed save (storage/base.py):
                # what is queued behind it cannot be saved either.
                self.pipeline.clear()
                return
        persist = self._persist
        if persist is not None:
            for group in self.pipeline.unsaved():
                await asyncio.to_thread(persist, group)
        self.pipeline.clear()

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` inside the driver task, between two steps (it owns the replica)."""
        if not self.running:
            raise self.not_running()
        self._inbox.append(fn)
        self._wake.set()

    def not_running(self) -> NotRunningError:
        """The error for a call on a node that is not running: its failure, if it failed."""
        if self.failure is not None:
            return self.failure
        return NotRunningError("the node is not running: use 'async with' or start()")

    async def wait_closed(self) -> None:
        """Return once ``close()`` was called; raise ``failure`` if the node failed first."""
        await self._ended.wait()
        if self.failure is not None:
            raise self.failure

    def _fail(self, error: Exception) -> None:
        """Stop for good after ``error``: route nothing more, keep nothing queued, say why."""
        failure = (
            self._on_failure(error)
            if self._on_failure is not None
            else NodeFailedError(failure_message(self.instance, error))
        )
        failure.__cause__ = error
        self.failure = failure
        # After a failed save the store closed itself (storage/base.py): what
        # is queued cannot be saved, and close() must not try.
        self.pipeline.clear()
        if self._endpoint is not None:
            self._endpoint.detach(self.instance)
            self._endpoint = None
        if isinstance(error, OSError | StorageError | ProposalIdsExhaustedError):
            log.error("%s", failure)  # one line: the message says it all
        else:  # a bug: the traceback is what its report needs
            log.error("%s", failure, exc_info=error)
        self._ended.set()

    def _on_envelope(self, envelope: Envelope) -> None:
        if len(self._inbox) >= self.inbox_max:
            self.inbox_dropped += 1
            return
        self._inbox.append(envelope)
        self._wake.set()

    # ------------------------------------------------------------ the pipeline

    def _pump(self) -> None:
        """Send what completed and start the next save, until a save is in flight (or none)."""
        pipeline = self.pipeline
        persist = self._persist
        send = self.transport.send
        while self._saving is None:
            action = pipeline.poll()
            if action is None:
                return
            if isinstance(action, Complete):
                for ready in action.readies:
                    for envelope in ready.messages:
                        send(envelope)
                continue
            assert persist is not None
            ready = action.ready
            if self.inline_saves and (
                not action.early
                or (ready.snapshot is None and (not ready.must_sync or self._on_loop(ready)))
            ):
                # On the loop: a save with nothing early to overlap it with (a
                # follower's votes wait for it anyway), one without a sync (the
                # leader's decided entries: a write to the page cache), or the
                # leader's Accepts' save while the disk is mostly idle (one
                # client: nothing else to do meanwhile). The thread hand-off
                # (wake-ups, GIL passes) costs more CPU than the fsync blocks
                # the loop: measured -25% CPU per write on followers, +10%
                # writes/s at 50 clients and -15% one-client latency on the
                # 3-node cluster; -20% of the leader's CPU per write at one
                # client for the last two cases (docs/benchmarks.md).
                if ready.must_sync:
                    if action.early:
                        flush = getattr(self.transport, "flush", None)
                        if flush is not None:
                            flush()  # the Accepts leave before the fsync blocks the loop
                    started = self._clock()
                    persist(ready)
                    self._synced(started)
                else:
                    persist(ready)
                pipeline.saved()
                continue
            saver = self._saver
            if saver is None:
                saver = self._saver = _Saver(asyncio.get_running_loop(), self.instance)
            self._saving = saving = saver.submit(
                self._timed_persist if ready.must_sync else persist, ready
            )
            saving.add_done_callback(self._saved)

    def _on_loop(self, ready: Ready) -> bool:
        """Whether a synced save with early messages (the leader's Accepts) may block the loop.

        Yes when the loop has nothing to do meanwhile but wait for the votes:
        a round of one client's few commands (``inline_save_bytes_max``), the
        disk idle at least as long as the last sync took (saves not back to
        back), and syncs quick (``inline_sync_s_max``). The thread's hand-off
        (two wake-ups, GIL passes) then costs more than the fsync blocks.
        """
        if self._sync_s >= self.inline_sync_s_max:
            return False
        if self._clock() - self._synced_at < self._sync_s:
            return False
        size = 0
        for entry in ready.accepted:
            for proposal in entry.value:
                size += len(proposal.payload)
        return size <= self.inline_save_bytes_max

    def _timed_persist(self, ready: Ready) -> None:
        """``persist`` in the saver thread, timed there (not counting the hand-offs)."""
        assert self._persist is not None
        started = self._clock()
        self._persist(ready)
        self._synced(started)

    def _synced(self, started: float) -> None:
        """A synced save that began at ``started`` returned now (on the loop or in the thread)."""
        self._synced_at = now = self._clock()
        self._sync_s = now - started

    def _saved(self, _: asyncio.Future[None]) -> None:
        self._wake.set()

    def _collect(self) -> None:
        """If the save in flight returned: complete its Readys, start the next save."""
        saving = self._saving
        if saving is None or not saving.done():
            return
        self._saving = None
        if saving.exception() is not None:
            # A StorageError stops the node: the store closed itself, so
            # nothing queued can be saved (close() must not try).
            self.pipeline.clear()
            saving.result()
        self.pipeline.saved()
        self._pump()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        replica = self.replica
        inbox = self._inbox
        wake = self._wake
        next_tick = loop.time() + self.tick_interval_s
        # The loop's timers fire up to a millisecond early (uvloop rounds to ms):
        # a tick that is due within the slack is taken now instead of waking
        # again for the remainder (that made an idle node wake ~8 times a tick).
        slack = min(0.001, self.tick_interval_s / 10)
        wall_clock = self._wall_clock
        try:
            while True:
                delay = next_tick - loop.time()
                if not inbox and delay > slack:
                    # A timer that sets the same event: no task per wait, and a
                    # cancellation reaches us directly (wait_for can lose it).
                    # A save returning sets it too (``_saved``).
                    timer = loop.call_later(delay, wake.set)
                    try:
                        await wake.wait()
                    finally:
                        timer.cancel()
                wake.clear()
                self._collect()
                # With leases: one reading, taken after everything in the
                # inbox arrived (a lease may grant a follower's read ask).
                fresh = None if self._mono_ms is None or not inbox else self.since_tick_ms()
                while inbox:
                    item = inbox.popleft()
                    if isinstance(item, Envelope):
                        replica.step(Receive(item) if fresh is None else Receive(item, fresh))
                    else:
                        item()
                now = loop.time()
                if now >= next_tick - slack:
                    if wall_clock is None:
                        replica.step(Tick())
                    else:
                        # Whole milliseconds of the monotonic clock, differenced:
                        # rounding each interval instead would drift.
                        read = self._mono_ms
                        mono_ms = int(now * 1000) if read is None else read()
                        last_ms = self.tick_reading_ms
                        elapsed = 0 if last_ms is None else mono_ms - last_ms
                        self.tick_reading_ms = mono_ms
                        replica.step(Tick(int(wall_clock() * 1000), elapsed))
                    # After a long stall, do not replay every missed tick at once.
                    next_tick = max(next_tick + self.tick_interval_s, now)
                await self._drain()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a failed save, or a bug: stop, never limp on
            self._fail(e)

    def since_tick_ms(self) -> int:
        """Monotonic ms since the last Tick's reading, read now (0 before the first tick).

        A read's fresh reading (``ReadIndex.elapsed_ms``): on the base of the
        ticks' clock, and taken after the read was asked, however long ago
        the loop last ticked.
        """
        last = self.tick_reading_ms
        return 0 if last is None else self._read_ms() - last

    def _read_ms(self) -> int:
        read = self._mono_ms
        if read is not None:
            return read()
        return int(asyncio.get_running_loop().time() * 1000)

    async def _drain(self) -> None:
        pipeline = self.pipeline
        send = self.transport.send
        while pipeline.can_take():
            # (When the disk is behind, can_take is False: events are still
            # stepped as they come, and their effects gather in the core, one
            # batch and one Ready, until a save returns and wakes us.)
            if self._room is not None:
                await self._room()
            ready = pipeline.take()
            for envelope in ready.early:
                send(envelope)
            if pipeline.completes_at_once(ready):
                # Nothing to wait for: durable as soon as handled.
                for envelope in ready.messages:
                    send(envelope)
            self._on_ready(ready)
            pipeline.handled(ready)
            self._pump()
