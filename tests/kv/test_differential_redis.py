"""Differential tests: the same commands to ``KvMachine`` and to a real redis-server.

Compared exactly: every reply of random command sequences (random case,
wrong arities, unknown commands, bad options and numbers, binary and empty
keys, multi-op entries), across every type (strings, hashes, lists, sets,
sorted sets: WRONGTYPE included), then the whole final state (each key's
TYPE, value and expiry); sequences of one type's commands (so its keys hold
that type); ``KEYS`` with random glob patterns over awkward bytes, whole
``SCAN`` iterations (as sets), and ``COMMAND INFO`` against the ``COMMANDS``
table.

Not compared exactly, by design: the remaining time of a key (``TTL``,
``PTTL``, ``EXPIRETIME``, ``PEXPIRETIME``) is compared within 2 s, and
``TIME`` within 2 s, because the machine's clock is the entry's ``now_ms`` and
Redis reads its own; so every expiry in these sequences is far in the future
(or invalid, or already past where both delete at once). ``SCAN`` pages
differ (Redis walks its hash table); full iterations are compared instead,
and ``HSCAN``/``SSCAN`` only when both reply everything at once. Replies in
an order Redis leaves to its hash table (``SMEMBERS``, ``SINTER``, ...,
``HGETALL`` of a hash Redis stores as a table) are compared as sets.
``SPOP`` and ``SRANDMEMBER`` are random in Redis and seeded from the log
here: their replies are compared by size, and after an ``SPOP`` Redis is
given our state (``sync_draws``). ``BYLEX`` ranges run on one key whose
members all have score 0 (Redis documents no order otherwise). The
size-limit error names our bound (``value_bytes_max``) where Redis names
``proto-max-bulk-len``.

When ``redis-server`` is not installed, fails in CI and is skipped elsewhere
(``tests/tools.py``), naming what to install.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from paxostob.kv.commands import COMMANDS, Entry, Op
from paxostob.kv.machine import KvMachine
from paxostob.kv.replies import Error, Reply, SimpleString

from . import stream_ops
from .real_redis import RespClient

Args = list[bytes]

KEYS = [b"k0", b"k1", b"k2", b"k3", b"", b"k\x00x", b"\xe9t\xe9"]
VALUES = [
    *(b"", b"0", b"1", b"-1", b"10", b"007", b"+1", b"-0", b" 1", b"1.5", b"abc", b"x" * 40),
    *(b"9223372036854775807", b"-9223372036854775808", b"9223372036854775808", b"\xff\x00\r\n"),
]
INTS = [
    *(b"0", b"1", b"-1", b"2", b"5", b"-5", b"100", b"-100", b"abc", b"", b"01", b"-0", b"1e3"),
    *(b"9223372036854775807", b"-9223372036854775808", b"9223372036854775808", b" 1"),
]
# Expiry arguments: far in the future, invalid, or (where both delete at once) already past.
# A relative time is "past" only when it is not positive: 1 s or 1,000 ms from now would expire
# between our apply and Redis' next look at the key, which made the comparison a race.
REL_S = [b"100000", b"250000", b"3000000"]
REL_MS = [b"100000000", b"250000000", b"3000000000"]
ABS_S = [b"4102444800", b"4102448400", b"4133980800", b"4102444801"]
ABS_MS = [b"4102444800000", b"4102448400000", b"4133980800000", b"4102444800001"]
BAD = [b"0", b"-1", b"abc", b"", b"1.5", b"9223372036854775807", b"9223372036854775"]
PAST = [b"0", b"-5", b"1", b"1000"]
PAST_REL = [b"0", b"-5"]
PATTERN_BYTES = [b"k", b"0", b"1", b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"\x00", b"\xe9"]
NAMES = sorted(COMMANDS)


def _pick(rng: random.Random, *pools: list[bytes]) -> bytes:
    return rng.choice(rng.choice(pools))


def _keys(rng: random.Random, low: int = 1, high: int = 4) -> Args:
    return [rng.choice(KEYS) for _ in range(rng.randint(low, high))]


def _pattern(rng: random.Random) -> bytes:
    return b"".join(rng.choice(PATTERN_BYTES) for _ in range(rng.randint(0, 5)))


def _set_options(rng: random.Random) -> Args:
    pool: list[Args] = [
        [b"NX"],
        [b"XX"],
        [b"GET"],
        [b"KEEPTTL"],
        [b"EX", _pick(rng, REL_S, BAD)],
        [b"PX", _pick(rng, REL_MS, BAD)],
        [b"EXAT", _pick(rng, ABS_S, BAD)],
        [b"PXAT", _pick(rng, ABS_MS, BAD)],
        [b"EX"],
        [b"PERSIST"],
    ]
    chosen = [rng.choice(pool) for _ in range(rng.choice([0, 0, 1, 1, 2, 3]))]
    return [word for option in chosen for word in option]


def _getex_options(rng: random.Random) -> Args:
    pool: list[Args] = [
        [b"EX", _pick(rng, REL_S, BAD)],
        [b"PX", _pick(rng, REL_MS, BAD)],
        [b"EXAT", _pick(rng, ABS_S, BAD, PAST)],
        [b"PXAT", _pick(rng, ABS_MS, BAD, PAST)],
        [b"PERSIST"],
        [b"NX"],
    ]
    chosen = [rng.choice(pool) for _ in range(rng.choice([0, 1, 1, 2]))]
    return [word for option in chosen for word in option]


def _expire_options(rng: random.Random, *, absolute: bool) -> Args:
    # GT/LT only with absolute times: relative ones would race our clock against Redis'.
    words = [b"NX", b"XX", b"nx", b"foo"] + ([b"GT", b"LT", b"gt"] if absolute else [])
    return [rng.choice(words) for _ in range(rng.choice([0, 0, 1, 1, 2]))]


def _scan_args(rng: random.Random) -> Args:
    args = [rng.choice([b"0", b"0", b"abc", b"-1", b"", b"12345678901234567890123"])]
    for _ in range(rng.choice([0, 1, 2])):
        args += rng.choice(
            [
                [b"MATCH", _pattern(rng)],
                [b"COUNT", rng.choice([b"1", b"10", b"0", b"-1", b"abc"])],
                [b"TYPE", rng.choice([b"string", b"STRING", b"list"])],
                [b"COUNT"],
                [b"bogus", b"1"],
            ]
        )
    return args


GENERATORS: dict[bytes, Callable[[random.Random], Args]] = {
    b"get": lambda r: [r.choice(KEYS)],
    b"set": lambda r: [r.choice(KEYS), r.choice(VALUES), *_set_options(r)],
    b"setnx": lambda r: [r.choice(KEYS), r.choice(VALUES)],
    b"setex": lambda r: [r.choice(KEYS), _pick(r, REL_S, BAD), r.choice(VALUES)],
    b"psetex": lambda r: [r.choice(KEYS), _pick(r, REL_MS, BAD), r.choice(VALUES)],
    b"getset": lambda r: [r.choice(KEYS), r.choice(VALUES)],
    b"getdel": lambda r: [r.choice(KEYS)],
    b"getex": lambda r: [r.choice(KEYS), *_getex_options(r)],
    b"mget": _keys,
    b"mset": lambda r: [w for k in _keys(r, 1, 3) for w in (k, r.choice(VALUES))],
    b"msetnx": lambda r: [w for k in _keys(r, 1, 3) for w in (k, r.choice(VALUES))],
    b"del": _keys,
    b"unlink": _keys,
    b"exists": _keys,
    b"touch": _keys,
    b"incr": lambda r: [r.choice(KEYS)],
    b"decr": lambda r: [r.choice(KEYS)],
    b"incrby": lambda r: [r.choice(KEYS), r.choice(INTS)],
    b"decrby": lambda r: [r.choice(KEYS), r.choice(INTS)],
    b"append": lambda r: [r.choice(KEYS), r.choice(VALUES)],
    b"strlen": lambda r: [r.choice(KEYS)],
    b"getrange": lambda r: [r.choice(KEYS), r.choice(INTS), r.choice(INTS)],
    b"substr": lambda r: [r.choice(KEYS), r.choice(INTS), r.choice(INTS)],
    b"setrange": lambda r: [r.choice(KEYS), r.choice(INTS), r.choice(VALUES)],
    b"expire": lambda r: [
        r.choice(KEYS),
        _pick(r, REL_S, BAD, PAST_REL),
        *_expire_options(r, absolute=False),
    ],
    b"pexpire": lambda r: [
        r.choice(KEYS),
        _pick(r, REL_MS, BAD, PAST_REL),
        *_expire_options(r, absolute=False),
    ],
    b"expireat": lambda r: [
        r.choice(KEYS),
        _pick(r, ABS_S, BAD, PAST),
        *_expire_options(r, absolute=True),
    ],
    b"pexpireat": lambda r: [
        r.choice(KEYS),
        _pick(r, ABS_MS, BAD, PAST),
        *_expire_options(r, absolute=True),
    ],
    b"ttl": lambda r: [r.choice(KEYS)],
    b"pttl": lambda r: [r.choice(KEYS)],
    b"expiretime": lambda r: [r.choice(KEYS)],
    b"pexpiretime": lambda r: [r.choice(KEYS)],
    b"persist": lambda r: [r.choice(KEYS)],
    b"type": lambda r: [r.choice(KEYS)],
    b"rename": lambda r: [r.choice(KEYS), r.choice(KEYS)],
    b"renamenx": lambda r: [r.choice(KEYS), r.choice(KEYS)],
    b"dbsize": lambda r: [],
    b"keys": lambda r: [_pattern(r)],
    b"scan": _scan_args,
    b"flushdb": lambda r: r.choice([[], [b"ASYNC"], [b"sync"], [b"now"]]),
    b"flushall": lambda r: r.choice([[], [b"ASYNC"], [b"x", b"y"]]),
}
MEMBERS = [b"a", b"b", b"c", b"1", b"2", b"-3", b"", b"\xe9", b"a\x00"]
FLOATS = [
    *(b"1", b"0.1", b"-0.1", b"1.5", b"1e3", b"abc", b"", b"inf", b"-inf", b"nan", b"10.5"),
    *(b"-10.5", b"3.0e-5", b"5.0e3", b"0x10", b"1e4000", b"1e-5000", b" 1", b"1 ", b"1.1"),
    *(b"0.30000000000000004", b"-0", b"1\x00", b"9223372036854775807", b"1e308", b"1e309"),
]
SCORES = [
    *(b"1", b"2", b"-1", b"0", b"1.5", b"-0", b"inf", b"-inf", b"+inf", b"1e3", b"abc", b""),
    *(b"nan", b" 1", b"0x10", b"3.0000000000000001", b"1.1", b"1e308", b"1e309", b"0.1"),
]
SCORE_BOUNDS = [
    *(b"-inf", b"+inf", b"inf", b"(1", b"1", b"(", b"0", b"2.5", b"abc", b"(abc", b""),
    *(b" 1", b"nan", b"(-inf", b"-1", b"(2", b"1e3", b"1\x00x"),
]
LEX_BOUNDS = [b"-", b"+", b"[a", b"(a", b"[b", b"(c", b"a", b"", b"[", b"(", b"+x", b"[1"]
SIDES = [b"LEFT", b"RIGHT", b"left", b"right", b"up"]
INDEXES = [b"0", b"1", b"-1", b"2", b"-2", b"5", b"-5", b"100", b"-100", b"abc", b""]
# Sorted sets ranged by lex take one key whose members all have score 0 (Redis' rule for BYLEX).
LEX_KEY = b"zlex"


def _members(rng: random.Random, low: int = 1, high: int = 4) -> Args:
    return [rng.choice(MEMBERS) for _ in range(rng.randint(low, high))]


def _pairs(rng: random.Random, values: list[bytes]) -> Args:
    return [w for _ in range(rng.randint(1, 3)) for w in (rng.choice(MEMBERS), rng.choice(values))]


def _zadd_args(rng: random.Random) -> Args:
    options = [
        rng.choice([b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR", b"ch"])
        for _ in range(rng.choice([0, 0, 0, 1, 1, 2]))
    ]
    pairs = [w for _ in range(rng.randint(1, 3)) for w in (rng.choice(SCORES), rng.choice(MEMBERS))]
    if b"INCR" in options and rng.random() < 0.8:
        pairs = pairs[:2]
    return [rng.choice(KEYS), *options, *pairs]


def _zrange_options(rng: random.Random, *, by: bool, rev: bool, store: bool = False) -> Args:
    pool: list[Args] = [[b"LIMIT", rng.choice(INDEXES), rng.choice(INDEXES)], [b"LIMIT", b"1"]]
    if not store:
        pool.append([b"WITHSCORES"])
    if by:
        pool.append([b"BYSCORE"])
    if rev:
        pool.append([b"REV"])
    chosen = [rng.choice(pool) for _ in range(rng.choice([0, 1, 1, 2]))]
    return [word for option in chosen for word in option]


def _zrange(rng: random.Random) -> Args:
    options = _zrange_options(rng, by=True, rev=True)
    bounds = SCORE_BOUNDS if b"BYSCORE" in options else INDEXES
    return [rng.choice(KEYS), rng.choice(bounds), rng.choice(bounds), *options]


def _zrange_lex(rng: random.Random) -> Args:
    options = [
        rng.choice([b"REV", b"LIMIT", b"0", b"2", b"WITHSCORES"])
        for _ in range(rng.choice([0, 0, 1, 2, 3]))
    ]
    return [LEX_KEY, rng.choice(LEX_BOUNDS), rng.choice(LEX_BOUNDS), b"BYLEX", *options]


def _lpos(rng: random.Random) -> Args:
    pool: list[Args] = [
        [b"RANK", rng.choice([*INDEXES, b"-9223372036854775808"])],
        [b"COUNT", rng.choice(INDEXES)],
        [b"MAXLEN", rng.choice(INDEXES)],
        [b"BOGUS"],
    ]
    chosen = [rng.choice(pool) for _ in range(rng.choice([0, 1, 1, 2]))]
    return [rng.choice(KEYS), rng.choice(MEMBERS), *(w for option in chosen for w in option)]


def _scan_of_key(rng: random.Random) -> Args:
    args = [rng.choice(KEYS), rng.choice([b"0", b"0", b"0", b"abc", b"-1"])]
    for _ in range(rng.choice([0, 0, 1, 2])):
        args += rng.choice(
            [
                [b"MATCH", _pattern(rng)],
                [b"COUNT", rng.choice([b"1", b"10", b"0", b"abc"])],
                [b"TYPE", b"string"],
                [b"COUNT"],
            ]
        )
    return args


def _count(rng: random.Random) -> Args:
    return rng.choice([[], [], [rng.choice([*INDEXES, b"-9223372036854775808"])]])


GENERATORS.update(
    {
        b"incrbyfloat": lambda r: [r.choice(KEYS), r.choice(FLOATS)],
        b"time": lambda r: [],
        # nobody subscribes here, so 0 on both sides (and no key changes)
        b"publish": lambda r: [r.choice(KEYS), r.choice(VALUES)],
        # hashes
        b"hset": lambda r: [r.choice(KEYS), *_pairs(r, VALUES)],
        b"hmset": lambda r: [r.choice(KEYS), *_pairs(r, VALUES)],
        b"hsetnx": lambda r: [r.choice(KEYS), r.choice(MEMBERS), r.choice(VALUES)],
        b"hget": lambda r: [r.choice(KEYS), r.choice(MEMBERS)],
        b"hmget": lambda r: [r.choice(KEYS), *_members(r)],
        b"hdel": lambda r: [r.choice(KEYS), *_members(r)],
        b"hexists": lambda r: [r.choice(KEYS), r.choice(MEMBERS)],
        b"hlen": lambda r: [r.choice(KEYS)],
        b"hstrlen": lambda r: [r.choice(KEYS), r.choice(MEMBERS)],
        b"hincrby": lambda r: [r.choice(KEYS), r.choice(MEMBERS), r.choice(INTS)],
        b"hincrbyfloat": lambda r: [r.choice(KEYS), r.choice(MEMBERS), r.choice(FLOATS)],
        b"hgetall": lambda r: [r.choice(KEYS)],
        b"hkeys": lambda r: [r.choice(KEYS)],
        b"hvals": lambda r: [r.choice(KEYS)],
        b"hscan": _scan_of_key,
        # lists
        b"lpush": lambda r: [r.choice(KEYS), *_members(r)],
        b"rpush": lambda r: [r.choice(KEYS), *_members(r)],
        b"lpushx": lambda r: [r.choice(KEYS), *_members(r)],
        b"rpushx": lambda r: [r.choice(KEYS), *_members(r)],
        b"lpop": lambda r: [r.choice(KEYS), *_count(r)],
        b"rpop": lambda r: [r.choice(KEYS), *_count(r)],
        b"lrange": lambda r: [r.choice(KEYS), r.choice(INDEXES), r.choice(INDEXES)],
        b"llen": lambda r: [r.choice(KEYS)],
        b"lindex": lambda r: [r.choice(KEYS), r.choice(INDEXES)],
        b"lset": lambda r: [r.choice(KEYS), r.choice(INDEXES), r.choice(MEMBERS)],
        b"lrem": lambda r: [r.choice(KEYS), r.choice(INDEXES), r.choice(MEMBERS)],
        b"ltrim": lambda r: [r.choice(KEYS), r.choice(INDEXES), r.choice(INDEXES)],
        b"lmove": lambda r: [r.choice(KEYS), r.choice(KEYS), r.choice(SIDES), r.choice(SIDES)],
        b"rpoplpush": lambda r: [r.choice(KEYS), r.choice(KEYS)],
        b"lpos": _lpos,
        # sets
        b"sadd": lambda r: [r.choice(KEYS), *_members(r)],
        b"srem": lambda r: [r.choice(KEYS), *_members(r)],
        b"smembers": lambda r: [r.choice(KEYS)],
        b"sismember": lambda r: [r.choice(KEYS), r.choice(MEMBERS)],
        b"smismember": lambda r: [r.choice(KEYS), *_members(r)],
        b"scard": lambda r: [r.choice(KEYS)],
        b"spop": lambda r: [r.choice(KEYS), *_count(r)],
        b"srandmember": lambda r: [r.choice(KEYS), *_count(r)],
        b"sinter": _keys,
        b"sunion": _keys,
        b"sdiff": _keys,
        b"sinterstore": lambda r: _keys(r, 2, 4),
        b"sunionstore": lambda r: _keys(r, 2, 4),
        b"sdiffstore": lambda r: _keys(r, 2, 4),
        b"smove": lambda r: [r.choice(KEYS), r.choice(KEYS), r.choice(MEMBERS)],
        b"sscan": _scan_of_key,
        # sorted sets
        b"zadd": _zadd_args,
        b"zincrby": lambda r: [r.choice(KEYS), r.choice(SCORES), r.choice(MEMBERS)],
        b"zrem": lambda r: [r.choice(KEYS), *_members(r)],
        b"zscore": lambda r: [r.choice(KEYS), r.choice(MEMBERS)],
        b"zmscore": lambda r: [r.choice(KEYS), *_members(r)],
        b"zcard": lambda r: [r.choice(KEYS)],
        b"zcount": lambda r: [r.choice(KEYS), r.choice(SCORE_BOUNDS), r.choice(SCORE_BOUNDS)],
        b"zlexcount": lambda r: [LEX_KEY, r.choice(LEX_BOUNDS), r.choice(LEX_BOUNDS)],
        b"zrange": lambda r: _zrange(r) if r.random() < 0.8 else _zrange_lex(r),
        b"zrangebyscore": lambda r: [
            r.choice(KEYS),
            r.choice(SCORE_BOUNDS),
            r.choice(SCORE_BOUNDS),
            *_zrange_options(r, by=False, rev=False),
        ],
        b"zrevrangebyscore": lambda r: [
            r.choice(KEYS),
            r.choice(SCORE_BOUNDS),
            r.choice(SCORE_BOUNDS),
            *_zrange_options(r, by=False, rev=False),
        ],
        b"zrevrange": lambda r: [
            r.choice(KEYS),
            r.choice(INDEXES),
            r.choice(INDEXES),
            *_zrange_options(r, by=False, rev=r.random() < 0.2),
        ],
        b"zrangebylex": lambda r: [
            LEX_KEY,
            r.choice(LEX_BOUNDS),
            r.choice(LEX_BOUNDS),
            *r.choice([[], [b"LIMIT", r.choice(INDEXES), r.choice(INDEXES)], [b"WITHSCORES"]]),
        ],
        b"zrangestore": lambda r: [r.choice(KEYS), *_zrange(r)],
        b"zrank": lambda r: [r.choice(KEYS), r.choice(MEMBERS)],
        b"zrevrank": lambda r: [r.choice(KEYS), r.choice(MEMBERS)],
        b"zpopmin": lambda r: [r.choice(KEYS), *_count(r)],
        b"zpopmax": lambda r: [r.choice(KEYS), *_count(r)],
        b"zremrangebyscore": lambda r: [
            r.choice(KEYS),
            r.choice(SCORE_BOUNDS),
            r.choice(SCORE_BOUNDS),
        ],
        b"zremrangebyrank": lambda r: [r.choice(KEYS), r.choice(INDEXES), r.choice(INDEXES)],
        b"zscan": _scan_of_key,
    }
)
# The lex key gets members at score 0 only (ZADD through this generator, not the one above).
LEX_WRITES: list[Callable[[random.Random], tuple[bytes, ...]]] = [
    lambda r: (b"ZADD", LEX_KEY, *(w for m in _members(r) for w in (b"0", m))),
    lambda r: (b"ZREM", LEX_KEY, *_members(r)),
]
RARE = {b"flushdb", b"flushall"}
#: Replies in an order Redis leaves unspecified (hash table order): compared as sorted lists.
UNORDERED = {b"smembers", b"sinter", b"sunion", b"sdiff", b"srandmember", b"spop"}
# Redis' small hashes keep insertion order as ours do; one with a value over 64 bytes does not.
UNORDERED |= {b"hkeys", b"hvals"}
#: Replies that are random draws: compared by shape (see ``same_reply``).
RANDOM = {b"spop", b"srandmember"}


#: Scripts whose replies are deterministic in both (no hash-table order, no address).
SCRIPTS = [
    b"return redis.call('set', KEYS[1], ARGV[1])",
    b"return redis.pcall('incr', KEYS[1])",
    b"return {redis.call('exists', KEYS[1]), redis.pcall('get', KEYS[1])}",
    b"local v = redis.call('get', KEYS[1])\nif v then return #v end\nreturn -1",
    b"return redis.call('rpush', KEYS[1], ARGV[1], 7, -2.5)",
    b"return redis.call('lrange', KEYS[1], 0, -1)",
    b"return redis.call('zadd', KEYS[1], 1.5, ARGV[1])",
    b"return redis.call('zrange', KEYS[1], 0, -1, 'WITHSCORES')",
    b"return redis.call('del', unpack(KEYS))",
    b"return tonumber(ARGV[1]) and tonumber(ARGV[1]) * 2.5",
    b"return {1, 2, nil, 4}",
    b"return {ok = 'DONE'}",
    b"return redis.status_reply('FINE')",
    b"return redis.error_reply('MYERR custom')",
    b"return {true, false, 3.99, -3.99, 'x', {KEYS[1], ARGV[1]}}",
    b"return redis.call('type', KEYS[1])",
    b"return redis.sha1hex(ARGV[1] or '')",
    b"error('boom')",
    b"return redis.call('nosuch')",
    b"return redis.call('eval', 'return 1', 0)",
    b"return #KEYS + #ARGV",
    b"return string.format('%d-%s', #ARGV, table.concat(KEYS, ','))",
    b"return (",
]


def _eval(rng: random.Random) -> Args:
    keys = _keys(rng, 0, 3)
    argv = [rng.choice(VALUES) for _ in range(rng.randint(0, 2))]
    numkeys = rng.choice([str(len(keys)).encode()] * 6 + [b"-1", b"9", b"x"])
    return [rng.choice(SCRIPTS), numkeys, *keys, *argv]


#: Timeouts of blocking pops: never 0 (Redis would block the test for ever on an empty key).
TIMEOUTS = [b"0.001", b"0.001", b"0.001", b"-1", b"x", b"1e100", b""]

GENERATORS.update(
    {
        b"blpop": lambda r: [*_keys(r), r.choice(TIMEOUTS)],
        b"brpop": lambda r: [*_keys(r), r.choice(TIMEOUTS)],
        b"blmove": lambda r: [
            *(r.choice(KEYS), r.choice(KEYS)),
            *(r.choice([b"LEFT", b"right", b"up"]), r.choice([b"left", b"RIGHT"])),
            r.choice(TIMEOUTS),
        ],
        b"bzpopmin": lambda r: [*_keys(r), r.choice(TIMEOUTS)],
        b"bzpopmax": lambda r: [*_keys(r), r.choice(TIMEOUTS)],
        b"eval": _eval,
        b"evalsha": lambda r: [b"0" * 40, *_eval(r)[1:]],  # a script nobody loaded
    }
)
GENERATORS.update(stream_ops.GENERATORS)


def _script_error(reply: Reply) -> Reply:
    """A script's error without Redis's ", on @user_script:N." suffix (see docs/commands.md)."""
    if isinstance(reply, Error) and " script: " in reply.text:
        return Error(reply.text.split(" script: ", 1)[0])
    return reply


def _random_case(rng: random.Random, name: bytes) -> bytes:
    return bytes(c ^ 0x20 if chr(c).isalpha() and rng.random() < 0.5 else c for c in name)


def random_op(rng: random.Random) -> tuple[bytes, ...]:
    roll = rng.random()
    if roll < 0.03:
        junk = [
            rng.choice([b"a", b"b\r\nc", b"\x00z", b"x" * 200]) for _ in range(rng.randint(0, 4))
        ]
        return (rng.choice([b"foo", b"GETT", b"multi\nx", b"x" * 150]), *junk)
    if roll > 0.97:
        return rng.choice(LEX_WRITES)(rng)
    name = rng.choice(NAMES)
    if name in RARE and rng.random() < 0.9:
        name = b"get"
    args = GENERATORS[name](rng)
    if roll < 0.08 and args:
        args = args[:-1]  # often a wrong arity
    elif roll < 0.12:
        args = [*args, rng.choice([b"extra", b"1", b"EX"])]
    return (_random_case(rng, name), *args)


TIME_TOLERANCE = {b"ttl": 2, b"expiretime": 2, b"pttl": 2000, b"pexpiretime": 2000}


def same_reply(op: tuple[bytes, ...], ours: Reply, theirs: Reply) -> bool:
    name = op[0].lower()
    if isinstance(ours, dict):  # a map: RESP2 sends its fields and values in turn
        ours = [item for pair in ours.items() for item in pair]
    if isinstance(ours, Error) and isinstance(theirs, Error):
        size_error = "ERR string exceeds maximum allowed size"
        if ours.text.startswith(size_error) and theirs.text.startswith(size_error):
            return True
    if name in (b"eval", b"evalsha"):
        return _script_error(ours) == _script_error(theirs)
    if name == b"keys" and isinstance(ours, list) and isinstance(theirs, list):
        return sorted(map(repr, ours)) == sorted(map(repr, theirs))
    if name == b"scan" and isinstance(ours, list) and isinstance(theirs, list):
        return True  # pages differ by design; whole iterations are compared below
    if name in (b"sscan", b"hscan") and isinstance(ours, list) and isinstance(theirs, list):
        # Redis pages a set of strings, or a hash with a value over 64 bytes, through its
        # hash table: compare whole replies only, as sets of members or of field-value pairs.
        if op[2] != b"0" or ours[0] != b"0" or theirs[0] != b"0":
            return True  # a page of a walk: where a cursor points differs by design
        return _sorted_items(name, ours[1]) == _sorted_items(name, theirs[1])
    if name == b"hgetall" and isinstance(ours, list) and isinstance(theirs, list):
        return _sorted_items(name, ours) == _sorted_items(name, theirs)
    if name == b"time" and isinstance(ours, list) and isinstance(theirs, list):
        assert all(isinstance(x, bytes) for x in [*ours, *theirs])
        return abs(int(ours[0]) - int(theirs[0])) <= 2  # type: ignore[arg-type]
    if name in RANDOM and not isinstance(ours, Error):
        return _same_draw(ours, theirs)
    if name in UNORDERED and isinstance(ours, list) and isinstance(theirs, list):
        return _sorted(ours) == _sorted(theirs)
    tolerance = TIME_TOLERANCE.get(name)
    if (
        tolerance is not None
        and isinstance(ours, int)
        and isinstance(theirs, int)
        and min(ours, theirs) >= 0
    ):
        return abs(ours - theirs) <= tolerance
    return ours == theirs


def _sorted(items: Reply) -> list[str]:
    assert isinstance(items, list), items
    return sorted(map(repr, items))


def _sorted_items(name: bytes, items: Reply) -> list[str]:
    """``items`` in a canonical order: field-value pairs kept together for hashes."""
    assert isinstance(items, list), items
    if name in (b"hgetall", b"hscan"):
        return sorted(repr(pair) for pair in zip(items[::2], items[1::2], strict=True))
    return sorted(map(repr, items))


def _same_draw(ours: Reply, theirs: Reply) -> bool:
    """Random draws: the same kind of reply of the same size (the members may differ)."""
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs)
    return type(ours) is type(theirs)


def now_ms() -> int:
    return int(time.time() * 1000)


#: The command that shows a whole value of each type.
CONTENT: dict[str, Callable[[bytes], tuple[bytes, ...]]] = {
    "string": lambda key: (b"GET", key),
    "hash": lambda key: (b"HGETALL", key),
    "list": lambda key: (b"LRANGE", key, b"0", b"-1"),
    "set": lambda key: (b"SMEMBERS", key),
    "zset": lambda key: (b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"),
    "stream": lambda key: (b"XRANGE", key, b"-", b"+"),
}


def sync_draws(redis: RespClient, op: tuple[bytes, ...], ours: Reply, theirs: Reply) -> None:
    """After an SPOP that drew other members than Redis did, give Redis our state.

    Redis gets back what it popped and loses what we popped: the next
    commands then compare the same sets.
    """
    popped = [m for m in (ours if isinstance(ours, list) else [ours]) if isinstance(m, bytes)]
    redis_popped = [
        m for m in (theirs if isinstance(theirs, list) else [theirs]) if isinstance(m, bytes)
    ]
    if sorted(popped) == sorted(redis_popped):
        return
    key = op[1]
    ttl = redis.call(b"PEXPIRETIME", key)
    redis.call(b"SADD", key, *redis_popped)
    redis.call(b"SREM", key, *popped)
    if isinstance(ttl, int) and ttl > 0:
        redis.call(b"PEXPIREAT", key, str(ttl).encode())


def check_state(machine: KvMachine, redis: RespClient, context: str) -> None:
    [ours_keys] = machine.apply(Entry(now_ms(), (Op.of("KEYS", "*"),)))
    theirs_keys = redis.call(b"KEYS", b"*")
    assert isinstance(ours_keys, list) and isinstance(theirs_keys, list)
    assert sorted(map(repr, ours_keys)) == sorted(map(repr, theirs_keys)), context
    for key in ours_keys:
        assert isinstance(key, bytes)
        [kind] = machine.apply(Entry(now_ms(), (Op((b"TYPE", key)),)))
        assert kind == redis.call(b"TYPE", key), f"{context}: TYPE {key!r}"
        assert isinstance(kind, SimpleString)
        probe = [CONTENT[kind.text](key), (b"PEXPIRETIME", key)]
        ours = machine.apply(Entry(now_ms(), tuple(Op(args) for args in probe)))
        theirs = redis.pipeline(probe)
        for args, a, b in zip(probe, ours, theirs, strict=True):
            assert same_reply(args, a, b), f"{context}: {args!r}: ours {a!r}, redis {b!r}"
    dbsize = [(b"DBSIZE",)]
    assert machine.apply(Entry(now_ms(), (Op(dbsize[0]),))) == redis.pipeline(dbsize), context


@pytest.mark.parametrize("seed", range(40))
def test_random_sequences_match_redis(redis: RespClient, seed: int) -> None:
    rng = random.Random(seed)
    machine = KvMachine()
    history: list[tuple[bytes, ...]] = []
    for _ in range(100):
        ops = [random_op(rng) for _ in range(rng.choice([1, 1, 1, 2, 3, 5]))]
        if any(op[0].lower() == b"spop" for op in ops):
            ops = ops[:1]  # Redis then gets our state back before the next command
        ours = machine.apply(Entry(now_ms(), tuple(Op(args) for args in ops)))
        theirs = redis.pipeline(ops)
        for args, a, b in zip(ops, ours, theirs, strict=True):
            if args[0].lower() == b"spop" and not isinstance(a, Error):
                sync_draws(redis, args, a, b)
            history.append(args)
            recent = "\n  ".join(repr(h) for h in history[-12:])
            assert same_reply(args, a, b), (
                f"seed {seed}, op {len(history)}: {args!r}\n  ours:  {a!r}\n  redis: {b!r}\n"
                f"recent ops:\n  {recent}"
            )
    check_state(machine, redis, f"seed {seed}: final state")


KEY_BYTES = [b"a", b"b", b"-", b"]", b"[", b"\\", b"^", b"*", b"\x00", b"\xe9", b"\x80"]
GLOB_BYTES = [*KEY_BYTES, b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"a", b"b"]


def _random_keys(rng: random.Random, count: int) -> list[bytes]:
    return sorted(
        {b"".join(rng.choice(KEY_BYTES) for _ in range(rng.randint(0, 4))) for _ in range(count)}
    )


@pytest.mark.parametrize("seed", range(5))
def test_keys_patterns_match_redis(redis: RespClient, seed: int) -> None:
    rng = random.Random(seed)
    keys = _random_keys(rng, 300)
    machine = KvMachine()
    mset = (b"MSET", *(w for k in keys for w in (k, b"v")))
    assert machine.apply(Entry(0, (Op(mset),))) == redis.pipeline([mset])
    patterns = [
        b"".join(rng.choice(GLOB_BYTES) for _ in range(rng.randint(0, 7))) for _ in range(1500)
    ]
    patterns += [b"*", b"**", b"", b"[", b"[^", b"\\", b"[a-]", b"[]a]", b"[\x80-a]", b"[z-a]"]
    theirs = redis.pipeline([(b"KEYS", p) for p in patterns])
    [*ours] = machine.apply(Entry(0, tuple(Op((b"KEYS", p)) for p in patterns)))
    for pattern, a, b in zip(patterns, ours, theirs, strict=True):
        assert isinstance(a, list) and isinstance(b, list)
        assert sorted(map(repr, a)) == sorted(map(repr, b)), f"KEYS {pattern!r}"


def _full_scan(
    call: Callable[[tuple[bytes, ...]], Reply], options: tuple[bytes, ...]
) -> list[bytes]:
    cursor, found = b"0", []
    for _ in range(10_000):
        reply = call((b"SCAN", cursor, *options))
        assert isinstance(reply, list), reply
        next_cursor, page = reply
        assert isinstance(next_cursor, bytes) and isinstance(page, list)
        cursor = next_cursor
        found += [key for key in page if isinstance(key, bytes)]
        if cursor == b"0":
            return found
    raise AssertionError("SCAN did not terminate")


def test_whole_scans_match_redis(redis: RespClient) -> None:
    rng = random.Random(7)
    keys = _random_keys(rng, 400)
    machine = KvMachine()
    mset = (b"MSET", *(w for k in keys for w in (k, b"v")))
    machine.apply(Entry(0, (Op(mset),)))
    redis.pipeline([mset])

    def ours_call(args: tuple[bytes, ...]) -> Reply:
        [reply] = machine.apply(Entry(0, (Op(args),)))
        return reply

    for options in [(), (b"COUNT", b"1"), (b"COUNT", b"7", b"MATCH", b"*a*"), (b"MATCH", b"[ab]?")]:
        ours = _full_scan(ours_call, options)
        theirs = _full_scan(lambda args: redis.call(*args), options)
        assert len(ours) == len(set(ours)), "no key twice when nothing changes"
        assert set(ours) == set(theirs), options


def test_command_table_matches_command_info(redis: RespClient) -> None:
    def text(item: Reply) -> str:
        if isinstance(item, SimpleString):
            return item.text
        assert isinstance(item, bytes), item
        return item.decode()

    for name, spec in COMMANDS.items():
        reply = redis.call(b"COMMAND", b"INFO", name)
        assert isinstance(reply, list) and len(reply) == 1, reply
        info = reply[0]
        assert isinstance(info, list), f"{name!r} is not a Redis command"
        redis_name, arity, flags, first, last, step, categories = info[:7]
        assert isinstance(flags, list) and isinstance(categories, list)
        assert (text(redis_name), arity, first, last, step) == (
            spec.name,
            spec.arity,
            spec.first_key,
            spec.last_key,
            spec.step,
        )
        compared = {"write", "readonly", "denyoom", "fast", "noscript"}
        assert {text(f) for f in flags} & compared == spec.flags & compared
        assert tuple(text(c) for c in categories) == spec.categories, spec.name


#: Each aggregate type's commands, and the key commands that act on any type.
FAMILY_NAMES = {
    family: sorted(name for name in NAMES if name[:1] == prefix or name in extra)
    for family, prefix, extra in [
        ("hash", b"h", set()),
        ("list", b"l", {b"rpush", b"rpop", b"rpushx", b"rpoplpush"}),
        ("set", b"s", set()),
        ("zset", b"z", set()),
    ]
}
ANY_TYPE = [b"del", b"type", b"rename", b"expire", b"persist", b"exists", b"get", b"set"]


@pytest.mark.parametrize("seed", range(60))
@pytest.mark.parametrize("family", sorted(FAMILY_NAMES))
def test_random_sequences_of_one_type_match_redis(
    redis: RespClient, family: str, seed: int
) -> None:
    """Mostly one type's commands, so its keys hold that type (the mixed test mostly hits
    WRONGTYPE); the whole state is compared at the end."""
    rng = random.Random(f"{family}-{seed}")
    names = [*FAMILY_NAMES[family], *FAMILY_NAMES[family], *ANY_TYPE]
    names = [n for n in names if n not in {b"set", b"setnx", b"setex", b"setrange", b"scan"}]
    machine = KvMachine()
    history: list[tuple[bytes, ...]] = []
    for _ in range(120):
        name = rng.choice(names)
        args = (_random_case(rng, name), *GENERATORS[name](rng))
        [ours] = machine.apply(Entry(now_ms(), (Op(args),)))
        [theirs] = redis.pipeline([args])
        if name == b"spop" and not isinstance(ours, Error):
            sync_draws(redis, args, ours, theirs)
        history.append(args)
        recent = "\n  ".join(repr(h) for h in history[-12:])
        assert same_reply(args, ours, theirs), (
            f"{family} seed {seed}, op {len(history)}: {args!r}\n  ours:  {ours!r}\n"
            f"  redis: {theirs!r}\nrecent ops:\n  {recent}"
        )
    check_state(machine, redis, f"{family} seed {seed}: final state")


#: Edge cases random sequences rarely reach, each compared with Redis in order.
EDGE_CASES = [
    "ZADD z 1 a 2 b",
    "ZADD z GT INCR 0 a",
    "ZADD z LT INCR 0 a",
    "ZADD z GT CH 1 a 3 b",
    "ZADD z XX INCR 1 nosuch",
    "ZADD z NX INCR 1 a",
    "ZADD z INCR 1 a 2 b",
    "ZINCRBY z inf a",
    "ZINCRBY z -inf a",
    "ZADD z 1 a 1 b 1 c 1 d 1 e",
    "ZRANGE z (1 +inf BYSCORE",
    "ZRANGE z +inf -inf BYSCORE REV LIMIT 1 2 WITHSCORES",
    "ZRANGE z 0 -1 REV",
    "ZRANGE z -2 -1 REV WITHSCORES",
    "ZRANGE z 0 1 LIMIT 0 1",
    "ZRANGEBYSCORE z -inf +inf LIMIT -1 2",
    "ZRANGEBYSCORE z -inf +inf LIMIT 2 -1",
    "ZRANGEBYSCORE z 1 1 LIMIT 10 1",
    "ZREVRANGEBYSCORE z +inf -inf WITHSCORES LIMIT 1 1",
    "ZREMRANGEBYRANK z 1 -2",
    "ZRANGE z 0 -1 WITHSCORES",
    "ZPOPMAX z 0",
    "ZPOPMIN z 10",
    "EXISTS z",
    "RPUSH l a b a c a",
    "LPOS l a RANK -1 COUNT 2",
    "LPOS l a RANK 2 MAXLEN 3",
    "LPOS l a COUNT 0 MAXLEN 2",
    "LPOS l a RANK 0",
    "LREM l -2 a",
    "LRANGE l 0 -1",
    "LMOVE l l RIGHT LEFT",
    "LRANGE l -100 100",
    "LTRIM l 5 1",
    "EXISTS l",
    "RPUSH one x",
    "RPOPLPUSH one one",
    "LPOP one 0",
    "LPOP one 5",
    "LPOP one 5",
    "SADD s a b c",
    "SINTERSTORE s s nosuch",
    "EXISTS s",
    "SADD s a b",
    "SMOVE s s a",
    "SMOVE s t a",
    "SMOVE s t b",
    "EXISTS s",
    "SMEMBERS t",
    "SPOP t 0",
    "SRANDMEMBER t 0",
    "HSET h a 1",
    "HINCRBY h a 9223372036854775806",
    "HINCRBY h a 1",
    "HSET h f 1.5",
    "HINCRBY h f 1",
    "HINCRBYFLOAT h f 1e5000",
    "HINCRBYFLOAT h nan 1",
    "HSCAN nosuch 0 BADOPTION",
    "HSCAN h 0 BADOPTION",
    "HSCAN h 0 COUNT 0",
    "HSCAN h 0 TYPE string",
    "SET n 1e3",
    "INCRBYFLOAT n 1",
    "INCRBYFLOAT n 0x10",
    "SET n 1",
    "INCRBYFLOAT n -1",
    "INCRBYFLOAT n 1.0000000000000000001",
    "INCRBYFLOAT n 1e-4000",
]


def test_edge_cases_match_redis(redis: RespClient) -> None:
    machine = KvMachine()
    for command in EDGE_CASES:
        args = tuple(word.encode() for word in command.split(" "))
        [ours] = machine.apply(Entry(now_ms(), (Op(args),)))
        theirs = redis.call(*args)
        assert same_reply(args, ours, theirs), f"{command}: ours {ours!r}, redis {theirs!r}"
    check_state(machine, redis, "edge cases: final state")


def test_every_script_matches_redis_on_every_type(redis: RespClient) -> None:
    machine = KvMachine()
    setup = [
        (b"SET", b"s", b"12"),
        (b"RPUSH", b"l", b"a"),
        (b"ZADD", b"z", b"1", b"m"),
        (b"HSET", b"h", b"f", b"v"),
    ]
    machine.apply(Entry(now_ms(), tuple(Op(args) for args in setup)))
    redis.pipeline(setup)
    for script in SCRIPTS:
        for key in (b"s", b"l", b"z", b"h", b"missing"):
            for args in ((b"1", key, b"3"), (b"2", key, b"s", b"abc"), (b"0",)):
                op = (b"EVAL", script, *args)
                [ours] = machine.apply(Entry(now_ms(), (Op(op),)))
                theirs = redis.call(*op)
                assert same_reply(op, ours, theirs), f"{op!r}: ours {ours!r}, redis {theirs!r}"
    check_state(machine, redis, "scripts: final state")
