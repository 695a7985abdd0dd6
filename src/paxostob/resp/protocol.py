"""RESP, the Redis serialization protocol, without IO: request bytes in, reply bytes out.

Theory of operation: a server feeds whatever bytes arrive on a client
connection to a ``RequestParser`` and calls ``parse()`` until it returns
``None``; each call returns one complete command as a list of arguments
(``[b"SET", b"k", b"v"]``). Replies are built from a small model (``bytes``,
``int``, ``list``, ``dict``, ``SimpleString``, ``Error``...) and turned into
bytes by ``encode(reply, protocol)`` for RESP2 or RESP3 (``HELLO 3``).

Requests come in the two forms Redis accepts, chosen by the first byte:

- multibulk (what every client library sends): ``*N\\r\\n`` then N bulk
  strings ``$len\\r\\n<len bytes>\\r\\n``;
- inline (what people type into telnet or nc): one line,
  ended by ``\\n`` or ``\\r\\n``, split into arguments on blanks with the
  quoting rules of Redis's ``sdssplitargs`` (``"..."`` with ``\\n``, ``\\xHH``
  escapes, ``'...'`` with ``\\'``).

Rules, as Redis's ``networking.c`` has them (their texts are its texts):

- Empty commands are skipped, not returned: an empty or blank inline line, and
  ``*0`` or a negative count (Redis treats ``*-1`` as empty too).
- A length is a decimal integer as Redis's ``string2ll`` reads it: no sign
  but ``-``, no leading zeros, no blanks.
- Anything else is a ``ProtocolError`` whose message is the text Redis sends
  (the server replies ``ProtocolError.reply`` and closes the connection). After
  one, the parser is spent: every later ``parse()`` raises the same error and
  ``feed()`` drops its input, because the stream can no longer be framed.
- Where we differ from Redis, only ever on malformed input: a bulk string must
  be followed by ``\\r\\n`` (Redis skips two bytes unchecked); a length line
  must end in ``\\r\\n`` (Redis ends it at the ``\\r``); the ``$`` of a bulk
  string is checked as soon as its byte arrives (Redis waits for the line);
  an inline line longer than ``inline_bytes_max`` is refused however it
  arrives (Redis checks only while its newline is missing); an inline line
  with a NUL is split up to the NUL, as ``sdssplitargs`` does (Redis itself
  never finds the end of such a line, as it looks for it with ``strchr``).
  They catch a desynchronised stream sooner and make the outcome independent
  of how the stream is chunked.
- Every bound is named and configurable: ``bulk_bytes_max`` (one argument),
  ``args_max`` (arguments of one command), ``inline_bytes_max`` (one inline
  line, and one length line, as Redis's ``PROTO_INLINE_MAX_SIZE``) and
  ``buffer_bytes_max`` (bytes held: unparsed input plus the partial command).
  A malformed stream is therefore detected after a bounded number of bytes,
  and the parser's memory is bounded whatever the peer sends. A length is
  checked against its bound when its header arrives, before any byte it
  announces is read: a ``$536870912`` header over the bound costs nothing.
- ``restrict()`` tightens the argument and bulk bounds for a client that has
  not authenticated yet, as Redis 7 does (``UNAUTHENTICATED_ARGS_MAX``,
  ``UNAUTHENTICATED_BULK_BYTES_MAX``, refused with Redis's "unauthenticated"
  texts); ``unrestrict()`` lifts them once it has. A length over the general
  bound gets the general error first, as in Redis.

Speed: the buffer is an immutable ``bytes`` object read at an offset, so an
argument is one slice (one copy) and a pipeline of many small commands is
parsed from one buffer without copying it again. ``feed()`` only queues the
chunk; ``parse()`` joins the queue to the buffer only when the buffer alone
cannot progress, and only if the queue may complete something, which it knows
from the state it stopped in: a partial bulk string waits until enough bytes
are queued and a partial line until a ``\\n`` arrives. So a 512 MiB argument
that arrives in 16 KiB chunks is copied once, not 32,768 times, and a server
may parse one command per read without copying the rest of a pipeline. A
partial command keeps its arguments parsed so far, so a command with a million
arguments is never re-parsed from its start. A chunk fed when everything before
it was parsed (a server reading whole commands) becomes the buffer at once, and
``parse_into(list)`` parses all complete commands in one call: a read of one
command costs one feed and one parse call. No loop runs per byte except the
quoted-inline tokenizer, which runs per quoted segment of a line of at most
``inline_bytes_max`` bytes.

Replies (``encode``) extend the key-value state machine's reply model
(``kv.replies``: ``SimpleString``, ``Error``, ``int``, ``bytes``, ``None``,
``list``), re-exported here, so the machine's replies go to the wire as they
are. ``bytes`` (and ``bytearray``/``memoryview``) is a bulk string, ``None``
the null bulk string (``$-1``; RESP3 ``_``), ``int`` an integer, ``bool`` an
integer 1/0 (RESP3 ``#t``/``#f``), ``float`` a bulk string (RESP3 double
``,``), ``list``/``tuple`` an array, ``dict`` a flat array of keys and values
(RESP3 map ``%``), ``set``/``frozenset`` an array (RESP3 set ``~``),
``SimpleString`` ``+``, ``Error`` ``-`` (its text starts with the code:
``Error("ERR syntax error")``), ``Verbatim`` a bulk string (RESP3 ``=``),
``Push`` an array (RESP3 ``>``), ``Replies`` its items one after another
(several replies to one command: ``SUBSCRIBE a b`` answers once per channel)
and ``NULL_ARRAY`` ``*-1`` (RESP3 ``_``). Any
other type, including ``str``, is our bug: ``TypeError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from ..errors import ConfigurationError, DecodeError
from ..kv.replies import Error, SimpleString

__all__ = [
    "ARGS_MAX_DEFAULT",
    "BUFFER_BYTES_MAX_DEFAULT",
    "BULK_BYTES_MAX_DEFAULT",
    "INLINE_BYTES_MAX_DEFAULT",
    "NULL_ARRAY",
    "UNAUTHENTICATED_ARGS_MAX",
    "UNAUTHENTICATED_BULK_BYTES_MAX",
    "Error",
    "NullArray",
    "ProtocolError",
    "Push",
    "Replies",
    "Reply",
    "RequestParser",
    "SimpleString",
    "Verbatim",
    "encode",
]

_MIB: Final = 1024 * 1024

#: One argument: Redis's ``proto-max-bulk-len`` default, so every value a real
#: Redis accepts is accepted here.
BULK_BYTES_MAX_DEFAULT: Final = 512 * _MIB
#: Arguments of one command. Redis allows up to INT_MAX; a million covers
#: ``MSET``/``DEL``/``SADD`` of a million items while bounding a hostile count.
ARGS_MAX_DEFAULT: Final = 1024 * 1024
#: One inline line and one length line: Redis's ``PROTO_INLINE_MAX_SIZE``.
INLINE_BYTES_MAX_DEFAULT: Final = 64 * 1024
#: Bytes held for one connection (unparsed input plus the partial command):
#: Redis's ``client-query-buffer-limit`` default. It should exceed
#: ``bulk_bytes_max`` for a maximal argument to fit.
BUFFER_BYTES_MAX_DEFAULT: Final = 1024 * _MIB
#: Before a client authenticated (when a password is required): Redis 7's
#: fixed bounds (networking.c), so a client without the password cannot make
#: the server hold more than a few small arguments: AUTH and HELLO need no more.
UNAUTHENTICATED_ARGS_MAX: Final = 10
UNAUTHENTICATED_BULK_BYTES_MAX: Final = 16384

# Redis's own texts (networking.c), sent back as "-ERR <text>".
_TOO_BIG_INLINE: Final = "Protocol error: too big inline request"
_UNBALANCED_QUOTES: Final = "Protocol error: unbalanced quotes in request"
_TOO_BIG_MBULK_COUNT: Final = "Protocol error: too big mbulk count string"
_INVALID_MBULK: Final = "Protocol error: invalid multibulk length"
_TOO_BIG_BULK_COUNT: Final = "Protocol error: too big bulk count string"
_INVALID_BULK: Final = "Protocol error: invalid bulk length"
_UNAUTHENTICATED_MBULK: Final = "Protocol error: unauthenticated multibulk length"
_UNAUTHENTICATED_BULK: Final = "Protocol error: unauthenticated bulk length"
# Ours: Redis has no such check (see the module rules) or closes silently.
_MISSING_BULK_CRLF: Final = "Protocol error: expected CRLF after bulk string"
_BUFFER_FULL: Final = "Protocol error: query buffer limit exceeded"

_CR: Final = 0x0D
_ZERO: Final = 0x30  # '0'
# string2ll refuses 21 characters or more (LONG_STR_SIZE); 20 is "-" and 19 digits.
_LENGTH_CHARS_MAX: Final = 20


class ProtocolError(DecodeError):
    """A client sent bytes that are not RESP; the connection must be closed.

    ``message`` is Redis's text for the fault (``"Protocol error: invalid bulk
    length"``); ``reply`` is the error reply Redis sends before closing
    (``-ERR Protocol error: ...``).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message: Final = message

    @property
    def reply(self) -> Error:
        return Error(f"ERR {self.message}")


def _expected_dollar(byte: int) -> ProtocolError:
    # Redis prints the byte raw, with CR and LF as spaces (an error reply is one
    # line); other unprintable bytes are escaped here to keep the reply readable.
    printable = chr(byte) if 0x20 <= byte < 0x7F else f"\\x{byte:02x}"
    shown = " " if byte in (0x0D, 0x0A) else printable
    return ProtocolError(f"Protocol error: expected '$', got '{shown}'")


def _length(text: bytes) -> int | None:
    """``text`` as Redis's ``string2ll`` reads it, or ``None`` if it is no integer."""
    if not 0 < len(text) <= _LENGTH_CHARS_MAX:
        return None
    digits = text[1:] if text[0] == 0x2D else text  # '-'
    if not digits.isdigit() or (digits[0] == _ZERO and (len(text) > 1)):
        return None
    value = int(digits)
    return value if digits is text else -value


# Lengths that clients send all the time, each spelled the one way string2ll
# accepts, so a dict lookup both reads and validates them (a miss is checked by
# _length). 1,024 entries cost ~100 KB. Bulk lengths are looked up with their
# "$", so a hit also validates the "$" (one check less per argument).
_SMALL_LENGTHS: Final = {b"%d" % n: n for n in range(1024)}
_SMALL_BULK_LENGTHS: Final = {b"$%d" % n: n for n in range(1024)}

# --------------------------------------------------------------------------- inline commands

# Cheap test for the common case: no quotes, NUL, \v or \f means bytes.split()
# splits exactly as sdssplitargs does.
_INLINE_SPECIAL: Final = re.compile(rb"[\"'\x00\x0b\x0c]")
# C isspace(): blanks before a token and after a closing quote.
_C_BLANKS: Final = re.compile(rb"[ \t\n\x0b\x0c\r]*")
_C_SPACE: Final = frozenset(b" \t\n\x0b\x0c\r")
# What ends an unquoted token (sdssplitargs' switch; \v and \f do not).
_TOKEN_END: Final = frozenset(b" \n\r\t")
_BARE_RUN: Final = re.compile(rb"[^ \n\r\t\"']+")
_DQ_RUN: Final = re.compile(rb'[^\\"]+')
_SQ_RUN: Final = re.compile(rb"[^\\']+")
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES: Final = {
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("b"): b"\b",
    ord("a"): b"\a",
}
_DQ: Final = 0x22
_SQ: Final = 0x27


def _split_inline(line: bytes) -> list[bytes]:
    """The arguments of one inline line (without its line end), as Redis splits them."""
    if _INLINE_SPECIAL.search(line) is None:
        return line.split()
    return _split_quoted(line)


def _split_quoted(line: bytes) -> list[bytes]:
    # Redis splits a C string: a NUL ends the line.
    nul = line.find(b"\x00")
    if nul >= 0:
        line = line[:nul]
    n = len(line)
    argv: list[bytes] = []
    i = 0
    while True:
        blanks = _C_BLANKS.match(line, i)
        assert blanks is not None  # the pattern matches the empty string
        i = blanks.end()
        if i >= n:
            return argv
        parts: list[bytes] = []
        while i < n:
            c = line[i]
            if c in _TOKEN_END:
                i += 1
                break
            # A closing quote ends the token (what follows it is a blank).
            if c == _DQ:
                i = _read_double_quoted(line, i + 1, parts)
                break
            if c == _SQ:
                i = _read_single_quoted(line, i + 1, parts)
                break
            run = _BARE_RUN.match(line, i)
            assert run is not None  # line[i] is none of the excluded bytes
            parts.append(run.group())
            i = run.end()
        argv.append(b"".join(parts))


def _closing_quote(line: bytes, i: int) -> int:
    """The index after the closing quote at ``i``, which must end its token."""
    if i + 1 < len(line) and line[i + 1] not in _C_SPACE:
        raise ProtocolError(_UNBALANCED_QUOTES)
    return i + 1


def _read_double_quoted(line: bytes, i: int, parts: list[bytes]) -> int:
    n = len(line)
    while True:
        run = _DQ_RUN.match(line, i)
        if run is not None:
            parts.append(run.group())
            i = run.end()
        if i >= n:
            raise ProtocolError(_UNBALANCED_QUOTES)
        if line[i] == _DQ:
            return _closing_quote(line, i)
        # A backslash.
        if i + 1 >= n:
            raise ProtocolError(_UNBALANCED_QUOTES)
        escaped = line[i + 1]
        if escaped == 0x78 and i + 3 < n and line[i + 2] in _HEX and line[i + 3] in _HEX:  # 'x'
            parts.append(bytes((int(line[i + 2 : i + 4], 16),)))
            i += 4
        else:
            parts.append(_ESCAPES.get(escaped) or bytes((escaped,)))
            i += 2


def _read_single_quoted(line: bytes, i: int, parts: list[bytes]) -> int:
    n = len(line)
    while True:
        run = _SQ_RUN.match(line, i)
        if run is not None:
            parts.append(run.group())
            i = run.end()
        if i >= n:
            raise ProtocolError(_UNBALANCED_QUOTES)
        if line[i] == _SQ:
            return _closing_quote(line, i)
        # A backslash: only \' is an escape between single quotes.
        if i + 1 < n and line[i + 1] == _SQ:
            parts.append(b"'")
            i += 2
        else:
            parts.append(b"\\")
            i += 1


# ---------------------------------------------------------------------------------- requests


class RequestParser:
    """Client requests (multibulk or inline) from a byte stream fed in arbitrary chunks.

    ``feed(data)`` queues bytes; ``parse()`` returns the next complete command,
    ``None`` when more bytes are needed, or raises ``ProtocolError`` (and keeps
    raising it) when the stream is not RESP. Not thread-safe; one per connection.
    """

    __slots__ = (
        "_args",
        "_args_left",
        "_args_limit",
        "_args_max",
        "_buffer",
        "_buffer_bytes_max",
        "_bulk_bytes",
        "_bulk_bytes_max",
        "_bulk_limit",
        "_command_bytes",
        "_failure",
        "_inline_bytes_max",
        "_join_at_bytes",
        "_newline_queued",
        "_offset",
        "_queue",
        "_queue_bytes",
        "_queue_unchecked",
        "_stalled",
        "_wait_newline",
    )

    def __init__(
        self,
        *,
        bulk_bytes_max: int = BULK_BYTES_MAX_DEFAULT,
        args_max: int = ARGS_MAX_DEFAULT,
        inline_bytes_max: int = INLINE_BYTES_MAX_DEFAULT,
        buffer_bytes_max: int = BUFFER_BYTES_MAX_DEFAULT,
    ) -> None:
        for name, value in (
            ("bulk_bytes_max", bulk_bytes_max),
            ("args_max", args_max),
            ("inline_bytes_max", inline_bytes_max),
            ("buffer_bytes_max", buffer_bytes_max),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
        self._bulk_bytes_max = bulk_bytes_max
        self._args_max = args_max
        # The bounds in force: the ones above, or tighter ones (restrict()). The
        # hot path compares with these only; which text a refusal gets is decided
        # after, by comparing with the general bound.
        self._bulk_limit = bulk_bytes_max
        self._args_limit = args_max
        self._inline_bytes_max = inline_bytes_max
        self._buffer_bytes_max = buffer_bytes_max
        # Unparsed input is _buffer[_offset:] followed by the chunks of _queue.
        self._buffer = b""
        self._offset = 0
        self._queue: list[bytes] = []
        self._queue_bytes = 0
        # _stalled: parse() stopped short on _buffer alone. It can progress once
        # _buffer[_offset:] plus the queue hold _join_at_bytes bytes (0: any
        # byte may help) or, if _wait_newline, once a queued chunk has a "\n"
        # (_newline_queued). Chunks queued while not stalled were not looked at
        # (_queue_unchecked), so they are joined at the next stall.
        self._stalled = True
        self._join_at_bytes = 0
        self._wait_newline = False
        self._newline_queued = False
        self._queue_unchecked = False
        # The partial multibulk command: arguments so far, how many are still
        # to come (0: between commands), the length of the bulk string being
        # read (-1: its length line is next), and its bytes consumed so far.
        self._args: list[bytes] = []
        self._args_left = 0
        self._bulk_bytes = -1
        self._command_bytes = 0
        self._failure: ProtocolError | None = None

    def restrict(
        self,
        *,
        args_max: int = UNAUTHENTICATED_ARGS_MAX,
        bulk_bytes_max: int = UNAUTHENTICATED_BULK_BYTES_MAX,
    ) -> None:
        """Tighter bounds until ``unrestrict()``: a client that has not authenticated.

        A command or argument over them is refused from its length line with
        Redis's "unauthenticated multibulk length" or "unauthenticated bulk
        length". Takes effect at the next length line: call it between commands.
        """
        for name, value in (("args_max", args_max), ("bulk_bytes_max", bulk_bytes_max)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
        self._args_limit = min(args_max, self._args_max)
        self._bulk_limit = min(bulk_bytes_max, self._bulk_bytes_max)

    def unrestrict(self) -> None:
        """Back to the general bounds (the client authenticated)."""
        self._args_limit = self._args_max
        self._bulk_limit = self._bulk_bytes_max

    @property
    def restricted(self) -> bool:
        """Whether ``restrict()`` bounds are in force."""
        return self._args_limit < self._args_max or self._bulk_limit < self._bulk_bytes_max

    @property
    def buffered_bytes(self) -> int:
        """Bytes held: unparsed input plus the arguments of the partial command."""
        return len(self._buffer) - self._offset + self._queue_bytes + self._command_bytes

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``. Cheap: the bytes are looked at by ``parse()``.

        Beyond ``buffer_bytes_max`` held, the parser fails (the next
        ``parse()`` raises); after a failure, input is dropped.
        """
        if self._failure is not None:
            return
        if type(data) is not bytes:
            data = bytes(data)
        if not data:
            return
        if self._offset == len(self._buffer) and not self._queue:
            # Everything before was parsed (a server's usual case: whole commands per
            # read): the chunk becomes the buffer, as _maybe_join would make it, and
            # parse() looks at it at once (nothing was stalled on but these bytes).
            self._buffer = data
            self._offset = 0
            self._stalled = False
            self._join_at_bytes = 0
            self._wait_newline = False
            self._newline_queued = False
            self._queue_unchecked = False
            if len(data) + self._command_bytes > self._buffer_bytes_max:
                self._fail(ProtocolError(_BUFFER_FULL))
            return
        self._queue.append(data)
        self._queue_bytes += len(data)
        if not self._stalled:
            self._queue_unchecked = True
        elif self._wait_newline and not self._newline_queued and b"\n" in data:
            self._newline_queued = True
        if self.buffered_bytes > self._buffer_bytes_max:
            self._fail(ProtocolError(_BUFFER_FULL))

    def parse(self) -> list[bytes] | None:
        """The next complete command, or ``None`` until more bytes are fed.

        Raises ``ProtocolError`` if the stream is not RESP, and again on every
        later call.
        """
        if self._failure is not None:
            raise self._failure
        try:
            while True:
                # The buffer is parsed first: the queue is joined to it only once
                # the buffer alone cannot progress, and only if the queue may help.
                if self._stalled and not (self._queue and self._maybe_join()):
                    return None
                command = self._parse()
                if command is not None:
                    return command
        except ProtocolError as e:
            self._fail(e)
            raise

    def parse_into(self, commands: list[list[bytes]]) -> None:
        """Append every complete command fed so far to ``commands`` (``parse()`` until ``None``).

        Raises ``ProtocolError`` as ``parse()`` does, after appending the
        commands that came before the fault. One call per read instead of one
        per command: what a server calls.
        """
        if self._failure is not None:
            raise self._failure
        append = commands.append
        parse = self._parse
        try:
            while True:
                if self._stalled and not (self._queue and self._maybe_join()):
                    return
                command = parse()
                if command is not None:
                    append(command)
                    if self._offset == len(self._buffer) and not self._queue:
                        # All parsed (a read of whole commands): stall as _parse
                        # would at the end of the buffer, without calling it again.
                        self._buffer = b""
                        self._offset = 0
                        self._stalled = True
                        self._join_at_bytes = 0
                        self._wait_newline = False
                        return
        except ProtocolError as e:
            self._fail(e)
            raise

    def __iter__(self) -> RequestParser:
        return self

    def __next__(self) -> list[bytes]:
        """Iterating yields the complete commands fed so far (``parse()`` until ``None``)."""
        command = self.parse()
        if command is None:
            raise StopIteration
        return command

    # ------------------------------------------------------------------------------ internals

    def _fail(self, error: ProtocolError) -> None:
        self._failure = error
        self._buffer = b""
        self._offset = 0
        self._queue = []
        self._queue_bytes = 0
        self._args = []
        self._command_bytes = 0

    def _maybe_join(self) -> bool:
        """Append the queue to the buffer if that may let ``parse()`` progress."""
        unparsed = len(self._buffer) - self._offset
        if not (
            self._newline_queued
            or self._queue_unchecked
            or self._join_at_bytes == 0
            or unparsed + self._queue_bytes >= self._join_at_bytes
        ):
            return False
        if unparsed == 0 and len(self._queue) == 1:
            self._buffer = self._queue[0]
        else:
            self._buffer = b"".join([memoryview(self._buffer)[self._offset :], *self._queue])
        self._offset = 0
        self._queue = []
        self._queue_bytes = 0
        # What parse() waited for may now be here; it stalls again if not.
        self._stalled = False
        self._join_at_bytes = 0
        self._wait_newline = False
        self._newline_queued = False
        self._queue_unchecked = False
        return True

    def _stop(self, offset: int, *, join_at_bytes: int = 0, wait_newline: bool = False) -> None:
        """Remember where parsing stopped short, and what it waits for."""
        self._stalled = True
        self._offset = offset
        self._join_at_bytes = join_at_bytes
        self._wait_newline = wait_newline

    def _parse(self) -> list[bytes] | None:  # noqa: C901 - the hot path, inlined on purpose
        # The hot path of a server: locals and literals, no calls but bytes methods.
        buf = self._buffer
        pos = self._offset
        end = len(buf)
        inline_max = self._inline_bytes_max
        left = self._args_left
        if left:  # resume the partial command; the state is saved again if it stops short
            args = self._args
            bulk = self._bulk_bytes
            start = pos - self._command_bytes  # where the command began, as if in buf
            self._args = []
            self._args_left = 0
            self._command_bytes = 0
        else:
            while True:  # until a command with arguments begins
                if pos >= end:  # all parsed: stalled until fed (self._stop(0), inlined)
                    self._buffer = b""
                    self._offset = 0
                    self._stalled = True
                    self._join_at_bytes = 0
                    self._wait_newline = False
                    return None
                if buf[pos] != 0x2A:  # not '*': an inline command
                    newline = buf.find(b"\n", pos)
                    if newline < 0:
                        if end - pos - (buf[end - 1] == _CR) > inline_max:
                            raise ProtocolError(_TOO_BIG_INLINE)
                        self._stop(pos, join_at_bytes=inline_max + 1, wait_newline=True)
                        return None
                    stop = newline - 1 if newline > pos and buf[newline - 1] == _CR else newline
                    if stop - pos > inline_max:
                        raise ProtocolError(_TOO_BIG_INLINE)
                    argv = _split_inline(buf[pos:stop])
                    pos = newline + 1
                    if argv:
                        self._offset = pos
                        return argv
                    continue
                newline = buf.find(b"\r\n", pos)
                if newline < 0:
                    if end - pos > inline_max:
                        raise ProtocolError(_TOO_BIG_MBULK_COUNT)
                    self._stop(pos, join_at_bytes=inline_max + 1, wait_newline=True)
                    return None
                text = buf[pos + 1 : newline]
                count = _SMALL_LENGTHS.get(text)
                if count is None:
                    count = _length(text)
                    if count is None:
                        raise ProtocolError(_INVALID_MBULK)
                if count > self._args_limit:
                    raise ProtocolError(
                        _INVALID_MBULK if count > self._args_max else _UNAUTHENTICATED_MBULK
                    )
                start = pos
                pos = newline + 2
                if count > 0:
                    break
            left = count
            args = []
            bulk = -1

        bulk_max = self._bulk_limit
        lengths = _SMALL_BULK_LENGTHS
        find = buf.find
        append = args.append
        while left:
            if bulk < 0:
                newline = find(b"\r\n", pos)
                # A hit is a "$" and a valid length at once (the usual case).
                bulk = lengths.get(buf[pos:newline], -1) if newline >= 0 else -1
                if bulk < 0:
                    if pos >= end:
                        break
                    if buf[pos] != 0x24:  # '$', checked as soon as it arrives
                        raise _expected_dollar(buf[pos])
                    if newline < 0:
                        if end - pos > inline_max:
                            raise ProtocolError(_TOO_BIG_BULK_COUNT)
                        break
                    length = _length(buf[pos + 1 : newline])
                    if length is None or length < 0:
                        raise ProtocolError(_INVALID_BULK)
                    bulk = length
                if bulk > bulk_max:
                    raise ProtocolError(
                        _INVALID_BULK if bulk > self._bulk_bytes_max else _UNAUTHENTICATED_BULK
                    )
                pos = newline + 2
            stop = pos + bulk
            if stop + 2 > end:
                break
            if buf[stop] != 0x0D or buf[stop + 1] != 0x0A:
                raise ProtocolError(_MISSING_BULK_CRLF)
            append(buf[pos:stop])
            pos = stop + 2
            bulk = -1
            left -= 1

        if left:  # stopped short inside the command: save it
            self._args = args
            self._args_left = left
            self._bulk_bytes = bulk
            self._command_bytes = pos - start
            if bulk >= 0:
                self._stop(pos, join_at_bytes=bulk + 2)
            elif pos < end:  # inside a length line
                self._stop(pos, join_at_bytes=inline_max + 1, wait_newline=True)
            else:  # before a length line: its first byte may already be wrong
                self._stop(pos)
            return None
        self._offset = pos
        return args


# ----------------------------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True)
class Verbatim:
    """Text meant for humans (``INFO``): RESP3 verbatim string, RESP2 bulk string.

    ``format`` is three characters: ``"txt"`` or ``"mkd"``.
    """

    text: bytes
    format: str = "txt"


@dataclass(frozen=True, slots=True)
class Push:
    """Out-of-band data (pub/sub messages): RESP3 push, RESP2 array."""

    items: Sequence[Reply]


@dataclass(frozen=True, slots=True)
class Replies:
    """Several replies to one command, encoded one after another (not as an array)."""

    items: Sequence[Reply]


@dataclass(frozen=True, slots=True)
class NullArray:
    """The null array (``*-1``; RESP3 null): a timed-out ``BLPOP``, an aborted ``EXEC``."""


NULL_ARRAY: Final = NullArray()

Reply: TypeAlias = (
    "SimpleString | Error | Verbatim | Push | Replies | NullArray | bytes | bytearray | memoryview"
    " | int | float | Sequence[Reply] | Mapping[Any, Reply] | AbstractSet[Any] | None"
)

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_CRLF: Final = b"\r\n"
# Large bulk strings go to the output by reference instead of through a format.
_COPY_BYTES_MAX: Final = 4096


def encode(reply: Reply, protocol: int = 2) -> bytes:
    """``reply`` as RESP bytes, for a client speaking ``protocol`` 2 or 3.

    ``TypeError`` for a type outside the reply model (``str`` included: a bulk
    string is ``bytes``), ``ValueError`` for a value RESP cannot carry (an int
    outside 64 bits, a ``SimpleString`` with a line break) or a bad protocol.
    """
    if protocol not in (2, 3):
        raise ValueError(f"RESP protocol must be 2 or 3, got {protocol!r}")
    # Fast paths for the replies of nearly every command: one format, no list.
    if type(reply) is bytes:
        if len(reply) <= _COPY_BYTES_MAX:
            return b"$%d\r\n%b\r\n" % (len(reply), reply)
    elif type(reply) is SimpleString:
        text = reply.text
        if "\r" not in text and "\n" not in text:
            return b"+%b\r\n" % text.encode("utf-8", "replace")
    elif reply is None:
        return b"_\r\n" if protocol == 3 else b"$-1\r\n"
    elif type(reply) is int and _INT64_MIN <= reply <= _INT64_MAX:
        return b":%d\r\n" % reply
    out: list[bytes | bytearray | memoryview] = []
    _encode_into(reply, protocol == 3, out)
    return b"".join(out)


def _format_double(value: float) -> bytes:
    """A double as Redis prints one: shortest round-trip digits, integers without ``.0``."""
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if value.is_integer() and abs(value) < 1e17:
        return b"%d" % value if value or math.copysign(1.0, value) > 0 else b"-0"
    return repr(value).encode()


def _encode_into(  # noqa: C901 - one branch per reply type, the hot path, inlined
    reply: Reply, resp3: bool, out: list[bytes | bytearray | memoryview]
) -> None:
    kind = type(reply)
    if kind is bytes or kind is bytearray or kind is memoryview:
        assert isinstance(reply, bytes | bytearray | memoryview)
        size = reply.nbytes if isinstance(reply, memoryview) else len(reply)
        if size <= _COPY_BYTES_MAX:
            out.append(b"$%d\r\n%b\r\n" % (size, bytes(reply)))
        else:
            out += (b"$%d\r\n" % size, reply, _CRLF)
    elif kind is SimpleString:
        assert isinstance(reply, SimpleString)
        if "\r" in reply.text or "\n" in reply.text:
            raise ValueError(f"a simple string has no line break: {reply.text!r}")
        out.append(b"+%b\r\n" % reply.text.encode("utf-8", "replace"))
    elif kind is int:
        assert isinstance(reply, int)
        if not _INT64_MIN <= reply <= _INT64_MAX:
            raise ValueError(f"a RESP integer has 64 bits, got {reply}")
        out.append(b":%d\r\n" % reply)
    elif reply is None:
        out.append(b"_\r\n" if resp3 else b"$-1\r\n")
    elif kind is list or kind is tuple:
        assert isinstance(reply, list | tuple)
        out.append(b"*%d\r\n" % len(reply))
        for item in reply:
            _encode_into(item, resp3, out)
    elif kind is Error:
        assert isinstance(reply, Error)
        # Redis sends line breaks of an error as spaces: the reply stays one
        # line even when it quotes a client's argument.
        line = reply.text.replace("\r", " ").replace("\n", " ")
        out.append(b"-%b\r\n" % line.encode("utf-8", "replace"))
    elif kind is bool:
        if resp3:
            out.append(b"#t\r\n" if reply else b"#f\r\n")
        else:
            out.append(b":1\r\n" if reply else b":0\r\n")
    elif kind is float:
        assert isinstance(reply, float)
        text = _format_double(reply)
        out.append(b",%b\r\n" % text if resp3 else b"$%d\r\n%b\r\n" % (len(text), text))
    elif kind is dict:
        assert isinstance(reply, dict)
        _encode_map(reply, resp3, out)
    elif kind is set or kind is frozenset:
        assert isinstance(reply, set | frozenset)
        _encode_set(reply, resp3, out)
    elif kind is NullArray:
        out.append(b"_\r\n" if resp3 else b"*-1\r\n")
    elif kind is Verbatim:
        assert isinstance(reply, Verbatim)
        if len(reply.format) != 3 or not reply.format.isascii():
            raise ValueError(f"a verbatim format is three ASCII characters: {reply.format!r}")
        if resp3:
            out += (b"=%d\r\n%b:" % (len(reply.text) + 4, reply.format.encode()), reply.text, _CRLF)
        else:
            out += (b"$%d\r\n" % len(reply.text), reply.text, _CRLF)
    elif kind is Push:
        assert isinstance(reply, Push)
        out.append(b">%d\r\n" % len(reply.items) if resp3 else b"*%d\r\n" % len(reply.items))
        for item in reply.items:
            _encode_into(item, resp3, out)
    elif kind is Replies:
        assert isinstance(reply, Replies)
        for item in reply.items:
            _encode_into(item, resp3, out)
    # Subclasses and other containers: as their base type (an IntEnum as an int).
    elif isinstance(reply, int):
        _encode_into(int(reply), resp3, out)
    elif isinstance(reply, float):
        _encode_into(float(reply), resp3, out)
    elif isinstance(reply, bytes | bytearray):
        _encode_into(bytes(reply), resp3, out)
    elif isinstance(reply, Mapping):
        _encode_map(reply, resp3, out)
    elif isinstance(reply, AbstractSet):
        _encode_set(reply, resp3, out)
    elif isinstance(reply, Sequence) and not isinstance(reply, str):
        _encode_into(list(reply), resp3, out)
    else:
        hint = " (a bulk string is bytes)" if isinstance(reply, str) else ""
        raise TypeError(f"cannot encode {kind.__name__} as a RESP reply{hint}")


def _encode_map(
    reply: Mapping[Any, Reply], resp3: bool, out: list[bytes | bytearray | memoryview]
) -> None:
    out.append(b"%%%d\r\n" % len(reply) if resp3 else b"*%d\r\n" % (2 * len(reply)))
    for key, value in reply.items():
        _encode_into(key, resp3, out)
        _encode_into(value, resp3, out)


def _encode_set(
    reply: AbstractSet[Any], resp3: bool, out: list[bytes | bytearray | memoryview]
) -> None:
    out.append(b"~%d\r\n" % len(reply) if resp3 else b"*%d\r\n" % len(reply))
    for item in reply:
        _encode_into(item, resp3, out)
