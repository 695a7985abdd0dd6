"""Random stream commands for the differential tests (explicit IDs only).

``XADD *`` takes its ID from the machine's clock (the log's) and Redis from
its own, so the random sequences give explicit IDs (``ms-seq``, ``ms``,
``ms-*``): every reply can then be compared exactly. ``test_streams_redis``
checks ``*`` separately, by shape and order.
"""

from __future__ import annotations

import random
from collections.abc import Callable

Args = list[bytes]

STREAM_KEYS = [b"x0", b"x1", b"x2", b"", b"x\x00y"]
#: IDs XADD may take: small times so sequences collide, seq wildcards; and rarely
#: invalid or extreme ones.
GOOD_ADD_IDS = [b"1-1", b"1-2", b"2-0", b"2-*", b"3", b"3-*", b"5-5", b"7", b"10-*", b"0-1"]
BAD_ADD_IDS = [
    *(b"0-*", b"0-0", b"0", b"-1", b"abc", b"1-", b"-", b"+", b"18446744073709551615-*"),
    *(b"18446744073709551615-18446744073709551615", b"18446744073709551616", b" 4-0", b"007-1"),
]
ADD_IDS = GOOD_ADD_IDS * 3 + BAD_ADD_IDS
#: Range bounds and read IDs.
RANGE_IDS = [
    *(b"-", b"+", b"0", b"1", b"1-1", b"2", b"3-0", b"(1-1", b"(2", b"5", b"10-0", b"(3"),
    *(b"-", b"+", b"-", b"+", b"2-0", b"(0-1", b"7"),
    *(b"abc", b"(0-0", b"(18446744073709551615-18446744073709551615", b"1-*", b"(-", b"(+"),
]
READ_IDS = [b"0", b"0-0", b"1-1", b"2", b"5-5", b"$", b"0", b"0-1", b"3-0", b"7"]
READ_IDS += [b">", b"abc", b"-", b"+"]
COUNTS = [b"0", b"1", b"2", b"3", b"-1", b"abc", b"100"]
FIELDS = [b"f", b"g", b"", b"v1", b"123", b"x" * 30]


def _fields(rng: random.Random) -> Args:
    return [rng.choice(FIELDS) for _ in range(2 * rng.randint(1, 3))]


def _trim_options(rng: random.Random, *, xadd: bool) -> Args:
    pool: list[Callable[[], Args]] = [
        lambda: [rng.choice([b"MAXLEN", b"maxlen"]), *_approx(rng), rng.choice(COUNTS)],
        lambda: [rng.choice([b"MAXLEN", b"maxlen"]), *_approx(rng), rng.choice(COUNTS)],
        lambda: [b"MINID", *_approx(rng), rng.choice([*GOOD_ADD_IDS, b"(1", b"+"])],
        lambda: [b"LIMIT", rng.choice(COUNTS)],
    ]
    if xadd:
        pool.append(lambda: [b"NOMKSTREAM"])
    out: Args = []
    for _ in range(rng.choice([0, 0, 1, 1, 1, 2] if xadd else [1, 1, 1, 1, 2, 3, 0])):
        out += rng.choice(pool)()
    return out


def _approx(rng: random.Random) -> Args:
    return rng.choice([[], [], [b"~"], [b"="]])


def xadd(rng: random.Random) -> Args:
    return [
        rng.choice(STREAM_KEYS),
        *_trim_options(rng, xadd=True),
        rng.choice(ADD_IDS),
        *_fields(rng),
    ]


def xrange(rng: random.Random) -> Args:
    args = [rng.choice(STREAM_KEYS), rng.choice(RANGE_IDS), rng.choice(RANGE_IDS)]
    if rng.random() < 0.4:
        args += [rng.choice([b"COUNT", b"count", b"LIMIT"]), rng.choice(COUNTS)]
    return args


def xread(rng: random.Random) -> Args:
    """Never a valid BLOCK (Redis would block the test): only bad timeouts."""
    options: Args = []
    for _ in range(rng.choice([0, 0, 1, 2])):
        options += rng.choice(
            [
                [b"COUNT", rng.choice(COUNTS)],
                [b"BLOCK", rng.choice([b"-1", b"abc", b"1.5"])],
                [b"COUNT", rng.choice(COUNTS)],
                [b"GROUP", b"g", b"c"],
                [b"NOACK"],
                [b"BOGUS"],
            ]
        )
    keys = [rng.choice(STREAM_KEYS) for _ in range(rng.randint(1, 3))]
    ids = [rng.choice(READ_IDS) for _ in keys]
    return [*options, rng.choice([b"STREAMS", b"streams"]), *keys, *ids]


GENERATORS: dict[bytes, Callable[[random.Random], Args]] = {
    b"xadd": xadd,
    b"xrange": xrange,
    b"xrevrange": xrange,
    b"xlen": lambda r: [r.choice(STREAM_KEYS)],
    b"xdel": lambda r: [
        r.choice(STREAM_KEYS),
        *(r.choice(ADD_IDS + RANGE_IDS) for _ in range(r.randint(1, 3))),
    ],
    b"xtrim": lambda r: [r.choice(STREAM_KEYS), *_trim_options(r, xadd=False)],
    b"xread": xread,
}
