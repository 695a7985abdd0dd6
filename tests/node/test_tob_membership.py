"""Membership change through the public ``TotalOrderBroadcast`` API, on a ``MemoryNetwork``.

Grow 3 -> 5 (learners catch up, then are promoted, and then vote), remove
the leader (it steps down, the others elect, nothing acknowledged is lost),
replace a node (remove it, add a new id), and the refusals. No test sleeps to
wait: each waits on a broadcast, a delivery or a change, with a timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from paxostob import (
    Delivery,
    Membership,
    MembershipError,
    MemoryNetwork,
    NotLeaderError,
    TotalOrderBroadcast,
)

TICK = 0.002
WAIT_S = 10.0
FOUNDERS = ["n1", "n2", "n3"]


def node(net: MemoryNetwork, name: str, *, join: bool = False) -> TotalOrderBroadcast:
    return TotalOrderBroadcast(
        net.transport(name), FOUNDERS, tick_interval_s=TICK, seed=7, join=join
    )


async def take(tob: TotalOrderBroadcast, count: int) -> list[Delivery]:
    async def run() -> list[Delivery]:
        return [await tob.deliver() for _ in range(count)]

    return await asyncio.wait_for(run(), WAIT_S)


async def at_leader(
    nodes: dict[str, TotalOrderBroadcast],
    call: Callable[[TotalOrderBroadcast], Awaitable[Membership]],
) -> Membership:
    """Run ``call`` at the leader, following ``NotLeaderError`` (an election may be under way)."""
    target = next(iter(nodes.values()))
    for _ in range(50):
        try:
            return await call(target)
        except NotLeaderError as e:
            if e.leader in nodes:
                target = nodes[e.leader]
            else:
                # No leader known yet: a broadcast resolves once one leads.
                await next(iter(nodes.values())).broadcast(b"probe", timeout=WAIT_S)
                leader = next(iter(nodes.values())).leader
                target = nodes[leader] if leader is not None and leader in nodes else target
    raise AssertionError("no leader took the change")


def adding(new: str) -> Callable[[TotalOrderBroadcast], Awaitable[Membership]]:
    return lambda t: t.add_member(new, f"mem:{new}", timeout=WAIT_S)


def promoting(new: str) -> Callable[[TotalOrderBroadcast], Awaitable[Membership]]:
    return lambda t: t.promote_member(new, timeout=WAIT_S)


async def started(*tobs: TotalOrderBroadcast) -> None:
    for t in tobs:
        await t.start()


async def test_grow_three_to_five_learners_catch_up_are_promoted_and_vote() -> None:
    net = MemoryNetwork(seed=11)
    nodes = {m: node(net, m) for m in FOUNDERS}
    seen: list[Membership] = []
    nodes["n2"].on_membership(seen.append)
    await started(*nodes.values())
    try:
        first = await nodes["n1"].broadcast(b"before", timeout=WAIT_S)
        for new in ("n4", "n5"):
            joiner = node(net, new, join=True)
            await joiner.start()
            got = await at_leader(nodes, adding(new))
            assert new in got.learners and got.addresses[new] == f"mem:{new}"
            nodes[new] = joiner
            # The learner catches up from slot 1: it delivers what came before.
            assert (await take(joiner, 1))[0] == first
            got = await at_leader(nodes, promoting(new))
            assert new in got.voters
        leader = nodes[nodes["n1"].leader or "n1"]
        assert leader.members().voters == ("n1", "n2", "n3", "n4", "n5")
        # With two founders cut off, three of five still decide: the new voters vote.
        lead = leader.address
        others = [m for m in nodes if m != lead]
        cut = [m for m in others if m in FOUNDERS][:2]
        net.partition([m for m in nodes if m not in cut], cut)
        d = await leader.broadcast(b"two founders away", timeout=WAIT_S)
        assert d.payload == b"two founders away"
        net.heal()
        # A follower's callback saw every configuration take effect, in order.
        learners_seen = [m.learners for m in seen]
        assert ("n4",) in learners_seen and seen[-1].voters == ("n1", "n2", "n3", "n4", "n5")
    finally:
        for t in nodes.values():
            await t.close()


async def test_removing_the_leader_steps_it_down_and_loses_nothing_acknowledged() -> None:
    net = MemoryNetwork(seed=12)
    nodes = {m: node(net, m) for m in FOUNDERS}
    await started(*nodes.values())
    try:
        acked = [await nodes["n2"].broadcast(f"m{i}".encode(), timeout=WAIT_S) for i in range(5)]
        leader = nodes["n2"].leader
        assert leader is not None
        got = await nodes[leader].remove_member(leader, timeout=WAIT_S)
        assert leader not in got.voters and len(got.voters) == 2
        rest = {m: t for m, t in nodes.items() if m != leader}
        after = await next(iter(rest.values())).broadcast(b"after", timeout=WAIT_S)
        new_leader = next(iter(rest.values())).leader
        assert new_leader in rest and new_leader != leader
        for t in rest.values():
            delivered = await take(t, len(acked) + 1)
            assert delivered == [*acked, after]
        assert nodes[leader].status().role.value == "follower"
    finally:
        for t in nodes.values():
            await t.close()


async def test_replace_a_node_remove_it_then_add_and_promote_a_new_id() -> None:
    net = MemoryNetwork(seed=13)
    nodes = {m: node(net, m) for m in FOUNDERS}
    await started(*nodes.values())
    try:
        await nodes["n1"].broadcast(b"x", timeout=WAIT_S)
        victim = next(m for m in FOUNDERS if m != nodes["n1"].leader)
        await at_leader(nodes, lambda t: t.remove_member(victim, timeout=WAIT_S))
        await nodes.pop(victim).close()  # its disk is gone
        fresh = node(net, "n4", join=True)
        await fresh.start()
        nodes["n4"] = fresh
        await at_leader(nodes, lambda t: t.add_member("n4", "mem:n4", timeout=WAIT_S))
        await take(fresh, 1)
        got = await at_leader(nodes, lambda t: t.promote_member("n4", timeout=WAIT_S))
        assert set(got.voters) == {*FOUNDERS, "n4"} - {victim}
        # The removed id never comes back.
        with pytest.raises(MembershipError, match="removed before"):
            await at_leader(nodes, lambda t: t.add_member(victim, "mem:x", timeout=WAIT_S))
    finally:
        for t in nodes.values():
            await t.close()


async def test_refusals_say_why_and_change_nothing() -> None:
    net = MemoryNetwork(seed=14)
    nodes = {m: node(net, m) for m in FOUNDERS}
    await started(*nodes.values())
    try:
        await nodes["n1"].broadcast(b"x", timeout=WAIT_S)
        leader_id = nodes["n1"].leader
        assert leader_id is not None
        leader = nodes[leader_id]
        follower = next(t for m, t in nodes.items() if m != leader_id)
        with pytest.raises(NotLeaderError) as e:
            await follower.add_member("n9", "mem:n9", timeout=WAIT_S)
        assert e.value.leader == leader_id
        with pytest.raises(MembershipError, match="not a member"):
            await leader.remove_member("nobody", timeout=WAIT_S)
        with pytest.raises(MembershipError, match="not a learner"):
            await leader.promote_member("n2", timeout=WAIT_S)
        # Two changes at once: one is taken, the other refused.
        results = await asyncio.gather(
            leader.add_member("n8", "mem:n8", timeout=WAIT_S),
            leader.add_member("n9", "mem:n9", timeout=WAIT_S),
            return_exceptions=True,
        )
        refused = [r for r in results if isinstance(r, MembershipError)]
        assert len(refused) == 1 and "one change at a time" in str(refused[0]), results
        assert isinstance(results[0], Membership) and "n8" in results[0].learners
        # n8 was never started: it never answered, so it is not promoted.
        with pytest.raises(MembershipError, match="has not answered"):
            await leader.promote_member("n8", timeout=WAIT_S)
        assert leader.members().voters == tuple(FOUNDERS)
        assert leader.members().learners == ("n8",)
        assert leader.members().lag.keys() == {"n8"}
    finally:
        for t in nodes.values():
            await t.close()


async def test_the_last_voter_cannot_be_removed() -> None:
    net = MemoryNetwork(seed=15)
    async with TotalOrderBroadcast(net.transport("solo"), ["solo"], tick_interval_s=TICK) as t:
        await t.broadcast(b"x", timeout=WAIT_S)
        with pytest.raises(MembershipError, match="last voter"):
            await t.remove_member("solo", timeout=WAIT_S)
        assert t.members().voters == ("solo",)


def test_a_window_wider_than_alpha_is_refused() -> None:
    from paxostob import ConfigurationError, LogConfig

    net = MemoryNetwork(seed=18)
    with pytest.raises(ConfigurationError, match="window_slots_max"):
        TotalOrderBroadcast(net.transport("n1"), ["n1"], config=LogConfig(window_slots_max=65))


def test_join_refuses_a_founding_member() -> None:
    from paxostob import ConfigurationError

    net = MemoryNetwork(seed=16)
    with pytest.raises(ConfigurationError, match="joins"):
        TotalOrderBroadcast(net.transport("n1"), FOUNDERS, join=True)


async def test_a_joined_node_restarts_on_its_store_and_refuses_without_one() -> None:
    from paxostob import MemoryStorage, StoreMissingError

    net = MemoryNetwork(seed=17)
    nodes = {m: node(net, m) for m in FOUNDERS}
    await started(*nodes.values())
    store = MemoryStorage()
    try:
        await nodes["n1"].broadcast(b"x", timeout=WAIT_S)
        transport = net.transport("n4")
        first = TotalOrderBroadcast(
            transport,
            FOUNDERS,
            tick_interval_s=TICK,
            join=True,
            storage=store,
            bootstrap=True,
        )
        await first.start()
        await at_leader(nodes, adding("n4"))
        assert (await take(first, 1))[0].payload == b"x"
        await first.close()
        await transport.close()
        transport = net.transport("n4")
        again = TotalOrderBroadcast(
            transport, FOUNDERS, tick_interval_s=TICK, join=True, storage=store
        )
        await again.start()  # its store is found: no bootstrap needed
        assert again.members().learners == ("n4",)
        await again.close()
        await transport.close()
        lost = TotalOrderBroadcast(
            net.transport("n4"),
            FOUNDERS,
            tick_interval_s=TICK,
            join=True,
            storage=MemoryStorage(),
        )
        with pytest.raises(StoreMissingError):
            await lost.start()
    finally:
        for t in nodes.values():
            await t.close()
