"""A snapshot transfer is paced: a few chunks per tick, the rest on later ticks.

A leader that sent every chunk of a big snapshot in one step made its runtime
encode and write them all in one pass of its event loop (485 ms for 39 MB,
without heartbeats meanwhile). ``snapshot_send_bytes_per_tick_max`` bounds the
chunk bytes a replica emits per tick; the transfer goes on over later ticks,
a ``CatchUp`` arriving meanwhile neither restarts nor duplicates it, and a
lost chunk is recovered by the whole transfer sent again once
``snapshot_resend_ticks`` have passed since its last chunk.
"""

from __future__ import annotations

from collections import defaultdict

from paxostob.core.events import Campaign, Compact, Propose
from paxostob.core.messages import Envelope, SnapshotChunk
from paxostob.core.multipaxos import LogConfig

from .scenario import Net

CHUNK = 4
#: Two chunks per tick.
PER_TICK = 8
RESEND = 20
CFG = LogConfig(
    snapshot_chunk_bytes_max=CHUNK,
    snapshot_send_bytes_per_tick_max=PER_TICK,
    snapshot_resend_ticks=RESEND,
)
#: Twenty chunks: at least ten ticks to send, longer than c's catch-up retries (5 ticks).
STATE = b"0123456789abcdefghijklmnopqrstuvwxyzABCD" * 2
TICKS_MAX = 200


def lagging_follower(net: Net) -> int:
    """a leads; c misses slots that a and b then compact away. The snapshot's slot."""
    net.r["a"].step(Campaign())
    net.settle()
    assert net.leaders() == ["a"]
    net.isolated = {"c"}
    for i in range(5):
        net.r["a"].step(Propose(b"p%d" % i))
        net.settle()
    for m in "ab":
        net.r[m].step(Compact(STATE))
    snap = net.r["a"].log.snapshot
    assert snap is not None and net.r["c"].log.decided_through < snap.slot
    net.isolated = set()
    return snap.slot


def run_ticks(
    net: Net, slot: int, drop: set[tuple[int, int]] | None = None
) -> dict[int, list[SnapshotChunk]]:
    """Tick until c installed the snapshot; the chunks sent to c in each tick.

    ``drop``: (sending, offset) pairs lost on the way, each once (``sending``
    counts the chunks sent to c at that offset so far, from 1).
    """
    drop = set(drop or ())
    per_tick: dict[int, list[SnapshotChunk]] = defaultdict(list)
    sends: dict[int, int] = defaultdict(int)
    for tick in range(1, TICKS_MAX + 1):
        net.tick()
        in_flight: list[Envelope] = [None]  # type: ignore[list-item]  # enter the loop
        while in_flight:
            in_flight = [e for m in net.members for e in net.out(m)]
            kept = []
            for env in in_flight:
                m = env.message
                if isinstance(m, SnapshotChunk) and env.dst == "c":
                    per_tick[tick].append(m)
                    sends[m.offset] += 1
                    if (sends[m.offset], m.offset) in drop:
                        drop.discard((sends[m.offset], m.offset))
                        continue
                kept.append(env)
            net.deliver(kept)
        if net.r["c"].log.compacted_through >= slot:
            return per_tick
    raise AssertionError(f"c did not install the snapshot in {TICKS_MAX} ticks")


def installed_state(net: Net) -> bytes:
    snap = net.r["c"].log.snapshot
    assert snap is not None
    return snap.data


def test_a_snapshot_travels_over_several_ticks_at_most_the_budget_per_tick() -> None:
    net = Net("abc", config=CFG)
    slot = lagging_follower(net)
    per_tick = run_ticks(net, slot)
    chunks = [m for ms in per_tick.values() for m in ms]
    assert all(sum(len(m.chunk) for m in ms) <= PER_TICK for ms in per_tick.values()), per_tick
    # Every offset exactly once: the CatchUps c sent meanwhile did not restart the transfer.
    assert sorted(m.offset for m in chunks) == list(range(0, len(STATE), CHUNK))
    assert len(per_tick) >= len(STATE) // PER_TICK
    assert installed_state(net) == STATE
    assert net.r["c"].log.decided_through >= slot


def test_a_lost_chunk_is_sent_again_after_the_resend_ticks_and_the_snapshot_installs() -> None:
    net = Net("abc", config=CFG)
    slot = lagging_follower(net)
    per_tick = run_ticks(net, slot, drop={(1, 2 * CHUNK)})
    assert all(sum(len(m.chunk) for m in ms) <= PER_TICK for ms in per_tick.values()), per_tick
    ticks = sorted(per_tick)
    last_of_first = max(
        t for t in ticks if any(m.offset == len(STATE) - CHUNK for m in per_tick[t])
    )
    again = [t for t in ticks if t > last_of_first]
    assert again, "the transfer was never sent again"
    assert again[0] - last_of_first >= RESEND, (last_of_first, again)
    assert installed_state(net) == STATE
