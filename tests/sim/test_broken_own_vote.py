"""A leader must count its own acceptance only once it is durable (core/multipaxos.py).

Saves take time in the simulator (``persist_delay_ticks``), and the runtime
tells the core a Ready is durable with ``Persisted``. Two ways to break the
rule, each caught by the ``durable quorum`` check (a slot first decided
while fewer than a majority of acceptors had its value synced):

- the core counts its own ``Accepted`` at once (``Outbox.hold``
  replaced by the loopback every other message to itself takes);
- the runtime steps ``Persisted`` before the save lands (``persist=
  'early-vote'``); the restart check (``durability``: a restarted leader
  lost an acceptance it had counted) catches that one too.

Each test searches a bounded range of seeds for one where the bug breaks a
safety property while the intact code passes the same seed. Measured when
written, seeds 0..199: the core bug is caught in 4% of seeds (first at seed
15); only runs whose disk is slower than a round trip can show it. The
runtime bug: 15% by ``durability`` (first at seed 2), 2.5% by ``durable
quorum`` (first at seed 71). Without both direct checks the core bug went
unnoticed in 600 seeds: a crash must hit the leader in the few ticks
between the decision and its save, then a new quorum must miss the value.
That is why the direct check exists.
"""

from __future__ import annotations

import pytest

from paxostob.core.messages import Accepted
from paxostob.core.outbox import Outbox
from paxostob.sim.checkers import CheckFailure
from paxostob.sim.runner import simulate

from .safety import SAFETY


def count_at_once(self: Outbox, vote: Accepted) -> None:
    self.loopback.append(vote)


def first_caught(
    monkeypatch: pytest.MonkeyPatch, seeds: range, props: frozenset[str], *, core_bug: bool
) -> tuple[int, CheckFailure]:
    for seed in seeds:
        with monkeypatch.context() as m:
            if core_bug:
                m.setattr(Outbox, "hold", count_at_once)
                outcome = simulate(seed)
            else:
                outcome = simulate(seed, persist="early-vote")
        if outcome.failure is None or outcome.failure.prop not in props:
            continue
        assert simulate(seed).ok, f"seed {seed} fails with the intact code too"
        return seed, outcome.failure
    raise AssertionError(f"the broken own vote passes seeds {seeds.start}..{seeds.stop - 1}")


def test_a_core_counting_its_own_vote_at_once_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    seed, failure = first_caught(monkeypatch, range(300), SAFETY, core_bug=True)
    assert failure.prop == "durable quorum", failure
    assert f"paxostob sim --seed {seed}" in str(failure)


def test_a_runtime_reporting_durable_too_early_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    _, failure = first_caught(monkeypatch, range(50), frozenset({"durability"}), core_bug=False)
    assert "counted it as the leader" in failure.detail or "promised" in failure.detail
    first_caught(monkeypatch, range(300), frozenset({"durable quorum"}), core_bug=False)


def test_the_pipelined_runs_have_slow_disks() -> None:
    """The seeds above do run with saves slower than a round trip (else nothing shows)."""
    outcome = simulate(15)
    assert outcome.ok
    assert outcome.result.options.persist_delay_ticks[1] >= 3
