"""The syncs the stores promise, seen where they happen: at the system calls.

``sync_count`` and the power-loss simulation (test_log_power_loss.py) take
the store's word for its syncs; these tests do not:

- LogStorage: ``os.fdatasync``/``os.fsync`` are wrapped to record the file
  each call synced (by inode, from ``os.fstat`` of its descriptor). Every
  synced save must be followed by a sync of the log file before it returns,
  an unsynced save must make none, ``close`` must sync what is unsynced,
  ``open`` must sync a cut of the unsynced tail before it appends behind
  it, and ``sync_count`` must equal the syncs of the store's files that
  really ran.
- SqliteStorage: SQLite syncs inside its C code, out of Python's reach, so
  the test reads the ``PRAGMA synchronous`` SQLite applies to each commit
  (FULL: the WAL is fsynced at commit), and a child process runs under
  ``strace`` (needed: the test fails without it) to count the real
  ``fsync``/``fdatasync`` calls on the database and its WAL, for both stores.

A crash that really loses unsynced writes is in test_power_loss_disk.py.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from paxostob.core.events import Ready
from paxostob.core.types import Ballot
from paxostob.storage.base import Snapshot
from paxostob.storage.log import FILE_NAME, LogStorage
from paxostob.storage.sqlite import SqliteStorage

from .conformance import CLUSTER, NODE, accepted, decided
from .test_log import record_end, unsynced_tail, write_at


class SyncCalls:
    """Every ``os.fdatasync``/``os.fsync`` call made while installed: (inode, regular file)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, bool]] = []
        for name in ("fdatasync", "fsync"):
            if hasattr(os, name):
                monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))

    def _wrap(self, real: Callable[[int], None]) -> Callable[[int], None]:
        def sync(fd: int) -> None:
            st = os.fstat(fd)
            real(fd)
            self.calls.append((st.st_ino, stat.S_ISREG(st.st_mode)))

        return sync

    def of_file(self, path: Path) -> int:
        """The syncs of the file now at ``path`` (its inode)."""
        ino = os.stat(path).st_ino
        return sum(1 for i, _ in self.calls if i == ino)

    @property
    def files(self) -> int:
        """The syncs of regular files (a directory's sync, after a rename, is not counted)."""
        return sum(1 for _, regular in self.calls if regular)


def test_a_synced_log_save_returns_only_after_a_real_sync_of_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = SyncCalls(monkeypatch)
    store = LogStorage(tmp_path)
    store.open(CLUSTER, NODE, bootstrap=[NODE])
    try:
        for slot in range(1, 6):
            before, count = syncs.of_file(store.path), store.sync_count
            store.save(Ready(decided=(decided(slot),)))
            assert syncs.of_file(store.path) == before, f"slot {slot}: an unsynced save synced"
            store.save(
                Ready(promised=Ballot(slot, NODE), accepted=(accepted(slot, slot),), must_sync=True)
            )
            assert syncs.of_file(store.path) == before + 1, f"slot {slot}: the save was not synced"
            assert store.sync_count == count + 1
        store.save(Ready(decided=(decided(6),)))
        # Covered by the snapshot, yet it owes a sync to the unsynced save before it.
        store.install_snapshot(Snapshot(7, b"", b"s"))
        before = syncs.of_file(store.path)
        store.save(Ready(decided=(decided(8),)))
        store.save(Ready(accepted=(accepted(3),), must_sync=True))
        assert syncs.of_file(store.path) == before + 1, "the covered save did not sync"
    finally:
        store.close()
    assert store.sync_count == syncs.files, "sync_count is not the number of real syncs"


def test_close_really_syncs_the_unsynced_saves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = SyncCalls(monkeypatch)
    store = LogStorage(tmp_path)
    store.open(CLUSTER, NODE, bootstrap=[NODE])
    store.save(Ready(decided=(decided(1),)))
    log = store.path
    before = syncs.of_file(log)
    store.close()
    assert syncs.of_file(log) == before + 1, "close left an unsynced save unsynced"
    assert store.sync_count == syncs.files


def test_sync_count_counts_only_syncs_that_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the system call failing, a synced save raises and the count does not move."""
    store = LogStorage(tmp_path)
    store.open(CLUSTER, NODE, bootstrap=[NODE])
    count = store.sync_count

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(Exception, match="Input/output error"):
        store.save(Ready(accepted=(accepted(1),), must_sync=True))
    assert store.sync_count == count
    monkeypatch.undo()
    store.close()


def test_a_cut_with_valid_records_behind_it_is_synced_before_the_incarnation_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else a power loss during the incarnation's sync could leave an older save behind it."""
    data_dir, unsynced = unsynced_tail(tmp_path, size=500)
    path = data_dir / FILE_NAME
    victim = unsynced[2]  # lost; the saves of slots 5 and 6 stay valid behind it
    write_at(path, victim, bytes(record_end(path, victim) - victim))
    sizes: list[int] = []  # the log's size at each of its syncs
    ino = os.stat(path).st_ino
    for name in ("fdatasync", "fsync"):
        real = getattr(os, name)

        def sync(fd: int, real: Callable[[int], None] = real) -> None:
            st = os.fstat(fd)
            if st.st_ino == ino:
                sizes.append(st.st_size)
            real(fd)

        monkeypatch.setattr(os, name, sync)
    store = LogStorage(data_dir)
    store.open(CLUSTER, NODE)  # the store is there: no bootstrap
    store.close()
    assert sizes, "open synced nothing"
    assert sizes[0] == victim, f"the first sync saw {sizes[0]} bytes, not the cut at {victim}"


def synchronous(store: SqliteStorage) -> int:
    conn = store._conn  # private: the setting SQLite applies is the thing checked
    assert conn is not None
    (level,) = conn.execute("PRAGMA synchronous").fetchone()
    return int(level)


def test_sqlite_commits_a_synced_save_with_synchronous_full(tmp_path: Path) -> None:
    """FULL (2) fsyncs the WAL at commit; NORMAL (1) for the unsynced ones; never OFF."""
    store = SqliteStorage(tmp_path)
    store.open(CLUSTER, NODE, bootstrap=[NODE])
    try:
        for slot in range(1, 4):
            count = store.sync_count
            store.save(Ready(decided=(decided(slot),)))
            assert synchronous(store) == 1
            assert store.sync_count == count
            store.save(Ready(accepted=(accepted(slot),), must_sync=True))
            assert synchronous(store) == 2, "a synced save committed without an fsync"
            assert store.sync_count == count + 1
    finally:
        store.close()


# ------------------------------------------------------------------ strace

CHILD = textwrap.dedent(
    """
    import os, sys
    from paxostob.core.events import Ready
    from paxostob.core.types import Ballot
    from paxostob.storage.log import FILE_NAME, LogStorage
    from paxostob.storage.sqlite import SqliteStorage
    from tests.storage.conformance import CLUSTER, NODE, accepted, decided

    store = {"log": LogStorage, "sqlite": SqliteStorage}[sys.argv[1]](sys.argv[2])
    store.open(CLUSTER, NODE, bootstrap=[NODE])
    for slot in range(1, 4):
        os.access("mark:unsynced", os.F_OK)
        store.save(Ready(decided=(decided(slot),)))
        os.access("mark:synced", os.F_OK)
        store.save(Ready(promised=Ballot(slot, NODE), accepted=(accepted(slot),), must_sync=True))
    os.access("mark:end", os.F_OK)
    print(store.sync_count)
    store.close()
    """
)

_MARK = re.compile(r'access(?:at2?)?\((?:AT_FDCWD, )?"mark:(\w+)"')
_SYNC = re.compile(r"\b(?:fsync|fdatasync)\(\d+<([^>]*)>\)\s*=\s*0")


@pytest.mark.parametrize("kind", ["log", "sqlite"])
def test_the_kernel_sees_one_sync_per_synced_save_and_none_for_the_others(
    tmp_path: Path, kind: str
) -> None:
    strace = shutil.which("strace")
    assert strace is not None, "strace is needed to count the real fsync calls: install it"
    out = tmp_path / "trace"
    data = tmp_path / "data"
    root = Path(__file__).resolve().parents[2]
    traced = [strace, "-f", "-y", "-qq", "-o", str(out), "-e", "trace=fsync,fdatasync,%file"]
    subprocess.run(
        [*traced, sys.executable, "-c", CHILD, kind, str(data)],
        check=True,
        cwd=root,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), *sys.path]))},
    )
    marks: list[tuple[str, int]] = []  # (mark, syncs of the store's files before the next mark)
    for line in out.read_text().splitlines():
        if m := _MARK.search(line):
            marks.append((m.group(1), 0))
        elif (m := _SYNC.search(line)) and marks and Path(m.group(1)).parent == data:
            marks[-1] = (marks[-1][0], marks[-1][1] + 1)
    assert [name for name, _ in marks] == ["unsynced", "synced"] * 3 + ["end"], marks
    for name, syncs in marks[:-1]:
        assert syncs == (1 if name == "synced" else 0), f"{kind}: {marks}"
