"""A real node process whose clock is two days ahead (libfaketime) must expire no key.

Three ``paxostob serve`` processes on 127.0.0.1; node 3 runs with
libfaketime preloaded (``FAKETIME=+2d``: its wall clock reads two days
ahead) and joins once nodes 1 and 2 have a leader, so it follows. Keys with a
TTL are set through node 1; then a SET and a GET go through node 3. Before
the leader decided the log's clock, that one SET (or even the GET's barrier
entry) carried node 3's time into the log and expired every key on every
node. Needs the Debian package ``faketime``: the test fails without it.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster, Node
from .kv_client import call, settle, status, sync_client

SKEW = "+2d"
TTL_S = 1000
KEYS = 5


def libfaketime() -> str:
    """The preload library of the ``faketime`` package (multi-threaded variant)."""
    found = sorted(
        glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
        + glob.glob("/usr/lib/faketime/libfaketimeMT.so.1")
    )
    if not found:
        pytest.fail("libfaketime is missing: this test needs `apt-get install faketime`")
    return found[0]


def skewed_env(lib: str) -> dict[str, str]:
    # Only the wall clock is skewed: timers and timeouts run as usual.
    return {"LD_PRELOAD": lib, "FAKETIME": SKEW, "DONT_FAKE_MONOTONIC": "1"}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def test_the_preload_really_moves_a_python_processes_clock_two_days() -> None:
    env = {**os.environ, **skewed_env(libfaketime())}
    out = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    ahead_s = float(out.stdout) - time.time()
    assert 2 * 86_400 - 60 < ahead_s < 2 * 86_400 + 60


def kv(node: Node, *args: object) -> object:
    with sync_client(node) as c:
        return call(c, *args)


def test_set_and_get_through_a_node_two_days_ahead_expire_no_key(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = libfaketime()
    n1, n2, n3 = (cluster.nodes[i] for i in "123")
    n1.start()
    n2.start()
    n1.wait_ready()
    n2.wait_ready()
    settle(cluster)  # nodes 1 and 2 agree on a leader before node 3 exists
    with monkeypatch.context() as env:
        for name, value in skewed_env(lib).items():
            env.setenv(name, value)
        n3.start()  # inherits the preload; nodes 1 and 2 do not
    n3.wait_ready()
    settle(cluster)
    for i in range(KEYS):
        assert kv(n1, "SET", f"ttl{i}", "v", "EX", TTL_S) is True
    # A write and a read through the skewed node (forwarded to the leader).
    assert kv(n3, "SET", "from-3", "x") is True
    assert kv(n3, "GET", "ttl0") == b"v"
    assert kv(n3, "SET", "from-3-with-ttl", "y", "EX", TTL_S) is True
    with sync_client(n3) as c:
        leader = status(c)[b"leader_id"]
    assert leader in (b"1", b"2"), f"node 3 led ({leader!r}): the test needs it to follow"
    for node in (n1, n2, n3):
        assert kv(node, "SET", f"sync-{node.node_id}", "1") is True  # applied there
        for i in range(KEYS):
            assert kv(node, "GET", f"ttl{i}") == b"v", (node.node_id, i)
            ttl = kv(node, "TTL", f"ttl{i}")
            assert isinstance(ttl, int) and TTL_S - 60 <= ttl <= TTL_S, (node.node_id, i, ttl)
        ttl = kv(node, "TTL", "from-3-with-ttl")
        assert isinstance(ttl, int) and TTL_S - 60 <= ttl <= TTL_S, (node.node_id, ttl)
        assert kv(node, "GET", "from-3") == b"x"
