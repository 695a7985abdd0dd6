"""RESP request parsing throughput: pipelined ``SET`` commands through ``RequestParser``.

Builds ``--commands`` commands ``SET key:NNNNNNNN <--value-bytes bytes>`` as a
client library sends them (multibulk), cuts the stream into ``--chunk-bytes``
chunks (what a server reads from its socket) and times ``feed`` + ``parse``
(or ``parse_into``, one call per chunk, as the server does) of the whole
stream in CPU time of this process (the machine may be shared), best of
``--repeat`` runs. Prints commands/s and MB/s.

    python bench/resp_parse.py                  # 100,000 commands in 16 KiB chunks
    python bench/resp_parse.py --chunk-bytes 1  # the pathological one-byte reads
    python bench/resp_parse.py --chunk-bytes 140 --commands 50000  # one command per read
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from paxostob.resp.protocol import RequestParser


def build_stream(commands: int, value_bytes: int) -> bytes:
    value = b"v" * value_bytes
    parts = []
    for i in range(commands):
        key = b"key:%08d" % i
        parts.append(
            b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(key), key, len(value), value)
        )
    return b"".join(parts)


def parse_all(chunks: Sequence[bytes]) -> int:
    """One ``parse()`` per command, until ``None``, after each chunk."""
    parser = RequestParser()
    parsed = 0
    for chunk in chunks:
        parser.feed(chunk)
        for _ in parser:
            parsed += 1
    return parsed


def parse_all_into(chunks: Sequence[bytes]) -> int:
    """One ``parse_into()`` per chunk, as the server parses each read."""
    parser = RequestParser()
    commands: list[list[bytes]] = []
    parsed = 0
    for chunk in chunks:
        parser.feed(chunk)
        parser.parse_into(commands)
        parsed += len(commands)
        commands.clear()  # the server dispatches them and drops them
    return parsed


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commands", type=int, default=100_000)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--chunk-bytes", type=int, default=16 * 1024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--api",
        choices=("parse", "parse_into"),
        default="parse_into" if hasattr(RequestParser, "parse_into") else "parse",
        help="parse_into (one call per chunk, what the server does) when the parser has it",
    )
    args = ap.parse_args(argv)
    run = parse_all_into if args.api == "parse_into" else parse_all

    stream = build_stream(args.commands, args.value_bytes)
    step = args.chunk_bytes
    chunks = [stream[i : i + step] for i in range(0, len(stream), step)]
    best_s = float("inf")
    for _ in range(args.repeat):
        start = time.process_time()
        parsed = run(chunks)
        best_s = min(best_s, time.process_time() - start)
        if parsed != args.commands:
            print(f"parsed {parsed} commands, expected {args.commands}", file=out)
            return 1
    print(f"python:  {platform.python_implementation()} {platform.python_version()}", file=out)
    print(
        f"parsed {args.commands:,} x SET ({args.value_bytes} B values, "
        f"{len(stream) / 1e6:.1f} MB) in {len(chunks):,} chunks of {step:,} B: "
        f"{args.commands / best_s:,.0f} commands/s, {len(stream) / best_s / 1e6:,.0f} MB/s "
        f"(best of {args.repeat}, {args.api})",
        file=out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
