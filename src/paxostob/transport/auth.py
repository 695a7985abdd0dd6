"""The TCP handshake: mutual challenge-response with the cluster secret (sans-IO).

Theory of operation: the node that dials (the lower node id, see ``tcp``)
and the node that listens each prove that they know the cluster's shared
secret without sending it, over frames of at most
``HANDSHAKE_FRAME_BYTES_MAX`` bytes:

1. dialer -> listener: ``Hello(cluster_id, dialer_id, listener_id, nonce_d)``;
2. the listener checks the cluster id, that the dialer is a member allowed to
   dial it, and that it is the node meant; then
   listener -> dialer: ``Hello(cluster_id, listener_id, dialer_id, nonce_l)``;
3. the dialer checks the same; dialer -> listener:
   ``Proof(HMAC(secret, "paxostob-v1" | "dialer" | cluster_id | dialer_id |
   listener_id | nonce_d | nonce_l))``;
4. the listener verifies it, then listener -> dialer: the same MAC with role
   ``"listener"``, which the dialer verifies.

Why it holds: both nonces are fresh (``secrets``), so a recorded proof is
useless on another connection; the role in the MAC stops a proof from being
reflected back to its author; every field is length-prefixed in the MAC input,
so no two different field lists give the same bytes; proofs are compared
with ``hmac.compare_digest``. The listener answers an unknown node or a wrong
cluster before any proof is exchanged, and reveals only its own cluster id.
The handshake authenticates; it does not encrypt (use the TLS contexts for
that).

Handshake payloads are msgpack arrays (``[1, cluster, sender, receiver,
nonce]`` and ``[2, mac]``), decoded as strictly as ``codec`` decodes messages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from ..errors import DecodeError, PaxosError

try:
    import msgpack  # type: ignore[import-untyped]
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the TCP transport needs msgpack: install the 'net' extra (pip install 'paxostob[net]')"
    ) from e

__all__ = [
    "HANDSHAKE_FRAME_BYTES_MAX",
    "NONCE_BYTES",
    "PROTOCOL_LABEL",
    "SECRET_BYTES_MIN",
    "HandshakeError",
    "Hello",
    "check_dialer_hello",
    "check_listener_hello",
    "decode_hello",
    "decode_proof",
    "encode_hello",
    "encode_proof",
    "new_nonce",
    "proof",
    "verify_proof",
]

PROTOCOL_LABEL = b"paxostob-v1"
#: 256 bits: a nonce never repeats by chance.
NONCE_BYTES = 32
#: A shorter shared secret is guessable offline from one recorded handshake.
SECRET_BYTES_MIN = 16
#: A Hello holds two ids, a cluster id and a nonce; ids are short. Anything
#: larger is not a handshake, and an unauthenticated peer gets no more memory.
HANDSHAKE_FRAME_BYTES_MAX = 1024

_TAG_HELLO = 1
_TAG_PROOF = 2
_MAC_BYTES = hashlib.sha256().digest_size

Role = Literal["dialer", "listener"]


class HandshakeError(PaxosError):
    """A peer failed the handshake. The transport counts it and closes the connection;
    it never reaches the user."""


@dataclass(frozen=True, slots=True)
class Hello:
    """Who is speaking (``sender``), to whom (``receiver``), in which cluster, and a nonce."""

    cluster_id: str
    sender: str
    receiver: str
    nonce: bytes


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def encode_hello(hello: Hello) -> bytes:
    packed: bytes = msgpack.packb(
        [_TAG_HELLO, hello.cluster_id, hello.sender, hello.receiver, hello.nonce],
        use_bin_type=True,
    )
    return packed


def encode_proof(mac: bytes) -> bytes:
    packed: bytes = msgpack.packb([_TAG_PROOF, mac], use_bin_type=True)
    return packed


def _unpack(payload: bytes, tag: int, arity: int, what: str) -> list[object]:
    size = len(payload)
    try:
        obj = msgpack.unpackb(
            payload,
            raw=False,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises several types
        raise DecodeError(f"malformed {what} ({type(e).__name__}: {e})") from e
    if type(obj) is not list or len(obj) != arity or obj[0] != tag or type(obj[0]) is not int:
        raise DecodeError(f"not a {what}")
    return obj


def decode_hello(payload: bytes) -> Hello:
    """The ``Hello`` in ``payload``; ``DecodeError`` if it is anything else."""
    _, cluster_id, sender, receiver, nonce = _unpack(payload, _TAG_HELLO, 5, "handshake hello")
    if not (type(cluster_id) is str and type(sender) is str and type(receiver) is str):
        raise DecodeError("handshake hello: cluster, sender and receiver must be str")
    if type(nonce) is not bytes or len(nonce) != NONCE_BYTES:
        raise DecodeError(f"handshake hello: the nonce must be {NONCE_BYTES} bytes")
    return Hello(cluster_id, sender, receiver, nonce)


def decode_proof(payload: bytes) -> bytes:
    """The MAC in a proof ``payload``; ``DecodeError`` if it is anything else."""
    _, mac = _unpack(payload, _TAG_PROOF, 2, "handshake proof")
    if type(mac) is not bytes or len(mac) != _MAC_BYTES:
        raise DecodeError(f"handshake proof: the MAC must be {_MAC_BYTES} bytes")
    return mac


def proof(
    secret: bytes,
    role: Role,
    cluster_id: str,
    dialer: str,
    listener: str,
    nonce_dialer: bytes,
    nonce_listener: bytes,
) -> bytes:
    """HMAC-SHA256 over the protocol label and the length-prefixed fields."""
    fields = (
        role.encode(),
        cluster_id.encode(),
        dialer.encode(),
        listener.encode(),
        nonce_dialer,
        nonce_listener,
    )
    message = PROTOCOL_LABEL + b"".join(struct.pack(">I", len(f)) + f for f in fields)
    return hmac.new(secret, message, hashlib.sha256).digest()


def verify_proof(expected: bytes, got: bytes) -> None:
    """Raise ``HandshakeError`` unless ``got`` equals ``expected`` (in constant time)."""
    if not hmac.compare_digest(expected, got):
        raise HandshakeError("bad proof: the peer does not know the cluster secret")


def check_dialer_hello(
    hello: Hello, *, cluster_id: str, listener: str, members: Collection[str]
) -> None:
    """The listener's checks of the dialer's ``hello``; ``HandshakeError`` on failure."""
    if hello.cluster_id != cluster_id:
        raise HandshakeError(f"wrong cluster {hello.cluster_id!r} (this is {cluster_id!r})")
    if hello.sender not in members or hello.sender == listener:
        raise HandshakeError(f"unknown node {hello.sender!r}")
    if hello.receiver != listener:
        raise HandshakeError(
            f"node {hello.sender!r} dialed {hello.receiver!r}, this is {listener!r}"
        )
    if not hello.sender < listener:
        raise HandshakeError(
            f"node {hello.sender!r} must not dial {listener!r}: the lower node id dials"
        )


def check_listener_hello(hello: Hello, *, cluster_id: str, dialer: str, listener: str) -> None:
    """The dialer's checks of the listener's ``hello``; ``HandshakeError`` on failure."""
    if hello.cluster_id != cluster_id:
        raise HandshakeError(f"wrong cluster {hello.cluster_id!r} (this is {cluster_id!r})")
    if hello.sender != listener:
        raise HandshakeError(f"dialed {listener!r} but {hello.sender!r} answered")
    if hello.receiver != dialer:
        raise HandshakeError(f"{listener!r} answered {hello.receiver!r}, this is {dialer!r}")
