"""A canonical, deterministic fingerprint of a ``World``: equal states, equal keys.

Theory of operation: ``key(world)`` walks the world's object graph (the
replicas with every part they are made of, the pipelines, the stores, the
messages in flight, the history) and builds one nested tuple, then hashes its
``repr`` with BLAKE2b (16 bytes). The walk is generic, so a field added to the
core is in the key without anyone remembering to add it:

- values (numbers, strings, bytes, enums, frozen dataclasses such as messages,
  ballots and proposals, named tuples such as proposal ids) stand for
  themselves; their ``repr`` is their content;
- lists, tuples and deques keep their order; dicts and sets are sorted by the
  ``repr`` of their keys, so the order things were inserted in (which Python's
  dicts keep, and sets of strings scramble by the per-process hash seed) does
  not split one state in two;
- other objects are their class name and their fields (``__slots__`` and
  ``__dict__``), sorted by name; an object reached twice (the parts of a
  replica share its log and outbox) is named by the order it was first met;
- a bound method is its name and its object; a ``random.Random`` its state;
- the messages in flight are a multiset (sorted).

Left out, because no behaviour depends on them: counters only reported
(``ignored``, ``elections``, ``pre_votes_lost``, a pipeline's ``saves`` and
``saved_readies``, a store's ``sync_count``), and the history's clock ticks
(``now``, and each event's tick in the history: the properties compare
ticks only of past events with the present, so two paths to one state with
different timings have the same future verdicts).

Two states that differ only in how long ago something happened on a node's
own clock (``_now`` and its timers) are *different* here: timers are part of
the state. That is sound, and costs states.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import types
from collections import deque
from enum import Enum
from typing import TYPE_CHECKING, Any

from ..sim.checkers import TobHistory

if TYPE_CHECKING:
    from .model import World

__all__ = ["key"]

#: Fields that only count things for reports: no behaviour depends on them.
IGNORED_FIELDS = frozenset(
    {
        "ignored",
        "elections",
        "pre_votes_lost",
        "saves",
        "saved_readies",
        "_sync_count",
        "now",
        # The world's history: walked without its ticks (``_history``); the
        # messages in flight: walked as a multiset (``key``).
        "history",
        "net",
    }
)
_VALUE_TYPES = frozenset({int, str, bytes, bool, float, type(None)})


#: Per class: its kind (``value``, ``object``) and its field names, found once.
_CLASSES: dict[type, tuple[str, str, tuple[str, ...]]] = {}


def _class_info(t: type) -> tuple[str, str, tuple[str, ...]]:
    info = _CLASSES.get(t)
    if info is None:
        names: set[str] = set()
        for klass in t.__mro__:
            slots = getattr(klass, "__slots__", ())
            names.update((slots,) if isinstance(slots, str) else slots)
        names -= IGNORED_FIELDS | {"__dict__", "__weakref__"}
        params = getattr(t, "__dataclass_params__", None)
        value = params is not None and params.frozen and t.__hash__ is not None
        if value:
            names = {f.name for f in dataclasses.fields(t)}
        info = (t.__name__, "value" if value else "object", tuple(sorted(names)))
        _CLASSES[t] = info
    return info


class _Walker:
    def __init__(self) -> None:
        self.seen: dict[int, int] = {}
        self.keep: list[object] = []  # holds every walked object alive: ids stay unique

    def walk(self, obj: Any) -> Any:
        t = type(obj)
        if t in _VALUE_TYPES:
            return obj
        if t is tuple or t is list or t is deque:
            return tuple([self.walk(x) for x in obj])
        if isinstance(obj, tuple):
            # A named tuple (a proposal id): a value, like a frozen dataclass.
            return (t.__name__, *[self.walk(x) for x in obj])
        if t is dict:
            items = [(repr(self.walk(k)), self.walk(v)) for k, v in obj.items()]
            items.sort(key=_first)
            return ("D", tuple(items))
        if t is set or t is frozenset:
            return ("S", tuple(sorted([repr(self.walk(x)) for x in obj])))
        if isinstance(obj, Enum):
            return ("E", obj.value)
        if t is types.MethodType:
            return ("M", obj.__func__.__name__, self.walk(obj.__self__))
        name, kind, fields = _class_info(t)
        if kind == "value":
            # A value (a message, a ballot, a proposal): its content, in field order.
            return (name, *[self.walk(getattr(obj, f)) for f in fields])
        ident = id(obj)
        at = self.seen.get(ident)
        if at is not None:
            return ("@", at)
        self.seen[ident] = len(self.seen)
        self.keep.append(obj)
        if isinstance(obj, random.Random):
            return ("R", hashlib.blake2b(repr(obj.getstate()).encode(), digest_size=16).digest())
        names = fields
        if hasattr(obj, "__dict__"):
            names = tuple(sorted(set(fields) | (obj.__dict__.keys() - IGNORED_FIELDS)))
        out = []
        for f in names:
            try:
                value = getattr(obj, f)
            except AttributeError:
                continue
            out.append((f, self.walk(value)))
        return (name, tuple(out))


def _first(kv: tuple[str, Any]) -> str:
    return kv[0]


def _history(h: TobHistory) -> Any:
    """The history without its ticks: what each life delivered, decided, promised, acked."""

    def voters(table: dict[Any, tuple[Any, dict[str, int]]]) -> Any:
        return {k: (value, frozenset(who)) for k, (value, who) in table.items()}

    lives = {
        node: [
            (
                life.ended is None,
                life.recovered,
                [d for _, d in life.deliveries],
                [e for _, e in life.decided],
                life.promised_sent[0],
                {slot: ballot for slot, (ballot, _) in life.acked.items()},
            )
            for life in trace.lives
        ]
        for node, trace in h.traces.items()
    }
    broadcasts = {pid: b.payload for pid, b in h.broadcasts.items()}
    conflicts = [c[:4] for c in h.conflicts]
    return (lives, broadcasts, voters(h.acceptances), voters(h.durable or {}), conflicts)


def key(world: World) -> bytes:
    """16 bytes that are equal for equal worlds (the module docstring says what counts)."""
    walker = _Walker()
    net = sorted(repr(walker.walk(e)) for e in world.net)
    tree = (walker.walk(world), net, walker.walk(_history(world.history)))
    return hashlib.blake2b(repr(tree).encode(), digest_size=16).digest()
