"""resp.protocol against a real redis-server: the same bytes, the same verdict.

Skipped when ``redis-server`` is not installed. Each case uses a fresh connection,
because Redis closes one after a protocol error.

- Inline splitting: ``EVAL "return ARGV" 0 <tail>`` makes Redis echo the arguments
  it split from ``tail``; our parser must split the line the same way, or fail with
  the same error when Redis does.
- Protocol errors: every case of ``REDIS_CASES`` gets Redis's error, with our text.
"""

from __future__ import annotations

import contextlib
import importlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paxostob.resp.protocol import ProtocolError, RequestParser

from ..kv.real_redis import RedisUnavailable, redis_server
from ..tools import missing_tool
from .test_protocol import REDIS_CASES, UNBALANCED_LINES

REPLY_TIMEOUT_S = 10.0

_parsers: Any = importlib.import_module("redis._parsers")
_socket_buffer: Any = importlib.import_module("redis._parsers.socket").SocketBuffer
_redis_exceptions: Any = importlib.import_module("redis.exceptions")


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    try:
        with redis_server(tmp_path_factory.mktemp("redis")) as port:
            yield port
    except RedisUnavailable as e:
        if e.installed:
            pytest.fail(str(e))
        missing_tool(str(e))


def redis_reply(port: int, data: bytes) -> Any:
    """Redis's first reply to ``data`` on a fresh connection (an error as its text)."""
    with socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT_S) as sock:
        # Redis may reply and close before it has read all of a long stream.
        with contextlib.suppress(ConnectionError):
            sock.sendall(data)
        parser = _parsers._RESP2Parser(65536)
        parser._sock = sock
        parser._buffer = _socket_buffer(sock, 65536, REPLY_TIMEOUT_S)
        reply = parser.read_response(disable_decoding=True)
    if isinstance(reply, _redis_exceptions.ResponseError):
        return ("error", str(reply))
    return reply


def our_verdict(data: bytes) -> Any:
    """What our parser makes of ``data``: the first command, or the error's text."""
    parser = RequestParser()
    parser.feed(data)
    try:
        return parser.parse()
    except ProtocolError as e:
        return ("error", e.message)


_EVAL = b'EVAL "return ARGV" 0 '
# The bytes that matter to sdssplitargs, and a few that don't. No NUL: Redis looks for
# the end of an inline line with strchr, so it never finds the end of one with a NUL.
_INLINE_PIECES = [
    b" ",
    b"\t",
    b"\r",
    b"\x0b",
    b"\x0c",
    b'"',
    b"'",
    b"\\",
    b"x",
    b"4",
    b"A",
    b"f",
    b"n",
    b"\xff",
    b"a",
    b"key",
    b"\\x41",
    b"\\'",
]


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(_INLINE_PIECES), max_size=20).map(b"".join))
def test_inline_lines_split_as_redis_splits_them(redis_port: int, tail: bytes) -> None:
    line = _EVAL + tail + b"\r\n"
    theirs = redis_reply(redis_port, line)
    ours = our_verdict(line)
    if isinstance(ours, tuple):
        assert theirs == ours
    else:
        assert ours[:3] == [b"EVAL", b"return ARGV", b"0"]
        assert theirs == ours[3:]


@pytest.mark.parametrize("line", UNBALANCED_LINES)
def test_unbalanced_quotes_as_redis(redis_port: int, line: bytes) -> None:
    assert redis_reply(redis_port, line) == our_verdict(line)


@pytest.mark.parametrize(("stream", "message"), REDIS_CASES)
def test_protocol_errors_as_redis(redis_port: int, stream: bytes, message: str) -> None:
    assert our_verdict(stream) == ("error", message)
    assert redis_reply(redis_port, stream) == ("error", message)
