"""Blocking pops (``BLPOP``, ``BRPOP``, ``BLMOVE``, ``BZPOPMIN``, ``BZPOPMAX``) over RESP.

Theory of operation (``kv.blocking``): a blocked pop is proposed through the
log like any command; when it finds nothing, the client waits *here*, on this
node, until an entry applied here writes one of its keys (``on_applied``),
then proposes again, until its timeout. The waiting is local; the pop itself
is ordered by the log, so two clients never pop the same element.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING, cast

from ..kv.blocking import timeout_s as blocking_timeout_s
from ..kv.commands import COMMANDS, Entry
from ..kv.keyspace import Failed
from .family import Family, Handler, wrong_arity
from .protocol import NULL_ARRAY, Reply
from .server import Connection

if TYPE_CHECKING:
    from .commands import NodeCommands

__all__ = ["BLOCKING", "BlockingCommands"]


#: A blocked client's wait is cut this often (seconds) to notice that it went
#: away, so a dead client's wait on a key nobody writes ends within a second.
BLOCKED_RECHECK_S = 1.0
#: Pops that wait for an element (``kv.blocking``): served by ``BlockingCommands``.
BLOCKING = (b"BLPOP", b"BRPOP", b"BLMOVE", b"BZPOPMIN", b"BZPOPMAX")


class BlockingCommands(Family):
    """The pops that wait for an element: served through the log, waited for here."""

    needs_kv = True

    def __init__(self, node: NodeCommands) -> None:
        super().__init__(node)
        #: Clients blocked in a pop or an ``XREAD BLOCK`` (``stream_reads``), by key:
        #: each waits for a write to one of its keys.
        self.blocked: dict[bytes, set[asyncio.Future[None]]] = {}

    def table(self) -> dict[bytes, Handler]:
        return dict.fromkeys(BLOCKING, self._blocking)

    def _blocking(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        """``BLPOP`` and friends (``kv.blocking``): pop through the log, wait here between tries."""
        spec = COMMANDS[args[0].lower()]
        if not spec.arity_ok(len(args)):
            return wrong_arity(args[0])
        try:
            timeout = blocking_timeout_s(args[-1])
        except Failed as failed:
            return failed.reply
        busy = self.node.no_leader()
        if busy is not None:
            return busy
        if args[0].upper() == b"BLMOVE":
            keys = [args[1]]  # only a write to the source can unblock it
        else:
            keys = [args[i] for i in spec.key_positions(len(args))]
        return self._block(conn, args, keys, timeout)

    async def _block(
        self, conn: Connection, args: list[bytes], keys: list[bytes], timeout_s: float
    ) -> Reply:
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s == 0 else loop.time() + timeout_s
        while True:
            if conn.gone or conn.closing:
                return NULL_ARRAY  # the client is gone (or killed): pop nothing for it
            # Registered before the pop is proposed: a push applied after the pop
            # (which found nothing) wakes this client, whatever it is doing then.
            woke: asyncio.Future[None] = loop.create_future()
            for key in keys:
                self.blocked.setdefault(key, set()).add(woke)
            try:
                pending = self.node.kv_one(conn, args)
                reply = (
                    await pending
                    if isinstance(pending, asyncio.Future)
                    else cast(Reply, pending)  # TRYAGAIN: no leader
                )
                if reply is not None:
                    return reply
                conn.extra["blocked"] = True
                while not woke.done():
                    left = None if deadline is None else deadline - loop.time()
                    if (left is not None and left <= 0) or conn.gone or conn.closing:
                        return NULL_ARRAY
                    # Wake up now and then to notice a client that went away.
                    wait = BLOCKED_RECHECK_S if left is None else min(left, BLOCKED_RECHECK_S)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(woke), wait)
            finally:
                conn.extra.pop("blocked", None)
                for key in keys:
                    waiting = self.blocked.get(key)
                    if waiting is not None:
                        waiting.discard(woke)
                        if not waiting:
                            del self.blocked[key]

    def on_applied(self, entry: Entry | None) -> None:
        """Wake the clients blocked on a key that ``entry`` may have written."""
        blocked = self.blocked
        if not blocked:
            return
        if entry is None:  # restored from a snapshot: anything may have changed
            self._wake(list(blocked))
            return
        for op in entry.ops:
            spec = COMMANDS.get(op.name)
            if spec is None or not spec.is_write:
                continue
            if "@scripting" in spec.categories:  # a script may write any key
                self._wake(list(blocked))
                return
            args = op.args
            if "blocking" in spec.flags:
                # A blocked pop's own entry takes from its keys and must not wake it
                # (it would propose again at once, for ever); BLMOVE adds to its target.
                if op.name == b"blmove":
                    self._wake([args[2]])
                continue
            self._wake([args[i] for i in spec.key_positions(len(args)) if args[i] in blocked])

    def _wake(self, keys: list[bytes]) -> None:
        for key in keys:
            for woke in self.blocked.get(key, ()):
                if not woke.done():
                    woke.set_result(None)
