"""Length-prefixed, versioned frames: the TCP transport's unit on the wire (sans-IO).

A frame is ``length (4 bytes, big-endian) | version (1 byte) | payload``, where
``length`` counts the version byte and the payload (so it is at least 1).
``FRAME_VERSION`` changes when the frame or payload encoding changes
incompatibly; a peer speaking another version is refused, not misread.

``FrameDecoder`` turns a byte stream (cut anywhere) into payloads. It checks a
frame's header as soon as its bytes are there, so a header claiming more than
``frame_bytes_max`` is refused before its body is buffered: the decoder never
holds more than one frame (at most ``frame_bytes_max`` + 4 bytes) plus the
last chunk fed to it. After a ``DecodeError`` the stream is unusable (the
frame boundary is lost): the decoder keeps raising, and the caller closes the
connection.
"""

from __future__ import annotations

import struct
from typing import NoReturn

from ..errors import ConfigurationError, DecodeError

__all__ = [
    "FRAME_BYTES_MAX_DEFAULT",
    "FRAME_VERSION",
    "HEADER_BYTES",
    "FrameDecoder",
    "encode_frame",
    "encode_frame_parts",
]

FRAME_VERSION = 1

#: Far above any message the core sends (a batch is at most ``batch_bytes_max``,
#: 1 MiB by default; a catch-up reply at most ``catchup_bytes_max``, 4 MiB), yet
#: small enough that a hostile length prefix cannot make a node buffer much.
FRAME_BYTES_MAX_DEFAULT = 16 << 20

_LENGTH = struct.Struct(">I")
_HEADER = struct.Struct(">IB")
HEADER_BYTES = _HEADER.size  # 5: the length and the version byte


def encode_frame(payload: bytes, version: int = FRAME_VERSION) -> bytes:
    """One frame carrying ``payload`` (``version`` is a parameter for tests only)."""
    return _HEADER.pack(len(payload) + 1, version) + payload


def encode_frame_parts(head: bytes, tail: bytes) -> tuple[bytes, bytes]:
    """One frame carrying ``head + tail``, as two buffers: ``tail`` is not copied.

    For a payload whose big part is an existing buffer (a snapshot chunk):
    the frame's header joins the small ``head``, and the writer sends both.
    """
    return _HEADER.pack(len(head) + len(tail) + 1, FRAME_VERSION) + head, tail


class FrameDecoder:
    """Feed bytes with ``feed``; take complete payloads with ``next_payload``.

    ``frame_bytes_max`` bounds a frame's ``length`` field (version byte plus
    payload). It may be changed between frames (the TCP handshake reads its
    small frames with a small limit, then raises it for messages); the new
    limit applies to the next header read.
    """

    def __init__(self, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT) -> None:
        self.frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()
        self._pos = 0  # start of the first unread frame in _buffer
        self._error: DecodeError | None = None

    @property
    def frame_bytes_max(self) -> int:
        return self._frame_bytes_max

    @frame_bytes_max.setter
    def frame_bytes_max(self, value: int) -> None:
        if not (type(value) is int and value >= 1):
            raise ConfigurationError(f"frame_bytes_max must be an int >= 1, got {value!r}")
        self._frame_bytes_max = value

    @property
    def buffered_bytes(self) -> int:
        """Bytes fed but not yet returned as payloads."""
        return len(self._buffer) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` from the stream."""
        if self._error is not None:
            raise self._error
        if self._pos and self._pos == len(self._buffer):
            self._buffer.clear()
            self._pos = 0
        self._buffer += data

    def next_payload(self) -> bytes | None:
        """The next complete payload, or ``None`` until more bytes are fed.

        Raises ``DecodeError`` for a length of 0 or above ``frame_bytes_max``
        and for an unknown version byte, and keeps raising it after that.
        """
        if self._error is not None:
            raise self._error
        buf, pos = self._buffer, self._pos
        available = len(buf) - pos
        if available < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(buf, pos)
        if length == 0:
            self._fail("frame length 0: a frame holds at least its version byte")
        if length > self._frame_bytes_max:
            self._fail(f"frame of {length} bytes exceeds frame_bytes_max ({self._frame_bytes_max})")
        if available < HEADER_BYTES:
            return None
        version = buf[pos + _LENGTH.size]
        if version != FRAME_VERSION:
            self._fail(f"frame version {version}, this node speaks version {FRAME_VERSION}")
        end = pos + _LENGTH.size + length
        if len(buf) < end:
            return None
        payload = bytes(buf[pos + HEADER_BYTES : end])
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end > len(buf) // 2:
            # Compact now and then, so a long stream does not keep a long prefix alive.
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return payload

    def _fail(self, why: str) -> NoReturn:
        self._error = DecodeError(why)
        raise self._error
