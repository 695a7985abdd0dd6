"""The configuration as replicated state: who votes in which slot (Lamport's alpha rule).

Theory of operation (docs/design.md, 'Membership change'; Lamport,
"Reconfiguring a State Machine"):

- A *configuration* is a set of voters (the acceptors whose quorums decide
  a slot), a set of learners (they receive decided slots and snapshots,
  never vote, never campaign) and an opaque address per member, which the
  core never reads (the runtime dials it).
- A change (``Change``: add a learner, promote a learner to voter, remove a
  member) is a value decided in a slot like any other, carried in a batch
  as a proposal of the reserved origin (``CHANGE_SEQ``). Decided in slot
  ``i``, it governs every slot ``>= i + delay`` (``delay`` is alpha,
  ``CONFIG_DELAY_SLOTS`` in production): ``config_for(s)`` is a function of
  the decided prefix through ``s - delay``, so every replica that knows that
  prefix computes the same acceptor set for slot ``s``.
- A leader opens slot ``s`` only when it knows the decided prefix through
  ``s - delay``: the window (``LogConfig.window_slots_max <= delay``) keeps
  every open slot within ``delay`` of the leader's decided prefix, and a
  new leader re-proposes reported slots only as far (election.py).
- Changes are applied in slot order, each against the newest configuration
  (``apply_change``); one that would be invalid there (another change
  decided and not yet in effect, an unknown id, removing the last voter,
  re-adding a removed id) is *void*: decided, but every replica skips it
  the same way, since validity depends on the decided log alone.

Invariants (``check`` asserts them): the history is non-empty and its
effective slots strictly increase; every configuration has at least one
voter; voters and learners are disjoint; a removed id is never a member
again; at most one configuration takes effect above the decided prefix
(one change at a time).
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field

from ..errors import DecodeError
from . import rules

__all__ = [
    "CHANGE_SEQ",
    "CONFIG_DELAY_SLOTS",
    "Change",
    "ConfigHistory",
    "Configuration",
    "Membership",
    "apply_change",
    "decode_change",
    "decode_configs",
    "encode_change",
    "encode_configs",
]

#: alpha: a change decided in slot i governs slots >= i + alpha. Equal to the default
#: pipeline window (``LogConfig.window_slots_max``, which may not exceed it), so
#: the window never needs to wait for the prefix; a leader fills no-ops after
#: a change, so an idle cluster switches within one window of slots.
CONFIG_DELAY_SLOTS = 64
#: A change travels as ``Proposal(ProposalId(CLOCK_ORIGIN, CHANGE_SEQ), encode_change(c))``:
#: the reserved origin no node can forward (clock stamps use seq 0), so only a
#: leader proposes one, and delivery skips it like a stamp.
CHANGE_SEQ = 1
OPS = ("add", "promote", "remove")


@dataclass(frozen=True, slots=True)
class Configuration:
    """Voters and learners from ``effective_slot`` on (until the next configuration)."""

    voters: frozenset[str]
    learners: frozenset[str] = frozenset()
    #: ``node id -> "host:port"`` of members that have one (opaque to the core).
    addresses: tuple[tuple[str, str], ...] = ()
    effective_slot: int = 1
    #: Ids removed so far: never members again (a new disk takes a new id).
    removed: frozenset[str] = frozenset()
    #: ``rules.quorum_size`` of the voters (computed once: asked per message).
    quorum: int = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "quorum", rules.quorum_size(len(self.voters)))

    @property
    def members(self) -> frozenset[str]:
        return self.voters | self.learners

    def is_quorum(self, ids: set[str] | frozenset[str]) -> bool:
        """Whether ``ids`` holds a majority of this configuration's voters."""
        return len(self.voters & ids) >= self.quorum

    def address(self, node_id: str) -> str:
        return dict(self.addresses).get(node_id, "")


@dataclass(frozen=True, slots=True)
class Membership:
    """A configuration as the public API shows it (``TotalOrderBroadcast.members()``).

    ``voters`` decide slots (a majority of them); ``learners`` receive the
    log but do not vote; ``addresses`` are the ``host:port`` given when
    members were added (founding members have none unless the runtime sets
    them); the configuration governs slots from ``effective_slot`` (a slot
    of the consensus log, not a delivery position). ``lag``: per learner,
    how many slots it is behind this node's decided prefix, as last
    reported to this node while it leads (empty elsewhere).
    """

    voters: tuple[str, ...]
    learners: tuple[str, ...]
    addresses: dict[str, str]
    effective_slot: int
    lag: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, config: Configuration, lag: dict[str, int] | None = None) -> Membership:
        return cls(
            tuple(sorted(config.voters)),
            tuple(sorted(config.learners)),
            dict(config.addresses),
            config.effective_slot,
            dict(lag or {}),
        )


@dataclass(frozen=True, slots=True)
class Change:
    """One membership change; ``nonce`` names the request (its proposer and number)."""

    op: str
    node_id: str
    address: str = ""
    nonce: tuple[str, int] = field(default=("", 0))


def apply_change(
    config: Configuration, change: Change, slot: int, delay: int
) -> Configuration | str:
    """The configuration ``change`` (decided in ``slot``) makes of ``config``, or why it is void."""
    if config.effective_slot > slot:
        return (
            f"another change is in progress (it takes effect at slot {config.effective_slot}); "
            "one change at a time"
        )
    nid = change.node_id
    voters, learners = config.voters, config.learners
    addresses = dict(config.addresses)
    removed = config.removed
    if change.op == "add":
        if nid in removed:
            return f"{nid!r} was removed before; a replaced node joins under a new id"
        if nid in voters or nid in learners:
            return f"{nid!r} is already a member"
        learners = learners | {nid}
        if change.address:
            addresses[nid] = change.address
    elif change.op == "promote":
        if nid not in learners:
            return f"{nid!r} is not a learner (add it first)"
        learners = learners - {nid}
        voters = voters | {nid}
    elif change.op == "remove":
        if nid not in voters and nid not in learners:
            return f"{nid!r} is not a member"
        if voters == {nid}:
            return f"{nid!r} is the last voter; a configuration needs at least one"
        voters, learners = voters - {nid}, learners - {nid}
        addresses.pop(nid, None)
        removed = removed | {nid}
    else:
        return f"unknown change {change.op!r}"
    return Configuration(voters, learners, tuple(sorted(addresses.items())), slot + delay, removed)


class ConfigHistory:
    """The configurations by effective slot (the module docstring has the rules)."""

    __slots__ = ("configs", "delay", "outcomes")

    def __init__(self, founding: Configuration, delay: int = CONFIG_DELAY_SLOTS) -> None:
        assert delay >= 1 and founding.voters
        self.delay = delay
        self.configs: list[Configuration] = [founding]
        #: ``(slot, change, configuration or void reason)`` per change decided,
        #: in slot order, until the replica takes them.
        self.outcomes: list[tuple[int, Change, Configuration | str]] = []

    def config_for(self, slot: int) -> Configuration:
        """The configuration governing ``slot`` (known with the prefix through slot - alpha)."""
        configs = self.configs
        for c in reversed(configs):
            if c.effective_slot <= slot:
                return c
        return configs[0]

    @property
    def newest(self) -> Configuration:
        return self.configs[-1]

    def governing_from(self, slot: int) -> list[Configuration]:
        """Every configuration governing a slot ``>= slot`` (at most two: one change at a time)."""
        first = self.config_for(slot)
        return [first, *(c for c in self.configs if c.effective_slot > slot)]

    def pending(self, decided_through: int) -> Configuration | None:
        """The configuration decided but not yet in effect after ``decided_through``, if any."""
        newest = self.configs[-1]
        return newest if newest.effective_slot > decided_through + 1 else None

    def known_members(self) -> frozenset[str]:
        return frozenset().union(*(c.members for c in self.configs))

    def decided(self, slot: int, payload: bytes) -> None:
        """A change value was decided in ``slot`` (called in slot order by delivery)."""
        try:
            change = decode_change(payload)
        except DecodeError as e:
            self.outcomes.append((slot, Change("?", ""), f"malformed change: {e}"))
            return
        got = apply_change(self.configs[-1], change, slot, self.delay)
        if isinstance(got, Configuration):
            self.configs.append(got)
        self.outcomes.append((slot, change, got))

    def for_snapshot(self, through: int) -> tuple[Configuration, ...]:
        """What a snapshot at ``through`` must carry: the configurations of slots above it."""
        return tuple(self.governing_from(through + 1))

    def restore(self, configs: tuple[Configuration, ...]) -> None:
        """Adopt the configurations a snapshot carried (none: a snapshot of a fixed membership)."""
        if configs:
            self.configs = list(configs)

    def check(self) -> None:
        configs = self.configs
        assert configs
        for a, b in itertools.pairwise(configs):
            assert a.effective_slot < b.effective_slot, (a, b)
            assert not (b.members & b.removed), b
        for c in configs:
            assert c.voters and not (c.voters & c.learners), c


# ================================================================ encoding

_VERSION = 1
_H = struct.Struct(">H")
_Q = struct.Struct(">Q")
_I = struct.Struct(">I")


def _str(s: str) -> bytes:
    b = s.encode()
    return _H.pack(len(b)) + b


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError("membership record is truncated")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def u16(self) -> int:
        return int(_H.unpack(self.take(2))[0])

    def u32(self) -> int:
        return int(_I.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(_Q.unpack(self.take(8))[0])

    def text(self) -> str:
        try:
            return self.take(self.u16()).decode()
        except UnicodeDecodeError as e:
            raise DecodeError(f"membership record: {e}") from e

    def strs(self) -> frozenset[str]:
        return frozenset(self.text() for _ in range(self.u32()))


def encode_change(c: Change) -> bytes:
    """``B version, B op, str node, str address, str nonce origin, Q nonce`` (always > 8 bytes)."""
    return (
        bytes((_VERSION, OPS.index(c.op)))
        + _str(c.node_id)
        + _str(c.address)
        + _str(c.nonce[0])
        + _Q.pack(c.nonce[1])
    )


def decode_change(data: bytes) -> Change:
    r = _Reader(data)
    version, op = r.take(2)
    if version != _VERSION or op >= len(OPS):
        raise DecodeError(f"membership change version {version} op {op} is unknown")
    node, address, origin = r.text(), r.text(), r.text()
    nonce = r.u64()
    if r.pos != len(data) or not node:
        raise DecodeError("membership change is malformed")
    return Change(OPS[op], node, address, (origin, nonce))


def _strs(ids: frozenset[str]) -> bytes:
    return _I.pack(len(ids)) + b"".join(_str(s) for s in sorted(ids))


def encode_configs(configs: tuple[Configuration, ...]) -> bytes:
    parts = [_I.pack(len(configs))]
    for c in configs:
        parts.append(_Q.pack(c.effective_slot))
        parts += [_strs(c.voters), _strs(c.learners), _strs(c.removed)]
        parts.append(_I.pack(len(c.addresses)))
        parts += [_str(k) + _str(v) for k, v in c.addresses]
    return b"".join(parts)


def decode_configs(data: bytes, pos: int) -> tuple[tuple[Configuration, ...], int]:
    """The configurations encoded at ``pos``, and the position after them."""
    r = _Reader(data, pos)
    configs = []
    for _ in range(r.u32()):
        effective = r.u64()
        voters, learners, removed = r.strs(), r.strs(), r.strs()
        addresses = tuple((r.text(), r.text()) for _ in range(r.u32()))
        if not voters:
            raise DecodeError("a configuration without voters")
        configs.append(Configuration(voters, learners, addresses, effective, removed))
    return tuple(configs), r.pos
