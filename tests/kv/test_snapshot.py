"""Snapshots: canonical bytes of the logical state, checked by CRC-32, decoded strictly."""

from __future__ import annotations

import binascii
import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paxostob.errors import DecodeError
from paxostob.kv.machine import KvMachine
from paxostob.kv.snapshot import SNAPSHOT_MAGIC, StateEncoder, decode_state, encode_state

from .util import T0_MS, one, run

states = st.builds(
    lambda clock, values, expiring: (
        clock,
        values,
        {k: at for k, at in expiring.items() if k in values},
    ),
    st.integers(0, 2**63 - 1),
    st.dictionaries(st.binary(max_size=12), st.binary(max_size=40), max_size=12),
    st.dictionaries(st.binary(max_size=12), st.integers(-(2**63), 2**63 - 1), max_size=12),
)


@given(states)
def test_round_trip_keeps_the_live_keys(
    state: tuple[int, dict[bytes, bytes], dict[bytes, int]],
) -> None:
    clock, values, expiries = state
    decoded = decode_state(encode_state(clock, values, expiries))
    live = {k for k in values if k not in expiries or expiries[k] >= clock}
    assert decoded.clock_ms == clock
    assert decoded.values == {k: values[k] for k in live}
    assert decoded.expiries == {k: at for k, at in expiries.items() if k in live}


@given(states)
def test_encoding_is_canonical(state: tuple[int, dict[bytes, bytes], dict[bytes, int]]) -> None:
    clock, values, expiries = state
    reordered = dict(reversed(list(values.items())))
    encoded = encode_state(clock, values, expiries)
    assert encode_state(clock, reordered, expiries) == encoded
    decoded = decode_state(encoded)
    assert encode_state(decoded.clock_ms, decoded.values, decoded.expiries) == encoded


@given(states, st.integers(1, 5))
def test_the_pieces_of_a_stepped_encoding_join_to_the_snapshot(
    state: tuple[int, dict[bytes, bytes], dict[bytes, int]], keys_per_step: int
) -> None:
    clock, values, expiries = state
    encoder = StateEncoder(clock, values, expiries, keys_per_step=keys_per_step)
    parts = encoder.step_parts()
    while parts is None:
        parts = encoder.step_parts()
    assert b"".join(parts) == encode_state(clock, values, expiries)


def _sample() -> bytes:
    machine = KvMachine()
    run(machine, T0_MS, "MSET a 1 b 22 c 333", "EXPIRE b 100", ("SET", "", "empty key"))
    return machine.snapshot()


def test_every_flipped_bit_is_detected() -> None:
    data = _sample()
    for i in range(len(data) * 8):
        damaged = bytearray(data)
        damaged[i // 8] ^= 1 << (i % 8)
        with pytest.raises(DecodeError):
            decode_state(bytes(damaged))


def test_every_truncation_and_extension_is_detected() -> None:
    data = _sample()
    for size in range(len(data)):
        with pytest.raises(DecodeError):
            decode_state(data[:size])
    with pytest.raises(DecodeError):
        decode_state(data + b"\x00")


def _with_body(body: bytes, version: int = 1) -> bytes:
    return struct.pack(">4sBI", SNAPSHOT_MAGIC, version, binascii.crc32(body)) + body


@pytest.mark.parametrize(
    ("body", "version", "why"),
    [
        (struct.pack(">Q", 0) + b"\x00", 2, "version"),
        (struct.pack(">Q", 2**63) + b"\x00", 1, "clock"),
        (struct.pack(">Q", 0) + b"\x05", 1, "claims 5 keys"),
        (struct.pack(">Q", 0) + b"\x02\x01b\x01v\x00\x01a\x01v\x00", 1, "out of order"),
        (struct.pack(">Q", 0) + b"\x02\x01a\x01v\x00\x01a\x01v\x00", 1, "out of order"),
        (struct.pack(">Q", 0) + b"\x01\x01a\x01v\x02", 1, "expiry flag"),
        (struct.pack(">Q", 0) + b"\x01\x01a\x01v\x01\x00", 1, "inside the expiry"),
        (struct.pack(">Q", 0) + b"\x01\x01a\x05v\x00", 1, "ends inside"),
        (struct.pack(">Q", 0) + b"\x80\x00", 1, "shortest form"),
    ],
)
def test_well_checksummed_nonsense_is_rejected(body: bytes, version: int, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        decode_state(_with_body(body, version))


def test_wrong_magic_is_rejected() -> None:
    with pytest.raises(DecodeError, match="magic"):
        decode_state(b"XXXX" + _sample()[4:])


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_state(data)


@given(st.binary(max_size=200))
def test_arbitrary_bodies_raise_only_decode_error(body: bytes) -> None:
    try:
        state = decode_state(_with_body(body))
    except DecodeError:
        return
    assert encode_state(state.clock_ms, state.values, state.expiries) == _with_body(body)


def test_a_failed_restore_leaves_the_state_alone() -> None:
    machine = KvMachine()
    run(machine, T0_MS, "SET k v EX 100")
    before = machine.snapshot()
    with pytest.raises(DecodeError):
        machine.restore(before[:-1])
    assert machine.snapshot() == before
    assert one(machine, "TTL k") == 100


def test_restore_brings_back_values_expiries_and_clock() -> None:
    machine = KvMachine()
    run(machine, T0_MS, "SET k v PX 1000", "SET gone v PX 10", "SET forever v")
    run(machine, T0_MS + 500)
    restored = KvMachine()
    restored.restore(machine.snapshot())
    assert restored.clock_ms == T0_MS + 500
    assert restored.stored_keys == 2  # the expired key is not in the snapshot
    assert one(restored, "PTTL k", 0) == 500  # an entry from a slow clock: time stays put
    assert one(restored, "TTL forever", 0) == -1
    assert one(restored, "GET k", T0_MS + 1001) is None
