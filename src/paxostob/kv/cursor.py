"""``SCAN``-style iteration: the options, and pages whose cursor is a hash.

A cursor is "the next 64-bit BLAKE2b hash to visit": elements are visited in
hash order, so an iteration terminates and returns every element present for
all of it, whatever changes interleave (an element may come back twice, as
in Redis). ``HSCAN``, ``SSCAN`` and ``ZSCAN`` of a small aggregate (at most
``SMALL_AGGREGATE_MAX`` elements, Redis' listpack bound) reply every element
at once with cursor 0, as Redis does for its compact encodings.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from .keyspace import SCAN_COUNT_DEFAULT, SYNTAX, Failed, parse_int, scan_hash
from .pattern import Pattern, compile_pattern

__all__ = ["SMALL_AGGREGATE_MAX", "ScanOptions", "page", "parse_scan_options"]

#: Redis' hash-max-listpack-entries and zset-max-listpack-entries defaults.
SMALL_AGGREGATE_MAX = 128


class ScanOptions:
    __slots__ = ("count", "pattern", "type_name")

    def __init__(self, count: int, pattern: Pattern | None, type_name: bytes | None) -> None:
        self.count = count
        self.pattern = pattern
        self.type_name = type_name

    def matches(self, item: bytes) -> bool:
        return self.pattern is None or self.pattern.matches(item)


def parse_scan_options(args: tuple[bytes, ...], start: int, *, allow_type: bool) -> ScanOptions:
    """COUNT, MATCH (and, for SCAN, TYPE) as Redis' ``scanGenericCommand`` parses them."""
    count = SCAN_COUNT_DEFAULT
    match: bytes | None = None
    type_name: bytes | None = None
    i = start
    while i < len(args):
        option = args[i].lower()
        if option == b"count" and len(args) - i >= 2:
            count = parse_int(args[i + 1])
            if count < 1:
                raise Failed(SYNTAX)
        elif option == b"match" and len(args) - i >= 2:
            match = None if args[i + 1] == b"*" else args[i + 1]
        elif option == b"type" and allow_type and len(args) - i >= 2:
            type_name = args[i + 1].lower()
        else:
            raise Failed(SYNTAX)
        i += 2
    return ScanOptions(count, None if match is None else compile_pattern(match), type_name)


def page(order: list[tuple[int, bytes]], cursor: int, count: int) -> tuple[int, list[bytes]]:
    """The next cursor and up to about ``count`` elements of ``order`` (sorted by hash) from it."""
    start = bisect_left(order, (cursor, b""))
    stop = min(start + count, len(order))
    # Never split elements of one hash across calls: the cursor is a hash.
    while start < stop < len(order) and order[stop][0] == order[stop - 1][0]:
        stop += 1
    next_cursor = 0 if stop >= len(order) else order[stop - 1][0] + 1
    return next_cursor, [item for _, item in order[start:stop]]


def hash_order(items: Iterable[bytes]) -> list[tuple[int, bytes]]:
    return sorted((scan_hash(item), item) for item in items)
