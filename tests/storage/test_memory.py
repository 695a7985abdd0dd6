"""MemoryStorage: the Storage conformance suite, then its power loss (``crash``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from paxostob.core.events import Ready
from paxostob.core.types import Ballot
from paxostob.errors import ConfigurationError, StorageError
from paxostob.storage.base import Snapshot
from paxostob.storage.memory import MemoryStorage

from .conformance import CLUSTER, NODE, StorageConformance, accepted, decided


class TestMemoryConformance(StorageConformance):
    def make_storage(self, tmp_path: Path) -> MemoryStorage:
        return MemoryStorage()


#: The first incarnation of the fixture's store (fixed, where a new store draws one).
FIRST = 1000


@pytest.fixture
def storage() -> MemoryStorage:
    s = MemoryStorage(incarnation_base=FIRST)
    s.open(CLUSTER, NODE, bootstrap=[NODE])
    return s


def test_crash_drops_unsynced_writes_and_keeps_synced_ones(storage: MemoryStorage) -> None:
    storage.save(Ready(promised=Ballot(2, NODE), accepted=(accepted(1, 2),), must_sync=True))
    storage.save(Ready(decided=(decided(1),)))
    storage.save(Ready(promised=Ballot(3, NODE), accepted=(accepted(1, 3, tag="late"),)))
    assert storage.unsynced_saves == 2
    storage.crash()
    state = storage.open(CLUSTER, NODE, bootstrap=[NODE])
    assert state.promised == Ballot(2, NODE)
    assert state.accepted == (accepted(1, 2),)
    assert state.decided == ()
    assert state.incarnation == FIRST + 1


def test_a_synced_save_makes_the_earlier_unsynced_ones_durable(storage: MemoryStorage) -> None:
    storage.save(Ready(decided=(decided(1),)))
    storage.save(Ready(decided=(decided(2),)))
    storage.save(Ready(accepted=(accepted(3),), must_sync=True))
    assert storage.unsynced_saves == 0
    storage.crash()
    state = storage.open(CLUSTER, NODE, bootstrap=[NODE])
    assert [d.slot for d in state.decided] == [1, 2]
    assert [a.slot for a in state.accepted] == [3]


def test_crash_can_keep_a_prefix_of_the_unsynced_saves(storage: MemoryStorage) -> None:
    for slot in (1, 2, 3, 4):
        storage.save(Ready(decided=(decided(slot),)))
    storage.crash(keep_unsynced_saves=2)
    assert [d.slot for d in storage.open(CLUSTER, NODE, bootstrap=[NODE]).decided] == [1, 2]


def test_crash_with_a_negative_prefix_is_misuse(storage: MemoryStorage) -> None:
    with pytest.raises(ConfigurationError):
        storage.crash(keep_unsynced_saves=-1)


def test_install_snapshot_makes_earlier_saves_durable(storage: MemoryStorage) -> None:
    storage.save(Ready(decided=(decided(1), decided(2), decided(3))))
    storage.install_snapshot(Snapshot(1, b"", b"one"))
    storage.save(Ready(decided=(decided(4),)))
    storage.crash()
    state = storage.open(CLUSTER, NODE, bootstrap=[NODE])
    assert state.snapshot == Snapshot(1, b"", b"one")
    assert [d.slot for d in state.decided] == [2, 3]


def test_crash_closes_the_store(storage: MemoryStorage) -> None:
    storage.crash()
    with pytest.raises(StorageError, match="not open"):
        storage.save(Ready(decided=(decided(1),)))
    storage.crash()  # a crashed node can crash again: nothing to lose
    assert storage.open(CLUSTER, NODE).incarnation == FIRST + 1


def test_crash_keeps_the_owner(storage: MemoryStorage) -> None:
    storage.crash()
    with pytest.raises(StorageError, match="'n1'"):
        storage.open(CLUSTER, "n2", bootstrap=["n2"])


def test_a_synced_save_covered_by_the_snapshot_makes_earlier_saves_durable(
    storage: MemoryStorage,
) -> None:
    storage.install_snapshot(Snapshot(5, b"", b"s"))
    storage.save(Ready(decided=(decided(6),)))
    storage.save(Ready(decided=(decided(5),), must_sync=True))
    storage.crash()
    assert storage.open(CLUSTER, NODE, bootstrap=[NODE]).decided == (decided(6),)
