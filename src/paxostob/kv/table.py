"""What each command family declares of its commands: Redis' ``COMMAND INFO`` and a handler.

Each family module (``strings``, ``keys``, ...) holds a ``TABLE`` of
``Command`` by lower-case name; ``commands.COMMANDS`` (the specs) and the
machine's dispatch are the union of the families' tables, so a new command
is added in one place, next to its handler.
"""

from __future__ import annotations

from dataclasses import dataclass

from .keyspace import Handler

__all__ = ["ALL", "NO_KEYS", "ONE", "Command", "CommandSpec", "command"]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """What Redis' ``COMMAND INFO`` says of a command (the fields this store implements).

    ``arity`` counts the name: ``n > 0`` means exactly ``n`` arguments, ``-n``
    at least ``n``. Keys are at ``first_key``, ``first_key + step``, ... up to
    ``last_key`` (``-1``: the last argument); ``0, 0, 0`` means no keys.
    ``flags`` holds ``write`` or ``readonly`` and, as in Redis, ``denyoom``
    (may grow memory) and ``fast`` (O(1) or O(log n)).
    """

    name: str
    arity: int
    flags: frozenset[str]
    first_key: int
    last_key: int
    step: int
    categories: tuple[str, ...]

    @property
    def is_write(self) -> bool:
        """Whether the command may change the state (``False``: a read-only command).

        A script (``@scripting``: ``EVAL``) may write whatever its flags say.
        """
        return "write" in self.flags or "@scripting" in self.categories

    def arity_ok(self, argc: int) -> bool:
        """Whether ``argc`` arguments (the name included) fit the arity."""
        return argc == self.arity if self.arity > 0 else argc >= -self.arity

    def key_positions(self, argc: int) -> range:
        """The argument indexes that hold keys in a command of ``argc`` arguments."""
        if self.first_key == 0:
            return range(0)
        last = self.last_key if self.last_key >= 0 else argc + self.last_key
        return range(self.first_key, min(last, argc - 1) + 1, self.step)


@dataclass(frozen=True, slots=True)
class Command:
    """A command of a family: its spec, its handler, whether ``KvMachine.read`` answers it.

    ``local_read``: a read of named keys whose only effect in an applied
    entry would be removing an expired key, so it may run on one replica's
    state without going through the log (``KvMachine.read``).
    """

    spec: CommandSpec
    handler: Handler
    local_read: bool = False
    #: Built by the RESP server, never sent by a client: not in ``COMMANDS``.
    internal: bool = False


def command(
    name: str,
    arity: int,
    flags: str,
    keys: tuple[int, int, int],
    categories: str,
    handler: Handler,
    *,
    local_read: bool = False,
    internal: bool = False,
) -> tuple[bytes, Command]:
    """A table row: ``name`` as Redis 7.0's ``COMMAND INFO`` describes it, and its handler."""
    spec = CommandSpec(name, arity, frozenset(flags.split()), *keys, tuple(categories.split()))
    assert not (local_read and spec.is_write), f"{name}: a local read changes nothing"
    return name.encode("ascii"), Command(spec, handler, local_read, internal)


ONE = (1, 1, 1)
ALL = (1, -1, 1)
NO_KEYS = (0, 0, 0)
