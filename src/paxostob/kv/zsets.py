"""The sorted set commands: members ordered by (score, member).

The structure (``values.ZSetValue``) is a dict member -> score plus a sorted
Python list of (score, member) pairs: ranges by rank, score or lex are a
bisect and a slice (O(log n + k)), a rank is a bisect (O(log n)). Scores are
IEEE doubles parsed and printed as Redis 7.0 does (``%.17g``). A sorted set
whose last member is removed is deleted.

``BYLEX`` ranges assume, as Redis documents, that all members have the same
score; with mixed scores the reply is a deterministic function of the state,
but may differ from Redis' (whose answer then depends on its encoding).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable

from .cursor import SMALL_AGGREGATE_MAX, hash_order, page, parse_scan_options
from .keyspace import SYNTAX, Failed, Keyspace, parse_cursor, parse_int
from .replies import Error, Reply
from .table import ONE, Command, command
from .values import NOT_FLOAT, ZSetValue, format_double, parse_double, parse_range_double

__all__ = ["TABLE"]

_EMPTY_SCAN: Reply = [b"0", []]
_NOT_A_FLOAT_RANGE = Error("ERR min or max is not a float")
_NOT_A_LEX_RANGE = Error("ERR min or max not valid string range item")
_NAN = Error("ERR resulting score is not a number (NaN)")


def _score(raw: bytes) -> float:
    score = parse_double(raw)
    if score is None:
        raise Failed(NOT_FLOAT)
    return score


def _zadd(  # noqa: C901 - ZADD's flags, each a flat branch as Redis parses them
    ks: Keyspace, args: tuple[bytes, ...], *, incr_command: bool
) -> Reply:
    nx = xx = gt = lt = ch = False
    incr = incr_command
    i = 2
    if not incr_command:
        while i < len(args):
            option = args[i].lower()
            if option == b"nx":
                nx = True
            elif option == b"xx":
                xx = True
            elif option == b"ch":
                ch = True
            elif option == b"incr":
                incr = True
            elif option == b"gt":
                gt = True
            elif option == b"lt":
                lt = True
            else:
                break
            i += 1
    rest = len(args) - i
    if rest % 2 or not rest:
        return SYNTAX
    if xx and nx:
        return Error("ERR XX and NX options at the same time are not compatible")
    if (gt and nx) or (lt and nx) or (gt and lt):
        return Error("ERR GT, LT, and/or NX options at the same time are not compatible")
    if incr and rest > 2:
        return Error("ERR INCR option supports a single increment-element pair")
    pairs = [(_score(args[j]), args[j + 1]) for j in range(i, len(args), 2)]
    for _, member in pairs:
        ks.check_size(len(member))
    value = ks.writable(args[1], ZSetValue)
    if value is None:
        if xx:
            return None if incr else 0
        value = ks.create(args[1], ZSetValue)
    added = updated = processed = 0
    score = 0.0
    for score, member in pairs:
        if math.isnan(score):
            return _NAN
        current = value.scores.get(member)
        if current is not None:
            if nx:
                continue
            if incr:
                score += current
                if math.isnan(score):
                    ks.drop_if_empty(args[1], value)
                    return _NAN
            if (lt and score >= current) or (gt and score <= current):
                continue
            processed += 1
            if score != current:
                value.add(member, score)
                updated += 1
        elif not xx:
            value.add(member, score)
            added += 1
            processed += 1
    if incr:
        return format_double(score) if processed else None
    return added + updated if ch else added


def zadd(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _zadd(ks, args, incr_command=False)


def zincrby(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _zadd(ks, args, incr_command=True)


def zrem(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.writable(args[1], ZSetValue)
    if value is None:
        return 0
    removed = sum(1 for member in args[2:] if value.discard(member))
    ks.drop_if_empty(args[1], value)
    return removed


def zscore(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], ZSetValue)
    score = None if value is None else value.scores.get(args[2])
    return None if score is None else format_double(score)


def zmscore(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], ZSetValue)
    out: list[Reply] = []
    for member in args[2:]:
        score = None if value is None else value.scores.get(member)
        out.append(None if score is None else format_double(score))
    return out


def zcard(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], ZSetValue)
    return 0 if value is None else len(value)


# --- ranges ---------------------------------------------------------------------------------

_ScoreRange = tuple[float, bool, float, bool]  # min, min exclusive, max, max exclusive


def _score_range(low: bytes, high: bytes) -> _ScoreRange:
    """Redis' ``zslParseRange``: ``(`` makes a bound exclusive; C's strtod reads the rest."""
    bounds: list[tuple[float, bool]] = []
    for raw in (low, high):
        exclusive = raw[:1] == b"("
        parsed = parse_range_double(raw[1:] if exclusive else raw)
        if parsed is None:
            raise Failed(_NOT_A_FLOAT_RANGE)
        bounds.append((parsed, exclusive))
    return bounds[0][0], bounds[0][1], bounds[1][0], bounds[1][1]


def _score_ranks(value: ZSetValue, spec: _ScoreRange) -> range:
    low, low_ex, high, high_ex = spec
    if low > high or (low == high and (low_ex or high_ex)):
        return range(0)
    return value.score_range(low, low_ex, high, high_ex)


# A lex bound: (kind, member, exclusive) with kind -1 for "-", 1 for "+", 0 for a member.
_LexBound = tuple[int, bytes, bool]


def _lex_bound(raw: bytes) -> _LexBound:
    """Redis' ``zslParseLexRangeItem``."""
    first = raw[:1]
    if first in (b"+", b"-") and raw[1:2] in (b"", b"\0"):
        return (1 if first == b"+" else -1), b"", True
    if first == b"(":
        return 0, raw[1:], True
    if first == b"[":
        return 0, raw[1:], False
    raise Failed(_NOT_A_LEX_RANGE)


def _lex_ranks(value: ZSetValue, low: _LexBound, high: _LexBound) -> range:
    """Members from ``low`` to ``high``, by a bisect on members (all scores equal)."""
    if low[0] == 1 or high[0] == -1:
        return range(0)
    if (
        low[0] == 0
        and high[0] == 0
        and (low[1] > high[1] or (low[1] == high[1] and (low[2] or high[2])))
    ):
        return range(0)
    order = value.order

    def above_low(pair: tuple[float, bytes]) -> bool:
        return low[0] == -1 or (pair[1] > low[1] if low[2] else pair[1] >= low[1])

    def above_high(pair: tuple[float, bytes]) -> bool:
        return high[0] != 1 and (pair[1] >= high[1] if high[2] else pair[1] > high[1])

    start = bisect_left(order, True, key=above_low)
    stop = bisect_left(order, True, key=above_high)
    return range(start, max(start, stop))


def _rank_span(start: int, end: int, size: int) -> range:
    if start < 0:
        start += size
    if end < 0:
        end += size
    start = max(start, 0)
    if start > end or start >= size:
        return range(0)
    return range(start, min(end, size - 1) + 1)


def _limit(ranks: range, offset: int, limit: int, reverse: bool) -> range:
    """Redis' LIMIT: skip ``offset`` (< 0 skips everything), then ``limit`` (< 0: all)."""
    if reverse:
        ranks = ranks[::-1]
    if offset < 0:
        return range(0)
    ranks = ranks[offset:]
    return ranks if limit < 0 else ranks[:limit]


def _emit(value: ZSetValue, ranks: range, withscores: bool) -> list[Reply]:
    order = value.order
    out: list[Reply] = []
    if withscores:
        for i in ranks:
            score, member = order[i]
            out += (member, format_double(score))
    else:
        out += (order[i][1] for i in ranks)
    return out


_RANK, _SCORE, _LEX = "rank", "score", "lex"


def _range_generic(
    ks: Keyspace,
    args: tuple[bytes, ...],
    *,
    first: int = 1,
    store: bool = False,
    kind: str | None = None,
    reverse: bool | None = None,
) -> tuple[ZSetValue | None, range, bool]:
    """Redis' ``zrangeGenericCommand``: the sorted set, the ranks to emit, WITHSCORES."""
    withscores = False
    offset, limit = 0, -1
    j = first + 3
    while j < len(args):
        option = args[j].lower()
        if not store and option == b"withscores":
            withscores = True
        elif option == b"limit" and len(args) - j - 1 >= 2:
            offset, limit = parse_int(args[j + 1]), parse_int(args[j + 2])
            j += 2
        elif reverse is None and option == b"rev":
            reverse = True
        elif kind is None and option == b"bylex":
            kind = _LEX
        elif kind is None and option == b"byscore":
            kind = _SCORE
        else:
            raise Failed(SYNTAX)
        j += 1
    reverse = bool(reverse)
    kind = kind or _RANK
    if limit != -1 and kind == _RANK:
        raise Failed(
            Error(
                "ERR syntax error, LIMIT is only supported in combination with either "
                "BYSCORE or BYLEX"
            )
        )
    if withscores and kind == _LEX:
        raise Failed(Error("ERR syntax error, WITHSCORES not supported in combination with BYLEX"))
    low, high = args[first + 1], args[first + 2]
    if reverse and kind != _RANK:
        low, high = high, low  # given as max, min
    select: Callable[[ZSetValue], range]
    if kind == _RANK:
        start, end = parse_int(low), parse_int(high)

        def select(value: ZSetValue) -> range:
            ranks = _rank_span(start, end, len(value))
            if not reverse or not ranks:
                return ranks
            # Ranks counted from the highest score: the same span, read from the end.
            n = len(value)
            return range(n - 1 - ranks.start, n - 1 - ranks.stop, -1)

    elif kind == _SCORE:
        spec = _score_range(low, high)

        def select(value: ZSetValue) -> range:
            return _limit(_score_ranks(value, spec), offset, limit, reverse)

    else:
        low_bound, high_bound = _lex_bound(low), _lex_bound(high)

        def select(value: ZSetValue) -> range:
            return _limit(_lex_ranks(value, low_bound, high_bound), offset, limit, reverse)

    value = ks.lookup_as(args[first], ZSetValue)
    if value is None:
        return None, range(0), withscores
    return value, select(value), withscores


def _reply_range(
    ks: Keyspace, args: tuple[bytes, ...], kind: str | None, reverse: bool | None
) -> Reply:
    value, ranks, withscores = _range_generic(ks, args, kind=kind, reverse=reverse)
    return [] if value is None else _emit(value, ranks, withscores)


def zrange(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _reply_range(ks, args, None, None)


def zrangebyscore(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _reply_range(ks, args, _SCORE, False)


def zrevrangebyscore(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _reply_range(ks, args, _SCORE, True)


def zrevrange(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _reply_range(ks, args, _RANK, True)


def zrangebylex(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _reply_range(ks, args, _LEX, False)


def zrangestore(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value, ranks, _ = _range_generic(ks, args, first=2, store=True)
    pairs = [] if value is None else [value.order[i] for i in ranks]
    ks.get(args[1])
    ks.remove(args[1])
    if pairs:
        target = ks.create(args[1], ZSetValue)
        for score, member in pairs:
            target.add(member, score)
    return len(pairs)


def zcount(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    spec = _score_range(args[2], args[3])
    value = ks.lookup_as(args[1], ZSetValue)
    return 0 if value is None else len(_score_ranks(value, spec))


def zlexcount(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    low, high = _lex_bound(args[2]), _lex_bound(args[3])
    value = ks.lookup_as(args[1], ZSetValue)
    return 0 if value is None else len(_lex_ranks(value, low, high))


def zrank(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], ZSetValue)
    return None if value is None else value.rank(args[2])


def zrevrank(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    value = ks.lookup_as(args[1], ZSetValue)
    rank = None if value is None else value.rank(args[2])
    return None if rank is None or value is None else len(value) - 1 - rank


def _pop(ks: Keyspace, args: tuple[bytes, ...], *, highest: bool) -> Reply:
    if len(args) > 3:
        return SYNTAX
    count = 1
    if len(args) == 3:
        try:
            count = parse_int(args[2])
        except Failed:
            return Error("ERR value is out of range, must be positive")
        if count < 0:
            return Error("ERR value is out of range, must be positive")
        if count == 0:
            ks.lookup_as(args[1], ZSetValue)  # WRONGTYPE first, as in Redis
            return []
    value = ks.writable(args[1], ZSetValue)
    if value is None:
        return []
    count = min(count, len(value))
    order = value.order
    taken = order[len(order) - count :][::-1] if highest else order[:count]
    out: list[Reply] = []
    for score, member in taken:
        value.discard(member)
        out += (member, format_double(score))
    ks.drop_if_empty(args[1], value)
    return out


def zpopmin(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _pop(ks, args, highest=False)


def zpopmax(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _pop(ks, args, highest=True)


def _remove_ranks(ks: Keyspace, key: bytes, value: ZSetValue, ranks: range) -> int:
    if not ranks:
        return 0
    for _, member in value.order[ranks.start : ranks.stop]:
        del value.scores[member]
    del value.order[ranks.start : ranks.stop]
    ks.drop_if_empty(key, value)
    return len(ranks)


def zremrangebyscore(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    spec = _score_range(args[2], args[3])
    value = ks.writable(args[1], ZSetValue)
    return 0 if value is None else _remove_ranks(ks, args[1], value, _score_ranks(value, spec))


def zremrangebyrank(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    start, end = parse_int(args[2]), parse_int(args[3])
    value = ks.writable(args[1], ZSetValue)
    if value is None:
        return 0
    return _remove_ranks(ks, args[1], value, _rank_span(start, end, len(value)))


def zscan(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    cursor = parse_cursor(args[2])
    value = ks.lookup_as(args[1], ZSetValue)
    if value is None:
        return _EMPTY_SCAN
    options = parse_scan_options(args, 3, allow_type=False)
    if len(value) <= SMALL_AGGREGATE_MAX:
        next_cursor, members = 0, [member for _, member in value.order]
    else:
        next_cursor, members = page(hash_order(value.scores), cursor, options.count)
    out: list[Reply] = []
    for member in members:
        if options.matches(member):
            out += (member, format_double(value.scores[member]))
    return [str(next_cursor).encode("ascii"), out]


_READ_FAST = "@read @sortedset @fast"
_READ_SLOW = "@read @sortedset @slow"
_WRITE_FAST = "@write @sortedset @fast"
_WRITE_SLOW = "@write @sortedset @slow"

#: The sorted set commands, as Redis 7.0 describes them.
TABLE: dict[bytes, Command] = dict(
    [
        command("zadd", -4, "write denyoom fast", ONE, _WRITE_FAST, zadd),
        command("zincrby", 4, "write denyoom fast", ONE, _WRITE_FAST, zincrby),
        command("zrem", -3, "write fast", ONE, _WRITE_FAST, zrem),
        command("zscore", 3, "readonly fast", ONE, _READ_FAST, zscore, local_read=True),
        command("zmscore", -3, "readonly fast", ONE, _READ_FAST, zmscore, local_read=True),
        command("zcard", 2, "readonly fast", ONE, _READ_FAST, zcard, local_read=True),
        command("zcount", 4, "readonly fast", ONE, _READ_FAST, zcount, local_read=True),
        command("zlexcount", 4, "readonly fast", ONE, _READ_FAST, zlexcount, local_read=True),
        command("zrange", -4, "readonly", ONE, _READ_SLOW, zrange, local_read=True),
        command("zrangebyscore", -4, "readonly", ONE, _READ_SLOW, zrangebyscore, local_read=True),
        command(
            "zrevrangebyscore", -4, "readonly", ONE, _READ_SLOW, zrevrangebyscore, local_read=True
        ),
        command("zrevrange", -4, "readonly", ONE, _READ_SLOW, zrevrange, local_read=True),
        command("zrangebylex", -4, "readonly", ONE, _READ_SLOW, zrangebylex, local_read=True),
        command("zrangestore", -5, "write denyoom", (1, 2, 1), _WRITE_SLOW, zrangestore),
        command("zrank", 3, "readonly fast", ONE, _READ_FAST, zrank, local_read=True),
        command("zrevrank", 3, "readonly fast", ONE, _READ_FAST, zrevrank, local_read=True),
        command("zpopmin", -2, "write fast", ONE, _WRITE_FAST, zpopmin),
        command("zpopmax", -2, "write fast", ONE, _WRITE_FAST, zpopmax),
        command("zremrangebyscore", 4, "write", ONE, _WRITE_SLOW, zremrangebyscore),
        command("zremrangebyrank", 4, "write", ONE, _WRITE_SLOW, zremrangebyrank),
        command("zscan", -3, "readonly", ONE, _READ_SLOW, zscan, local_read=True),
    ]
)
