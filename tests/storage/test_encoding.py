"""storage.encoding: value round trips, a fuzzed decoder, and the row checksum's framing."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paxostob.core.types import Batch, Proposal, ProposalId
from paxostob.errors import ConfigurationError, DecodeError
from paxostob.storage.encoding import VALUE_VERSION, decode_batch, encode_batch, row_crc

proposals = st.builds(
    Proposal,
    st.builds(ProposalId, st.text(max_size=20), st.integers(0, 2**64 - 1)),
    st.binary(max_size=200),
)
batches = st.lists(proposals, max_size=8).map(tuple)


@given(batches)
def test_round_trip(batch: Batch) -> None:
    assert decode_batch(encode_batch(batch)) == batch


@given(st.binary(max_size=300))
def test_decoder_never_raises_anything_but_decode_error(data: bytes) -> None:
    try:
        batch = decode_batch(data)
    except DecodeError:
        return
    assert encode_batch(batch) == data  # what decodes is exactly what was encoded


@given(batches, st.data())
def test_every_truncation_is_rejected(batch: Batch, data: st.DataObject) -> None:
    raw = encode_batch(batch)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(DecodeError):
        decode_batch(raw[:cut])


def test_noop_encodes_to_the_header_alone() -> None:
    assert encode_batch(()) == struct.pack(">BI", VALUE_VERSION, 0)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "shorter than"),
        (struct.pack(">BI", 9, 0), "version 9"),
        (struct.pack(">BI", VALUE_VERSION, 2**32 - 1), "claims"),
        (encode_batch(()) + b"x", "trailing"),
        (struct.pack(">BIH", VALUE_VERSION, 1, 2) + b"\xff\xfe" + bytes(12), "UTF-8"),
    ],
)
def test_malformed_values_say_what_is_wrong(raw: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode_batch(raw)


def test_out_of_range_fields_are_refused_when_encoding() -> None:
    with pytest.raises(ConfigurationError):
        encode_batch((Proposal(ProposalId("x" * 70_000, 1), b""),))
    with pytest.raises(ConfigurationError):
        encode_batch((Proposal(ProposalId("n1", 2**64), b""),))


def test_row_crc_frames_every_column() -> None:
    base = row_crc("decided", 1, b"v")
    assert row_crc("accepted", 1, b"v") != base  # another table
    assert row_crc("decided", 2, b"v") != base  # another slot
    assert row_crc("decided", 1, b"w") != base  # another value
    assert row_crc("t", "ab", "c") != row_crc("t", "a", "bc")
    assert row_crc("t", 1) != row_crc("t", b"\x00\x00\x00\x00\x00\x00\x00\x01")
    assert row_crc("t", "1") != row_crc("t", b"1")
    assert 0 <= base < 2**32


@given(batches.filter(bool), st.data())
def test_a_mutated_value_decodes_to_something_else_or_fails_cleanly(
    batch: Batch, data: st.DataObject
) -> None:
    raw = bytearray(encode_batch(batch))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(DecodeError):
        assert decode_batch(bytes(raw)) != batch
