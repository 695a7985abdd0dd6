"""Catch-up: fetching decided slots a replica missed, and snapshot transfer.

Theory of operation (multipaxos.py, 'Learning'): a replica that knows a slot
is decided (a leader's watermark, a promise) but lacks the prefix up to it
asks one peer (its leader, else a random one) for the slots from its first
missing one (``CatchUp``); the peer answers with a bounded chunk
(``Decided``: at most ``catchup_entries_max`` slots and about
``catchup_bytes_max`` bytes), and the asker asks for the next chunk at once.
Slots a peer has compacted travel as its snapshot instead, in chunks of at
most ``snapshot_chunk_bytes_max``. A transfer is paced: the chunks of all
transfers together take at most ``snapshot_send_bytes_per_tick_max`` bytes
per tick (at least one chunk per tick, however big), the first ones at once
and the rest on later ticks (``tick``), so the runtime never has to encode
and write a whole snapshot in one pass of its event loop (a leader that did
stalled for half a second on a 39 MB snapshot, delaying its heartbeats). A
``CatchUp`` from a peer whose transfer is under way changes nothing (the
transfer goes on, with the snapshot it started with); once its last chunk is
sent, the snapshot is not sent to that peer again sooner than
``snapshot_resend_ticks`` later (the asker is still assembling it, and
catch-up retries come every few ticks), and after that a ``CatchUp`` below
our snapshot starts a new transfer, which resends any chunk that was lost.

A leader whose catch-up makes no progress ``CATCHUP_TRIES_BEFORE_PHASE1``
times runs phase 1 again (``ask`` says so): nobody alive answers for the
slots it misses (the promiser that knew them decided may have crashed); a
new ballot makes a quorum of live acceptors report what they accepted above
their prefix, and P2c re-proposes it.

Snapshots being assembled are kept by (slot, meta, size), each with its own
chunks, so chunks of two snapshots never mix; at most
``INCOMING_SNAPSHOTS_MAX`` at once, so a transfer that lost a chunk cannot
starve a newer or older complete one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Literal

from ..errors import DecodeError
from .log import DecidedLog
from .messages import CatchUp, Decided, Message, SnapshotChunk
from .snapshot import SnapshotMeta, decode_meta
from .types import DecidedEntry, Snapshot

__all__ = ["CATCHUP_TRIES_BEFORE_PHASE1", "INCOMING_SNAPSHOTS_MAX", "Catchup"]

#: Snapshot transfers assembled at once (from different peers or points).
INCOMING_SNAPSHOTS_MAX = 3
#: A leader whose catch-up makes no progress this many times runs phase 1 again.
CATCHUP_TRIES_BEFORE_PHASE1 = 8


class Catchup:
    """Both sides of catch-up and snapshot transfer (the module docstring has the rules)."""

    __slots__ = (
        "_budget",
        "_budget_tick",
        "_bytes_max",
        "_chunk_bytes_max",
        "_entries_max",
        "_from",
        "_incoming",
        "_instance",
        "_log",
        "_me",
        "_resend_ticks",
        "_retry_ticks",
        "_rng",
        "_send",
        "_send_bytes_per_tick_max",
        "_sent",
        "_transfers",
        "_tries",
        "due",
    )

    def __init__(
        self,
        *,
        me: str,
        instance: str,
        rng: random.Random,
        log: DecidedLog,
        send: Callable[[str, Message], None],
        retry_ticks: int,
        entries_max: int,
        bytes_max: int,
        chunk_bytes_max: int,
        resend_ticks: int,
        send_bytes_per_tick_max: int,
    ) -> None:
        self._me = me
        self._instance = instance
        self._rng = rng
        self._log = log
        self._send = send
        self._retry_ticks = retry_ticks
        self._entries_max = entries_max
        self._bytes_max = bytes_max
        self._chunk_bytes_max = chunk_bytes_max
        self._resend_ticks = resend_ticks
        self._send_bytes_per_tick_max = send_bytes_per_tick_max
        #: Ask again no sooner than this tick.
        self.due = 0
        # The prefix we last asked beyond, and how often without progress.
        self._from = 0
        self._tries = 0
        self._incoming: dict[tuple[int, bytes, int], dict[int, bytes]] = {}
        #: The tick the last chunk of a transfer to each peer was sent.
        self._sent: dict[str, int] = {}
        #: Transfers under way, oldest first: peer -> (snapshot, next offset).
        self._transfers: dict[str, tuple[Snapshot, int]] = {}
        # Bytes of chunks still allowed in tick ``_budget_tick``.
        self._budget_tick = -1
        self._budget = 0

    # ============================================================ the asker

    def ask(self, now: int, leader: str | None, *, leading: bool) -> bool:
        """Ask for the slots after our prefix; False if a leader should run phase 1 instead."""
        log = self._log
        self.due = now + self._retry_ticks
        if log.decided_through > self._from:
            self._from, self._tries = log.decided_through, 0
        self._tries += 1
        if leading and self._tries > CATCHUP_TRIES_BEFORE_PHASE1:
            self._tries = 0
            return False
        target = leader if leader not in (None, self._me) else None
        if target is None:
            # Any member of a configuration governing the slots we miss or
            # later (learners too): a member removed from the slot we miss on
            # may be the one that still has it.
            configs = log.membership.governing_from(log.decided_through + 1)
            peers = sorted(frozenset().union(*(c.members for c in configs)) - {self._me})
            if peers:
                target = self._rng.choice(peers)
        if target is not None:
            self._send(target, CatchUp(self._instance, self._me, log.decided_through + 1))
        return True

    def assemble(
        self, m: SnapshotChunk
    ) -> tuple[Snapshot, SnapshotMeta] | Literal["partial", "ignored"]:
        """Add a chunk; the snapshot once complete, else whether more is awaited or it is junk."""
        if m.slot <= self._log.decided_through or m.offset < 0 or m.offset + len(m.chunk) > m.size:
            return "ignored"
        incoming = self._incoming
        key = (m.slot, m.meta, m.size)
        chunks = incoming.get(key)
        if chunks is None:
            if len(incoming) >= INCOMING_SNAPSHOTS_MAX:
                del incoming[next(iter(incoming))]  # the oldest transfer
            chunks = incoming[key] = {}
        chunks[m.offset] = m.chunk
        if sum(len(c) for c in chunks.values()) < m.size:
            return "partial"
        data = b"".join(chunks[o] for o in sorted(chunks))
        del incoming[key]
        if len(data) != m.size:
            return "ignored"  # overlapping chunks from a confused sender
        try:
            meta = decode_meta(m.meta)
        except DecodeError:
            return "ignored"
        if meta.slot != m.slot:
            return "ignored"
        for stale in [k for k in incoming if k[0] <= m.slot]:
            del incoming[stale]
        return Snapshot(m.slot, m.meta, data), meta

    # ========================================================= the answerer

    def chunk(self, slot: int) -> list[DecidedEntry]:
        """Decided slots from ``slot`` on, contiguous, bounded by the catch-up limits."""
        return self._log.chunk(slot, self._entries_max, self._bytes_max)

    def serve(self, m: CatchUp, now: int) -> None:
        """Answer a ``CatchUp``: our snapshot if it asks below it, then decided slots."""
        if m.slot <= self._log.compacted_through:
            self._send_snapshot(m.sender, now)
        entries = self.chunk(m.slot)
        if entries:
            self._send(m.sender, Decided(self._instance, self._me, tuple(entries)))

    def tick(self, now: int) -> None:
        """Send the next chunks of the transfers under way, within this tick's budget."""
        if self._transfers:
            self._pump(now)

    def _send_snapshot(self, dst: str, now: int) -> None:
        snap = self._log.snapshot
        if snap is None or dst in self._transfers:
            return  # none to send, or a transfer to it is under way
        last = self._sent.get(dst)
        if last is not None and now - last < self._resend_ticks:
            return  # it is still assembling the transfer that ended at ``last``
        self._transfers[dst] = (snap, 0)
        self._pump(now)

    def _pump(self, now: int) -> None:
        """Chunks of the oldest transfers first, until this tick's bytes are spent.

        At least one chunk per tick, so a chunk above the budget still travels.
        """
        if now != self._budget_tick:
            self._budget_tick, self._budget = now, self._send_bytes_per_tick_max
        step = self._chunk_bytes_max
        transfers = self._transfers
        for dst in list(transfers):
            snap, offset = transfers[dst]
            size = len(snap.data)
            # An empty snapshot still travels, as one empty chunk.
            while offset < max(size, 1):
                length = min(step, size - offset)
                first = self._budget == self._send_bytes_per_tick_max
                if length > self._budget and not first:
                    transfers[dst] = (snap, offset)
                    return
                self._budget -= length
                chunk = snap.data[offset : offset + length]
                msg = SnapshotChunk(
                    self._instance, self._me, snap.slot, snap.meta, size, offset, chunk
                )
                self._send(dst, msg)
                offset += step
            del transfers[dst]
            self._sent[dst] = now
