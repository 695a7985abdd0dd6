"""``paxostob snapshot save|restore``: back up a live cluster, make a new cluster from a backup.

As with etcd, a backup is a snapshot of the replicated state, not a copy of
a node's directory:

- ``save FILE`` asks a live node over its client port (``PAXOS.SNAPSHOT``).
  The node first runs a read barrier, so the snapshot holds every write
  acknowledged before the save began, on any node, and is the state at one
  log position (printed, and kept in the file). Asking the node rather than
  reading its store works while it runs (a store is locked by its node), from
  another host, behind ``requirepass``, and needs no replay of the log.
  The file is written beside its destination, fsynced, then renamed.
- ``restore FILE --data-dir D --members M --id I`` makes the store of one
  member of a NEW cluster, as ``--bootstrap`` makes it, holding the snapshot:
  run it once per member, with the same file and members, then start every
  node without ``--bootstrap``. The new cluster has its own id (by default
  derived from the file and the members, so every member's restore agrees),
  so none of its nodes can be mistaken for one of the old cluster. Its log
  continues the old positions and clock; nothing of the old cluster's votes
  comes along.

File format: ``MAGIC``, then a 4-byte big-endian header length and a JSON
header (``format``, ``position``, ``clock_ms``, ``state_bytes``,
``state_sha256``, and where and when it was saved), then the state bytes
(``TaggedStateMachine``'s snapshot). ``restore`` checks all of it first.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..core.snapshot import SnapshotMeta, encode_meta
from ..core.types import Snapshot
from ..errors import StorageError
from ..storage.base import default_storage
from ..version import __version__
from .client import RespClientError, request
from .config import RESP_PORT_OFFSET, ConfigError, parse_members

__all__ = ["MAGIC", "SnapshotFile", "configure", "read_file", "restore_store", "run"]

MAGIC = b"PAXOSTOB-SNAPSHOT\n"
FORMAT = 1
_LEN = struct.Struct(">I")
#: A header is a few hundred bytes; anything longer is not one.
HEADER_BYTES_MAX = 1 << 16
#: The largest state a save accepts from a node. A snapshot travels in one
#: RESP reply and is held in memory by the node and by the saver; 100,000
#: keys of 100 bytes are about 11 MiB.
STATE_BYTES_MAX = 4 << 30
#: The slot of the snapshot in a restored store: the new log decides from
#: the next slot on. Slots are the new cluster's own; positions and the
#: clock continue the old log's.
RESTORED_SLOT = 1


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    position: int
    clock_ms: int
    state: bytes
    header: dict[str, Any]


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="action", required=True)
    save = sub.add_parser(
        "save", help="write a live node's state to FILE (consistent, at a position)"
    )
    save.add_argument("file", type=Path, metavar="FILE")
    save.add_argument("--host", default="127.0.0.1", help="the node's client address (127.0.0.1)")
    save.add_argument(
        "--port", type=int, default=7001 + RESP_PORT_OFFSET, help="its client port (8001)"
    )
    save.add_argument("--password", metavar="PW", help="the node's requirepass, if any")
    save.add_argument(
        "--timeout", type=float, default=120.0, metavar="S", help="give up after S seconds (120)"
    )
    restore = sub.add_parser(
        "restore", help="make one member's store of a NEW cluster from FILE (once per member)"
    )
    restore.add_argument("file", type=Path, metavar="FILE")
    restore.add_argument("--data-dir", dest="data_dir", type=Path, required=True, metavar="DIR")
    restore.add_argument("--members", required=True, metavar="ID=HOST:PORT,...")
    restore.add_argument("--id", required=True, help="this member's id")
    restore.add_argument(
        "--cluster-id",
        dest="cluster_id",
        metavar="NAME",
        help="the new cluster's id (default: restored-<hash of FILE and --members>, the "
        "same for every member)",
    )


def run(ns: argparse.Namespace, out: TextIO) -> int:
    if ns.action == "save":
        return _save(ns, out)
    return _restore(ns, out)


# ===================================================================== save


def _save(ns: argparse.Namespace, out: TextIO) -> int:
    if ns.timeout <= 0:
        raise ConfigError("--timeout must be > 0")
    try:
        reply = asyncio.run(
            request(
                ns.host,
                ns.port,
                [b"PAXOS.SNAPSHOT"],
                timeout_s=ns.timeout,
                password=ns.password,
                reply_bytes_max=STATE_BYTES_MAX,
            )
        )
    except RespClientError as e:
        print(f"paxostob snapshot save: {ns.host}:{ns.port}: {e}", file=sys.stderr)
        return 1
    if not (
        isinstance(reply, list)
        and len(reply) == 3
        and isinstance(reply[0], int)
        and isinstance(reply[1], int)
        and isinstance(reply[2], bytes)
    ):
        print(f"paxostob snapshot save: {ns.host}:{ns.port}: unexpected reply", file=sys.stderr)
        return 1
    position, clock_ms, state = reply
    header = {
        "format": FORMAT,
        "position": position,
        "clock_ms": clock_ms,
        "state_bytes": len(state),
        "state_sha256": hashlib.sha256(state).hexdigest(),
        "saved_from": f"{ns.host}:{ns.port}",
        "saved_at_unix_ms": int(time.time() * 1000),
        "paxostob_version": __version__,
    }
    _write_atomically(Path(ns.file), encode_file(header, state))
    out.write(f"saved position {position} ({len(state)} bytes of state) to {ns.file}\n")
    return 0


def encode_file(header: dict[str, Any], state: bytes) -> bytes:
    head = json.dumps(header, sort_keys=True).encode()
    return MAGIC + _LEN.pack(len(head)) + head + state


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None


# ================================================================== restore


def read_file(path: Path) -> SnapshotFile:
    """Read and check a file written by ``save``; a ``ConfigError`` names what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    if not data.startswith(MAGIC):
        raise ConfigError(f"{path} is not a paxostob snapshot (written by paxostob snapshot save)")
    pos = len(MAGIC)
    if len(data) < pos + _LEN.size:
        raise ConfigError(f"{path} is truncated (no header)")
    (n,) = _LEN.unpack_from(data, pos)
    pos += _LEN.size
    if n > HEADER_BYTES_MAX or len(data) < pos + n:
        raise ConfigError(f"{path} is damaged or truncated (header of {n} bytes)")
    try:
        header = json.loads(data[pos : pos + n])
    except ValueError:
        raise ConfigError(f"{path} is damaged: its header is not JSON") from None
    state = data[pos + n :]
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ConfigError(f"{path}: snapshot format {header.get('format')!r}, expected {FORMAT}")
    position, clock_ms = header.get("position"), header.get("clock_ms")
    if not (isinstance(position, int) and position >= 0):
        raise ConfigError(f"{path} is damaged: bad position {position!r}")
    if not (isinstance(clock_ms, int) and clock_ms >= 0):
        raise ConfigError(f"{path} is damaged: bad clock_ms {clock_ms!r}")
    if header.get("state_bytes") != len(state):
        raise ConfigError(
            f"{path} is truncated or damaged: {len(state)} bytes of state, "
            f"the header says {header.get('state_bytes')}"
        )
    if header.get("state_sha256") != hashlib.sha256(state).hexdigest():
        raise ConfigError(f"{path} is damaged: the state does not match its SHA-256")
    return SnapshotFile(position, clock_ms, state, header)


def restored_cluster_id(snap: SnapshotFile, members: list[str]) -> str:
    """The default id of a cluster restored from ``snap``: the same for every member."""
    digest = hashlib.sha256(
        (snap.header["state_sha256"] + "\n" + ",".join(sorted(members))).encode()
    ).hexdigest()
    return f"restored-{digest[:16]}"


def restore_store(
    snap: SnapshotFile, data_dir: Path, cluster_id: str, node_id: str, members: list[str]
) -> None:
    """Make ``node_id``'s store in ``data_dir`` as bootstrap makes it, holding ``snap``."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ConfigError(
            f"--data-dir {data_dir} is not empty: restore makes a new store; "
            "give an empty or missing directory"
        )
    meta = SnapshotMeta(RESTORED_SLOT, snap.position, {}, snap.clock_ms)
    storage = default_storage(data_dir)
    try:
        state = storage.open(cluster_id, node_id, bootstrap=sorted(members))
        if not state.created:
            raise ConfigError(f"--data-dir {data_dir} already holds a store")
        storage.install_snapshot(Snapshot(RESTORED_SLOT, encode_meta(meta), snap.state))
    except StorageError as e:
        raise ConfigError(str(e)) from None
    finally:
        storage.close()


def _restore(ns: argparse.Namespace, out: TextIO) -> int:
    members = parse_members(ns.members)
    node_id = str(ns.id)
    if node_id not in members:
        raise ConfigError(f"--id {node_id} is not one of the members ({', '.join(members)})")
    snap = read_file(Path(ns.file))
    cluster_id = ns.cluster_id or restored_cluster_id(snap, list(members))
    restore_store(snap, Path(ns.data_dir), cluster_id, node_id, list(members))
    out.write(
        f"node {node_id}: made a store of cluster {cluster_id} in {ns.data_dir} holding "
        f"position {snap.position} of {ns.file}.\nWhen every member is restored, start each "
        f"WITHOUT --bootstrap: paxostob serve --id {node_id} --members {ns.members} "
        f"--data-dir {ns.data_dir} --cluster-id {cluster_id} --secret-file ...\n"
    )
    return 0
