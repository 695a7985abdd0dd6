"""The public ``TotalOrderBroadcast`` API on a (faulty) ``MemoryNetwork``.

Scenarios first (one node, two, three under faults, no quorum, back-pressure,
the ``deliveries()`` iterator), then the broadcast properties over many seeded
fault schedules: agreement and total order, no duplication, no creation, and
validity once the network heals.

No test sleeps to wait for something: each waits on a future or an event with
a timeout. The only sleeps are the moments of a fault schedule.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial

import pytest

from paxostob import (
    Delivery,
    LogConfig,
    MemoryNetwork,
    PayloadTooLargeError,
    QuorumTimeoutError,
    TotalOrderBroadcast,
)
from paxostob.core.types import CLOCK_STAMP_BYTES

from .schedule import after_completions
from .virtual_time import run_virtual

TICK = 0.002
#: Far above what any scenario here needs (tens of milliseconds): only bounds a bug.
WAIT_S = 10.0


def names(n: int) -> list[str]:
    return [f"peer{i}" for i in range(1, n + 1)]


async def take(node: TotalOrderBroadcast, count: int) -> list[Delivery]:
    """The next ``count`` deliveries of ``node``, bounded by ``WAIT_S``."""

    async def run() -> list[Delivery]:
        return [await node.deliver() for _ in range(count)]

    return await asyncio.wait_for(run(), WAIT_S)


class Cluster:
    """Started ``TotalOrderBroadcast`` nodes on one network; closes them all on exit."""

    def __init__(
        self,
        net: MemoryNetwork,
        members: Sequence[str],
        *,
        pending_max: int = 4096,
        seed: int | None = None,
    ) -> None:
        self.nodes = {
            m: TotalOrderBroadcast(
                net.transport(m),
                list(members),
                tick_interval_s=TICK,
                pending_max=pending_max,
                seed=seed,
            )
            for m in members
        }

    async def __aenter__(self) -> dict[str, TotalOrderBroadcast]:
        for node in self.nodes.values():
            await node.start()
        return self.nodes

    async def __aexit__(self, *exc: object) -> None:
        for node in self.nodes.values():
            await node.close()


# -------------------------------------------------------------- scenarios


async def test_a_node_alone_delivers_its_own_message() -> None:
    net = MemoryNetwork(seed=1)
    async with TotalOrderBroadcast(net.transport("peer1"), ["peer1"], tick_interval_s=TICK) as tob:
        d = await tob.broadcast(b"solo", timeout=WAIT_S)
        assert d == Delivery(slot=1, sender="peer1", payload=b"solo")
        assert await asyncio.wait_for(tob.deliver(), WAIT_S) == d
        assert tob.status().delivered == 1
        assert tob.status().pending == 0


async def test_two_nodes_both_broadcast_and_both_deliver_both_in_the_same_order() -> None:
    net = MemoryNetwork(seed=2)
    async with Cluster(net, names(2)) as nodes:
        a, b = nodes["peer1"], nodes["peer2"]
        da, db = await asyncio.gather(
            a.broadcast(b"from 1", timeout=WAIT_S), b.broadcast(b"from 2", timeout=WAIT_S)
        )
        assert (da.sender, da.payload) == ("peer1", b"from 1")
        assert (db.sender, db.payload) == ("peer2", b"from 2")
        assert {da.slot, db.slot} == {1, 2}
        expected = sorted([da, db], key=lambda d: d.slot)
        assert await take(a, 2) == expected
        assert await take(b, 2) == expected


async def test_three_nodes_broadcasting_under_faults_deliver_identical_sequences() -> None:
    """Loss, duplication and reordering delays; slots are 1, 2, 3, ... everywhere."""
    net = MemoryNetwork(seed=3, loss=0.1, duplicate=0.2, delay_s=(0.0, 0.003))
    per_node = 10
    async with Cluster(net, names(3), seed=3) as nodes:
        total = per_node * len(nodes)
        readers = [asyncio.ensure_future(take(node, total)) for node in nodes.values()]
        returned = await asyncio.wait_for(
            asyncio.gather(
                *(
                    node.broadcast(f"{m}#{i}".encode())
                    for i in range(per_node)
                    for m, node in nodes.items()
                )
            ),
            WAIT_S,
        )
        sequences = await asyncio.gather(*readers)
    first = sequences[0]
    assert all(seq == first for seq in sequences[1:]), "the delivery sequences differ"
    assert [d.slot for d in first] == list(range(1, total + 1))
    for d in first:
        assert d.payload.decode().startswith(d.sender + "#"), f"wrong sender in {d}"
    assert sorted(d.payload for d in first) == sorted(
        f"{m}#{i}".encode() for m in nodes for i in range(per_node)
    ), "a message was lost, duplicated or invented"
    # broadcast() resolves with the very Delivery every node sees.
    assert sorted(returned, key=lambda d: d.slot) == first


async def test_broadcast_times_out_without_quorum_and_is_delivered_once_later() -> None:
    """No quorum: ``QuorumTimeoutError``; the broadcast is not withdrawn.

    Two of three nodes are crashed (their transports closed) before they ever
    ran, so they hold no acceptor state. That is what makes restarting them
    from nothing safe here: storage is memory-only for now, and a restarted
    node that had promised or accepted something would forget it.

    Timing caveat: the timeout only says the broadcast was not delivered
    *within* 0.2 s. Without a quorum it cannot be, however fast the machine,
    so the error itself is certain; the delivery after the restart is bounded
    by ``WAIT_S`` (it takes an election plus a re-forward, tens of ms).
    """
    net = MemoryNetwork(seed=4)
    members = names(3)
    for m in ("peer2", "peer3"):
        await net.transport(m).close()
    async with TotalOrderBroadcast(net.transport("peer1"), members, tick_interval_s=TICK) as p1:
        with pytest.raises(QuorumTimeoutError) as info:
            await p1.broadcast(b"lonely", timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        assert p1.status().pending == 1, "the timed-out broadcast stays pending"

        # The missing nodes come back (new incarnations of the same addresses).
        async with (
            TotalOrderBroadcast(net.transport("peer2"), members, tick_interval_s=TICK) as p2,
            TotalOrderBroadcast(net.transport("peer3"), members, tick_interval_s=TICK) as p3,
        ):
            (first,) = await take(p1, 1)
            assert first == Delivery(slot=1, sender="peer1", payload=b"lonely")
            # A later broadcast is a barrier: were "lonely" delivered twice, the
            # second copy would come before it (it was proposed earlier).
            barrier = await p2.broadcast(b"barrier", timeout=WAIT_S)
            assert barrier.slot == 2
            for node in (p1, p2, p3):
                seen = [first] if node is p1 else await take(node, 1)
                seen += await take(node, 1)
                assert [(d.slot, d.payload) for d in seen] == [(1, b"lonely"), (2, b"barrier")]
            assert p1.status().pending == 0


async def test_back_pressure_holds_the_third_broadcast_until_one_completes() -> None:
    """``pending_max=2``: a third broadcast is not proposed while two are pending.

    Every node is alone in its own partition, so there is no leader and
    nothing completes until ``heal``.
    """
    net = MemoryNetwork(seed=5)
    members = names(3)
    net.partition(*([m] for m in members))
    async with Cluster(net, members, pending_max=2) as nodes:
        p1 = nodes["peer1"]
        pending_max_seen = 0

        async def sample() -> None:
            # Runs at every loop iteration, so it sees every state the driver
            # leaves between two of its own steps (it only runs for ~0.1 s).
            nonlocal pending_max_seen
            while True:
                pending_max_seen = max(pending_max_seen, p1.status().pending)
                await asyncio.sleep(0)

        sampler = asyncio.ensure_future(sample())
        try:
            first_two = [asyncio.ensure_future(p1.broadcast(p)) for p in (b"a", b"b")]
            # Let both take their room first (a yield to the loop, not a timed wait).
            for _ in range(1000):
                if p1.status().pending == 2:
                    break
                await asyncio.sleep(0)
            # The third waits for room; with a timeout it says so.
            with pytest.raises(QuorumTimeoutError, match="waiting for room"):
                await p1.broadcast(b"refused", timeout=0.05)
            assert p1.status().pending == 2
            third = asyncio.ensure_future(p1.broadcast(b"c"))
            net.heal()
            da, db, dc = await asyncio.wait_for(asyncio.gather(*first_two, third), WAIT_S)
        finally:
            sampler.cancel()
            await asyncio.wait({sampler})
        assert pending_max_seen == 2
        # "c" was proposed only once "a" or "b" was delivered here.
        assert dc.slot > min(da.slot, db.slot)
        assert sorted(d.payload for d in await take(p1, 3)) == [b"a", b"b", b"c"]


async def test_deliveries_iterates_in_order_and_ends_on_close() -> None:
    net = MemoryNetwork(seed=6)
    tob = TotalOrderBroadcast(net.transport("peer1"), ["peer1"], tick_interval_s=TICK)
    got: list[Delivery] = []
    count = 5
    all_seen = asyncio.Event()

    async def consume(stream: AsyncIterator[Delivery]) -> None:
        async for d in stream:
            got.append(d)
            if len(got) == count:
                all_seen.set()

    async with tob:
        consumer = asyncio.ensure_future(consume(tob.deliveries()))
        returned = await asyncio.gather(
            *(tob.broadcast(f"m{i}".encode(), timeout=WAIT_S) for i in range(count))
        )
        await asyncio.wait_for(all_seen.wait(), WAIT_S)
    # Closed: the iterator ends by itself (no cancellation needed).
    await asyncio.wait_for(consumer, WAIT_S)
    assert [d.slot for d in got] == list(range(1, count + 1))
    assert got == sorted(returned, key=lambda d: d.slot)


# ------------------------------------------------------------- properties

SCHEDULES = 300


def check_sequences(
    sequences: dict[str, list[Delivery]], broadcast: dict[bytes, str], live: Sequence[str]
) -> None:
    """Agreement/total order, no duplication, no creation, validity; AssertionError names which."""
    for m, seq in sequences.items():
        assert [d.slot for d in seq] == list(range(1, len(seq) + 1)), f"slots of {m}: gaps"
        payloads = [d.payload for d in seq]
        assert len(set(payloads)) == len(payloads), f"no duplication: {m} delivered twice"
        for d in seq:
            assert broadcast.get(d.payload) == d.sender, f"no creation: {m} delivered {d}"
    ordered = sorted(sequences.items(), key=lambda kv: len(kv[1]))
    for (m, shorter), (n, longer) in itertools.pairwise(ordered):
        assert longer[: len(shorter)] == shorter, f"total order: {m} and {n} diverge"
    for m in live:
        delivered = {d.payload for d in sequences[m]}
        missing = [p for p, s in broadcast.items() if s in live and p not in delivered]
        assert not missing, f"validity: {m} never delivered {missing[:3]}"


async def one_schedule(seed: int) -> None:
    """One seeded fault schedule; raises AssertionError naming the broken property.

    Loss up to 0.3, duplication, reordering delays, sometimes a partition,
    and a crashed minority (its transport closed at a random moment). Then
    the network heals and every live node's broadcasts must reach every live
    node.
    """
    rng = random.Random(seed)
    n = rng.choice([1, 2, 3, 3, 4, 5, 5])
    members = names(n)
    net = MemoryNetwork(
        seed=seed,
        loss=rng.choice([0.0, 0.1, 0.2, 0.3]),
        duplicate=rng.choice([0.0, 0.1, 0.3]),
        delay_s=(0.0, rng.choice([0.0, 0.001, 0.003])),
    )
    crashed = set(rng.sample(members, rng.randint(0, (n - 1) // 2)))
    live = [m for m in members if m not in crashed]
    if n > 2 and rng.random() < 0.3:
        cut = rng.randint(1, n - 1)
        shuffled = rng.sample(members, n)
        net.partition(shuffled[:cut], shuffled[cut:])
    transports = {m: net.transport(m) for m in members}
    nodes = {
        m: TotalOrderBroadcast(transports[m], members, tick_interval_s=0.001, seed=seed)
        for m in members
    }
    counts = {m: rng.randint(0, 6) for m in members}
    counts[rng.choice(live)] += 1  # validity is about something: a live node broadcasts
    payloads = {m: [f"{m}/{i}".encode() for i in range(counts[m])] for m in members}
    broadcast = {p: m for m, ps in payloads.items() for p in ps}
    live_payloads = {p for m in live for p in payloads[m]}
    sequences: dict[str, list[Delivery]] = {m: [] for m in members}
    caught_up = {m: asyncio.Event() for m in live}

    async def collect(m: str) -> None:
        async for d in nodes[m].deliveries():
            sequences[m].append(d)
            if m in caught_up and live_payloads <= {x.payload for x in sequences[m]}:
                caught_up[m].set()

    for node in nodes.values():
        await node.start()
    collectors = [asyncio.ensure_future(collect(m)) for m in members]
    sends = {
        p: asyncio.ensure_future(nodes[m].broadcast(p)) for m, ps in payloads.items() for p in ps
    }
    try:
        # Crash the minority at a random moment (maybe before it did anything).
        await after_completions(sends.values(), rng.choice([0, 1, 5, 20]), 0.1)
        for m in crashed:
            await transports[m].close()
        await after_completions(sends.values(), rng.choice([0, 5]), 0.05)
        net.heal()
        net.set_faults(loss=0.0, duplicate=0.0, delay_s=(0.0, 0.0))
        try:
            await asyncio.wait_for(asyncio.gather(*(caught_up[m].wait() for m in live)), WAIT_S)
            returned = await asyncio.wait_for(
                asyncio.gather(*(sends[p] for p in live_payloads)), WAIT_S
            )
        except TimeoutError:
            lagging = [m for m in live if not caught_up[m].is_set()]
            raise AssertionError(
                f"validity: {lagging} did not deliver every live broadcast"
            ) from None
        # broadcast() resolves with the Delivery its origin delivered.
        for d in returned:
            assert d in sequences[d.sender], f"broadcast returned {d}, never delivered there"
    finally:
        for node in nodes.values():
            await node.close()
        await asyncio.gather(*collectors, *sends.values(), return_exceptions=True)
    check_sequences(sequences, broadcast, live)


def test_broadcast_properties_over_seeded_fault_schedules() -> None:
    """Agreement/total order, no duplication, no creation, validity over 300 schedules.

    A failure names its seed; replay it with
    ``run_virtual(partial(one_schedule, seed))``. Each schedule runs on its own
    event loop on virtual time (virtual_time.py), so the crash moments and every
    timeout fall at the same virtual instants on every run, however loaded the
    machine.
    """
    failures: list[str] = []
    for seed in range(SCHEDULES):
        try:
            run_virtual(partial(one_schedule, seed))
        except AssertionError as e:
            failures.append(f"seed {seed}: {e}")
    assert not failures, "replay with run_virtual(partial(one_schedule, seed)):\n" + "\n".join(
        failures[:10]
    )


# ------------------------------------------------------ checker self-test


def corrupt(change: Callable[[dict[str, list[Delivery]]], None]) -> dict[str, list[Delivery]]:
    good = [Delivery(1, "a", b"a/0"), Delivery(2, "b", b"b/0")]
    sequences = {"a": list(good), "b": list(good), "c": good[:1]}
    change(sequences)
    return sequences


@pytest.mark.parametrize(
    ("change", "property_"),
    [
        (lambda s: s["c"].__setitem__(0, Delivery(1, "b", b"b/0")), "total order"),
        (lambda s: s["a"].append(Delivery(3, "a", b"a/0")), "no duplication"),
        (lambda s: s["a"].append(Delivery(3, "a", b"a/9")), "no creation"),
        (lambda s: s["b"].__setitem__(1, Delivery(2, "a", b"b/0")), "no creation"),
        (lambda s: s["b"].pop(), "validity"),
        (lambda s: s["a"].__setitem__(1, Delivery(3, "b", b"b/0")), "gaps"),
    ],
)
def test_the_checker_catches_each_broken_property(
    change: Callable[[dict[str, list[Delivery]]], None], property_: str
) -> None:
    broadcast = {b"a/0": "a", b"b/0": "b"}
    check_sequences(corrupt(lambda s: None), broadcast, ["a", "b"])  # the good case passes
    with pytest.raises(AssertionError, match=property_):
        check_sequences(corrupt(change), broadcast, ["a", "b"])


# ------------------------------------------------- regressions (found in review)


async def test_a_restarted_node_broadcasts_a_new_message() -> None:
    net = MemoryNetwork(seed=7)
    members = names(3)
    transports = {m: net.transport(m) for m in members}
    nodes = {m: TotalOrderBroadcast(transports[m], members, tick_interval_s=TICK) for m in members}
    for node in nodes.values():
        await node.start()
    try:
        before = await nodes["peer3"].broadcast(b"before crash", timeout=WAIT_S)
        # Crash peer3 and bring it back as a new node on the same address.
        await nodes["peer3"].close()
        await transports["peer3"].close()
        nodes["peer3"] = TotalOrderBroadcast(net.transport("peer3"), members, tick_interval_s=TICK)
        await nodes["peer3"].start()
        after = await nodes["peer3"].broadcast(b"after restart", timeout=2.0)
        assert after.payload == b"after restart", f"resolved with {after}"
        assert after.slot == before.slot + 1
        assert [d.payload for d in await take(nodes["peer1"], 2)] == [
            b"before crash",
            b"after restart",
        ]
    finally:
        for node in nodes.values():
            await node.close()


async def test_closing_a_node_with_a_timed_out_broadcast_logs_nothing() -> None:
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(str(context["message"])))
    try:
        net = MemoryNetwork(seed=8)
        members = names(3)
        for m in ("peer2", "peer3"):
            await net.transport(m).close()
        node = TotalOrderBroadcast(net.transport("peer1"), members, tick_interval_s=TICK)
        async with node:
            with pytest.raises(QuorumTimeoutError):
                await node.broadcast(b"never delivered", timeout=0.05)
        del node
        gc.collect()
        assert reported == []
    finally:
        loop.set_exception_handler(None)


async def test_a_payload_too_large_is_refused_before_it_takes_a_proposal_number() -> None:
    # A number taken and then dropped would be a hole in this life's numbers,
    # which every replica (and every snapshot) would keep for good.
    address = "a-node-id-forty-characters-long-0123456"
    net = MemoryNetwork(seed=31)
    config = LogConfig(batch_bytes_max=4096)
    async with TotalOrderBroadcast(
        net.transport(address), [address], tick_interval_s=0.002, config=config
    ) as node:
        fits = 4096 - (16 + len(address) + CLOCK_STAMP_BYTES)
        await node.broadcast(b"x" * fits, timeout=10)
        numbered = node._replica.proposals._seq
        with pytest.raises(PayloadTooLargeError):
            await node.broadcast(b"x" * (fits + 1), timeout=10)
        assert node._replica.proposals._seq == numbered


async def test_read_index_returns_once_this_node_delivered_what_was_delivered_before() -> None:
    """A node cut off during a broadcast has it in its queue when ``read_index`` returns."""
    net = MemoryNetwork(seed=31)
    async with Cluster(net, names(3)) as nodes:
        await nodes["peer1"].broadcast(b"warm up", timeout=WAIT_S)
        for node in nodes.values():
            await take(node, 1)
        leader = nodes["peer1"].leader
        assert leader is not None
        lagging = next(m for m in names(3) if m != leader)
        net.partition([lagging], [m for m in names(3) if m != lagging])
        writer = nodes[leader]
        await writer.broadcast(b"while away", timeout=WAIT_S)
        net.heal()
        before = nodes[lagging].status().delivered
        await nodes[lagging].read_index(timeout=WAIT_S)
        assert nodes[lagging].status().delivered >= before + 1
        assert [d.payload for d in await take(nodes[lagging], 1)] == [b"while away"]


async def test_read_index_without_a_quorum_times_out() -> None:
    net = MemoryNetwork(seed=32)
    members = names(3)
    for m in ("peer2", "peer3"):
        await net.transport(m).close()
    async with TotalOrderBroadcast(net.transport("peer1"), members, tick_interval_s=TICK) as p1:
        with pytest.raises(QuorumTimeoutError):
            await p1.read_index(timeout=0.2)
