"""transport.frames: payloads survive any cutting of the stream; bad headers are refused early."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxostob.errors import ConfigurationError, DecodeError
from paxostob.transport.frames import FRAME_VERSION, HEADER_BYTES, FrameDecoder, encode_frame


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` split at ``points`` (any positions, in any order)."""
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def decode_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[bytes]:
    out = []
    for chunk in chunks:
        decoder.feed(chunk)
        while (payload := decoder.next_payload()) is not None:
            out.append(payload)
    return out


@given(st.lists(st.binary(max_size=300), max_size=10), st.lists(st.integers(0, 10_000)))
def test_payloads_survive_any_cutting(payloads: list[bytes], points: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    decoder = FrameDecoder(frame_bytes_max=301)
    assert decode_all(decoder, cut(stream, points)) == payloads
    assert decoder.buffered_bytes == 0


@settings(max_examples=500)
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=5))
def test_arbitrary_bytes_give_payloads_or_decode_error(data: bytes, points: list[int]) -> None:
    frame_bytes_max = 64
    decoder = FrameDecoder(frame_bytes_max)
    try:
        for chunk in cut(data, points):
            decoder.feed(chunk)
            while (payload := decoder.next_payload()) is not None:
                assert len(payload) < frame_bytes_max
            # Drained, the decoder holds at most one incomplete frame.
            assert decoder.buffered_bytes < frame_bytes_max + 4
    except DecodeError:
        # The stream is broken from here on: the decoder keeps saying so.
        with pytest.raises(DecodeError):
            decoder.next_payload()
        with pytest.raises(DecodeError):
            decoder.feed(b"\x00\x00\x00\x01\x01")


def test_the_wire_format() -> None:
    assert encode_frame(b"hi") == b"\x00\x00\x00\x03" + bytes([FRAME_VERSION]) + b"hi"
    assert HEADER_BYTES == 5


def test_an_oversized_length_is_refused_before_its_body_arrives() -> None:
    decoder = FrameDecoder(frame_bytes_max=1000)
    decoder.feed(struct.pack(">I", 1001))  # the length alone, no version yet
    with pytest.raises(DecodeError, match="1001 bytes exceeds frame_bytes_max \\(1000\\)"):
        decoder.next_payload()


def test_the_limit_counts_version_byte_and_payload() -> None:
    decoder = FrameDecoder(frame_bytes_max=4)
    decoder.feed(encode_frame(b"abc"))
    assert decoder.next_payload() == b"abc"
    decoder.feed(encode_frame(b"abcd"))
    with pytest.raises(DecodeError, match="exceeds"):
        decoder.next_payload()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00\x00\x00", "frame length 0"),
        (b"\x00\x00\x00\x02\x07x", "frame version 7"),
        (encode_frame(b"x", version=0), "frame version 0"),
        (b"\xff\xff\xff\xff", "exceeds"),
    ],
)
def test_bad_headers_say_what_is_wrong(data: bytes, match: str) -> None:
    decoder = FrameDecoder(frame_bytes_max=100)
    decoder.feed(data)
    with pytest.raises(DecodeError, match=match):
        decoder.next_payload()


def test_good_frames_before_a_bad_one_are_returned() -> None:
    decoder = FrameDecoder(frame_bytes_max=100)
    decoder.feed(encode_frame(b"one") + encode_frame(b"two") + b"\x00\x00\x00\x00")
    assert decoder.next_payload() == b"one"
    assert decoder.next_payload() == b"two"
    with pytest.raises(DecodeError):
        decoder.next_payload()


def test_the_limit_can_change_between_frames() -> None:
    decoder = FrameDecoder(frame_bytes_max=8)
    decoder.feed(encode_frame(b"small") + encode_frame(b"x" * 100))
    assert decoder.next_payload() == b"small"
    decoder.frame_bytes_max = 1000
    assert decoder.next_payload() == b"x" * 100


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_rejects_a_bad_limit(bad: object) -> None:
    with pytest.raises(ConfigurationError):
        FrameDecoder(bad)  # type: ignore[arg-type]
