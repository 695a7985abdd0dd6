"""A linearizability checker for key-value histories (Wing & Gong's search, as porcupine runs it).

The model: every key is an independent register holding ``None`` (absent) or
an integer, with three operations, all of which a client can observe exactly:

- ``get(k) -> v | None``    (``GET k``)
- ``set(k, v) -> OK``       (``SET k v``)
- ``incr(k) -> v + 1``      (``INCR k``: the atomic read-modify-write; an absent
  key counts as 0, as in Redis)

A history is a list of ``Op``: what a client asked, what it got, and when it
invoked the operation and got the answer (``time.monotonic()``). An operation
whose outcome is unknown (an error, a timeout, a dropped connection: it may or
may not have been applied) has ``return_s = math.inf`` and no result, as
porcupine records it: it may take effect at any point after its invocation,
or never, and any result it would have had is accepted.

The history is linearizable when there is one total order of the operations
that respects real time (an operation that returned before another was invoked
comes first) in which every operation's result is what the model gives.
Linearizability is local (Herlihy & Wing), so each key is checked on its own.

The search (Wing & Gong 1993, with Lowe's memoization, as in porcupine): walk
the invocation/return events in time order; at an invocation, try to
linearize that operation now (the model accepts its result); at a return
whose operation is not linearized yet, undo the most recent choice. A set of
(linearized operations, state) already explored prunes repeats, which keeps
realistic histories fast; ``steps_max`` bounds the worst case, which is
exponential.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CheckResult",
    "CheckerGaveUpError",
    "Op",
    "check",
    "check_key",
    "step",
]

Kind = Literal["get", "set", "incr"]
State = int | None

#: Search steps per key before giving up (a history of a few hundred
#: operations per key needs a few thousand).
STEPS_MAX_DEFAULT = 2_000_000


class CheckerGaveUpError(Exception):
    """The search ran out of steps: the history is too concurrent to decide."""


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of one client: invoked at ``call_s``, answered at ``return_s``.

    ``arg`` is the value of a ``set``; ``result`` is what the client got: the
    value of a ``get`` (``None`` for no key), the new value of an ``incr``,
    ``None`` for a ``set``. ``return_s`` is ``math.inf`` when the outcome is
    unknown (then ``result`` is ignored).
    """

    client: int
    key: str
    kind: Kind
    arg: int | None
    result: int | None
    call_s: float
    return_s: float

    def __post_init__(self) -> None:
        assert self.call_s <= self.return_s, "an operation returns after its invocation"
        assert (self.kind == "set") == (self.arg is not None), "only set takes a value"

    @property
    def known(self) -> bool:
        return self.return_s != math.inf

    def __str__(self) -> str:
        what = f"{self.kind}({self.key}{'' if self.arg is None else f', {self.arg}'})"
        got = f" -> {self.result}" if self.known and self.kind != "set" else ""
        until = "?" if not self.known else f"{self.return_s:.6f}"
        return f"client {self.client}: {what}{got}  [{self.call_s:.6f}, {until}]"


def step(state: State, op: Op) -> tuple[bool, State]:
    """The register model: whether ``op`` may take effect in ``state``, and the next state."""
    if op.kind == "get":
        return (not op.known or op.result == state), state
    if op.kind == "set":
        return True, op.arg
    new = (0 if state is None else state) + 1
    return (not op.known or op.result == new), new


@dataclass(slots=True, eq=False)
class _Event:
    """A node of the doubly linked list of events (porcupine's ``node``)."""

    op: int
    time: float
    #: For an invocation, its return event; ``None`` for a return.
    match: _Event | None = None
    prev: _Event | None = None
    next: _Event | None = None


def _lift(call: _Event) -> None:
    """Unlink an invocation and its return (the operation is linearized)."""
    ret = call.match
    assert call.prev is not None and ret is not None and ret.prev is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Event) -> None:
    """Put back what ``_lift`` took out (in the reverse order)."""
    ret = call.match
    assert call.prev is not None and ret is not None and ret.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict; when not linearizable, the key and a readable account of why."""

    ok: bool
    ops: int
    keys: int
    key: str | None = None
    explanation: str = ""
    steps: int = 0
    best: tuple[Op, ...] = field(default=())

    def __str__(self) -> str:
        if self.ok:
            return f"linearizable: {self.ops} operations on {self.keys} keys"
        return f"NOT linearizable (key {self.key!r}):\n{self.explanation}"


def check_key(
    ops: Sequence[Op], *, initial: State = None, steps_max: int = STEPS_MAX_DEFAULT
) -> CheckResult:
    """Whether the operations on one key are linearizable from ``initial``."""
    key = ops[0].key if ops else None
    # Events in time order; at equal times invocations first, so touching
    # intervals count as concurrent (the permissive reading, as porcupine's).
    events = sorted(
        [(op.call_s, 0, i) for i, op in enumerate(ops)]
        + [(op.return_s, 1, i) for i, op in enumerate(ops)]
    )
    head = _Event(-1, -math.inf)
    calls: dict[int, _Event] = {}
    last = head
    for time_s, is_return, i in events:
        node = _Event(i, time_s, prev=last)
        if is_return:
            calls[i].match = node
        else:
            calls[i] = node
        last.next = node
        last = node

    state: State = initial
    linearized = 0
    stack: list[tuple[_Event, State]] = []
    seen: set[tuple[int, State]] = set()
    best: list[int] = []
    steps = 0
    entry = head.next
    while head.next is not None:
        steps += 1
        if steps > steps_max:
            raise CheckerGaveUpError(f"key {key!r}: {len(ops)} ops, gave up after {steps_max}")
        assert entry is not None, "every pending invocation has its return later in the list"
        if entry.match is not None:  # an invocation: try to linearize it here
            ok, after = step(state, ops[entry.op])
            if ok:
                chosen = linearized | 1 << entry.op
                if (chosen, after) not in seen:
                    seen.add((chosen, after))
                    stack.append((entry, state))
                    state, linearized = after, chosen
                    _lift(entry)
                    if len(stack) > len(best):
                        best = [e.op for e, _ in stack]
                    entry = head.next
                    continue
            entry = entry.next
        else:  # a return of an operation not linearized yet: undo the last choice
            if not stack:
                return _failure(ops, key, best, initial, steps)
            undone, state = stack.pop()
            linearized &= ~(1 << undone.op)
            _unlift(undone)
            entry = undone.next
    return CheckResult(True, len(ops), 1, key, steps=steps)


def _failure(
    ops: Sequence[Op], key: str | None, best: list[int], initial: State, steps: int
) -> CheckResult:
    order = [ops[i] for i in best]
    after: list[State] = []
    state = initial
    for op in order:
        _, state = step(state, op)
        after.append(state)
    lines = [f"the longest linearizable order found takes {len(order)} of {len(ops)} operations:"]
    if len(order) > 10:
        lines.append("  ...")
    lines += [f"  {op}    (then {st})" for op, st in list(zip(order, after, strict=True))[-10:]]
    in_order = set(best)
    rest = sorted((op for i, op in enumerate(ops) if i not in in_order), key=lambda o: o.call_s)
    lines.append("and none of the others can come next (earliest invoked first):")
    lines += [f"  {op}" for op in rest[:10]]
    return CheckResult(False, len(ops), 1, key, "\n".join(lines), steps, tuple(order))


def check(history: Iterable[Op], *, steps_max: int = STEPS_MAX_DEFAULT) -> CheckResult:
    """Whether ``history`` is linearizable; every key starts absent."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    total, steps = 0, 0
    for key in sorted(by_key):
        result = check_key(by_key[key], steps_max=steps_max)
        if not result.ok:
            return result
        total += result.ops
        steps += result.steps
    return CheckResult(True, total, len(by_key), steps=steps)
