"""Per-command semantics of ``KvMachine``, with the replies the Redis documentation gives.

Each case runs its commands in order on an empty machine at ``T0_MS``, one
entry per command, and lists the reply of each.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from paxostob.errors import ConfigurationError
from paxostob.kv.commands import Entry, Op
from paxostob.kv.machine import KvMachine
from paxostob.kv.replies import OK, Error, Reply, SimpleString

from .util import NOT_INTEGER, SYNTAX, T0_MS, Command, arity, one, run

T0_S = T0_MS // 1000
OVERFLOW = Error("ERR increment or decrement would overflow")
INT64_MAX = 2**63 - 1

CASES: list[tuple[str, Sequence[Command], Sequence[Reply]]] = [
    ("GET of a missing key is nil", ["GET k"], [None]),
    ("SET then GET", ["SET k v", "GET k"], [OK, b"v"]),
    ("SET overwrites", ["SET k a", "SET k b", "GET k"], [OK, OK, b"b"]),
    ("SET NX only if absent", ["SET k a NX", "SET k b NX", "GET k"], [OK, None, b"a"]),
    (
        "SET XX only if present",
        ["SET k a XX", "SET k a", "SET k b XX", "GET k"],
        [None, OK, OK, b"b"],
    ),
    ("SET GET returns the old value", ["SET k a GET", "SET k b GET", "GET k"], [None, b"a", b"b"]),
    ("SET NX GET on a present key", ["SET k a", "SET k b NX GET", "GET k"], [OK, b"a", b"a"]),
    ("SET XX GET on a missing key", ["SET k b XX GET", "EXISTS k"], [None, 0]),
    ("options in any case", ["set k a nx ex 10", "ttl k"], [OK, 10]),
    (
        "SET EX / PX",
        ["SET k v EX 100", "TTL k", "PTTL k", "SET k v PX 1500", "PTTL k"],
        [OK, 100, 100_000, OK, 1500],
    ),
    (
        "SET EXAT / PXAT are absolute",
        [
            f"SET k v EXAT {T0_S + 50}",
            "TTL k",
            "EXPIRETIME k",
            f"SET k v PXAT {T0_MS + 7}",
            "PTTL k",
        ],
        [OK, 50, T0_S + 50, OK, 7],
    ),
    ("a repeated option: the last wins", ["SET k v EX 10 EX 20", "TTL k"], [OK, 20]),
    (
        "SET drops the TTL, KEEPTTL keeps it",
        ["SET k v EX 100", "SET k w KEEPTTL", "TTL k", "SET k x", "TTL k"],
        [OK, OK, 100, OK, -1],
    ),
    (
        "SET option conflicts are syntax errors",
        [
            "SET k v NX XX",
            "SET k v EX 1 PX 1",
            "SET k v EX",
            "SET k v KEEPTTL EX 5",
            "SET k v FOO",
            "SET k v PERSIST",
        ],
        [SYNTAX] * 6,
    ),
    (
        "SET with a bad expire time",
        [
            "SET k v EX 0",
            "SET k v PX -1",
            "SET k v EX abc",
            f"SET k v EX {INT64_MAX // 1000}",
            "EXISTS k",
        ],
        [Error("ERR invalid expire time in 'set' command")] * 2
        + [NOT_INTEGER, Error("ERR invalid expire time in 'set' command"), 0],
    ),
    ("SETNX", ["SETNX k a", "SETNX k b", "GET k"], [1, 0, b"a"]),
    (
        "SETEX / PSETEX",
        [
            "SETEX k 10 v",
            "TTL k",
            "PSETEX k 1500 w",
            "PTTL k",
            "GET k",
            "SETEX k 0 v",
            "PSETEX k x v",
        ],
        [OK, 10, OK, 1500, b"w", Error("ERR invalid expire time in 'setex' command"), NOT_INTEGER],
    ),
    (
        "GETSET drops the TTL",
        ["GETSET k a", "SET k b EX 10", "GETSET k c", "TTL k", "GET k"],
        [None, OK, b"b", -1, b"c"],
    ),
    ("GETDEL", ["SET k v", "GETDEL k", "GETDEL k", "EXISTS k"], [OK, b"v", None, 0]),
    (
        "GETEX sets or removes the TTL",
        [
            "GETEX k EX 10",
            "SET k v",
            "GETEX k",
            "GETEX k EX 10",
            "TTL k",
            "GETEX k PERSIST",
            "TTL k",
        ],
        [None, OK, b"v", b"v", 10, b"v", -1],
    ),
    (
        "GETEX with a past absolute time deletes",
        ["SET k v", f"GETEX k PXAT {T0_MS}", "EXISTS k"],
        [OK, b"v", 0],
    ),
    (
        "GETEX errors",
        ["GETEX k NX", "GETEX k EX 1 PERSIST", "SET k v", "GETEX k EX 0", "GETEX k EX x"],
        [SYNTAX, SYNTAX, OK, Error("ERR invalid expire time in 'getex' command"), NOT_INTEGER],
    ),
    ("MSET / MGET", ["MSET a 1 b 2", "MGET a b nonexisting"], [OK, [b"1", b"2", None]]),
    ("MSET with a key twice: the last wins", ["MSET a 1 a 2", "GET a"], [OK, b"2"]),
    ("MSET drops TTLs", ["SET a 1 EX 100", "MSET a 2", "TTL a"], [OK, OK, -1]),
    ("MSET needs pairs", ["MSET a 1 b", "MSETNX a"], [arity("mset"), arity("msetnx")]),
    (
        "MSETNX is all or nothing",
        ["MSETNX key1 Hello key2 there", "MSETNX key2 new key3 world", "MGET key1 key2 key3"],
        [1, 0, [b"Hello", b"there", None]],
    ),
    ("DEL counts deleted keys once", ["MSET a 1 b 2", "DEL a b c a"], [OK, 2]),
    ("UNLINK is DEL", ["MSET a 1 b 2", "UNLINK a c"], [OK, 1]),
    ("EXISTS counts duplicates", ["SET a 1", "EXISTS a a b", "TOUCH a a b"], [OK, 2, 2]),
    (
        "INCR family",
        ["INCR n", "INCRBY n 10", "DECR n", "DECRBY n 20", "GET n"],
        [1, 11, 10, -10, b"-10"],
    ),
    (
        "INCR on a non-integer",
        [
            "SET n abc",
            "INCR n",
            ("SET", "n", " 1"),
            "INCR n",
            "SET n 1.5",
            "INCR n",
            "SET n 01",
            "INCR n",
        ],
        [OK, NOT_INTEGER, OK, NOT_INTEGER, OK, NOT_INTEGER, OK, NOT_INTEGER],
    ),
    (
        "INCRBY argument must be an integer",
        ["INCRBY n x", "INCRBY n 9223372036854775808", "DECRBY n -0", "EXISTS n"],
        [NOT_INTEGER] * 3 + [0],
    ),
    (
        "64-bit overflow",
        [
            f"SET n {INT64_MAX}",
            "INCR n",
            "DECRBY m -9223372036854775808",
            "SET m -9223372036854775808",
            "DECR m",
            "INCRBY m -1",
            "GET n",
        ],
        [
            OK,
            OVERFLOW,
            Error("ERR decrement would overflow"),
            OK,
            OVERFLOW,
            OVERFLOW,
            str(INT64_MAX).encode(),
        ],
    ),
    ("INCR keeps the TTL", ["SET n 1 EX 100", "INCR n", "TTL n"], [OK, 2, 100]),
    (
        "APPEND / STRLEN",
        [
            "EXISTS k",
            "APPEND k Hello",
            ("APPEND", "k", " World"),
            "GET k",
            "STRLEN k",
            "STRLEN nokey",
        ],
        [0, 5, 11, b"Hello World", 11, 0],
    ),
    (
        "GETRANGE",
        [
            ("SET", "mykey", "This is a string"),
            "GETRANGE mykey 0 3",
            "GETRANGE mykey -3 -1",
            "GETRANGE mykey 0 -1",
            "GETRANGE mykey 10 100",
            "GETRANGE mykey 5 2",
            "GETRANGE mykey -1 -5",
            "GETRANGE nokey 0 -1",
            "SUBSTR mykey 0 3",
        ],
        [OK, b"This", b"ing", b"This is a string", b"string", b"", b"", b"", b"This"],
    ),
    (
        "SETRANGE",
        [
            ("SET", "key1", "Hello World"),
            "SETRANGE key1 6 Redis",
            "GET key1",
            "SETRANGE key2 6 Redis",
            "GET key2",
            "SETRANGE key3 5 ",
            "EXISTS key3",
            "SETRANGE key1 -1 x",
        ],
        [
            OK,
            11,
            b"Hello Redis",
            11,
            b"\0" * 6 + b"Redis",
            0,
            0,
            Error("ERR offset is out of range"),
        ],
    ),
    (
        "EXPIRE NX / XX / GT / LT",
        [
            "SET k v",
            "EXPIRE k 10 XX",
            "EXPIRE k 10 NX",
            "EXPIRE k 5 NX",
            "EXPIRE k 5 GT",
            "EXPIRE k 20 GT",
            "TTL k",
            "EXPIRE k 30 LT",
            "EXPIRE k 15 LT",
            "TTL k",
            "PERSIST k",
            "EXPIRE k 15 GT",
            "EXPIRE k 15 LT",
            "TTL k",
        ],
        [OK, 0, 1, 0, 0, 1, 20, 0, 1, 15, 1, 0, 1, 15],
    ),
    (
        "EXPIRE option errors",
        ["SET k v", "EXPIRE k 10 NX XX", "EXPIRE k 10 GT LT", "EXPIRE k 10 FOO", "EXPIRE k x"],
        [
            OK,
            Error("ERR NX and XX, GT or LT options at the same time are not compatible"),
            Error("ERR GT and LT options at the same time are not compatible"),
            Error("ERR Unsupported option FOO"),
            NOT_INTEGER,
        ],
    ),
    (
        "EXPIRE overflow",
        [
            "SET k v",
            f"EXPIRE k {INT64_MAX}",
            f"PEXPIRE k {INT64_MAX}",
            f"PEXPIREAT k {INT64_MAX}",
            "PEXPIRETIME k",
        ],
        [
            OK,
            Error("ERR invalid expire time in 'expire' command"),
            Error("ERR invalid expire time in 'pexpire' command"),
            1,
            INT64_MAX,
        ],
    ),
    ("EXPIRE of a missing key", ["EXPIRE k 10", "EXPIREAT k 1"], [0, 0]),
    (
        "EXPIRE to the past deletes",
        ["SET k v", "EXPIRE k -1", "GET k", "EXISTS k"],
        [OK, 1, None, 0],
    ),
    ("EXPIRE 0 deletes", ["SET k v", "PEXPIRE k 0", "EXISTS k"], [OK, 1, 0]),
    (
        "EXPIREAT / PEXPIREAT / EXPIRETIME",
        [
            "SET k v",
            f"EXPIREAT k {T0_S + 100}",
            "EXPIRETIME k",
            "PEXPIRETIME k",
            f"PEXPIREAT k {T0_MS + 1}",
            "PTTL k",
        ],
        [OK, 1, T0_S + 100, (T0_S + 100) * 1000, 1, 1],
    ),
    (
        "TTL replies -2 for a missing key, -1 without expiry",
        ["TTL k", "PTTL k", "EXPIRETIME k", "SET k v", "TTL k", "PTTL k", "PEXPIRETIME k"],
        [-2, -2, -2, OK, -1, -1, -1],
    ),
    (
        "TTL rounds to the nearest second",
        ["SET k v PX 1499", "TTL k", "SET k v PX 1500", "TTL k"],
        [OK, 1, OK, 2],
    ),
    (
        "PERSIST",
        ["SET k v EX 100", "PERSIST k", "PERSIST k", "TTL k", "PERSIST nokey"],
        [OK, 1, 0, -1, 0],
    ),
    ("TYPE", ["TYPE k", "SET k v", "TYPE k"], [SimpleString("none"), OK, SimpleString("string")]),
    (
        "RENAME moves the value and its TTL",
        [
            "SET a 1 EX 100",
            "SET b 2",
            "RENAME a b",
            "GET b",
            "TTL b",
            "EXISTS a",
            "RENAME a b",
            "RENAME b b",
        ],
        [OK, OK, OK, b"1", 100, 0, Error("ERR no such key"), OK],
    ),
    (
        "RENAMENX",
        [
            "MSET a 1 b 2",
            "RENAMENX a b",
            "RENAMENX a c",
            "MGET a b c",
            "RENAMENX c c",
            "RENAMENX x y",
        ],
        [OK, 0, 1, [None, b"2", b"1"], 0, Error("ERR no such key")],
    ),
    (
        "DBSIZE / FLUSHDB",
        ["MSET a 1 b 2", "DBSIZE", "FLUSHDB", "DBSIZE", "GET a"],
        [OK, 2, OK, 0, None],
    ),
    (
        "FLUSHDB options",
        ["FLUSHDB ASYNC", "FLUSHALL sync", "FLUSHDB now", "FLUSHDB a b"],
        [OK, OK, SYNTAX, SYNTAX],
    ),
    (
        "KEYS (the documentation's example)",
        ["MSET firstname Jack lastname Stuntman age 35", "KEYS *name*", "KEYS a??", "KEYS *"],
        [OK, [b"firstname", b"lastname"], [b"age"], [b"age", b"firstname", b"lastname"]],
    ),
    ("KEYS * matches the empty key", [("SET", "", "v"), "KEYS *", "KEYS ?*"], [OK, [b""], []]),
    ("command names in any case", ["set k v", "GeT k"], [OK, b"v"]),
    (
        "wrong arity",
        ["GET", "GET a b", "SET k", "DBSIZE x", "KEYS", "SCAN", "EXISTS"],
        [
            arity("get"),
            arity("get"),
            arity("set"),
            arity("dbsize"),
            arity("keys"),
            arity("scan"),
            arity("exists"),
        ],
    ),
    (
        "unknown command",
        ["FOO a b", "multi", ("x", "a\r\nb")],
        [
            Error("ERR unknown command 'FOO', with args beginning with: 'a' 'b' "),
            Error("ERR unknown command 'multi', with args beginning with: "),
            Error("ERR unknown command 'x', with args beginning with: 'a  b' "),
        ],
    ),
]


@pytest.mark.parametrize(("name", "commands", "expected"), CASES, ids=[c[0] for c in CASES])
def test_command(name: str, commands: Sequence[Command], expected: Sequence[Reply]) -> None:
    machine = KvMachine()
    replies = [one(machine, command) for command in commands]
    assert replies == list(expected)


def test_unknown_command_text_is_bounded() -> None:
    reply = one(KvMachine(), ("x" * 300, "a" * 300, "b"))
    assert isinstance(reply, Error)
    assert (
        reply.text == f"ERR unknown command '{'x' * 128}', with args beginning with: '{'a' * 128}' "
    )


def test_a_transaction_applies_every_op_in_order_and_errors_do_not_undo() -> None:
    machine = KvMachine()
    replies = run(
        machine, T0_MS, "SET a 1", "INCR a", "INCR nope x", "SET b x", "INCR b", "MGET a b"
    )
    assert replies == [OK, 2, arity("incr"), OK, NOT_INTEGER, [b"2", b"x"]]


def test_an_empty_entry_replies_nothing() -> None:
    assert KvMachine().apply(Entry(T0_MS, ())) == []


def test_values_are_bounded() -> None:
    machine = KvMachine(value_bytes_max=5)
    too_big = Error("ERR string exceeds maximum allowed size (value_bytes_max)")
    replies = [
        one(machine, command)
        for command in [
            "SET k 123456",
            "SET k 12345",
            "APPEND k x",
            "SETRANGE k 5 x",
            "SETRANGE k 4 x",
            "MSET a 1 b 123456",
            "EXISTS a",
            "GETSET k 123456",
            "SETEX k 10 123456",
            "SETNX z 123456",
            "GET k",
        ]
    ]
    assert replies == [
        too_big,
        OK,
        too_big,
        too_big,
        5,
        too_big,
        0,
        too_big,
        too_big,
        too_big,
        b"1234x",
    ]


def test_configuration_is_checked() -> None:
    with pytest.raises(ConfigurationError):
        KvMachine(expire_sweep_max=0)
    with pytest.raises(ConfigurationError):
        KvMachine(value_bytes_max=-1)


def test_replies_are_never_bool() -> None:
    machine = KvMachine()
    for reply in run(machine, T0_MS, "SETNX k v", "SETNX k v", "EXISTS k", "MSETNX a 1"):
        assert type(reply) is int


def test_every_op_is_independent_of_how_ops_are_grouped() -> None:
    commands: list[Command] = ["SET a 1", "INCR a", "APPEND a x", "GET a", "DEL a", "GET a"]
    one_entry = run(KvMachine(), T0_MS, *commands)
    machine = KvMachine()
    assert one_entry == [one(machine, c) for c in commands]


def test_op_arguments_are_bytes_not_text() -> None:
    machine = KvMachine()
    value = bytes(range(256))
    assert machine.apply(
        Entry(T0_MS, (Op((b"SET", b"\xff\x00", value)), Op((b"GET", b"\xff\x00"))))
    ) == [
        OK,
        value,
    ]
