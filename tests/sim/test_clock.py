"""Clock skews and jumps as a swarm fault, and the checker that judges the log's clock.

Every Multi-Paxos run of the simulator gives its replicas wall clocks (the
true time plus a per-node offset) and checks the log's clock
(``checkers.check_clock``: agreement, monotonic, step, expiry); about half
the default seeds skew clocks. Here the fault is forced on: one node starts
skewed and eight clock jumps (half aimed at whoever leads then, by 50 ms to
two days either way) hit every run.

The checker must be able to fail: two tests break the clock rule in the core
(a leader stamping its wall clock unbounded; followers pulling their estimate
to their own wall clocks, so a skewed node that becomes leader jumps the
log) and search the same seeds for one the checker rejects.

A jump lands at the start of a tick, but a replica reads its wall clock only
at its ``Tick``, after that tick's messages: a node that wins an election on
one of them leads on the clock it read before the jump. The "clock source"
check judges a leader by the clock it read, so such a run must pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from paxostob.core.events import Event, Tick
from paxostob.core.multipaxos import MultiPaxosReplica, Role
from paxostob.sim.runner import SIM_TICK_MS, RunOutcome, run_many

SEEDS = range(40)
CLOCKS: dict[str, Any] = {"clock_skewed": 1, "clock_jumps": 8}
CLOCK_PROPERTIES = frozenset(
    {"clock step", "expiry", "clock monotonic", "clock agreement", "clock source"}
)


#: Jumps often enough that some node wins an election between a jump of its
#: clock and its next reading (3 such elections in ``SEEDS``).
JUMPY: dict[str, Any] = {"clock_skewed": 1, "clock_jumps": 400}


def _failures(outcomes: list[RunOutcome]) -> list[str]:
    return [str(o.failure) for o in outcomes if o.failure is not None]


def test_runs_with_skewed_and_jumping_clocks_keep_every_property() -> None:
    outcomes = list(run_many(SEEDS, **CLOCKS))
    failures = _failures(outcomes)
    assert not failures, f"{len(failures)} failing seeds:\n\n" + "\n\n".join(failures)
    aimed = sum(any(j.node is None for j in o.result.schedule.clock_jumps) for o in outcomes)
    assert aimed >= len(SEEDS) // 2, "too few runs jumped a leader's clock"


def _first_caught(
    broken: Callable[[MultiPaxosReplica, int, int], None], monkeypatch: pytest.MonkeyPatch
) -> int | None:
    """The first seed of ``SEEDS`` whose run breaks a clock property with ``broken``."""
    monkeypatch.setattr(MultiPaxosReplica, "_advance_clock", broken)
    for o in run_many(SEEDS, **CLOCKS):
        if o.failure is not None and o.failure.prop in CLOCK_PROPERTIES:
            return o.seed
    return None


def unbounded_leader(self: MultiPaxosReplica, wall_ms: int, elapsed_ms: int) -> None:
    """The leader stamps its wall clock as it is (no ``clock_step_ms_max``)."""
    self._wall_ms = wall_ms
    if self.role is Role.LEADER:
        self.clock_estimate_ms = max(self.clock_ms, wall_ms)
    elif self.clock_estimate_ms:
        self.clock_estimate_ms += elapsed_ms


def followers_trust_their_clocks(self: MultiPaxosReplica, wall_ms: int, elapsed_ms: int) -> None:
    """Every replica pulls its estimate to its own wall clock, followers included."""
    self._wall_ms = wall_ms
    est = self.clock_estimate_ms
    if est:
        step = self.config.clock_step_ms_max
        self.clock_estimate_ms = max(est + min(elapsed_ms, step), min(wall_ms, est + step))
    elif self.role is Role.LEADER:
        self.clock_estimate_ms = wall_ms


@pytest.mark.parametrize("broken", [unbounded_leader, followers_trust_their_clocks])
def test_the_clock_checker_catches_a_broken_clock_rule(
    broken: Callable[[MultiPaxosReplica, int, int], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = _first_caught(broken, monkeypatch)
    assert seed is not None, f"no seed of {SEEDS} caught {broken.__name__}"


def test_a_new_leader_is_judged_by_the_clock_it_read_not_a_jump_it_has_not_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # New leaders whose estimate was above the wall clock of their next Tick,
    # which had jumped back since their previous one: (node, estimate, reading).
    unread: list[tuple[str, int, int]] = []
    elected: dict[MultiPaxosReplica, tuple[int, int]] = {}
    step = MultiPaxosReplica.step

    def watched(self: MultiPaxosReplica, event: Event) -> None:
        led = self.role is Role.LEADER
        step(self, event)
        if isinstance(event, Tick):
            then = elected.pop(self, None)
            now = event.clock_ms
            # Its clock went back since the reading it was elected on, below its estimate.
            if then is not None and now is not None and now < min(then[0] + SIM_TICK_MS, then[1]):
                unread.append((self.node_id, then[1], now))
        elif not led and self.role is Role.LEADER and self._wall_ms is not None:
            elected[self] = (self._wall_ms, self.clock_estimate_ms)

    monkeypatch.setattr(MultiPaxosReplica, "step", watched)
    failures = _failures(list(run_many(SEEDS, **JUMPY)))
    assert unread, f"no run of {SEEDS} elected a leader between a clock jump and its reading"
    assert not failures, f"{len(failures)} failing seeds:\n\n" + "\n\n".join(failures)
