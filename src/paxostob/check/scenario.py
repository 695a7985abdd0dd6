"""A counterexample as a data-driven scenario script (``tests/core/testdata/*.txt``).

Each action becomes one command of the script language
(``tests/core/datadriven.py``): ``durable`` first (saves through a
``MemoryStorage`` and a durable pipeline, landing only on ``save``), then
``campaign``, ``tick NODE N``, ``propose NODE PAYLOAD``, ``deliver-one MSG``,
``drop-one MSG``, ``duplicate MSG``, ``save``, ``crash``, ``restart``,
``foreign``; it ends with each node's ``status`` and ``delivered``. The
script is written with empty outputs: run it once with ``PAXOSTOB_REWRITE=1``
to fill them in, and read them before committing it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .describe import describe
from .model import Action, Scope

if TYPE_CHECKING:
    from .explore import Result

__all__ = ["command", "script"]


def command(a: Action) -> str:
    """The script command doing ``a``."""
    a = replace(a, saved=())
    if a.envelope is not None:
        verb = {"deliver": "deliver-one", "drop": "drop-one", "duplicate": "duplicate"}[a.kind]
        return f"{verb} {describe(a.envelope)}"
    if a.kind == "tick":
        return f"tick {a.node} {a.ticks}"
    if a.kind == "propose":
        return f"propose {a.node} {a.payload.decode()}"
    return f"{a.kind} {a.node}"


def commands(scope: Scope, actions: list[Action]) -> list[str]:
    """The script's commands: the network, ``durable``, the actions, the end state."""
    members = "".join(scope.members)
    settings = "" if scope.pre_vote else " pre_vote=0"
    out = [f"net {members}{settings}", "durable"]
    for a in actions:
        out.append(command(a))
        out += [f"save {m}" for m in a.saved]
    for m in scope.members:
        out += [f"status {m}", f"delivered {m}"]
    return out


def script(scope: Scope, actions: list[Action], result: Result | None = None) -> str:
    """The script text, its outputs empty (the module docstring)."""
    head = ["# Found by paxostob check (saves=" + scope.saves + ")."]
    if result is not None and result.failure is not None:
        detail = result.failure.detail.replace("\n", " ")
        head.append(f"# It breaks {result.failure.prop}: {detail}")
    head += [
        "# Outputs are empty: fill them in with",
        "#   PAXOSTOB_REWRITE=1 .venv/bin/pytest -q tests/core/test_datadriven.py",
        "# and read them before committing.",
        "",
    ]
    blocks = []
    for c in commands(scope, actions):
        blocks += [c, "----", ""]
    return "\n".join(head + blocks).rstrip("\n") + "\n"
