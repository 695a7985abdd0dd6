"""LogStorage: the Storage conformance suite, then torn tails, damage, locking and compaction.

Damage is made the way it happens: the file cut inside its last record, or
zeros and garbage after it (a crash or power loss mid-append), or an unsynced
record lost while a later one reached the disk (a power loss writes pages
back in any order): all written after the last completed sync, the only
damage ``open`` tolerates, by cutting it off. And bytes flipped or garbled in
the header or in a record that had been synced, with a valid record after
it that proves so (bit rot, a bad copy), which ``open`` must refuse with a
``StorageError`` naming the file. test_log_power_loss.py does both at random.
"""

from __future__ import annotations

import binascii
import errno
import os
import sqlite3
import struct
import tracemalloc
from pathlib import Path

import pytest

from paxostob.core.events import AcceptedEntry, Ready
from paxostob.core.types import Ballot, DecidedEntry, Proposal, ProposalId
from paxostob.errors import StorageError
from paxostob.storage import log as log_module
from paxostob.storage.base import DurableState, Snapshot
from paxostob.storage.default import default_storage
from paxostob.storage.log import FILE_NAME, FORMAT_VERSION, MAGIC, RECORD_MARK, LogStorage
from paxostob.storage.sqlite import FILE_NAME as SQLITE_FILE_NAME
from paxostob.storage.sqlite import SqliteStorage

from .conformance import (
    CLUSTER,
    NODE,
    NewObjectConformance,
    StorageConformance,
    accepted,
    decided,
    fill,
)


class TestLogConformance(StorageConformance):
    def make_storage(self, tmp_path: Path) -> LogStorage:
        return LogStorage(tmp_path / "data")


class TestLogNewObjectConformance(NewObjectConformance):
    def make_storage_at(self, data_dir: Path) -> LogStorage:
        return LogStorage(data_dir)


# ---------------------------------------------------------------------------- helpers

SLOTS = range(1, 201)
#: The bytes of a record before its body.
FRAME = log_module._FRAME.size


def populate(data_dir: Path, *, snapshot: bool = True) -> DurableState:
    """A closed store (slots 1..200, a snapshot through slot 3 when asked), reopened once."""
    s = LogStorage(data_dir)
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    if snapshot:
        s.install_snapshot(Snapshot(3, b"meta", b"data"))
    fill(s, SLOTS)
    s.close()
    state = s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.close()
    return state


def open_state(data_dir: Path) -> DurableState:
    s = LogStorage(data_dir)
    try:
        return s.open(CLUSTER, NODE, bootstrap=[NODE])
    finally:
        s.close()


def open_error(data_dir: Path, cluster: str = CLUSTER, node: str = NODE) -> StorageError:
    """The StorageError opening ``data_dir`` gives; fails if it opens or raises anything else."""
    s = LogStorage(data_dir)
    try:
        s.open(cluster, node, bootstrap=[node])
    except StorageError as e:
        assert str(data_dir / FILE_NAME) in str(e), str(e)
        return e
    s.close()
    raise AssertionError(f"{data_dir} opened although it is damaged")


def record_offsets(path: Path) -> list[int]:
    """Where each record starts (the mark does not occur inside these tests' values)."""
    raw = path.read_bytes()
    offsets, at = [], raw.find(RECORD_MARK)
    while at != -1:
        offsets.append(at)
        at = raw.find(RECORD_MARK, at + 1)
    return offsets


def record_end(path: Path, offset: int) -> int:
    """Where the record starting at ``offset`` ends (from its length field)."""
    raw = path.read_bytes()
    return offset + FRAME + int.from_bytes(raw[offset + 4 : offset + 12], "big")


def crashed_copy(s: LogStorage, data_dir: Path) -> Path:
    """``data_dir`` holding the open store's file as ``kill -9`` leaves it (zeros grown ahead too).

    What a process left in the page cache is what the next open reads; ``s``
    keeps the lock on its own file, so the copy is opened instead.
    """
    data_dir.mkdir()
    (data_dir / FILE_NAME).write_bytes(s.path.read_bytes())
    return data_dir


def write_at(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


# ---------------------------------------------------------------------------- files


def test_creates_the_directory_and_leaves_one_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    populate(data_dir)
    assert os.listdir(data_dir) == [FILE_NAME]


def test_a_path_ending_in_log_is_the_file_itself(tmp_path: Path) -> None:
    s = LogStorage(tmp_path / "d" / "node.log")
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.close()
    assert os.listdir(tmp_path / "d") == ["node.log"]


def test_reopen_after_close_returns_the_same_state(tmp_path: Path) -> None:
    state = populate(tmp_path)
    again = open_state(tmp_path)
    assert again == DurableState(
        state.promised,
        state.accepted,
        state.decided,
        state.snapshot,
        state.incarnation + 1,
        (NODE,),
    )
    assert state.promised == Ballot(200, NODE)
    assert [d.slot for d in state.decided] == list(range(4, 201))
    assert state.snapshot == Snapshot(3, b"meta", b"data")


def test_a_second_open_is_refused_while_locked(tmp_path: Path) -> None:
    first = LogStorage(tmp_path)
    first.open(CLUSTER, NODE, bootstrap=[NODE])
    try:
        with pytest.raises(StorageError, match="in use") as e:
            LogStorage(tmp_path).open(CLUSTER, NODE, bootstrap=[NODE])
        assert str(tmp_path / FILE_NAME) in str(e.value)
        first.install_snapshot(Snapshot(1, b"", b""))  # the lock moves to the new file
        with pytest.raises(StorageError, match="in use"):
            LogStorage(tmp_path).open(CLUSTER, NODE, bootstrap=[NODE])
        first.save(Ready(decided=(decided(2),), must_sync=True))  # the owner is unharmed
    finally:
        first.close()
    assert open_state(tmp_path).decided == (decided(2),)


def test_leftovers_of_an_interrupted_creation_or_compaction_are_removed(tmp_path: Path) -> None:
    populate(tmp_path)
    (tmp_path / f"{FILE_NAME}.abc123.tmp").write_bytes(b"half a log")
    open_state(tmp_path)
    assert os.listdir(tmp_path) == [FILE_NAME]


def test_a_directory_with_an_sqlite_store_is_refused(tmp_path: Path) -> None:
    old = SqliteStorage(tmp_path)
    old.open(CLUSTER, NODE, bootstrap=[NODE])
    old.close()
    e = open_error(tmp_path)
    assert SQLITE_FILE_NAME in str(e) and "SqliteStorage" in str(e)
    assert os.listdir(tmp_path) == [SQLITE_FILE_NAME]  # nothing created beside it


def test_default_storage_is_the_log_but_keeps_an_existing_sqlite_store(tmp_path: Path) -> None:
    assert isinstance(default_storage(tmp_path / "new"), LogStorage)
    old = SqliteStorage(tmp_path / "old")
    old.open(CLUSTER, NODE, bootstrap=[NODE])
    old.save(Ready(decided=(decided(1),), must_sync=True))
    old.close()
    kept = default_storage(tmp_path / "old")
    assert isinstance(kept, SqliteStorage)
    assert kept.open(CLUSTER, NODE, bootstrap=[NODE]).decided == (decided(1),)
    kept.close()
    # Both kinds in one directory: the log store refuses, naming the SQLite file.
    both = tmp_path / "both"
    fresh = default_storage(both)
    assert isinstance(fresh, LogStorage)
    fresh.open(CLUSTER, NODE, bootstrap=[NODE])
    fresh.close()
    (both / SQLITE_FILE_NAME).write_bytes(b"")
    assert SQLITE_FILE_NAME in str(open_error(both))


def test_a_huge_record_round_trips(tmp_path: Path) -> None:
    payload = os.urandom(1 << 20) * 24  # 24 MiB in one value
    big = (Proposal(ProposalId(NODE, 1), payload),)
    s = LogStorage(tmp_path)
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.save(
        Ready(
            accepted=(AcceptedEntry(1, Ballot(1, NODE), big),),
            decided=(DecidedEntry(1, big),),
            must_sync=True,
        )
    )
    s.save(Ready(decided=(decided(2),)))
    s.install_snapshot(Snapshot(0, b"m", payload))
    s.close()
    state = open_state(tmp_path)
    assert state.accepted == (AcceptedEntry(1, Ballot(1, NODE), big),)
    assert state.decided == (DecidedEntry(1, big), decided(2))
    assert state.snapshot == Snapshot(0, b"m", payload)


def test_compaction_shrinks_the_file(tmp_path: Path) -> None:
    populate(tmp_path, snapshot=False)
    path = tmp_path / FILE_NAME
    before = path.stat().st_size
    s = LogStorage(tmp_path)
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.install_snapshot(Snapshot(190, b"meta", b"data"))
    after = path.stat().st_size
    s.save(Ready(decided=(decided(201),)))
    s.close()
    assert after < before / 10, (before, after)
    state = open_state(tmp_path)
    assert state.promised == Ballot(200, NODE)
    assert [a.slot for a in state.accepted] == list(range(191, 201))
    assert [d.slot for d in state.decided] == list(range(191, 202))
    assert state.accepted[0] == accepted(191, 191)


def test_a_compaction_writes_the_snapshot_as_one_framed_record(tmp_path: Path) -> None:
    # The snapshot is written in pieces, its checksum computed over them: the
    # file must hold exactly the record one joined body would have made.
    data = os.urandom(300_000)
    s = LogStorage(tmp_path)
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    fill(s, range(1, 11))
    s.install_snapshot(Snapshot(7, b"meta", data))
    raw = (tmp_path / FILE_NAME).read_bytes()
    s.close()
    body = b"".join(
        (
            struct.pack(">BQ", 2, 7),  # SNAPSHOT, slot
            struct.pack(">Q", 4),
            b"meta",
            struct.pack(">Q", len(data)),
            data,
        )
    )
    # length, synced_upto (0: nothing of the new file was durable), flags (synced)
    fields = struct.pack(">QQB", len(body), 0, 1)
    record = RECORD_MARK + fields + struct.pack(">I", binascii.crc32(body, binascii.crc32(fields)))
    # The members record comes first, then the snapshot, whole in one record.
    first = raw.find(RECORD_MARK)
    assert raw.find(record + body) == raw.find(RECORD_MARK, first + 1)
    state = open_state(tmp_path)
    assert state.snapshot == Snapshot(7, b"meta", data)
    assert [d.slot for d in state.decided] == [8, 9, 10]


def test_the_state_above_the_snapshot_is_kept_without_copies_of_the_values(
    tmp_path: Path,
) -> None:
    # Until the next compaction the store keeps what it must write again; the
    # values are the caller's objects (the core's log holds them anyway), not
    # encoded copies: two 4 MiB ones for an entry both accepted and decided.
    big = (Proposal(ProposalId(NODE, 1), os.urandom(4 << 20)),)
    s = LogStorage(tmp_path)
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        s.save(
            Ready(
                accepted=(AcceptedEntry(1, Ballot(1, NODE), big),),
                decided=(DecidedEntry(1, big),),
                must_sync=True,
            )
        )
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    s.install_snapshot(Snapshot(0, b"m", b"d"))  # rewrites the entry from the kept value
    s.close()
    assert kept < 1 << 20, kept
    state = open_state(tmp_path)
    assert state.accepted == (AcceptedEntry(1, Ballot(1, NODE), big),)
    assert state.decided == (DecidedEntry(1, big),)


def test_the_incarnation_survives_compaction(tmp_path: Path) -> None:
    s = LogStorage(tmp_path)
    first = s.open(CLUSTER, NODE, bootstrap=[NODE]).incarnation
    s.close()
    for _ in range(2):
        s.open(CLUSTER, NODE)
        s.close()
    assert s.open(CLUSTER, NODE).incarnation == first + 3
    s.install_snapshot(Snapshot(1, b"", b""))
    s.close()
    assert s.open(CLUSTER, NODE).incarnation == first + 4
    s.close()


# ---------------------------------------------------------------------------- torn tails


@pytest.mark.parametrize("cut", [1, 5, FRAME - 1, FRAME, FRAME + 1, -1])
def test_a_torn_last_record_is_ignored_and_truncated(tmp_path: Path, cut: int) -> None:
    """Cut inside the last save (in its frame or its body): the saves before it are all there."""
    s = LogStorage(tmp_path / "live")
    first = s.open(CLUSTER, NODE, bootstrap=[NODE]).incarnation
    s.save(Ready(promised=Ballot(1, NODE), decided=(decided(1),), must_sync=True))
    s.save(Ready(promised=Ballot(2, NODE), decided=(decided(2),)))
    data_dir = crashed_copy(s, tmp_path / "crashed")
    s.close()
    path = data_dir / FILE_NAME
    last = record_offsets(path)[-1]  # where save 2 starts
    end = record_end(path, last)
    os.truncate(path, last + cut if cut > 0 else end + cut)
    state = open_state(data_dir)
    assert state.promised == Ballot(1, NODE) and state.decided == (decided(1),)
    assert state.incarnation == first + 1
    # The torn bytes are gone and the incarnation record follows the last good save:
    # the next open sees a clean log, one incarnation later.
    assert open_state(data_dir).incarnation == first + 2
    assert record_offsets(path)[-2] == last


@pytest.mark.parametrize("tail", [b"\x00" * 4096, RECORD_MARK + b"\xff" * 100, b"garbage"])
def test_junk_after_the_last_record_is_ignored_and_truncated(tmp_path: Path, tail: bytes) -> None:
    """What a power loss can leave past the last complete write: zeros, a half frame, garbage."""
    state = populate(tmp_path)
    path = tmp_path / FILE_NAME
    size = path.stat().st_size
    with path.open("ab") as f:
        f.write(tail)
    again = open_state(tmp_path)
    assert (again.promised, again.accepted, again.decided) == (
        state.promised,
        state.accepted,
        state.decided,
    )
    # Cut at the last good record, which the new incarnation's record now follows.
    assert record_offsets(path)[-1] == size
    assert path.read_bytes()[size : size + len(tail)] != tail


def test_a_flipped_byte_in_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    """Indistinguishable from a torn write (as for SQLite's WAL): the record is dropped."""
    s = LogStorage(tmp_path)
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.save(Ready(decided=(decided(1),), must_sync=True))
    s.save(Ready(decided=(decided(2),), must_sync=True))
    s.close()
    path = tmp_path / FILE_NAME
    write_at(path, path.stat().st_size - 1, b"\xee")
    assert open_state(tmp_path).decided == (decided(1),)


# ---------------------------------------------------------------------------- power loss


def unsynced_tail(tmp_path: Path, *, size: int = 1) -> tuple[Path, list[int]]:
    """A crashed copy of a log: a synced save (slot 1), then unsynced saves of slots 2..6.

    Returns the copy's directory and where the five unsynced saves start.
    ``size`` proposals per decided value (500 make a record span whole pages).
    """
    s = LogStorage(tmp_path / "live")
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.save(
        Ready(
            promised=Ballot(1, NODE),
            accepted=(accepted(1),),
            decided=(decided(1),),
            must_sync=True,
        )
    )
    for slot in range(2, 7):
        s.save(Ready(decided=(decided(slot, size=size),)))
    data_dir = crashed_copy(s, tmp_path / "crashed")
    s.close()
    return data_dir, record_offsets(data_dir / FILE_NAME)[-5:]


@pytest.mark.parametrize("lost", ["record", "page"])
def test_an_unsynced_record_lost_before_a_later_one_is_cut_with_it(
    tmp_path: Path, lost: str
) -> None:
    """The reviewer's case: a power loss wrote a later unsynced page but not an earlier one.

    Nothing after the last sync was promised, so open keeps the synced prefix
    and the unsynced saves before the hole, and cuts the rest (format 1
    refused this as damage in the middle of the file).
    """
    data_dir, unsynced = unsynced_tail(tmp_path, size=500)
    path = data_dir / FILE_NAME
    victim = unsynced[2]  # slot 4's save; slots 5 and 6 stay intact after it
    end = record_end(path, victim)
    if lost == "record":
        write_at(path, victim, bytes(end - victim))
    else:
        page = -(-victim // 4096) * 4096  # the first whole page inside the record
        assert page + 4096 < end
        write_at(path, page, bytes(4096))
    state = open_state(data_dir)
    assert state.promised == Ballot(1, NODE)
    assert state.accepted == (accepted(1),)
    assert state.decided == (decided(1), decided(2, size=500), decided(3, size=500))
    # Cut at the hole: the incarnation record took its place, slots 5 and 6 are gone.
    assert record_offsets(path)[-1] == victim
    assert open_state(data_dir).decided == state.decided


def test_damage_in_the_last_synced_record_is_refused(tmp_path: Path) -> None:
    """The unsynced saves after it note the log synced through its end: bit rot, not a tail."""
    data_dir, unsynced = unsynced_tail(tmp_path)
    path = data_dir / FILE_NAME
    synced = record_offsets(path)[-6]  # the synced save of slot 1
    raw = path.read_bytes()
    write_at(path, synced + 40, bytes([raw[synced + 40] ^ 0x10]))
    e = open_error(data_dir)
    assert f"the record at byte {synced} is damaged and a valid record follows it at byte" in str(e)
    assert f"noting the log synced through byte {unsynced[0]}" in str(e)
    assert path.read_bytes()[synced + 40] != raw[synced + 40]  # nothing was cut


def test_damage_before_a_synced_save_is_refused(tmp_path: Path) -> None:
    """A synced save after an unsynced one: its sync covered the earlier record."""
    s = LogStorage(tmp_path / "live")
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.save(Ready(decided=(decided(1),)))
    s.save(Ready(decided=(decided(2),)))
    s.save(Ready(promised=Ballot(3, NODE), decided=(decided(3),), must_sync=True))
    s.save(Ready(decided=(decided(4),)))
    data_dir = crashed_copy(s, tmp_path / "crashed")
    s.close()
    path = data_dir / FILE_NAME
    victim = record_offsets(path)[-4]  # slot 1's save
    write_at(path, victim, bytes(record_end(path, victim) - victim))
    e = open_error(data_dir)
    assert f"the record at byte {victim} is damaged and a valid record follows it" in str(e)
    assert "one followed by a sync" in str(e)


def test_damage_in_saves_a_close_made_durable_is_refused(tmp_path: Path) -> None:
    """``close`` syncs the unsynced saves: the record it appends first says so."""
    s = LogStorage(tmp_path)
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.save(Ready(decided=(decided(1),), must_sync=True))
    s.save(Ready(decided=(decided(2),)))
    s.save(Ready(decided=(decided(3),)))
    s.close()
    path = tmp_path / FILE_NAME
    victim = record_offsets(path)[-3]  # slot 2's save; slot 3's is intact after it
    write_at(path, victim, bytes(record_end(path, victim) - victim))
    assert "one followed by a sync" in str(open_error(tmp_path))


def test_damage_before_a_synced_save_the_snapshot_covered_is_refused(tmp_path: Path) -> None:
    """A synced save with nothing left to write still syncs, and appends a record saying so."""
    s = LogStorage(tmp_path / "live")
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.install_snapshot(Snapshot(5, b"", b"s"))
    s.save(Ready(decided=(decided(6),)))
    s.save(Ready(decided=(decided(7),)))
    s.save(Ready(accepted=(accepted(4),), must_sync=True))  # all at or below the snapshot
    s.save(Ready(decided=(decided(8),)))
    data_dir = crashed_copy(s, tmp_path / "crashed")
    s.close()
    path = data_dir / FILE_NAME
    victim = record_offsets(path)[-4]  # slot 6's save
    write_at(path, victim, bytes(record_end(path, victim) - victim))
    assert "one followed by a sync" in str(open_error(data_dir))


# ---------------------------------------------------------------------------- format 1

#: A log written by the format-1 LogStorage (data/make_v1_log.py says how).
V1_LOG = Path(__file__).with_name("data") / "v1.log"


def v1_value(slot: int) -> tuple[Proposal, ...]:
    return (Proposal(ProposalId(NODE, slot), f"v{slot}".encode()),)


#: What V1_LOG holds: a snapshot through slot 1, then slots 2..5 accepted and decided; opened twice.
V1_STATE = DurableState(
    Ballot(5, NODE),
    tuple(AcceptedEntry(slot, Ballot(slot, NODE), v1_value(slot)) for slot in range(2, 6)),
    tuple(DecidedEntry(slot, v1_value(slot)) for slot in range(2, 6)),
    Snapshot(1, b"meta", b"data"),
    3,
)


def v1_store(data_dir: Path, tail: bytes = b"") -> Path:
    data_dir.mkdir()
    (data_dir / FILE_NAME).write_bytes(V1_LOG.read_bytes() + tail)
    return data_dir / FILE_NAME


def format_version(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[len(MAGIC) : len(MAGIC) + 2], "big")


@pytest.mark.parametrize(
    "tail", [b"", bytes(8192), RECORD_MARK + b"\0" * 9], ids=["clean", "zeros", "torn"]
)
def test_a_format_1_log_is_read_and_rewritten_in_the_current_format(
    tmp_path: Path, tail: bytes
) -> None:
    """Existing data directories keep opening; a torn format-1 tail is cut as before."""
    path = v1_store(tmp_path / "d", tail)
    assert format_version(path) == 1
    assert open_state(path.parent) == V1_STATE
    assert format_version(path) == FORMAT_VERSION
    assert os.listdir(path.parent) == [FILE_NAME]
    # It goes on as any current log, the unsynced-tail rule included.
    s = LogStorage(path.parent)
    assert s.open(CLUSTER, NODE, bootstrap=[NODE]).incarnation == 4
    s.save(Ready(decided=(decided(6),), must_sync=True))
    s.save(Ready(decided=(decided(7),)))
    s.save(Ready(decided=(decided(8),)))
    crashed = crashed_copy(s, tmp_path / "crashed")
    s.close()
    hole = record_offsets(crashed / FILE_NAME)[-2]  # slot 7's save
    write_at(crashed / FILE_NAME, hole, bytes(record_end(crashed / FILE_NAME, hole) - hole))
    assert open_state(crashed) == DurableState(
        V1_STATE.promised,
        V1_STATE.accepted,
        (*V1_STATE.decided, decided(6)),
        V1_STATE.snapshot,
        5,
    )


def test_a_format_1_log_damaged_in_the_middle_is_refused_as_before(tmp_path: Path) -> None:
    """Format 1 notes no syncs: any valid record after the damage refuses it, untouched."""
    path = v1_store(tmp_path / "d")
    victim = record_offsets(path)[2]
    write_at(path, victim + 20, b"\xff")
    damaged = path.read_bytes()
    e = open_error(path.parent)
    assert f"the record at byte {victim} is damaged and a valid record follows it" in str(e)
    assert path.read_bytes() == damaged


def test_a_failed_rewrite_of_a_format_1_log_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = v1_store(tmp_path / "d")

    def failing_rename(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", failing_rename)
    with pytest.raises(StorageError, match="cannot rewrite the store in the current format"):
        LogStorage(path.parent).open(CLUSTER, NODE, bootstrap=[NODE])
    monkeypatch.undo()
    assert path.read_bytes() == V1_LOG.read_bytes()
    assert os.listdir(path.parent) == [FILE_NAME]
    assert open_state(path.parent) == V1_STATE


# ---------------------------------------------------------------------------- damage


@pytest.mark.parametrize("where", ["mark", "length", "crc", "body"])
def test_a_damaged_record_in_the_middle_is_refused(tmp_path: Path, where: str) -> None:
    populate(tmp_path)
    path = tmp_path / FILE_NAME
    offsets = record_offsets(path)
    victim = offsets[len(offsets) // 2]
    at = {"mark": 0, "length": 5, "crc": 13, "body": 40}[where]
    raw = path.read_bytes()
    write_at(path, victim + at, bytes([raw[victim + at] ^ 0x40]))
    e = open_error(tmp_path)
    assert f"the record at byte {victim} is damaged and a valid record follows it" in str(e)
    assert "corrupt" in str(e)


def test_garbled_bytes_in_the_middle_are_refused(tmp_path: Path) -> None:
    populate(tmp_path)
    path = tmp_path / FILE_NAME
    size = path.stat().st_size
    write_at(path, size // 2, os.urandom(4096))
    assert "damaged and a valid record follows" in str(open_error(tmp_path))


def test_nothing_is_changed_by_a_refused_open(tmp_path: Path) -> None:
    state = populate(tmp_path)
    path = tmp_path / FILE_NAME
    victim = record_offsets(path)[5]
    raw = path.read_bytes()
    write_at(path, victim + 40, bytes([raw[victim + 40] ^ 1]))
    damaged = path.read_bytes()
    open_error(tmp_path)
    open_error(tmp_path)
    assert path.read_bytes() == damaged  # no truncation, no incarnation record
    write_at(path, victim + 40, raw[victim + 40 : victim + 41])
    assert open_state(tmp_path).incarnation == state.incarnation + 1


@pytest.mark.parametrize(("cluster", "node"), [("cluster-2", NODE), (CLUSTER, "n2")])
def test_another_cluster_or_node_is_refused_naming_both(
    tmp_path: Path, cluster: str, node: str
) -> None:
    populate(tmp_path)
    e = open_error(tmp_path, cluster, node)
    assert f"belongs to cluster {CLUSTER!r} node {NODE!r}" in str(e)
    assert f"not cluster {cluster!r} node {node!r}" in str(e)


def test_an_unknown_format_version_is_refused(tmp_path: Path) -> None:
    populate(tmp_path)
    write_at(tmp_path / FILE_NAME, len(MAGIC), (FORMAT_VERSION + 1).to_bytes(2, "big"))
    e = open_error(tmp_path)
    assert f"format version {FORMAT_VERSION + 1}; this paxostob reads only versions 1 and 2" in str(
        e
    )


@pytest.mark.parametrize(
    ("offset", "what"),
    [(0, "not a paxostob log store"), (len(MAGIC) + 4, "the header fails its checksum")],
)
def test_a_damaged_header_is_refused(tmp_path: Path, offset: int, what: str) -> None:
    populate(tmp_path)
    path = tmp_path / FILE_NAME
    raw = path.read_bytes()
    write_at(path, offset, bytes([raw[offset] ^ 0x20]))
    assert what in str(open_error(tmp_path))


@pytest.mark.parametrize("keep", [0, 5, len(MAGIC) + 3])
def test_a_cut_header_is_refused(tmp_path: Path, keep: int) -> None:
    populate(tmp_path)
    os.truncate(tmp_path / FILE_NAME, keep)
    open_error(tmp_path)


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    assert "not a paxostob log store" in str(open_error(tmp_path))


# ---------------------------------------------------------------------------- failures


def test_a_failed_save_closes_the_store_and_keeps_the_durable_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = LogStorage(tmp_path)
    first = s.open(CLUSTER, NODE, bootstrap=[NODE]).incarnation
    s.save(Ready(decided=(decided(1),), must_sync=True))

    def full_disk(fd: int, data: bytes, offset: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(log_module, "_write_all", full_disk)
    with pytest.raises(StorageError, match=r"save failed.*the store is closed") as e:
        s.save(Ready(decided=(decided(2),), must_sync=True))
    monkeypatch.undo()
    assert str(s.path) in str(e.value)
    with pytest.raises(StorageError, match="not open"):
        s.save(Ready(decided=(decided(3),), must_sync=True))
    state = s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.close()
    assert state.decided == (decided(1),)
    assert state.incarnation == first + 1


def test_a_failed_compaction_closes_the_store_and_keeps_the_old_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = LogStorage(tmp_path)
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.save(Ready(decided=(decided(1), decided(2)), must_sync=True))
    s.save(Ready(decided=(decided(3),)))  # unsynced: still there after the failure

    def failing_rename(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", failing_rename)
    with pytest.raises(StorageError, match=r"install_snapshot failed.*the store is closed"):
        s.install_snapshot(Snapshot(2, b"", b"two"))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [FILE_NAME]  # the new file was removed
    state = s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.close()
    assert state.snapshot is None
    assert state.decided == (decided(1), decided(2), decided(3))


def test_the_file_is_grown_ahead_with_zeros_and_cut_at_close(tmp_path: Path) -> None:
    """Most syncs then flush data only; a life that did not close leaves zeros, a clean tail."""
    s = LogStorage(tmp_path)
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.save(Ready(decided=(decided(1),), must_sync=True))
    path = tmp_path / FILE_NAME
    grown = path.stat().st_size
    assert grown >= log_module.PREALLOC_BYTES and grown % 4096 == 0
    tail = path.read_bytes()[record_offsets(path)[-1] :]
    assert tail.rstrip(b"\0") and len(tail.rstrip(b"\0")) < 1000
    # As after kill -9: the zeros are there when another open reads the file.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / FILE_NAME).write_bytes(path.read_bytes())
    s.close()
    assert path.stat().st_size < 1000
    assert open_state(copy).decided == (decided(1),)
    assert (copy / FILE_NAME).stat().st_size < 1000
