"""All exceptions paxostob raises, in one place (docs/design.md, 'Conventions').

Adapters translate OS and library exceptions into these at the boundary, so a
user catches ``PaxosError`` (or one of its subclasses) and nothing else.
"""

from __future__ import annotations

__all__ = [
    "AlreadyDeliveredError",
    "ConfigurationError",
    "DecodeError",
    "NodeFailedError",
    "NotRunningError",
    "PaxosError",
    "PayloadTooLargeError",
    "ProposalConflictError",
    "ProposalIdsExhaustedError",
    "QuorumTimeoutError",
    "ResultUnknownError",
    "StorageError",
    "StoreMissingError",
    "TransportClosedError",
]


class PaxosError(Exception):
    """Base class of every error raised by paxostob."""


class ConfigurationError(PaxosError, ValueError):
    """Local misuse: bad membership, bad option, wrong arguments."""


class NotRunningError(PaxosError, RuntimeError):
    """The node was used before ``start()`` or after ``close()``."""


class NodeFailedError(NotRunningError):
    """The node stopped on its own: its storage failed (a full disk, a limit) or its driver did.

    Fail-stop: the node sends and applies nothing more, and every call names
    the cause (``__cause__`` is the underlying error, e.g. the ``StorageError``).
    A subclass of ``NotRunningError``: the node is not running. Nothing it
    acknowledged is lost; restart it on the same data once the cause is
    fixed (the message says what to do).
    """


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


class StoreMissingError(StorageError):
    """A node's store is not there and it was not asked to make one (``bootstrap``).

    Its data directory was wiped, lost or mistyped, or this is the first
    start of a cluster that was not bootstrapped. A member must not vote
    without the state it had: the message says what to do.
    """


class ProposalConflictError(PaxosError):
    """A broadcast's id was already used by an earlier life of this node.

    Peers take it for the earlier proposal and never deliver it, so it fails
    instead of waiting forever, and is never reported as delivered. Seen only
    when a node's store was made again under an old id and drew an
    incarnation that an earlier store of that id had used.
    """


class ProposalIdsExhaustedError(PaxosError, RuntimeError):
    """This life of the node has numbered 2**32 - 1 proposals: it must restart.

    A proposal id is ``incarnation << 32 | counter``; one more would carry
    the next incarnation's number, which the node's next life will use, so
    ids would repeat. The node stops instead (nothing is lost); a restart
    draws the next incarnation and numbers from 1 again.
    """


class TransportClosedError(PaxosError):
    """``receive()`` or ``send()`` on a transport that was closed."""


class AlreadyDeliveredError(PaxosError):
    """The broadcast was delivered, but inside a snapshot received from a peer.

    This node jumped over its position, so it cannot report the ``Delivery``;
    the message is in the total order exactly once. Do not broadcast it again.
    """


class MembershipError(PaxosError):
    """A membership change was refused (``TotalOrderBroadcast.add_member`` and kin).

    The message says why: another change is in progress (one at a time),
    the id is unknown, already a member or was removed before, the learner
    lags too far behind to be promoted, or the change would leave no voter.
    Nothing changed.
    """


class NotLeaderError(MembershipError):
    """The node asked to change the membership does not lead; ``leader`` is the one it knows.

    Membership changes are proposed at the leader: ask ``leader`` (None
    while an election is under way: retry shortly).
    """

    def __init__(self, message: str, leader: str | None = None) -> None:
        super().__init__(message)
        self.leader = leader


class ResultUnknownError(AlreadyDeliveredError):
    """``submit``: applied, but the result is not known on this node.

    The node learned its own proposal's delivery only inside a snapshot
    from a peer (it lagged behind), so its state machine never ran that
    ``apply`` here and has no result to return. The message is in the total
    order exactly once and its effect is in the state: do not submit it
    again. (``broadcast`` raises the base class, ``AlreadyDeliveredError``.)
    """
