"""``INFO``'s sections and ``commandstats`` on a real one-node store (durable log, fsync).

Commands go through ``NodeCommands`` as the server hands them over, so the
counters are those a client would see in ``INFO commandstats`` and on the
metrics port.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from paxostob import MemoryNetwork, TotalOrderBroadcast
from paxostob.apps.broadcast_log import BroadcastLog
from paxostob.apps.kv import KeyValueStore
from paxostob.apps.tagged import TaggedStateMachine
from paxostob.kv.state_machine import KvStateMachine
from paxostob.resp.commands import NodeCommands
from paxostob.resp.protocol import Error, Reply
from paxostob.resp.server import Connection, RespServer
from paxostob.resp.stats import LATENCY_BUCKETS_S, CommandStats

WAIT_S = 20.0


@asynccontextmanager
async def commands(
    tmp_path: Path, members: tuple[str, ...] = ("a",)
) -> AsyncIterator[NodeCommands]:
    """``paxostob serve``'s wiring of node ``a`` (its peers never start), without sockets."""
    net = MemoryNetwork(seed=3)
    transport = net.transport("a")
    log_app = BroadcastLog()
    machine = KvStateMachine()
    tob = TotalOrderBroadcast(
        transport,
        list(members),
        tick_interval_s=0.002,
        data_dir=tmp_path,
        bootstrap=True,
        state_machine=TaggedStateMachine({b"K": machine}, observer=log_app),
    )
    kv = KeyValueStore(tob, machine=machine, tag=b"K")
    nc = NodeCommands(tob, log_app, node_id="a", kv=kv)
    nc.server = RespServer(nc, port=0)
    await tob.start()
    try:
        yield nc
    finally:
        await tob.close()
        await transport.close()


async def run(nc: NodeCommands, *args: str | bytes) -> Reply:
    conn = Connection(1, "test")
    raw = [a if isinstance(a, bytes) else a.encode() for a in args]
    [(reply, _)] = nc.dispatch_many(conn, [raw])
    if inspect.isawaitable(reply):
        awaitable: Awaitable[Reply] = reply
        return await asyncio.wait_for(awaitable, WAIT_S)
    return reply


def sections(text: bytes) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.decode().split("\r\n"):
        if line.startswith("# "):
            current = out.setdefault(line[2:], {})
        elif line:
            key, _, value = line.partition(":")
            current[key] = value
    return out


async def test_info_has_redis_sections_and_field_names(tmp_path: Path) -> None:
    async with commands(tmp_path) as nc:
        await run(nc, "PAXOS.BROADCAST", "hello")  # a leader is known, a save was synced
        text = await run(nc, "INFO")
        assert isinstance(text, bytes) and text.endswith(b"\r\n")
        info = sections(text)
    assert list(info) == [
        "Server",
        "Clients",
        "Memory",
        "Persistence",
        "Stats",
        "Replication",
        "CPU",
        "Paxos",
        "Keyspace",
    ]  # Commandstats only when asked for, as in Redis
    assert info["Server"]["redis_version"] == "7.0.0"
    assert int(info["Server"]["process_id"]) > 0
    assert info["Clients"] == {"connected_clients": "0", "maxclients": "10000"}
    assert int(info["Memory"]["used_memory_rss"]) > 0
    assert info["Memory"]["maxmemory_policy"] == "noeviction"
    persistence = info["Persistence"]
    assert persistence["loading"] == "0" and persistence["rdb_last_bgsave_status"] == "ok"
    assert int(persistence["log_fsyncs"]) > 0  # a real log, really synced
    assert persistence["rdb_changes_since_last_save"].isdigit()
    assert info["Stats"]["total_connections_received"] == "0"
    assert float(info["CPU"]["used_cpu_user"]) > 0
    assert info["Replication"]["role"] == "master"
    paxos = info["Paxos"]
    assert paxos["node_id"] == "a" and paxos["role"] == "leader" and paxos["leader_id"] == "a"
    assert paxos["proposals_failed"] == "0"


async def test_commandstats_count_calls_failures_refusals_and_unknown_commands(
    tmp_path: Path,
) -> None:
    async with commands(tmp_path) as nc:
        assert await run(nc, "PAXOS.BROADCAST", "m") is not None  # waits for the leader
        for k in range(3):
            assert await run(nc, "SET", f"k{k}", "v") is not None
        assert await run(nc, "get", "k1") == b"v"
        assert isinstance(await run(nc, "INCR", "k1"), Error)  # not an integer: failed
        assert isinstance(await run(nc, "SET", "only-a-key"), Error)  # arity: rejected
        assert isinstance(await run(nc, "NOSUCH", "x"), Error)  # unknown
        text = await run(nc, "INFO", "commandstats", "stats")
        assert isinstance(text, bytes)
        info = sections(text)
        stats = nc.stats
    assert list(info) == ["Stats", "Commandstats"]
    cmd = {k.removeprefix("cmdstat_"): dict(f.split("=") for f in v.split(",")) for k, v in
           info["Commandstats"].items()}  # fmt: skip
    assert cmd["set"]["calls"] == "3" and cmd["set"]["rejected_calls"] == "1"
    assert cmd["set"]["failed_calls"] == "0"
    assert cmd["get"]["calls"] == "1"
    assert cmd["incr"] == {
        "calls": "1",
        "usec": cmd["incr"]["usec"],
        "usec_per_call": f"{int(cmd['incr']['usec']):.2f}",
        "rejected_calls": "0",
        "failed_calls": "1",
    }
    assert cmd["paxos.broadcast"]["calls"] == "1"
    assert int(cmd["set"]["usec"]) > 0  # a write waited for its log entry
    assert "nosuch" not in cmd
    # INFO itself was counted when it completed, before this INFO's text was made.
    assert info["Stats"]["unknown_commands"] == "1"
    assert int(info["Stats"]["total_commands_processed"]) == stats.calls - 1
    # Errors: the failed INCR, the rejected SET and the unknown command.
    assert info["Stats"]["total_error_replies"] == "3"


async def test_commands_without_a_leader_are_refused_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with commands(tmp_path, ("a", "b", "c")) as nc:
        replies = [await run(nc, "SET", "k", "v") for _ in range(5)]
        assert all(isinstance(r, Error) and r.text.startswith("TRYAGAIN") for r in replies)
        stat = nc.stats.by_name[b"set"]
    assert (stat.calls, stat.rejected) == (0, 5)
    refused = [r for r in caplog.records if getattr(r, "event", None) == "refused"]
    assert len(refused) == 1, [r.getMessage() for r in refused]
    assert (
        refused[0]
        .getMessage()
        .startswith("a: refused a command with TRYAGAIN: no leader is known (ballot ")
    )
    assert refused[0].__dict__["slot"] == 0 and refused[0].levelname == "WARNING"


def test_latency_buckets_hold_each_value_in_the_first_bound_at_or_above_it() -> None:
    stats = CommandStats()
    stats.record(b"get", LATENCY_BUCKETS_S[0], failed=False)  # on a bound: that bucket
    stats.record(b"get", LATENCY_BUCKETS_S[0] * 1.01, failed=False)
    stats.record(b"get", 99.0, failed=True)  # above every bound: the last
    s = stats.by_name[b"get"]
    assert s.buckets[0] == 1 and s.buckets[1] == 1 and s.buckets[-1] == 1
    assert sum(s.buckets) == s.calls == 3 and s.failed == 1
    assert s.usec == 100 + 101 + 99_000_000


def test_a_group_is_counted_per_command_and_an_exception_fails_them_all() -> None:
    stats = CommandStats()
    stats.record_group([[b"SET", b"a", b"1"], [b"Get", b"a"]], 0.002, [b"OK", Error("ERR x")])
    stats.record_group([[b"set", b"b", b"2"]], 0.003, TimeoutError("lost"))
    assert stats.by_name[b"set"].calls == 2 and stats.by_name[b"set"].failed == 1
    assert stats.by_name[b"get"].calls == 1 and stats.by_name[b"get"].failed == 1
    assert stats.info_lines() == [
        "cmdstat_get:calls=1,usec=2000,usec_per_call=2000.00,rejected_calls=0,failed_calls=1",
        "cmdstat_set:calls=2,usec=5000,usec_per_call=2500.00,rejected_calls=0,failed_calls=1",
    ]
