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

from .core.multipaxos import LogConfig
from .core.types import Delivery
from .errors import (
    AlreadyDeliveredError,
    ConfigurationError,
    DecodeError,
    NodeFailedError,
    NotRunningError,
    PaxosError,
    PayloadTooLargeError,
    ProposalConflictError,
    QuorumTimeoutError,
    StorageError,
    StoreMissingError,
    TransportClosedError,
)
from .node.consensus import Consensus
from .node.tob import TotalOrderBroadcast
from .transport.memory import MemoryNetwork
from .version import __version__

__all__ = [
    "AlreadyDeliveredError",
    "ConfigurationError",
    "Consensus",
    "DecodeError",
    "Delivery",
    "LogConfig",
    "MemoryNetwork",
    "NodeFailedError",
    "NotRunningError",
    "PaxosError",
    "PayloadTooLargeError",
    "ProposalConflictError",
    "QuorumTimeoutError",
    "StorageError",
    "StoreMissingError",
    "TcpTransport",
    "TotalOrderBroadcast",
    "TransportClosedError",
    "__version__",
]


def __getattr__(name: str) -> object:
    # The TCP transport pulls in msgpack: load it only when asked for.
    if name == "TcpTransport":
        from .transport.tcp import TcpTransport

        return TcpTransport
    raise AttributeError(f"module 'paxostob' has no attribute {name!r}")
