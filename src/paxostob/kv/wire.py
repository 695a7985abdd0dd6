"""Unsigned LEB128 varints: the length prefixes of the kv encodings.

Theory of operation: most command arguments and keys are a few bytes long, so
a one-byte length prefix (instead of a fixed ``u32``) keeps log entries and
snapshots compact. Decoding reads bytes from outside, so it is strict: at most
10 bytes, a value below 2**64, and the canonical (shortest) form only, so that
every accepted input re-encodes to exactly the same bytes.
"""

from __future__ import annotations

from ..errors import DecodeError

__all__ = ["UVARINT_MAX", "encode_uvarint", "read_uvarint"]

#: The largest value a varint holds (a ``u64``).
UVARINT_MAX = (1 << 64) - 1
_BYTES_MAX = 10  # ceil(64 / 7)


def encode_uvarint(value: int) -> bytes:
    """``value`` (``0 <= value <= UVARINT_MAX``) as an unsigned LEB128 varint."""
    assert 0 <= value <= UVARINT_MAX, f"varint {value} out of the u64 range"
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_uvarint(data: bytes | memoryview, pos: int, what: str) -> tuple[int, int]:
    """The varint at ``data[pos:]`` and the position after it; ``DecodeError`` if malformed.

    ``what`` names the field in the error message.
    """
    end = len(data)
    if pos >= end:
        raise DecodeError(f"input ends before {what}")
    first = data[pos]
    if first < 0x80:  # the common case: one byte
        return first, pos + 1
    value = 0
    shift = 0
    for i in range(_BYTES_MAX):
        if pos + i >= end:
            raise DecodeError(f"input ends inside {what}")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if byte == 0:
                raise DecodeError(f"{what} is not in its shortest form")
            if value > UVARINT_MAX:
                raise DecodeError(f"{what} does not fit in 64 bits")
            return value, pos + i + 1
    raise DecodeError(f"{what} is longer than {_BYTES_MAX} bytes")
