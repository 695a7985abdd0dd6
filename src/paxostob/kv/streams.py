"""Stream commands (``XADD``, ``XRANGE``, ``XREVRANGE``, ``XLEN``, ``XDEL``, ``XTRIM``, ``XREAD``).

Theory of operation: a stream (``stream_value.StreamValue``) is an
append-only run of entries with increasing IDs ``ms-seq``. The ID ``XADD *``
gives is derived from the machine's clock, which is the log's (the leader
stamps every batch), never a node's: every replica hands out the same ID,
and IDs never go back even if the leader's clock does (the sequence part
grows instead, as in Redis when its clock stalls). Parsing and error texts
follow Redis 7.0's ``t_stream.c`` line by line (C-string rules included: an
argument ends at its first NUL byte where Redis reads it with ``strcmp``).

As in Redis (and unlike every other type), a stream stays when its last
entry is deleted or trimmed away: an empty stream remembers its last ID.

``XREAD`` here never blocks: applied, or read on one node, it replies what
it can at once, as Redis does inside ``MULTI``. ``XREAD BLOCK`` is the RESP
server's: it resolves ``$`` to each stream's last ID with the internal read
``stream-last-ids``, then reads again each time an entry that writes one of
its streams is applied on its node (``resp.stream_reads``).
"""

from __future__ import annotations

from .keyspace import SYNTAX, WRONGTYPE, Failed, Keyspace, arity_error, c_string
from .keyspace import parse_int as parse_ll
from .replies import Error, Reply
from .stream_value import StreamId, StreamValue
from .table import ONE, Command, command

__all__ = ["TABLE", "format_id", "parse_id", "xread_streams"]

UINT64_MAX = (1 << 64) - 1
_MAX_ID: StreamId = (UINT64_MAX, UINT64_MAX)
#: Redis' default ``stream-node-max-entries`` times 100: the entries ``~`` may trim
#: without a ``LIMIT``.
_APPROX_LIMIT_DEFAULT = 100 * 100
#: The ``COUNT`` of an ``XREAD BLOCK`` served after waiting, when the client gave none
#: (Redis' ``XREAD_BLOCKED_DEFAULT_COUNT``).
XREAD_BLOCKED_COUNT_DEFAULT = 1000

INVALID_ID = Error("ERR Invalid stream ID specified as stream command argument")
_C_SPACE = b" \t\n\v\f\r"


def _string2ull(raw: bytes) -> int | None:
    """Redis' ``string2ull``: ``string2ll``, else C's ``strtoull`` over the whole text."""
    try:
        value = parse_ll(raw)
    except Failed:
        pass
    else:
        return value if value >= 0 else None
    text = raw.lstrip(_C_SPACE)
    negative = text[:1] == b"-"
    digits = text[1:] if text[:1] in (b"+", b"-") else text
    if not digits.isdigit():
        return None
    value = int(digits)
    if value > UINT64_MAX:
        return None  # ERANGE
    return (-value) & UINT64_MAX if negative else value


def parse_id(
    raw: bytes, missing_seq: int = 0, *, strict: bool = True, seq_star: bool = False
) -> tuple[StreamId, bool]:
    """An ID argument as ``streamGenericParseIDOrReply`` reads it, and whether its seq was given.

    ``ms`` alone takes ``missing_seq``; ``-`` and ``+`` (unless ``strict``) are the
    smallest and largest IDs; ``ms-*`` (only with ``seq_star``) leaves the seq to XADD.
    """
    if len(raw) > 127:
        raise Failed(INVALID_ID)
    buf = c_string(raw)
    if buf in (b"-", b"+"):
        if strict:
            raise Failed(INVALID_ID)
        return ((0, 0) if buf == b"-" else _MAX_ID), True
    ms_part, dash, seq_part = buf.partition(b"-")
    ms = _string2ull(ms_part)
    if ms is None:
        raise Failed(INVALID_ID)
    if not dash:
        return (ms, missing_seq), True
    if seq_star and seq_part == b"*":
        return (ms, 0), False
    seq = _string2ull(seq_part)
    if seq is None:
        raise Failed(INVALID_ID)
    return (ms, seq), True


def format_id(entry_id: StreamId) -> bytes:
    return b"%d-%d" % entry_id


def _incr(entry_id: StreamId) -> StreamId | None:
    ms, seq = entry_id
    if seq < UINT64_MAX:
        return ms, seq + 1
    return None if ms == UINT64_MAX else (ms + 1, 0)


def _decr(entry_id: StreamId) -> StreamId | None:
    ms, seq = entry_id
    if seq > 0:
        return ms, seq - 1
    return None if ms == 0 else (ms - 1, UINT64_MAX)


def _entries(stream: StreamValue, low: int, high: int, *, rev: bool, count: int) -> list[Reply]:
    """``[id, [field, value, ...]]`` of ``ids[low:high]``, at most ``count`` (0: all)."""
    ids = stream.ids[low:high]
    if rev:
        ids.reverse()
    if count:
        ids = ids[:count]
    entries = stream.entries
    return [[format_id(i), list(entries[i])] for i in ids]


def _lookup(ks: Keyspace, key: bytes) -> StreamValue | None:
    value = ks.get(key)
    if value is None or type(value) is StreamValue:
        return value
    raise Failed(WRONGTYPE)


def _writable(ks: Keyspace, key: bytes) -> StreamValue | None:
    stream = _lookup(ks, key)
    if stream is not None and stream.gen != ks.gen:
        stream = stream.clone(ks.gen)
        ks.values[key] = stream
    return stream


# --- XADD and XTRIM ------------------------------------------------------------------------


class _Trim:
    """The parsed options of ``XADD``/``XTRIM`` (Redis' ``streamAddTrimArgs``)."""

    __slots__ = ("approx", "id", "id_given", "limit", "maxlen", "minid", "no_mkstream", "seq_given")

    def __init__(self) -> None:
        self.maxlen: int | None = None
        self.minid: StreamId | None = None
        self.approx = False
        self.limit = 0
        self.no_mkstream = False
        self.id: StreamId = (0, 0)
        self.id_given = False
        self.seq_given = True


def _parse_trim(args: tuple[bytes, ...], *, xadd: bool) -> tuple[_Trim, int]:
    """``streamParseAddOrTrimArgsOrReply``: the options, and where the ID is (XADD)."""
    parsed = _Trim()
    argc = len(args)
    limit_given = False
    strategy = False
    i = 2
    while i < argc:
        more = argc - 1 - i
        opt = c_string(args[i]).lower()
        if xadd and opt == b"*":
            break
        if opt in (b"maxlen", b"minid") and more:
            if strategy:
                raise Failed(
                    Error(
                        "ERR syntax error, MAXLEN and MINID options at the same time "
                        "are not compatible"
                    )
                )
            parsed.approx = False
            following = c_string(args[i + 1])
            if more >= 2 and following == b"~":
                parsed.approx = True
                i += 1
            elif more >= 2 and following == b"=":
                i += 1
            if opt == b"maxlen":
                parsed.maxlen = parse_ll(args[i + 1])
                if parsed.maxlen < 0:
                    raise Failed(Error("ERR The MAXLEN argument must be >= 0."))
            else:
                parsed.minid = parse_id(args[i + 1])[0]
            i += 1
            strategy = True
        elif opt == b"limit" and more:
            parsed.limit = parse_ll(args[i + 1])
            if parsed.limit < 0:
                raise Failed(Error("ERR The LIMIT argument must be >= 0."))
            limit_given = True
            i += 1
        elif xadd and opt == b"nomkstream":
            parsed.no_mkstream = True
        elif xadd:
            parsed.id, parsed.seq_given = parse_id(args[i], seq_star=True)
            parsed.id_given = True
            break
        else:
            raise Failed(SYNTAX)
        i += 1
    if parsed.limit and not strategy:
        raise Failed(
            Error("ERR syntax error, LIMIT cannot be used without specifying a trimming strategy")
        )
    if not xadd and not strategy:
        raise Failed(Error("ERR syntax error, XTRIM must be called with a trimming strategy"))
    if limit_given:
        if not parsed.approx:
            raise Failed(
                Error("ERR syntax error, LIMIT cannot be used without the special ~ option")
            )
    else:
        parsed.limit = _APPROX_LIMIT_DEFAULT if parsed.approx else 0
    return parsed, i


def _trim(stream: StreamValue, parsed: _Trim) -> int:
    if parsed.maxlen is None and parsed.minid is None:
        return 0
    return stream.trim(
        maxlen=parsed.maxlen, minid=parsed.minid, approx=parsed.approx, limit=parsed.limit
    )


def xadd(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    parsed, at = _parse_trim(args, xadd=True)
    fields = args[at + 1 :]
    if len(fields) < 2 or len(fields) % 2:
        return arity_error("xadd")
    if parsed.id_given and parsed.seq_given and parsed.id == (0, 0):
        return Error("ERR The ID specified in XADD must be greater than 0-0")
    for item in fields:
        ks.check_size(len(item))
    key = args[1]
    stream = _writable(ks, key)
    if stream is None:
        if parsed.no_mkstream:
            return None
        stream = StreamValue(ks.gen)
        ks.store(key, stream)
    last = stream.last_id
    if last == _MAX_ID:
        return Error("ERR The stream has exhausted the last possible ID, unable to add more items")
    new: StreamId | None
    if not parsed.id_given:
        # Redis' streamNextID, at the log's clock instead of the node's.
        new = (ks.clock_ms, 0) if ks.clock_ms > last[0] else _incr(last)
    elif parsed.seq_given:
        new = parsed.id
    elif parsed.id[0] == last[0]:
        new = _incr(last) if last[1] < UINT64_MAX else None
    else:
        new = parsed.id
    if new is None or new <= last:
        return Error(
            "ERR The ID specified in XADD is equal or smaller than the target stream top item"
        )
    stream.append(new, fields)
    _trim(stream, parsed)
    return format_id(new)


def xtrim(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    parsed, _ = _parse_trim(args, xadd=False)
    stream = _writable(ks, args[1])
    if stream is None:
        return 0
    return _trim(stream, parsed)


def xdel(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    if _lookup(ks, args[1]) is None:
        return 0
    ids = [parse_id(raw)[0] for raw in args[2:]]
    stream = _writable(ks, args[1])
    assert stream is not None
    return sum(stream.delete(entry_id) for entry_id in ids)


# --- reads -------------------------------------------------------------------------------


def _range(ks: Keyspace, args: tuple[bytes, ...], *, rev: bool) -> Reply:
    start_raw, end_raw = (args[3], args[2]) if rev else (args[2], args[3])
    start = _interval_id(start_raw, 0)
    if start_raw[:1] == b"(" and len(start_raw) > 1:
        start = _incr(start)  # type: ignore[assignment]
        if start is None:
            return Error("ERR invalid start ID for the interval")
    end = _interval_id(end_raw, UINT64_MAX)
    if end_raw[:1] == b"(" and len(end_raw) > 1:
        end = _decr(end)  # type: ignore[assignment]
        if end is None:
            return Error("ERR invalid end ID for the interval")
    count = -1
    j = 4
    while j < len(args):
        if c_string(args[j]).lower() == b"count" and len(args) - j - 1 >= 1:
            count = max(0, parse_ll(args[j + 1]))
            j += 2
        else:
            return SYNTAX
    stream = _lookup(ks, args[1])
    if stream is None:
        return []
    if count == 0:
        return None
    low, high = stream.range(start, end)
    return _entries(stream, low, high, rev=rev, count=max(count, 0))


def _interval_id(raw: bytes, missing_seq: int) -> StreamId:
    """``streamParseIntervalIDOrReply``: ``(id`` is exclusive (and strict)."""
    if raw[:1] == b"(" and len(raw) > 1:
        return parse_id(raw[1:], missing_seq)[0]
    return parse_id(raw, missing_seq, strict=False)[0]


def xrange(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _range(ks, args, rev=False)


def xrevrange(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return _range(ks, args, rev=True)


def xlen(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    stream = _lookup(ks, args[1])
    return 0 if stream is None else len(stream)


def xread_streams(args: tuple[bytes, ...] | list[bytes]) -> tuple[int, int, int | None, int]:
    """``XREAD``'s options: (index of the first key, number of keys, BLOCK ms or None, COUNT).

    Raises ``Failed`` with Redis' reply for a bad option. A COUNT of 0 (or
    less, or none) means every entry.
    """
    argc = len(args)
    block: int | None = None
    count = 0
    i = 1
    while i < argc:
        more = argc - i - 1
        opt = c_string(args[i]).lower()
        if opt == b"block" and more:
            i += 1
            try:
                block = parse_ll(args[i])
            except Failed:
                raise Failed(Error("ERR timeout is not an integer or out of range")) from None
            if block < 0:
                raise Failed(Error("ERR timeout is negative"))
        elif opt == b"count" and more:
            i += 1
            count = max(0, parse_ll(args[i]))
        elif opt == b"streams" and more:
            first = i + 1
            if (argc - first) % 2:
                raise Failed(
                    Error(
                        "ERR Unbalanced XREAD list of streams: for each stream key an ID "
                        "or '$' must be specified."
                    )
                )
            return first, (argc - first) // 2, block, count
        elif opt == b"group" and more >= 2:
            raise Failed(
                Error(
                    "ERR The GROUP option is only supported by XREADGROUP. "
                    "You called XREAD instead."
                )
            )
        elif opt == b"noack":
            raise Failed(
                Error(
                    "ERR The NOACK option is only supported by XREADGROUP. "
                    "You called XREAD instead."
                )
            )
        else:
            raise Failed(SYNTAX)
        i += 1
    raise Failed(SYNTAX)


def xread(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    first, n, _, count = xread_streams(args)
    after: list[StreamId] = []
    for k in range(n):
        stream = _lookup(ks, args[first + k])
        raw = c_string(args[first + n + k])
        if raw == b"$":
            after.append((0, 0) if stream is None else stream.last_id)
        elif raw == b">":
            return Error(
                "ERR The > ID can be specified only when calling XREADGROUP using the "
                "GROUP <group> <consumer> option."
            )
        else:
            after.append(parse_id(args[first + n + k])[0])
    out: list[Reply] = []
    for k in range(n):
        stream = _lookup(ks, args[first + k])
        if stream is None or not stream.ids or stream.ids[-1] <= after[k]:
            continue
        start = _incr(after[k])
        assert start is not None  # after[k] < the last ID
        low, high = stream.range(start, _MAX_ID)
        out.append([args[first + k], _entries(stream, low, high, rev=False, count=count)])
    return out or None


def stream_last_ids(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    """Internal: each stream's last ID (``0-0`` for a missing key), for ``XREAD BLOCK ... $``."""
    out: list[Reply] = []
    for key in args[1:]:
        stream = _lookup(ks, key)
        out.append(format_id((0, 0) if stream is None else stream.last_id))
    return out


TABLE: dict[bytes, Command] = dict(
    [
        command("xadd", -5, "write denyoom fast", ONE, "@write @stream @fast", xadd),
        command("xrange", -4, "readonly", ONE, "@read @stream @slow", xrange, local_read=True),
        command(
            "xrevrange", -4, "readonly", ONE, "@read @stream @slow", xrevrange, local_read=True
        ),
        command("xlen", 2, "readonly fast", ONE, "@read @stream @fast", xlen, local_read=True),
        command("xdel", -3, "write fast", ONE, "@write @stream @fast", xdel),
        command("xtrim", -4, "write", ONE, "@write @stream @slow", xtrim),
        command(
            "xread",
            -4,
            "readonly blocking movablekeys",
            (0, 0, 0),
            "@read @stream @slow @blocking",
            xread,
            local_read=True,
        ),
        command(
            "stream-last-ids",
            -2,
            "readonly",
            (1, -1, 1),
            "@read @stream",
            stream_last_ids,
            local_read=True,
            internal=True,
        ),
    ]
)
