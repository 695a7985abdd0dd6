"""The checker finds each defect of the Go original, the durable-vote rule and two
broken membership rules (alpha ignored, a new configuration counted too early), when planted.

Each defect is one of ``tests/mutation/mutate.py``'s mutants (an exact text
replacement in a copy of ``src``; docs/design.md, 'Five defects of the Go
original'). Per defect, two tests:

- ``test_shipped_core_keeps_every_property_in_the_scope_of[...]``: the
  shipped core, in the defect's scope, breaks nothing (the test
  ``make mutate`` runs against the mutant: it must fail there);
- ``test_checker_finds_defect[...]``: ``paxostob check`` run on the mutated
  copy (a subprocess with ``PYTHONPATH`` on it) exits 1 with a violation of
  the expected property, in exactly the shortest number of actions a
  breadth-first search finds (so a change that makes it longer or
  unreachable is noticed).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from paxostob.check.explore import explore
from paxostob.cli.check import configure, scope_of

ROOT = Path(__file__).resolve().parents[2]
#: A start where slot 1 was chosen in ballot 2.b while a holds its own value
#: accepted in 1.a (the file says how it gets there).
LOST_SLOT = str(Path(__file__).parent / "starts" / "b_chose_p2_where_a_proposed_p1.txt")
#: Voters a and b, learner c (the start adds it), one change (alpha 2 by default
#: with --changes), one crash: every quorum of {a} or {a,b,c} is not one of {a,b}.
MEMBERSHIP = (
    *("--start", "elected", "--replicas", "2", "--spares", "1", "--learners", "1"),
    *("--changes", "1", "--no-ticks", "--proposals", "1", "--crashes", "1", "--depth", "6"),
)


def _mutate_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "paxostob_mutate", ROOT / "tests" / "mutation" / "mutate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


MUTATE = _mutate_module()


@dataclass(frozen=True)
class Defect:
    id: str
    mutant: str  # the mutant's name in mutate.py
    argv: tuple[str, ...]  # paxostob check's scope
    prop: str  # the property the checker reports
    shortest: int  # actions in the shortest counterexample (bfs)


DEFECTS = (
    Defect(
        "instance ids",
        "multipaxos: messages of another instance are taken as ours (Go defect 1)",
        ("--foreign", "1", "--crashes", "0", "--proposals", "0", "--no-ticks", "--depth", "2"),
        "no creation",
        1,
    ),
    Defect(
        "colliding ballots",
        "multipaxos: a new ballot takes the node id of the highest seen (Go defect 2)",
        ("--start", "elected", "--crashes", "0", "--proposals", "0", "--depth", "2"),
        "ballot ownership",
        1,
    ),
    Defect(
        "phase-1 adoption",
        "rules: phase 2 adopts the lowest-ballot accepted value (Go defect 4)",
        (
            *("--start", "elected", "--script", LOST_SLOT, "--no-ticks", "--campaigns"),
            *("--crashes", "0", "--proposals", "2", "--ballots", "3", "--depth", "3"),
        ),
        "safe proposals",
        3,
    ),
    Defect(
        "re-proposing the winner",
        "multipaxos: a proposal that lost its slot is taken as settled by the winner (Go defect 5)",
        (
            *("--start", "elected", "--script", LOST_SLOT, "--no-ticks"),
            *("--crashes", "0", "--proposals", "2", "--ballots", "2", "--depth", "4"),
        ),
        "own proposals",
        4,
    ),
    Defect(
        "quorum by message count",
        "tally: counts messages, not distinct senders (Go defect 3)",
        (
            *("--start", "elected", "--saves", "async", "--no-ticks", "--crashes", "0"),
            *("--duplicates", "1", "--proposals", "1", "--proposers", "0", "--depth", "6"),
        ),
        "durable quorum",
        6,
    ),
    Defect(
        "votes sent before durable",
        "outbox: promises and acceptances leave before they are durable",
        (
            *("--start", "elected", "--no-ticks", "--crashes", "1"),
            *("--proposals", "1", "--proposers", "0", "--depth", "5"),
        ),
        "durable quorum",
        5,
    ),
    Defect(
        "own vote counted before durable",
        "multipaxos: the leader counts its own acceptance before it is durable",
        (
            *("--start", "elected", "--saves", "async", "--no-ticks", "--crashes", "0"),
            *("--proposals", "1", "--proposers", "0", "--depth", "4"),
        ),
        "durable quorum",
        4,
    ),
    Defect(
        # The simulator's planted ``membership_rule="no-delay"``: a change
        # decided in slot i governs slot i + 1 at every replica, not i + alpha.
        "alpha ignored",
        "multipaxos: a change governs the slot right after its own (alpha ignored)",
        MEMBERSHIP,
        "durable quorum",
        5,
    ),
    Defect(
        "newest configuration too early",
        "leadership: a slot is opened with the newest configuration's voters and quorum",
        (*MEMBERSHIP[:-4], "--crashes", "0", "--depth", "5"),
        "durable quorum",
        3,
    ),
)


def _argv(d: Defect) -> list[str]:
    return list(d.argv)


def _mutant(name: str) -> object:
    (found,) = [x for x in (*MUTATE.MUTANTS, *MUTATE.CHECK_MUTANTS) if x.name == name]
    return found


@pytest.mark.parametrize("defect", DEFECTS, ids=[d.id for d in DEFECTS])
def test_shipped_core_keeps_every_property_in_the_scope_of(defect: Defect) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    configure(parser)
    scope = scope_of(parser.parse_args(_argv(defect)))
    result = explore(scope)
    assert result.failure is None, (result.failure, [str(a) for a in result.trace or []])
    assert result.states > 1 and not result.truncated


@pytest.mark.parametrize("defect", DEFECTS, ids=[d.id for d in DEFECTS])
def test_checker_finds_defect(defect: Defect) -> None:
    with tempfile.TemporaryDirectory(prefix="paxostob-defect-") as tmp:
        MUTATE.mutated_tree(_mutant(defect.mutant), Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src")}
        done = subprocess.run(
            [sys.executable, "-m", "paxostob", "check", *_argv(defect)],
            env=env,
            capture_output=True,
            text=True,
            timeout=110,
            check=False,
        )
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    found = re.search(r"verdict: VIOLATION of (.+) after (\d+) actions", out)
    assert found is not None, out
    print(f"{defect.id}: {found.group(1)} after {found.group(2)} actions")
    assert (found.group(1), int(found.group(2))) == (defect.prop, defect.shortest), out
