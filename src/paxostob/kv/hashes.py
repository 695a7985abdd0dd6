"""The hash commands: a key holding field -> value pairs, in insertion order.

Each field and value is at most ``value_bytes_max`` bytes. A hash whose last
field is deleted is deleted (as in Redis). ``HGETALL``, ``HKEYS`` and
``HVALS`` reply in insertion order (Redis' small hashes do too; its large
ones reply in hash table order).
"""

from __future__ import annotations

from fractions import Fraction

from .cursor import SMALL_AGGREGATE_MAX, hash_order, page, parse_scan_options
from .keyspace import (
    INT64_MAX,
    INT64_MIN,
    Failed,
    Keyspace,
    arity_error,
    parse_cursor,
    parse_int,
    text,
)
from .replies import OK, Error, Reply
from .table import ONE, Command, command
from .values import (
    NOT_FLOAT,
    HashValue,
    add_long_double,
    format_long_double,
    parse_long_double,
)

__all__ = ["TABLE"]

_EMPTY_SCAN: Reply = [b"0", []]


def _pairs(ks: Keyspace, args: tuple[bytes, ...]) -> list[tuple[bytes, bytes]]:
    if len(args) % 2 == 1:
        raise Failed(arity_error(text(args[0].lower())))
    pairs = list(zip(args[2::2], args[3::2], strict=True))
    for field, value in pairs:
        ks.check_size(len(field))
        ks.check_size(len(value))
    return pairs


def hset(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    pairs = _pairs(ks, args)
    value = ks.writable_or_create(args[1], HashValue)
    before = len(value)
    value.update(pairs)
    return len(value) - before


def hmset(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    hset(ks, args)
    return OK


def hsetnx(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    ks.check_size(len(args[2]))
    ks.check_size(len(args[3]))
    value = ks.writable_or_create(args[1], HashValue)
    if args[2] in value:
        return 0
    value[args[2]] = args[3]
    return 1


def hget(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], HashValue)
    return None if value is None else value.get(args[2])


def hmget(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], HashValue)
    if value is None:
        return [None] * (len(args) - 2)
    return [value.get(field) for field in args[2:]]


def hdel(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.writable(args[1], HashValue)
    if value is None:
        return 0
    removed = 0
    for field in args[2:]:
        if value.pop(field, None) is not None:
            removed += 1
    ks.drop_if_empty(args[1], value)
    return removed


def hexists(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], HashValue)
    return int(value is not None and args[2] in value)


def hlen(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], HashValue)
    return 0 if value is None else len(value)


def hstrlen(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], HashValue)
    return len(value.get(args[2], b"")) if value is not None else 0


def hincrby(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    increment = parse_int(args[3])
    ks.check_size(len(args[2]))
    value = ks.writable_or_create(args[1], HashValue)
    old = value.get(args[2])
    try:
        current = 0 if old is None else parse_int(old)
    except Failed:
        return Error("ERR hash value is not an integer")
    if (increment < 0 and current < 0 and increment < INT64_MIN - current) or (
        increment > 0 and current > 0 and increment > INT64_MAX - current
    ):
        return Error("ERR increment or decrement would overflow")
    current += increment
    value[args[2]] = str(current).encode("ascii")
    return current


def hincrbyfloat(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    increment = parse_long_double(args[3])
    if increment is None:
        return NOT_FLOAT
    if isinstance(increment, float):
        return Error("ERR value is NaN or Infinity")
    ks.check_size(len(args[2]))
    value = ks.writable_or_create(args[1], HashValue)
    old = value.get(args[2])
    current = Fraction(0) if old is None else parse_long_double(old)
    if current is None:
        return Error("ERR hash value is not a float")
    total = add_long_double(current, increment)
    if total is None:
        return Error("ERR increment would produce NaN or Infinity")
    new = format_long_double(total)
    value[args[2]] = new
    return new


def hgetall(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    # A map, as Redis replies in RESP3 (RESP2 flattens it: fields and values in turn).
    value = ks.lookup_as(args[1], HashValue)
    return {} if value is None else dict(value)


def hkeys(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], HashValue)
    return [] if value is None else list(value)


def hvals(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], HashValue)
    return [] if value is None else list(value.values())


def hscan(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    cursor = parse_cursor(args[2])
    value = ks.lookup_as(args[1], HashValue)
    if value is None:
        return _EMPTY_SCAN  # as Redis: the options are not even parsed
    options = parse_scan_options(args, 3, allow_type=False)
    if len(value) <= SMALL_AGGREGATE_MAX:
        next_cursor, fields = 0, list(value)
    else:
        next_cursor, fields = page(hash_order(value), cursor, options.count)
    out: list[Reply] = []
    for field in fields:
        if options.matches(field):
            out += (field, value[field])
    return [str(next_cursor).encode("ascii"), out]


_READ_FAST = "@read @hash @fast"
_WRITE_FAST = "@write @hash @fast"

#: The hash commands, as Redis 7.0 describes them.
TABLE: dict[bytes, Command] = dict(
    [
        command("hset", -4, "write denyoom fast", ONE, _WRITE_FAST, hset),
        command("hmset", -4, "write denyoom fast", ONE, _WRITE_FAST, hmset),
        command("hsetnx", 4, "write denyoom fast", ONE, _WRITE_FAST, hsetnx),
        command("hget", 3, "readonly fast", ONE, _READ_FAST, hget, local_read=True),
        command("hmget", -3, "readonly fast", ONE, _READ_FAST, hmget, local_read=True),
        command("hdel", -3, "write fast", ONE, _WRITE_FAST, hdel),
        command("hexists", 3, "readonly fast", ONE, _READ_FAST, hexists, local_read=True),
        command("hlen", 2, "readonly fast", ONE, _READ_FAST, hlen, local_read=True),
        command("hstrlen", 3, "readonly fast", ONE, _READ_FAST, hstrlen, local_read=True),
        command("hincrby", 4, "write denyoom fast", ONE, _WRITE_FAST, hincrby),
        command("hincrbyfloat", 4, "write denyoom fast", ONE, _WRITE_FAST, hincrbyfloat),
        command("hgetall", 2, "readonly", ONE, "@read @hash @slow", hgetall, local_read=True),
        command("hkeys", 2, "readonly", ONE, "@read @hash @slow", hkeys, local_read=True),
        command("hvals", 2, "readonly", ONE, "@read @hash @slow", hvals, local_read=True),
        command("hscan", -3, "readonly", ONE, "@read @hash @slow", hscan, local_read=True),
    ]
)
