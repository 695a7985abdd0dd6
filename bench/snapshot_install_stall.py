"""How long the leader's event loop stalls while a lagging follower installs a large snapshot.

A 3-node cluster (real ``paxostob serve`` processes, durable) is loaded with
``--keys`` keys of mixed types (40% strings, 15% each hashes, lists, sets and
sorted sets of 4 small elements), pipelined. One follower is then stopped
(SIGTERM), and ``--filler`` small ``SET``s, one per log entry, make every
running node take a snapshot and drop the log before it, and overflow the
frames the leader's transport keeps for the stopped peer (its outbox, 10,000
frames), so the stopped follower can only catch up by installing a snapshot.

A probe thread sends ``PING`` to the leader every ``--probe-ms`` (a reply
comes from the leader's event loop, without consensus) and records each
round trip. The probe runs for a quiet baseline window, then while the
follower restarts, receives the snapshot (``snapshot from a peer ... saved``
in its log) and catches up to the leader's commit: the longest round trip
during the install, against the baseline's, is how long the leader could not
serve its clients (or send heartbeats). Round trips are wall-clock time, so
on a busy machine they include time the leader was not scheduled.

    python bench/snapshot_install_stall.py                  # 1,000,000 keys
    python bench/snapshot_install_stall.py --keys 100000    # quicker
"""

from __future__ import annotations

import argparse
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
from benchcommon import cpu_model, percentile
from paxos_cluster import NodeProcess, PaxosCluster

from paxostob.codec import encode_message_parts
from paxostob.core.config import LogConfig
from paxostob.core.messages import SnapshotChunk
from paxostob.transport.frames import encode_frame_parts

#: Keys per pipeline while loading: deep enough to fill entries, bounded in memory.
PIPELINE_DEPTH = 2000
BATCH_TRIES_MAX = 20
#: Elements of each hash, list, set and sorted set.
ELEMENTS = 4
#: Bounds every wait of the run (loading excluded: it is bounded by --keys).
CATCH_UP_TIMEOUT_S = 600.0
BASELINE_S = 5.0
STOP_TIMEOUT_S = 60.0


def _write(pipe: redis.client.Pipeline, i: int) -> None:
    """Key ``i``'s write; running it twice leaves the same value (a batch may be retried)."""
    key = b"k:%d" % i
    kind = i % 20
    members = [b"m%d:%d" % (j, i % 997) for j in range(ELEMENTS)]
    if kind < 8:
        pipe.set(key, b"value:%d" % i)
    elif kind < 11:
        pipe.hset(key, mapping=dict.fromkeys(members, b"v"))
    elif kind < 14:
        pipe.delete(key)
        pipe.rpush(key, *members)
    elif kind < 17:
        pipe.sadd(key, *members)
    else:
        pipe.zadd(key, {m: j for j, m in enumerate(members)})


def load(cluster: PaxosCluster, keys: int) -> float:
    """Write ``keys`` keys of mixed types through the leader; the seconds it took.

    A batch refused with ``TRYAGAIN`` (an election on this busy machine) is
    sent again, at most ``BATCH_TRIES_MAX`` times, to the leader of the moment.
    """
    started = time.perf_counter()
    client = redis.Redis(port=cluster.leader_port(), socket_timeout=120, protocol=2)
    for first in range(0, keys, PIPELINE_DEPTH):
        for tries in range(1, BATCH_TRIES_MAX + 1):
            pipe = client.pipeline(transaction=False)
            for i in range(first, min(keys, first + PIPELINE_DEPTH)):
                _write(pipe, i)
            try:
                pipe.execute()
                break
            except (redis.exceptions.TryAgainError, redis.ConnectionError):
                if tries == BATCH_TRIES_MAX:
                    raise
                client.close()
                client = redis.Redis(port=cluster.leader_port(), socket_timeout=120, protocol=2)
        if first % 100_000 == 0:
            print(f"  {first:,} keys in {time.perf_counter() - started:.0f} s", flush=True)
    assert client.dbsize() >= keys, "the load did not land"
    client.close()
    return time.perf_counter() - started


@dataclass
class Probe:
    """PINGs one port every ``interval_s``; keeps each round trip, by phase."""

    port: int
    interval_s: float
    phase: str = "baseline"
    rtts: dict[str, list[float]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while not self.stop.is_set():
                    started = time.perf_counter()
                    s.sendall(b"*1\r\n$4\r\nPING\r\n")
                    reply = b""
                    while not reply.endswith(b"\r\n"):
                        chunk = s.recv(64)
                        if not chunk:
                            raise ConnectionError("the leader closed the probe's connection")
                        reply += chunk
                    self.rtts.setdefault(self.phase, []).append(time.perf_counter() - started)
                    time.sleep(self.interval_s)  # pacing, not waiting for anything
        except BaseException as e:
            self.error = e


def status(port: int) -> dict[bytes, object]:
    client = redis.Redis(port=port, socket_timeout=30, protocol=2)
    try:
        reply = client.execute_command("PAXOS.STATUS")  # type: ignore[no-untyped-call]
    finally:
        client.close()
    return dict(zip(reply[::2], reply[1::2], strict=True))


def restart(node: NodeProcess) -> NodeProcess:
    """Start ``node``'s process again with the same arguments (no ``--bootstrap``)."""
    original = node.proc.args
    assert isinstance(original, list)
    args = [str(a) for a in original if a != "--bootstrap"]
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    fresh = NodeProcess(node.node_id, node.peer_port, node.resp_port, node.data_dir, proc)
    threading.Thread(target=fresh.follow, daemon=True).start()
    return fresh


def framing_ms(size: int) -> tuple[float, float]:
    """What a node's loop spends framing a ``size``-byte snapshot: (all chunks, one tick's).

    Each chunk is framed as the TCP transport does (``encode_message_parts``:
    the chunk itself is not copied). ``core.catchup.Catchup`` sends at most
    ``snapshot_send_bytes_per_tick_max`` of chunks per tick, so one tick's
    share (the slowest chunk times the chunks per tick) is what the leader's
    loop spends on the transfer at a time; before the transfer was paced it
    framed every chunk, copying each, in one pass.
    """
    data = bytes(size)
    config = LogConfig()
    step = config.snapshot_chunk_bytes_max
    per_tick = max(1, config.snapshot_send_bytes_per_tick_max // step)
    times = []
    for offset in range(0, size, step):
        chunk = data[offset : offset + step]
        started = time.perf_counter()
        message = SnapshotChunk("i", "1", 1, b"m", size, offset, chunk)
        encode_frame_parts(*encode_message_parts(message))
        times.append((time.perf_counter() - started) * 1000)
    return sum(times), max(times) * per_tick


def summary(name: str, rtts: Sequence[float]) -> str:
    ms = [x * 1000 for x in rtts]
    return (
        f"{name}: {len(ms)} PINGs, p50 {percentile(ms, 0.5):.1f} ms, "
        f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--filler", type=int, default=15_000, help="SETs after the stop")
    p.add_argument("--probe-ms", type=float, default=5.0)
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="record the leader with py-spy during the install (collapsed stacks to FILE)",
    )
    args = p.parse_args(argv)

    with PaxosCluster(3) as cluster:
        load_s = load(cluster, args.keys)
        print(f"loaded {args.keys:,} keys in {load_s:.1f} s", flush=True)
        cluster.leader_port()  # waits out an election, if one runs
        leader_id = cluster.leader_id()
        leader = cluster.nodes[leader_id]
        follower_id = next(i for i in sorted(cluster.nodes) if i != leader_id)
        print(f"leader {leader_id}, lagging follower {follower_id}", flush=True)

        follower = cluster.nodes[follower_id]
        follower.proc.send_signal(signal.SIGTERM)
        follower.proc.wait(STOP_TIMEOUT_S)
        client = redis.Redis(port=leader.resp_port, socket_timeout=120, protocol=2)
        for i in range(args.filler):
            for tries in range(1, BATCH_TRIES_MAX + 1):
                try:
                    client.set(b"filler", b"%d" % i)  # one entry each: not pipelined
                    break
                except redis.exceptions.TryAgainError:
                    if tries == BATCH_TRIES_MAX:
                        raise
        client.close()
        print(f"wrote {args.filler:,} entries with the follower down", flush=True)

        probe = Probe(leader.resp_port, args.probe_ms / 1000)
        thread = threading.Thread(target=probe.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + BASELINE_S
        while time.monotonic() < deadline and probe.error is None:
            time.sleep(0.1)  # the baseline window: the probe runs meanwhile

        probe.phase = "install"
        started = time.perf_counter()
        target = status(leader.resp_port)[b"chosen_slot"]
        assert isinstance(target, int)
        spy = None
        if args.profile:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                    str(leader.pid), "--format", "raw", "--output", args.profile,
                    "--rate", "250", "--nonblocking",
                ],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        follower = cluster.nodes[follower_id] = restart(follower)
        caught_up_s = None
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while time.monotonic() < deadline and probe.error is None:
            try:
                applied = status(follower.resp_port)[b"applied_slot"]
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                applied = -1  # still starting
            assert isinstance(applied, int)
            if applied >= target:
                caught_up_s = time.perf_counter() - started
                break
            time.sleep(0.05)
        probe.phase = "after"
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(STOP_TIMEOUT_S)
        time.sleep(1.0)
        probe.stop.set()
        thread.join(30)
        if probe.error is not None:
            raise probe.error
        info = redis.Redis(port=follower.resp_port, socket_timeout=30, protocol=2).info(
            "persistence"
        )
        installed = int(info.get("snapshots_installed_from_peers", 0))
        print(f"the follower installed {installed} snapshot(s) from a peer", flush=True)
        leader_info = redis.Redis(port=leader.resp_port, socket_timeout=30, protocol=2)
        size = int(leader_info.info("persistence")["snapshot_last_bytes"])
        all_ms, tick_ms = framing_ms(size)
        print(
            f"the leader's snapshot: {size:,} bytes; framing all its chunks takes "
            f"{all_ms:.1f} ms in this process, the most one tick sends {tick_ms:.1f} ms",
            flush=True,
        )
        print(f"machine: {platform.node()}: {cpu_model()}, Python {sys.version.split()[0]}")
        print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        print(f"keys {args.keys:,}; follower caught up in {caught_up_s} s (None: timed out)")
        for phase in ("baseline", "install", "after"):
            if probe.rtts.get(phase):
                print(summary(phase, probe.rtts[phase]))
        if installed < 1 or caught_up_s is None:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
