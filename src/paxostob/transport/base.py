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
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..core.messages import Envelope

__all__ = ["Transport"]


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
