"""``KeyValueStore`` embedded in a program: three in-memory nodes on a lossy network.

The API the Go original's KVS example had (put on one node, get on another),
now linearizable: ``put`` resolves once the write is applied on its own node,
and ``get`` on any node goes through the log, so it sees every write
acknowledged before it, with no waiting. With durable storage the data
survives a restart of every node (snapshot restore plus log replay).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from paxostob import (
    ConfigurationError,
    Delivery,
    MemoryNetwork,
    ResultUnknownError,
    TotalOrderBroadcast,
)
from paxostob.apps.kv import GROUP_OPS_MAX, KeyValueStore
from paxostob.apps.tagged import TaggedStateMachine
from paxostob.kv.commands import Entry, Op, encode_entry
from paxostob.kv.replies import OK, Error, Reply, SimpleString
from paxostob.kv.state_machine import KvStateMachine
from paxostob.storage.memory import MemoryStorage
from paxostob.transport.base import Transport

MEMBERS = ["n1", "n2", "n3"]
TICK_S = 0.002
LOSS = 0.1
TIMEOUT_S = 20.0

MakeNode = Callable[[Transport], TotalOrderBroadcast]


@asynccontextmanager
async def stores(
    net: MemoryNetwork,
    make: Callable[[str, Transport], TotalOrderBroadcast] | None = None,
    *,
    reads: str = "read-index",
    timeout_s: float = TIMEOUT_S,
) -> AsyncIterator[dict[str, KeyValueStore]]:
    """A started ``KeyValueStore`` per member; every node and transport closed on exit."""

    def default(m: str, t: Transport) -> TotalOrderBroadcast:
        return TotalOrderBroadcast(t, MEMBERS, tick_interval_s=TICK_S)

    transports = {m: net.transport(m) for m in MEMBERS}
    tobs = {m: (make or default)(m, transports[m]) for m in MEMBERS}
    kvs = {m: KeyValueStore(tobs[m], timeout_s=timeout_s, reads=reads) for m in MEMBERS}
    try:
        for tob in tobs.values():
            await tob.start()
        yield kvs
    finally:
        for m in MEMBERS:
            await tobs[m].close()
            await transports[m].close()


async def _reply_or_unknown(kv: KeyValueStore, *args: str) -> Reply:
    """The command's reply; ``None`` when it was applied here only inside a peer's snapshot."""
    try:
        return await kv.command(*args)
    except ResultUnknownError:
        return None


async def test_put_on_one_node_get_on_another() -> None:
    async with stores(MemoryNetwork(seed=1, loss=LOSS)) as kv:
        assert kv["n1"].stored_keys() == 0
        await kv["n1"].put(b"k", b"v")
        # Resolved only once applied here: the local replica holds it already.
        assert kv["n1"].stored_keys() == 1
        # Linearizable: another node's read is ordered after the acknowledged write.
        assert await kv["n2"].get(b"k") == b"v"
        assert await kv["n3"].get(b"k") == b"v"
        assert await kv["n3"].get(b"missing") is None
        await kv["n2"].put(b"k", b"w")
        assert await kv["n1"].get(b"k") == b"w"
        assert await kv["n3"].delete(b"k") is True
        assert await kv["n1"].get(b"k") is None
        assert await kv["n2"].delete(b"k") is False


async def test_concurrent_incr_from_every_node_gives_distinct_values() -> None:
    per_node = 15
    async with stores(MemoryNetwork(seed=2, loss=LOSS)) as kv:
        replies = await asyncio.gather(
            *(kv[m].command("INCR", "n") for m in MEMBERS for _ in range(per_node))
        )
        assert sorted(r for r in replies if isinstance(r, int)) == list(
            range(1, len(MEMBERS) * per_node + 1)
        ), replies
        assert await kv["n2"].get(b"n") == str(len(MEMBERS) * per_node).encode()


async def test_execute_applies_several_commands_as_one_entry() -> None:
    async with stores(MemoryNetwork(seed=3, loss=LOSS)) as kv:
        replies = await kv["n1"].execute([[b"SET", b"a", b"1"], [b"INCR", b"a"], [b"GET", b"a"]])
        assert replies == [OK, 2, b"2"]
        assert await kv["n3"].command("MGET", "a", "b") == [b"2", None]
        reply = await kv["n2"].command("INCR", "nope", "extra")
        assert isinstance(reply, Error) and "wrong number of arguments" in reply.text
        assert await kv["n2"].command("SET", "t", "x", "PX", 100_000) == OK
        ttl = await kv["n1"].command("PTTL", "t")
        assert isinstance(ttl, int) and 90_000 <= ttl <= 100_000


@pytest.mark.parametrize("durable", ["memory-storage", "data-dir"])
async def test_data_survives_a_restart_of_every_node(durable: str, tmp_path: Path) -> None:
    net = MemoryNetwork(seed=4, loss=LOSS)
    storages = {m: MemoryStorage() for m in MEMBERS}
    started: set[str] = set()

    def make(m: str, t: Transport) -> TotalOrderBroadcast:
        # Made once: the second start of each node must find its store.
        bootstrap = m not in started
        started.add(m)
        # A snapshot every few entries: the restart restores one, then replays the rest.
        if durable == "memory-storage":
            return TotalOrderBroadcast(
                t,
                MEMBERS,
                tick_interval_s=TICK_S,
                storage=storages[m],
                snapshot_entries_max=7,
                bootstrap=bootstrap,
            )
        return TotalOrderBroadcast(
            t,
            MEMBERS,
            tick_interval_s=TICK_S,
            data_dir=tmp_path / m,
            snapshot_entries_max=7,
            bootstrap=bootstrap,
        )

    written = {f"key{k}".encode(): f"value{k}".encode() for k in range(30)}
    async with stores(net, make) as kv:
        for k, (key, value) in enumerate(written.items()):
            await kv[MEMBERS[k % 3]].put(key, value)
        # Applied either way; a node that lagged took it inside a peer's snapshot.
        assert await _reply_or_unknown(kv["n1"], "INCR", "counter") in (1, None)
        assert await _reply_or_unknown(kv["n2"], "DEL", "key0") in (1, None)
    del written[b"key0"]
    written[b"counter"] = b"1"
    # Every node was closed (its storage with it); the same storages, new processes' worth
    # of objects: restore the latest snapshot, replay the log after it, rejoin.
    async with stores(net, make) as kv:
        for m in MEMBERS:
            for key, value in written.items():
                assert await kv[m].get(key) == value, (m, key)
            assert await kv[m].get(b"key0") is None
            assert kv[m].stored_keys() == len(written)


async def test_two_stores_share_one_group_by_tag() -> None:
    net = MemoryNetwork(seed=5, loss=LOSS)
    transports = {m: net.transport(m) for m in MEMBERS}
    machines = {m: (KvStateMachine(), KvStateMachine()) for m in MEMBERS}
    tobs = {
        m: TotalOrderBroadcast(
            transports[m],
            MEMBERS,
            tick_interval_s=TICK_S,
            state_machine=TaggedStateMachine({b"a": machines[m][0], b"b": machines[m][1]}),
        )
        for m in MEMBERS
    }
    a = {m: KeyValueStore(tobs[m], machine=machines[m][0], tag=b"a") for m in MEMBERS}
    b = {m: KeyValueStore(tobs[m], machine=machines[m][1], tag=b"b") for m in MEMBERS}
    try:
        for tob in tobs.values():
            await tob.start()
        await a["n1"].put(b"k", b"in-a")
        await b["n2"].put(b"k", b"in-b")
        assert await a["n3"].get(b"k") == b"in-a"
        assert await b["n3"].get(b"k") == b"in-b"
        assert await b["n1"].delete(b"k") is True
        assert await a["n2"].get(b"k") == b"in-a"
    finally:
        for m in MEMBERS:
            await tobs[m].close()
            await transports[m].close()


async def test_misuse_is_a_configuration_error() -> None:
    net = MemoryNetwork(seed=6)
    tob = TotalOrderBroadcast(net.transport("n1"), ["n1"], state_machine=KvStateMachine())
    with pytest.raises(ConfigurationError, match="machine="):
        KeyValueStore(tob)
    fresh = TotalOrderBroadcast(net.transport("n2"), ["n2"])
    with pytest.raises(ConfigurationError, match="tag"):
        KeyValueStore(fresh, tag=b"x")


async def test_commands_submitted_together_share_one_entry_and_keep_their_replies() -> None:
    # 40 callers in one loop pass: one consensus proposal, each caller gets its own
    # replies (a caller's unit of 2 ops stays contiguous and in order).
    async with stores(MemoryNetwork(seed=11)) as kv:
        store = kv["n1"]
        assert await store.command("SET", "warm", "up") == OK  # a leader is known
        before = store.entries_proposed
        futures = [
            store.submit([[b"SET", b"k%d" % i, b"v%d" % i], [b"GET", b"k%d" % i]])
            for i in range(40)
        ]
        results = await asyncio.gather(*futures)
        assert results == [[OK, b"v%d" % i] for i in range(40)]
        assert store.entries_proposed == before + 1
        # Later submits (after the first group is in flight) form the next entry.
        first = store.submit([[b"INCR", b"n"]])
        await asyncio.sleep(0)  # the first group is now in flight
        second = [store.submit([[b"INCR", b"n"]]) for _ in range(5)]
        assert sorted([await first] + [await f for f in second]) == [[i] for i in range(1, 7)]
        assert store.entries_proposed == before + 3
        assert await kv["n3"].get(b"n") == b"6"


def _callback_future() -> tuple[asyncio.Future[object], Callable[[object], None]]:
    fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    return fut, fut.set_result


async def test_groups_of_other_callers_fly_together_a_callers_own_wait() -> None:
    # Caller A's group is in flight. B's group is broadcast without waiting for it
    # (two rounds overlap), but A's next unit waits until A's first group is
    # delivered: a caller's units land in the log in the order submitted.
    async with stores(MemoryNetwork(seed=17)) as kv:
        store = kv["n1"]
        assert await store.command("SET", "warm", "up") == OK
        a, b, c = object(), object(), object()
        before = store.entries_proposed
        a1, done_a1 = _callback_future()
        store.submit_callback([[b"INCR", b"a"]], done_a1, caller=a)
        await asyncio.sleep(0)  # A's group is in flight
        assert store.entries_proposed == before + 1
        b1, done_b1 = _callback_future()
        store.submit_callback([[b"INCR", b"b"]], done_b1, caller=b)
        await asyncio.sleep(0)
        assert not a1.done()
        assert store.entries_proposed == before + 2  # B did not wait for A
        a2, done_a2 = _callback_future()
        store.submit_callback([[b"INCR", b"a"], [b"GET", b"a"]], done_a2, caller=a)
        c1, done_c1 = _callback_future()
        store.submit_callback([[b"INCR", b"c"]], done_c1, caller=c)
        await asyncio.sleep(0)
        assert not a1.done()
        assert store.entries_proposed == before + 2  # A's second unit waits for its first
        assert await a1 == [1]
        assert await a2 == [2, b"2"]
        assert await b1 == [1]
        assert await c1 == [1]
        assert store.entries_proposed == before + 3


async def test_a_group_that_times_out_fails_every_caller_in_it() -> None:
    net = MemoryNetwork(seed=12)
    async with stores(net) as kv:
        store = kv["n1"]
        assert await store.command("SET", "warm", "up") == OK
        store.timeout_s = 0.2
        net.partition(["n1"], ["n2", "n3"])  # no quorum for n1
        futures = [store.submit([[b"SET", b"x", b"%d" % i]]) for i in range(5)]
        for result in await asyncio.gather(*futures, return_exceptions=True):
            assert isinstance(result, TimeoutError), result
        net.heal()


async def test_submit_refuses_what_an_op_refuses() -> None:
    async with stores(MemoryNetwork(seed=13)) as kv:
        with pytest.raises(ConfigurationError):
            kv["n1"].submit([[]])
        with pytest.raises(ConfigurationError):
            kv["n1"].submit([["SET", b"k", b"v"]])  # type: ignore[list-item]


@pytest.mark.parametrize(("reads", "entries"), [("read-index", 0), ("barrier", 1)])
async def test_a_read_on_a_lagging_node_waits_for_its_index(reads: str, entries: int) -> None:
    # n2 misses a write (partitioned away); right after the heal it has not applied
    # it. Its GET must still see the write: the read runs only after n2 applied the
    # log through the leader's read index, or an entry proposed after the read
    # arrived (reading n2's state at once would not).
    net = MemoryNetwork(seed=14)
    async with stores(net, reads=reads) as kv:
        assert await kv["n1"].command("SET", "warm", "up") == OK
        net.partition(["n2"], ["n1", "n3"])
        await kv["n1"].put(b"k", b"written while n2 was away")
        assert kv["n2"].machine.read([[b"GET", b"k"]]) == [None]  # n2's own state lags
        net.heal()
        before = kv["n2"].ops_proposed
        leader = kv["n1"].tob.leader
        assert leader is not None
        slots = kv[leader].tob.status().decided_through
        assert await kv["n2"].get(b"k") == b"written while n2 was away"
        # The read was not in the log: a read index adds no entry, a barrier an empty one.
        assert kv["n2"].ops_proposed == before
        assert kv[leader].tob.status().decided_through == slots + entries


async def test_a_leader_cut_off_from_its_quorum_never_answers_a_read_stale() -> None:
    # n1 leads, then loses n2 and n3, which elect a leader and take a write. A GET
    # at n1 must not return n1's old value: it waits (and here times out) instead.
    net = MemoryNetwork(seed=21)
    async with stores(net, timeout_s=1.0) as kv:
        assert await kv["n1"].command("SET", "k", "old") == OK
        leader = kv["n1"].tob.leader
        assert leader is not None
        others = [m for m in MEMBERS if m != leader]
        net.partition([leader], others)
        assert await kv[others[0]].command("SET", "k", "new") == OK
        try:
            value = await kv[leader].get(b"k")
        except TimeoutError:
            value = None
        assert value != b"old"
        net.heal()


@pytest.mark.parametrize(
    ("write", "read", "expected"),
    [
        (["HSET", "h", "f", "v"], ["HGETALL", "h"], {b"f": b"v"}),
        (["RPUSH", "l", "a", "b"], ["LRANGE", "l", "0", "-1"], [b"a", b"b"]),
        (["SADD", "s", "m"], ["SMEMBERS", "s"], [b"m"]),
        (["SADD", "s", "m"], ["SRANDMEMBER", "s"], b"m"),
        (["ZADD", "z", "1.5", "m"], ["ZRANGE", "z", "0", "-1", "WITHSCORES"], [b"m", b"1.5"]),
        (["ZADD", "z", "1.5", "m"], ["ZSCORE", "z", "m"], b"1.5"),
        (["HSET", "h", "f", "v"], ["TYPE", "h"], SimpleString("hash")),
    ],
)
async def test_a_read_of_an_aggregate_on_a_lagging_node_waits_for_its_index(
    write: list[str], read: list[str], expected: Reply
) -> None:
    # As GET above: every read-only command of a key is a point read, linearizable
    # by the read index, and never itself in the log.
    net = MemoryNetwork(seed=16)
    async with stores(net) as kv:
        assert await kv["n1"].command("SET", "warm", "up") == OK
        net.partition(["n2"], ["n1", "n3"])
        assert not isinstance(await kv["n1"].command(*write), Error)
        net.heal()
        before = kv["n2"].ops_proposed
        assert await kv["n2"].command(*read) == expected
        assert kv["n2"].ops_proposed == before


async def test_reads_and_writes_of_one_group_see_the_writes() -> None:
    async with stores(MemoryNetwork(seed=15)) as kv:
        store = kv["n1"]
        assert await store.command("SET", "warm", "up") == OK
        before = (store.entries_proposed, store.ops_proposed)
        write = store.submit([[b"SET", b"a", b"1"]])
        read = store.submit([[b"GET", b"a"], [b"EXISTS", b"a", b"b"]])
        assert await write == [OK]
        assert await read == [b"1", 1]
        # One entry, holding the write only.
        assert (store.entries_proposed, store.ops_proposed) == (before[0] + 1, before[1] + 1)


async def test_a_callers_read_does_not_see_its_own_later_write() -> None:
    # One client's pipeline INCR, GET, INCR: a point read runs after its group's
    # entry, so when the same caller writes again the GET moves into the entry as a
    # command, before that write: still one entry, and the GET sees 1, not 2.
    async with stores(MemoryNetwork(seed=16)) as kv:
        store = kv["n1"]
        assert await store.command("SET", "warm", "up") == OK
        me, other = object(), object()
        results: dict[str, object] = {}
        for label, ops, who in [
            ("incr1", [[b"INCR", b"n"]], me),
            ("get", [[b"GET", b"n"]], me),
            ("other", [[b"INCR", b"m"]], other),  # another caller's write joins the same group
            ("incr2", [[b"INCR", b"n"]], me),
        ]:
            store.submit_callback(ops, functools.partial(results.__setitem__, label), caller=who)
        before = store.entries_proposed
        assert await store.command("GET", "n") == b"2"
        assert results == {"incr1": [1], "get": [b"1"], "other": [1], "incr2": [2]}
        # One entry {INCR n, INCR m, GET n, INCR n}; the last GET n (of no caller)
        # joined the same group and read after it.
        assert store.entries_proposed - before == 1


async def test_a_run_answers_each_command_in_order_and_splits_at_the_entry_bound() -> None:
    # A RESP read's pipeline, handed over in one call: each command is its own unit.
    async with stores(MemoryNetwork(seed=17)) as kv:
        store = kv["n1"]
        assert await store.command("SET", "warm", "up") == OK
        pieces: list[tuple[int, int, object]] = []
        landed = asyncio.Event()
        total = GROUP_OPS_MAX + 10

        def done(first: int, count: int, result: list[Reply] | BaseException) -> None:
            pieces.append((first, count, result))
            if sum(c for _, c, _ in pieces) == total + 4:
                landed.set()

        mixed = [[b"INCR", b"n"], [b"GET", b"n"], [b"INCR", b"n"], [b"GET", b"n"]]
        incrs = [[b"INCR", b"m"]] * total
        before = store.entries_proposed
        store.submit_run([*mixed, *incrs], done, caller="conn")
        await asyncio.wait_for(landed.wait(), 10)
        replies: list[object] = [None] * (total + 4)
        for first, count, result in pieces:
            assert isinstance(result, list) and len(result) == count, result
            replies[first : first + count] = result
        # Each GET sees the caller's writes before it and none after it.
        assert replies[:4] == [1, b"1", 2, b"2"]
        assert replies[4:] == list(range(1, total + 1))
        # {INCR n, GET n, INCR n; then GET n}, then the INCR m piece, which does not fit
        # beside them: GROUP_OPS_MAX of them, then the last 10.
        assert store.entries_proposed - before == 3


def test_tagged_snapshot_copy_equals_snapshot_at_the_copy_point() -> None:
    kv_a, kv_b = KvStateMachine(), KvStateMachine()
    tagged = TaggedStateMachine({b"a": kv_a, b"b": kv_b})
    for slot, (tag, key) in enumerate([(b"a", b"x"), (b"b", b"y"), (b"a", b"z")], start=1):
        entry = Entry(1_000 + slot, (Op((b"SET", key, b"v%d" % slot)),))
        tagged.apply(Delivery(slot, "n1", tag + encode_entry(entry)))
    expected = tagged.snapshot()
    step = tagged.snapshot_copy()
    # Applied after the copy: must not be in it.
    tagged.apply(Delivery(4, "n1", b"a" + encode_entry(Entry(2_000, (Op.of("SET", "w", "1"),)))))
    data = None
    for _ in range(1_000):
        data = step()
        if data is not None:
            break
    assert data == expected
    fresh_a, fresh_b = KvStateMachine(), KvStateMachine()
    TaggedStateMachine({b"a": fresh_a, b"b": fresh_b}).restore(data)
    assert fresh_a.read([[b"GET", b"x"], [b"GET", b"z"], [b"GET", b"w"]]) == [b"v1", b"v3", None]
    assert fresh_b.read([[b"GET", b"y"]]) == [b"v2"]


class _OneShot:
    """An application with ``snapshot`` only (no ``snapshot_copy``)."""

    def __init__(self) -> None:
        self.state = b""

    def apply(self, delivery: Delivery) -> None:
        self.state += delivery.payload

    def snapshot(self) -> bytes:
        return self.state

    def restore(self, data: bytes) -> None:
        self.state = data


class _WholeCopy(_OneShot):
    """An application whose ``snapshot_copy`` returns the snapshot whole, in two steps."""

    def snapshot_copy(self) -> Callable[[], bytes | None]:
        copied, calls = self.state, []

        def step() -> bytes | None:
            calls.append(1)
            return copied if len(calls) > 1 else None

        return step


def test_tagged_snapshot_copy_joins_pieces_and_whole_snapshots_as_snapshot_does() -> None:
    # The KV machine hands its snapshot over in pieces (snapshot_copy_parts),
    # the others whole, or only through snapshot(): one join must frame them
    # exactly as snapshot() does.
    kv = KvStateMachine()
    tagged = TaggedStateMachine({b"a": _OneShot(), b"k": kv}, observer=_WholeCopy())
    for i in range(5_000):  # more than one StateEncoder step
        entry = Entry(1_000 + i, (Op((b"SET", b"key:%d" % i, b"v" * (i % 300))),))
        tagged.apply(Delivery(2 * i + 1, "n1", b"k" + encode_entry(entry)))
        tagged.apply(Delivery(2 * i + 2, "n1", b"a%d" % i))
    expected = tagged.snapshot()
    step = tagged.snapshot_copy()
    tagged.apply(Delivery(10_001, "n1", b"a-after-the-copy"))
    steps, data = 1, step()
    while data is None:
        steps, data = steps + 1, step()
    assert steps > 3  # really in steps
    assert data == expected
