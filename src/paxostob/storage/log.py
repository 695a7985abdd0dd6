"""``LogStorage``: the durable ``Storage`` as one append-only, checksummed record log.

Theory of operation: the data directory holds ``paxostob.log``. It starts with
a header (magic, format version, cluster id, node id, CRC-32) and then holds
records, each framed as ``mark, length, CRC-32 over length and body, body``:

- a ``save`` appends one record (its promise, accepted and decided entries)
  with one ``os.pwrite`` — in the kernel's page cache when ``save`` returns,
  so it survives ``kill -9`` — and ``os.fdatasync`` only when
  ``ready.must_sync``. The file is grown ahead of the records in zero-filled
  chunks of ``PREALLOC_BYTES``, so most syncs flush data only: a sync after
  an append that grew the file must also commit the new size and blocks
  through the file system's journal, which costs about as much CPU and time
  again (docs/storage.md). ``close`` cuts the zeros off. One record per save
  is what makes a save atomic and the saves ordered: replay applies whole
  records, in file order.
- ``open`` replays the log into the state, takes an exclusive ``flock``, cuts
  a torn tail and appends (and syncs) an incarnation record.
- ``install_snapshot`` writes the snapshot and the state above it (kept
  encoded in memory, bounded by the snapshots the runtime takes) into a new
  file, syncs it and renames it over the log: compaction, so the file stays
  bounded. The rename is the commit point; the directory is synced after it.

Why a log and not SQLite: a save here costs a few ``struct.pack`` calls, one
CRC and one ``write``; SQLite's costs a transaction, B-tree inserts and about
a dozen page writes and reads (docs/storage.md has the measurements).

Damage: a crash may cut the last record, or (power loss) leave garbage or
zeros after the last complete one. So a bad record is tolerated only when no
valid record follows it anywhere in the file: then it is the torn tail, and
``open`` truncates it. A bad record with a valid one after it, a bad header,
another cluster's or node's store, an unknown format version or record type,
and a record that passes its checksum but does not decode are all refused
with a ``StorageError`` naming the file and what is wrong.

The store is created atomically: a complete empty log is written to a
temporary name, synced and hard-linked to the real name (``link`` never
replaces an existing file, so two racing creators cannot clobber each
other), so a present ``paxostob.log`` is always a complete store.

Rules: POSIX only (``fcntl.flock``; ``default_storage`` picks SQLite
elsewhere). A directory that holds an SQLite store (``paxostob.sqlite3``) is
refused: keep opening it with ``SqliteStorage`` (``default_storage`` does).
"""

from __future__ import annotations

import binascii
import fcntl  # POSIX only: default_storage picks SqliteStorage where it is missing
import os
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from ..core.events import AcceptedEntry, Ready
from ..core.types import ZERO_BALLOT, Ballot, Batch, DecidedEntry
from ..errors import ConfigurationError, DecodeError, StorageError
from .base import DurableState, Snapshot, has_durable_part
from .encoding import decode_batch, encode_batch

__all__ = ["FILE_NAME", "FORMAT_VERSION", "SQLITE_FILE_NAME", "LogStorage"]

#: The one file of a data directory (not SQLite's name: neither kind misreads the other).
FILE_NAME = "paxostob.log"
#: The file SqliteStorage keeps in a data directory; its presence means "an SQLite store".
SQLITE_FILE_NAME = "paxostob.sqlite3"
#: The layout of header and records; ``open`` refuses any other.
FORMAT_VERSION = 1
#: The first bytes of the file: tells a log store apart from anything else.
MAGIC = b"PxTBlog\n"
#: The first bytes of every record: lets ``open`` look for valid records after a bad one.
RECORD_MARK = b"PxRc"
#: How far ahead of its records the file is grown with zeros (a whole number of pages).
PREALLOC_BYTES = 1 << 20

REC_SAVE = 1
REC_SNAPSHOT = 2
REC_INCARNATION = 3

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_VERSION = struct.Struct(">H")
_FRAME = struct.Struct(">4sQI")  # mark, body length, CRC-32 over the length bytes and the body
_LENGTH = struct.Struct(">Q")
_PROMISED = struct.Struct(">BBQH")  # type SAVE, has promise (1), round, node id length
_PROMISED_TAIL = struct.Struct(">QH")  # what replay reads after the type and the flag
_NO_PROMISE = _U8.pack(REC_SAVE) + _U8.pack(0)
_ACC = struct.Struct(">QQH")  # slot, ballot round, ballot node length (then node, value)
_DEC = struct.Struct(">QI")  # slot, value length (then value)
_SNAP = struct.Struct(">BQ")  # type SNAPSHOT, slot (then meta, data with u64 lengths)
_INC = struct.Struct(">BQ")  # type INCARNATION, incarnation
_U64_MAX = (1 << 64) - 1
_U16_MAX = (1 << 16) - 1

_CORRUPT = "(the file is corrupt)"


class _Corrupt(Exception):
    """A record that passed its checksum but does not parse; the caller names the record."""


def _crc(length: bytes | memoryview, body: bytes | memoryview) -> int:
    return binascii.crc32(body, binascii.crc32(length))


def _frame(body: bytes) -> bytes:
    length = _LENGTH.pack(len(body))
    return _FRAME.pack(RECORD_MARK, len(body), _crc(length, body)) + body


def _header(cluster_id: str, node_id: str) -> bytes:
    cluster, node = cluster_id.encode("utf-8"), node_id.encode("utf-8")
    if max(len(cluster), len(node)) > _U16_MAX:
        raise ConfigurationError(f"cluster_id and node_id must be under {_U16_MAX} bytes")
    version = _VERSION.pack(FORMAT_VERSION)
    head = b"".join((MAGIC, version, _U16.pack(len(cluster)), cluster, _U16.pack(len(node)), node))
    return head + _U32.pack(binascii.crc32(head))


def _node_bytes(node_id: str) -> bytes:
    raw = node_id.encode("utf-8")
    if len(raw) > _U16_MAX:
        raise ConfigurationError(f"ballot node id longer than {_U16_MAX} bytes")
    return raw


def _accepted_frame(a: AcceptedEntry) -> bytes:
    """One accepted entry as it sits in a SAVE record: slot, ballot, value."""
    node = _node_bytes(a.ballot.node_id)
    value = encode_batch(a.value)
    return b"".join(
        (_ACC.pack(a.slot, a.ballot.round, len(node)), node, _U32.pack(len(value)), value)
    )


def _decided_frame(d: DecidedEntry) -> bytes:
    value = encode_batch(d.value)
    return _DEC.pack(d.slot, len(value)) + value


def _promised_part(b: Ballot | None) -> bytes:
    if b is None:
        return _NO_PROMISE
    node = _node_bytes(b.node_id)
    return _PROMISED.pack(REC_SAVE, 1, b.round, len(node)) + node


def _save_body(promised: Ballot | None, accepted: list[bytes], decided: list[bytes]) -> bytes:
    return b"".join(
        (
            _promised_part(promised),
            _U32.pack(len(accepted)),
            *accepted,
            _U32.pack(len(decided)),
            *decided,
        )
    )


def _sync(fd: int) -> None:
    """Make the file's writes durable: ``F_FULLFSYNC`` where ``fsync`` does not flush the drive."""
    full = getattr(fcntl, "F_FULLFSYNC", None)
    if full is not None:  # macOS: fsync leaves the data in the drive's cache
        fcntl.fcntl(fd, full)
    elif hasattr(os, "fdatasync"):
        os.fdatasync(fd)  # the data and the size: all an appended log needs
    else:
        os.fsync(fd)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    """``os.pwrite`` until all of ``data`` is written (a regular file may take a short write)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


class _Reader:
    """Reads fields of one record's body; never trusts a length."""

    __slots__ = ("end", "pos", "view")

    def __init__(self, view: memoryview) -> None:
        self.view, self.pos, self.end = view, 0, len(view)

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > self.end:
            raise _Corrupt(f"ends {self.pos + n - self.end} bytes early")
        start = self.pos
        self.pos += n
        return self.view[start : self.pos]

    def unpack(self, s: struct.Struct) -> tuple[int, ...]:
        return s.unpack(self.take(s.size))

    def text(self, n: int) -> str:
        try:
            return str(self.take(n), "utf-8")
        except UnicodeDecodeError as e:
            raise _Corrupt("has a node id that is not UTF-8") from e


class _Replay:
    """The state a log describes, built record by record.

    Entries are kept as the encoded frames a SAVE record holds (to write them
    again at compaction) plus their raw value (decoded once, at the end).
    """

    def __init__(self) -> None:
        self.promised = ZERO_BALLOT
        self.promised_set = False
        self.accepted: dict[int, tuple[bytes, Ballot, bytes]] = {}
        self.decided: dict[int, tuple[bytes, bytes]] = {}
        self.snapshot: Snapshot | None = None
        self.incarnation = 0

    @property
    def floor(self) -> int:
        return -1 if self.snapshot is None else self.snapshot.slot

    def apply(self, body: memoryview) -> None:
        r = _Reader(body)
        (kind,) = r.unpack(_U8)
        if kind == REC_SAVE:
            self._save(r)
        elif kind == REC_SNAPSHOT:
            (slot,) = r.unpack(_U64)
            (meta_len,) = r.unpack(_U64)
            meta = bytes(r.take(meta_len))
            (data_len,) = r.unpack(_U64)
            data = bytes(r.take(data_len))
            if slot < self.floor:
                raise _Corrupt(f"moves the snapshot back from slot {self.floor} to {slot}")
            self.snapshot = Snapshot(slot, meta, data)
            self.accepted = {s: a for s, a in self.accepted.items() if s > slot}
            self.decided = {s: d for s, d in self.decided.items() if s > slot}
        elif kind == REC_INCARNATION:
            (incarnation,) = r.unpack(_U64)
            if incarnation <= self.incarnation:
                raise _Corrupt(f"moves the incarnation back from {self.incarnation}")
            self.incarnation = incarnation
        else:
            raise _Corrupt(f"has the unknown type {kind}")
        if r.pos != r.end:
            raise _Corrupt(f"has {r.end - r.pos} trailing bytes")

    def _save(self, r: _Reader) -> None:
        (has_promise,) = r.unpack(_U8)
        if has_promise not in (0, 1):
            raise _Corrupt(f"has a promise flag of {has_promise}")
        if has_promise:
            round_, node_len = r.unpack(_PROMISED_TAIL)
            self.promised = Ballot(round_, r.text(node_len))
            self.promised_set = True
        floor = self.floor
        (count,) = r.unpack(_U32)
        for _ in range(count):
            start = r.pos
            slot, round_, node_len = r.unpack(_ACC)
            node = r.text(node_len)
            (value_len,) = r.unpack(_U32)
            value = bytes(r.take(value_len))
            if slot > floor:
                frame = bytes(r.view[start : r.pos])
                self.accepted[slot] = (frame, Ballot(round_, node), value)
        (count,) = r.unpack(_U32)
        for _ in range(count):
            start = r.pos
            slot, value_len = r.unpack(_DEC)
            value = bytes(r.take(value_len))
            if slot > floor:
                self.decided[slot] = (bytes(r.view[start : r.pos]), value)


def _valid_record_at(data: memoryview, pos: int) -> bool:
    """Whether a whole record with a good checksum starts at byte ``pos``."""
    if pos + _FRAME.size > len(data):
        return False
    mark, length, crc = _FRAME.unpack_from(data, pos)
    end = pos + _FRAME.size + length
    if mark != RECORD_MARK or end > len(data):
        return False
    return bool(_crc(data[pos + 4 : pos + 12], data[pos + _FRAME.size : end]) == crc)


class LogStorage:
    """A ``Storage`` in ``<dir>/paxostob.log`` (see the module docstring).

    ``path`` is the data directory (created if missing), or the file itself
    when its name ends in ``.log``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        given = Path(path).absolute()
        self.path = given if given.suffix == ".log" else given / FILE_NAME
        self._fd: int | None = None
        self._ids = ("", "")
        self._header = b""
        self._unsynced = False  # a save was written but not yet covered by a sync
        self._end = 0  # where the next record goes: the end of the valid records
        self._allocated = 0  # the file's size: zeros from _end to here
        self._sync_count = 0
        self._incarnation = 0
        # The state above the snapshot, encoded as in a SAVE record: compaction
        # writes it again. Bounded by the runtime's snapshots, as the core's own.
        self._promised: Ballot | None = None
        self._accepted: dict[int, bytes] = {}
        self._decided: dict[int, bytes] = {}
        self._snapshot_slot = -1

    def __repr__(self) -> str:
        state = "open" if self._fd is not None else "closed"
        return f"LogStorage({str(self.path)!r}, {state})"

    # ------------------------------------------------------------------ Storage

    def open(self, cluster_id: str, node_id: str) -> DurableState:
        if not cluster_id or not node_id:
            raise ConfigurationError("cluster_id and node_id must be non-empty")
        if self._fd is not None:
            raise StorageError(f"{self.path}: already open (close it first)")
        header = _header(cluster_id, node_id)
        with self._errors("cannot open the store"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            sqlite = self.path.with_name(SQLITE_FILE_NAME)
            if sqlite.exists() or sqlite.with_name(SQLITE_FILE_NAME + "-wal").exists():
                raise StorageError(
                    f"{self.path}: the directory holds an SQLite store ({sqlite.name}); "
                    "refusing to start a log store beside it: open it with SqliteStorage "
                    "(default_storage does), or move one of the two away"
                )
            if not self.path.exists():
                self._create(header)
            fd = os.open(self.path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        try:
            state = self._load_and_bump(fd, cluster_id, node_id)
        except BaseException:
            os.close(fd)  # releases the lock; nothing was written
            raise
        self._fd = fd
        self._ids = (cluster_id, node_id)
        self._header = header
        self._unsynced = False
        self._sync_count += 1
        return state

    def save(self, ready: Ready) -> None:
        fd = self._require_open("save")
        if not has_durable_part(ready):
            return
        floor = self._snapshot_slot
        try:
            acc = [(a.slot, _accepted_frame(a)) for a in ready.accepted if a.slot > floor]
            dec = [(d.slot, _decided_frame(d)) for d in ready.decided if d.slot > floor]
            body = _save_body(ready.promised, [f for _, f in acc], [f for _, f in dec])
        except struct.error as e:  # a slot or round out of the u64 range: misuse, nothing written
            raise ConfigurationError(f"cannot encode the save: {e}") from e
        if ready.promised is None and not acc and not dec:
            # All covered by the snapshot: nothing to write, but a synced save still
            # owes durability to the unsynced saves before it.
            if ready.must_sync and self._unsynced:
                with self._fatal(fd, "save failed"):
                    _sync(fd)
                self._sync_count += 1
                self._unsynced = False
            return
        with self._fatal(fd, "save failed"):
            self._append(fd, _frame(body))
            if ready.must_sync:
                _sync(fd)
        if ready.promised is not None:
            self._promised = ready.promised
        self._accepted.update(acc)
        self._decided.update(dec)
        if ready.must_sync:
            self._sync_count += 1
            self._unsynced = False
        else:
            self._unsynced = True

    def install_snapshot(self, snapshot: Snapshot) -> None:
        fd = self._require_open("install_snapshot")
        if snapshot.slot < self._snapshot_slot:
            return
        s = snapshot
        accepted = {slot: f for slot, f in self._accepted.items() if slot > s.slot}
        decided = {slot: f for slot, f in self._decided.items() if slot > s.slot}
        with self._fatal(fd, "install_snapshot failed"):
            new_fd = self._rewrite(s, accepted, decided)
        with suppress(OSError):  # the replaced file: what happens to it no longer matters
            os.close(fd)  # the new file holds the lock already
        self._fd = new_fd
        self._accepted, self._decided = accepted, decided
        self._snapshot_slot = s.slot
        self._sync_count += 1
        self._unsynced = False

    @property
    def sync_count(self) -> int:
        return self._sync_count

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        self._accepted, self._decided, self._promised = {}, {}, None
        try:
            if self._allocated > self._end:
                os.ftruncate(fd, self._end)  # the zeros grown ahead: leave the exact log
                self._allocated = self._end
                self._unsynced = True  # the new size is to be synced too
            if self._unsynced:
                _sync(fd)
                self._sync_count += 1
                self._unsynced = False
        except OSError as e:
            raise StorageError(f"{self.path}: close failed: {e}") from e
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ files

    def _create(self, header: bytes) -> None:
        """Write a complete empty log beside the real name, then link it into place."""
        fd, tmp = tempfile.mkstemp(prefix=FILE_NAME + ".", suffix=".tmp", dir=self.path.parent)
        try:
            try:
                _write_all(fd, header, 0)
                _sync(fd)
            finally:
                os.close(fd)
            with suppress(FileExistsError):  # another creator won the race: use its store
                os.link(tmp, self.path)
        finally:
            os.unlink(tmp)
        _sync_dir(self.path.parent)

    def _rewrite(
        self, snapshot: Snapshot, accepted: dict[int, bytes], decided: dict[int, bytes]
    ) -> int:
        """A new log of ``snapshot`` and the state above it, synced and renamed over the log.

        Returns the new file's descriptor, locked before the rename: until the
        old file is closed both are locked by us, so no second opener slips in.
        """
        snap_body = b"".join(
            (
                _SNAP.pack(REC_SNAPSHOT, snapshot.slot),
                _U64.pack(len(snapshot.meta)),
                snapshot.meta,
                _U64.pack(len(snapshot.data)),
                snapshot.data,
            )
        )
        save_body = _save_body(
            self._promised,
            [accepted[slot] for slot in sorted(accepted)],
            [decided[slot] for slot in sorted(decided)],
        )
        inc_body = _INC.pack(REC_INCARNATION, self._incarnation)
        fd, tmp = tempfile.mkstemp(prefix=FILE_NAME + ".", suffix=".tmp", dir=self.path.parent)
        renamed = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            content = b"".join(
                (self._header, _frame(snap_body), _frame(save_body), _frame(inc_body))
            )
            _write_all(fd, content, 0)
            _sync(fd)
            os.replace(tmp, self.path)
            renamed = True
            _sync_dir(self.path.parent)
        except BaseException:
            os.close(fd)
            if not renamed:
                with suppress(OSError):
                    os.unlink(tmp)
            raise
        self._end = self._allocated = len(content)
        return fd

    # ------------------------------------------------------------------ open

    def _load_and_bump(self, fd: int, cluster_id: str, node_id: str) -> DurableState:
        """Lock, validate and replay everything, cut a torn tail, then record the incarnation."""
        with self._errors("cannot open the store"):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise StorageError(
                    f"{self.path}: the store is in use by another process or another "
                    "LogStorage (it is locked)"
                ) from e
            mine, now = os.fstat(fd), os.stat(self.path)
            if (mine.st_dev, mine.st_ino) != (now.st_dev, now.st_ino):
                # Compacted (renamed over) by its owner between our open and flock.
                raise StorageError(
                    f"{self.path}: the store is in use by another process or another LogStorage"
                )
            for leftover in self.path.parent.glob(FILE_NAME + ".*.tmp"):
                leftover.unlink()  # a creation or compaction a crash interrupted
            data = self._read_all(fd)
        replay, end = self._replay(data, cluster_id, node_id)
        state = self._state(replay)
        incarnation = replay.incarnation + 1
        with self._errors("cannot open the store"):
            if end < len(data):
                # The torn tail (no valid record follows it), or the zeros grown
                # ahead by a life that did not close.
                os.ftruncate(fd, end)
            self._end = self._allocated = end
            self._append(fd, _frame(_INC.pack(REC_INCARNATION, incarnation)))
            _sync(fd)
        self._incarnation = incarnation
        self._promised = replay.promised if replay.promised_set else None
        self._accepted = {s: a[0] for s, a in replay.accepted.items()}
        self._decided = {s: d[0] for s, d in replay.decided.items()}
        self._snapshot_slot = replay.floor
        return DurableState(
            state.promised, state.accepted, state.decided, state.snapshot, incarnation
        )

    def _append(self, fd: int, record: bytes) -> None:
        """Write ``record`` after the last one, first growing the file with zeros if needed."""
        end = self._end + len(record)
        if end > self._allocated:
            grown = max(end, self._allocated + PREALLOC_BYTES)
            grown += -grown % 4096  # whole pages
            _write_all(fd, bytes(grown - self._allocated), self._allocated)
            self._allocated = grown
        _write_all(fd, record, self._end)
        self._end = end

    @staticmethod
    def _read_all(fd: int) -> bytes:
        size = os.fstat(fd).st_size
        chunks: list[bytes] = []
        offset = 0
        while True:
            chunk = os.pread(fd, max(size - offset, 1 << 16), offset)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            offset += len(chunk)

    def _replay(self, raw: bytes, cluster_id: str, node_id: str) -> tuple[_Replay, int]:
        """The state the log holds and where its valid records end."""
        data = memoryview(raw)
        pos = self._check_header(data, cluster_id, node_id)
        replay = _Replay()
        n = len(data)
        while pos < n:
            if not _valid_record_at(data, pos):
                break
            (length,) = _LENGTH.unpack_from(data, pos + 4)
            start = pos + _FRAME.size
            try:
                replay.apply(data[start : start + length])
            except (_Corrupt, struct.error) as e:
                raise StorageError(
                    f"{self.path}: the record at byte {pos} passes its checksum but {e} {_CORRUPT}"
                ) from e
            pos = start + length
        if pos < n:
            # A bad record: the torn tail of a crash, unless a valid record follows it.
            later = raw.find(RECORD_MARK, pos + 1)
            while later != -1:
                if _valid_record_at(data, later):
                    raise StorageError(
                        f"{self.path}: the record at byte {pos} is damaged and a valid record "
                        f"follows it at byte {later} {_CORRUPT}"
                    )
                later = raw.find(RECORD_MARK, later + 1)
        return replay, pos

    def _check_header(self, data: memoryview, cluster_id: str, node_id: str) -> int:
        """The header's length, after checking magic, version, checksum and ownership."""
        if bytes(data[: len(MAGIC)]) != MAGIC:
            raise StorageError(
                f"{self.path}: not a paxostob log store (it does not start with {MAGIC!r}): "
                "the file is empty, truncated or foreign"
            )
        r = _Reader(data)
        try:
            r.take(len(MAGIC))
            (version,) = r.unpack(_VERSION)
            if version != FORMAT_VERSION:
                raise StorageError(
                    f"{self.path}: written in storage format version {version!r}; this "
                    f"paxostob reads only version {FORMAT_VERSION}"
                )
            (cluster_len,) = r.unpack(_U16)
            their_cluster_raw = bytes(r.take(cluster_len))
            (node_len,) = r.unpack(_U16)
            their_node_raw = bytes(r.take(node_len))
            end = r.pos
            (crc,) = r.unpack(_U32)
        except _Corrupt as e:
            raise StorageError(f"{self.path}: the header is cut short {_CORRUPT}") from e
        if binascii.crc32(data[:end]) != crc:
            raise StorageError(f"{self.path}: the header fails its checksum {_CORRUPT}")
        their_cluster = their_cluster_raw.decode("utf-8", "replace")
        their_node = their_node_raw.decode("utf-8", "replace")
        if (their_cluster, their_node) != (cluster_id, node_id):
            raise StorageError(
                f"{self.path}: this store belongs to cluster {their_cluster!r} node "
                f"{their_node!r}, not cluster {cluster_id!r} node {node_id!r}; refusing to "
                "open it (a node that used another node's promises could break consensus)"
            )
        return r.pos

    def _state(self, replay: _Replay) -> DurableState:
        """The replayed state with every value decoded (incarnation not yet bumped)."""
        accepted = tuple(
            AcceptedEntry(slot, ballot, self._batch(f"accepted slot {slot}", value))
            for slot, (_, ballot, value) in sorted(replay.accepted.items())
        )
        decided = tuple(
            DecidedEntry(slot, self._batch(f"decided slot {slot}", value))
            for slot, (_, value) in sorted(replay.decided.items())
        )
        return DurableState(replay.promised, accepted, decided, replay.snapshot, replay.incarnation)

    def _batch(self, what: str, value: bytes) -> Batch:
        try:
            return decode_batch(value)
        except DecodeError as e:
            raise StorageError(f"{self.path}: {what} cannot be decoded: {e} {_CORRUPT}") from e

    # ------------------------------------------------------------------ errors

    def _require_open(self, what: str) -> int:
        if self._fd is None:
            raise StorageError(f"{self.path}: {what} on a store that is not open")
        return self._fd

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Translate OS errors at the boundary (DESIGN.md §7)."""
        try:
            yield
        except OSError as e:
            raise StorageError(f"{self.path}: {doing}: {e}") from e

    @contextmanager
    def _fatal(self, fd: int, doing: str) -> Iterator[None]:
        """A failed write leaves the disk in an unknown state: report it and close the store."""
        try:
            yield
        except OSError as e:
            self._fd = None
            self._accepted, self._decided, self._promised = {}, {}, None
            with suppress(OSError):
                os.close(fd)
            raise StorageError(
                f"{self.path}: {doing}: {e}; the store is closed "
                "(open it again to recover the last durable state)"
            ) from e
