"""Durable TotalOrderBroadcast: persist-before-send, and restart with replay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from paxostob import (
    ConfigurationError,
    MemoryNetwork,
    StorageError,
    StoreMissingError,
    TotalOrderBroadcast,
)
from paxostob.core.events import Ready
from paxostob.core.messages import Accept, Accepted, Envelope, Promise
from paxostob.core.types import ZERO_BALLOT, Ballot
from paxostob.storage.base import DurableState
from paxostob.storage.memory import MemoryStorage
from paxostob.transport.base import Transport

TICK = 0.002
MEMBERS = ["peer1", "peer2", "peer3"]


class Recorder:
    """One ordered log of storage saves and transport sends, across all nodes."""

    def __init__(self) -> None:
        # ("save", node, ready) | ("send", sender, envelope)
        self.events: list[tuple[str, str, object]] = []


class RecordingStorage:
    """A storage double: records each save in the common log once a crash could not undo it.

    The inner ``MemoryStorage`` keeps the saves a power loss would drop
    (``unsynced_saves``); a save is logged when none is left, so an unsynced
    save is logged only when a later synced one covers it.
    """

    def __init__(self, inner: MemoryStorage, rec: Recorder, node: str) -> None:
        self.inner = inner
        self.rec = rec
        self.node = node
        self.pending: list[Ready] = []  # saved, not yet synced

    def open(
        self, cluster_id: str, node_id: str, *, bootstrap: Sequence[str] | None = None
    ) -> DurableState:
        return self.inner.open(cluster_id, node_id, bootstrap=bootstrap)

    def save(self, ready: Ready) -> None:
        self.inner.save(ready)
        self.pending.append(ready)
        if self.inner.unsynced_saves == 0:
            # Logged once synced: a send logged after it really came after the sync.
            self.rec.events.extend(("save", self.node, r) for r in self.pending)
            self.pending.clear()

    def install_snapshot(self, snapshot: object) -> None:
        raise AssertionError("not used here")

    @property
    def sync_count(self) -> int:
        return self.inner.sync_count

    def close(self) -> None:
        self.inner.close()


class RecordingTransport:
    def __init__(self, inner: Transport, rec: Recorder) -> None:
        self.inner = inner
        self.rec = rec

    @property
    def address(self) -> str:
        return self.inner.address

    def send(self, envelope: Envelope) -> None:
        self.rec.events.append(("send", self.address, envelope))
        self.inner.send(envelope)

    async def receive(self) -> Envelope:
        return await self.inner.receive()

    async def close(self) -> None:
        await self.inner.close()


async def test_promises_and_accepts_are_synced_before_their_messages_leave() -> None:
    """Every Promise and Accepted leaves after the promise or acceptance it reports was synced.

    And the pipeline does overlap: a leader's Accept leaves before its own
    acceptance of that value is saved (that is safe; see core/multipaxos.py).
    """
    rec = Recorder()
    net = MemoryNetwork(seed=7)
    nodes = [
        TotalOrderBroadcast(
            RecordingTransport(net.transport(m), rec),
            MEMBERS,
            tick_interval_s=TICK,
            storage=RecordingStorage(MemoryStorage(), rec, m),
            bootstrap=True,
        )
        for m in MEMBERS
    ]
    for n in nodes:
        await n.start()
    try:
        await asyncio.gather(
            *(n.broadcast(f"m{i}".encode(), timeout=10) for i, n in enumerate(nodes))
        )
    finally:
        for n in nodes:
            await n.close()
    promised: dict[str, Ballot] = dict.fromkeys(MEMBERS, ZERO_BALLOT)
    accepted: dict[str, set[tuple[int, Ballot]]] = {m: set() for m in MEMBERS}
    decided: dict[str, set[int]] = {m: set() for m in MEMBERS}
    checked = {"Promise": 0, "Accepted": 0}
    accepts_ahead = 0
    for kind, node, what in rec.events:
        if kind == "save":
            assert isinstance(what, Ready)
            if what.promised is not None:
                promised[node] = max(promised[node], what.promised)
            accepted[node].update((a.slot, a.ballot) for a in what.accepted)
            decided[node].update(d.slot for d in what.decided)
            continue
        assert isinstance(what, Envelope)
        m = what.message
        if isinstance(m, Promise):
            checked["Promise"] += 1
            assert promised[node] >= m.ballot, f"{node} sent {m} before saving its promise"
        elif isinstance(m, Accepted):
            checked["Accepted"] += 1
            saved = (m.slot, m.ballot) in accepted[node] or m.slot in decided[node]
            assert saved, f"{node} sent {m} before saving that acceptance"
        elif isinstance(m, Accept) and (m.slot, m.ballot) not in accepted[node]:
            accepts_ahead += 1
    assert min(checked.values()) > 0, f"the test checked too little: {checked}"
    assert accepts_ahead > 0, "no Accept left before its leader's own acceptance was saved"


async def test_a_restarted_node_replays_its_decided_log_in_the_same_positions() -> None:
    net = MemoryNetwork(seed=8)
    storages = {m: MemoryStorage() for m in MEMBERS}
    transports: dict[str, Transport] = {}

    def make(m: str, *, bootstrap: bool = False) -> TotalOrderBroadcast:
        transports[m] = net.transport(m)
        return TotalOrderBroadcast(
            transports[m], MEMBERS, tick_interval_s=TICK, storage=storages[m], bootstrap=bootstrap
        )

    nodes = {m: make(m, bootstrap=True) for m in MEMBERS}
    for n in nodes.values():
        await n.start()
    try:
        for k in range(20):
            await nodes[MEMBERS[k % 3]].broadcast(f"m{k}".encode(), timeout=10)
        before = [await asyncio.wait_for(nodes["peer3"].deliver(), 10) for _ in range(20)]
        # Crash peer3 (everything it synced survives), then restart it.
        await nodes["peer3"].close()
        await transports["peer3"].close()
        storages["peer3"].crash()
        nodes["peer3"] = make("peer3")
        await nodes["peer3"].start()
        replayed = [await asyncio.wait_for(nodes["peer3"].deliver(), 10) for _ in range(20)]
        assert replayed == before
        # It rejoins: new broadcasts reach it in the next positions.
        d = await nodes["peer1"].broadcast(b"after", timeout=10)
        nxt = await asyncio.wait_for(nodes["peer3"].deliver(), 10)
        assert nxt == d and d.slot == 21
    finally:
        for n in nodes.values():
            await n.close()


async def test_a_whole_cluster_restarts_from_its_data_dirs_and_loses_nothing(
    tmp_path: Path,
) -> None:
    net = MemoryNetwork(seed=9)
    transports: dict[str, Transport] = {}

    def make(m: str, *, bootstrap: bool = False) -> TotalOrderBroadcast:
        transports[m] = net.transport(m)
        return TotalOrderBroadcast(
            transports[m], MEMBERS, tick_interval_s=TICK, data_dir=tmp_path / m, bootstrap=bootstrap
        )

    nodes = {m: make(m, bootstrap=True) for m in MEMBERS}
    for n in nodes.values():
        await n.start()
    acked = []
    try:
        for k in range(30):
            acked.append(await nodes[MEMBERS[k % 3]].broadcast(f"m{k}".encode(), timeout=10))
    finally:
        for m, n in nodes.items():
            await n.close()
            await transports[m].close()
    # Every node down at once, then back on the same directories.
    nodes = {m: make(m) for m in MEMBERS}
    for n in nodes.values():
        await n.start()
    try:
        for n in nodes.values():
            replay = [await asyncio.wait_for(n.deliver(), 10) for _ in range(30)]
            assert replay == acked
        d = await nodes["peer2"].broadcast(b"after", timeout=10)
        assert d.slot == 31
    finally:
        for n in nodes.values():
            await n.close()


async def test_a_data_dir_of_another_node_is_refused(tmp_path: Path) -> None:
    net = MemoryNetwork(seed=10)
    async with TotalOrderBroadcast(
        net.transport("peer1"), MEMBERS, data_dir=tmp_path, bootstrap=True
    ):
        pass
    other = TotalOrderBroadcast(net.transport("peer2"), MEMBERS, data_dir=tmp_path, bootstrap=True)
    with pytest.raises(StorageError, match="peer1"):
        await other.start()


async def test_a_store_made_for_other_members_is_refused(tmp_path: Path) -> None:
    # Restarting with another --members is no membership change: a quorum of
    # four need not overlap one of three that decided before.
    async with TotalOrderBroadcast(
        MemoryNetwork(seed=12).transport("peer1"), MEMBERS, data_dir=tmp_path, bootstrap=True
    ):
        pass
    grown = TotalOrderBroadcast(
        MemoryNetwork(seed=12).transport("peer1"), [*MEMBERS, "peer4"], data_dir=tmp_path
    )
    with pytest.raises(ConfigurationError, match=r"made for the members .*peer4"):
        await grown.start()
    # The refusal closed the store: the node starts again with its own members.
    async with TotalOrderBroadcast(
        MemoryNetwork(seed=12).transport("peer1"), MEMBERS, data_dir=tmp_path
    ):
        pass


async def test_a_missing_store_is_refused_unless_bootstrapping(tmp_path: Path) -> None:
    net = MemoryNetwork(seed=13)
    node = TotalOrderBroadcast(net.transport("peer1"), MEMBERS, data_dir=tmp_path / "wiped")
    with pytest.raises(StoreMissingError, match="no store here"):
        await node.start()
    assert not (tmp_path / "wiped").exists()
