"""Redis 7's RESP3 shapes for sorted-set replies that carry scores.

The state machine replies as Redis does in RESP2: ``WITHSCORES`` replies and
pops are flat arrays of members and scores, each score a bulk string. In
RESP3 Redis 7 nests each member with its score and sends the score as a
double, and RESP3 clients rely on it: redis-py 8 (RESP3 by default) unpacks
``zrangebyscore(..., withscores=True)`` pair by pair, which Kombu's Redis
transport calls to put back the messages of a worker that died. A RESP3
connection's replies to these commands are reshaped here, after the log,
so every replica still computes the same (RESP2) reply.

Not reshaped: replies inside ``EXEC``, and scores standing alone (``ZSCORE``,
``ZINCRBY``, ``ZMSCORE``), which stay bulk strings (clients parse both).
"""

from __future__ import annotations

from collections.abc import Sequence

from .protocol import Reply

__all__ = ["NAMES", "reshape"]

#: Replies of member-score pairs when ``WITHSCORES`` is given.
_WITH_SCORES = frozenset(
    {b"zrange", b"zrangebyscore", b"zrevrange", b"zrevrangebyscore", b"zrandmember"}
)
_POPS = frozenset({b"zpopmin", b"zpopmax"})
_BLOCKING_POPS = frozenset({b"bzpopmin", b"bzpopmax"})
#: Every command whose RESP3 reply ``reshape`` may change (lower case).
NAMES = _WITH_SCORES | _POPS | _BLOCKING_POPS


def _pairs(flat: list[Reply]) -> list[Reply]:
    return [[flat[i], _double(flat[i + 1])] for i in range(0, len(flat) - 1, 2)]


def _double(score: Reply) -> Reply:
    return float(score) if isinstance(score, bytes) else score


def reshape(args: Sequence[bytes], reply: Reply) -> Reply:
    """``reply`` to ``args`` as Redis 7 sends it to a RESP3 client."""
    if not isinstance(reply, list) or not reply:
        return reply
    name = args[0].lower()
    if name in _WITH_SCORES:
        if any(arg.lower() == b"withscores" for arg in args[2:]):
            return _pairs(reply)
    elif name in _POPS:
        if len(args) > 2:  # with a count: nested pairs; without: one flat pair
            return _pairs(reply)
        return [reply[0], _double(reply[1])] if len(reply) == 2 else reply
    elif name in _BLOCKING_POPS and len(reply) == 3:
        return [reply[0], reply[1], _double(reply[2])]
    return reply
