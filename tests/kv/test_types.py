"""The aggregate types without a redis-server: determinism, bounds, the sorted set structure.

What the differential test cannot check against Redis: that draws and orders
are the same in every replica process (whatever its hash seed), that a
random draw is a function of the log, that the size bound holds for every
element, and that the sorted set's bisect structure answers like a plain
sort of its pairs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from paxostob.kv.machine import KvMachine
from paxostob.kv.replies import OK, Error, SimpleString
from paxostob.kv.values import ZSetValue

from .util import T0_MS, one, run

TOO_BIG = Error("ERR string exceeds maximum allowed size (value_bytes_max)")
WRONGTYPE = Error("WRONGTYPE Operation against a key holding the wrong kind of value")

#: Commands whose replies and resulting state depend on member order and random draws.
SEED_SENSITIVE = [
    "SADD s " + " ".join(f"member{i}" for i in range(300)),
    "SREM s member7 member100 member3",
    "SPOP s",
    "SPOP s 5",
    "SRANDMEMBER s 7",
    "SRANDMEMBER s -7",
    "SMEMBERS s",
    "SADD t " + " ".join(f"member{i}" for i in range(0, 300, 3)),
    "SINTER s t",
    "SUNION t s",
    "SDIFF s t",
    "SINTERSTORE u s t",
    "SPOP u 3",
    "SSCAN s 0 COUNT 5",
    "HSET h " + " ".join(f"f{i} v{i}" for i in range(200)),
    "HDEL h f5 f50",
    "HGETALL h",
    "HSCAN h 0 COUNT 7",
    "ZADD z " + " ".join(f"{i % 7} m{i}" for i in range(200)),
    "ZSCAN z 0 COUNT 7",
    "ZRANGE z 0 -1 WITHSCORES",
]

_REPLAY = """
import hashlib, json, sys
from paxostob.kv.commands import Entry, Op
from paxostob.kv.machine import KvMachine
machine = KvMachine()
replies = [repr(machine.apply(Entry(int(sys.argv[1]), (Op.of(*c.split(" ")),))))
           for c in json.loads(sys.stdin.read())]
print(json.dumps([replies, hashlib.sha256(machine.snapshot()).hexdigest()]))
"""


def _replay_in_a_process(hash_seed: str) -> object:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    done = subprocess.run(
        [sys.executable, "-c", _REPLAY, str(T0_MS)],
        input=json.dumps(SEED_SENSITIVE),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def test_replicas_with_different_hash_seeds_reply_and_snapshot_alike() -> None:
    # Python randomizes str/bytes hashing per process: a set's or dict's order that
    # depended on it would differ between two replicas. Two real processes, two seeds.
    first, second = _replay_in_a_process("1"), _replay_in_a_process("2")
    assert first == second
    assert _replay_in_a_process("random") == first


def test_spop_is_a_function_of_the_log_and_counts_its_draws() -> None:
    machines = [KvMachine(), KvMachine()]
    members = " ".join(f"m{i}" for i in range(100))
    for machine in machines:
        run(machine, T0_MS, f"SADD s {members}")
    popped = [run(m, T0_MS + 5, "SPOP s", "SPOP s", "SPOP s 3") for m in machines]
    assert popped[0] == popped[1]
    first, second, three = popped[0]
    assert isinstance(three, list) and len({first, second, *three}) == 5  # five distinct draws
    assert machines[0].keyspace.draws == 3
    assert one(machines[0], "SCARD s") == 95


def test_srandmember_is_a_read_the_same_at_the_same_point_of_the_log() -> None:
    machine = KvMachine()
    run(machine, T0_MS, "SADD s " + " ".join(f"m{i}" for i in range(100)))
    snapshot = machine.snapshot()
    reads = [[b"SRANDMEMBER", b"s", b"10"], [b"SRANDMEMBER", b"s"], [b"SRANDMEMBER", b"s", b"-5"]]
    first = machine.read(reads)
    assert machine.read(reads) == first  # a read changes nothing, so it draws alike again
    assert machine.snapshot() == snapshot
    distinct, single, repeated = first
    assert isinstance(distinct, list) and len(set(distinct)) == 10
    assert isinstance(single, bytes) and isinstance(repeated, list) and len(repeated) == 5
    # Once the log moves on (a later clock), the draw is another one.
    run(machine, T0_MS + 1)
    assert machine.read(reads[:1]) != first[:1]


def test_writes_are_not_local_reads() -> None:
    machine = KvMachine()
    run(machine, T0_MS, "SADD s a b")
    assert machine.read([[b"SPOP", b"s"], [b"HSET", b"h", b"f", b"v"], [b"SCARD", b"s"]]) == [
        Error("ERR not a local read"),
        Error("ERR not a local read"),
        2,
    ]


def test_every_element_is_bounded_by_value_bytes_max() -> None:
    machine = KvMachine(value_bytes_max=5)
    assert run(
        machine,
        T0_MS,
        "HSET h field6 v",
        "HSET h f value6",
        "RPUSH l 123456",
        "SADD s 123456",
        "ZADD z 1 123456",
        "HINCRBY h field6 1",
        "RPUSH l 12345",
        "LSET l 0 123456",
    ) == [TOO_BIG, TOO_BIG, TOO_BIG, TOO_BIG, TOO_BIG, TOO_BIG, 1, TOO_BIG]
    # Nothing half-made: no empty aggregate was left behind by a refused command.
    assert run(machine, T0_MS, "EXISTS h s z", "LRANGE l 0 -1") == [0, [b"12345"]]


def test_wrongtype_for_every_family_and_the_any_type_commands() -> None:
    machine = KvMachine()
    run(machine, T0_MS, "SET str v", "HSET h f v", "RPUSH l a", "SADD s a", "ZADD z 1 a")
    for key, wrong in [
        ("str", "HGET str f"),
        ("h", "LPUSH h x"),
        ("l", "SADD l x"),
        ("s", "ZADD s 1 x"),
        ("z", "GET z"),
        ("z", "INCRBYFLOAT z 1"),
        ("h", "SINTERSTORE dst s h"),
        ("s", "LMOVE l s LEFT LEFT"),
    ]:
        assert one(machine, wrong) == WRONGTYPE, wrong
        assert one(machine, f"EXISTS {key}") == 1  # the failed command changed nothing
    assert run(machine, T0_MS, *(f"TYPE {k}" for k in ["str", "h", "l", "s", "z", "no"])) == [
        *(SimpleString("string"), SimpleString("hash"), SimpleString("list")),
        *(SimpleString("set"), SimpleString("zset"), SimpleString("none")),
    ]
    assert one(machine, "MGET str h") == [b"v", None]  # MGET: nil, not WRONGTYPE
    assert run(machine, T0_MS, "SET h x", "TYPE h") == [OK, SimpleString("string")]


def test_scan_type_filters_every_type() -> None:
    machine = KvMachine()
    run(machine, T0_MS, "SET str v", "HSET h f v", "RPUSH l a", "SADD s a", "ZADD z 1 a")
    for name, key in [("string", b"str"), ("hash", b"h"), ("list", b"l"), ("set", b"s")]:
        assert one(machine, f"SCAN 0 COUNT 100 TYPE {name}") == [b"0", [key]]
    assert one(machine, "SCAN 0 COUNT 100 TYPE ZSET") == [b"0", [b"z"]]


def test_incrbyfloat_computes_in_long_double_as_redis_on_x86_64() -> None:
    # Redis' documented examples, and sums a double would get wrong.
    machine = KvMachine()
    assert run(
        machine,
        T0_MS,
        "SET k 10.50",
        "INCRBYFLOAT k 0.1",
        "INCRBYFLOAT k -5",
        "SET e 5.0e3",
        "INCRBYFLOAT e 2.0e2",
        "INCRBYFLOAT x 0.1",
        "INCRBYFLOAT x 0.2",
        "INCRBYFLOAT k inf",
    ) == [
        *(OK, b"10.6", b"5.6", OK, b"5200", b"0.1", b"0.3"),
        Error("ERR increment would produce NaN or Infinity"),
    ]
    # Every digit of the long double nearest 1e308 (what redis-server 7.0 replies on x86-64).
    big = one(machine, "HINCRBYFLOAT h f 1e308")
    assert isinstance(big, bytes) and len(big) == 308
    assert big.startswith(b"9999999999999999999668587965584564566056")


pairs_ops = st.lists(
    st.tuples(
        st.booleans(),
        st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f"]),
        st.sampled_from([-2.0, -0.5, 0.0, 1.0, 1.0, 3.5, float("inf"), float("-inf")]),
    ),
    max_size=60,
)


@settings(deadline=None)
@given(pairs_ops, st.floats(-3, 4), st.floats(-3, 4), st.booleans(), st.booleans())
def test_the_sorted_set_answers_like_a_sort_of_its_pairs(
    ops: list[tuple[bool, bytes, float]], low: float, high: float, low_ex: bool, high_ex: bool
) -> None:
    zset, model = ZSetValue(0), {}
    for add, member, score in ops:
        if add:
            zset.add(member, score)
            model[member] = score
        else:
            assert zset.discard(member) == (model.pop(member, None) is not None)
    pairs = sorted((score, member) for member, score in model.items())
    assert zset.order == pairs and zset.scores == model
    for rank, (_, member) in enumerate(pairs):
        assert zset.rank(member) == rank
    inside = [
        i
        for i, (score, _) in enumerate(pairs)
        if (low < score if low_ex else low <= score)
        and (score < high if high_ex else score <= high)
    ]
    found = zset.score_range(low, low_ex, high, high_ex)
    if low <= high:
        assert list(found) == inside
    else:
        assert not found
