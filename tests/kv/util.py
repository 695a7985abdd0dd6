"""Shorthands for kv tests: commands written as text, applied at a chosen time."""

from __future__ import annotations

from collections.abc import Sequence

from paxostob.kv.commands import Entry, Op
from paxostob.kv.machine import KvMachine
from paxostob.kv.replies import Error, Reply

#: A time in the 2020s, so relative and absolute expiry times look like real ones.
T0_MS = 1_700_000_000_000

Command = str | Sequence[bytes | str | int]

SYNTAX = Error("ERR syntax error")
NOT_INTEGER = Error("ERR value is not an integer or out of range")


def op(command: Command) -> Op:
    """``"SET k v"`` (split on spaces) or ``("SET", "k", "a value")``."""
    return Op.of(*command.split(" ")) if isinstance(command, str) else Op.of(*command)


def run(machine: KvMachine, now_ms: int, *commands: Command) -> list[Reply]:
    """Apply ``commands`` as one entry at ``now_ms``."""
    return machine.apply(Entry(now_ms, tuple(op(c) for c in commands)))


def one(machine: KvMachine, command: Command, now_ms: int = T0_MS) -> Reply:
    [reply] = run(machine, now_ms, command)
    return reply


def arity(name: str) -> Error:
    return Error(f"ERR wrong number of arguments for '{name}' command")
