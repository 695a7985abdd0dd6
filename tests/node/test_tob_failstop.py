"""Fail-stop: a node whose storage fails stops, says why, and loses nothing it acknowledged.

A full disk (ENOSPC) at a chosen save and the open-file limit (EMFILE) hit
while a snapshot is written, on real log files in a temporary directory.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from paxostob import (
    Consensus,
    Delivery,
    MemoryNetwork,
    NodeFailedError,
    NotRunningError,
    ProposalIdsExhaustedError,
    TotalOrderBroadcast,
)
from paxostob.core.events import Ready
from paxostob.core.log import SEQ_BITS
from paxostob.core.messages import Envelope
from paxostob.core.types import Snapshot
from paxostob.storage.base import DurableState, Storage, has_durable_part
from paxostob.storage.log import LogStorage
from paxostob.storage.memory import MemoryStorage
from paxostob.transport.base import Transport

TICK = 0.002
MEMBERS = ["peer1", "peer2", "peer3"]
WAIT_S = 10.0


class FullAt:
    """A ``LogStorage`` whose durable save number ``at`` fails with ENOSPC: the disk filled up."""

    def __init__(self, inner: LogStorage, at: int) -> None:
        self.inner = inner
        self.path = inner.path
        self.at = at
        self.saves = 0

    def open(
        self, cluster_id: str, node_id: str, *, bootstrap: Sequence[str] | None = None
    ) -> DurableState:
        return self.inner.open(cluster_id, node_id, bootstrap=bootstrap)

    def save(self, ready: Ready) -> None:
        if has_durable_part(ready):
            self.saves += 1
            if self.saves >= self.at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        self.inner.save(ready)

    def install_snapshot(self, snapshot: Snapshot) -> None:
        self.inner.install_snapshot(snapshot)

    @property
    def sync_count(self) -> int:
        return self.inner.sync_count

    def close(self) -> None:
        self.inner.close()


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "paxostob.node" and r.levelno >= logging.ERROR
    ]


async def test_a_full_disk_stops_the_node_fails_its_callers_and_loses_no_acked_broadcast(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    net = MemoryNetwork(seed=21)
    transports: dict[str, Transport] = {}

    def make(m: str, storage: Storage, bootstrap: bool = False) -> TotalOrderBroadcast:
        transports[m] = net.transport(m)
        return TotalOrderBroadcast(
            transports[m], MEMBERS, tick_interval_s=TICK, storage=storage, bootstrap=bootstrap
        )

    full = FullAt(LogStorage(tmp_path / "peer1"), at=12)
    nodes = {
        m: make(m, full if m == "peer1" else LogStorage(tmp_path / m), bootstrap=True)
        for m in MEMBERS
    }
    for n in nodes.values():
        await n.start()
    acked: list[Delivery] = []
    errors: list[BaseException] = []
    try:
        # Rounds of 8 concurrent broadcasts through peer1: when its disk
        # fills, some are waiting, and each must end (none may hang).
        for r in range(40):
            results = await asyncio.gather(
                *(nodes["peer1"].broadcast(f"r{r}m{k}".encode(), timeout=WAIT_S) for k in range(8)),
                return_exceptions=True,
            )
            acked += [d for d in results if isinstance(d, Delivery)]
            errors += [e for e in results if isinstance(e, BaseException)]
            if errors:
                break
        assert errors, "the disk never filled"
        assert all(isinstance(e, NodeFailedError) for e in errors), errors
        failure = nodes["peer1"].failure
        assert failure is not None
        assert all(e is failure for e in errors)
        text = str(failure)
        assert "ENOSPC" in text and f"free space on {tmp_path / 'peer1'}" in text, text
        assert "acknowledged are safe" in text, text
        assert isinstance(failure.__cause__, OSError)
        assert failure.__cause__.errno == errno.ENOSPC
        with pytest.raises(NodeFailedError) as waited:
            await asyncio.wait_for(nodes["peer1"].wait_closed(), WAIT_S)
        assert waited.value is failure
        # Later calls name the cause too.
        with pytest.raises(NodeFailedError, match="ENOSPC"):
            await nodes["peer1"].broadcast(b"later", timeout=WAIT_S)
        with pytest.raises(NodeFailedError, match="ENOSPC"):
            await nodes["peer1"].broadcast_many([b"later"], timeout=WAIT_S)
        # One log line, naming the file, the errno and what to do.
        assert failure_lines(caplog) == [text]
        # The other two go on.
        await nodes["peer2"].broadcast(b"without peer1", timeout=WAIT_S)
    finally:
        for m, n in nodes.items():
            await n.close()
            await transports[m].close()
    with pytest.raises(NodeFailedError):  # closing does not hide the failure
        await nodes["peer1"].wait_closed()

    # Space freed: the whole cluster restarts on the same files.
    nodes = {m: make(m, LogStorage(tmp_path / m)) for m in MEMBERS}
    for n in nodes.values():
        await n.start()
    try:
        last = await nodes["peer2"].broadcast(b"after the restart", timeout=WAIT_S)
        for m, n in nodes.items():
            seen: dict[int, Delivery] = {}
            while last.slot not in seen:
                d = await asyncio.wait_for(n.deliver(), WAIT_S)
                seen[d.slot] = d
            missing = [d for d in acked if seen.get(d.slot) != d]
            assert not missing, f"{m} lost acknowledged broadcasts: {missing}"
    finally:
        for n in nodes.values():
            await n.close()
    assert len(acked) >= 8, "too few broadcasts were acknowledged to check their survival"


class Counter:
    """A state machine: how many deliveries it applied."""

    def __init__(self) -> None:
        self.count = 0

    def apply(self, delivery: Delivery) -> None:
        self.count += 1

    def snapshot(self) -> bytes:
        return str(self.count).encode()

    def restore(self, data: bytes) -> None:
        self.count = int(data)


@contextmanager
def open_files_exhausted() -> Iterator[None]:
    """RLIMIT_NOFILE lowered to the descriptors in use: the next ``open`` fails with EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open(os.devnull, os.O_RDONLY)  # the kernel hands out the lowest free one
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_the_open_file_limit_hit_while_writing_a_snapshot_stops_the_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    net = MemoryNetwork(seed=22)
    nodes = {
        m: TotalOrderBroadcast(
            net.transport(m),
            MEMBERS,
            tick_interval_s=TICK,
            storage=LogStorage(tmp_path / m) if m == "peer1" else MemoryStorage(),
            state_machine=Counter(),
            bootstrap=True,
            snapshot_entries_max=20,  # peer1 (first of the members) compacts after 20
        )
        for m in MEMBERS
    }
    for n in nodes.values():
        await n.start()
    try:
        for k in range(5):  # under way: peer1's log is open and saving
            await nodes["peer2"].broadcast(f"warm{k}".encode(), timeout=WAIT_S)
        with open_files_exhausted():
            # Saves append to the open log and need no descriptor; the snapshot
            # rewrites the log into a new file, and that open fails.
            for k in range(40):
                await nodes["peer2"].broadcast(f"m{k}".encode(), timeout=WAIT_S)
            with pytest.raises(NodeFailedError) as failed:
                await asyncio.wait_for(nodes["peer1"].wait_closed(), WAIT_S)
        text = str(failed.value)
        assert "install_snapshot failed" in text and "EMFILE" in text, text
        assert "open-file limit" in text, text
        assert failure_lines(caplog) == [text]
        with pytest.raises(NodeFailedError, match="EMFILE"):
            await nodes["peer1"].broadcast(b"later", timeout=WAIT_S)
    finally:
        for n in nodes.values():
            await n.close()


class BrokenTransport:
    """A transport whose ``send`` raises: the driver's loop fails."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    @property
    def address(self) -> str:
        return self.inner.address

    def send(self, envelope: Envelope) -> None:
        raise RuntimeError("the wire is cut")

    async def receive(self) -> Envelope:
        return await self.inner.receive()

    async def close(self) -> None:
        await self.inner.close()


async def test_a_consensus_whose_driver_fails_raises_the_cause_to_every_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    net = MemoryNetwork(seed=24)
    node = Consensus(BrokenTransport(net.transport("a")), ["a"], tick_interval_s=TICK)
    await node.start()
    try:
        waiting = asyncio.ensure_future(node.decided(timeout=WAIT_S))
        with pytest.raises(NodeFailedError, match="the wire is cut"):
            await node.propose(b"v", timeout=WAIT_S)
        with pytest.raises(NodeFailedError, match="the wire is cut"):
            await waiting
        with pytest.raises(NodeFailedError, match="bug"):
            await asyncio.wait_for(node.wait_closed(), WAIT_S)
        assert isinstance(node.failure, NotRunningError)
        assert failure_lines(caplog) == [str(node.failure)]
    finally:
        await node.close()


async def test_a_life_out_of_proposal_numbers_stops_the_node_with_the_reason() -> None:
    net = MemoryNetwork(seed=21)
    node = TotalOrderBroadcast(net.transport("solo"), ["solo"], tick_interval_s=0.002)
    async with node:
        first = await node.broadcast(b"warm up", timeout=10)
        # As if this life had made all but one of its 2**32 - 1 proposals.
        proposals = node._replica.proposals
        life = proposals._seq >> SEQ_BITS
        proposals._seq = life << SEQ_BITS | ((1 << SEQ_BITS) - 2)
        last = await node.broadcast(b"the last one", timeout=10)
        assert last.slot == first.slot + 1
        with pytest.raises(NodeFailedError, match="restart the node") as e:
            await node.broadcast(b"one too many", timeout=10)
        assert isinstance(e.value.__cause__, ProposalIdsExhaustedError)
        with pytest.raises(NodeFailedError):
            await node.wait_closed()


async def test_broadcasts_proposed_together_all_fail_when_one_of_them_stops_the_node() -> None:
    """Broadcasts of one loop pass are proposed by one driver call: when a proposal in the
    middle stops the node (its life is out of numbers), those behind it fail too, at once."""
    net = MemoryNetwork(seed=22)
    node = TotalOrderBroadcast(net.transport("solo"), ["solo"], tick_interval_s=0.002)
    async with node:
        await node.broadcast(b"warm up", timeout=10)
        # As if this life had made all but one of its 2**32 - 1 proposals.
        proposals = node._replica.proposals
        life = proposals._seq >> SEQ_BITS
        proposals._seq = life << SEQ_BITS | ((1 << SEQ_BITS) - 2)
        outcomes = await asyncio.gather(
            *(node.broadcast(b"m%d" % i, timeout=10) for i in range(3)), return_exceptions=True
        )
        # The first took the last number; the second stopped the node. A broadcast
        # not stepped yet must not wait for its timeout (a QuorumTimeoutError).
        assert [type(o) for o in outcomes] == [NodeFailedError] * 3, outcomes
        assert all("restart the node" in str(o) for o in outcomes)
