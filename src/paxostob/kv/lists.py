"""The list commands: a key holding a sequence of elements, pushed and popped at both ends.

A list is a ``deque``: pushes and pops at either end are O(1), an index is
O(distance from the nearer end) like Redis' quicklist. Each element is at
most ``value_bytes_max`` bytes. A list whose last element is removed is
deleted (as in Redis). Blocking pops (BLPOP, ...) are not state-machine
commands.
"""

from __future__ import annotations

from itertools import islice

from .keyspace import INT64_MIN, SYNTAX, Failed, Keyspace, arity_error, parse_int, text
from .replies import OK, Error, Reply
from .table import ONE, Command, command
from .values import ListValue

__all__ = ["TABLE"]

_NO_SUCH_KEY = Error("ERR no such key")
_OUT_OF_RANGE = Error("ERR index out of range")
_MUST_BE_POSITIVE = Error("ERR value is out of range, must be positive")


def _push(ks: Keyspace, args: tuple[bytes, ...], *, left: bool, only_existing: bool) -> Reply:
    for element in args[2:]:
        ks.check_size(len(element))
    if only_existing:
        value = ks.writable(args[1], ListValue)
        if value is None:
            return 0
    else:
        value = ks.writable_or_create(args[1], ListValue)
    if left:
        value.extendleft(args[2:])
    else:
        value.extend(args[2:])
    return len(value)


def lpush(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _push(ks, args, left=True, only_existing=False)


def rpush(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _push(ks, args, left=False, only_existing=False)


def lpushx(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _push(ks, args, left=True, only_existing=True)


def rpushx(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _push(ks, args, left=False, only_existing=True)


def _pop(ks: Keyspace, args: tuple[bytes, ...], *, left: bool) -> Reply:
    if len(args) > 3:
        return arity_error(text(args[0].lower()))
    count = None
    if len(args) == 3:
        count = _parse_positive(args[2], _MUST_BE_POSITIVE)
    value = ks.writable(args[1], ListValue)
    if value is None:
        return None
    if count is None:
        element = value.popleft() if left else value.pop()
        ks.drop_if_empty(args[1], value)
        return element
    if count == 0:
        return []
    pop = value.popleft if left else value.pop
    out: list[Reply] = [pop() for _ in range(min(count, len(value)))]
    ks.drop_if_empty(args[1], value)
    return out


def lpop(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _pop(ks, args, left=True)


def rpop(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _pop(ks, args, left=False)


def _parse_positive(raw: bytes, error: Error) -> int:
    """Redis' ``getPositiveLongFromObjectOrReply``: one message for "not a number" and "< 0"."""
    try:
        value = parse_int(raw)
    except Failed:
        raise Failed(error) from None
    if value < 0:
        raise Failed(error)
    return value


def _span(start: int, end: int, size: int) -> tuple[int, int] | None:
    """Redis' LRANGE/LTRIM index rules: the inclusive span, or ``None`` when empty."""
    if start < 0:
        start += size
    if end < 0:
        end += size
    start = max(start, 0)
    if start > end or start >= size:
        return None
    return start, min(end, size - 1)


def lrange(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    start, end = parse_int(args[2]), parse_int(args[3])
    value = ks.lookup_as(args[1], ListValue)
    if value is None:
        return []
    span = _span(start, end, len(value))
    if span is None:
        return []
    first, last = span
    if first > len(value) - 1 - last:  # nearer the tail: walk from there
        out: list[Reply] = list(islice(reversed(value), len(value) - 1 - last, len(value) - first))
        out.reverse()
        return out
    return list(islice(value, first, last + 1))


def llen(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], ListValue)
    return 0 if value is None else len(value)


def lindex(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], ListValue)
    if value is None:
        return None
    index = parse_int(args[2])  # after the key, as in Redis
    if index < 0:
        index += len(value)
    return value[index] if 0 <= index < len(value) else None


def lset(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.writable(args[1], ListValue)
    if value is None:
        return _NO_SUCH_KEY
    index = parse_int(args[2])  # after the key, as in Redis
    ks.check_size(len(args[3]))
    if index < 0:
        index += len(value)
    if not 0 <= index < len(value):
        return _OUT_OF_RANGE
    value[index] = args[3]
    return OK


def lrem(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    count = parse_int(args[2])
    value = ks.writable(args[1], ListValue)
    if value is None:
        return 0
    element = args[3]
    limit = abs(count) or len(value)
    items = list(value) if count >= 0 else list(reversed(value))
    kept: list[bytes] = []
    removed = 0
    for item in items:
        if removed < limit and item == element:
            removed += 1
        else:
            kept.append(item)
    if removed:
        if count < 0:
            kept.reverse()
        value.clear()
        value.extend(kept)
        ks.drop_if_empty(args[1], value)
    return removed


def ltrim(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    start, end = parse_int(args[2]), parse_int(args[3])
    value = ks.writable(args[1], ListValue)
    if value is None:
        return OK
    span = _span(start, end, len(value))
    if span is None:
        ks.remove(args[1])
        return OK
    first, last = span
    for _ in range(len(value) - 1 - last):
        value.pop()
    for _ in range(first):
        value.popleft()
    return OK


def _side(raw: bytes) -> bool:
    """LEFT (True) or RIGHT (False)."""
    side = raw.lower()
    if side == b"left":
        return True
    if side == b"right":
        return False
    raise Failed(SYNTAX)


def _move(ks: Keyspace, source: bytes, target: bytes, *, from_left: bool, to_left: bool) -> Reply:
    value = ks.writable(source, ListValue)
    if value is None:
        return None
    ks.lookup_as(target, ListValue)  # WRONGTYPE before anything moves
    element = value.popleft() if from_left else value.pop()
    # The same key is a rotation: the element goes back into the same list.
    into = value if source == target else ks.writable_or_create(target, ListValue)
    if to_left:
        into.appendleft(element)
    else:
        into.append(element)
    ks.drop_if_empty(source, value)
    return element


def lmove(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    from_left, to_left = _side(args[3]), _side(args[4])
    return _move(ks, args[1], args[2], from_left=from_left, to_left=to_left)


def rpoplpush(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _move(ks, args[1], args[2], from_left=False, to_left=True)


def lpos(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    rank, count, maxlen = 1, None, 0
    j = 3
    while j < len(args):
        option = args[j].lower()
        more = j + 1 < len(args)
        if option == b"rank" and more:
            rank = parse_int(args[j + 1])
            if rank == 0:
                return Error(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the "
                    "second ... or use negative to start from the end of the list"
                )
        elif option == b"count" and more:
            count = _parse_positive(args[j + 1], Error("ERR COUNT can't be negative"))
        elif option == b"maxlen" and more:
            maxlen = _parse_positive(args[j + 1], Error("ERR MAXLEN can't be negative"))
        else:
            return SYNTAX
        j += 2
    value = ks.lookup_as(args[1], ListValue)
    if value is None:
        return [] if count is not None else None
    size = len(value)
    items = iter(value) if rank > 0 else reversed(value)
    if maxlen:
        items = islice(items, maxlen)
    # Redis negates the rank in C: -LLONG_MIN stays negative, so every match counts.
    skip = 0 if rank == INT64_MIN else abs(rank) - 1
    found: list[Reply] = []
    for i, item in enumerate(items):
        if item != args[2]:
            continue
        if skip:
            skip -= 1
            continue
        found.append(i if rank > 0 else size - 1 - i)
        if count is None or (count and len(found) >= count):
            break
    if count is None:
        return found[0] if found else None
    return found


_READ_SLOW = "@read @list @slow"
_WRITE_FAST = "@write @list @fast"
_WRITE_SLOW = "@write @list @slow"
_TWO = (1, 2, 1)

#: The list commands, as Redis 7.0 describes them.
TABLE: dict[bytes, Command] = dict(
    [
        command("lpush", -3, "write denyoom fast", ONE, _WRITE_FAST, lpush),
        command("rpush", -3, "write denyoom fast", ONE, _WRITE_FAST, rpush),
        command("lpushx", -3, "write denyoom fast", ONE, _WRITE_FAST, lpushx),
        command("rpushx", -3, "write denyoom fast", ONE, _WRITE_FAST, rpushx),
        command("lpop", -2, "write fast", ONE, _WRITE_FAST, lpop),
        command("rpop", -2, "write fast", ONE, _WRITE_FAST, rpop),
        command("lrange", 4, "readonly", ONE, _READ_SLOW, lrange, local_read=True),
        command("llen", 2, "readonly fast", ONE, "@read @list @fast", llen, local_read=True),
        command("lindex", 3, "readonly", ONE, _READ_SLOW, lindex, local_read=True),
        command("lset", 4, "write denyoom", ONE, _WRITE_SLOW, lset),
        command("lrem", 4, "write", ONE, _WRITE_SLOW, lrem),
        command("ltrim", 4, "write", ONE, _WRITE_SLOW, ltrim),
        command("lmove", 5, "write denyoom", _TWO, _WRITE_SLOW, lmove),
        command("rpoplpush", 3, "write denyoom", _TWO, _WRITE_SLOW, rpoplpush),
        command("lpos", -3, "readonly", ONE, _READ_SLOW, lpos, local_read=True),
    ]
)
