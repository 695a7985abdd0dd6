"""MemoryNetwork: the Transport conformance suite, then its seeded faults.

Zero-delay arrivals are scheduled with ``call_soon``, first in first out, so a
"fence" message sent last arrives after every earlier message that was not
dropped: receiving the fence first proves the earlier ones were dropped,
without sleeping.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Sequence

import pytest

import paxostob
from paxostob.core.messages import Envelope, Heartbeat
from paxostob.errors import ConfigurationError, TransportClosedError
from paxostob.transport.base import Transport
from paxostob.transport.faults import FaultModel
from paxostob.transport.memory import MemoryNetwork, MemoryTransport

from .conformance import TransportConformance, Trio, envelope, receive_n

FENCE = 10_000


async def _trio(net: MemoryNetwork) -> Trio:
    a, b, c = (net.transport(address) for address in ("a", "b", "c"))

    async def cleanup() -> None:
        for t in (a, b, c):
            await t.close()

    return Trio(a, b, c, cleanup)


class TestMemoryConformance(TransportConformance):
    async def make_trio(self) -> Trio:
        return await _trio(MemoryNetwork(seed=1))


class TestDelayedMemoryConformance(TransportConformance):
    """Random delays reorder messages; the suite must not depend on order."""

    async def make_trio(self) -> Trio:
        return await _trio(MemoryNetwork(seed=2, delay_s=(0.0, 0.002)))


def commits(envelopes: Sequence[Envelope]) -> list[int]:
    """The numbers of the test envelopes (``envelope(src, dst, n)`` carries ``n``)."""
    out = []
    for e in envelopes:
        assert isinstance(e.message, Heartbeat)
        out.append(e.message.commit)
    return out


async def receive_until_fence(transport: Transport) -> list[int]:
    """Numbers received before the fence (which must come)."""
    got: list[int] = []
    while True:
        [n] = commits(await receive_n(transport, 1))
        if n == FENCE:
            return got
        got.append(n)


def test_exported_from_the_package() -> None:
    assert paxostob.MemoryNetwork is MemoryNetwork
    assert "MemoryNetwork" in paxostob.__all__


async def test_loss_one_loses_everything() -> None:
    net = MemoryNetwork(seed=3, loss=1.0)
    a, b = net.transport("a"), net.transport("b")
    for n in range(100):
        a.send(envelope("a", "b", n))
    assert (net.stats.sent, net.stats.dropped) == (100, 100)
    net.set_faults(loss=0.0)
    a.send(envelope("a", "b", FENCE))
    assert await receive_until_fence(b) == []
    assert net.stats.delivered == 1


async def test_duplicate_one_doubles_every_message() -> None:
    net = MemoryNetwork(seed=4, duplicate=1.0)
    a, b = net.transport("a"), net.transport("b")
    for n in range(10):
        a.send(envelope("a", "b", n))
    net.set_faults(duplicate=0.0)
    a.send(envelope("a", "b", FENCE))
    got = await receive_until_fence(b)
    assert Counter(got) == {n: 2 for n in range(10)}
    assert (net.stats.duplicated, net.stats.delivered) == (10, 21)


async def test_delays_reorder_deterministically() -> None:
    seed, delay_s, count = 10, (0.0, 0.5), 12
    # The network draws from random.Random(seed) exactly as the fault model does, one message
    # at a time; the order of arrivals is the order of the drawn delays.
    rng, model = random.Random(seed), FaultModel(delay_s=delay_s)
    delays = [model.arrival_delays(rng, "a", "b")[0] for _ in range(count)]
    expected = [9, 5, 10, 2, 11, 0, 8, 6, 7, 1, 4, 3]
    assert sorted(range(count), key=delays.__getitem__) == expected
    # Arrivals further apart than the loop's scheduling jitter: the order is the seed's alone.
    ordered = sorted(delays)
    assert min(y - x for x, y in itertools.pairwise(ordered)) > 0.01

    net = MemoryNetwork(seed=seed, delay_s=delay_s)
    a, b = net.transport("a"), net.transport("b")
    for n in range(count):
        a.send(envelope("a", "b", n))
    assert commits(await receive_n(b, count)) == expected


async def test_partition_blocks_across_groups_and_heal_restores() -> None:
    net = MemoryNetwork(seed=6)
    a, b, c, d = (net.transport(x) for x in "abcd")
    net.partition(["a"], ["b", "c"])  # d is in no group: everyone reaches it
    a.send(envelope("a", "b", 1))
    b.send(envelope("b", "a", 2))
    assert net.stats.dropped == 2
    b.send(envelope("b", "c", 3))
    a.send(envelope("a", "d", 4))
    d.send(envelope("d", "a", 5))
    d.send(envelope("d", "b", 6))
    assert commits(await receive_n(c, 1)) == [3]
    assert commits(await receive_n(d, 1)) == [4]
    assert commits(await receive_n(a, 1)) == [5]  # not 2: that one was cut
    assert commits(await receive_n(b, 1)) == [6]  # not 1: that one was cut

    net.heal()
    a.send(envelope("a", "b", 7))
    b.send(envelope("b", "a", 8))
    assert commits(await receive_n(b, 1)) == [7]
    assert commits(await receive_n(a, 1)) == [8]
    assert net.stats.dropped == 2


async def test_partition_replaces_the_previous_one() -> None:
    net = MemoryNetwork(seed=7)
    a, b, _ = (net.transport(x) for x in "abc")
    net.partition(["a"], ["b"])
    net.partition(["a", "b"], ["c"])
    a.send(envelope("a", "c", 1))
    a.send(envelope("a", "b", 2))
    assert commits(await receive_n(b, 1)) == [2]
    assert net.stats.dropped == 1
    with pytest.raises(ConfigurationError):
        net.partition(["a", "b"], ["b"])
    assert net.faults.partitions == (frozenset("ab"), frozenset("c"))


async def test_set_faults_while_running() -> None:
    net = MemoryNetwork(seed=8)
    a, b = net.transport("a"), net.transport("b")
    a.send(envelope("a", "b", 1))
    assert commits(await receive_n(b, 1)) == [1]

    net.set_faults(loss=1.0)
    a.send(envelope("a", "b", 2))
    net.set_faults(loss=0.0, duplicate=1.0)
    a.send(envelope("a", "b", 3))
    net.set_faults(duplicate=0.0)
    a.send(envelope("a", "b", FENCE))
    assert await receive_until_fence(b) == [3, 3]
    assert net.faults == FaultModel()

    with pytest.raises(ConfigurationError):
        net.set_faults(loss=1.5)
    with pytest.raises(ConfigurationError):
        net.set_faults(duplicate=0.5, delay_s=(0.2, 0.1))
    assert net.faults == FaultModel(), "a rejected change changes nothing"


async def _surviving(seed: int) -> list[int]:
    net = MemoryNetwork(seed=seed, loss=0.5, duplicate=0.3)
    a, b = net.transport("a"), net.transport("b")
    for n in range(200):
        a.send(envelope("a", "b", n))
    net.set_faults(loss=0.0, duplicate=0.0)
    a.send(envelope("a", "b", FENCE))
    return await receive_until_fence(b)


async def test_same_seed_same_decisions() -> None:
    first, again, other = await _surviving(9), await _surviving(9), await _surviving(10)
    assert first == again
    assert first != other
    assert 60 < len(set(first)) < 140, "about half of the messages are lost"
    assert len(first) > len(set(first)), "some survivors are duplicated"


async def test_closed_transport_is_a_crashed_node() -> None:
    net = MemoryNetwork(seed=11)
    a, b, c = (net.transport(x) for x in "abc")
    await a.close()
    a.send(envelope("a", "b", 1))  # a crashed node sends nothing
    c.send(envelope("c", "a", 2))  # and receives nothing
    c.send(envelope("c", "b", FENCE))
    assert await receive_until_fence(b) == []
    assert (net.stats.sent, net.stats.dropped, net.stats.delivered) == (2, 1, 1)
    with pytest.raises(TransportClosedError):
        await a.receive()


async def test_closing_drops_the_inbox_and_copies_in_flight() -> None:
    net = MemoryNetwork(seed=12)
    a, b, c = (net.transport(x) for x in "abc")
    a.send(envelope("a", "b", 1))
    a.send(envelope("a", "c", FENCE))
    assert await receive_until_fence(c) == []  # so 1 sits in b's inbox
    a.send(envelope("a", "b", 2))  # in flight when b crashes
    await b.close()
    a.send(envelope("a", "c", FENCE))
    assert await receive_until_fence(c) == []
    assert (net.stats.delivered, net.stats.dropped) == (3, 1)
    with pytest.raises(TransportClosedError):
        await b.receive()


async def test_asking_again_for_an_address() -> None:
    net = MemoryNetwork(seed=13)
    a, b = net.transport("a"), net.transport("b")
    with pytest.raises(ConfigurationError):
        net.transport("a")
    a.send(envelope("a", "b", 1))  # in flight across b's restart: reaches the new b
    await b.close()
    restarted = net.transport("b")
    assert isinstance(restarted, MemoryTransport)
    assert restarted is not b and restarted.address == "b"
    a.send(envelope("a", "b", 2))
    assert commits(await receive_n(restarted, 2)) == [1, 2]
    with pytest.raises(TransportClosedError):
        await b.receive()


async def test_unknown_destination_is_dropped_and_counted() -> None:
    net = MemoryNetwork(seed=14)
    a = net.transport("a")
    a.send(envelope("a", "nobody", 1))
    assert (net.stats.sent, net.stats.dropped, net.stats.unknown_dst) == (1, 1, 1)


async def test_inbox_beyond_its_bound_drops_and_counts() -> None:
    net = MemoryNetwork(seed=15, inbox_max=3)
    a, b = net.transport("a"), net.transport("b")
    for n in range(5):
        a.send(envelope("a", "b", n))
    assert commits(await receive_n(b, 3)) == [0, 1, 2]
    a.send(envelope("a", "b", FENCE))
    assert await receive_until_fence(b) == []
    assert (net.stats.inbox_full, net.stats.dropped, net.stats.delivered) == (2, 2, 4)


async def test_messages_to_self_go_through_the_network() -> None:
    net = MemoryNetwork(seed=16, loss=1.0)
    a = net.transport("a")
    a.send(envelope("a", "a", 1))
    net.set_faults(loss=0.0)
    a.send(envelope("a", "a", 2))
    assert commits(await receive_n(a, 1)) == [2]
    assert net.stats.dropped == 1


async def test_stats_account_for_every_copy() -> None:
    net = MemoryNetwork(seed=17, loss=0.3, duplicate=0.3, inbox_max=50)
    a, _, _, d = (net.transport(x) for x in "abcd")
    for n in range(300):
        a.send(envelope("a", "bc"[n % 2], n))
    a.send(envelope("a", "nobody", 0))
    net.set_faults(loss=0.0, duplicate=0.0)
    a.send(envelope("a", "d", FENCE))  # to an empty inbox, so the fence itself gets in
    await receive_until_fence(d)
    s = net.stats
    assert s.sent + s.duplicated == s.delivered + s.dropped
    assert s.inbox_full > 0 and s.unknown_dst == 1 and s.duplicated > 0


def test_send_needs_a_running_loop() -> None:
    net = MemoryNetwork()
    a = net.transport("a")
    with pytest.raises(ConfigurationError):
        a.send(envelope("a", "a", 1))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": -0.1},
        {"duplicate": 1.1},
        {"delay_s": (0.5, 0.1)},
        {"delay_s": (-1.0, 0.0)},
        {"inbox_max": 0},
    ],
)
def test_rejects_bad_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        MemoryNetwork(**kwargs)  # type: ignore[arg-type]


def test_rejects_an_empty_address() -> None:
    with pytest.raises(ConfigurationError):
        MemoryNetwork().transport("")
