"""``LogStorage``: the durable ``Storage`` as one append-only, checksummed record log.

Theory of operation: the data directory holds ``paxostob.log``. It starts with
a header (magic, format version, cluster id, node id, CRC-32) and then holds
records, each framed as ``mark, length, synced_upto, flags, CRC-32, body``
(the CRC covers everything after the mark). ``synced_upto`` is the length of
the file known durable when the record was written (the end of the records
at the last completed sync); the flag ``FLAG_SYNCED`` says a sync followed
the record's write:

- a ``save`` appends one record (its promise, accepted and decided entries)
  with one ``os.pwrite`` — in the kernel's page cache when ``save`` returns,
  so it survives ``kill -9`` — and ``os.fdatasync`` only when
  ``ready.must_sync`` (then the record is flagged). Every sync the store
  makes comes right after a flagged record: ``close`` and a synced save the
  snapshot wholly covered, which have no record of their own, append a
  ``REC_SYNC`` record (nothing but the flag) first. The file is grown ahead
  of the records in zero-filled chunks of ``PREALLOC_BYTES``, so most syncs
  flush data only: a sync after an append that grew the file must also
  commit the new size and blocks through the file system's journal, which
  costs about as much CPU and time again (docs/storage.md). ``close`` cuts
  the zeros off. One record per save is what makes a save atomic and the
  saves ordered: replay applies whole records, in file order.
- ``open`` replays the log into the state, takes an exclusive ``flock``, cuts
  a torn tail and appends (and syncs) a flagged incarnation record.
- ``install_snapshot`` writes the snapshot and the state above it into a
  new file, syncs it and renames it over the log: compaction, so the file
  stays bounded. The rename is the commit point; the directory is synced
  after it. Its records are all flagged (one sync covered them before the
  rename). The state above the snapshot is kept in memory as the entries
  the saves were given (the core holds the same values in its log, so they
  cost no second copy) and encoded again at compaction, when only the few
  entries above the new snapshot are left. The snapshot itself is written in
  pieces (``os.pwrite`` each, the checksum computed over the pieces), never
  copied into one record buffer: with a large state, each such copy is
  another snapshot-sized allocation.

Why a log and not SQLite: a save here costs a few ``struct.pack`` calls, one
CRC and one ``write``; SQLite's costs a transaction, B-tree inserts and about
a dozen page writes and reads (docs/storage.md has the measurements).

Damage: a kill cuts at most the last record. A power loss may leave
anything in what was written after the last completed sync — the page cache
writes pages back in any order, so an unsynced record can be lost while a
later one reached the disk — and nothing of that was promised (base.py,
guarantee 3). What a completed sync covered is kept intact by an honest disk.
So at the first bad record, at byte X, ``open`` looks at every valid record
after it: one with ``synced_upto > X``, or a flagged one (its sync covered
X), shows X lay in a synced region, so the damage is bit rot or a bad copy:
refused. Without one, everything from X on was written after the last sync
that completed, and ``open`` cuts it all off (the saves kept stay a prefix).

Why this never drops a synced record: every sync of the store follows a
flagged record at the end of the records, and every record notes how far
the file was synced before it. On an honest disk the records up to the last
completed sync's end S are intact, so the first bad record lies at or past
S: only unsynced saves are cut. If bytes before S did rot, the flagged
record ending at S shows it, or, when that very record is the damaged one,
any record written after that sync (it notes ``synced_upto = S``): refused.
Only damage to the last synced record with no valid record after it passes
for a torn tail (as in format 1, as a bad last frame in SQLite's WAL). The
price of the flag: a power loss *during* a sync may leave the flagged record
on the disk but an earlier unsynced page not; that is refused too (safe,
but the operator must act), while damage anywhere after the last sync is
tolerated. When records are cut that way, ``open`` syncs the cut before it
writes its incarnation record over the hole, so a second power loss cannot
leave an old record right behind the new one.

Refused as well, with a ``StorageError`` naming the file and what is wrong:
a bad header, another cluster's or node's store, an unknown format version
or record type, and a record that passes its checksum but does not decode
(or notes a ``synced_upto`` past its own start or below its predecessor's).

Format 1 (before ``synced_upto`` and the flag) is read, with its own damage
rule — any valid record after a bad one refuses it, as format 1 always did —
and then rewritten in the current format before ``open`` returns, the way a
compaction rewrites the log (a new file, synced, renamed over the old one; a
crash leaves the old file, read again next time). Appending format-2 records
to a format-1 file was the alternative; it would leave records that say
nothing about syncs in front of ones that do, and an older paxostob would
see format-2 records as a torn tail to cut — losing promises — where a
rewritten file's header makes it refuse the store by its version instead.

The store is made only when ``open`` is given ``bootstrap`` (the founding
membership); a missing log is otherwise refused (``StoreMissingError``): a
node whose directory was wiped must not vote again as if it had promised
nothing. A new log holds a ``REC_MEMBERS`` record (the membership, kept by
every compaction) and an incarnation record one below a random first
incarnation (base.py says why).

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
import dataclasses
import fcntl  # POSIX only: default_storage picks SqliteStorage where it is missing
import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from ..core.events import AcceptedEntry, Ready
from ..core.types import ZERO_BALLOT, Ballot, Batch, DecidedEntry
from ..errors import ConfigurationError, DecodeError, StorageError, StoreMissingError
from .base import (
    DurableState,
    Snapshot,
    has_durable_part,
    missing_store_message,
    random_incarnation,
)
from .encoding import decode_batch, encode_batch

__all__ = ["FILE_NAME", "FORMAT_VERSION", "SQLITE_FILE_NAME", "LogStorage"]

#: The one file of a data directory (not SQLite's name: neither kind misreads the other).
FILE_NAME = "paxostob.log"
#: The file SqliteStorage keeps in a data directory; its presence means "an SQLite store".
SQLITE_FILE_NAME = "paxostob.sqlite3"
#: The layout of header and records that this code writes.
FORMAT_VERSION = 2
#: The layouts ``open`` reads: version 1 (no sync notes) is rewritten as version 2 at open.
FORMAT_VERSIONS_READ = (1, 2)
#: The first bytes of the file: tells a log store apart from anything else.
MAGIC = b"PxTBlog\n"
#: The first bytes of every record: lets ``open`` look for valid records after a bad one.
RECORD_MARK = b"PxRc"
#: How far ahead of its records the file is grown with zeros (a whole number of pages).
PREALLOC_BYTES = 1 << 20

REC_SAVE = 1
REC_SNAPSHOT = 2
REC_INCARNATION = 3
REC_SYNC = 4  # nothing of its own: marks a sync of the records before it (close, a covered save)
REC_MEMBERS = 5  # the membership the store was made for (bootstrap); every compaction keeps it

#: A record's flag: a sync followed its write (the save returned only after it), so if that
#: sync completed, this record and every byte before it were durable.
FLAG_SYNCED = 1

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_VERSION = struct.Struct(">H")
# mark, body length, synced_upto, flags, CRC-32 over the three fields' bytes and the body
_FRAME = struct.Struct(">4sQQBI")
_FRAME_FIELDS = struct.Struct(">QQB")  # body length, synced_upto, flags: the CRC's first bytes
_FRAME_V1 = struct.Struct(">4sQI")  # format 1: mark, body length, CRC-32 over length and body
_LENGTH = struct.Struct(">Q")
_PROMISED = struct.Struct(">BBQH")  # type SAVE, has promise (1), round, node id length
_PROMISED_TAIL = struct.Struct(">QH")  # what replay reads after the type and the flag
_NO_PROMISE = _U8.pack(REC_SAVE) + _U8.pack(0)
_ACC = struct.Struct(">QQH")  # slot, ballot round, ballot node length (then node, value)
_DEC = struct.Struct(">QI")  # slot, value length (then value)
_SNAP = struct.Struct(">BQ")  # type SNAPSHOT, slot (then meta, data with u64 lengths)
_INC = struct.Struct(">BQ")  # type INCARNATION, incarnation
_SYNC_BODY = _U8.pack(REC_SYNC)
_MEMBERS = struct.Struct(">BH")  # type MEMBERS, count (then u16 length and UTF-8 id each)
_U64_MAX = (1 << 64) - 1
_U16_MAX = (1 << 16) - 1

_CORRUPT = "(the file is corrupt)"


class _Corrupt(Exception):
    """A record that passed its checksum but does not parse; the caller names the record."""


def _crc(length: bytes | memoryview, body: bytes | memoryview) -> int:
    return binascii.crc32(body, binascii.crc32(length))


def _frame(body: bytes, synced_upto: int, flags: int) -> bytes:
    """One record: ``synced_upto`` is how far the file was durable when it was written."""
    fields = _FRAME_FIELDS.pack(len(body), synced_upto, flags)
    return b"".join((RECORD_MARK, fields, _U32.pack(_crc(fields, body)), body))


def _frame_head(pieces: Sequence[bytes], synced_upto: int, flags: int) -> bytes:
    """``_frame`` without its body, for a body given as ``pieces`` (never joined)."""
    fields = _FRAME_FIELDS.pack(sum(len(p) for p in pieces), synced_upto, flags)
    crc = binascii.crc32(fields)
    for piece in pieces:
        crc = binascii.crc32(piece, crc)
    return b"".join((RECORD_MARK, fields, _U32.pack(crc)))


def _header(cluster_id: str, node_id: str) -> bytes:
    cluster, node = cluster_id.encode("utf-8"), node_id.encode("utf-8")
    if max(len(cluster), len(node)) > _U16_MAX:
        raise ConfigurationError(f"cluster_id and node_id must be under {_U16_MAX} bytes")
    version = _VERSION.pack(FORMAT_VERSION)
    head = b"".join((MAGIC, version, _U16.pack(len(cluster)), cluster, _U16.pack(len(node)), node))
    return head + _U32.pack(binascii.crc32(head))


def _members_body(members: Sequence[str]) -> bytes:
    parts = [_MEMBERS.pack(REC_MEMBERS, len(members))]
    for member in members:
        raw = _node_bytes(member)
        parts += (_U16.pack(len(raw)), raw)
    return b"".join(parts)


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


def _write_pieces(fd: int, pieces: Sequence[bytes], offset: int) -> int:
    """Write ``pieces`` one after another from ``offset``; returns the offset after them."""
    for piece in pieces:
        _write_all(fd, piece, offset)
        offset += len(piece)
    return offset


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

    Entries are kept as their raw value (decoded once, at the end).
    """

    def __init__(self) -> None:
        self.promised = ZERO_BALLOT
        self.promised_set = False
        self.accepted: dict[int, tuple[Ballot, bytes]] = {}
        self.decided: dict[int, bytes] = {}
        self.snapshot: Snapshot | None = None
        self.incarnation = 0
        self.members: tuple[str, ...] = ()

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
        elif kind == REC_SYNC:
            pass
        elif kind == REC_MEMBERS:
            (count,) = r.unpack(_U16)
            members = []
            for _ in range(count):
                (length,) = r.unpack(_U16)
                members.append(r.text(length))
            self.members = tuple(members)
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
            slot, round_, node_len = r.unpack(_ACC)
            node = r.text(node_len)
            (value_len,) = r.unpack(_U32)
            value = bytes(r.take(value_len))
            if slot > floor:
                self.accepted[slot] = (Ballot(round_, node), value)
        (count,) = r.unpack(_U32)
        for _ in range(count):
            slot, value_len = r.unpack(_DEC)
            value = bytes(r.take(value_len))
            if slot > floor:
                self.decided[slot] = value


def _record_end(data: memoryview, pos: int, frame: struct.Struct) -> int:
    """Where the record at byte ``pos`` ends if a whole one with a good checksum starts there.

    -1 if none does. ``frame`` is the version's frame; in both the mark comes
    first, then the u64 body length, and the CRC-32 last, covering the bytes
    between mark and CRC and then the body.
    """
    body = pos + frame.size
    if body > len(data) or data[pos : pos + 4] != RECORD_MARK:
        return -1
    (length,) = _LENGTH.unpack_from(data, pos + 4)
    end = body + length
    if end > len(data):
        return -1
    (crc,) = _U32.unpack_from(data, body - 4)
    return end if _crc(data[pos + 4 : body - 4], data[body:end]) == crc else -1


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
        # The file is durable before this byte: the end of the records at the last
        # completed sync. Every record notes it (its synced_upto), for open's damage rule.
        self._synced_end = 0
        self._allocated = 0  # the file's size: zeros from _end to here
        self._sync_count = 0
        #: Called with the seconds each sync of the log's files took (from the
        #: thread that saves): how a node measures its disk (``paxostob serve``'s
        #: fsync histogram and slow-fsync warning). None: syncs are not timed.
        self.on_sync: Callable[[float], None] | None = None
        self._incarnation = 0
        self._members: tuple[str, ...] = ()
        # The state above the snapshot, as the saves gave it (the values are
        # the core's own objects, not copies): compaction writes it again.
        # Bounded by the runtime's snapshots, as the core's log.
        self._promised: Ballot | None = None
        self._accepted: dict[int, AcceptedEntry] = {}
        self._decided: dict[int, DecidedEntry] = {}
        self._snapshot_slot = -1

    def __repr__(self) -> str:
        state = "open" if self._fd is not None else "closed"
        return f"LogStorage({str(self.path)!r}, {state})"

    # ------------------------------------------------------------------ Storage

    def open(
        self, cluster_id: str, node_id: str, *, bootstrap: Sequence[str] | None = None
    ) -> DurableState:
        if not cluster_id or not node_id:
            raise ConfigurationError("cluster_id and node_id must be non-empty")
        if self._fd is not None:
            raise StorageError(f"{self.path}: already open (close it first)")
        header = _header(cluster_id, node_id)
        created = False
        with self._errors("cannot open the store"):
            sqlite = self.path.with_name(SQLITE_FILE_NAME)
            if sqlite.exists() or sqlite.with_name(SQLITE_FILE_NAME + "-wal").exists():
                raise StorageError(
                    f"{self.path}: the directory holds an SQLite store ({sqlite.name}); "
                    "refusing to start a log store beside it: open it with SqliteStorage "
                    "(default_storage does), or move one of the two away"
                )
            if not self.path.exists():
                if bootstrap is None:
                    raise StoreMissingError(missing_store_message(self.path, node_id))
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._create(header, tuple(sorted(set(bootstrap))))
                created = True
            fd = os.open(self.path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        self._header = header
        try:
            state, fd = self._load_and_bump(fd, cluster_id, node_id)
        except BaseException:
            os.close(fd)  # releases the lock; a refused open wrote nothing
            raise
        self._fd = fd
        self._ids = (cluster_id, node_id)
        self._unsynced = False
        return dataclasses.replace(state, created=True) if created else state

    def save(self, ready: Ready) -> None:
        fd = self._require_open("save")
        if not has_durable_part(ready):
            return
        floor = self._snapshot_slot
        try:
            acc = [a for a in ready.accepted if a.slot > floor]
            dec = [d for d in ready.decided if d.slot > floor]
            body = _save_body(
                ready.promised, [_accepted_frame(a) for a in acc], [_decided_frame(d) for d in dec]
            )
        except struct.error as e:  # a slot or round out of the u64 range: misuse, nothing written
            raise ConfigurationError(f"cannot encode the save: {e}") from e
        if ready.promised is None and not acc and not dec:
            # All covered by the snapshot: nothing to write, but a synced save still
            # owes durability to the unsynced saves before it.
            if ready.must_sync and self._unsynced:
                self._sync_with_mark(fd, "save failed")
            return
        with self._fatal(fd, "save failed"):
            self._append(fd, _frame(body, self._synced_end, FLAG_SYNCED if ready.must_sync else 0))
            if ready.must_sync:
                self._sync_file(fd)
        if ready.promised is not None:
            self._promised = ready.promised
        self._accepted.update((a.slot, a) for a in acc)
        self._decided.update((d.slot, d) for d in dec)
        if ready.must_sync:
            self._unsynced = False
            self._synced_end = self._end
        else:
            self._unsynced = True

    def install_snapshot(self, snapshot: Snapshot) -> None:
        fd = self._require_open("install_snapshot")
        if snapshot.slot < self._snapshot_slot:
            return
        s = snapshot
        accepted = {slot: a for slot, a in self._accepted.items() if slot > s.slot}
        decided = {slot: d for slot, d in self._decided.items() if slot > s.slot}
        with self._fatal(fd, "install_snapshot failed"):
            new_fd = self._rewrite(s, self._promised, accepted, decided)
        with suppress(OSError):  # the replaced file: what happens to it no longer matters
            os.close(fd)  # the new file holds the lock already
        self._fd = new_fd
        self._accepted, self._decided = accepted, decided
        self._snapshot_slot = s.slot
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
            if self._unsynced:
                # The sync below makes the unsynced saves durable: a record with the
                # flag says so to open's damage rule, as after a synced save.
                self._append(fd, _frame(_SYNC_BODY, self._synced_end, FLAG_SYNCED))
            if self._allocated > self._end:
                os.ftruncate(fd, self._end)  # the zeros grown ahead: leave the exact log
                self._allocated = self._end
                self._unsynced = True  # the new size is to be synced too
            if self._unsynced:
                self._sync_file(fd)
                self._unsynced = False
        except OSError as e:
            raise StorageError(f"{self.path}: close failed: {e}") from e
        finally:
            os.close(fd)

    def _sync_file(self, fd: int) -> None:
        """Sync one of the log's files; ``sync_count`` counts the syncs that returned, no more."""
        observe = self.on_sync
        if observe is None:
            _sync(fd)
        else:
            started = time.perf_counter()
            _sync(fd)
            observe(time.perf_counter() - started)
        self._sync_count += 1

    def _sync_with_mark(self, fd: int, doing: str) -> None:
        """Sync the unsynced saves with no record of their own: append a flagged REC_SYNC first.

        Without it, damage in those saves (now durable) followed by valid
        unsynced records would pass for the unsynced tail at the next open.
        """
        with self._fatal(fd, doing):
            self._append(fd, _frame(_SYNC_BODY, self._synced_end, FLAG_SYNCED))
            self._sync_file(fd)
        self._unsynced = False
        self._synced_end = self._end

    # ------------------------------------------------------------------ files

    def _create(self, header: bytes, members: tuple[str, ...]) -> None:
        """Write a complete empty log beside the real name, then link it into place.

        It records ``members`` and an incarnation one below a random first
        one (``open`` bumps it), so a store made again under an old node id
        does not repeat the incarnations of the one it replaces.
        """
        first = random_incarnation() - 1
        records = [
            _frame(_members_body(members), 0, FLAG_SYNCED),
            _frame(_INC.pack(REC_INCARNATION, first), 0, FLAG_SYNCED),
        ]
        fd, tmp = tempfile.mkstemp(prefix=FILE_NAME + ".", suffix=".tmp", dir=self.path.parent)
        try:
            try:
                _write_all(fd, b"".join([header, *records]), 0)
                self._sync_file(fd)
            finally:
                os.close(fd)
            with suppress(FileExistsError):  # another creator won the race: use its store
                os.link(tmp, self.path)
        finally:
            os.unlink(tmp)
        _sync_dir(self.path.parent)

    def _rewrite(
        self,
        snapshot: Snapshot | None,
        promised: Ballot | None,
        accepted: dict[int, AcceptedEntry],
        decided: dict[int, DecidedEntry],
    ) -> int:
        """A new log of ``snapshot`` and the state above it, synced and renamed over the log.

        Returns the new file's descriptor, locked before the rename: until the
        old file is closed both are locked by us, so no second opener slips in.
        Every record is flagged as synced (one sync covers them all before the
        rename makes the file the log) and notes synced_upto 0: nothing of
        the new file was durable while it was written.
        """
        bodies: list[tuple[bytes, ...]] = []
        if self._members:
            bodies.append((_members_body(self._members),))
        if snapshot is not None:
            head = b"".join(
                (
                    _SNAP.pack(REC_SNAPSHOT, snapshot.slot),
                    _U64.pack(len(snapshot.meta)),
                    snapshot.meta,
                    _U64.pack(len(snapshot.data)),
                )
            )
            bodies.append((head, snapshot.data))  # the data is never copied
        save_body = _save_body(
            promised,
            [_accepted_frame(accepted[slot]) for slot in sorted(accepted)],
            [_decided_frame(decided[slot]) for slot in sorted(decided)],
        )
        bodies.append((save_body,))
        bodies.append((_INC.pack(REC_INCARNATION, self._incarnation),))
        fd, tmp = tempfile.mkstemp(prefix=FILE_NAME + ".", suffix=".tmp", dir=self.path.parent)
        renamed = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            pieces = [self._header]
            for body in bodies:
                pieces.append(_frame_head(body, 0, FLAG_SYNCED))
                pieces.extend(body)
            end = _write_pieces(fd, pieces, 0)
            self._sync_file(fd)
            os.replace(tmp, self.path)
            renamed = True
            _sync_dir(self.path.parent)
        except BaseException:
            os.close(fd)
            if not renamed:
                with suppress(OSError):
                    os.unlink(tmp)
            raise
        self._end = self._allocated = self._synced_end = end
        return fd

    # ------------------------------------------------------------------ open

    def _load_and_bump(self, fd: int, cluster_id: str, node_id: str) -> tuple[DurableState, int]:
        """Lock, validate and replay everything, cut a torn tail, then record the incarnation.

        Returns the state and the log's descriptor: ``fd``, or the new file's
        when a format-1 log was rewritten in the current format.
        """
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
        replay, version, end, synced_upto, dropped = self._replay(data, cluster_id, node_id)
        state = self._state(replay)
        incarnation = replay.incarnation + 1
        self._incarnation = incarnation
        self._members = replay.members
        self._promised = replay.promised if replay.promised_set else None
        self._accepted = {a.slot: a for a in state.accepted}
        self._decided = {d.slot: d for d in state.decided}
        self._snapshot_slot = replay.floor
        bumped = DurableState(
            state.promised,
            state.accepted,
            state.decided,
            state.snapshot,
            incarnation,
            replay.members,
        )
        if version != FORMAT_VERSION:
            # A format-1 log has no sync notes to append after: rewrite it whole, as a
            # compaction does (synced, renamed over it; a crash leaves the old file).
            with self._errors("cannot rewrite the store in the current format"):
                new_fd = self._rewrite(
                    replay.snapshot, self._promised, self._accepted, self._decided
                )
            with suppress(OSError):
                os.close(fd)  # the old file; the new one holds the lock already
            return bumped, new_fd
        with self._errors("cannot open the store"):
            if end < len(data):
                # The torn tail or unsynced damage (see _replay), or the zeros grown
                # ahead by a life that did not close.
                os.ftruncate(fd, end)
                if dropped:
                    # Valid records lay past the cut. Make the cut durable before the
                    # incarnation lands at `end`: else a power loss during its sync
                    # could leave it with one of them, an older save, right behind it.
                    self._sync_file(fd)
            self._end = self._allocated = end
            inc = _INC.pack(REC_INCARNATION, incarnation)
            self._append(fd, _frame(inc, synced_upto, FLAG_SYNCED))
            self._sync_file(fd)
        self._synced_end = self._end
        return bumped, fd

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

    def _replay(
        self, raw: bytes, cluster_id: str, node_id: str
    ) -> tuple[_Replay, int, int, int, bool]:
        """The state the log holds, its format version, where its valid records end,
        the last synced_upto they note, and whether valid records follow that end
        (unsynced ones: any other damage is refused)."""
        data = memoryview(raw)
        pos, version = self._check_header(data, cluster_id, node_id)
        frame = _FRAME if version == FORMAT_VERSION else _FRAME_V1
        replay = _Replay()
        synced_upto = 0
        n = len(data)
        while pos < n:
            end = _record_end(data, pos, frame)
            if end < 0:
                break
            try:
                if frame is _FRAME:
                    _, _, claim, flags, _ = _FRAME.unpack_from(data, pos)
                    if flags & ~FLAG_SYNCED:
                        raise _Corrupt(f"has the unknown flags {flags:#x}")
                    if not synced_upto <= claim <= pos:
                        raise _Corrupt(
                            f"notes the log synced through byte {claim}, not between the "
                            f"previous record's {synced_upto} and its own start"
                        )
                    synced_upto = claim
                replay.apply(data[pos + frame.size : end])
            except (_Corrupt, struct.error) as e:
                raise StorageError(
                    f"{self.path}: the record at byte {pos} passes its checksum but {e} {_CORRUPT}"
                ) from e
            pos = end
        dropped = pos < n and self._check_damage(raw, pos, version)
        return replay, version, pos, synced_upto, dropped

    def _check_damage(self, raw: bytes, bad: int, version: int) -> bool:
        """Refuse the bad record at byte ``bad`` unless it starts the unsynced tail.

        Returns whether valid records follow it (they go with it). The rule:
        a valid record after ``bad`` that notes the log synced past ``bad``, or
        that was itself followed by a sync (``FLAG_SYNCED``: that sync covered
        ``bad``), shows ``bad`` lay in a synced region, where only bit rot or a
        bad copy can damage a record: refused. Without one, everything from
        ``bad`` on was written after the last sync that may have completed, so
        a power loss may have left any of it damaged: cut. A format-1 log notes
        no syncs, so there any valid record after the damage refuses it.
        """
        data = memoryview(raw)
        frame = _FRAME if version == FORMAT_VERSION else _FRAME_V1
        dropped = False
        later = raw.find(RECORD_MARK, bad + 1)
        while later != -1:
            if _record_end(data, later, frame) >= 0:
                damaged = f"{self.path}: the record at byte {bad} is damaged and a valid record"
                if frame is not _FRAME:
                    raise StorageError(f"{damaged} follows it at byte {later} {_CORRUPT}")
                _, _, claim, flags, _ = _FRAME.unpack_from(data, later)
                if flags:
                    raise StorageError(
                        f"{damaged} follows it at byte {later}, one followed by a sync, which "
                        f"covered byte {bad}: the damage is not an unsynced tail {_CORRUPT}"
                    )
                if claim > bad:
                    raise StorageError(
                        f"{damaged} follows it at byte {later}, noting the log synced through "
                        f"byte {claim}: the damage is not an unsynced tail {_CORRUPT}"
                    )
                dropped = True
            later = raw.find(RECORD_MARK, later + 1)
        return dropped

    def _check_header(self, data: memoryview, cluster_id: str, node_id: str) -> tuple[int, int]:
        """The header's length and format version, after checking magic, version,
        checksum and ownership (the header's layout is the same in every version)."""
        if bytes(data[: len(MAGIC)]) != MAGIC:
            raise StorageError(
                f"{self.path}: not a paxostob log store (it does not start with {MAGIC!r}): "
                "the file is empty, truncated or foreign"
            )
        r = _Reader(data)
        try:
            r.take(len(MAGIC))
            (version,) = r.unpack(_VERSION)
            if version not in FORMAT_VERSIONS_READ:
                readable = " and ".join(map(str, FORMAT_VERSIONS_READ))
                raise StorageError(
                    f"{self.path}: written in storage format version {version!r}; this "
                    f"paxostob reads only versions {readable}"
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
        return r.pos, version

    def _state(self, replay: _Replay) -> DurableState:
        """The replayed state with every value decoded (incarnation not yet bumped)."""
        accepted = tuple(
            AcceptedEntry(slot, ballot, self._batch(f"accepted slot {slot}", value))
            for slot, (ballot, value) in sorted(replay.accepted.items())
        )
        decided = tuple(
            DecidedEntry(slot, self._batch(f"decided slot {slot}", value))
            for slot, value in sorted(replay.decided.items())
        )
        return DurableState(
            replay.promised, accepted, decided, replay.snapshot, replay.incarnation, replay.members
        )

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
        """Translate OS errors at the boundary (docs/design.md, 'Conventions')."""
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
