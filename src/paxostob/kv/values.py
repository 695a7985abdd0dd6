"""The value types of the key space and the shared parsing of their arguments.

A key holds ``bytes`` (a string) or one of the aggregate types below. Every
aggregate is mutated only through ``Keyspace.writable``, which copies it
first when a snapshot still holds it (copy-on-write, by generation): a
snapshot copies the key dictionary only, in O(keys), and the machine goes on
applying entries while the copy is encoded.

Iteration orders are part of the state and never depend on Python's
per-process hash seed: a hash keeps its fields in insertion order (a ``dict``,
as Redis' small-hash listpack does), a set its members in an array with an
index (insertion order, a removal moves the last member into the hole), a
sorted set its members by (score, member). The snapshot writes these orders,
so a restored replica replies exactly as the one that wrote it.

Sorted set: a ``dict`` member -> score and a Python ``list`` of (score,
member) kept sorted with ``bisect``. Range queries by rank, score or lex are
a bisect and a slice, O(log n + k), and ranks are list indexes, O(log n).
Insertion and removal shift the list's tail: O(n), but a ``memmove`` of
pointers (about 0.1 ms per 100,000 members), which in CPython beats a skip
list, whose every step is interpreted bytecode and whose rank needs spans
kept up to date on each level (measured by ``bench/kv_types_memory.py``).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right, insort
from collections import deque
from fractions import Fraction

from .replies import Error
from .stream_value import StreamValue

__all__ = [
    "HashValue",
    "ListValue",
    "SetValue",
    "StreamValue",
    "ZSetValue",
    "format_double",
    "format_long_double",
    "parse_double",
    "parse_long_double",
]

NOT_FLOAT = Error("ERR value is not a valid float")


class HashValue(dict[bytes, bytes]):
    """A hash: field -> value, in insertion order."""

    __slots__ = ("gen",)

    def __init__(self, gen: int) -> None:
        super().__init__()
        self.gen = gen

    def clone(self, gen: int) -> HashValue:
        copy = HashValue(gen)
        copy.update(self)
        return copy


class ListValue(deque[bytes]):
    """A list: a deque, so pushes and pops at both ends are O(1)."""

    __slots__ = ("gen",)

    def __init__(self, gen: int) -> None:
        super().__init__()
        self.gen = gen

    def clone(self, gen: int) -> ListValue:
        copy = ListValue(gen)
        copy.extend(self)
        return copy


class SetValue:
    """A set: members in an array (for a random pick in O(1)) and their indexes."""

    __slots__ = ("gen", "index", "members")

    def __init__(self, gen: int) -> None:
        self.gen = gen
        self.members: list[bytes] = []
        self.index: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self.members)

    def __contains__(self, member: bytes) -> bool:
        return member in self.index

    def add(self, member: bytes) -> bool:
        if member in self.index:
            return False
        self.index[member] = len(self.members)
        self.members.append(member)
        return True

    def discard(self, member: bytes) -> bool:
        at = self.index.pop(member, None)
        if at is None:
            return False
        last = self.members.pop()
        if at < len(self.members):
            self.members[at] = last
            self.index[last] = at
        return True

    def clone(self, gen: int) -> SetValue:
        copy = SetValue(gen)
        copy.members = self.members.copy()
        copy.index = self.index.copy()
        return copy


class ZSetValue:
    """A sorted set: member -> score, and (score, member) pairs kept sorted."""

    __slots__ = ("gen", "order", "scores")

    def __init__(self, gen: int) -> None:
        self.gen = gen
        self.scores: dict[bytes, float] = {}
        self.order: list[tuple[float, bytes]] = []

    def __len__(self) -> int:
        return len(self.scores)

    def add(self, member: bytes, score: float) -> None:
        """Insert ``member`` or move it to ``score``.

        A score of -0 is stored as 0, as Redis' compact encoding (which
        prints scores into its listpack) does.
        """
        score += 0.0  # -0.0 + 0.0 is 0.0
        old = self.scores.get(member)
        if old is not None:
            if old == score:
                return
            del self.order[bisect_left(self.order, (old, member))]
        self.scores[member] = score
        insort(self.order, (score, member))

    def discard(self, member: bytes) -> bool:
        old = self.scores.pop(member, None)
        if old is None:
            return False
        del self.order[bisect_left(self.order, (old, member))]
        return True

    def rank(self, member: bytes) -> int | None:
        score = self.scores.get(member)
        return None if score is None else bisect_left(self.order, (score, member))

    def score_range(self, low: float, low_ex: bool, high: float, high_ex: bool) -> range:
        """The ranks of the members with a score in the range."""
        order = self.order
        start = (
            bisect_right(order, low, key=_score) if low_ex else bisect_left(order, low, key=_score)
        )
        stop = (
            bisect_left(order, high, key=_score)
            if high_ex
            else bisect_right(order, high, key=_score)
        )
        return range(start, max(start, stop))

    def clone(self, gen: int) -> ZSetValue:
        copy = ZSetValue(gen)
        copy.scores = self.scores.copy()
        copy.order = self.order.copy()
        return copy


def _score(pair: tuple[float, bytes]) -> float:
    return pair[0]


#: A value of the key space.
Value = bytes | HashValue | ListValue | SetValue | ZSetValue | StreamValue
Aggregate = HashValue | ListValue | SetValue | ZSetValue

# --- doubles, as Redis parses and prints them ----------------------------------------------

# What C's strtod/strtold accept (decimal, hexadecimal, inf, nan), after optional spaces.
_C_FLOAT = re.compile(
    rb"[ \t\n\v\f\r]*([+-]?)(?:"
    rb"(0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
    rb"|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    rb"|(inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?))",
    re.IGNORECASE,
)
_DOUBLE_MAX = Fraction(2**1024 - 2**971)


def strtod_prefix(raw: bytes) -> tuple[Fraction | float, int]:
    """The exact value C's ``strto(l)d`` reads at the start of ``raw``, and the bytes it used.

    Infinities, NaN and a negative zero are floats; a number is its exact
    value (not rounded yet). Nothing parsed: ``(0, 0)``.
    """
    found = _C_FLOAT.match(raw)
    if found is None:
        return Fraction(0), 0
    sign, hexa, decimal, word = found.groups()
    negative = sign == b"-"
    if word is not None:
        value = math.nan if word[:1].lower() == b"n" else -math.inf if negative else math.inf
        return value, found.end()
    if hexa is not None:
        mantissa, _, exponent = hexa[2:].lower().partition(b"p")
        whole, _, part = mantissa.partition(b".")
        digits = int((whole + part) or b"0", 16)
        exact = Fraction(digits) * Fraction(2) ** (int(exponent or b"0") - 4 * len(part))
    else:
        exact = Fraction(decimal.decode("ascii"))
    if negative and exact == 0:
        return -0.0, found.end()
    return (-exact if negative else exact), found.end()


def _round_binary(exact: Fraction, mantissa_bits: int, min_exponent: int) -> Fraction:
    """``exact`` rounded to the nearest binary float (ties to even); no overflow check."""
    if exact == 0:
        return exact
    negative = exact < 0
    magnitude = -exact if negative else exact
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exponent > magnitude:
        exponent -= 1
    exponent = max(exponent, min_exponent) - (mantissa_bits - 1)
    scaled = magnitude / Fraction(2) ** exponent
    rounded = round(scaled)  # Fraction rounds half to even
    result = Fraction(rounded) * Fraction(2) ** exponent
    return -result if negative else result


def parse_double(raw: bytes) -> float | None:
    """A score as Redis' ``getDoubleFromObject`` reads it; ``None`` if it is not one."""
    if not raw or raw[:1].isspace():
        return None
    value, used = strtod_prefix(raw)
    if used != len(raw):
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    try:
        result = float(value)  # correctly rounded, as glibc's strtod
    except OverflowError:
        return None  # ERANGE with HUGE_VAL
    if math.isinf(result) or (result == 0 and value != 0):
        return None  # ERANGE: overflow or underflow to zero
    return result


def parse_range_double(raw: bytes) -> float | None:
    """A ZRANGEBYSCORE bound (after any ``(``) as ``zslParseRange`` reads it (C's strtod)."""
    value, used = strtod_prefix(raw)
    if used != len(raw) and raw[used : used + 1] != b"\0":
        return None
    if isinstance(value, float):
        return None if math.isnan(value) else value
    try:
        return float(value)
    except OverflowError:
        return -math.inf if value < 0 else math.inf


def format_double(value: float) -> bytes:
    """A score as Redis 7.0 replies it (``%.17g``; ``inf`` and ``-inf``)."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return b"%.17g" % value


# x87 80-bit extended precision, the ``long double`` of INCRBYFLOAT on x86-64 Linux.
_LD_MANTISSA_BITS = 64
_LD_MIN_EXPONENT = -16382
_LD_MAX = Fraction(2**16384 - 2**16320)
_LD_CHARS_MAX = 5 * 1024  # MAX_LONG_DOUBLE_CHARS


def parse_long_double(raw: bytes) -> Fraction | float | None:
    """A value as Redis' ``string2ld`` reads it (exact, in long double precision).

    ``inf`` and ``-inf`` are floats (no sum with them is finite); NaN, like
    anything unparsable, is ``None``.
    """
    if not raw or len(raw) >= _LD_CHARS_MAX or raw[:1].isspace():
        return None
    value, used = strtod_prefix(raw)
    if used != len(raw):
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return value if math.isinf(value) else Fraction(0)  # -0: ld2string prints 0 anyway
    rounded = _round_binary(value, _LD_MANTISSA_BITS, _LD_MIN_EXPONENT)
    if abs(rounded) > _LD_MAX or (rounded == 0 and value != 0):
        return None  # ERANGE
    return rounded


def add_long_double(a: Fraction | float, b: Fraction | float) -> Fraction | None:
    """``a + b`` rounded to long double; ``None`` when it is infinite or NaN."""
    if isinstance(a, float) or isinstance(b, float):
        return None
    total = _round_binary(a + b, _LD_MANTISSA_BITS, _LD_MIN_EXPONENT)
    return None if abs(total) > _LD_MAX else total


def format_long_double(value: Fraction) -> bytes:
    """``ld2string(LD_STR_HUMAN)``: ``%.17Lf``, trailing zeros and point removed, no ``-0``."""
    scaled = value * 10**17
    rounded = round(scaled)  # glibc prints the exact value rounded half to even
    negative = rounded < 0 or (rounded == 0 and value < 0)
    digits = str(abs(rounded)).rjust(18, "0")
    whole, part = digits[:-17], digits[-17:].rstrip("0")
    out = whole + ("." + part if part else "")
    if negative and out != "0":
        out = "-" + out
    return out.encode("ascii")
