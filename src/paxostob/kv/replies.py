"""The replies of the key-value state machine, independent of any wire protocol.

A reply is one of:

- ``SimpleString(text)``: a status such as ``OK`` (``OK`` below) or a type name;
- ``Error(text)``: the whole message, code first, as Redis writes it after the
  ``-`` (``"ERR syntax error"``);
- ``int``: a 64-bit signed integer (never ``bool``);
- ``bytes``: a bulk string (a value or a key);
- ``None``: the null bulk string (a missing value);
- ``list``: an array of replies (``MGET``, ``KEYS``, ``SCAN``);
- ``dict``: a map of field to value (``HGETALL``): a RESP3 map, and in RESP2
  the flat array of fields and values, in the dict's order.

The RESP server maps these to RESP2/RESP3 frames; the state machine never
knows which protocol a client speaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = ["OK", "Error", "Reply", "SimpleString"]


@dataclass(frozen=True, slots=True)
class SimpleString:
    """A status reply: short text without CR or LF."""

    text: str


@dataclass(frozen=True, slots=True)
class Error:
    """An error reply: ``text`` starts with the error code (``ERR``, ``WRONGTYPE``, ...)."""

    text: str


#: The reply of a command that succeeded and has nothing else to say.
OK: Final = SimpleString("OK")

Reply: TypeAlias = "SimpleString | Error | int | bytes | list[Reply] | dict[bytes, Reply] | None"
