"""A hand-driven network of Multi-Paxos replicas for scripted scenario tests.

No asyncio and no clock: a scenario steps replicas itself (``Tick``,
``Receive``, ``Campaign``, ``propose``) and decides which message goes where.
Two styles mix freely:

- *by hand*: ``out(node)`` drains a replica's ``Ready`` batches and returns
  the messages it sent (nothing is delivered); ``deliver(envelopes)`` hands
  chosen messages to their destinations, whatever the partitions say;
- *by the network*: ``settle()`` and ``run(ticks)`` drain every replica and
  deliver everything in flight (optionally shuffled, with loss), dropping
  messages to or from ``isolated`` nodes; ``paused`` nodes get no ticks (a
  frozen process: its clock stands still, so it neither campaigns nor steps
  down on its own).

Readys go through ``core.pipeline.Pipeline`` (without storage), the object
the runtime and the simulator drive. Every drained ``Ready`` is checked
against the delivery contract (events.py): positions consecutive from 1,
each ``ProposalId`` at most once. Every sent message is kept in ``trace``
so a test can show the exchange it checks (``show`` prints one message per
line).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence

from paxostob.check.describe import describe
from paxostob.core.events import ChangeOutcome, Receive, Tick
from paxostob.core.messages import (
    Envelope,
)
from paxostob.core.multipaxos import LogConfig, MultiPaxosReplica, Role
from paxostob.core.pipeline import Pipeline
from paxostob.core.types import Batch, ProposalId

__all__ = ["Net", "Row", "payloads", "show"]

#: One delivery as a test reads it: (position, sender, payload).
Row = tuple[int, str, bytes]


def payloads(batch: Batch) -> list[str]:
    return [p.payload.decode() for p in batch]


#: One message as a short line, e.g. ``a->b Accept 1.a #2 ['x'] commit=1``: the
#: model checker's description, so scenario files and its traces read alike.
show = describe


class Net:
    """Replicas named by the letters of ``members``; see the module docstring."""

    def __init__(
        self,
        members: str | Sequence[str] = "abc",
        *,
        config: LogConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.members = tuple(members)
        self.r = {
            m: MultiPaxosReplica(m, self.members, random.Random(f"{seed}/{m}"), config=config)
            for m in self.members
        }
        self.rng = random.Random(seed)
        #: Messages to or from these nodes are lost (by the network only).
        self.isolated: set[str] = set()
        #: These nodes get no ticks from ``run``.
        self.paused: set[str] = set()
        #: Probability that ``settle`` loses a message.
        self.loss = 0.0
        #: ``settle`` delivers in a random order instead of FIFO.
        self.shuffle = False
        self.in_flight: list[Envelope] = []
        self.trace: list[Envelope] = []
        self._rows: dict[str, list[Row]] = {m: [] for m in self.members}
        self._ids: dict[str, set[ProposalId]] = {m: set() for m in self.members}
        #: ``ReadIndex`` requests served: (node, request id, position applied then).
        self.served: list[tuple[str, int, int]] = []
        #: ``ReadIndex`` requests the replica gave up on: (node, request id).
        self.read_failed: list[tuple[str, int]] = []
        #: The membership change outcomes each replica reported, in order.
        self.changes: dict[str, list[ChangeOutcome]] = {m: [] for m in self.members}

    def join(self, node: str, seed: int = 0) -> MultiPaxosReplica:
        """Start ``node`` outside the founding members: it learns the log until it is added."""
        founding = next(iter(self.r.values())).log.membership.configs[0].voters
        config = next(iter(self.r.values())).config
        self.r[node] = r = MultiPaxosReplica(
            node, sorted(founding), random.Random(f"{seed}/{node}"), config=config, join=True
        )
        self.members = (*self.members, node)
        self._rows[node], self._ids[node], self.changes[node] = [], set(), []
        return r

    # ------------------------------------------------------------ by hand

    def out(self, node: str) -> list[Envelope]:
        """Drain ``node``'s Readys; return what it sent (nothing is delivered)."""
        pipeline = Pipeline(self.r[node], durable=False)
        sent: list[Envelope] = []
        while pipeline.can_take():
            rd = pipeline.take()
            # The runtime's pipeline without storage: every message leaves,
            # and the Ready is durable (``Persisted``) once handled.
            assert pipeline.completes_at_once(rd)
            sent.extend(rd.early)
            sent.extend(rd.messages)
            self.changes[node].extend(rd.changes)
            for d in rd.deliveries:
                rows = self._rows[node]
                # The TOB contract: gap-free positions, each proposal once.
                assert d.delivery.slot == len(rows) + 1, (node, d, rows)
                assert d.id not in self._ids[node], (node, "delivered twice", d)
                assert d.delivery.sender == d.id.origin, (node, d)
                self._ids[node].add(d.id)
                rows.append((d.delivery.slot, d.delivery.sender, d.delivery.payload))
            # Reads run after the Ready's deliveries: they see this many.
            self.served += [(node, rid, len(self._rows[node])) for rid in rd.reads]
            self.read_failed += [(node, rid) for rid in rd.reads_failed]
            pipeline.handled(rd)
        self.trace.extend(sent)
        return sent

    def deliver(self, envelopes: Iterable[Envelope]) -> None:
        for env in envelopes:
            r = self.r.get(env.dst)
            if r is not None:  # else: a member added but never started
                r.step(Receive(env))

    def rows(self, node: str) -> list[Row]:
        """What ``node`` delivered in the Readys drained so far: (position, sender, payload)."""
        return list(self._rows[node])

    def restart_empty(self, node: str, seed: int = 0) -> MultiPaxosReplica:
        """Replace ``node`` by a new replica with no state (a restart on a lost disk)."""
        old = self.r[node]
        self.r[node] = MultiPaxosReplica(
            node, self.members, random.Random(f"{seed}/{node}/new"), config=old.config
        )
        self._rows[node] = []
        self._ids[node] = set()
        return self.r[node]

    def leaders(self) -> list[str]:
        return [m for m, r in self.r.items() if r.role is Role.LEADER]

    # ------------------------------------------------------- by the network

    def lost(self, env: Envelope) -> bool:
        return env.dst in self.isolated or env.message.sender in self.isolated

    def post(self, envelopes: Iterable[Envelope]) -> None:
        self.in_flight.extend(e for e in envelopes if not self.lost(e))

    def settle(self, rounds_max: int = 10_000) -> None:
        """Drain every replica and deliver until nothing is in flight."""
        for _ in range(rounds_max):
            for m in self.members:
                self.post(self.out(m))
            if not self.in_flight:
                return
            batch, self.in_flight = self.in_flight, []
            if self.shuffle:
                self.rng.shuffle(batch)
            self.deliver(e for e in batch if not self.lost(e) and self.rng.random() >= self.loss)
        raise AssertionError(f"the network did not quiesce in {rounds_max} rounds")

    def tick(self, nodes: Iterable[str] | None = None) -> None:
        for m in self.members if nodes is None else nodes:
            if m not in self.paused:
                self.r[m].step(Tick())

    def run(self, ticks: int, until: Callable[[], bool] | None = None) -> int:
        """Settle, tick, settle, ``ticks`` times or until ``until()``; the ticks used."""
        self.settle()
        for n in range(1, ticks + 1):
            self.tick()
            self.settle()
            if until is not None and until():
                return n
        if until is not None:
            raise AssertionError(f"not reached in {ticks} ticks")
        return ticks
