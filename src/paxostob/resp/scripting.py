"""``EVAL``/``EVALSHA``/``SCRIPT`` over RESP: this node's script cache.

Theory of operation (``kv.scripting``): a script runs in the log, on every
replica, so the log entry carries the script's *text*: ``resolve_scripts``
turns each ``EVALSHA`` of a script cached here into ``EVAL`` of its text
before the command is submitted. The cache is this node's (as each Redis
server's is): ``SCRIPT LOAD`` fills it, an ``EVAL`` adds its script.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kv.scripting import compile_error, sha1hex
from .family import OK, Family, Handler, wrong_arity
from .protocol import Error, Reply
from .server import Connection

if TYPE_CHECKING:
    from .commands import NodeCommands

__all__ = ["SCRIPTS_MAX", "ScriptingCommands"]


#: Scripts a node caches for ``EVALSHA`` (the oldest is forgotten first; a
#: client then gets ``NOSCRIPT`` and loads it again, as redis-py's ``Script``
#: does). Redis 7.0 does not bound its cache; applications use a handful.
SCRIPTS_MAX = 10_000


class ScriptingCommands(Family):
    """``SCRIPT``, and the cache ``EVALSHA`` resolves against."""

    needs_kv = True

    def __init__(self, node: NodeCommands) -> None:
        super().__init__(node)
        #: Scripts by SHA-1 (lower-case hex): this node's cache for ``EVALSHA``.
        #: The log carries each script's text, so the cache is node-local (see docs).
        self.scripts: dict[bytes, bytes] = {}

    def table(self) -> dict[bytes, Handler]:
        return {
            b"SCRIPT": self._script,
        }

    def resolve_scripts(self, ops: list[list[bytes]], first: int) -> list[list[bytes]]:
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
