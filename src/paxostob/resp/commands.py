"""The commands a paxostob node answers over RESP.

Key-value commands (GET, SET, INCR, MULTI/EXEC, ... every command of
``kv.commands.COMMANDS``) go through ``kvstore.KeyValueStore``: writes as log
entries, point reads after an entry proposed after them is applied here, so
they are linearizable on any node: a follower's proposal is forwarded to the
leader by the broadcast layer. While no leader is known the client gets
``-TRYAGAIN ...`` at once (retryable), never a stale or wrong answer.

Connection commands (PING, ECHO, QUIT, SELECT, AUTH, HELLO, CLIENT, INFO,
COMMAND, CONFIG GET) behave like Redis's, so redis-cli and redis-py work
unchanged. ``PAXOS.*`` commands reach the node's total-order broadcast:

- ``PAXOS.BROADCAST payload`` -> ``[position, sender]`` once the message is
  delivered on this node (any node accepts it; followers forward);
- ``PAXOS.READ start count`` -> up to ``count`` ``[position, sender, payload]``
  of raw broadcasts at positions >= ``start`` still kept by this node;
- ``PAXOS.WAIT position timeout_ms`` -> the applied position, once this node
  applied ``position`` (``-TRYAGAIN`` after the timeout);
- ``PAXOS.STATUS`` -> this node's role, leader, ballot and positions;
- ``PAXOS.SNAPSHOT`` -> ``[position, clock_ms, state]``: the whole state of
  the node's applications (key-value store and broadcast log) at log
  position ``position``, taken after a read barrier, so it holds every write
  acknowledged (on any node) before the command arrived. ``paxostob
  snapshot save`` writes it to a file; ``paxostob snapshot restore`` makes a
  new cluster from it.

Anything else gets Redis's ``-ERR unknown command ...`` reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import logging
import os
import platform
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Protocol, cast

from ..errors import NotRunningError, PaxosError, QuorumTimeoutError
from ..kv.blocking import timeout_s as blocking_timeout_s
from ..kv.commands import COMMANDS, CommandSpec, Entry
from ..kv.keyspace import Failed
from ..kv.pattern import pattern_matches
from ..kv.replies import Reply as KvReply
from ..kv.scripting import compile_error, sha1hex
from ..kv.transactions import EXEC_IF, WATCH_DIGEST
from ..node.repeats import RepeatLimiter
from ..node.tob import TotalOrderBroadcast
from ..version import __version__
from . import membership
from .broadcast_log import TAG_BROADCAST, BroadcastLog
from .protocol import NULL_ARRAY, Error, Reply, SimpleString, Verbatim
from .pubsub import PubSub
from .server import Connection, RespServer
from .stats import CommandStats

__all__ = ["NodeCommands"]

log = logging.getLogger("paxostob.resp")

OK = SimpleString("OK")
#: The Redis release whose replies the key-value commands reproduce (the
#: differential tests run them against redis-server 7.0). Clients read it
#: from HELLO and INFO to decide which commands and options they may send.
REDIS_VERSION = "7.0.0"
#: Every node accepts every command (a follower forwards writes through the
#: log), so to a client each one is a master: a client library that saw
#: "replica"/"slave" would refuse to send it writes. The Paxos role is in
#: INFO's ``# Paxos`` section and PAXOS.STATUS.
REDIS_ROLE = "master"
QUEUED = SimpleString("QUEUED")

#: Consecutive pipelined key-value commands of one connection share a log
#: entry, up to this many commands and bytes (one entry must stay well under
#: a batch and a TCP frame).
GROUP_COMMANDS_MAX = 256
GROUP_BYTES_MAX = 256 * 1024
#: Keys one connection may watch at once: each costs a digest kept here and
#: 16 bytes plus the key in its ``EXEC`` entry. Transactions watch a few keys;
#: the bound keeps one client from growing an entry past ``GROUP_BYTES_MAX``'s scale.
WATCHED_KEYS_MAX = 1024
#: Scripts a node caches for ``EVALSHA`` (the oldest is forgotten first; a
#: client then gets ``NOSCRIPT`` and loads it again, as redis-py's ``Script``
#: does). Redis 7.0 does not bound its cache; applications use a handful.
SCRIPTS_MAX = 10_000


class KvExecutor(Protocol):
    """Applies commands as one atomic unit of a log entry (``kvstore.KeyValueStore``)."""

    def submit_callback(
        self,
        ops: Sequence[Sequence[bytes]],
        done: Callable[[list[KvReply] | BaseException], None],
        *,
        caller: object = None,
    ) -> None: ...

    def stored_keys(self) -> int: ...

    def set_on_applied(self, callback: Callable[[Entry | None], None] | None) -> None: ...

    def set_on_publish(self, callback: Callable[[bytes, bytes], int] | None) -> None: ...


Handler = Callable[[Connection, list[bytes]], "Reply | Awaitable[Reply]"]

#: A blocked client's wait is cut this often (seconds) to notice that it went
#: away, so a dead client's wait on a key nobody writes ends within a second.
BLOCKED_RECHECK_S = 1.0
#: Pops that wait for an element (``kv.blocking``): served by ``NodeCommands._blocking``.
BLOCKING = (b"BLPOP", b"BRPOP", b"BLMOVE", b"BZPOPMIN", b"BZPOPMAX")

#: What a RESP2 client may send while subscribed (Redis's subscribe mode; RESP3 has none).
_IN_SUBSCRIBE_MODE = frozenset(
    {b"SUBSCRIBE", b"UNSUBSCRIBE", b"PSUBSCRIBE", b"PUNSUBSCRIBE", b"PING", b"QUIT", b"RESET"}
    | {b"SSUBSCRIBE", b"SUNSUBSCRIBE"}
)

_PUBSUB_HELP = (
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
)

#: Commands a client may send before it authenticated.
_BEFORE_AUTH = frozenset({b"AUTH", b"HELLO", b"QUIT"})


def _as_error(e: BaseException) -> Error:
    """The reply of a command whose log entry failed (retryable when it may be)."""
    if isinstance(e, QuorumTimeoutError):
        return Error(f"TRYAGAIN {e}")
    if isinstance(e, NotRunningError | asyncio.CancelledError):
        return Error("TRYAGAIN the node is shutting down")
    if isinstance(e, PaxosError):
        return Error(f"ERR {e}")
    log.error("a key-value entry failed unexpectedly", exc_info=e)
    return Error(f"ERR internal error: {type(e).__name__}")


def _watched(conn: Connection) -> dict[bytes, bytes]:
    """The keys ``conn`` watches, each with its digest at ``WATCH`` (``kv.transactions``)."""
    watched = conn.extra.get("watched")
    if watched is None:
        watched = conn.extra["watched"] = {}
    return cast(dict[bytes, bytes], watched)


def wrong_arity(name: bytes) -> Error:
    return Error(
        f"ERR wrong number of arguments for '{name.decode(errors='replace').lower()}' command"
    )


def unknown_command(args: list[bytes]) -> Error:
    # Redis's text (server.c), which clients and redis-cli users compare: the name
    # cut to 128 bytes, then each argument quoted and followed by a space while
    # fewer than 128 bytes are shown; C strings, so each stops at a NUL.
    shown = b""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + arg.split(b"\0", 1)[0][: 128 - len(shown)] + b"' "
    name = args[0].split(b"\0", 1)[0][:128]
    text = b"ERR unknown command '" + name + b"', with args beginning with: " + shown
    return Error(text.decode(errors="replace"))


_CLIENT_HELP = (
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "SETNAME <connection-name>",
    "    Assign the name <connection-name> to the current connection.",
    "SETINFO <option> <value>, NO-EVICT (ON|OFF), NO-TOUCH (ON|OFF)",
    "    Accepted and ignored (client libraries send them when they connect).",
)
_COMMAND_HELP = (
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands.",
    "DOCS [<command-name> ...]",
    "    Return an empty map (no command documentation is kept).",
    "INFO [<command-name> ...]",
    "    Return details about the named commands.",
)


def _help(command: str, lines: Sequence[str]) -> Reply:
    """Redis's HELP reply: a header line, the subcommands, then HELP itself."""
    text = [
        f"{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        *lines,
        "HELP",
        "    Print this help.",
    ]
    return [SimpleString(line) for line in text]


#: INFO's sections, in Redis's order; titles where ``capitalize`` is not Redis's.
_SECTIONS = (
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "paxos",
    "commandstats",
    "keyspace",
)
_TITLES = {"cpu": "CPU"}


def _rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc``; 0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _human(n: int) -> str:
    """Redis's ``*_human`` form: ``1.50M``."""
    value = float(n)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.2f}{unit}" if unit != "B" else f"{n}B"
        value /= 1024
    return f"{n}B"  # pragma: no cover - the loop returns at G


class NodeCommands:
    """Dispatches one node's RESP commands (see the module docstring)."""

    def __init__(
        self,
        tob: TotalOrderBroadcast,
        log: BroadcastLog,
        *,
        node_id: str,
        requirepass: str | None = None,
        broadcast_timeout_s: float = 10.0,
        kv: KvExecutor | None = None,
    ) -> None:
        self.tob = tob
        self.log = log
        self.node_id = node_id
        self.requirepass = requirepass
        self.broadcast_timeout_s = broadcast_timeout_s
        self.kv = kv
        self.started = time.monotonic()
        #: Calls, failures, refusals and latency by command (INFO commandstats, metrics).
        self.stats = CommandStats()
        #: The server these commands are dispatched by, for INFO's clients and
        #: stats sections (set by whoever makes both; None: those fields are left out).
        self.server: RespServer | None = None
        self._refusals = RepeatLimiter()
        self.table: dict[bytes, Handler] = {
            b"PING": self._ping,
            b"ECHO": self._echo,
            b"QUIT": self._quit,
            b"SELECT": self._select,
            b"AUTH": self._auth,
            b"HELLO": self._hello,
            b"CLIENT": self._client,
            b"INFO": self._info,
            b"COMMAND": self._command,
            b"CONFIG": self._config,
            b"PAXOS.BROADCAST": self._broadcast,
            b"PAXOS.READ": self._read,
            b"PAXOS.STATUS": self._status,
            b"PAXOS.WAIT": self._wait,
            b"PAXOS.SNAPSHOT": self._snapshot,
        }
        membership.register(self)  # PAXOS.MEMBERS, PAXOS.MEMBER (resp/membership.py)
        #: Scripts by SHA-1 (lower-case hex): this node's cache for ``EVALSHA``.
        #: The log carries each script's text, so the cache is node-local (see docs).
        self.scripts: dict[bytes, bytes] = {}
        #: Clients blocked in a pop, by key: each waits for a write to one of its keys.
        self._blocked: dict[bytes, set[asyncio.Future[None]]] = {}
        #: This node's subscribers (``resp.pubsub``): ``PUBLISH`` entries applied here reach them.
        self.pubsub = PubSub()
        if kv is not None:
            kv.set_on_applied(self._on_applied)
            kv.set_on_publish(self.pubsub.publish)
            self.table[b"SUBSCRIBE"] = self._subscribe
            self.table[b"UNSUBSCRIBE"] = self._unsubscribe
            self.table[b"PSUBSCRIBE"] = self._subscribe
            self.table[b"PUNSUBSCRIBE"] = self._unsubscribe
            self.table[b"PUBSUB"] = self._pubsub
            for name in BLOCKING:
                self.table[name] = self._blocking
            self.table[b"SCRIPT"] = self._script
            self.table[b"MULTI"] = self._multi
            self.table[b"EXEC"] = self._exec
            self.table[b"DISCARD"] = self._discard
            self.table[b"WATCH"] = self._watch
            self.table[b"UNWATCH"] = self._unwatch
        self._changed = asyncio.Event()
        log.on_change = self._changed.set

    def dispatch_many(
        self, conn: Connection, commands: list[list[bytes]]
    ) -> list[tuple[Reply | Awaitable[Reply], int]]:
        """Dispatch one read's commands; consecutive key-value commands share a log entry.

        A pipeline (``redis-benchmark -P 16``, a client's pipeline) then
        costs one consensus round per read instead of one per command, and
        its commands still take effect in order: they are one entry, applied
        in order, and the next group is proposed only after this one's
        replies were awaited.
        """
        conn.last_command = commands[-1][0]  # CLIENT LIST's cmd (CLIENT sets its own)
        if len(commands) == 1:  # one command per read (no pipelining): the common case
            args = commands[0]
            if self._groupable(conn, args):
                return [(self._kv_group(conn, [args])[0], conn.protocol)]
            return [(self.dispatch(conn, args), conn.protocol)]
        out: list[tuple[Reply | Awaitable[Reply], int]] = []
        group: list[list[bytes]] = []
        group_bytes = 0

        def flush() -> None:
            nonlocal group_bytes
            if group:
                out.extend((item, conn.protocol) for item in self._kv_group(conn, list(group)))
                group.clear()
                group_bytes = 0

        for args in commands:
            if conn.closing:
                break
            if self._groupable(conn, args):
                group.append(args)
                group_bytes += sum(len(a) for a in args)
                if len(group) >= GROUP_COMMANDS_MAX or group_bytes >= GROUP_BYTES_MAX:
                    flush()
                continue
            flush()
            out.append((self.dispatch(conn, args), conn.protocol))
        flush()
        return out

    def _groupable(self, conn: Connection, args: list[bytes]) -> bool:
        if self.kv is None or conn.queued is not None:
            return False
        if conn.protocol == 2 and self.pubsub.count(conn):
            return False  # subscribe mode: dispatch refuses it
        if self.requirepass is not None and not conn.authenticated:
            return False
        name = args[0].upper()
        if name in self.table:
            return False
        spec = COMMANDS.get(name.lower())
        return spec is not None and spec.arity_ok(len(args))

    def _kv_group(self, conn: Connection, ops: list[list[bytes]]) -> list[Reply | Awaitable[Reply]]:
        busy = self._no_leader()
        if busy is not None:
            self.stats.reject_all(ops)
            return [busy] * len(ops)
        # Futures resolved by one callback, not a coroutine and a task per
        # command: this is the path of every key-value command.
        loop = asyncio.get_running_loop()
        outs: list[asyncio.Future[Reply]] = [loop.create_future() for _ in ops]
        started = perf_counter()

        def done(result: list[KvReply] | BaseException) -> None:
            self.stats.record_group(ops, perf_counter() - started, result)
            for k, out in enumerate(outs):
                if not out.done():
                    out.set_result(result[k] if isinstance(result, list) else _as_error(result))

        self._kv_submit(conn, ops, done)
        return list(outs)

    def dispatch(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        name = args[0].upper()
        if self.requirepass is not None and not conn.authenticated and name not in _BEFORE_AUTH:
            self._reject_known(name)
            return Error("NOAUTH Authentication required.")
        if conn.protocol == 2 and name not in _IN_SUBSCRIBE_MODE and self.pubsub.count(conn):
            refused = self._refuse_in_subscribe_mode(args)
            if refused is not None:
                return refused
        if conn.queued is not None and name not in (
            b"EXEC",
            b"DISCARD",
            b"MULTI",
            b"QUIT",
            b"WATCH",
        ):
            return self._queue(conn, name, args)
        handler = self.table.get(name)
        if handler is not None:
            started = perf_counter()
            reply = handler(conn, args)
            if isinstance(reply, asyncio.Future):
                reply.add_done_callback(
                    lambda f: self.stats.record(
                        name.lower(),
                        perf_counter() - started,
                        f.cancelled() or type(f.result()) is Error,
                    )
                )
            elif not asyncio.iscoroutine(reply):
                # (A coroutine's handler records itself once it completes.)
                self.stats.record(name.lower(), perf_counter() - started, type(reply) is Error)
            return reply
        spec = COMMANDS.get(name.lower()) if self.kv is not None else None
        if spec is None:
            self.stats.unknown += 1
            return unknown_command(args)
        if not spec.arity_ok(len(args)):
            self.stats.reject(name.lower())
            return wrong_arity(args[0])
        return self._kv_one(conn, args)

    def _refuse_in_subscribe_mode(self, args: list[bytes]) -> Error | None:
        """Redis's refusal of a known command in RESP2 subscribe mode (None: not known,
        or its arity is wrong: Redis checks those first)."""
        name = args[0].lower()
        spec = COMMANDS.get(name) if self.kv is not None else None
        if spec is not None and not spec.arity_ok(len(args)):
            return None
        if spec is None and name.upper() not in self.table:
            return None
        self.stats.reject(name)
        return Error(
            f"ERR Can't execute '{name.decode(errors='replace')}': only (P|S)SUBSCRIBE / "
            "(P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        )

    def _reject_known(self, name: bytes) -> None:
        """Count a refused call of ``name`` (upper case) if it names a command (else unknown)."""
        if name in self.table or (self.kv is not None and name.lower() in COMMANDS):
            self.stats.reject(name.lower())
        else:
            self.stats.unknown += 1

    # ------------------------------------------------------- key-value

    def _no_leader(self) -> Error | None:
        if self.tob.leader is None:
            held = self._refusals.allow("no leader")
            if held is not None:
                st = self.tob.status()
                log.warning(
                    "%s: refused a command with TRYAGAIN: no leader is known (ballot %s, "
                    "applied slot %d)%s",
                    self.node_id,
                    st.ballot,
                    st.decided_through,
                    RepeatLimiter.suffix(held),
                    extra={
                        "event": "refused",
                        "reason": "no leader",
                        "ballot": str(st.ballot),
                        "slot": st.decided_through,
                        "held_back": held,
                    },
                )
            return Error("TRYAGAIN no leader is known yet (an election is under way); retry")
        return None

    def _kv_one(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        (reply,) = self._kv_group(conn, [args])
        return reply

    def _kv_submit(
        self,
        conn: Connection,
        ops: list[list[bytes]],
        done: Callable[[list[KvReply] | BaseException], None],
    ) -> None:
        assert self.kv is not None
        for i, op in enumerate(ops):
            if len(op[0]) in (4, 7) and op[0].upper() in (b"EVAL", b"EVALSHA"):
                ops = self._resolve_scripts(ops, i)
                break
        try:
            # The connection orders its own commands (a read never sees its later writes).
            self.kv.submit_callback(ops, done, caller=conn.id)
        except PaxosError as e:
            asyncio.get_running_loop().call_soon(done, e)

    # ------------------------------------------------------- blocking pops

    def _blocking(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        """``BLPOP`` and friends (``kv.blocking``): pop through the log, wait here between tries."""
        spec = COMMANDS[args[0].lower()]
        if not spec.arity_ok(len(args)):
            return wrong_arity(args[0])
        try:
            timeout = blocking_timeout_s(args[-1])
        except Failed as failed:
            return failed.reply
        busy = self._no_leader()
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
                self._blocked.setdefault(key, set()).add(woke)
            try:
                (pending,) = self._kv_group(conn, [args])
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
                    waiting = self._blocked.get(key)
                    if waiting is not None:
                        waiting.discard(woke)
                        if not waiting:
                            del self._blocked[key]

    def _on_applied(self, entry: Entry | None) -> None:
        """Wake the clients blocked on a key that ``entry`` may have written."""
        blocked = self._blocked
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
            for woke in self._blocked.get(key, ()):
                if not woke.done():
                    woke.set_result(None)

    def _resolve_scripts(self, ops: list[list[bytes]], first: int) -> list[list[bytes]]:
        """``ops`` with each known ``EVALSHA`` turned into ``EVAL`` of its script's text.

        The text travels in the log entry, so every replica runs the script
        whatever its own cache holds. An unknown SHA stays ``EVALSHA``: the
        state machine replies ``NOSCRIPT`` to it on every node. An ``EVAL``
        caches its script here, as in Redis.
        """
        out = ops[:first]
        for op in ops[first:]:
            name = op[0].upper()
            if name == b"EVAL" and len(op) >= 2:
                self._cache_script(op[1])
            elif name == b"EVALSHA" and len(op) >= 2:
                script = self.scripts.get(op[1].lower())
                if script is not None:
                    op = [b"EVAL", script, *op[2:]]
            out.append(op)
        return out

    def _cache_script(self, script: bytes) -> bytes:
        sha = sha1hex(script)
        if sha not in self.scripts:
            while len(self.scripts) >= SCRIPTS_MAX:
                del self.scripts[next(iter(self.scripts))]  # the oldest first
            self.scripts[sha] = script
        return sha

    def _script(self, conn: Connection, args: list[bytes]) -> Reply:
        sub = args[1].upper() if len(args) >= 2 else b""
        if sub == b"LOAD" and len(args) == 3:
            error = compile_error(args[2])
            return Error(error) if error is not None else self._cache_script(args[2])
        if sub == b"EXISTS" and len(args) >= 3:
            return [int(sha.lower() in self.scripts) for sha in args[2:]]
        if sub == b"FLUSH" and len(args) <= 3:
            if len(args) == 3 and args[2].upper() not in (b"ASYNC", b"SYNC"):
                return Error("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
            self.scripts.clear()
            return OK
        if sub in (b"LOAD", b"EXISTS", b"FLUSH"):
            return Error(
                f"ERR wrong number of arguments for 'script|{sub.lower().decode()}' command"
            )
        if len(args) < 2:
            return wrong_arity(args[0])
        return Error(
            f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try SCRIPT HELP."
        )

    def _queue(self, conn: Connection, name: bytes, args: list[bytes]) -> Reply:
        assert conn.queued is not None
        spec: CommandSpec | None = COMMANDS.get(name.lower())
        if spec is None:
            conn.queue_error = True
            if name in self.table:
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
        busy = self._no_leader()
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
            self.stats.record_group(queued, perf_counter() - started, result)
            if out.done():
                return
            if not isinstance(result, list):
                out.set_result(_as_error(result))
            elif not guarded:
                out.set_result(list(result))
            elif result[0] is None:
                out.set_result(NULL_ARRAY)  # a watched key changed: Redis' null reply
            elif isinstance(result[0], Error):
                out.set_result(result[0])  # REPLY_NOT_KEPT, or a bug of ours: say so
            else:
                out.set_result(list(result[1:]))

        self._kv_submit(conn, queued, done)
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
        busy = self._no_leader()
        if busy is not None:
            return busy
        out: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def done(result: list[KvReply] | BaseException) -> None:
            if out.done():
                return
            if not isinstance(result, list):
                out.set_result(_as_error(result))
                return
            digests = result[0]
            if not isinstance(digests, list):  # REPLY_NOT_KEPT
                bad = Error("ERR internal error: the WATCH read replied no digests")
                out.set_result(digests if isinstance(digests, Error) else bad)
                return
            for key, seen in zip(keys, digests, strict=True):
                assert isinstance(seen, bytes)
                watched.setdefault(key, seen)
            out.set_result(OK)

        # A point read ordered by the log, like GET: the digests are the keys'
        # state at a linearizable point after WATCH arrived.
        self._kv_submit(conn, [[WATCH_DIGEST, *keys]], done)
        return out

    def _unwatch(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) != 1:
            return wrong_arity(args[0])
        _watched(conn).clear()
        return OK

    # --------------------------------------------------------- pub/sub

    def _subscribe(self, conn: Connection, args: list[bytes]) -> Reply:
        """``SUBSCRIBE``/``PSUBSCRIBE``: one confirmation per name (a push in RESP3)."""
        if len(args) < 2:
            return wrong_arity(args[0])
        return self.pubsub.subscribe(conn, args[1:], pattern=args[0].upper() == b"PSUBSCRIBE")

    def _unsubscribe(self, conn: Connection, args: list[bytes]) -> Reply:
        pattern = args[0].upper() == b"PUNSUBSCRIBE"
        return self.pubsub.unsubscribe(conn, args[1:], pattern=pattern)

    def _pubsub(self, conn: Connection, args: list[bytes]) -> Reply:
        """``PUBSUB CHANNELS|NUMSUB|NUMPAT``: this node's subscriptions (Redis Cluster's view)."""
        if len(args) < 2:
            return wrong_arity(args[0])
        sub = args[1].upper()
        ps = self.pubsub
        if sub == b"HELP" and len(args) == 2:
            return _help("PUBSUB", _PUBSUB_HELP)
        if sub in (b"CHANNELS", b"SHARDCHANNELS") and len(args) <= 3:
            if sub == b"SHARDCHANNELS":
                return []  # no shard channels: every node holds every key
            if len(args) == 2:
                return list(ps.channels)
            return [c for c in ps.channels if pattern_matches(args[2], c)]
        if sub in (b"NUMSUB", b"SHARDNUMSUB"):
            counts: list[Reply] = []
            for channel in args[2:]:
                here = ps.channels.get(channel) if sub == b"NUMSUB" else None
                counts += [channel, 0 if here is None else len(here)]
            return counts
        if sub == b"NUMPAT" and len(args) == 2:
            return sum(len(subscribers) for subscribers in ps.patterns.values())
        return Error(
            f"ERR unknown subcommand or wrong number of arguments for "
            f"'{args[1].decode(errors='replace')}'. Try PUBSUB HELP."
        )

    # --------------------------------------------------------- connection

    def _ping(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) > 2:
            return wrong_arity(args[0])
        if conn.protocol == 2 and self.pubsub.count(conn):
            return [b"pong", args[1] if len(args) == 2 else b""]  # Redis's, in subscribe mode
        return SimpleString("PONG") if len(args) == 1 else args[1]

    def _echo(self, conn: Connection, args: list[bytes]) -> Reply:
        return args[1] if len(args) == 2 else wrong_arity(args[0])

    def _quit(self, conn: Connection, args: list[bytes]) -> Reply:
        conn.closing = True
        return OK

    def _select(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) != 2:
            return wrong_arity(args[0])
        if args[1] != b"0":
            return Error("ERR DB index is out of range")
        return OK

    def _check_password(self, conn: Connection, user: bytes, password: bytes) -> Error | None:
        if self.requirepass is None:
            return Error(
                "ERR AUTH <password> called without any password configured for the default "
                "user. Are you sure your configuration is correct?"
            )
        ok = user == b"default" and hmac.compare_digest(password, self.requirepass.encode())
        if not ok:
            return Error("WRONGPASS invalid username-password pair or user is disabled.")
        conn.authenticated = True
        return None

    def _auth(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) == 2:
            err = self._check_password(conn, b"default", args[1])
        elif len(args) == 3:
            err = self._check_password(conn, args[1], args[2])
        else:
            return wrong_arity(args[0])
        return err if err is not None else OK

    def _hello(self, conn: Connection, args: list[bytes]) -> Reply:
        protocol = conn.protocol
        i = 1
        if len(args) > 1:
            try:
                protocol = int(args[1])
            except ValueError:
                return Error("ERR Protocol version is not an integer or out of range")
            if protocol not in (2, 3):
                return Error("NOPROTO unsupported protocol version")
            i = 2
        while i < len(args):
            opt = args[i].upper()
            if opt == b"AUTH" and i + 2 < len(args):
                err = self._check_password(conn, args[i + 1], args[i + 2])
                if err is not None:
                    return err
                i += 3
            elif opt == b"SETNAME" and i + 1 < len(args):
                conn.name = args[i + 1]
                i += 2
            else:
                return Error(f"ERR Syntax error in HELLO option '{opt.decode(errors='replace')}'")
        if self.requirepass is not None and not conn.authenticated:
            return Error("NOAUTH HELLO must be called with the client already authenticated")
        conn.protocol = protocol
        return {
            b"server": b"redis",
            b"version": REDIS_VERSION.encode(),
            b"proto": protocol,
            b"id": conn.id,
            b"mode": b"standalone",
            b"role": REDIS_ROLE.encode(),
            b"modules": [],
        }

    def _client(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) < 2:
            return wrong_arity(args[0])
        sub = args[1].upper()
        if sub == b"SETNAME" and len(args) == 3:
            if any(c <= 32 or c >= 127 for c in args[2]):
                return Error(
                    "ERR Client names cannot contain spaces, newlines or special characters."
                )
            conn.name = args[2]
            return OK
        if sub == b"GETNAME" and len(args) == 2:
            return conn.name or None
        if sub == b"ID" and len(args) == 2:
            return conn.id
        if sub == b"SETINFO" and len(args) == 4:
            return self._client_setinfo(conn, args[2], args[3])
        if sub == b"INFO" and len(args) == 2:
            conn.last_command = b"client|info"
            return Verbatim(self._client_line(conn, self._idle_of(conn)), "txt")
        if sub == b"LIST":
            conn.last_command = b"client|list"
            return self._client_list(args)
        if sub == b"KILL" and len(args) >= 3:
            return self._client_kill(conn, args)
        if sub in (b"NO-EVICT", b"NO-TOUCH") and len(args) == 3:
            return OK  # client libraries send these at connect: nothing to evict or touch
        if sub in (b"SETINFO", b"INFO", b"KILL", b"NO-EVICT", b"NO-TOUCH", b"SETNAME") or (
            sub in (b"GETNAME", b"ID") and len(args) != 2
        ):
            return wrong_arity(b"client|" + sub)
        if sub == b"HELP" and len(args) == 2:
            return _help("CLIENT", _CLIENT_HELP)
        return Error(
            f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try CLIENT HELP."
        )

    def _client_setinfo(self, conn: Connection, attr: bytes, value: bytes) -> Reply:
        option = attr.upper()
        if option not in (b"LIB-NAME", b"LIB-VER"):
            return Error(f"ERR Unrecognized option '{attr.decode(errors='replace')}'")
        if any(c < 33 or c > 126 for c in value):
            what = option.lower().decode()
            return Error(f"ERR {what} cannot contain spaces, newlines or special characters.")
        if option == b"LIB-NAME":
            conn.lib_name = value
        else:
            conn.lib_ver = value
        return OK

    def _idle_of(self, conn: Connection) -> float:
        if self.server is None:
            return 0.0
        for other, idle in self.server.client_states():
            if other.id == conn.id:
                return idle
        return 0.0

    def _client_line(self, conn: Connection, idle_s: float) -> bytes:
        """One line of ``CLIENT LIST``, with Redis 7.2's fields in Redis's order.

        Fields that describe Redis's buffers (``qbuf``, ``omem``, ...) are 0:
        clients parse them, none of them means anything here.
        """
        now = self.server.now() if self.server is not None else conn.created_at
        flags = "x" if conn.queued is not None else "b" if "blocked" in conn.extra else "N"
        multi = len(conn.queued) if conn.queued is not None else -1
        fields = [
            f"id={conn.id}",
            f"addr={conn.peer}",
            f"laddr={conn.laddr}",
            f"fd={conn.fd}",
            f"name={conn.name.decode(errors='replace')}",
            f"age={int(max(0.0, now - conn.created_at))}",
            f"idle={int(idle_s)}",
            f"flags={flags}",
            "db=0",
            "sub=0",
            "psub=0",
            "ssub=0",
            f"multi={multi}",
            "qbuf=0",
            "qbuf-free=0",
            "argv-mem=0",
            "multi-mem=0",
            "rbs=0",
            "rbp=0",
            "obl=0",
            "oll=0",
            "omem=0",
            "tot-mem=0",
            "events=r",
            f"cmd={conn.last_command.lower().decode(errors='replace')}",
            "user=default",
            "redir=-1",
            f"resp={conn.protocol}",
            f"lib-name={conn.lib_name.decode(errors='replace')}",
            f"lib-ver={conn.lib_ver.decode(errors='replace')}",
        ]
        return (" ".join(fields) + "\n").encode()

    def _client_list(self, args: list[bytes]) -> Reply:
        states = self.server.client_states() if self.server is not None else []
        if len(args) >= 4 and args[2].upper() == b"ID":
            try:
                wanted = {int(a) for a in args[3:]}
            except ValueError:
                return Error("ERR Invalid client ID")
            states = [(c, idle) for c, idle in states if c.id in wanted]
        elif len(args) == 4 and args[2].upper() == b"TYPE":
            kind = args[3].lower()
            if kind not in (b"normal", b"master", b"replica", b"slave", b"pubsub"):
                return Error(f"ERR Unknown client type '{args[3].decode(errors='replace')}'")
            if kind != b"normal":
                states = []
        elif len(args) != 2:
            return Error("ERR syntax error")
        return Verbatim(b"".join(self._client_line(c, idle) for c, idle in states), "txt")

    def _client_kill(self, conn: Connection, args: list[bytes]) -> Reply:
        """``CLIENT KILL addr:port`` (old form: OK) or ``CLIENT KILL <filter> <value> ...``."""
        states = self.server.client_states() if self.server is not None else []
        if len(args) == 3:
            victims = [c for c, _ in states if c.peer.encode() == args[2]]
            if not victims:
                return Error("ERR No such client")
            self._kill(conn, victims)
            return OK
        if len(args) % 2:
            return Error("ERR syntax error")
        skip_me = True
        victims = [c for c, _ in states]
        for i in range(2, len(args), 2):
            option, value = args[i].upper(), args[i + 1]
            if option == b"ID":
                try:
                    wanted = int(value)
                except ValueError:
                    return Error("ERR client-id should be greater than 0")
                victims = [c for c in victims if c.id == wanted]
            elif option == b"ADDR":
                victims = [c for c in victims if c.peer.encode() == value]
            elif option == b"LADDR":
                victims = [c for c in victims if c.laddr.encode() == value]
            elif option == b"USER":
                victims = victims if value == b"default" else []
            elif option == b"TYPE":
                if value.lower() not in (b"normal", b"master", b"replica", b"slave", b"pubsub"):
                    return Error(f"ERR Unknown client type '{value.decode(errors='replace')}'")
                victims = victims if value.lower() == b"normal" else []
            elif option == b"SKIPME":
                if value.lower() not in (b"yes", b"no"):
                    return Error("ERR syntax error")
                skip_me = value.lower() == b"yes"
            else:
                return Error("ERR syntax error")
        if skip_me:
            victims = [c for c in victims if c.id != conn.id]
        self._kill(conn, victims)
        return len(victims)

    def _kill(self, conn: Connection, victims: list[Connection]) -> None:
        for victim in victims:
            if victim.id == conn.id:
                conn.closing = True  # after this reply, as Redis closes its own caller
            elif self.server is not None:
                self.server.kill_client(victim.id)

    def _specs(self) -> dict[bytes, CommandSpec]:
        specs = dict(COMMANDS) if self.kv is not None else {}
        for name in self.table:
            specs.setdefault(
                name.lower(),
                CommandSpec(
                    name.decode().lower(), -1, frozenset({"fast"}), 0, 0, 0, ("@connection",)
                ),
            )
        return specs

    def _command(self, conn: Connection, args: list[bytes]) -> Reply:
        specs = self._specs()

        def info(spec: CommandSpec) -> Reply:
            return [
                spec.name.encode(),
                spec.arity,
                [SimpleString(f) for f in sorted(spec.flags)],
                spec.first_key,
                spec.last_key,
                spec.step,
                [SimpleString(c) for c in spec.categories],
            ]

        sub = args[1].upper() if len(args) >= 2 else b""
        if sub == b"COUNT":
            return len(specs)
        if sub == b"DOCS":
            return {}  # redis-cli uses docs only for hints; none is fine
        if sub == b"INFO":
            return [info(specs[a.lower()]) if a.lower() in specs else None for a in args[2:]]
        if sub == b"":
            return [info(spec) for spec in specs.values()]
        if sub == b"HELP" and len(args) == 2:
            return _help("COMMAND", _COMMAND_HELP)
        return Error(
            f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try COMMAND HELP."
        )

    def _config(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) >= 3 and args[1].upper() == b"GET":
            # What redis-benchmark asks at start: answer like a server without persistence
            # knobs (ours are not Redis's).
            known = {b"save": b"", b"appendonly": b"no"}
            out: dict[bytes, Reply] = {}
            for pattern in args[2:]:
                if pattern in known:
                    out[pattern] = known[pattern]
            return out
        return Error("ERR CONFIG subcommand not supported (only CONFIG GET)")

    def info_text(self, sections: frozenset[str] | None = None) -> str:
        """``INFO``'s text: Redis's sections and field names where Redis has the field.

        ``sections``: the lower-case section names to include; None: the
        default ones (every section but ``commandstats``, as in Redis).
        """
        st = self.tob.status()
        now = time.monotonic()
        uptime = int(now - self.started)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        rss = _rss_bytes()
        snaps = self.tob.snapshots
        server = self.server
        parts: dict[str, list[str]] = {
            "server": [
                f"redis_version:{REDIS_VERSION}",
                f"paxostob_version:{__version__}",
                "redis_mode:standalone",
                f"os:{platform.system()} {platform.release()} {platform.machine()}",
                f"arch_bits:{64 if sys.maxsize > 2**32 else 32}",
                f"process_id:{os.getpid()}",
                f"tcp_port:{server.port if server is not None else 0}",
                f"uptime_in_seconds:{uptime}",
                f"uptime_in_days:{uptime // 86400}",
                f"executable:{sys.executable}",
            ],
            "clients": [],
            "memory": [
                # A Python process has no allocator total to report: used_memory
                # is the resident set, as used_memory_rss.
                f"used_memory:{rss}",
                f"used_memory_human:{_human(rss)}",
                f"used_memory_rss:{rss}",
                f"used_memory_rss_human:{_human(rss)}",
                f"used_memory_peak:{usage.ru_maxrss * 1024}",
                f"used_memory_peak_human:{_human(usage.ru_maxrss * 1024)}",
                "maxmemory:0",
                "maxmemory_human:0B",
                "maxmemory_policy:noeviction",
                "mem_allocator:libc",
            ],
            "persistence": [
                "loading:0",
                f"rdb_changes_since_last_save:{self.tob.entries_since_snapshot}",
                f"rdb_bgsave_in_progress:{int(self.tob.snapshot_in_progress)}",
                f"rdb_saves:{snaps.saved}",
                f"rdb_last_save_time:{int(snaps.last_saved_at)}",
                f"rdb_last_bgsave_status:{'err' if snaps.last_failed else 'ok'}",
                f"rdb_last_bgsave_time_sec:"
                f"{round(snaps.last_encode_s + snaps.last_save_s) if snaps.saved else -1}",
                "aof_enabled:0",
                f"snapshot_last_slot:{snaps.last_slot}",
                f"snapshot_last_bytes:{snaps.last_bytes}",
                f"snapshots_installed_from_peers:{snaps.installed}",
                f"log_fsyncs:{getattr(self.tob.storage, 'sync_count', 0)}",
            ],
            "stats": [
                f"total_commands_processed:{self.stats.calls}",
                f"total_error_replies:{self.stats.errors}",
                f"unknown_commands:{self.stats.unknown}",
            ],
            "replication": [
                f"role:{REDIS_ROLE}",
            ],
            "cpu": [
                f"used_cpu_sys:{usage.ru_stime:.6f}",
                f"used_cpu_user:{usage.ru_utime:.6f}",
            ],
            "paxos": [
                f"node_id:{self.node_id}",
                f"role:{st.role.value}",
                f"leader_id:{st.leader or ''}",
                f"ballot:{st.ballot}",
                f"promised:{st.promised}",
                f"chosen_slot:{st.known_commit}",
                f"applied_slot:{st.decided_through}",
                f"delivered:{st.delivered}",
                f"pending:{st.pending}",
                f"elections:{st.elections}",
                f"pre_votes_lost:{st.pre_votes_lost}",
                f"leader_changes:{self.tob.leader_changes}",
                f"proposals_failed:{self.tob.proposals_failed}",
                *membership.info_lines(self),
            ],
            "commandstats": self.stats.info_lines(),
        }
        if server is not None:
            parts["clients"] = [
                f"connected_clients:{server.clients}",
                f"maxclients:{server.limits.maxclients}",
            ]
            parts["stats"][:0] = [
                f"total_connections_received:{server.connections}",
                f"rejected_connections:{server.rejected_connections}",
                f"total_net_input_bytes:{server.input_bytes}",
                f"total_net_output_bytes:{server.output_bytes}",
            ]
            parts["stats"].append(f"idle_clients_closed:{server.idle_closed}")
        if self.kv is not None:
            keys = self.kv.stored_keys()
            parts["keyspace"] = [f"db0:keys={keys},expires=0,avg_ttl=0"] if keys else []
        lines: list[str] = []
        for name, body in parts.items():
            if (name == "commandstats") if sections is None else (name not in sections):
                continue
            lines += [f"# {_TITLES.get(name, name.capitalize())}", *body, ""]
        return "\r\n".join(lines)

    def _info(self, conn: Connection, args: list[bytes]) -> Reply:
        wanted = {a.lower().decode(errors="replace") for a in args[1:]}
        sections: frozenset[str] | None = None
        if wanted & {"all", "everything"}:
            sections = frozenset(_SECTIONS)
        elif wanted and "default" not in wanted:
            sections = frozenset(wanted)
        text = self.info_text(sections)
        if text:  # as in Redis, every line ends in CRLF, the last one too
            text = text.removesuffix("\r\n") + "\r\n"
        return text.encode()

    # ------------------------------------------------------------- paxos

    async def _broadcast_payload(self, payload: bytes, started: float) -> Reply:
        reply = await self._broadcast_reply(payload)
        self.stats.record(b"paxos.broadcast", perf_counter() - started, type(reply) is Error)
        return reply

    async def _broadcast_reply(self, payload: bytes) -> Reply:
        try:
            d = await self.tob.broadcast(payload, timeout=self.broadcast_timeout_s)
        except QuorumTimeoutError as e:
            return Error(f"TRYAGAIN {e}")
        except NotRunningError:
            return Error("TRYAGAIN the node is shutting down")
        except PaxosError as e:
            return Error(f"ERR {e}")
        return [d.slot, d.sender.encode()]

    def _broadcast(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        if len(args) != 2:
            return wrong_arity(args[0])
        return self._broadcast_payload(TAG_BROADCAST + args[1], perf_counter())

    def _read(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) != 3:
            return wrong_arity(args[0])
        try:
            start, count = int(args[1]), int(args[2])
        except ValueError:
            return Error("ERR value is not an integer or out of range")
        if count < 0 or count > 100_000:
            return Error("ERR count must be 0..100000")
        return [[d.slot, d.sender.encode(), d.payload] for d in self.log.read(start, count)]

    def _wait(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        if len(args) != 3:
            return wrong_arity(args[0])
        try:
            position, timeout_ms = int(args[1]), int(args[2])
        except ValueError:
            return Error("ERR value is not an integer or out of range")
        if not 0 <= timeout_ms <= 600_000:
            return Error("ERR timeout_ms must be 0..600000")
        if self.log.applied >= position:
            return self.log.applied
        return self._wait_for(position, timeout_ms / 1000, perf_counter())

    async def _wait_for(self, position: int, timeout_s: float, started: float) -> Reply:
        async def until() -> None:
            while self.log.applied < position:
                self._changed.clear()
                await self._changed.wait()

        reply: Reply
        try:
            await asyncio.wait_for(until(), timeout_s)
        except TimeoutError:
            reply = Error(f"TRYAGAIN position {position} not applied yet (at {self.log.applied})")
        else:
            reply = self.log.applied
        self.stats.record(b"paxos.wait", perf_counter() - started, type(reply) is Error)
        return reply

    def _snapshot(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        if len(args) != 1:
            return wrong_arity(args[0])
        sm = self.tob.state_machine
        if self.kv is None or sm is None:
            return Error("ERR PAXOS.SNAPSHOT needs the node's key-value store")
        busy = self._no_leader()
        if busy is not None:
            return busy
        out: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def barrier_done(result: list[KvReply] | BaseException) -> None:
            if out.done():
                return
            if isinstance(result, BaseException):
                out.set_result(_as_error(result))
                return
            # The barrier was applied here: the state now holds every write
            # acknowledged before the command arrived. Copy it at this one
            # point, with its position and clock (no await in between).
            position, clock_ms = self.log.applied, self.log.clock_ms
            copy = getattr(sm, "snapshot_copy", None)
            step: Callable[[], bytes | None] = (
                copy() if copy is not None else functools.partial(bytes, sm.snapshot())
            )
            task = asyncio.ensure_future(self._encode(step, position, clock_ms))
            task.add_done_callback(encoded)

        def encoded(task: asyncio.Future[Reply]) -> None:
            if out.done():
                return
            error = None if task.cancelled() else task.exception()
            if task.cancelled() or error is not None:
                out.set_result(_as_error(error or asyncio.CancelledError()))
            else:
                out.set_result(task.result())

        # A point read of no key: an empty entry ordered after the command
        # arrived (kvstore's read barrier), nothing written to the log.
        self._kv_submit(conn, [[b"EXISTS", b""]], barrier_done)
        return out

    async def _encode(self, step: Callable[[], bytes | None], position: int, clock: int) -> Reply:
        # Encoded a step at a time between the node's other work, as the node's
        # own snapshots are: a large state must not stall the loop (and the
        # leader's heartbeats) for the whole encoding.
        while (data := step()) is None:
            await asyncio.sleep(0)
        return [position, clock, data]

    def _status(self, conn: Connection, args: list[bytes]) -> Reply:
        st = self.tob.status()
        return {
            b"node_id": self.node_id.encode(),
            b"role": st.role.value.encode(),
            b"leader_id": (st.leader or "").encode(),
            b"ballot": str(st.ballot).encode(),
            b"chosen_slot": st.known_commit,
            b"applied_slot": st.decided_through,
            b"delivered": st.delivered,
            b"applied": self.log.applied,
        }
