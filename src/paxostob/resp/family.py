"""What a command family is, and the replies every family shares.

Theory of operation: the RESP commands a node answers are grouped by family,
one module each (``connection``, ``introspection``, ``paxos``, ``pubsub``,
``blocking``, ``scripting``, ``transactions``); the dispatcher
(``resp.commands.NodeCommands``) builds its command table from the families
listed in ``resp.commands.FAMILIES``. A family is a class made with the
dispatcher (``self.node``: the node's broadcast, key-value store, stats and
server) whose ``table()`` maps upper-case command names to handlers. A
handler takes the connection and the command's arguments (the name first)
and returns a reply, or an awaitable of one for a command that waits (a log
entry, a blocked pop).

Adding a family: a module with a ``Family`` subclass and its ``table()``,
and one line in ``FAMILIES``. A family that needs the key-value store sets
``needs_kv``; it is then registered only on a node that has one.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol

from ..errors import NotRunningError, PaxosError, QuorumTimeoutError, ResultUnknownError
from ..kv.commands import Entry
from ..kv.replies import Reply as KvReply
from .protocol import Error, Reply, SimpleString
from .server import Connection

if TYPE_CHECKING:
    from .commands import NodeCommands

__all__ = [
    "OK",
    "QUEUED",
    "REDIS_ROLE",
    "REDIS_VERSION",
    "RESULT_UNKNOWN",
    "Family",
    "Handler",
    "KvExecutor",
    "as_error",
    "help_reply",
    "unknown_command",
    "wrong_arity",
]

log = logging.getLogger("paxostob.resp")

Handler = Callable[[Connection, list[bytes]], "Reply | Awaitable[Reply]"]

OK = SimpleString("OK")
QUEUED = SimpleString("QUEUED")
#: The Redis release whose replies the key-value commands reproduce (the
#: differential tests run them against redis-server 7.0). Clients read it
#: from HELLO and INFO to decide which commands and options they may send.
REDIS_VERSION = "7.0.0"
#: Every node accepts every command (a follower forwards writes through the
#: log), so to a client each one is a master: a client library that saw
#: "replica"/"slave" would refuse to send it writes. The Paxos role is in
#: INFO's ``# Paxos`` section and PAXOS.STATUS.
REDIS_ROLE = "master"
#: The reply to a command applied on this node only inside a snapshot from a
#: peer (``ResultUnknownError``): it took effect, exactly once, but its reply
#: was computed elsewhere. Retryable for reads; a write was applied.
RESULT_UNKNOWN = Error("TRYAGAIN applied elsewhere; the reply was not kept")


class KvExecutor(Protocol):
    """Applies commands as one atomic unit of a log entry (``apps.kv.KeyValueStore``)."""

    #: How point reads are ordered: ``read-index`` or ``barrier`` (``apps.kv.READ_MODES``).
    reads: str

    def submit_callback(
        self,
        ops: Sequence[Sequence[bytes]],
        done: Callable[[list[KvReply] | BaseException], None],
        *,
        caller: object = None,
    ) -> None: ...

    def submit_run(
        self,
        ops: Sequence[Sequence[bytes]],
        done: Callable[[int, int, list[KvReply] | BaseException], None],
        *,
        caller: object = None,
    ) -> None: ...

    def stored_keys(self) -> int: ...

    def set_on_applied(self, callback: Callable[[Entry | None], None] | None) -> None: ...

    def set_on_publish(self, callback: Callable[[bytes, bytes], int] | None) -> None: ...


class Family(abc.ABC):
    """A family of commands: its handlers, by upper-case command name (``table``)."""

    #: Registered only on a node with a key-value store.
    needs_kv: ClassVar[bool] = False

    def __init__(self, node: NodeCommands) -> None:
        self.node = node

    @abc.abstractmethod
    def table(self) -> dict[bytes, Handler]:
        """The family's handlers, by upper-case command name."""


def as_error(e: BaseException) -> Error:
    """The reply of a command whose log entry failed (retryable when it may be)."""
    if isinstance(e, QuorumTimeoutError):
        return Error(f"TRYAGAIN {e}")
    if isinstance(e, ResultUnknownError):
        return RESULT_UNKNOWN
    if isinstance(e, NotRunningError | asyncio.CancelledError):
        return Error("TRYAGAIN the node is shutting down")
    if isinstance(e, PaxosError):
        return Error(f"ERR {e}")
    log.error("a key-value entry failed unexpectedly", exc_info=e)
    return Error(f"ERR internal error: {type(e).__name__}")


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


def help_reply(command: str, lines: Sequence[str]) -> Reply:
    """Redis's HELP reply: a header line, the subcommands, then HELP itself."""
    text = [
        f"{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        *lines,
        "HELP",
        "    Print this help.",
    ]
    return [SimpleString(line) for line in text]
