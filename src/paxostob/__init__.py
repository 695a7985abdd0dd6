"""paxostob: Paxos consensus and total-order broadcast.

The public surface is ``__all__``; everything else is internal. Modules inside
the package never import this file (it is the re-export hub: docs/design.md,
'Layers and the dependency rule').
"""

from __future__ import annotations

import sys

# Checked before anything else is imported: on an older Python the first
# failure would otherwise be an obscure one (``tomllib`` missing, a syntax
# error deep in a module). Kept to syntax every Python 3 parses.
PYTHON_MIN = (3, 11)
if tuple(sys.version_info[:2]) < PYTHON_MIN:
    raise ImportError(
        "paxostob needs Python {}.{} or newer; this is Python {} ({}). "
        "Install a newer Python and reinstall paxostob with it.".format(
            *PYTHON_MIN, sys.version.split()[0], sys.executable
        )
    )

from typing import TYPE_CHECKING

from .apps.kv import KeyValueStore
from .apps.tagged import TaggedStateMachine
from .core.membership import Membership
from .core.multipaxos import LogConfig, Status
from .core.types import Delivery
from .errors import (
    AlreadyDeliveredError,
    ConfigurationError,
    DecodeError,
    MembershipError,
    NodeFailedError,
    NotLeaderError,
    NotRunningError,
    PaxosError,
    PayloadTooLargeError,
    ProposalConflictError,
    ProposalIdsExhaustedError,
    QuorumTimeoutError,
    ResultUnknownError,
    StorageError,
    StoreMissingError,
    TransportClosedError,
)
from .node.consensus import Consensus
from .node.tob import StateMachine, TotalOrderBroadcast
from .storage.base import Storage
from .storage.default import default_storage
from .storage.memory import MemoryStorage
from .storage.sqlite import SqliteStorage
from .transport.base import Transport
from .transport.memory import MemoryNetwork
from .transport.tcp import TcpTransport
from .version import __version__

if TYPE_CHECKING:
    from .storage.log import LogStorage

__all__ = [
    "AlreadyDeliveredError",
    "ConfigurationError",
    "Consensus",
    "DecodeError",
    "Delivery",
    "KeyValueStore",
    "LogConfig",
    "LogStorage",
    "Membership",
    "MembershipError",
    "MemoryNetwork",
    "MemoryStorage",
    "NodeFailedError",
    "NotLeaderError",
    "NotRunningError",
    "PaxosError",
    "PayloadTooLargeError",
    "ProposalConflictError",
    "ProposalIdsExhaustedError",
    "QuorumTimeoutError",
    "ResultUnknownError",
    "SqliteStorage",
    "StateMachine",
    "Status",
    "Storage",
    "StorageError",
    "StoreMissingError",
    "TaggedStateMachine",
    "TcpTransport",
    "TotalOrderBroadcast",
    "Transport",
    "TransportClosedError",
    "__version__",
    "default_storage",
]


def __getattr__(name: str) -> object:
    # LogStorage needs fcntl (POSIX only): loaded when asked for, so that
    # ``import paxostob`` works where the default store is SQLite (Windows).
    if name == "LogStorage":
        from .storage.log import LogStorage

        return LogStorage
    raise AttributeError(f"module 'paxostob' has no attribute {name!r}")
