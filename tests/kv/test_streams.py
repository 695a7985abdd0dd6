"""Streams in the state machine: snapshots, copy-on-write, and IDs from the log's clock."""

from __future__ import annotations

import binascii
import random
import struct

import pytest

from paxostob.errors import DecodeError
from paxostob.kv.machine import KvMachine
from paxostob.kv.snapshot import decode_state

from .util import T0_MS, one, run


def _busy_stream(machine: KvMachine, seed: int) -> None:
    """A stream of several nodes, with deletions and a trim inside a node."""
    rng = random.Random(seed)
    for i in range(350):
        one(machine, f"XADD s {i + 1}-0 f {rng.randint(0, 9)}")
    for _ in range(60):
        one(machine, f"XDEL s {rng.randint(1, 350)}-0")
    one(machine, f"XTRIM s MINID {rng.randint(2, 60)}")
    one(machine, "XADD empty 1-1 f v")
    one(machine, "XDEL empty 1-1")


@pytest.mark.parametrize("seed", range(5))
def test_a_restored_stream_trims_and_grows_as_the_original(seed: int) -> None:
    """The snapshot keeps the node boundaries, the last ID and empty streams."""
    original = KvMachine()
    _busy_stream(original, seed)
    data = original.snapshot()
    restored = KvMachine()
    restored.restore(data)
    assert restored.snapshot() == data
    rng = random.Random(seed)
    for _ in range(40):
        command = rng.choice(
            [
                f"XTRIM s MAXLEN ~ {rng.randint(0, 300)}",
                f"XTRIM s MINID ~ {rng.randint(0, 400)}",
                f"XDEL s {rng.randint(0, 400)}-0",
                "XADD s * f v",
                "XADD empty * f v",
                "XRANGE s - + COUNT 5",
                "XLEN s",
            ]
        )
        assert one(original, command) == one(restored, command), command
    assert one(restored, "XLEN empty") == one(original, "XLEN empty")
    assert restored.snapshot() == original.snapshot()


def test_an_empty_stream_stays_and_keeps_its_last_id() -> None:
    machine = KvMachine()
    assert one(machine, "XADD s 5-5 f v") == b"5-5"
    assert one(machine, "XDEL s 5-5") == 1
    assert one(machine, "TYPE s").text == "stream"  # type: ignore[union-attr]
    restored = KvMachine()
    restored.restore(machine.snapshot())
    assert one(restored, "XADD s 5-* f v") == b"5-6"


def test_a_snapshot_copy_does_not_see_later_stream_changes() -> None:
    machine = KvMachine()
    one(machine, "XADD s 1-1 f v")
    step = machine.snapshot_copy()
    expected = machine.snapshot()
    run(machine, T0_MS, "XADD s 2-2 g w", "XDEL s 1-1", "XTRIM s MAXLEN 0")
    data = None
    while data is None:
        data = step()
    assert data == expected
    assert one(machine, "XLEN s") == 0


def test_auto_ids_follow_the_entry_clock_and_never_go_back() -> None:
    machine = KvMachine()
    assert run(machine, 2000, "XADD s * a 1", "XADD s * a 2") == [b"2000-0", b"2000-1"]
    assert run(machine, 1000, "XADD s * a 3") == [b"2000-2"]  # the clock never goes back
    assert run(machine, 3000, "XADD s * a 4") == [b"3000-0"]


def _stream_snapshot(entry_ids: list[tuple[int, int]], last: tuple[int, int]) -> bytes:
    """A version-2 snapshot of one stream ``s`` of one node holding ``entry_ids``."""
    node = struct.pack(">QQQQ", *min(entry_ids), *max(entry_ids)) + bytes([len(entry_ids)] * 2)
    for entry_id in entry_ids:
        node += struct.pack(">QQ", *entry_id) + b"\x02\x01f\x01v"
    value = struct.pack(">QQ", *last) + b"\x01" + node
    body = struct.pack(">Q", 0) + b"\x01" + b"\x01s" + bytes([len(value)]) + value + b"\x0a"
    body += struct.pack(">Q", 0)
    return struct.pack(">4sBI", b"PXKV", 2, binascii.crc32(body)) + body


def test_a_stream_snapshot_decodes_and_out_of_order_ids_are_rejected() -> None:
    good = decode_state(_stream_snapshot([(1, 1), (2, 0)], (2, 0)))
    machine = KvMachine()
    machine.restore(_stream_snapshot([(1, 1), (2, 0)], (2, 0)))
    assert one(machine, "XRANGE s - +") == [[b"1-1", [b"f", b"v"]], [b"2-0", [b"f", b"v"]]]
    assert set(good.values) == {b"s"}
    with pytest.raises(DecodeError, match="out of order"):
        decode_state(_stream_snapshot([(2, 0), (1, 1)], (2, 0)))
    with pytest.raises(DecodeError, match="malformed node"):
        decode_state(_stream_snapshot([(1, 1), (2, 0)], (1, 5)))  # entries past the last ID
