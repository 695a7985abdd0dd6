"""A minimal RESP client for the CLI's own needs (status polling, snapshots).

The CLI must not depend on a Redis client library (that is a test and user
dependency), and it only needs to send one command and read a flat reply.
"""

from __future__ import annotations

import asyncio

__all__ = ["RespClientError", "request"]

REPLY_BYTES_MAX = 1 << 20


class RespClientError(Exception):
    """The server could not be reached or answered with an error."""


def _command(args: list[bytes]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


async def _reply(
    reader: asyncio.StreamReader, depth: int = 0, bytes_max: int = REPLY_BYTES_MAX
) -> object:
    if depth > 8:
        raise RespClientError("reply nests too deeply")
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RespClientError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        if n > bytes_max:
            raise RespClientError(f"reply of {n} bytes is larger than {bytes_max}")
        return (await reader.readexactly(n + 2))[:-2]
    if kind == b"*":
        n = int(rest)
        if n > REPLY_BYTES_MAX:
            raise RespClientError("reply too large")
        return [await _reply(reader, depth + 1, bytes_max) for _ in range(max(n, 0))]
    raise RespClientError(f"unexpected reply type {kind!r}")


async def request(
    host: str,
    port: int,
    args: list[bytes],
    *,
    timeout_s: float = 2.0,
    password: str | None = None,
    reply_bytes_max: int = REPLY_BYTES_MAX,
) -> object:
    """Send one command (after AUTH if ``password``) and return its RESP2 reply.

    ``reply_bytes_max`` bounds each bulk string of the reply (a snapshot is large).
    """

    async def go() -> object:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            if password is not None:
                writer.write(_command([b"AUTH", password.encode()]))
            writer.write(_command(args))
            await writer.drain()
            if password is not None:
                await _reply(reader)
            return await _reply(reader, bytes_max=reply_bytes_max)
        finally:
            writer.close()

    try:
        return await asyncio.wait_for(go(), timeout_s)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
        raise RespClientError(str(e) or type(e).__name__) from None
