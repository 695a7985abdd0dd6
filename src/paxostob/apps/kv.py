"""``KeyValueStore``: a linearizable replicated key-value store on total-order broadcast.

Theory of operation: every write is an entry in the replicated log
(``kv.Entry``: the commands of one or several callers; point reads are
ordered by the log without being in it, see below). An entry is applied at
the log's clock, which the leader decides (``core.multipaxos``: clock
stamps), never at the proposer's: the ``now_ms`` this node writes into the
entry is only read for a log without a clock (``kv.state_machine``). Every
replica applies the same entries in the same order to a pure
``KvMachine``, so all replicas hold the same data. The caller's entry
resolves once it is *applied on this node*, with the replies this replica
computed (``TotalOrderBroadcast.submit`` returns what the state machine's
``apply`` returned), which every replica computed alike. A read that goes
through the log is linearizable: it is ordered after every write
acknowledged before it was issued (that write's entry precedes it in the
log). The Go original read its local map instead, which could be stale.

Grouping (one of the two places commands are grouped; the other is the
Multi-Paxos leader's batch of proposals per slot, ``LogConfig.batch_*``):
commands submitted during one pass of the event loop, by many callers at
once (and a RESP client's pipelined commands, each submitted as it is read),
become ONE log entry, each caller's unit contiguous in it, up to
``GROUP_OPS_MAX`` commands and ``GROUP_BYTES_MAX`` bytes. The entry is applied
atomically everywhere, which is at least as strong as applying the callers'
units one after another, and each caller gets exactly its own replies. One
broadcast, one decode and one apply per loop pass instead of per command is
what lets 50 clients share a consensus round. A caller's units are never
reordered among themselves: they join groups in the order submitted, and a
group that holds a unit of a ``caller`` is broadcast only after every
earlier group holding one of that caller's units was *delivered* here (so
its position precedes the later group's). Groups of different callers are
in flight together (up to ``GROUPS_IN_FLIGHT``): they are concurrent, so
either order in the log is linearizable, and a second consensus round
overlaps the first instead of waiting for it.

Reads by the log, without the reads in it: a unit of point reads only (GET,
MGET, EXISTS, TTL, ... ``kv.machine.LOCAL_READS``) joins the group like any
unit, but is not encoded into its entry; once the group's entry is applied
on this node, the reads run on this node's state. That is the read the log
would have given, moved to the same position: the entry was proposed after
the read arrived, so every write acknowledged before the read precedes it,
and the state only moves forward. A group of reads only proposes an empty
entry (a barrier): followers store and apply a few bytes instead of every
read, and nobody encodes or decodes the reads. Reads run after *all* of
their group's writes, so when a write of the same ``caller`` (a client
connection) follows one of its reads in the open group, that caller's reads
move into the entry as commands, before the write: a client's read never
sees the client's own later writes, and a pipelined GET then SET still share
one entry. Calls without a ``caller`` that are pending at the same time are
unordered, like separate clients.

By default (``reads="read-index"``) a group of reads only proposes nothing:
it waits for ``TotalOrderBroadcast.read_index`` instead (the leader confirms
with one round of messages that it still leads, and this node applies the
log through the leader's index; core/reads.py), which costs no log entry, no
save and no apply anywhere. ``reads="barrier"`` keeps the empty entry.
``reads="lease"`` (on a ``TotalOrderBroadcast(leases=True)``) is the read
index too, but a leader whose lease holds serves it with no round at all
(core/reads.py, 'Leases': it rests on bounded clock drift).

Several applications may share one broadcast group: ``tag`` prefixes this
store's payloads, and ``apps.tagged.TaggedStateMachine`` routes deliveries
by tag.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigurationError, NotRunningError, PaxosError, ResultUnknownError
from ..kv.commands import Entry, Op, encode_entry_of, encode_op
from ..kv.machine import LOCAL_READS
from ..kv.replies import Error, Reply
from ..kv.state_machine import KvStateMachine
from ..node.tob import TotalOrderBroadcast

__all__ = ["GROUP_BYTES_MAX", "GROUP_OPS_MAX", "READ_MODES", "KeyValueStore"]

#: How a group of point reads only is ordered: by a read index (no log
#: entry: the default), by an empty entry through the log (a barrier), or by
#: a read index that a leader with a lease serves with no round (``lease``).
READ_MODES = ("read-index", "barrier", "lease")
#: Point reads whose reply counts time: the log's clock must move for them.
_TIMED_READS = frozenset({b"ttl", b"pttl"})

#: One coalesced entry holds at most this many commands and encoded bytes
#: (it must stay well under a Multi-Paxos batch, ``LogConfig.batch_bytes_max``,
#: and a TCP frame). 4,096 commands: 256 clients pipelining 16 fit one entry.
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
#: ``submit_run``'s: called once per piece, with its first op's index and op count.
RunDone = Callable[[int, int, list[Reply] | BaseException], None]


@dataclass(slots=True)
class _Group:
    """Commands of several callers that will share one log entry."""

    parts: list[bytes] = field(default_factory=list)
    ops: int = 0
    size: int = 0
    #: (caller's callback, index of its first op, its op count), in entry order.
    waiters: list[tuple[Done, int, int]] = field(default_factory=list)
    #: Units of point reads, run on this node once the entry is applied here,
    #: with their caller.
    reads: list[tuple[Done, Sequence[Sequence[bytes]], object]] = field(default_factory=list)
    #: Callers with reads here: a later write of theirs moves them into the entry.
    readers: set[object] = field(default_factory=set)
    #: Every caller with a unit here (reads too): while this group is in
    #: flight, a group holding one of them waits for it.
    callers: set[object] = field(default_factory=set)


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
    for done, _, _ in group.reads:
        done(error)


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
        if reads == "lease" and not tob.config.leases:
            raise ConfigurationError(
                'reads="lease" needs a TotalOrderBroadcast(leases=True): followers must guard'
            )
        if machine is None:
            if tob.state_machine is not None:
                raise ConfigurationError(
                    "this TotalOrderBroadcast already has a state machine: pass machine="
                )
            if tag:
                raise ConfigurationError("a tag needs a TaggedStateMachine and machine=")
            machine = KvStateMachine()
            tob.set_state_machine(machine)
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
        (it may still be applied later). Raises ``ResultUnknownError`` when
        this node applied the entry only inside a snapshot from a peer (it
        lagged behind): the commands took effect exactly once, but their
        replies were computed elsewhere. Point reads always have their replies.
        """
        return await self.submit(ops)

    def submit(self, ops: Sequence[Sequence[bytes]]) -> asyncio.Future[list[Reply]]:
        """Like ``execute``, without a coroutine: the future of ``ops``' replies.

        Commands submitted in the same loop pass share one log entry (the
        store's grouping: see the module docstring).
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
        if _local_reads(ops):
            self._queue_reads(ops, done, caller)
        else:
            self._queue_writes([encode_op(op) for op in ops], done, caller)

    def submit_run(
        self, ops: Sequence[Sequence[bytes]], done: RunDone, *, caller: object = None
    ) -> None:
        """Queue each of ``ops`` as a unit of its own, in order, in one call.

        A RESP read's pipelined commands: the same as one ``submit_callback``
        per op, for less work per op. Consecutive point reads are queued
        together, and consecutive other commands together (as many as fit
        one entry); each such piece is answered by one ``done(first, count,
        result)``: the index of its first op in ``ops``, its op count, and
        their replies (or the error that stopped them). Raises
        ``ConfigurationError`` for a malformed op, before queueing any.
        """
        pieces: list[tuple[int, Sequence[Sequence[bytes]] | None, list[bytes]]] = []
        n = len(ops)
        i = 0
        while i < n:
            j = i + 1
            if _local_reads((ops[i],)):
                while j < n and _local_reads((ops[j],)):
                    j += 1
                pieces.append((i, ops[i:j], []))
            else:
                parts = [encode_op(ops[i])]
                size = len(parts[0])
                while (
                    j < n
                    and len(parts) < GROUP_OPS_MAX
                    and size < GROUP_BYTES_MAX
                    and not _local_reads((ops[j],))
                ):
                    part = encode_op(ops[j])
                    parts.append(part)
                    size += len(part)
                    j += 1
                pieces.append((i, None, parts))
            i = j
        for first, reads, parts in pieces:
            if reads is not None:
                self._queue_reads(reads, functools.partial(done, first, len(reads)), caller)
            else:
                self._queue_writes(parts, functools.partial(done, first, len(parts)), caller)

    def _queue_reads(self, ops: Sequence[Sequence[bytes]], done: Done, caller: object) -> None:
        groups = self._groups
        # Groups in ``_groups`` are not broadcast yet: the last one takes units.
        if not groups:
            groups.append(_Group())
        group = groups[-1]
        group.reads.append((done, ops, caller))
        if caller is not None:
            group.readers.add(caller)
            group.callers.add(caller)
        self._wake()

    def _queue_writes(self, parts: list[bytes], done: Done, caller: object) -> None:
        size = 0
        for part in parts:
            size += len(part)
        groups = self._groups
        if not groups:
            groups.append(_Group())
        group = groups[-1]
        if caller is not None and caller in group.readers:
            # The caller's reads must not see this write: they go into the
            # entry, as commands, before it (a pipeline's GET then SET stays
            # one entry instead of two rounds one after the other).
            self._log_reads_of(group, caller)
        if group.ops and (
            group.ops + len(parts) > GROUP_OPS_MAX or group.size + size > GROUP_BYTES_MAX
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

    @staticmethod
    def _log_reads_of(group: _Group, caller: object) -> None:
        """Move ``caller``'s point reads of ``group`` into its entry, as commands.

        They then run in the log at their place in the entry, before the
        caller's write that follows. The group is not broadcast yet, so
        nothing in it was acknowledged: the other callers' units placed
        before them are concurrent with them, and either order is
        linearizable.
        """
        group.readers.discard(caller)
        kept: list[tuple[Done, Sequence[Sequence[bytes]], object]] = []
        for read in group.reads:
            done, ops, of = read
            if of != caller:
                kept.append(read)
                continue
            for op in ops:
                part = encode_op(op)
                group.parts.append(part)
                group.size += len(part)
            group.waiters.append((done, group.ops, len(ops)))
            group.ops += len(ops)
        group.reads = kept

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
        if not group.ops and self.reads != "barrier" and not self._needs_newer_clock(group):
            try:
                await self.tob.read_index(timeout=self.timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                _fail(group, e)
                return
            read = self.machine.read
            for done, ops, _ in group.reads:
                done(read(ops))
            return
        payload = self.tag + encode_entry_of(int(self.tob.wall_clock() * 1000), group.parts)
        try:
            replies = await self.tob.submit(payload, timeout=self.timeout_s)
        except ResultUnknownError as e:  # applied, inside a snapshot from a peer
            for done, _, _ in group.waiters:
                done(e)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # timeout, shutdown, ...: every caller of the group gets it
            _fail(group, e)
            return
        else:
            if type(replies) is not list:
                # Not this store's machine's replies (a tag routed elsewhere): a bug.
                _fail(group, PaxosError(f"the state machine returned {type(replies).__name__}"))
                return
            for done, start, count in group.waiters:
                if len(replies) != group.ops:  # the entry did not decode: one error for all
                    done([replies[0]] * count)
                else:
                    done(replies[start : start + count])
        # The entry is applied here (directly or inside a snapshot that covers
        # it), so this node's state is at or past the reads' position.
        read = self.machine.read
        for done, ops, _ in group.reads:
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
        return any(op[0].lower() in _TIMED_READS for _, ops, _ in group.reads for op in ops)

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
        try:
            reply = await self.command(b"SET", key, value)
        except ResultUnknownError:
            return  # applied here (inside a snapshot), and a plain SET answers OK
        if isinstance(reply, Error):
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
