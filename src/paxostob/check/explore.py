"""The search: every state reachable within a ``Scope``, each checked.

Theory of operation: ``explore(scope)`` starts from ``start_world(scope)``
and applies every enabled action (``World.enabled``) to every state, each to
its own copy (``World.copy``, a pickle round trip). A state is kept once,
by its canonical key (``canon.key``); a successor outside the scope's bounds
(``World.out_of_scope``) is cut. Every new state is checked
(``properties.check_safety``; every ``liveness_every``-th one also with the
bounded liveness check): the first violation stops the search with the
actions that lead to it from the start.

- ``bfs``: breadth-first, level by level: the counterexample found is a
  shortest one within the scope. States wait in the queue pickled.
- ``dfs``: depth-first to ``scope.depth``; a state is expanded again only
  when reached by a shorter path than before (so every state within the
  depth is expanded with all the depth it can have left). Memory is the
  path plus the table of keys; counterexamples are not the shortest.

Reductions: states are merged by key; no symmetry reduction (replica ids
order ballots, ``Ballot(round, node_id)``, so swapping two replicas does not
give an equivalent state), and no partial-order reduction (docs/design.md,
'Model checking', says why).
"""

from __future__ import annotations

import pickle
import resource
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..sim.checkers import CheckFailure
from .canon import key
from .model import Action, Scope, World
from .properties import check_liveness, check_safety
from .scenario import run_commands

__all__ = ["Result", "explore", "replay", "start_world"]

#: The scripted start ``elected`` runs at most this many rounds of its schedule
#: (an election of five replicas takes about twenty).
_START_ROUNDS_MAX = 50
#: States a search keeps at most by default: each waiting state is about 13 KiB
#: pickled (three replicas), so a breadth-first frontier of them stays within a
#: few GiB.
STATES_MAX_DEFAULT = 200_000


@dataclass
class Result:
    scope: Scope
    mode: str
    states: int = 0
    transitions: int = 0
    #: Successors cut by a bound of the scope (ballots, messages in flight).
    cut: int = 0
    #: The deepest level reached (bfs: fully explored through it, unless stopped).
    depth: int = 0
    seconds: float = 0.0
    #: CPU time of this process (on a shared machine, wall time says little).
    cpu_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    #: The scripted start's actions (``elected``), then the counterexample's.
    prefix: list[Action] = field(default_factory=list)
    trace: list[Action] | None = None
    failure: CheckFailure | None = None
    #: Stopped by ``states_max`` before the scope was exhausted.
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.failure is None


def start_world(scope: Scope) -> tuple[World, list[Action]]:
    """The first state, and the actions that led to it from boot (``elected``, ``script``)."""
    w = World.boot(scope)
    done: list[Action] = []
    if scope.start == "elected":
        _elect(w, scope, done)
        for spare in scope.members[scope.replicas :][: scope.learners]:
            _add_learner(w, scope, spare, done)
    if scope.script:
        done += run_commands(w, list(scope.script))
    return w, done


def _elect(w: World, scope: Scope, done: list[Action]) -> None:
    """The first replica campaigns; every save lands and every message is delivered."""

    def do(a: Action) -> None:
        applied = w.apply(a)
        assert applied is not None
        done.append(applied)

    # The first replica campaigns; then every save lands and every message
    # is delivered, oldest first, until nothing is left.
    first = scope.members[0]
    do(Action("campaign", first))
    _settle(w, scope, do)
    assert w.leaders() == [first], w.summary()


def _settle(w: World, scope: Scope, do: Callable[[Action], None]) -> None:
    """Every save lands and every message is delivered, oldest first, until nothing is left."""
    for _ in range(_START_ROUNDS_MAX):
        for m in scope.members:
            if w.saving[m] is not None:
                do(Action("save", m))
        if not w.net:
            if any(w.saving[m] is not None for m in scope.members):
                continue
            return
        env = w.net[0]
        do(Action("deliver", env.dst, env))
    raise AssertionError(f"the scripted start did not settle: {w.summary()}")


def _add_learner(w: World, scope: Scope, spare: str, done: list[Action]) -> None:
    """The leader adds ``spare`` as a learner; runs until it is in effect and has answered."""

    def do(a: Action) -> None:
        applied = w.apply(a)
        assert applied is not None, (a, w.summary())
        done.append(applied)

    leader = scope.members[0]
    r = w.replicas[leader]
    assert r is not None
    do(Action("change", leader, op="add", target=spare))
    _settle(w, scope, do)
    history = r.membership
    assert spare in history.newest.learners, w.summary()
    assert history.pending(r.log.decided_through) is None, w.summary()
    lead = r.election.leading
    assert lead is not None
    if spare not in lead.acked:
        # A heartbeat round: the learner answers, so the leader may promote it.
        do(Action("tick", leader))
        _settle(w, scope, do)
    assert spare in lead.acked, w.summary()
    # Not counted among the scope's changes: the start is not part of the search.
    w.counts.changes = 0


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _check(w: World, n: int, liveness_every: int, liveness_rounds: int) -> None:
    check_safety(w)
    if liveness_every and n % liveness_every == 0:
        check_liveness(w, liveness_rounds)


def explore(
    scope: Scope,
    *,
    mode: str = "bfs",
    states_max: int = STATES_MAX_DEFAULT,
    liveness_every: int = 0,
    liveness_rounds: int = 300,
    progress: Callable[[Result], None] | None = None,
) -> Result:
    """Search the scope (the module docstring); stops at the first violation."""
    if mode not in ("bfs", "dfs"):
        raise ValueError("mode: bfs or dfs")
    started, cpu = time.monotonic(), time.process_time()
    w0, prefix = start_world(scope)
    result = Result(scope, mode, prefix=prefix)
    try:
        _check(w0, 0, liveness_every, liveness_rounds)
    except CheckFailure as f:
        result.failure, result.trace = f, []
    else:
        if mode == "bfs":
            _bfs(w0, result, states_max, liveness_every, liveness_rounds, progress)
        else:
            _dfs(w0, result, states_max, liveness_every, liveness_rounds)
    result.seconds = time.monotonic() - started
    result.cpu_seconds = time.process_time() - cpu
    result.peak_rss_mib = _peak_rss_mib()
    return result


def _successors(w: World, result: Result, blob: bytes | None = None) -> list[tuple[Action, World]]:
    """``w``'s successors within the scope (``blob``: ``w`` pickled, if at hand)."""
    out = []
    if blob is None:
        blob = pickle.dumps(w, pickle.HIGHEST_PROTOCOL)
    for a in w.enabled():
        nxt: World = pickle.loads(blob)
        done = nxt.apply(a)
        result.transitions += 1
        if done is None:
            continue
        if nxt.out_of_scope():
            result.cut += 1
            continue
        out.append((done, nxt))
    return out


def _bfs(
    w0: World,
    result: Result,
    states_max: int,
    liveness_every: int,
    liveness_rounds: int,
    progress: Callable[[Result], None] | None,
) -> None:
    seen = {key(w0)}
    #: State number -> (its parent's number, the action from it); 0 is the start.
    parents: list[tuple[int, Action | None]] = [(-1, None)]
    queue: deque[tuple[int, int, bytes]] = deque(
        [(0, 0, pickle.dumps(w0, pickle.HIGHEST_PROTOCOL))]
    )
    result.states = 1
    while queue:
        index, depth, blob = queue.popleft()
        if depth > result.depth and progress is not None:
            progress(result)  # every state through ``result.depth + 1`` is checked
        result.depth = max(result.depth, depth)
        if depth >= result.scope.depth:
            continue
        w: World = pickle.loads(blob)
        for a, nxt in _successors(w, result, blob):
            k = key(nxt)
            if k in seen:
                continue
            seen.add(k)
            parents.append((index, a))
            n = len(parents) - 1
            result.states += 1
            try:
                _check(nxt, n, liveness_every, liveness_rounds)
            except CheckFailure as f:
                result.failure = f
                result.trace = _path(parents, n)
                result.depth = depth + 1
                return
            if result.states >= states_max:
                result.truncated = True
                return
            queue.append((n, depth + 1, pickle.dumps(nxt, pickle.HIGHEST_PROTOCOL)))


def _path(parents: list[tuple[int, Action | None]], n: int) -> list[Action]:
    out: list[Action] = []
    while n > 0:
        n, a = parents[n]
        assert a is not None
        out.append(a)
    out.reverse()
    return out


def _dfs(
    w0: World, result: Result, states_max: int, liveness_every: int, liveness_rounds: int
) -> None:
    #: Key -> the shallowest depth the state was expanded at.
    best: dict[bytes, int] = {key(w0): 0}
    result.states = 1
    path: list[Action] = []
    # Each frame: the state's successors still to try, and its depth.
    stack: list[tuple[list[tuple[Action, World]], int]] = [(_successors(w0, result), 0)]
    while stack:
        todo, depth = stack[-1]
        if not todo:
            stack.pop()
            if path:
                path.pop()
            continue
        a, nxt = todo.pop(0)
        d = depth + 1
        k = key(nxt)
        old = best.get(k)
        if old is not None and old <= d:
            continue
        if old is None:
            result.states += 1
            try:
                _check(nxt, result.states, liveness_every, liveness_rounds)
            except CheckFailure as f:
                result.failure, result.trace = f, [*path, a]
                return
            if result.states >= states_max:
                result.truncated = True
                return
        best[k] = d
        result.depth = max(result.depth, d)
        if d < result.scope.depth:
            path.append(a)
            stack.append((_successors(nxt, result), d))


def replay(scope: Scope, actions: list[Action]) -> tuple[World, CheckFailure | None]:
    """Apply ``actions`` from the scope's start; the world, and the first property broken."""
    w, _ = start_world(scope)
    for a in actions:
        if w.apply(a) is None:
            raise ValueError(f"{a} does nothing here")
        try:
            check_safety(w)
        except CheckFailure as f:
            return w, f
    return w, None
