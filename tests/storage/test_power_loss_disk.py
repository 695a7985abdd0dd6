"""A real power loss: the stores on a disk that loses what was not synced.

The data directory lives on a fresh ext4 file system in a loop device (a
64 MiB image file). A power cut is a copy of the image taken while the file
system is mounted and the store open: it holds exactly what the file system
has written to its disk, which is what a sync forced out (and what writeback
happened to flush: the mount's ``commit=600`` and the kernel's 30 s
dirty-page expiry keep that away from a test that lasts under a second). The
copy is then mounted on a second loop device (ext4 replays its journal, as
after a reboot) and the store opened on it.

The rig is checked too: the saves made after the last sync must be gone, so
a sync the store skipped would show.

Needs root, ``losetup``, ``mkfs.ext4`` and ``mount`` (the test fails,
naming what is missing, rather than skip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from paxostob.core.events import Ready
from paxostob.core.types import Ballot
from paxostob.storage.base import DurableState, Storage
from paxostob.storage.log import LogStorage
from paxostob.storage.sqlite import SqliteStorage

from .conformance import CLUSTER, NODE, accepted, decided

IMAGE_BYTES = 64 << 20
TOOLS = ("losetup", "mkfs.ext4", "mount", "umount")


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


@contextmanager
def mounted(image: Path, at: Path, stack: ExitStack) -> Iterator[Path]:
    """``image`` on a loop device mounted at ``at``; both undone when the block ends."""
    device = run("losetup", "--find", "--show", str(image)).strip()
    stack.callback(run, "losetup", "--detach", device)
    at.mkdir()
    run("mount", "-t", "ext4", "-o", "commit=600", device, str(at))
    try:
        yield at
    finally:
        run("umount", str(at))


class Disk:
    """An ext4 file system on a loop device; ``power_cut`` mounts a copy of what reached it."""

    def __init__(self, root: Path, stack: ExitStack) -> None:
        self.root, self.stack = root, stack
        self.image = root / "disk.img"
        with self.image.open("wb") as f:
            f.truncate(IMAGE_BYTES)
        run("mkfs.ext4", "-q", "-F", str(self.image))
        self.mount = stack.enter_context(mounted(self.image, root / "mnt", stack))
        self.cuts = 0

    def power_cut(self) -> Path:
        """The file system as the disk holds it now, mounted elsewhere."""
        self.cuts += 1
        copy = self.root / f"cut{self.cuts}.img"
        shutil.copyfile(self.image, copy)  # the loop device's writes, through the host's cache
        return self.stack.enter_context(mounted(copy, self.root / f"cut{self.cuts}", self.stack))


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    assert not missing, f"this test needs {', '.join(missing)} (util-linux, e2fsprogs)"
    assert os.geteuid() == 0, "this test needs root: it mounts loop devices"
    with ExitStack() as stack:
        yield Disk(tmp_path, stack)


STORES: dict[str, Callable[[Path], Storage]] = {"log": LogStorage, "sqlite": SqliteStorage}


@pytest.mark.parametrize("kind", list(STORES))
def test_a_power_cut_keeps_every_synced_save_and_loses_the_unsynced_tail(
    disk: Disk, kind: str
) -> None:
    make = STORES[kind]
    store = make(disk.mount / "node")
    store.open(CLUSTER, NODE, bootstrap=[NODE])
    try:
        for slot in range(1, 6):
            store.save(Ready(decided=(decided(slot - 1),)) if slot > 1 else Ready())
            store.save(
                Ready(promised=Ballot(slot, NODE), accepted=(accepted(slot, slot),), must_sync=True)
            )
        for slot in range(5, 9):  # after the last sync: what the cut must lose
            store.save(Ready(decided=(decided(slot),)))
        after = disk.power_cut()
    finally:
        store.close()
    survivor = make(after / "node")
    state: DurableState = survivor.open(CLUSTER, NODE)
    survivor.close()
    assert state.promised == Ballot(5, NODE), f"{kind}: the last synced promise was lost"
    assert state.accepted == tuple(accepted(s, s) for s in range(1, 6)), f"{kind}: lost accepts"
    # Each synced save also made the unsynced ones before it durable; none after the last.
    assert state.decided == tuple(decided(s) for s in range(1, 5)), (
        f"{kind}: the decisions after the last sync survived the power cut, so this rig "
        "would not show a missing sync (writeback ran during the test?)"
    )
