"""resp.server: replies in request order, awaitable replies, closing, errors and back-pressure.

A scripted dispatcher stands in for the node's commands: ``ECHO x`` answers at
once, ``FUT name`` with a Future and ``CO name`` with a coroutine awaiting one,
which the test resolves; so every ordering is set by the test, not by timing.
Most tests talk to a real ``RespServer`` over TCP; the back-pressure ones drive
one connection's protocol object with a fake transport, to see when it pauses.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import warnings
from collections.abc import Awaitable, Coroutine
from typing import Any

import pytest

from paxostob.resp.protocol import Error, Reply, SimpleString, encode
from paxostob.resp.server import READ_BYTES, Connection, RespLimits, RespServer

WAIT_S = 10.0  # a bound on waiting for an event, never a delay


def pack(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def bulk(value: bytes) -> bytes:
    return encode(value)


class Script:
    """A dispatcher whose replies the test controls (see the module docstring)."""

    def __init__(self) -> None:
        self.futures: dict[bytes, asyncio.Future[Reply]] = {}
        self.events: list[str] = []
        self.batches: list[list[bytes]] = []
        #: Names of the awaitable replies completed when each batch was dispatched.
        self.done_at_dispatch: list[set[bytes]] = []
        self.started: dict[bytes, asyncio.Event] = {}
        #: Every command dispatched (``dispatch_many`` stops after QUIT).
        self.dispatched: list[list[bytes]] = []
        #: The coroutines of ``CO`` replies.
        self.coroutines: list[Coroutine[Any, Any, Reply]] = []

    def future(self, name: bytes) -> asyncio.Future[Reply]:
        if name not in self.futures:
            self.futures[name] = asyncio.get_running_loop().create_future()
        return self.futures[name]

    def start_event(self, name: bytes) -> asyncio.Event:
        return self.started.setdefault(name, asyncio.Event())

    def completed(self) -> set[bytes]:
        return {n for n, f in self.futures.items() if f.done()}

    def dispatch_many(
        self, conn: Connection, commands: list[list[bytes]]
    ) -> list[tuple[Reply | Awaitable[Reply], int]]:
        self.batches.append([c[0] + (b" " + c[1] if len(c) > 1 else b"") for c in commands])
        self.done_at_dispatch.append(self.completed())
        out: list[tuple[Reply | Awaitable[Reply], int]] = []
        for args in commands:
            if conn.closing:
                break
            out.append((self.dispatch(conn, args), conn.protocol))
        return out

    def dispatch(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        self.dispatched.append(args)
        name = args[0]
        if name == b"ECHO":
            return args[1]
        if name == b"FUT":
            return self.future(args[1])
        if name == b"CO":
            coroutine = self.coroutine(args[1])
            self.coroutines.append(coroutine)
            return coroutine
        if name == b"LATER":  # resolves by itself on a later loop iteration
            return self.later(args[1])
        if name == b"QUIT":
            conn.closing = True
            return SimpleString("OK")
        if name == b"BUG":
            raise RuntimeError("a dispatcher bug")
        if name == b"STR":
            return "not a reply"
        return Error("ERR unknown command")

    async def coroutine(self, name: bytes) -> Reply:
        self.events.append(f"start {name.decode()}")
        self.start_event(name).set()
        try:
            reply = await self.future(name)
        except asyncio.CancelledError:
            self.events.append(f"cancelled {name.decode()}")
            raise
        self.events.append(f"end {name.decode()}")
        return reply

    async def later(self, value: bytes) -> Reply:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        loop.call_soon(done.set_result, None)
        await done
        return value


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
async def server(script: Script) -> Any:
    srv = RespServer(script, port=0)
    await srv.start()
    yield srv
    await srv.close()


Client = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def connect(server: RespServer) -> Client:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def expect(client: Client, data: bytes) -> None:
    got = await asyncio.wait_for(client[0].readexactly(len(data)), WAIT_S)
    assert got == data


async def expect_eof(client: Client) -> None:
    assert await asyncio.wait_for(client[0].read(), WAIT_S) == b""
    client[1].close()


async def started(script: Script, name: bytes) -> None:
    await asyncio.wait_for(script.start_event(name).wait(), WAIT_S)


# ------------------------------------------------------------------------------- ordering


async def test_replies_mixing_ready_futures_and_coroutines_come_in_request_order(
    server: RespServer, script: Script
) -> None:
    client = await connect(server)
    client[1].write(
        pack(b"ECHO", b"a")
        + pack(b"CO", b"c1")
        + pack(b"ECHO", b"b")
        + pack(b"FUT", b"f1")
        + pack(b"ECHO", b"c")
        + pack(b"CO", b"c2")
        + pack(b"ECHO", b"d")
    )
    await expect(client, bulk(b"a"))  # ready before anything outstanding: sent at once
    await started(script, b"c1")
    script.future(b"f1").set_result(b"F1")  # completes out of order: held back
    script.future(b"c1").set_result(b"C1")
    await started(script, b"c2")
    script.future(b"c2").set_result(b"C2")
    await expect(client, b"".join(bulk(v) for v in (b"C1", b"b", b"F1", b"c", b"C2", b"d")))
    # A coroutine starts only once every earlier reply completed (one log entry after another).
    assert script.events == ["start c1", "end c1", "start c2", "end c2"]
    client[1].close()


async def test_commands_arriving_while_a_reply_is_outstanding_wait_for_it(
    server: RespServer, script: Script
) -> None:
    client = await connect(server)
    client[1].write(pack(b"CO", b"c1"))
    await started(script, b"c1")
    client[1].write(pack(b"ECHO", b"x"))
    await client[1].drain()
    client[1].write(pack(b"ECHO", b"y"))
    await client[1].drain()
    script.future(b"c1").set_result(b"C1")
    await expect(client, bulk(b"C1") + bulk(b"x") + bulk(b"y"))
    for batch, done in zip(script.batches, script.done_at_dispatch, strict=True):
        if b"ECHO x" in batch or b"ECHO y" in batch:
            assert b"c1" in done, "dispatched before the earlier command completed"
    client[1].close()


async def test_a_10000_command_pipeline_gets_10000_replies_in_order(
    server: RespServer, script: Script
) -> None:
    n = 10_000
    client = await connect(server)
    wire, expected = [], []
    for k in range(n):
        value = b"%d" % k
        wire.append(pack(b"LATER" if k % 10 == 0 else b"ECHO", value))
        expected.append(bulk(value))
    client[1].write(b"".join(wire))
    await expect(client, b"".join(expected))
    client[1].close()


async def test_one_driver_task_serves_a_connection_and_ends_with_it(
    server: RespServer, script: Script
) -> None:
    client = await connect(server)
    for name in (b"c1", b"c2"):
        client[1].write(pack(b"CO", name) + pack(b"ECHO", name))
        await started(script, name)
        script.future(name).set_result(name.upper())
        await expect(client, bulk(name.upper()) + bulk(name))
    # A future after the driver parked wakes it rather than taking a callback.
    client[1].write(pack(b"FUT", b"f3") + pack(b"ECHO", b"x"))
    script.future(b"f3").set_result(b"F3")
    await expect(client, bulk(b"F3") + bulk(b"x"))
    drivers = set(server._drivers)
    assert len(drivers) == 1, "no task per command"
    client[1].close()
    await asyncio.wait_for(asyncio.wait(drivers), WAIT_S)


async def test_the_server_counts_connections_and_gives_each_an_id(
    server: RespServer, script: Script
) -> None:
    ids: list[int] = []

    def record(conn: Connection, args: list[bytes]) -> Reply:
        ids.append(conn.id)
        return b"%d" % conn.id

    script.dispatch = record  # type: ignore[method-assign]
    a, b = await connect(server), await connect(server)
    for client in (a, b):
        client[1].write(pack(b"ID"))
    await expect(a, bulk(b"%d" % 1))
    await expect(b, bulk(b"%d" % 2))
    assert server.connections == 2 and sorted(ids) == [1, 2]
    a[1].close()
    b[1].close()


# ------------------------------------------------------------------------- closing


async def test_quit_closes_after_its_reply_and_nothing_after_it_is_dispatched(
    server: RespServer, script: Script
) -> None:
    client = await connect(server)
    client[1].write(
        pack(b"ECHO", b"a") + pack(b"CO", b"c1") + pack(b"QUIT") + pack(b"ECHO", b"never")
    )
    await started(script, b"c1")
    script.future(b"c1").set_result(b"C1")
    await expect(client, bulk(b"a") + bulk(b"C1") + b"+OK\r\n")
    await expect_eof(client)
    assert [b"ECHO", b"never"] not in script.dispatched


async def test_a_half_closed_client_gets_every_reply_then_eof(
    server: RespServer, script: Script
) -> None:
    client = await connect(server)
    client[1].write(pack(b"CO", b"c1") + pack(b"ECHO", b"a"))
    client[1].write_eof()
    await started(script, b"c1")
    script.future(b"c1").set_result(b"C1")
    await expect(client, bulk(b"C1") + bulk(b"a"))
    await expect_eof(client)


# ---------------------------------------------------------------------------- errors


async def test_a_protocol_error_is_answered_after_earlier_replies_and_closes_that_client_only(
    server: RespServer, script: Script
) -> None:
    bystander = await connect(server)
    client = await connect(server)
    client[1].write(pack(b"ECHO", b"a") + pack(b"CO", b"c1") + b"*1\r\nx\r\n")
    await started(script, b"c1")
    script.future(b"c1").set_result(b"C1")
    await expect(
        client, bulk(b"a") + bulk(b"C1") + b"-ERR Protocol error: expected '$', got 'x'\r\n"
    )
    await expect_eof(client)
    assert server.protocol_errors == 1
    bystander[1].write(pack(b"ECHO", b"still"))
    await expect(bystander, bulk(b"still"))
    bystander[1].close()


async def test_a_command_over_the_limits_is_a_protocol_error(script: Script) -> None:
    server = RespServer(script, port=0, limits=RespLimits(args_max=2, bulk_bytes_max=4))
    await server.start()
    try:
        client = await connect(server)
        client[1].write(pack(b"ECHO", b"ok") + pack(b"ECHO", b"a", b"b"))
        await expect(client, bulk(b"ok") + b"-ERR Protocol error: invalid multibulk length\r\n")
        await expect_eof(client)
        client = await connect(server)
        client[1].write(pack(b"ECHO", b"12345"))
        await expect(client, b"-ERR Protocol error: invalid bulk length\r\n")
        await expect_eof(client)
        assert server.protocol_errors == 2
    finally:
        await server.close()


@pytest.mark.parametrize(
    "bug",
    [pack(b"BUG"), pack(b"STR"), pack(b"CO", b"raises")],
    ids=["dispatcher raises", "reply outside the model", "awaitable raises"],
)
async def test_a_bug_serving_one_client_drops_that_client_only(
    server: RespServer, script: Script, bug: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    script.future(b"raises").set_exception(RuntimeError("an awaitable bug"))
    bystander = await connect(server)
    client = await connect(server)
    with caplog.at_level(logging.ERROR, logger="paxostob.resp"):
        client[1].write(pack(b"ECHO", b"a"))
        await expect(client, bulk(b"a"))
        client[1].write(bug + pack(b"ECHO", b"b"))
        await expect_eof(client)
    assert "internal error" in caplog.text
    bystander[1].write(pack(b"ECHO", b"still"))
    await expect(bystander, bulk(b"still"))
    bystander[1].close()


# ----------------------------------------------------------------------------- close()


async def test_close_drops_outstanding_replies_cleanly(script: Script) -> None:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    server = RespServer(script, port=0)
    await server.start()
    driven, waiting = await connect(server), await connect(server)
    # One connection awaits a coroutine, with another coroutine and a future behind
    # it; the other waits for a future at the head of its queue.
    driven[1].write(pack(b"CO", b"c1") + pack(b"CO", b"c2") + pack(b"FUT", b"f3"))
    waiting[1].write(pack(b"FUT", b"f4") + pack(b"ECHO", b"x"))
    await started(script, b"c1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await server.close()
        await expect_eof(driven)
        await expect_eof(waiting)
        # Replies that fail after the server closed are nobody's to retrieve.
        script.future(b"f3").set_exception(RuntimeError("late"))
        script.future(b"f4").set_exception(RuntimeError("late"))
        del driven, waiting
        gc.collect()
        # Let done callbacks run: one loop iteration, not a wait for time.
        await asyncio.sleep(0)
        gc.collect()
    assert script.events == ["start c1", "cancelled c1"], "c2 never started"
    assert [str(w.message) for w in caught] == []
    assert seen == []
    loop.set_exception_handler(None)


async def test_close_right_after_a_dispatch_closes_the_coroutines_never_started(
    script: Script,
) -> None:
    server = RespServer(script, port=0)
    await server.start()
    protocol, transport = fake_client(server)
    # The driver task is created here and cancelled by close() before its first step.
    protocol.data_received(pack(b"CO", b"c1") + pack(b"CO", b"c2"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await server.close()
        gc.collect()
    assert script.events == []
    assert len(script.coroutines) == 2
    states = {inspect.getcoroutinestate(c) for c in script.coroutines}
    assert states == {inspect.CORO_CLOSED}, "closed, never to be awaited"
    assert [str(w.message) for w in caught] == []
    assert transport.closed


async def test_close_twice_and_without_start(script: Script) -> None:
    server = RespServer(script, port=0)
    await server.close()
    await server.start()
    await server.close()
    await server.close()


# ----------------------------------------------------------------------- back-pressure


class FakeTransport(asyncio.Transport):
    """Records what the server writes and whether it reads."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.wrote = asyncio.Event()
        self.reading = True
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        self.wrote.set()

    def pause_reading(self) -> None:
        assert self.reading
        self.reading = False

    def resume_reading(self) -> None:
        assert not self.reading
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)


def fake_client(server: RespServer) -> tuple[asyncio.Protocol, FakeTransport]:
    assert server._server is not None
    protocol = server._server._protocol_factory()  # type: ignore[attr-defined]
    transport = FakeTransport(protocol)
    protocol.connection_made(transport)
    return protocol, transport


async def written(transport: FakeTransport, data: bytes) -> None:
    while bytes(transport.written) != data:
        assert data.startswith(bytes(transport.written)), bytes(transport.written)
        transport.wrote.clear()
        await asyncio.wait_for(transport.wrote.wait(), WAIT_S)


async def test_reading_pauses_while_the_write_buffer_is_full(
    server: RespServer, script: Script
) -> None:
    protocol, transport = fake_client(server)
    protocol.pause_writing()
    assert not transport.reading
    protocol.resume_writing()
    assert transport.reading
    transport.close()


async def test_reading_pauses_behind_an_outstanding_reply_and_resumes_after_it(
    server: RespServer, script: Script
) -> None:
    protocol, transport = fake_client(server)
    protocol.data_received(pack(b"FUT", b"f1"))
    echo = pack(b"ECHO", b"x" * 100)
    count = READ_BYTES // len(echo) + 1
    for _ in range(count):
        assert transport.reading
        protocol.data_received(echo)
    assert not transport.reading, "more than READ_BYTES held behind an outstanding reply"
    assert len(script.batches) == 1, "nothing is dispatched while a reply is outstanding"
    script.future(b"f1").set_result(b"F1")
    await written(transport, bulk(b"F1") + bulk(b"x" * 100) * count)
    assert transport.reading
    assert len(script.batches) == 2, "what waited is dispatched in one batch"
    transport.close()


async def test_a_future_reply_needs_no_task(server: RespServer, script: Script) -> None:
    protocol, transport = fake_client(server)
    tasks = len(asyncio.all_tasks())
    protocol.data_received(pack(b"FUT", b"f1") + pack(b"ECHO", b"a") + pack(b"FUT", b"f2"))
    assert len(asyncio.all_tasks()) == tasks
    script.future(b"f2").set_result(b"F2")
    script.future(b"f1").set_result(b"F1")
    await written(transport, bulk(b"F1") + bulk(b"a") + bulk(b"F2"))
    assert len(asyncio.all_tasks()) == tasks
    transport.close()
