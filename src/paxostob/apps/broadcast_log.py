"""``BroadcastLog``: a bounded log of raw broadcasts, for clients outside.

Theory of operation: a node process runs one total-order broadcast group;
its payloads carry a one-byte tag saying which application they are for.
``TAG_BROADCAST`` payloads are raw messages broadcast by clients with
``PAXOS.BROADCAST``; this state machine keeps the last ``log_max`` of them,
with their positions, so clients can read the total order with
``PAXOS.READ``. It is deterministic and snapshottable like any state
machine, so it survives compaction and restarts.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable

from ..core.types import Delivery
from ..errors import DecodeError

__all__ = ["TAG_BROADCAST", "BroadcastLog"]

TAG_BROADCAST = b"B"

_HEAD = struct.Struct(">BQI")
_ITEM = struct.Struct(">QHI")
VERSION = 1


class BroadcastLog:
    """The last ``log_max`` raw broadcasts, in total order."""

    def __init__(self, log_max: int = 100_000) -> None:
        if log_max < 1:
            raise ValueError("log_max must be >= 1")
        self.messages: deque[Delivery] = deque(maxlen=log_max)
        #: The position of the last delivery applied (of any application).
        self.applied = 0
        #: The log's clock there (Unix ms; 0 until a delivery with a clock was
        #: applied since start or restore): what ``PAXOS.SNAPSHOT`` reports.
        self.clock_ms = 0
        #: Called after every apply and restore (the server wakes waiters).
        self.on_change: Callable[[], None] | None = None

    def apply(self, delivery: Delivery) -> None:  # (no result: PAXOS.BROADCAST replies the slot)
        self.applied = delivery.slot
        if delivery.clock_ms > self.clock_ms:
            self.clock_ms = delivery.clock_ms
        if delivery.payload[:1] == TAG_BROADCAST:
            self.messages.append(Delivery(delivery.slot, delivery.sender, delivery.payload[1:]))
        if self.on_change is not None:
            self.on_change()

    def read(self, start: int, count: int) -> list[Delivery]:
        """Up to ``count`` broadcasts at positions >= ``start`` still kept."""
        out: list[Delivery] = []
        for d in self.messages:
            if d.slot >= start:
                out.append(d)
                if len(out) >= count:
                    break
        return out

    def snapshot(self) -> bytes:
        parts = [_HEAD.pack(VERSION, self.applied, len(self.messages))]
        for d in self.messages:
            sender = d.sender.encode()
            parts.append(_ITEM.pack(d.slot, len(sender), len(d.payload)))
            parts.append(sender)
            parts.append(d.payload)
        return b"".join(parts)

    def restore(self, data: bytes) -> None:
        try:
            version, applied, n = _HEAD.unpack_from(data, 0)
            if version != VERSION:
                raise DecodeError(f"broadcast log snapshot version {version}")
            pos = _HEAD.size
            items: list[Delivery] = []
            for _ in range(n):
                slot, ls, lp = _ITEM.unpack_from(data, pos)
                pos += _ITEM.size
                sender = data[pos : pos + ls].decode()
                payload = data[pos + ls : pos + ls + lp]
                if len(payload) != lp:
                    raise DecodeError("broadcast log snapshot is truncated")
                pos += ls + lp
                items.append(Delivery(slot, sender, payload))
        except (struct.error, UnicodeDecodeError) as e:
            raise DecodeError(f"broadcast log snapshot is malformed: {e}") from e
        if pos != len(data):
            raise DecodeError("broadcast log snapshot has trailing bytes")
        self.applied = applied
        self.messages.clear()
        self.messages.extend(items)
        if self.on_change is not None:
            self.on_change()
