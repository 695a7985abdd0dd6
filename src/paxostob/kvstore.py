"""``KeyValueStore``: a linearizable replicated key-value store on total-order broadcast.

Theory of operation: every command, reads included, is an entry in the
replicated log (``kv.Entry``: the proposer's wall-clock ``now_ms`` and one
command or a whole transaction). Every replica applies the same entries in
the same order to a pure ``KvMachine``, so all replicas hold the same data.
The caller's entry resolves once it is *applied on this node*; its reply is
the one this replica computed, which every replica computed alike. A read
that goes through the log is linearizable: it is ordered after every write
acknowledged before it was issued (that write's entry precedes it in the
log). The Go original read its local map instead, which could be stale.

Several applications may share one broadcast group: ``tag`` prefixes this
store's payloads, and ``TaggedStateMachine`` routes deliveries by tag.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .core.types import Delivery
from .errors import AlreadyDeliveredError, ConfigurationError, PaxosError
from .kv.commands import Entry, Op, encode_entry
from .kv.replies import Error, Reply
from .kv.state_machine import KvStateMachine
from .node.tob import StateMachine, TotalOrderBroadcast

__all__ = ["REPLY_NOT_KEPT", "KeyValueStore", "TaggedStateMachine"]

#: The reply of each op of an entry that was applied on this node inside a
#: snapshot from a peer (it lagged behind): the entry is in the log exactly
#: once, but this node did not compute its replies.
REPLY_NOT_KEPT = Error("TRYAGAIN applied elsewhere; the reply was not kept")
#: ``get`` reads again when a read's reply was not kept; each try is a log entry.
READ_TRIES_MAX = 3


class TaggedStateMachine:
    """Routes each delivery to the application named by its payload's first byte.

    An application gets its own deliveries with the tag stripped; the
    ``observer`` (if any) sees every delivery as it is, tag included (e.g. to
    track the applied position). The snapshot is each application's
    snapshot, in tag order, length-prefixed (the observer's under tag 0).
    """

    OBSERVER_TAG = b"\x00"

    def __init__(
        self, apps: dict[bytes, StateMachine], observer: StateMachine | None = None
    ) -> None:
        if not apps or any(len(tag) != 1 or tag == self.OBSERVER_TAG for tag in apps):
            raise ConfigurationError("tags are single, distinct, non-zero bytes")
        self.apps = dict(sorted(apps.items()))
        self.observer = observer
        self._all = dict(self.apps)
        if observer is not None:
            self._all[self.OBSERVER_TAG] = observer

    def apply(self, delivery: Delivery) -> None:
        app = self.apps.get(delivery.payload[:1])
        if app is not None:
            app.apply(Delivery(delivery.slot, delivery.sender, delivery.payload[1:]))
        if self.observer is not None:
            self.observer.apply(delivery)

    def snapshot(self) -> bytes:
        parts = []
        for tag, app in self._all.items():
            data = app.snapshot()
            parts.append(tag + len(data).to_bytes(8, "big") + data)
        return b"".join(parts)

    def restore(self, data: bytes) -> None:
        pos = 0
        found: dict[bytes, bytes] = {}
        while pos < len(data):
            tag = data[pos : pos + 1]
            size = int.from_bytes(data[pos + 1 : pos + 9], "big")
            found[tag] = data[pos + 9 : pos + 9 + size]
            pos += 9 + size
        if set(found) != set(self._all) or pos != len(data):
            raise PaxosError("snapshot does not match this node's applications")
        for tag, app in self._all.items():
            app.restore(found[tag])


class KeyValueStore:
    """A Redis-like key-value store replicated by ``tob`` (see the module docstring).

    ``kv = KeyValueStore(tob)`` before ``tob`` starts attaches a fresh
    ``KvStateMachine`` to it. When ``tob`` already has a state machine (a
    node serving several applications), pass the ``machine`` it routes this
    store's ``tag`` to.
    """

    def __init__(
        self,
        tob: TotalOrderBroadcast,
        *,
        machine: KvStateMachine | None = None,
        tag: bytes = b"",
        timeout_s: float | None = 10.0,
    ) -> None:
        if machine is None:
            if tob.state_machine is not None:
                raise ConfigurationError(
                    "this TotalOrderBroadcast already has a state machine: pass machine="
                )
            if tag:
                raise ConfigurationError("a tag needs a TaggedStateMachine and machine=")
            machine = KvStateMachine()
            tob.set_state_machine(machine)
        self.tob = tob
        self.machine = machine
        self.tag = tag
        self.timeout_s = timeout_s

    async def execute(self, ops: Sequence[Sequence[bytes]]) -> list[Reply]:
        """Apply ``ops`` as one atomic log entry; their replies, in order.

        Raises ``QuorumTimeoutError`` when the entry is not applied in time
        (it may still be applied later). An entry this node applied inside a
        snapshot from a peer gets ``REPLY_NOT_KEPT`` for each op.
        """
        entry = Entry(int(time.time() * 1000), tuple(Op(tuple(op)) for op in ops))
        try:
            d = await self.tob.broadcast(self.tag + encode_entry(entry), timeout=self.timeout_s)
        except AlreadyDeliveredError:  # applied, inside a snapshot this node took from a peer
            return [REPLY_NOT_KEPT] * len(ops)
        replies = self.machine.take_replies(d.slot)
        if replies is None:  # applied inside a snapshot from a peer: the reply is gone
            return [REPLY_NOT_KEPT] * len(ops)
        return replies

    def stored_keys(self) -> int:
        """Keys held on this replica (expired ones not yet removed included)."""
        return self.machine.machine.stored_keys

    async def command(self, *args: bytes | str | int) -> Reply:
        """One Redis command, e.g. ``await kv.command("INCR", "n")``."""
        (reply,) = await self.execute([Op.of(*args).args])
        return reply

    async def put(self, key: bytes, value: bytes) -> None:
        """Set ``key``; returns once the write is applied on this node."""
        reply = await self.command(b"SET", key, value)
        # REPLY_NOT_KEPT: applied here (in a snapshot), and a plain SET answers OK.
        if isinstance(reply, Error) and reply != REPLY_NOT_KEPT:
            raise PaxosError(reply.text)

    async def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` (linearizable: read through the log)."""
        for _ in range(READ_TRIES_MAX):
            reply = await self.command(b"GET", key)
            if reply != REPLY_NOT_KEPT:
                break  # else its reply was lost: a read changes nothing, so read again
        if isinstance(reply, Error):
            raise PaxosError(reply.text)
        assert reply is None or isinstance(reply, bytes)
        return reply

    async def delete(self, key: bytes) -> bool:
        """Delete ``key``; True if it existed."""
        reply = await self.command(b"DEL", key)
        if isinstance(reply, Error):
            raise PaxosError(reply.text)
        return reply == 1
