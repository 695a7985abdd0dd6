"""kv.commands: the entry encoding (round trip, strict fuzzed decoder) and the command table."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paxostob.errors import ConfigurationError, DecodeError
from paxostob.kv.commands import (
    COMMANDS,
    ENTRY_VERSION,
    NOW_MS_MAX,
    Entry,
    Op,
    decode_entry,
    encode_entry,
    is_read_only,
)
from paxostob.kv.wire import UVARINT_MAX, encode_uvarint, read_uvarint

op_strategy = st.builds(Op, st.lists(st.binary(max_size=300), min_size=1, max_size=6).map(tuple))
entry_strategy = st.builds(
    Entry, st.integers(0, NOW_MS_MAX), st.lists(op_strategy, max_size=6).map(tuple)
)


@given(entry_strategy)
def test_round_trip(entry: Entry) -> None:
    assert decode_entry(encode_entry(entry)) == entry


@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_to_an_entry_or_raise_decode_error(data: bytes) -> None:
    try:
        entry = decode_entry(data)
    except DecodeError:
        return
    assert encode_entry(entry) == data  # what decodes is exactly what was encoded


@given(entry_strategy, st.data())
def test_mutated_entries_decode_or_raise_decode_error(entry: Entry, data: st.DataObject) -> None:
    raw = bytearray(encode_entry(entry))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_entry(bytes(raw))
    except DecodeError:
        return
    assert encode_entry(decoded) == bytes(raw)


@given(entry_strategy)
def test_every_truncation_and_extension_is_rejected(entry: Entry) -> None:
    raw = encode_entry(entry)
    for size in range(len(raw)):
        with pytest.raises(DecodeError):
            decode_entry(raw[:size])
    with pytest.raises(DecodeError, match="trailing"):
        decode_entry(raw + b"\x00")


def test_the_layout_is_compact() -> None:
    raw = encode_entry(Entry(5, (Op.of("SET", "k", "v"),)))
    assert raw == struct.pack(">BQ", ENTRY_VERSION, 5) + b"\x01\x03\x03SET\x01k\x01v"


HEAD = struct.pack(">BQ", ENTRY_VERSION, 0)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "shorter than"),
        (struct.pack(">BQ", 2, 0) + b"\x00", "version"),
        (struct.pack(">BQ", ENTRY_VERSION, 2**63) + b"\x00", "now_ms"),
        (HEAD, "ends before the op count"),
        (HEAD + b"\x05\x01", "claims 5 ops"),
        (HEAD + b"\xff\xff\xff\xff\x0f", "claims"),
        (HEAD + b"\x01\x00\x00", "no command name"),
        (HEAD + b"\x01\x09\x00", "claims 9 arguments"),
        (HEAD + b"\x01\x01\x05ab", "ends inside argument 0 of op 0"),
        (HEAD + b"\x01\x01\x81\x00", "shortest form"),
        (HEAD + b"\x01\x01" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (HEAD + b"\x01\x01" + b"\xff" * 9 + b"\x7f", "64 bits"),
    ],
)
def test_malformed_entries_are_rejected(raw: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        decode_entry(raw)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, UVARINT_MAX])
def test_varint_round_trip(value: int) -> None:
    raw = encode_uvarint(value)
    assert read_uvarint(raw, 0, "v") == (value, len(raw))


def test_invalid_ops_and_entries_are_local_misuse() -> None:
    with pytest.raises(ConfigurationError):
        Op(())
    with pytest.raises(ConfigurationError):
        Op(("GET", b"k"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Entry(-1, ())
    with pytest.raises(ConfigurationError):
        Entry(NOW_MS_MAX + 1, ())


def test_op_of_converts_text_and_numbers() -> None:
    op = Op.of("SET", b"k\xff", "é", 10, -3)
    assert op.args == (b"SET", b"k\xff", "é".encode(), b"10", b"-3")
    assert op.name == b"set"


def test_the_table_describes_each_command_consistently() -> None:
    for name, spec in COMMANDS.items():
        assert name == spec.name.encode() and name == name.lower()
        # Redis marks TIME and PUBLISH neither write nor readonly (they touch no key);
        # every other is one.
        assert spec.is_write != ("readonly" in spec.flags) or name in (b"time", b"publish")
        assert not (spec.is_write and "readonly" in spec.flags)
        # EVAL and EVALSHA carry Redis' "noscript" and "skip_monitor", blocking pops "blocking".
        assert spec.flags <= {
            *("write", "readonly", "denyoom", "fast"),
            *("noscript", "skip_monitor", "blocking"),
            *(("pubsub", "loading", "stale", "may_replicate") if name == b"publish" else ()),
            *(("movablekeys",) if name == b"xread" else ()),  # its keys follow STREAMS
        }
        assert spec.arity != 0 and spec.step >= 0


@pytest.mark.parametrize(
    ("args", "keys"),
    [
        (("GET", "k"), [1]),
        (("MSET", "a", "1", "b", "2"), [1, 3]),
        (("DEL", "a", "b", "c"), [1, 2, 3]),
        (("RENAME", "a", "b"), [1, 2]),
        (("KEYS", "*"), []),
        (("SET", "k", "v", "EX", "10"), [1]),
    ],
)
def test_key_positions(args: tuple[str, ...], keys: list[int]) -> None:
    spec = COMMANDS[args[0].lower().encode()]
    assert list(spec.key_positions(len(args))) == keys


def test_arity() -> None:
    assert COMMANDS[b"get"].arity_ok(2) and not COMMANDS[b"get"].arity_ok(3)
    assert COMMANDS[b"set"].arity_ok(3) and COMMANDS[b"set"].arity_ok(9)
    assert not COMMANDS[b"set"].arity_ok(2)


def test_read_only_entries() -> None:
    assert is_read_only(Entry(0, (Op.of("GET", "k"), Op.of("mget", "a", "b"), Op.of("SCAN", 0))))
    assert is_read_only(Entry(0, ()))
    assert not is_read_only(Entry(0, (Op.of("GET", "k"), Op.of("SET", "k", "v"))))
    assert not is_read_only(Entry(0, (Op.of("NOSUCH"),)))
    read_only = {name for name, spec in COMMANDS.items() if not spec.is_write}
    assert read_only == {
        *(b"get", b"mget", b"exists", b"touch", b"strlen", b"getrange", b"substr"),
        *(b"ttl", b"pttl", b"expiretime", b"pexpiretime", b"type", b"dbsize", b"keys", b"scan"),
        b"time",
        b"publish",  # a log entry, yet it changes no key
        *(b"hget", b"hmget", b"hexists", b"hlen", b"hstrlen", b"hgetall", b"hkeys", b"hvals"),
        b"hscan",
        *(b"lrange", b"llen", b"lindex", b"lpos"),
        *(b"smembers", b"sismember", b"smismember", b"scard", b"srandmember", b"sscan"),
        *(b"sinter", b"sunion", b"sdiff"),
        *(b"zscore", b"zmscore", b"zcard", b"zcount", b"zlexcount", b"zrange", b"zrevrange"),
        *(b"zrangebyscore", b"zrevrangebyscore", b"zrangebylex", b"zrank", b"zrevrank"),
        b"zscan",
        *(b"xrange", b"xrevrange", b"xlen", b"xread"),
    }


def test_docs_commands_lists_every_command() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "commands.md").read_text()
    missing = [name for name in COMMANDS if f"`{name.decode().upper()}`" not in docs]
    assert not missing, f"docs/commands.md does not list {missing}"
