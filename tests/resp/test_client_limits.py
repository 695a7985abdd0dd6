"""resp.server's client limits over real sockets: maxclients, timeout, bulk and pre-AUTH bounds.

A scripted dispatcher (``test_server.Script``) stands in for the node's
commands, with ``AUTH pw`` added; the node itself, with its real commands and
RSS measured from outside, is tested in ``tests/integration/test_client_limits.py``.
Every wait is on an event (a reply, an EOF) bounded by ``WAIT_S``, never a sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import pytest

from paxostob.errors import ConfigurationError
from paxostob.resp.protocol import Error, ProtocolError, Reply, RequestParser, SimpleString
from paxostob.resp.server import Connection, RespLimits, RespServer

from .test_server import Script, bulk, connect, expect, expect_eof, pack, started

MAXCLIENTS_REPLY = b"-ERR max number of clients reached\r\n"
INVALID_BULK = b"-ERR Protocol error: invalid bulk length\r\n"
UNAUTH_MBULK = b"-ERR Protocol error: unauthenticated multibulk length\r\n"
UNAUTH_BULK = b"-ERR Protocol error: unauthenticated bulk length\r\n"


class AuthScript(Script):
    """``Script`` with a password: ``AUTH pw`` authenticates, anything else before it is NOAUTH."""

    def dispatch(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        if args[0] == b"AUTH":
            if args[1:] == [b"pw"]:
                conn.authenticated = True
                return SimpleString("OK")
            return Error("WRONGPASS invalid username-password pair or user is disabled.")
        if not conn.authenticated:
            self.dispatched.append(args)
            return Error("NOAUTH Authentication required.")
        return super().dispatch(conn, args)


async def running(server: RespServer) -> AsyncIterator[RespServer]:
    await server.start()
    try:
        yield server
    finally:
        await server.close()


# ------------------------------------------------------------------------------ maxclients


@pytest.fixture
async def two_clients_max() -> AsyncIterator[RespServer]:
    async for s in running(RespServer(Script(), port=0, limits=RespLimits(maxclients=2))):
        yield s


async def test_the_client_beyond_maxclients_gets_redis_error_and_is_closed(
    two_clients_max: RespServer,
) -> None:
    server = two_clients_max
    first, second = await connect(server), await connect(server)
    for c in (first, second):  # both served (and so both counted) before the third comes
        c[1].write(pack(b"ECHO", b"in"))
        await expect(c, bulk(b"in"))
    third = await connect(server)
    await expect(third, MAXCLIENTS_REPLY)
    await expect_eof(third)
    assert server.rejected_connections == 1 and server.clients == 2
    # The node still serves its clients, and frees the slot of one that leaves.
    second[1].write(pack(b"ECHO", b"still"))
    await expect(second, bulk(b"still"))
    first[1].write(pack(b"QUIT"))
    await expect(first, b"+OK\r\n")
    await expect_eof(first)  # the server forgot it before closing the socket
    fourth = await connect(server)
    fourth[1].write(pack(b"ECHO", b"admitted"))
    await expect(fourth, bulk(b"admitted"))
    for c in (second, fourth):
        c[1].close()


# ------------------------------------------------------------------------------- timeout

TINY_TIMEOUT_S = 0.3


async def test_idle_and_half_sent_clients_are_closed_after_timeout_and_a_busy_one_is_not() -> None:
    script = Script()
    limits = RespLimits(timeout_s=TINY_TIMEOUT_S)
    async for server in running(RespServer(script, port=0, limits=limits)):
        loop = asyncio.get_running_loop()
        # Busy the longest: its reply is outstanding (a command waiting for consensus).
        busy = await connect(server)
        busy[1].write(pack(b"CO", b"slow"))
        await started(script, b"slow")
        start = loop.time()
        idle = await connect(server)
        half = await connect(server)
        half[1].write(b"*2\r\n$4\r\nECHO\r\n$5\r\nab")  # a command cut short
        await expect_eof(idle)
        await expect_eof(half)
        assert loop.time() - start >= TINY_TIMEOUT_S, "closed before it was idle for timeout"
        assert server.idle_closed == 2
        # The busy client outlived them, and gets its reply when it comes.
        script.future(b"slow").set_result(b"done")
        await expect(busy, bulk(b"done"))
        busy[1].close()


async def test_a_client_trickling_one_command_is_closed_after_timeout() -> None:
    """A command's bytes are not activity: only complete commands (and replies) are."""
    limits = RespLimits(timeout_s=TINY_TIMEOUT_S)
    async for server in running(RespServer(Script(), port=0, limits=limits)):
        loop = asyncio.get_running_loop()
        reader, writer = await connect(server)
        size = 100
        writer.write(b"*2\r\n$4\r\nECHO\r\n$%d\r\n" % size)
        start = loop.time()
        sent = 0
        while sent < size:
            try:  # wait for the close, and send one more byte each time it has not come
                closed = await asyncio.wait_for(reader.read(), TINY_TIMEOUT_S / 4)
            except TimeoutError:
                writer.write(b"x")
                sent += 1
                continue
            assert closed == b""
            break
        assert sent < size, "the trickling client was never closed"
        assert loop.time() - start >= TINY_TIMEOUT_S
        writer.close()


# ---------------------------------------------------------------- before authentication


@pytest.fixture
async def auth_server() -> AsyncIterator[RespServer]:
    async for s in running(RespServer(AuthScript(), port=0, auth_required=True)):
        yield s


@pytest.mark.parametrize(
    ("request_bytes", "reply"),
    [
        (b"*11\r\n", UNAUTH_MBULK),
        (b"*2\r\n$4\r\nAUTH\r\n$16385\r\n", UNAUTH_BULK),
        (b"*2\r\n$4\r\nAUTH\r\n$419430400\r\n", UNAUTH_BULK),
    ],
    ids=["11 arguments", "16385-byte password", "400 MiB password"],
)
async def test_an_unauthenticated_client_gets_redis_7_bounds(
    auth_server: RespServer, request_bytes: bytes, reply: bytes
) -> None:
    client = await connect(auth_server)
    client[1].write(request_bytes)
    await expect(client, reply)
    await expect_eof(client)


async def test_unauthenticated_bounds_admit_what_redis_admits(auth_server: RespServer) -> None:
    client = await connect(auth_server)
    client[1].write(pack(b"AUTH", b"x" * 16384) + pack(*[b"ECHO"] * 10))
    await expect(
        client,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        b"-NOAUTH Authentication required.\r\n",
    )
    client[1].close()


async def test_commands_after_auth_in_the_same_read_get_the_general_bounds(
    auth_server: RespServer,
) -> None:
    # As in Redis, which parses each command after the previous one ran.
    client = await connect(auth_server)
    big = b"v" * 20000
    client[1].write(pack(b"AUTH", b"pw") + pack(b"ECHO", big) + pack(*[b"X"] * 11))
    await expect(client, b"+OK\r\n" + bulk(big) + b"-ERR unknown command\r\n")
    client[1].write(pack(b"ECHO", big))
    await expect(client, bulk(big))
    client[1].close()


async def test_without_a_password_there_are_no_unauthenticated_bounds() -> None:
    async for server in running(RespServer(Script(), port=0)):
        client = await connect(server)
        big = b"v" * 20000
        client[1].write(pack(b"ECHO", big) + pack(*[b"X"] * 11))
        await expect(client, bulk(big) + b"-ERR unknown command\r\n")
        client[1].close()


async def test_a_bad_password_keeps_the_bounds(auth_server: RespServer) -> None:
    client = await connect(auth_server)
    client[1].write(pack(b"AUTH", b"wrong") + b"*11\r\n")
    await expect(
        client,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n" + UNAUTH_MBULK,
    )
    await expect_eof(client)


# ------------------------------------------------------------------------ parser, limits


def test_the_general_bound_is_reported_before_the_unauthenticated_one() -> None:
    # Redis's order: a length over proto-max-bulk-len is "invalid" whoever sends it.
    parser = RequestParser(bulk_bytes_max=100_000, args_max=1000)
    parser.restrict()
    for data, message in (
        (b"*1001\r\n", "Protocol error: invalid multibulk length"),
        (b"*11\r\n", "Protocol error: unauthenticated multibulk length"),
        (b"*1\r\n$100001\r\n", "Protocol error: invalid bulk length"),
        (b"*1\r\n$16385\r\n", "Protocol error: unauthenticated bulk length"),
    ):
        p = RequestParser(bulk_bytes_max=100_000, args_max=1000)
        p.restrict()
        p.feed(data)
        with pytest.raises(ProtocolError) as e:
            p.parse()
        assert e.value.message == message
    parser.unrestrict()
    parser.feed(b"*11\r\n" + b"$1\r\nx\r\n" * 11)
    assert parser.parse() == [b"x"] * 11
    assert not parser.restricted


@pytest.mark.parametrize(
    "limits",
    [
        {"maxclients": 0},
        {"timeout_s": -1},
        {"timeout_s": float("nan")},
        {"bulk_bytes_max": 0},
        {"unauthenticated_args_max": 0},
    ],
)
def test_limits_out_of_range_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RespLimits(**limits)  # type: ignore[arg-type]
