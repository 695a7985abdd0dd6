"""``paxostob serve --metrics-port P``: Prometheus metrics, ``/health`` and ``/ready``.

One small HTTP/1.1 server on the node's event loop (``MetricsServer``):

- ``GET /metrics``: every series below, in Prometheus's text format (or
  OpenMetrics when the scraper asks for it);
- ``GET /health``: liveness. 200 while the node runs (its event loop
  answers, so the server does), 503 once it has failed (it is stopping);
- ``GET /ready``: readiness. 200 when the node knows a leader and its
  applied slot trails the highest commit it heard from a leader by at most
  ``ready_lag_slots_max``; 503 otherwise. The reply is a JSON object saying
  why. This, not ``PING`` (which answers ``PONG`` without a quorum, as in
  Redis), is the check for a load balancer or an orchestrator.

Collection is cheap by design: the series are read at scrape time from the
counters the node keeps anyway (``NodeCollector``: the consensus status,
``TotalOrderBroadcast``'s snapshot counters, the transport's ``TcpStats``,
the client server's counters, ``resp.stats.CommandStats``), so nothing is
added to the request path for them; peers' round-trip time and bytes come
from the kernel (``TCP_INFO``) at scrape time. The one series observed as
it happens is the log's fsync histogram (an fsync is milliseconds, the
observation a microsecond). Series follow etcd's names where one exists
(docs/operations.md, "Monitoring", lists them all). The process's own
(``process_resident_memory_bytes``, CPU, open files) come from
``prometheus_client``'s process collector.

Only this module imports ``prometheus_client``: the library needs none of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from ..node.repeats import RepeatLimiter
from ..node.tob import TotalOrderBroadcast
from ..resp.server import RespServer
from ..resp.stats import LATENCY_BUCKETS_S, CommandStats
from ..transport.tcp import TcpTransport

__all__ = [
    "FSYNC_BUCKETS_S",
    "FsyncObserver",
    "MetricsServer",
    "NodeCollector",
    "Readiness",
    "make_registry",
    "readiness",
]

log = logging.getLogger("paxostob.metrics")

VERSION = "0.1.0"

#: etcd's buckets for ``etcd_disk_wal_fsync_duration_seconds`` (1 ms to 8 s,
#: doubling), so dashboards and alerts written for etcd read ours the same way.
FSYNC_BUCKETS_S: Final = tuple(0.001 * 2**i for i in range(14))

#: A request's head (request line and headers) may hold this many bytes: a
#: scraper's is a few hundred; more is not a scraper.
HTTP_HEAD_BYTES_MAX: Final = 8192
#: A connection must send its request within this; then it is closed.
HTTP_REQUEST_TIMEOUT_S: Final = 5.0
#: Connections served at once; more are closed at once. Prometheus holds one
#: per scrape, and a few people with curl: 32 is plenty, and bounds what a
#: misbehaving client can hold.
HTTP_CONNECTIONS_MAX: Final = 32


# ------------------------------------------------------------------------- readiness


@dataclass(frozen=True, slots=True)
class Readiness:
    """What ``/ready`` answers, and why."""

    ready: bool
    reason: str
    leader: str | None
    ballot: str
    applied_slot: int
    commit_slot: int
    lag_slots_max: int

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "ready": self.ready,
                "reason": self.reason,
                "leader": self.leader,
                "ballot": self.ballot,
                "applied_slot": self.applied_slot,
                "commit_slot": self.commit_slot,
                "lag_slots": self.commit_slot - self.applied_slot,
                "lag_slots_max": self.lag_slots_max,
            }
        ).encode()


def readiness(tob: TotalOrderBroadcast, lag_slots_max: int) -> Readiness:
    """Ready: the node runs, knows a leader, and has applied up to within
    ``lag_slots_max`` slots of the highest commit a leader told it."""
    st = tob.status()
    lag = st.known_commit - st.decided_through
    if tob.failure is not None:
        reason = "the node failed"
    elif st.leader is None:
        reason = "no leader is known (an election is under way, or no quorum)"
    elif lag > lag_slots_max:
        reason = f"applied slot trails the commit by {lag} slots (> {lag_slots_max})"
    else:
        reason = ""
    return Readiness(
        ready=not reason,
        reason=reason,
        leader=st.leader,
        ballot=str(st.ballot),
        applied_slot=st.decided_through,
        commit_slot=st.known_commit,
        lag_slots_max=lag_slots_max,
    )


# ------------------------------------------------------------------------------- disk


class FsyncObserver:
    """Called with each fsync's duration by the log store (``LogStorage.on_sync``).

    Observes the fsync histogram (when metrics are on) and logs a sync that
    took ``slow_fsync_ms`` or longer, at most once per 10 s with the count
    of the others. Runs in the thread that saves: a ``Histogram`` is
    thread-safe, and the line reads the node's status without changing it.
    """

    def __init__(
        self,
        tob: TotalOrderBroadcast,
        slow_fsync_ms: float,
        histogram: Histogram | None = None,
        limiter: RepeatLimiter | None = None,
    ) -> None:
        self.tob = tob
        self.slow_fsync_s = slow_fsync_ms / 1000
        self.histogram = histogram
        self.limiter = RepeatLimiter() if limiter is None else limiter
        #: Syncs at or above the threshold, logged or not.
        self.slow = 0

    def __call__(self, seconds: float) -> None:
        if self.histogram is not None:
            self.histogram.observe(seconds)
        if seconds < self.slow_fsync_s:
            return
        self.slow += 1
        held = self.limiter.allow("slow fsync")
        if held is None:
            return
        st = self.tob.status()
        log.warning(
            "%s: slow fsync: the log took %.0f ms to sync (slow_fsync_ms is %g); every write "
            "waits for it; ballot %s, applied slot %d%s",
            self.tob.address,
            seconds * 1000,
            self.slow_fsync_s * 1000,
            st.ballot,
            st.decided_through,
            RepeatLimiter.suffix(held),
            extra={
                "event": "slow_fsync",
                "fsync_ms": round(seconds * 1000, 3),
                "slow_fsync_ms": self.slow_fsync_s * 1000,
                "ballot": str(st.ballot),
                "slot": st.decided_through,
                "held_back": held,
            },
        )


# ------------------------------------------------------------------------------ peers

_TCP_INFO = getattr(socket, "TCP_INFO", None)
#: ``struct tcp_info`` (linux/tcp.h): ``tcpi_rtt`` (us) at byte 68,
#: ``tcpi_bytes_acked`` and ``tcpi_bytes_received`` at 120 and 128 (Linux >= 4.6).
_RTT = struct.Struct("=I")
_BYTES = struct.Struct("=QQ")
_TCP_INFO_BYTES = 136


def tcp_info(sock: object) -> tuple[float, int, int] | None:
    """(smoothed round-trip time in seconds, bytes sent and acknowledged, bytes received)
    of a connected TCP socket, from the kernel; None where it does not say."""
    getsockopt = getattr(sock, "getsockopt", None)
    if _TCP_INFO is None or getsockopt is None:
        return None
    try:
        raw = getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_BYTES)
    except (OSError, ValueError):
        return None
    if not isinstance(raw, bytes) or len(raw) < _TCP_INFO_BYTES:
        return None
    (rtt_us,) = _RTT.unpack_from(raw, 68)
    sent, received = _BYTES.unpack_from(raw, 120)
    return rtt_us / 1e6, sent, received


class _PeerBytes:
    """A peer's bytes as counters that never go back, over its successive connections.

    The kernel counts per connection; a reading below the previous one means
    a new connection, whose count starts again: the old one's last reading is
    added to a base. (A connection's bytes after its last scrape are not seen.)
    """

    __slots__ = ("base", "last")

    def __init__(self) -> None:
        self.base = [0, 0]
        self.last = [0, 0]

    def update(self, sent: int, received: int) -> tuple[int, int]:
        for k, value in enumerate((sent, received)):
            if value < self.last[k]:
                self.base[k] += self.last[k]
            self.last[k] = value
        return self.base[0] + self.last[0], self.base[1] + self.last[1]


# ---------------------------------------------------------------------------- collect


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class NodeCollector:
    """A ``prometheus_client`` collector reading the node's own counters at scrape time.

    Runs on the event loop (``MetricsServer`` serves there), so what it
    reads is consistent with what the node does between two of its steps.
    """

    def __init__(
        self,
        tob: TotalOrderBroadcast,
        *,
        transport: TcpTransport | None = None,
        server: RespServer | None = None,
        commands: CommandStats | None = None,
        ready_lag_slots_max: int = 1000,
    ) -> None:
        self.tob = tob
        self.transport = transport
        self.server = server
        self.commands = commands
        self.ready_lag_slots_max = ready_lag_slots_max
        self._peer_bytes: dict[str, _PeerBytes] = {}

    def collect(self) -> Iterator[Metric]:
        yield from self._consensus()
        yield from self._snapshots()
        if self.transport is not None:
            yield from self._network(self.transport)
        if self.server is not None:
            yield from self._clients(self.server)
        if self.commands is not None:
            yield from self._commands(self.commands)

    def _consensus(self) -> Iterator[Metric]:
        tob = self.tob
        st = tob.status()
        info = GaugeMetricFamily(
            "paxostob_server_info",
            "This node: its id and version (always 1).",
            labels=["node", "version"],
        )
        info.add_metric([tob.address, VERSION], 1)
        yield info
        yield _gauge(
            "paxostob_server_has_leader",
            "1 if this node knows a leader (itself included), 0 during an election.",
            st.leader is not None,
        )
        yield _gauge(
            "paxostob_server_is_leader", "1 if this node is the leader.", st.role.value == "leader"
        )
        yield _counter(
            "paxostob_server_leader_changes_seen",
            "Times this node saw the leader change (a new leader, or a new ballot).",
            tob.leader_changes,
        )
        yield _counter(
            "paxostob_server_proposals_committed",
            "The highest slot this node heard a leader commit (etcd: the commit index).",
            st.known_commit,
        )
        yield _counter(
            "paxostob_server_proposals_applied",
            "The slot through which this node decided and applied the log.",
            st.decided_through,
        )
        yield _gauge(
            "paxostob_server_proposals_pending",
            "Proposals of this node not yet decided.",
            st.pending,
        )
        yield _counter(
            "paxostob_server_proposals_failed",
            "This node's broadcasts that failed: refused by the log or timed out.",
            tob.proposals_failed,
        )
        yield _gauge(
            "paxostob_server_ballot_round",
            "The round of the ballot this node leads or follows.",
            st.ballot.round,
        )
        yield _gauge(
            "paxostob_server_promised_round",
            "The round of the highest ballot this node promised.",
            st.promised.round,
        )
        yield _counter(
            "paxostob_server_elections",
            "Phase 1 runs this node started (campaigns for leadership).",
            st.elections,
        )
        yield _counter(
            "paxostob_server_pre_votes_lost",
            "Pre-votes of this node that a quorum refused (a live leader was heard).",
            st.pre_votes_lost,
        )
        yield _counter(
            "paxostob_server_messages_delivered",
            "Messages this node delivered in total order.",
            st.delivered,
        )
        ready = readiness(tob, self.ready_lag_slots_max)
        yield _gauge("paxostob_server_ready", "1 if /ready answers 200.", ready.ready)

    def _snapshots(self) -> Iterator[Metric]:
        s = self.tob.snapshots
        yield SummaryMetricFamily(
            "paxostob_snapshot_save_duration_seconds",
            "Time storage took to write each snapshot (taken here or from a peer).",
            count_value=s.saved,
            sum_value=s.save_s_total,
        )
        yield SummaryMetricFamily(
            "paxostob_snapshot_encode_duration_seconds",
            "Time from copying the state to the encoded snapshot (in steps, between other work).",
            count_value=s.saved - s.installed,
            sum_value=s.encode_s_total,
        )
        yield _gauge(
            "paxostob_snapshot_size_bytes", "Size of the latest snapshot saved.", s.last_bytes
        )
        yield _gauge(
            "paxostob_snapshot_last_slot", "Slot of the latest snapshot saved.", s.last_slot
        )
        yield _counter(
            "paxostob_snapshot_installed_from_peers",
            "Snapshots received from a peer (this node had fallen behind its log).",
            s.installed,
        )
        yield _counter("paxostob_snapshot_failures", "Snapshot encodings that failed.", s.failed)
        yield _gauge(
            "paxostob_snapshot_entries_since",
            "Deliveries applied since the latest snapshot was taken.",
            self.tob.entries_since_snapshot,
        )

    def _network(self, transport: TcpTransport) -> Iterator[Metric]:
        stats = transport.stats
        yield _counter(
            "paxostob_network_messages_sent", "Messages handed to peer connections.", stats.sent
        )
        yield _counter(
            "paxostob_network_messages_received", "Messages received from peers.", stats.received
        )
        dropped = CounterMetricFamily(
            "paxostob_network_messages_dropped",
            "Messages dropped by this node's transport, by reason.",
            labels=["reason"],
        )
        for reason, value in (
            ("outbox_full", stats.dropped_outbox),
            ("unknown_peer", stats.dropped_unknown_dst),
            ("too_large", stats.dropped_too_large),
            ("inbox_full", stats.dropped_inbox),
            ("bad_sender", stats.bad_senders),
        ):
            dropped.add_metric([reason], value)
        yield dropped
        yield _counter(
            "paxostob_network_peer_connects", "Authenticated peer connections made.", stats.connects
        )
        yield _counter(
            "paxostob_network_peer_connect_failures",
            "Dials to peers that failed before the handshake.",
            stats.connect_failures,
        )
        yield _counter(
            "paxostob_network_peer_auth_failures",
            "Peer handshakes that failed (a wrong secret or cluster id, or not a peer).",
            stats.auth_failures,
        )
        yield _counter(
            "paxostob_network_peer_bad_frames",
            "Peer connections closed for a malformed, oversized or undecodable frame.",
            stats.bad_frames,
        )
        connected = GaugeMetricFamily(
            "paxostob_network_peer_connected",
            "1 if this node has an authenticated connection to the peer.",
            labels=["peer"],
        )
        rtt = GaugeMetricFamily(
            "paxostob_network_peer_round_trip_time_seconds",
            "The kernel's smoothed round-trip time of the connection to the peer (Linux).",
            labels=["peer"],
        )
        sent = CounterMetricFamily(
            "paxostob_network_peer_sent_bytes",
            "Bytes sent to the peer and acknowledged (the kernel's count, Linux).",
            labels=["peer"],
        )
        received = CounterMetricFamily(
            "paxostob_network_peer_received_bytes",
            "Bytes received from the peer (the kernel's count, Linux).",
            labels=["peer"],
        )
        up = transport.connected_peers()
        config = self.tob.members()
        for peer in sorted({*config.voters, *config.learners} - {self.tob.address}):
            connected.add_metric([peer], peer in up)
            sock = transport.peer_socket(peer)
            reading = None if sock is None else tcp_info(sock)
            counts = self._peer_bytes.setdefault(peer, _PeerBytes())
            if reading is not None:
                rtt.add_metric([peer], reading[0])
                total_sent, total_received = counts.update(reading[1], reading[2])
            else:
                total_sent, total_received = counts.update(0, 0)
            sent.add_metric([peer], total_sent)
            received.add_metric([peer], total_received)
        yield from (connected, rtt, sent, received)

    def _clients(self, server: RespServer) -> Iterator[Metric]:
        yield _gauge("paxostob_clients_connected", "Clients connected now.", server.clients)
        yield _gauge("paxostob_clients_max", "maxclients.", server.limits.maxclients)
        yield _counter(
            "paxostob_clients_connections", "Client connections accepted.", server.connections
        )
        yield _counter(
            "paxostob_clients_rejected",
            "Client connections refused because maxclients were connected.",
            server.rejected_connections,
        )
        yield _counter(
            "paxostob_clients_idle_closed",
            "Client connections closed for being idle (timeout).",
            server.idle_closed,
        )
        yield _counter(
            "paxostob_clients_protocol_errors",
            "Client connections closed for a protocol error.",
            server.protocol_errors,
        )
        yield _counter(
            "paxostob_clients_received_bytes", "Bytes read from clients.", server.input_bytes
        )
        yield _counter(
            "paxostob_clients_sent_bytes", "Bytes written to clients.", server.output_bytes
        )

    def _commands(self, stats: CommandStats) -> Iterator[Metric]:
        calls = CounterMetricFamily(
            "paxostob_commands", "Client commands executed, by name.", labels=["command"]
        )
        failed = CounterMetricFamily(
            "paxostob_commands_failed",
            "Client commands that executed and replied with an error, by name.",
            labels=["command"],
        )
        rejected = CounterMetricFamily(
            "paxostob_commands_rejected",
            "Client commands refused before executing (arity, auth, no leader), by name.",
            labels=["command"],
        )
        latency = HistogramMetricFamily(
            "paxostob_command_duration_seconds",
            "Client command latency, from dispatch to the reply being ready (a write's "
            "consensus round included), by name.",
            labels=["command"],
        )
        bounds = [*(repr(b) for b in LATENCY_BUCKETS_S), "+Inf"]
        for raw, s in sorted(stats.by_name.items()):
            name = raw.decode(errors="replace")
            calls.add_metric([name], s.calls)
            failed.add_metric([name], s.failed)
            rejected.add_metric([name], s.rejected)
            cumulative = 0
            buckets = []
            for bound, count in zip(bounds, s.buckets, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric([name], buckets, s.usec / 1e6)
        yield from (calls, failed, rejected, latency)
        yield _counter(
            "paxostob_commands_unknown",
            "Client commands with a name this node does not know.",
            stats.unknown,
        )


def make_registry(collector: NodeCollector) -> tuple[CollectorRegistry, Histogram]:
    """A registry of ``collector``, the process's own series and the fsync histogram."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    fsync = Histogram(
        "paxostob_disk_wal_fsync_duration_seconds",
        "Time each sync of the log's files took (etcd's name and buckets).",
        buckets=FSYNC_BUCKETS_S,
        registry=registry,
    )
    registry.register(collector)
    return registry, fsync


# ------------------------------------------------------------------------------- http

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class MetricsServer:
    """``/metrics``, ``/health`` and ``/ready`` over HTTP/1.1 on the node's event loop.

    One request per connection (``Connection: close``), GET or HEAD. A
    request whose head exceeds ``HTTP_HEAD_BYTES_MAX`` or that does not
    arrive within ``HTTP_REQUEST_TIMEOUT_S`` is refused; beyond
    ``HTTP_CONNECTIONS_MAX`` connections a new one is closed unanswered.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        tob: TotalOrderBroadcast,
        *,
        host: str,
        port: int,
        ready_lag_slots_max: int,
    ) -> None:
        self.registry = registry
        self.tob = tob
        self.host = host
        self.port = port
        self.ready_lag_slots_max = ready_lag_slots_max
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        #: Connections closed unanswered because ``HTTP_CONNECTIONS_MAX`` were open.
        self.refused = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self.port, limit=HTTP_HEAD_BYTES_MAX
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        handlers = set(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers)
        await server.wait_closed()

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._handlers) >= HTTP_CONNECTIONS_MAX:
            self.refused += 1
            writer.transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(HTTP_REQUEST_TIMEOUT_S):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                await self._reply(writer, 431, b"request head too large\n", head=False)
                return
            except (TimeoutError, asyncio.IncompleteReadError):
                return  # nothing (whole) was asked: nothing to answer
            status, content_type, body, head_only = self._route(head)
            await self._reply(writer, status, body, content_type=content_type, head=head_only)
        except (ConnectionError, OSError):
            pass  # the client went away: nothing to do
        finally:
            writer.close()

    def _route(self, head: bytes) -> tuple[int, str, bytes, bool]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, "text/plain", b"bad request line\n", False
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET and HEAD\n", False
        head_only = method == "HEAD"
        path = target.split("?", 1)[0]
        if path == "/metrics":
            accept = ""
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "accept":
                    accept = value.strip()
            encoder, content_type = choose_encoder(accept)
            return 200, content_type, encoder(self.registry), head_only
        if path == "/health":
            failure = self.tob.failure
            body = json.dumps(
                {"health": failure is None, "reason": "" if failure is None else str(failure)}
            ).encode()
            return (200 if failure is None else 503), "application/json", body, head_only
        if path == "/ready":
            ready = readiness(self.tob, self.ready_lag_slots_max)
            return (200 if ready.ready else 503), "application/json", ready.as_json(), head_only
        return 404, "text/plain", b"not found: try /metrics, /health or /ready\n", head_only

    @staticmethod
    async def _reply(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        *,
        content_type: str = "text/plain",
        head: bool,
    ) -> None:
        writer.write(
            (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1")
        )
        if not head:
            writer.write(body)
        await writer.drain()
