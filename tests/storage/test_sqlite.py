"""SqliteStorage: the Storage conformance suite, then damage detection and file handling.

Damage is made the way it happens: bytes garbled or cut off in the file
itself, or one byte of one row flipped behind the store's back (with the
stdlib ``sqlite3``, which keeps SQLite's own structure valid so only our
checksum can notice). Every case must give a ``StorageError`` that names the
file and says what is wrong, never an ``sqlite3`` exception and never a
partial state.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from paxostob.core.events import Ready
from paxostob.core.types import ZERO_BALLOT, Ballot
from paxostob.errors import StorageError
from paxostob.storage.base import DurableState, Snapshot
from paxostob.storage.sqlite import FILE_NAME, SqliteStorage

from .conformance import (
    CLUSTER,
    NODE,
    NewObjectConformance,
    StorageConformance,
    decided,
    fill,
)


class TestSqliteConformance(StorageConformance):
    records_members = False

    def make_storage(self, tmp_path: Path) -> SqliteStorage:
        return SqliteStorage(tmp_path / "data")


class TestSqliteNewObjectConformance(NewObjectConformance):
    records_members = False

    def make_storage_at(self, data_dir: Path) -> SqliteStorage:
        return SqliteStorage(data_dir)


# ---------------------------------------------------------------------------- helpers

SLOTS = range(1, 201)


def populate(data_dir: Path) -> DurableState:
    """A closed store with a snapshot through slot 3 and slots 4..200 (~200 KB), reopened."""
    s = SqliteStorage(data_dir)
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    fill(s, SLOTS)
    s.install_snapshot(Snapshot(3, b"meta", b"data"))
    s.close()
    state = s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.close()
    return state


def open_error(data_dir: Path) -> StorageError:
    """The StorageError opening ``data_dir`` gives; fails if it opens or raises anything else."""
    s = SqliteStorage(data_dir)
    try:
        s.open(CLUSTER, NODE, bootstrap=[NODE])
    except StorageError as e:
        assert not isinstance(e, sqlite3.Error)
        assert str(data_dir / FILE_NAME) in str(e), str(e)
        return e
    s.close()
    raise AssertionError(f"{data_dir} opened although it is damaged")


def tamper(data_dir: Path, sql: str, *args: object) -> None:
    """Change the file behind the store's back, as valid SQLite (only checksums can tell)."""
    conn = sqlite3.connect(data_dir / FILE_NAME)
    with conn:
        conn.execute(sql, args)
    conn.close()


def flip(value: bytes, at: int = -1) -> bytes:
    raw = bytearray(value)
    raw[at] ^= 0x01
    return bytes(raw)


def row_value(data_dir: Path, sql: str) -> object:
    conn = sqlite3.connect(data_dir / FILE_NAME)
    try:
        (value,) = conn.execute(sql).fetchone()
        return value
    finally:
        conn.close()


# ---------------------------------------------------------------------------- files


def test_creates_the_directory_and_leaves_one_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    populate(data_dir)
    assert os.listdir(data_dir) == [FILE_NAME]


def test_a_path_ending_in_sqlite3_is_the_file_itself(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path / "d" / "node.sqlite3")
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.close()
    assert os.listdir(tmp_path / "d") == ["node.sqlite3"]


def test_reopen_after_close_returns_the_same_state(tmp_path: Path) -> None:
    state = populate(tmp_path)
    s = SqliteStorage(tmp_path)
    again = s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.close()
    assert again == DurableState(
        state.promised, state.accepted, state.decided, state.snapshot, state.incarnation + 1
    )
    assert state.promised == Ballot(200, NODE)
    assert [d.slot for d in state.decided] == list(range(4, 201))
    assert state.snapshot == Snapshot(3, b"meta", b"data")


def test_a_second_storage_on_an_open_store_is_refused(tmp_path: Path) -> None:
    first = SqliteStorage(tmp_path)
    first.open(CLUSTER, NODE, bootstrap=[NODE])
    try:
        with pytest.raises(StorageError, match="in use"):
            SqliteStorage(tmp_path).open(CLUSTER, NODE, bootstrap=[NODE])
        first.save(Ready(decided=(decided(1),), must_sync=True))  # the owner is unharmed
    finally:
        first.close()


def test_an_interrupted_creation_is_started_over(tmp_path: Path) -> None:
    (tmp_path / (FILE_NAME + ".creating")).write_bytes(b"half a store")
    s = SqliteStorage(tmp_path)
    state = s.open(CLUSTER, NODE, bootstrap=[NODE])
    assert state.decided == () and state.promised == ZERO_BALLOT
    s.close()
    assert os.listdir(tmp_path) == [FILE_NAME]


def test_a_missing_file_beside_its_wal_is_refused(tmp_path: Path) -> None:
    populate(tmp_path)
    (tmp_path / FILE_NAME).rename(tmp_path / "moved")
    (tmp_path / (FILE_NAME + "-wal")).write_bytes(b"log")
    assert "missing" in str(open_error(tmp_path))


def test_a_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    assert "not a paxostob store" in str(open_error(tmp_path))


# ---------------------------------------------------------------------------- damage


@pytest.mark.parametrize("where", [0.25, 0.5, 0.75])
def test_garbled_bytes_in_the_middle_are_refused(tmp_path: Path, where: float) -> None:
    populate(tmp_path)
    path = tmp_path / FILE_NAME
    size = path.stat().st_size
    assert size > 100_000
    with path.open("r+b") as f:
        f.seek(int(size * where) + 100)  # across a page boundary: two pages hit
        f.write(random.Random(where).randbytes(4096))
    e = open_error(tmp_path)
    assert "corrupt" in str(e)


@pytest.mark.parametrize("keep", [0, 50, 4096, 0.5, -4096, -1])
def test_a_truncated_file_is_refused(tmp_path: Path, keep: float) -> None:
    populate(tmp_path)
    path = tmp_path / FILE_NAME
    size = path.stat().st_size
    cut = int(size * keep) if isinstance(keep, float) else keep % size
    os.truncate(path, cut)
    open_error(tmp_path)


@pytest.mark.parametrize(
    ("table", "column", "key", "what"),
    [
        ("decided", "value", "slot = 17", "decided slot 17"),
        ("accepted", "value", "slot = 17", "accepted slot 17"),
        ("snapshot", "data", "id = 0", "the snapshot (slot 3)"),
        ("snapshot", "meta", "id = 0", "the snapshot (slot 3)"),
    ],
)
def test_a_flipped_byte_fails_the_rows_checksum(
    tmp_path: Path, table: str, column: str, key: str, what: str
) -> None:
    populate(tmp_path)
    value = row_value(tmp_path, f"SELECT {column} FROM {table} WHERE {key}")
    assert isinstance(value, bytes)
    tamper(tmp_path, f"UPDATE {table} SET {column} = ? WHERE {key}", flip(value))
    e = open_error(tmp_path)
    assert str(e) == f"{tmp_path / FILE_NAME}: {what} fails its checksum (the file is corrupt)"


@pytest.mark.parametrize(
    ("sql", "what"),
    [
        ("UPDATE promised SET ballot_round = ballot_round + 1", "the promised ballot fails"),
        ("UPDATE accepted SET ballot_node = 'n2' WHERE slot = 9", "accepted slot 9 fails"),
        ("UPDATE decided SET slot = 1000 WHERE slot = 9", "decided slot 1000 fails"),
        ("UPDATE meta SET incarnation = 0", "the meta row fails"),
        ("UPDATE meta SET node_id = 'n2'", "the meta row fails"),
        ("UPDATE decided SET value = 'text' WHERE slot = 9", "decided slot 9 has columns"),
        ("DELETE FROM promised", "promised table has 0 rows"),
        ("DROP TABLE snapshot", "tables snapshot are missing"),
        ("UPDATE meta SET format_version = 2", "format version 2; this paxostob reads only"),
    ],
)
def test_tampered_rows_are_refused(tmp_path: Path, sql: str, what: str) -> None:
    populate(tmp_path)
    tamper(tmp_path, sql)
    assert what in str(open_error(tmp_path))


def test_entries_below_the_snapshot_are_inconsistent(tmp_path: Path) -> None:
    populate(tmp_path)
    tamper(tmp_path, "UPDATE snapshot SET slot = 10")
    e = open_error(tmp_path)  # the snapshot's checksum fails first: it covers its slot
    assert "the snapshot" in str(e)


def test_nothing_is_changed_by_a_refused_open(tmp_path: Path) -> None:
    state = populate(tmp_path)
    value = row_value(tmp_path, "SELECT value FROM decided WHERE slot = 5")
    assert isinstance(value, bytes)
    tamper(tmp_path, "UPDATE decided SET value = ? WHERE slot = 5", flip(value))
    open_error(tmp_path)
    open_error(tmp_path)
    tamper(tmp_path, "UPDATE decided SET value = ? WHERE slot = 5", value)
    s = SqliteStorage(tmp_path)
    assert (
        s.open(CLUSTER, NODE, bootstrap=[NODE]).incarnation == state.incarnation + 1
    )  # no bump while refused
    s.close()


# ---------------------------------------------------------------------------- failures


def test_a_failed_save_closes_the_store_and_keeps_the_durable_state(tmp_path: Path) -> None:
    s = SqliteStorage(tmp_path)
    first = s.open(CLUSTER, NODE, bootstrap=[NODE]).incarnation
    s.save(Ready(decided=(decided(1),), must_sync=True))
    deny: Callable[..., int] = lambda *_: sqlite3.SQLITE_DENY  # noqa: E731
    conn = s._conn
    assert conn is not None
    conn.set_authorizer(deny)  # every statement now fails, as a full or failing disk would
    with pytest.raises(StorageError, match=r"save failed.*the store is closed") as e:
        s.save(Ready(decided=(decided(2),), must_sync=True))
    assert str(s.path) in str(e.value)
    with pytest.raises(StorageError, match="not open"):
        s.save(Ready(decided=(decided(3),), must_sync=True))
    state = s.open(CLUSTER, NODE, bootstrap=[NODE])
    s.close()
    assert state.decided == (decided(1),)
    assert state.incarnation == first + 1
