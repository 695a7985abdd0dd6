"""A Python asyncio load generator with minimal clients for RESP, ZooKeeper and etcd.

``run_load`` runs ``clients`` connections, each sending one request and
waiting for its reply before the next (closed loop, like ``redis-benchmark
-P 1``), until ``requests`` requests were issued in all or ``time_max_s``
passed, whichever comes first: a load loop is bounded in count and time and
stops by itself. It reports completed requests per second and latency
percentiles (p50/p99/p999) of every completed request.

The clients are deliberately small (no connection pools, no retries, no
parsing beyond what a reply needs) so that the same generator costs about the
same per request whatever it drives:

- ``RespClient``: ``SET``/``GET``/any command over the Redis protocol;
- ``ZkClient``: ZooKeeper's own binary protocol (jute), ``setData`` on one
  znode per client (a 100-byte write through ZooKeeper's atomic broadcast);
- ``EtcdClient``: etcd v3's JSON gateway over HTTP/1.1 keep-alive
  (``POST /v3/kv/put``, the same Raft write as the gRPC API).

Every server here is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from benchcommon import percentile

HOST = "127.0.0.1"
#: A reply slower than this is a hung server (the run fails instead of hanging).
REPLY_TIMEOUT_S = 30.0
#: Errors tolerated before a run gives up. A leader change answers -TRYAGAIN
#: until the new leader is known: that is counted and retried after a pause,
#: not fatal (a soak on a busy machine sees elections).
ERRORS_MAX = 100_000
ERROR_PAUSE_S = 0.01


class ServerError(Exception):
    """The server answered with an error."""


@dataclass(frozen=True, slots=True)
class LoadResult:
    completed: int
    errors: int
    elapsed_s: float
    latencies_s: tuple[float, ...]

    @property
    def ops_s(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def ms(self, q: float) -> float:
        return percentile(self.latencies_s, q) * 1000


class Client:
    """One connection that can send one request at a time."""

    async def request(self, n: int) -> None:
        """Send request number ``n`` of this client and wait for its reply."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


ClientFactory = Callable[[int], Awaitable[Client]]


async def run_load(
    factory: ClientFactory,
    *,
    clients: int,
    requests: int,
    time_max_s: float,
    progress: Callable[[int], None] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> LoadResult:
    """Closed-loop load: ``clients`` connections, ``requests`` requests or ``time_max_s``."""
    conns = [await factory(i) for i in range(clients)]
    latencies: list[float] = []
    issued = 0
    errors = 0
    start = time.perf_counter()
    deadline = start + time_max_s

    async def worker(conn: Client) -> None:
        nonlocal issued, errors
        for n in itertools.count():
            if issued >= requests or time.perf_counter() >= deadline:
                return
            issued += 1
            t0 = time.perf_counter()
            try:
                await asyncio.wait_for(conn.request(n), REPLY_TIMEOUT_S)
            except ServerError as e:
                errors += 1
                if on_error is not None:
                    on_error(str(e))
                if errors > ERRORS_MAX:
                    raise
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            latencies.append(time.perf_counter() - t0)
            if progress is not None:
                progress(1)

    try:
        await asyncio.gather(*(worker(c) for c in conns))
        elapsed = time.perf_counter() - start
    finally:
        for c in conns:
            await c.close()
    return LoadResult(len(latencies), errors, elapsed, tuple(latencies))


# --- RESP -------------------------------------------------------------------


def resp_command(*args: bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%b\r\n" % (len(a), a))
    return b"".join(parts)


RespValue = bytes | int | None | list["RespValue"]


class RespClient(Client):
    """``command(n)`` gives the request's arguments; replies are read and checked for errors."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        command: Callable[[int], Sequence[bytes]],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.command = command

    @classmethod
    async def connect(cls, port: int, command: Callable[[int], Sequence[bytes]]) -> RespClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer, command)

    async def call(self, *args: bytes) -> RespValue:
        self.writer.write(resp_command(*args))
        return await self.read_reply()

    async def request(self, n: int) -> None:
        await self.call(*self.command(n))

    async def read_reply(self) -> RespValue:
        line = await self.reader.readuntil(b"\r\n")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise ServerError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            return (await self.reader.readexactly(size + 2))[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [await self.read_reply() for _ in range(size)]
        raise ServerError(f"unexpected reply {line[:40]!r}")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def set_command(client: int, value: bytes, keyspace: int) -> Callable[[int], Sequence[bytes]]:
    """SET on keys spread over ``keyspace`` keys, so the store does not grow without bound.

    The keys are ``redis-benchmark -r``'s (``key:`` and 12 digits), so that both load
    generators write one family of keys and a store holds ``keyspace`` keys, not twice as many.
    """

    def command(n: int) -> Sequence[bytes]:
        return (b"SET", b"key:%012d" % ((client * 7919 + n) % keyspace), value)

    return command


def get_command(client: int, keyspace: int) -> Callable[[int], Sequence[bytes]]:
    def command(n: int) -> Sequence[bytes]:
        return (b"GET", b"key:%012d" % ((client * 7919 + n) % keyspace))

    return command


def resp_factory(
    ports: Sequence[int], command: Callable[[int], Callable[[int], Sequence[bytes]]]
) -> ClientFactory:
    """Client ``i`` talks to ``ports[i % len(ports)]`` with ``command(i)``'s requests."""

    async def factory(i: int) -> Client:
        return await RespClient.connect(ports[i % len(ports)], command(i))

    return factory


# --- ZooKeeper ----------------------------------------------------------------

ZK_CREATE = 1
ZK_SET_DATA = 5
ZK_CLOSE = -11
ZK_NODE_EXISTS = -110
#: perms ALL for scheme "world", id "anyone" (ZooKeeper's OPEN_ACL_UNSAFE).
ZK_OPEN_ACL = struct.pack(">ii", 1, 31) + struct.pack(">i", 5) + b"world" + struct.pack(">i", 6)
ZK_OPEN_ACL += b"anyone"


def _zk_string(b: bytes) -> bytes:
    return struct.pack(">i", len(b)) + b


class ZkClient(Client):
    """A session speaking ZooKeeper's wire protocol; ``request`` is a ``setData`` of ``value``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: bytes, value: bytes
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.path = path
        self.value = value
        self.xid = 0

    @classmethod
    async def connect(cls, port: int, path: bytes, value: bytes) -> ZkClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        # ConnectRequest: protocolVersion, lastZxidSeen, timeOut, sessionId, passwd, readOnly.
        body = struct.pack(">iqiq", 0, 0, 30_000, 0) + _zk_string(b"\0" * 16) + b"\0"
        writer.write(struct.pack(">i", len(body)) + body)
        await cls._frame(reader)  # ConnectResponse: the session is open
        client = cls(reader, writer, path, value)
        err = await client._call(
            ZK_CREATE, _zk_string(path) + _zk_string(value) + ZK_OPEN_ACL + struct.pack(">i", 0)
        )
        if err not in (0, ZK_NODE_EXISTS):
            raise ServerError(f"zookeeper create {path!r}: error {err}")
        return client

    @staticmethod
    async def _frame(reader: asyncio.StreamReader) -> bytes:
        (size,) = struct.unpack(">i", await reader.readexactly(4))
        return await reader.readexactly(size)

    async def _call(self, op: int, body: bytes) -> int:
        self.xid += 1
        msg = struct.pack(">ii", self.xid, op) + body
        self.writer.write(struct.pack(">i", len(msg)) + msg)
        while True:
            reply = await self._frame(self.reader)
            xid, _zxid, err = struct.unpack(">iqi", reply[:16])
            if xid == self.xid:
                return int(err)
            # anything else (a watch event, a ping reply) is not ours: skip it

    async def request(self, n: int) -> None:
        err = await self._call(
            ZK_SET_DATA, _zk_string(self.path) + _zk_string(self.value) + struct.pack(">i", -1)
        )
        if err != 0:
            raise ServerError(f"zookeeper setData: error {err}")

    async def close(self) -> None:
        try:
            self.xid += 1
            msg = struct.pack(">ii", self.xid, ZK_CLOSE)
            self.writer.write(struct.pack(">i", len(msg)) + msg)
            await asyncio.wait_for(self._frame(self.reader), 2.0)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        self.writer.close()


def zk_factory(ports: Sequence[int], value: bytes) -> ClientFactory:
    async def factory(i: int) -> Client:
        return await ZkClient.connect(ports[i % len(ports)], b"/bench-%d" % i, value)

    return factory


# --- etcd ----------------------------------------------------------------------


class EtcdClient(Client):
    """HTTP/1.1 keep-alive to etcd's JSON gateway; ``request`` is a put of ``value``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: bytes, value: bytes
    ) -> None:
        self.reader = reader
        self.writer = writer
        body = json.dumps(
            {"key": base64.b64encode(key).decode(), "value": base64.b64encode(value).decode()}
        ).encode()
        self.put = (
            b"POST /v3/kv/put HTTP/1.1\r\nHost: %b\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (HOST.encode(), len(body), body)
        )

    @classmethod
    async def connect(cls, port: int, key: bytes, value: bytes) -> EtcdClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer, key, value)

    async def post(self, message: bytes) -> bytes:
        self.writer.write(message)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        headers = {}
        for line in head.split(b"\r\n")[1:]:
            if b":" in line:
                k, v = line.split(b":", 1)
                headers[k.strip().lower()] = v.strip()
        if b"content-length" in headers:
            body = await self.reader.readexactly(int(headers[b"content-length"]))
        else:  # chunked
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                chunks.append(chunk[:-2])
            body = b"".join(chunks)
        if status != b"200":
            raise ServerError(f"etcd: HTTP {status.decode()} {body[:200]!r}")
        return body

    async def request(self, n: int) -> None:
        await self.post(self.put)

    async def close(self) -> None:
        self.writer.close()


def etcd_factory(ports: Sequence[int], value: bytes) -> ClientFactory:
    async def factory(i: int) -> Client:
        return await EtcdClient.connect(ports[i % len(ports)], b"bench-%d" % i, value)

    return factory
