"""TcpTransport: the Transport conformance suite (plain, TLS, uvloop), then what TCP adds.

Every server binds 127.0.0.1 on ports found free just before (bind port 0,
read the port, close): peers must know each other's ports in advance, so the
listener cannot bind port 0 itself. A collision with another process makes
``start()`` raise ``ConfigurationError``; the cluster is then rebuilt on
fresh ports.

Nothing here sleeps to wait: tests wait for a counter or a connection with
``TcpTransport.wait_until`` (woken on every change), or for a message with
``receive``, always under a timeout. A "hostile peer" is a raw asyncio stream
that speaks (or does not speak) the handshake by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import msgpack  # type: ignore[import-untyped]
import pytest

from paxostob import Consensus, Delivery, TotalOrderBroadcast
from paxostob.codec import encode_message
from paxostob.core.messages import Accept, Envelope, Heartbeat, Message, SnapshotChunk
from paxostob.core.types import Ballot, Proposal, ProposalId
from paxostob.errors import ConfigurationError, NotRunningError
from paxostob.transport.auth import (
    HANDSHAKE_FRAME_BYTES_MAX,
    Hello,
    decode_hello,
    decode_proof,
    encode_hello,
    encode_proof,
    new_nonce,
    proof,
    verify_proof,
)
from paxostob.transport.frames import FrameDecoder, encode_frame
from paxostob.transport.tcp import (
    TcpStats,
    TcpTransport,
    _FrameStream,
    _SessionReader,
    install_uvloop,
)

from .conformance import RECEIVE_TIMEOUT_S, TransportConformance, Trio, envelope, receive_n

HOST = "127.0.0.1"
CLUSTER = "test-cluster"
SECRET = b"test-secret-0123456789abcdef"
#: Bounds every wait; a healthy run takes milliseconds.
WAIT_S = RECEIVE_TIMEOUT_S
#: Loopback delivers a written frame at once; the bound only ends a failing check.
FLUSH_ARRIVAL_S = 2.0
Members = dict[str, tuple[str, int]]


# --------------------------------------------------------------------------------- helpers


def free_members(ids: Iterable[str]) -> Members:
    """A port per id, free right now (held open together, so they are distinct)."""
    ids = list(ids)
    socks = [socket.socket() for _ in ids]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return {i: (HOST, s.getsockname()[1]) for i, s in zip(ids, socks, strict=True)}
    finally:
        for s in socks:
            s.close()


async def start_cluster(
    ids: Sequence[str],
    *,
    running: Sequence[str] | None = None,
    members: Members | None = None,
    **options: object,
) -> tuple[Members, dict[str, TcpTransport]]:
    """Transports for ``running`` (default: all ``ids``), started, on free ports.

    Retries on fresh ports when a port was taken meanwhile (only when the
    caller did not fix ``members``).
    """
    running = list(ids) if running is None else list(running)
    for _ in range(5):
        chosen = members or free_members(ids)
        transports = {
            i: TcpTransport(i, chosen, cluster_id=CLUSTER, secret=SECRET, **options)  # type: ignore[arg-type]
            for i in running
        }
        try:
            for t in transports.values():
                await t.start()
        except ConfigurationError:
            for t in transports.values():
                await t.close()
            if members is not None:
                raise
            continue
        return chosen, transports
    raise AssertionError("no free ports after 5 attempts")


async def close_all(transports: Iterable[TcpTransport]) -> None:
    for t in transports:
        await t.close()


async def until(transport: TcpTransport, predicate: Callable[[TcpStats], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        await transport.wait_until(predicate)


async def until_connected(transport: TcpTransport, peers: Iterable[str]) -> None:
    wanted = frozenset(peers)
    await until(transport, lambda _: transport.connected_peers() == wanted)


async def exchange(x: TcpTransport, y: TcpTransport, n: int = 1) -> None:
    """``x`` and ``y`` can talk both ways right now (``n`` tells the messages apart)."""
    x.send(envelope(x.address, y.address, n))
    y.send(envelope(y.address, x.address, n))
    assert await receive_n(y, 1) == [envelope(x.address, y.address, n)]
    assert await receive_n(x, 1) == [envelope(y.address, x.address, n)]


async def until_disconnected(transport: TcpTransport, peer: str) -> None:
    await until(transport, lambda _: peer not in transport.connected_peers())


def commits(envelopes: Iterable[Envelope]) -> list[int]:
    out = []
    for e in envelopes:
        assert isinstance(e.message, Heartbeat)
        out.append(e.message.commit)
    return out


def accept_of(sender: str, payload_bytes: int) -> Accept:
    value = (Proposal(ProposalId(sender, 1), b"x" * payload_bytes),)
    return Accept("big", sender, Ballot(1, sender), 1, value, 0)


class RawPeer:
    """A hand-driven connection to a listener: garbage, partial or correct handshakes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder(HANDSHAKE_FRAME_BYTES_MAX)

    @classmethod
    async def connect(cls, address: tuple[str, int]) -> RawPeer:
        reader, writer = await asyncio.open_connection(*address)
        return cls(reader, writer)

    async def read_payload(self) -> bytes:
        async with asyncio.timeout(WAIT_S):
            while (payload := self.decoder.next_payload()) is None:
                try:
                    data = await self.reader.read(4096)
                except ConnectionError:
                    data = b""
                assert data, "the listener closed the connection during the handshake"
                self.decoder.feed(data)
        return payload

    async def handshake(
        self, node_id: str, listener: str, *, secret: bytes = SECRET, cluster: str = CLUSTER
    ) -> None:
        """The dialer's side of the handshake (raises if the listener refuses)."""
        nonce = new_nonce()
        self.send_payload(encode_hello(Hello(cluster, node_id, listener, nonce)))
        theirs = decode_hello(await self.read_payload())
        args = (cluster, node_id, listener, nonce, theirs.nonce)
        self.send_payload(encode_proof(proof(secret, "dialer", *args)))
        verify_proof(proof(secret, "listener", *args), decode_proof(await self.read_payload()))

    def send_payload(self, payload: bytes) -> None:
        self.writer.write(encode_frame(payload))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def closed_by_listener(self) -> None:
        """Returns once the listener has closed the connection (fails after ``WAIT_S``)."""
        async with asyncio.timeout(WAIT_S):
            with contextlib.suppress(ConnectionError):
                while await self.reader.read(65536):
                    pass

    def close(self) -> None:
        self.writer.transport.abort()


@contextlib.asynccontextmanager
async def raw_peer(address: tuple[str, int]) -> AsyncIterator[RawPeer]:
    peer = await RawPeer.connect(address)
    try:
        yield peer
    finally:
        peer.close()


# ----------------------------------------------------------------------------- conformance


async def tcp_trio(**options: Any) -> Trio:
    _, ts = await start_cluster(["a", "b", "c"], **options)

    async def cleanup() -> None:
        await close_all(ts.values())

    return Trio(ts["a"], ts["b"], ts["c"], cleanup)


class TestTcpConformance(TransportConformance):
    async def make_trio(self) -> Trio:
        return await tcp_trio()


@pytest.fixture(scope="module")
def tls_contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl CLI) and both contexts."""
    openssl = shutil.which("openssl")
    # A missing tool fails the tests (CI installs it): a skip would hide them.
    assert openssl is not None, "TLS tests need the openssl command (apt-get install openssl)"
    directory: Path = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=paxostob-test",
            "-addext",
            f"subjectAltName=IP:{HOST}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    return server, client


class TestTlsConformance(TransportConformance):
    @pytest.fixture(autouse=True)
    def _tls(self, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
        self.tls = tls_contexts

    async def make_trio(self) -> Trio:
        server, client = self.tls
        return await tcp_trio(ssl_server=server, ssl_client=client)


async def test_tls_refuses_a_plain_dialer(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server, client = tls_contexts
    members = free_members("abc")
    _, tls = await start_cluster(
        "abc", running="bc", members=members, ssl_server=server, ssl_client=client
    )
    _, plain = await start_cluster("abc", running="a", members=members)
    try:
        await until(plain["a"], lambda s: s.auth_failures + s.connect_failures >= 2)
        await until_connected(tls["b"], ["c"])
        await exchange(tls["b"], tls["c"])
    finally:
        await close_all([*tls.values(), *plain.values()])


def test_conformance_scenario_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        assert "uvloop" in type(asyncio.get_running_loop()).__module__
        _, ts = await start_cluster("abc")
        try:
            await exchange(ts["a"], ts["b"])
            await exchange(ts["c"], ts["a"])
            ts["b"].send(envelope("b", "b", 7))
            assert await receive_n(ts["b"], 1) == [envelope("b", "b", 7)]
        finally:
            await close_all(ts.values())

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


def test_install_uvloop_sets_the_policy_only_when_asked() -> None:
    uvloop = pytest.importorskip("uvloop")
    before = asyncio.get_event_loop_policy()
    assert not isinstance(before, uvloop.EventLoopPolicy), (
        "importing the transport installs nothing"
    )
    try:
        assert install_uvloop() is True
        assert isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
    finally:
        asyncio.set_event_loop_policy(before)


# ---------------------------------------------------------------------------- handshake


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"secret": b"wrong-secret-0123456789abcdef"}, "bad proof"),
        ({"cluster_id": "other-cluster"}, "wrong cluster"),
    ],
)
async def test_a_peer_without_the_credentials_is_refused(
    options: dict[str, object], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    members = free_members("abc")
    _, good = await start_cluster("abc", running="bc", members=members)
    intruder = TcpTransport(
        "a",
        members,
        **{"cluster_id": CLUSTER, "secret": SECRET, **options},  # type: ignore[arg-type]
    )
    await intruder.start()
    try:
        b, c = good["b"], good["c"]
        intruder.send(envelope("a", "b", 1))
        # "a" dials both; both refuse it, and it sees its handshakes fail too.
        await until(b, lambda s: s.auth_failures >= 1)
        await until(c, lambda s: s.auth_failures >= 1)
        await until(intruder, lambda s: s.auth_failures >= 2)
        assert intruder.connected_peers() == frozenset()
        assert any(why in r.getMessage() for r in caplog.records if r.name == "paxostob.transport")
        await until_connected(b, ["c"])
        await exchange(b, c)
        assert b.stats.received == 1, "nothing of the intruder's got through"
    finally:
        await close_all([intruder, *good.values()])


@pytest.mark.parametrize(
    ("node_id", "listener", "why"),
    [
        ("mallory", "b", "unknown node"),
        ("c", "b", "the lower node id dials"),
        ("a", "c", "dialed 'c'"),
    ],
)
async def test_a_bad_hello_is_refused(
    node_id: str, listener: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    members, ts = await start_cluster("abc", running="bc")
    b, c = ts["b"], ts["c"]
    try:
        async with raw_peer(members["b"]) as raw:
            with pytest.raises(AssertionError, match="closed the connection"):
                await raw.handshake(node_id, listener)
        await until(b, lambda s: s.auth_failures == 1)
        assert any(why in r.getMessage() for r in caplog.records)
        await exchange(b, c)
    finally:
        await close_all(ts.values())


async def test_a_silent_peer_times_out() -> None:
    members, ts = await start_cluster("abc", running="bc", handshake_timeout_s=0.2)
    try:
        # b and c first finish their own handshake (on a loaded machine it may take
        # longer than 0.2 s and be retried): then the silent peer's is the one counted.
        await exchange(ts["b"], ts["c"])
        before = ts["b"].stats.auth_failures
        async with raw_peer(members["b"]) as raw:
            await raw.closed_by_listener()
        await until(ts["b"], lambda s: s.auth_failures == before + 1)
        await exchange(ts["b"], ts["c"], 2)
    finally:
        await close_all(ts.values())


@pytest.mark.parametrize(
    "data",
    [
        encode_frame(b"x" * HANDSHAKE_FRAME_BYTES_MAX),  # a frame too big for a handshake
        b"GET / HTTP/1.1\r\nHost: paxostob\r\n\r\n",
        encode_frame(b"\x93\x01\x02\x03"),  # msgpack, not a hello
        encode_frame(b"hello", version=2),
    ],
)
async def test_garbage_instead_of_a_handshake_is_refused(data: bytes) -> None:
    members, ts = await start_cluster("abc", running="bc")
    try:
        async with raw_peer(members["b"]) as raw:
            raw.send_raw(data)
            await raw.closed_by_listener()
        await until(ts["b"], lambda s: s.auth_failures == 1)
        await exchange(ts["b"], ts["c"])
    finally:
        await close_all(ts.values())


async def test_a_raw_peer_with_the_secret_is_accepted() -> None:
    """The helper speaks the protocol: what the hostile tests change is all that is wrong."""
    members, ts = await start_cluster("abc", running="bc")
    b = ts["b"]
    try:
        async with raw_peer(members["b"]) as raw:
            await raw.handshake("a", "b")
            raw.send_payload(encode_message(envelope("a", "b", 5).message))
            assert await receive_n(b, 1) == [envelope("a", "b", 5)]
            await until_connected(b, ["a", "c"])
    finally:
        await close_all(ts.values())


async def test_frames_sent_with_the_last_handshake_message_arrive_in_order() -> None:
    """Bytes the handshake's stream read past its last message are frames, not lost.

    The dialer writes its proof and 600 KiB of messages in one write, so the
    listener's stream buffers some of them (more than one read takes) before
    the protocol switch: they must reach ``receive`` first, in order.
    """
    members, ts = await start_cluster("abc", running="bc")
    b = ts["b"]

    def message(i: int) -> Accept:
        value = (Proposal(ProposalId("a", i), b"x" * 1000),)
        return Accept("i", "a", Ballot(1, "a"), i + 1, value, 0)

    count = 600
    try:
        async with raw_peer(members["b"]) as raw:
            nonce = new_nonce()
            raw.send_payload(encode_hello(Hello(CLUSTER, "a", "b", nonce)))
            theirs = decode_hello(await raw.read_payload())
            args = (CLUSTER, "a", "b", nonce, theirs.nonce)
            early = b"".join(encode_frame(encode_message(message(i))) for i in range(count))
            raw.send_raw(encode_frame(encode_proof(proof(SECRET, "dialer", *args))) + early)
            verify_proof(proof(SECRET, "listener", *args), decode_proof(await raw.read_payload()))
            raw.send_payload(encode_message(message(count)))
            got = await receive_n(b, count + 1)
            assert [e.message for e in got] == [message(i) for i in range(count + 1)]
    finally:
        await close_all(ts.values())


async def test_the_session_reader_takes_what_the_stream_buffered_first() -> None:
    """Bytes in the stream's buffer at the protocol switch come before later arrivals.

    In a node they arrive there only if the socket delivers during an await
    between the handshake's last read and the switch; here they are put in
    the buffer by hand, half a frame included, and the rest of that frame and
    a whole one more arrive on the socket after the switch.
    """
    delivered: list[Message] = []
    all_four = asyncio.Event()

    class Owner:  # the part of TcpTransport the reader calls
        _closed = False
        _paused: set[object] = set()  # noqa: RUF012

        def _has_room(self) -> bool:
            return True

        def _deliver(self, peer: str, message: Message) -> None:
            delivered.append(message)
            if len(delivered) == 4:
                all_four.set()

    frames = [encode_frame(encode_message(envelope("a", "b", i).message)) for i in range(4)]
    listener_side: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    listener_side = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(
        lambda r, w: listener_side.set_result((r, w)), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    _, dialer = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = await listener_side
    try:
        stream = _FrameStream(reader, writer, 1 << 20)
        stream.decoder.feed(frames[0])  # read by the handshake, not yet decoded
        buffered = frames[1] + frames[2][:5]
        reader.feed_data(buffered)  # read from the socket, not yet by the handshake
        session = _SessionReader(cast(TcpTransport, Owner()), "a", stream)
        await session.attach()
        dialer.write(frames[2][5:] + frames[3])
        async with asyncio.timeout(WAIT_S):
            await all_four.wait()
        assert delivered == [envelope("a", "b", i).message for i in range(4)]
        session.detach()
    finally:
        dialer.transport.abort()
        writer.transport.abort()
        server.close()
        await server.wait_closed()


# ------------------------------------------------------------------------- bad frames


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00\x00\x00",  # length 0
        b"\x00\x00\x00\x02\x09x",  # version 9
        b"\x7f\xff\xff\xff",  # 2 GiB announced
        encode_frame(b"\xc1"),  # not msgpack
        encode_frame(msgpack.packb([6, "i", "a", [1, "a"], -1])),  # Heartbeat with commit -1
        encode_frame(encode_message(envelope("a", "b", 1).message) + b"\x00"),  # trailing byte
        encode_frame(encode_message(accept_of("a", 5000))),  # above b's frame_bytes_max
    ],
)
async def test_a_bad_frame_closes_only_that_connection(data: bytes) -> None:
    members, ts = await start_cluster("abc", running="bc", frame_bytes_max=4096)
    b, c = ts["b"], ts["c"]
    try:
        async with raw_peer(members["b"]) as raw:
            await raw.handshake("a", "b")
            raw.send_payload(encode_message(envelope("a", "b", 1).message))
            raw.send_raw(data)
            await raw.closed_by_listener()
        await until(b, lambda s: s.bad_frames == 1)
        assert commits(await receive_n(b, 1)) == [1], "frames before the bad one are kept"
        await exchange(b, c, 2)
        # The node is fine: the same peer may connect again.
        async with raw_peer(members["b"]) as raw:
            await raw.handshake("a", "b")
            raw.send_payload(encode_message(envelope("a", "b", 3).message))
            assert commits(await receive_n(b, 1)) == [3]
    finally:
        await close_all(ts.values())


async def test_a_message_claiming_another_sender_is_dropped() -> None:
    members, ts = await start_cluster("abc", running="bc")
    b = ts["b"]
    try:
        async with raw_peer(members["b"]) as raw:
            await raw.handshake("a", "b")
            raw.send_payload(encode_message(envelope("c", "b", 1).message))  # forged: from "c"
            raw.send_payload(encode_message(envelope("a", "b", 2).message))
            assert commits(await receive_n(b, 1)) == [2]
            assert b.stats.bad_senders == 1
            assert "a" in b.connected_peers(), "the connection stays up"
    finally:
        await close_all(ts.values())


async def test_frames_above_the_limit_are_refused_at_both_ends() -> None:
    members = free_members("ab")
    _, small = await start_cluster("ab", running="b", members=members, frame_bytes_max=4096)
    _, large = await start_cluster("ab", running="a", members=members)
    a, b = large["a"], small["b"]
    try:
        # The receiver refuses a frame above its limit: the connection closes, a reconnects.
        a.send(Envelope("b", accept_of("a", 8000)))
        await until(b, lambda s: s.bad_frames == 1)
        await until(a, lambda s: s.reconnects == 1)  # else the next send may go to the dead socket
        a.send(envelope("a", "b", 1))
        assert commits(await receive_n(b, 1)) == [1]
        # The sender drops a message above its own limit instead of sending it.
        b.send(Envelope("a", accept_of("b", 8000)))
        b.send(envelope("b", "a", 2))
        assert commits(await receive_n(a, 1)) == [2]
        assert b.stats.dropped_too_large == 1
    finally:
        await close_all([a, b])


# --------------------------------------------------------------------- outbox, reconnect


async def test_outbox_drops_the_oldest_while_the_peer_is_down() -> None:
    members, ts = await start_cluster("ab", running="a", outbox_max=5)
    a = ts["a"]
    try:
        for n in range(12):
            a.send(envelope("a", "b", n))
        assert a.stats.dropped_outbox == 7
        assert a.outbox_len("b") == 5
        _, later = await start_cluster("ab", running="b", members=members)
        b = later["b"]
        ts.update(later)
        assert commits(await receive_n(b, 5)) == [7, 8, 9, 10, 11], "the freshest five, in order"
        a.send(envelope("a", "b", 100))
        assert commits(await receive_n(b, 1)) == [100], "and nothing else was queued"
        assert a.stats.dropped_outbox == 7
    finally:
        await close_all(ts.values())


def chunk_envelopes(n: int) -> list[Envelope]:
    """Snapshot chunks of a MiB (distinct bytes each) between small messages, a to b."""
    out = []
    for i in range(n):
        data = bytes([i]) * 1000 + bytes(range(256)) * 4092
        out.append(envelope("a", "b", i))
        out.append(Envelope("b", SnapshotChunk("conformance", "a", 9, b"m", 8 << 20, i, data)))
    return out


async def chunks_arrive_intact_through_the_outbox_and_the_direct_way() -> None:
    members, ts = await start_cluster("ab", running="a")
    a = ts["a"]
    try:
        queued = chunk_envelopes(3)
        for env in queued:
            a.send(env)  # b is down: into the outbox
        assert a.outbox_len("b") == len(queued)
        _, later = await start_cluster("ab", running="b", members=members)
        b = later["b"]
        ts.update(later)
        assert await receive_n(b, len(queued)) == queued
        direct = chunk_envelopes(4)
        for env in direct:
            a.send(env)  # connected, empty outbox: the direct way
        assert await receive_n(b, len(direct)) == direct
        assert b.stats.bad_frames == 0
    finally:
        await close_all(ts.values())


async def test_snapshot_chunks_arrive_intact_through_the_outbox_and_the_direct_way() -> None:
    await chunks_arrive_intact_through_the_outbox_and_the_direct_way()


def test_snapshot_chunks_arrive_intact_on_uvloop() -> None:
    """uvloop writes the chunk's buffers with one writev (asyncio joins them first)."""
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(chunks_arrive_intact_through_the_outbox_and_the_direct_way())
    finally:
        loop.close()


async def test_a_full_inbox_pushes_back_on_peers_and_drops_messages_to_self() -> None:
    _, ts = await start_cluster("ab", inbox_max=3)
    a, b = ts["a"], ts["b"]
    try:
        for n in range(10):
            a.send(envelope("a", "b", n))
        await until(b, lambda s: s.received == 3)  # full: b stops reading from a
        b.send(envelope("b", "b", 99))  # send never waits: to self, it drops
        assert (b.stats.dropped_inbox, b.stats.looped_back) == (1, 0)
        assert commits(await receive_n(b, 10)) == list(range(10)), "peers lose nothing"
    finally:
        await close_all(ts.values())


@pytest.mark.parametrize("restarted", ["a", "b"])  # "a" dials "b"
async def test_messages_flow_again_after_a_peer_restarts(restarted: str) -> None:
    members, ts = await start_cluster("abc")
    try:
        await exchange(ts["a"], ts["b"], 1)
        await ts[restarted].close()
        # Until the others notice, what they send goes to the dead socket (lost, as it may be).
        for other in {"a", "b", "c"} - {restarted}:
            await until_disconnected(ts[other], restarted)
        other = "b" if restarted == "a" else "a"
        _, fresh = await start_cluster("abc", running=restarted, members=members)
        ts[restarted] = fresh[restarted]
        await exchange(ts["a"], ts["b"], 2)
        await exchange(ts[restarted], ts["c"], 3)
        assert ts[other].stats.reconnects >= 1
        assert ts[other].stats.connects >= 2
    finally:
        await close_all(ts.values())


async def test_close_closes_the_connections() -> None:
    _, ts = await start_cluster("abc")
    a, b, c = ts["a"], ts["b"], ts["c"]
    try:
        await until_connected(b, ["a", "c"])
        await b.close()
        await until_connected(a, ["c"])
        await until_connected(c, ["a"])
        assert b.connected_peers() == frozenset()
    finally:
        await close_all(ts.values())


# ------------------------------------------------------------------------ configuration


async def test_a_taken_port_is_a_configuration_error() -> None:
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        members = {"a": holder.getsockname(), "b": (HOST, 1)}
        t = TcpTransport("a", members, cluster_id=CLUSTER, secret=SECRET)
        with pytest.raises(ConfigurationError, match=r"cannot listen on 127\.0\.0\.1"):
            await t.start()
        await t.close()


async def test_send_before_start_is_queued_and_start_after_close_refused() -> None:
    members = free_members("ab")
    a = TcpTransport("a", members, cluster_id=CLUSTER, secret=SECRET)
    a.send(envelope("a", "b", 1))
    a.send(envelope("a", "x", 1))
    assert (a.outbox_len("b"), a.stats.dropped_unknown_dst) == (1, 1)
    _, ts = await start_cluster("ab", running="b", members=members)
    await a.start()
    try:
        assert commits(await receive_n(ts["b"], 1)) == [1]
    finally:
        await close_all([a, *ts.values()])
    with pytest.raises(NotRunningError):
        await a.start()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"node_id": "z"},
        {"node_id": ""},
        {"members": {"a": ("127.0.0.1", 0)}},
        {"members": {"a": ("127.0.0.1", 70000)}},
        {"members": {"a": ("", 9000)}},
        {"members": {"a": "127.0.0.1:9000"}},
        {"members": {"a": ("127.0.0.1", 9000), "": ("127.0.0.1", 9001)}},
        {"cluster_id": ""},
        {"secret": b"short"},
        {"secret": "text-secret-0123456789"},
        {"frame_bytes_max": 100},
        {"outbox_max": 0},
        {"inbox_max": 0},
        {"connect_backoff_s": (0.0, 1.0)},
        {"connect_backoff_s": (2.0, 1.0)},
        {"handshake_timeout_s": 0},
        {"connect_timeout_s": -1},
        {"ssl_server": ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)},
    ],
)
def test_rejects_bad_configuration(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "node_id": "a",
        "members": {"a": ("127.0.0.1", 9000)},
        "cluster_id": CLUSTER,
        "secret": SECRET,
        **kwargs,
    }
    with pytest.raises(ConfigurationError):
        TcpTransport(**args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- end to end


async def test_three_tob_nodes_over_tcp_deliver_one_sequence() -> None:
    per_node = 20
    members, ts = await start_cluster(["n1", "n2", "n3"])
    nodes = [
        TotalOrderBroadcast(ts[m], list(members), tick_interval_s=0.005, in_memory=True) for m in ts
    ]
    total = per_node * len(nodes)

    async def collect(node: TotalOrderBroadcast) -> list[Delivery]:
        return [await node.deliver() for _ in range(total)]

    try:
        for node in nodes:
            await node.start()
        readers = [asyncio.ensure_future(collect(node)) for node in nodes]
        async with asyncio.timeout(30):
            await asyncio.gather(
                *(
                    node.broadcast(f"{node.address}#{i}".encode())
                    for i in range(per_node)
                    for node in nodes
                )
            )
            sequences = await asyncio.gather(*readers)
    finally:
        for node in nodes:
            await node.close()
        await close_all(ts.values())
    assert sequences[0] == sequences[1] == sequences[2]
    assert sorted(d.payload for d in sequences[0]) == sorted(
        f"{m}#{i}".encode() for m in members for i in range(per_node)
    )
    assert [d.slot for d in sequences[0]] == sorted({d.slot for d in sequences[0]})
    assert all(t.stats.bad_frames == t.stats.auth_failures == 0 for t in ts.values())


# ------------------------------------------------------- direct writes and the push path


async def test_direct_writes_never_overtake_queued_frames() -> None:
    _, ts = await start_cluster("ab")
    a, b = ts["a"], ts["b"]
    try:
        await until_connected(a, ["b"])
        a.send(envelope("a", "b", 0))
        assert (a.outbox_len("b"), a.stats.sent) == (0, 1), "connected and idle: written at once"
        # b reads nothing while this test runs without awaiting (one event loop), so
        # the socket buffer (with this pass's direct frames) reaches its high-water
        # mark and later frames must queue in the outbox.
        sends = 1
        big = Envelope("b", accept_of("a", 64 << 10))
        for _ in range(500):  # 32 MiB: far above any loopback socket's buffers
            if a.outbox_len("b"):
                break
            a.send(big)
            sends += 1
        assert a.outbox_len("b") > 0, "the socket never pushed back"
        for n in range(1, 51):  # queued behind the big frames: none may be written first
            a.send(envelope("a", "b", n))
            sends += 1
        got = await receive_n(b, sends)
        heartbeats = [e for e in got if isinstance(e.message, Heartbeat)]
        assert commits(heartbeats) == list(range(51)), "per-peer order held"
        assert got[-50:] == heartbeats[-50:], "nothing queued was overtaken"
        assert (a.stats.sent, a.stats.dropped_outbox) == (sends, 0)
        a.send(envelope("a", "b", 51))  # drained: the direct path again
        assert a.outbox_len("b") == 0
        assert commits(await receive_n(b, 1)) == [51]
    finally:
        await close_all(ts.values())


async def test_a_receiver_gets_every_envelope_in_order_then_receive_again() -> None:
    _, ts = await start_cluster("ab")
    a, b = ts["a"], ts["b"]
    try:
        for n in range(5):
            a.send(envelope("a", "b", n))
        await until(b, lambda s: s.received == 5)  # waiting in the inbox
        got: list[Envelope] = []
        fence: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def receiver(e: Envelope) -> None:
            got.append(e)
            if commits([e]) == [1000] and not fence.done():
                fence.set_result(None)

        b.set_receiver(receiver)
        assert commits(got) == list(range(5)), "the inbox is handed over first, in order"
        for n in range(5, 200):
            a.send(envelope("a", "b", n))
        await until(b, lambda s: s.received == 200)
        assert commits(got) == list(range(200))
        b.send(envelope("b", "b", 1000))  # to self: from the loop, never inside send
        assert len(got) == 200
        async with asyncio.timeout(WAIT_S):
            await fence
        assert commits(got[200:]) == [1000] and b.stats.looped_back == 1
        b.set_receiver(None)
        a.send(envelope("a", "b", 300))
        assert commits(await receive_n(b, 1)) == [300], "receive() works again"
        assert len(got) == 201
    finally:
        await close_all(ts.values())


async def test_a_receiver_set_while_a_reader_waits_for_room_gets_the_rest() -> None:
    _, ts = await start_cluster("ab", inbox_max=3)
    a, b = ts["a"], ts["b"]
    try:
        for n in range(10):
            a.send(envelope("a", "b", n))
        await until(b, lambda s: s.received == 3)  # full: b's reader waits for room
        got: list[Envelope] = []
        b.set_receiver(got.append)
        await until(b, lambda s: s.received == 10)
        assert commits(got) == list(range(10))
    finally:
        await close_all(ts.values())


async def test_no_receiver_call_after_close() -> None:
    _, ts = await start_cluster("ab")
    a, b = ts["a"], ts["b"]
    try:
        got: list[Envelope] = []
        b.set_receiver(got.append)
        b.send(envelope("b", "b", 1))  # its delivery is pending on the loop
        await b.close()
        assert got == []
        b.set_receiver(got.append)  # harmless on a closed transport
        a.send(envelope("a", "b", 2))
        await until_disconnected(a, "b")
        assert got == []
    finally:
        await close_all(ts.values())


def test_tls_direct_writes_and_the_push_path_on_uvloop(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """uvloop's transports (plain and TLS) take the protocol switch after the handshake."""
    uvloop = pytest.importorskip("uvloop")
    server, client = tls_contexts

    async def scenario(tls: bool) -> None:
        if tls:
            _, ts = await start_cluster("ab", ssl_server=server, ssl_client=client)
        else:
            _, ts = await start_cluster("ab")
        a, b = ts["a"], ts["b"]
        try:
            await exchange(a, b, 1)
            got: list[Envelope] = []
            b.set_receiver(got.append)
            sends = 0
            big = Envelope("b", accept_of("a", 64 << 10))
            for _ in range(500):
                if a.outbox_len("b"):
                    break
                a.send(big)
                sends += 1
            for n in range(10):
                a.send(envelope("a", "b", n))
            await until(b, lambda s: s.received == 1 + sends + 10)
            assert commits(got[sends:]) == list(range(10))
            b.set_receiver(None)
            await exchange(a, b, 2)
        finally:
            await close_all(ts.values())

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(scenario(tls=False))
        loop.run_until_complete(scenario(tls=True))
    finally:
        loop.close()


async def test_a_node_over_tcp_without_storage_must_say_so() -> None:
    # Over a network a node restarts for real: without its promises it could
    # vote against them, so running in memory there is an explicit choice.
    members, ts = await start_cluster(["n1", "n2"])
    try:
        for make in (TotalOrderBroadcast, Consensus):
            with pytest.raises(ConfigurationError, match="in_memory=True"):
                make(ts["n1"], list(members))
            make(ts["n1"], list(members), in_memory=True)
    finally:
        for t in ts.values():
            await t.close()


async def test_consensus_over_tcp_decides_one_value_everywhere() -> None:
    # Every message of the single-decree protocol crosses the wire codec here
    # (a Promise with nothing decided carries the watermark -1).
    members, ts = await start_cluster(["n1", "n2", "n3"])
    nodes = [Consensus(ts[m], list(members), tick_interval_s=0.005, in_memory=True) for m in ts]
    try:
        for node in nodes:
            await node.start()
        decided = await asyncio.gather(
            *(node.propose(f"v-{node.address}".encode(), timeout=20) for node in nodes)
        )
        assert len(set(decided)) == 1 and decided[0] in {b"v-n1", b"v-n2", b"v-n3"}
    finally:
        for node in nodes:
            await node.close()
        for t in ts.values():
            await t.close()


async def test_flush_writes_this_pass_frames_before_the_pass_ends() -> None:
    # A save on the loop blocks it for an fsync: the Accepts sent just before
    # must already be on the wire, not waiting for the end of the pass.
    _, ts = await start_cluster("ab")
    a, b = ts["a"], ts["b"]
    try:
        await until_connected(a, ["b"])
        await until_connected(b, ["a"])
        at_b = cast(socket.socket, b.peer_socket("a"))
        assert at_b is not None
        a.send(envelope("a", "b", 1))
        a.flush()
        # The loop does not run from here to the check: only flush can have written.
        readable, _, _ = select.select([at_b], [], [], FLUSH_ARRIVAL_S)
        assert readable, "the frame was not written by flush()"
        assert commits(await receive_n(b, 1)) == [1]
        a.flush()  # nothing pending: a no-op
        a.send(envelope("a", "b", 2))  # and the end-of-pass write still works
        assert commits(await receive_n(b, 1)) == [2]
    finally:
        await close_all(ts.values())
