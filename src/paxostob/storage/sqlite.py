"""``SqliteStorage``: the durable ``Storage`` on local disk, in one SQLite file.

Theory of operation: the data directory holds ``paxostob.sqlite3`` (plus, while
it is open, SQLite's ``-wal`` file). The database runs in WAL journal mode
with an exclusive lock held from ``open`` to ``close``, so no second process
(nor a second ``SqliteStorage`` in this one) can use a node's store at the
same time. Each ``save`` is one transaction:

- with ``ready.must_sync`` it commits with ``synchronous=FULL``: SQLite
  appends the transaction to the WAL and fsyncs the WAL once — the group
  commit, one fsync however many entries the ``Ready`` carries;
- without it, it commits with ``synchronous=NORMAL``: appended, not fsynced.
  This is safe (docs/storage.md has the argument): a commit survives a kill
  of the process either way, WAL frames are checksummed and chained so a
  power loss can only cut the log's tail, and the next FULL commit's fsync
  covers every earlier frame of the same file.

The store is created atomically: built in ``paxostob.sqlite3.creating``,
fsynced, renamed into place and the directory fsynced. So the real file,
once present, is always a complete store, and an empty or short one is
damage, never a half-created store to initialise again (that would forget
promises).

``open`` validates everything before it returns anything: the SQLite header
(``application_id``), ``PRAGMA quick_check``, the format version, then every
row's CRC-32 (``encoding.row_crc``) and value encoding, and the invariants of
``DurableState``. Any failure is a ``StorageError`` naming the file and what
is wrong; the node never starts from a partial state.

Tables: ``meta`` (one row: format version, cluster id, node id,
incarnation), ``promised`` (one row), ``accepted`` and ``decided`` (one row
per slot, value encoded by ``encoding.encode_batch``), ``snapshot`` (zero or
one row). Every row carries its ``crc``.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ..core.events import AcceptedEntry, Ready
from ..core.types import Ballot, Batch, DecidedEntry
from ..errors import ConfigurationError, DecodeError, StorageError, StoreMissingError
from .base import (
    DurableState,
    Snapshot,
    has_durable_part,
    missing_store_message,
    random_incarnation,
)
from .encoding import decode_batch, encode_batch, row_crc

__all__ = ["FILE_NAME", "FORMAT_VERSION", "SqliteStorage"]

#: The one file of a data directory.
FILE_NAME = "paxostob.sqlite3"
#: The layout of the tables; ``open`` refuses any other.
FORMAT_VERSION = 1
#: Written to the SQLite header so a foreign SQLite file is told apart from a damaged store.
APPLICATION_ID = int.from_bytes(b"PxTB", "big")
#: How many quick_check complaints an error message quotes (the rest add nothing).
QUICK_CHECK_ERRORS_MAX = 5

_TABLES = ("meta", "promised", "accepted", "decided", "snapshot")
_SCHEMA = (
    "CREATE TABLE meta(id INTEGER PRIMARY KEY CHECK (id = 0), format_version INTEGER NOT NULL,"
    " cluster_id TEXT NOT NULL, node_id TEXT NOT NULL, incarnation INTEGER NOT NULL,"
    " crc INTEGER NOT NULL)",
    "CREATE TABLE promised(id INTEGER PRIMARY KEY CHECK (id = 0), ballot_round INTEGER NOT NULL,"
    " ballot_node TEXT NOT NULL, crc INTEGER NOT NULL)",
    "CREATE TABLE accepted(slot INTEGER PRIMARY KEY, ballot_round INTEGER NOT NULL,"
    " ballot_node TEXT NOT NULL, value BLOB NOT NULL, crc INTEGER NOT NULL)",
    "CREATE TABLE decided(slot INTEGER PRIMARY KEY, value BLOB NOT NULL, crc INTEGER NOT NULL)",
    "CREATE TABLE snapshot(id INTEGER PRIMARY KEY CHECK (id = 0), slot INTEGER NOT NULL,"
    " meta BLOB NOT NULL, data BLOB NOT NULL, crc INTEGER NOT NULL)",
)

_CORRUPT = "(the file is corrupt)"


def _describe(e: sqlite3.Error) -> str:
    """What an SQLite error means for the store, in words, with SQLite's own text."""
    name = getattr(e, "sqlite_errorname", "") or ""
    text = f"{name}: {e}" if name else str(e)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return f"the store is in use by another process or another SqliteStorage ({text})"
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return f"the file is corrupt or not a paxostob store ({text})"
    if name.startswith("SQLITE_FULL"):
        return f"the disk is full ({text})"
    return text


def _fsync_path(path: Path, *, directory: bool) -> None:
    if directory and os.name == "nt":
        return  # Windows cannot open a directory to fsync it; NTFS journals renames.
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: ``PRAGMA synchronous``'s answer: its levels by number.
_SYNC_LEVELS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _close_quietly(conn: sqlite3.Connection) -> None:
    with suppress(sqlite3.Error):  # already failing: the first error is the one to report
        conn.close()


class SqliteStorage:
    """A ``Storage`` in ``<dir>/paxostob.sqlite3`` (see the module docstring).

    ``path`` is the data directory (created if missing), or the file itself
    when its name ends in ``.sqlite3``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        given = Path(path).absolute()
        self.path = given if given.suffix == ".sqlite3" else given / FILE_NAME
        self._conn: sqlite3.Connection | None = None
        self._sync_mode = ""
        self._unsynced = False  # a NORMAL commit is not yet covered by an fsync
        self._snapshot_slot = -1
        self._sync_count = 0

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"SqliteStorage({str(self.path)!r}, {state})"

    # ------------------------------------------------------------------ Storage

    def open(
        self, cluster_id: str, node_id: str, *, bootstrap: Sequence[str] | None = None
    ) -> DurableState:
        # This format does not record the founding membership (members is ()).
        if not cluster_id or not node_id:
            raise ConfigurationError("cluster_id and node_id must be non-empty")
        if self._conn is not None:
            raise StorageError(f"{self.path}: already open (close it first)")
        wal = self.path.with_name(self.path.name + "-wal")
        created = False
        with self._errors("cannot open the store"):
            if not self.path.exists():
                if wal.exists():
                    raise StorageError(
                        f"{self.path}: the file is missing but its write-ahead log {wal.name} "
                        "is there: the store was damaged or moved; refusing to start empty"
                    )
                if bootstrap is None:
                    raise StoreMissingError(missing_store_message(self.path, node_id))
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._create(cluster_id, node_id)
                created = True
        with self._errors("cannot open the store"):
            conn = sqlite3.connect(
                self.path.as_uri() + "?mode=rw",
                uri=True,
                isolation_level=None,  # transactions are explicit: BEGIN ... COMMIT
                timeout=0,  # a locked store is someone else's: fail at once, never wait
                check_same_thread=False,  # the runtime calls from pool threads, one at a time
            )
        try:
            state = self._load_and_bump(conn, cluster_id, node_id)
        except BaseException:
            _close_quietly(conn)
            raise
        self._conn = conn
        self._unsynced = False
        self._snapshot_slot = -1 if state.snapshot is None else state.snapshot.slot
        return dataclasses.replace(state, created=True) if created else state

    def save(self, ready: Ready) -> None:
        conn = self._require_open("save")
        if not has_durable_part(ready):
            return
        floor = self._snapshot_slot
        accepted = [self._accepted_row(a) for a in ready.accepted if a.slot > floor]
        decided = [self._decided_row(d) for d in ready.decided if d.slot > floor]
        if ready.promised is None and not accepted and not decided:
            # All covered by the snapshot: nothing to commit, but a synced save still
            # owes durability to the unsynced saves before it (and an empty commit
            # would write no WAL frame, hence no fsync).
            if ready.must_sync and self._unsynced:
                self._checkpoint(conn, "save failed")
            return
        with self._fatal(conn, "save failed"):
            self._set_sync_mode(conn, "FULL" if ready.must_sync else "NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            if ready.promised is not None:
                b = ready.promised
                conn.execute(
                    "UPDATE promised SET ballot_round = ?, ballot_node = ?, crc = ? WHERE id = 0",
                    (b.round, b.node_id, row_crc("promised", b.round, b.node_id)),
                )
            if accepted:
                conn.executemany("INSERT OR REPLACE INTO accepted VALUES (?, ?, ?, ?, ?)", accepted)
            if decided:
                conn.executemany("INSERT OR REPLACE INTO decided VALUES (?, ?, ?)", decided)
            self._commit(conn)
        if ready.must_sync:
            self._unsynced = False
        else:
            self._unsynced = True

    def install_snapshot(self, snapshot: Snapshot) -> None:
        conn = self._require_open("install_snapshot")
        if snapshot.slot < self._snapshot_slot:
            return
        s = snapshot
        with self._fatal(conn, "install_snapshot failed"):
            self._set_sync_mode(conn, "FULL")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT OR REPLACE INTO snapshot VALUES (0, ?, ?, ?, ?)",
                (s.slot, s.meta, s.data, row_crc("snapshot", s.slot, s.meta, s.data)),
            )
            conn.execute("DELETE FROM accepted WHERE slot <= ?", (s.slot,))
            conn.execute("DELETE FROM decided WHERE slot <= ?", (s.slot,))
            self._commit(conn)
        self._snapshot_slot = s.slot
        self._unsynced = False

    @property
    def sync_count(self) -> int:
        return self._sync_count

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._unsynced:
            self._checkpoint(conn, "close failed")
        with self._fatal(conn, "close failed"):
            conn.close()

    # ------------------------------------------------------------------ open

    def _create(self, cluster_id: str, node_id: str) -> None:
        """Build a complete empty store beside the real name, then rename it into place."""
        tmp = self.path.with_name(self.path.name + ".creating")
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)  # a creation a crash interrupted
        conn = sqlite3.connect(tmp, isolation_level=None, timeout=0)
        try:
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA fullfsync = ON")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            for statement in _SCHEMA:
                conn.execute(statement)
            # The first open bumps it to a random first incarnation (base.py).
            incarnation = random_incarnation() - 1
            conn.execute(
                "INSERT INTO meta VALUES (0, ?, ?, ?, ?, ?)",
                (
                    FORMAT_VERSION,
                    cluster_id,
                    node_id,
                    incarnation,
                    row_crc("meta", FORMAT_VERSION, cluster_id, node_id, incarnation),
                ),
            )
            conn.execute("INSERT INTO promised VALUES (0, 0, '', ?)", (row_crc("promised", 0, ""),))
            conn.execute("COMMIT")
        finally:
            conn.close()
        _fsync_path(tmp, directory=False)
        tmp.replace(self.path)
        _fsync_path(self.path.parent, directory=True)

    def _load_and_bump(
        self, conn: sqlite3.Connection, cluster_id: str, node_id: str
    ) -> DurableState:
        """Validate and load everything, then durably bump the incarnation."""
        with self._errors("cannot read the store"):
            # Exclusive locking before WAL: SQLite then keeps the WAL index in this
            # process's memory (no -shm file) and holds the file lock until close.
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if str(mode).lower() != "wal":
                raise StorageError(f"{self.path}: SQLite refused WAL journal mode (got {mode})")
            self._sync_mode = ""
            self._set_sync_mode(conn, "FULL")
            conn.execute("PRAGMA fullfsync = ON")
            conn.execute("PRAGMA checkpoint_fullfsync = ON")
            conn.execute("PRAGMA cell_size_check = ON")
            # On any failure the caller closes the connection, which rolls this back.
            conn.execute("BEGIN IMMEDIATE")
            state, incarnation = self._load(conn, cluster_id, node_id)
            conn.execute(
                "UPDATE meta SET incarnation = ?, crc = ? WHERE id = 0",
                (incarnation, row_crc("meta", FORMAT_VERSION, cluster_id, node_id, incarnation)),
            )
            self._commit(conn)
        return state

    def _load(
        self, conn: sqlite3.Connection, cluster_id: str, node_id: str
    ) -> tuple[DurableState, int]:
        """The validated state with the next incarnation, and that incarnation."""
        (app_id,) = conn.execute("PRAGMA application_id").fetchone()
        if app_id != APPLICATION_ID:
            raise StorageError(
                f"{self.path}: not a paxostob store (SQLite application_id {app_id:#x}, "
                f"expected {APPLICATION_ID:#x}): the file is empty, truncated or foreign"
            )
        problems = [
            line
            for r in conn.execute(f"PRAGMA quick_check({QUICK_CHECK_ERRORS_MAX})").fetchall()
            for line in str(r[0]).splitlines()
            if not line.startswith("***")  # "*** in database main ***": a heading
        ]
        if problems != ["ok"]:
            raise StorageError(
                f"{self.path}: SQLite's quick_check failed {_CORRUPT}: " + "; ".join(problems)
            )
        present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = [t for t in _TABLES if t not in present]
        if missing:
            raise StorageError(f"{self.path}: tables {', '.join(missing)} are missing {_CORRUPT}")

        incarnation = self._load_meta(conn, cluster_id, node_id) + 1
        promised = self._load_promised(conn)
        snapshot = self._load_snapshot(conn)
        floor = -1 if snapshot is None else snapshot.slot
        accepted: list[AcceptedEntry] = []
        for row in conn.execute("SELECT * FROM accepted ORDER BY slot"):
            entry = self._accepted_entry(row)
            self._check_above_snapshot("accepted", entry.slot, floor)
            accepted.append(entry)
        decided: list[DecidedEntry] = []
        for row in conn.execute("SELECT * FROM decided ORDER BY slot"):
            decided_entry = self._decided_entry(row)
            self._check_above_snapshot("decided", decided_entry.slot, floor)
            decided.append(decided_entry)
        state = DurableState(promised, tuple(accepted), tuple(decided), snapshot, incarnation)
        return state, incarnation

    def _load_meta(self, conn: sqlite3.Connection, cluster_id: str, node_id: str) -> int:
        """The stored incarnation, after checking format, checksum and ownership."""
        rows = conn.execute(
            "SELECT format_version, cluster_id, node_id, incarnation, crc FROM meta"
        ).fetchall()
        if len(rows) != 1:
            raise StorageError(f"{self.path}: the meta table has {len(rows)} rows {_CORRUPT}")
        version, their_cluster, their_node, incarnation, crc = rows[0]
        if version != FORMAT_VERSION:
            raise StorageError(
                f"{self.path}: written in storage format version {version!r}; this paxostob "
                f"reads only version {FORMAT_VERSION}"
            )
        self._check_types("the meta row", rows[0], (int, str, str, int, int))
        self._check_crc(
            "the meta row", crc, "meta", version, their_cluster, their_node, incarnation
        )
        if (their_cluster, their_node) != (cluster_id, node_id):
            raise StorageError(
                f"{self.path}: this store belongs to cluster {their_cluster!r} node "
                f"{their_node!r}, not cluster {cluster_id!r} node {node_id!r}; refusing to "
                "open it (a node that used another node's promises could break consensus)"
            )
        if incarnation < 0:
            raise StorageError(f"{self.path}: negative incarnation {incarnation} {_CORRUPT}")
        return int(incarnation)

    def _load_promised(self, conn: sqlite3.Connection) -> Ballot:
        rows = conn.execute("SELECT ballot_round, ballot_node, crc FROM promised").fetchall()
        if len(rows) != 1:
            raise StorageError(f"{self.path}: the promised table has {len(rows)} rows {_CORRUPT}")
        self._check_types("the promised ballot", rows[0], (int, str, int))
        round_, node, crc = rows[0]
        self._check_crc("the promised ballot", crc, "promised", round_, node)
        return self._ballot("the promised ballot", round_, node)

    def _load_snapshot(self, conn: sqlite3.Connection) -> Snapshot | None:
        rows = conn.execute("SELECT slot, meta, data, crc FROM snapshot").fetchall()
        if not rows:
            return None
        if len(rows) != 1:
            raise StorageError(f"{self.path}: the snapshot table has {len(rows)} rows {_CORRUPT}")
        self._check_types("the snapshot", rows[0], (int, bytes, bytes, int))
        slot, meta, data, crc = rows[0]
        self._check_crc(f"the snapshot (slot {slot})", crc, "snapshot", slot, meta, data)
        if slot < 0:
            raise StorageError(f"{self.path}: the snapshot has slot {slot} {_CORRUPT}")
        return Snapshot(slot, meta, data)

    def _accepted_entry(self, row: Any) -> AcceptedEntry:
        slot = row[0]
        what = f"accepted slot {slot}"
        self._check_types(what, row, (int, int, str, bytes, int))
        _, round_, node, value, crc = row
        self._check_crc(what, crc, "accepted", slot, round_, node, value)
        return AcceptedEntry(slot, self._ballot(what, round_, node), self._batch(what, value))

    def _decided_entry(self, row: Any) -> DecidedEntry:
        slot = row[0]
        what = f"decided slot {slot}"
        self._check_types(what, row, (int, bytes, int))
        _, value, crc = row
        self._check_crc(what, crc, "decided", slot, value)
        return DecidedEntry(slot, self._batch(what, value))

    # ------------------------------------------------------------------ validation

    def _check_types(self, what: str, row: Any, types: tuple[type, ...]) -> None:
        if len(row) != len(types) or any(
            type(v) is not t for v, t in zip(row, types, strict=False)
        ):
            raise StorageError(f"{self.path}: {what} has columns of the wrong types {_CORRUPT}")

    def _check_crc(self, what: str, crc: int, table: str, *columns: int | str | bytes) -> None:
        if row_crc(table, *columns) != crc:
            raise StorageError(f"{self.path}: {what} fails its checksum {_CORRUPT}")

    def _check_above_snapshot(self, table: str, slot: int, floor: int) -> None:
        if slot <= floor:
            raise StorageError(
                f"{self.path}: {table} slot {slot} is at or below the snapshot's slot {floor} "
                "(the file is inconsistent)"
            )

    def _ballot(self, what: str, round_: int, node: str) -> Ballot:
        if round_ < 0:
            raise StorageError(f"{self.path}: {what} has a negative ballot round {_CORRUPT}")
        return Ballot(round_, node)

    def _batch(self, what: str, value: bytes) -> Batch:
        try:
            return decode_batch(value)
        except DecodeError as e:
            raise StorageError(f"{self.path}: {what} cannot be decoded: {e} {_CORRUPT}") from e

    # ------------------------------------------------------------------ writing

    @staticmethod
    def _accepted_row(a: AcceptedEntry) -> tuple[int, int, str, bytes, int]:
        value = encode_batch(a.value)
        b = a.ballot
        return (
            a.slot,
            b.round,
            b.node_id,
            value,
            row_crc("accepted", a.slot, b.round, b.node_id, value),
        )

    @staticmethod
    def _decided_row(d: DecidedEntry) -> tuple[int, bytes, int]:
        value = encode_batch(d.value)
        return (d.slot, value, row_crc("decided", d.slot, value))

    def _checkpoint(self, conn: sqlite3.Connection, doing: str) -> None:
        """Make every commit durable: a checkpoint fsyncs the WAL, copies it, fsyncs the file."""
        with self._fatal(conn, doing):
            (busy, _, _) = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:  # cannot happen while we hold the exclusive lock; never pass it silently
                raise sqlite3.OperationalError("the checkpoint was blocked (SQLITE_BUSY)")
        if self._sync_mode != "OFF":  # a checkpoint fsyncs unless synchronous is OFF
            self._sync_count += 1
        self._unsynced = False

    def _commit(self, conn: sqlite3.Connection) -> None:
        """COMMIT, counted in ``sync_count`` only if SQLite fsyncs the WAL at it (FULL, EXTRA)."""
        conn.execute("COMMIT")
        if self._sync_mode in ("FULL", "EXTRA"):
            self._sync_count += 1

    def _set_sync_mode(self, conn: sqlite3.Connection, mode: str) -> None:
        if mode != self._sync_mode:
            conn.execute(f"PRAGMA synchronous = {mode}")
            # The mode SQLite reports, not the one asked for: sync_count trusts this.
            (level,) = conn.execute("PRAGMA synchronous").fetchone()
            self._sync_mode = _SYNC_LEVELS.get(level, str(level))

    def _require_open(self, what: str) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(f"{self.path}: {what} on a store that is not open")
        return self._conn

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Translate SQLite and OS errors at the boundary (docs/design.md, 'Conventions')."""
        try:
            yield
        except sqlite3.Error as e:
            raise StorageError(f"{self.path}: {doing}: {_describe(e)}") from e
        except OSError as e:
            raise StorageError(f"{self.path}: {doing}: {e}") from e

    @contextmanager
    def _fatal(self, conn: sqlite3.Connection, doing: str) -> Iterator[None]:
        """A failed write leaves the disk in an unknown state: report it and close the store."""
        try:
            yield
        except (sqlite3.Error, OSError) as e:
            self._conn = None
            _close_quietly(conn)  # rolls back an open transaction
            detail = _describe(e) if isinstance(e, sqlite3.Error) else str(e)
            raise StorageError(
                f"{self.path}: {doing}: {detail}; the store is closed "
                "(open it again to recover the last durable state)"
            ) from e
