"""The commands a paxostob node answers over RESP: the dispatcher.

Key-value commands (GET, SET, INCR, ... every command of
``kv.commands.COMMANDS``) go through ``apps.kv.KeyValueStore``: writes as log
entries, point reads after an entry proposed after them is applied here, so
they are linearizable on any node: a follower's proposal is forwarded to the
leader by the broadcast layer. While no leader is known the client gets
``-TRYAGAIN ...`` at once (retryable), never a stale or wrong answer.

Every other command belongs to a family, one module each, listed in
``FAMILIES`` (the registration point: a new family is one line there):
``connection`` (PING, ECHO, QUIT, SELECT, AUTH, HELLO, CLIENT),
``introspection`` (INFO, COMMAND, CONFIG GET), ``paxos`` (PAXOS.*),
``membership`` (PAXOS.MEMBERS, PAXOS.MEMBER),
``pubsub`` (SUBSCRIBE, PUBSUB, ...), ``blocking`` (BLPOP, ...),
``scripting`` (SCRIPT; EVALSHA's cache), ``stream_reads`` (XREAD BLOCK) and
``transactions`` (MULTI, EXEC, WATCH, ...). ``resp.family`` says what a
family is. The dispatcher checks what applies to every command
(authentication, RESP2 subscribe mode, a ``MULTI`` in progress, the stats)
and calls the family's handler.

Anything else gets Redis's ``-ERR unknown command ...`` reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TypeVar

from ..apps.broadcast_log import BroadcastLog
from ..errors import PaxosError
from ..kv.commands import COMMANDS
from ..kv.replies import Reply as KvReply
from ..node.repeats import RepeatLimiter
from ..node.tob import TotalOrderBroadcast
from . import resp3_scores
from .blocking import BlockingCommands
from .connection import BEFORE_AUTH, ConnectionCommands
from .family import Family, Handler, KvExecutor, as_error, unknown_command, wrong_arity
from .introspection import IntrospectionCommands
from .membership import MembershipCommands
from .paxos import PaxosCommands
from .protocol import Error, Reply
from .pubsub import IN_SUBSCRIBE_MODE, PubSub, PubSubCommands
from .scripting import ScriptingCommands
from .server import Connection, RespServer
from .stats import CommandStats
from .stream_reads import StreamReadCommands
from .transactions import IN_MULTI, TransactionCommands

__all__ = ["FAMILIES", "KvExecutor", "NodeCommands"]

log = logging.getLogger("paxostob.resp")

F = TypeVar("F", bound=Family)

#: The command families, in the order their commands are listed (``COMMAND``).
#: A family's commands are registered from its ``table()``; one that
#: ``needs_kv`` only on a node with a key-value store.
FAMILIES: tuple[type[Family], ...] = (
    ConnectionCommands,
    IntrospectionCommands,
    PaxosCommands,
    MembershipCommands,
    PubSubCommands,
    BlockingCommands,
    ScriptingCommands,
    TransactionCommands,
    StreamReadCommands,
)


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
        families: tuple[type[Family], ...] = FAMILIES,
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
        #: This node's subscribers (``resp.pubsub``): ``PUBLISH`` entries applied here reach them.
        self.pubsub = PubSub()
        #: Every command this node answers besides the key-value ones, by upper-case name.
        self.table: dict[bytes, Handler] = {}
        #: The families registered here, by class.
        self.families: dict[type[Family], Family] = {}
        for family_class in families:
            if family_class.needs_kv and kv is None:
                continue
            family = family_class(self)
            self.families[family_class] = family
            self.table.update(family.table())
        # The families the dispatcher itself calls into (None on a node without them).
        self.transactions = self._family(TransactionCommands)
        self.scripting = self._family(ScriptingCommands)
        blocking = self._family(BlockingCommands)
        if kv is not None:
            if blocking is not None:
                kv.set_on_applied(blocking.on_applied)
            kv.set_on_publish(self.pubsub.publish)

    def _family(self, family_class: type[F]) -> F | None:
        family = self.families.get(family_class)
        return family if isinstance(family, family_class) else None

    def info_text(self, sections: frozenset[str] | None = None) -> str:
        """``INFO``'s text (``resp.introspection``); empty without that family."""
        introspection = self._family(IntrospectionCommands)
        return "" if introspection is None else introspection.info_text(sections)

    def dispatch_many(
        self, conn: Connection, commands: list[list[bytes]]
    ) -> list[tuple[Reply | Awaitable[Reply], int]]:
        """Dispatch the commands of one read, in order.

        Each key-value command is a unit of its own; consecutive ones are
        handed to the store in one call (``submit_run``), which is only
        cheaper than one call each: the store groups every command submitted
        in this loop pass, pipelined ones included, into one log entry
        (``apps.kv``), so a pipeline (``redis-benchmark -P 16``) costs one
        consensus round, and the connection's commands take effect in order.
        """
        conn.last_command = commands[-1][0]  # CLIENT LIST's cmd (CLIENT sets its own)
        if len(commands) == 1:  # one command per read (no pipelining): the common case
            args = commands[0]
            if self._plain_kv(conn, args):
                return [(self.kv_one(conn, args), conn.protocol)]
            return [(self.dispatch(conn, args), conn.protocol)]
        out: list[tuple[Reply | Awaitable[Reply], int]] = []
        run: list[list[bytes]] = []
        for args in commands:
            if conn.closing:
                break
            if self._plain_kv(conn, args):
                run.append(args)
                continue
            if run:
                out += self._kv_run(conn, run)
                run = []
            out.append((self.dispatch(conn, args), conn.protocol))
        if run:
            out += self._kv_run(conn, run)
        return out

    def _plain_kv(self, conn: Connection, args: list[bytes]) -> bool:
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

    def kv_one(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        """Submit one key-value command; its reply (a future), or TRYAGAIN without a leader."""
        busy = self.no_leader()
        if busy is not None:
            self.stats.reject(args[0].lower())
            return busy
        # A future resolved by one callback, not a coroutine and a task per
        # command: this is the path of every key-value command.
        out: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        ops = [args]
        started = perf_counter()

        # RESP3 clients get Redis 7's nested member-score pairs (resp3_scores).
        reshape = conn.protocol == 3 and args[0].lower() in resp3_scores.NAMES

        def done(result: list[KvReply] | BaseException) -> None:
            self.stats.record_group(ops, perf_counter() - started, result)
            if not out.done():
                if not isinstance(result, list):
                    out.set_result(as_error(result))
                else:
                    out.set_result(resp3_scores.reshape(args, result[0]) if reshape else result[0])

        self.kv_submit(conn, ops, done)
        return out

    def _kv_run(
        self, conn: Connection, run: list[list[bytes]]
    ) -> list[tuple[Reply | Awaitable[Reply], int]]:
        """Submit consecutive key-value commands, each a unit of its own, in one call."""
        protocol = conn.protocol
        busy = self.no_leader()
        if busy is not None:
            for args in run:
                self.stats.reject(args[0].lower())
            return [(busy, protocol)] * len(run)
        assert self.kv is not None
        loop = asyncio.get_running_loop()
        outs: list[asyncio.Future[Reply]] = [loop.create_future() for _ in run]
        started = perf_counter()

        # RESP3 clients get Redis 7's nested member-score pairs (resp3_scores).
        reshape = protocol == 3 and any(args[0].lower() in resp3_scores.NAMES for args in run)

        def done(first: int, count: int, result: list[KvReply] | BaseException) -> None:
            self.stats.record_group(run[first : first + count], perf_counter() - started, result)
            if isinstance(result, list):
                for k in range(count):
                    out = outs[first + k]
                    if not out.done():
                        reply = result[k]
                        out.set_result(
                            resp3_scores.reshape(run[first + k], reply) if reshape else reply
                        )
            else:
                error = as_error(result)
                for out in outs[first : first + count]:
                    if not out.done():
                        out.set_result(error)

        try:
            # The connection orders its own commands (a read never sees its later writes).
            self.kv.submit_run(self._resolved(run), done, caller=conn.id)
        except PaxosError as e:
            loop.call_soon(done, 0, len(run), e)
        return [(out, protocol) for out in outs]

    def dispatch(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        name = args[0].upper()
        if self.requirepass is not None and not conn.authenticated and name not in BEFORE_AUTH:
            self._reject_known(name)
            return Error("NOAUTH Authentication required.")
        if conn.protocol == 2 and name not in IN_SUBSCRIBE_MODE and self.pubsub.count(conn):
            refused = self._refuse_in_subscribe_mode(args)
            if refused is not None:
                return refused
        if conn.queued is not None and name not in IN_MULTI:
            assert self.transactions is not None  # only its MULTI sets ``queued``
            return self.transactions.queue(conn, name, args)
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
        return self.kv_one(conn, args)

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

    def no_leader(self) -> Error | None:
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

    def _resolved(self, ops: list[list[bytes]]) -> list[list[bytes]]:
        """``ops`` with each ``EVALSHA`` of a script cached here made ``EVAL`` (``scripting``)."""
        scripting = self.scripting
        if scripting is not None:
            for i, op in enumerate(ops):
                if len(op[0]) in (4, 7) and op[0].upper() in (b"EVAL", b"EVALSHA"):
                    return scripting.resolve_scripts(ops, i)
        return ops

    def kv_submit(
        self,
        conn: Connection,
        ops: list[list[bytes]],
        done: Callable[[list[KvReply] | BaseException], None],
    ) -> None:
        assert self.kv is not None
        ops = self._resolved(ops)
        try:
            # The connection orders its own commands (a read never sees its later writes).
            self.kv.submit_callback(ops, done, caller=conn.id)
        except PaxosError as e:
            asyncio.get_running_loop().call_soon(done, e)
