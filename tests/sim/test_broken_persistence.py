"""The simulator must catch a replica that persists wrongly: a check that cannot fail is useless.

Two deliberate bugs, as the ``persist`` option of the runner (never drawn;
``run(seed, persist=...)``, and the failure's replay line names it):

- ``send-first``: all of a ``Ready``'s messages leave before its durable
  part is saved; the save lands at least a tick later, so a crash in
  between loses a promise or an acceptance peers already counted (an fsync
  after the send);
- ``skip-accepted``: accepted entries are never saved (promises and
  decisions are).

Each test searches a bounded range of seeds (the default swarm: about half
of the runs crash and restart nodes) for one where the bug breaks a safety
property while the correct order passes the same seed.

Since saves take (simulated) time, the ``durable quorum`` check (a slot
decided before a majority had its value synced) catches both bugs too,
without any crash. With saves drawn from ``PERSIST_DELAYS``, ``send-first``
no longer showed as a lost value in seeds 0..1099 without the direct
checks (its window is now one of many save latencies); with every save
taking 2-6 ticks it does in 1% of seeds (``agreement``, first at seed 33),
so that test runs with a slow disk. What was caught, seeds 0..999 (530 of
them restart nodes), measured before saves took time:

- by the direct check (``durability``: a restarted acceptor's promise is
  below a ballot it promised, or an entry it accepted and acknowledged is
  gone), or an earlier safety check: ``send-first`` 8.5% of seeds (first
  at seed 2), ``skip-accepted`` 44% (first at seed 1);
- with that check switched off, by the bug's *consequences*: ``send-first``
  0.3% of seeds, all ``chosen value`` (a value a majority accepted lost its
  slot to another; first at seed 202; the window is one tick, like an
  fsync's), ``skip-accepted`` 5.4% (``agreement``: two values decided for
  one slot, 37; ``chosen value``, 17; first at seed 18), plus 8 runs where
  a message one replica delivered is never delivered by the others (a
  stall, reported as ``uniform agreement``, not counted here).
"""

from __future__ import annotations

from typing import Any

import pytest

from paxostob.sim import checkers
from paxostob.sim.checkers import CheckFailure
from paxostob.sim.runner import simulate

#: Safety properties other than the direct durability check.
CONSEQUENCES = frozenset({"agreement", "chosen value", "total order", "log order", "replay"})


def first_caught(
    mode: str, seeds: range, props: frozenset[str], **overrides: Any
) -> tuple[int, CheckFailure]:
    for seed in seeds:
        outcome = simulate(seed, persist=mode, **overrides)
        if outcome.failure is None or outcome.failure.prop not in props:
            continue
        assert simulate(seed, **overrides).ok, f"seed {seed} fails with the correct order too"
        return seed, outcome.failure
    raise AssertionError(f"persist={mode} passes seeds {seeds.start}..{seeds.stop - 1}")


@pytest.mark.parametrize(("mode", "bound"), [("send-first", 50), ("skip-accepted", 20)])
def test_the_durability_check_catches_broken_persistence(mode: str, bound: int) -> None:
    seed, failure = first_caught(mode, range(bound), frozenset({"durability"}))
    assert "restarted" in failure.detail
    assert f"paxostob sim --seed {seed}" in str(failure)
    assert f"persist='{mode}'" in str(failure)


#: A disk slow enough for send-first's window to matter (see the module docstring).
SLOW_DISK = {"persist_delay_ticks": (2, 6)}


@pytest.mark.parametrize(
    ("mode", "bound", "overrides"), [("send-first", 300, SLOW_DISK), ("skip-accepted", 50, {})]
)
def test_broken_persistence_loses_chosen_values(
    mode: str, bound: int, overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the direct checks, the bug still shows as lost or conflicting values."""
    monkeypatch.setattr(checkers, "check_durability", lambda history: None)
    monkeypatch.setattr(checkers, "check_durable_quorum", lambda history: None)
    first_caught(mode, range(bound), CONSEQUENCES, **overrides)


def test_the_correct_order_is_the_default_and_passes_those_seeds() -> None:
    outcome = simulate(2)
    assert outcome.ok and outcome.result.options.persist == "save-first"
    assert outcome.result.restarts > 0
