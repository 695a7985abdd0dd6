"""``KvStateMachine``: the key-value machine as the runtime's ``StateMachine``.

Theory of operation: total-order broadcast delivers each client request
(an encoded ``commands.Entry``) to every node as a ``Delivery``; every node
applies it. The node that proposed it must answer its client, so the replies
of recent deliveries are kept by ``Delivery.slot`` (the same on every node)
for ``replies_for``/``take_replies``, up to ``replies_max`` slots: the oldest
are forgotten first. With ``keep_replies_of`` only that node's deliveries
keep them: the others' would never be taken here.

Time: an entry is applied at the log's clock, ``Delivery.clock_ms``, which
the leader decides (``core.multipaxos``: clock stamps); the ``now_ms`` the
proposer wrote into the entry is ignored, so a node with a wrong clock that
proposes a write or a read barrier moves no key's expiry. Only a delivery
without a clock (``clock_ms == 0``: a log written before clock stamps, or a
runtime that keeps no clock) is applied at its entry's ``now_ms``, as then.

Rules: a payload that is not a valid entry (a bug or a hostile peer) is
deterministic input like any other: every node records the same error reply
for its slot and goes on; ``apply`` never raises because of a payload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..core.types import Delivery
from ..errors import ConfigurationError, DecodeError
from .commands import Entry, decode_entry
from .machine import KvMachine
from .replies import Error, Reply

__all__ = ["REPLIES_MAX_DEFAULT", "KvStateMachine"]

#: Slots whose replies are kept. A waiter takes its reply a little after its
#: entry is applied; under heavy pipelined load many entries of other nodes
#: may be applied in between, so keep far more than the 4096 requests a node
#: can have pending (replies are small; the bench saw 4096 overrun).
REPLIES_MAX_DEFAULT = 65_536


class KvStateMachine:
    """Applies deliveries to a ``KvMachine`` and keeps the latest replies by slot."""

    def __init__(
        self, machine: KvMachine | None = None, *, replies_max: int = REPLIES_MAX_DEFAULT
    ) -> None:
        if replies_max < 1:
            raise ConfigurationError("replies_max must be >= 1")
        self._machine = KvMachine() if machine is None else machine
        self._replies_max = replies_max
        self._replies: dict[int, list[Reply]] = {}  # insertion order = delivery order
        #: The sender whose deliveries keep their replies; ``None``: every sender.
        self._replies_of: str | None = None
        #: Called after each entry is applied (``None``: after a restore, when any
        #: key may have changed): the RESP server wakes clients blocked on keys.
        self.on_applied: Callable[[Entry | None], None] | None = None
        #: Called with each ``PUBLISH``'s channel and message as its entry is
        #: applied; returns the receivers on this node, which becomes its reply.
        self.on_publish: Callable[[bytes, bytes], int] | None = None

    @property
    def machine(self) -> KvMachine:
        return self._machine

    def keep_replies_of(self, sender: str | None) -> None:
        """From now on keep the replies of ``sender``'s deliveries only (``None``: all).

        Only the node that broadcast an entry answers its clients
        (``KeyValueStore`` passes its node's address): on a node that
        proposes nothing, the replies of every other entry would sit unread
        until ``replies_max`` newer slots push them out (about 20 MiB for
        50 pipelining clients' entries).
        """
        self._replies_of = sender

    def read(self, ops: Sequence[Sequence[bytes]]) -> list[Reply]:
        """``KvMachine.read``: point reads on the state as applied so far."""
        return self._machine.read(ops)

    def expiry_due(self, now_ms: int) -> bool:
        """``KvMachine.expiry_due``: some key may have expired by ``now_ms``."""
        return self._machine.expiry_due(now_ms)

    def apply(self, delivery: Delivery) -> None:
        """Apply ``delivery.payload`` (an encoded ``Entry``) and keep its replies."""
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
        if self._replies_of is not None and delivery.sender != self._replies_of:
            return  # nobody here waits for them
        self._replies[delivery.slot] = replies
        while len(self._replies) > self._replies_max:
            del self._replies[next(iter(self._replies))]

    def replies_for(self, slot: int) -> list[Reply] | None:
        """The replies of the delivery at ``slot``; ``None`` if not applied or forgotten."""
        return self._replies.get(slot)

    def take_replies(self, slot: int) -> list[Reply] | None:
        """Like ``replies_for``, and forget them (the client has been answered)."""
        return self._replies.pop(slot, None)

    def snapshot(self) -> bytes:
        """The machine's snapshot (the kept replies are local, not state)."""
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
        self._replies.clear()  # they belonged to slots of the replaced history
        if self.on_applied is not None:
            self.on_applied(None)
