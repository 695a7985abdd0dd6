"""``paxostob init``: a new cluster's secret and one node configuration per member.

Writes, into ``--out``, the cluster secret (``secret``, mode 0600, made with
``O_EXCL`` so an existing secret is never overwritten) and ``node-ID.toml``
for every member: its id, the membership, a freshly drawn cluster id and the
paths the node uses on its host. Copy each file to its host (the secret to
the path the configuration names, readable by the node's user only) and make
the cluster: the first start of every node is
``paxostob serve --config node-ID.toml --bootstrap``, every later start is
the same without ``--bootstrap`` (docs/operations.md, "Making a cluster").
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from pathlib import Path
from typing import TextIO

from .config import ConfigError, parse_members

__all__ = ["SECRET_BYTES", "configure", "run"]

#: Random bytes in a new secret (written as hex): an HMAC-SHA256 key of the
#: hash's own size; the node refuses fewer than 16.
SECRET_BYTES = 32


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--members",
        required=True,
        metavar="ID=HOST:PORT,...",
        help="the whole membership, as every node will be started with it",
    )
    p.add_argument(
        "--out", type=Path, default=Path("."), metavar="DIR", help="where to write the files (.)"
    )
    p.add_argument(
        "--data-dir",
        dest="data_dir",
        default="/var/lib/paxostob",
        metavar="DIR",
        help="each node's data directory on its host; {id} is replaced by the node's id "
        "(/var/lib/paxostob)",
    )
    p.add_argument(
        "--secret-file",
        dest="secret_file",
        metavar="PATH",
        help="where the secret will be on every host (default: the absolute path of the "
        "secret written into --out)",
    )
    p.add_argument(
        "--cluster-id",
        dest="cluster_id",
        metavar="NAME",
        help="the new cluster's id (default: drawn at random, paxostob-<16 hex digits>)",
    )


def _toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string (the same escapes).
    return json.dumps(text)


def _create(path: Path, text: str, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(f"{path} exists: remove it or choose another --out") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def run(ns: argparse.Namespace, out: TextIO) -> int:
    members = parse_members(ns.members)
    cluster_id = ns.cluster_id or f"paxostob-{secrets.token_hex(8)}"
    if not cluster_id.strip():
        raise ConfigError("--cluster-id is empty")
    target = Path(ns.out)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot make {target}: {e.strerror}") from None
    secret_path = target / "secret"
    names = [secret_path, *(target / f"node-{i}.toml" for i in members)]
    taken = [str(p) for p in names if p.exists()]
    if taken:  # checked first, so a refusal writes nothing
        raise ConfigError(f"{', '.join(taken)} exist(s): remove or choose another --out")
    member_list = ",".join(f"{i}={host}:{port}" for i, (host, port) in members.items())
    secret_on_host = ns.secret_file or str(secret_path.resolve())
    try:
        _create(secret_path, secrets.token_hex(SECRET_BYTES) + "\n", 0o600)
        for i in members:
            path = target / f"node-{i}.toml"
            _create(
                path,
                f"# paxostob node {i} of cluster {cluster_id}, made by paxostob init.\n"
                f"# First start (makes its store): paxostob serve --config {path.name}"
                " --bootstrap\n"
                f"# Every later start: paxostob serve --config {path.name}\n"
                f"id = {_toml_string(i)}\n"
                f"members = {_toml_string(member_list)}\n"
                f"cluster-id = {_toml_string(cluster_id)}\n"
                f"data-dir = {_toml_string(ns.data_dir.replace('{id}', i))}\n"
                f"secret-file = {_toml_string(secret_on_host)}\n",
                0o644,
            )
    except OSError as e:
        raise ConfigError(f"cannot write into {target}: {e.strerror}") from None
    out.write(
        f"cluster {cluster_id}: wrote {secret_path} (mode 0600) and "
        f"{', '.join(f'node-{i}.toml' for i in members)} into {target}/\n"
        f"copy the secret to {secret_on_host} on every host (readable by the node's user only),\n"
        "start every node once with: paxostob serve --config node-ID.toml --bootstrap\n"
        "and every later time without --bootstrap (docs/operations.md, 'Making a cluster').\n"
    )
    return 0
