"""resp.protocol requests: what real clients send parses, in any chunking; bad input is a
``ProtocolError`` with Redis's text, and nothing else.

Requests are built by redis-py's own packer, so the parser is checked against the bytes a
real client writes, not against our idea of them.
"""

from __future__ import annotations

import importlib
import itertools
import random
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxostob.errors import ConfigurationError, DecodeError
from paxostob.resp.protocol import (
    INLINE_BYTES_MAX_DEFAULT,
    ProtocolError,
    RequestParser,
    encode,
)

# redis-py's packer is untyped: reach it through Any.
_redis: Any = importlib.import_module("redis")
_CONNECTION: Any = _redis.Connection()  # packs only; never connects
_ENCODER: Any = _CONNECTION.encoder


def pack(*args: Any) -> bytes:
    """One command as redis-py writes it to the socket."""
    return b"".join(_CONNECTION.pack_command(*args))


def pack_pieces(*args: Any) -> list[bytes]:
    """One command in the pieces redis-py writes (a large value is its own piece)."""
    return [bytes(piece) for piece in _CONNECTION.pack_command(*args)]


def as_sent(*args: Any) -> list[bytes]:
    """The arguments as redis-py encodes them (str as UTF-8, numbers as text)."""
    return [_ENCODER.encode(a) for a in args]


Outcome = tuple[list[list[bytes]], str | None]


def run(chunks: Iterable[bytes], parser: RequestParser | None = None) -> Outcome:
    """Feed ``chunks`` one by one, parsing after each; the commands and the error, if any."""
    parser = parser or RequestParser()
    commands: list[list[bytes]] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while (command := parser.parse()) is not None:
                commands.append(command)
    except ProtocolError as e:
        return commands, e.message
    return commands, None


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    """``data`` cut at ``points`` (any order, duplicates and out-of-range points allowed)."""
    bounds = sorted({0, len(data), *(p for p in points if 0 < p < len(data))})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# ------------------------------------------------------------------------ what clients send

command_names = st.sampled_from([b"SET", b"GET", "DEL", "HSET", b"CONFIG", "ping", b"X"])
arguments = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(command_names, st.lists(arguments, max_size=6)), min_size=1))
def test_parses_what_redis_py_sends(commands: list[tuple[Any, list[Any]]]) -> None:
    stream = b"".join(pack(name, *args) for name, args in commands)
    expected = [as_sent(name, *args) for name, args in commands]
    assert run([stream]) == (expected, None)
    assert run(bytewise(stream)) == (expected, None)


def test_parses_a_redis_py_pipeline() -> None:
    commands = [("SET", f"key:{i}", b"v" * i) for i in range(200)] + [("GET", "key:7")]
    stream = b"".join(bytes(p) for p in _CONNECTION.pack_commands(commands))
    assert run([stream]) == ([as_sent(*c) for c in commands], None)


def test_large_values_arrive_in_the_pieces_redis_py_writes() -> None:
    big = random.Random(1).randbytes(300_000)
    pieces = pack_pieces("SET", "big", big) + pack_pieces("GET", "big")
    assert len(pieces) > 2  # redis-py sent the value as a piece of its own
    assert run(pieces) == ([[b"SET", b"big", big], [b"GET", b"big"]], None)


def test_every_byte_value_survives_in_a_bulk_string() -> None:
    value = bytes(range(256)) + b"\r\n\r\n*1\r\n$"
    assert run([pack("SET", value, value)]) == ([[b"SET", value, value]], None)


def test_empty_arguments() -> None:
    assert run([b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$0\r\n\r\n"]) == ([[b"SET", b"", b""]], None)


def test_empty_commands_are_skipped_like_redis() -> None:
    stream = b"*0\r\n*-1\r\n*-5\r\n\r\n\n   \r\n\t\n*1\r\n$4\r\nPING\r\n\r\n"
    assert run([stream]) == ([[b"PING"]], None)
    assert run(bytewise(stream)) == ([[b"PING"]], None)


def test_incomplete_input_is_none_until_it_completes() -> None:
    parser = RequestParser()
    stream = pack("SET", "k", "value")
    for i, byte in enumerate(bytewise(stream)):
        parser.feed(byte)
        command = parser.parse()
        if i < len(stream) - 1:
            assert command is None
    assert command == [b"SET", b"k", b"value"]
    assert parser.parse() is None
    assert parser.buffered_bytes == 0


def test_iterating_yields_the_complete_commands_fed_so_far() -> None:
    parser = RequestParser()
    parser.feed(pack("PING") + pack("ECHO", "hi") + b"*2\r\n$4\r\nEC")
    assert list(parser) == [[b"PING"], [b"ECHO", b"hi"]]
    parser.feed(b"HO\r\n$2\r\nyo\r\n")
    assert list(parser) == [[b"ECHO", b"yo"]]


def test_buffered_bytes_counts_unparsed_input_and_the_partial_command() -> None:
    parser = RequestParser()
    parser.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva")
    assert parser.buffered_bytes == 26
    assert parser.parse() is None
    assert parser.buffered_bytes == 26  # parsed arguments are still held
    parser.feed(b"lue\r\nPING\r\n")
    assert parser.parse() == [b"SET", b"k", b"value"]
    assert parser.buffered_bytes == len(b"PING\r\n")
    assert parser.parse() == [b"PING"]
    assert parser.buffered_bytes == 0


def test_feed_takes_bytearray_and_memoryview_and_copies_them() -> None:
    parser = RequestParser()
    data = bytearray(b"*1\r\n$4\r\nPING\r\n")
    parser.feed(memoryview(data)[:8])
    parser.feed(data[8:])
    data[:] = b"X" * len(data)  # the caller reuses its buffer
    assert parser.parse() == [b"PING"]


# ------------------------------------------------------------------------------- pipelines


def _pipeline(count: int, seed: int) -> tuple[bytes, list[list[bytes]]]:
    """``count`` commands of mixed shapes and sizes, multibulk and inline."""
    rng = random.Random(seed)
    stream: list[bytes] = []
    expected: list[list[bytes]] = []
    for i in range(count):
        shape = rng.random()
        if shape < 0.1:
            stream.append(b"PING\r\n" if i % 2 else b"set k%d v\n" % i)
            expected.append([b"PING"] if i % 2 else [b"set", b"k%d" % i, b"v"])
            continue
        size = rng.choice([0, 1, 10, 100, 1000, 20_000]) if shape > 0.98 else rng.randrange(200)
        args = [b"SET", b"key:%d" % i, rng.randbytes(size)]
        if shape < 0.2:
            args += [rng.randbytes(rng.randrange(5)) for _ in range(rng.randrange(40))]
        stream.append(pack(*args))
        expected.append(args)
    return b"".join(stream), expected


PIPELINE, PIPELINE_COMMANDS = _pipeline(10_000, seed=7)


def test_a_pipeline_of_10000_commands_parses_in_one_piece_and_in_16k_reads() -> None:
    assert run([PIPELINE]) == (PIPELINE_COMMANDS, None)
    assert run(cut(PIPELINE, range(0, len(PIPELINE), 16 * 1024))) == (PIPELINE_COMMANDS, None)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, len(PIPELINE)), max_size=2000))
def test_a_pipeline_of_10000_commands_parses_identically_in_any_chunking(
    points: list[int],
) -> None:
    assert run(cut(PIPELINE, points)) == (PIPELINE_COMMANDS, None)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32))
def test_a_pipeline_parses_identically_in_small_random_reads(seed: int) -> None:
    rng = random.Random(seed)
    stream = PIPELINE[:200_000]
    points = []
    at = 0
    while at < len(stream):
        at += rng.choice([1, 2, 3, 7, 50, 1000])
        points.append(at)
    whole = run([stream])
    assert whole[1] is None and len(whole[0]) > 100
    assert run(cut(stream, points)) == whole


@settings(max_examples=100, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=400), st.integers(1, 5000))
def test_feeds_and_parses_may_interleave_in_any_order(moves: list[bool], step: int) -> None:
    """A server may feed several chunks before it parses, or parse one command per feed."""
    stream = PIPELINE[:300_000]
    chunks = cut(stream, range(0, len(stream), step))
    expected, error = run([stream])
    assert error is None
    parser = RequestParser()
    commands: list[list[bytes]] = []
    for feed in moves:
        if feed and chunks:
            parser.feed(chunks.pop(0))
        elif (command := parser.parse()) is not None:
            commands.append(command)
    for chunk in chunks:
        parser.feed(chunk)
    commands += list(parser)
    assert commands == expected


def test_parsing_one_command_per_feed_does_not_copy_the_buffer() -> None:
    """White-box: chunks fed while the buffer still holds complete commands wait in the
    queue; joining them each time would copy the unparsed rest once per feed."""
    parser = RequestParser()
    parser.feed(pack("PING") * 1000)
    assert parser.parse() == [b"PING"]
    held = parser._buffer
    for _ in range(500):
        parser.feed(pack("PING"))
        assert parser.parse() == [b"PING"]
        assert parser._buffer is held
    assert len(list(parser)) == 1500 - 501


def test_a_pipeline_parses_one_byte_at_a_time() -> None:
    stream, expected = _pipeline(300, seed=3)
    assert run(bytewise(stream)) == (expected, None)


def test_a_command_with_many_arguments_in_small_reads() -> None:
    args = [b"SADD", b"s", *(b"m%d" % i for i in range(100_000))]
    stream = pack(*args)
    assert run(cut(stream, range(0, len(stream), 100))) == ([args], None)


def test_a_large_value_in_small_reads_is_joined_once() -> None:
    """White-box: while a bulk string is incomplete, fed chunks are queued, not copied
    into the buffer each time (that would be quadratic in the value's size)."""
    parser = RequestParser()
    value = b"v" * (4 * 1024 * 1024)
    stream = pack("SET", "k", value)
    chunks = cut(stream, range(0, len(stream), 1024))
    parser.feed(chunks[0])
    assert parser.parse() is None
    held = parser._buffer
    for chunk in chunks[1:-1]:
        parser.feed(chunk)
        assert parser.parse() is None
        assert parser._buffer is held
    parser.feed(chunks[-1])
    assert parser.parse() == [b"SET", b"k", value]


def test_a_long_inline_line_in_small_reads_is_joined_at_its_newline() -> None:
    parser = RequestParser()
    parser.feed(b"ECHO ")
    assert parser.parse() is None
    held = parser._buffer
    for _ in range(1000):
        parser.feed(b"x" * 10)
        assert parser.parse() is None
        assert parser._buffer is held
    parser.feed(b"\r\n")
    assert parser.parse() == [b"ECHO", b"x" * 10_000]


# ---------------------------------------------------------------------------------- inline


@pytest.mark.parametrize(
    ("line", "argv"),
    [
        (b"PING\r\n", [b"PING"]),
        (b"PING\n", [b"PING"]),
        (b"  set   key \t value  \r\n", [b"set", b"key", b"value"]),
        (b"a\rb\r\n", [b"a", b"b"]),  # a lone CR separates, like sdssplitargs
        (b'set "foo bar" baz\r\n', [b"set", b"foo bar", b"baz"]),
        (b'set k ""\r\n', [b"set", b"k", b""]),
        (b'""\r\n', [b""]),
        (b'"\\x41\\x4a\\x7e"\r\n', [b"AJ~"]),
        (b'"\\x4g"\r\n', [b"x4g"]),  # not a hex escape: \x is x
        (b'"\\n\\r\\t\\b\\a\\\\\\"\\q"\r\n', [b'\n\r\t\b\a\\"q']),
        (b"'it\\'s'\r\n", [b"it's"]),
        (b"'a\\b\"c'\r\n", [b'a\\b"c']),  # only \' is an escape in single quotes
        (b'foo"bar baz"\r\n', [b"foobar baz"]),  # a quote may open inside a token
        (b'"a"\tb\r\n', [b"a", b"b"]),
        (b'"a"\x0bb\r\n', [b"a", b"b"]),  # \v is a blank after a closing quote...
        (b"a\x0bb c\x0c\r\n", [b"a\x0bb", b"c\x0c"]),  # ...but not inside a bare token
        (b"\x0b GET k\r\n", [b"GET", b"k"]),
        # sdssplitargs reads a C string. (Redis itself waits for more of such a line: it
        # looks for the newline with strchr, which stops at the NUL.)
        (b"GET a\x00b c\r\n", [b"GET", b"a"]),
        (b"\xff\xfe \xc3\xa9\r\n", [b"\xff\xfe", b"\xc3\xa9"]),
        (b"$3 notmultibulk\r\n", [b"$3", b"notmultibulk"]),  # only '*' starts multibulk
    ],
)
def test_inline_commands_split_as_redis_splits(line: bytes, argv: list[bytes]) -> None:
    assert run([line]) == ([argv], None)
    assert run(bytewise(line)) == ([argv], None)


#: Lines Redis refuses with "unbalanced quotes" (shared with test_protocol_vs_redis).
UNBALANCED_LINES = [
    b'set "a\r\n',
    b'set "a"b\r\n',
    b"'a\r\n",
    b"set 'a'b\r\n",
    b'"a\\\r\n',
]


# A NUL ends the line for sdssplitargs, so a quote before it is never closed. (Redis
# itself never finds the end of an inline line with a NUL: it searches with strchr.)
@pytest.mark.parametrize("line", [*UNBALANCED_LINES, b'"a\x00"\r\n'])
def test_unbalanced_quotes(line: bytes) -> None:
    assert run([line]) == ([], "Protocol error: unbalanced quotes in request")


def test_inline_lines_mix_with_multibulk() -> None:
    stream = b"PING\r\n" + pack("GET", "k") + b"ECHO hi\n"
    assert run([stream]) == ([[b"PING"], [b"GET", b"k"], [b"ECHO", b"hi"]], None)


# ---------------------------------------------------------------------------------- limits

#: Bad input with the default limits and the error text Redis 7 sends for it (the
#: differential test sends each to a real redis-server).
REDIS_CASES: list[tuple[bytes, str]] = [
    # Redis's own cases (tests/unit/protocol.tcl).
    (b"*3000000000\r\n", "Protocol error: invalid multibulk length"),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", "Protocol error: expected '$', got 'f'"),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n", "Protocol error: invalid bulk length"),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n", "Protocol error: invalid bulk length"),
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\nfoo\r\n", "Protocol error: expected '$', got 'f'"),
    # Counts and lengths as string2ll reads them.
    (b"*abc\r\n", "Protocol error: invalid multibulk length"),
    (b"*01\r\n$1\r\nx\r\n", "Protocol error: invalid multibulk length"),
    (b"*-0\r\n", "Protocol error: invalid multibulk length"),
    (b"*+1\r\n$1\r\nx\r\n", "Protocol error: invalid multibulk length"),
    (b"* 1\r\n$1\r\nx\r\n", "Protocol error: invalid multibulk length"),
    (b"*1 \r\n$1\r\nx\r\n", "Protocol error: invalid multibulk length"),
    (b"*\r\n", "Protocol error: invalid multibulk length"),
    (b"*1_0\r\n", "Protocol error: invalid multibulk length"),
    (b"*" + b"9" * 25 + b"\r\n", "Protocol error: invalid multibulk length"),
    (b"*1\r\n$01\r\nx\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$-0\r\n\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$ 1\r\nx\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$" + b"1" * 30 + b"\r\n", "Protocol error: invalid bulk length"),
    (b"*2\r\n$1\r\nx\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
    (b"*1\r\n\r\n", "Protocol error: expected '$', got ' '"),
    # The limits Redis shares (PROTO_INLINE_MAX_SIZE) and its proto-max-bulk-len.
    (b"x" * (INLINE_BYTES_MAX_DEFAULT + 1), "Protocol error: too big inline request"),
    (b"*" + b"1" * INLINE_BYTES_MAX_DEFAULT, "Protocol error: too big mbulk count string"),
    (
        b"*1\r\n$" + b"1" * INLINE_BYTES_MAX_DEFAULT,
        "Protocol error: too big bulk count string",
    ),
    (b"*1\r\n$536870913\r\n", "Protocol error: invalid bulk length"),
]

_SMALL = {"bulk_bytes_max": 10, "args_max": 3, "inline_bytes_max": 32}
_DEFAULTS: dict[str, int] = {}

#: Where we differ from Redis (stricter or earlier, only on malformed input), and the
#: named limits at small values.
OWN_CASES: list[tuple[bytes, dict[str, int], str]] = [
    # Redis ends a length line at its CR and skips the next byte unchecked.
    (b"*1\rx\r\n", {}, "Protocol error: invalid multibulk length"),
    # Redis waits for the line before looking at its first byte (and prints it raw).
    (b"*1\r\n\x00", {}, "Protocol error: expected '$', got '\\x00'"),
    # Redis skips the two bytes after a bulk string unchecked.
    (b"*1\r\n$3\r\nfooXY", {}, "Protocol error: expected CRLF after bulk string"),
    (b"*1\r\n$3\r\nfoo\rX", {}, "Protocol error: expected CRLF after bulk string"),
    (b"*1\r\n$3\r\nfoo\n\r", {}, "Protocol error: expected CRLF after bulk string"),
    # The named limits.
    (b"*1\r\n$11\r\n", _SMALL, "Protocol error: invalid bulk length"),
    (b"*4\r\n", _SMALL, "Protocol error: invalid multibulk length"),
    (b"x" * 33, _SMALL, "Protocol error: too big inline request"),
    # Redis checks a line's length only while its newline is missing, so whether it
    # takes a long line depends on how the line arrives; we always refuse it.
    (b"x" * 33 + b"\r\n", _SMALL, "Protocol error: too big inline request"),
    (b"x" * 33 + b"\n", _SMALL, "Protocol error: too big inline request"),
    (b"x" * 32 + b"\r\r\n", _SMALL, "Protocol error: too big inline request"),
    (b"*" + b"1" * 33, _SMALL, "Protocol error: too big mbulk count string"),
    (b"*1\r\n$" + b"1" * 33, _SMALL, "Protocol error: too big bulk count string"),
]


@pytest.mark.parametrize(
    ("stream", "limits", "message"),
    [(stream, _DEFAULTS, message) for stream, message in REDIS_CASES] + OWN_CASES,
)
@pytest.mark.parametrize("feeding", ["whole", "bytewise"])
def test_bad_input_is_a_protocol_error_with_redis_text(
    stream: bytes, limits: dict[str, int], message: str, feeding: str
) -> None:
    parser = RequestParser(**limits)
    chunks = [stream] if feeding == "whole" else bytewise(stream)
    assert run(chunks, parser) == ([], message)
    # The stream is spent: the same error again, and later input is dropped.
    parser.feed(pack("PING"))
    with pytest.raises(ProtocolError) as again:
        parser.parse()
    assert again.value.message == message
    assert parser.buffered_bytes == 0


def test_a_protocol_error_is_a_decode_error_and_replies_as_redis_does() -> None:
    parser = RequestParser()
    parser.feed(b"*1\r\nfoo\r\n")
    with pytest.raises(DecodeError) as caught:
        parser.parse()
    assert isinstance(caught.value, ProtocolError)
    assert str(caught.value) == "Protocol error: expected '$', got 'f'"
    assert encode(caught.value.reply) == b"-ERR Protocol error: expected '$', got 'f'\r\n"


def test_commands_before_the_error_are_returned() -> None:
    stream = pack("SET", "a", "1") + b"PING\r\n" + b"*1\r\nfoo\r\n" + pack("GET", "a")
    assert run([stream]) == (
        [[b"SET", b"a", b"1"], [b"PING"]],
        "Protocol error: expected '$', got 'f'",
    )


@pytest.mark.parametrize(
    "stream",
    [
        b"x" * 32 + b"\r\n",  # inline at the limit
        b"x" * 32 + b"\n",
        b"*3\r\n$10\r\n0123456789\r\n$0\r\n\r\n$1\r\nx\r\n",  # three args, a 10-byte one
        b"*" + b"0" + b"\r\n",
    ],
)
def test_input_at_the_limits_is_accepted(stream: bytes) -> None:
    commands, error = run([stream], RequestParser(**_SMALL))
    assert error is None
    assert run(bytewise(stream), RequestParser(**_SMALL)) == (commands, None)


def test_an_inline_line_at_the_limit_waits_for_its_newline() -> None:
    parser = RequestParser(inline_bytes_max=4)
    parser.feed(b"ab c\r")
    assert parser.parse() is None
    parser.feed(b"\n")
    assert parser.parse() == [b"ab", b"c"]


def test_holding_more_than_buffer_bytes_max_is_a_protocol_error() -> None:
    parser = RequestParser(buffer_bytes_max=100)
    parser.feed(b"*2\r\n$3\r\nGET\r\n$200\r\n" + b"x" * 50)
    assert parser.parse() is None
    parser.feed(b"x" * 60)  # 50 buffered + 60 + the parsed head > 100
    with pytest.raises(ProtocolError, match=r"^Protocol error: query buffer limit exceeded$"):
        parser.parse()
    assert parser.buffered_bytes == 0


def test_a_full_buffer_of_complete_commands_is_fine_once_parsed() -> None:
    parser = RequestParser(buffer_bytes_max=100)
    for _ in range(50):
        parser.feed(pack("PING") * 4)
        assert list(parser) == [[b"PING"]] * 4


@pytest.mark.parametrize(
    "limits",
    [
        {"bulk_bytes_max": 0},
        {"args_max": -1},
        {"inline_bytes_max": 1.5},
        {"buffer_bytes_max": True},
    ],
)
def test_limits_must_be_positive_ints(limits: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RequestParser(**limits)


# ------------------------------------------------------------------------------------ fuzz

# Pieces that make up RESP, to reach deep into the parser more often than random bytes.
_RESP_PIECES = [
    b"*",
    b"$",
    b"\r\n",
    b"\r",
    b"\n",
    b"0",
    b"1",
    b"2",
    b"3",
    b"9",
    b"-",
    b" ",
    b'"',
    b"'",
    b"\\",
    b"x",
    b"\x00",
    b"SET",
    b"*2\r\n",
    b"$3\r\n",
    b"$1\r\n",
    b"\x0b",
]
resp_like = st.lists(st.sampled_from(_RESP_PIECES), max_size=300).map(b"".join)
# Small limits so that random input also reaches every limit.
_FUZZ_LIMITS = {"bulk_bytes_max": 16, "args_max": 8, "inline_bytes_max": 24}


def _check_outcome(data: bytes, points: Sequence[int]) -> None:
    whole = run([data], RequestParser(**_FUZZ_LIMITS))
    commands, _ = whole
    # Bounded work: every command consumes at least two bytes of input.
    assert len(commands) <= len(data) // 2
    assert all(isinstance(arg, bytes) for command in commands for arg in command)
    assert all(command for command in commands)
    # Chunking changes nothing: the same commands, then the same error or none.
    chunked = run(cut(data, points), RequestParser(**_FUZZ_LIMITS))
    assert chunked[0] == whole[0]
    assert (chunked[1] is None) == (whole[1] is None)
    # Nor does feeding every chunk before parsing.
    parser = RequestParser(**_FUZZ_LIMITS)
    for chunk in cut(data, points):
        parser.feed(chunk)
    assert run([b""], parser) == whole


# Any other exception fails the test; a hang fails its deadline.
@settings(max_examples=1000, deadline=2000)
@given(st.binary(max_size=500), st.lists(st.integers(0, 500), max_size=40))
def test_fuzz_arbitrary_bytes_in_arbitrary_chunks(data: bytes, points: list[int]) -> None:
    _check_outcome(data, points)


@settings(max_examples=1000, deadline=2000)
@given(resp_like, st.lists(st.integers(0, 2000), max_size=40))
def test_fuzz_resp_like_bytes_in_arbitrary_chunks(data: bytes, points: list[int]) -> None:
    _check_outcome(data, points)


@settings(max_examples=500, deadline=2000)
@given(st.data())
def test_fuzz_mutated_client_streams(data: st.DataObject) -> None:
    commands = data.draw(
        st.lists(st.lists(st.binary(max_size=20), min_size=1, max_size=5), max_size=5)
    )
    stream = bytearray(b"".join(pack(b"CMD", *args) for args in commands))
    for _ in range(data.draw(st.integers(1, 4))):
        if not stream:
            break
        at = data.draw(st.integers(0, len(stream) - 1))
        stream[at : at + 1] = data.draw(st.sampled_from(_RESP_PIECES) | st.binary(max_size=2))
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    _check_outcome(bytes(stream), points)


# ------------------------------------------------------------------------- parse_into


def run_into(chunks: Iterable[bytes], parser: RequestParser) -> Outcome:
    """``run`` with one ``parse_into`` per chunk, as the server parses a read."""
    commands: list[list[bytes]] = []
    try:
        for chunk in chunks:
            parser.feed(chunk)
            parser.parse_into(commands)
    except ProtocolError as e:
        with pytest.raises(ProtocolError) as again:
            parser.parse_into(commands)  # the parser stays spent
        assert again.value is e
        return commands, e.message
    return commands, None


@settings(max_examples=1000, deadline=2000)
@given(resp_like | st.binary(max_size=300), st.lists(st.integers(0, 2000), max_size=40))
def test_parse_into_is_parse_until_none(data: bytes, points: list[int]) -> None:
    chunks = cut(data, points)
    assert run_into(chunks, RequestParser(**_FUZZ_LIMITS)) == run(
        chunks, RequestParser(**_FUZZ_LIMITS)
    )


def test_parse_into_keeps_the_commands_before_an_error() -> None:
    parser = RequestParser()
    parser.feed(pack("PING") + pack("ECHO", "a") + b"*1\r\nx")
    commands: list[list[bytes]] = []
    with pytest.raises(ProtocolError, match="expected '\\$', got 'x'"):
        parser.parse_into(commands)
    assert commands == [[b"PING"], [b"ECHO", b"a"]]


def test_a_chunk_fed_after_everything_was_parsed_becomes_the_buffer() -> None:
    """White-box: the server's usual read (whole commands) is parsed without a join."""
    parser = RequestParser(buffer_bytes_max=100)
    for _ in range(3):
        chunk = pack("SET", "k", "v")
        parser.feed(chunk)
        assert parser._buffer is chunk
        assert parser.parse() == [b"SET", b"k", b"v"]
        assert parser.parse() is None
    # The fast path still counts the partial command against buffer_bytes_max.
    head = b"*2\r\n$3\r\nGET\r\n"
    parser.feed(head)
    assert parser.parse() is None
    assert parser.buffered_bytes == len(head)
    parser.feed(b"$200\r\n" + b"x" * (100 - len(head) - 5))  # one byte too many
    with pytest.raises(ProtocolError, match="query buffer limit exceeded"):
        parser.parse()
