"""Streams on a 3-process cluster through redis-py: ``XREAD BLOCK`` woken by an ``XADD``
applied on another node, the ``$`` ID, timeouts, and IDs every node agrees on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from .cluster import Cluster
from .kv_client import call, node_clients, running_kv_cluster
from .test_kv_apps import THREAD_TIMEOUT_S, _start_blocked


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_kv_cluster(tmp_path_factory.mktemp("kv-streams")) as c:
        yield c


@pytest.fixture(scope="module")
def clients(cluster: Cluster) -> Iterator[dict[str, redis.Redis]]:
    with node_clients(cluster) as cs:
        yield cs


def _id(raw: object) -> tuple[int, int]:
    assert isinstance(raw, bytes), raw
    ms, seq = raw.split(b"-")
    return int(ms), int(seq)


def test_xread_block_dollar_wakes_on_an_xadd_from_another_node(
    cluster: Cluster, clients: dict[str, redis.Redis]
) -> None:
    writer = clients["2"]
    old = writer.xadd("st:wake", {"n": "old"})
    t, got = _start_blocked(
        cluster.nodes["1"].resp_port,
        ("XREAD", "BLOCK", "0", "STREAMS", "st:wake", "$"),
        clients["1"],
    )
    new = writer.xadd("st:wake", {"n": "new"})
    t.join(THREAD_TIMEOUT_S)
    assert not t.is_alive()
    # Only what came after the call ($), not the entry already there.
    assert got == [[[b"st:wake", [(new, {b"n": b"new"})]]]]  # redis-py's parse
    assert _id(old) < _id(new)


def test_xread_block_with_an_id_returns_at_once_or_times_out(
    clients: dict[str, redis.Redis],
) -> None:
    c = clients["3"]
    first = c.xadd("st:now", {"a": "1"})
    assert c.xread({"st:now": "0"}, block=10_000) == [[b"st:now", [(first, {b"a": b"1"})]]]
    assert c.xread({"st:now": first}, block=150) == []  # redis-py reads the null as []
    assert call(c, "XREAD", "BLOCK", "100", "STREAMS", "st:none", "$") == []
    with pytest.raises(redis.ResponseError, match="timeout is negative"):
        call(c, "XREAD", "BLOCK", "-1", "STREAMS", "st:now", "0")


def test_every_node_reads_the_same_ids_and_entries(clients: dict[str, redis.Redis]) -> None:
    ids = [
        clients[str(1 + i % 3)].xadd("st:same", {"i": str(i)}, maxlen=5, approximate=False)
        for i in range(12)
    ]
    assert ids == sorted(ids, key=_id)
    views = [call(c, "XRANGE", "st:same", "-", "+") for c in clients.values()]
    assert views[0] == views[1] == views[2]
    assert [entry_id for entry_id, _ in views[0]] == ids[-5:]
    assert all(c.xlen("st:same") == 5 for c in clients.values())
