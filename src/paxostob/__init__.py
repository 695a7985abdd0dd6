"""paxostob: Paxos consensus and total-order broadcast.

The public surface is ``__all__``; everything else is internal. Modules inside
the package never import this file (it is the re-export hub, DESIGN.md §2).
"""

from __future__ import annotations

from .core.multipaxos import LogConfig
from .core.types import Delivery
from .errors import (
    ConfigurationError,
    DecodeError,
    NotRunningError,
    PaxosError,
    PayloadTooLargeError,
    QuorumTimeoutError,
    StorageError,
    TransportClosedError,
)
from .node.consensus import Consensus
from .node.tob import TotalOrderBroadcast
from .transport.memory import MemoryNetwork

__all__ = [
    "ConfigurationError",
    "Consensus",
    "DecodeError",
    "Delivery",
    "LogConfig",
    "MemoryNetwork",
    "NotRunningError",
    "PaxosError",
    "PayloadTooLargeError",
    "QuorumTimeoutError",
    "StorageError",
    "TotalOrderBroadcast",
    "TransportClosedError",
]

__version__ = "0.1.0"
