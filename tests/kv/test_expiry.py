"""Expiry is a function of the log alone: the entries' ``now_ms``, never a replica's clock."""

from __future__ import annotations

import time

import pytest

from paxostob.kv.commands import Entry, Op
from paxostob.kv.machine import KvMachine
from paxostob.kv.replies import OK, Error, SimpleString

from .util import T0_MS, one, run


def test_a_key_lives_through_its_expiry_millisecond_and_is_gone_after() -> None:
    machine = KvMachine()
    assert one(machine, "SET k v PX 100", T0_MS) == OK
    assert one(machine, "GET k", T0_MS + 100) == b"v"  # Redis: expired only when now > when
    assert one(machine, "PTTL k", T0_MS + 100) == 0
    assert one(machine, "GET k", T0_MS + 101) is None
    assert one(machine, "TTL k", T0_MS + 101) == -2


def test_an_expired_key_is_invisible_to_every_command() -> None:
    machine = KvMachine()
    run(machine, T0_MS, "SET k 5 PX 10", "SET other v")
    later = T0_MS + 11
    replies = run(
        machine,
        later,
        "GET k",
        "EXISTS k",
        "STRLEN k",
        "TYPE k",
        "MGET k",
        "KEYS *",
        "SCAN 0",
        "DBSIZE",
        "INCR k",
        "SET k x NX",
    )
    assert replies[:8] == [
        None,
        0,
        0,
        SimpleString("none"),
        [None],
        [b"other"],
        [b"0", [b"other"]],
        1,
    ]
    assert replies[8:] == [1, None]  # INCR started from 0, so NX found the key


def test_no_clock_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden() -> float:
        raise AssertionError("the state machine read a clock")

    for name in ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"):
        monkeypatch.setattr(time, name, forbidden)
    machine = KvMachine()
    run(machine, T0_MS, "SET k v EX 1", "EXPIRE k 5", "TTL k", "SCAN 0", "KEYS *", "DBSIZE")
    assert one(machine, "GET k", T0_MS + 5001) is None


def test_the_clock_never_moves_back() -> None:
    machine = KvMachine()
    run(machine, T0_MS, "SET k v PX 100")
    assert one(machine, "GET k", T0_MS + 200) is None
    # A proposer with a slower clock cannot bring the key back, nor lengthen new TTLs.
    assert one(machine, "GET k", T0_MS + 50) is None
    assert machine.clock_ms == T0_MS + 200
    run(machine, T0_MS, "SET j v PX 100")
    assert one(machine, "PTTL j", T0_MS) == 100
    assert one(machine, "PEXPIRETIME j", T0_MS) == T0_MS + 300


def test_the_sweep_removes_a_bounded_number_of_expired_keys_per_entry() -> None:
    machine = KvMachine(expire_sweep_max=3)
    run(machine, T0_MS, *(f"SET k{i} v PX {10 + i}" for i in range(10)), "SET keep v")
    assert machine.stored_keys == 11
    run(machine, T0_MS + 1000)  # an empty entry still advances time and sweeps
    assert machine.stored_keys == 8
    run(machine, T0_MS + 1000)
    assert machine.stored_keys == 5
    assert one(machine, "DBSIZE", T0_MS + 1000) == 1  # DBSIZE removes every expired key
    assert machine.stored_keys == 1


def test_the_sweep_takes_the_oldest_expiry_first() -> None:
    machine = KvMachine(expire_sweep_max=1)
    run(machine, T0_MS, "SET late v PX 20", "SET early v PX 10", "SET never v")
    run(machine, T0_MS + 25)  # both have expired; the sweep may remove one
    assert sorted(machine.keyspace.values) == [
        b"late",
        b"never",
    ]  # white box: unswept keys are hidden
    run(machine, T0_MS + 25)
    assert sorted(machine.keyspace.values) == [b"never"]


def test_a_changed_expiry_is_the_one_that_counts() -> None:
    machine = KvMachine()
    run(machine, T0_MS, "SET k v PX 10", "PEXPIRE k 1000")
    run(machine, T0_MS + 500)  # the stale first expiry must not remove the key
    assert one(machine, "GET k", T0_MS + 500) == b"v"
    run(machine, T0_MS + 501, "PERSIST k")
    assert one(machine, "GET k", T0_MS + 5000) == b"v"


def test_rewriting_expiries_keeps_memory_bounded() -> None:
    machine = KvMachine()
    run(machine, T0_MS, "SET k v")
    for i in range(10_000):
        run(machine, T0_MS, f"PEXPIRE k {10_000 + i}")
    assert len(machine.keyspace.expiry_heap) < 200  # stale heap pairs are compacted away


def test_expire_family_with_past_times_delete_at_once() -> None:
    machine = KvMachine()
    run(machine, T0_MS, "MSET a 1 b 2 c 3 d 4")
    assert (
        run(machine, T0_MS, "EXPIREAT a 1", "PEXPIREAT b 5", "EXPIRE c -10", "PEXPIRE d 0")
        == [1] * 4
    )
    assert machine.stored_keys == 0


def test_set_exat_in_the_past_hides_the_key() -> None:
    machine = KvMachine()
    assert one(machine, "SET k v PXAT 5", T0_MS) == OK
    assert run(machine, T0_MS, "GET k", "EXISTS k", "DBSIZE") == [None, 0, 0]


def test_local_reads_report_an_expired_key_absent_and_leave_it() -> None:
    machine = KvMachine()
    machine.apply(Entry(1_000, (Op.of("SET", "k", "v", "PX", 10), Op.of("SET", "j", "w"))))
    machine.apply(Entry(2_000, ()))  # the clock passes k's expiry (the sweep is bounded)
    kept = machine.stored_keys
    reads = [[b"GET", b"k"], [b"TTL", b"k"], [b"EXISTS", b"k", b"j"], [b"GET", b"j"]]
    assert machine.read(reads) == [None, -2, 1, b"w"]
    assert machine.stored_keys == kept  # nothing removed on this replica only
    # The same reads applied in an entry give the same replies.
    assert machine.apply(Entry(2_000, tuple(Op(tuple(r)) for r in reads))) == [None, -2, 1, b"w"]
    error = machine.read([[b"SET", b"k", b"v"]])[0]
    assert isinstance(error, Error) and "not a local read" in error.text
