"""LogStorage under simulated power losses and bit rot, seeded and randomized.

A run does random saves (synced ones with a promise or accepted entries,
unsynced ones with decided entries alone, synced ones the snapshot already
covers), snapshot installs and close-and-reopen cycles on one store, and
keeps a model of the state after every operation. At a few random moments
it takes the file as the page cache holds it (what ``kill -9`` leaves) and
as it was at the last completed sync (all a power loss must keep), and
builds disk images the way a power loss can leave them: each 4 KiB page
from either of the two, the file's size anywhere between theirs.

Then:

- every such image opens, with the state after some operation between the
  last synced one and the moment of the crash (nothing promised is lost, and
  the saves kept are a prefix), and opens again cleanly;
- a byte flipped in a record the last sync covered, with a record that
  proves that sync after it (any later record of the synced region, or a
  record written after the sync), is refused naming the file.

The seed is the test's parameter, so a failure names it; each run is
deterministic except the timing of the disk.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from paxostob.core.events import AcceptedEntry, Ready
from paxostob.core.types import ZERO_BALLOT, Ballot, DecidedEntry
from paxostob.errors import StorageError
from paxostob.storage import log as log_module
from paxostob.storage.base import DurableState, Snapshot
from paxostob.storage.log import FILE_NAME, RECORD_MARK, LogStorage

from .conformance import CLUSTER, NODE, batch
from .test_log import FRAME

SEEDS = range(25)
OPERATIONS = 60
CRASHES = 4  # moments per run at which disk images are taken
PAGE = 4096


class Disk:
    """What the store's syncs made durable: each file's bytes when its last sync ran."""

    def __init__(self) -> None:
        self.synced: dict[int, bytes] = {}  # by inode

    def sync(self, fd: int) -> None:
        st = os.fstat(fd)
        self.synced[st.st_ino] = os.pread(fd, st.st_size, 0)

    def durable(self, path: Path) -> bytes:
        return self.synced.get(path.stat().st_ino, b"")


@pytest.fixture(autouse=True)
def disk(monkeypatch: pytest.MonkeyPatch) -> Disk:
    """The test builds the disk images itself, so real flushes would only cost time.

    The store's sync function records the file as it stands when called
    (``Crash.durable``): a sync the store skips is a sync the images lack.
    tests/storage/test_real_syncs.py checks that function really syncs, and
    test_crash.py and test_power_loss_disk.py run real ones. The file grows
    64 KiB ahead instead of 1 MiB: fewer bytes to copy per image.
    """
    recorder = Disk()
    monkeypatch.setattr(log_module, "_sync", recorder.sync)
    monkeypatch.setattr(log_module, "_sync_dir", lambda path: None)
    monkeypatch.setattr(log_module, "PREALLOC_BYTES", 16 * PAGE)
    return recorder


View = tuple[Ballot, tuple[AcceptedEntry, ...], tuple[DecidedEntry, ...], Snapshot | None]


@dataclass
class Model:
    """What the store must hold: the Storage protocol's semantics, independently of the log."""

    promised: Ballot = ZERO_BALLOT
    accepted: dict[int, AcceptedEntry] = field(default_factory=dict)
    decided: dict[int, DecidedEntry] = field(default_factory=dict)
    snapshot: Snapshot | None = None

    @property
    def floor(self) -> int:
        return -1 if self.snapshot is None else self.snapshot.slot

    def save(self, ready: Ready) -> None:
        if ready.promised is not None:
            self.promised = ready.promised
        self.accepted.update((a.slot, a) for a in ready.accepted if a.slot > self.floor)
        self.decided.update((d.slot, d) for d in ready.decided if d.slot > self.floor)

    def install(self, snapshot: Snapshot) -> None:
        if snapshot.slot < self.floor:
            return
        self.snapshot = snapshot
        self.accepted = {s: a for s, a in self.accepted.items() if s > snapshot.slot}
        self.decided = {s: d for s, d in self.decided.items() if s > snapshot.slot}

    def view(self) -> View:
        accepted = tuple(self.accepted[s] for s in sorted(self.accepted))
        decided = tuple(self.decided[s] for s in sorted(self.decided))
        return (self.promised, accepted, decided, self.snapshot)


def view(state: DurableState) -> View:
    return (state.promised, state.accepted, state.decided, state.snapshot)


@dataclass
class Crash:
    """The file at one moment: as the page cache held it and as the last completed sync left it."""

    cached: bytes
    durable: bytes
    views: list[View]  # the states from the last synced operation to this moment


def records(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of the records from the first one on, following the length fields."""
    out: list[tuple[int, int]] = []
    at = raw.find(RECORD_MARK)
    while raw[at : at + 4] == RECORD_MARK and at + FRAME <= len(raw):
        end = at + FRAME + int.from_bytes(raw[at + 4 : at + 12], "big")
        if end > len(raw):
            break
        out.append((at, end))
        at = end
    return out


def run(seed: int, live: Path, disk: Disk) -> list[Crash]:
    """Random operations on a store in ``live``; the file at ``CRASHES`` random moments."""
    rng = random.Random(seed)
    moments = set(rng.sample(range(1, OPERATIONS + 1), CRASHES))
    s = LogStorage(live)
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    model = Model()
    views = [model.view()]  # the states since the last completed sync, that one first
    durable = disk.durable(s.path)
    slot, round_ = 0, 0
    last: AcceptedEntry | None = None
    crashes: list[Crash] = []
    try:
        for i in range(1, OPERATIONS + 1):
            synced = True
            roll = rng.random()
            if roll < 0.45:  # a follower learning decisions: unsynced
                learned = []
                for _ in range(rng.randint(1, 3)):
                    slot += 1
                    learned.append(DecidedEntry(slot, batch(slot, size=rng.choice((1, 20, 300)))))
                ready = Ready(decided=tuple(learned))
                synced = False
            elif roll < 0.75:  # an acceptor answering, and learning what it accepted before
                round_ += 1
                slot += 1
                promise = Ballot(round_, NODE) if rng.random() < 0.5 else None
                entry = AcceptedEntry(slot, Ballot(round_, NODE), batch(slot, tag=f"r{round_}"))
                chosen = () if last is None else (DecidedEntry(last.slot, last.value),)
                last = entry
                ready = Ready(promised=promise, accepted=(entry,), decided=chosen, must_sync=True)
            elif roll < 0.82 and model.snapshot is not None:  # all covered, still syncs
                old = model.snapshot.slot
                entry = AcceptedEntry(old, Ballot(1, NODE), batch(old))
                ready = Ready(accepted=(entry,), must_sync=True)
            else:
                ready = None
            if ready is not None:
                s.save(ready)
                model.save(ready)
            elif roll < 0.92 and slot > 0:
                snapshot = Snapshot(rng.randint(max(model.floor, 0), slot), b"m", f"{i}".encode())
                s.install_snapshot(snapshot)
                model.install(snapshot)
            else:
                s.close()
                s.open(CLUSTER, NODE, bootstrap=[NODE])
            if synced:  # the operation promised durability: the store must have synced
                views = [model.view()]
            else:
                views.append(model.view())
            durable = disk.durable(s.path)
            if i in moments:
                crashes.append(Crash(s.path.read_bytes(), durable, list(views)))
    finally:
        s.close()
    return crashes


def power_loss(rng: random.Random, crash: Crash) -> bytes:
    """A disk image a power loss may leave: per page the cached or the durable bytes."""
    cached, durable = crash.cached, crash.durable
    size = rng.choice((len(durable), len(cached), rng.randint(len(durable), len(cached))))
    durable = durable.ljust(size, b"\0")
    cached = cached.ljust(size, b"\0")
    keep = rng.choice((0.2, 0.5, 0.8))  # how much of the unsynced part reached the disk
    return b"".join(
        (cached if rng.random() < keep else durable)[at : min(at + PAGE, size)]
        for at in range(0, size, PAGE)
    )


def open_image(data_dir: Path, image: bytes) -> DurableState:
    data_dir.mkdir()
    (data_dir / FILE_NAME).write_bytes(image)
    s = LogStorage(data_dir)
    try:
        return s.open(CLUSTER, NODE, bootstrap=[NODE])
    finally:
        s.close()


@pytest.mark.parametrize("seed", SEEDS)
def test_a_power_loss_keeps_every_synced_save_and_opens(
    tmp_path: Path, seed: int, disk: Disk
) -> None:
    rng = random.Random(seed)
    for n, crash in enumerate(run(seed, tmp_path / "live", disk)):
        for k in range(3):
            image = power_loss(rng, crash) if k else crash.cached  # k == 0: a kill -9
            where = tmp_path / f"crash{n}.{k}"
            state = open_image(where, image)
            assert view(state) in crash.views, f"seed {seed}, crash {n}.{k}: not a saved state"
            if k == 0:
                assert view(state) == crash.views[-1], f"seed {seed}, crash {n}: saves lost"
            again = open_image(tmp_path / f"again{n}.{k}", (where / FILE_NAME).read_bytes())
            assert view(again) == view(state)


@pytest.mark.parametrize("seed", SEEDS)
def test_bit_rot_in_a_synced_record_is_refused(tmp_path: Path, seed: int, disk: Disk) -> None:
    rng = random.Random(seed)
    for n, crash in enumerate(run(seed, tmp_path / "live", disk)):
        synced = records(crash.durable)
        after = [r for r in records(crash.cached) if r[0] >= synced[-1][1]]
        # The last synced record is proven synced only by a record written after its sync.
        victims = synced if after else synced[:-1]
        if not victims:
            continue
        start, end = rng.choice(victims)
        at = rng.randrange(start, end)
        image = bytearray(crash.cached)
        image[at] ^= 1 << rng.randrange(8)
        where = tmp_path / f"rot{n}"
        with pytest.raises(StorageError) as e:
            open_image(where, bytes(image))
        assert str(where / FILE_NAME) in str(e.value), f"seed {seed}, crash {n}"
        assert "(the file is corrupt)" in str(e.value), f"seed {seed}, crash {n}"
