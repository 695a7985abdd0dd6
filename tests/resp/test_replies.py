"""resp.protocol replies: golden bytes for every reply type in RESP2 and RESP3, and what we
encode read back by redis-py's own RESP2 and RESP3 parsers, as a client reads it."""

from __future__ import annotations

import enum
import importlib
import math
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxostob.kv import replies as kv_replies
from paxostob.resp.protocol import (
    NULL_ARRAY,
    Error,
    Push,
    Reply,
    SimpleString,
    Verbatim,
    encode,
)

# ------------------------------------------------------------------------------------ golden


@pytest.mark.parametrize(
    ("reply", "resp2", "resp3"),
    [
        (SimpleString("OK"), b"+OK\r\n", b"+OK\r\n"),
        (Error("ERR syntax error"), b"-ERR syntax error\r\n", b"-ERR syntax error\r\n"),
        (
            Error("WRONGTYPE Operation against a key holding the wrong kind of value"),
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        (Error("TRYAGAIN no leader"), b"-TRYAGAIN no leader\r\n", b"-TRYAGAIN no leader\r\n"),
        (0, b":0\r\n", b":0\r\n"),
        (-42, b":-42\r\n", b":-42\r\n"),
        (2**63 - 1, b":9223372036854775807\r\n", b":9223372036854775807\r\n"),
        (-(2**63), b":-9223372036854775808\r\n", b":-9223372036854775808\r\n"),
        (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
        (b"hello", b"$5\r\nhello\r\n", b"$5\r\nhello\r\n"),
        (b"a\r\nb", b"$4\r\na\r\nb\r\n", b"$4\r\na\r\nb\r\n"),
        (bytearray(b"ab"), b"$2\r\nab\r\n", b"$2\r\nab\r\n"),
        (memoryview(b"abc")[1:], b"$2\r\nbc\r\n", b"$2\r\nbc\r\n"),
        (None, b"$-1\r\n", b"_\r\n"),
        (NULL_ARRAY, b"*-1\r\n", b"_\r\n"),
        ([], b"*0\r\n", b"*0\r\n"),
        (
            [b"a", 1, None, [b"b", []]],
            b"*4\r\n$1\r\na\r\n:1\r\n$-1\r\n*2\r\n$1\r\nb\r\n*0\r\n",
            b"*4\r\n$1\r\na\r\n:1\r\n_\r\n*2\r\n$1\r\nb\r\n*0\r\n",
        ),
        ((b"t", 2), b"*2\r\n$1\r\nt\r\n:2\r\n", b"*2\r\n$1\r\nt\r\n:2\r\n"),
        (
            {b"k": b"v", b"n": 1},
            b"*4\r\n$1\r\nk\r\n$1\r\nv\r\n$1\r\nn\r\n:1\r\n",
            b"%2\r\n$1\r\nk\r\n$1\r\nv\r\n$1\r\nn\r\n:1\r\n",
        ),
        ({}, b"*0\r\n", b"%0\r\n"),
        ({b"m"}, b"*1\r\n$1\r\nm\r\n", b"~1\r\n$1\r\nm\r\n"),
        (frozenset(), b"*0\r\n", b"~0\r\n"),
        (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
        (3.0, b"$1\r\n3\r\n", b",3\r\n"),
        (-0.0, b"$2\r\n-0\r\n", b",-0\r\n"),
        (0.1, b"$3\r\n0.1\r\n", b",0.1\r\n"),
        (1e300, b"$6\r\n1e+300\r\n", b",1e+300\r\n"),
        (math.inf, b"$3\r\ninf\r\n", b",inf\r\n"),
        (-math.inf, b"$4\r\n-inf\r\n", b",-inf\r\n"),
        (math.nan, b"$3\r\nnan\r\n", b",nan\r\n"),
        (True, b":1\r\n", b"#t\r\n"),
        (False, b":0\r\n", b"#f\r\n"),
        (Verbatim(b"# Server\r\n"), b"$10\r\n# Server\r\n\r\n", b"=14\r\ntxt:# Server\r\n\r\n"),
        (Verbatim(b"*x*", "mkd"), b"$3\r\n*x*\r\n", b"=7\r\nmkd:*x*\r\n"),
        (
            Push([b"message", b"ch", b"hi"]),
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
        ),
        (
            [{b"a": [True, None]}, {1.0}],
            b"*2\r\n*2\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n*1\r\n$1\r\n1\r\n",
            b"*2\r\n%1\r\n$1\r\na\r\n*2\r\n#t\r\n_\r\n~1\r\n,1\r\n",
        ),
    ],
)
def test_golden(reply: Reply, resp2: bytes, resp3: bytes) -> None:
    assert encode(reply) == resp2
    assert encode(reply, 2) == resp2
    assert encode(reply, 3) == resp3


def test_the_kv_state_machine_replies_are_ours() -> None:
    assert SimpleString is kv_replies.SimpleString and Error is kv_replies.Error
    assert encode(kv_replies.OK) == b"+OK\r\n"


def test_a_large_bulk_string() -> None:
    value = bytes(range(256)) * 1000
    assert encode(value) == b"$256000\r\n" + value + b"\r\n"
    assert encode([value, memoryview(value)], 3) == (
        b"*2\r\n" + (b"$256000\r\n" + value + b"\r\n") * 2
    )


def test_line_breaks_in_an_error_are_sent_as_spaces_as_redis_does() -> None:
    reply = Error("ERR unknown command 'a\r\nb', with args beginning with: ")
    assert encode(reply) == b"-ERR unknown command 'a  b', with args beginning with: \r\n"


def test_text_is_utf8() -> None:
    assert encode(SimpleString("é")) == b"+\xc3\xa9\r\n"
    assert encode(Error("ERR é")) == b"-ERR \xc3\xa9\r\n"


class Color(enum.IntEnum):
    RED = 1


class Keys(list[bytes]):
    pass


def test_subclasses_and_other_containers_encode_as_their_base_type() -> None:
    assert encode(Color.RED) == b":1\r\n"
    assert encode(Keys([b"k"])) == b"*1\r\n$1\r\nk\r\n"
    assert encode(range(2)) == b"*2\r\n:0\r\n:1\r\n"


@pytest.mark.parametrize("reply", ["text", object(), 1j, [b"ok", "text"], {b"k": "v"}, Ellipsis])
def test_types_outside_the_model_are_a_type_error(reply: Any) -> None:
    with pytest.raises(TypeError):
        encode(reply)


@pytest.mark.parametrize(
    "reply",
    [2**63, -(2**63) - 1, SimpleString("two\nlines"), SimpleString("a\rb"), Verbatim(b"x", "text")],
)
def test_values_resp_cannot_carry_are_a_value_error(reply: Any) -> None:
    with pytest.raises(ValueError):
        encode(reply)


@pytest.mark.parametrize("protocol", [0, 1, 4, "3"])
def test_the_protocol_is_2_or_3(protocol: Any) -> None:
    with pytest.raises(ValueError):
        encode(b"x", protocol)


# --------------------------------------------------------------------- read back by redis-py

_parsers: Any = importlib.import_module("redis._parsers")
_socket_buffer: Any = importlib.import_module("redis._parsers.socket").SocketBuffer
_redis_exceptions: Any = importlib.import_module("redis.exceptions")


class _Socket:
    """What redis-py's parser reads from: our bytes, in 7-byte reads to test its buffering."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, size: int) -> bytes:
        chunk, self.data = self.data[: min(size, 7)], self.data[min(size, 7) :]
        return chunk

    def settimeout(self, timeout: float | None) -> None:
        pass


def read_with_redis_py(data: bytes, protocol: int) -> list[Any]:
    """Every reply in ``data``, as redis-py's RESP parser returns it (undecoded)."""
    parser = _parsers._RESP3Parser(65536) if protocol == 3 else _parsers._RESP2Parser(65536)
    sock = _Socket(data)
    parser._sock = sock
    parser._buffer = _socket_buffer(sock, 65536, None)
    replies = []
    while sock.data or parser._buffer.unread_bytes():
        if protocol == 3:
            replies.append(parser.read_response(disable_decoding=True, push_request=True))
        else:
            replies.append(parser.read_response(disable_decoding=True))
    return replies


def expected(reply: Reply, protocol: int) -> Any:
    """``reply`` as redis-py returns it (errors as (class name, text); a RESP2 double is
    checked through ``float()`` by ``same``)."""
    resp3 = protocol == 3
    if isinstance(reply, SimpleString):
        return reply.text.encode("utf-8", "replace")  # a lone surrogate is sent as "?"
    if isinstance(reply, Error):
        # Sent on one line: line breaks become spaces.
        text = reply.text.replace("\r", " ").replace("\n", " ")
        text = text.encode("utf-8", "replace").decode()
        return comparable(_parsers.BaseParser.parse_error(text))
    if isinstance(reply, bool):
        return reply if resp3 else int(reply)
    if isinstance(reply, bytes | int | float) or reply is None or reply is NULL_ARRAY:
        return None if reply is NULL_ARRAY else reply
    if isinstance(reply, Verbatim):
        return reply.text
    if isinstance(reply, Push):
        return [expected(item, protocol) for item in reply.items]
    if isinstance(reply, dict):
        if resp3:
            return {k: expected(v, protocol) for k, v in reply.items()}
        return [x for k, v in reply.items() for x in (k, expected(v, protocol))]
    if isinstance(reply, list | tuple | set | frozenset):
        return [expected(item, protocol) for item in reply]
    raise AssertionError(f"no expectation for {reply!r}")


def comparable(value: Any) -> Any:
    """redis-py's reply with errors turned into (class name, text)."""
    if isinstance(value, _redis_exceptions.ResponseError):
        return (type(value).__name__, str(value))
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    return value


def same(got: Any, want: Any) -> bool:
    """Equal, reading a RESP2 double (a bulk string) as a float."""
    if isinstance(want, float) and not isinstance(got, float):
        return isinstance(got, bytes) and float(got) == want
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(same, got, want))
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(same(got[k], want[k]) for k in want)
        )
    return bool(got == want and type(got) is type(want))


leaves = st.one_of(
    st.binary(max_size=30),
    st.integers(-(2**63), 2**63 - 1),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.builds(SimpleString, st.text(st.characters(exclude_characters="\r\n"), max_size=20)),
    st.builds(
        Error,
        st.builds(
            "{} {}".format,
            st.sampled_from(["ERR", "WRONGTYPE", "TRYAGAIN", "EXECABORT"]),
            st.text(max_size=20),
        ),
    ),
    st.builds(Verbatim, st.binary(max_size=30)),
    st.just(NULL_ARRAY),
)
replies: st.SearchStrategy[Reply] = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.binary(max_size=8), children, max_size=4),
        st.sets(st.binary(max_size=8) | st.integers(-(2**63), 2**63 - 1), max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=500)
@given(st.lists(replies, min_size=1, max_size=5), st.sampled_from([2, 3]))
def test_redis_py_reads_what_we_encode(sequence: list[Reply], protocol: int) -> None:
    data = b"".join(encode(reply, protocol) for reply in sequence)
    got = comparable(read_with_redis_py(data, protocol))
    want = [expected(reply, protocol) for reply in sequence]
    assert same(got, want), (got, want)


def test_redis_py_reads_a_push_and_special_doubles() -> None:
    data = encode(Push([b"message", b"ch", b"hi"]), 3) + encode([math.inf, -math.inf, math.nan], 3)
    push, doubles = read_with_redis_py(data, 3)
    assert push == [b"message", b"ch", b"hi"]
    assert doubles[:2] == [math.inf, -math.inf] and math.isnan(doubles[2])


def test_redis_py_raises_the_error_class_of_the_code() -> None:
    data = encode(Error("ERR unknown command")) + encode(Error("NOSCRIPT No matching script."))
    [err, noscript] = read_with_redis_py(data, 2)
    assert (type(err).__name__, str(err)) == ("ResponseError", "unknown command")
    assert (type(noscript).__name__, str(noscript)) == ("NoScriptError", "No matching script.")


def _nested(depth: int) -> Sequence[Reply]:
    reply: list[Reply] = [b"leaf"]
    for _ in range(depth):
        reply = [reply]
    return reply


def test_deeply_nested_arrays() -> None:
    data = encode(_nested(100), 3)
    assert data == b"*1\r\n" * 101 + b"$4\r\nleaf\r\n"
