"""The log's clock: decided by the leader, monotonic, bounded per tick, the same on every replica.

Each replica here has its own wall clock (``Tick(clock_ms=..., elapsed_ms=10)``:
a 10 ms tick), so a test can skew one node's clock and watch what reaches
the log. ``core.multipaxos`` states the rule these tests check.
"""

from __future__ import annotations

import random
import struct

from paxostob.core.events import Campaign, Compact, Persisted, Propose, Receive, Restore, Tick
from paxostob.core.messages import Envelope, Forward
from paxostob.core.multipaxos import LogConfig, MultiPaxosReplica
from paxostob.core.snapshot import SnapshotMeta, decode_meta, encode_meta
from paxostob.core.types import (
    CLOCK_ORIGIN,
    ZERO_BALLOT,
    DecidedEntry,
    Delivery,
    Proposal,
    ProposalId,
    clock_stamp,
    stamp_ms,
)

from .scenario import Net

#: 2026-01-01T00:00:00Z, the true time at tick 0.
T0 = 1_767_225_600_000
TICK_MS = 10
DAY_MS = 86_400_000
STEP = LogConfig().clock_step_ms_max


class ClockNet(Net):
    """``Net`` whose replicas read their own wall clocks: true time plus a per-node skew."""

    def __init__(self, members: str = "abc", **kwargs: object) -> None:
        super().__init__(members, **kwargs)  # type: ignore[arg-type]
        self.ticks = 0
        #: Added to the true time on this node's wall clock (ms).
        self.skew = dict.fromkeys(self.members, 0)
        #: Every delivery each node handed out, clock included.
        self.got: dict[str, list[Delivery]] = {m: [] for m in self.members}

    def wall(self, node: str) -> int:
        return T0 + self.ticks * TICK_MS + self.skew[node]

    def tick(self, nodes: object = None) -> None:
        self.ticks += 1
        for m in self.members:
            if m not in self.paused:
                self.r[m].step(Tick(self.wall(m), TICK_MS))

    def out(self, node: str) -> list[Envelope]:
        r = self.r[node]
        sent: list[Envelope] = []
        while r.has_ready():
            rd = r.ready()
            sent.extend(rd.early)
            sent.extend(rd.messages)
            self.got[node].extend(d.delivery for d in rd.deliveries)
            r.advance(rd)
            r.step(Persisted(rd.seq))
        self.trace.extend(sent)
        return sent

    def clocks(self, node: str) -> list[tuple[bytes, int]]:
        return [(d.payload, d.clock_ms) for d in self.got[node]]


def started(skew: dict[str, int] | None = None, leader: str = "a") -> ClockNet:
    net = ClockNet()
    net.skew.update(skew or {})
    net.run(3)
    net.r[leader].step(Campaign())
    net.run(3)
    assert net.leaders() == [leader]
    return net


def test_the_leader_stamps_its_clock_and_a_follower_clock_days_ahead_counts_for_nothing() -> None:
    net = started({"c": 2 * DAY_MS})
    net.r["c"].step(Propose(b"from-c"))  # forwarded by the skewed node
    net.r["b"].step(Propose(b"from-b"))
    net.run(5)
    clocks = net.clocks("a")
    assert sorted(p for p, _ in clocks) == [b"from-b", b"from-c"]
    for _, clock in clocks:
        # The leader's clock (true time here), never the forwarder's.
        assert T0 <= clock <= T0 + net.ticks * TICK_MS
    assert net.clocks("b") == clocks and net.clocks("c") == clocks


def test_a_forwarded_clock_stamp_is_refused() -> None:
    net = started()
    forged = Forward(net.r["c"].instance, "c", (clock_stamp(T0 + 2 * DAY_MS),))
    net.r["a"].step(Receive(Envelope("a", forged)))
    net.r["c"].step(Propose(b"after"))
    net.run(5)
    assert net.r["a"].ignored >= 1
    ((payload, clock),) = net.clocks("a")
    assert payload == b"after" and clock < T0 + DAY_MS


def test_a_leader_whose_clock_jumps_two_days_ahead_moves_the_log_at_most_one_step_per_tick() -> (
    None
):
    net = started()
    net.r["b"].step(Propose(b"before"))
    net.run(2)
    before = net.got["a"][-1].clock_ms
    net.skew["a"] = 2 * DAY_MS  # the leader's wall clock jumps
    jumped_at = net.ticks
    for i in range(50):
        net.r["b"].step(Propose(b"n%d" % i))
        net.run(1)
    clocks = [d.clock_ms for d in net.got["a"]]
    assert clocks == sorted(clocks)
    elapsed_ticks = net.ticks - jumped_at
    # At most ``clock_step_ms_max`` per tick, however far ahead the leader is...
    assert clocks[-1] - before <= STEP * (elapsed_ticks + 1)
    # ...and it does follow the leader (faster than real time) while catching up.
    assert clocks[-1] - before > TICK_MS * elapsed_ticks
    for m in "bc":
        assert [d.clock_ms for d in net.got[m]] == clocks


def test_a_new_leader_whose_clock_is_behind_never_moves_the_clock_back_and_it_still_runs() -> None:
    net = started()
    for i in range(5):
        net.r["a"].step(Propose(b"a%d" % i))
        net.run(1)
    high = net.got["b"][-1].clock_ms
    net.skew["b"] = -DAY_MS  # b is a day behind
    net.isolated.add("a")
    net.r["b"].step(Campaign())
    net.run(3)
    assert "b" in net.leaders()
    taken_at = net.ticks
    for i in range(40):
        net.r["b"].step(Propose(b"b%d" % i))
        net.run(1)
    clocks = [d.clock_ms for d in net.got["b"]]
    assert clocks == sorted(clocks), "the log's clock moved backwards"
    # The log runs on b's monotonic clock: TTLs keep counting down in real time.
    ran = clocks[-1] - high
    assert TICK_MS * (net.ticks - taken_at - 3) <= ran <= STEP * (net.ticks - taken_at + 3)
    assert clocks[-1] < T0 + DAY_MS


def test_a_follower_skewed_ahead_that_becomes_leader_starts_from_the_log_not_its_clock() -> None:
    net = started({"c": 2 * DAY_MS})
    for i in range(5):
        net.r["a"].step(Propose(b"a%d" % i))
        net.run(1)
    net.run(100)  # c follows for a second: its own clock must not creep into its estimate
    net.isolated.add("a")
    net.r["c"].step(Campaign())
    elected_at = net.ticks
    net.run(3)
    assert "c" in net.leaders()
    net.r["c"].step(Propose(b"c0"))
    net.run(2)
    payload, clock = net.clocks("c")[-1]
    assert payload == b"c0"
    # The true time when c was elected, plus at most one step per tick it led.
    true_at_election = T0 + elected_at * TICK_MS
    assert clock <= true_at_election + STEP * (net.ticks - elected_at), (
        f"c stamped {clock - true_at_election} ms past the true time: its own clock got in"
    )


def test_every_replica_and_a_replay_of_the_log_compute_the_same_clocks() -> None:
    net = started()
    for i in range(8):
        net.skew["a"] = random.Random(i).choice([-DAY_MS, 0, 5_000, DAY_MS])
        net.r["b"].step(Propose(b"m%d" % i))
        net.run(2)
    expected = [(d.slot, d.payload, d.clock_ms) for d in net.got["a"]]
    for m in "bc":
        assert [(d.slot, d.payload, d.clock_ms) for d in net.got[m]] == expected
    # A replica rebuilt from the decided log alone (a restart on storage).
    a = net.r["a"]
    fresh = MultiPaxosReplica("a", net.members, random.Random(1))
    decided = [DecidedEntry(s, v) for s, v in sorted(a.log.entries.items())]
    fresh.step(Restore(a.acceptor.promised, [], decided, incarnation=2))
    replayed = [
        (d.delivery.slot, d.delivery.payload, d.delivery.clock_ms) for d in fresh.ready().deliveries
    ]
    assert replayed == expected
    assert fresh.log.clock_ms == a.log.clock_ms == expected[-1][2]


def test_a_snapshot_carries_the_clock_to_a_replica_that_restores_it() -> None:
    net = started()
    for i in range(4):
        net.r["b"].step(Propose(b"m%d" % i))
        net.run(2)
    a = net.r["a"]
    a.step(Compact(b"app-state"))
    snap = a.log.snapshot
    assert snap is not None
    assert decode_meta(snap.meta).clock_ms == a.log.clock_ms > T0
    fresh = MultiPaxosReplica("a", net.members, random.Random(1))
    fresh.step(Restore(a.acceptor.promised, [], [], incarnation=2, snapshot=snap))
    assert fresh.log.clock_ms == a.log.clock_ms
    assert fresh.log.clock_estimate_ms == a.log.clock_ms


def test_snapshot_meta_of_version_1_still_decodes_with_an_unknown_clock() -> None:
    meta = SnapshotMeta(7, 5, {("a", 1): (3, frozenset({5}))}, clock_ms=T0)
    assert decode_meta(encode_meta(meta)) == meta
    v1 = struct.pack(">BQQI", 1, 7, 5, 0)
    assert decode_meta(v1) == SnapshotMeta(7, 5, {}, 0)


def test_without_clock_readings_a_replica_stamps_nothing() -> None:
    net = Net()
    net.run(3)
    net.r["a"].step(Campaign())
    net.run(3)
    net.r["b"].step(Propose(b"x"))
    net.run(3)
    values = [v for v in net.r["a"].log.entries.values() if v]
    assert values and all(p.id.origin != CLOCK_ORIGIN for v in values for p in v)


def test_only_a_well_formed_stamp_of_the_reserved_origin_is_a_clock_reading() -> None:
    assert stamp_ms(clock_stamp(T0)) == T0
    assert stamp_ms(Proposal(ProposalId(CLOCK_ORIGIN, 0), b"short")) is None
    assert stamp_ms(Proposal(ProposalId("a", 1), clock_stamp(T0).payload)) is None


def test_a_lower_stamp_later_in_the_log_does_not_move_the_clock_back() -> None:
    """A stale leader's slot (P2c keeps its stamp) can follow a newer, higher stamp."""
    replica = MultiPaxosReplica("a", ("a", "b", "c"), random.Random(1))
    high, low = T0 + 5_000, T0 + 1_000
    decided = [
        DecidedEntry(1, (clock_stamp(high), Proposal(ProposalId("b", 1), b"first"))),
        DecidedEntry(2, (clock_stamp(low), Proposal(ProposalId("c", 1), b"second"))),
    ]
    replica.step(Restore(ZERO_BALLOT, [], decided, incarnation=1))
    got = [(d.delivery.payload, d.delivery.clock_ms) for d in replica.ready().deliveries]
    assert got == [(b"first", high), (b"second", high)]
    assert replica.log.clock_ms == high
