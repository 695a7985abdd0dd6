"""The properties checked in every reached state, and the bounded liveness check.

Safety, in every state, on the world's history (``sim.checkers``, the very
functions that judge every simulator run):

- agreement (no slot decided with two values, across replicas and lives),
- chosen values (one value per ballot and slot; a value a majority accepted in
  one ballot is never decided otherwise),
- positions, no duplication, no creation (integrity), replay after a restart,
  total order (every replica delivers the same message at each position),
- durability (a restarted acceptor never contradicts a promise or vote it
  sent), durable quorum (a slot is first decided only when a majority of
  stores hold its value synced).

Every majority is of the voters of the slot's own configuration, which
``sim.checkers.slot_configs`` derives from the chosen log with the scope's
alpha, never from what the replicas believe.

Plus two checked as soon as a message leaves: *safe proposals* (PMS P2b;
the simulator's "chosen values" sees it only once the slot is decided):
once a majority accepted ``v`` for slot ``s`` in ballot ``b``, every
``Accept`` for ``s`` in a ballot above ``b`` proposes ``v``; and *ballot
ownership* (the premise ``tests/sim/test_ballot_ownership.py`` checks in
every simulated run): a ``Prepare`` or ``Accept`` of ballot ``b`` is sent
only by the node ``b`` names, so no two proposers share a ballot.

And one about a node's own broadcasts, the rule the Go original's fifth
defect broke (``check_own_proposals``): a broadcast stays pending at its
origin until delivered there, while the life that made it is up.

Liveness (``check_liveness``), bounded: from a state, with no more faults
(every crashed node restarts, saves land, every message in flight is
delivered in order, every node ticks once per round), within ``rounds``
rounds some voter leads, every member knows it, and every broadcast of a
member's life still up is delivered at every member (members and voters:
of the newest configuration the chosen log makes). Fairness is this one
schedule, not every fair one: a bug that only a fair but adversarial order
shows is not found by it.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.events import Receive, Tick
from ..core.types import Ballot, Batch
from ..sim.checkers import (
    CheckFailure,
    TobHistory,
    check_agreement,
    check_chosen_values,
    check_durability,
    check_durable_quorum,
    check_no_creation,
    check_no_duplication,
    check_positions,
    check_replay,
    check_total_order,
    describe_batch,
    majority_of,
    slot_configs,
)
from .describe import describe
from .model import World

__all__ = ["SAFETY", "check_liveness", "check_safety"]

#: The simulator's checkers run in every state, in this order.
SAFETY: tuple[Callable[[TobHistory], None], ...] = (
    check_agreement,
    check_chosen_values,
    check_positions,
    check_no_duplication,
    check_no_creation,
    check_replay,
    check_total_order,
    check_durability,
    check_durable_quorum,
)


def check_safe_proposals(history: TobHistory) -> None:
    """PMS P2b: an Accept above a ballot in which a majority accepted ``v`` proposes ``v``."""
    configs = slot_configs(history)
    by_slot: dict[int, list[tuple[Ballot, Batch, int]]] = {}
    for (slot, ballot), (value, acceptors) in history.acceptances.items():
        # Counted among the voters of the slot's own configuration.
        voters = configs.config_for(slot).voters
        count = len(voters & acceptors.keys())
        by_slot.setdefault(slot, []).append((ballot, value, count))
    for slot, rows in by_slot.items():
        majority = majority_of(configs.config_for(slot).voters)
        rows.sort(key=lambda r: r[0])
        for i, (ballot, value, count) in enumerate(rows):
            if count < majority:
                continue
            for later, other, _ in rows[i + 1 :]:
                if other != value:
                    raise CheckFailure(
                        "safe proposals",
                        f"a majority accepted {describe_batch(value)} for slot {slot} in "
                        f"ballot {ballot}, but ballot {later} proposed "
                        f"{describe_batch(other)} there (PMS P2b)",
                    )


def check_own_proposals(world: World) -> None:
    """A broadcast stays pending at its origin until delivered there (Go defect 5's rule).

    While the life that broadcast it is up, it is in the replica's
    ``proposals.pending`` or among that life's deliveries: a proposal that
    left both would never be proposed again, so it would never be delivered.
    (Refused proposals, ``Dropped``, do not arise in the checker's scope.)
    """
    h = world.history
    for pid, b in h.broadcasts.items():
        r = world.replicas[pid.origin]
        life = h.traces[pid.origin].life
        if r is None or life.started > b.tick or pid in r.proposals.pending:
            continue
        if any(d.id == pid for _, d in life.deliveries):
            continue
        raise CheckFailure(
            "own proposals",
            f"{pid.origin}'s broadcast {b.payload.decode(errors='replace')!r} is neither "
            "pending there nor delivered there: it will never be proposed again",
        )


def check_safety(world: World) -> None:
    """Every safety property on ``world``'s history; raises ``CheckFailure``."""
    h = world.history
    for node in world.members:
        r = world.replicas[node]
        if r is not None:
            life = h.traces[node].life
            life.log = dict(r.log.entries)
            life.decided_through = r.log.decided_through
    for check in SAFETY:
        check(h)
    check_safe_proposals(h)
    check_own_proposals(world)
    if world.unowned:
        raise CheckFailure(
            "ballot ownership",
            f"{world.unowned[0]}: a Prepare or Accept is sent only by the node its ballot "
            "names, so no two proposers share a ballot",
        )


def _done(world: World) -> bool:
    """Every member follows one leader and delivered every broadcast still owed.

    Members: of the newest configuration the chosen log makes (a spare never
    added, a removed node, owe nothing and are owed nothing).
    """
    h = world.history
    final = slot_configs(h).newest
    leaders = [m for m in world.leaders() if m in final.voters]
    if len(leaders) != 1:
        return False
    owed = [
        pid
        for pid in h.broadcasts
        if pid.origin in final.members
        and h.traces[pid.origin].life.ended is None
        and h.traces[pid.origin].life.started <= h.broadcasts[pid].tick
    ]
    for m in sorted(final.members):
        r = world.replicas[m]
        if r is None or r.leader != leaders[0]:
            return False
        got = {d.id for _, d in h.traces[m].life.deliveries}
        if any(pid not in got for pid in owed):
            return False
    return True


def check_liveness(world: World, rounds: int) -> int:
    """Run ``world`` (a copy) fairly until done; the rounds it took, or raise ``CheckFailure``."""
    w = world.copy()
    for m in w.members:
        if w.replicas[m] is None:
            w._restart(m)
    for n in range(rounds + 1):
        w.settle_saves()
        if _done(w):
            return n
        batch, w.net = w.net, []
        for env in batch:
            if w.replicas[env.dst] is not None:
                w._step(env.dst, Receive(env))
        w.settle_saves()
        for m in w.members:
            if w.replicas[m] is not None:
                w._step(m, Tick())
    lines = "; ".join(w.summary()[:-1])
    flight = ", ".join(describe(e) for e in w.net[:6])
    raise CheckFailure(
        "liveness",
        f"with no more faults, fair delivery and ticks, not done after {rounds} rounds "
        f"(one leader followed by all, every owed broadcast delivered everywhere): {lines}; "
        f"in flight: {flight or '-'}",
    )
