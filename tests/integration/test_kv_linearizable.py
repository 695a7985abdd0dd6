"""Linearizability of the replicated key-value store, the leader killed (SIGKILL) and restarted.

First the checker itself (``linearizability.py``): hand-made histories it must
reject or accept, and random small histories on which it must agree with a
brute-force search over every order, so a checker that accepts everything
fails here. Then the store: concurrent clients on every node read, write and
increment a few keys while the leader is killed with SIGKILL and restarted on
its data directory; every operation is recorded with its invocation and
response times, one that got an error or no answer as "maybe happened", and
the whole history, final reads on every node included, must be linearizable.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from .cluster import Cluster, Node
from .kv_client import (
    await_leader,
    is_no_leader,
    running_kv_cluster,
    status,
    sync_client,
)
from .linearizability import Kind, Op, check, check_key, step

INF = math.inf
KINDS: tuple[Kind, ...] = ("get", "set", "incr")


def op(
    kind: Kind,
    call_s: float,
    return_s: float,
    result: int | None = None,
    *,
    arg: int | None = None,
    key: str = "k",
    client: int = 0,
) -> Op:
    return Op(client, key, kind, arg, result, call_s, return_s)


def get(call_s: float, return_s: float, result: int | None, key: str = "k") -> Op:
    return op("get", call_s, return_s, result, key=key)


def put(call_s: float, return_s: float, value: int, key: str = "k") -> Op:
    return op("set", call_s, return_s, arg=value, key=key)


def incr(call_s: float, return_s: float, result: int | None = None) -> Op:
    return op("incr", call_s, return_s, result)


# ----------------------------------------------------------------- the checker itself


@pytest.mark.parametrize(
    ("history", "why"),
    [
        ([put(0, 1, 1), get(2, 3, None)], "a read after an acknowledged write misses it"),
        ([put(0, 1, 1), put(2, 3, 2), get(4, 5, 1)], "a read sees a write overwritten before"),
        ([put(0, 10, 1), get(1, 2, 1), get(3, 4, None)], "a value comes and goes (flicker)"),
        ([incr(0, 5, 1), incr(1, 6, 1)], "two increments return the same value (lost update)"),
        ([incr(0, 1, 1), incr(2, 3, 1)], "an increment ignores the one before it"),
        ([put(0, 1, 1), get(2, 3, 7)], "a read returns a value nobody wrote"),
        ([put(0, INF, 5), get(1, 2, 5), get(3, 4, None)], "a maybe-write seen, then unseen"),
        ([incr(0, INF), get(1, 2, 2)], "one maybe-increment cannot add two"),
        ([get(0, 1, 0)], "an absent key is not 0 to GET"),
    ],
)
def test_the_checker_rejects_non_linearizable_histories(history: list[Op], why: str) -> None:
    result = check(history)
    assert not result.ok, why
    assert result.key == "k" and "k" in str(result)


@pytest.mark.parametrize(
    ("history", "why"),
    [
        ([], "nothing happened"),
        ([put(0, 1, 1), get(2, 3, 1), incr(4, 5, 2), get(6, 7, 2)], "one client, in order"),
        ([put(0, 10, 1), get(1, 2, None), get(3, 4, 1), get(11, 12, 1)], "a read overlaps"),
        ([incr(0, 5, 2), incr(1, 6, 1)], "overlapping increments, either order"),
        ([incr(2, 3, 1), get(3, 4, None)], "touching intervals overlap"),
        ([put(0, INF, 5), get(1, 2, None), get(3, 4, 5)], "a maybe-write takes effect late"),
        ([put(0, INF, 5), get(1, 2, None), get(3, 4, None)], "... or never"),
        ([incr(0, INF), incr(1, 2, 1), get(3, 4, 2)], "a maybe-increment took effect"),
        ([put(0, 1, 3), incr(2, 3, 4), put(4, 5, 9), incr(6, 7, 10)], "set then incr"),
    ],
)
def test_the_checker_accepts_linearizable_histories(history: list[Op], why: str) -> None:
    result = check(history)
    assert result.ok, f"{why}: {result}"


def test_keys_are_checked_independently_and_the_bad_one_is_named() -> None:
    good = [put(0, 1, 1, key="a"), get(2, 3, 1, key="a")]
    bad = [put(0, 1, 1, key="b"), get(2, 3, None, key="b")]
    assert check(good).ok
    result = check(good + bad)
    assert not result.ok and result.key == "b"
    assert "get(b) -> None" in result.explanation


def brute_force(ops: Sequence[Op]) -> bool:
    """Whether some order of ``ops`` respects real time and the model (every order tried)."""
    for order in itertools.permutations(range(len(ops))):
        if any(
            ops[later].return_s < ops[earlier].call_s
            for k, earlier in enumerate(order)
            for later in order[k + 1 :]
        ):
            continue
        state: int | None = None
        for i in order:
            ok, state = step(state, ops[i])
            if not ok:
                break
        else:
            return True
    return False


@st.composite
def small_histories(draw: st.DrawFn) -> list[Op]:
    ops = []
    for client in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(KINDS))
        call_s = draw(st.integers(0, 8))
        known = draw(st.integers(0, 9)) > 0
        return_s = call_s + draw(st.integers(0, 4)) if known else INF
        arg = draw(st.integers(1, 3)) if kind == "set" else None
        result = None
        if kind == "get":
            result = draw(st.one_of(st.none(), st.integers(0, 4)))
        elif kind == "incr":
            result = draw(st.integers(1, 5))
        ops.append(Op(client, "k", kind, arg, result, float(call_s), float(return_s)))
    return ops


@settings(max_examples=300, deadline=None)
@given(small_histories())
def test_the_checker_agrees_with_a_brute_force_search(ops: list[Op]) -> None:
    assert check_key(ops).ok == brute_force(ops), "\n".join(map(str, ops))


# ------------------------------------------------------------------------ the store

CLIENTS = 6
KEYS = ("lin:a", "lin:b", "lin:c")
OPS_PER_CLIENT_MAX = 400
RUN_S_MAX = 120.0
#: Acknowledged operations to wait for before the kill, with the leader down, and
#: after the restart: each phase must see the store make progress.
PROGRESS_OPS = 150
PHASE_TIMEOUT_S = 45.0
#: Above the node's 10 s broadcast timeout, so its -TRYAGAIN comes before ours.
OP_TIMEOUT_S = 15.0


class History:
    """Operations recorded by every client thread; wakes the fault schedule on progress."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        #: The node each operation was sent to.
        self.nodes: list[str] = []
        self.acked = 0
        self.changed = threading.Condition()

    def add(self, op: Op, node: str) -> None:
        with self.changed:
            self.ops.append(op)
            self.nodes.append(node)
            if op.known:
                self.acked += 1
                self.changed.notify_all()

    def wait_acked(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.acked >= count, PHASE_TIMEOUT_S)


def connect(node: Node) -> redis.Redis | None:
    """A client of ``node`` (no retries at all), or None if it does not accept connections."""
    try:
        return sync_client(node, patient=False, timeout_s=OP_TIMEOUT_S)
    except (redis.ConnectionError, OSError):
        return None


def run_client(
    cid: int, cluster: Cluster, history: History, stop: threading.Event, deadline: float
) -> None:
    """One client: random operations, on its home node whenever that node is up."""
    rng = random.Random(cid)
    ids = list(cluster.nodes)
    home = ids[cid % len(ids)]
    order = [home] + [i for i in ids if i != home]
    client: redis.Redis | None = None
    at = ""
    for seq in range(OPS_PER_CLIENT_MAX):
        if stop.is_set() or time.monotonic() > deadline:
            break
        if client is None or at != home:
            for i in order if client is None else [home]:
                fresh = connect(cluster.nodes[i])
                if fresh is not None:
                    if client is not None:
                        client.close()
                    client, at = fresh, i
                    break
        if client is None:
            continue  # nothing accepts connections right now; the next turn tries again
        key = rng.choice(KEYS)
        kind = rng.choices(KINDS, weights=[4, 3, 3])[0]
        arg = cid * 1_000_000 + seq * 1_000 if kind == "set" else None
        result: int | None = None
        call_s = time.monotonic()
        try:
            if kind == "get":
                value = client.get(key)
                result = None if value is None else int(value)
            elif kind == "set":
                assert client.set(key, str(arg)) is True
            else:
                result = int(client.incr(key))
            return_s = time.monotonic()
        except redis.RedisError as e:
            if is_no_leader(e):  # refused before anything was proposed: it did not happen
                try:
                    await_leader(cluster.nodes[at].resp_port, None)
                except redis.RedisError:
                    client.close()
                    client = None
                continue
            # An error or no answer: it may have been applied, now or later.
            return_s = INF
            client.close()
            client = None
        history.add(Op(cid, key, kind, arg, result, call_s, return_s), at)
    if client is not None:
        client.close()


def leader_of(cluster: Cluster, asked: str) -> str:
    with sync_client(cluster.nodes[asked]) as c:
        leader = status(c)[b"leader_id"]
    assert isinstance(leader, bytes) and leader, "no leader known"
    return leader.decode()


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_kv_cluster(tmp_path_factory.mktemp("kv-linearizable")) as c:
        yield c


def test_linearizable_while_the_leader_is_killed_and_restarted(cluster: Cluster) -> None:
    history = History()
    stop = threading.Event()
    deadline = time.monotonic() + RUN_S_MAX
    threads = [
        threading.Thread(target=run_client, args=(cid, cluster, history, stop, deadline))
        for cid in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    try:
        assert history.wait_acked(PROGRESS_OPS), "no progress before the kill"
        victim = leader_of(cluster, "1")
        killed_s = time.monotonic()
        cluster.nodes[victim].kill9()
        assert history.wait_acked(history.acked + PROGRESS_OPS), "no progress without the leader"
        restarted_s = time.monotonic()
        cluster.nodes[victim].start()
        cluster.nodes[victim].wait_ready()
        back_s = time.monotonic()
        assert history.wait_acked(history.acked + PROGRESS_OPS), "no progress after the restart"
    finally:
        stop.set()
        for t in threads:
            t.join(RUN_S_MAX)
    assert not any(t.is_alive() for t in threads)

    # Final reads on every node (the restarted one included): recorded like any
    # operation, so the checker also decides whether they show every
    # acknowledged write; and every node must answer the same.
    finals: dict[str, set[int | None]] = {key: set() for key in KEYS}
    for i, node in cluster.nodes.items():
        with sync_client(node) as c:
            for key in KEYS:
                call_s = time.monotonic()
                value = c.get(key)
                read = None if value is None else int(value)
                history.add(Op(100 + int(i), key, "get", None, read, call_s, time.monotonic()), i)
                finals[key].add(read)
    assert all(len(values) == 1 for values in finals.values()), finals

    ops = history.ops
    unknown = sum(not o.known for o in ops)
    during = [o for o in ops if o.known and killed_s < o.call_s and o.return_s < restarted_s]
    assert during, "no operation completed while the old leader was down"
    assert any(o.kind != "get" for o in during), "no write completed without the leader"
    # The restarted node serves again: at least its final reads, which the
    # checker verified against everything acknowledged. (Its own load clients
    # may have been answered TRYAGAIN until it knew the leader again, and the
    # others can make the progress the test waits for: not required.)
    assert any(
        o.known and o.call_s > back_s and at == victim
        for o, at in zip(ops, history.nodes, strict=True)
    ), "the restarted node served no client"
    result = check(ops)
    assert result.ok, f"{result}\n({len(ops)} operations, {unknown} of unknown outcome)"
    print(f"{result}; {unknown} of unknown outcome; {len(during)} while the leader was down")
    # The history constrains the store: had a node lost every write to a key
    # (read it as absent at the end), the checker would say so.
    end_s = time.monotonic()
    lost = Op(999, KEYS[0], "get", None, None, end_s, end_s)
    assert finals[KEYS[0]] != {None}
    assert not check([*ops, lost]).ok
