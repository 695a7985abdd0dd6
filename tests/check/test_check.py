"""The model checker itself: its search, its state keys, its traces and its CLI.

The CI scopes must find no violation: ``CI_SCOPE`` explores every state of
three real replicas from boot, with one broadcast and one crash;
``CI_SCOPE_ELECTED`` from a leader in place with async saves, a loss and a
copy; ``CI_SCOPE_CHANGES`` a membership change (voters a and b, learner c,
alpha 2). The planted bugs of ``test_defects.py`` show the same search finds
violations.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from paxostob.check.canon import key
from paxostob.check.describe import describe
from paxostob.check.explore import explore, replay, start_world
from paxostob.check.model import Action, Scope, World
from paxostob.check.properties import check_liveness
from paxostob.check.scenario import commands, script
from paxostob.cli.app import main
from paxostob.core import outbox
from paxostob.core.messages import Accept, Accepted, Promise
from paxostob.core.multipaxos import MultiPaxosReplica
from paxostob.core.proposals import OwnProposals
from paxostob.core.types import Ballot

from ..core.datadriven import Driver, parse
from ..core.scenario import show

#: Every state of 3 replicas from boot within 5 actions: timers, one broadcast, one crash
#: and restart, eager saves, ballots up to round 2.
CI_SCOPE = Scope(depth=5, proposals=1, crashes=1)
#: From a leader in place: async saves (group commit), a loss and a copy.
CI_SCOPE_ELECTED = Scope(
    start="elected", depth=5, saves="async", drops=1, duplicates=1, crashes=1, ticks=False
)

#: Membership: voters a and b, learner c (added by the start); one change
#: (promote c, remove a member), alpha 2, so that a change decided in slot 3
#: governs slot 5, which the depth reaches (``test_changes_scope_reaches...``).
CI_SCOPE_CHANGES = Scope(
    start="elected",
    replicas=2,
    spares=1,
    learners=1,
    changes=1,
    alpha=2,
    proposals=1,
    crashes=0,
    ticks=False,
    depth=10,
)


@pytest.mark.parametrize(
    "scope", [CI_SCOPE, CI_SCOPE_ELECTED, CI_SCOPE_CHANGES], ids=["boot", "elected", "changes"]
)
def test_shipped_core_keeps_every_property_in_the_ci_scope(scope: Scope) -> None:
    result = explore(scope)
    assert result.failure is None, (result.failure, [str(a) for a in result.trace or []])
    assert not result.truncated
    print(
        f"{scope}: {result.states} states, {result.transitions} transitions, "
        f"{result.seconds:.1f} s, {result.peak_rss_mib:.0f} MiB"
    )
    assert result.states > 500 and result.depth == scope.depth


def _votes(w: World, first: Action, among: str) -> list[Action]:
    """Apply ``first``, then deliver the oldest Accept or Accepted between ``among`` until none."""
    done = [w.apply(first)]
    while True:
        votes = [
            e
            for e in w.net
            if isinstance(e.message, Accept | Accepted)
            and e.dst in among
            and e.message.sender in among
        ]
        if not votes:
            break
        done.append(w.apply(Action("deliver", votes[0].dst, votes[0])))
    assert all(a is not None for a in done)
    return [a for a in done if a is not None]


@pytest.mark.parametrize("op", ["promote", "remove"])
def test_changes_scope_reaches_a_slot_decided_by_the_new_configuration(op: str) -> None:
    """Within the CI scope's depth: the change takes effect and a slot is decided under it."""
    w, prefix = start_world(CI_SCOPE_CHANGES)
    assert any(a.kind == "change" for a in prefix)  # the start added c as a learner
    target = "c" if op == "promote" else "b"
    trace = _votes(w, Action("change", "a", op=op, target=target), "ab")
    trace += _votes(w, Action("propose", "a", payload=b"p1"), "ac" if op == "promote" else "a")
    assert len(trace) <= CI_SCOPE_CHANGES.depth, [str(a) for a in trace]
    a = w.replicas["a"]
    assert a is not None
    slot = a.log.decided_through
    config = a.membership.config_for(slot)
    assert config.effective_slot == slot == 5  # the change was decided in slot 3, alpha 2
    assert config.voters == ({"a", "b", "c"} if op == "promote" else {"a"})
    assert [p.payload for p in a.log.entries[slot]] == [b"p1"]
    # Decided by the new configuration's quorum: with c's vote, or a's alone.
    ((_, voted),) = [v for (s, _), v in w.history.acceptances.items() if s == slot]
    assert set(voted) == ({"a", "c"} if op == "promote" else {"a"})
    # The same actions are a path of the search: it replays, breaking nothing.
    again, failure = replay(CI_SCOPE_CHANGES, trace)
    assert failure is None and key(again) == key(w)


def test_a_change_the_leader_refuses_is_no_transition() -> None:
    w, _ = start_world(CI_SCOPE_CHANGES)
    refused = w.copy()
    # b does not lead: a change is never enabled there, and refused if applied.
    assert not [a for a in w.enabled() if a.kind == "change" and a.node != "a"]
    assert refused.apply(Action("change", "b", op="promote", target="c")) is None
    assert refused.counts.changes == 0
    taken = w.copy()
    assert taken.apply(Action("change", "a", op="promote", target="c")) is not None
    assert taken.counts.changes == 1
    # One change at a time: a second one is refused while the first is in progress.
    assert taken.apply(Action("change", "a", op="remove", target="b")) is None


def test_depth_first_reaches_the_states_breadth_first_does() -> None:
    scope = Scope(start="elected", depth=4, proposals=1, crashes=1, ticks=False)
    bfs, dfs = explore(scope, mode="bfs"), explore(scope, mode="dfs")
    assert bfs.ok and dfs.ok
    assert dfs.states == bfs.states > 50


def test_commuting_actions_reach_one_key_and_different_states_differ() -> None:
    w, _ = start_world(Scope(start="elected", proposals=2, ticks=False))
    one, two = w.copy(), w.copy()
    for a in (Action("propose", "b", payload=b"p1"), Action("propose", "c", payload=b"p2")):
        one.apply(a)
    # Other payload names: the same state only if the payloads match, so
    # propose at c then b with the names swapped is *not* the same.
    for a in (Action("propose", "c", payload=b"p2"), Action("propose", "b", payload=b"p1")):
        two.apply(a)
    assert key(one) == key(two)
    three = w.copy()
    three.apply(Action("propose", "b", payload=b"p2"))
    assert key(three) != key(one)
    assert key(w) == key(w.copy())


def test_state_key_ignores_insertion_order() -> None:
    """Dicts keep insertion order and sets follow the hash seed: neither splits a state."""
    w, _ = start_world(Scope(start="elected"))
    one, two = w.copy(), w.copy()
    b1, b2 = Ballot(1, "a"), Ballot(2, "b")
    r1, r2 = one.replicas["c"], two.replicas["c"]
    assert r1 is not None and r2 is not None
    r1.acceptor.accepted[1] = (b1, ())
    r1.acceptor.accepted[2] = (b2, ())
    r2.acceptor.accepted[2] = (b2, ())
    r2.acceptor.accepted[1] = (b1, ())
    assert list(r1.acceptor.accepted) != list(r2.acceptor.accepted)
    assert key(one) == key(two)
    r2.acceptor.accepted[2] = (b1, ())
    assert key(one) != key(two)


def test_described_messages_are_the_scenario_scripts_names() -> None:
    w, prefix = start_world(Scope(start="elected", proposals=1))
    w.apply(Action("propose", "a", payload=b"p1"))
    w.apply(Action("save", "a"))
    envs = [a.envelope for a in prefix if a.envelope is not None] + list(w.net)
    assert len(envs) > 8
    for env in envs:
        assert describe(env) == show(env)


def _votes_before_durable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The durable-vote rule broken in this process: votes leave before the save."""
    monkeypatch.setattr(outbox, "EARLY", (*outbox.EARLY, Promise, Accepted))


def _no_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's planted ``membership_rule="no-delay"``: a change governs the next slot."""
    built = MultiPaxosReplica.__init__

    def init(self: MultiPaxosReplica, *args: Any, **kwargs: Any) -> None:
        built(self, *args, **kwargs)
        self.log.membership.delay = 1  # as sim/runner.py plants it

    monkeypatch.setattr(MultiPaxosReplica, "__init__", init)


VOTE_SCOPE = Scope(start="elected", proposals=1, proposers=(0,), crashes=1, ticks=False, depth=6)


def test_counterexample_replays_and_converts_to_a_scenario(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _votes_before_durable(monkeypatch)
    result = explore(VOTE_SCOPE)
    assert result.failure is not None and result.trace is not None
    assert result.failure.prop == "durable quorum"
    world, failure = replay(VOTE_SCOPE, result.trace)
    assert failure is not None and failure.prop == "durable quorum"
    # The script does what the trace did: each node ends as the model's world does.
    actions = [*result.prefix, *result.trace]
    driver = Driver()
    outputs = [driver.run(c) for c in commands(VOTE_SCOPE, actions)]
    statuses = [
        o[0]
        for c, o in zip(commands(VOTE_SCOPE, actions), outputs, strict=True)
        if c.startswith("status")
    ]
    for m, line in zip(VOTE_SCOPE.members, statuses, strict=True):
        r = world.replicas[m]
        if r is None:
            assert "crashed" in line
        else:
            assert (
                f"{m}: {r.role.value} leader={r.leader or '-'} ballot={r.status().ballot}" in line
            )
    text = script(VOTE_SCOPE, actions, result)
    assert "# It breaks durable quorum" in text
    assert len(parse(text).blocks) == len(commands(VOTE_SCOPE, actions))


def test_depth_first_counterexample_replays_to_the_violation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _votes_before_durable(monkeypatch)
    scope = Scope(
        start="elected", proposals=1, crashes=1, ticks=False, depth=8, duplicates=1, drops=1
    )
    result = explore(scope, mode="dfs")
    assert result.failure is not None and result.trace is not None
    _, failure = replay(scope, result.trace)
    assert failure is not None and failure.prop == result.failure.prop
    shortest = explore(scope, mode="bfs")
    assert shortest.trace is not None and len(shortest.trace) <= len(result.trace)


def test_cli_reports_an_ok_scope(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--depth", "3", "--start", "elected", "--no-ticks"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "states: " in out and "transitions: " in out and "peak memory: " in out
    assert "verdict: ok" in out


def test_cli_prints_a_trace_and_writes_a_scenario_on_a_violation(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _votes_before_durable(monkeypatch)
    target = tmp_path / "found.txt"
    argv = ["check", "--start", "elected", "--no-ticks", "--proposers", "0", "--depth", "6"]
    code = main([*argv, "--scenario", str(target)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "verdict: VIOLATION of durable quorum after 5 actions" in out
    assert "deliver-one" in target.read_text()
    assert "    1. propose a p1" in out


def test_cli_refuses_a_bad_scope(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["check", "--replicas", "9"]) == 2
    assert "replicas" in capsys.readouterr().err
    bad = tmp_path / "start.txt"
    bad.write_text("propose z p1\n----\n")
    assert main(["check", "--script", str(bad)]) == 2
    assert "no node 'z'" in capsys.readouterr().err
    bad.write_text("deliver-one a->b Prepare 9.a from #1\n----\n")
    assert main(["check", "--script", str(bad)]) == 2
    assert "no message in flight is" in capsys.readouterr().err


def test_cli_explores_membership_changes_from_a_script_with_a_change(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    members = ["--start", "elected", "--replicas", "2", "--spares", "1", "--learners", "1"]
    start = tmp_path / "start.txt"
    start.write_text("change a promote c\n----\n")
    code = main(["check", *members, "--no-ticks", "--script", str(start), "--depth", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "changes=0 spares=1 learners=1 alpha=2" in out and "verdict: ok" in out
    start.write_text("change b promote c\n----\n")  # b does not lead: refused
    assert main(["check", *members, "--script", str(start)]) == 2
    assert "does nothing here" in capsys.readouterr().err
    assert main(["check", "--learners", "1"]) == 2
    assert "learners" in capsys.readouterr().err
    # A counterexample with a change is reported, but not as a data-driven script.
    _no_delay(monkeypatch)
    target = tmp_path / "found.txt"
    argv = [*members, "--no-ticks", "--changes", "1", "--crashes", "0", "--depth", "6"]
    assert main(["check", *argv, "--scenario", str(target)]) == 1
    out = capsys.readouterr().out
    assert "verdict: VIOLATION of durable quorum after 4 actions" in out
    assert "    1. change a remove b" in out and "scenario: not written" in out
    assert not target.exists()


def test_liveness_check_passes_on_the_shipped_core() -> None:
    result = explore(Scope(start="elected", depth=3, proposals=1, crashes=1), liveness_every=7)
    assert result.ok, result.failure
    # With membership: owed by the newest configuration's members only.
    result = explore(CI_SCOPE_CHANGES, liveness_every=3)
    assert result.ok, (result.failure, [str(a) for a in result.trace or []])
    w, _ = start_world(Scope(proposals=1))
    w.apply(Action("propose", "b", payload=b"p1"))
    assert check_liveness(w, 300) > 0  # from boot: an election first, then the delivery


def test_liveness_check_fails_when_forwards_are_lost_for_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planted: a follower never forwards its proposals (they stay pending, safely)."""

    def never(self: OwnProposals, leader: str | None, leading: object) -> None:
        if leading is None:
            self.to_forward.clear()
            return
        original(self, leader, leading)  # type: ignore[arg-type]

    original = OwnProposals.flush
    monkeypatch.setattr(OwnProposals, "flush", never)
    monkeypatch.setattr(OwnProposals, "reforward_due", lambda *args: None)
    scope = Scope(start="elected", proposals=1, proposers=(1,), crashes=0, ticks=False, depth=2)
    assert explore(scope).ok  # no safety property sees it
    result = explore(scope, liveness_every=1)
    assert result.failure is not None and result.failure.prop == "liveness"
    assert [str(a) for a in result.trace or []] == ["propose b p1"]


def test_worlds_replay_deterministically() -> None:
    scope = Scope(start="elected", proposals=1, crashes=1, duplicates=1, ticks=False)
    w, _ = start_world(scope)
    rng = random.Random(5)
    trace = []
    for _ in range(12):
        acts = w.enabled()
        if not acts:
            break
        done = w.apply(rng.choice(acts))
        assert done is not None
        trace.append(done)
    assert len(trace) > 5
    again, _ = replay(scope, trace)
    assert isinstance(again, World) and key(again) == key(w)
