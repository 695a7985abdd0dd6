"""The pure core's CPU per delivered message: replicas stepped in one loop, no asyncio.

``tob_inmemory.py`` measures total-order broadcast with the runtime (the
asyncio driver, futures, the in-memory transport); this measures the
sans-IO core alone, the part every runtime pays for each value: replicas
(``MultiPaxosReplica``) on a perfect network that this script runs itself,
each message handed straight to its destination, every ``Ready`` durable at
once (no storage). Each round proposes ``--per-round`` messages spread over
the replicas, then runs until nothing is left to do; the last replica has
then delivered every message. Reported: this process's CPU time
(``time.process_time``) per message delivered, summed over the replicas.

With no event loop and no other task in the process, it is steadier than
``tob_inmemory.py`` on a shared machine: the figure to compare two versions
of the core by (alternate them, several runs each).

    python bench/tob_core.py                         # 3 replicas, 50 per round, 100,000 messages
    python bench/tob_core.py --per-round 10 --replicas 5
    PYTHONPATH=<another tree>/src python bench/tob_core.py   # that tree's core
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import TextIO

from paxostob.core.config import LogConfig
from paxostob.core.events import Campaign, Persisted, Propose, Receive, Tick
from paxostob.core.messages import Envelope
from paxostob.core.multipaxos import MultiPaxosReplica

PAYLOAD_BYTES = 100
#: Rounds between two ticks: the ticks (heartbeats, timers) are part of the
#: cost, at a rate like the runtime's (10 ms ticks, a round of 50 every ~0.5 ms).
ROUNDS_PER_TICK = 20
TICK_MS = 10
#: Steps of a single round before it is taken for a livelock (a bug): the
#: core's pipeline of a fault-free round settles in a few dozen.
PASSES_MAX = 10_000


class Cluster:
    """Replicas on a perfect network: every message handed over, every Ready durable at once."""

    def __init__(self, replicas: int, config: LogConfig) -> None:
        self.ids = [f"r{i}" for i in range(1, replicas + 1)]
        self.replicas = {
            i: MultiPaxosReplica(i, self.ids, random.Random(k), config=config)
            for k, i in enumerate(self.ids)
        }
        self.inbox: dict[str, deque[Envelope]] = {i: deque() for i in self.ids}
        self.delivered = dict.fromkeys(self.ids, 0)
        self.wall_ms = 1_700_000_000_000

    def settle(self) -> None:
        """Step until no replica has a message to take or a Ready to hand out."""
        for _ in range(PASSES_MAX):
            busy = False
            for i, r in self.replicas.items():
                inbox = self.inbox[i]
                while inbox:
                    r.step(Receive(inbox.popleft()))
                    busy = True
                if r.has_ready():
                    ready = r.ready()
                    for e in ready.early:
                        self.inbox[e.dst].append(e)
                    for e in ready.messages:
                        self.inbox[e.dst].append(e)
                    self.delivered[i] += len(ready.deliveries)
                    r.advance(ready)
                    if ready.seq:
                        r.step(Persisted(ready.seq))
                    busy = True
            if not busy:
                return
        raise RuntimeError(f"no quiescence after {PASSES_MAX} passes")

    def tick(self, elapsed_ms: int) -> None:
        self.wall_ms += elapsed_ms
        for r in self.replicas.values():
            r.step(Tick(self.wall_ms, elapsed_ms))


def run(replicas: int, messages: int, per_round: int, batching: bool) -> float:
    """CPU microseconds per message delivered (summed over the replicas)."""
    config = LogConfig() if batching else LogConfig(batch_count_max=1)
    cluster = Cluster(replicas, config)
    cluster.tick(0)
    first = cluster.replicas[cluster.ids[0]]
    first.step(Campaign())
    cluster.settle()
    if first.election.leading is None:
        raise RuntimeError("the first replica did not become leader")
    payload = b"x" * PAYLOAD_BYTES
    order = [cluster.replicas[i] for i in cluster.ids]
    issued = rounds = 0
    start = time.process_time()
    while issued < messages:
        for k in range(min(per_round, messages - issued)):
            order[k % len(order)].step(Propose(payload))
        issued += min(per_round, messages - issued)
        cluster.settle()
        rounds += 1
        if rounds % ROUNDS_PER_TICK == 0:
            cluster.tick(TICK_MS)
    cpu = time.process_time() - start
    if set(cluster.delivered.values()) != {messages}:
        raise RuntimeError(f"not every message delivered everywhere: {cluster.delivered}")
    return cpu / messages * 1e6


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--replicas", type=int, default=3, help="cluster size (3)")
    p.add_argument("--messages", type=int, default=100_000, help="per configuration (100000)")
    p.add_argument("--per-round", type=int, default=50, help="messages proposed per round (50)")
    p.add_argument("--repeats", type=int, default=1, help="runs per configuration (1)")
    args = p.parse_args(argv)
    if min(args.replicas, args.messages, args.per_round, args.repeats) < 1:
        p.error("every count must be positive")
    return args


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = parse_args(argv)
    stream = out if out is not None else sys.stdout
    print(
        f"core only: {args.replicas} replicas, {args.messages} messages of {PAYLOAD_BYTES} B, "
        f"{args.per_round} per round; CPU us per message, summed over the replicas",
        file=stream,
    )
    for batching in (True, False):
        figures = [
            run(args.replicas, args.messages, args.per_round, batching) for _ in range(args.repeats)
        ]
        shown = " ".join(f"{f:.2f}" for f in figures)
        print(f"batching {'on ' if batching else 'off'}: {shown}", file=stream, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
