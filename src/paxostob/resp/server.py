"""An asyncio server speaking RESP to Redis clients (redis-cli, redis-py, ...).

Theory of operation: each connection is an ``asyncio.Protocol`` (no task and
no stream objects per connection: they cost more CPU per command than the
command itself when a client sends one command per round trip). Bytes that
arrive are fed to the sans-IO ``RequestParser``; every complete command is
handed to the ``Dispatcher`` in one ``dispatch_many`` call, so the dispatcher
can put a pipeline's consecutive writes into one log entry. It answers each
command at once or with an awaitable (a command that goes through consensus).

Replies are written in request order. Ready replies are encoded at once and
consecutive ones are written together (one ``transport.write`` per read in
the common case). An awaitable reply holds back everything after it in a
per-connection queue: a ``Future`` is waited for with a done callback; a
coroutine needs a task, and gets the connection's *driver*: one task, created
at the connection's first coroutine reply, that awaits the queue's replies in
order and parks on a future while the queue is empty. So no command costs a
task of its own (a task costs more than a parked task's wake-up), and the
replies of a pipeline that await one another are written together when the
last one completes, as the stream server wrote a read's replies.

While an awaitable reply is outstanding, newly arrived commands are parsed
and dispatched only once it completes, as one batch. That keeps the order the
stream-based server had (it read again only after a read's replies were
written): a command never takes effect, or reads state, before an earlier
command of its connection completed; the dispatcher's coroutines start only
when awaited, so one group's log entry is proposed after the previous one's.

Back-pressure: reading pauses while the transport's write buffer is above its
high-water mark (``pause_writing``) and while more than ``READ_BYTES`` wait
unparsed behind an outstanding reply; it resumes when both are over.

Limits (``RespLimits``, Redis's names where Redis has one): beyond
``maxclients`` connections a new one gets ``-ERR max number of clients
reached`` and is closed; a connection idle for ``timeout_s`` is closed (see
``RespLimits.timeout_s`` for what counts as idle); every length a client
sends is checked against the parser's bounds from its header, before the
bytes it announces are read. While a password is required and the client has
not authenticated (``auth_required``), the parser has Redis 7's small
unauthenticated bounds, and commands are parsed and dispatched one at a time
so that the commands after a successful ``AUTH`` in the same read are parsed
with the general bounds, as Redis does.

A protocol error is answered with its Redis error text and closes that
connection only; a command that sets ``Connection.closing`` (QUIT) closes the
connection after its reply; a bug of ours while serving one client (an
exception from the dispatcher, an awaitable or the encoder) is logged and
drops that client only. Nothing a client sends can stop the server or reach
another client.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, cast

from ..errors import ConfigurationError
from ..node.repeats import RepeatLimiter
from .protocol import (
    UNAUTHENTICATED_ARGS_MAX,
    UNAUTHENTICATED_BULK_BYTES_MAX,
    Error,
    ProtocolError,
    Reply,
    RequestParser,
    SimpleString,
    encode,
)

__all__ = [
    "MAXCLIENTS_DEFAULT",
    "TIMEOUT_S_DEFAULT",
    "Connection",
    "Dispatcher",
    "RespLimits",
    "RespServer",
]

log = logging.getLogger("paxostob.resp")

#: Unparsed bytes a connection may hold behind an outstanding reply before
#: reading pauses (the stream server read this much at a time).
READ_BYTES = 64 * 1024

#: Redis's ``maxclients`` default. A node lowers it to what its open-files
#: limit allows after keeping descriptors for peers and storage
#: (``paxostob serve`` does that at start and logs the outcome).
MAXCLIENTS_DEFAULT: Final = 10_000
#: Idle clients are closed after this many seconds. Redis's default is 0
#: (never), which lets abandoned and half-open connections (a client that
#: crashed behind a NAT, a half-sent command) hold a ``maxclients`` slot and a
#: descriptor for ever, until new clients are refused. Five minutes frees
#: such a slot soon enough to matter, while a pooled client that is merely
#: quiet between bursts rarely loses its connection (and redis-py reconnects
#: a pooled connection the server closed, without an error).
TIMEOUT_S_DEFAULT: Final = 300.0
#: The idle sweep runs this often at most, and four times per ``timeout_s``
#: when that is shorter: a client is closed between ``timeout_s`` and
#: ``timeout_s`` plus one sweep interval after it went idle.
IDLE_SWEEP_INTERVAL_S_MAX: Final = 1.0
IDLE_SWEEPS_PER_TIMEOUT: Final = 4

_MAXCLIENTS_REPLY: Final = b"-ERR max number of clients reached\r\n"

# Reply types that are never awaitable: checked by type first, because
# inspect.isawaitable costs more than encoding a small reply.
_PLAIN_TYPES: Final = frozenset(
    {bytes, SimpleString, Error, int, type(None), list, dict, tuple, bool, float}
)


@dataclass(slots=True)
class Connection:
    """What the server knows about one client connection."""

    id: int
    peer: str
    protocol: int = 2
    authenticated: bool = False
    name: bytes = b""
    #: Set by a command (QUIT) to close after its reply.
    closing: bool = False
    #: MULTI state: queued commands, or None outside a transaction.
    queued: list[list[bytes]] | None = None
    queue_error: bool = False
    extra: dict[str, object] = field(default_factory=dict)
    #: For ``CLIENT LIST``: this end of the connection, its descriptor, when it
    #: was made (loop time), its last command, and what the client library said
    #: of itself (``CLIENT SETINFO``).
    laddr: str = "?"
    fd: int = -1
    created_at: float = 0.0
    last_command: bytes = b"NULL"
    lib_name: bytes = b""
    lib_ver: bytes = b""
    #: The client closed its end (EOF) or the connection is lost or dropped: a
    #: command waiting for more (a blocked pop) gives up, as Redis frees such a client.
    gone: bool = False
    #: Writes an out-of-band reply (a pub/sub message) after every reply already
    #: due (set by the server; False: the client was dropped, see ``PUBSUB_OUTPUT_BYTES_MAX``).
    push: Callable[[Reply], bool] | None = None
    #: Called once when the connection is closed (pub/sub forgets its subscriptions).
    on_gone: Callable[[Connection], None] | None = None


#: A subscriber whose unsent output exceeds this is dropped: Redis's hard
#: ``client-output-buffer-limit`` of the pubsub class (32mb), so a subscriber
#: that stopped reading cannot make its node hold every message published.
PUBSUB_OUTPUT_BYTES_MAX: Final = 32 * 1024 * 1024


class Dispatcher(Protocol):
    def dispatch_many(
        self, conn: Connection, commands: list[list[bytes]]
    ) -> list[tuple[Reply | Awaitable[Reply], int]]:
        """Replies (or awaitables), in order, each with the protocol to encode it in.

        All of ``commands`` arrived together: a dispatcher may execute
        consecutive ones together (one log entry), as long as each
        connection's commands take effect in order. It stops after a
        command that set ``conn.closing``. An awaitable is awaited only after
        every earlier reply of the connection completed.
        """
        ...


@dataclass(frozen=True, slots=True)
class RespLimits:
    """Bounds on clients and on what one client may send (named, configurable)."""

    #: One argument: Redis's ``proto-max-bulk-len``. A node sets it to the
    #: largest entry its log accepts, so a value that could never be stored is
    #: refused from its length line instead of being read first.
    bulk_bytes_max: int = 512 * 1024 * 1024
    args_max: int = 1024 * 1024
    inline_bytes_max: int = 64 * 1024
    #: Unparsed plus partial-command bytes held per connection: Redis's
    #: ``client-query-buffer-limit``.
    buffer_bytes_max: int = 1024 * 1024 * 1024
    #: Connections served at once (Redis's ``maxclients``); the next one is
    #: answered ``-ERR max number of clients reached`` and closed.
    maxclients: int = MAXCLIENTS_DEFAULT
    #: Seconds after which an idle client is closed (Redis's ``timeout``; 0:
    #: never). Idle means no complete command arrived and no reply was
    #: written for that long, and no reply is outstanding (a command waiting
    #: for consensus or ``PAXOS.WAIT`` is not idle). Unlike Redis, the bytes
    #: of an unfinished command are not activity: a half-sent command is idle,
    #: so a client that trickles a command a byte at a time is closed too.
    timeout_s: float = TIMEOUT_S_DEFAULT
    #: Bounds before ``AUTH`` succeeded, while a password is required (Redis 7's).
    unauthenticated_args_max: int = UNAUTHENTICATED_ARGS_MAX
    unauthenticated_bulk_bytes_max: int = UNAUTHENTICATED_BULK_BYTES_MAX

    def __post_init__(self) -> None:
        for name in (
            "bulk_bytes_max",
            "args_max",
            "inline_bytes_max",
            "buffer_bytes_max",
            "maxclients",
            "unauthenticated_args_max",
            "unauthenticated_bulk_bytes_max",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
        timeout = self.timeout_s
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
            raise ConfigurationError(f"timeout_s must be >= 0 (0: never), got {timeout!r}")


def _awaitable(reply: object) -> bool:
    """``inspect.isawaitable``, asking the cheap question first: the dispatcher's
    consensus replies are futures (``isawaitable`` alone goes through an ABC check)."""
    return isinstance(reply, asyncio.Future) or inspect.isawaitable(reply)


class RespServer:
    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        limits: RespLimits | None = None,
        auth_required: bool = False,
    ) -> None:
        """``auth_required``: clients must authenticate (the dispatcher checks a
        password) and have the small unauthenticated bounds until they did."""
        self.dispatcher = dispatcher
        self.host = host
        self.port = port
        self.limits = limits or RespLimits()
        self.auth_required = auth_required
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)
        self._clients: set[_Client] = set()
        #: Driver tasks, held here so none is garbage-collected while pending.
        self._drivers: set[asyncio.Task[None]] = set()
        self.protocol_errors = 0
        self.connections = 0
        #: Connections refused because ``maxclients`` were connected.
        self.rejected_connections = 0
        #: Connections closed for being idle ``timeout_s``.
        self.idle_closed = 0
        #: Bytes read from and written to clients (Redis's ``total_net_*_bytes``).
        self.input_bytes = 0
        self.output_bytes = 0
        self._refusals = RepeatLimiter()
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def clients(self) -> int:
        """Connections being served now."""
        return len(self._clients)

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Client(self), self.host, self.port)
        sock = self._server.sockets[0].getsockname()
        self.port = int(sock[1])
        if self.limits.timeout_s > 0:
            self._sweeper = loop.call_later(self._sweep_interval(), self._sweep_idle)

    def _sweep_interval(self) -> float:
        return min(IDLE_SWEEP_INTERVAL_S_MAX, self.limits.timeout_s / IDLE_SWEEPS_PER_TIMEOUT)

    def _sweep_idle(self) -> None:
        """Close the clients idle for ``timeout_s``; one timer for all, not one per client."""
        loop = self._loop
        assert loop is not None
        idle_since = loop.time() - self.limits.timeout_s
        for client in [c for c in self._clients if c.idle_since(idle_since)]:
            self.idle_closed += 1
            log.debug("client %s: idle for %ss, closed", client.conn.peer, self.limits.timeout_s)
            client.shut()
            self._clients.discard(client)
        self._sweeper = loop.call_later(self._sweep_interval(), self._sweep_idle)

    def client_states(self) -> list[tuple[Connection, float]]:
        """Each connection served now, by id, with the seconds since its last activity."""
        now = self.now()
        return sorted(
            ((c.conn, max(0.0, now - c._active_at)) for c in self._clients),
            key=lambda state: state[0].id,
        )

    def now(self) -> float:
        """The loop's clock, which ``Connection.created_at`` is read on."""
        loop = self._loop
        return loop.time() if loop is not None else 0.0

    def kill_client(self, conn_id: int) -> bool:
        """Close connection ``conn_id`` now (``CLIENT KILL``); False if there is none."""
        for client in self._clients:
            if client.conn.id == conn_id:
                client._end()
                return True
        return False

    async def close(self) -> None:
        """Stop listening, close every connection and drop its outstanding replies."""
        if self._server is None:
            return
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._server.close()
        clients = list(self._clients)
        for client in clients:
            client.shut()
        drivers = set(self._drivers)
        for task in drivers:
            task.cancel()
        if drivers:
            await asyncio.wait(drivers)
        for client in clients:
            # A driver cancelled before its first step never saw its queue.
            client.abandon()
        self._clients.clear()
        await self._server.wait_closed()
        self._server = None


def _ignore_result(future: asyncio.Future[Any]) -> None:
    # Retrieved so that a reply nobody will write logs no "exception never retrieved".
    if not future.cancelled():
        future.exception()


class _Client(asyncio.Protocol):
    """One client connection: parser, dispatch, and replies in request order."""

    __slots__ = (
        "_active_at",
        "_clock",
        "_dispatch_many",
        "_driver",
        "_eof",
        "_out",
        "_parser",
        "_queue",
        "_reading_paused",
        "_restricted",
        "_server",
        "_stopped",
        "_transport",
        "_unparsed",
        "_wakeup",
        "_writing_paused",
        "conn",
    )

    def __init__(self, server: RespServer) -> None:
        self._server = server
        self._dispatch_many = server.dispatcher.dispatch_many
        lim = server.limits
        self._parser = RequestParser(
            bulk_bytes_max=lim.bulk_bytes_max,
            args_max=lim.args_max,
            inline_bytes_max=lim.inline_bytes_max,
            buffer_bytes_max=lim.buffer_bytes_max,
        )
        # Until AUTH succeeds: Redis 7's small bounds, one command at a time.
        self._restricted = server.auth_required
        if self._restricted:
            self._parser.restrict(
                args_max=lim.unauthenticated_args_max,
                bulk_bytes_max=lim.unauthenticated_bulk_bytes_max,
            )
        self.conn = Connection(0, "?")
        # When a reply was last written or drained, or the connection was made
        # (loop time): every command gets a reply, and an outstanding one makes
        # the client busy, not idle.
        loop = server._loop
        self._clock = loop.time if loop is not None else asyncio.get_running_loop().time
        self._active_at = 0.0
        self._transport: asyncio.Transport | None = None
        # Replies not yet encoded, in order; the first one is an awaitable
        # being waited for (nothing is queued behind a ready reply).
        self._queue: deque[tuple[Any, int]] = deque()
        # Encoded replies not yet written.
        self._out: list[bytes] = []
        # The task that awaits coroutine replies, created at the first one and
        # parked on _wakeup (not None) while the queue has nothing for it.
        self._driver: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._eof = False
        # Bytes were fed since the last dispatch (else parsing would find nothing).
        self._unparsed = False
        # No more commands are dispatched nor replies written (closed, lost or dropped).
        self._stopped = False

    # ----------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        server = self._server
        if len(server._clients) >= server.limits.maxclients:
            # Redis's reply and behaviour: the descriptor is already taken, so
            # say why and give it back at once.
            self._stopped = True
            server.rejected_connections += 1
            self._transport.write(_MAXCLIENTS_REPLY)
            self._transport.close()
            held = server._refusals.allow("maxclients")
            if held is not None:
                log.warning(
                    "refused a client: maxclients (%d) are connected%s",
                    server.limits.maxclients,
                    RepeatLimiter.suffix(held),
                    extra={"event": "refused", "reason": "maxclients", "held_back": held},
                )
            return
        server.connections += 1
        server._clients.add(self)
        self._active_at = self._clock()
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        sock = transport.get_extra_info("socket")
        self.conn = Connection(
            next(server._ids),
            f"{peer[0]}:{peer[1]}" if peer else "?",
            laddr=f"{local[0]}:{local[1]}" if local else "?",
            fd=sock.fileno() if sock is not None else -1,
            created_at=self._active_at,
            push=self.push,
        )

    def connection_lost(self, exc: Exception | None) -> None:
        # Replies being computed still complete (their commands were dispatched, as
        # in Redis), but nothing more is dispatched or written.
        self._stopped = True
        self.conn.gone = True
        self._server._clients.discard(self)
        if self._driver is None:
            self.abandon()
        self._release_driver()
        on_gone = self.conn.on_gone
        if on_gone is not None:
            self.conn.on_gone = None
            on_gone(self.conn)

    def eof_received(self) -> bool:
        # The client will send nothing more, but may still read: answer what it
        # sent, then close (True keeps the transport open for that).
        self._eof = True
        self.conn.gone = True
        if not self._queue and not self._stopped:
            self._settle()
        return True

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._active_at = self._clock()  # the client reads its replies: not idle
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        if self._stopped or self.conn.closing:
            return
        self._server.input_bytes += len(data)
        self._parser.feed(data)
        self._unparsed = True
        if self._queue:
            # Dispatched once the outstanding replies complete (see the module doc).
            self._update_reading()
            return
        self._pump()

    def push(self, reply: Reply) -> bool:
        """Write ``reply`` after every reply due before it; False if the client is dropped.

        A reply still awaited holds the push back (it is queued behind it), so
        a message never overtakes the reply of a command sent before it (a
        ``SUBSCRIBE``'s confirmation after a pipelined write).
        """
        if self._stopped:
            return False
        transport = self._transport
        assert transport is not None
        if transport.get_write_buffer_size() > PUBSUB_OUTPUT_BYTES_MAX:
            log.warning(
                "client %s: dropped, more than %d bytes of pub/sub output unread",
                self.conn.peer,
                PUBSUB_OUTPUT_BYTES_MAX,
            )
            self._end()
            return False
        if self._queue:
            self._queue.append((reply, self.conn.protocol))
            return True
        self._out.append(encode(reply, self.conn.protocol))
        self._flush()
        return True

    # ------------------------------------------------------------------------ internals

    def idle_since(self, moment: float) -> bool:
        """No command arrived and no reply was written since ``moment``, and none is outstanding."""
        return not self._queue and not self._stopped and self._active_at < moment

    def _pump(self) -> None:
        """Encode ready replies in order; dispatch parsed commands when none is outstanding."""
        try:
            queue = self._queue
            if queue:
                self._advance()
            # Nothing outstanding: dispatch what arrived meanwhile. One dispatch
            # takes every complete command buffered, and no byte arrives during it.
            if (
                not queue
                and self._unparsed
                and not self._stopped
                and not self.conn.closing
                and self._dispatch()
            ):
                self._advance()
        except asyncio.CancelledError:  # a reply future was cancelled: close, as a task would
            self._end()
            return
        except Exception:  # a bug of ours: this client is dropped, the server goes on
            log.exception("client %s: internal error", self.conn.peer)
            self._end()
            return
        self._flush()
        self._settle()

    def _dispatch(self) -> bool:
        """Dispatch every complete command buffered; False if there was none.

        Ready replies up to the first awaitable one are encoded at once (the
        common case); the rest are queued.
        """
        if self._restricted:
            return self._dispatch_unauthenticated()
        parser = self._parser
        self._unparsed = False  # every complete command is taken below
        commands: list[list[bytes]] = []
        failure: ProtocolError | None = None
        try:
            parser.parse_into(commands)
        except ProtocolError as e:
            failure = e
        if not commands and failure is None:
            return False
        conn = self.conn
        replies = self._dispatch_many(conn, commands) if commands else []
        self._encode_ready(replies, failure)
        return True

    def _dispatch_unauthenticated(self) -> bool:
        """``_dispatch`` before AUTH: one command at a time, so each is parsed with
        the bounds in force after the previous one ran (Redis's order)."""
        parser = self._parser
        conn = self.conn
        dispatched = False
        while True:
            try:
                command = parser.parse()
            except ProtocolError as e:
                self._encode_ready([], e)
                return True
            if command is None:
                self._unparsed = False
                return dispatched
            dispatched = True
            self._encode_ready(self._dispatch_many(conn, [command]), None)
            if conn.authenticated:
                self._restricted = False
                parser.unrestrict()
                if not (self._queue or conn.closing):
                    self._dispatch()  # the rest of the read, with the general bounds
                return True
            if self._queue or conn.closing:
                # An outstanding reply: the rest waits for it (_unparsed stays set).
                return True

    def _encode_ready(
        self, replies: list[tuple[Reply | Awaitable[Reply], int]], failure: ProtocolError | None
    ) -> None:
        conn = self.conn
        if failure is not None and not conn.closing:
            self._server.protocol_errors += 1
            replies.append((failure.reply, conn.protocol))
            conn.closing = True  # the stream can no longer be parsed
        # The common case, encoded here: ready replies with nothing outstanding.
        out = self._out
        for i, (reply, protocol) in enumerate(replies):
            if type(reply) in _PLAIN_TYPES or not _awaitable(reply):
                out.append(encode(cast(Reply, reply), protocol))
            else:
                self._queue.extend(replies[i:])
                break

    def _advance(self) -> None:
        """Encode the queue's ready replies; wait for the first one that is not ready."""
        queue = self._queue
        out = self._out
        if self._driver is not None and self._wakeup is None:  # it is at work on the queue
            return
        while queue:
            reply, protocol = queue[0]
            if type(reply) not in _PLAIN_TYPES and _awaitable(reply):
                if self._driver is not None:  # parked: the queue is its again
                    self._release_driver()
                    return
                if not asyncio.isfuture(reply):
                    # A coroutine needs a task: the driver, which awaits it and what
                    # follows, then parks; one per connection, not one per command.
                    task = asyncio.get_running_loop().create_task(self._drive())
                    self._driver = task
                    drivers = self._server._drivers
                    drivers.add(task)
                    task.add_done_callback(drivers.discard)
                    return
                if not reply.done():
                    reply.add_done_callback(self._on_future_done)
                    return
                reply = reply.result()
            queue.popleft()
            out.append(encode(reply, protocol))

    def _on_future_done(self, future: asyncio.Future[Any]) -> None:
        if self._stopped:
            _ignore_result(future)
            self.abandon()
            return
        self._pump()

    async def _drive(self) -> None:
        """Await the queue's replies in order, encoding each; park when it is empty.

        The replies encoded are written when the queue empties, together with
        the ready replies of what arrived meanwhile (dispatched then), as the
        stream server wrote a read's replies: the replies of a pipeline that
        await one another go out in one write, not one per reply.
        """
        queue = self._queue
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not queue:
                    # Every reply written and every command dispatched: park.
                    if self._stopped:
                        break
                    wakeup = self._wakeup = loop.create_future()
                    await wakeup
                    continue
                reply, protocol = queue[0]
                if type(reply) not in _PLAIN_TYPES and _awaitable(reply):
                    reply = await reply
                queue.popleft()
                # A lost connection's dispatched commands still complete, unanswered.
                if not self._stopped:
                    self._out.append(encode(cast(Reply, reply), protocol))
                    if not queue:
                        self._pump()  # write, and dispatch what arrived meanwhile
        except asyncio.CancelledError:  # close(), or a reply future was cancelled
            self._end()
        except Exception:  # a bug of ours: this client is dropped, the server goes on
            log.exception("client %s: internal error", self.conn.peer)
            self._end()
        finally:
            self._wakeup = None

    def _release_driver(self) -> None:
        """Wake the parked driver: the queue has work for it, or the connection ended."""
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        transport = self._transport
        assert transport is not None
        if not transport.is_closing():
            # One write: the replies of one read go out in one send.
            data = out[0] if len(out) == 1 else b"".join(out)
            self._server.output_bytes += len(data)
            transport.write(data)
        out.clear()
        self._active_at = self._clock()

    def _settle(self) -> None:
        """Close once nothing is outstanding after QUIT, an error or EOF; else pace reading."""
        if self._stopped:
            return
        if not self._queue and (self.conn.closing or self._eof):
            self._stopped = True
            # Its maxclients slot is free from now: the client may see the close (and
            # connect again) before connection_lost runs (uvloop closes the socket first).
            self._server._clients.discard(self)
            assert self._transport is not None
            self._transport.close()
            return
        # Reading pauses where the reason arises (data_received, pause_writing);
        # here it may only resume.
        if self._reading_paused:
            self._update_reading()

    def _update_reading(self) -> None:
        pause = self._writing_paused or (
            bool(self._queue) and self._parser.buffered_bytes >= READ_BYTES
        )
        if pause == self._reading_paused or self._stopped:
            return
        transport = self._transport
        assert transport is not None
        if transport.is_closing():
            return
        self._reading_paused = pause
        if pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _end(self) -> None:
        """Drop this client: nothing more is dispatched or written; close it."""
        self._stopped = True
        self.conn.gone = True
        self._server._clients.discard(self)
        self._out.clear()
        self.abandon()
        self._release_driver()
        if self._transport is not None:
            self._transport.close()

    def abandon(self) -> None:
        """Forget the replies not written: close unstarted coroutines, ignore futures."""
        queue = self._queue
        while queue:
            reply = queue.popleft()[0]
            if inspect.iscoroutine(reply):
                cast(Coroutine[Any, Any, Any], reply).close()
            elif asyncio.isfuture(reply):
                reply.add_done_callback(_ignore_result)

    def shut(self) -> None:
        """The server is closing: write nothing more and close the connection."""
        self._stopped = True
        self._out.clear()
        if self._driver is None:
            self.abandon()
        self._release_driver()
        if self._transport is not None:
            self._transport.close()
