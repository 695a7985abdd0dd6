"""Redis glob patterns (``KEYS``, ``SCAN MATCH``), byte for byte as Redis matches them.

Theory of operation: Redis' ``stringmatchlen`` differs from ``fnmatch`` in
details that clients can see, so this module re-implements it:

- ``*`` any run of bytes, ``?`` one byte, ``\\x`` the byte ``x``;
- ``[abc]``, ``[^abc]``, ``[a-z]`` (reversed ranges like ``[z-a]`` work;
  ranges compare bytes as C's *signed* ``char``, so ``[a-\\xff]`` is the range
  ``-1..97``); ``\\`` escapes inside a class; a class missing its ``]`` runs to
  the end of the pattern; ``[a-]`` is the range ``a..]``;
- a ``\\`` at the very end is a literal backslash;
- the empty string matches only the empty pattern (even ``*`` does not match
  it: ``KEYS *`` and ``SCAN`` special-case the lone ``*`` before matching).

A pattern is first compiled into tokens that each consume exactly one byte
(or, for ``*``, any run), then matched iteratively with a single backtrack
point (the last ``*``): O(len(pattern) * len(key)) time, no recursion, so a
hostile pattern cannot exhaust the stack.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Pattern", "compile_pattern", "pattern_matches"]

_STAR = ord("*")
_ANY = ord("?")
_OPEN = ord("[")
_CLOSE = ord("]")
_NOT = ord("^")
_ESCAPE = ord("\\")
_DASH = ord("-")


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


@dataclass(frozen=True, slots=True)
class _Class:
    negate: bool
    members: frozenset[int]  # bytes
    ranges: tuple[tuple[int, int], ...]  # inclusive, as signed chars

    def matches(self, byte: int) -> bool:
        hit = byte in self.members
        if not hit:
            value = _signed(byte)
            hit = any(low <= value <= high for low, high in self.ranges)
        return hit != self.negate


_Token = int | _Class | None  # a literal byte, a class, or None for '?'


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled pattern: one token per byte it consumes, ``"*"`` for a run of stars."""

    source: bytes
    tokens: tuple[_Token | str, ...]  # "*" marks a star

    def matches(self, key: bytes) -> bool:
        """Whether ``key`` matches, exactly as Redis' ``stringmatchlen`` decides."""
        if not key:
            return not self.source
        tokens = self.tokens
        n = len(tokens)
        ti = ki = 0
        star_ti = -1
        star_ki = 0
        while ki < len(key):
            if ti < n:
                token = tokens[ti]
                if token == "*":
                    star_ti, star_ki = ti, ki
                    ti += 1
                    continue
                if (
                    token is None
                    or (isinstance(token, int) and token == key[ki])
                    or (isinstance(token, _Class) and token.matches(key[ki]))
                ):
                    ti += 1
                    ki += 1
                    continue
            if star_ti < 0:
                return False
            # Let the last star swallow one more byte and retry what follows it.
            star_ki += 1
            ti, ki = star_ti + 1, star_ki
        while ti < n and tokens[ti] == "*":
            ti += 1
        return ti == n


def compile_pattern(pattern: bytes) -> Pattern:
    """``pattern`` compiled; every byte string is a valid pattern."""
    tokens: list[_Token | str] = []
    n = len(pattern)
    p = 0
    while p < n:
        c = pattern[p]
        if c == _STAR:
            if not tokens or tokens[-1] != "*":
                tokens.append("*")
            p += 1
        elif c == _ANY:
            tokens.append(None)
            p += 1
        elif c == _OPEN:
            klass, p = _compile_class(pattern, p + 1)
            tokens.append(klass)
        else:
            if c == _ESCAPE and n - p >= 2:
                p += 1
            tokens.append(pattern[p])
            p += 1
    return Pattern(pattern, tuple(tokens))


def _compile_class(pattern: bytes, p: int) -> tuple[_Class, int]:
    """The class whose body starts at ``p`` (after ``[``) and the position after it.

    Follows the C code's steps, including its reads of the terminating NUL.
    """
    n = len(pattern)
    negate = p < n and pattern[p] == _NOT
    if negate:
        p += 1
    members: set[int] = set()
    ranges: list[tuple[int, int]] = []
    while True:
        left = n - p
        if left == 0:  # no closing bracket: the class ends with the pattern
            break
        c = pattern[p]
        if c == _ESCAPE and left >= 2:
            p += 1
            members.add(pattern[p])
        elif c == _CLOSE:
            p += 1
            break
        elif left >= 3 and pattern[p + 1] == _DASH:
            low, high = _signed(c), _signed(pattern[p + 2])
            ranges.append((min(low, high), max(low, high)))
            p += 2
        else:
            members.add(c)
        p += 1
    return _Class(negate, frozenset(members), tuple(ranges)), p


def pattern_matches(pattern: bytes, key: bytes) -> bool:
    """Whether ``key`` matches the Redis glob ``pattern`` (compile once for many keys)."""
    return compile_pattern(pattern).matches(key)
