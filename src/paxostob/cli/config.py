"""A node's configuration: from flags and/or a TOML file, validated with one-line errors.

Every problem is a ``ConfigError`` whose message is one line a user can act
on (the CLI prints it and exits with code 2, never a traceback).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..apps.kv import READ_MODES
from ..resp.server import TIMEOUT_S_DEFAULT

__all__ = [
    "CLIENT_QUERY_BUFFER_LIMIT_DEFAULT",
    "LOG_FORMATS",
    "READY_LAG_SLOTS_MAX_DEFAULT",
    "RESP_PORT_OFFSET",
    "SLOW_FSYNC_MS_DEFAULT",
    "ConfigError",
    "NodeConfig",
    "load_node_config",
    "parse_members",
    "read_toml",
    "resp_address",
]

#: Without ``--resp-port`` a node serves clients on its peer port + this,
#: so ``paxostob status`` can find every node from the membership alone.
RESP_PORT_OFFSET = 1000

#: One client's unfinished command (and unparsed input) may hold this much.
#: Redis allows 1 GiB, but here no write larger than one log entry (1 MiB by
#: default) can succeed, so only a read of hundreds of thousands of keys
#: (MGET) needs more than a few MiB; at 1 GiB three half-sent commands took
#: 1.6 GB of memory.
CLIENT_QUERY_BUFFER_LIMIT_DEFAULT = 32 * 1024 * 1024


#: A sync of the log slower than this is logged (WARNING, at most one line per
#: 10 s with a count). etcd's threshold for its "slow fdatasync" warning: a
#: healthy disk syncs in milliseconds, and a second is long enough that every
#: write waiting for it has visibly stalled.
SLOW_FSYNC_MS_DEFAULT = 1000.0

#: ``/ready`` answers 503 while this node's applied slot is more than this
#: many slots behind the highest commit it heard from a leader. A follower
#: in step trails by at most the leader's pipeline of open slots (64 by
#: default) for a moment; a node catching up after a restart or a partition
#: is thousands of slots behind until it has caught up.
READY_LAG_SLOTS_MAX_DEFAULT = 1000

#: ``--log-format``: one human-readable line per record, or one JSON object per line.
LOG_FORMATS = ("text", "json")


class ConfigError(Exception):
    """Bad flags or configuration; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_id: str
    #: node id -> (host, peer port), this node included.
    members: dict[str, tuple[str, int]]
    data_dir: Path
    cluster_id: str = "paxostob"
    resp_host: str = "127.0.0.1"
    resp_port: int = 0
    secret: bytes = b""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    requirepass: str | None = None
    tick_interval_s: float = 0.01
    #: Make the store if there is none (the first start of a founding member).
    bootstrap: bool = False
    #: ``serve --join``: the log is opened with the founding members
    #: (``founders``), and ``join`` when this node is not one of them;
    #: ``members`` are then every member's addresses, which the transport dials.
    join: bool = False
    founders: tuple[str, ...] = ()
    #: Client limits (Redis's names). ``maxclients`` None: as many as the
    #: open-files limit allows after the descriptors kept for peers and storage.
    maxclients: int | None = None
    #: Idle clients are closed after this many seconds (0: never).
    timeout_s: float = TIMEOUT_S_DEFAULT
    #: The longest argument; None: the largest entry the log accepts.
    proto_max_bulk_len: int | None = None
    #: Bytes one client's unparsed input and unfinished command may hold.
    client_query_buffer_limit: int = CLIENT_QUERY_BUFFER_LIMIT_DEFAULT
    #: Prometheus metrics, /health and /ready on this port of the node's host
    #: (None: off).
    metrics_port: int | None = None
    #: ``text`` or ``json`` (one object per line) on stderr.
    log_format: str = "text"
    #: How point reads are ordered (``apps.kv.READ_MODES``): a read index (one round
    #: of messages), ``barrier`` (an empty log entry, what nodes of a release
    #: without the read messages need during a rolling upgrade), or ``lease``
    #: (leader leases: no round while the lease holds; assumes bounded drift).
    reads: str = "read-index"
    #: Syncs of the log slower than this are logged as slow (milliseconds).
    slow_fsync_ms: float = SLOW_FSYNC_MS_DEFAULT
    #: ``/ready``'s bound on how far this node's applied slot may trail the commit.
    ready_lag_slots_max: int = READY_LAG_SLOTS_MAX_DEFAULT

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def parse_members(text: str) -> dict[str, tuple[str, int]]:
    """``1=127.0.0.1:7001,2=127.0.0.1:7002`` -> ``{"1": ("127.0.0.1", 7001), ...}``."""
    members: dict[str, tuple[str, int]] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        node_id, eq, address = item.partition("=")
        host, colon, port_text = address.rpartition(":")
        if not eq or not node_id or not colon or not host:
            raise ConfigError(f"bad member {item!r}: expected ID=HOST:PORT")
        port = _port(port_text, f"member {node_id}")
        if node_id in members:
            raise ConfigError(f"member id {node_id!r} appears twice")
        members[node_id] = (host.strip("[]"), port)
    if not members:
        raise ConfigError("--members is empty: expected ID=HOST:PORT,ID=HOST:PORT,...")
    return members


def resp_address(members: dict[str, tuple[str, int]], node_id: str) -> tuple[str, int]:
    """Where ``node_id`` serves clients by default (peer port + ``RESP_PORT_OFFSET``)."""
    host, port = members[node_id]
    return host, port + RESP_PORT_OFFSET


def _port(text: str, what: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"{what}: port {text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{what}: port {port} is out of range 1-65535")
    return port


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path} is not valid TOML: {e}") from None


KNOWN_KEYS = frozenset(
    {
        "id",
        "members",
        "data_dir",
        "cluster_id",
        "resp_host",
        "resp_port",
        "secret_file",
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
        "log_format",
        "reads",
        "slow_fsync_ms",
        "ready_lag_slots_max",
    }
)


def load_node_config(  # noqa: C901 - one flat check per setting, in the order of the docs
    flags: dict[str, Any], config_file: Path | None
) -> NodeConfig:
    """Merge a TOML file (if any) with flags (flags win) and validate everything."""
    raw: dict[str, Any] = {}
    if config_file is not None:
        raw = _dashes_as_underscores(read_toml(config_file), config_file)
        unknown = sorted(set(raw) - KNOWN_KEYS)
        if unknown:
            raise ConfigError(f"config {config_file}: unknown key(s) {', '.join(unknown)}")
    raw.update({k: v for k, v in flags.items() if v is not None})

    node_id = raw.get("id")
    if node_id is None or str(node_id) == "":
        raise ConfigError("--id is required (this node's id in --members)")
    node_id = str(node_id)
    members_raw = raw.get("members")
    if members_raw is None:
        raise ConfigError("--members is required: ID=HOST:PORT,ID=HOST:PORT,...")
    if isinstance(members_raw, dict):
        members_raw = ",".join(f"{k}={v}" for k, v in members_raw.items())
    members = parse_members(str(members_raw))
    if node_id not in members:
        raise ConfigError(f"--id {node_id} is not one of the members ({', '.join(members)})")
    if raw.get("data_dir") in (None, ""):
        raise ConfigError("--data-dir is required (where this node keeps its durable state)")

    resp_port = raw.get("resp_port")
    if resp_port is None:
        resp_port = resp_address(members, node_id)[1]
    resp_port = _port(str(resp_port), "--resp-port")

    secret = b""
    secret_file = raw.get("secret_file")
    if secret_file is None:
        raise ConfigError(
            "--secret-file is required: peers authenticate with a shared cluster secret"
        )
    try:
        secret = Path(secret_file).read_bytes().strip()
    except OSError as e:
        raise ConfigError(f"cannot read secret file {secret_file}: {e.strerror}") from None
    if len(secret) < 16:
        raise ConfigError(f"secret file {secret_file} holds fewer than 16 bytes: too weak")

    tls = {k: raw.get(k) for k in ("tls_cert", "tls_key", "tls_ca")}
    given = [k for k, v in tls.items() if v is not None]
    if given and len(given) != 3:
        raise ConfigError("TLS needs all of --tls-cert, --tls-key and --tls-ca")
    for k, v in tls.items():
        if v is not None and not Path(v).is_file():
            raise ConfigError(f"--{k.replace('_', '-')}: no such file {v}")

    tick = raw.get("tick_interval_s", 0.01)
    try:
        tick = float(tick)
    except (TypeError, ValueError):
        raise ConfigError(f"tick_interval_s {tick!r} is not a number") from None
    if not 0.0005 <= tick <= 1.0:
        raise ConfigError(f"tick_interval_s {tick} is out of range 0.0005-1.0")

    maxclients = _positive_int(raw, "maxclients")
    proto_max_bulk_len = _positive_int(raw, "proto_max_bulk_len")
    buffer_limit = _positive_int(raw, "client_query_buffer_limit")
    if buffer_limit is None:
        buffer_limit = CLIENT_QUERY_BUFFER_LIMIT_DEFAULT
    timeout = raw.get("timeout", TIMEOUT_S_DEFAULT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float | str):
        raise ConfigError(f"timeout {timeout!r} is not a number of seconds")
    try:
        timeout = float(timeout)
    except ValueError:
        raise ConfigError(f"timeout {timeout!r} is not a number of seconds") from None
    if not 0 <= timeout <= 10**9:  # also refuses nan
        raise ConfigError(f"timeout {timeout} must be >= 0 seconds (0: never close idle clients)")

    metrics_port = raw.get("metrics_port")
    if metrics_port is not None:
        metrics_port = _port(str(metrics_port), "--metrics-port")
        if metrics_port in (resp_port, members[node_id][1]):
            raise ConfigError(
                f"--metrics-port {metrics_port} is this node's peer or client port: "
                "give it a port of its own"
            )
    log_format = str(raw.get("log_format", "text"))
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"--log-format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    reads = str(raw.get("reads", "read-index"))
    if reads not in READ_MODES:
        raise ConfigError(f"--reads {reads!r}: expected one of {', '.join(READ_MODES)}")
    slow_fsync_ms = raw.get("slow_fsync_ms", SLOW_FSYNC_MS_DEFAULT)
    try:
        if isinstance(slow_fsync_ms, bool):
            raise ValueError
        slow_fsync_ms = float(slow_fsync_ms)
    except (TypeError, ValueError):
        raise ConfigError(f"--slow-fsync-ms {slow_fsync_ms!r} is not a number") from None
    if not 0 <= slow_fsync_ms <= 10**9:  # also refuses nan
        raise ConfigError(f"--slow-fsync-ms {slow_fsync_ms} must be >= 0 milliseconds")
    lag_max = _positive_int(raw, "ready_lag_slots_max")

    return NodeConfig(
        node_id=node_id,
        members=members,
        data_dir=Path(raw["data_dir"]),
        cluster_id=str(raw.get("cluster_id", "paxostob")),
        resp_host=str(raw.get("resp_host", members[node_id][0])),
        resp_port=resp_port,
        secret=secret,
        tls_cert=None if tls["tls_cert"] is None else Path(tls["tls_cert"]),
        tls_key=None if tls["tls_key"] is None else Path(tls["tls_key"]),
        tls_ca=None if tls["tls_ca"] is None else Path(tls["tls_ca"]),
        requirepass=None if raw.get("requirepass") is None else str(raw["requirepass"]),
        tick_interval_s=tick,
        bootstrap=_flag(raw.get("bootstrap", False), "bootstrap"),
        maxclients=maxclients,
        timeout_s=timeout,
        proto_max_bulk_len=proto_max_bulk_len,
        client_query_buffer_limit=buffer_limit,
        metrics_port=metrics_port,
        log_format=log_format,
        reads=reads,
        slow_fsync_ms=slow_fsync_ms,
        ready_lag_slots_max=READY_LAG_SLOTS_MAX_DEFAULT if lag_max is None else lag_max,
    )


def _dashes_as_underscores(raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """Accept a key as its flag is spelled (``data-dir``) or as Python spells it (``data_dir``)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name in out:
            raise ConfigError(f"config {path}: {name} is given twice (as {key} and {name})")
        out[name] = value
    return out


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, not {value!r}")
    return value


def _positive_int(raw: dict[str, Any], key: str) -> int | None:
    """``raw[key]`` as an int >= 1, or None when absent; a ConfigError naming the key else."""
    value = raw.get(key)
    if value is None:
        return None
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{flag} {value!r} is not a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{flag} {value!r} is not a whole number") from None
    if number < 1:
        raise ConfigError(f"{flag} must be at least 1, got {number}")
    return number
