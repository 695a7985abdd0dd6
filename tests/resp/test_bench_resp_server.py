"""bench/resp_server.py still runs: its dispatcher answers, and a tiny comparison completes."""

from __future__ import annotations

import asyncio
import importlib.util
import io
from pathlib import Path
from types import ModuleType

import pytest

from paxostob.resp.server import RespServer

from ..tools import need

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "resp_server.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("resp_server_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode", ["plain", "coroutine", "future"])
async def test_the_trivial_dispatcher_answers_ping_set_get(mode: str) -> None:
    server = RespServer(load_bench().make_dispatcher(mode), port=0)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"PING\r\nSET k v\r\nGET k\r\nGET nope\r\nQUIT\r\n")
        assert await asyncio.wait_for(reader.read(), 10) == (
            b"+PONG\r\n+OK\r\n$1\r\nv\r\n$-1\r\n+OK\r\n"
        )
        writer.close()
    finally:
        await server.close()


def test_a_tiny_comparison_runs() -> None:
    need("redis-benchmark", "redis-tools")
    out = io.StringIO()
    src = str(REPO / "src")
    argv = ["compare", "--old-src", src, "--new-src", src, "--rounds", "1"]
    argv += ["--requests", "200", "--clients", "2", "--tests", "ping_mbulk", "--pipelines", "1"]
    assert load_bench().main(argv, out=out) == 0
    assert "CPU s per 100K requests" in out.getvalue()
