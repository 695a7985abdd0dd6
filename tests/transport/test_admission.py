"""transport.admission: which handshakes a node serves, and how often it logs a source."""

from __future__ import annotations

import logging

import pytest

from paxostob.transport.admission import PendingHandshakes, WarningLimiter


async def test_the_warning_limiter_keeps_keys_apart_and_bounds_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="test.limiter")
    limiter = WarningLimiter(logging.getLogger("test.limiter"), "n1", 60.0, keys_max=2)
    try:
        assert limiter.warn("10.0.0.1", "one")
        assert not limiter.warn("10.0.0.1", "two")
        assert limiter.warn("10.0.0.2", "three")  # another key: its own line
        assert limiter.warn("10.0.0.3", "four")  # past keys_max: counted together
        assert not limiter.warn("10.0.0.4", "five")
    finally:
        limiter.close()  # reports what it held back
    lines = [r.getMessage() for r in caplog.records if r.name == "test.limiter"]
    assert lines == [
        "n1: one",
        "n1: three",
        "n1: four",
        "n1: 1 more from 10.0.0.1 not logged in the last 60 s (the last: two)",
        "n1: 1 more from other addresses not logged in the last 60 s (the last: five)",
    ]


def test_pending_handshakes_bookkeeping() -> None:
    p: PendingHandshakes[str] = PendingHandshakes(total_max=3, per_address_max=2)
    assert p.admit("x", "x1") == (True, [])
    assert p.admit("x", "x2") == (True, [])
    assert p.admit("x", "x3") == (True, ["x1"])  # the oldest anonymous one of x
    assert p.claim("x2", "a") is None
    assert p.claim("x3", "b") is None
    assert p.admit("x", "x4") == (False, [])  # every one of x is claimed
    assert p.admit("y", "y1") == (True, [])
    assert p.admit("z", "z1") == (True, ["y1"])  # the cap of 3: the oldest anonymous anywhere
    assert p.claim("z1", "a") == "x2"  # a newer claim of a
    assert (len(p), p.count("x"), p.count("z")) == (2, 1, 1)
    for h in ("x3", "z1", "x3"):
        p.remove(h)
    assert (len(p), p.count("x")) == (0, 0)


def test_a_handshake_whose_hello_waits_is_claimed_instead_of_pushed_out() -> None:
    p: PendingHandshakes[str] = PendingHandshakes(total_max=10, per_address_max=3)
    p.admit("x", "old-a")
    assert p.claim("old-a", "a") is None  # sent a's Hello, then stalled
    p.admit("x", "peer-a")
    p.admit("x", "stranger")
    waiting = {"peer-a": "a"}  # what a look into each socket finds
    # peer-a is the oldest anonymous one, but its Hello waits: it is claimed,
    # which closes the older claim of a and so makes room.
    assert p.admit("x", "new", waiting.get) == (True, ["old-a"])
    assert p.admit("x", "newer", waiting.get) == (True, ["stranger"])
    p.claim("new", "b")
    p.claim("newer", "c")
    assert p.admit("x", "newest", waiting.get) == (False, [])
