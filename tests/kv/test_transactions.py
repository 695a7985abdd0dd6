"""``exec-if``: a transaction whose watched keys changed is skipped, and nothing else is."""

from __future__ import annotations

from paxostob.kv.commands import COMMANDS, Entry, Op
from paxostob.kv.machine import SKIPPED, KvMachine
from paxostob.kv.replies import OK


def digest(m: KvMachine, key: bytes) -> bytes:
    (digests,) = m.read([[b"watch-digest", key]])
    assert isinstance(digests, list) and isinstance(digests[0], bytes)
    return digests[0]


def test_a_changed_key_skips_exactly_its_transaction() -> None:
    m = KvMachine()
    m.apply(Entry(1, (Op.of("set", "k", "v"), Op.of("hset", "h", "f", "1"))))
    seen_k, seen_h = digest(m, b"k"), digest(m, b"h")
    m.apply(Entry(2, (Op.of("hset", "h", "f", "2"),)))  # another client's write
    replies = m.apply(
        Entry(
            3,
            (
                Op.of("set", "before", "1"),  # another caller's unit in the same entry
                Op.of("exec-if", 2, "k", seen_k, "h", seen_h),
                Op.of("set", "k", "mine"),
                Op.of("incr", "n"),
                Op.of("set", "after", "1"),  # and one after it
            ),
        )
    )
    assert replies == [OK, None, SKIPPED, SKIPPED, OK]
    assert m.read([[b"get", b"k"], [b"get", b"n"], [b"get", b"before"], [b"get", b"after"]]) == [
        b"v",
        None,
        b"1",
        b"1",
    ]


def test_unchanged_keys_let_the_transaction_run() -> None:
    m = KvMachine()
    m.apply(Entry(1, (Op.of("rpush", "l", "a", "b"),)))
    seen_l, seen_missing = digest(m, b"l"), digest(m, b"missing")
    assert seen_missing == b""
    replies = m.apply(
        Entry(2, (Op.of("exec-if", 1, "l", seen_l, "missing", seen_missing), Op.of("lpop", "l")))
    )
    assert replies == [OK, b"a"]


def test_an_expiry_change_or_an_expired_key_is_a_change() -> None:
    m = KvMachine()
    m.apply(Entry(1, (Op.of("set", "k", "v", "px", 100),)))
    seen = digest(m, b"k")
    m.apply(Entry(2, (Op.of("pexpire", "k", 500),)))
    assert m.apply(Entry(3, (Op.of("exec-if", 0, "k", seen),))) == [None]
    seen = digest(m, b"k")
    assert m.apply(Entry(1_000, (Op.of("exec-if", 0, "k", seen),))) == [None]  # expired


def test_the_internal_commands_are_not_client_commands() -> None:
    assert b"exec-if" not in COMMANDS and b"watch-digest" not in COMMANDS
