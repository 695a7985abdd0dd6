"""``PAXOS.*`` commands: the node's total-order broadcast itself, over RESP.

- ``PAXOS.BROADCAST payload`` -> ``[position, sender]`` once the message is
  delivered on this node (any node accepts it; followers forward);
- ``PAXOS.READ start count`` -> up to ``count`` ``[position, sender, payload]``
  of raw broadcasts at positions >= ``start`` still kept by this node
  (``apps.broadcast_log``);
- ``PAXOS.WAIT position timeout_ms`` -> the applied position, once this node
  applied ``position`` (``-TRYAGAIN`` after the timeout);
- ``PAXOS.STATUS`` -> this node's role, leader, ballot and positions;
- ``PAXOS.SNAPSHOT`` -> ``[position, clock_ms, state]``: the whole state of
  the node's applications (key-value store and broadcast log) at log
  position ``position``, taken after a read barrier, so it holds every write
  acknowledged (on any node) before the command arrived. ``paxostob
  snapshot save`` writes it to a file; ``paxostob snapshot restore`` makes a
  new cluster from it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING

from ..apps.broadcast_log import TAG_BROADCAST
from ..errors import NotRunningError, PaxosError, QuorumTimeoutError
from ..kv.replies import Reply as KvReply
from .family import Family, Handler, as_error, wrong_arity
from .protocol import Error, Reply
from .server import Connection

if TYPE_CHECKING:
    from .commands import NodeCommands

__all__ = ["PaxosCommands"]


class PaxosCommands(Family):
    """The ``PAXOS.*`` commands (see the module docstring)."""

    def __init__(self, node: NodeCommands) -> None:
        super().__init__(node)
        self._changed = asyncio.Event()
        node.log.on_change = self._changed.set

    def table(self) -> dict[bytes, Handler]:
        return {
            b"PAXOS.BROADCAST": self._broadcast,
            b"PAXOS.READ": self._read,
            b"PAXOS.STATUS": self._status,
            b"PAXOS.WAIT": self._wait,
            b"PAXOS.SNAPSHOT": self._snapshot,
        }

    async def _broadcast_payload(self, payload: bytes, started: float) -> Reply:
        reply = await self._broadcast_reply(payload)
        self.node.stats.record(b"paxos.broadcast", perf_counter() - started, type(reply) is Error)
        return reply

    async def _broadcast_reply(self, payload: bytes) -> Reply:
        try:
            d = await self.node.tob.broadcast(payload, timeout=self.node.broadcast_timeout_s)
        except QuorumTimeoutError as e:
            return Error(f"TRYAGAIN {e}")
        except NotRunningError:
            return Error("TRYAGAIN the node is shutting down")
        except PaxosError as e:
            return Error(f"ERR {e}")
        return [d.slot, d.sender.encode()]

    def _broadcast(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        if len(args) != 2:
            return wrong_arity(args[0])
        return self._broadcast_payload(TAG_BROADCAST + args[1], perf_counter())

    def _read(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) != 3:
            return wrong_arity(args[0])
        try:
            start, count = int(args[1]), int(args[2])
        except ValueError:
            return Error("ERR value is not an integer or out of range")
        if count < 0 or count > 100_000:
            return Error("ERR count must be 0..100000")
        return [[d.slot, d.sender.encode(), d.payload] for d in self.node.log.read(start, count)]

    def _wait(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        if len(args) != 3:
            return wrong_arity(args[0])
        try:
            position, timeout_ms = int(args[1]), int(args[2])
        except ValueError:
            return Error("ERR value is not an integer or out of range")
        if not 0 <= timeout_ms <= 600_000:
            return Error("ERR timeout_ms must be 0..600000")
        if self.node.log.applied >= position:
            return self.node.log.applied
        return self._wait_for(position, timeout_ms / 1000, perf_counter())

    async def _wait_for(self, position: int, timeout_s: float, started: float) -> Reply:
        async def until() -> None:
            while self.node.log.applied < position:
                self._changed.clear()
                await self._changed.wait()

        reply: Reply
        try:
            await asyncio.wait_for(until(), timeout_s)
        except TimeoutError:
            applied = self.node.log.applied
            reply = Error(f"TRYAGAIN position {position} not applied yet (at {applied})")
        else:
            reply = self.node.log.applied
        self.node.stats.record(b"paxos.wait", perf_counter() - started, type(reply) is Error)
        return reply

    def _snapshot(self, conn: Connection, args: list[bytes]) -> Reply | Awaitable[Reply]:
        if len(args) != 1:
            return wrong_arity(args[0])
        sm = self.node.tob.state_machine
        if self.node.kv is None or sm is None:
            return Error("ERR PAXOS.SNAPSHOT needs the node's key-value store")
        busy = self.node.no_leader()
        if busy is not None:
            return busy
        out: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def barrier_done(result: list[KvReply] | BaseException) -> None:
            if out.done():
                return
            if isinstance(result, BaseException):
                out.set_result(as_error(result))
                return
            # The barrier was applied here: the state now holds every write
            # acknowledged before the command arrived. Copy it at this one
            # point, with its position and clock (no await in between).
            position, clock_ms = self.node.log.applied, self.node.log.clock_ms
            copy = getattr(sm, "snapshot_copy", None)
            step: Callable[[], bytes | None] = (
                copy() if copy is not None else functools.partial(bytes, sm.snapshot())
            )
            task = asyncio.ensure_future(self._encode(step, position, clock_ms))
            task.add_done_callback(encoded)

        def encoded(task: asyncio.Future[Reply]) -> None:
            if out.done():
                return
            error = None if task.cancelled() else task.exception()
            if task.cancelled() or error is not None:
                out.set_result(as_error(error or asyncio.CancelledError()))
            else:
                out.set_result(task.result())

        # A point read of no key: an empty entry ordered after the command
        # arrived (the key-value store's read barrier), nothing written to the log.
        self.node.kv_submit(conn, [[b"EXISTS", b""]], barrier_done)
        return out

    async def _encode(self, step: Callable[[], bytes | None], position: int, clock: int) -> Reply:
        # Encoded a step at a time between the node's other work, as the node's
        # own snapshots are: a large state must not stall the loop (and the
        # leader's heartbeats) for the whole encoding.
        while (data := step()) is None:
            await asyncio.sleep(0)
        return [position, clock, data]

    def _status(self, conn: Connection, args: list[bytes]) -> Reply:
        st = self.node.tob.status()
        return {
            b"node_id": self.node.node_id.encode(),
            b"role": st.role.value.encode(),
            b"leader_id": (st.leader or "").encode(),
            b"ballot": str(st.ballot).encode(),
            b"chosen_slot": st.known_commit,
            b"applied_slot": st.decided_through,
            b"delivered": st.delivered,
            b"applied": self.node.log.applied,
        }
