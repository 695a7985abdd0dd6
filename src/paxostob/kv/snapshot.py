"""The snapshot encoding of the key-value state: versioned, checksummed, canonical.

Theory of operation: a snapshot is the *logical* state only: the machine's
clock and the live keys with their values and expiry times. Keys already
expired at the clock are left out, and keys are written in byte order, so two
replicas in the same logical state write the same bytes, whatever their
dictionaries' insertion orders or how far their lazy expiry has got.

Snapshot, version 1 (``uvarint`` = unsigned LEB128, shortest form)::

    4s      magic b"PXKV"
    u8      version (= 1)
    u32     CRC-32 of the body
    body:
        u64     clock_ms (at most 2**63 - 1)
        uvarint count of keys
        count times, keys strictly increasing:
            uvarint key length, key
            uvarint value length, value
            u8      1 if an expiry time follows, else 0
            [i64    expiry time, Unix milliseconds]

Rules: ``decode_state`` reads bytes from outside (a disk, a peer): it checks
the checksum first, never trusts a count or a length, consumes its input
exactly, and raises ``DecodeError`` on anything malformed.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import DecodeError
from .wire import encode_uvarint, read_uvarint

__all__ = [
    "SNAPSHOT_MAGIC",
    "SNAPSHOT_VERSION",
    "State",
    "StateEncoder",
    "decode_state",
    "encode_state",
]

SNAPSHOT_MAGIC = b"PXKV"
#: The version byte ``encode_state`` writes and the only one ``decode_state`` reads.
SNAPSHOT_VERSION = 1

_HEAD = struct.Struct(">4sBI")  # magic, version, crc
_CLOCK = struct.Struct(">Q")
_EXPIRY = struct.Struct(">q")
_CLOCK_MAX = (1 << 63) - 1
#: Keys a ``StateEncoder`` step encodes: about a millisecond or two of work
#: for small values, so a loop interleaving the steps stays responsive.
KEYS_PER_STEP_DEFAULT = 2048
#: The varint of every length below 128 (most keys and many values).
_SMALL_UVARINTS = tuple(encode_uvarint(n) for n in range(128))


@dataclass(frozen=True, slots=True)
class State:
    """The logical state: the clock, and every live key's value and expiry time."""

    clock_ms: int
    values: dict[bytes, bytes]
    expiries: dict[bytes, int]  # a subset of values' keys


def encode_state(
    clock_ms: int, values: Mapping[bytes, bytes], expiries: Mapping[bytes, int]
) -> bytes:
    """The snapshot of ``values`` and ``expiries`` (keys expired at ``clock_ms`` left out)."""
    encoder = StateEncoder(clock_ms, values, expiries, keys_per_step=1 << 62)
    while True:
        data = encoder.step()
        if data is not None:
            return data


class StateEncoder:
    """``encode_state`` in bounded steps, for a caller that interleaves other work.

    Each ``step()`` encodes at most ``keys_per_step`` keys and returns
    ``None``; the last returns the snapshot, the same bytes ``encode_state``
    gives. The first step also selects and sorts the live keys (a C sort,
    milliseconds for 100,000 keys). ``values`` and ``expiries`` must not
    change until the last step: give it copies of a live state.

    ``step_parts`` is ``step`` with the last result left in pieces (their
    concatenation is the snapshot): a caller that frames the snapshot in a
    larger record joins everything once, instead of joining here and copying
    the whole snapshot again (each copy of a large state is another
    snapshot-sized allocation).
    """

    def __init__(
        self,
        clock_ms: int,
        values: Mapping[bytes, bytes],
        expiries: Mapping[bytes, int],
        *,
        keys_per_step: int = KEYS_PER_STEP_DEFAULT,
    ) -> None:
        assert 0 <= clock_ms <= _CLOCK_MAX and keys_per_step >= 1
        self._clock_ms = clock_ms
        self._values = values
        self._expiries = expiries
        self._keys_per_step = keys_per_step
        self._live: list[bytes] | None = None
        self._at = 0
        self._chunks: list[bytes] = []
        self._crc = 0

    def step(self) -> bytes | None:
        """Encode the next keys; the snapshot once every key is encoded, else ``None``."""
        parts = self.step_parts()
        return None if parts is None else b"".join(parts)

    def step_parts(self) -> list[bytes] | None:
        """``step``, but the snapshot is returned as the pieces it is the concatenation of."""
        values, expiries = self._values, self._expiries
        live = self._live
        if live is None:
            # A key is expired once the clock is past its expiry time (Redis: now > when).
            clock_ms = self._clock_ms
            if expiries:
                live = sorted(k for k in values if k not in expiries or expiries[k] >= clock_ms)
            else:
                live = sorted(values)
            self._live = live
            self._add(_CLOCK.pack(clock_ms) + encode_uvarint(len(live)))
        start = self._at
        stop = min(len(live), start + self._keys_per_step)
        # Every key of the store passes here: one-byte lengths come from a
        # table, and each key adds its five pieces with one call.
        small = _SMALL_UVARINTS
        body: list[bytes] = []
        extend = body.extend
        if not expiries:
            for key in live[start:stop]:
                value = values[key]
                n, m = len(key), len(value)
                extend(
                    (
                        small[n] if n < 128 else encode_uvarint(n),
                        key,
                        small[m] if m < 128 else encode_uvarint(m),
                        value,
                        b"\x00",
                    )
                )
        else:
            pack = _EXPIRY.pack
            expiry = expiries.get
            for key in live[start:stop]:
                value = values[key]
                n, m = len(key), len(value)
                at = expiry(key)
                extend(
                    (
                        small[n] if n < 128 else encode_uvarint(n),
                        key,
                        small[m] if m < 128 else encode_uvarint(m),
                        value,
                        b"\x00" if at is None else b"\x01" + pack(at),
                    )
                )
        self._add(b"".join(body))
        self._at = stop
        if stop < len(live):
            return None
        parts, self._chunks = self._chunks, []
        parts.insert(0, _HEAD.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, self._crc))
        # The copies of the state are no longer needed: drop them now, not
        # when the caller drops this encoder.
        self._values, self._expiries, self._live = {}, {}, []
        return parts

    def _add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._crc = zlib.crc32(chunk, self._crc)


def decode_state(data: bytes) -> State:
    """The state ``encode_state`` wrote into ``data``; ``DecodeError`` if it is not one."""
    view = memoryview(data)
    end = len(view)
    if end < _HEAD.size + _CLOCK.size:
        raise DecodeError(f"snapshot of {end} bytes is shorter than its header")
    magic, version, crc = _HEAD.unpack_from(view, 0)
    if magic != SNAPSHOT_MAGIC:
        raise DecodeError(f"not a key-value snapshot (magic {bytes(magic)!r})")
    if version != SNAPSHOT_VERSION:
        raise DecodeError(f"snapshot version {version} is not {SNAPSHOT_VERSION}")
    if zlib.crc32(view[_HEAD.size :]) != crc:
        raise DecodeError("snapshot checksum mismatch: the snapshot is damaged")
    pos = _HEAD.size
    (clock_ms,) = _CLOCK.unpack_from(view, pos)
    if clock_ms > _CLOCK_MAX:
        raise DecodeError(f"snapshot clock {clock_ms} is above {_CLOCK_MAX}")
    count, pos = read_uvarint(view, pos + _CLOCK.size, "the key count")
    # A key takes at least three bytes: a garbled count cannot make us loop long.
    if count * 3 > end - pos:
        raise DecodeError(f"snapshot claims {count} keys but has {end - pos} bytes left")
    values: dict[bytes, bytes] = {}
    expiries: dict[bytes, int] = {}
    previous: bytes | None = None
    for i in range(count):
        key, pos = _read_bytes(view, pos, f"key {i}")
        if previous is not None and key <= previous:
            raise DecodeError(f"snapshot key {i} is out of order")
        previous = key
        values[key], pos = _read_bytes(view, pos, f"the value of key {i}")
        if pos >= end:
            raise DecodeError(f"snapshot ends inside key {i}")
        flag = view[pos]
        pos += 1
        if flag == 1:
            if pos + _EXPIRY.size > end:
                raise DecodeError(f"snapshot ends inside the expiry time of key {i}")
            (expiries[key],) = _EXPIRY.unpack_from(view, pos)
            pos += _EXPIRY.size
        elif flag != 0:
            raise DecodeError(f"snapshot key {i} has expiry flag {flag}")
    if pos != end:
        raise DecodeError(f"snapshot has {end - pos} trailing bytes")
    return State(clock_ms, values, expiries)


def _read_bytes(view: memoryview, pos: int, what: str) -> tuple[bytes, int]:
    length, pos = read_uvarint(view, pos, f"the length of {what}")
    if length > len(view) - pos:
        raise DecodeError(f"snapshot ends inside {what}")
    return bytes(view[pos : pos + length]), pos + length
