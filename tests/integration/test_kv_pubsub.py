"""Pub/sub on a 3-process cluster: messages go through the log, in one order for all.

Subscribers on two nodes and publishers on two nodes: every subscriber sees
the same sequence, because each node pushes a message to its own subscribers
when it applies that message's log entry. The wire bytes of the subscribe
mode, its refusals and its pushes (RESP2 arrays, RESP3 ``>``) are compared
with a real redis-server 7 where they are deterministic.

One cluster serves the whole module; each test uses its own channels.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.kv.real_redis import redis_server

from .cluster import Cluster
from .kv_client import call, running_kv_cluster, sync_client

#: Messages each of the two publishers sends in the ordering test: enough for
#: their entries to interleave in the log, few enough to take well under a second.
MESSAGES_PER_PUBLISHER = 60
WAIT_S = 20.0
#: Ends each step of a raw exchange: its reply is the last thing the step reads.
SENTINEL = b"END-OF-STEP"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_kv_cluster(tmp_path_factory.mktemp("kv-pubsub")) as c:
        yield c


def _subscriber(cluster: Cluster, node_id: str) -> Any:
    """A redis-py ``PubSub`` on ``node_id`` (redis-py's pub/sub API is untyped)."""
    client = redis.Redis(port=cluster.nodes[node_id].resp_port, socket_timeout=WAIT_S)
    return client.pubsub()


def _confirmed(ps: Any) -> None:
    """Read the confirmation of the subscription just sent: it is then active on its node."""
    message = ps.get_message(timeout=WAIT_S)
    assert message is not None and message["type"] in ("subscribe", "psubscribe"), message


def _collect(ps: Any, count: int) -> list[tuple[Any, ...]]:
    """The next ``count`` messages as ``(type, pattern, channel, data)``; fails after ``WAIT_S``."""
    got: list[tuple[Any, ...]] = []
    while len(got) < count:
        m = ps.get_message(timeout=WAIT_S)
        assert m is not None, f"only {len(got)} of {count} messages arrived: {got[-3:]}"
        got.append((m["type"], m["pattern"], m["channel"], m["data"]))
    return got


def test_subscribers_on_two_nodes_see_one_order_of_two_nodes_publishes(cluster: Cluster) -> None:
    subs = {n: _subscriber(cluster, n) for n in ("2", "3")}
    for ps in subs.values():
        ps.subscribe("orders")
        _confirmed(ps)
    counts: dict[str, list[int]] = {"1": [], "2": []}
    errors: list[BaseException] = []

    def publish(node_id: str) -> None:
        try:
            with sync_client(cluster.nodes[node_id]) as c:
                for i in range(MESSAGES_PER_PUBLISHER):
                    counts[node_id].append(call(c, "PUBLISH", "orders", f"{node_id}:{i}"))
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=publish, args=(n,)) for n in counts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    total = 2 * MESSAGES_PER_PUBLISHER
    seen = {n: _collect(ps, total) for n, ps in subs.items()}
    for ps in subs.values():
        ps.close()
    assert seen["2"] == seen["3"]
    data = [d.decode() for _, _, _, d in seen["2"]]
    # Each publisher's messages in the order it sent them, none lost or doubled.
    for node_id in counts:
        mine = [d for d in data if d.startswith(node_id + ":")]
        assert mine == [f"{node_id}:{i}" for i in range(MESSAGES_PER_PUBLISHER)]
    # PUBLISH counts the receivers on the node it was sent to (Redis Cluster's rule).
    assert counts["1"] == [0] * MESSAGES_PER_PUBLISHER
    assert counts["2"] == [1] * MESSAGES_PER_PUBLISHER


def test_pattern_subscribers_get_pmessages_of_matching_channels_only(cluster: Cluster) -> None:
    ps = _subscriber(cluster, "3")
    ps.psubscribe("news.*")
    _confirmed(ps)
    ps.subscribe("news.sport")
    _confirmed(ps)
    with sync_client(cluster.nodes["1"]) as c:
        assert call(c, "PUBLISH", "news.sport", "goal") == 0  # the subscriber is on node 3
        assert call(c, "PUBLISH", "weather", "rain") == 0
        assert call(c, "PUBLISH", "news.art", "paint") == 0
    with sync_client(cluster.nodes["3"]) as c:
        assert call(c, "PUBSUB", "NUMPAT") == 1
        assert call(c, "PUBSUB", "NUMSUB", "news.sport", "weather") == [
            b"news.sport",
            1,
            b"weather",
            0,
        ]
        assert call(c, "PUBSUB", "CHANNELS", "news.*") == [b"news.sport"]
        # Both subscriptions receive it: counted twice, as Redis counts.
        assert call(c, "PUBLISH", "news.sport", "again") == 2
    got = _collect(ps, 5)
    ps.close()
    assert got == [
        ("message", None, b"news.sport", b"goal"),
        ("pmessage", b"news.*", b"news.sport", b"goal"),
        ("pmessage", b"news.*", b"news.art", b"paint"),
        ("message", None, b"news.sport", b"again"),
        ("pmessage", b"news.*", b"news.sport", b"again"),
    ]


# --- the bytes on the wire, against redis-server 7 ----------------------------------------


class _Raw:
    """A raw connection: each step sends commands and a sentinel, and returns every
    byte up to the sentinel's reply (no parsing: the bytes are what is compared)."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)

    def close(self) -> None:
        self._sock.close()

    def step(self, *commands: tuple[bytes, ...]) -> bytes:
        out = bytearray()
        # PING with an argument: its reply ends with it in and out of subscribe mode.
        for args in (*commands, (b"PING", SENTINEL)):
            out += b"*%d\r\n" % len(args)
            for a in args:
                out += b"$%d\r\n%b\r\n" % (len(a), a)
        self._sock.sendall(out)
        data = bytearray()
        while not data.endswith(SENTINEL + b"\r\n"):
            chunk = self._sock.recv(65536)
            assert chunk, f"connection closed after {bytes(data)!r}"
            data += chunk
        return bytes(data)


def _transcript(port: int) -> list[bytes]:
    """The same conversation with any server on ``port``: the bytes of each step."""
    sub, pub = _Raw(port), _Raw(port)
    try:
        steps = [
            sub.step((b"SUBSCRIBE", b"wire.a", b"wire.b")),
            sub.step((b"GET", b"k")),
            sub.step((b"PING",), (b"PING", b"hi")),
            sub.step((b"PSUBSCRIBE", b"wire.*")),
            sub.step((b"SUBSCRIBE",)),
            sub.step((b"GET",)),
            pub.step((b"PUBLISH", b"wire.a", b"hello")),
            sub.step(),  # the message and pmessage, pushed before the PING's reply
            sub.step((b"UNSUBSCRIBE", b"wire.b")),
            sub.step((b"UNSUBSCRIBE",)),  # all: one left (Redis's order of several is its hash's)
            sub.step((b"PUNSUBSCRIBE", b"wire.*")),
            sub.step((b"UNSUBSCRIBE",)),
            sub.step((b"PUNSUBSCRIBE",)),
            sub.step((b"GET", b"wire.none")),  # no longer in subscribe mode
            pub.step((b"PUBSUB", b"NUMSUB", b"wire.a")),
            pub.step((b"PUBSUB", b"NUMPAT")),
        ]
        # RESP3: confirmations and messages are pushes (">"), and any command is allowed.
        sub.step((b"HELLO", b"3"))
        steps += [
            sub.step((b"SUBSCRIBE", b"wire.3")),
            sub.step((b"GET", b"wire.none")),
            pub.step((b"PUBLISH", b"wire.3", b"three")),
            sub.step((b"PING",)),
            sub.step((b"UNSUBSCRIBE", b"wire.3")),
        ]
        return steps
    finally:
        sub.close()
        pub.close()


def test_subscribe_mode_bytes_are_redis_7s(cluster: Cluster, tmp_path: Path) -> None:
    ours = _transcript(cluster.nodes["1"].resp_port)
    with redis_server(tmp_path) as port:
        theirs = _transcript(port)
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a == b, f"step {i}: ours {a!r} != redis's {b!r}"


def test_publish_in_exec_is_delivered_and_in_an_aborted_exec_is_not(cluster: Cluster) -> None:
    ps = _subscriber(cluster, "2")
    ps.subscribe("tx")
    _confirmed(ps)
    with sync_client(cluster.nodes["1"]) as c, sync_client(cluster.nodes["1"]) as other:
        call(c, "WATCH", "tx.k")
        call(other, "SET", "tx.k", "changed")  # the watched key changes: EXEC aborts
        call(c, "MULTI")
        call(c, "PUBLISH", "tx", "aborted")
        assert call(c, "EXEC") is None
        call(c, "MULTI")
        call(c, "PUBLISH", "tx", "committed")
        assert call(c, "EXEC") == [0]
        with pytest.raises(redis.ResponseError, match="not allowed from script"):
            call(c, "EVAL", "return redis.call('publish', 'tx', 'scripted')", 0)
        assert call(c, "PUBLISH", "tx", "last") == 0
    got = _collect(ps, 2)
    ps.close()
    assert got == [("message", None, b"tx", b"committed"), ("message", None, b"tx", b"last")]
