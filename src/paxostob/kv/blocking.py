"""Blocking pops (``BLPOP``, ``BRPOP``, ``BLMOVE``, ``BZPOPMIN``, ``BZPOPMAX``): the machine's half.

Theory of operation: a pop that takes an element must be a log entry, so
that exactly one client gets each element and every replica agrees on who.
The state machine therefore never blocks: applied, each of these commands
does what Redis does when it cannot block (inside ``MULTI`` or a script):
it pops from the first of its keys that holds something, or replies a null
when none does. The waiting is the RESP server's (``resp.commands``): a
client whose pop found nothing waits on its node until an entry that writes
one of its keys is applied there, then proposes its pop again, as a new
entry, decided after that write. The timeout is parsed and checked here as
Redis does (its errors are the same on every replica) and used by the server.
"""

from __future__ import annotations

import math

from .keyspace import WRONGTYPE, Failed, Keyspace
from .lists import _move, _side
from .replies import Error, Reply
from .table import Command, command
from .values import ListValue, ZSetValue, format_double, parse_double

__all__ = ["TABLE", "timeout_s"]

_NOT_FLOAT = Error("ERR timeout is not a float or out of range")
_NEGATIVE = Error("ERR timeout is negative")


def timeout_s(raw: bytes) -> float:
    """A blocking command's timeout in seconds (0: for ever), as Redis reads it."""
    value = parse_double(raw)
    if value is None:
        raise Failed(_NOT_FLOAT)
    # Redis converts to milliseconds in a long long: beyond it, the value wraps negative.
    if value < 0 or not math.isfinite(value) or value * 1000 >= 2.0**63:
        raise Failed(_NEGATIVE)
    return value


def _pop_first(ks: Keyspace, args: tuple[bytes, ...], *, left: bool) -> Reply:
    timeout_s(args[-1])
    for key in args[1:-1]:
        value = ks.get(key)
        if value is None:
            continue
        if type(value) is not ListValue:
            raise Failed(WRONGTYPE)
        lst = ks.writable(key, ListValue)
        assert lst is not None
        element = lst.popleft() if left else lst.pop()
        ks.drop_if_empty(key, lst)
        return [key, element]
    return None


def blpop(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _pop_first(ks, args, left=True)


def brpop(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _pop_first(ks, args, left=False)


def blmove(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    from_left, to_left = _side(args[3]), _side(args[4])
    timeout_s(args[5])
    return _move(ks, args[1], args[2], from_left=from_left, to_left=to_left)


def _zpop_first(ks: Keyspace, args: tuple[bytes, ...], *, highest: bool) -> Reply:
    timeout_s(args[-1])
    for key in args[1:-1]:
        value = ks.get(key)
        if value is None:
            continue
        if type(value) is not ZSetValue:
            raise Failed(WRONGTYPE)
        zset = ks.writable(key, ZSetValue)
        assert zset is not None
        score, member = zset.order[-1] if highest else zset.order[0]
        zset.discard(member)
        ks.drop_if_empty(key, zset)
        return [key, member, format_double(score)]
    return None


def bzpopmin(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _zpop_first(ks, args, highest=False)


def bzpopmax(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _zpop_first(ks, args, highest=True)


#: Every key but the last argument (the timeout).
_BUT_LAST = (1, -2, 1)

_LIST = "@write @list @slow @blocking"
_ZSET = "@write @sortedset @fast @blocking"

TABLE: dict[bytes, Command] = dict(
    [
        command("blpop", -3, "write noscript blocking", _BUT_LAST, _LIST, blpop),
        command("brpop", -3, "write noscript blocking", _BUT_LAST, _LIST, brpop),
        command("blmove", 6, "write denyoom noscript blocking", (1, 2, 1), _LIST, blmove),
        command("bzpopmin", -3, "write noscript blocking fast", _BUT_LAST, _ZSET, bzpopmin),
        command("bzpopmax", -3, "write noscript blocking fast", _BUT_LAST, _ZSET, bzpopmax),
    ]
)
