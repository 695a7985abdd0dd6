"""``MULTI``/``EXEC``/``DISCARD``/``WATCH``/``UNWATCH`` over RESP.

Theory of operation (``kv.transactions``): the commands queued between
``MULTI`` and ``EXEC`` are one unit of a log entry, applied atomically on
every replica. ``WATCH`` reads its keys' digests at a linearizable point (a
point read ordered by the log); ``EXEC`` then sends them with the
transaction, and the replicas compare them where the transaction is ordered:
a changed key skips the whole transaction everywhere (Redis's null reply).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from time import perf_counter
from typing import cast

from ..kv.commands import COMMANDS, CommandSpec
from ..kv.replies import Reply as KvReply
from ..kv.transactions import EXEC_IF, WATCH_DIGEST
from .family import OK, QUEUED, Family, Handler, as_error, unknown_command, wrong_arity
from .protocol import NULL_ARRAY, Error, Reply
from .server import Connection

__all__ = ["IN_MULTI", "WATCHED_KEYS_MAX", "TransactionCommands"]


#: Keys one connection may watch at once: each costs a digest kept here and
#: 16 bytes plus the key in its ``EXEC`` entry. Transactions watch a few keys;
#: the bound keeps one client's entry well under ``apps.kv.GROUP_BYTES_MAX``.
WATCHED_KEYS_MAX = 1024
#: What a connection inside ``MULTI`` may run at once (anything else is queued).
IN_MULTI = frozenset({b"EXEC", b"DISCARD", b"MULTI", b"QUIT", b"WATCH"})


def _watched(conn: Connection) -> dict[bytes, bytes]:
    """The keys ``conn`` watches, each with its digest at ``WATCH`` (``kv.transactions``)."""
    watched = conn.extra.get("watched")
    if watched is None:
        watched = conn.extra["watched"] = {}
    return cast(dict[bytes, bytes], watched)


class TransactionCommands(Family):
    """Transactions: queued commands as one unit of a log entry, guarded by watched keys."""

    needs_kv = True

    def table(self) -> dict[bytes, Handler]:
        return {
            b"MULTI": self._multi,
            b"EXEC": self._exec,
            b"DISCARD": self._discard,
            b"WATCH": self._watch,
            b"UNWATCH": self._unwatch,
        }

    def queue(self, conn: Connection, name: bytes, args: list[bytes]) -> Reply:
        assert conn.queued is not None
        spec: CommandSpec | None = COMMANDS.get(name.lower())
        if spec is None:
            conn.queue_error = True
            if name in self.node.table:
                return Error(f"ERR {name.decode(errors='replace')} is not allowed inside MULTI")
            return unknown_command(args)
        if not spec.arity_ok(len(args)):
            conn.queue_error = True
            return wrong_arity(args[0])
        conn.queued.append(args)
        return QUEUED

    def _multi(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) != 1:
            return wrong_arity(args[0])
        if conn.queued is not None:
            return Error("ERR MULTI calls can not be nested")
        conn.queued = []
        conn.queue_error = False
        return OK

    def _discard(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) != 1:
            return wrong_arity(args[0])
        if conn.queued is None:
            return Error("ERR DISCARD without MULTI")
        conn.queued = None
        _watched(conn).clear()
        return OK

    def _exec(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        if len(args) != 1:
            return wrong_arity(args[0])
        if conn.queued is None:
            return Error("ERR EXEC without MULTI")
        queued, failed = conn.queued, conn.queue_error
        conn.queued, conn.queue_error = None, False
        watched = _watched(conn)
        guard: list[bytes] = []
        for key, seen in watched.items():
            guard += (key, seen)
        watched.clear()  # EXEC unwatches every key, whatever its outcome (as in Redis)
        if failed:
            return Error("EXECABORT Transaction discarded because of previous errors.")
        if not queued and not guard:
            return []
        busy = self.node.no_leader()
        if busy is not None:
            return busy
        if guard:
            # The watched keys are compared where the transaction is ordered: in the
            # log (``kv.transactions``). A changed one skips the whole transaction.
            queued = [[EXEC_IF, str(len(queued)).encode(), *guard], *queued]
        return self._exec_all(conn, queued, guarded=bool(guard))

    def _exec_all(
        self, conn: Connection, queued: list[list[bytes]], *, guarded: bool
    ) -> Awaitable[Reply]:
        # The whole transaction is one unit of a log entry: applied atomically everywhere.
        out: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        started = perf_counter()

        def done(result: list[KvReply] | BaseException) -> None:
            # Each queued command is a call, as in Redis (EXEC itself is counted by dispatch).
            self.node.stats.record_group(queued, perf_counter() - started, result)
            if out.done():
                return
            if not isinstance(result, list):
                out.set_result(as_error(result))
            elif not guarded:
                out.set_result(list(result))
            elif result[0] is None:
                out.set_result(NULL_ARRAY)  # a watched key changed: Redis' null reply
            elif isinstance(result[0], Error):
                out.set_result(result[0])  # a bug of ours: say so
            else:
                out.set_result(list(result[1:]))

        self.node.kv_submit(conn, queued, done)
        return out

    def _watch(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        if len(args) < 2:
            return wrong_arity(args[0])
        if conn.queued is not None:
            return Error("ERR WATCH inside MULTI is not allowed")  # the transaction goes on
        watched = _watched(conn)
        keys = [key for key in dict.fromkeys(args[1:]) if key not in watched]
        if len(watched) + len(keys) > WATCHED_KEYS_MAX:
            return Error(f"ERR more than {WATCHED_KEYS_MAX} watched keys (watched_keys_max)")
        if not keys:
            return OK  # as in Redis, a key watched again keeps its first reading
        busy = self.node.no_leader()
        if busy is not None:
            return busy
        out: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def done(result: list[KvReply] | BaseException) -> None:
            if out.done():
                return
            if not isinstance(result, list):
                out.set_result(as_error(result))
                return
            digests = result[0]
            if not isinstance(digests, list):  # a bug of ours: say so
                bad = Error("ERR internal error: the WATCH read replied no digests")
                out.set_result(digests if isinstance(digests, Error) else bad)
                return
            for key, seen in zip(keys, digests, strict=True):
                assert isinstance(seen, bytes)
                watched.setdefault(key, seen)
            out.set_result(OK)

        # A point read ordered by the log, like GET: the digests are the keys'
        # state at a linearizable point after WATCH arrived.
        self.node.kv_submit(conn, [[WATCH_DIGEST, *keys]], done)
        return out

    def _unwatch(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) != 1:
            return wrong_arity(args[0])
        _watched(conn).clear()
        return OK
