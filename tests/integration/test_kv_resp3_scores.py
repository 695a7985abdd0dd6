"""Sorted-set replies with scores reach a RESP3 client in Redis 7's shape.

redis-py 8 speaks RESP3 unless told otherwise and unpacks ``WITHSCORES``
replies and pops pair by pair (Kombu's Redis transport does so to put back a
dead worker's messages); a flat array made it raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from .cluster import Cluster
from .kv_client import call, running_kv_cluster, sync_client


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_kv_cluster(tmp_path_factory.mktemp("kv-resp3")) as c:
        yield c


@pytest.fixture
def resp3(cluster: Cluster) -> Iterator[redis.Redis]:
    with sync_client(cluster.nodes["2"], protocol=3) as c:
        yield c


def test_withscores_replies_are_pairs_with_float_scores(resp3: redis.Redis) -> None:
    resp3.delete("z3")
    resp3.zadd("z3", {"a": 1, "b": 2.5, "c": float("inf")})
    expected = [[b"a", 1.0], [b"b", 2.5], [b"c", float("inf")]]  # redis-py's RESP3 shape
    assert resp3.zrange("z3", 0, -1, withscores=True) == expected
    assert resp3.zrangebyscore("z3", "-inf", "+inf", withscores=True) == expected
    assert resp3.zrevrangebyscore("z3", "+inf", 0, withscores=True) == expected[::-1]
    assert resp3.zrevrange("z3", 0, 0, withscores=True) == [[b"c", float("inf")]]
    # What Kombu's restore_visible does with such a reply.
    pairs: list[list[object]] = resp3.zrevrangebyscore(  # type: ignore[assignment]
        "z3", 3, 0, withscores=True
    )
    assert [member for member, _score in pairs] == [b"b", b"a"]
    assert resp3.zrange("z3", 0, -1) == [b"a", b"b", b"c"]  # no scores: unchanged


def test_pops_return_member_and_float_score(resp3: redis.Redis) -> None:
    resp3.delete("zp")
    resp3.zadd("zp", {"a": 1, "b": 2, "c": 3})
    assert call(resp3, "ZPOPMIN", "zp") == [b"a", 1.0]
    assert call(resp3, "ZPOPMAX", "zp", "2") == [[b"c", 3.0], [b"b", 2.0]]
    resp3.zadd("zp", {"d": 4})
    assert list(call(resp3, "BZPOPMIN", "zp", "1")) == [b"zp", b"d", 4.0]
