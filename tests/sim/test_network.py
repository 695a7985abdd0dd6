"""SimNetwork: virtual-time delivery with seeded loss, duplication, delay, partitions, crashes."""

from __future__ import annotations

import random

from paxostob.core.messages import Envelope, Heartbeat
from paxostob.core.types import Ballot
from paxostob.sim.network import SimNetwork
from paxostob.transport.faults import FaultModel

NODES = ("a", "b", "c")


def msg(src: str, dst: str, n: int = 0) -> Envelope:
    return Envelope(dst, Heartbeat("tob", src, Ballot(1, src), n))


def drain(net: SimNetwork, until: int) -> list[tuple[int, Envelope]]:
    """Every copy that arrives in ticks net.now+1 .. until, with its tick."""
    got: list[tuple[int, Envelope]] = []
    for tick in range(net.now + 1, until + 1):
        net.now = tick
        got.extend((tick, env) for env in net.due(tick))
    return got


def number(env: Envelope) -> int:
    assert isinstance(env.message, Heartbeat)
    return env.message.commit


def balanced(net: SimNetwork) -> bool:
    s = net.stats
    return net.in_flight == 0 and s.sent + s.duplicated == s.delivered + s.dropped


def test_copies_arrive_in_tick_then_send_order() -> None:
    net = SimNetwork(NODES, random.Random(1), FaultModel(delay_s=(1.0, 1.0)))
    sent = [msg("a", "b", i) for i in range(5)]
    for env in sent:
        net.send(env)
    assert drain(net, 3) == [(1, env) for env in sent]
    assert balanced(net)


def test_every_copy_takes_at_least_one_tick() -> None:
    net = SimNetwork(NODES, random.Random(1), FaultModel(delay_s=(0.0, 0.0)))
    net.now = 7
    net.send(msg("a", "b"))
    assert list(net.due(7)) == []
    assert [t for t, _ in drain(net, 9)] == [8]


def test_random_delays_reorder() -> None:
    net = SimNetwork(NODES, random.Random(3), FaultModel(delay_s=(1.0, 9.0)))
    for i in range(50):
        net.send(msg("a", "b", i))
    order = [number(env) for _, env in drain(net, 20)]
    assert sorted(order) == list(range(50)) and order != list(range(50))


def test_loss_and_duplication_are_seeded() -> None:
    def arrivals(seed: int) -> list[tuple[int, int]]:
        faults = FaultModel(loss=0.3, duplicate=0.3, delay_s=(1.0, 4.0))
        net = SimNetwork(NODES, random.Random(seed), faults)
        for i in range(200):
            net.send(msg("a", "c", i))
        got = [(t, number(env)) for t, env in drain(net, 10)]
        assert net.stats.lost > 0 and net.stats.duplicated > 0 and balanced(net)
        return got

    assert arrivals(5) == arrivals(5)
    assert arrivals(5) != arrivals(6)


def test_a_partition_cuts_at_send_time_and_in_flight() -> None:
    net = SimNetwork(NODES, random.Random(1), FaultModel(delay_s=(2.0, 2.0)))
    net.send(msg("a", "b"))  # in flight when the partition starts
    net.partition(["a"], ["b", "c"])
    net.send(msg("a", "c"))  # cut at send time
    net.send(msg("b", "c"))  # same side: arrives
    got = drain(net, 5)
    assert [(env.message.sender, env.dst) for _, env in got] == [("b", "c")]
    assert (net.stats.lost, net.stats.cut) == (1, 1)
    net.heal()
    net.send(msg("a", "b"))
    assert len(drain(net, 10)) == 1 and balanced(net)


def test_heal_removes_every_fault_but_the_base_delay() -> None:
    faults = FaultModel(loss=1.0, duplicate=1.0, delay_s=(2.0, 3.0)).partitioned(["a"], ["b"])
    net = SimNetwork(NODES, random.Random(1), faults, spike_probability=1.0)
    net.heal()
    assert net.faults == FaultModel(delay_s=(2.0, 3.0)) and net.spike_probability == 0.0


def test_spikes_delay_some_copies_long() -> None:
    net = SimNetwork(
        NODES,
        random.Random(2),
        FaultModel(delay_s=(1.0, 1.0)),
        spike_probability=0.5,
        spike_ticks=(30, 40),
    )
    for i in range(40):
        net.send(msg("a", "b", i))
    ticks = [t for t, _ in drain(net, 50)]
    assert set(ticks) - {1} and min(set(ticks) - {1}) >= 31
    assert net.stats.spiked == sum(1 for t in ticks if t > 1) and balanced(net)


def test_a_crashed_node_neither_sends_nor_receives() -> None:
    net = SimNetwork(NODES, random.Random(1), FaultModel(delay_s=(3.0, 3.0)))
    net.send(msg("a", "b"))  # in flight to b when b crashes
    net.crash("b")
    net.send(msg("b", "a"))  # a crashed node sends nothing (not even counted)
    net.send(msg("c", "b"))
    assert drain(net, 10) == []
    assert net.stats.sent == 2 and net.stats.crashed == 2 and balanced(net)


def test_a_restarted_node_gets_nothing_sent_to_its_earlier_life() -> None:
    net = SimNetwork(NODES, random.Random(1), FaultModel(delay_s=(3.0, 3.0)))
    net.send(msg("a", "b", 1))  # in flight to b's first life
    net.send(msg("b", "c", 2))  # b's own message has left the node
    net.crash("b")
    net.now = 1
    net.restart("b")
    net.send(msg("a", "b", 3))  # to b's second life
    got = [(env.dst, number(env)) for _, env in drain(net, 10)]
    assert got == [("c", 2), ("b", 3)]
    assert net.stats.crashed == 1 and balanced(net)
