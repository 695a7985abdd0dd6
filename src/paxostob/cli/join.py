"""``paxostob serve --join HOST:PORT``: a new node learns its cluster from a running member.

The new node was added first, as a learner (``paxostob member add ID
HOST:PORT``). ``--join`` names one or more running members' **client
(RESP) ports**; the node asks the first that answers ``PAXOS.MEMBERS``
(after ``AUTH`` with ``--join-password``, default ``--requirepass``: the
members of one cluster usually share it). Why the client port and not the
peer port: it already has a password, a request/reply protocol and a
command for it, and the node authenticates to its peers with the cluster
secret anyway, so nothing secret travels here (the reply holds the cluster
id, the members' ids, roles and peer addresses).

From the reply the node takes the cluster id (``--cluster-id`` must agree
if given), its own peer address (the one ``member add`` recorded) and every
member's, which become its ``--members``. Then:

- its id is a **learner** and its store is missing: it makes its store
  (``bootstrap`` with ``join``: a learner's, never a voter's) and catches
  up from the others. The configuration is read after a read barrier, so a
  member that lags cannot call a node a learner after it was promoted (and
  may have voted);
- its id is a **voter** and its store is missing: refused. A voter that
  lost its store must not vote again (docs/operations.md, 'Membership
  change': remove it, and join a new id);
- its id is not a member: refused, saying to add it first;
- its store exists (a restart): it starts from its store, as any member.

Everything here runs before the node's event loop, with one-line
``ConfigError``s.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from .client import RespClientError, request
from .config import ConfigError
from .member import Members, parse_members

__all__ = ["JOIN_TIMEOUT_S", "Joined", "ask_members", "joined", "parse_seeds"]

#: One member's answer: it replies from memory, so a second is plenty; a
#: few seconds ride out a loaded machine.
JOIN_TIMEOUT_S = 5.0
#: A point read of a key nobody writes: a read barrier, with no side effect.
BARRIER = [b"EXISTS", b"paxostob:join-barrier"]
#: Between two rounds of asking the seeds, while ``--join-wait`` lasts.
JOIN_RETRY_S = 0.5


@dataclass(frozen=True, slots=True)
class Joined:
    """What a joining node learned: the flags it runs with, and its role."""

    cluster_id: str
    #: ``ID=HOST:PORT,...``: every member's peer address, this node's included.
    members: str
    role: str
    #: ``ID,...``: the founding members (the log is opened with them).
    founders: str
    #: Who answered (``host:port``), for the log.
    source: str


def parse_seeds(text: str) -> list[tuple[str, int]]:
    """``--join``: ``HOST:PORT[,HOST:PORT...]`` of members' client ports."""
    seeds = []
    for item in (part.strip() for part in text.split(",")):
        host, colon, port = item.rpartition(":")
        if not colon or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"--join {item!r}: expected HOST:PORT, a running member's client (RESP) port"
            )
        seeds.append((host.strip("[]"), int(port)))
    return seeds


async def ask_members(
    seeds: list[tuple[str, int]],
    password: str | None,
    timeout_s: float = JOIN_TIMEOUT_S,
    wait_s: float = 0.0,
) -> tuple[Members, str]:
    """The configuration as the first seed that answers knows it, and who that was.

    Every seed is asked in turn, again every ``JOIN_RETRY_S`` for ``wait_s``
    seconds (members starting at the same time as this node open their
    client ports a moment later).
    """
    deadline = time.monotonic() + wait_s
    while True:
        errors = []
        for host, port in seeds:
            try:
                # A read barrier first (a point read is answered once an entry
                # proposed after it is applied there): the configuration read
                # next then holds every change in effect in any slot this node
                # could have voted in, so a lagging member never calls a node
                # that was promoted a learner (which may make its store).
                await request(host, port, BARRIER, timeout_s=timeout_s, password=password)
                reply = await request(
                    host, port, [b"PAXOS.MEMBERS"], timeout_s=timeout_s, password=password
                )
                return parse_members(reply), f"{host}:{port}"
            except RespClientError as e:
                errors.append(f"{host}:{port}: {e}")
        if time.monotonic() >= deadline:
            raise ConfigError("--join: no member answered (" + "; ".join(errors) + ")")
        await asyncio.sleep(JOIN_RETRY_S)


def joined(
    node_id: str, members: Members, source: str, *, cluster_id: str | None, store_exists: bool
) -> Joined:
    """Check that ``node_id`` may start with ``members``; the flags it then runs with."""
    if cluster_id is not None and cluster_id != members.cluster_id:
        raise ConfigError(
            f"--join: {source} is a member of cluster {members.cluster_id!r}, "
            f"not --cluster-id {cluster_id!r}"
        )
    me = members.get(node_id)
    if me is None:
        raise ConfigError(
            f"--join: node {node_id} is not a member of cluster {members.cluster_id} (as "
            f"{source} knows it): add it first with: paxostob member add {node_id} HOST:PORT "
            f"--port {source.rpartition(':')[2]}"
        )
    if me.role != "learner" and not store_exists:
        raise ConfigError(
            f"--join: node {node_id} is a voter of cluster {members.cluster_id} but has no store: "
            "a voter that lost its store must never vote again (it would forget its promises); "
            f"remove it and join a new id: paxostob member replace {node_id} NEW_ID HOST:PORT "
            "(docs/operations.md, 'Membership change')"
        )
    if not members.founders:
        raise ConfigError(
            f"--join: {source} did not say who founded the cluster (a paxostob without "
            "membership change?): upgrade it first"
        )
    listed = ",".join(f"{m.node_id}={m.address}" for m in members.members)
    return Joined(members.cluster_id, listed, me.role, ",".join(members.founders), source)


def fetch(
    node_id: str,
    seeds_text: str,
    password: str | None,
    *,
    cluster_id: str | None,
    store_exists: bool,
    wait_s: float = 0.0,
) -> Joined:
    """``ask_members`` and ``joined`` in one call, from outside an event loop."""
    seeds = parse_seeds(seeds_text)
    members, source = asyncio.run(ask_members(seeds, password, wait_s=wait_s))
    return joined(node_id, members, source, cluster_id=cluster_id, store_exists=store_exists)
