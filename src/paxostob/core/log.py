"""The learner's log: decided slots, their delivery in total order, and the log's clock.

Theory of operation (multipaxos.py has the protocol; docs/design.md, 'The
log's clock'): whatever way a slot is learned decided (a quorum of
``Accepted``, a leader's commit watermark, a catch-up reply, a promise), it
lands here, and here alone it becomes deliveries:

- Delivery is gap-free and in slot order: ``decided_through`` is the end of
  the contiguous decided prefix, and every slot of it was delivered.
- Positions count delivered messages; a no-op, a clock stamp or a retried
  proposal (an id delivered before: ``Seen``) takes none, so every replica
  gives every message the same position.
- The log's clock ``clock_ms`` is the highest stamp of the prefix, so it is
  a function of the decided log alone; ``clock_estimate_ms`` is this
  replica's estimate of it now (what it stamps when it leads).
- A snapshot replaces the prefix through ``compacted_through``; its
  metadata (``SnapshotMeta``) carries what delivery needs of that prefix:
  the position, the dedup table and the clock.

Invariants (asserted where they could break): ``compacted_through <=
decided_through <= known_commit``; every slot held is above
``compacted_through``; ``decided_through + 1`` is never held once delivery
ran (it would have been delivered); ``clock_ms <= clock_estimate_ms``; the
clock, positions and the prefix never move backwards.
"""

from __future__ import annotations

from .events import Delivered, Dropped
from .membership import CHANGE_SEQ, ConfigHistory, Configuration
from .snapshot import SnapshotMeta, encode_meta
from .types import (
    CLOCK_ORIGIN,
    Batch,
    DecidedEntry,
    Proposal,
    ProposalId,
    Snapshot,
    batch_size_bytes,
    new_delivery,
    stamp_ms,
)

__all__ = ["CONFLICT", "COUNTER_MASK", "SEQ_BITS", "DecidedLog", "Seen"]

#: Sequence numbers are ``incarnation << SEQ_BITS | counter``: every life of
#: an origin has its own range, so a restarted node never reuses an id.
SEQ_BITS = 32
COUNTER_MASK = (1 << SEQ_BITS) - 1
CONFLICT = (
    "an earlier life of this node used this proposal id (its store was made again and drew "
    "an incarnation already used): restart the node to draw another"
)


class Seen:
    """Counters of one origin's life already delivered: a low mark plus sparse ones above.

    Kept per ``(origin, incarnation)``: lives need not be ordered (a node
    without storage picks a random incarnation), and within one life an
    origin retries until delivered, so ``above`` only holds what is in flight.
    """

    __slots__ = ("above", "low")

    def __init__(self) -> None:
        self.low = 0
        self.above: set[int] = set()

    def __contains__(self, counter: int) -> bool:
        return counter <= self.low or counter in self.above

    def add(self, counter: int) -> None:
        self.above.add(counter)
        while self.low + 1 in self.above:
            self.above.remove(self.low + 1)
            self.low += 1


class DecidedLog:
    """Decided slots and what was delivered from them (the module docstring has the rules)."""

    __slots__ = (
        "clock_estimate_ms",
        "clock_ms",
        "compacted_through",
        "decided_through",
        "delivered",
        "entries",
        "known_commit",
        "membership",
        "point",
        "seen",
        "snapshot",
        "wall_ms",
    )

    def __init__(self, founding: Configuration | None = None, delay: int | None = None) -> None:
        #: The configurations, as the decided prefix says (membership.py).
        self.membership = ConfigHistory(
            founding or Configuration(frozenset({"?"})), *(() if delay is None else (delay,))
        )
        #: Decided slots above ``compacted_through`` (delivered or waiting for a gap).
        self.entries: dict[int, Batch] = {}
        #: Every slot <= it is decided and delivered here.
        self.decided_through = 0
        #: The highest slot known decided somewhere (a leader's watermark, a promise).
        self.known_commit = 0
        #: Messages delivered so far (the position of the last delivery).
        self.delivered = 0
        #: Proposal ids delivered, per ``(origin, incarnation)``.
        self.seen: dict[tuple[str, int], Seen] = {}
        #: The log's clock through ``decided_through`` (Unix ms; 0: no stamp yet).
        self.clock_ms = 0
        #: This replica's estimate of the log's clock now: what it stamps as
        #: leader (0: unknown). ``wall_ms``: the runtime's last wall-clock reading.
        self.clock_estimate_ms = 0
        self.wall_ms: int | None = None
        #: The log holds only slots above it; ``snapshot`` covers the rest.
        self.compacted_through = 0
        self.snapshot: Snapshot | None = None
        #: (slot, meta) of the latest ``MarkSnapshotPoint`` not yet compacted.
        self.point: tuple[int, bytes] | None = None

    # ============================================================= delivery

    def deliver(
        self,
        me: str,
        deliveries: list[Delivered],
        pending: dict[ProposalId, Proposal],
        forwarded_at: dict[ProposalId, int],
        dropped: list[Dropped],
        queued: set[ProposalId],
    ) -> None:
        """Deliver the slots that now extend the decided prefix, in order.

        ``me``'s own proposals delivered leave ``pending`` (and
        ``forwarded_at``); ids delivered leave a leader's ``queued``.
        """
        # The hot loop of every replica: names bound locally, and a
        # ProposalId (whose hash is a Python call) hashed only where needed.
        log = self.entries
        slot = self.decided_through
        if slot + 1 not in log:
            return
        seen_by_life = self.seen
        append = deliveries.append
        # ``Delivered(pid, delivery)`` without the named tuple's constructor
        # (a Python function): the C one it calls.
        make = tuple.__new__
        delivered = self.delivered
        clock = self.clock_ms
        while slot + 1 in log:
            slot += 1
            for p in log[slot]:
                pid = p.id
                origin = pid.origin
                if origin == CLOCK_ORIGIN:
                    if pid.seq == CHANGE_SEQ:
                        self.membership.decided(slot, p.payload)
                        continue
                    # A clock stamp: it moves the log's clock, never backwards.
                    t = stamp_ms(p)
                    if t is not None and t > clock:
                        clock = t
                    continue
                seq = pid.seq
                life = (origin, seq >> SEQ_BITS)
                counter = seq & COUNTER_MASK
                seen = seen_by_life.get(life)
                if seen is None:
                    seen = seen_by_life[life] = Seen()
                elif counter <= seen.low or counter in seen.above:
                    continue  # a retried proposal, delivered before
                if counter == seen.low + 1 and not seen.above:
                    seen.low = counter  # in order: the common case
                else:
                    seen.add(counter)
                delivered += 1
                append(make(Delivered, (pid, new_delivery(delivered, origin, p.payload, clock))))
                if origin == me and (mine := pending.pop(pid, None)) is not None:
                    forwarded_at.pop(pid, None)
                    if mine.payload != p.payload:
                        # Another proposal under our id (an earlier life that
                        # drew this incarnation): ours is skipped everywhere
                        # as its retry. Fail it; never report that one as ours.
                        dropped.append(Dropped(pid, CONFLICT, conflict=True))
                if queued:
                    queued.discard(pid)
        self.decided_through = slot
        self.delivered = delivered
        self.clock_ms = clock
        if self.clock_estimate_ms < clock:
            self.clock_estimate_ms = clock
        if self.known_commit < slot:
            self.known_commit = slot
        assert self.compacted_through <= slot and self.clock_ms <= self.clock_estimate_ms

    def is_delivered(self, pid: ProposalId) -> bool:
        seq = pid.seq
        seen = self.seen.get((pid.origin, seq >> SEQ_BITS))
        if seen is None:
            return False
        counter = seq & COUNTER_MASK
        return counter <= seen.low or counter in seen.above

    def chunk(self, slot: int, entries_max: int, bytes_max: int) -> list[DecidedEntry]:
        """Decided slots from ``slot`` on, contiguous, bounded by count and (roughly) bytes."""
        entries: list[DecidedEntry] = []
        size = 0
        slot = max(slot, self.compacted_through + 1)  # below: only the snapshot has them
        while slot <= self.decided_through and len(entries) < entries_max:
            value = self.entries[slot]
            size += batch_size_bytes(value) + 16
            if entries and size > bytes_max:
                break
            entries.append(DecidedEntry(slot, value))
            slot += 1
        return entries

    # ================================================================ clock

    def tick_clock(self, wall_ms: int, elapsed_ms: int, *, step_ms: int, leading: bool) -> None:
        """One tick of the clock estimate (multipaxos.py's docstring has the rule)."""
        self.wall_ms = wall_ms
        est = self.clock_estimate_ms
        if est == 0:
            if self.may_start_clock(leading=leading):
                est = wall_ms
        else:
            ran = est + min(max(elapsed_ms, 0), step_ms)
            if leading:
                ran = max(ran, min(wall_ms, est + step_ms))
            est = ran
        self.clock_estimate_ms = max(est, self.clock_ms)

    def may_start_clock(self, *, leading: bool) -> bool:
        """Whether a leader may start the log's clock at its own wall clock.

        Only when it knows no stamp *and* has every slot a quorum reported
        decided: then the decided log has no stamp (a chosen stamped value
        is reported by every promise quorum). A leader still catching up
        (say, a new member of a compacted group) proposes unstamped batches,
        which move no clock, until it learned the log's clock.
        """
        return leading and self.decided_through >= self.known_commit

    # ============================================================ snapshots

    def meta(self) -> bytes:
        """What a snapshot at ``decided_through`` must carry of the log."""
        seen = {life: (s.low, frozenset(s.above)) for life, s in self.seen.items()}
        through = self.decided_through
        configs = self.membership.for_snapshot(through)
        return encode_meta(SnapshotMeta(through, self.delivered, seen, self.clock_ms, configs))

    def compact(self, data: bytes, slot: int | None) -> Snapshot | None:
        """The snapshot ``Compact(data, slot)`` asks for (events.py), or None if it adds nothing.

        The caller drops the log through its slot (``drop_through``).
        """
        if slot is None:
            slot = self.decided_through
            if self.snapshot is not None and slot <= self.snapshot.slot:
                return None
            meta = self.meta()
        else:
            if slot > self.decided_through:
                raise ValueError(f"slot {slot} is not decided here ({self.decided_through})")
            if slot <= self.compacted_through:
                raise ValueError(
                    f"slot {slot} is at or below the snapshot ({self.compacted_through})"
                )
            point = self.point
            if point is not None and point[0] == slot:
                meta = point[1]
            elif slot == self.decided_through:
                meta = self.meta()
            else:
                raise ValueError(f"no snapshot point was marked at slot {slot}")
        self.point = None
        return Snapshot(slot, meta, data)

    def drop_through(self, snap: Snapshot) -> None:
        """``snap`` replaces every slot through its own."""
        slot = snap.slot
        self.snapshot = snap
        self.compacted_through = slot
        for s in [s for s in self.entries if s <= slot]:
            del self.entries[s]

    def adopt(self, snap: Snapshot, meta: SnapshotMeta) -> None:
        """Jump to ``snap``: everything through its slot is decided and delivered."""
        assert meta.slot == snap.slot and meta.delivered >= 0
        self.drop_through(snap)
        self.decided_through = snap.slot
        self.known_commit = max(self.known_commit, snap.slot)
        self.delivered = meta.delivered
        self.clock_ms = max(self.clock_ms, meta.clock_ms)
        self.clock_estimate_ms = max(self.clock_estimate_ms, self.clock_ms)
        self.membership.restore(meta.configs)
        self.seen = {}
        for life, (low, above) in meta.seen.items():
            seen = self.seen[life] = Seen()
            seen.low, seen.above = low, set(above)

    def check(self) -> None:
        """Assert the invariants of the module docstring (cheap ones only: no scan of the log)."""
        assert self.compacted_through <= self.decided_through <= self.known_commit, (
            self.compacted_through,
            self.decided_through,
            self.known_commit,
        )
        assert self.decided_through + 1 not in self.entries, "a deliverable slot was not delivered"
        assert self.clock_ms <= self.clock_estimate_ms, (self.clock_ms, self.clock_estimate_ms)
