"""kv.pattern: Redis globs, checked against the documentation and a line-by-line port of the C.

``stringmatchlen`` below is Redis 7.0's ``util.c`` transcribed (recursive,
reading the terminating NUL where the C does); the compiled matcher must
agree with it on every pattern and key. The differential tests check both
against a real redis-server.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxostob.kv.pattern import compile_pattern, pattern_matches


def stringmatchlen(pattern: bytes, string: bytes) -> bool:  # noqa: C901 - Redis C, transcribed
    """Redis' matcher, transcribed (with its skipLongerMatches shortcut)."""
    skip = [False]

    def at(s: bytes, i: int) -> int:
        return s[i] if i < len(s) else 0  # C strings end with NUL

    def signed(c: int) -> int:
        return c - 256 if c >= 128 else c

    def impl(p: int, s: int) -> bool:  # noqa: C901 - Redis C, line for line
        plen, slen = len(pattern) - p, len(string) - s
        while plen and slen:
            c = pattern[p]
            if c == ord("*"):
                while plen and at(pattern, p + 1) == ord("*"):
                    p += 1
                    plen -= 1
                if plen == 1:
                    return True
                while slen:
                    if impl(p + 1, s):
                        return True
                    if skip[0]:
                        return False
                    s += 1
                    slen -= 1
                skip[0] = True
                return False
            elif c == ord("?"):
                s += 1
                slen -= 1
            elif c == ord("["):
                p += 1
                plen -= 1
                negate = at(pattern, p) == ord("^")
                if negate:
                    p += 1
                    plen -= 1
                match = False
                while True:
                    if at(pattern, p) == ord("\\") and plen >= 2:
                        p += 1
                        plen -= 1
                        if pattern[p] == string[s]:
                            match = True
                    elif at(pattern, p) == ord("]"):
                        break
                    elif plen == 0:
                        p -= 1
                        plen += 1
                        break
                    elif plen >= 3 and pattern[p + 1] == ord("-"):
                        start, end = signed(pattern[p]), signed(pattern[p + 2])
                        start, end = min(start, end), max(start, end)
                        p += 2
                        plen -= 2
                        if start <= signed(string[s]) <= end:
                            match = True
                    elif pattern[p] == string[s]:
                        match = True
                    p += 1
                    plen -= 1
                if negate:
                    match = not match
                if not match:
                    return False
                s += 1
                slen -= 1
            else:
                if c == ord("\\") and plen >= 2:
                    p += 1
                    plen -= 1
                if pattern[p] != string[s]:
                    return False
                s += 1
                slen -= 1
            p += 1
            plen -= 1
            if slen == 0:
                while at(pattern, p) == ord("*"):
                    p += 1
                    plen -= 1
                break
        return plen == 0 and slen == 0

    return impl(0, 0)


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        (b"h?llo", [b"hello", b"hallo", b"hxllo"], [b"hllo", b"heello"]),
        (b"h*llo", [b"hllo", b"heeeello"], [b"hell"]),
        (b"h[ae]llo", [b"hello", b"hallo"], [b"hillo"]),
        (b"h[^e]llo", [b"hallo", b"hbllo"], [b"hello"]),
        (b"h[a-b]llo", [b"hallo", b"hbllo"], [b"hcllo"]),
        (b"h[b-a]llo", [b"hallo", b"hbllo"], [b"hcllo"]),  # reversed range
        (b"\\*", [b"*"], [b"a"]),
        (b"a\\", [b"a\\"], [b"a"]),  # a trailing backslash is literal
        (b"[abc", [b"a", b"c"], [b"[", b"ab"]),  # unterminated class runs to the end
        (b"[a-]", [b"a", b"]", b"_"], [b"b", b"-"]),  # the range ]..a
        (b"[\\]]", [b"]"], [b"\\"]),
        (b"[]a]", [], [b"]", b"a", b"]a]"]),  # an empty class matches nothing
        (b"[^", [b"x", b"^"], [b"", b"xy"]),
        (b"[", [], [b"[", b""]),
        (b"*", [b"a", b"abc"], [b""]),  # KEYS/SCAN special-case "*" for the empty key
        (b"", [b""], [b"a"]),
        (b"[\x80-a]", [b"\x00", b"a", b"\xff", b"\x80"], [b"b", b"\x7f"]),  # signed chars
        (b"*a*b*", [b"ab", b"xaxbx"], [b"ba"]),
    ],
)
def test_documented_and_quirky_cases(
    pattern: bytes, matches: list[bytes], misses: list[bytes]
) -> None:
    for key in matches:
        assert pattern_matches(pattern, key), (pattern, key)
        assert stringmatchlen(pattern, key)
    for key in misses:
        assert not pattern_matches(pattern, key), (pattern, key)
        assert not stringmatchlen(pattern, key)


# Single bytes plus pieces that make ranges (with high bytes) and negated classes likely.
PIECES = [bytes([c]) for c in b"ab-]\\[^*?\x00\x80\xe9"] + [
    b"[^",
    b"a-",
    b"-\x80",
    b"\xe9-b",
    b"[b-",
]
globs = st.lists(st.sampled_from(PIECES), max_size=6).map(b"".join)
keys = st.lists(st.sampled_from(list(b"ab-]\\[^*\x00\x7f\x80\xe9")), max_size=4).map(bytes)


@settings(max_examples=1000)
@given(globs, keys)
def test_agrees_with_the_transcribed_c(pattern: bytes, key: bytes) -> None:
    assert compile_pattern(pattern).matches(key) == stringmatchlen(pattern, key)


def test_hostile_patterns_are_fast_and_do_not_recurse() -> None:
    pattern = b"a*" * 5000 + b"b"
    assert not compile_pattern(pattern).matches(b"a" * 5000)


def test_every_byte_against_ranges_of_awkward_bounds() -> None:
    bounds = [0x00, 0x01, ord("a"), ord("]"), 0x7F, 0x80, 0xE9, 0xFF]
    for low in bounds:
        for high in bounds:
            for negate in (b"", b"^"):
                pattern = b"[" + negate + bytes([low]) + b"-" + bytes([high]) + b"]"
                compiled = compile_pattern(pattern)
                for byte in range(256):
                    key = bytes([byte])
                    assert compiled.matches(key) == stringmatchlen(pattern, key), (pattern, key)
