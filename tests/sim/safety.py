"""The checker properties that are safety: a planted bug counts as caught only by one of these."""

from __future__ import annotations

#: Failures of safety properties (a liveness failure does not count as caught).
SAFETY = frozenset(
    {
        "agreement",
        "chosen value",
        "total order",
        "log order",
        "replay",
        "snapshot state",
        "durability",
        "durable quorum",
        "integrity",
    }
)
