"""A real redis-server for differential tests: started on a free loopback port, stopped by PID.

The client speaks just enough RESP2 to send argument lists (pipelined) and to
read replies into the state machine's reply model, without a client library's
reply callbacks (which turn ``OK`` into ``True`` and so hide differences).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from paxostob.kv.replies import Error, Reply, SimpleString

__all__ = ["RedisUnavailable", "RespClient", "redis_server", "running_redis"]

READY_TIMEOUT_S = 20.0
REPLY_TIMEOUT_S = 30.0


class RespClient:
    """A blocking RESP2 client for one connection."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT_S)
        self._buf = bytearray()

    def close(self) -> None:
        self._sock.close()

    def call(self, *args: bytes) -> Reply:
        [reply] = self.pipeline([args])
        return reply

    def pipeline(self, commands: Sequence[Sequence[bytes]]) -> list[Reply]:
        out = bytearray()
        for args in commands:
            out += b"*%d\r\n" % len(args)
            for arg in args:
                out += b"$%d\r\n%s\r\n" % (len(arg), arg)
        self._sock.sendall(out)
        return [self._read_reply() for _ in commands]

    def _fill(self) -> None:
        chunk = self._sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("redis-server closed the connection")
        self._buf += chunk

    def _read_line(self) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _read_exact(self, size: int) -> bytes:
        while len(self._buf) < size + 2:
            self._fill()
        data = bytes(self._buf[:size])
        del self._buf[: size + 2]
        return data

    def _read_reply(self) -> Reply:
        line = self._read_line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return SimpleString(rest.decode())
        if kind == b"-":
            return Error(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._read_exact(size)
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read_reply() for _ in range(size)]
        raise AssertionError(f"unexpected RESP line {line!r}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(proc: subprocess.Popen[bytes]) -> bytes:
    """Read the server's log until it is ready; the log so far if it exits or times out."""
    assert proc.stdout is not None
    log = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while b"Ready to accept connections" not in log:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise TimeoutError(log.decode(errors="replace"))
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            if not chunk:
                raise ConnectionError(log.decode(errors="replace"))
            log += chunk
    return log


class RedisUnavailable(Exception):
    """No redis-server to test against; ``installed`` tells a missing one from a failed start."""

    def __init__(self, reason: str, *, installed: bool) -> None:
        super().__init__(reason)
        self.installed = installed


@contextlib.contextmanager
def redis_server(directory: Path, extra_args: Sequence[str] = ()) -> Iterator[int]:
    """The port of a fresh redis-server (no persistence) for the block; stopped after it.

    ``extra_args``: more configuration, e.g. ``("--requirepass", "pw")``.
    Raises ``RedisUnavailable`` before the block when there is none.
    """
    exe = shutil.which("redis-server")
    if exe is None:
        raise RedisUnavailable(
            "redis-server is not installed (apt-get install redis-server)", installed=False
        )
    failures = []
    for _ in range(3):  # another process may take the free port first
        port = _free_port()
        proc = subprocess.Popen(
            [
                *(exe, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", str(directory), "--logfile", ""),
                *("--daemonize", "no"),
                *extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            try:
                _wait_ready(proc)
            except (TimeoutError, ConnectionError) as e:
                failures.append(str(e))
                continue
            yield port
            return
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
    raise RedisUnavailable(
        "redis-server did not start: " + " | ".join(failures)[-2000:], installed=True
    )


@contextlib.contextmanager
def running_redis(directory: Path) -> Iterator[RespClient | str]:
    """A client of a fresh redis-server, or the reason there is none (to skip with)."""
    with contextlib.ExitStack() as stack:
        try:
            port = stack.enter_context(redis_server(directory))
        except RedisUnavailable as e:
            yield str(e)
            return
        client = RespClient(port)
        stack.callback(client.close)
        yield client
