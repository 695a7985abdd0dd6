"""The core's own part of a snapshot: where it stands and what it delivered.

Theory of operation: a snapshot at consensus slot *s* replaces the decided
log through *s*. To go on delivering exactly as before, a replica that
installs it needs the delivery position reached at *s* (``delivered``) and
which proposals were delivered (the dedup table, so a retried proposal is
still delivered once). That is ``SnapshotMeta``; the application's state
travels beside it as opaque bytes.

Encoding (versioned, big-endian, no dependencies): ``B version``, ``Q slot``,
``Q delivered``, ``I lives``, then per life ``H len + origin utf-8``,
``Q incarnation``, ``Q low``, ``I n`` and ``n * Q`` counters above ``low``.
``decode_meta`` raises ``DecodeError`` on anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import DecodeError

__all__ = ["SnapshotMeta", "decode_meta", "encode_meta"]

VERSION = 1
_HEAD = struct.Struct(">BQQI")
_LIFE = struct.Struct(">QQI")
_LEN = struct.Struct(">H")
_Q = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    slot: int
    delivered: int
    #: ``(origin, incarnation) -> (low, counters above low)`` delivered.
    seen: dict[tuple[str, int], tuple[int, frozenset[int]]]


def encode_meta(meta: SnapshotMeta) -> bytes:
    parts = [_HEAD.pack(VERSION, meta.slot, meta.delivered, len(meta.seen))]
    for (origin, incarnation), (low, above) in sorted(meta.seen.items()):
        name = origin.encode()
        parts.append(_LEN.pack(len(name)) + name)
        parts.append(_LIFE.pack(incarnation, low, len(above)))
        parts.extend(_Q.pack(c) for c in sorted(above))
    return b"".join(parts)


def decode_meta(data: bytes) -> SnapshotMeta:
    try:
        version, slot, delivered, lives = _HEAD.unpack_from(data, 0)
        if version != VERSION:
            raise DecodeError(f"snapshot meta version {version} (this build reads {VERSION})")
        pos = _HEAD.size
        seen: dict[tuple[str, int], tuple[int, frozenset[int]]] = {}
        for _ in range(lives):
            (n,) = _LEN.unpack_from(data, pos)
            origin = data[pos + 2 : pos + 2 + n].decode()
            if len(origin.encode()) != n:
                raise DecodeError("snapshot meta: truncated origin")
            pos += 2 + n
            incarnation, low, count = _LIFE.unpack_from(data, pos)
            pos += _LIFE.size
            if pos + count * 8 > len(data):
                raise DecodeError("snapshot meta: truncated counters")
            above = frozenset(_Q.unpack_from(data, pos + 8 * i)[0] for i in range(count))
            pos += count * 8
            seen[(origin, incarnation)] = (low, above)
    except (struct.error, UnicodeDecodeError) as e:
        raise DecodeError(f"snapshot meta is malformed: {e}") from e
    if pos != len(data):
        raise DecodeError("snapshot meta has trailing bytes")
    return SnapshotMeta(slot, delivered, seen)
