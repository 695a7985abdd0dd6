"""The Ready pipeline (core/pipeline.py): the order of sends, saves and ``Persisted``.

A scripted replica hands out given Readys; each test checks one rule of the
module docstring. The last tests show that the asyncio runtime, the
simulator and the scenario helper all drive this one object.
"""

from __future__ import annotations

import asyncio
from collections import deque

import pytest

from paxostob import MemoryNetwork, TotalOrderBroadcast
from paxostob.core.events import AcceptedEntry, Campaign, Event, Persisted, Ready
from paxostob.core.messages import Envelope, Heartbeat
from paxostob.core.pipeline import Complete, Pipeline, Save, writes
from paxostob.core.types import Ballot, DecidedEntry, Snapshot
from paxostob.sim.runner import simulate
from paxostob.storage.memory import MemoryStorage

from .scenario import Net

B = Ballot(1, "a")


def msg(n: int) -> Envelope:
    return Envelope("b", Heartbeat("tob", "a", B, n))


def commit(env: Envelope) -> int:
    assert isinstance(env.message, Heartbeat)
    return env.message.commit


def accepting(seq: int, *, early: bool = False) -> Ready:
    return Ready(
        accepted=(AcceptedEntry(seq, B, ()),),
        messages=(msg(seq),),
        early=(msg(100 + seq),) if early else (),
        must_sync=True,
        seq=seq,
    )


def sending_only(seq: int) -> Ready:
    return Ready(messages=(msg(seq),), seq=seq)


class Script:
    """A replica that hands out the given Readys and records what it was stepped with."""

    def __init__(self, *readies: Ready) -> None:
        self.readies = deque(readies)
        self.advanced: list[int] = []
        self.stepped: list[Event] = []

    def step(self, event: Event) -> None:
        self.stepped.append(event)

    def has_ready(self) -> bool:
        return bool(self.readies)

    def ready(self) -> Ready:
        return self.readies[0]

    def advance(self, ready: Ready) -> None:
        assert self.readies.popleft() is ready
        self.advanced.append(ready.seq)

    def persisted(self) -> list[int]:
        return [e.seq for e in self.stepped if isinstance(e, Persisted)]


def take_all(p: Pipeline) -> list[Ready]:
    taken = []
    while p.can_take():
        rd = p.take()
        p.handled(rd)
        taken.append(rd)
    return taken


def test_without_storage_every_ready_completes_at_once() -> None:
    replica = Script(accepting(1), sending_only(2))
    p = Pipeline(replica, durable=False)
    while p.can_take():
        rd = p.take()
        assert p.completes_at_once(rd)  # even one with entries: nothing to wait for
        p.handled(rd)
    assert replica.persisted() == [1, 2] and p.poll() is None and not p.queued


def test_a_ready_with_nothing_to_write_and_nothing_before_it_completes_at_once() -> None:
    replica = Script(sending_only(1))
    p = Pipeline(replica, durable=True)
    rd = p.take()
    assert p.completes_at_once(rd)
    p.handled(rd)
    assert replica.persisted() == [1] and not p.queued


def test_readys_queued_behind_a_save_are_written_together_and_complete_after_it() -> None:
    replica = Script(accepting(1), accepting(2), sending_only(3), accepting(4, early=True))
    p = Pipeline(replica, durable=True)
    first = p.take()
    assert not p.completes_at_once(first)
    p.handled(first)
    save = p.poll()
    assert isinstance(save, Save) and save.count == 1 and save.ready is first
    # While it is in flight, the others queue; even one with nothing to write
    # waits, since a Ready before it is not durable yet.
    take_all(p)
    assert p.poll() is None and replica.persisted() == []
    p.saved()
    done = p.poll()
    assert isinstance(done, Complete) and [r.seq for r in done.readies] == [1]
    assert replica.persisted() == [1]
    group = p.poll()
    assert isinstance(group, Save) and group.count == 3 and group.early
    assert [a.slot for a in group.ready.accepted] == [2, 4] and group.ready.seq == 4
    assert [commit(m) for m in group.ready.messages] == [2, 3, 4]
    p.saved()
    done = p.poll()
    assert isinstance(done, Complete) and [r.seq for r in done.readies] == [2, 3, 4]
    assert replica.persisted() == [1, 4] and p.poll() is None
    assert (p.saves, p.saved_readies) == (2, 4)


def test_a_snapshot_starts_a_new_group() -> None:
    snap = Ready(snapshot=Snapshot(5, b"", b""), seq=3)
    replica = Script(accepting(1), accepting(2), snap, accepting(4))
    p = Pipeline(replica, durable=True)
    p.handled(p.take())
    first = p.poll()
    assert isinstance(first, Save)
    take_all(p)
    p.saved()
    assert isinstance(p.poll(), Complete)
    second = p.poll()
    assert isinstance(second, Save) and second.count == 1 and second.ready.seq == 2
    p.saved()
    assert isinstance(p.poll(), Complete)
    third = p.poll()
    assert isinstance(third, Save) and third.ready.snapshot is not None and third.count == 2


def test_the_queue_bound_stops_taking_readys() -> None:
    replica = Script(accepting(1), accepting(2), accepting(3))
    p = Pipeline(replica, durable=True, queue_max=2)
    assert len(take_all(p)) == 2 and not p.can_take() and replica.has_ready()
    save = p.poll()
    assert isinstance(save, Save)
    p.saved()
    assert isinstance(p.poll(), Complete)
    assert p.can_take()


def test_a_group_with_nothing_to_write_completes_without_a_save() -> None:
    replica = Script(accepting(1), sending_only(2))
    p = Pipeline(replica, durable=True)
    p.handled(p.take())
    assert isinstance(p.poll(), Save)
    take_all(p)  # 2 waits behind the save in flight
    p.saved()
    assert isinstance(p.poll(), Complete)
    done = p.poll()
    assert isinstance(done, Complete) and [r.seq for r in done.readies] == [2]
    assert p.saves == 1 and replica.persisted() == [1, 2]


def test_what_a_stopping_runtime_still_writes() -> None:
    replica = Script(accepting(1), accepting(2), sending_only(3))
    p = Pipeline(replica, durable=True)
    p.handled(p.take())
    assert isinstance(p.poll(), Save)  # 1 in flight: not among the unsaved
    take_all(p)
    unsaved = p.unsaved()
    assert [[a.slot for a in g.accepted] for g in unsaved] == [[2]]
    p.clear()
    assert p.poll() is None and p.unsaved() == []


def test_writes_names_every_durable_part() -> None:
    assert not writes(sending_only(1))
    assert writes(Ready(promised=B))
    assert writes(Ready(decided=(DecidedEntry(1, ()),)))
    assert writes(Ready(snapshot=Snapshot(1, b"", b"")))


# ------------------------------------------------------------ one object for all


@pytest.fixture
def handled_by(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many Readys ``Pipeline.handled`` saw, by the replica's class."""
    counts: dict[str, int] = {}
    real = Pipeline.handled

    def spy(self: Pipeline, ready: Ready) -> None:
        name = type(self.replica).__name__
        counts[name] = counts.get(name, 0) + 1
        real(self, ready)

    monkeypatch.setattr(Pipeline, "handled", spy)
    return counts


def test_the_runtime_the_simulator_and_the_scenarios_drive_the_same_pipeline(
    handled_by: dict[str, int],
) -> None:
    async def runtime() -> None:
        net = MemoryNetwork(seed=3)
        nodes = [
            TotalOrderBroadcast(
                net.transport(m), ["a", "b", "c"], storage=MemoryStorage(), bootstrap=True
            )
            for m in "abc"
        ]
        for n in nodes:
            await n.start()
        try:
            await nodes[0].broadcast(b"x", timeout=10)
        finally:
            for n in nodes:
                await n.close()

    asyncio.run(runtime())
    after_runtime = handled_by.get("MultiPaxosReplica", 0)
    assert after_runtime > 0
    assert simulate(0).ok
    after_sim = handled_by["MultiPaxosReplica"]
    assert after_sim > after_runtime
    net = Net("abc")
    net.r["a"].step(Campaign())
    net.settle()
    assert handled_by["MultiPaxosReplica"] > after_sim
