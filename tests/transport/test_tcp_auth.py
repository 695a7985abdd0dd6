"""transport.auth: the handshake's proofs bind every field; its messages decode strictly."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import struct

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxostob.errors import DecodeError
from paxostob.transport.auth import (
    NONCE_BYTES,
    PROTOCOL_LABEL,
    HandshakeError,
    Hello,
    check_dialer_hello,
    check_listener_hello,
    decode_hello,
    decode_proof,
    encode_hello,
    encode_proof,
    new_nonce,
    proof,
    verify_proof,
)

SECRET = b"s" * 32
N1, N2 = b"\x01" * NONCE_BYTES, b"\x02" * NONCE_BYTES
MEMBERS = ("a", "b", "c")


def test_proof_is_hmac_sha256_over_label_and_length_prefixed_fields() -> None:
    fields = [b"dialer", b"cl", b"a", b"b", N1, N2]
    message = PROTOCOL_LABEL + b"".join(struct.pack(">I", len(f)) + f for f in fields)
    expected = hmac.new(SECRET, message, hashlib.sha256).digest()
    assert proof(SECRET, "dialer", "cl", "a", "b", N1, N2) == expected


def test_proof_binds_every_field() -> None:
    base = proof(SECRET, "dialer", "cl", "a", "b", N1, N2)
    variants = [
        proof(b"t" * 32, "dialer", "cl", "a", "b", N1, N2),
        proof(SECRET, "listener", "cl", "a", "b", N1, N2),  # no reflection of a proof
        proof(SECRET, "dialer", "cl2", "a", "b", N1, N2),
        proof(SECRET, "dialer", "cl", "b", "a", N1, N2),
        proof(SECRET, "dialer", "cl", "a", "b", N2, N1),
        proof(SECRET, "dialer", "cla", "", "b", N1, N2),  # field boundaries matter
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_verify_proof() -> None:
    mac = proof(SECRET, "dialer", "cl", "a", "b", N1, N2)
    verify_proof(mac, mac)
    with pytest.raises(HandshakeError, match="bad proof"):
        verify_proof(mac, bytes(len(mac)))


def test_nonces_are_fresh() -> None:
    assert len({new_nonce() for _ in range(100)}) == 100
    assert len(new_nonce()) == NONCE_BYTES


def test_messages_round_trip() -> None:
    hello = Hello("cl", "a", "b", N1)
    assert decode_hello(encode_hello(hello)) == hello
    mac = proof(SECRET, "dialer", "cl", "a", "b", N1, N2)
    assert decode_proof(encode_proof(mac)) == mac


@pytest.mark.parametrize(
    "obj",
    [
        [1, "cl", "a", "b", N1[:-1]],  # short nonce
        [1, "cl", "a", "b", "x" * NONCE_BYTES],  # nonce not bin
        [1, "cl", b"a", "b", N1],
        [1, "cl", "a", "b"],
        [2, "cl", "a", "b", N1],  # a proof's tag
        [True, "cl", "a", "b", N1],
        {"cl": "a"},
        7,
    ],
)
def test_malformed_hello_is_refused(obj: object) -> None:
    with pytest.raises(DecodeError):
        decode_hello(msgpack.packb(obj, use_bin_type=True))


@pytest.mark.parametrize("obj", [[2, b"short"], [2, "x" * 32], [1, b"x" * 32], [2], 2])
def test_malformed_proof_is_refused(obj: object) -> None:
    with pytest.raises(DecodeError):
        decode_proof(msgpack.packb(obj, use_bin_type=True))


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_are_a_handshake_message_or_decode_error(data: bytes) -> None:
    for decode in (decode_hello, decode_proof):
        with contextlib.suppress(DecodeError):
            decode(data)


@pytest.mark.parametrize(
    ("hello", "match"),
    [
        (Hello("other", "a", "b", N1), "wrong cluster 'other'"),
        (Hello("cl", "mallory", "b", N1), "unknown node 'mallory'"),
        (Hello("cl", "b", "b", N1), "unknown node 'b'"),
        (Hello("cl", "a", "c", N1), "dialed 'c'"),
        (Hello("cl", "c", "b", N1), "the lower node id dials"),
    ],
)
def test_listener_refuses_a_bad_dialer(hello: Hello, match: str) -> None:
    with pytest.raises(HandshakeError, match=match):
        check_dialer_hello(hello, cluster_id="cl", listener="b", members=MEMBERS)


def test_listener_accepts_a_good_dialer() -> None:
    check_dialer_hello(Hello("cl", "a", "b", N1), cluster_id="cl", listener="b", members=MEMBERS)


@pytest.mark.parametrize(
    ("hello", "match"),
    [
        (Hello("other", "b", "a", N2), "wrong cluster"),
        (Hello("cl", "c", "a", N2), "'c' answered"),
        (Hello("cl", "b", "c", N2), "answered 'c'"),
    ],
)
def test_dialer_refuses_a_bad_listener(hello: Hello, match: str) -> None:
    with pytest.raises(HandshakeError, match=match):
        check_listener_hello(hello, cluster_id="cl", dialer="a", listener="b")
