"""``paxostob serve``: one node in the foreground.

Wires the concrete pieces: a ``TcpTransport`` to the peers (HMAC-authenticated,
optional TLS), a ``TotalOrderBroadcast`` on the durable default store in
``--data-dir``, and a RESP server for clients. Logs to stderr; SIGINT or
SIGTERM stop it cleanly, with its storage closed (exit status 0). A node
whose storage or driver fails stops on its own (fail-stop): one log line
says what failed and what to do, and the exit status is 1, so a supervisor
restarts it; a SIGTERM that comes after such a failure does not turn it into 0.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import dataclasses
import gc
import logging
import os
import platform
import signal
import ssl
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TextIO, cast

from ..apps.broadcast_log import BroadcastLog
from ..apps.kv import READ_MODES, KeyValueStore
from ..apps.tagged import TaggedStateMachine
from ..core.multipaxos import LogConfig
from ..errors import ConfigurationError, StorageError
from ..kv.state_machine import KvStateMachine
from ..node._common import failure_message
from ..node.tob import TotalOrderBroadcast
from ..resp import membership
from ..resp.commands import NodeCommands
from ..resp.membership import MembershipApi, MembershipView
from ..resp.server import MAXCLIENTS_DEFAULT, TIMEOUT_S_DEFAULT, RespLimits, RespServer
from ..storage.log import LogStorage
from ..transport.tcp import TcpTransport, format_address, install_uvloop, parse_address
from ..version import __version__
from . import join
from .config import (
    CLIENT_QUERY_BUFFER_LIMIT_DEFAULT,
    LOG_FORMATS,
    READY_LAG_SLOTS_MAX_DEFAULT,
    SLOW_FSYNC_MS_DEFAULT,
    ConfigError,
    NodeConfig,
    load_node_config,
    read_toml,
)
from .descriptors import client_budget
from .logs import configure_logging
from .metrics import FsyncObserver, MetricsServer, NodeCollector, make_registry

__all__ = ["configure", "run", "serve_node"]

log = logging.getLogger("paxostob.serve")

KV_TAG = b"K"

#: The line a supervisor (``paxostob cluster``, tests) waits for on stderr.
READY_MARK = "ready:"
#: The exit status of a node that could not start or that failed while running.
EXIT_FAILED = 1


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML file with the options below")
    p.add_argument("--id", help="this node's id (one of --members)")
    p.add_argument("--members", metavar="ID=HOST:PORT,...", help="the whole membership")
    p.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="this node's durable state")
    p.add_argument(
        "--resp-port",
        dest="resp_port",
        type=int,
        metavar="P",
        help="client (Redis protocol) port; default: peer port + 1000",
    )
    p.add_argument(
        "--resp-host",
        dest="resp_host",
        metavar="HOST",
        help="client address to bind; default: this node's peer host",
    )
    p.add_argument(
        "--secret-file",
        dest="secret_file",
        metavar="F",
        help="file holding the cluster secret (>= 16 bytes) peers authenticate with",
    )
    p.add_argument(
        "--cluster-id",
        dest="cluster_id",
        metavar="NAME",
        help="cluster name; nodes of another cluster are refused (default paxostob)",
    )
    p.add_argument(
        "--bootstrap",
        action="store_true",
        default=None,
        help="first start of a founding member: make its store if there is none "
        "(never for a node whose data directory was lost)",
    )
    p.add_argument(
        "--join",
        metavar="HOST:PORT[,...]",
        help="start a node added with 'paxostob member add': ask a running member's client "
        "port for the cluster id and members (instead of --members); its store is made as a "
        "learner's",
    )
    p.add_argument(
        "--join-password",
        dest="join_password",
        metavar="PW",
        help="the password of the member --join asks (default: --requirepass)",
    )
    p.add_argument(
        "--join-wait",
        dest="join_wait",
        type=float,
        default=0.0,
        metavar="S",
        help="with --join: keep asking for S seconds while no member answers (default 0)",
    )
    p.add_argument("--tls-cert", dest="tls_cert", metavar="FILE", help="TLS certificate (PEM)")
    p.add_argument("--tls-key", dest="tls_key", metavar="FILE", help="TLS private key (PEM)")
    p.add_argument("--tls-ca", dest="tls_ca", metavar="FILE", help="CA that signed peer certs")
    p.add_argument("--requirepass", metavar="PASSWORD", help="clients must AUTH with this")
    p.add_argument(
        "--tick-interval",
        dest="tick_interval_s",
        type=float,
        metavar="S",
        help="protocol tick in seconds (default 0.01)",
    )
    limits = p.add_argument_group(
        "client limits",
        "Redis's names and meanings; see docs/operations.md, 'Client limits'",
    )
    limits.add_argument(
        "--maxclients",
        metavar="N",
        help="clients served at once; the next gets '-ERR max number of clients reached' "
        f"(default {MAXCLIENTS_DEFAULT}, lowered to what the open files limit allows after "
        "the descriptors kept for peers and storage)",
    )
    limits.add_argument(
        "--timeout",
        metavar="S",
        help="close a client idle for S seconds, a half-sent command included; 0: never "
        f"(default {TIMEOUT_S_DEFAULT:g})",
    )
    limits.add_argument(
        "--proto-max-bulk-len",
        dest="proto_max_bulk_len",
        metavar="BYTES",
        help="longest argument, refused from its length before it is read "
        "(default and maximum: the largest log entry, "
        f"{LogConfig().batch_bytes_max} bytes)",
    )
    limits.add_argument(
        "--client-query-buffer-limit",
        dest="client_query_buffer_limit",
        metavar="BYTES",
        help="bytes one client's unfinished command may hold "
        f"(default {CLIENT_QUERY_BUFFER_LIMIT_DEFAULT})",
    )
    monitoring = p.add_argument_group("monitoring", "see docs/operations.md, 'Monitoring'")
    monitoring.add_argument(
        "--metrics-port",
        dest="metrics_port",
        metavar="P",
        help="serve Prometheus /metrics, /health and /ready on this port of the node's "
        "host (default: off)",
    )
    monitoring.add_argument(
        "--ready-lag-slots-max",
        dest="ready_lag_slots_max",
        metavar="N",
        help="/ready fails while the applied slot trails the commit by more than N slots "
        f"(default {READY_LAG_SLOTS_MAX_DEFAULT})",
    )
    monitoring.add_argument(
        "--slow-fsync-ms",
        dest="slow_fsync_ms",
        metavar="MS",
        help=f"log syncs of the log slower than this (default {SLOW_FSYNC_MS_DEFAULT:g})",
    )
    p.add_argument(
        "--reads",
        dest="reads",
        choices=READ_MODES,
        help="how point reads are ordered: read-index (default: one round of messages, no log "
        "entry), barrier (an empty log entry; for a rolling upgrade from a release without "
        "read-index messages) or lease (leader leases: no round while the leader's lease "
        "holds; assumes every node's clock runs within 5%% of real time)",
    )
    monitoring.add_argument(
        "--log-format",
        dest="log_format",
        choices=LOG_FORMATS,
        help="stderr log lines: text, or one JSON object per line (default text)",
    )
    monitoring.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="stderr log level",
    )


def _flags(ns: argparse.Namespace) -> dict[str, object]:
    keys = (
        "id",
        "members",
        "data_dir",
        "resp_port",
        "resp_host",
        "secret_file",
        "cluster_id",
        "tls_cert",
        "tls_key",
        "tls_ca",
        "requirepass",
        "tick_interval_s",
        "bootstrap",
        "maxclients",
        "timeout",
        "proto_max_bulk_len",
        "client_query_buffer_limit",
        "metrics_port",
        "ready_lag_slots_max",
        "slow_fsync_ms",
        "log_format",
        "reads",
    )
    return {k: getattr(ns, k) for k in keys}


def _join(ns: argparse.Namespace, flags: dict[str, object]) -> tuple[tuple[str, ...], str]:
    """With ``--join``: ask a member for the cluster (``cli/join.py``) and fill ``flags``.

    The founding members, and what the node learned (for the log).
    """
    raw: dict[str, object] = {}
    if ns.config is not None:
        raw = {k.replace("-", "_"): v for k, v in read_toml(ns.config).items()}
    raw.update({k: v for k, v in flags.items() if v is not None})
    if raw.get("id") in (None, "") or raw.get("data_dir") in (None, ""):
        raise ConfigError("--join needs --id and --data-dir")
    data_dir = Path(str(raw["data_dir"]))
    store_exists = data_dir.is_dir() and any(data_dir.iterdir())
    password = ns.join_password or raw.get("requirepass")
    found = join.fetch(
        str(raw["id"]),
        ns.join,
        None if password is None else str(password),
        cluster_id=None if raw.get("cluster_id") is None else str(raw["cluster_id"]),
        store_exists=store_exists,
        wait_s=max(0.0, ns.join_wait),
    )
    flags["members"] = found.members
    flags["cluster_id"] = found.cluster_id
    if not store_exists:
        # Its first start: a learner's store is made (``joined`` refused a voter's).
        flags["bootstrap"] = True
    founders = tuple(f for f in found.founders.split(",") if f)
    return founders, (
        f"--join: {found.source} says cluster {found.cluster_id}, members {found.members} "
        f"(founders {found.founders}); this node is a {found.role}"
        f"{'' if store_exists else ' (its store is made now, as a learner)'}"
    )


def run(ns: argparse.Namespace, out: TextIO) -> int:
    flags = _flags(ns)
    if ns.join is not None and ns.bootstrap:
        raise ConfigError("--join and --bootstrap exclude each other: a joining node is a learner")
    founders, joined = _join(ns, flags) if ns.join is not None else ((), "")
    cfg = load_node_config(flags, ns.config)
    if founders:
        cfg = dataclasses.replace(cfg, join=cfg.node_id not in founders, founders=founders)
    configure_logging(ns.log_level, cfg.log_format, cfg.node_id, sys.stderr)
    if joined:
        log.info("%s", joined)
    # First, so every node log says what it runs on: uvloop, or asyncio's
    # own loop (slower: the figures in docs/benchmarks.md are with uvloop).
    log.info(
        "paxostob %s on Python %s, event loop %s",
        __version__,
        platform.python_version(),
        _event_loop(install_uvloop()),
    )
    _bound_malloc()
    limits = client_limits(cfg, LogConfig())
    try:
        return asyncio.run(serve_node(cfg, limits))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130


def _event_loop(uvloop: bool) -> str:
    if uvloop:
        try:
            return f"uvloop {version('uvloop')}"
        except PackageNotFoundError:
            return "uvloop"
    if sys.platform == "win32":
        return "asyncio (uvloop does not run on Windows)"
    return "asyncio (uvloop is not installed: reinstall paxostob to get it, or pip install uvloop)"


def _ssl_contexts(cfg: NodeConfig) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    if not cfg.tls:
        return None, None
    assert cfg.tls_cert and cfg.tls_key and cfg.tls_ca
    try:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(cfg.tls_ca))
        server.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
        server.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: peers show certs too
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cfg.tls_ca))
        client.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key))
        # Peers are named by node id, proven by the HMAC handshake; the CA proves the cert.
        client.check_hostname = False
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"TLS files are unusable: {e}") from None
    return server, client


#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks at least this large get their own mapping, returned to the system
#: when freed: a snapshot's buffers (megabytes). The request path's buffers
#: (a batch is at most ``LogConfig.batch_bytes_max``, 1 MiB, and typically a
#: few KiB) stay on the heap, so this costs it no system calls.
MMAP_THRESHOLD_BYTES = 1 << 20
#: Free memory at the top of the heap kept rather than returned. Fixing the
#: mmap threshold also stops glibc adapting this one from its 128 KiB start:
#: a few megabytes, so the request path's own churn is not trimmed and grown
#: back all the time.
TRIM_THRESHOLD_BYTES = 8 << 20


def _bound_malloc() -> None:
    """Fix glibc's mmap and trim thresholds (Linux with glibc only; elsewhere nothing).

    glibc raises both thresholds on its own (up to 32 and 64 MiB) each time
    a mapped block larger than the threshold is freed. From then on every
    snapshot-sized buffer (the encoded snapshot and its pieces, a snapshot
    from a peer: about 11 MiB for 100,000 keys of 100 bytes) comes from the
    heap, and the heap gives memory back only from its top: in the soak with
    100,000 keys a node's heap stepped up by about a snapshot at most
    snapshots (29 -> 77 MiB) and fell back when the top happened to be free,
    its RSS swinging between 95 and 146 MiB. With fixed thresholds such
    buffers are mapped and unmapped whole (heap 29-31 MiB over the run).
    Process-wide, hence here and not in the library.
    """
    if sys.platform != "linux":
        return
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    except (OSError, ValueError, AttributeError):  # not glibc after all: keep its defaults
        return


#: Allocations between two young-generation collections (CPython's default: 700).
GC_GEN0_THRESHOLD = 50_000


def _tune_gc() -> None:
    """Make the cyclic collector rare on the request path.

    Every request allocates a few short-lived containers; at the default
    threshold the collector ran every few dozen requests and walked the
    young objects each time. Nothing on that path relies on cycle collection
    (memory is freed by reference counting), and what was allocated while
    starting is frozen out of every later collection.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def client_limits(cfg: NodeConfig, log_config: LogConfig) -> RespLimits:
    """The client port's limits: configured, or derived from the log and the open-files limit.

    No argument longer than the largest entry the log accepts can be stored,
    so none is read: ``proto_max_bulk_len`` defaults to ``batch_bytes_max``
    (a longer length line is refused before its bytes arrive). Raises the
    soft open-files limit as needed (see ``descriptors``); call it once, at start.
    """
    entry_max = log_config.batch_bytes_max
    bulk_max = entry_max if cfg.proto_max_bulk_len is None else cfg.proto_max_bulk_len
    if bulk_max > entry_max:
        raise ConfigError(
            f"--proto-max-bulk-len {bulk_max} exceeds the largest log entry ({entry_max} bytes):"
            " longer values could be read but never stored"
        )
    if cfg.client_query_buffer_limit < bulk_max:
        raise ConfigError(
            f"--client-query-buffer-limit {cfg.client_query_buffer_limit} is below "
            f"--proto-max-bulk-len {bulk_max}: the longest value could never arrive"
        )
    maxclients = client_budget(cfg.maxclients, MAXCLIENTS_DEFAULT, peers=len(cfg.members) - 1)
    log.info(
        "client limits: maxclients %d, timeout %gs, proto-max-bulk-len %d, "
        "client-query-buffer-limit %d",
        maxclients,
        cfg.timeout_s,
        bulk_max,
        cfg.client_query_buffer_limit,
    )
    return RespLimits(
        bulk_bytes_max=bulk_max,
        buffer_bytes_max=cfg.client_query_buffer_limit,
        maxclients=maxclients,
        timeout_s=cfg.timeout_s,
    )


def follow_membership(tob: TotalOrderBroadcast, transport: TcpTransport) -> None:
    """Keep the transport's peers those of the configurations in effect here, from now on.

    Called once the node started, then on every configuration that takes
    effect: new members are dialed (with the address the configuration
    holds; the founders', never in the log, stay the flags'), and a member
    that a change removed is disconnected and refused (transport/tcp.py).
    Only a change removes a peer, never a configuration older than what the
    transport was given: a node that joined was given the members of today
    by ``--join`` and then replays the log's older configurations, which
    lack the members added since (removing those would cut it off from the
    members it learns from). A removed id never becomes a member again, so
    a removal replayed late is still right.
    """
    api = cast(MembershipApi, tob)
    previous: set[str] | None = None

    def follow(view: MembershipView) -> None:
        nonlocal previous
        now = {*view.voters, *view.learners}
        known = transport.members()
        try:
            for member in sorted((previous or set()) - now):
                transport.remove_peer(member)
            for member in sorted(now - {tob.address}):
                address = view.addresses.get(member)
                if address:
                    transport.add_peer(member, parse_address(address))
                elif member not in known:
                    # A founder this node has no flag for: one that left long ago
                    # (a joined node replays them), or one that dials this node.
                    log.debug("member %s has no address here: it is not dialed", member)
        except ConfigurationError as e:
            log.error("the new configuration's addresses are unusable: %s", e)
        previous = now

    tob.on_membership(follow)
    follow(api.members())


async def serve_node(cfg: NodeConfig, limits: RespLimits | None = None) -> int:
    """Run one node until SIGINT/SIGTERM; returns the process exit code.

    ``limits``: the client port's (``client_limits`` of the node's log when None;
    ``run`` computes them before the event loop starts, from the same default
    ``LogConfig`` the node's log has).
    """
    ssl_server, ssl_client = _ssl_contexts(cfg)
    transport = TcpTransport(
        cfg.node_id,
        cfg.members,
        cluster_id=cfg.cluster_id,
        secret=cfg.secret,
        ssl_server=ssl_server,
        ssl_client=ssl_client,
    )
    # One broadcast group, two applications: the key-value store (tag K) and
    # the raw broadcast log (tag B, which also tracks the applied position).
    log_app = BroadcastLog()
    kv_machine = KvStateMachine()
    tob = TotalOrderBroadcast(
        transport,
        # With --join the log is opened with the founders (a node that joined is
        # not among them); the transport dials every member of the configuration.
        list(cfg.founders or cfg.members),
        data_dir=cfg.data_dir,
        cluster_id=cfg.cluster_id,
        state_machine=TaggedStateMachine({KV_TAG: kv_machine}, observer=log_app),
        tick_interval_s=cfg.tick_interval_s,
        bootstrap=cfg.bootstrap,
        join=cfg.join,
        leases=cfg.reads == "lease",
    )
    kv = KeyValueStore(tob, machine=kv_machine, tag=KV_TAG, reads=cfg.reads)
    if limits is None:
        limits = client_limits(cfg, tob.config)
    commands = NodeCommands(tob, log_app, node_id=cfg.node_id, requirepass=cfg.requirepass, kv=kv)
    server = RespServer(
        commands,
        host=cfg.resp_host,
        port=cfg.resp_port,
        limits=limits,
        auth_required=cfg.requirepass is not None,
    )
    commands.server = server
    membership.set_peer_addresses(
        commands, lambda: {m: format_address(a) for m, a in transport.members().items()}
    )
    host, port = cfg.members[cfg.node_id]
    metrics: MetricsServer | None = None
    fsync_histogram = None
    if cfg.metrics_port is not None:
        collector = NodeCollector(
            tob,
            transport=transport,
            server=server,
            commands=commands.stats,
            ready_lag_slots_max=cfg.ready_lag_slots_max,
        )
        registry, fsync_histogram = make_registry(collector)
        metrics = MetricsServer(
            registry,
            tob,
            host=host,
            port=cfg.metrics_port,
            ready_lag_slots_max=cfg.ready_lag_slots_max,
        )
    storage = tob.storage
    if isinstance(storage, LogStorage):
        # Timed from the first sync on (opening the store syncs too).
        storage.on_sync = FsyncObserver(tob, cfg.slow_fsync_ms, fsync_histogram)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started: list[object] = []
    code = 0
    try:
        await transport.start()
        started.append(transport)
        await tob.start()
        started.append(tob)
        follow_membership(tob, transport)
        try:
            await server.start()
        except OSError as e:
            raise ConfigurationError(
                f"cannot listen for clients on {cfg.resp_host}:{cfg.resp_port}: {e.strerror}"
            ) from None
        started.append(server)
        if metrics is not None:
            try:
                await metrics.start()
            except OSError as e:
                raise ConfigurationError(
                    f"cannot listen for metrics on {host}:{cfg.metrics_port}: {e.strerror}"
                ) from None
            started.append(metrics)
        _tune_gc()
        log.info(
            "%s peers on %s:%d, clients on %s:%d%s (try: redis-cli -p %d PAXOS.BROADCAST hello)",
            READY_MARK,
            host,
            port,
            cfg.resp_host,
            server.port,
            "" if metrics is None else f", metrics on http://{host}:{metrics.port}/metrics",
            server.port,
            extra={"event": "ready"},
        )
        # Until a signal, or until the node fails (its storage, its driver):
        # then it has logged what failed and what to do, and exits non-zero.
        signalled = asyncio.ensure_future(stop.wait())
        ended = asyncio.ensure_future(tob.wait_closed())
        await asyncio.wait({signalled, ended}, return_when=asyncio.FIRST_COMPLETED)
        signalled.cancel()
        ended.cancel()
        if ended.done() and not ended.cancelled():
            ended.exception()  # seen: tob.failure says it
        if tob.failure is None:
            log.info("stopping")
    except (ConfigurationError, StorageError) as e:
        log.error("%s", e)
        code = EXIT_FAILED
    finally:
        if metrics is not None and metrics in started:
            await metrics.close()
        if server in started:
            await server.close()
        if tob in started:
            try:
                await tob.close()
            except (StorageError, OSError) as e:  # its last saves, as it stopped
                log.error("%s", failure_message(cfg.node_id, e, str(cfg.data_dir)))
                code = EXIT_FAILED
        await transport.close()
        log.info("stopped")
    # Checked last: a failure (even one that a SIGTERM raced) never exits 0.
    return EXIT_FAILED if tob.failure is not None else code
