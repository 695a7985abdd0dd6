"""``KvStateMachine``: the key-value machine as the runtime's ``StateMachine``.

Theory of operation: total-order broadcast delivers each client request
(an encoded ``commands.Entry``) to every node as a ``Delivery``; every node
applies it. ``apply`` returns the entry's replies: the runtime hands them to
the proposer's waiter (``TotalOrderBroadcast.submit``), so the node that
proposed an entry answers its clients with the replies it computed, and no
node keeps replies on the side.

Time: an entry is applied at the log's clock, ``Delivery.clock_ms``, which
the leader decides (``core.multipaxos``: clock stamps); the ``now_ms`` the
proposer wrote into the entry is ignored, so a node with a wrong clock that
proposes a write or a read barrier moves no key's expiry. Only a delivery
without a clock (``clock_ms == 0``: a log written before clock stamps, or a
runtime that keeps no clock) is applied at its entry's ``now_ms``, as then.

Rules: a payload that is not a valid entry (a bug or a hostile peer) is
deterministic input like any other: every node returns the same error reply
for it and goes on; ``apply`` never raises because of a payload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..core.types import Delivery
from ..errors import DecodeError
from .commands import Entry, decode_entry
from .machine import KvMachine
from .replies import Error, Reply

__all__ = ["KvStateMachine"]


class KvStateMachine:
    """Applies deliveries to a ``KvMachine``; each ``apply`` returns the entry's replies."""

    def __init__(self, machine: KvMachine | None = None) -> None:
        self._machine = KvMachine() if machine is None else machine
        #: Called after each entry is applied (``None``: after a restore, when any
        #: key may have changed): the RESP server wakes clients blocked on keys.
        self.on_applied: Callable[[Entry | None], None] | None = None
        #: Called with each ``PUBLISH``'s channel and message as its entry is
        #: applied; returns the receivers on this node, which becomes its reply.
        self.on_publish: Callable[[bytes, bytes], int] | None = None

    @property
    def machine(self) -> KvMachine:
        return self._machine

    def read(self, ops: Sequence[Sequence[bytes]]) -> list[Reply]:
        """``KvMachine.read``: point reads on the state as applied so far."""
        return self._machine.read(ops)

    def expiry_due(self, now_ms: int) -> bool:
        """``KvMachine.expiry_due``: some key may have expired by ``now_ms``."""
        return self._machine.expiry_due(now_ms)

    def apply(self, delivery: Delivery) -> list[Reply]:
        """Apply ``delivery.payload`` (an encoded ``Entry``); its replies, one per command.

        A payload that is not a valid entry gets one error reply.
        """
        try:
            entry = decode_entry(delivery.payload)
        except DecodeError as e:
            replies: list[Reply] = [Error(f"ERR malformed command entry: {e}")]
        else:
            if delivery.clock_ms:
                entry = Entry(delivery.clock_ms, entry.ops)  # the leader's time, not the proposer's
            replies = self._machine.apply(entry)
            on_publish = self.on_publish
            if on_publish is not None:
                for i, op in enumerate(entry.ops):
                    # 0: applied (an arity error or a skipped transaction is an Error).
                    if (
                        len(op.args[0]) == 7  # cheap first: this runs for every op
                        and op.name == b"publish"
                        and type(replies[i]) is int
                    ):
                        replies[i] = on_publish(op.args[1], op.args[2])
            if self.on_applied is not None:
                self.on_applied(entry)
        return replies

    def snapshot(self) -> bytes:
        """The machine's snapshot."""
        return self._machine.snapshot()

    def snapshot_copy(self) -> Callable[[], bytes | None]:
        """``KvMachine.snapshot_copy``: the node encodes it in steps between its work."""
        return self._machine.snapshot_copy()

    def snapshot_copy_parts(self) -> Callable[[], list[bytes] | None]:
        """``KvMachine.snapshot_copy_parts``: ``TaggedStateMachine`` joins the pieces once."""
        return self._machine.snapshot_copy_parts()

    def restore(self, data: bytes) -> None:
        """Replace the machine's state by a snapshot's; ``DecodeError`` if it is damaged."""
        self._machine.restore(data)
        if self.on_applied is not None:
            self.on_applied(None)
