"""A counterexample as a data-driven scenario script (``tests/core/testdata/*.txt``).

Each action becomes one command of the script language
(``tests/core/datadriven.py``): ``durable`` first (saves through a
``MemoryStorage`` and a durable pipeline, landing only on ``save``), then
``campaign``, ``tick NODE N``, ``propose NODE PAYLOAD``, ``deliver-one MSG``,
``drop-one MSG``, ``duplicate MSG``, ``save``, ``crash``, ``restart``,
``foreign``; it ends with each node's ``status`` and ``delivered``. The
script is written with empty outputs: run it once with ``PAXOSTOB_REWRITE=1``
to fill them in, and read them before committing it.

The data-driven scripts have no membership (no spares, no alpha, no
``change``): a scope with them is not written as one (``script`` raises
``ValueError``). The checker's own start scripts (``--script``) take
``change NODE OP TARGET`` too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .describe import describe
from .model import Action, Scope, World

if TYPE_CHECKING:
    from .explore import Result

__all__ = ["action", "command", "script"]

#: Script commands that set the network up or only print: not actions.
_NOT_ACTIONS = frozenset({"net", "durable", "status", "delivered", "acceptor"})


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
    if a.kind == "change":
        return f"change {a.node} {a.op} {a.target}"
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
    if scope.spares or scope.alpha != Scope().alpha or any(a.kind == "change" for a in actions):
        raise ValueError(
            "a data-driven scenario script has no membership changes, spares or alpha: "
            "the trace above is the counterexample"
        )
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


def action(world: World, text: str) -> Action | None:
    """The action a script command does in ``world`` (None: a command that is no action).

    The inverse of ``command``: ``deliver-one``, ``drop-one`` and ``duplicate``
    name a message in flight by its printed form. Raises ``ValueError`` for a
    command that does not apply here.
    """
    words = text.split()
    if not words or words[0] in _NOT_ACTIONS:
        return None
    verb, rest = words[0], words[1:]
    kinds = {"deliver-one": "deliver", "drop-one": "drop", "duplicate": "duplicate"}
    if verb in kinds:
        wanted = " ".join(rest)
        for env in world.net:
            if describe(env) == wanted:
                return Action(kinds[verb], env.dst, env)
        raise ValueError(f"no message in flight is {wanted!r}")
    known = ("propose", "tick", "save", "crash", "restart", "foreign", "campaign", "change")
    if verb not in known or not rest:
        raise ValueError(f"not a command of a checker's script: {text!r}")
    node = rest[0]
    if node not in world.members:
        raise ValueError(f"{text!r}: no node {node!r} (members: {' '.join(world.members)})")
    if (world.replicas[node] is None) != (verb == "restart"):
        state = "crashed" if verb != "restart" else "not crashed"
        raise ValueError(f"{text!r}: {node} is {state}")
    if verb == "propose":
        if len(rest) != 2:
            raise ValueError(f"{text!r}: propose NODE PAYLOAD")
        return Action("propose", node, payload=rest[1].encode())
    if verb == "change":
        if len(rest) != 3:
            raise ValueError(f"{text!r}: change NODE OP TARGET (OP: add, promote, remove)")
        return Action("change", node, op=rest[1], target=rest[2])
    return Action(verb, node)


def script_commands(text: str) -> list[str]:
    """The commands of a scenario script: each line followed by ``----`` (outputs skipped)."""
    lines = text.split("\n")
    return [
        line
        for i, line in enumerate(lines[:-1])
        if lines[i + 1] == "----" and line.strip() and not line.startswith("#")
    ]


def run_commands(world: World, commands: list[str]) -> list[Action]:
    """Apply script commands to ``world``; the actions done.

    A ``save`` of a node with no save in flight is skipped: with forced saves
    folded into the action before it (``Action.saved``), it already landed.
    """
    done: list[Action] = []
    for line in commands:
        a = action(world, line)
        if a is None:
            continue
        if a.kind == "save" and world.saving.get(a.node) is None:
            continue
        if a.kind == "tick":
            # ``tick NODE N``: exactly N ticks, as the script language does.
            count = int(line.split()[2]) if len(line.split()) > 2 else 1
            r = world.replicas[a.node]
            if r is None:
                raise ValueError(f"{line!r}: {a.node} is crashed")
            applied = world.apply(a)
            if applied is None or applied.ticks != count:
                raise ValueError(f"{line!r}: the timer fires after {applied and applied.ticks}")
        else:
            applied = world.apply(a)
        if applied is None:
            raise ValueError(f"{line!r} does nothing here")
        done.append(applied)
    return done
