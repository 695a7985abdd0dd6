"""The string commands: GET, SET and its options, counters, ranges of a value.

A string value is ``bytes`` of at most ``value_bytes_max``; integers are
stored as their decimal text, as in Redis. ``INCRBYFLOAT`` adds in x87
80-bit ``long double`` precision and prints ``%.17Lf`` as Redis on x86-64
does, computed exactly (``values.add_long_double``), so every replica, on any
machine, stores the same text. ``TIME`` is the log's clock, not a replica's.
"""

from __future__ import annotations

from fractions import Fraction

from .keyspace import (
    EX,
    EXAT,
    INT64_MAX,
    INT64_MIN,
    PX,
    PXAT,
    SYNTAX,
    Failed,
    Keyspace,
    arity_error,
    parse_int,
    text,
)
from .replies import OK, Error, Reply
from .table import NO_KEYS, ONE, Command, command
from .values import NOT_FLOAT, add_long_double, format_long_double, parse_long_double

__all__ = ["TABLE"]

_OVERFLOW = Error("ERR increment or decrement would overflow")

# SET/GETEX option names (Redis' OBJ_* flags) and which options exclude which.
_NX, _XX, _GET, _KEEPTTL, _PERSIST = "NX", "XX", "GET", "KEEPTTL", "PERSIST"
_EXPIRY_OPTIONS = frozenset({EX, PX, EXAT, PXAT})


def get(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return ks.lookup(args[1])


def set_(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    key, value = args[1], args[2]
    ks.check_size(len(value))
    if len(args) == 3:
        # Plain SET, the most common write: no options to parse, and the old
        # value (live or expired) is simply replaced, its TTL dropped.
        ks.store(key, value)
        return OK
    flags, expiry = _parse_string_options(args, 3, for_set=True)
    at = None if expiry is None else ks.expire_at(expiry[1], expiry[0], "set")
    # Only SET ... GET reads the old value (WRONGTYPE if it is not a string).
    old = ks.lookup(key) if _GET in flags else None
    found = old is not None if _GET in flags else ks.exists(key)
    reply: Reply = old if _GET in flags else OK
    if (_NX in flags and found) or (_XX in flags and not found):
        return old if _GET in flags else None
    ks.store(key, value, keep_ttl=_KEEPTTL in flags)
    if at is not None:
        ks.set_expiry(key, at)
    return reply


def setnx(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    ks.check_size(len(args[2]))
    if ks.exists(args[1]):
        return 0
    ks.store(args[1], args[2])
    return 1


def setex(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _set_with_expiry(ks, args, EX, "setex")


def psetex(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _set_with_expiry(ks, args, PX, "psetex")


def _set_with_expiry(ks: Keyspace, args: tuple[bytes, ...], option: str, name: str) -> Reply:
    key, value = args[1], args[3]
    ks.check_size(len(value))
    at = ks.expire_at(args[2], option, name)
    ks.store(key, value)
    ks.set_expiry(key, at)
    return OK


def getset(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    ks.check_size(len(args[2]))
    old = ks.lookup(args[1])
    ks.store(args[1], args[2])
    return old


def getdel(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup(args[1])
    if value is not None:
        ks.remove(args[1])
    return value


def getex(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    key = args[1]
    flags, expiry = _parse_string_options(args, 2, for_set=False)
    value = ks.lookup(key)
    if value is None:
        return None
    if expiry is not None:
        at = ks.expire_at(expiry[1], expiry[0], "getex")
        if expiry[0] in (EXAT, PXAT) and at <= ks.clock_ms:
            ks.remove(key)  # an absolute time already past: Redis deletes
        else:
            ks.set_expiry(key, at)
    elif _PERSIST in flags:
        ks.expiries.pop(key, None)
    return value


def mget(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    # A key of another type is nil here, not WRONGTYPE (as in Redis).
    return [value if type(value := ks.get(key)) is bytes else None for key in args[1:]]


def _mset_pairs(ks: Keyspace, args: tuple[bytes, ...]) -> list[tuple[bytes, bytes]]:
    if len(args) % 2 == 0:
        raise Failed(arity_error(text(args[0].lower())))
    pairs = list(zip(args[1::2], args[2::2], strict=True))
    for _, value in pairs:
        ks.check_size(len(value))
    return pairs


def mset(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    for key, value in _mset_pairs(ks, args):
        ks.store(key, value)
    return OK


def msetnx(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    pairs = _mset_pairs(ks, args)
    if any(ks.exists(key) for key, _ in pairs):
        return 0
    for key, value in pairs:
        ks.store(key, value)
    return 1


def incr(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _incr_by(ks, args[1], 1)


def decr(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _incr_by(ks, args[1], -1)


def incrby(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _incr_by(ks, args[1], parse_int(args[2]))


def decrby(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    decrement = parse_int(args[2])
    if decrement == INT64_MIN:
        return Error("ERR decrement would overflow")
    return _incr_by(ks, args[1], -decrement)


def _incr_by(ks: Keyspace, key: bytes, increment: int) -> Reply:
    old = ks.lookup(key)
    value = 0 if old is None else parse_int(old)
    if (increment < 0 and value < 0 and increment < INT64_MIN - value) or (
        increment > 0 and value > 0 and increment > INT64_MAX - value
    ):
        return _OVERFLOW
    value += increment
    ks.store(key, str(value).encode("ascii"), keep_ttl=True)
    return value


def incrbyfloat(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    old = ks.lookup(args[1])
    value = Fraction(0) if old is None else parse_long_double(old)
    increment = parse_long_double(args[2])
    if value is None or increment is None:
        return NOT_FLOAT
    total = add_long_double(value, increment)
    if total is None:
        return Error("ERR increment would produce NaN or Infinity")
    new = format_long_double(total)
    ks.check_size(len(new))
    ks.store(args[1], new, keep_ttl=True)
    return new


def time(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    """The log's clock (``clock_ms``), as Redis' TIME: seconds and microseconds."""
    seconds, ms = divmod(ks.clock_ms, 1000)
    return [str(seconds).encode("ascii"), str(ms * 1000).encode("ascii")]


def append(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    old = ks.lookup(args[1]) or b""
    ks.check_size(len(old) + len(args[2]))
    value = old + args[2]
    ks.store(args[1], value, keep_ttl=True)
    return len(value)


def strlen(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return len(ks.lookup(args[1]) or b"")


def getrange(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    start, end = parse_int(args[2]), parse_int(args[3])
    value = ks.lookup(args[1])
    if value is None or (start < 0 and end < 0 and start > end):
        return b""
    size = len(value)
    if start < 0:
        start = max(size + start, 0)
    if end < 0:
        end = max(size + end, 0)
    end = min(end, size - 1)
    if start > end or size == 0:
        return b""
    return value[start : end + 1]


def setrange(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    key, patch = args[1], args[3]
    offset = parse_int(args[2])
    if offset < 0:
        return Error("ERR offset is out of range")
    old = ks.lookup(key)
    if not patch:
        return 0 if old is None else len(old)
    ks.check_size(offset + len(patch))
    old = old or b""
    value = old[:offset].ljust(offset, b"\0") + patch + old[offset + len(patch) :]
    ks.store(key, value, keep_ttl=True)
    return len(value)


def _parse_string_options(
    args: tuple[bytes, ...], start: int, *, for_set: bool
) -> tuple[set[str], tuple[str, bytes] | None]:
    """``SET``'s (or ``GETEX``'s) options: the flags and the expiry option with its value.

    Mirrors Redis' ``parseExtendedStringArgumentsOrReply``: an option that
    conflicts with one already given is a syntax error; repeating one is not
    (the last value wins).
    """
    flags: set[str] = set()
    expiry: tuple[str, bytes] | None = None
    j = start
    while j < len(args):
        option = args[j].upper()
        has_value = j + 1 < len(args)
        if option == b"NX" and for_set and _XX not in flags:
            flags.add(_NX)
        elif option == b"XX" and for_set and _NX not in flags:
            flags.add(_XX)
        elif option == b"GET" and for_set:
            flags.add(_GET)
        elif option == b"KEEPTTL" and for_set and not flags & (_EXPIRY_OPTIONS | {_PERSIST}):
            flags.add(_KEEPTTL)
        elif option == b"PERSIST" and not for_set and not flags & (_EXPIRY_OPTIONS | {_KEEPTTL}):
            flags.add(_PERSIST)
        elif (
            option in (b"EX", b"PX", b"EXAT", b"PXAT")
            and has_value
            and not flags & ((_EXPIRY_OPTIONS | {_KEEPTTL, _PERSIST}) - {option.decode()})
        ):
            flags.add(option.decode())
            expiry = (option.decode(), args[j + 1])
            j += 1
        else:
            raise Failed(SYNTAX)
        j += 1
    return flags, expiry


#: The string commands, as Redis 7.0 describes them.
TABLE: dict[bytes, Command] = dict(
    [
        command("get", 2, "readonly fast", ONE, "@read @string @fast", get, local_read=True),
        command("set", -3, "write denyoom", ONE, "@write @string @slow", set_),
        command("setnx", 3, "write denyoom fast", ONE, "@write @string @fast", setnx),
        command("setex", 4, "write denyoom", ONE, "@write @string @slow", setex),
        command("psetex", 4, "write denyoom", ONE, "@write @string @slow", psetex),
        command("getset", 3, "write denyoom fast", ONE, "@write @string @fast", getset),
        command("getdel", 2, "write fast", ONE, "@write @string @fast", getdel),
        command("getex", -2, "write fast", ONE, "@write @string @fast", getex),
        command(
            "mget", -2, "readonly fast", (1, -1, 1), "@read @string @fast", mget, local_read=True
        ),
        command("mset", -3, "write denyoom", (1, -1, 2), "@write @string @slow", mset),
        command("msetnx", -3, "write denyoom", (1, -1, 2), "@write @string @slow", msetnx),
        command("incr", 2, "write denyoom fast", ONE, "@write @string @fast", incr),
        command("incrby", 3, "write denyoom fast", ONE, "@write @string @fast", incrby),
        command("decr", 2, "write denyoom fast", ONE, "@write @string @fast", decr),
        command("decrby", 3, "write denyoom fast", ONE, "@write @string @fast", decrby),
        command("incrbyfloat", 3, "write denyoom fast", ONE, "@write @string @fast", incrbyfloat),
        command("time", 1, "fast", NO_KEYS, "@fast", time, local_read=True),
        command("append", 3, "write denyoom fast", ONE, "@write @string @fast", append),
        command("strlen", 2, "readonly fast", ONE, "@read @string @fast", strlen, local_read=True),
        command("getrange", 4, "readonly", ONE, "@read @string @slow", getrange, local_read=True),
        command("substr", 4, "readonly", ONE, "@read @string @slow", getrange, local_read=True),
        command("setrange", 4, "write denyoom", ONE, "@write @string @slow", setrange),
    ]
)
