"""The key space commands: existence, expiry, TYPE, RENAME, KEYS, SCAN, FLUSHDB.

``KEYS`` replies in byte order; ``SCAN`` walks keys in the order of a 64-bit
BLAKE2b hash and its cursor is "the next hash to visit", so a scan terminates
and returns every key present for the whole scan, whatever writes interleave
(a key may come back twice, as in Redis). ``DBSIZE``, ``KEYS`` and ``SCAN``
first remove every expired key (each removal is paid for once, by the
command that set the expiry).
"""

from __future__ import annotations

from .cursor import hash_order, page, parse_scan_options
from .keyspace import (
    INT64_MAX,
    SECONDS_MAX,
    SYNTAX,
    Failed,
    Keyspace,
    c_string,
    expire_error,
    parse_cursor,
    parse_int,
    text,
)
from .pattern import compile_pattern
from .replies import OK, Error, Reply, SimpleString
from .table import ALL, NO_KEYS, ONE, Command, command
from .values import HashValue, ListValue, SetValue, StreamValue, Value, ZSetValue

__all__ = ["TABLE"]

_NO_SUCH_KEY = Error("ERR no such key")
_NONE = SimpleString("none")


def del_(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return sum(1 for key in args[1:] if ks.exists(key) and ks.remove(key))


def exists(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return sum(1 for key in args[1:] if ks.exists(key))


def expire(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _expire_generic(ks, args, ks.clock_ms, seconds=True)


def pexpire(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _expire_generic(ks, args, ks.clock_ms, seconds=False)


def expireat(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _expire_generic(ks, args, 0, seconds=True)


def pexpireat(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _expire_generic(ks, args, 0, seconds=False)


def _expire_generic(ks: Keyspace, args: tuple[bytes, ...], base_ms: int, *, seconds: bool) -> Reply:
    key = args[1]
    options = _parse_expire_options(args[3:])
    when = parse_int(args[2])
    name = text(args[0].lower())
    if seconds:
        if not -SECONDS_MAX <= when <= SECONDS_MAX:
            return expire_error(name)
        when *= 1000
    if when > INT64_MAX - base_ms:
        return expire_error(name)
    when += base_ms
    if not ks.exists(key):
        return 0
    current = ks.expiries.get(key)
    if (
        ("nx" in options and current is not None)
        or ("xx" in options and current is None)
        # No expiry is an infinite one: GT never beats it, LT always does.
        or ("gt" in options and (current is None or when <= current))
        or ("lt" in options and current is not None and when >= current)
    ):
        return 0
    if when <= ks.clock_ms:
        ks.remove(key)
    else:
        ks.set_expiry(key, when)
    return 1


def ttl(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _ttl_generic(ks, args[1], ms=False, absolute=False)


def pttl(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _ttl_generic(ks, args[1], ms=True, absolute=False)


def expiretime(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _ttl_generic(ks, args[1], ms=False, absolute=True)


def pexpiretime(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _ttl_generic(ks, args[1], ms=True, absolute=True)


def _ttl_generic(ks: Keyspace, key: bytes, *, ms: bool, absolute: bool) -> Reply:
    if not ks.exists(key):
        return -2
    at = ks.expiries.get(key)
    if at is None:
        return -1
    left = max(at if absolute else at - ks.clock_ms, 0)
    return left if ms else (left + 500) // 1000  # Redis rounds to the nearest second


def persist(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    if not ks.exists(args[1]):
        return 0
    return 0 if ks.expiries.pop(args[1], None) is None else 1


_TYPE_NAMES: dict[type, bytes] = {
    bytes: b"string",
    HashValue: b"hash",
    ListValue: b"list",
    SetValue: b"set",
    ZSetValue: b"zset",
    StreamValue: b"stream",
}
_TYPE_REPLIES = {kind: SimpleString(name.decode()) for kind, name in _TYPE_NAMES.items()}


def _type_name(value: Value) -> bytes:
    return _TYPE_NAMES[type(value)]


def type_(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.get(args[1])
    return _NONE if value is None else _TYPE_REPLIES[type(value)]


def rename(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _rename_generic(ks, args[1], args[2], nx=False)


def renamenx(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _rename_generic(ks, args[1], args[2], nx=True)


def _rename_generic(ks: Keyspace, source: bytes, target: bytes, *, nx: bool) -> Reply:
    value = ks.get(source)
    if value is None:
        return _NO_SUCH_KEY
    if source == target:
        return 0 if nx else OK
    if nx and ks.exists(target):
        return 0
    at = ks.expiries.get(source)
    ks.remove(source)
    ks.store(target, value)
    if at is not None:
        ks.set_expiry(target, at)
    return 1 if nx else OK


def dbsize(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    ks.sweep(None)
    return len(ks.values)


def keys(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    ks.sweep(None)
    pattern = None if args[1] == b"*" else compile_pattern(args[1])
    found: list[Reply] = [
        key for key in sorted(ks.values) if pattern is None or pattern.matches(key)
    ]
    return found


def scan(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    cursor = parse_cursor(args[1])
    options = parse_scan_options(args, 2, allow_type=True)
    ks.sweep(None)
    order = ks.scan_order
    if order is None:
        order = ks.scan_order = hash_order(ks.values)
    next_cursor, page_keys = page(order, cursor, options.count)
    found: list[Reply] = [
        key
        for key in page_keys
        if options.matches(key)
        and (options.type_name is None or _type_name(ks.values[key]) == options.type_name)
    ]
    return [str(next_cursor).encode("ascii"), found]


def flush(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    if len(args) > 2 or (len(args) == 2 and args[1].lower() not in (b"sync", b"async")):
        return SYNTAX
    ks.clear()
    return OK


def _parse_expire_options(options: tuple[bytes, ...]) -> set[str]:
    """``EXPIRE``'s NX/XX/GT/LT options (Redis' ``parseExtendedExpireArgumentsOrReply``)."""
    found: set[str] = set()
    for raw in options:
        option = raw.lower()
        if option not in (b"nx", b"xx", b"gt", b"lt"):
            raise Failed(Error(f"ERR Unsupported option {text(c_string(raw))}"))
        found.add(option.decode())
    if "nx" in found and found & {"xx", "gt", "lt"}:
        raise Failed(Error("ERR NX and XX, GT or LT options at the same time are not compatible"))
    if {"gt", "lt"} <= found:
        raise Failed(Error("ERR GT and LT options at the same time are not compatible"))
    return found


_KEYSPACE_READ = "@keyspace @read @fast"
_KEYSPACE_WRITE = "@keyspace @write @fast"

#: The key space commands, as Redis 7.0 describes them.
TABLE: dict[bytes, Command] = dict(
    [
        command("del", -2, "write", ALL, "@keyspace @write @slow", del_),
        command("unlink", -2, "write fast", ALL, _KEYSPACE_WRITE, del_),
        command("exists", -2, "readonly fast", ALL, _KEYSPACE_READ, exists, local_read=True),
        command("touch", -2, "readonly fast", ALL, _KEYSPACE_READ, exists),
        command("expire", -3, "write fast", ONE, _KEYSPACE_WRITE, expire),
        command("pexpire", -3, "write fast", ONE, _KEYSPACE_WRITE, pexpire),
        command("expireat", -3, "write fast", ONE, _KEYSPACE_WRITE, expireat),
        command("pexpireat", -3, "write fast", ONE, _KEYSPACE_WRITE, pexpireat),
        command("ttl", 2, "readonly fast", ONE, _KEYSPACE_READ, ttl, local_read=True),
        command("pttl", 2, "readonly fast", ONE, _KEYSPACE_READ, pttl, local_read=True),
        command("expiretime", 2, "readonly fast", ONE, _KEYSPACE_READ, expiretime, local_read=True),
        command(
            "pexpiretime", 2, "readonly fast", ONE, _KEYSPACE_READ, pexpiretime, local_read=True
        ),
        command("persist", 2, "write fast", ONE, _KEYSPACE_WRITE, persist),
        command("type", 2, "readonly fast", ONE, _KEYSPACE_READ, type_, local_read=True),
        command("rename", 3, "write", (1, 2, 1), "@keyspace @write @slow", rename),
        command("renamenx", 3, "write fast", (1, 2, 1), _KEYSPACE_WRITE, renamenx),
        command("dbsize", 1, "readonly fast", NO_KEYS, _KEYSPACE_READ, dbsize),
        command("keys", 2, "readonly", NO_KEYS, "@keyspace @read @slow @dangerous", keys),
        command("scan", -2, "readonly", NO_KEYS, "@keyspace @read @slow", scan),
        command("flushdb", -1, "write", NO_KEYS, "@keyspace @write @slow @dangerous", flush),
        command("flushall", -1, "write", NO_KEYS, "@keyspace @write @slow @dangerous", flush),
    ]
)
