"""The core's own part of a snapshot: where it stands and what it delivered.

Theory of operation: a snapshot at consensus slot *s* replaces the decided
log through *s*. To go on delivering exactly as before, a replica that
installs it needs the delivery position reached at *s* (``delivered``) and
which proposals were delivered (the dedup table, so a retried proposal is
still delivered once), and the log's clock at *s* (``multipaxos``: clock
stamps). That is ``SnapshotMeta``; the application's state travels beside
it as opaque bytes.

Encoding (versioned, big-endian, no dependencies): ``B version`` (2),
``Q slot``, ``Q delivered``, ``Q clock_ms``, ``I lives``, then per life
``H len + origin utf-8``, ``Q incarnation``, ``Q low``, ``I n`` and ``n * Q``
counters above ``low``; version 3 (written since memberships change) then
the configurations governing the slots after ``slot``
(``membership.encode_configs``). Version 2 (no configurations: the
membership was the founding one) and version 1, written before the log had
a clock (the same without ``clock_ms``, whose clock is 0: unknown), are
still read.
``decode_meta`` raises ``DecodeError`` on anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import DecodeError
from .membership import Configuration, decode_configs, encode_configs

__all__ = ["SnapshotMeta", "decode_meta", "encode_meta"]

VERSION = 3
_HEAD_V1 = struct.Struct(">BQQI")
_HEAD = struct.Struct(">BQQQI")
_LIFE = struct.Struct(">QQI")
_LEN = struct.Struct(">H")
_Q = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    slot: int
    delivered: int
    #: ``(origin, incarnation) -> (low, counters above low)`` delivered.
    seen: dict[tuple[str, int], tuple[int, frozenset[int]]]
    #: The log's clock through ``slot`` (0: no stamp yet, or a version-1 meta).
    clock_ms: int = 0
    #: The configurations governing slots above ``slot`` (empty: a version-1 or
    #: -2 meta, written while the membership was the founding one).
    configs: tuple[Configuration, ...] = ()


def encode_meta(meta: SnapshotMeta) -> bytes:
    parts = [_HEAD.pack(VERSION, meta.slot, meta.delivered, meta.clock_ms, len(meta.seen))]
    for (origin, incarnation), (low, above) in sorted(meta.seen.items()):
        name = origin.encode()
        parts.append(_LEN.pack(len(name)) + name)
        parts.append(_LIFE.pack(incarnation, low, len(above)))
        parts.extend(_Q.pack(c) for c in sorted(above))
    parts.append(encode_configs(meta.configs))
    return b"".join(parts)


def decode_meta(data: bytes) -> SnapshotMeta:
    try:
        version = data[0] if data else None
        if version in (2, VERSION):
            version, slot, delivered, clock_ms, lives = _HEAD.unpack_from(data, 0)
            pos = _HEAD.size
        elif version == 1:
            version, slot, delivered, lives = _HEAD_V1.unpack_from(data, 0)
            clock_ms, pos = 0, _HEAD_V1.size
        else:
            raise DecodeError(f"snapshot meta version {version} (this build reads 1 to {VERSION})")
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
        configs: tuple[Configuration, ...] = ()
        if version == VERSION:
            configs, pos = decode_configs(data, pos)
    except (struct.error, UnicodeDecodeError) as e:
        raise DecodeError(f"snapshot meta is malformed: {e}") from e
    if pos != len(data):
        raise DecodeError("snapshot meta has trailing bytes")
    return SnapshotMeta(slot, delivered, seen, clock_ms, configs)
