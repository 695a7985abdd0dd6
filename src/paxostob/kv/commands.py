"""The commands of the key-value state machine and their log-entry encoding.

Theory of operation: every replica applies the same log of ``Entry`` values in
the same order, so every replica must reach the same state and produce the
same replies. An entry therefore carries everything a command depends on:

- ``now_ms``, the time the entry is applied at: key expiry is a function of
  the log, never of a replica's own clock. ``KvStateMachine`` replaces it by
  the log's clock, which the leader decides (``core.multipaxos``: clock
  stamps); the proposer's ``now_ms`` in the encoding counts only in a log
  without a clock;
- ``ops``, one command or a whole ``MULTI``/``EXEC`` transaction, applied in
  order with nothing in between (replies are collected, one per op; like
  Redis, an op that fails does not undo the others).

An op is a Redis command as its argument list (``Op((b"SET", b"k", b"v"))``):
the state machine, not the encoding, knows the commands, so adding one never
changes the log format.

Entry, version 1 (``uvarint`` = unsigned LEB128, shortest form)::

    u8      version (= 1)
    u64     now_ms (big-endian, at most 2**63 - 1)
    uvarint count of ops
    count times:
        uvarint count of arguments (at least 1: the command name)
        each: uvarint length, bytes

``COMMANDS`` describes each command like Redis' ``COMMAND INFO`` (arity, flags,
key positions, ACL categories): the server uses it to answer ``COMMAND``, to
check arity before proposing, and to tell reads (which may take the read
path) from writes. It is the union of the command families' tables
(``strings``, ``keys``, ...: one module per family, each command next to its
handler).

Rules: ``decode_entry`` reads bytes from outside: it never trusts a count or a
length, consumes its input exactly, and raises ``DecodeError`` (never another
exception) on anything malformed; what it accepts re-encodes to the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigurationError, DecodeError
from . import (
    blocking,
    hashes,
    keys,
    lists,
    pubsub,
    scripting,
    sets,
    streams,
    strings,
    transactions,
    zsets,
)
from .table import Command, CommandSpec
from .wire import encode_uvarint, read_uvarint

__all__ = [
    "COMMANDS",
    "ENTRY_VERSION",
    "FAMILIES",
    "NOW_MS_MAX",
    "TABLE",
    "CommandSpec",
    "Entry",
    "Op",
    "decode_entry",
    "encode_entry",
    "encode_entry_of",
    "encode_op",
    "is_read_only",
]

#: The version byte ``encode_entry`` writes and the only one ``decode_entry`` reads.
ENTRY_VERSION = 1
#: ``now_ms`` is a signed 64-bit millisecond time, as in Redis.
NOW_MS_MAX = (1 << 63) - 1

_HEAD = struct.Struct(">BQ")  # version, now_ms


@dataclass(frozen=True, slots=True)
class Op:
    """One command: ``args[0]`` is its name (any case), the rest its arguments."""

    args: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.args:
            raise ConfigurationError("an op needs at least its command name")
        if not all(isinstance(a, bytes) for a in self.args):
            raise ConfigurationError("op arguments are bytes")

    @classmethod
    def of(cls, *parts: bytes | str | int) -> Op:
        """An op from convenient parts: ``str`` is UTF-8, ``int`` is its decimal text."""
        return cls(tuple(_as_bytes(p) for p in parts))

    @property
    def name(self) -> bytes:
        """The command name in lower case (as ``COMMANDS`` keys it)."""
        return self.args[0].lower()


@dataclass(frozen=True, slots=True)
class Entry:
    """One value of the replicated log: ``ops`` applied atomically at time ``now_ms``."""

    now_ms: int
    ops: tuple[Op, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.now_ms <= NOW_MS_MAX:
            raise ConfigurationError(f"now_ms {self.now_ms} is outside 0..{NOW_MS_MAX}")


def _as_bytes(part: bytes | str | int) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode("utf-8")
    return str(part).encode("ascii")


def encode_entry(entry: Entry) -> bytes:
    """``entry`` in the version-1 layout."""
    return encode_entry_of(entry.now_ms, [encode_op(op.args) for op in entry.ops])


def encode_op(args: Sequence[bytes]) -> bytes:
    """One op in the entry layout (its argument count, then each length and argument).

    Accepts exactly what ``Op`` accepts (a name and bytes arguments), without
    building ``Op`` objects: this runs for every command a client sends.
    """
    if not args:
        raise ConfigurationError("an op needs at least its command name")
    small = _SMALL_UVARINTS
    parts = [small[len(args)] if len(args) < 0x80 else encode_uvarint(len(args))]
    for arg in args:
        if type(arg) is not bytes:
            raise ConfigurationError("op arguments are bytes")
        n = len(arg)
        parts.append(small[n] if n < 0x80 else encode_uvarint(n))
        parts.append(arg)
    return b"".join(parts)


#: ``encode_uvarint(n)`` for the one-byte values (nearly every count and length).
_SMALL_UVARINTS = [bytes((n,)) for n in range(0x80)]


def encode_entry_of(now_ms: int, ops: Sequence[bytes]) -> bytes:
    """An entry from ops already encoded by ``encode_op`` (equal to ``encode_entry``'s bytes)."""
    if not 0 <= now_ms <= NOW_MS_MAX:
        raise ConfigurationError(f"now_ms {now_ms} is outside 0..{NOW_MS_MAX}")
    return b"".join([_HEAD.pack(ENTRY_VERSION, now_ms), encode_uvarint(len(ops)), *ops])


def decode_entry(data: bytes) -> Entry:
    """The entry ``encode_entry`` made of ``data``; ``DecodeError`` if ``data`` is not one.

    Every replica decodes every entry, so this is on the hot path: one-byte
    varints (nearly every count and length) are read inline, and the error
    text of a field is only built when the field is malformed.
    """
    data = bytes(data)
    end = len(data)
    if end < _HEAD.size:
        raise DecodeError(f"entry of {end} bytes is shorter than its {_HEAD.size}-byte header")
    version, now_ms = _HEAD.unpack_from(data, 0)
    if version != ENTRY_VERSION:
        raise DecodeError(f"entry version {version} is not {ENTRY_VERSION}")
    if now_ms > NOW_MS_MAX:
        raise DecodeError(f"entry now_ms {now_ms} is above {NOW_MS_MAX}")
    count, pos = read_uvarint(data, _HEAD.size, "the op count")
    # An op takes at least two bytes (its argument count and one length): a
    # garbled count cannot make us loop or allocate beyond the input's size.
    if count * 2 > end - pos:
        raise DecodeError(f"entry claims {count} ops but has {end - pos} bytes left")
    ops = []
    for i in range(count):
        if pos < end and data[pos] < 0x80:
            argc = data[pos]
            pos += 1
        else:
            argc, pos = read_uvarint(data, pos, f"the argument count of op {i}")
        if argc == 0:
            raise DecodeError(f"op {i} has no command name")
        if argc > end - pos:
            raise DecodeError(f"op {i} claims {argc} arguments but has {end - pos} bytes left")
        args = []
        for j in range(argc):
            if pos < end and data[pos] < 0x80:
                length = data[pos]
                pos += 1
            else:
                length, pos = read_uvarint(data, pos, f"the length of argument {j} of op {i}")
            stop = pos + length
            if stop > end:
                raise DecodeError(f"entry ends inside argument {j} of op {i}")
            args.append(data[pos:stop])
            pos = stop
        op = _new_op(Op)
        _set_field(op, "args", tuple(args))  # checked above: non-empty, all bytes
        ops.append(op)
    if pos != end:
        raise DecodeError(f"entry has {end - pos} trailing bytes")
    return Entry(now_ms, tuple(ops))


#: ``Op`` without ``__post_init__``'s checks, for ops decode_entry already checked.
_new_op = object.__new__
_set_field = object.__setattr__


# --- the command table ------------------------------------------------------------------

#: The command families (one module each, with its own table), in the order ``COMMAND`` lists them.
FAMILIES: tuple[dict[bytes, Command], ...] = (
    strings.TABLE,
    keys.TABLE,
    hashes.TABLE,
    lists.TABLE,
    sets.TABLE,
    zsets.TABLE,
    streams.TABLE,
    blocking.TABLE,
    transactions.TABLE,
    scripting.TABLE,
    pubsub.TABLE,
)

#: Every command of every family, by lower-case name.
TABLE: dict[bytes, Command] = {}
for _family in FAMILIES:
    assert TABLE.keys().isdisjoint(_family), "a command belongs to one family"
    TABLE.update(_family)

#: Every command the state machine implements, by lower-case name; as Redis 7.0 describes it.
COMMANDS: dict[bytes, CommandSpec] = {name: c.spec for name, c in TABLE.items() if not c.internal}


def is_read_only(entry: Entry) -> bool:
    """Whether every op of ``entry`` is a known read-only command (it changes no key).

    A read-only entry goes through the log when a read must be linearizable;
    once in the log it is applied like any entry: its ``now_ms`` advances the
    machine's clock on every replica.
    """
    for op in entry.ops:
        spec = COMMANDS.get(op.name)
        if spec is None or spec.is_write:
            return False
    return True
