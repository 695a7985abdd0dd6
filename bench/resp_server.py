"""CPU cost per command of ``RespServer`` alone: redis-benchmark against a trivial dispatcher.

The dispatcher answers PING, and SET/GET from a dict, with no consensus, so
what is measured is the server (read, parse, dispatch, encode, write).
``--mode coroutine`` answers SET/GET with a coroutine that awaits a future
resolved on the next loop iteration, as a command that goes through
consensus did; ``--mode future`` answers the SET/GETs of one read with
futures resolved together by one callback on the next loop iteration, as
``NodeCommands`` and the key-value store do (one log entry per loop pass).

    python bench/resp_server.py serve [--port 0] [--mode plain]
        # serves until stdin closes; prints "PORT <n>" first
    python bench/resp_server.py compare --old-src /work/main/src --new-src src
        # each server in turn (PYTHONPATH=<src>), back to back, --rounds times:
        # redis-benchmark -t ping_mbulk,set,get -c 50 -P 1 and -P 16, one test per
        # run, with the server process's CPU seconds (/proc/PID/stat) per 100K requests

Reported: median requests/s and median server CPU seconds per 100K requests
per (server, test, pipeline). The machine may be shared: compare the CPU
figures first, they are less noisy than throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TextIO

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------- the server


def make_dispatcher(mode: str) -> object:  # noqa: C901 - the stub server class, nested: counted as one
    # Imported here: `compare` must not import the server it does not run.
    from paxostob.resp.protocol import Error, Reply, SimpleString
    from paxostob.resp.server import Connection

    ok = SimpleString("OK")
    pong = SimpleString("PONG")

    class TrivialDispatcher:
        def __init__(self) -> None:
            self.data: dict[bytes, bytes] = {}

        def dispatch_many(
            self, conn: Connection, commands: list[list[bytes]]
        ) -> list[tuple[Reply | Awaitable[Reply], int]]:
            if mode != "future":
                return [(self.dispatch(conn, args), conn.protocol) for args in commands]
            # The read's SET/GETs resolved together, as the key-value store's per-pass group is.
            loop = asyncio.get_running_loop()
            group: list[tuple[asyncio.Future[Reply], list[bytes]]] = []
            out: list[tuple[Reply | Awaitable[Reply], int]] = []
            for args in commands:
                if args[0].upper() in (b"SET", b"GET"):
                    fut: asyncio.Future[Reply] = loop.create_future()
                    group.append((fut, args))
                    out.append((fut, conn.protocol))
                else:
                    out.append((self.dispatch(conn, args), conn.protocol))
            if group:
                loop.call_soon(self.resolve, group)
            return out

        def resolve(self, group: list[tuple[asyncio.Future[Reply], list[bytes]]]) -> None:
            for fut, args in group:
                reply = self.dispatch_now(args)
                if not fut.done():
                    fut.set_result(reply)

        def dispatch_now(self, args: list[bytes]) -> Reply:
            name = args[0].upper()
            if name == b"SET" and len(args) == 3:
                return self.set(args)
            if name == b"GET" and len(args) == 2:
                return self.get(args)
            return Error("ERR wrong number of arguments")

        def dispatch(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
            name = args[0].upper()
            if name == b"PING":
                return pong
            if name == b"SET" and len(args) == 3:
                return self.later(self.set, args) if mode == "coroutine" else self.set(args)
            if name == b"GET" and len(args) == 2:
                return self.later(self.get, args) if mode == "coroutine" else self.get(args)
            if name == b"CONFIG":  # what redis-benchmark asks first
                return {b"save": b"", b"appendonly": b"no"}
            if name == b"QUIT":
                conn.closing = True
                return ok
            return Error("ERR unknown command")

        def set(self, args: list[bytes]) -> Reply:
            self.data[args[1]] = args[2]
            return ok

        def get(self, args: list[bytes]) -> Reply:
            return self.data.get(args[1])

        async def later(self, run: object, args: list[bytes]) -> Reply:
            # A stand-in for a consensus round: the reply comes a loop iteration later.
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            loop.call_soon(done.set_result, None)
            await done
            assert callable(run)
            reply: Reply = run(args)
            return reply

    return TrivialDispatcher()


async def serve(port: int, mode: str) -> None:
    from paxostob.resp.server import RespServer

    server = RespServer(make_dispatcher(mode), port=port)  # type: ignore[arg-type]
    await server.start()
    print(f"PORT {server.port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Stops when stdin closes (the parent went away) or on SIGTERM.
    loop.add_reader(sys.stdin.fileno(), stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    loop.remove_reader(sys.stdin.fileno())
    await server.close()


def run_server(port: int, mode: str) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(port, mode))
    return 0


# ------------------------------------------------------------------------------ the driver


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_once(
    port: int, pid: int, test: str, clients: int, pipeline: int, requests: int
) -> tuple[float, float]:
    """(requests/s, server CPU seconds per 100K requests) of one redis-benchmark run."""
    before = cpu_seconds(pid)
    command = ["redis-benchmark", "-p", str(port), "-t", test, "-c", str(clients)]
    command += ["-P", str(pipeline), "-n", str(requests), "-q", "-r", "100000"]
    out = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    cpu = cpu_seconds(pid) - before
    # -q prints "SET: 12345.67 requests per second, p50=..." after \r progress lines.
    m = re.search(r"([\d.]+) requests per second", out.replace("\r", "\n"))
    if m is None:
        raise RuntimeError(f"unexpected redis-benchmark output: {out!r}")
    return float(m.group(1)), cpu / requests * 100_000


def start_server(src: str, mode: str) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=src)
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", "--port", "0", "--mode", mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return proc, int(line.split()[1])


def stop_server(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ratio(new: float, old: float) -> str:
    # CPU seconds come in clock ticks: a short run may measure none.
    return f"{new / old:>5.2f}" if old > 0 else "  n/a"


def compare(args: argparse.Namespace, out: TextIO) -> int:
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark is not installed (apt-get install redis-tools)", file=out)
        return 1
    servers = {"old": args.old_src, "new": args.new_src}
    tests = args.tests.split(",")
    results: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    for rnd in range(args.rounds):
        for name, src in servers.items():
            proc, port = start_server(src, args.mode)
            try:
                for pipeline in args.pipelines:
                    for test in tests:
                        r = bench_once(port, proc.pid, test, args.clients, pipeline, args.requests)
                        results.setdefault((name, test, pipeline), []).append(r)
                        print(
                            f"round {rnd + 1} {name:3} {test:10} -P {pipeline:<3} "
                            f"{r[0]:>10,.0f} req/s  {r[1]:.3f} CPU s/100K",
                            file=out,
                            flush=True,
                        )
            finally:
                stop_server(proc)
    print(
        f"\nmedians of {args.rounds} rounds, -c {args.clients} -n {args.requests}, "
        f"mode {args.mode}:",
        file=out,
    )
    print(
        f"{'test':10} {'-P':>3} {'old req/s':>10} {'new req/s':>10} {'x':>5}   "
        f"{'old CPU':>8} {'new CPU':>8} {'x':>5}  (CPU s per 100K requests)",
        file=out,
    )
    for pipeline in args.pipelines:
        for test in tests:
            old = results[("old", test, pipeline)]
            new = results[("new", test, pipeline)]
            old_rps = statistics.median(r[0] for r in old)
            new_rps = statistics.median(r[0] for r in new)
            old_cpu = statistics.median(r[1] for r in old)
            new_cpu = statistics.median(r[1] for r in new)
            print(
                f"{test:10} {pipeline:>3} {old_rps:>10,.0f} {new_rps:>10,.0f} "
                f"{ratio(new_rps, old_rps)}   {old_cpu:>8.3f} {new_cpu:>8.3f} "
                f"{ratio(new_cpu, old_cpu)}",
                file=out,
            )
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--mode", choices=("plain", "coroutine", "future"), default="plain")
    c = sub.add_parser("compare")
    c.add_argument("--old-src", default="/work/main/src")
    c.add_argument("--new-src", default=str(REPO / "src"))
    c.add_argument("--mode", choices=("plain", "coroutine", "future"), default="plain")
    c.add_argument("--tests", default="ping_mbulk,set,get")
    c.add_argument("--pipelines", type=int, nargs="+", default=[1, 16])
    c.add_argument("--clients", type=int, default=50)
    c.add_argument("--requests", type=int, default=200_000)
    c.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.command == "serve":
        return run_server(args.port, args.mode)
    return compare(args, out)


if __name__ == "__main__":
    sys.exit(main())
