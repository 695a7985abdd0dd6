"""``paxostob member list|add|promote|remove|replace``: change a running cluster's membership.

Each action sends ``PAXOS.MEMBERS`` / ``PAXOS.MEMBER ...`` (resp/membership.py)
to one node's client port (``--host``/``--port``, ``--password`` or the
``REDISCLI_AUTH`` environment variable, as redis-cli takes it). Any member
will do: a change asked of a follower goes to the leader through the log.
A change is done when the command returns: decided, and applied on the node
asked.

- ``add ID HOST:PORT``: ``ID`` becomes a learner whose peer address is
  ``HOST:PORT``; then start it with ``paxostob serve --id ID --join ...``.
- ``promote ID``: a learner that caught up becomes a voter.
- ``remove ID``: a voter or a learner leaves.
- ``replace OLD NEW HOST:PORT``: the procedure for a node whose disk was
  lost (docs/operations.md, 'Membership change'): remove ``OLD``, add
  ``NEW`` as a learner, wait for it to catch up (start it meanwhile), promote
  it. Each step is skipped when already done, so an interrupted replace is
  finished by running it again.

Errors are one line on stderr; exit status 1 when the node refused or could
not be reached, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from .client import RespClientError, request
from .config import RESP_PORT_OFFSET, ConfigError

__all__ = [
    "CATCH_UP_TIMEOUT_S_DEFAULT",
    "Member",
    "MemberClient",
    "Members",
    "configure",
    "format_members",
    "parse_members",
    "promote_when_caught_up",
    "run",
]

#: ``replace`` waits this long for the new learner to catch up. It must be
#: started by hand (or by a supervisor) meanwhile, and receive a snapshot and
#: the log's tail: seconds for a small state, minutes for gigabytes.
CATCH_UP_TIMEOUT_S_DEFAULT = 600.0
#: Between two tries of ``promote`` while the learner catches up: often
#: enough that a caught-up learner is promoted soon, seldom enough to cost
#: the leader nothing.
PROMOTE_RETRY_S = 1.0
#: One request's deadline; a change waits for a log round and its effective
#: slot (the node gives up after 30 s with -TRYAGAIN).
REQUEST_TIMEOUT_S = 40.0
#: The env var redis-cli reads the password from.
PASSWORD_ENV = "REDISCLI_AUTH"


@dataclass(frozen=True, slots=True)
class Member:
    node_id: str
    role: str
    address: str
    #: Slots behind the leader (a learner, read on the leader), else -1.
    lag: int


@dataclass(frozen=True, slots=True)
class Members:
    cluster_id: str
    node_id: str
    leader_id: str
    effective_slot: int
    members: tuple[Member, ...]
    #: The founding members (a joining node opens its log with them).
    founders: tuple[str, ...] = ()

    def get(self, node_id: str) -> Member | None:
        return next((m for m in self.members if m.node_id == node_id), None)


def configure(p: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--host", default="127.0.0.1", help="a member's client address (127.0.0.1)")
    common.add_argument(
        "--port",
        type=int,
        default=7001 + RESP_PORT_OFFSET,
        help="its client (RESP) port (8001)",
    )
    common.add_argument(
        "--password",
        metavar="PW",
        default=os.environ.get(PASSWORD_ENV),
        help=f"the nodes' requirepass, if any (default: ${PASSWORD_ENV})",
    )
    sub = p.add_subparsers(dest="action", metavar="action", required=True)
    sub.add_parser("list", parents=[common], help="the configuration: voters, learners, lag")
    add = sub.add_parser(
        "add", parents=[common], help="add ID as a learner (then start it with serve --join)"
    )
    add.add_argument("id", metavar="ID")
    add.add_argument("address", metavar="HOST:PORT", help="the new node's peer address")
    promote = sub.add_parser("promote", parents=[common], help="make a caught-up learner a voter")
    promote.add_argument("id", metavar="ID")
    remove = sub.add_parser("remove", parents=[common], help="remove a voter or a learner")
    remove.add_argument("id", metavar="ID")
    replace = sub.add_parser(
        "replace",
        parents=[common],
        help="replace a lost node: remove OLD, add NEW as a learner, wait, promote NEW",
    )
    replace.add_argument("old", metavar="OLD")
    replace.add_argument("new", metavar="NEW")
    replace.add_argument("address", metavar="HOST:PORT", help="NEW's peer address")
    replace.add_argument(
        "--catch-up-timeout",
        dest="catch_up_timeout",
        type=float,
        default=CATCH_UP_TIMEOUT_S_DEFAULT,
        metavar="S",
        help=f"give up waiting for NEW to catch up after S seconds "
        f"({CATCH_UP_TIMEOUT_S_DEFAULT:g})",
    )


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def parse_members(reply: object) -> Members:
    """``PAXOS.MEMBERS``'s reply (a flat RESP2 map); ``RespClientError`` if it is not one."""
    if not isinstance(reply, list) or len(reply) % 2:
        raise RespClientError("unexpected reply to PAXOS.MEMBERS (is this a paxostob node?)")
    fields = {_text(k): v for k, v in zip(reply[::2], reply[1::2], strict=True)}
    rows = fields.get("members")
    slot = fields.get("effective_slot")
    if not isinstance(rows, list) or not isinstance(slot, int):
        raise RespClientError("unexpected reply to PAXOS.MEMBERS: no members")
    members = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 4 and isinstance(row[3], int)):
            raise RespClientError("unexpected reply to PAXOS.MEMBERS: a bad member row")
        members.append(Member(_text(row[0]), _text(row[1]), _text(row[2]), row[3]))
    return Members(
        _text(fields.get("cluster_id", "")),
        _text(fields.get("node_id", "")),
        _text(fields.get("leader_id", "")),
        slot,
        tuple(members),
        tuple(_text(f) for f in founders)
        if isinstance(founders := fields.get("founders"), list)
        else (),
    )


def format_members(m: Members) -> str:
    lines = [
        f"cluster {m.cluster_id}: leader {m.leader_id or 'unknown'}, configuration in effect "
        f"from slot {m.effective_slot} (as node {m.node_id} knows it)"
    ]
    for member in m.members:
        lag = ""
        if member.role == "learner":
            lag = (
                f"  lag {member.lag} slots" if member.lag >= 0 else "  lag unknown (ask the leader)"
            )
        lines.append(f"  {member.node_id:<6} {member.role:<8} {member.address}{lag}")
    return "\n".join(lines)


def _check_address(text: str) -> str:
    host, colon, port = text.rpartition(":")
    if not colon or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"bad address {text!r}: expected HOST:PORT (the node's peer port)")
    return text


class MemberClient:
    """One member's client port, asked one command at a time."""

    def __init__(self, host: str, port: int, password: str | None = None) -> None:
        self.host = host
        self.port = port
        self.password = password or None

    async def call(self, *args: str) -> object:
        return await request(
            self.host,
            self.port,
            [a.encode() for a in args],
            timeout_s=REQUEST_TIMEOUT_S,
            password=self.password,
        )

    async def members(self) -> Members:
        return parse_members(await self.call("PAXOS.MEMBERS"))

    async def change(self, *args: str) -> Members:
        """``PAXOS.MEMBER *args``; asked of a follower, asked again of the leader.

        The leader's client port is taken as its peer port + 1000 (``serve``'s
        default); with other client ports, point ``--port`` at the leader.
        """
        try:
            return parse_members(await self.call("PAXOS.MEMBER", *args))
        except RespClientError as e:
            if not str(e).startswith("NOTLEADER"):
                raise
            now = await self.members()
            leader = now.get(now.leader_id)
            if leader is None or not leader.address:
                raise
            host, _, port = leader.address.rpartition(":")
            there = MemberClient(host.strip("[]"), int(port) + RESP_PORT_OFFSET, self.password)
            try:
                return parse_members(await there.call("PAXOS.MEMBER", *args))
            except RespClientError as again:
                raise RespClientError(
                    f"{e}; asked the leader at {there.host}:{there.port} (its peer port + "
                    f"{RESP_PORT_OFFSET}) too: {again}; point --host/--port at the leader's "
                    "client port"
                ) from None


async def _replace(node: MemberClient, ns: argparse.Namespace, out: TextIO) -> Members:
    old, new, address = ns.old, ns.new, ns.address
    if old == new:
        raise ConfigError("OLD and NEW must differ: a lost node comes back under a new id")
    now = await node.members()
    if now.get(old) is not None:
        out.write(f"removing {old} ...\n")
        out.flush()
        now = await node.change("REMOVE", old)
    else:
        out.write(f"{old} is not a member (already removed)\n")
    joined = now.get(new)
    if joined is None:
        out.write(f"adding {new} at {address} as a learner ...\n")
        out.flush()
        now = await node.change("ADD", new, address)
    elif joined.address != address:
        raise RespClientError(f"{new} is already a member at {joined.address}, not {address}")
    joined = now.get(new)
    if joined is not None and joined.role == "voter":
        out.write(f"{new} is already a voter\n")
        return now
    out.write(
        f"start {new} now if it is not running: paxostob serve --id {new} --join "
        f"{node.host}:{node.port} ... ; waiting for it to catch up "
        f"(up to {ns.catch_up_timeout:g} s)\n"
    )
    out.flush()
    return await promote_when_caught_up(node, new, ns.catch_up_timeout)


async def promote_when_caught_up(node: MemberClient, new: str, timeout_s: float) -> Members:
    """Promote learner ``new``, trying again while it is behind; ``RespClientError`` at the end."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await node.change("PROMOTE", new)
        except RespClientError as e:
            # Behind (the lag bound), or no leader for a moment: try again until the deadline.
            if time.monotonic() >= deadline:
                raise RespClientError(
                    f"{new} was not promoted within {timeout_s:g} s: {e} "
                    f"(is it running with --join? run this command again to go on waiting)"
                ) from None
            await asyncio.sleep(PROMOTE_RETRY_S)


async def _act(ns: argparse.Namespace, out: TextIO) -> Members:
    node = MemberClient(ns.host, ns.port, ns.password)
    if ns.action == "list":
        return await node.members()
    if ns.action == "add":
        return await node.change("ADD", ns.id, _check_address(ns.address))
    if ns.action == "promote":
        return await node.change("PROMOTE", ns.id)
    if ns.action == "remove":
        return await node.change("REMOVE", ns.id)
    _check_address(ns.address)
    if ns.catch_up_timeout <= 0:
        raise ConfigError("--catch-up-timeout must be > 0")
    return await _replace(node, ns, out)


def run(ns: argparse.Namespace, out: TextIO) -> int:
    if not 1 <= ns.port <= 65535:
        raise ConfigError(f"--port {ns.port} is out of range 1-65535")
    try:
        members = asyncio.run(_act(ns, out))
    except RespClientError as e:
        print(f"paxostob member {ns.action}: {ns.host}:{ns.port}: {e}", file=sys.stderr)
        return 1
    out.write(format_members(members) + "\n")
    return 0
