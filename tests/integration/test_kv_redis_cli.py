"""The real ``redis-cli`` and ``redis-benchmark`` against a 3-process cluster.

They are Redis's own tools (Debian's redis-tools; CI installs them), run as
subprocesses exactly as a user would type them. A test is skipped, with the
reason, where the binary is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from ..tools import missing_tool, need
from .cluster import Cluster, Node
from .kv_client import running_kv_cluster, sync_client

REDIS_CLI = shutil.which("redis-cli")
REDIS_BENCHMARK = shutil.which("redis-benchmark")


@pytest.fixture
def needs_cli() -> None:
    need("redis-cli", "redis-tools")


@pytest.fixture
def needs_benchmark() -> None:
    need("redis-benchmark", "redis-tools")


#: Bounds a hung tool; a healthy run takes well under a second (the benchmark a few).
CLI_TIMEOUT_S = 60.0
BENCHMARK_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if REDIS_CLI is None and REDIS_BENCHMARK is None:
        missing_tool(
            "redis-cli and redis-benchmark are not installed (apt-get install redis-tools)"
        )
    with running_kv_cluster(tmp_path_factory.mktemp("kv-redis-cli")) as c:
        yield c


def cli(node: Node, *args: str, stdin: bytes | None = None) -> bytes:
    """``redis-cli -p PORT args...``: its stdout; it must exit 0 and print nothing on stderr."""
    assert REDIS_CLI is not None
    done = subprocess.run(
        [REDIS_CLI, "-p", str(node.resp_port), *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr, (done.returncode, done.stdout, done.stderr)
    return done.stdout


@pytest.mark.usefixtures("needs_cli")
def test_set_with_redis_cli_on_one_node_get_on_another(cluster: Cluster) -> None:
    one, two, three = cluster.nodes["1"], cluster.nodes["2"], cluster.nodes["3"]
    assert cli(one, "SET", "cli:k", "hello world") == b"OK\n"
    assert cli(two, "GET", "cli:k") == b"hello world\n"
    assert cli(three, "APPEND", "cli:k", "!") == b"12\n"
    assert cli(one, "GET", "cli:k") == b"hello world!\n"
    assert cli(two, "INCR", "cli:n") == b"1\n"
    assert cli(three, "INCRBY", "cli:n", "41") == b"42\n"
    assert cli(one, "MGET", "cli:n", "cli:missing") == b"42\n\n"
    assert cli(two, "GET", "cli:missing") == b"\n"
    assert cli(three, "-3", "GET", "cli:n") == b"42\n", "RESP3 (HELLO 3)"
    assert cli(one, "NOSUCHCOMMAND", "x") == (
        b"ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'x' \n\n"
    )


@pytest.mark.usefixtures("needs_cli")
def test_redis_cli_info_paxos(cluster: Cluster) -> None:
    leaders = set()
    for node in cluster.nodes.values():
        text = cli(node, "INFO", "paxos").decode()
        assert text.startswith("# Paxos\r\n") and text.endswith("\r\n"), text
        fields = dict(line.split(":", 1) for line in text.split("\r\n")[1:] if line)
        assert fields["node_id"] == node.node_id
        assert fields["role"] in ("leader", "follower")
        assert int(fields["chosen_slot"]) >= int(fields["applied_slot"]) >= 1
        assert fields["ballot"].count(".") == 1
        leaders.add(fields["leader_id"])
    assert len(leaders) == 1 and leaders <= set(cluster.nodes)


@pytest.mark.usefixtures("needs_cli")
def test_redis_cli_pipe_mode(cluster: Cluster) -> None:
    """``redis-cli --pipe`` sends raw RESP from stdin and counts the replies."""
    n = 300
    commands: list[tuple[bytes, ...]] = [
        (b"SET", b"pipe:%d" % k, b"value-%d" % k) for k in range(n)
    ]
    commands += [(b"INCR", b"pipe:count")] * 20
    stdin = b"".join(
        b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in c) for c in commands
    )
    out = cli(cluster.nodes["2"], "--pipe", stdin=stdin).decode()
    assert f"errors: 0, replies: {len(commands)}" in out, out
    with sync_client(cluster.nodes["3"]) as c:
        values = c.mget([b"pipe:%d" % k for k in range(n)])
        assert values == [b"value-%d" % k for k in range(n)]
        assert c.get("pipe:count") == b"20"


@pytest.mark.usefixtures("needs_benchmark")
def test_redis_benchmark_set_get(cluster: Cluster) -> None:
    assert REDIS_BENCHMARK is not None
    node = cluster.nodes["1"]
    args = ["-p", str(node.resp_port), "-t", "set,get", "-n", "2000", "-c", "10", "-q"]
    done = subprocess.run(
        [REDIS_BENCHMARK, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=BENCHMARK_TIMEOUT_S,
        check=False,
    )
    # -q rewrites a progress line with \r; the last text on each line is the result.
    results = [line.rsplit("\r", 1)[-1] for line in done.stdout.decode().splitlines()]
    summary = [r for r in results if "requests per second" in r]
    print("\n".join(summary))  # shown with pytest -s (no timing is asserted)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr)
    assert [r.split(":", 1)[0] for r in summary] == ["SET", "GET"], results
    with sync_client(node) as c:
        value = c.get("key:__rand_int__")  # the benchmark's key: its SETs were applied
        assert isinstance(value, bytes) and len(value) == 3, value  # -d 3, the default
