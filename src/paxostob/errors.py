"""All exceptions paxostob raises, in one place (DESIGN.md §7).

Adapters translate OS and library exceptions into these at the boundary, so a
user catches ``PaxosError`` (or one of its subclasses) and nothing else.
"""

from __future__ import annotations

__all__ = [
    "AlreadyDeliveredError",
    "ConfigurationError",
    "DecodeError",
    "NotRunningError",
    "PaxosError",
    "PayloadTooLargeError",
    "QuorumTimeoutError",
    "StorageError",
    "TransportClosedError",
]


class PaxosError(Exception):
    """Base class of every error raised by paxostob."""


class ConfigurationError(PaxosError, ValueError):
    """Local misuse: bad membership, bad option, wrong arguments."""


class NotRunningError(PaxosError, RuntimeError):
    """The node was used before ``start()`` or after ``close()``."""


class QuorumTimeoutError(PaxosError, TimeoutError):
    """No decision or delivery within the caller's timeout.

    Usually no quorum of acceptors is reachable. The operation is *not*
    cancelled inside the protocol: a proposal that timed out may still be
    decided (and delivered) later.
    """


class PayloadTooLargeError(PaxosError, ValueError):
    """A proposal is larger than the configured ``batch_bytes_max``."""


class DecodeError(PaxosError, ValueError):
    """Bytes from outside (a peer frame, a file) could not be decoded."""


class StorageError(PaxosError):
    """The durable store is unreadable, corrupt, or belongs to another node."""


class TransportClosedError(PaxosError):
    """``receive()`` or ``send()`` on a transport that was closed."""


class AlreadyDeliveredError(PaxosError):
    """The broadcast was delivered, but inside a snapshot received from a peer.

    This node jumped over its position, so it cannot report the ``Delivery``;
    the message is in the total order exactly once. Do not broadcast it again.
    """
