"""Memory per key of each value type: this store's ``KvMachine`` against a real redis-server.

For each shape (a string; a hash, list, set and sorted set of ``--small``
elements, the kind applications keep per user or per session; and the same
types with ``--large`` elements) it creates ``--keys`` keys of that shape
(fewer for the large shapes) in both, and reports bytes per key:

- ``paxostob``: bytes Python allocated for the keys (``tracemalloc``: the
  values, the key dictionary and every structure behind them), divided by
  the number of keys. The interpreter's own free lists and arena slack are
  not counted, so a node's resident size grows somewhat more;
- ``redis``: the growth of ``used_memory`` (``INFO memory``: what jemalloc
  handed out) over the same keys. Redis keeps small aggregates in compact
  listpacks (up to 128 elements of up to 64 bytes) and large ones in hash
  tables and skip lists, which this shows.

Elements are ``--element-bytes`` bytes (fields of a hash have values of the
same size; sorted set scores are small integers). redis-server listens on a
free 127.0.0.1 port and is stopped at the end. Not part of ``make test``.

Usage: ``python bench/kv_types_memory.py [--keys N] [--small N] [--large N]``
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import platform
import selectors
import shutil
import socket
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence

from paxostob.kv.commands import Entry, Op
from paxostob.kv.machine import KvMachine

READY_TIMEOUT_S = 20.0
#: Commands per pipelined round trip to redis-server and per entry applied to the machine.
BATCH = 500


def _resp(commands: Sequence[Sequence[bytes]]) -> bytes:
    out = bytearray()
    for args in commands:
        out += b"*%d\r\n" % len(args)
        for arg in args:
            out += b"$%d\r\n%s\r\n" % (len(arg), arg)
    return bytes(out)


class Redis:
    """Just enough of a RESP2 client: pipelined commands, replies counted or read as text."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self) -> bytes:
        line = self._line()
        if line[:1] == b"-":
            raise RuntimeError(line.decode())
        if line[:1] == b"$":
            size = int(line[1:])
            while len(self.buf) < size + 2:
                self.buf += self.sock.recv(1 << 16)
            data, self.buf = self.buf[:size], self.buf[size + 2 :]
            return data
        return line[1:]

    def run(self, commands: Sequence[Sequence[bytes]]) -> list[bytes]:
        self.sock.sendall(_resp(commands))
        return [self._reply() for _ in commands]

    def used_memory(self) -> int:
        [text] = self.run([(b"INFO", b"memory")])
        for line in text.decode().split("\r\n"):
            if line.startswith("used_memory:"):
                return int(line.split(":")[1])
        raise RuntimeError("INFO memory has no used_memory")


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[Redis, str]]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.split()
    with tempfile.TemporaryDirectory() as directory:
        proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
                "--logfile",
                "",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_ready(proc)
            yield Redis(port), next((v for v in version if v.startswith("v=")), "v=?")[2:]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()


def _wait_ready(proc: subprocess.Popen[bytes]) -> None:
    """Read the server's log until it says it is ready (or give up after a while)."""
    assert proc.stdout is not None
    log = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while b"Ready to accept connections" not in log:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise SystemExit(f"redis-server did not start: {log.decode(errors='replace')}")
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            if not chunk:
                raise SystemExit(f"redis-server exited: {log.decode(errors='replace')}")
            log += chunk


def shape_commands(kind: str, key: bytes, elements: int, size: int) -> list[tuple[bytes, ...]]:
    """The commands that make ``key`` a value of ``kind`` with ``elements`` elements."""

    def item(i: int, fill: bytes = b"x") -> bytes:
        return (b"%d:" % i).ljust(size, fill)

    items = [item(i) for i in range(elements)]
    if kind == "string":
        return [(b"SET", key, b"v".ljust(size, b"x"))]
    chunks = [items[i : i + 256] for i in range(0, len(items), 256)]
    if kind == "hash":
        return [
            (b"HSET", key, *(w for f in chunk for w in (f, item(int(f.split(b":")[0]), b"v"))))
            for chunk in chunks
        ]
    if kind == "list":
        return [(b"RPUSH", key, *chunk) for chunk in chunks]
    if kind == "set":
        return [(b"SADD", key, *chunk) for chunk in chunks]
    base = 0
    out = []
    for chunk in chunks:
        out.append(
            (b"ZADD", key, *(w for j, m in enumerate(chunk) for w in (b"%d" % (base + j), m)))
        )
        base += len(chunk)
    return out


def batches(kind: str, keys: int, elements: int, size: int) -> Iterator[list[tuple[bytes, ...]]]:
    """The commands making ``keys`` keys of the shape, made a batch at a time.

    Made while measuring: the machine keeps the argument objects it stores,
    so they must be allocated inside the measured region (the rest of a
    batch is freed once applied).
    """
    batch: list[tuple[bytes, ...]] = []
    for k in range(keys):
        batch += shape_commands(kind, b"key:%08d" % k, elements, size)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def machine_bytes(kind: str, keys: int, elements: int, size: int) -> int:
    machine = KvMachine()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for batch in batches(kind, keys, elements, size):
        machine.apply(Entry(0, tuple(Op(c) for c in batch)))
        del batch
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert machine.stored_keys == keys
    return after - before


def redis_bytes(client: Redis, kind: str, keys: int, elements: int, size: int) -> int:
    client.run([(b"FLUSHALL", b"SYNC")])
    before = client.used_memory()
    for batch in batches(kind, keys, elements, size):
        client.run(batch)
    [count] = client.run([(b"DBSIZE",)])
    assert int(count) == keys
    return client.used_memory() - before


def _cpu() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=20_000, help="keys of each small shape")
    parser.add_argument("--small", type=int, default=10, help="elements of a small aggregate")
    parser.add_argument("--large", type=int, default=1000, help="elements of a large aggregate")
    parser.add_argument("--element-bytes", type=int, default=16)
    args = parser.parse_args()
    shapes = [("string", 1, args.keys)] + [
        (kind, n, keys)
        for n, keys in ((args.small, args.keys), (args.large, max(args.keys // 100, 10)))
        for kind in ("hash", "list", "set", "zset")
    ]
    with redis_server() as (client, version):
        print(
            f"# {time.strftime('%Y-%m-%d')}, {platform.node()}, {_cpu()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}, redis-server {version}; "
            f"elements of {args.element_bytes} bytes"
        )
        print(f"{'shape':<16} {'keys':>7} {'paxostob B/key':>15} {'redis B/key':>12} {'ratio':>6}")
        for kind, elements, keys in shapes:
            ours = machine_bytes(kind, keys, elements, args.element_bytes) / keys
            theirs = redis_bytes(client, kind, keys, elements, args.element_bytes) / keys
            label = kind if kind == "string" else f"{kind} x{elements}"
            print(f"{label:<16} {keys:>7} {ours:>15,.0f} {theirs:>12,.0f} {ours / theirs:>6.1f}")


if __name__ == "__main__":
    main()
