"""``Keyspace``: the state every command family works on, and the helpers they share.

Theory of operation: the key space is the machine's clock, a dictionary of
live (and not yet removed expired) keys, their expiry times, and the
structures that make the sweep and ``SCAN`` cheap. Each command family
(``strings``, ``keys``, ...) is a module of plain functions
``handler(keyspace, args) -> Reply`` with its own command table; ``machine``
dispatches to them. Nothing here reads a clock or draws a random number: see
``machine`` for the determinism rules every family follows.

Rules: a handler never raises for client input: it returns an ``Error`` or
raises ``Failed``, which the dispatcher turns into the reply.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Callable
from typing import TypeVar

from .replies import Error, Reply
from .values import Aggregate, HashValue, ListValue, SetValue, Value, ZSetValue

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "NOT_INTEGER",
    "SYNTAX",
    "Failed",
    "Handler",
    "Keyspace",
    "arity_error",
    "c_string",
    "parse_int",
    "text",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1
SECONDS_MAX = INT64_MAX // 1000  # so seconds * 1000 fits (C truncates: also -SECONDS_MAX)
SCAN_COUNT_DEFAULT = 10  # as in Redis

# Redis' string2ll: no sign but '-', no leading zeros, no "-0", under 21 bytes.
_INTEGER = re.compile(rb"0|-?[1-9][0-9]{0,19}")

SYNTAX = Error("ERR syntax error")
NOT_INTEGER = Error("ERR value is not an integer or out of range")
INVALID_CURSOR = Error("ERR invalid cursor")
T = TypeVar("T", HashValue, ListValue, SetValue, ZSetValue)

WRONGTYPE = Error("WRONGTYPE Operation against a key holding the wrong kind of value")

# SET/GETEX option names (Redis' OBJ_* flags).
EX, PX, EXAT, PXAT = "EX", "PX", "EXAT", "PXAT"


class Failed(Exception):
    """Ends a command early with an error reply; caught by the dispatcher, never escapes."""

    def __init__(self, reply: Error) -> None:
        super().__init__(reply.text)
        self.reply = reply


def parse_int(raw: bytes) -> int:
    """``raw`` as Redis parses a 64-bit integer argument or value (``string2ll``)."""
    if _INTEGER.fullmatch(raw) is None:
        raise Failed(NOT_INTEGER)
    value = int(raw)
    if not INT64_MIN <= value <= INT64_MAX:
        raise Failed(NOT_INTEGER)
    return value


def parse_cursor(raw: bytes) -> int:
    """A ``SCAN`` cursor as Redis reads it (C's ``strtoul``, base 10, no leading space)."""
    if raw[:1].isspace():
        raise Failed(INVALID_CURSOR)
    digits = raw[1:] if raw[:1] in (b"+", b"-") else raw
    if not raw:
        return 0  # strtoul("") parses nothing and leaves nothing unparsed
    if not digits.isdigit():
        raise Failed(INVALID_CURSOR)
    value = int(digits)
    if value > UINT64_MAX:
        raise Failed(INVALID_CURSOR)
    return (-value) & UINT64_MAX if raw[:1] == b"-" else value


def c_string(raw: bytes) -> bytes:
    """What C's ``%s`` prints of ``raw``: up to its first NUL."""
    return raw.split(b"\0", 1)[0]


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def arity_error(name: str) -> Error:
    return Error(f"ERR wrong number of arguments for '{name}' command")


def expire_error(name: str) -> Error:
    return Error(f"ERR invalid expire time in '{name}' command")


def scan_hash(key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


class Keyspace:
    """One replica's keys: values, expiry times, the clock they are judged by.

    ``value_bytes_max`` bounds each value (every replica must use the same
    bound); ``expire_sweep_max`` bounds the expired keys the sweep at the
    start of each entry removes.
    """

    def __init__(self, *, value_bytes_max: int, expire_sweep_max: int) -> None:
        self.value_bytes_max = value_bytes_max
        self.expire_sweep_max = expire_sweep_max
        self.clock_ms = 0
        self.values: dict[bytes, Value] = {}
        # Invariant: keys of expiries are keys of values; every (at, key) of
        # expiries is in expiry_heap (which may also hold stale pairs).
        self.expiries: dict[bytes, int] = {}
        self.expiry_heap: list[tuple[int, bytes]] = []
        # Live keys by (scan hash, key); None when the key set changed since built.
        self.scan_order: list[tuple[int, bytes]] | None = None
        #: True inside ``KvMachine.read``: an expired key is reported absent but left in place.
        self.reading = False
        #: The generation of new aggregates; a snapshot copy starts a new one, and an
        #: aggregate of an older generation is copied before it is changed.
        self.gen = 0
        #: Random draws made by applied entries (SPOP): part of the state, so
        #: every replica, restored or not, draws the same next members.
        self.draws = 0
        #: Ops of the entry being applied still to skip: set by a failed
        #: ``exec-if`` (a transaction whose watched keys changed).
        self.skip_ops = 0
        #: Runs a command for a Lua script (``scripting``); set by ``KvMachine``.
        self.execute_from_script: Callable[[tuple[bytes, ...]], Reply] | None = None

    def get(self, key: bytes) -> Value | None:
        """The live value of ``key``, of any type (removing it if it has expired)."""
        value = self.values.get(key)
        if value is not None and key in self.expiries and self.clock_ms > self.expiries[key]:
            if not self.reading:
                self.remove(key)
            return None
        return value

    def lookup(self, key: bytes) -> bytes | None:
        """The live string value of ``key``; ``Failed(WRONGTYPE)`` if it holds another type."""
        # ``get`` inlined: this is GET's path, the most common command.
        value = self.values.get(key)
        if value is None:
            return None
        if key in self.expiries and self.clock_ms > self.expiries[key]:
            if not self.reading:
                self.remove(key)
            return None
        if type(value) is bytes:
            return value
        raise Failed(WRONGTYPE)

    def lookup_as(self, key: bytes, kind: type[T]) -> T | None:
        """The live ``kind`` value of ``key`` for reading; ``Failed(WRONGTYPE)`` if another type."""
        value = self.get(key)
        if value is None or type(value) is kind:
            return value
        raise Failed(WRONGTYPE)

    def writable(self, key: bytes, kind: type[T]) -> T | None:
        """``lookup_as`` for a change: a value a snapshot still holds is copied first."""
        value = self.lookup_as(key, kind)
        if value is not None and value.gen != self.gen:
            value = value.clone(self.gen)
            self.values[key] = value
        return value

    def create(self, key: bytes, kind: type[T]) -> T:
        """A new empty ``kind`` at ``key`` (which holds nothing live); no expiry."""
        value = kind(self.gen)
        self.store(key, value)
        return value

    def writable_or_create(self, key: bytes, kind: type[T]) -> T:
        value = self.writable(key, kind)
        return self.create(key, kind) if value is None else value

    def drop_if_empty(self, key: bytes, value: Aggregate) -> None:
        """Redis never keeps an empty aggregate: the key goes when its last element does."""
        if not len(value):
            self.remove(key)

    def exists(self, key: bytes) -> bool:
        return self.get(key) is not None

    def store(self, key: bytes, value: Value, *, keep_ttl: bool = False) -> None:
        if key not in self.values:
            self.scan_order = None
        self.values[key] = value
        if not keep_ttl:
            self.expiries.pop(key, None)

    def remove(self, key: bytes) -> bool:
        if key not in self.values:
            return False
        del self.values[key]
        self.expiries.pop(key, None)
        self.scan_order = None
        return True

    def set_expiry(self, key: bytes, at: int) -> None:
        assert key in self.values
        self.expiries[key] = at
        heap = self.expiry_heap
        heapq.heappush(heap, (at, key))
        if len(heap) > 2 * len(self.expiries) + 64:
            # Mostly stale pairs (expiries changed or removed): rebuild to bound memory.
            self.expiry_heap = [(t, k) for k, t in self.expiries.items()]
            heapq.heapify(self.expiry_heap)

    def sweep(self, limit: int | None) -> None:
        """Remove expired keys, oldest expiry first: at most ``limit`` (None: all)."""
        heap = self.expiry_heap
        removed = 0
        while heap and heap[0][0] < self.clock_ms:
            at, key = heapq.heappop(heap)
            if self.expiries.get(key) == at:  # else a stale pair
                self.remove(key)
                removed += 1
                if limit is not None and removed >= limit:
                    return

    def clear(self) -> None:
        self.values = {}
        self.expiries = {}
        self.expiry_heap = []
        self.scan_order = None

    def check_size(self, size: int) -> None:
        if size > self.value_bytes_max:
            raise Failed(Error("ERR string exceeds maximum allowed size (value_bytes_max)"))

    def expire_at(self, raw: bytes, option: str, name: str) -> int:
        """The absolute expiry time of a ``SET``/``GETEX`` expiry ``option`` (Redis' rules)."""
        when = parse_int(raw)
        seconds = option in (EX, EXAT)
        if when <= 0 or (seconds and when > SECONDS_MAX):
            raise Failed(expire_error(name))
        if seconds:
            when *= 1000
        if option in (EX, PX):
            when += self.clock_ms
            if when > INT64_MAX:
                raise Failed(expire_error(name))
        return when


#: A command: its arguments (the name first) in, its reply out.
Handler = Callable[[Keyspace, tuple[bytes, ...]], Reply]
