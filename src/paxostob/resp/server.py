"""An asyncio server speaking RESP to Redis clients (redis-cli, redis-py, ...).

Theory of operation: one task per connection reads bytes, feeds the sans-IO
``RequestParser`` and hands every complete command to the ``Dispatcher``,
which answers at once or with an awaitable (a command that goes through
consensus). All commands parsed from one read are dispatched together, so
the dispatcher can put a pipeline's consecutive writes into one log entry;
replies are written in request order. A protocol error is answered with its Redis error text and
closes that connection only; nothing a client sends can stop the server or
reach another client.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol

from .protocol import ProtocolError, Reply, RequestParser, encode

__all__ = ["Connection", "Dispatcher", "RespLimits", "RespServer"]

log = logging.getLogger("paxostob.resp")

READ_BYTES = 64 * 1024


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


class Dispatcher(Protocol):
    def dispatch_many(
        self, conn: Connection, commands: list[list[bytes]]
    ) -> list[tuple[Reply | Awaitable[Reply], int]]:
        """Replies (or awaitables), in order, each with the protocol to encode it in.

        All of ``commands`` arrived in one read: a dispatcher may execute
        consecutive ones together (one log entry), as long as each
        connection's commands take effect in order. It stops after a
        command that set ``conn.closing``.
        """
        ...


@dataclass(frozen=True, slots=True)
class RespLimits:
    """Bounds on what one client may send (named, configurable)."""

    bulk_bytes_max: int = 512 * 1024 * 1024
    args_max: int = 1024 * 1024
    inline_bytes_max: int = 64 * 1024
    #: Unparsed plus partial-command bytes held per connection.
    buffer_bytes_max: int = 1024 * 1024 * 1024


class RespServer:
    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        limits: RespLimits | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.host = host
        self.port = port
        self.limits = limits or RespLimits()
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self.protocol_errors = 0
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        sock = self._server.sockets[0].getsockname()
        self.port = int(sock[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(set(self._tasks))
            await self._server.wait_closed()
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        peer = writer.get_extra_info("peername")
        conn = Connection(next(self._ids), f"{peer[0]}:{peer[1]}" if peer else "?")
        lim = self.limits
        parser = RequestParser(
            bulk_bytes_max=lim.bulk_bytes_max,
            args_max=lim.args_max,
            inline_bytes_max=lim.inline_bytes_max,
            buffer_bytes_max=lim.buffer_bytes_max,
        )
        try:
            await self._serve(conn, parser, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug of ours: this client is dropped, the server goes on
            log.exception("client %s: internal error", conn.peer)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(
        self,
        conn: Connection,
        parser: RequestParser,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        dispatch_many = self.dispatcher.dispatch_many
        while not conn.closing:
            data = await reader.read(READ_BYTES)
            if not data:
                return
            parser.feed(data)
            # Dispatch everything that arrived, then await in order.
            commands: list[list[bytes]] = []
            failure: ProtocolError | None = None
            while True:
                try:
                    args = parser.parse()
                except ProtocolError as e:
                    failure = e
                    break
                if args is None:
                    break
                commands.append(args)
            pending = dispatch_many(conn, commands) if commands else []
            if failure is not None and not conn.closing:
                self.protocol_errors += 1
                pending.append((failure.reply, conn.protocol))
                conn.closing = True  # the stream can no longer be parsed
            out: list[bytes] = []
            for reply, protocol in pending:
                if inspect.isawaitable(reply):
                    reply = await reply
                out.append(encode(reply, protocol))
            writer.writelines(out)
            await writer.drain()
