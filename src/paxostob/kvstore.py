"""``KeyValueStore``: a linearizable replicated key-value store on total-order broadcast.

Theory of operation: every write is an entry in the replicated log
(``kv.Entry``: the commands of one or several callers; point reads are
ordered by the log without being in it, see below). An entry is applied at
the log's clock, which the leader decides (``core.multipaxos``: clock
stamps), never at the proposer's: the ``now_ms`` this node writes into the
entry is only read for a log without a clock (``kv.state_machine``). Every
replica applies the same entries in the same order to a pure
``KvMachine``, so all replicas hold the same data. The caller's entry
resolves once it is *applied on this node*; its reply is the one this
replica computed, which every replica computed alike. A read
that goes through the log is linearizable: it is ordered after every write
acknowledged before it was issued (that write's entry precedes it in the
log). The Go original read its local map instead, which could be stale.

Coalescing: commands submitted during one pass of the event loop (by many
clients at once) become ONE log entry, each caller's commands contiguous in
it. The entry is applied atomically everywhere, which is at least as strong
as applying the callers' units one after another, and each caller gets
exactly its own replies. One broadcast, one decode and one apply per loop
pass instead of per command is what lets 50 clients share a consensus round.
A caller's units are never reordered among themselves: they join groups in
the order submitted, and a group that holds a unit of a ``caller`` is
broadcast only after every earlier group holding one of that caller's units
was *delivered* here (so its position precedes the later group's). Groups of
different callers are in flight together (up to ``GROUPS_IN_FLIGHT``): they
are concurrent, so either order in the log is linearizable, and a second
consensus round overlaps the first instead of waiting for it.

Reads by the log, without the reads in it: a unit of point reads only (GET,
MGET, EXISTS, TTL, ... ``kv.machine.LOCAL_READS``) joins the group like any
unit, but is not encoded into its entry; once the group's entry is applied
on this node, the reads run on this node's state. That is the read the log
would have given, moved to the same position: the entry was proposed after
the read arrived, so every write acknowledged before the read precedes it,
and the state only moves forward. A group of reads only proposes an empty
entry (a barrier): followers store and apply a few bytes instead of every
read, and nobody encodes or decodes the reads. Reads run after *all* of
their group's writes, so a write of the same ``caller`` (a client
connection) that follows one of its reads starts a new group: a client's
read never sees the client's own later writes. Calls without a ``caller``
that are pending at the same time are unordered, like separate clients.

By default (``reads="read-index"``) a group of reads only proposes nothing:
it waits for ``TotalOrderBroadcast.read_index`` instead (the leader confirms
with one round of messages that it still leads, and this node applies the
log through the leader's index; core/reads.py), which costs no log entry, no
save and no apply anywhere. ``reads="barrier"`` keeps the empty entry.

Several applications may share one broadcast group: ``tag`` prefixes this
store's payloads, and ``TaggedStateMachine`` routes deliveries by tag.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .core.types import Delivery
from .errors import AlreadyDeliveredError, ConfigurationError, NotRunningError, PaxosError
from .kv.commands import Entry, Op, encode_entry_of, encode_op
from .kv.machine import LOCAL_READS
from .kv.replies import Error, Reply
from .kv.state_machine import KvStateMachine
from .node.tob import StateMachine, TotalOrderBroadcast

__all__ = ["READ_MODES", "REPLY_NOT_KEPT", "KeyValueStore", "TaggedStateMachine"]

#: Point reads whose reply counts time: the log's clock must move for them.
_TIMED_READS = frozenset({b"ttl", b"pttl"})
#: How a group of point reads only is ordered: by a read index (no log
#: entry: the default) or by an empty entry through the log (a barrier).
READ_MODES = ("read-index", "barrier")

#: The reply of each op of an entry that was applied on this node inside a
#: snapshot from a peer (it lagged behind): the entry is in the log exactly
#: once, but this node did not compute its replies.
REPLY_NOT_KEPT = Error("TRYAGAIN applied elsewhere; the reply was not kept")
#: One coalesced entry holds at most this many commands and encoded bytes
#: (it must stay well under a Multi-Paxos batch and a TCP frame).
GROUP_OPS_MAX = 4096
GROUP_BYTES_MAX = 256 * 1024
#: Groups broadcast and not yet delivered here, at most. More than one lets
#: the next round start while the last waits for its votes (measured against
#: one: +5% SET/s at 50 clients, +8% at 50 clients pipelining 16, medians of
#: 3 alternating runs); each one more makes groups smaller, so more rounds
#: (and CPU) per command.
GROUPS_IN_FLIGHT = 2


#: Called once with a caller's replies, or with the error that stopped its entry.
Done = Callable[[list[Reply] | BaseException], None]


@dataclass(slots=True)
class _Group:
    """Commands of several callers that will share one log entry."""

    parts: list[bytes] = field(default_factory=list)
    ops: int = 0
    size: int = 0
    #: (caller's callback, index of its first op, its op count), in entry order.
    waiters: list[tuple[Done, int, int]] = field(default_factory=list)
    #: Units of point reads, run on this node once the entry is applied here.
    reads: list[tuple[Done, Sequence[Sequence[bytes]]]] = field(default_factory=list)
    #: Callers with reads here: a later write of theirs needs a later group.
    readers: set[object] = field(default_factory=set)
    #: Every caller with a unit here (reads too): while this group is in
    #: flight, a group holding one of them waits for it.
    callers: set[object] = field(default_factory=set)


def _already(data: bytes) -> Callable[[], list[bytes] | None]:
    """A one-step encoder of a snapshot taken already."""
    return lambda: [data]


def _in_one_piece(step: Callable[[], bytes | None]) -> Callable[[], list[bytes] | None]:
    """A ``snapshot_copy`` step as a ``snapshot_copy_parts`` one."""

    def parts() -> list[bytes] | None:
        data = step()
        return None if data is None else [data]

    return parts


def _local_reads(ops: Sequence[Sequence[bytes]]) -> bool:
    """Whether ``ops`` are all point reads ``KvMachine.read`` answers (bytes only)."""
    for op in ops:
        if not op or type(op[0]) is not bytes or op[0].lower() not in LOCAL_READS:
            return False
        for arg in op:
            if type(arg) is not bytes:
                return False
    return True


def _fail(group: _Group, error: BaseException) -> None:
    for done, _, _ in group.waiters:
        done(error)
    for done, _ in group.reads:
        done(error)


class TaggedStateMachine:
    """Routes each delivery to the application named by its payload's first byte.

    An application gets its own deliveries with the tag stripped; the
    ``observer`` (if any) sees every delivery as it is, tag included (e.g. to
    track the applied position). The snapshot is each application's
    snapshot, in tag order, length-prefixed (the observer's under tag 0).
    """

    OBSERVER_TAG = b"\x00"

    def __init__(
        self, apps: dict[bytes, StateMachine], observer: StateMachine | None = None
    ) -> None:
        if not apps or any(len(tag) != 1 or tag == self.OBSERVER_TAG for tag in apps):
            raise ConfigurationError("tags are single, distinct, non-zero bytes")
        self.apps = dict(sorted(apps.items()))
        self.observer = observer
        self._all = dict(self.apps)
        if observer is not None:
            self._all[self.OBSERVER_TAG] = observer

    def apply(self, delivery: Delivery) -> None:
        app = self.apps.get(delivery.payload[:1])
        if app is not None:
            app.apply(
                Delivery(delivery.slot, delivery.sender, delivery.payload[1:], delivery.clock_ms)
            )
        if self.observer is not None:
            self.observer.apply(delivery)

    def snapshot(self) -> bytes:
        parts = []
        for tag, app in self._all.items():
            data = app.snapshot()
            parts.append(tag + len(data).to_bytes(8, "big") + data)
        return b"".join(parts)

    def snapshot_copy(self) -> Callable[[], bytes | None]:
        """``snapshot()`` in steps: every application is copied *now* (one point of
        the log for all of them), then encoded a step at a time by the returned
        function (``None`` until the last step returns the same bytes as
        ``snapshot()`` would have). Applications without ``snapshot_copy`` are
        snapshotted at once, here.

        An application's snapshot is taken in pieces where it offers that
        (``snapshot_copy_parts``) and everything is joined once, at the end:
        the snapshot of a large state is then allocated once rather than
        copied again for its frame and again for the whole (the node's
        memory would otherwise swing by a few snapshot sizes at each one).
        """
        steps: list[tuple[bytes, Callable[[], list[bytes] | None]]] = []
        for tag, app in self._all.items():
            copy_parts = getattr(app, "snapshot_copy_parts", None)
            copy = getattr(app, "snapshot_copy", None)
            if copy_parts is not None:
                steps.append((tag, copy_parts()))
            elif copy is not None:
                steps.append((tag, _in_one_piece(copy())))
            else:
                steps.append((tag, _already(app.snapshot())))
        pieces: list[bytes] = []
        done = 0

        def step() -> bytes | None:
            nonlocal done, pieces
            tag, encode = steps[done]
            parts = encode()
            if parts is None:
                return None
            size = sum(len(p) for p in parts)
            pieces += (tag, size.to_bytes(8, "big"), *parts)
            del parts
            done += 1
            if done < len(steps):
                return None
            data = b"".join(pieces)
            pieces = []
            return data

        return step

    def restore(self, data: bytes) -> None:
        pos = 0
        found: dict[bytes, bytes] = {}
        while pos < len(data):
            tag = data[pos : pos + 1]
            size = int.from_bytes(data[pos + 1 : pos + 9], "big")
            found[tag] = data[pos + 9 : pos + 9 + size]
            pos += 9 + size
        if set(found) != set(self._all) or pos != len(data):
            raise PaxosError("snapshot does not match this node's applications")
        for tag, app in self._all.items():
            app.restore(found[tag])


class KeyValueStore:
    """A Redis-like key-value store replicated by ``tob`` (see the module docstring).

    ``kv = KeyValueStore(tob)`` before ``tob`` starts attaches a fresh
    ``KvStateMachine`` to it. When ``tob`` already has a state machine (a
    node serving several applications), pass the ``machine`` it routes this
    store's ``tag`` to.
    """

    def __init__(
        self,
        tob: TotalOrderBroadcast,
        *,
        machine: KvStateMachine | None = None,
        tag: bytes = b"",
        timeout_s: float | None = 10.0,
        reads: str = "read-index",
    ) -> None:
        if reads not in READ_MODES:
            raise ConfigurationError(f"reads must be one of {READ_MODES}, got {reads!r}")
        if machine is None:
            if tob.state_machine is not None:
                raise ConfigurationError(
                    "this TotalOrderBroadcast already has a state machine: pass machine="
                )
            if tag:
                raise ConfigurationError("a tag needs a TaggedStateMachine and machine=")
            machine = KvStateMachine()
            tob.set_state_machine(machine)
        # Only this node's entries are answered here (by ``_send``).
        machine.keep_replies_of(tob.address)
        self.tob = tob
        self.machine = machine
        self.tag = tag
        self.timeout_s = timeout_s
        self.reads = reads
        #: Groups not broadcast yet, in order; the last one still takes commands.
        self._groups: deque[_Group] = deque()
        #: Whether a ``_pump`` is scheduled for this loop pass.
        self._pumping = False
        #: Tasks broadcasting a group each, and how many in-flight groups
        #: hold a unit of each caller.
        self._flying: set[asyncio.Task[None]] = set()
        self._flying_callers: dict[object, int] = {}
        #: Entries broadcast (each one consensus proposal) and commands in them.
        self.entries_proposed = 0
        self.ops_proposed = 0

    async def execute(self, ops: Sequence[Sequence[bytes]]) -> list[Reply]:
        """Apply ``ops`` as one atomic unit of a log entry; their replies, in order.

        Raises ``QuorumTimeoutError`` when the entry is not applied in time
        (it may still be applied later). An entry this node applied inside a
        snapshot from a peer gets ``REPLY_NOT_KEPT`` for each op.
        """
        return await self.submit(ops)

    def submit(self, ops: Sequence[Sequence[bytes]]) -> asyncio.Future[list[Reply]]:
        """Like ``execute``, without a coroutine: the future of ``ops``' replies.

        Commands submitted in the same loop pass share one log entry.
        """
        fut: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()

        def done(result: list[Reply] | BaseException) -> None:
            if fut.done():
                return  # the caller gave up (cancelled)
            if isinstance(result, BaseException):
                fut.set_exception(result)
                fut.exception()  # a caller that gave up must not make asyncio log it
            else:
                fut.set_result(result)

        self.submit_callback(ops, done)
        return fut

    def submit_callback(
        self, ops: Sequence[Sequence[bytes]], done: Done, *, caller: object = None
    ) -> None:
        """Queue ``ops`` for the next entry; ``done`` gets their replies or the error.

        The hot path of the RESP server: no future, no task per command.
        ``done`` is called exactly once, from the event loop (never from here),
        and must not raise. Units of one ``caller`` (hashable, e.g. a
        connection id) take effect in the order submitted.
        Raises ``ConfigurationError`` at once for a malformed op.
        """
        if not ops:
            asyncio.get_running_loop().call_soon(done, [])
            return
        groups = self._groups
        # Groups in ``_groups`` are not broadcast yet: the last one takes units.
        if not groups:
            groups.append(_Group())
        if _local_reads(ops):
            group = groups[-1]
            group.reads.append((done, ops))
            if caller is not None:
                group.readers.add(caller)
                group.callers.add(caller)
            self._wake()
            return
        parts = [encode_op(op) for op in ops]
        size = 0
        for part in parts:
            size += len(part)
        group = groups[-1]
        if (caller is not None and caller in group.readers) or (
            group.ops
            and (group.ops + len(parts) > GROUP_OPS_MAX or group.size + size > GROUP_BYTES_MAX)
        ):
            group = _Group()
            groups.append(group)
        group.waiters.append((done, group.ops, len(parts)))
        group.parts += parts
        group.ops += len(parts)
        group.size += size
        if caller is not None:
            group.callers.add(caller)
        self._wake()

    def _wake(self) -> None:
        # Once per loop pass: by the time ``_pump`` runs, every submit of the
        # pass joined the open group.
        if not self._pumping:
            self._pumping = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        """Broadcast the groups at the head whose callers have nothing in flight."""
        self._pumping = False
        groups = self._groups
        flying_callers = self._flying_callers
        while groups and len(self._flying) < GROUPS_IN_FLIGHT:
            group = groups[0]
            if not group.ops and not group.reads:
                groups.popleft()
                continue
            if flying_callers and not flying_callers.keys().isdisjoint(group.callers):
                # A caller's earlier group must be delivered first; the groups
                # behind wait too (they may hold that caller's later units).
                return
            groups.popleft()
            for caller in group.callers:
                flying_callers[caller] = flying_callers.get(caller, 0) + 1
            self.entries_proposed += 1
            self.ops_proposed += group.ops
            task = asyncio.get_running_loop().create_task(self._send(group))
            self._flying.add(task)
            task.add_done_callback(functools.partial(self._landed, group))

    def _landed(self, group: _Group, task: asyncio.Task[None]) -> None:
        self._flying.discard(task)
        flying_callers = self._flying_callers
        for caller in group.callers:
            left = flying_callers[caller] - 1
            if left:
                flying_callers[caller] = left
            else:
                del flying_callers[caller]
        if task.cancelled():
            # Cancelled (the loop is shutting down): nobody will send the rest.
            error = NotRunningError("the store was shut down")
            _fail(group, error)
            for waiting in self._groups:
                _fail(waiting, error)
            self._groups.clear()
            return
        if self._groups:
            self._pump()

    async def _send(self, group: _Group) -> None:
        # The log's clock decides when this entry happens; the proposer's
        # time is kept in the entry for a log without a clock only.
        if not group.ops and self.reads == "read-index" and not self._needs_newer_clock(group):
            try:
                await self.tob.read_index(timeout=self.timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                _fail(group, e)
                return
            read = self.machine.read
            for done, ops in group.reads:
                done(read(ops))
            return
        payload = self.tag + encode_entry_of(int(self.tob.wall_clock() * 1000), group.parts)
        try:
            d = await self.tob.broadcast(payload, timeout=self.timeout_s)
        except AlreadyDeliveredError:  # applied, inside a snapshot this node took from a peer
            replies: list[Reply] | None = None
        except asyncio.CancelledError:
            raise
        except Exception as e:  # timeout, shutdown, ...: every caller of the group gets it
            _fail(group, e)
            return
        else:
            replies = self.machine.take_replies(d.slot)
        for done, start, count in group.waiters:
            if replies is None:  # applied inside a snapshot from a peer: the reply is gone
                done([REPLY_NOT_KEPT] * count)
            elif len(replies) != group.ops:  # the entry did not decode: one error for all
                done([replies[0]] * count)
            else:
                done(replies[start : start + count])
        # The entry is applied here (directly or inside a snapshot that covers
        # it), so this node's state is at or past the reads' position.
        read = self.machine.read
        for done, ops in group.reads:
            done(read(ops))

    def _needs_newer_clock(self, group: _Group) -> bool:
        """Whether the reads must see the log's clock move (a barrier entry is stamped).

        Reads run at the clock of the last applied entry, and a read index
        moves no clock: when some key may have expired since (by this node's
        clock), or a read counts the time left (TTL, PTTL), the reads go
        behind an empty entry, which the leader stamps with its time.
        """
        if self.machine.expiry_due(int(self.tob.wall_clock() * 1000)):
            return True
        return any(op[0].lower() in _TIMED_READS for _, ops in group.reads for op in ops)

    def set_on_applied(self, callback: Callable[[Entry | None], None] | None) -> None:
        """``callback(entry)`` after each entry is applied here (``KvStateMachine.on_applied``)."""
        self.machine.on_applied = callback

    def set_on_publish(self, callback: Callable[[bytes, bytes], int] | None) -> None:
        """``callback(channel, message)`` per ``PUBLISH`` applied here.

        ``KvStateMachine.on_publish``: it returns the receivers on this node.
        """
        self.machine.on_publish = callback

    def stored_keys(self) -> int:
        """Keys held on this replica (expired ones not yet removed included)."""
        return self.machine.machine.stored_keys

    async def command(self, *args: bytes | str | int) -> Reply:
        """One Redis command, e.g. ``await kv.command("INCR", "n")``."""
        (reply,) = await self.execute([Op.of(*args).args])
        return reply

    async def put(self, key: bytes, value: bytes) -> None:
        """Set ``key``; returns once the write is applied on this node."""
        reply = await self.command(b"SET", key, value)
        # REPLY_NOT_KEPT: applied here (in a snapshot), and a plain SET answers OK.
        if isinstance(reply, Error) and reply != REPLY_NOT_KEPT:
            raise PaxosError(reply.text)

    async def get(self, key: bytes) -> bytes | None:
        """The value of ``key``, linearizable: read here once an entry proposed after
        the call is applied here (a point read always has its reply: it runs locally)."""
        reply = await self.command(b"GET", key)
        if isinstance(reply, Error):
            raise PaxosError(reply.text)
        assert reply is None or isinstance(reply, bytes)
        return reply

    async def delete(self, key: bytes) -> bool:
        """Delete ``key``; True if it existed."""
        reply = await self.command(b"DEL", key)
        if isinstance(reply, Error):
            raise PaxosError(reply.text)
        return reply == 1
