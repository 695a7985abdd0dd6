"""The key-value store over RESP on a 3-process cluster, driven by redis-py (sync and asyncio).

Every command goes through the replicated log, reads included, so a read on
any node, followers included, sees every write acknowledged before it was
sent, on whichever node. The tests therefore write on one node and read on
another. Exact error texts are read with a raw RESP client (redis-py strips
the error code and maps codes to exception classes); the texts are those of
Redis 7.

One cluster serves the whole module (started once: a cluster costs seconds);
tests use their own keys, and the keyspace test flushes first. A separate
one-node cluster runs with ``--requirepass``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio
from redis.exceptions import AuthenticationError, ResponseError, TryAgainError

from paxostob.kv.commands import COMMANDS
from paxostob.kv.replies import Error, Reply, SimpleString
from tests.kv.real_redis import RespClient

from .cluster import Cluster, Node
from .kv_client import (
    acall,
    async_client,
    call,
    is_no_leader,
    node_clients,
    running_kv_cluster,
    settle,
    start_kv_cluster,
    status,
    sync_client,
)

OK = SimpleString("OK")
#: Bounds the loops that wait for a key to expire (each turn is one real request).
EXPIRY_TRIES_MAX = 500
RAW_TIMEOUT_S = 15.0
SETTLE_TRIES_MAX = 5


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_kv_cluster(tmp_path_factory.mktemp("kv-commands")) as c:
        yield c


@pytest.fixture(scope="module")
def clients(cluster: Cluster) -> Iterator[dict[str, redis.Redis]]:
    """One RESP2 client per node, by node id."""
    with node_clients(cluster) as cs:
        yield cs


def abc(clients: dict[str, redis.Redis]) -> tuple[redis.Redis, redis.Redis, redis.Redis]:
    return clients["1"], clients["2"], clients["3"]


@contextlib.contextmanager
def raw(node: Node) -> Iterator[RespClient]:
    """A RESP2 client that returns replies as they are on the wire (``Error`` keeps its code)."""
    c = RespClient(node.resp_port)
    try:
        yield c
    finally:
        c.close()


def cmd(client: RespClient, *args: str | int | bytes) -> Reply:
    return client.call(*(a if isinstance(a, bytes) else str(a).encode() for a in args))


def exchange(node: Node, data: bytes) -> bytes:
    """Send ``data`` on a new connection; everything the node answers until it closes it."""
    with socket.create_connection(("127.0.0.1", node.resp_port), timeout=RAW_TIMEOUT_S) as s:
        s.sendall(data)
        received = b""
        while chunk := s.recv(65536):
            received += chunk
        return received


def leader_id(cluster: Cluster) -> str:
    with sync_client(cluster.nodes["1"]) as c:
        leader = status(c)[b"leader_id"]
    assert isinstance(leader, bytes) and leader
    return leader.decode()


def info_section(node: Node, section: str) -> dict[str, str]:
    """``INFO section`` as text fields (redis-py would turn ballot ``4.2`` into a float)."""
    with raw(node) as c:
        text = cmd(c, "INFO", section)
    assert isinstance(text, bytes) and text.endswith(b"\r\n"), repr(text)
    lines = text.decode().split("\r\n")
    assert lines[0].lower() == f"# {section}", lines
    return dict(line.split(":", 1) for line in lines[1:] if line)


# ----------------------------------------------------------------- connection commands


def test_ping_and_echo_on_every_node(clients: dict[str, redis.Redis], cluster: Cluster) -> None:
    for client in clients.values():
        assert client.ping() is True
        assert client.echo("hi there") == b"hi there"
    with raw(cluster.nodes["2"]) as r:
        assert cmd(r, "PING") == SimpleString("PONG")
        assert cmd(r, "PING", "hello") == b"hello"
        assert cmd(r, "ECHO") == Error("ERR wrong number of arguments for 'echo' command")


def test_select_0_is_the_only_database(cluster: Cluster, clients: dict[str, redis.Redis]) -> None:
    with raw(cluster.nodes["1"]) as c:
        assert cmd(c, "SELECT", 0) == OK
        assert cmd(c, "SELECT", 1) == Error("ERR DB index is out of range")
        assert cmd(c, "SET", "select:k", "v") == OK
    with pytest.raises(ResponseError, match="DB index is out of range"):
        call(clients["2"], "SELECT", 1)
    assert clients["2"].get("select:k") == b"v"


def test_client_setname_getname_and_id(cluster: Cluster) -> None:
    node = cluster.nodes["3"]
    with sync_client(node) as one, sync_client(node) as two:
        assert one.client_getname() is None
        assert one.client_setname("tester") is True
        assert one.client_getname() == "tester"
        assert two.client_getname() is None, "a name belongs to its connection"
        id_one, id_two = one.client_id(), two.client_id()
        assert isinstance(id_one, int) and isinstance(id_two, int)
        assert id_one != id_two and id_one == one.client_id()
    with raw(node) as c:
        assert cmd(c, "CLIENT", "SETNAME", "has space") == Error(
            "ERR Client names cannot contain spaces, newlines or special characters."
        )


def test_info_server_replication_keyspace_and_paxos(
    cluster: Cluster, clients: dict[str, redis.Redis]
) -> None:
    a, b, c = abc(clients)
    assert a.set("info:k", "v") is True
    before = {i: int(info_section(n, "paxos")["applied_slot"]) for i, n in cluster.nodes.items()}
    assert b.set("info:k2", "v") is True
    for i in cluster.nodes:
        assert clients[i].get("info:k2") == b"v"  # through the log: applied there now
    for _ in range(SETTLE_TRIES_MAX):  # an election may be under way: ask again after it
        paxos = {i: info_section(n, "paxos") for i, n in cluster.nodes.items()}
        replication = {i: info_section(n, "replication") for i, n in cluster.nodes.items()}
        leaders = {p["leader_id"] for p in paxos.values()}
        if len(leaders) == 1 and paxos.get(leaders.pop(), {}).get("role") == "leader":
            break
        settle(cluster)
    leader = paxos["1"]["leader_id"]
    for i, node in cluster.nodes.items():
        server = info_section(node, "server")
        assert server["redis_version"].startswith("7.")
        assert node.proc is not None and int(server["process_id"]) == node.proc.pid
        assert paxos[i]["node_id"] == i
        assert paxos[i]["role"] == ("leader" if i == leader else "follower")
        assert paxos[i]["leader_id"] == leader
        assert re.fullmatch(rf"\d+\.{leader}", paxos[i]["ballot"]), paxos[i]["ballot"]
        chosen, applied = int(paxos[i]["chosen_slot"]), int(paxos[i]["applied_slot"])
        assert applied > before[i], "a write and a read were applied since"
        assert chosen >= applied
        # Every node takes writes: each is a master to clients, in INFO as in HELLO.
        assert replication[i]["role"] == "master"
        with raw(node) as r:
            hello = cmd(r, "HELLO", "2")
        assert isinstance(hello, list)
        greeting = dict(zip(hello[::2], hello[1::2], strict=True))
        assert greeting[b"role"] == b"master"
        assert greeting[b"version"] == server["redis_version"].encode()
        # Counters of elections: the leader ran phase 1 at least once.
        assert int(paxos[i]["elections"]) >= (1 if i == leader else 0)
        assert paxos[i]["leader_changes"].isdigit() and paxos[i]["pre_votes_lost"].isdigit()
    with raw(cluster.nodes["1"]) as r:
        text = cmd(r, "INFO")
    assert isinstance(text, bytes)
    for section in (b"# Server", b"# Replication", b"# Paxos", b"# Keyspace"):
        assert section in text
    keyspace = c.info("keyspace")
    assert keyspace["db0"]["keys"] >= 2


def test_command_count_docs_and_info(cluster: Cluster, clients: dict[str, redis.Redis]) -> None:
    with raw(cluster.nodes["2"]) as c:
        count = cmd(c, "COMMAND", "COUNT")
        listing = cmd(c, "COMMAND")
        assert isinstance(count, int) and isinstance(listing, list)
        assert count == len(listing) > len(COMMANDS)
        names = {row[0] for row in listing if isinstance(row, list)}
        assert set(COMMANDS) | {b"ping", b"multi", b"exec", b"paxos.status"} <= names
        assert cmd(c, "COMMAND", "DOCS") == []
        info = cmd(c, "COMMAND", "INFO", "get", "SET", "nosuchcommand")
        assert isinstance(info, list) and info[2] is None
        get, set_ = info[0], info[1]
        assert isinstance(get, list) and isinstance(set_, list)
        assert get[:2] == [b"get", 2] and get[3:6] == [1, 1, 1]
        assert SimpleString("readonly") in get[2]  # type: ignore[operator]
        assert set_[:2] == [b"set", -3] and SimpleString("write") in set_[2]  # type: ignore[operator]
        assert cmd(c, "COMMAND", "NOPE") == Error(
            "ERR unknown subcommand 'NOPE'. Try COMMAND HELP."
        )
    assert clients["1"].command_count() == count


def test_client_help_and_command_help_list_their_subcommands(cluster: Cluster) -> None:
    """The error for an unknown subcommand says "Try CLIENT HELP": HELP must answer."""
    with raw(cluster.nodes["1"]) as c:
        for command, subcommands in (
            ("CLIENT", ("GETNAME", "ID", "SETNAME")),
            ("COMMAND", ("COUNT", "DOCS", "INFO")),
        ):
            reply = cmd(c, command, "HELP")
            assert isinstance(reply, list), reply
            lines = [line.text for line in reply if isinstance(line, SimpleString)]
            assert len(lines) == len(reply), "help lines are status replies, as in Redis"
            assert lines[0].startswith(f"{command} <subcommand>")
            named = {line.split()[0] for line in lines[1:] if not line.startswith(" ")}
            assert set(subcommands) | {"HELP"} <= named


def test_config_get(clients: dict[str, redis.Redis], cluster: Cluster) -> None:
    a = clients["1"]
    assert a.config_get("save") == {"save": ""}
    assert a.config_get("appendonly") == {"appendonly": "no"}
    assert a.config_get("no-such-parameter") == {}
    with raw(cluster.nodes["1"]) as c:
        reply = cmd(c, "CONFIG", "SET", "save", "")
        assert isinstance(reply, Error) and reply.text.startswith("ERR ")


def test_quit_answers_ok_and_closes_after_what_came_before(cluster: Cluster) -> None:
    node = cluster.nodes["2"]
    assert exchange(node, b"*1\r\n$4\r\nQUIT\r\n") == b"+OK\r\n"
    pipelined = b"*3\r\n$3\r\nSET\r\n$4\r\nquit\r\n$1\r\n1\r\n*1\r\n$4\r\nQUIT\r\nPING\r\n"
    assert exchange(node, pipelined) == b"+OK\r\n+OK\r\n", "nothing after QUIT is answered"


def test_unknown_command_and_wrong_arity_have_redis_texts(cluster: Cluster) -> None:
    # Texts as redis-server 7 sends them: every quoted argument is followed by a space.
    with raw(cluster.nodes["3"]) as c:
        assert cmd(c, "NOSUCHCOMMAND", "a", "b c") == Error(
            "ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'a' 'b c' "
        )
        assert cmd(c, "nosuchcommand") == Error(
            "ERR unknown command 'nosuchcommand', with args beginning with: "
        )
        assert cmd(c, "GET") == Error("ERR wrong number of arguments for 'get' command")
        assert cmd(c, "set", "k") == Error("ERR wrong number of arguments for 'set' command")
        assert cmd(c, "PING") == SimpleString("PONG"), "an error does not end the connection"


def test_auth_without_a_configured_password_is_an_error(cluster: Cluster) -> None:
    with raw(cluster.nodes["1"]) as c:
        assert cmd(c, "AUTH", "secret") == Error(
            "ERR AUTH <password> called without any password configured for the default "
            "user. Are you sure your configuration is correct?"
        )
        assert cmd(c, "GET", "auth:none") is None


# -------------------------------------------------------------------- string commands


def test_set_on_one_node_get_on_every_other(clients: dict[str, redis.Redis]) -> None:
    for writer, w in clients.items():
        assert w.set(f"sg:{writer}", f"from-{writer}") is True
        for reader, r in clients.items():
            if reader != writer:
                assert r.get(f"sg:{writer}") == f"from-{writer}".encode()
    a, b, c = abc(clients)
    odd = b"\x00\r\n\xff binary \x80"
    assert a.set("sg:binary", odd) is True
    assert b.get("sg:binary") == odd
    assert c.set("sg:empty", b"") is True
    assert a.get("sg:empty") == b""
    assert b.get("sg:missing") is None


def test_set_nx_xx_get_options(cluster: Cluster, clients: dict[str, redis.Redis]) -> None:
    a, b, c = abc(clients)
    assert a.set("opt", "1", nx=True) is True
    assert b.set("opt", "2", nx=True) is None
    assert c.get("opt") == b"1"
    assert b.set("opt:absent", "x", xx=True) is None
    assert a.exists("opt:absent") == 0
    assert c.set("opt", "3", xx=True) is True
    assert a.get("opt") == b"3"
    assert b.set("opt", "4", get=True) == b"3"
    assert c.get("opt") == b"4"
    assert a.set("opt:new", "v", get=True) is None
    assert b.get("opt:new") == b"v"
    with raw(cluster.nodes["3"]) as r:
        assert cmd(r, "SET", "opt", "5", "NX", "XX") == Error("ERR syntax error")
        assert cmd(r, "SET", "opt", "5", "EX", 1, "PX", 1000) == Error("ERR syntax error")
        assert cmd(r, "SET", "opt", "5", "EX", 0) == Error(
            "ERR invalid expire time in 'set' command"
        )
        assert cmd(r, "SET", "opt", "5", "PX", "soon") == Error(
            "ERR value is not an integer or out of range"
        )
        assert cmd(r, "SET", "opt", "5", "NX", "GET") == b"4", "NX with GET: the old value"
    assert a.get("opt") == b"4"


def expired(client: redis.Redis, key: str) -> bool:
    """Whether ``key`` is gone within a bounded number of reads (each one a log entry)."""
    return any(client.exists(key) == 0 for _ in range(EXPIRY_TRIES_MAX))


def test_set_ex_px_and_keys_expire(clients: dict[str, redis.Redis]) -> None:
    a, b, c = abc(clients)
    assert a.set("ex:s", "v", ex=100) is True
    assert 95 <= b.ttl("ex:s") <= 100
    assert 95_000 <= c.pttl("ex:s") <= 100_000
    assert b.set("ex:p", "v", px=50_000) is True
    assert 45_000 <= a.pttl("ex:p") <= 50_000
    assert 45 <= c.ttl("ex:p") <= 50
    assert c.set("ex:s", "w") is True
    assert a.ttl("ex:s") == -1, "a plain SET drops the expiry"
    assert a.set("ex:short", "v", px=1) is True
    assert expired(b, "ex:short"), "a key set with PX 1 never expired"
    assert c.get("ex:short") is None
    assert a.pttl("ex:short") == -2


def test_getset_del_exists(clients: dict[str, redis.Redis]) -> None:
    a, b, c = abc(clients)
    assert a.set("gs", "1") is True
    assert b.getset("gs", "2") == b"1"
    assert c.get("gs") == b"2"
    assert b.getset("gs:missing", "x") is None
    assert a.get("gs:missing") == b"x"
    assert a.mset({"d1": "1", "d2": "2"}) is True
    assert b.exists("d1", "d2", "d1", "nope") == 3
    assert c.delete("d1", "d2", "nope") == 2
    assert a.exists("d1", "d2") == 0
    assert b.delete("d1") == 0


def test_incr_incrby_decr_decrby(cluster: Cluster, clients: dict[str, redis.Redis]) -> None:
    a, b, c = abc(clients)
    assert a.incr("cnt") == 1
    assert b.incr("cnt") == 2
    assert c.incrby("cnt", 10) == 12
    assert a.decr("cnt") == 11
    assert b.decrby("cnt", 5) == 6
    assert c.get("cnt") == b"6"
    assert a.decr("cnt:neg") == -1
    assert a.set("cnt:text", "abc") is True
    with pytest.raises(ResponseError, match="value is not an integer or out of range"):
        b.incr("cnt:text")
    assert c.set("cnt:max", str(2**63 - 1)) is True
    with pytest.raises(ResponseError, match="increment or decrement would overflow"):
        a.incr("cnt:max")
    with raw(cluster.nodes["2"]) as r:
        assert cmd(r, "INCRBY", "cnt", "x") == Error("ERR value is not an integer or out of range")
    assert b.get("cnt:max") == str(2**63 - 1).encode()


def test_append_and_strlen(clients: dict[str, redis.Redis]) -> None:
    a, b, c = abc(clients)
    assert a.append("ap", "Hello") == 5
    assert b.append("ap", " World") == 11
    assert c.get("ap") == b"Hello World"
    assert a.strlen("ap") == 11
    assert b.strlen("ap:missing") == 0


def test_mget_and_mset(cluster: Cluster, clients: dict[str, redis.Redis]) -> None:
    a, b, c = abc(clients)
    assert a.mset({"m1": "a", "m2": "b", "m3": "c"}) is True
    assert b.mget("m1", "m2", "nope", "m3") == [b"a", b"b", None, b"c"]
    assert c.mset({"m1": "z"}) is True
    assert a.mget(["m1", "m2"]) == [b"z", b"b"]
    with raw(cluster.nodes["1"]) as r:
        assert cmd(r, "MSET", "k1", "v1", "k2") == Error(
            "ERR wrong number of arguments for 'mset' command"
        )


def test_expire_pexpire_ttl_pttl_persist_type(clients: dict[str, redis.Redis]) -> None:
    a, b, c = abc(clients)
    assert a.set("e", "v") is True
    assert b.ttl("e") == -1 and c.pttl("e") == -1
    assert b.ttl("e:missing") == -2 and c.pttl("e:missing") == -2
    assert a.expire("e", 100) is True
    assert 95 <= b.ttl("e") <= 100
    assert c.pexpire("e", 200_000) is True
    assert 190_000 <= a.pttl("e") <= 200_000
    assert b.persist("e") is True
    assert c.ttl("e") == -1
    assert a.persist("e") is False
    assert c.expire("e:missing", 10) is False
    assert a.type("e") == b"string"
    assert b.type("e:missing") == b"none"
    assert c.pexpire("e", 1) is True
    assert expired(a, "e"), "a key given PEXPIRE 1 never expired"
    assert b.type("e") == b"none"


def test_hashes_lists_sets_and_sorted_sets_across_nodes(
    cluster: Cluster, clients: dict[str, redis.Redis]
) -> None:
    a, b, c = abc(clients)
    assert a.hset("t:h", mapping={"f1": "v1", "f2": "2"}) == 2
    assert b.hincrby("t:h", "f2", 40) == 42
    assert c.hgetall("t:h") == {b"f1": b"v1", b"f2": b"42"}
    assert a.rpush("t:l", "x", "y", "z") == 3
    assert b.lpop("t:l") == b"x"
    assert c.lrange("t:l", 0, -1) == [b"y", b"z"]
    assert a.zadd("t:z", {"low": 1, "high": 10, "mid": 5}) == 3
    assert b.zincrby("t:z", 0.5, "low") == 1.5
    assert c.zrange("t:z", 0, -1, withscores=True) == [
        (b"low", 1.5),
        (b"mid", 5.0),
        (b"high", 10.0),
    ]
    assert a.zrangebyscore("t:z", "(1.5", "+inf") == [b"mid", b"high"]
    assert b.type("t:z") == b"zset" and c.type("t:h") == b"hash"
    with raw(cluster.nodes["3"]) as r:
        assert cmd(r, "LPUSH", "t:h", "x") == Error(
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        )
    # HGETALL is a map in RESP3 (fields and values in turn in RESP2), as in Redis.
    received = exchange(cluster.nodes["2"], b"HELLO 3\r\nHGETALL t:h\r\nQUIT\r\n")
    assert b"%2\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\n42\r\n+OK\r\n" in received


def test_set_draws_and_orders_are_the_same_on_every_node(cluster: Cluster) -> None:
    # Each node is its own Python process with its own hash seed: an order that
    # followed Python's set iteration, or a draw from a process's random source,
    # would leave the replicas with different sets.
    members = [f"m{i}" for i in range(200)]
    with raw(cluster.nodes["1"]) as r:
        assert cmd(r, "SADD", "t:s", *members) == 200
        popped = cmd(r, "SPOP", "t:s", "17")
        assert cmd(r, "SPOP", "t:s") not in (None, *popped)  # type: ignore[misc]
        assert isinstance(popped, list) and len(set(popped)) == 17
    views = []
    for node in cluster.nodes.values():
        with raw(node) as r:
            views.append((cmd(r, "SMEMBERS", "t:s"), cmd(r, "SSCAN", "t:s", "0", "COUNT", "5")))
    assert views[0] == views[1] == views[2]
    assert isinstance(views[0][0], list) and len(views[0][0]) == 182


def test_dbsize_keys_scan_flushdb(cluster: Cluster, clients: dict[str, redis.Redis]) -> None:
    a, b, c = abc(clients)
    assert a.flushdb() is True
    assert b.dbsize() == 0
    assert c.keys("*") == []
    per_node = 100
    expected: dict[str, set[bytes]] = {}
    for i, client in clients.items():
        keys = {f"sc:{i}:{k}".encode() for k in range(per_node)}
        assert client.mset({key: b"v" for key in keys}) is True
        expected[i] = keys
    every = set().union(*expected.values())
    assert b.dbsize() == len(every)
    assert sorted(c.keys("sc:1:*")) == sorted(expected["1"])
    assert c.keys("sc:1:1?") == sorted(k for k in expected["1"] if re.fullmatch(rb"sc:1:1\d", k))
    assert set(a.scan_iter(count=17)) == every
    assert set(b.scan_iter(match="sc:2:*", count=50)) == expected["2"]
    seen: set[bytes] = set()
    cursor, turns = 0, 0
    while True:  # the raw protocol: at most one pass over every key in pages of 10
        cursor, page = c.scan(cursor)
        seen.update(k for k in page if isinstance(k, bytes))
        turns += 1
        if cursor == 0 or turns > len(every):
            break
    assert cursor == 0 and seen == every
    assert c.dbsize() == len(every)  # applied on node 3: INFO below is up to date
    assert c.info("keyspace")["db0"]["keys"] == len(every)
    assert c.flushdb() is True
    assert a.dbsize() == 0
    assert b.scan(0) == (0, [])
    assert a.info("keyspace") == {}


# --------------------------------------------------------------------- transactions


def test_multi_exec_applies_in_order_and_replicates(clients: dict[str, redis.Redis]) -> None:
    a, b, c = abc(clients)
    with a.pipeline(transaction=True) as p:
        p.set("tx:a", "1")
        p.incr("tx:n")
        p.get("tx:a")
        p.mget("tx:a", "tx:n")
        assert p.execute() == [True, 1, b"1", [b"1", b"1"]]
    assert b.mget("tx:a", "tx:n") == [b"1", b"1"]
    # A command that fails when applied fails alone; the others stay applied (as in Redis).
    with c.pipeline(transaction=True) as p:
        p.set("tx:s", "abc")
        p.incr("tx:s")
        p.set("tx:after", "ok")
        replies = p.execute(raise_on_error=False)
    assert replies[0] is True and replies[2] is True
    assert isinstance(replies[1], ResponseError)
    assert a.get("tx:after") == b"ok"


def test_a_queued_error_aborts_the_whole_transaction(
    cluster: Cluster, clients: dict[str, redis.Redis]
) -> None:
    a, b, c = abc(clients)
    with b.pipeline(transaction=True) as p:
        p.set("tx:aborted", "x")
        p.execute_command("NOSUCHCOMMAND", "arg")  # type: ignore[no-untyped-call]
        with pytest.raises(ResponseError, match="unknown command 'NOSUCHCOMMAND'"):
            p.execute()
    assert c.exists("tx:aborted") == 0
    with raw(cluster.nodes["1"]) as r:
        assert cmd(r, "MULTI") == OK
        assert cmd(r, "SET", "tx:aborted", "y") == SimpleString("QUEUED")
        assert cmd(r, "SET", "tx:aborted") == Error(
            "ERR wrong number of arguments for 'set' command"
        )
        assert cmd(r, "EXEC") == Error(
            "EXECABORT Transaction discarded because of previous errors."
        )
        assert cmd(r, "GET", "tx:aborted") is None
    assert a.exists("tx:aborted") == 0


def test_discard_and_misplaced_transaction_commands(
    cluster: Cluster, clients: dict[str, redis.Redis]
) -> None:
    with raw(cluster.nodes["2"]) as r:
        assert cmd(r, "EXEC") == Error("ERR EXEC without MULTI")
        assert cmd(r, "DISCARD") == Error("ERR DISCARD without MULTI")
        assert cmd(r, "MULTI") == OK
        assert cmd(r, "MULTI") == Error("ERR MULTI calls can not be nested")
        assert cmd(r, "SET", "tx:discarded", "1") == SimpleString("QUEUED")
        assert cmd(r, "DISCARD") == OK
        assert cmd(r, "MULTI") == OK
        assert cmd(r, "EXEC") == [], "an empty transaction"
    assert clients["3"].exists("tx:discarded") == 0


def test_a_transaction_is_one_atomic_log_entry(cluster: Cluster) -> None:
    """Readers on the other nodes never see half of a MULTI/EXEC."""
    rounds, reads_max = 60, 300
    done = threading.Event()
    torn: list[list[bytes | None]] = []
    reads = [0]
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with sync_client(cluster.nodes["1"]) as w:
                for _ in range(rounds):
                    with w.pipeline(transaction=True) as p:
                        p.incr("atomic:x")
                        p.incr("atomic:y")
                        x, y = p.execute()
                        assert x == y
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def read(node: Node) -> None:
        try:
            with sync_client(node) as r:
                for _ in range(reads_max):
                    if done.is_set():
                        return
                    pair = r.mget("atomic:x", "atomic:y")
                    reads[0] += 1
                    if pair[0] != pair[1]:
                        torn.append(pair)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write)]
    threads += [threading.Thread(target=read, args=(cluster.nodes[i],)) for i in ("2", "3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    assert not torn, f"saw half a transaction: {torn[:3]}"
    assert reads[0] > 10, "the readers did not overlap the writer"
    with sync_client(cluster.nodes["2"]) as r:
        assert r.mget("atomic:x", "atomic:y") == [str(rounds).encode()] * 2


# ------------------------------------------------------------------------ pipelining


def test_pipelined_requests_are_answered_in_order(cluster: Cluster) -> None:
    requests = [
        (b"SET", b"pl", b"v1"),
        (b"GET", b"pl"),
        (b"INCR", b"pl:n"),
        (b"PING",),
        (b"APPEND", b"pl", b"+2"),
        (b"ECHO", b"between"),
        (b"GET", b"pl"),
        (b"NOSUCHCOMMAND",),
        (b"INCR", b"pl:n"),
        (b"GET", b"pl:n"),
    ]
    wire = b"".join(
        b"*%d\r\n" % len(r) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in r) for r in requests
    )
    wire += b"SET pl:inline 7\r\nINCR pl:inline\r\nQUIT\r\n"  # inline commands too
    assert exchange(cluster.nodes["3"], wire) == (
        b"+OK\r\n$2\r\nv1\r\n:1\r\n+PONG\r\n:4\r\n$7\r\nbetween\r\n$4\r\nv1+2\r\n"
        b"-ERR unknown command 'NOSUCHCOMMAND', with args beginning with: \r\n"
        b":2\r\n$1\r\n2\r\n+OK\r\n:8\r\n+OK\r\n"
    )


def test_a_10000_command_pipeline_gets_10000_replies_in_order(cluster: Cluster) -> None:
    """Key-value commands (through consensus) interleaved with connection commands.

    One command in ten is a key-value command, so most of the replies are
    local and the order is checked across both kinds
    (test_a_pipeline_shares_consensus_slots pipelines key-value commands alone).
    """
    n, kv_every = 10_000, 10
    node = cluster.nodes["2"]
    with sync_client(node, timeout_s=120) as c:
        p = c.pipeline(transaction=False)
        for k in range(n):
            if k % (2 * kv_every) == 0:
                p.incr("pipe:n")
            elif k % (2 * kv_every) == kv_every:
                p.get("pipe:n")
            else:
                p.echo(f"e{k}")
        replies = p.execute(raise_on_error=False)
    assert len(replies) == n
    # A key-value command refused for want of a leader was not applied: replay the
    # counter over what was applied, so the order of every reply is still checked.
    counter, refused = 0, 0
    for k, reply in enumerate(replies):
        if isinstance(reply, Exception):
            assert is_no_leader(reply) and k % kv_every == 0, (k, reply)
            refused += 1
        elif k % (2 * kv_every) == 0:
            counter += 1
            assert reply == counter, k
        elif k % (2 * kv_every) == kv_every:
            assert reply == str(counter).encode(), k
        else:
            assert reply == f"e{k}".encode(), k
    assert refused < n // kv_every // 10, f"{refused} commands refused: elections all along"
    with sync_client(cluster.nodes["3"]) as c:
        assert c.get("pipe:n") == str(counter).encode()


def test_a_pipeline_shares_consensus_slots(cluster: Cluster) -> None:
    n = 400
    leader = cluster.nodes[leader_id(cluster)]
    with sync_client(leader, timeout_s=60) as c:
        before = int(status(c)[b"chosen_slot"])
        p = c.pipeline(transaction=False)
        for _ in range(n):
            p.incr("share:n")
        assert p.execute() == list(range(1, n + 1))
        used = int(status(c)[b"chosen_slot"]) - before
    assert used <= n // 2, f"{n} pipelined commands took {used} consensus slots"


# ------------------------------------------------------------------ malformed requests


def test_malformed_resp_gets_the_protocol_error_and_closes_only_that_connection(
    cluster: Cluster,
) -> None:
    node = cluster.nodes["1"]
    with raw(node) as bystander:
        assert cmd(bystander, "SET", "mal:k", "before") == OK
        assert exchange(node, b"*1\r\n$abc\r\n") == b"-ERR Protocol error: invalid bulk length\r\n"
        assert exchange(node, b"*abc\r\n") == b"-ERR Protocol error: invalid multibulk length\r\n"
        assert (
            exchange(node, b'SET "unbalanced\r\n')
            == b"-ERR Protocol error: unbalanced quotes in request\r\n"
        )
        # What came before the garbage is answered first, then the error, then EOF.
        assert exchange(node, b"*3\r\n$3\r\nSET\r\n$5\r\nmal:k\r\n$5\r\nafter\r\n*1\r\nx\r\n") == (
            b"+OK\r\n-ERR Protocol error: expected '$', got 'x'\r\n"
        )
        assert cmd(bystander, "GET", "mal:k") == b"after"
        assert cmd(bystander, "PING") == SimpleString("PONG")
    with sync_client(cluster.nodes["2"]) as c:
        assert c.get("mal:k") == b"after"


def test_an_oversized_bulk_or_argument_count_is_refused(cluster: Cluster) -> None:
    node = cluster.nodes["2"]
    with raw(node) as bystander:
        too_long = 512 * 1024 * 1024 + 1  # above proto-max-bulk-len, as in Redis
        assert (
            exchange(node, b"*2\r\n$3\r\nGET\r\n$%d\r\n" % too_long)
            == b"-ERR Protocol error: invalid bulk length\r\n"
        )
        too_many = 1024 * 1024 + 1
        assert (
            exchange(node, b"*%d\r\n" % too_many)
            == b"-ERR Protocol error: invalid multibulk length\r\n"
        )
        assert cmd(bystander, "SET", "big:k", "v") == OK
    with sync_client(cluster.nodes["3"]) as c:
        assert c.get("big:k") == b"v"


# ---------------------------------------------------------------------------- RESP3


def test_resp3_after_hello_3(cluster: Cluster) -> None:
    hello = exchange(cluster.nodes["1"], b"HELLO 3\r\nGET resp3:missing\r\nQUIT\r\n")
    assert hello.startswith(b"%7\r\n"), "HELLO 3 answers with a map"
    assert hello.endswith(b"_\r\n+OK\r\n"), "RESP3 null"
    with (
        sync_client(cluster.nodes["1"], protocol=3) as a,
        sync_client(cluster.nodes["2"], protocol=3) as b,
    ):
        greeting = call(a, "HELLO", 3)
        assert isinstance(greeting, dict) and greeting[b"proto"] == 3
        assert greeting[b"server"] == b"redis"
        assert a.set("resp3:k", "v") is True
        assert b.get("resp3:k") == b"v"
        assert b.get("resp3:missing") is None
        assert a.incr("resp3:n") == 1 and b.incrby("resp3:n", 2) == 3
        assert b.mget("resp3:k", "resp3:missing") == [b"v", None]
        st = call(b, "PAXOS.STATUS")
        assert isinstance(st, dict) and st[b"leader_id"] in {i.encode() for i in cluster.nodes}
        assert a.config_get("save") == {"save": ""}
        with a.pipeline(transaction=True) as p:
            p.incr("resp3:n")
            p.get("resp3:n")
            assert p.execute() == [4, b"4"]
        assert set(b.scan_iter(match="resp3:*")) == {b"resp3:k", b"resp3:n"}


# -------------------------------------------------------------------------- asyncio


async def test_asyncio_client_every_command(cluster: Cluster) -> None:
    a = async_client(cluster.nodes["1"])
    b = async_client(cluster.nodes["2"])
    c = async_client(cluster.nodes["3"])
    try:
        assert await a.ping() is True
        assert await b.echo("async") == b"async"
        assert await acall(c, "SELECT", 0) in (True, b"OK")
        assert await a.set("as:k", "1") is True
        assert await b.get("as:k") == b"1"
        assert await c.set("as:k", "2", nx=True) is None
        assert await a.set("as:k", "2", xx=True, get=True) == b"1"
        assert await b.set("as:ex", "v", ex=100) is True
        assert 95 <= await c.ttl("as:ex") <= 100
        assert await a.set("as:px", "v", px=100_000) is True
        assert 95_000 <= await b.pttl("as:px") <= 100_000
        assert await c.getset("as:k", "3") == b"2"
        assert await a.incr("as:n") == 1
        assert await b.incrby("as:n", 5) == 6
        assert await c.decr("as:n") == 5
        assert await a.decrby("as:n", 2) == 3
        assert await b.append("as:s", "ab") == 2 and await c.append("as:s", "cd") == 4
        assert await a.strlen("as:s") == 4
        assert await b.mset({"as:m1": "x", "as:m2": "y"}) is True
        assert await c.mget("as:m1", "as:m2", "as:none") == [b"x", b"y", None]
        assert await a.exists("as:m1", "as:m2", "as:none") == 2
        assert await b.expire("as:m1", 100) is True
        assert await c.pexpire("as:m2", 100_000) is True
        assert await a.persist("as:m1") is True and await b.ttl("as:m1") == -1
        assert await c.type("as:m1") == b"string"
        assert await a.delete("as:m1", "as:m2") == 2
        ours = {b"as:k", b"as:ex", b"as:px", b"as:n", b"as:s"}
        assert set(await b.keys("as:*")) == ours
        assert {k async for k in c.scan_iter(match="as:*", count=3)} == ours
        size = await a.dbsize()
        assert await b.set("as:one-more", "v") is True
        assert await c.dbsize() == size + 1
        async with a.pipeline(transaction=True) as p:
            p.incr("as:tx")
            p.incr("as:tx")
            p.get("as:tx")
            assert await p.execute() == [1, 2, b"2"]
        async with b.pipeline(transaction=False) as p:
            for _ in range(100):
                p.incr("as:pipe")
            assert await p.execute() == list(range(1, 101))
        assert await c.client_setname("async-client") is True
        assert await c.client_getname() == "async-client"
        assert isinstance(await c.client_id(), int)
        assert str((await a.info("paxos"))["leader_id"]) in cluster.nodes
        assert await b.command_count() > len(COMMANDS)
        assert await c.config_get("appendonly") == {"appendonly": "no"}
        with pytest.raises(ResponseError, match="unknown command"):
            await acall(a, "NOSUCHCOMMAND")
        # Concurrent INCRs from every node: each value once, as from one Redis.
        values = await asyncio.gather(
            *(client.incr("as:race") for _ in range(10) for client in (a, b, c))
        )
        assert sorted(values) == list(range(1, 31))
    finally:
        for client in (a, b, c):
            await client.aclose()


# ---------------------------------------------------------------------- no leader


def test_without_a_quorum_kv_commands_get_tryagain_at_once(tmp_path: Path) -> None:
    lonely = Cluster(tmp_path, 3)  # only node 1 runs: no quorum, no leader
    node = lonely.nodes["1"]
    node.start()
    try:
        node.wait_ready()
        with raw(node) as r:
            reply = cmd(r, "SET", "k", "v")
            assert isinstance(reply, Error) and reply.text.startswith(
                "TRYAGAIN no leader is known yet"
            )
            assert cmd(r, "MULTI") == OK
            assert cmd(r, "INCR", "n") == SimpleString("QUEUED")
            reply = cmd(r, "EXEC")
            assert isinstance(reply, Error) and reply.text.startswith("TRYAGAIN")
            assert cmd(r, "PING") == SimpleString("PONG"), "connection commands still work"
        with sync_client(node, patient=False) as c:
            with pytest.raises(TryAgainError) as caught:
                c.get("k")
            assert is_no_leader(caught.value)
    finally:
        lonely.stop()


# ------------------------------------------------------------------- requirepass

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """The node of a one-node cluster started with ``--requirepass``."""
    c = start_kv_cluster(
        tmp_path_factory.mktemp("kv-auth"),
        1,
        extra_args=("--requirepass", PASSWORD),
        password=PASSWORD,
    )
    try:
        yield c.nodes["1"]
    finally:
        c.stop()


def test_unauthenticated_clients_are_refused(locked: Node) -> None:
    with raw(locked) as r:
        for args in (("GET", "k"), ("SET", "k", "v"), ("PING",), ("INFO",), ("MULTI",)):
            assert cmd(r, *args) == Error("NOAUTH Authentication required.")
        assert cmd(r, "HELLO", 3) == Error(
            "NOAUTH HELLO must be called with the client already authenticated"
        )
    assert exchange(locked, b"QUIT\r\n") == b"+OK\r\n", "QUIT needs no password"
    with (
        sync_client(locked, single_connection=False) as c,
        pytest.raises(AuthenticationError, match="Authentication required"),
    ):
        c.get("k")


def test_auth_and_hello_auth(locked: Node) -> None:
    with raw(locked) as r:
        wrong = Error("WRONGPASS invalid username-password pair or user is disabled.")
        assert cmd(r, "AUTH", "guess") == wrong
        assert cmd(r, "AUTH", "someone", PASSWORD) == wrong
        assert cmd(r, "GET", "auth:k") == Error("NOAUTH Authentication required.")
        assert cmd(r, "AUTH", PASSWORD) == OK
        assert cmd(r, "SET", "auth:k", "v") == OK
        assert cmd(r, "AUTH", "default", PASSWORD) == OK
    hello = f'HELLO 3 AUTH default "{PASSWORD}"\r\nGET auth:k\r\nQUIT\r\n'
    answer = exchange(locked, hello.encode())
    assert answer.startswith(b"%7\r\n") and answer.endswith(b"$1\r\nv\r\n+OK\r\n")
    for protocol in (2, 3):  # redis-py sends AUTH (RESP2) or HELLO 3 AUTH (RESP3)
        with sync_client(locked, protocol=protocol, password=PASSWORD) as c:
            assert c.incr("auth:n") == protocol - 1
            assert c.get("auth:k") == b"v"
    with pytest.raises(AuthenticationError):
        sync_client(locked, password="wrong")
