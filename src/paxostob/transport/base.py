"""The ``Transport`` protocol every transport implements.

Guarantees a transport gives (and the conformance suite checks):

- ``address`` is this node's id; envelopes with ``dst == address`` sent by
  others arrive at this transport's ``receive()``.
- ``send`` never blocks and never raises because of the network: a message
  may be lost, duplicated, delayed or reordered (Paxos tolerates all four),
  and is dropped when a bounded outbox is full or the peer is unknown.
- ``receive`` returns the next envelope addressed to this node, waiting if
  none; after ``close()`` it raises ``errors.TransportClosedError``.
- After ``close()`` the node is crashed as far as the network is concerned:
  it sends and receives nothing more. ``close`` is idempotent.

Envelopes are delivered intact: a transport never hands the core a message it
could not fully decode (bad frames are dropped and counted at the boundary).

Optional push delivery (``SupportsReceiver``): a transport may also offer
``set_receiver(callback)``. While a callback is set, every envelope that
would have gone to ``receive()`` is handed to it instead, synchronously, one
at a time, in the order the transport got them (per peer: arrival order),
from the event loop's thread; envelopes already waiting for ``receive()``
are handed over first, at the call. ``set_receiver(None)`` goes back to
``receive()``. No callback is made after ``close()``. The callback must not
block; it owns the bounding of whatever it queues (the transport's inbox
bound no longer applies to pushed envelopes). It saves one task switch per
message over a task looping on ``receive()``; users find it with
``getattr`` and fall back to ``receive()`` (``MemoryNetwork`` offers only that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..core.messages import Envelope

__all__ = ["Receiver", "SupportsReceiver", "Transport", "reaches_other_processes"]

#: What ``set_receiver`` takes: called with each envelope as it arrives.
Receiver = Callable[[Envelope], None]


@runtime_checkable
class Transport(Protocol):
    @property
    def address(self) -> str:
        """This node's id in the membership."""
        ...

    def send(self, envelope: Envelope) -> None:
        """Queue ``envelope`` for ``envelope.dst``; never blocks nor raises for network faults."""
        ...

    async def receive(self) -> Envelope:
        """The next envelope addressed to this node."""
        ...

    async def close(self) -> None:
        """Stop sending and receiving; idempotent."""
        ...


def reaches_other_processes(transport: object) -> bool:
    """Whether ``transport``'s peers live in other processes (its optional ``remote`` attribute).

    There a peer's restart is a real restart: a node that kept its state
    only in memory comes back having forgotten its promises. Transports
    inside one process (``MemoryNetwork``) leave the attribute out.
    """
    return bool(getattr(transport, "remote", False))


@runtime_checkable
class SupportsReceiver(Protocol):
    """The optional push path (see the module docstring)."""

    def set_receiver(self, receiver: Receiver | None) -> None:
        """Hand each arriving envelope to ``receiver`` (None: back to ``receive()``)."""
        ...
