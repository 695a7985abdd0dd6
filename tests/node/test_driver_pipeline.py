"""The Driver's persistence pipeline, with a scripted replica and a disk that waits for the test.

What it must do (node/driver.py): early messages leave at once; late ones,
and ``Persisted``, only after the save of their Ready and of every earlier
one returned; Readys queued behind a save in flight share the next save
(group commit); at most ``persist_queue_max`` Readys wait; ``close`` waits
for the save in flight and saves what is queued.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

from paxostob.core.events import AcceptedEntry, Event, Persisted, Ready
from paxostob.core.messages import Accepted, Envelope, Heartbeat
from paxostob.core.types import Ballot, DecidedEntry, Proposal, ProposalId, Snapshot
from paxostob.node.driver import Driver

BALLOT = Ballot(1, "a")
WAIT_S = 10.0  # a bound on every wait, never a pause


def ready(seq: int) -> Ready:
    """Ready ``seq``: an acceptance to save, an early heartbeat, a late acknowledgement."""
    return Ready(
        accepted=(AcceptedEntry(seq, BALLOT, ()),),
        early=(Envelope("b", Heartbeat("i", "a", BALLOT, seq)),),
        messages=(Envelope("b", Accepted("i", "a", BALLOT, seq, None)),),
        must_sync=True,
        seq=seq,
    )


class Replica:
    """Hands out ``readies`` in order; logs what the driver does with it."""

    def __init__(self, readies: list[Ready], log: list[tuple[str, object]]) -> None:
        self.readies = readies
        self.log = log
        self.handed = 0
        self.persisted = 0
        self.done = asyncio.Event()

    def step(self, event: Event) -> None:
        if isinstance(event, Persisted):
            assert event.seq > self.persisted, "Persisted went backwards"
            self.persisted = event.seq
            self.log.append(("persisted", event.seq))
            if event.seq == len(self.readies):
                self.done.set()

    def has_ready(self) -> bool:
        return self.handed < len(self.readies)

    def ready(self) -> Ready:
        return self.readies[self.handed]

    def advance(self, rd: Ready) -> None:
        self.handed = rd.seq
        self.log.append(("handed", rd.seq))


class Transport:
    def __init__(self, log: list[tuple[str, object]]) -> None:
        self.log = log
        self._never: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()

    @property
    def address(self) -> str:
        return "a"

    def send(self, envelope: Envelope) -> None:
        m = envelope.message
        kind = "early" if isinstance(m, Heartbeat) else "late"
        self.log.append((kind, m.commit if isinstance(m, Heartbeat) else m.slot))  # type: ignore[union-attr]

    async def receive(self) -> Envelope:
        return await self._never

    async def close(self) -> None:
        pass


class Disk:
    """``persist``: the first save waits until the test opens the gate; every save is logged."""

    def __init__(self, log: list[tuple[str, object]]) -> None:
        self.log = log
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self, rd: Ready) -> None:
        self.entered.set()
        assert self.gate.wait(WAIT_S), "the test never opened the gate"
        self.log.append(("saved", tuple(a.slot for a in rd.accepted)))


def pipeline_driver(replica: Replica, transport: Any, name: str, **kwargs: Any) -> Driver:
    """A driver of ``replica`` on a 1 ms tick whose Readys the test inspects itself."""
    return Driver(
        replica, transport, name, tick_interval_s=0.001, on_ready=lambda rd: None, **kwargs
    )


async def run_to_done(driver: Driver, replica: Replica) -> None:
    """Run ``driver`` until ``replica`` handed out all its Readys, then close it."""
    driver.start()
    try:
        await asyncio.wait_for(replica.done.wait(), WAIT_S)
    finally:
        await driver.close()


def make(n: int, queue_max: int) -> tuple[Driver, Replica, Disk, list[tuple[str, object]]]:
    log: list[tuple[str, object]] = []
    replica = Replica([ready(i) for i in range(1, n + 1)], log)
    disk = Disk(log)
    driver = pipeline_driver(
        replica,
        Transport(log),
        "pipeline-test",
        persist=disk,
        persist_queue_max=queue_max,
        inline_sync_s_max=0,  # every synced save with early messages in the thread
    )
    return driver, replica, disk, log


async def test_late_messages_wait_for_every_earlier_save_and_queued_readys_share_one() -> None:
    driver, replica, disk, log = make(6, queue_max=3)
    driver.start()
    try:
        assert await asyncio.to_thread(disk.entered.wait, WAIT_S)
        # Ready 1 is being saved; 2 and 3 wait behind it; the bound stops the 4th.
        assert log == [
            ("early", 1),
            ("handed", 1),
            ("early", 2),
            ("handed", 2),
            ("early", 3),
            ("handed", 3),
        ]
        disk.gate.set()
        await asyncio.wait_for(replica.done.wait(), WAIT_S)
    finally:
        disk.gate.set()
        await driver.close()
    saved: list[int] = []
    for i, (kind, what) in enumerate(log):
        if kind == "late":
            assert isinstance(what, int)
            assert what in saved, f"Accepted {what} left before its save: {log[: i + 1]}"
            assert saved == list(range(1, max(saved) + 1)), "saves out of order"
        elif kind == "persisted":
            assert isinstance(what, int) and set(range(1, what + 1)) <= set(saved)
        elif kind == "saved":
            assert isinstance(what, tuple)
            saved.extend(what)
    assert saved == [1, 2, 3, 4, 5, 6]
    assert [w for k, w in log if k == "late"] == [1, 2, 3, 4, 5, 6]
    assert ("saved", (2, 3)) in log, "Readys 2 and 3 were not saved together"
    assert driver.saves < driver.saved_readies == 6
    handed = [w for k, w in log if k == "handed"]
    assert handed == [1, 2, 3, 4, 5, 6]


async def test_close_waits_for_the_save_in_flight_and_saves_the_queue() -> None:
    driver, _, disk, log = make(3, queue_max=10)
    driver.start()
    assert await asyncio.to_thread(disk.entered.wait, WAIT_S)
    await asyncio.gather(driver.close(), asyncio.to_thread(disk.gate.set))
    assert [w for k, w in log if k == "saved"] == [(1,), (2, 3)]
    # Stopped: nothing late leaves, nothing is stepped after the saves.
    assert not [e for e in log if e[0] in ("late", "persisted")]


async def test_without_storage_everything_is_immediate() -> None:
    log: list[tuple[str, object]] = []
    replica = Replica([ready(i) for i in range(1, 4)], log)
    driver = pipeline_driver(
        replica,
        Transport(log),
        "pipeline-test-2",
    )
    await run_to_done(driver, replica)
    assert log[:4] == [("early", 1), ("late", 1), ("handed", 1), ("persisted", 1)]


async def test_a_save_with_nothing_early_runs_on_the_loop_one_with_early_in_a_thread() -> None:
    # A follower's Ready (votes only, all late) has nothing to overlap its fsync
    # with: it is saved on the loop thread. A leader's (early Accepts out) is saved
    # in a worker thread while the loop goes on, when the disk is busy (here: always).
    log: list[tuple[str, object]] = []
    votes_only = Ready(
        accepted=(AcceptedEntry(1, BALLOT, ()),),
        messages=(Envelope("b", Accepted("i", "a", BALLOT, 1, None)),),
        must_sync=True,
        seq=1,
    )
    replica = Replica([votes_only, ready(2)], log)
    threads: list[bool] = []

    def persist(rd: Ready) -> None:
        threads.append(threading.current_thread() is threading.main_thread())

    driver = pipeline_driver(
        replica,
        Transport(log),
        "pipeline-test-3",
        persist=persist,
        inline_sync_s_max=0,
    )
    await run_to_done(driver, replica)
    assert threads == [True, False]  # on the loop, then in a worker thread
    # Either way the vote left only after its save, and in order.
    assert [w for k, w in log if k == "late"] == [1, 2]


def decided_only(seq: int) -> Ready:
    """What a leader's Ready holds after a quorum voted: a decision to write
    (no sync: it can be learned again), its commit heartbeats early."""
    return Ready(
        decided=(DecidedEntry(seq, ()),),
        early=(Envelope("b", Heartbeat("i", "a", BALLOT, seq)),),
        messages=(Envelope("b", Accepted("i", "a", BALLOT, seq, None)),),
        seq=seq,
    )


async def test_a_save_without_a_sync_runs_on_the_loop_even_with_early_messages() -> None:
    # A decision alone is one write to the page cache: the thread hand-off
    # (two wake-ups) would cost more than the write. A synced save with early
    # messages still goes to the thread.
    log: list[tuple[str, object]] = []
    # A snapshot's install writes and syncs a whole file: never on the loop.
    with_snapshot = dataclasses.replace(decided_only(4), snapshot=Snapshot(4, b"", b"state"))
    replica = Replica([decided_only(1), ready(2), decided_only(3), with_snapshot], log)
    threads: list[tuple[int, bool]] = []

    def persist(rd: Ready) -> None:
        threads.append((rd.seq, threading.current_thread() is threading.main_thread()))

    driver = pipeline_driver(
        replica,
        Transport(log),
        "pipeline-test-4",
        persist=persist,
        inline_sync_s_max=0,
    )
    await run_to_done(driver, replica)
    assert threads == [(1, True), (2, False), (3, True), (4, False)]
    assert [w for k, w in log if k == "late"] == [1, 2, 3, 4]


async def test_a_save_without_a_sync_waits_for_the_synced_save_in_flight() -> None:
    # Saves are written in Ready order even when the later one is cheap enough
    # for the loop: it waits for the thread's save, and so do its late messages.
    log: list[tuple[str, object]] = []
    replica = Replica([ready(1), decided_only(2)], log)
    second_handed = asyncio.Event()
    advance = replica.advance

    def advance_and_tell(rd: Ready) -> None:
        advance(rd)
        if rd.seq == 2:
            second_handed.set()

    replica.advance = advance_and_tell  # type: ignore[method-assign]
    disk = Disk(log)
    saved: list[tuple[int, bool]] = []

    def persist(rd: Ready) -> None:
        if rd.must_sync:
            disk(rd)  # waits for the gate
        saved.append((rd.seq, threading.current_thread() is threading.main_thread()))

    driver = pipeline_driver(
        replica,
        Transport(log),
        "pipeline-test-5",
        persist=persist,
        inline_sync_s_max=0,
    )
    driver.start()
    try:
        assert await asyncio.to_thread(disk.entered.wait, WAIT_S)
        # Ready 2 was taken and handled meanwhile (its heartbeat left early),
        # and nothing of it was written nor sent late.
        await asyncio.wait_for(second_handed.wait(), WAIT_S)
        assert saved == [] and ("late", 2) not in log and ("early", 2) in log
        disk.gate.set()
        await asyncio.wait_for(replica.done.wait(), WAIT_S)
    finally:
        disk.gate.set()
        await driver.close()
    assert saved == [(1, False), (2, True)]
    assert [w for k, w in log if k == "late"] == [1, 2]
    assert log.index(("late", 2)) > log.index(("saved", (1,)))


async def test_the_leaders_synced_save_runs_on_the_loop_while_the_disk_is_mostly_idle() -> None:
    # One client: a round at a time, the disk idle between syncs. The thread
    # hand-off would cost more than blocking the loop for the fsync, once the
    # early Accepts are on their way (flushed first). Back-to-back saves, or a
    # slow sync (a busy disk), go to the thread: the loop has rounds to run.
    log: list[tuple[str, object]] = []
    now = [100.0]
    gaps = {1: 0.0, 2: 0.0, 3: 0.001, 4: 0.01, 5: 0.01, 6: 0.01}  # before each Ready
    takes = {1: 0.0002, 2: 0.0002, 3: 0.002, 4: 0.0002, 5: 0.0002, 6: 0.0002}  # each save

    class OneAtATime(Replica):
        """The next Ready only once the last is durable (a client waiting for its reply)."""

        def has_ready(self) -> bool:
            return self.handed < len(self.readies) and self.persisted >= self.handed

        def ready(self) -> Ready:
            rd = super().ready()
            now[0] += gaps[rd.seq]
            return rd

    class Flushing(Transport):
        def flush(self) -> None:
            self.log.append(("flush", None))

    # 5 carries 2 KiB of proposals: several clients' commands share that round.
    big = AcceptedEntry(5, BALLOT, (Proposal(ProposalId("a", 1), b"x" * 2048),))
    readies = [ready(i) for i in range(1, 7)]
    readies[4] = dataclasses.replace(readies[4], accepted=(big,))
    replica = OneAtATime(readies, log)
    on_loop: list[tuple[int, bool]] = []

    def persist(rd: Ready) -> None:
        now[0] += takes[rd.seq]
        on_loop.append((rd.seq, threading.current_thread() is threading.main_thread()))
        log.append(("saved", rd.seq))

    driver = pipeline_driver(
        replica,
        Flushing(log),
        "pipeline-test-6",
        persist=persist,
        inline_sync_s_max=0.001,
        inline_save_bytes_max=1024,
        clock=lambda: now[0],
    )
    await run_to_done(driver, replica)
    # 1: no sync yet, idle. 2: right after 1 (back to back). 3: idle again for
    # longer than 2 took. 4: idle, but 3's sync took longer than the bound.
    # 5: idle and quick again, but a big round. 6: the same with a small one.
    assert on_loop == [(1, True), (2, False), (3, True), (4, False), (5, False), (6, True)]
    for seq in (1, 3, 6):  # on the loop: its Accepts were written before the fsync began
        at = log.index(("saved", seq))
        assert log[at - 1] == ("flush", None) and log.index(("early", seq)) < at
    assert [w for k, w in log if k == "late"] == [1, 2, 3, 4, 5, 6]
