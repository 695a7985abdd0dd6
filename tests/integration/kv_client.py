"""redis-py clients for the key-value integration tests, and a cluster that is ready for them.

Every client here has redis-py's own retries turned off. redis-py 8 retries a
command, and re-sends a whole pipeline, up to ten times after a socket timeout
or a connection error: with INCR or APPEND that applies a command again behind
the test's back (a 10,000-command pipeline that timed out once came back as
46,000 INCRs), and it would hide from the linearizability test the errors it
must record as "maybe happened".

A node that logged its ready line may not know a leader yet, and answers key-
value commands with ``-TRYAGAIN`` until it does; so does a node whose leader
missed a few heartbeats (on a loaded 2-core machine a process can stall for
the 75 ms of an election timeout). ``start_kv_cluster`` returns once every node
delivered a broadcast and all name the same leader; the clients here send a
command again after that "no leader" answer (nothing was proposed), once a
broadcast shows a leader is back. ``PAXOS.BROADCAST`` waits for a leader, so
nothing here sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import TryAgainError
from redis.retry import Retry

from .cluster import Cluster, Node

__all__ = [
    "NO_LEADER",
    "acall",
    "async_client",
    "call",
    "is_no_leader",
    "start_kv_cluster",
    "status",
    "sync_client",
]

#: How a node that knows no leader answers a key-value command (nothing was proposed);
#: redis-py raises it as ``TryAgainError`` with the text after the code.
NO_LEADER = "no leader is known yet"
REPLY_TIMEOUT_S = 30.0
#: Waits for a leader before a client gives up on a "no leader" answer; each wait is a
#: PAXOS.BROADCAST, which the node answers once a leader delivered it (or after 10 s).
LEADER_WAITS_MAX = 5
#: Rounds of broadcasts from every node until all name the same leader and ballot.
AGREEMENT_ROUNDS_MAX = 10


def is_no_leader(e: BaseException) -> bool:
    """Whether ``e`` is the node's "no leader" answer: the command was not proposed."""
    return isinstance(e, TryAgainError) and str(e).startswith(NO_LEADER)


def await_leader(port: int, password: str | None) -> None:
    """Return once the node on ``port`` delivered a broadcast, which needs a leader."""
    with redis.Redis(
        port=port,
        protocol=2,
        password=password,
        socket_timeout=REPLY_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
    ) as c:
        for attempt in range(LEADER_WAITS_MAX):
            try:
                call(c, "PAXOS.BROADCAST", "awaiting-a-leader")
                return
            except TryAgainError:  # not delivered within the node's broadcast timeout
                if attempt == LEADER_WAITS_MAX - 1:
                    raise


class PatientRedis(redis.Redis):
    """A client that sends a command again when the node refused it for want of a leader.

    Safe for any command: a node that knows no leader answers at once, without
    proposing anything. Every other error, ``TRYAGAIN`` after a timeout included
    (that command may still be applied), goes to the caller. Pipelines are not
    covered: their replies come back one by one.
    """

    def __init__(self, *, port: int, password: str | None = None, **kwargs: Any) -> None:
        super().__init__(port=port, password=password, **kwargs)
        self._port = port
        self._password = password

    def execute_command(self, *args: Any, **options: Any) -> Any:
        for attempt in range(LEADER_WAITS_MAX + 1):
            try:
                return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
            except TryAgainError as e:
                if not is_no_leader(e) or attempt == LEADER_WAITS_MAX:
                    raise
                await_leader(self._port, self._password)
        raise AssertionError("unreachable")


class PatientAsyncRedis(redis.asyncio.Redis):
    """``PatientRedis`` for asyncio (it waits for the leader in a worker thread)."""

    def __init__(self, *, port: int, **kwargs: Any) -> None:
        super().__init__(port=port, **kwargs)
        self._port = port

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        for attempt in range(LEADER_WAITS_MAX + 1):
            try:
                return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
            except TryAgainError as e:
                if not is_no_leader(e) or attempt == LEADER_WAITS_MAX:
                    raise
                await asyncio.to_thread(await_leader, self._port, None)
        raise AssertionError("unreachable")


def sync_client(
    node: Node,
    *,
    protocol: int = 2,
    timeout_s: float = REPLY_TIMEOUT_S,
    password: str | None = None,
    single_connection: bool = True,
    patient: bool = True,
) -> redis.Redis:
    """A blocking client of ``node``: no retries of its own but the safe ones (``patient``)."""
    kind = PatientRedis if patient else redis.Redis
    return kind(
        port=node.resp_port,
        protocol=protocol,
        password=password,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=single_connection,
    )


def async_client(
    node: Node, *, protocol: int = 2, timeout_s: float = REPLY_TIMEOUT_S
) -> redis.asyncio.Redis:
    """An asyncio client of ``node`` that never retries by itself (but ``PatientRedis``'s)."""
    return PatientAsyncRedis(
        port=node.resp_port,
        protocol=protocol,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=AsyncRetry(NoBackoff(), 0),
    )


def call(client: redis.Redis, *args: object) -> Any:
    """One raw command (redis-py's ``execute_command`` is untyped)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


async def acall(client: redis.asyncio.Redis, *args: object) -> Any:
    """One raw command on an asyncio client."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def status(client: redis.Redis) -> dict[bytes, Any]:
    """``PAXOS.STATUS`` as a dict (a RESP2 client gets it as a flat array)."""
    reply = call(client, "PAXOS.STATUS")
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def settle(cluster: Cluster, password: str | None = None) -> None:
    """Return once every running node delivered a broadcast and all name one leader and ballot.

    Nodes that start at slightly different times may hold a few elections
    before one leader sticks; tests that begin after that see fewer of them.
    """
    running = [n for n in cluster.nodes.values() if n.proc is not None and n.proc.poll() is None]
    views: set[tuple[object, object]] = set()
    for _ in range(AGREEMENT_ROUNDS_MAX):
        views = set()
        for node in running:
            await_leader(node.resp_port, password)
            with sync_client(node, password=password) as c:
                st = status(c)
            views.add((st[b"leader_id"], st[b"ballot"]))
        if len(views) == 1:
            return
    raise AssertionError(f"the nodes do not settle on one leader: {views}")


def start_kv_cluster(
    tmp: Path, n: int = 3, *, extra_args: tuple[str, ...] = (), password: str | None = None
) -> Cluster:
    """A running cluster whose every node knows a leader; stop it with ``cluster.stop()``."""
    cluster = Cluster(tmp, n, extra_args=extra_args)
    try:
        cluster.start()
        settle(cluster, password)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextmanager
def running_kv_cluster(tmp: Path) -> Iterator[Cluster]:
    """``start_kv_cluster`` for a ``with`` block (a fixture's body): stopped on the way out."""
    cluster = start_kv_cluster(tmp)
    try:
        yield cluster
    finally:
        cluster.stop()


@contextmanager
def node_clients(cluster: Cluster) -> Iterator[dict[str, redis.Redis]]:
    """One RESP2 client per node, by node id, closed on the way out."""
    clients = {i: sync_client(node) for i, node in cluster.nodes.items()}
    try:
        yield clients
    finally:
        for c in clients.values():
            c.close()
