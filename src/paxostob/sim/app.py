"""The simulated application: a state machine that remembers every delivery.

Theory of operation: the state is the list of deliveries applied, as
``(position, sender, payload)`` entries, so the state at position *p* is
exactly the total order's first *p* messages, and a checker can compare the
state a snapshot brings back with what was delivered there. ``snapshot``
encodes the state as bytes (the core and storage treat them as opaque) and
``restore`` replaces the state by a snapshot's, as a restarted replica or one
that jumps ahead on a peer's snapshot does.

Encoding: per entry ``Q position``, ``H len + sender utf-8``, ``I len +
payload``; ``decode_state`` raises ``DecodeError`` on anything else (a
snapshot garbled in storage or in transit must not pass as a state).
"""

from __future__ import annotations

import struct

from ..core.types import Delivery
from ..errors import DecodeError

__all__ = ["AppEntry", "SimApp", "decode_state", "encode_state"]

#: One applied delivery: (position, sender, payload).
AppEntry = tuple[int, str, bytes]

_POS = struct.Struct(">Q")
_SENDER = struct.Struct(">H")
_PAYLOAD = struct.Struct(">I")


def encode_state(entries: list[AppEntry] | tuple[AppEntry, ...]) -> bytes:
    parts: list[bytes] = []
    for position, sender, payload in entries:
        name = sender.encode()
        parts += (_POS.pack(position), _SENDER.pack(len(name)), name)
        parts += (_PAYLOAD.pack(len(payload)), payload)
    return b"".join(parts)


def decode_state(data: bytes) -> tuple[AppEntry, ...]:
    entries: list[AppEntry] = []
    pos = 0
    try:
        while pos < len(data):
            (position,) = _POS.unpack_from(data, pos)
            (n,) = _SENDER.unpack_from(data, pos + 8)
            pos += 10
            sender = data[pos : pos + n].decode()
            pos += n
            (size,) = _PAYLOAD.unpack_from(data, pos)
            pos += 4
            payload = data[pos : pos + size]
            pos += size
            if pos > len(data):
                raise DecodeError("application state: truncated entry")
            entries.append((position, sender, payload))
    except (struct.error, UnicodeDecodeError) as e:
        raise DecodeError(f"application state is malformed: {e}") from e
    return tuple(entries)


class SimApp:
    """Applies deliveries in order; counts them since the last snapshot (for compaction)."""

    __slots__ = ("entries", "since_snapshot")

    def __init__(self) -> None:
        self.entries: list[AppEntry] = []
        #: Deliveries applied since the state was last snapshotted or restored.
        self.since_snapshot = 0

    def apply(self, delivery: Delivery) -> None:
        self.entries.append((delivery.slot, delivery.sender, delivery.payload))
        self.since_snapshot += 1

    def snapshot(self) -> bytes:
        self.since_snapshot = 0
        return encode_state(self.entries)

    def restore(self, data: bytes) -> tuple[AppEntry, ...]:
        """Replace the state by ``data``'s; returns the restored entries."""
        entries = decode_state(data)
        self.entries = list(entries)
        self.since_snapshot = 0
        return entries
