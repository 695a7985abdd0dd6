"""The public ``Consensus`` API on a faulty ``MemoryNetwork``.

The Go original's scenarios (one node, two, three, everyone proposing at
once), the uniform consensus properties over many seeded fault schedules,
and regressions for the original's defects that show at this level.
"""

from __future__ import annotations

import asyncio
import random
from functools import partial

import pytest

from paxostob import Consensus, MemoryNetwork, QuorumTimeoutError, TotalOrderBroadcast

from .schedule import after_completions
from .virtual_time import run_virtual

TICK = 0.002


def names(n: int) -> list[str]:
    return [f"peer{i}" for i in range(1, n + 1)]


async def test_one_node_alone_decides_its_own_value() -> None:
    net = MemoryNetwork(seed=1)
    async with Consensus(net.transport("peer1"), ["peer1"], tick_interval_s=TICK) as c:
        assert await c.propose(b"solo", timeout=5) == b"solo"
        assert await c.decided(timeout=1) == b"solo"
        # A decision is final: a later proposal returns it at once.
        assert await c.propose(b"other", timeout=1) == b"solo"


@pytest.mark.parametrize("n", [2, 3])
async def test_every_node_proposes_and_all_decide_the_same(n: int) -> None:
    net = MemoryNetwork(seed=n)
    members = names(n)
    nodes = [
        Consensus(net.transport(m), members, instance="config-v7", tick_interval_s=TICK)
        for m in members
    ]
    for c in nodes:
        await c.start()
    try:
        got = await asyncio.gather(
            *(c.propose(m.encode(), timeout=10) for c, m in zip(nodes, members, strict=True))
        )
        assert len(set(got)) == 1 and got[0] in {m.encode() for m in members}
    finally:
        for c in nodes:
            await c.close()


async def test_a_node_that_never_proposed_learns_the_decision() -> None:
    net = MemoryNetwork(seed=5, loss=0.2)
    members = names(3)
    nodes = [Consensus(net.transport(m), members, tick_interval_s=TICK) for m in members]
    for c in nodes:
        await c.start()
    try:
        assert await nodes[0].propose(b"v", timeout=10) == b"v"
        assert await nodes[2].decided(timeout=10) == b"v"
        assert await nodes[1].decided(timeout=10) == b"v"
    finally:
        for c in nodes:
            await c.close()


async def test_timeout_without_quorum_raises_a_timeout_error() -> None:
    net = MemoryNetwork(seed=2)
    members = names(3)
    async with Consensus(net.transport("peer1"), members, tick_interval_s=TICK) as c:
        with pytest.raises(QuorumTimeoutError) as info:
            await c.propose(b"alone", timeout=0.1)
        assert isinstance(info.value, TimeoutError)
        assert c.decision is None


async def test_instances_sharing_a_transport_do_not_interfere() -> None:
    """Defect 1 of the Go original: messages without an instance id were stolen."""
    net = MemoryNetwork(seed=3, duplicate=0.2, delay_s=(0.0, 0.002))
    members = names(3)
    transports = [net.transport(m) for m in members]
    alpha = [Consensus(t, members, instance="alpha", tick_interval_s=TICK) for t in transports]
    beta = [Consensus(t, members, instance="beta", tick_interval_s=TICK) for t in transports]
    tob = [TotalOrderBroadcast(t, members, tick_interval_s=TICK) for t in transports]
    for c in (*alpha, *beta):
        await c.start()
    for t in tob:
        await t.start()
    try:
        results = await asyncio.gather(
            *(c.propose(b"A", timeout=10) for c in alpha),
            *(c.propose(b"B", timeout=10) for c in beta),
            tob[1].broadcast(b"T", timeout=10),
        )
        assert results[:3] == [b"A"] * 3
        assert results[3:6] == [b"B"] * 3
        for t in tob:
            d = await asyncio.wait_for(t.deliver(), 10)
            assert (d.slot, d.sender, d.payload) == (1, "peer2", b"T")
    finally:
        for c in (*alpha, *beta):
            await c.close()
        for t in tob:
            await t.close()


# ------------------------------------------------------------- properties

SCHEDULES = 500


async def one_schedule(seed: int) -> None:
    """One seeded fault schedule; raises AssertionError naming the broken property."""
    rng = random.Random(seed)
    n = rng.choice([1, 2, 3, 3, 4, 5, 5])
    members = names(n)
    net = MemoryNetwork(
        seed=seed,
        loss=rng.choice([0.0, 0.1, 0.3]),
        duplicate=rng.choice([0.0, 0.2]),
        delay_s=(0.0, rng.choice([0.0, 0.001, 0.004])),
    )
    crashed = set(rng.sample(members, rng.randint(0, (n - 1) // 2)))
    proposers = [m for m in members if rng.random() < 0.7]
    live = [m for m in members if m not in crashed]
    if not set(proposers) & set(live):
        # Termination is promised when a correct node proposes.
        proposers.append(live[0])
    proposed = {m: f"{m}/{seed}".encode() for m in proposers}
    transports = {m: net.transport(m) for m in members}
    nodes = {
        m: Consensus(transports[m], members, instance=f"s{seed}", tick_interval_s=0.001, seed=seed)
        for m in members
    }
    for c in nodes.values():
        await c.start()
    decided: dict[str, bytes] = {}
    try:
        tasks = {
            m: asyncio.ensure_future(nodes[m].propose(proposed[m]))
            if m in proposed
            else asyncio.ensure_future(nodes[m].decided())
            for m in members
        }
        # Crash a minority at a random moment (maybe before it did anything).
        await after_completions(tasks.values(), rng.choice([0, 0, 1, 2]), 0.05)
        for m in crashed:
            await nodes[m].close()
            await transports[m].close()
            tasks[m].cancel()
        # Heal: termination is promised once a majority is up and can talk.
        await after_completions(tasks.values(), rng.choice([0, 1]), 0.05)
        net.set_faults(loss=0.0, duplicate=0.0, delay_s=(0.0, 0.0))
        for m in members:
            if m in crashed:
                continue
            try:
                decided[m] = await asyncio.wait_for(asyncio.shield(tasks[m]), 10)
            except TimeoutError:
                raise AssertionError(f"termination: {m} did not decide") from None
            # Integrity: the decision never changes once made.
            assert nodes[m].decision == decided[m], "integrity"
        for m in crashed:
            value = nodes[m].decision
            if value is not None:
                decided[m] = value  # uniform: crashed deciders must agree too
    finally:
        for c in nodes.values():
            await c.close()
    assert len(set(decided.values())) == 1, f"uniform agreement: {decided}"
    assert set(decided.values()) <= set(proposed.values()), f"validity: {decided}"


def test_uniform_consensus_properties_over_seeded_fault_schedules() -> None:
    """Validity, integrity, uniform agreement, termination over 500 schedules.

    Loss, duplication, delays that reorder, crashed minorities. A failure
    names its seed; replay it with
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
