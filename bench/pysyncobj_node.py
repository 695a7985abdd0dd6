"""One PySyncObj replica with a replicated dict; the leader runs the write load in-process.

PySyncObj has no client protocol: an application calls its replicated
methods in the replica's own process. So ``peers.PySyncObjPeer`` starts three
of these processes on loopback; each waits until a leader is known, and the
leader runs every requested load: ``clients`` concurrent writers, each
calling ``ReplDict.set(key, <100 bytes>, callback=...)`` and issuing its next
write from the callback once the previous one is committed (closed loop,
like the other systems' clients), until ``--requests`` writes or ``--run-s``
seconds. It prints one JSON line per run on stdout and then ``done``; the
followers print nothing and run until the parent stops them (SIGTERM).

Settings: memory only (no journal file: PySyncObj never fsyncs), and
``appendEntriesUseBatch`` on or off (``--batching``) — the parent measures
both and reports the faster as "fastest settings".
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

#: Until a leader is elected (raftMaxTimeout is 1.4 s; a busy machine is slower).
LEADER_TIMEOUT_S = 60.0


def percentile(samples: Sequence[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def run_load(d: Any, clients: int, requests: int, run_s: float, value: bytes) -> dict[str, Any]:
    lock = threading.RLock()  # a callback may run inside d.set (e.g. a full queue)
    finished = threading.Event()
    latencies: list[float] = []
    state = {"issued": 0, "outstanding": 0, "errors": 0}
    start = time.perf_counter()
    deadline = start + run_s

    def issue(writer: int) -> None:
        # Called with the lock held.
        if state["issued"] >= requests or time.perf_counter() >= deadline:
            if state["outstanding"] == 0:
                finished.set()
            return
        state["issued"] += 1
        state["outstanding"] += 1
        t0 = time.perf_counter()
        key = f"key:{(writer * 7919 + state['issued']) % 100_000}"

        def done(result: Any, error: Any) -> None:
            with lock:
                state["outstanding"] -= 1
                if error == 0:  # FAIL_REASON.SUCCESS
                    latencies.append(time.perf_counter() - t0)
                else:
                    state["errors"] += 1
                issue(writer)

        d.set(key, value, callback=done)

    with lock:
        for w in range(clients):
            issue(w)
    finished.wait(run_s + 60)
    elapsed = time.perf_counter() - start
    return {
        "clients": clients,
        "completed": len(latencies),
        "errors": state["errors"],
        "elapsed_s": elapsed,
        "ops_s": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "p999_ms": percentile(latencies, 0.999) * 1000,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--self", dest="self_addr", required=True, help="host:port of this replica")
    p.add_argument("--partners", required=True, help="host:port,host:port of the others")
    p.add_argument("--batching", choices=["on", "off"], default="off")
    p.add_argument("--clients", default="1,50", help="client counts, run in order")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--run-s", type=float, default=4.0)
    p.add_argument("--value-bytes", type=int, default=100)
    args = p.parse_args(argv)

    from pysyncobj import SyncObj, SyncObjConf  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from pysyncobj.batteries import ReplDict  # type: ignore[import-untyped,import-not-found,unused-ignore]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    conf = SyncObjConf(
        appendEntriesUseBatch=args.batching == "on",
        dynamicMembershipChange=False,
        journalFile=None,
        fullDumpFile=None,
    )
    d = ReplDict()
    obj = SyncObj(args.self_addr, args.partners.split(","), conf=conf, consumers=[d])
    deadline = time.monotonic() + LEADER_TIMEOUT_S
    while obj._getLeader() is None and time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.05)
    if obj._getLeader() is None:
        print(json.dumps({"error": "no leader"}), flush=True)
        return 1
    if obj._isLeader():
        value = b"v" * args.value_bytes
        # Warm up: one committed write, so the first run does not time the start.
        warm = threading.Event()
        d.set("warm-up", value, callback=lambda r, e: warm.set())
        warm.wait(30)
        for clients in (int(x) for x in args.clients.split(",")):
            for _ in range(args.repeats):
                result = run_load(d, clients, args.requests, args.run_s, value)
                print(json.dumps(result), flush=True)
        print("done", flush=True)
    stop.wait()
    obj.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
