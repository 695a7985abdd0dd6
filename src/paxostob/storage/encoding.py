"""The on-disk encoding of a slot's value (a ``Batch``) and the row checksums.

Theory of operation: storage must work without the optional ``net`` extra
(msgpack), so a value is packed with ``struct`` into a small, versioned,
big-endian layout. The layout is versioned on its own (its first byte) so a
future change can still read the old rows.

Value, version 1::

    u8  version (= 1)
    u32 count of proposals
    count times:
        u16 origin length, origin (UTF-8)
        u64 seq
        u32 payload length, payload

Every stored row also carries ``row_crc``: a CRC-32 over the table name and
every column of the row (slot included), each column framed by a type tag and
its length, so a byte flipped anywhere in a row — or a row moved to another
slot or table — is detected when the row is loaded.

Rules: ``decode_batch`` reads bytes from the disk, i.e. from outside: it
never trusts a length, consumes the input exactly, and raises
``DecodeError`` (never ``struct.error`` or ``IndexError``) on anything
malformed.
"""

from __future__ import annotations

import binascii
import struct

from ..core.types import Batch, Proposal, ProposalId
from ..errors import ConfigurationError, DecodeError

__all__ = ["VALUE_VERSION", "decode_batch", "encode_batch", "row_crc"]

#: The version byte ``encode_batch`` writes and the only one ``decode_batch`` reads.
VALUE_VERSION = 1

_HEAD = struct.Struct(">BI")  # version, count
_ORIGIN_LEN = struct.Struct(">H")
_SEQ_PAYLOAD_LEN = struct.Struct(">QI")
_ORIGIN_LEN_MAX = (1 << 16) - 1
_PAYLOAD_LEN_MAX = (1 << 32) - 1
_SEQ_MAX = (1 << 64) - 1

_CRC_INT = struct.Struct(">cq")
_CRC_LEN = struct.Struct(">cQ")


def encode_batch(batch: Batch) -> bytes:
    """``batch`` in the version-1 layout; ``ConfigurationError`` if a field is out of range."""
    parts = [_HEAD.pack(VALUE_VERSION, len(batch))]
    for proposal in batch:
        origin = proposal.id.origin.encode("utf-8")
        seq, payload = proposal.id.seq, proposal.payload
        if len(origin) > _ORIGIN_LEN_MAX:
            raise ConfigurationError(f"proposal origin longer than {_ORIGIN_LEN_MAX} bytes")
        if not 0 <= seq <= _SEQ_MAX:
            raise ConfigurationError(f"proposal seq {seq} out of the u64 range")
        if len(payload) > _PAYLOAD_LEN_MAX:
            raise ConfigurationError(f"proposal payload longer than {_PAYLOAD_LEN_MAX} bytes")
        parts += (_ORIGIN_LEN.pack(len(origin)), origin)
        parts += (_SEQ_PAYLOAD_LEN.pack(seq, len(payload)), payload)
    return b"".join(parts)


def decode_batch(data: bytes) -> Batch:
    """The batch ``encode_batch`` made of ``data``; ``DecodeError`` if ``data`` is not one."""
    view = memoryview(data)
    end = len(view)
    if end < _HEAD.size:
        raise DecodeError(f"value of {end} bytes is shorter than its {_HEAD.size}-byte header")
    version, count = _HEAD.unpack_from(view, 0)
    if version != VALUE_VERSION:
        raise DecodeError(f"value version {version} is not {VALUE_VERSION}")
    # Each proposal takes at least its fixed fields: a garbled count cannot make us loop long.
    fixed = _ORIGIN_LEN.size + _SEQ_PAYLOAD_LEN.size
    if count * fixed > end - _HEAD.size:
        raise DecodeError(f"value claims {count} proposals but has only {end} bytes")
    pos = _HEAD.size
    proposals = []
    for i in range(count):
        if pos + _ORIGIN_LEN.size > end:
            raise DecodeError(f"value ends inside proposal {i}")
        (origin_len,) = _ORIGIN_LEN.unpack_from(view, pos)
        pos += _ORIGIN_LEN.size
        if pos + origin_len + _SEQ_PAYLOAD_LEN.size > end:
            raise DecodeError(f"value ends inside proposal {i}")
        try:
            origin = str(view[pos : pos + origin_len], "utf-8")
        except UnicodeDecodeError as e:
            raise DecodeError(f"proposal {i} has an origin that is not UTF-8") from e
        pos += origin_len
        seq, payload_len = _SEQ_PAYLOAD_LEN.unpack_from(view, pos)
        pos += _SEQ_PAYLOAD_LEN.size
        if pos + payload_len > end:
            raise DecodeError(f"value ends inside the payload of proposal {i}")
        payload = bytes(view[pos : pos + payload_len])
        pos += payload_len
        proposals.append(Proposal(ProposalId(origin, seq), payload))
    if pos != end:
        raise DecodeError(f"value has {end - pos} trailing bytes")
    return tuple(proposals)


def row_crc(table: str, *columns: int | str | bytes) -> int:
    """The CRC-32 of a row of ``table`` with ``columns`` (slot included), as an unsigned int.

    Each column is framed by a type tag and its length, so ``("ab", "c")``
    and ``("a", "bc")`` differ, as do the int 1 and the bytes ``b"\\x01"``.
    """
    crc = binascii.crc32(table.encode("utf-8"))
    for column in columns:
        if isinstance(column, bytes):
            crc = binascii.crc32(_CRC_LEN.pack(b"b", len(column)), crc)
            crc = binascii.crc32(column, crc)
        elif isinstance(column, str):
            raw = column.encode("utf-8")
            crc = binascii.crc32(_CRC_LEN.pack(b"s", len(raw)), crc)
            crc = binascii.crc32(raw, crc)
        else:
            crc = binascii.crc32(_CRC_INT.pack(b"i", column), crc)
    return crc
