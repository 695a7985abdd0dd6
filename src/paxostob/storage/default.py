"""Which concrete store ``data_dir=`` means: the one place that picks an implementation.

The interface module (``storage/base.py``) names what a store must do and
imports no implementation. This module is the default store factory: the
runtime's ``data_dir=`` (``TotalOrderBroadcast``, ``Consensus``, a public
contract) and the command line reach a concrete store only through
``default_storage``, the one edge from the runtime to an adapter that the
layer rule allows (docs/design.md, 'Layers and the dependency rule').

The concrete stores are imported inside the function: ``storage/log.py``
needs ``fcntl`` (POSIX only), so importing this module must not import it
on a platform where the default is SQLite.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import Storage

__all__ = ["default_storage"]


def default_storage(data_dir: str | os.PathLike[str]) -> Storage:
    """The durable default for one node's directory ``data_dir``.

    ``LogStorage`` (``<data_dir>/paxostob.log``): an append-only record log,
    several times cheaper in CPU per save than SQLite (docs/storage.md has
    the figures). A directory that already holds an SQLite store
    (``paxostob.sqlite3``, made before the log was the default) keeps
    ``SqliteStorage``, so an upgrade never starts a node from an empty store
    beside its old one; so does a platform without ``fcntl`` (Windows).
    ``SqliteStorage`` stays selectable: pass ``storage=SqliteStorage(dir)``.
    """
    from .sqlite import FILE_NAME as SQLITE_FILE_NAME
    from .sqlite import SqliteStorage

    if os.name == "nt":
        return SqliteStorage(data_dir)
    from .log import FILE_NAME, LogStorage

    directory = Path(data_dir)
    has_sqlite = any(
        (directory / name).exists() for name in (SQLITE_FILE_NAME, SQLITE_FILE_NAME + "-wal")
    )
    if has_sqlite and not (directory / FILE_NAME).exists():
        return SqliteStorage(data_dir)
    # Both files present is ambiguous: LogStorage.open refuses it, naming both.
    return LogStorage(data_dir)
