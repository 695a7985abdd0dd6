"""The membership commands: ``PAXOS.MEMBERS`` and ``PAXOS.MEMBER ADD|PROMOTE|REMOVE``.

They reach the node's ``TotalOrderBroadcast`` membership calls (docs/design.md,
'Membership change'); ``MembershipCommands`` is their family.

- ``PAXOS.MEMBERS`` -> the configuration this node knows, as a map:
  ``cluster_id``, ``node_id``, ``leader_id`` (empty while none is known),
  ``effective_slot`` (the first slot the configuration governs), then
  ``members``: one ``[id, role, address, lag]`` per member, ``role``
  ``voter`` or ``learner``, ``lag`` a learner's distance in slots behind
  the leader's decided prefix when this node leads and knows it, else -1.
  ``paxostob serve --join`` and ``paxostob member`` read it.
- ``PAXOS.MEMBER ADD id host:port`` adds ``id`` as a learner (it then
  starts with ``paxostob serve --join``); ``PAXOS.MEMBER PROMOTE id`` makes
  a learner that caught up a voter; ``PAXOS.MEMBER REMOVE id`` removes a
  voter or a learner. Each answers the new configuration (as
  ``PAXOS.MEMBERS``) once the change is decided and applied on this node.

Any member may be asked: the change is proposed through the log as a
broadcast is, so a follower's request is forwarded to the leader by the
log itself. A refused change (another one still pending, a learner
too far behind, removing the last voter...) is ``-ERR`` with the library's
reason; no known leader or a change not decided within
``MEMBER_CHANGE_TIMEOUT_S`` is ``-TRYAGAIN`` (a change that timed out may
still take effect: read ``PAXOS.MEMBERS`` before retrying).

``info_lines`` is ``INFO``'s part of the ``Paxos`` section about the
configuration.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping
from time import perf_counter
from typing import TYPE_CHECKING, Protocol, cast

from ..errors import NotLeaderError, NotRunningError, PaxosError, QuorumTimeoutError
from .family import Family, Handler
from .protocol import Error, Reply

if TYPE_CHECKING:
    from .commands import NodeCommands
    from .server import Connection

__all__ = [
    "MEMBER_CHANGE_TIMEOUT_S",
    "MembershipApi",
    "MembershipCommands",
    "MembershipView",
    "info_lines",
    "members_reply",
    "set_peer_addresses",
]

log = logging.getLogger("paxostob.resp")

#: How long a change may take to be decided and applied here before the
#: client gets ``-TRYAGAIN``: a change waits for one log round, then for its
#: effective slot (the leader fills no-op slots to reach it), well under a
#: second on a healthy cluster; 30 s rides out an election or two.
MEMBER_CHANGE_TIMEOUT_S = 30.0
#: A node id is short (it travels in every message); a longer argument is a mistake.
NODE_ID_BYTES_MAX = 64


class MembershipView(Protocol):
    """What the commands read of ``paxostob.Membership``."""

    @property
    def voters(self) -> Collection[str]: ...
    @property
    def learners(self) -> Collection[str]: ...
    @property
    def addresses(self) -> Mapping[str, str]: ...
    @property
    def effective_slot(self) -> int: ...
    @property
    def lag(self) -> Mapping[str, int]: ...


class MembershipApi(Protocol):
    """``TotalOrderBroadcast``'s membership calls (the library's contract)."""

    def members(self) -> MembershipView: ...
    async def add_member(
        self, node_id: str, address: str, *, timeout: float | None = None
    ) -> MembershipView: ...
    async def promote_member(
        self, node_id: str, *, timeout: float | None = None
    ) -> MembershipView: ...
    async def remove_member(
        self, node_id: str, *, timeout: float | None = None
    ) -> MembershipView: ...


def _api(commands: NodeCommands) -> MembershipApi:
    return cast(MembershipApi, commands.tob)


#: Per ``NodeCommands``: the peer addresses the node's transport dials, for
#: members the configuration has no address for (the founders: their
#: addresses are their flags', never decided in the log).
_PEER_ADDRESSES: weakref.WeakKeyDictionary[NodeCommands, Callable[[], Mapping[str, str]]] = (
    weakref.WeakKeyDictionary()
)


def set_peer_addresses(commands: NodeCommands, addresses: Callable[[], Mapping[str, str]]) -> None:
    """Where ``PAXOS.MEMBERS`` finds the addresses the configuration does not hold."""
    _PEER_ADDRESSES[commands] = addresses


def _addresses(commands: NodeCommands, view: MembershipView) -> dict[str, str]:
    known = _PEER_ADDRESSES.get(commands)
    out = dict(known()) if known is not None else {}
    out.update({k: v for k, v in view.addresses.items() if v})
    return out


def members_reply(
    view: MembershipView,
    *,
    cluster_id: str,
    node_id: str,
    leader: str | None,
    addresses: Mapping[str, str] | None = None,
    founders: Collection[str] = (),
) -> dict[bytes, Reply]:
    """``PAXOS.MEMBERS``'s reply for ``view``: voters first, then learners, each sorted.

    ``addresses``: every member's (default: ``view.addresses``).
    """
    where = view.addresses if addresses is None else addresses
    rows: list[Reply] = []
    for role, ids in (("voter", view.voters), ("learner", view.learners)):
        for member in sorted(ids):
            rows.append(
                [
                    member.encode(),
                    role.encode(),
                    where.get(member, "").encode(),
                    view.lag.get(member, -1) if role == "learner" else -1,
                ]
            )
    return {
        b"cluster_id": cluster_id.encode(),
        b"node_id": node_id.encode(),
        b"leader_id": (leader or "").encode(),
        b"effective_slot": view.effective_slot,
        b"members": rows,
        b"founders": [f.encode() for f in sorted(founders)],
    }


def _reply(commands: NodeCommands, view: MembershipView) -> dict[bytes, Reply]:
    tob = commands.tob
    return members_reply(
        view,
        cluster_id=tob.cluster_id,
        node_id=commands.node_id,
        leader=tob.leader,
        addresses=_addresses(commands, view),
        founders=_founders(tob),
    )


def _founders(tob: object) -> tuple[str, ...]:
    """The founding members (a joining node needs them to open its log)."""
    founders = getattr(tob, "founding_members", ())
    return tuple(founders) if isinstance(founders, tuple | list | frozenset | set) else ()


def info_lines(commands: NodeCommands) -> list[str]:
    """INFO's configuration fields: voters, learners, effective slot, each learner's lag."""
    members = getattr(commands.tob, "members", None)
    if not callable(members):  # a library without membership change
        return []
    view = cast(MembershipView, members())
    lines = [
        f"config_voters:{','.join(sorted(view.voters))}",
        f"config_learners:{','.join(sorted(view.learners))}",
        f"config_effective_slot:{view.effective_slot}",
    ]
    for learner in sorted(view.learners):
        lag = view.lag.get(learner, -1)
        lines.append(f"learner_{learner}:address={view.addresses.get(learner, '')},lag={lag}")
    return lines


def _check_id(raw: bytes) -> str | Error:
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return Error("ERR node id must be UTF-8 text")
    if not text or len(raw) > NODE_ID_BYTES_MAX or not text.isprintable() or " " in text:
        return Error(f"ERR invalid node id {text!r}: 1-{NODE_ID_BYTES_MAX} printable characters")
    return text


def _check_address(raw: bytes) -> str | Error:
    text = raw.decode(errors="replace")
    host, colon, port = text.rpartition(":")
    if not colon or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        return Error(f"ERR invalid address {text!r}: expected HOST:PORT (the new node's peer port)")
    return text


async def _change(
    commands: NodeCommands, call: Callable[[], Awaitable[MembershipView]], what: str
) -> Reply:
    started = perf_counter()
    reply = await _changed(commands, call, what)
    commands.stats.record(b"paxos.member", perf_counter() - started, type(reply) is Error)
    return reply


async def _changed(
    commands: NodeCommands, call: Callable[[], Awaitable[MembershipView]], what: str
) -> Reply:
    try:
        view = await call()
    except QuorumTimeoutError as e:
        return Error(f"TRYAGAIN {what}: {e}; it may still take effect (see PAXOS.MEMBERS)")
    except NotRunningError:
        return Error("TRYAGAIN the node is shutting down")
    except NotLeaderError as e:
        if e.leader is None or e.leader == commands.node_id:
            return Error(_NO_LEADER)
        # Only the leader proposes a change: the client asks it (paxostob
        # member does, at the leader's client port).
        return Error(f"NOTLEADER {what}: ask the leader, node {e.leader}")
    except PaxosError as e:
        return Error(f"ERR {what} refused: {e}")
    log.info("%s: membership change done: %s", commands.node_id, what)
    return _reply(commands, view)


def _members(commands: NodeCommands, conn: Connection, args: list[bytes]) -> Reply:
    if len(args) != 1:
        return Error("ERR wrong number of arguments for 'paxos.members' command")
    try:
        view = _api(commands).members()
    except PaxosError as e:
        return Error(f"ERR {e}")
    return _reply(commands, view)


_NO_LEADER = "TRYAGAIN no leader is known yet (an election is under way); retry"
_USAGE = "ERR usage: PAXOS.MEMBER ADD id host:port | PROMOTE id | REMOVE id"


def _member(
    commands: NodeCommands, conn: Connection, args: list[bytes]
) -> Reply | Awaitable[Reply]:
    if len(args) < 3:
        return Error(_USAGE)
    sub = args[1].upper()
    arity = {b"ADD": 4, b"PROMOTE": 3, b"REMOVE": 3}.get(sub)
    if arity is None:
        return Error(f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. {_USAGE[4:]}")
    if len(args) != arity:
        return Error(_USAGE)
    node_id = _check_id(args[2])
    if isinstance(node_id, Error):
        return node_id
    address = _check_address(args[3]) if sub == b"ADD" else ""
    if isinstance(address, Error):
        return address
    if commands.tob.leader is None:
        return Error(_NO_LEADER)
    api = _api(commands)
    timeout = MEMBER_CHANGE_TIMEOUT_S
    if sub == b"ADD":
        return _change(
            commands,
            lambda: api.add_member(node_id, address, timeout=timeout),
            f"add learner {node_id} at {address}",
        )
    if sub == b"PROMOTE":
        return _change(
            commands, lambda: api.promote_member(node_id, timeout=timeout), f"promote {node_id}"
        )
    return _change(
        commands, lambda: api.remove_member(node_id, timeout=timeout), f"remove {node_id}"
    )


class MembershipCommands(Family):
    """The family of the membership commands (``resp.commands.FAMILIES``)."""

    def table(self) -> dict[bytes, Handler]:
        node = self.node
        return {
            b"PAXOS.MEMBERS": lambda conn, args: _members(node, conn, args),
            b"PAXOS.MEMBER": lambda conn, args: _member(node, conn, args),
        }
