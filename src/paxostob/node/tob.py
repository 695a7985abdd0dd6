"""``TotalOrderBroadcast``: every node delivers the same messages in the same order.

Built on the Multi-Paxos log (``core.multipaxos``). Properties, for crash-stop
nodes and a network that loses, duplicates, delays, reorders and partitions:

- Uniform agreement and total order: the delivery sequences of any two nodes
  are prefixes of one another; ``Delivery.slot`` is the same message's
  position everywhere.
- No duplication, no creation: each broadcast is delivered at most once per
  node, and only broadcast messages are delivered.
- Validity: a broadcast of a node that stays up is delivered by every node
  that stays up, once a majority can talk again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.events import (
    ChangeOutcome,
    Compact,
    Delivered,
    MarkSnapshotPoint,
    Propose,
    ProposeChange,
    ReadIndex,
    Ready,
    Restore,
)
from ..core.membership import CONFIG_DELAY_SLOTS, Configuration, Membership
from ..core.multipaxos import SEQ_BITS, LogConfig, MultiPaxosReplica, Status
from ..core.types import CLOCK_STAMP_BYTES, Ballot, Delivery, ProposalId
from ..errors import (
    AlreadyDeliveredError,
    ConfigurationError,
    MembershipError,
    NodeFailedError,
    NotLeaderError,
    NotRunningError,
    PaxosError,
    PayloadTooLargeError,
    ProposalConflictError,
    QuorumTimeoutError,
    ResultUnknownError,
)
from ..storage.base import Storage, has_durable_part
from ..transport.base import Transport
from ._common import (
    AsyncLifetime,
    check_membership,
    choose_storage,
    failure_message,
    make_rng,
    open_store,
    store_directory,
    within,
)
from .driver import Driver, monotonic_ms

__all__ = ["CopyingStateMachine", "SnapshotStats", "StateMachine", "TotalOrderBroadcast"]

log = logging.getLogger("paxostob.node")


class StateMachine(Protocol):
    """An application fed synchronously, in total order, that can be snapshotted.

    ``apply`` is called for every delivery, in order, inside the node's
    driver (keep it quick and deterministic). What it returns is the
    delivery's *result* on this node: ``TotalOrderBroadcast.submit`` of this
    node resolves with it (e.g. a key-value command's replies), so replies
    travel with the delivery and nothing keeps them on the side. Return
    ``None`` when there is nothing to say. ``snapshot`` returns the state
    after everything applied so far; ``restore`` replaces the state by a
    snapshot's (on restart, or when a lagging node jumps ahead).
    """

    def apply(self, delivery: Delivery) -> object: ...
    def snapshot(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...


class CopyingStateMachine(StateMachine, Protocol):
    """A ``StateMachine`` whose snapshot is encoded in steps (optional).

    ``snapshot_copy`` takes a consistent copy of the state after everything
    applied so far, cheaply (e.g. shallow copies of its dictionaries), and
    returns a step function: each call encodes a bounded part of that copy
    and returns ``None``; the last call returns exactly the bytes
    ``snapshot`` would have returned when the copy was taken. The node calls
    the steps between its other work, so a large state never blocks its
    event loop for long (a leader that cannot send heartbeats for an
    election timeout loses its leadership). The steps must touch the copy
    only, never the live state. A state machine without ``snapshot_copy`` is
    snapshotted in one synchronous call, as before.
    """

    def snapshot_copy(self) -> Callable[[], bytes | None]: ...


@dataclass(slots=True)
class SnapshotStats:
    """A node's snapshots so far (read them; the node updates them).

    ``saved``: snapshots written to storage, taken here or ``installed``
    from a peer; ``failed``: encodings that raised (the log is then kept
    until the next try). ``last_*``: the latest saved one: its slot, size,
    when it was saved (Unix seconds), how long encoding it took (0 for one
    from a peer) and how long storage took to write it. ``*_s_total``: the
    sums over every snapshot, for averages.
    """

    saved: int = 0
    installed: int = 0
    failed: int = 0
    last_failed: bool = False
    last_slot: int = 0
    last_bytes: int = 0
    last_saved_at: float = 0.0
    last_encode_s: float = 0.0
    last_save_s: float = 0.0
    encode_s_total: float = 0.0
    save_s_total: float = 0.0


INSTANCE_PREFIX = "tob:"
#: A broadcast's timeout fires this much late at most (never early): the
#: deadlines of a bucket this long share one loop timer.
TIMEOUT_GRANULARITY_S = 0.005


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class _Deadlines:
    """Broadcasts whose deadlines fall in one bucket, and the bucket's timer."""

    __slots__ = ("key", "timer", "waiters")

    def __init__(self, key: int, timer: asyncio.TimerHandle) -> None:
        #: The bucket's number: its deadline is ``key * TIMEOUT_GRANULARITY_S``.
        self.key = key
        self.timer = timer
        #: Each waiting broadcast's future and its timeout (for the message).
        self.waiters: dict[asyncio.Future[Any], float | None] = {}


#: Payload bytes delivered between two snapshots (or ``snapshot_entries_max``
#: deliveries, whichever comes first). The log kept until the next snapshot
#: is most of a node's memory that comes and goes under write load, so it is
#: bounded in bytes: counted in entries it follows the entries' size (a KV
#: entry groups many clients' commands, so 10,000 entries of the soak's 50
#: clients held tens of megabytes, more when a slower cluster made larger
#: groups). At 64 MiB the soak with 100,000 keys saw a node's RSS spread by
#: 2-18% around its median; at 16 MiB, under 1%. The cost: a snapshot per
#: 16 MiB written (about 130,000 SETs of 100 bytes; at 100,000 keys about
#: 0.1-0.2 s of CPU per node, so about 1 us per SET).
SNAPSHOT_BYTES_MAX_DEFAULT = 16 << 20


class TotalOrderBroadcast(AsyncLifetime):
    """One node of a total-order broadcast group.

    ``members`` is the whole membership, this node included. ``pending_max``
    bounds this node's broadcasts that are not yet delivered here: beyond it,
    ``broadcast`` waits (back-pressure) instead of growing memory.
    ``delivery_queue_max`` bounds deliveries not yet taken with ``deliver()``;
    when the application falls that far behind, the node stops applying until
    it catches up.

    Durability: with ``data_dir`` (the durable default, ``default_storage``:
    an append-only log in that directory, one directory per node) or ``storage`` (any object
    implementing ``paxostob.storage.base.Storage``) the node persists its promise and
    accepted proposals before any message that depends on them leaves
    (fsync'd, one fsync per batch of work: group commit), and its decided
    log. After a crash, a node restarted on the same storage gets back its
    promises, so it never contradicts what it told peers, and re-delivers
    its decided log from its latest snapshot on (a ``state_machine`` gets
    ``restore(snapshot)`` first), in the same positions (``Delivery.slot``)
    and order as before: an in-memory application rebuilds its state by
    replay, and an application with durable state skips the positions it
    already applied. A broadcast that resolved was delivered here, so a
    quorum accepted it durably: no crash of any minority, nor a restart of
    every node, loses it. Without ``data_dir``/``storage`` everything is in
    memory: a restarted node is a new, empty member, which is safe only when
    no running member counts on what it promised before (docs/operations.md:
    over a real network, run durable nodes).

    A cluster is made once: the first start of each founding member passes
    ``bootstrap=True``, which makes its store (recording ``members``) when
    there is none. Every later start finds the store; one that finds none
    refuses to start (``StoreMissingError``) rather than vote with promises
    it has lost, and one whose store was made for another membership refuses
    too (``ConfigurationError``). ``bootstrap`` on an existing store does
    nothing, but it must never be passed for a member whose store was lost:
    that member would rejoin having forgotten its votes.

    Membership (docs/design.md, 'Membership change'): ``members`` are the
    founding members, the first configuration's voters. The leader changes
    the membership one change at a time: ``add_member`` (a learner, which
    receives the log but does not vote), ``promote_member`` (learner to
    voter, once it caught up) and ``remove_member``; each resolves once the
    change is in effect here, and raises ``MembershipError`` when refused
    (``NotLeaderError``, naming the leader, on a node that does not lead).
    ``members()`` is the configuration in effect; ``on_membership``
    callbacks hear of each new one (a runtime dials new members there). A
    node added later starts with ``join=True`` and the same founding
    ``members`` (it is not one of them) on every start, and with
    ``bootstrap=True`` on its first start only, exactly as a founding member
    (that makes its store; a later start that finds none refuses, since the
    node may have become a voter and must not vote with promises it lost). It
    stays a learner until promoted, and catches up by snapshot and log. A
    node whose disk was lost joins under a new id (a removed id never comes
    back).

    Compaction: with a ``state_machine``, deliveries go to its ``apply``
    (not to ``deliver()``); after ``snapshot_entries_max`` deliveries or
    ``snapshot_bytes_max`` payload bytes (both times 1 to 1.5, by the node's
    place in ``members``, so that nodes do not all compact at the same slot)
    the node snapshots it and drops the
    log through that point, so memory and storage stay bounded (a state
    machine with ``snapshot_copy``, see ``CopyingStateMachine``, is copied
    there and encoded in steps between the node's other work, so a large
    state does not stall the node; the log is dropped through the copy's
    point once the encoding is done). A replica
    that needs dropped slots receives the snapshot in chunks and restores it.
    Use a state machine on every member or on none.

    Failure: when a save fails (a full disk, the file size or open-file
    limit, an I/O error) or the node's driver fails, the node stops on its
    own (fail-stop) and logs one line: what failed, the OS error's name and
    what to do. ``failure`` is then a ``NodeFailedError`` naming the cause
    (a ``NotRunningError``; ``__cause__`` is the original error): every
    pending ``broadcast`` raises it, so do later calls and ``deliveries()``,
    and ``await wait_closed()`` raises it (it returns normally once
    ``close()`` is called on a node that did not fail). Nothing the failed
    save held was acknowledged. Watch for it, e.g. run
    ``wait_closed()`` beside the application and exit non-zero when it
    raises (``paxostob serve`` does), then ``close()`` and restart on the
    same data once the cause is fixed.

    ``leases``: leader leases (``LogConfig.leases``, core/reads.py 'Leases'):
    ``read_index`` at a leader whose lease holds costs no round; followers
    guard their leader for an election timeout. Every node should run with
    the same setting (a node without leases does not count towards a lease).

    Time: each tick the node reads ``wall_clock`` (Unix seconds) and its
    loop's monotonic clock; the leader stamps every batch it proposes, and
    each ``Delivery.clock_ms`` is the log's clock at that position, the same
    on every node, never decreasing, advancing by at most
    ``config.clock_step_ms_max`` per tick (``core.multipaxos`` states the
    rule). Only the leader's clock counts; a member whose clock is wrong
    changes nothing while it follows. Without ``config`` the step is twice
    the tick interval; a ``config`` whose step is below the tick interval is
    refused.
    """

    def __init__(
        self,
        transport: Transport,
        members: list[str] | tuple[str, ...],
        *,
        instance: str = "default",
        tick_interval_s: float = 0.01,
        config: LogConfig | None = None,
        pending_max: int = 4096,
        delivery_queue_max: int = 1_000_000,
        seed: int | None = None,
        storage: Storage | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        cluster_id: str = "default",
        state_machine: StateMachine | None = None,
        snapshot_entries_max: int = 10_000,
        snapshot_bytes_max: int = SNAPSHOT_BYTES_MAX_DEFAULT,
        bootstrap: bool = False,
        in_memory: bool = False,
        wall_clock: Callable[[], float] = time.time,
        join: bool = False,
        leases: bool = False,
    ) -> None:
        if not instance:
            raise ConfigurationError("instance must be a non-empty name")
        if min(pending_max, delivery_queue_max, snapshot_entries_max, snapshot_bytes_max) < 1:
            raise ConfigurationError(
                "pending_max, delivery_queue_max and snapshot_*_max must be >= 1"
            )
        self.address = transport.address
        #: This node's wall clock (Unix seconds), read every tick.
        self.wall_clock = wall_clock
        #: The founding members (the first configuration's voters); the
        #: configuration in effect is ``members()``.
        self.founding_members = check_membership(self.address, members, join=join)
        self._join = join
        self.instance = instance
        tick_ms = tick_interval_s * 1000
        if config is None:
            # Twice the tick, as the default for a 10 ms tick: the log's clock
            # runs at most twice as fast as real time, whatever the tick.
            config = LogConfig(clock_step_ms_max=max(1, math.ceil(2 * tick_ms)))
        elif config.clock_step_ms_max < tick_ms:
            raise ConfigurationError(
                f"LogConfig.clock_step_ms_max ({config.clock_step_ms_max} ms) is below the "
                f"tick interval ({tick_ms:g} ms): the log's clock could not keep up with "
                "real time"
            )
        if leases:
            # The guard lasts the election timeout in ms of this node's ticks.
            config = dataclasses.replace(config, leases=True, tick_ms=max(1, round(tick_ms)))
        if config.window_slots_max > CONFIG_DELAY_SLOTS:
            raise ConfigurationError(
                f"LogConfig.window_slots_max ({config.window_slots_max}) may not exceed "
                f"{CONFIG_DELAY_SLOTS}, the slots a membership change waits before it takes "
                "effect: a leader must know the configuration of every slot it opens"
            )
        self.config = config
        rng = make_rng(seed, f"tob:{instance}:{self.address}")
        # Without storage nothing counts this node's lives, so each life draws
        # its own: proposal ids of an earlier life must never be reused.
        # (Seeded runs draw from the seed, so give a restarted node a new seed.)
        self._replica = MultiPaxosReplica(
            self.address,
            self.founding_members,
            rng,
            instance=INSTANCE_PREFIX + instance,
            config=self.config,
            incarnation=rng.getrandbits(SEQ_BITS),
            join=join,
        )
        #: Bytes a proposal of this node counts beyond its payload (batch_size_bytes).
        self._proposal_overhead = 16 + len(self.address) + CLOCK_STAMP_BYTES
        storage = choose_storage(transport, storage, data_dir, in_memory=in_memory)
        self._storage = storage
        self._bootstrap = bootstrap
        self._opened = False
        self.cluster_id = cluster_id
        self._sm = state_machine
        # Staggered by member: every node delivers the same log, so with one
        # threshold all of them would compact at the same slot, and while a
        # follower installs its snapshot (a file rewrite and fsync, tens of ms
        # at 100K keys) its votes wait for it: with both followers at once the
        # leader has no quorum for that long (p99 of a 16-deep pipeline rose
        # from 20 to 125 ms). With the k-th member of n at (1 + k / 2n) times
        # the limits, followers mostly compact at different times.
        founding = self.founding_members
        rank = sorted({*founding, self.address}).index(self.address)
        stagger = 1 + rank / (2 * (len(founding) + self._join))
        self._snapshot_entries_max = max(1, int(snapshot_entries_max * stagger))
        self._snapshot_bytes_max = max(1, int(snapshot_bytes_max * stagger))
        self._entries_since = 0
        self._bytes_since = 0
        #: The snapshot being encoded off the loop, if any.
        self._snapshotting: asyncio.Future[None] | None = None
        #: Counters of snapshots (metrics, INFO persistence).
        self.snapshots = SnapshotStats()
        #: How long encoding the snapshot being saved took (seconds).
        self._encode_s = 0.0
        self._driver = Driver(
            self._replica,
            transport,
            INSTANCE_PREFIX + instance,
            tick_interval_s=tick_interval_s,
            on_ready=self._on_ready,
            persist=None if storage is None else self._persist,
            room=self._room,
            on_failure=self._on_failure,
            wall_clock=wall_clock,
            # Leases count time a suspended machine slept (driver.monotonic_ms).
            mono_ms=monotonic_ms if config.leases else None,
        )
        #: This node's proposals not yet delivered here: the future of each and
        #: whether it resolves with the state machine's result (``submit``) or
        #: with the ``Delivery`` (``broadcast``).
        self._waiters: dict[ProposalId, tuple[asyncio.Future[Any], bool]] = {}
        #: Broadcasts handed to the driver and not yet proposed: payload,
        #: future, and whether it resolves with the result. One driver call
        #: proposes all of them (``_propose_all``); failed with the rest if
        #: the node stops first.
        self._to_propose: list[tuple[bytes, asyncio.Future[Any], bool]] = []
        #: ``read_index`` calls: not yet stepped, and stepped (by request id).
        self._to_read: list[asyncio.Future[None]] = []
        self._reads: dict[int, asyncio.Future[None]] = {}
        self._read_seq = 0
        #: Broadcasts waiting with a timeout, by deadline bucket.
        self._deadlines: dict[int, _Deadlines] = {}
        # Room for ``pending_max`` undelivered broadcasts: a counter, and the
        # broadcasts waiting for room in arrival order (a semaphore of our
        # own: taking room that is free costs no coroutine and no timer).
        self._room_free = pending_max
        self._room_waiters: deque[asyncio.Future[None]] = deque()
        self._queue: deque[Delivery] = deque()
        self._queue_max = delivery_queue_max
        self._readable = asyncio.Event()
        self._drained = asyncio.Event()
        #: ``_room`` waits for ``_drained``: only then is it worth setting
        #: (not an Event.set per delivery taken).
        self._drain_wanted = False
        #: The last leader this node knew, and its ballot (the log line's "was").
        self._known_leader: tuple[str, Ballot] | None = None
        #: The known leader was lost and that was logged (once per loss).
        self._leader_lost = False
        #: Times this node saw the leader change (a new leader, or a new ballot).
        self.leader_changes = 0
        #: This node's broadcasts that failed: dropped by the log (too large,
        #: a conflicting id) or not delivered within their timeout.
        self.proposals_failed = 0
        # Membership change requests waiting for their outcome, by number.
        self._change_waiters: dict[int, asyncio.Future[Membership]] = {}
        self._change_requests = 0
        self._membership_callbacks: list[Callable[[Membership], None]] = []
        #: The configuration in effect last reported to ``on_membership`` callbacks.
        self._config_in_effect: Configuration | None = None

    # ------------------------------------------------------------- lifetime

    def set_state_machine(self, state_machine: StateMachine) -> None:
        """Attach the state machine deliveries go to (before ``start``)."""
        if self._driver.running:
            raise ConfigurationError("set_state_machine() must be called before start()")
        self._sm = state_machine

    @property
    def state_machine(self) -> StateMachine | None:
        return self._sm

    @property
    def storage(self) -> Storage | None:
        """The node's storage (the one ``data_dir`` made), or None in memory."""
        return self._storage

    @property
    def snapshot_in_progress(self) -> bool:
        """A snapshot is being encoded (between the node's other work)."""
        return self._snapshotting is not None

    @property
    def entries_since_snapshot(self) -> int:
        """Deliveries applied since the last snapshot was taken (none without a state machine)."""
        return self._entries_since

    async def start(self) -> None:
        storage = self._storage
        if storage is not None and not self._opened:
            state = await open_store(
                storage,
                self.cluster_id,
                self.address,
                self.founding_members,
                bootstrap=self._bootstrap,
            )
            self._opened = True
            if state.snapshot is not None:
                self._restore(state.snapshot.data)
            self._replica.step(
                Restore(
                    state.promised,
                    state.accepted,
                    state.decided,
                    incarnation=state.incarnation,
                    snapshot=state.snapshot,
                )
            )
        self._driver.start()

    async def close(self) -> None:
        await self._driver.close()
        snapshotting, self._snapshotting = self._snapshotting, None
        if snapshotting is not None:
            # Its thread finishes on its own; nothing is compacted after close.
            snapshotting.cancel()
            await asyncio.wait({snapshotting})
        if self._storage is not None and self._opened:
            self._opened = False
            await asyncio.to_thread(self._storage.close)
        self._fail_waiters(lambda: NotRunningError("the node was closed"))

    @property
    def failure(self) -> NodeFailedError | None:
        """Why the node stopped on its own (see the class docstring), or None."""
        return self._driver.failure

    async def wait_closed(self) -> None:
        """Wait until the node stops: return after ``close()``, raise ``failure`` if it failed."""
        await self._driver.wait_closed()

    def _on_failure(self, error: Exception) -> NodeFailedError:
        # In the driver task, as the node stops: every waiter learns why.
        where = store_directory(self._storage)
        failure = NodeFailedError(failure_message(self.address, error, where))
        self._fail_waiters(lambda: failure)
        return failure

    def _fail_waiters(self, make_error: Callable[[], NotRunningError]) -> None:
        unproposed = [fut for _, fut, _ in self._to_propose]
        self._to_propose.clear()
        reads: list[asyncio.Future[Any]] = [*self._reads.values(), *self._to_read]
        self._reads.clear()
        self._to_read.clear()
        for fut in [*(fut for fut, _ in self._waiters.values()), *unproposed, *reads]:
            if not fut.done():
                fut.set_exception(make_error())
                # A broadcast that already timed out no longer awaits this
                # future: mark the exception seen so asyncio does not log it.
                fut.exception()
        self._waiters.clear()
        changes = list(self._change_waiters.values())
        self._change_waiters.clear()
        for change in changes:
            if not change.done():
                change.set_exception(make_error())
        while self._room_waiters:
            waiter = self._room_waiters.popleft()
            if not waiter.done():
                waiter.set_exception(make_error())
        self._readable.set()

    # ----------------------------------------------------------------- API

    async def broadcast(self, payload: bytes, *, timeout: float | None = None) -> Delivery:
        """Broadcast ``payload``; resolve with its ``Delivery`` once delivered *here*.

        Raises ``QuorumTimeoutError`` (a ``TimeoutError``) when that takes
        longer than ``timeout`` seconds, typically because no quorum is
        reachable. The broadcast is not withdrawn: it may still be delivered
        later, exactly once, in its place in the total order.
        Raises ``PayloadTooLargeError`` for a payload above the batch limit.
        """
        delivery: Delivery = await self._propose_and_wait(payload, timeout, False)
        return delivery

    async def submit(self, payload: bytes, *, timeout: float | None = None) -> object:
        """Broadcast ``payload``; resolve with what this node's state machine returned for it.

        Like ``broadcast``, but the result is ``state_machine.apply``'s
        return value for this delivery, on this node (a request's reply
        travels with its delivery: e.g. ``KeyValueStore`` gets its commands'
        replies). Raises ``ResultUnknownError`` when the delivery was applied
        here only inside a snapshot from a peer (this node lagged behind): it
        is in the total order exactly once, but no result was computed here.
        Needs a ``state_machine`` (``ConfigurationError`` otherwise).
        """
        if self._sm is None:
            raise ConfigurationError("submit() needs a state_machine: use broadcast()")
        return await self._propose_and_wait(payload, timeout, True)

    async def _propose_and_wait(
        self, payload: bytes, timeout: float | None, want_result: bool
    ) -> Any:
        data = self._checked(payload)
        if not self._driver.running:
            raise self._driver.not_running()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if self._room_free > 0 and not self._room_waiters:
            self._room_free -= 1
        else:
            await self._wait_room(timeout)
        fut = self._submit(data, loop, want_result)
        if deadline is None:
            # No shield: a cancelled caller cancels ``fut``, which only means
            # nobody waits for the delivery (``_on_ready`` skips done futures).
            return await fut
        # (What _delivered_by does, without a coroutine of its own per broadcast.)
        bucket = self._watch(fut, deadline, timeout, loop)
        try:
            return await fut
        finally:
            self._unwatch(fut, bucket)

    async def broadcast_many(
        self, payloads: Iterable[bytes], *, timeout: float | None = None
    ) -> list[Delivery]:
        """Broadcast every payload; resolve with their deliveries once all are delivered here.

        Each payload is broadcast as by ``broadcast`` (delivered once, in its
        place in the total order; back-pressure by ``pending_max``), for the
        cost of one call: for an application that has many messages at once.
        The deliveries are listed in the order of ``payloads``. Every payload
        is checked first (``TypeError``, ``PayloadTooLargeError``): if one is
        refused, none is broadcast. ``timeout`` bounds the whole call
        (``QuorumTimeoutError``); as with ``broadcast``, nothing is withdrawn.
        """
        datas = [self._checked(p) for p in payloads]
        if not self._driver.running:
            raise self._driver.not_running()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        futs: list[asyncio.Future[Any]] = []
        for data in datas:
            if self._room_free > 0 and not self._room_waiters:
                self._room_free -= 1
            else:
                left = None if deadline is None else max(0.0, deadline - loop.time())
                await self._wait_room(left)
            futs.append(self._submit(data, loop, False))
        try:
            if deadline is None:
                return [await fut for fut in futs]
            return [await self._delivered_by(fut, deadline, timeout, loop) for fut in futs]
        except BaseException:
            # Nobody will await the others: their errors are not worth a log line.
            for fut in futs:
                fut.add_done_callback(_retrieve)
            raise

    @property
    def reads_leased(self) -> int:
        """Reads this node served from its leader lease with no round: its own
        ``read_index`` calls, and followers' asks it granted."""
        return self._replica.reads.leased

    async def read_index(self, *, timeout: float | None = None) -> None:
        """Return once this node applied every value chosen before the call (ReadIndex).

        A read of the state machine (or of the deliveries handed out here)
        right after it sees every broadcast delivered anywhere before the
        call: the leader confirms it still leads with one round of messages
        answered by a quorum (no log entry, no save), and this node waits
        until it applied through the leader's index. Raises
        ``QuorumTimeoutError`` after ``timeout`` seconds, or when the node
        gave up (no quorum within ``LogConfig.read_timeout_ticks``).
        """
        if not self._driver.running:
            raise self._driver.not_running()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Calls between two driver steps are stepped by one call (one round).
        batch = self._to_read
        batch.append(fut)
        if len(batch) == 1:
            try:
                self._driver.call(self._step_reads)
            except BaseException:
                batch.clear()
                raise
        try:
            await within(fut, timeout, "read index")
        except BaseException:
            fut.cancel()  # the core's answer, when it comes, finds it done
            raise

    def _step_reads(self) -> None:
        # Runs in the driver task (it owns the replica).
        batch, self._to_read = self._to_read, []
        step = self._replica.step
        reads = self._reads
        # With leases: a reading taken now, after these reads were asked (the
        # last tick's may be stale: the loop may have stalled since).
        elapsed = self._driver.since_tick_ms() if self.config.leases else None
        for fut in batch:
            if fut.done():
                continue
            self._read_seq += 1
            reads[self._read_seq] = fut
            step(ReadIndex(self._read_seq, elapsed))

    def _reads_done(self, ready: Ready) -> None:
        reads = self._reads
        for rid in ready.reads:
            fut = reads.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        for rid in ready.reads_failed:
            fut = reads.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_exception(
                    QuorumTimeoutError("read index: no quorum confirmed a leader in time")
                )

    def _checked(self, payload: bytes) -> bytes:
        data = payload
        if type(data) is not bytes:  # (an exact type test is the cheap common case)
            if not isinstance(payload, bytes | bytearray | memoryview):
                raise TypeError("broadcast() takes bytes")
            data = bytes(payload)
        # The core's own measure (batch_size_bytes and the leader's clock stamp): a
        # payload it would drop after numbering it would leave a hole in this
        # life's proposal numbers, which every replica then remembers for good.
        if len(data) + self._proposal_overhead > self.config.batch_bytes_max:
            raise PayloadTooLargeError(
                f"payload of {len(data)} bytes exceeds batch_bytes_max "
                f"({self.config.batch_bytes_max})"
            )
        return data

    def _submit(
        self, data: bytes, loop: asyncio.AbstractEventLoop, want_result: bool
    ) -> asyncio.Future[Any]:
        """Hand ``data`` (its room taken) to the driver; the future of its delivery."""
        fut: asyncio.Future[Any] = loop.create_future()
        # Broadcasts made before the driver runs share one inbox item (the
        # driver runs its whole inbox before it takes the next Ready anyway,
        # so they reach the core together and its batch groups them).
        batch = self._to_propose
        batch.append((data, fut, want_result))
        if len(batch) == 1:
            try:
                self._driver.call(self._propose_all)
            except BaseException:
                batch.clear()
                self._release_room()
                raise
        return fut

    async def _delivered_by(
        self,
        fut: asyncio.Future[Any],
        deadline: float,
        timeout: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> Any:
        bucket = self._watch(fut, deadline, timeout, loop)
        try:
            return await fut
        finally:
            self._unwatch(fut, bucket)

    def _watch(
        self,
        fut: asyncio.Future[Any],
        deadline: float,
        timeout: float | None,
        loop: asyncio.AbstractEventLoop,
    ) -> _Deadlines:
        """Fail ``fut`` with a timeout at ``deadline`` unless ``_unwatch`` comes first."""
        # Deadlines share one timer per TIMEOUT_GRANULARITY_S: a timer per
        # broadcast (a handle, a heap push, a cancel) is a large share of a
        # broadcast's cost.
        key = math.ceil(deadline / TIMEOUT_GRANULARITY_S)
        bucket = self._deadlines.get(key)
        if bucket is None:
            bucket = self._deadlines[key] = _Deadlines(
                key, loop.call_at(key * TIMEOUT_GRANULARITY_S, self._expire, key)
            )
        bucket.waiters[fut] = timeout
        return bucket

    def _unwatch(self, fut: asyncio.Future[Any], bucket: _Deadlines) -> None:
        waiters = bucket.waiters
        waiters.pop(fut, None)
        if not waiters and self._deadlines.get(bucket.key) is bucket:
            bucket.timer.cancel()
            del self._deadlines[bucket.key]

    async def _wait_room(self, timeout: float | None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room_waiters.append(waiter)
        try:
            await within(waiter, timeout, "broadcast (waiting for room)")
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release_room()  # room handed to us as we left: pass it on
            else:
                waiter.cancel()
                if waiter in self._room_waiters:
                    self._room_waiters.remove(waiter)
            raise

    def _release_room(self, count: int = 1) -> None:
        """``count`` broadcasts left: hand their room to waiters, in order, or free it."""
        waiters = self._room_waiters
        while count and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # handed over: the counter stays
                count -= 1
        self._room_free += count

    def _propose_all(self) -> None:
        # Runs in the driver task (it owns the replica). If a step raises,
        # the node stops (the driver's failure path), and the broadcasts not
        # proposed yet, back in ``_to_propose``, fail with the rest.
        batch, self._to_propose = self._to_propose, []
        replica = self._replica
        step = replica.step
        proposals = replica.proposals
        waiters = self._waiters
        done = 0
        try:
            for data, fut, want_result in batch:
                step(Propose(data))
                pid = proposals.last_id
                assert pid is not None
                waiters[pid] = (fut, want_result)
                done += 1
        except BaseException:
            self._to_propose[:0] = batch[done:]
            raise

    def _expire(self, key: int) -> None:
        # The broadcasts are not withdrawn: their waiters stay until they are
        # delivered (then their room is released), only the callers stop waiting.
        bucket = self._deadlines.pop(key, None)
        if bucket is None:
            return
        for fut, timeout in list(bucket.waiters.items()):
            if not fut.done():
                self.proposals_failed += 1
                fut.set_exception(
                    QuorumTimeoutError(
                        f"broadcast did not complete within {timeout:.3g} s "
                        "(is a quorum of members reachable?)"
                    )
                )

    async def deliver(self) -> Delivery:
        """The next delivery in total order (own broadcasts included).

        With a ``state_machine`` deliveries go to it instead, and this raises.
        """
        if self._sm is not None:
            raise ConfigurationError("deliveries go to the state_machine of this node")
        while not self._queue:
            if not self._driver.running:
                raise self._driver.not_running()
            self._readable.clear()
            await self._readable.wait()
        if self._drain_wanted and len(self._queue) <= self._queue_max // 2:
            self._drain_wanted = False
            self._drained.set()
        return self._queue.popleft()

    async def deliveries(self) -> AsyncIterator[Delivery]:
        """Every delivery, in total order, until the node is closed (``failure`` if it failed)."""
        queue = self._queue
        while True:
            if queue and self._sm is None:
                # The common case under load, without a coroutine per delivery.
                if self._drain_wanted and len(queue) <= self._queue_max // 2:
                    self._drain_wanted = False
                    self._drained.set()
                yield queue.popleft()
                continue
            try:
                delivery = await self.deliver()
            except NodeFailedError:
                raise
            except NotRunningError:
                return
            yield delivery

    # ---------------------------------------------------------- membership

    def members(self) -> Membership:
        """The configuration in effect here: voters, learners, addresses (docs/design.md).

        ``lag`` (slots each learner is behind) is filled only while this node leads.
        """
        r = self._replica
        config = r.membership.config_for(r.log.decided_through + 1)
        lead = r.election.leading
        lag: dict[str, int] = {}
        if lead is not None:
            through = r.log.decided_through
            lag = {m: through - lead.acked.get(m, 0) for m in sorted(config.learners)}
        return Membership.of(config, lag)

    def on_membership(self, callback: Callable[[Membership], None]) -> None:
        """Call ``callback(members())`` whenever another configuration takes effect here.

        Called in the node's task (keep it short, never block): e.g. dial new
        members and drop removed ones.
        """
        self._membership_callbacks.append(callback)

    async def add_member(
        self, node_id: str, address: str, *, timeout: float | None = None
    ) -> Membership:
        """Add ``node_id`` (reachable at ``address``) as a learner; resolve once in effect here.

        Start the new node with ``join=True`` and the founding ``members``
        (and ``bootstrap=True`` on its first start): it catches up (snapshot
        and log) as a learner, and votes only once
        ``promote_member`` makes it a voter. Refused (``MembershipError``)
        while another change is in progress, for an id that is a member or
        was ever removed (a node whose disk was lost joins under a new id);
        ``NotLeaderError`` on a node that does not lead (ask its ``leader``).
        """
        return await self._change("add", node_id, address, timeout)

    async def promote_member(self, node_id: str, *, timeout: float | None = None) -> Membership:
        """Make the learner ``node_id`` a voter; refused while it lags more than
        ``LogConfig.learner_lag_max`` slots behind the leader (or never answered it)."""
        return await self._change("promote", node_id, "", timeout)

    async def remove_member(self, node_id: str, *, timeout: float | None = None) -> Membership:
        """Remove a voter or learner (this node too: a leader steps down once it takes effect).

        Refused for the last voter, an unknown id, or while another change is in progress.
        """
        return await self._change("remove", node_id, "", timeout)

    async def _change(
        self, op: str, node_id: str, address: str, timeout: float | None
    ) -> Membership:
        if not self._driver.running:
            raise self._driver.not_running()
        self._change_requests += 1
        request = self._change_requests
        fut: asyncio.Future[Membership] = asyncio.get_running_loop().create_future()
        self._change_waiters[request] = fut
        event = ProposeChange(op, node_id, request, address)
        self._driver.call(lambda: self._replica.step(event))
        try:
            return await within(asyncio.shield(fut), timeout, f"membership change {op} {node_id}")
        finally:
            if not fut.done():
                # Timed out or cancelled: the change may still take effect
                # (members() shows it); nobody waits for its outcome any more.
                self._change_waiters.pop(request, None)
                fut.cancel()

    def _on_changes(self, outcomes: tuple[ChangeOutcome, ...]) -> None:
        for c in outcomes:
            fut = self._change_waiters.pop(c.request, None)
            if fut is None or fut.done():
                continue
            if c.configuration is not None:
                fut.set_result(Membership.of(c.configuration))
            elif c.leader is not None or (c.error or "").endswith("at the leader"):
                fut.set_exception(NotLeaderError(c.error or "not the leader", c.leader))
            else:
                fut.set_exception(MembershipError(c.error or "refused"))

    def _note_membership(self) -> None:
        """Tell ``on_membership`` callbacks when another configuration took effect here."""
        r = self._replica
        config = r.membership.config_for(r.log.decided_through + 1)
        if config is self._config_in_effect:
            return
        first = self._config_in_effect is None
        self._config_in_effect = config
        if first:
            return
        log.info(
            "%s: membership from slot %d: voters %s, learners %s",
            self.address,
            config.effective_slot,
            ",".join(sorted(config.voters)),
            ",".join(sorted(config.learners)) or "-",
            extra={"event": "membership", "slot": config.effective_slot},
        )
        members = Membership.of(config)
        for callback in self._membership_callbacks:
            callback(members)

    @property
    def leader(self) -> str | None:
        """The leader this node knows of (itself included), or None during an election.

        ``status().leader`` without building a ``Status``: servers ask it per request.
        """
        return self._replica.leader

    def status(self) -> Status:
        return self._replica.status()

    # ------------------------------------------------------------ internals

    async def _room(self) -> None:
        # The application stopped consuming deliveries: stop applying (the
        # node then falls behind and catches up later) rather than buffer
        # without bound.
        while len(self._queue) >= self._queue_max:
            self._drained.clear()
            self._drain_wanted = True
            await self._drained.wait()

    def _persist(self, ready: Ready) -> None:
        # Runs in a worker thread, before the Ready's messages are sent.
        assert self._storage is not None
        if ready.snapshot is not None:
            started = time.perf_counter()
            self._storage.install_snapshot(ready.snapshot)
            self._snapshot_saved(ready, time.perf_counter() - started)
        if has_durable_part(ready):
            self._storage.save(ready)

    def _snapshot_saved(self, ready: Ready, save_s: float) -> None:
        """Count and log a snapshot storage just wrote (in the save's thread, or the loop)."""
        snapshot = ready.snapshot
        assert snapshot is not None
        stats = self.snapshots
        from_peer = ready.restore_at is not None
        encode_s = 0.0 if from_peer else self._encode_s
        stats.saved += 1
        stats.installed += from_peer
        stats.last_failed = False
        stats.last_slot = snapshot.slot
        stats.last_bytes = len(snapshot.data)
        stats.last_saved_at = self.wall_clock()
        stats.last_encode_s = encode_s
        stats.last_save_s = save_s
        stats.encode_s_total += encode_s
        stats.save_s_total += save_s
        known = self._known_leader
        log.info(
            "%s: %s at slot %d saved: %d bytes, encoded in %.1f ms, written in %.1f ms "
            "(leader %s at ballot %s)",
            self.address,
            "snapshot from a peer" if from_peer else "snapshot",
            snapshot.slot,
            len(snapshot.data),
            encode_s * 1000,
            save_s * 1000,
            known[0] if known is not None else "none",
            known[1] if known is not None else "-",
            extra={
                "event": "snapshot",
                "slot": snapshot.slot,
                "bytes": len(snapshot.data),
                "from_peer": from_peer,
                "encode_ms": round(encode_s * 1000, 3),
                "save_ms": round(save_s * 1000, 3),
                "ballot": str(known[1]) if known is not None else None,
            },
        )

    def _restore(self, data: bytes) -> None:
        if self._sm is None:
            log.error(
                "%s: got a snapshot but has no state_machine to restore it into; "
                "deliveries before it are skipped (use a state machine on every member)",
                self.address,
            )
            return
        self._sm.restore(data)

    def _note_leader(self) -> None:
        """Log a change of leader (or of its ballot) once this node knows the new one."""
        r = self._replica
        leader = r.leader
        if leader is None:
            # An election under way: the winner is logged once known. Said
            # once per loss, so an operator sees when a node stopped knowing
            # one (it answers key-value commands -TRYAGAIN meanwhile).
            lost = self._known_leader
            if lost is not None and not self._leader_lost:
                self._leader_lost = True
                log.warning(
                    "%s: lost the leader (was %s at ballot %s): an election is under way, "
                    "at applied slot %d",
                    self.address,
                    lost[0],
                    lost[1],
                    r.log.decided_through,
                    extra={
                        "event": "leader_lost",
                        "was_leader": lost[0],
                        "ballot": str(lost[1]),
                        "slot": r.log.decided_through,
                    },
                )
            return
        self._leader_lost = False
        now = (leader, r.leader_ballot)
        was = self._known_leader
        if now == was:
            return
        self._known_leader = now
        if was is not None:
            self.leader_changes += 1
        log.info(
            "%s: leader is %s at ballot %s (was %s at ballot %s; %d leader changes seen)",
            self.address,
            leader,
            now[1],
            was[0] if was is not None else "none",
            was[1] if was is not None else "-",
            self.leader_changes,
            extra={
                "event": "leader_change",
                "leader": leader,
                "ballot": str(now[1]),
                "was_leader": was[0] if was is not None else None,
                "slot": r.log.decided_through,
                "leader_changes": self.leader_changes,
            },
        )

    def _on_ready(self, ready: Ready) -> None:
        self._on_ready_applied(ready)
        if ready.reads or ready.reads_failed:
            # After the deliveries: the reads see the state through their index.
            self._reads_done(ready)

    def _on_ready_applied(self, ready: Ready) -> None:
        self._note_leader()
        self._note_membership()
        if ready.changes:
            self._on_changes(ready.changes)
        sm = self._sm
        deliveries = ready.deliveries
        waiters = self._waiters
        if ready.dropped:
            # Drops first: a proposal whose id another proposal took (``conflict``)
            # fails, and the delivery carrying that id below then finds no waiter.
            self._fail_dropped(ready)
        if ready.snapshot is not None and ready.restore_at is not None:
            self._on_ready_restoring(ready)
        elif sm is None:
            if deliveries:
                self._queue.extend([d.delivery for d in deliveries])
                self._readable.set()
                if waiters:
                    self._resolve_delivered(deliveries)
        else:
            self._apply(sm, deliveries)
        if (
            sm is not None
            and (
                self._entries_since >= self._snapshot_entries_max
                or self._bytes_since >= self._snapshot_bytes_max
            )
            and self._snapshotting is None
        ):
            self._entries_since = self._bytes_since = 0
            # Every delivery of this Ready is applied: the state matches the
            # log through the replica's decided slot.
            copy = getattr(sm, "snapshot_copy", None)
            started = time.perf_counter()
            if copy is None:
                data = sm.snapshot()
                self._encode_s = time.perf_counter() - started
                self._replica.step(Compact(data))
            else:
                # Copy now (cheap), encode in steps between the node's other
                # work: a large state no longer stalls the loop for as long as
                # an election timeout. One snapshot in flight at a time.
                step: Callable[[], bytes | None] = copy()
                self._replica.step(MarkSnapshotPoint())
                slot = self._replica.log.decided_through
                self._snapshotting = asyncio.ensure_future(
                    self._snapshot_in_steps(step, slot, started)
                )

    async def _snapshot_in_steps(
        self, step: Callable[[], bytes | None], slot: int, started: float
    ) -> None:
        # Threads would not help: a CPU-bound encoder thread holds the GIL
        # for whole switch intervals, and every loop iteration then waits
        # for it (measured: worse stalls than encoding at once).
        try:
            while (data := step()) is None:
                await asyncio.sleep(0)  # let everything ready run first
        except Exception:
            log.exception("%s: encoding the snapshot at slot %d failed", self.address, slot)
            self.snapshots.failed += 1
            self.snapshots.last_failed = True
            self._snapshotting = None
            return
        encode_s = time.perf_counter() - started

        def compact() -> None:
            # In the driver task (it owns the replica). A snapshot from a peer
            # may have overtaken this one meanwhile: then it is useless.
            self._snapshotting = None
            if slot > self._replica.log.compacted_through:
                self._encode_s = encode_s
                self._replica.step(Compact(data, slot=slot))

        try:
            self._driver.call(compact)
        except NotRunningError:
            self._snapshotting = None

    def _resolve_delivered(self, deliveries: Sequence[Delivered]) -> None:
        """Resolve this node's broadcasts among ``deliveries`` (no state machine)."""
        me = self.address
        pop = self._waiters.pop
        resolved = 0
        for d in deliveries:
            # Only this node's proposals have waiters: compare the origin
            # before looking the id up.
            if d.id.origin == me and (waiting := pop(d.id, None)) is not None:
                resolved += 1
                fut, want_result = waiting
                if not fut.done():
                    fut.set_result(None if want_result else d.delivery)
        if resolved:
            self._release_room(resolved)

    def _apply(self, sm: StateMachine, deliveries: Sequence[Delivered]) -> None:
        """Apply ``deliveries`` to ``sm``; resolve this node's broadcasts with the results."""
        apply = sm.apply
        size = 0
        if self._waiters:
            me = self.address
            pop = self._waiters.pop
            resolved = 0
            for d in deliveries:
                delivery = d.delivery
                result = apply(delivery)
                size += len(delivery.payload)
                if d.id.origin == me and (waiting := pop(d.id, None)) is not None:
                    resolved += 1
                    fut, want_result = waiting
                    if not fut.done():
                        fut.set_result(result if want_result else delivery)
            if resolved:
                self._release_room(resolved)
        else:
            for d in deliveries:
                apply(d.delivery)
                size += len(d.delivery.payload)
        self._entries_since += len(deliveries)
        self._bytes_since += size

    def _on_ready_restoring(self, ready: Ready) -> None:
        # The rare Ready that restores a snapshot from a peer at ``restore_at``
        # between its deliveries: apply them one by one around it.
        assert ready.snapshot is not None
        sm = self._sm
        for i, d in enumerate(ready.deliveries):
            if i == ready.restore_at:
                self._restore(ready.snapshot.data)
            if sm is None:
                self._queue.append(d.delivery)
                result = None
            else:
                result = sm.apply(d.delivery)
                self._entries_since += 1
                self._bytes_since += len(d.delivery.payload)
            self._resolve(d, result)
        if ready.restore_at == len(ready.deliveries):
            self._restore(ready.snapshot.data)
        if ready.deliveries and sm is None:
            self._readable.set()

    def _fail_dropped(self, ready: Ready) -> None:
        waiters = self._waiters
        for dropped in ready.dropped:
            waiting = waiters.pop(dropped.id, None)
            if waiting is None:
                continue
            self._release_room()
            fut, want_result = waiting
            if fut.done():
                continue
            self.proposals_failed += 1
            error: PaxosError
            if dropped.conflict:
                error = ProposalConflictError(dropped.reason)
            elif dropped.delivered and want_result:
                error = ResultUnknownError(f"applied, result not known here: {dropped.reason}")
            elif dropped.delivered:
                error = AlreadyDeliveredError(dropped.reason)
            else:
                error = PayloadTooLargeError(dropped.reason)
            fut.set_exception(error)

    def _resolve(self, d: Delivered, result: object) -> None:
        """Resolve this node's waiter of ``d`` (if any) with ``result`` or the delivery."""
        waiting = self._waiters.pop(d.id, None)
        if waiting is not None:
            self._release_room()
            fut, want_result = waiting
            if not fut.done():
                fut.set_result(result if want_result else d.delivery)
