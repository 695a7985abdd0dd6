"""The conformance suite of the ``Storage`` protocol (storage/base.py).

Every storage runs it: subclass ``StorageConformance`` in a ``test_*.py``
module as ``Test<Name>Conformance`` and implement ``make_storage`` (the
factory) to return a new, closed storage for an empty store in ``tmp_path``.
``reopen`` closes a storage and returns one on the same store, opened again
(by default the same object; a subclass may build a new one to show the
state lives in the store, not in the object).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from paxostob.core.events import AcceptedEntry, Dropped, Ready
from paxostob.core.types import (
    NOOP,
    ZERO_BALLOT,
    Ballot,
    Batch,
    DecidedEntry,
    Proposal,
    ProposalId,
)
from paxostob.errors import ConfigurationError, StorageError, StoreMissingError
from paxostob.storage.base import (
    INCARNATION_BASE_MAX,
    INCARNATION_BASE_MIN,
    DurableState,
    Snapshot,
    Storage,
)

__all__ = ["CLUSTER", "NODE", "StorageConformance", "accepted", "batch", "decided"]

CLUSTER = "cluster-1"
NODE = "n1"


def batch(slot: int, *, size: int = 1, tag: str = "v") -> Batch:
    """A value told apart by ``slot`` and ``tag``: ``size`` proposals from two origins."""
    return tuple(
        Proposal(ProposalId(f"n{i % 2 + 1}", slot * 1000 + i), f"{tag}{slot}.{i}".encode())
        for i in range(size)
    )


def accepted(slot: int, round_: int = 1, *, tag: str = "v") -> AcceptedEntry:
    return AcceptedEntry(slot, Ballot(round_, NODE), batch(slot, tag=tag))


def decided(slot: int, *, size: int = 1) -> DecidedEntry:
    return DecidedEntry(slot, batch(slot, size=size))


def fill(storage: Storage, slots: range) -> None:
    """One save per slot: a promise, an accepted entry and a ~400-byte decided batch."""
    for slot in slots:
        big = DecidedEntry(slot, batch(slot, size=4, tag="x" * 100))
        storage.save(
            Ready(promised=Ballot(slot, NODE), accepted=(accepted(slot, slot),), decided=(big,))
        )


class StorageConformance:
    """The guarantees of storage/base.py, for the storage ``make_storage`` builds."""

    #: Whether the store records its founding membership (SQLite's format does not).
    records_members = True

    def members(self, *ids: str) -> tuple[str, ...]:
        """What ``DurableState.members`` holds after a bootstrap with ``ids``."""
        return tuple(sorted(ids)) if self.records_members else ()

    def make_storage(self, tmp_path: Path) -> Storage:
        raise NotImplementedError("a conformance subclass builds its storage here")

    def reopen(
        self, storage: Storage, *, bootstrap: list[str] | None = None
    ) -> tuple[Storage, DurableState]:
        storage.close()
        return storage, storage.open(CLUSTER, NODE, bootstrap=bootstrap)

    def make_fresh_storage(self) -> Storage:
        """Another new, closed storage for an empty store, beside the fixture's."""
        self._fresh += 1
        return self.make_storage(self._tmp / f"fresh{self._fresh}")

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[Storage]:
        self._tmp, self._fresh = tmp_path, 0
        s = self.make_storage(tmp_path)
        try:
            yield s
        finally:
            s.close()

    # ------------------------------------------------------------------ opening

    def test_is_a_storage(self, storage: Storage) -> None:
        assert isinstance(storage, Storage)

    def test_first_open_is_empty_with_a_random_first_incarnation(self, storage: Storage) -> None:
        state = storage.open(CLUSTER, NODE, bootstrap=["n3", NODE, "n2"])
        first = state.incarnation
        assert INCARNATION_BASE_MIN <= first < INCARNATION_BASE_MAX
        assert state == DurableState(
            ZERO_BALLOT, (), (), None, first, self.members(NODE, "n2", "n3"), created=True
        )

    def test_incarnation_bumps_on_every_open(self, storage: Storage) -> None:
        first = storage.open(CLUSTER, NODE, bootstrap=[NODE]).incarnation
        for expected in (first + 1, first + 2, first + 3):
            storage, state = self.reopen(storage)
            assert state.incarnation == expected
            assert state.members == self.members(NODE)
            assert not state.created

    def test_a_missing_store_is_refused_without_bootstrap(self, storage: Storage) -> None:
        # A wiped or lost directory must not come back as an empty member.
        with pytest.raises(StoreMissingError, match=r"no store here.*--bootstrap"):
            storage.open(CLUSTER, NODE)
        # The refusal made nothing: it is refused again, and bootstrap then makes it.
        with pytest.raises(StoreMissingError):
            storage.open(CLUSTER, NODE)
        assert storage.open(CLUSTER, NODE, bootstrap=[NODE]).members == self.members(NODE)

    def test_bootstrap_of_an_existing_store_changes_nothing(self, storage: Storage) -> None:
        first = storage.open(CLUSTER, NODE, bootstrap=[NODE, "n2"])
        storage.save(Ready(promised=Ballot(3, "n2"), must_sync=True))
        storage, state = self.reopen(storage, bootstrap=[NODE, "n2", "n3"])
        assert state.promised == Ballot(3, "n2")
        assert state.incarnation == first.incarnation + 1
        assert state.members == first.members

    def test_stores_made_again_do_not_repeat_incarnations(self, storage: Storage) -> None:
        # Proposal ids are numbered by incarnation: a store made again under the
        # same node id (a replaced disk) must not start where the old one did.
        first = storage.open(CLUSTER, NODE, bootstrap=[NODE]).incarnation
        storage.close()
        other = self.make_fresh_storage()
        try:
            again = other.open(CLUSTER, NODE, bootstrap=[NODE]).incarnation
        finally:
            other.close()
        assert again != first

    def test_refuses_another_cluster_id_naming_both(self, storage: Storage) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        storage.close()
        with pytest.raises(StorageError) as e:
            storage.open("cluster-2", NODE)
        assert CLUSTER in str(e.value) and "cluster-2" in str(e.value)
        assert NODE in str(e.value)

    def test_refuses_another_node_id_naming_both(self, storage: Storage) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        storage.close()
        with pytest.raises(StorageError) as e:
            storage.open(CLUSTER, "n2", bootstrap=["n2"])
        assert "'n1'" in str(e.value) and "'n2'" in str(e.value)
        # The refusal changed nothing: the owner still opens it, one incarnation later.
        first_state = storage.open(CLUSTER, NODE)
        storage.close()
        assert storage.open(CLUSTER, NODE).incarnation == first_state.incarnation + 1

    @pytest.mark.parametrize(("cluster_id", "node_id"), [("", NODE), (CLUSTER, "")])
    def test_empty_ids_are_misuse(self, storage: Storage, cluster_id: str, node_id: str) -> None:
        with pytest.raises(ConfigurationError):
            storage.open(cluster_id, node_id)

    def test_open_twice_is_refused(self, storage: Storage) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        with pytest.raises(StorageError, match="already open"):
            storage.open(CLUSTER, NODE, bootstrap=[NODE])

    def test_use_when_not_open_is_refused(self, storage: Storage) -> None:
        ready = Ready(decided=(decided(1),))
        with pytest.raises(StorageError, match="not open"):
            storage.save(ready)
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        storage.close()
        with pytest.raises(StorageError, match="not open"):
            storage.save(ready)
        with pytest.raises(StorageError, match="not open"):
            storage.install_snapshot(Snapshot(1, b"", b""))

    def test_close_is_idempotent(self, storage: Storage) -> None:
        storage.close()
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        storage.close()
        storage.close()

    # ------------------------------------------------------------------ save

    def test_round_trip_of_promised_accepted_decided(self, storage: Storage) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        storage.save(
            Ready(
                promised=Ballot(7, "n3"),
                accepted=(accepted(2, 7), accepted(1, 7)),
                decided=(decided(1, size=3),),
                must_sync=True,
            )
        )
        storage.save(Ready(decided=(decided(3, size=0), decided(2))))
        storage, state = self.reopen(storage)
        assert state.promised == Ballot(7, "n3")
        assert state.accepted == (accepted(1, 7), accepted(2, 7))
        assert state.decided == (decided(1, size=3), decided(2), decided(3, size=0))
        assert state.decided[2].value == NOOP
        assert state.snapshot is None

    def test_values_round_trip_exactly(self, storage: Storage) -> None:
        odd: Batch = (
            Proposal(ProposalId("nœud-é", 2**63), b""),
            Proposal(ProposalId("x" * 300, 1), bytes(range(256)) * 40),
            Proposal(ProposalId("n1", 5), b"\x00"),
        )
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        entry = AcceptedEntry(4, Ballot(2**40, "n9"), odd)
        storage.save(Ready(accepted=(entry,), decided=(DecidedEntry(4, odd),), must_sync=True))
        storage, state = self.reopen(storage)
        assert state.accepted == (entry,)
        assert state.decided == (DecidedEntry(4, odd),)

    def test_later_promise_replaces_and_absent_promise_keeps(self, storage: Storage) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        storage.save(Ready(promised=Ballot(1, "n1"), must_sync=True))
        storage.save(Ready(promised=Ballot(2, "n2"), must_sync=True))
        storage.save(Ready(accepted=(accepted(1, 2),), must_sync=True))
        storage, state = self.reopen(storage)
        assert state.promised == Ballot(2, "n2")

    def test_accepted_entry_replaces_the_slots_previous_one(self, storage: Storage) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        storage.save(Ready(accepted=(accepted(1, 1, tag="old"), accepted(2, 1)), must_sync=True))
        storage.save(Ready(accepted=(accepted(1, 3, tag="new"),), must_sync=True))
        storage, state = self.reopen(storage)
        assert state.accepted == (accepted(1, 3, tag="new"), accepted(2, 1))

    def test_unsynced_saves_survive_a_clean_close(self, storage: Storage) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        storage.save(Ready(decided=(decided(1),)))
        storage.save(Ready(accepted=(accepted(2),), must_sync=False))
        storage, state = self.reopen(storage)
        assert state.decided == (decided(1),)
        assert state.accepted == (accepted(2),)

    def test_empty_ready_is_a_no_op(self, storage: Storage) -> None:
        state = storage.open(CLUSTER, NODE, bootstrap=[NODE])
        syncs = storage.sync_count
        dropped = Dropped(ProposalId(NODE, 1), "no leader")
        storage.save(Ready())
        storage.save(Ready(must_sync=True))
        storage.save(Ready(dropped=(dropped,), must_sync=True))
        assert storage.sync_count == syncs
        storage, again = self.reopen(storage)
        assert again == DurableState(
            state.promised, (), (), None, state.incarnation + 1, state.members
        )

    @pytest.mark.parametrize("entries", [1, 50])
    def test_one_sync_per_must_sync_save_however_many_entries(
        self, storage: Storage, entries: int
    ) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        for n in range(3):
            syncs = storage.sync_count
            first = n * entries + 1
            slots = range(first, first + entries)
            storage.save(
                Ready(
                    promised=Ballot(n + 1, NODE),
                    accepted=tuple(accepted(s, n + 1) for s in slots),
                    decided=tuple(decided(s) for s in slots),
                    must_sync=True,
                )
            )
            assert storage.sync_count == syncs + 1
        storage, state = self.reopen(storage)
        assert [d.slot for d in state.decided] == list(range(1, 3 * entries + 1))

    def test_save_without_must_sync_does_not_sync(self, storage: Storage) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        syncs = storage.sync_count
        for slot in range(1, 11):
            storage.save(Ready(decided=(decided(slot),)))
        assert storage.sync_count == syncs

    # ------------------------------------------------------------------ snapshots

    def test_snapshot_install_compacts(self, storage: Storage) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        slots = range(1, 11)
        storage.save(
            Ready(
                promised=Ballot(4, NODE),
                accepted=tuple(accepted(s) for s in slots),
                decided=tuple(decided(s) for s in range(1, 9)),
                must_sync=True,
            )
        )
        syncs = storage.sync_count
        snap = Snapshot(6, b"core-meta", b"app-data" * 100)
        storage.install_snapshot(snap)
        assert storage.sync_count == syncs + 1
        storage, state = self.reopen(storage)
        assert state.snapshot == snap
        assert state.promised == Ballot(4, NODE)
        assert [a.slot for a in state.accepted] == [7, 8, 9, 10]
        assert [d.slot for d in state.decided] == [7, 8]

    def test_entries_at_or_below_the_snapshot_are_skipped(self, storage: Storage) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        storage.install_snapshot(Snapshot(5, b"", b"s"))
        storage.save(
            Ready(
                accepted=(accepted(5), accepted(6)),
                decided=(decided(4), decided(6)),
                must_sync=True,
            )
        )
        storage, state = self.reopen(storage)
        assert [a.slot for a in state.accepted] == [6]
        assert [d.slot for d in state.decided] == [6]

    def test_snapshots_only_move_forward(self, storage: Storage) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        storage.install_snapshot(Snapshot(5, b"", b"five"))
        storage.install_snapshot(Snapshot(9, b"m", b"nine"))
        storage.install_snapshot(Snapshot(7, b"", b"seven"))
        storage.save(Ready(decided=(decided(8), decided(10)), must_sync=True))
        storage, state = self.reopen(storage)
        assert state.snapshot == Snapshot(9, b"m", b"nine")
        assert [d.slot for d in state.decided] == [10]

    def test_snapshot_comes_after_the_saves_before_it(self, storage: Storage) -> None:
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        storage.save(Ready(decided=(decided(1), decided(2), decided(3))))
        storage.install_snapshot(Snapshot(2, b"", b"two"))
        storage, state = self.reopen(storage)
        assert state.snapshot == Snapshot(2, b"", b"two")
        assert state.decided == (decided(3),)

    def test_a_synced_save_covered_by_the_snapshot_still_syncs(self, storage: Storage) -> None:
        """Its entries are skipped, but it must still make the unsynced saves before it durable."""
        storage.open(CLUSTER, NODE, bootstrap=[NODE])
        storage.install_snapshot(Snapshot(5, b"", b"s"))
        storage.save(Ready(decided=(decided(6),)))
        syncs = storage.sync_count
        storage.save(Ready(accepted=(accepted(4),), decided=(decided(5),), must_sync=True))
        assert storage.sync_count == syncs + 1
        storage, state = self.reopen(storage)
        assert state.accepted == ()
        assert state.decided == (decided(6),)


class NewObjectConformance(StorageConformance):
    """The suite again, reopening with a *new* object of the store's class on the same path:
    the state must live in the files, not in the object."""

    def reopen(
        self, storage: Storage, *, bootstrap: list[str] | None = None
    ) -> tuple[Storage, DurableState]:
        path = getattr(storage, "path", None)
        assert isinstance(path, Path), "a file store names its file in .path"
        storage.close()
        fresh = self.make_storage_at(path.parent)
        return fresh, fresh.open(CLUSTER, NODE, bootstrap=bootstrap)

    def make_storage(self, tmp_path: Path) -> Storage:
        return self.make_storage_at(tmp_path / "data")

    def make_storage_at(self, data_dir: Path) -> Storage:
        raise NotImplementedError("a file store's suite builds its store in data_dir here")
