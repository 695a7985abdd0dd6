"""The set commands: a key holding distinct members.

Members keep their insertion order (a removal moves the last member into the
hole: ``values.SetValue``), so replies never depend on Python's per-process
hash seed. ``SPOP`` and ``SRANDMEMBER`` draw members with a generator seeded
from the log: the entry's clock, the command and the count of draws applied
so far (part of the state and of the snapshot), never from a process's
random source, so every replica draws the same members. ``SRANDMEMBER`` is a
read: it draws without counting, so the same read at the same point of the
log gives the same members on every replica.
"""

from __future__ import annotations

import hashlib

from .cursor import SMALL_AGGREGATE_MAX, hash_order, page, parse_scan_options
from .keyspace import (
    INT64_MAX,
    SYNTAX,
    Failed,
    Keyspace,
    parse_cursor,
    parse_int,
)
from .replies import Error, Reply
from .table import ALL, ONE, Command, command
from .values import SetValue

__all__ = ["TABLE"]

_EMPTY_SCAN: Reply = [b"0", []]
_MUST_BE_POSITIVE = Error("ERR value is out of range, must be positive")
#: SRANDMEMBER with a negative count replies that many members: bounded, so
#: one read cannot make a node build an unbounded reply (Redis has no bound).
SRANDMEMBER_COUNT_MAX = 1 << 20


class Draws:
    """A deterministic generator: SHAKE-128 of a seed, read 8 bytes at a time."""

    def __init__(self, seed: bytes) -> None:
        self._stream = hashlib.shake_128(seed)
        self._buffer = b""
        self._used = 0

    def below(self, n: int) -> int:
        """A number in ``0 .. n - 1`` (rejection sampling: no modulo bias)."""
        assert n >= 1
        limit = (1 << 64) - (1 << 64) % n
        while True:
            if self._used + 8 > len(self._buffer):
                self._buffer = self._stream.digest(2 * len(self._buffer) + 64)
            word = int.from_bytes(self._buffer[self._used : self._used + 8], "big")
            self._used += 8
            if word < limit:
                return word % n


def _draws(ks: Keyspace, args: tuple[bytes, ...]) -> Draws:
    seed = b"%d\0%d\0" % (ks.clock_ms, ks.draws) + b"\0".join(args)
    return Draws(seed)


def sadd(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    for member in args[2:]:
        ks.check_size(len(member))
    value = ks.writable_or_create(args[1], SetValue)
    return sum(1 for member in args[2:] if value.add(member))


def srem(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.writable(args[1], SetValue)
    if value is None:
        return 0
    removed = sum(1 for member in args[2:] if value.discard(member))
    ks.drop_if_empty(args[1], value)
    return removed


def smembers(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], SetValue)
    return [] if value is None else list(value.members)


def sismember(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], SetValue)
    return int(value is not None and args[2] in value)


def smismember(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], SetValue)
    return [int(value is not None and member in value) for member in args[2:]]


def scard(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], SetValue)
    return 0 if value is None else len(value)


def _parse_positive(raw: bytes) -> int:
    try:
        count = parse_int(raw)
    except Failed:
        raise Failed(_MUST_BE_POSITIVE) from None
    if count < 0:
        raise Failed(_MUST_BE_POSITIVE)
    return count


def spop(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    if len(args) > 3:
        return SYNTAX
    count = None if len(args) == 2 else _parse_positive(args[2])
    value = ks.writable(args[1], SetValue)
    if value is None:
        return None if count is None else []
    if count == 0:
        return []
    draws = _draws(ks, args)
    ks.draws += 1
    if count is None:
        member = value.members[draws.below(len(value))]
        value.discard(member)
        ks.drop_if_empty(args[1], value)
        return member
    if count >= len(value):
        out: list[Reply] = list(value.members)
        ks.remove(args[1])
        return out
    out = []
    for _ in range(count):
        member = value.members[draws.below(len(value))]
        value.discard(member)
        out.append(member)
    return out


def srandmember(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    if len(args) > 3:
        return SYNTAX
    count = None
    if len(args) == 3:
        count = parse_int(args[2])
        if count < -INT64_MAX:
            return Error(
                f"ERR value is out of range, value must between {-INT64_MAX} and {INT64_MAX}"
            )
        if -count > SRANDMEMBER_COUNT_MAX:
            return Error(
                f"ERR value is out of range, value must between {-SRANDMEMBER_COUNT_MAX} "
                f"and {INT64_MAX} (srandmember_count_max)"
            )
    value = ks.lookup_as(args[1], SetValue)
    if value is None:
        return None if count is None else []
    draws = _draws(ks, args)  # a read: the state's draw count does not move
    members = value.members
    if count is None:
        return members[draws.below(len(members))]
    if count < 0:
        return [members[draws.below(len(members))] for _ in range(-count)]
    if count >= len(members):
        return list(members)
    # Distinct members: a partial Fisher-Yates shuffle of the indexes.
    picked = list(range(len(members))) if count > len(members) // 4 else None
    if picked is not None:
        for i in range(count):
            j = i + draws.below(len(members) - i)
            picked[i], picked[j] = picked[j], picked[i]
        return [members[i] for i in picked[:count]]
    chosen: dict[int, None] = {}
    while len(chosen) < count:
        chosen.setdefault(draws.below(len(members)))
    return [members[i] for i in chosen]


def _sets(ks: Keyspace, keys: tuple[bytes, ...]) -> list[SetValue | None]:
    """Every key's set (``None``: missing), WRONGTYPE if any holds another type."""
    return [ks.lookup_as(key, SetValue) for key in keys]


def _inter(sets: list[SetValue | None]) -> list[bytes]:
    present = [s for s in sets if s is not None]
    if len(present) < len(sets) or not present:
        return []
    smallest = min(present, key=len)  # the first of the smallest: a stable choice
    return [m for m in smallest.members if all(m in s for s in present if s is not smallest)]


def _union(sets: list[SetValue | None]) -> list[bytes]:
    seen: dict[bytes, None] = {}
    for s in sets:
        if s is not None:
            seen.update(dict.fromkeys(s.members))
    return list(seen)


def _diff(sets: list[SetValue | None]) -> list[bytes]:
    first = sets[0]
    if first is None:
        return []
    rest = [s for s in sets[1:] if s is not None]
    return [m for m in first.members if not any(m in s for s in rest)]


def sinter(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return list(_inter(_sets(ks, args[1:])))


def sunion(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return list(_union(_sets(ks, args[1:])))


def sdiff(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return list(_diff(_sets(ks, args[1:])))


def _store(ks: Keyspace, target: bytes, members: list[bytes]) -> Reply:
    ks.get(target)  # an expired target is removed first, as Redis' lookup does
    ks.remove(target)
    if members:
        value = ks.create(target, SetValue)
        for member in members:
            value.add(member)
    return len(members)


def sinterstore(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _store(ks, args[1], _inter(_sets(ks, args[2:])))


def sunionstore(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _store(ks, args[1], _union(_sets(ks, args[2:])))


def sdiffstore(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _store(ks, args[1], _diff(_sets(ks, args[2:])))


def smove(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    source, target, member = args[1], args[2], args[3]
    if not ks.exists(source):
        return 0
    ks.lookup_as(source, SetValue)
    ks.lookup_as(target, SetValue)
    if source == target:
        value = ks.lookup_as(source, SetValue)
        return int(value is not None and member in value)
    src = ks.writable(source, SetValue)
    assert src is not None
    if not src.discard(member):
        return 0
    ks.drop_if_empty(source, src)
    ks.writable_or_create(target, SetValue).add(member)
    return 1


def sscan(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    cursor = parse_cursor(args[2])
    value = ks.lookup_as(args[1], SetValue)
    if value is None:
        return _EMPTY_SCAN
    options = parse_scan_options(args, 3, allow_type=False)
    if len(value) <= SMALL_AGGREGATE_MAX:
        next_cursor, members = 0, list(value.members)
    else:
        next_cursor, members = page(hash_order(value.members), cursor, options.count)
    found: list[Reply] = [m for m in members if options.matches(m)]
    return [str(next_cursor).encode("ascii"), found]


_READ_SLOW = "@read @set @slow"
_READ_FAST = "@read @set @fast"
_WRITE_SLOW = "@write @set @slow"

#: The set commands, as Redis 7.0 describes them.
TABLE: dict[bytes, Command] = dict(
    [
        command("sadd", -3, "write denyoom fast", ONE, "@write @set @fast", sadd),
        command("srem", -3, "write fast", ONE, "@write @set @fast", srem),
        command("smembers", 2, "readonly", ONE, _READ_SLOW, smembers, local_read=True),
        command("sismember", 3, "readonly fast", ONE, _READ_FAST, sismember, local_read=True),
        command("smismember", -3, "readonly fast", ONE, _READ_FAST, smismember, local_read=True),
        command("scard", 2, "readonly fast", ONE, _READ_FAST, scard, local_read=True),
        command("spop", -2, "write fast", ONE, "@write @set @fast", spop),
        command("srandmember", -2, "readonly", ONE, _READ_SLOW, srandmember, local_read=True),
        command("sinter", -2, "readonly", ALL, _READ_SLOW, sinter, local_read=True),
        command("sinterstore", -3, "write denyoom", ALL, _WRITE_SLOW, sinterstore),
        command("sunion", -2, "readonly", ALL, _READ_SLOW, sunion, local_read=True),
        command("sunionstore", -3, "write denyoom", ALL, _WRITE_SLOW, sunionstore),
        command("sdiff", -2, "readonly", ALL, _READ_SLOW, sdiff, local_read=True),
        command("sdiffstore", -3, "write denyoom", ALL, _WRITE_SLOW, sdiffstore),
        command("smove", 4, "write fast", (1, 2, 1), "@write @set @fast", smove),
        command("sscan", -3, "readonly", ONE, _READ_SLOW, sscan, local_read=True),
    ]
)
