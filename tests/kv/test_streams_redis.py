"""Stream commands against a real redis-server 7: the same sequences, the same replies.

Random sequences of stream commands (explicit IDs, ``stream_ops``) are
compared reply by reply and then key by key (``XRANGE - +``, ``TYPE``);
``~`` trimming is compared on streams long enough to span several nodes;
``XADD *`` (our ID comes from the log's clock, Redis' from its own) is
compared by shape and order. Needs ``redis-server`` (``tests/tools.py``).
"""

from __future__ import annotations

import random
import re

import pytest

from paxostob.kv.commands import Entry, Op
from paxostob.kv.machine import KvMachine
from paxostob.kv.replies import Error, Reply

from . import stream_ops
from .real_redis import RespClient
from .test_differential_redis import ANY_TYPE, GENERATORS, _random_case, check_state, now_ms

NAMES = sorted(stream_ops.GENERATORS)
_ID = re.compile(rb"([0-9]+)-([0-9]+)")


def _apply(machine: KvMachine, args: tuple[bytes, ...]) -> Reply:
    [reply] = machine.apply(Entry(now_ms(), (Op(args),)))
    return reply


@pytest.mark.parametrize("seed", range(80))
def test_random_stream_sequences_match_redis(redis: RespClient, seed: int) -> None:
    rng = random.Random(f"streams-{seed}")
    names = [*NAMES, *NAMES, *NAMES, *ANY_TYPE]
    machine = KvMachine()
    history: list[tuple[bytes, ...]] = []
    for _ in range(150):
        name = rng.choice(names)
        args = (_random_case(rng, name), *GENERATORS[name](rng))
        ours = _apply(machine, args)
        [theirs] = redis.pipeline([args])
        history.append(args)
        recent = "\n  ".join(repr(h) for h in history[-12:])
        assert ours == theirs, (
            f"seed {seed}, op {len(history)}: {args!r}\n  ours:  {ours!r}\n"
            f"  redis: {theirs!r}\nrecent ops:\n  {recent}"
        )
    check_state(machine, redis, f"streams seed {seed}: final state")


def _both(machine: KvMachine, redis: RespClient, command: str | tuple[bytes, ...]) -> Reply:
    args = tuple(w.encode() for w in command.split(" ")) if isinstance(command, str) else command
    ours = _apply(machine, args)
    theirs = redis.call(*args)
    assert ours == theirs, f"{args!r}: ours {ours!r}, redis {theirs!r}"
    return ours


@pytest.mark.parametrize("seed", range(6))
def test_approximate_trims_remove_the_nodes_redis_removes(redis: RespClient, seed: int) -> None:
    """``~`` removes whole nodes of 100 entries (counting deleted ones), as Redis does."""
    rng = random.Random(f"approx-{seed}")
    machine = KvMachine()
    ms = 0
    for _ in range(6):
        for _ in range(rng.randint(30, 260)):
            ms += rng.randint(1, 3)
            _both(machine, redis, f"XADD s {ms}-{rng.randint(0, 2)} f v")
        for _ in range(rng.randint(0, 40)):
            _both(machine, redis, f"XDEL s {rng.randint(0, ms)}-{rng.randint(0, 2)}")
        trim = rng.choice(
            [
                f"XTRIM s MAXLEN ~ {rng.randint(0, 400)}",
                f"XTRIM s MINID ~ {rng.randint(0, ms)}",
                f"XTRIM s MAXLEN ~ {rng.randint(0, 400)} LIMIT {rng.randint(0, 250)}",
                f"XTRIM s MINID ~ {rng.randint(0, ms)} LIMIT {rng.randint(0, 250)}",
                f"XTRIM s MINID {rng.randint(0, ms)}",
                f"XTRIM s MAXLEN = {rng.randint(0, 400)}",
            ]
        )
        _both(machine, redis, trim)
        _both(machine, redis, f"XADD s MAXLEN ~ {rng.randint(50, 300)} {ms + 1}-* f v")
        ms += 1
        _both(machine, redis, "XLEN s")
    check_state(machine, redis, f"approx seed {seed}: final state")


EDGE_CASES = [
    "XADD s 0-0 f v",
    "XADD s 0-* f v",
    "XADD s 0-* f v",
    "XADD s 5 f v",
    "XADD s 5-* f v",
    "XADD s 4-9 f v",
    "XADD s MAXLEN 2 6-0 f v g w",
    "XADD s MAXLEN 1 MINID 1 * f v",
    "XADD s LIMIT 5 * f v",
    "XADD s MAXLEN 5 LIMIT 5 * f v",
    "XADD s MAXLEN -1 * f v",
    "XADD s MAXLEN ~ 1 LIMIT -1 * f v",
    "XADD s f",
    "XADD s * f",
    "XADD s * f v g",
    "XADD nosuch NOMKSTREAM * f v",
    "EXISTS nosuch",
    "XTRIM s",
    "XTRIM s LIMIT 1",
    "XTRIM s MAXLEN 1 NOMKSTREAM",
    "XTRIM nosuch MAXLEN 0",
    "XTRIM s MAXLEN 0",
    "XLEN s",
    "TYPE s",
    "XADD s 18446744073709551615-18446744073709551615 f v",
    "XADD s * f v",
    "XADD s 18446744073709551615-* f v",
    "XRANGE s (18446744073709551615-18446744073709551615 +",
    "XRANGE s - (0-0",
    "XRANGE s - + COUNT 0",
    "XRANGE s - + COUNT",
    "XRANGE nosuch - + COUNT 0",
    "XREVRANGE s + - COUNT -5",
    "XDEL nosuch abc",
    "XDEL s abc",
    "XDEL s 18446744073709551615-18446744073709551615 1-1",
    "XLEN s",
    "SET str v",
    "XADD str * f v",
    "XLEN str",
    "XRANGE str - +",
    "XREAD STREAMS str s 0 0",
    "XREAD STREAMS s str 0 0",
    "XREAD STREAMS s str abc 0",
    "XREAD STREAMS s",
    "XREAD STREAMS s 0 0",
    "XREAD COUNT 1 STREAMS s $",
    "XREAD BLOCK 1.5 STREAMS s 0",
    "XREAD BLOCK -1 STREAMS s 0",
    "XREAD COUNT -3 STREAMS s 0",
    "XREAD GROUP g",
    "XREAD GROUP g c STREAMS s >",
    "XREAD STREAMS s >",
]


def test_stream_edge_cases_match_redis(redis: RespClient) -> None:
    machine = KvMachine()
    for command in EDGE_CASES:
        _both(machine, redis, command)
    check_state(machine, redis, "stream edge cases: final state")


def _shape(reply: Reply) -> Reply:
    """``reply`` with every stream ID replaced by a placeholder."""
    if isinstance(reply, bytes) and _ID.fullmatch(reply):
        return b"<id>"
    if isinstance(reply, list):
        return [_shape(item) for item in reply]
    return reply


def _id(reply: Reply) -> tuple[int, int]:
    assert isinstance(reply, bytes), reply
    found = _ID.fullmatch(reply)
    assert found is not None, reply
    return int(found[1]), int(found[2])


def test_auto_ids_match_redis_in_shape_and_order(redis: RespClient) -> None:
    """``XADD *``: both hand out increasing IDs; every other reply is the same but for IDs.

    The machine's IDs are its clock's (the log's): each entry below is
    applied at a given time, and IDs follow it (a clock that does not move
    gives the next sequence number).
    """
    machine = KvMachine()
    ours_ids: list[tuple[int, int]] = []
    theirs_ids: list[tuple[int, int]] = []
    clock = [5000, 5000, 5000, 5001, 7000, 7000, 6000, 6000, 8000]
    for i, at in enumerate(clock):
        args: tuple[bytes, ...] = (
            b"XADD",
            b"s",
            b"MAXLEN",
            b"~",
            b"100",
            b"*",
            b"n",
            str(i).encode(),
        )
        [ours] = machine.apply(Entry(at, (Op(args),)))
        ours_ids.append(_id(ours))
        theirs_ids.append(_id(redis.call(*args)))
    assert ours_ids == sorted(set(ours_ids)) and theirs_ids == sorted(set(theirs_ids))
    # The log's clock decides: equal or earlier times continue the sequence.
    assert ours_ids[:4] == [(5000, 0), (5000, 1), (5000, 2), (5001, 0)]
    assert ours_ids[6:8] == [(7000, 2), (7000, 3)]
    for command in ["XRANGE s - +", "XREVRANGE s + - COUNT 3", "XREAD STREAMS s 0", "XLEN s"]:
        args = tuple(w.encode() for w in command.split(" "))
        [ours] = machine.apply(Entry(9000, (Op(args),)))
        theirs = redis.call(*args)
        assert _shape(ours) == _shape(theirs), command
        assert not isinstance(ours, Error)
