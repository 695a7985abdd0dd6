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
        (struct.pack(">Q", 0) + b"\x00", 3, "version"),
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


# --- version 2: the aggregate types ---------------------------------------------------------

#: A snapshot written by the encoder before the aggregate types (version 1): a, b (with an
#: expiry) and c, at T0_MS. Nodes must go on reading it.
VERSION_1_SNAPSHOT = bytes.fromhex(
    "50584b560149ba4af00000018bcfe5680003016101310001620374776f010000018bcfe6eea001630000"
)

AGGREGATES = [
    "SET s v",
    "HSET h f1 v1 f2 v2 f0 v0",
    "RPUSH l x y z x",
    "SADD st m3 m1 m2",
    "ZADD z 2 b 1 a 1 c -inf n",
    "PEXPIRE h 100000",
    "EXPIRE z 100",
]
#: Replies that show every aggregate whole, in its order.
PROBES = [
    "HGETALL h",
    "LRANGE l 0 -1",
    "SMEMBERS st",
    "ZRANGE z 0 -1 WITHSCORES",
    "PTTL h",
    "PTTL z",
    "GET s",
]


def test_a_snapshot_of_version_1_is_still_read() -> None:
    machine = KvMachine()
    machine.restore(VERSION_1_SNAPSHOT)
    assert run(machine, T0_MS, "GET a", "GET b", "GET c", "PTTL b", "TTL a") == [
        b"1",
        b"two",
        b"",
        100_000,
        -1,
    ]
    assert machine.snapshot() == VERSION_1_SNAPSHOT  # strings only: still written as version 1


def test_a_state_with_aggregates_is_written_as_version_2_and_restored_whole() -> None:
    machine = KvMachine()
    run(machine, T0_MS, *AGGREGATES)
    run(machine, T0_MS, "SREM st m3", "SADD st m4", "HDEL h f1", "HSET h f1 again")
    data = machine.snapshot()
    assert data[4] == 2
    restored = KvMachine()
    restored.restore(data)
    assert restored.snapshot() == data
    assert run(restored, T0_MS + 10, *PROBES) == run(machine, T0_MS + 10, *PROBES)
    # The array order survives (m2, the last, moved into the hole m3 left).
    assert one(restored, "SMEMBERS st") == [b"m2", b"m1", b"m4"]
    assert one(restored, "HKEYS h") == [b"f2", b"f0", b"f1"]  # insertion order survives


def test_the_draw_count_is_in_the_snapshot() -> None:
    machine = KvMachine()
    run(machine, T0_MS, "SADD s " + " ".join(f"m{i}" for i in range(50)), "SPOP s")
    restored = KvMachine()
    restored.restore(machine.snapshot())
    assert restored.keyspace.draws == machine.keyspace.draws == 1
    # Same state, same log: the next draws are the same members.
    assert run(restored, T0_MS, "SPOP s 3", "SRANDMEMBER s 5") == run(
        machine, T0_MS, "SPOP s 3", "SRANDMEMBER s 5"
    )


def test_an_aggregate_changed_during_a_stepped_snapshot_is_encoded_as_it_was() -> None:
    machine = KvMachine()
    run(machine, T0_MS, *AGGREGATES, *(f"SET k{i} v" for i in range(20)))
    expected = machine.snapshot()
    step = machine.snapshot_copy()
    # The machine goes on while the copy is encoded: every aggregate changes in place.
    run(
        machine,
        T0_MS,
        "HSET h f9 v9",
        "RPUSH l w",
        "SADD st m9",
        "ZADD z 5 e",
        "ZINCRBY z 1 a",
        "LSET l 0 changed",
    )
    data = None
    while data is None:
        data = step()
    assert data == expected
    assert one(machine, "HLEN h") == 4  # and the machine has its own changed copies


_AGGREGATE_BODY = struct.pack(">Q", 0) + b"\x01\x01a"


@pytest.mark.parametrize(
    ("element", "why"),
    [
        (b"\x01\x00\x06", "elements"),  # an empty aggregate (Redis never keeps one)
        (b"\x05\x02\x01x\x01x\x06", "repeats"),  # a set member twice
        (b"\x03\x01\x01x\x08", "ends inside a score"),
        (
            b"\x15\x02\x01b" + struct.pack(">d", 1) + b"\x01a" + struct.pack(">d", 1) + b"\x08",
            "order",
        ),
        (b"\x0b\x01\x01a" + struct.pack(">d", float("nan")) + b"\x08", "NaN"),
        (b"\x01v\x0c", "expiry flag"),  # type 6 does not exist
        (b"\x01v\x00", "version 1 encodes"),  # strings only, no draws: must be version 1
    ],
)
def test_well_checksummed_version_2_nonsense_is_rejected(element: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        decode_state(_with_body(_AGGREGATE_BODY + element + struct.pack(">Q", 0), 2))
