"""Job functions for the RQ test: a worker process imports them by module path."""

from __future__ import annotations


def square(x: int) -> int:
    return x * x
