"""The dialer checks the listener: a stranger listening on a peer's address gets nothing.

A fake listener on ``b``'s address speaks the listener's side of the
handshake correctly except for its proof, which it cannot make without the
secret: it sends one made with another secret, the dialer's own proof
reflected back, or a genuine proof recorded from another connection (other
nonces). The real dialer ``a`` has a message queued for ``b``: it must
refuse the listener and close without sending it a single byte more. The
control case, a fake that does know the secret, gets the message: the fake
speaks the protocol, and only its proof is wrong in the other cases.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from paxostob.codec import encode_message
from paxostob.transport.auth import (
    HANDSHAKE_FRAME_BYTES_MAX,
    Hello,
    decode_hello,
    decode_proof,
    encode_hello,
    encode_proof,
    new_nonce,
    proof,
)
from paxostob.transport.frames import FrameDecoder, encode_frame
from paxostob.transport.tcp import TcpTransport

from .conformance import envelope
from .test_tcp import CLUSTER, SECRET, WAIT_S, free_members

#: Makes the listener's proof from (dialer nonce, listener nonce, the dialer's proof).
Forge = Callable[[bytes, bytes, bytes], bytes]


def genuine(nonce_d: bytes, nonce_l: bytes, _: bytes) -> bytes:
    return proof(SECRET, "listener", CLUSTER, "a", "b", nonce_d, nonce_l)


def other_secret(nonce_d: bytes, nonce_l: bytes, _: bytes) -> bytes:
    return proof(
        b"not-the-secret-0123456789abcdef", "listener", CLUSTER, "a", "b", nonce_d, nonce_l
    )


def reflected(_d: bytes, _l: bytes, dialer_proof: bytes) -> bytes:
    return dialer_proof


#: A proof b really made, on an earlier connection: other nonces.
RECORDED = proof(SECRET, "listener", CLUSTER, "a", "b", new_nonce(), new_nonce())


def replayed(_d: bytes, _l: bytes, _p: bytes) -> bytes:
    return RECORDED


@dataclass
class FakeListener:
    """Serves the first connection: the listener's handshake with ``forge``'s proof."""

    forge: Forge
    #: Everything the dialer sent after its proof, on the first connection.
    after_proof: bytearray = field(default_factory=bytearray)
    #: Set when the first connection ended (EOF) or sent a whole frame after the proof.
    done: asyncio.Event = field(default_factory=asyncio.Event)
    served: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.served += 1
        first = self.served == 1
        decoder = FrameDecoder(HANDSHAKE_FRAME_BYTES_MAX)

        async def frame() -> bytes:
            while (payload := decoder.next_payload()) is None:
                data = await reader.read(4096)
                assert data, "the dialer closed during the handshake"
                decoder.feed(data)
            return payload

        try:
            theirs = decode_hello(await frame())
            nonce = new_nonce()
            writer.write(encode_frame(encode_hello(Hello(CLUSTER, "b", "a", nonce))))
            dialer_proof = decode_proof(await frame())
            writer.write(encode_frame(encode_proof(self.forge(theirs.nonce, nonce, dialer_proof))))
            if not first:
                return
            decoder.frame_bytes_max = 1 << 20
            while decoder.next_payload() is None:
                data = b""
                with contextlib.suppress(ConnectionError):
                    data = await reader.read(4096)
                if not data:
                    break
                self.after_proof += data
                decoder.feed(data)
        except (AssertionError, ConnectionError):
            pass
        finally:
            writer.transport.abort()
            if first:
                self.done.set()


@contextlib.asynccontextmanager
async def dialer_and_fake(forge: Forge) -> AsyncIterator[tuple[TcpTransport, FakeListener]]:
    members = free_members("ab")
    fake = FakeListener(forge)
    server = await asyncio.start_server(fake.handle, *members["b"])
    a = TcpTransport("a", members, cluster_id=CLUSTER, secret=SECRET)
    a.send(envelope("a", "b", 7))  # queued: the dialer sends it once it trusts b
    await a.start()
    try:
        yield a, fake
    finally:
        await a.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("forge", [other_secret, reflected, replayed])
async def test_the_dialer_refuses_a_listener_without_the_secret_and_sends_it_nothing(
    forge: Forge,
) -> None:
    async with dialer_and_fake(forge) as (a, fake):
        async with asyncio.timeout(WAIT_S):
            await fake.done.wait()
        assert bytes(fake.after_proof) == b"", "the dialer sent a message to an impostor"
        async with asyncio.timeout(WAIT_S):
            await a.wait_until(lambda s: s.auth_failures >= 1)
        assert a.connected_peers() == frozenset()
        assert a.stats.connects == 0 and a.stats.sent == 0


async def test_control_a_listener_with_the_secret_gets_the_queued_message() -> None:
    async with dialer_and_fake(genuine) as (a, fake):
        async with asyncio.timeout(WAIT_S):
            await fake.done.wait()
        message = encode_message(envelope("a", "b", 7).message)
        assert bytes(fake.after_proof) == encode_frame(message)
        assert a.stats.auth_failures == 0
