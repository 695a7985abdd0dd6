"""Client limits of a real ``paxostob serve`` process, over real sockets, checked against Redis 7.

Each node is a one-member cluster in its own process (``cluster.Cluster``),
so its memory is measured from outside: ``VmRSS`` (resident now) and
``VmHWM`` (the peak) of ``/proc/<pid>/status``. A refused length must not
make the node read what it announced: before these limits, one ``SET`` of
200 MiB took a node from 83 to 679 MiB resident.

Error texts are compared with a real ``redis-server`` 7 configured the same
way; the tests that do so fail when it is not installed (CI installs it:
``apt-get install redis-server``). Every wait is bounded: a socket timeout or
an event, never a sleep.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ..kv.real_redis import RedisUnavailable, redis_server
from .cluster import LOGGED, Cluster, Node

WAIT_S = 15.0
MIB = 1 << 20
#: The largest entry of the node's log (``LogConfig.batch_bytes_max``), hence
#: its default ``proto-max-bulk-len``.
ENTRY_BYTES = 1 * MIB
#: Memory a refused request may cost the node: a few MiB (a read's buffers,
#: the allocator's slack), far below what the request announced.
GROWTH_MAX_KIB = 8 * 1024

MAXCLIENTS_REPLY = b"-ERR max number of clients reached\r\n"
INVALID_BULK = b"-ERR Protocol error: invalid bulk length\r\n"
UNAUTH_MBULK = b"-ERR Protocol error: unauthenticated multibulk length\r\n"
UNAUTH_BULK = b"-ERR Protocol error: unauthenticated bulk length\r\n"
BUFFER_FULL = b"-ERR Protocol error: query buffer limit exceeded\r\n"


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class Memory:
    """The node's resident and peak memory at creation, and their growth since."""

    def __init__(self, node: Node) -> None:
        assert node.proc is not None
        self.pid = node.proc.pid
        self.rss = status_kib(self.pid, "VmRSS")
        self.hwm = status_kib(self.pid, "VmHWM")

    def growth_kib(self) -> tuple[int, int]:
        return status_kib(self.pid, "VmRSS") - self.rss, status_kib(self.pid, "VmHWM") - self.hwm


def raw(node: Node) -> socket.socket:
    return raw_redis(node.resp_port)


def raw_redis(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything the node sends until it closes the connection (bounded by the socket timeout)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return data + b"<no EOF within the timeout>"
    except ConnectionResetError:
        return data + b"<reset>"
    return data


def read_reply(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def stream(sock: socket.socket, total: int) -> int:
    """Send up to ``total`` bytes in 1 MiB chunks until the node stops taking them."""
    chunk = b"x" * MIB
    sent = 0
    try:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


def serve_command(node: Node) -> list[str]:
    """``paxostob serve`` for ``node``, to start with limits of our own (``preexec_fn``)."""
    return [
        sys.executable, "-m", "paxostob", "serve", "--id", node.node_id,
        "--members", node.members, "--data-dir", str(node.data_dir),
        "--secret-file", str(node.secret_file), "--resp-port", str(node.resp_port),
        "--bootstrap",
    ]  # fmt: skip


def start_node(tmp: Path, *flags: str) -> Iterator[Node]:
    cluster = Cluster(tmp, n=1, extra_args=flags)  # the first start makes the store
    cluster.start()
    try:
        yield cluster.nodes["1"]
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """Default bulk bound (the log's entry), a small query buffer bound."""
    yield from start_node(
        tmp_path_factory.mktemp("limits"), "--client-query-buffer-limit", str(4 * MIB)
    )


@pytest.fixture(scope="module")
def auth_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    yield from start_node(tmp_path_factory.mktemp("auth"), "--requirepass", "pw")


def real_redis(directory: Path, *args: str) -> Iterator[int]:
    directory.mkdir(exist_ok=True)
    try:
        with redis_server(directory, args) as port:
            yield port
    except RedisUnavailable as e:
        pytest.fail(f"these tests compare with a real Redis 7: {e}")


@pytest.fixture(scope="module")
def redis_7(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real redis-server configured as the nodes are: a password, a 1 MiB bulk bound."""
    yield from real_redis(
        tmp_path_factory.mktemp("redis"), "--requirepass", "pw", "--proto-max-bulk-len", "1mb"
    )


def redis_says(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
        sock.sendall(request)
        return read_to_eof(sock)


# ---------------------------------------------------------------------------- maxclients


def test_the_client_beyond_maxclients_is_refused_as_redis_does_and_the_node_serves_on(
    tmp_path: Path,
) -> None:
    for node in start_node(tmp_path, "--maxclients", "3"):
        clients = [raw(node) for _ in range(3)]
        for c in clients:  # each admitted (and counted) before the next comes
            c.sendall(b"PING\r\n")
            assert read_reply(c, 7) == b"+PONG\r\n"
        extra = raw(node)
        assert read_to_eof(extra) == MAXCLIENTS_REPLY
        clients[0].sendall(b"SET k v\r\nGET k\r\n")
        assert read_reply(clients[0], 12) == b"+OK\r\n$1\r\nv\r\n"
        clients[1].sendall(b"QUIT\r\n")
        assert read_to_eof(clients[1]) == b"+OK\r\n"
        with redis.Redis(port=node.resp_port, socket_timeout=WAIT_S) as r:
            assert r.get("k") == b"v"  # the slot QUIT freed
        for c in clients:
            c.close()
    # Redis 7 with maxclients 1: the same words for the one beyond.
    for port in real_redis(tmp_path / "redis", "--maxclients", "1"):
        with raw_redis(port) as first:
            first.sendall(b"PING\r\n")
            assert read_reply(first, 7) == b"+PONG\r\n"
            assert redis_says(port, b"") == MAXCLIENTS_REPLY


def test_maxclients_follows_the_open_files_limit_which_the_node_raises(tmp_path: Path) -> None:
    """No --maxclients, RLIMIT_NOFILE 200 soft / 400 hard: the node raises the soft limit to
    400 and serves 400 - 64 (kept for storage; no peers) = 336 clients, and refuses the 337th."""
    soft, hard = 200, 400
    cluster = Cluster(tmp_path, n=1)
    node = cluster.nodes["1"]
    proc = subprocess.Popen(
        serve_command(node),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )
    node.proc = proc
    ready = threading.Event()
    threading.Thread(target=node._follow, args=(proc, ready), daemon=True).start()
    clients: list[socket.socket] = []
    try:
        assert ready.wait(WAIT_S * 2), "\n".join(node.lines)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert [line.split()[3:5] for line in limits.splitlines() if "open files" in line] == [
            [str(hard), str(hard)]
        ]
        with LOGGED:
            logged = "\n".join(node.lines)
        expected = f"maxclients {hard - 64} (open files limit {hard}, raised from {soft}, 64 kept"
        assert expected in logged
        for _ in range(hard - 64):
            c = raw(node)
            clients.append(c)
            c.sendall(b"PING\r\n")
            assert read_reply(c, 7) == b"+PONG\r\n"
        extra = raw(node)
        assert read_to_eof(extra) == MAXCLIENTS_REPLY
        extra.close()
        # With every client slot taken, the node still has descriptors to store a write.
        clients[0].sendall(b"SET full yes\r\nGET full\r\n")
        assert read_reply(clients[0], 14) == b"+OK\r\n$3\r\nyes\r\n"
    finally:
        for c in clients:
            c.close()
        node.stop()


def test_a_client_port_without_one_free_descriptor_is_a_clear_start_error(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, n=1)
    node = cluster.nodes["1"]
    done = subprocess.run(
        serve_command(node),
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (60, 60)),
        check=False,
    )
    assert done.returncode == 2
    assert "leaves no descriptor for clients after the 64 kept for peers and storage" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------------------- timeout


def test_idle_and_half_sent_clients_are_closed_after_timeout_but_not_a_waiting_one(
    tmp_path: Path,
) -> None:
    timeout_s = 0.5
    for node in start_node(tmp_path, "--timeout", str(timeout_s)):
        with redis.Redis(port=node.resp_port, socket_timeout=WAIT_S) as pooled:
            assert pooled.ping()
            waiting = raw(node)  # a command that takes 4 timeouts is not idle meanwhile
            waiting.sendall(b"PAXOS.WAIT 1000000 2000\r\n")
            idle, half = raw(node), raw(node)
            half.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nhalf")
            assert read_to_eof(idle) == b""
            assert read_to_eof(half) == b""
            reply = read_to_eof(waiting)
            assert reply.startswith(b"-TRYAGAIN"), reply
            # redis-py's pooled connection was idle longer, so it was closed too,
            # and the client reconnects without an error.
            assert pooled.set("after", "idle") is True
            assert pooled.get("after") == b"idle"
            for s in (waiting, idle, half):
                s.close()


# ------------------------------------------------------------------------- bulk lengths


def test_a_200_mib_length_header_is_refused_before_the_value_is_read(
    node: Node, redis_7: int
) -> None:
    memory = Memory(node)
    header = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$209715200\r\n"
    with raw(node) as sock:
        sock.sendall(header)
        reply = read_to_eof(sock)
        stream(sock, 200 * MIB)  # what a client would send next is not taken
        rss, hwm = memory.growth_kib()
    assert rss < GROWTH_MAX_KIB and hwm < GROWTH_MAX_KIB, f"grew {rss} KiB, peak {hwm} KiB"
    assert reply == INVALID_BULK
    with raw_redis(redis_7) as sock:  # Redis 7, proto-max-bulk-len 1mb, authenticated
        sock.sendall(b"AUTH pw\r\n")
        assert read_reply(sock, 5) == b"+OK\r\n"
        sock.sendall(header)
        assert read_to_eof(sock) == INVALID_BULK
    with redis.Redis(port=node.resp_port, socket_timeout=WAIT_S) as r:
        assert r.ping()  # the node serves on


def test_a_half_sent_command_is_cut_at_the_query_buffer_limit(node: Node) -> None:
    # Three of these, each with 500 values of 1 MiB, took 1.6 GB before the limit.
    memory = Memory(node)
    value = b"$%d\r\n%b\r\n" % (ENTRY_BYTES, b"v" * ENTRY_BYTES)
    with raw(node) as sock:
        try:
            sock.sendall(b"*203\r\n$4\r\nMSET\r\n")  # one pair more than is sent
            for i in range(100):  # 100 MiB offered, the command never finished
                sock.sendall(b"$2\r\n%02d\r\n" % i + value)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # refused: the node closed the connection
        rss, hwm = memory.growth_kib()
        reply = read_to_eof(sock)
    limit_kib = 4 * 1024
    assert rss < limit_kib + GROWTH_MAX_KIB and hwm < limit_kib + GROWTH_MAX_KIB, (rss, hwm)
    assert reply.startswith(BUFFER_FULL), reply


def test_redis_py_stores_values_up_to_the_largest_entry(node: Node) -> None:
    sizes = [0, 1, 16384, 16385, 512 * 1024, ENTRY_BYTES - 1024]
    with redis.Redis(port=node.resp_port, socket_timeout=WAIT_S) as r:
        for size in sizes:
            value = bytes([size % 251]) * size
            assert r.set(f"v{size}", value) is True
            assert r.get(f"v{size}") == value
        pipe = r.pipeline(transaction=False)
        for size in sizes:
            pipe.strlen(f"v{size}")
        assert pipe.execute() == sizes
        # At the bound itself the value is read, and the log says why it cannot take it.
        with pytest.raises(redis.ResponseError, match="batch_bytes_max"):
            r.set("edge", b"e" * ENTRY_BYTES)
        assert r.ping()


# ---------------------------------------------------------------- before authentication


@pytest.mark.parametrize(
    ("request_bytes", "reply"),
    [
        (b"*11\r\n", UNAUTH_MBULK),
        (b"*2\r\n$4\r\nAUTH\r\n$16385\r\n", UNAUTH_BULK),
    ],
    ids=["11 arguments", "16385-byte password"],
)
def test_unauthenticated_bounds_are_redis_7s_with_its_words(
    auth_node: Node, redis_7: int, request_bytes: bytes, reply: bytes
) -> None:
    with raw(auth_node) as sock:
        sock.sendall(request_bytes)
        assert read_to_eof(sock) == reply
    assert redis_says(redis_7, request_bytes) == reply


def test_an_unauthenticated_400_mib_auth_is_refused_before_it_is_read(auth_node: Node) -> None:
    memory = Memory(auth_node)
    with raw(auth_node) as sock:
        sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$419430400\r\n")
        reply = read_to_eof(sock)
        stream(sock, 400 * MIB)
        rss, hwm = memory.growth_kib()
    assert rss < GROWTH_MAX_KIB and hwm < GROWTH_MAX_KIB, f"grew {rss} KiB, peak {hwm} KiB"
    # Over proto-max-bulk-len, so the general text first, as Redis orders its checks.
    assert reply == INVALID_BULK


def test_redis_py_with_the_password_gets_the_general_bounds(auth_node: Node) -> None:
    with redis.Redis(port=auth_node.resp_port, password="pw", socket_timeout=WAIT_S) as r:
        value = b"a" * 20000  # over the unauthenticated bulk bound
        assert r.set("big", value) is True
        assert r.mset({f"m{i}": i for i in range(20)}) is True  # 41 arguments
        assert r.get("big") == value
    with raw(auth_node) as sock:  # AUTH and a bigger command in one write, as Redis takes it
        sock.sendall(
            b"AUTH pw\r\n*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$20000\r\n" + b"b" * 20000 + b"\r\n"
        )
        assert read_reply(sock, 10) == b"+OK\r\n+OK\r\n"
