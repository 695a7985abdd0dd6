"""``XREAD BLOCK``: the RESP server's half of reading a stream that has nothing new yet.

Theory of operation: ``XREAD`` is a point read (``kv.streams``): it runs on
this node's state once an entry proposed after it arrived is applied here,
so it sees every entry added before it was sent, on any node. With
``BLOCK ms`` and nothing to return, the client waits on this node, as a
blocked pop does (``resp.blocking``): it is registered on its stream
keys *before* each read is proposed, so an ``XADD`` applied after that read
wakes it (``BlockingCommands.on_applied``), and it reads again. ``$`` is
resolved once, before the first read, to each stream's last ID
(``stream-last-ids``, a point read too): the client then gets the entries
added after it called, as in Redis. After a wait, a read without ``COUNT``
returns at most ``XREAD_BLOCKED_COUNT_DEFAULT`` entries per stream (Redis'
bound on a blocked client's reply).

Without ``BLOCK``, or inside ``MULTI`` (queued before it gets here), or in a
script, ``XREAD`` is the state machine's and never waits.

The state machine replies an array of ``[key, entries]`` pairs, Redis' RESP2
reply; a RESP3 client gets Redis' RESP3 reply, a map of key to entries,
made here (inside ``MULTI`` it gets the pairs: docs/commands.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING, cast

from ..kv.commands import COMMANDS
from ..kv.keyspace import Failed, c_string
from ..kv.streams import XREAD_BLOCKED_COUNT_DEFAULT, xread_streams
from .blocking import BLOCKED_RECHECK_S, BlockingCommands
from .family import Family, Handler, wrong_arity
from .protocol import NULL_ARRAY, Reply
from .server import Connection

if TYPE_CHECKING:
    from .commands import NodeCommands

__all__ = ["StreamReadCommands"]


class StreamReadCommands(Family):
    """``XREAD``, whose ``BLOCK`` waits here like a blocked pop (``resp.blocking``)."""

    needs_kv = True

    def table(self) -> dict[bytes, Handler]:
        return {b"XREAD": self._xread}

    def _xread(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        return xread(self.node, conn, args)


def xread(node: NodeCommands, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
    """``XREAD``: the state machine's read, or, with ``BLOCK``, a wait on this node."""
    if not COMMANDS[b"xread"].arity_ok(len(args)):
        return wrong_arity(args[0])
    try:
        first, n, block_ms, count = xread_streams(args)
    except Failed as failed:
        return failed.reply
    if block_ms is None:
        reply = node.kv_one(conn, args)
        if conn.protocol == 3 and isinstance(reply, Awaitable):
            return _as_map(reply)
        return reply
    busy = node.no_leader()
    if busy is not None:
        return busy
    read = _blocked_read(node, conn, args[first : first + n], args[first + n :], block_ms, count)
    return _as_map(read) if conn.protocol == 3 else read


async def _as_map(pending: Awaitable[Reply]) -> Reply:
    """``[[key, entries], ...]`` as RESP3's map of key to entries (other replies as they are)."""
    reply = await pending
    if isinstance(reply, list):
        return {cast(bytes, pair[0]): pair[1] for pair in cast(list[list[Reply]], reply)}
    return reply


async def _read(node: NodeCommands, conn: Connection, op: list[bytes]) -> Reply:
    pending = node.kv_one(conn, op)
    if isinstance(pending, asyncio.Future):
        return cast(Reply, await pending)
    return cast(Reply, pending)  # TRYAGAIN: no leader


async def _blocked_read(
    node: NodeCommands,
    conn: Connection,
    keys: list[bytes],
    ids: list[bytes],
    block_ms: int,
    count: int,
) -> Reply:
    blocking = node.families.get(BlockingCommands)
    assert isinstance(blocking, BlockingCommands)  # registered with every key-value store
    loop = asyncio.get_running_loop()
    deadline = None if block_ms == 0 else loop.time() + block_ms / 1000
    blocked = blocking.blocked

    def register() -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()
        for key in keys:
            blocked.setdefault(key, set()).add(future)
        return future

    def unregister(future: asyncio.Future[None]) -> None:
        for key in keys:
            waiting = blocked.get(key)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del blocked[key]

    woke = register()
    try:
        if any(c_string(i) == b"$" for i in ids):
            last = await _read(node, conn, [b"stream-last-ids", *keys])
            if not isinstance(last, list):
                return last  # WRONGTYPE, TRYAGAIN, ...
            ids = [
                cast(bytes, last[k]) if c_string(raw) == b"$" else raw for k, raw in enumerate(ids)
            ]
        counted = [b"COUNT", b"%d" % count] if count else []
        while True:
            if conn.gone or conn.closing:
                return NULL_ARRAY  # the client is gone (or killed)
            reply = await _read(node, conn, [b"XREAD", *counted, b"STREAMS", *keys, *ids])
            if reply is not None:
                return reply
            counted = [b"COUNT", b"%d" % (count or XREAD_BLOCKED_COUNT_DEFAULT)]
            conn.extra["blocked"] = True
            while not woke.done():
                left = None if deadline is None else deadline - loop.time()
                if (left is not None and left <= 0) or conn.gone or conn.closing:
                    return NULL_ARRAY
                # Wake up now and then to notice a client that went away.
                wait = BLOCKED_RECHECK_S if left is None else min(left, BLOCKED_RECHECK_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(woke), wait)
            # Woken by a write to one of the streams: register again before reading.
            unregister(woke)
            woke = register()
    finally:
        conn.extra.pop("blocked", None)
        unregister(woke)
