"""``paxostob serve`` fixes glibc's malloc thresholds: a freed large buffer goes back to the system.

Checked in a child process (mallopt is process-wide and cannot be undone):
after a first large mapped block is freed, glibc would serve the next large
buffer from the heap, and freeing it below a live small block would leave
the process's resident size where it was.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHILD = """
import sys
from paxostob.cli.serve import _bound_malloc

def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

if sys.argv[1] == "bound":
    _bound_malloc()
first = bytes(24 << 20)  # mapped on its own; freeing it raises glibc's dynamic threshold
del first
big = bytearray(12 << 20)  # touched: resident
pin = [bytearray(600) for _ in range(1000)]  # small blocks allocated after it, kept
with_big = rss_kib()
del big
print(with_big - rss_kib())
"""


def released_kib(mode: str) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env, check=True
    )
    return int(out.stdout)


def glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError, AttributeError):
        return False


@pytest.mark.skipif(not glibc(), reason="glibc only")
def test_a_freed_snapshot_sized_buffer_is_returned_to_the_system() -> None:
    assert released_kib("bound") > 10 << 10
    assert released_kib("default") < 2 << 10  # what the setting is for
