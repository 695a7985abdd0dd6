"""SimApp: the simulator's application records deliveries and round-trips its state as bytes."""

from __future__ import annotations

import pytest

from paxostob.core.types import Delivery
from paxostob.errors import DecodeError
from paxostob.sim.app import SimApp, decode_state, encode_state


def test_apply_snapshot_restore() -> None:
    app = SimApp()
    app.apply(Delivery(1, "n1", b"n1#1"))
    app.apply(Delivery(2, "n2", b""))
    assert app.since_snapshot == 2
    data = app.snapshot()
    assert app.since_snapshot == 0
    app.apply(Delivery(3, "n1", b"n1#2"))
    other = SimApp()
    assert other.restore(data) == ((1, "n1", b"n1#1"), (2, "n2", b""))
    assert other.entries == [(1, "n1", b"n1#1"), (2, "n2", b"")]


def test_the_encoding_round_trips() -> None:
    entries = ((1, "ñ", b"\x00\xff" * 40), (2**40, "n5", b"x"))
    assert decode_state(encode_state(entries)) == entries
    assert decode_state(b"") == ()


@pytest.mark.parametrize("cut", [1, 9, 12, 17])
def test_a_garbled_state_is_refused(cut: int) -> None:
    data = encode_state(((1, "n1", b"payload"),))
    with pytest.raises(DecodeError):
        decode_state(data[:-cut])
    with pytest.raises(DecodeError):
        decode_state(data + data[:cut])
