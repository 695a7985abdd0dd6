"""``Compact(data, slot=...)``: a snapshot of the state at an earlier point of the log.

The runtime copies the application's state, marks that point with
``MarkSnapshotPoint``, encodes the copy while later entries are delivered, and
only then compacts. The snapshot must describe the log exactly at the point:
later deliveries must not leak into its metadata (positions, delivered ids),
or a replica restored from it would skip them as duplicates.
"""

from __future__ import annotations

import random

import pytest

from paxostob.core.events import (
    Campaign,
    Compact,
    MarkSnapshotPoint,
    Persisted,
    Propose,
    Ready,
    Restore,
)
from paxostob.core.multipaxos import MultiPaxosReplica, Role
from paxostob.core.snapshot import decode_meta
from paxostob.core.types import ZERO_BALLOT, DecidedEntry


def solo() -> MultiPaxosReplica:
    """A one-member group: it leads at once and decides through its own loopback."""
    r = MultiPaxosReplica("a", ["a"], random.Random(1), incarnation=1)
    r.step(Campaign())
    settle(r)
    assert r.role is Role.LEADER
    return r


def settle(r: MultiPaxosReplica) -> list[Ready]:
    readies = []
    while r.has_ready():
        ready = r.ready()
        r.advance(ready)
        if ready.seq:  # durable at once: the leader's own vote counts from here
            r.step(Persisted(ready.seq))
        readies.append(ready)
    return readies


def delivered(readies: list[Ready]) -> list[tuple[int, bytes]]:
    return [(d.delivery.slot, d.delivery.payload) for rd in readies for d in rd.deliveries]


def propose_each(r: MultiPaxosReplica, payloads: list[bytes]) -> list[tuple[int, bytes]]:
    out = []
    for p in payloads:  # one slot each
        r.step(Propose(p))
        out += delivered(settle(r))
    return out


def test_the_snapshot_describes_the_marked_point_not_the_present() -> None:
    r = solo()
    first = propose_each(r, [b"p1", b"p2", b"p3"])
    assert first == [(1, b"p1"), (2, b"p2"), (3, b"p3")]
    r.step(MarkSnapshotPoint())
    point = r.log.decided_through
    assert point == r.log.decided_through
    later = propose_each(r, [b"p4", b"p5"])
    assert later == [(4, b"p4"), (5, b"p5")]

    r.step(Compact(b"state-after-p3", slot=point))
    snap = r.log.snapshot
    assert snap is not None

    assert snap.slot == point and r.log.compacted_through == point
    # Only the log through the point is dropped.
    assert min(r.log.entries) == point + 1 and max(r.log.entries) == r.log.decided_through
    meta = decode_meta(snap.meta)
    assert meta.slot == point and meta.delivered == 3
    # A replica restored from it replays the later slots in the same positions:
    # their ids are not recorded as delivered in the snapshot.
    fresh = MultiPaxosReplica("a", ["a"], random.Random(2))
    fresh.step(
        Restore(
            ZERO_BALLOT,
            [],
            [DecidedEntry(s, v) for s, v in sorted(r.log.entries.items())],
            incarnation=2,
            snapshot=snap,
        )
    )
    assert delivered(settle(fresh)) == later
    assert fresh.log.delivered == r.log.delivered


def test_compact_refuses_a_slot_not_decided_or_already_compacted() -> None:
    r = solo()
    propose_each(r, [b"p1", b"p2"])
    r.step(MarkSnapshotPoint())
    point = r.log.decided_through
    with pytest.raises(ValueError, match="not decided"):
        r.step(Compact(b"x", slot=r.log.decided_through + 1))
    propose_each(r, [b"p3"])
    r.step(Compact(b"x", slot=point))
    with pytest.raises(ValueError, match="at or below the snapshot"):
        r.step(Compact(b"y", slot=point))
    with pytest.raises(ValueError, match="at or below the snapshot"):
        r.step(Compact(b"y", slot=point - 1))


def test_compact_refuses_an_earlier_slot_that_was_never_marked() -> None:
    r = solo()
    propose_each(r, [b"p1", b"p2"])
    r.step(MarkSnapshotPoint())
    marked = r.log.decided_through
    propose_each(r, [b"p3"])
    with pytest.raises(ValueError, match="no snapshot point"):
        r.step(Compact(b"x", slot=marked - 1))
    # The present is always a valid point, marked or not.
    r.step(Compact(b"x", slot=r.log.decided_through))
    snap = r.log.snapshot
    assert snap is not None
    assert decode_meta(snap.meta).delivered == 3
