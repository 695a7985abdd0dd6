"""What applications built on Redis need, on a 3-process cluster, through redis-py.

Optimistic transactions (``WATCH`` and redis-py's ``pipeline(transaction=True)``
retry loop), Lua scripts (``EVAL``/``EVALSHA``, redis-py's ``Lock``) and
``CLIENT`` introspection, with clients on different nodes: a write
acknowledged on one node is ordered before a transaction or script sent
later to another, because both are decided in the one log.

One cluster serves the whole module (a cluster costs seconds); tests use
their own keys.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import LockNotOwnedError, NoScriptError, WatchError
from redis.retry import Retry

from paxostob.kv.replies import Error, SimpleString
from tests.kv.real_redis import RespClient, redis_server

from .cluster import Cluster
from .kv_client import call, node_clients, running_kv_cluster

OK = SimpleString("OK")
#: Increments each thread makes in the concurrent WATCH test, and retries it may need.
INCREMENTS = 25
RETRIES_MAX = 2_000
THREAD_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_kv_cluster(tmp_path_factory.mktemp("kv-apps")) as c:
        yield c


@pytest.fixture(scope="module")
def clients(cluster: Cluster) -> Iterator[dict[str, redis.Redis]]:
    with node_clients(cluster) as cs:
        yield cs


# --- WATCH / MULTI / EXEC ----------------------------------------------------------------


def test_exec_fails_when_a_watched_key_was_written_on_another_node(
    clients: dict[str, redis.Redis],
) -> None:
    a, b = clients["1"], clients["2"]
    a.set("w:race", "1")
    with a.pipeline(transaction=True) as pipe:
        pipe.watch("w:race")  # type: ignore[no-untyped-call]
        seen = pipe.get("w:race")
        assert b.set("w:race", "changed")  # acknowledged before A's EXEC is sent
        pipe.multi()
        pipe.set("w:race", int(seen or 0) + 1)
        with pytest.raises(WatchError):
            pipe.execute()
    assert a.get("w:race") == b"changed"  # the transaction did nothing
    # The same transaction with nobody in between goes through.
    with a.pipeline(transaction=True) as pipe:
        pipe.watch("w:race")  # type: ignore[no-untyped-call]
        pipe.multi()
        pipe.set("w:race", "mine")
        assert pipe.execute() == [True]
    assert b.get("w:race") == b"mine"


def test_exec_fails_when_a_missing_watched_key_was_created(
    clients: dict[str, redis.Redis],
) -> None:
    a, c = clients["1"], clients["3"]
    a.delete("w:absent")
    with a.pipeline(transaction=True) as pipe:
        pipe.watch("w:absent")  # type: ignore[no-untyped-call]
        c.set("w:absent", "x")
        pipe.multi()
        pipe.set("w:absent", "y")
        with pytest.raises(WatchError):
            pipe.execute()
    assert a.get("w:absent") == b"x"


def test_unwatch_and_discard_forget_the_watched_keys(
    cluster: Cluster, clients: dict[str, redis.Redis]
) -> None:
    b = clients["2"]
    a = RespClient(cluster.nodes["1"].resp_port)
    try:
        assert a.call(b"WATCH", b"w:u1", b"w:u2") == OK
        b.set("w:u1", "changed")
        assert a.call(b"UNWATCH") == OK
        assert a.call(b"MULTI") == OK
        assert a.call(b"SET", b"w:u2", b"v") == SimpleString("QUEUED")
        assert a.call(b"EXEC") == [OK]  # not aborted: UNWATCH forgot w:u1
        assert a.call(b"WATCH", b"w:u1") == OK
        b.set("w:u1", "again")
        assert a.call(b"MULTI") == OK
        assert a.call(b"DISCARD") == OK
        assert a.call(b"MULTI") == OK
        assert a.call(b"EXEC") == []  # DISCARD forgot w:u1 too
        assert a.call(b"WATCH", b"w:u1") == OK
        b.set("w:u1", "third")
        assert a.call(b"EXEC") == Error("ERR EXEC without MULTI")
        assert a.call(b"MULTI") == OK
        assert a.call(b"EXEC") is None  # the null array: w:u1 changed
    finally:
        a.close()


def _increment(client: redis.Redis, key: str, out: list[int]) -> None:
    """Add one to ``key`` ``INCREMENTS`` times with the WATCH retry loop; count the retries."""
    retries = 0
    for _ in range(INCREMENTS):
        while True:
            with client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    value = int(pipe.get(key) or 0)
                    pipe.multi()
                    pipe.set(key, value + 1)
                    pipe.execute()
                    break
                except WatchError:
                    retries += 1
                    assert retries < RETRIES_MAX, "the retry loop does not converge"
    out.append(retries)


def test_watch_retry_loops_on_two_nodes_lose_no_increment(cluster: Cluster) -> None:
    """Read-modify-write loops on two nodes: every increment lands exactly once."""
    key = "w:counter"
    results: list[int] = []
    errors: list[BaseException] = []
    pools = [redis.Redis(port=cluster.nodes[i].resp_port, socket_timeout=15) for i in ("1", "2")]
    pools[0].delete(key)

    def run(client: redis.Redis) -> None:
        try:
            _increment(client, key, results)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(p,)) for p in pools]
    for t in threads:
        t.start()
    for t in threads:
        t.join(THREAD_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "an increment loop hung"
    assert not errors, errors
    assert int(pools[1].get(key) or 0) == 2 * INCREMENTS
    for p in pools:
        p.close()


# --- Lua scripts -------------------------------------------------------------------------


def test_redis_py_lock_acquire_extend_release_across_nodes(cluster: Cluster) -> None:
    """redis-py's ``Lock`` (SET NX PX, then EVALSHA scripts) with holders on two nodes."""
    r1 = redis.Redis(port=cluster.nodes["1"].resp_port, socket_timeout=15)
    r2 = redis.Redis(port=cluster.nodes["2"].resp_port, socket_timeout=15)
    try:
        first = r1.lock("app:lock", timeout=5)
        second = r2.lock("app:lock", timeout=5)
        assert first.acquire(blocking=False)
        assert not second.acquire(blocking=False)  # held, as node 2 sees it too
        assert first.owned() and not second.owned()
        assert first.extend(20)  # a script: adds 20 s to what is left
        assert 20_000 < r2.pttl("app:lock") <= 25_000
        assert first.reacquire()  # a script: back to the lock's 5 s
        assert r2.pttl("app:lock") <= 5_000
        first.release()  # a script that checks the token
        assert second.acquire(blocking=False)
        impostor = r1.lock("app:lock", timeout=5)
        impostor.local.token = b"not-the-holder"
        with pytest.raises(LockNotOwnedError):
            impostor.release()  # the release script compares tokens and refuses
        assert r1.get("app:lock") == second.local.token
        second.release()
        assert r1.exists("app:lock") == 0
    finally:
        r1.close()
        r2.close()


def test_evalsha_is_resolved_on_the_node_that_loaded_the_script(
    cluster: Cluster, clients: dict[str, redis.Redis]
) -> None:
    a, b = clients["1"], clients["2"]
    script = "return redis.call('incrby', KEYS[1], ARGV[1])"
    sha = a.script_load(script)
    assert a.script_exists(sha) == [True]
    a.delete("s:n")
    assert a.evalsha(sha, 1, "s:n", 5) == 5
    with pytest.raises(NoScriptError):
        b.evalsha(sha, 1, "s:n", 5)
    # redis-py's Script loads it where it is missing, then runs it through the log.
    assert b.register_script(script)(keys=["s:n"], args=[2]) == 7
    with a.pipeline(transaction=True) as pipe:
        pipe.evalsha(sha, 1, "s:n", 1)
        pipe.get("s:n")
        assert pipe.execute() == [8, b"8"]
    assert call(a, "SCRIPT", "FLUSH")
    assert a.script_exists(sha) == [False]


# --- CLIENT ------------------------------------------------------------------------------


def test_client_list_info_setinfo_and_kill_as_redis_py_reads_them(cluster: Cluster) -> None:
    port = cluster.nodes["3"].resp_port
    watcher = redis.Redis(port=port, socket_timeout=15, single_connection_client=True)
    victim = redis.Redis(
        port=port, socket_timeout=15, single_connection_client=True, retry=Retry(NoBackoff(), 0)
    )
    try:
        victim.client_setname("victim")
        assert victim.client_setinfo("LIB-VER", "9.9")
        victim.get("c:k")
        info = victim.client_info()
        assert info["name"] == "victim" and info["lib-ver"] == "9.9"
        assert info["lib-name"] == "redis-py"  # redis-py sets it when it connects
        assert info["cmd"] == "client|info" and info["flags"] == "N" and info["db"] == 0
        assert info["laddr"] == f"127.0.0.1:{port}" and int(info["fd"]) > 0
        by_id = {c["id"]: c for c in watcher.client_list()}
        my_id = str(info["id"])  # redis-py parses numbers in CLIENT INFO, not in CLIENT LIST
        seen = by_id[my_id]
        assert (seen["name"], seen["addr"], seen["cmd"]) == ("victim", info["addr"], "client|info")
        assert int(seen["age"]) >= 0 and int(seen["idle"]) >= 0
        assert [c["id"] for c in watcher.client_list(client_id=[int(my_id)])] == [my_id]
        assert watcher.client_kill_filter(_id=my_id) == 1
        with pytest.raises(redis.ConnectionError):
            victim.get("c:k")  # its connection was closed
        assert my_id not in {c["id"] for c in watcher.client_list()}
        assert watcher.client_kill_filter(_id=my_id) == 0
    finally:
        watcher.close()
        victim.close()


def test_client_fields_are_the_ones_redis_sends(cluster: Cluster, tmp_path: Path) -> None:
    """Every field of redis-server's CLIENT INFO line is in ours, in the same order."""
    with redis_server(tmp_path) as redis_port:
        theirs = RespClient(redis_port)
        ours = RespClient(cluster.nodes["1"].resp_port)
        try:
            their_line, our_line = theirs.call(b"CLIENT", b"INFO"), ours.call(b"CLIENT", b"INFO")
            assert isinstance(their_line, bytes) and isinstance(our_line, bytes)
            their_fields = [f.split(b"=")[0] for f in their_line.split()]
            our_fields = [f.split(b"=")[0] for f in our_line.split()]
            assert [f for f in our_fields if f in their_fields] == their_fields
            assert our_fields[-2:] == [b"lib-name", b"lib-ver"]  # Redis 7.2's, after them
            for bad in (
                [b"CLIENT", b"KILL", b"x"],
                [b"CLIENT", b"KILL", b"ID", b"abc"],
                [b"CLIENT", b"KILL", b"ID", b"99999"],
                [b"CLIENT", b"KILL", b"SKIPME", b"maybe"],
                [b"CLIENT", b"KILL", b"NOPE", b"1"],
                [b"CLIENT", b"LIST", b"TYPE", b"bogus"],
                [b"CLIENT", b"LIST", b"ID", b"abc"],
                [b"CLIENT", b"LIST", b"TYPE", b"pubsub"],
                [b"CLIENT", b"INFO", b"x"],
                [b"CLIENT", b"GETNAME"],
            ):
                assert ours.call(*bad) == theirs.call(*bad), bad
        finally:
            theirs.close()
            ours.close()


# --- blocking pops -----------------------------------------------------------------------

#: Requests made while waiting for a client to show as blocked (each one real round trip).
BLOCKED_POLLS_MAX = 2_000


def _blocked_ids(client: redis.Redis) -> set[str]:
    return {c["id"] for c in client.client_list() if "b" in c["flags"]}


def _start_blocked(
    port: int, command: tuple[object, ...], watcher: redis.Redis
) -> tuple[threading.Thread, list[object]]:
    """Run ``command`` on a new connection in a thread; return once the node shows it blocked."""
    out: list[object] = []
    client = redis.Redis(
        port=port, socket_timeout=30, single_connection_client=True, retry=Retry(NoBackoff(), 0)
    )
    client_id = str(client.client_id())

    def run() -> None:
        try:
            out.append(call(client, *command))
        except BaseException as e:
            out.append(e)
        finally:
            client.close()

    thread = threading.Thread(target=run)
    thread.start()
    for _ in range(BLOCKED_POLLS_MAX):
        if client_id in _blocked_ids(watcher) or out:
            return thread, out
    raise AssertionError(f"{command} never blocked")


def test_blocked_pops_on_two_nodes_get_each_pushed_element_once(
    cluster: Cluster, clients: dict[str, redis.Redis]
) -> None:
    pusher = clients["2"]
    pusher.delete("b:q")
    one, got_one = _start_blocked(cluster.nodes["1"].resp_port, ("BLPOP", "b:q", 20), clients["1"])
    three, got_three = _start_blocked(
        cluster.nodes["3"].resp_port, ("BLPOP", "b:q", 20), clients["3"]
    )
    assert pusher.rpush("b:q", "first") == 1  # wakes both: one pop gets it, the other waits
    assert pusher.rpush("b:q", "second") >= 1
    for t in (one, three):
        t.join(THREAD_TIMEOUT_S)
        assert not t.is_alive()
    replies = sorted(map(repr, [*got_one, *got_three]))
    assert replies == sorted(map(repr, [(b"b:q", b"first"), (b"b:q", b"second")]))
    assert pusher.llen("b:q") == 0


def test_bzpopmin_and_blmove_wake_on_a_push_from_another_node(
    cluster: Cluster, clients: dict[str, redis.Redis]
) -> None:
    clients["2"].delete("b:z", "b:src", "b:dst")
    t, got = _start_blocked(cluster.nodes["1"].resp_port, ("BZPOPMIN", "b:z", 20), clients["1"])
    clients["2"].zadd("b:z", {"m": 2.5})
    t.join(THREAD_TIMEOUT_S)
    assert got == [(b"b:z", b"m", 2.5)]  # redis-py parses the score
    t, got = _start_blocked(
        cluster.nodes["3"].resp_port,
        ("BLMOVE", "b:src", "b:dst", "LEFT", "RIGHT", 20),
        clients["3"],
    )
    clients["2"].rpush("b:src", "e")
    t.join(THREAD_TIMEOUT_S)
    assert got == [b"e"]
    assert clients["1"].lrange("b:dst", 0, -1) == [b"e"]


def test_a_blocked_pop_times_out_with_a_null(clients: dict[str, redis.Redis]) -> None:
    c = clients["1"]
    c.delete("b:never")
    assert c.blpop(["b:never"], timeout=0.2) is None
    assert call(c, "BRPOP", "b:never", "0.1") is None
    c.rpush("b:now", "x")
    assert c.brpop(["b:never", "b:now"], timeout=1) == (b"b:now", b"x")  # no wait at all


def test_a_blocked_client_that_disconnected_takes_no_element(
    cluster: Cluster, clients: dict[str, redis.Redis]
) -> None:
    node1 = clients["1"]
    node1.delete("b:dead")
    with socket.create_connection(("127.0.0.1", cluster.nodes["1"].resp_port), timeout=15) as s:
        s.sendall(b"*3\r\n$5\r\nBLPOP\r\n$6\r\nb:dead\r\n$1\r\n0\r\n")
        for _ in range(BLOCKED_POLLS_MAX):
            if _blocked_ids(node1):
                break
        else:
            raise AssertionError("the BLPOP never blocked")
    # Gone. A pop proposed for it on the first push would be ordered before the second.
    assert node1.rpush("b:dead", "kept") == 1
    assert node1.rpush("b:dead", "second") == 2
    assert node1.lrange("b:dead", 0, -1) == [b"kept", b"second"]
