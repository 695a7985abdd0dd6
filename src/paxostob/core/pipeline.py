"""The Ready pipeline: the order in which a replica's effects reach the network and the disk.

Theory of operation (events.py has the ``Ready`` contract, multipaxos.py why
each early message type is safe): a runtime takes one ``Ready`` at a time
from its replica and hands it here; the pipeline says what may happen when.
It does no IO itself (sans-IO): the asyncio driver, the simulator and the
scenario tests drive this same object, so the order they test is the order
that ships.

Rules, for Readys taken in order R1, R2, ...:

1. A Ready's ``early`` messages leave as soon as it is taken.
2. Its durable part (promise, accepted and decided entries, a snapshot) is
   written after every earlier Ready's. Readys that queue up while a save is
   in flight are written together by the next save (``coalesce``: one
   transaction, one fsync: group commit), never past a snapshot: a Ready
   that carries one starts a new group, since a coalesced save may only
   install a snapshot first.
3. Its late ``messages`` leave, and ``Persisted(seq)`` is stepped (the core
   then counts its own votes of it), only once its save and every earlier
   one returned: a promise or an acceptance that anyone counts on is on
   disk first. A Ready with nothing to write and nothing queued before it
   completes at once; without storage (``durable=False``) every Ready does.
4. At most ``queue_max`` Readys wait for the disk: beyond that ``can_take``
   is False (back-pressure). The runtime still steps events; their effects
   gather in the core and leave in one Ready later.

Use, per Ready: ``take()``; send its ``early`` messages; if
``completes_at_once(ready)``, send its late ``messages`` too; apply its
deliveries; ``handled(ready)``. Then ``poll()`` until it returns None: a
``Complete`` names Readys whose late messages may now leave (``Persisted``
is already stepped); a ``Save`` is a group to write, in flight until the
runtime calls ``saved()`` (at once, or when its thread returns).

Invariants: ``Persisted`` is stepped with non-decreasing seqs, each after
every save before it returned; at most one save is in flight; a Ready is in
``queued`` from ``handled`` until its group completes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

from .events import Event, Persisted, Ready, coalesce

__all__ = ["Complete", "Pipeline", "ReplicaLike", "Save", "writes"]

#: Readys that may wait for the disk before the runtime stops taking more.
QUEUE_MAX_DEFAULT = 256


class ReplicaLike(Protocol):
    """What the pipeline drives: a sans-IO core (``MultiPaxosReplica``, ``SynodReplica``)."""

    def step(self, event: Event) -> None: ...
    def has_ready(self) -> bool: ...
    def ready(self) -> Ready: ...
    def advance(self, ready: Ready) -> None: ...


def writes(ready: Ready) -> bool:
    """Whether ``ready`` has anything for the disk: a promise, entries, or a snapshot."""
    return (
        ready.promised is not None
        or bool(ready.accepted)
        or bool(ready.decided)
        or ready.snapshot is not None
    )


@dataclass(frozen=True, slots=True)
class Complete:
    """These Readys (and every one before them) are durable: their late messages may leave."""

    readies: tuple[Ready, ...]


@dataclass(frozen=True, slots=True)
class Save:
    """Write ``ready`` (``count`` Readys coalesced); call ``Pipeline.saved`` once it is durable.

    ``early``: some of them sent early messages, which a runtime may overlap
    the write with (a thread); without any, nothing waits on anything else.
    """

    ready: Ready
    count: int
    early: bool


class Pipeline:
    """Orders one replica's Readys; see the module docstring for the rules."""

    def __init__(
        self, replica: ReplicaLike, *, durable: bool, queue_max: int = QUEUE_MAX_DEFAULT
    ) -> None:
        if queue_max < 1:
            raise ValueError("queue_max must be >= 1")
        self.replica = replica
        self.durable = durable
        self.queue_max = queue_max
        #: Readys handled and not yet complete, oldest first; the first
        #: ``_in_flight`` of them are in the save in flight.
        self.queued: deque[Ready] = deque()
        self._in_flight = 0
        self._done = 0  # the head of ``queued`` saved, not yet handed out as Complete
        #: Saves written, and the Readys they covered (group commit: saves <= readies).
        self.saves = 0
        self.saved_readies = 0

    # ------------------------------------------------------------ taking Readys

    def can_take(self) -> bool:
        """A Ready is waiting and there is room for it."""
        return self.replica.has_ready() and len(self.queued) < self.queue_max

    def take(self) -> Ready:
        """The replica's next Ready (call ``handled`` with it once applied)."""
        assert len(self.queued) < self.queue_max, "take() beyond the queue bound"
        return self.replica.ready()

    def completes_at_once(self, ready: Ready) -> bool:
        """Nothing to wait for: no storage, or nothing to write and nothing queued before it."""
        return not self.durable or (not self.queued and not writes(ready))

    def handled(self, ready: Ready) -> None:
        """``ready``'s early messages left and its deliveries were applied: advance the replica.

        A Ready that ``completes_at_once`` is durable now (its late messages
        were sent with it); any other waits in the queue for its save.
        """
        at_once = self.completes_at_once(ready)
        self.replica.advance(ready)
        if at_once:
            if ready.seq:
                self.replica.step(Persisted(ready.seq))
        else:
            self.queued.append(ready)

    # ------------------------------------------------------------ saving

    def poll(self) -> Complete | Save | None:
        """What the runtime does next: send what completed, write a group, or nothing yet."""
        queue = self.queued
        if self._done:
            saved = tuple(queue.popleft() for _ in range(self._done))
            self._done = 0
            return self._complete(saved)
        if self._in_flight or not queue:
            return None
        count = 1
        while count < len(queue) and queue[count].snapshot is None:
            count += 1
        group = [queue[i] for i in range(count)]
        merged = coalesce(group)
        if not writes(merged):
            # Nothing to write, and everything before it is durable.
            for _ in range(count):
                queue.popleft()
            return self._complete(tuple(group))
        self._in_flight = count
        return Save(merged, count, any(r.early for r in group))

    def saved(self) -> None:
        """The save in flight is durable; the next ``poll`` hands out its Readys."""
        assert self._in_flight, "saved() with no save in flight"
        self.saves += 1
        self.saved_readies += self._in_flight
        self._done, self._in_flight = self._in_flight, 0

    def _complete(self, group: tuple[Ready, ...]) -> Complete:
        seq = group[-1].seq
        if seq:
            self.replica.step(Persisted(seq))
        return Complete(group)

    # ------------------------------------------------------------ stopping

    def unsaved(self) -> list[Ready]:
        """The groups still to write (coalesced, in order), the one in flight excluded.

        For a runtime that stops: it writes them and sends nothing, as if
        the node stopped right after the saves (the core relies on no late
        message having left).
        """
        rest = list(self.queued)[self._in_flight + self._done :]
        groups: list[Ready] = []
        start = 0
        for i in range(1, len(rest) + 1):
            if i == len(rest) or rest[i].snapshot is not None:
                groups.append(coalesce(rest[start:i]))
                start = i
        return [g for g in groups if writes(g)]

    def clear(self) -> None:
        """Forget everything queued: the store failed (it closed itself), nothing more is saved."""
        self.queued.clear()
        self._in_flight = self._done = 0
