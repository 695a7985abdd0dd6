"""The metrics port in one process: a real node (durable log, fsync), real sockets on 127.0.0.1.

``/metrics`` is parsed with ``prometheus_client``'s own parser, so a series
that is malformed fails here as it would in Prometheus. The HTTP server's
bounds (head size, request time, connections) are each exercised.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from paxostob import Delivery, MemoryNetwork, NodeFailedError, TotalOrderBroadcast
from paxostob.cli import metrics as metrics_mod
from paxostob.cli.metrics import (
    FSYNC_BUCKETS_S,
    FsyncObserver,
    MetricsServer,
    NodeCollector,
    _PeerBytes,
    make_registry,
    readiness,
    tcp_info,
)
from paxostob.core.events import Ready
from paxostob.node.repeats import RepeatLimiter
from paxostob.resp.stats import CommandStats
from paxostob.storage.base import has_durable_part
from paxostob.storage.log import LogStorage

TICK_S = 0.002
WAIT_S = 20.0
SEED = 7


class Counting:
    """A state machine that counts deliveries; its snapshot is the count."""

    def __init__(self) -> None:
        self.count = 0

    def apply(self, delivery: Delivery) -> None:
        self.count += 1

    def snapshot(self) -> bytes:
        return str(self.count).encode() * 100

    def restore(self, data: bytes) -> None:
        self.count = int(data[: len(data) // 100] or b"0")


@asynccontextmanager
async def node(
    tmp_path: Path, members: tuple[str, ...] = ("a",), **kwargs: object
) -> AsyncIterator[TotalOrderBroadcast]:
    """Node ``a`` of ``members`` (the others never start), on a durable log in ``tmp_path``."""
    net = MemoryNetwork(seed=SEED)
    transport = net.transport("a")
    tob = TotalOrderBroadcast(
        transport,
        list(members),
        tick_interval_s=TICK_S,
        data_dir=tmp_path,
        bootstrap=True,
        seed=SEED,
        **kwargs,  # type: ignore[arg-type]
    )
    await tob.start()
    try:
        yield tob
    finally:
        await tob.close()
        await transport.close()


@asynccontextmanager
async def serving(
    tob: TotalOrderBroadcast, commands: CommandStats | None = None, lag_max: int = 1000
) -> AsyncIterator[tuple[MetricsServer, FsyncObserver]]:
    collector = NodeCollector(tob, commands=commands, ready_lag_slots_max=lag_max)
    registry, histogram = make_registry(collector)
    observer = FsyncObserver(tob, 1000.0, histogram)
    storage = tob.storage
    assert isinstance(storage, LogStorage)
    storage.on_sync = observer
    server = MetricsServer(registry, tob, host="127.0.0.1", port=0, ready_lag_slots_max=lag_max)
    await server.start()
    try:
        yield server, observer
    finally:
        await server.close()


async def http(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` raw; (status, headers, body) of the reply, read to EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(WAIT_S):
            raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    return await http(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_show_the_node_its_work_and_its_fsyncs(tmp_path: Path) -> None:
    stats = CommandStats()
    async with node(tmp_path) as tob, serving(tob, stats) as (server, observer):
        for k in range(5):
            await asyncio.wait_for(tob.broadcast(b"m%d" % k), WAIT_S)
        stats.record(b"set", 0.0003, failed=False)
        stats.record(b"set", 0.02, failed=True)
        status, headers, body = await get(server.port, "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        got = samples(body.decode())
        assert got[("paxostob_server_has_leader", ())] == 1
        assert got[("paxostob_server_is_leader", ())] == 1
        assert got[("paxostob_server_ready", ())] == 1
        assert got[("paxostob_server_proposals_committed_total", ())] >= 5
        assert got[("paxostob_server_proposals_applied_total", ())] >= 5
        assert got[("paxostob_server_messages_delivered_total", ())] == 5
        assert got[("paxostob_server_ballot_round", ())] >= 1
        assert got[("paxostob_server_proposals_failed_total", ())] == 0
        assert got[("paxostob_server_info", (("node", "a"), ("version", "0.1.0")))] == 1
        assert got[("process_resident_memory_bytes", ())] > 0
        # Every sync of the log (opening the store, each save) is one observation.
        fsyncs = got[("paxostob_disk_wal_fsync_duration_seconds_count", ())]
        storage = tob.storage
        assert isinstance(storage, LogStorage)
        assert 0 < fsyncs <= storage.sync_count
        inf = ("le", "+Inf")
        assert got[("paxostob_disk_wal_fsync_duration_seconds_bucket", (inf,))] == fsyncs
        assert len(FSYNC_BUCKETS_S) == 14 and FSYNC_BUCKETS_S[-1] == pytest.approx(8.192)
        set_ = (("command", "set"),)
        assert got[("paxostob_commands_total", set_)] == 2
        assert got[("paxostob_commands_failed_total", set_)] == 1
        assert got[("paxostob_command_duration_seconds_count", set_)] == 2
        assert got[("paxostob_command_duration_seconds_sum", set_)] == pytest.approx(0.0203)
        # Cumulative buckets: 0.3 ms is in le=0.0005, 20 ms in le=0.025.
        assert got[("paxostob_command_duration_seconds_bucket", (*set_, ("le", "0.00025")))] == 0
        assert got[("paxostob_command_duration_seconds_bucket", (*set_, ("le", "0.0005")))] == 1
        assert got[("paxostob_command_duration_seconds_bucket", (*set_, ("le", "0.01")))] == 1
        assert got[("paxostob_command_duration_seconds_bucket", (*set_, ("le", "0.025")))] == 2
        assert observer.slow == 0

        # OpenMetrics for a scraper that asks for it.
        status, headers, body = await http(
            server.port,
            b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
        )
        assert status == 200 and headers["content-type"].startswith("application/openmetrics")
        assert body.rstrip().endswith(b"# EOF")


async def test_health_and_ready_of_a_node_with_a_leader(tmp_path: Path) -> None:
    async with node(tmp_path) as tob, serving(tob) as (server, _):
        await asyncio.wait_for(tob.broadcast(b"x"), WAIT_S)
        status, headers, body = await get(server.port, "/health")
        assert (status, body) == (200, b'{"health": true, "reason": ""}')
        status, headers, body = await get(server.port, "/ready")
        assert status == 200 and headers["content-type"] == "application/json"
        assert b'"ready": true' in body and b'"leader": "a"' in body
        status, headers, body = await get(server.port, "/ready", "HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0


async def test_a_node_without_a_quorum_is_alive_but_not_ready(tmp_path: Path) -> None:
    # Node a of three whose peers never start: it can never know a leader.
    async with node(tmp_path, ("a", "b", "c")) as tob, serving(tob) as (server, _):
        with pytest.raises(TimeoutError):  # QuorumTimeoutError is a TimeoutError
            await tob.broadcast(b"lost", timeout=0.05)
        assert (await get(server.port, "/health"))[0] == 200
        status, _, body = await get(server.port, "/ready")
        assert status == 503
        assert b'"ready": false' in body and b"no leader is known" in body
        got = samples((await get(server.port, "/metrics"))[2].decode())
        assert got[("paxostob_server_has_leader", ())] == 0
        assert got[("paxostob_server_is_leader", ())] == 0
        assert got[("paxostob_server_ready", ())] == 0
        assert got[("paxostob_server_proposals_failed_total", ())] == 1
        assert got[("paxostob_server_proposals_pending", ())] == 1


class _Lagging:
    """A node's status with its applied slot ``lag`` behind the commit it heard."""

    def __init__(self, tob: TotalOrderBroadcast, lag: int) -> None:
        self._tob = tob
        self.failure = None
        self._lag = lag

    def status(self) -> object:
        st = self._tob.status()
        return dataclasses.replace(st, known_commit=st.decided_through + self._lag)


async def test_ready_fails_while_the_applied_slot_trails_the_commit_beyond_the_bound(
    tmp_path: Path,
) -> None:
    async with node(tmp_path) as tob:
        await asyncio.wait_for(tob.broadcast(b"x"), WAIT_S)
        at_bound = readiness(_Lagging(tob, 10), 10)  # type: ignore[arg-type]
        beyond = readiness(_Lagging(tob, 11), 10)  # type: ignore[arg-type]
    assert at_bound.ready and at_bound.reason == ""
    assert not beyond.ready and "trails the commit by 11 slots (> 10)" in beyond.reason


async def test_the_http_server_refuses_what_is_not_a_scrape(tmp_path: Path) -> None:
    async with node(tmp_path) as tob, serving(tob) as (server, _):
        assert (await get(server.port, "/nothing"))[0] == 404
        assert (await get(server.port, "/metrics", "POST"))[0] == 405
        assert (await http(server.port, b"GARBAGE\r\n\r\n"))[0] == 400
        huge = (
            b"GET /metrics HTTP/1.1\r\nX: " + b"a" * metrics_mod.HTTP_HEAD_BYTES_MAX + b"\r\n\r\n"
        )
        assert (await http(server.port, huge))[0] == 431
        # Still serving after all of them.
        assert (await get(server.port, "/health"))[0] == 200


async def test_a_silent_client_is_closed_after_the_request_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_mod, "HTTP_REQUEST_TIMEOUT_S", 0.1)
    async with node(tmp_path) as tob, serving(tob) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metr")  # and nothing more
        async with asyncio.timeout(WAIT_S):
            assert await reader.read() == b""  # closed by the server, unanswered
        writer.close()


async def test_connections_beyond_the_limit_are_closed_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_mod, "HTTP_CONNECTIONS_MAX", 2)
    async with node(tmp_path) as tob, serving(tob) as (server, _):
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        async with asyncio.timeout(WAIT_S):
            with contextlib.suppress(ConnectionResetError):  # aborted: as good as an EOF
                assert await reader.read() == b""
        writer.close()
        assert server.refused == 1
        # The two held ones are still served.
        for r, w in held:
            w.write(b"GET /health HTTP/1.1\r\n\r\n")
            async with asyncio.timeout(WAIT_S):
                assert (await r.read()).startswith(b"HTTP/1.1 200 OK\r\n")
            w.close()


async def test_snapshots_are_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "paxostob.node")
    saved = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Saved(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "event", None) == "snapshot":
                loop.call_soon_threadsafe(saved.set)

    handler = Saved()
    logging.getLogger("paxostob.node").addHandler(handler)
    try:
        async with (
            node(tmp_path, state_machine=Counting(), snapshot_entries_max=4) as tob,
            serving(tob) as (server, _),
        ):
            for k in range(8):
                await asyncio.wait_for(tob.broadcast(b"s%d" % k), WAIT_S)
            await asyncio.wait_for(saved.wait(), WAIT_S)
            got = samples((await get(server.port, "/metrics"))[2].decode())
            stats = tob.snapshots
    finally:
        logging.getLogger("paxostob.node").removeHandler(handler)
    assert stats.saved >= 1 and stats.installed == 0
    assert stats.last_bytes > 0 and stats.last_bytes % 100 == 0  # Counting's snapshot
    assert got[("paxostob_snapshot_save_duration_seconds_count", ())] == stats.saved
    assert got[("paxostob_snapshot_size_bytes", ())] == stats.last_bytes
    assert got[("paxostob_snapshot_last_slot", ())] == stats.last_slot >= 4
    records = [r for r in caplog.records if getattr(r, "event", None) == "snapshot"]
    assert len(records) == stats.saved
    record = records[-1]
    assert record.levelno == logging.INFO
    assert f"snapshot at slot {stats.last_slot} saved" in record.getMessage()
    assert record.__dict__["ballot"] and record.__dict__["slot"] == stats.last_slot


def test_a_slow_fsync_is_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]

    class Status:
        ballot = "3.b"
        decided_through = 42

    class Node:
        address = "b"

        def status(self) -> Status:
            return Status()

    limiter = RepeatLimiter(10.0, clock=lambda: now[0])
    observe = FsyncObserver(Node(), 50.0, None, limiter)  # type: ignore[arg-type]
    caplog.set_level(logging.WARNING, "paxostob.metrics")
    observe(0.049)  # fast enough: nothing
    observe(0.2)
    observe(0.3)
    observe(0.4)
    now[0] += 10.0
    observe(0.05)  # at the threshold: slow
    lines = [r for r in caplog.records if r.name == "paxostob.metrics"]
    assert observe.slow == 4
    assert [r.getMessage() for r in lines] == [
        "b: slow fsync: the log took 200 ms to sync (slow_fsync_ms is 50); every write waits "
        "for it; ballot 3.b, applied slot 42",
        "b: slow fsync: the log took 50 ms to sync (slow_fsync_ms is 50); every write waits "
        "for it; ballot 3.b, applied slot 42 (2 more like this since the last one logged)",
    ]
    assert all(r.levelno == logging.WARNING for r in lines)
    assert lines[1].__dict__["held_back"] == 2 and lines[1].__dict__["event"] == "slow_fsync"


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def test_tcp_info_reads_the_kernels_bytes_and_round_trip_time(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = tcp_pair
    client.sendall(b"x" * 100_000)
    got = 0
    while got < 100_000:
        got += len(server.recv(65536))
    server.sendall(b"y" * 777)
    back = b""
    while len(back) < 777:
        back += client.recv(1000)
    reading = tcp_info(client)
    assert reading is not None, "TCP_INFO is Linux's; this suite runs on Linux"
    rtt, sent, received = reading
    assert 0 <= rtt < 1.0
    # The kernel counts the SYN as one byte acknowledged.
    assert sent in (100_000, 100_001)
    assert received in (777, 778)
    assert tcp_info(object()) is None


def test_peer_bytes_never_go_back_across_connections() -> None:
    counts = _PeerBytes()
    assert counts.update(100, 10) == (100, 10)
    assert counts.update(150, 20) == (150, 20)
    assert counts.update(30, 5) == (180, 25)  # a new connection: counted on top
    assert counts.update(0, 0) == (180, 25)  # no connection now
    assert counts.update(7, 1) == (187, 26)


def test_the_grafana_dashboard_uses_only_series_a_node_exports() -> None:
    root = Path(__file__).resolve().parents[2]
    dashboard = json.loads((root / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) > 20
    source = (root / "src" / "paxostob" / "cli" / "metrics.py").read_text()
    used = {n for e in exprs for n in re.findall(r"\b(paxostob_\w+)", e)}
    for name in sorted(used):
        base = re.sub(r"_(total|bucket|sum|count)$", "", name)
        assert f'"{base}"' in source, f"the dashboard uses {name}, which no collector exports"
    assert any("process_resident_memory_bytes" in e for e in exprs)


class _FullDisk(LogStorage):
    """A log whose durable saves fail with ENOSPC from the ``at``-th on: the disk filled up."""

    def __init__(self, path: Path, at: int) -> None:
        super().__init__(path)
        self.at = at
        self.saves = 0

    def save(self, ready: Ready) -> None:
        if has_durable_part(ready):
            self.saves += 1
            if self.saves >= self.at:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        super().save(ready)


async def test_a_failed_node_is_neither_healthy_nor_ready(tmp_path: Path) -> None:
    net = MemoryNetwork(seed=SEED)
    transport = net.transport("a")
    tob = TotalOrderBroadcast(
        transport, ["a"], tick_interval_s=TICK_S, storage=_FullDisk(tmp_path, at=3), bootstrap=True
    )
    await tob.start()
    registry, _ = make_registry(NodeCollector(tob))
    server = MetricsServer(registry, tob, host="127.0.0.1", port=0, ready_lag_slots_max=1000)
    await server.start()
    try:
        with pytest.raises(NodeFailedError):
            for k in range(20):
                await asyncio.wait_for(tob.broadcast(b"f%d" % k), WAIT_S)
        status, _, body = await get(server.port, "/health")
        assert status == 503 and b'"health": false' in body and b"ENOSPC" in body
        status, _, body = await get(server.port, "/ready")
        assert status == 503 and b'"reason": "the node failed"' in body
    finally:
        await server.close()
        await tob.close()
        await transport.close()
