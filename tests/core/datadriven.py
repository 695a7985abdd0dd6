"""Data-driven scenarios for the Multi-Paxos core: scripts in ``tests/core/testdata/*.txt``.

A script is a sequence of blocks, each a command line, a ``----`` line, the
output the command must print, and a blank line::

    # Lines starting with '#' (and blank lines) between blocks are comments.

    campaign a
    ----
    a->b Prepare 1.a from #1
    a->c Prepare 1.a from #1

``test_datadriven.py`` runs every script and compares each block's output
with what the commands print now. To accept new outputs (after a deliberate
change of behaviour; read the diff before committing it), rewrite the
expected outputs in place::

    PAXOSTOB_REWRITE=1 .venv/bin/pytest -q tests/core/test_datadriven.py

The network is explicit, as in ``scenario.Net``'s hand-driven style: a
message a replica sends waits *in flight* until a ``deliver`` or
``stabilize`` hands it over, so a script says which message arrives when.
Readys go through ``core.pipeline.Pipeline`` without storage (every Ready
is durable once handled); the durable part of each Ready (promise, accepted
and decided entries) is kept per node as its disk, which ``restart`` hands
back through the ``Restore`` event.

Commands (NODE is a member's one-letter id):

``net MEMBERS [KEY=VALUE ...]``
    A new network of replicas ``MEMBERS`` (e.g. ``abc``); keys are
    ``LogConfig`` fields (ints), e.g. ``batch_count_max=1``. First in a file.
``campaign NODE`` / ``propose NODE PAYLOAD`` / ``tick NODE [N]``
    Step ``Campaign``, ``Propose`` or ``N`` (default 1) ``Tick`` events at
    NODE; print what it sent (and delivered).
``deliver [FROM->TO | all]``
    Hand every message in flight (or those from FROM to TO) to its
    destination, then print what the receivers sent. Messages sent meanwhile
    stay in flight for a later command.
``drop [FROM->TO | all]``
    Lose messages in flight; prints them.
``stabilize``
    ``deliver all`` until nothing is in flight (at most 100 rounds).
``partition A B | C``
    Messages between nodes of different groups are lost when delivered
    (``lost:`` lines); a node named in no group reaches every node.
``heal``
    Undo the partition.
``crash NODE``
    NODE stops: it gets no events, messages to it are lost, and its state
    in memory is gone. Its disk stays.
``restart NODE``
    A new replica for NODE, its first event ``Restore`` from its disk (the
    incarnation grows with every restart); it delivers its decided log again.
``status NODE`` / ``acceptor NODE`` / ``delivered NODE``
    Role, leader and ballots; the acceptor's promise and accepted entries;
    what NODE delivered, one ``position sender payload`` per line.

The model checker's counterexamples (``paxostob check --scenario``) use
these too:

``durable``
    From here on each node saves through a ``MemoryStorage`` and a durable
    ``Pipeline``: a save lands only on ``save NODE`` (which prints the late
    messages it releases); ``crash`` loses the save in flight and what was
    not synced, and the messages in flight to the node; ``restart`` reads
    the store back.
``deliver-one MSG`` / ``drop-one MSG`` / ``duplicate MSG``
    Deliver, lose or copy the first message in flight printed as ``MSG``
    (e.g. ``a->b Accept 1.a #1 ['x'] commit=0``).
``save NODE``
    The save NODE has in flight lands.
``foreign NODE``
    NODE receives a ``Decided`` of another instance sharing its transport
    (``paxostob.check.model.foreign_message``).

Output lines: ``a->b Accept 1.a #1 ['x'] commit=0`` is a message sent
(``scenario.show``), ``a delivers #1 a:'x'`` a delivery, ``ok`` a command
that printed nothing. Ballots print as ``round.node``; ``#n`` is a slot.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paxostob.check.model import CLUSTER_ID, foreign_message
from paxostob.core.events import (
    AcceptedEntry,
    Campaign,
    Delivered,
    Propose,
    Ready,
    Receive,
    Restore,
    Tick,
)
from paxostob.core.messages import Envelope
from paxostob.core.multipaxos import LogConfig, MultiPaxosReplica
from paxostob.core.pipeline import Complete, Pipeline
from paxostob.core.types import ZERO_BALLOT, Ballot, Batch, DecidedEntry
from paxostob.storage.base import has_durable_part
from paxostob.storage.memory import MemoryStorage

from .scenario import payloads, show

__all__ = ["Block", "Disk", "Script", "parse", "render", "run_script"]

#: ``stabilize`` gives up after this many delivery rounds: a script that
#: never quiesces (a livelock) fails instead of hanging the test run.
STABILIZE_ROUNDS_MAX = 100

SEPARATOR = "----"


@dataclass
class Block:
    #: Comment and blank lines before the command, kept as written.
    preamble: list[str]
    command: str
    expected: list[str]
    line: int


@dataclass
class Script:
    blocks: list[Block]
    #: Comment and blank lines after the last block.
    trailer: list[str]


def parse(text: str, name: str = "<script>") -> Script:
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    blocks: list[Block] = []
    pending: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            pending.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != SEPARATOR:
            raise ValueError(f"{name}:{i + 1}: command {line!r} is not followed by {SEPARATOR!r}")
        start = i + 1
        i += 2
        expected: list[str] = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        if i < len(lines):
            i += 1  # the blank line that ends the block
        blocks.append(Block(pending, line, expected, start))
        pending = []
    return Script(blocks, pending)


def render(script: Script, outputs: list[list[str]]) -> str:
    """The script text with ``outputs`` as the blocks' expected outputs."""
    out: list[str] = []
    for block, lines in zip(script.blocks, outputs, strict=True):
        out.extend(block.preamble)
        out.append(block.command)
        out.append(SEPARATOR)
        out.extend(lines)
        out.append("")
    out.extend(script.trailer)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


@dataclass
class Disk:
    """What a replica's Readys asked to persist: what ``Restore`` gives back."""

    promised: Ballot = ZERO_BALLOT
    accepted: dict[int, tuple[Ballot, Batch]] = field(default_factory=dict)
    decided: dict[int, Batch] = field(default_factory=dict)
    incarnation: int = 0


def _link(spec: str) -> tuple[str, str] | None:
    if spec == "all":
        return None
    src, sep, dst = spec.partition("->")
    if not sep or not src or not dst:
        raise ValueError(f"expected FROM->TO or 'all', got {spec!r}")
    return src, dst


class Driver:
    """The network a script drives; ``run(command)`` returns its output lines."""

    def __init__(self) -> None:
        self.members: tuple[str, ...] = ()
        self.config = LogConfig()
        self.r: dict[str, MultiPaxosReplica] = {}
        self.disk: dict[str, Disk] = {}
        self.rows: dict[str, list[str]] = {}
        self.crashed: set[str] = set()
        self.groups: list[set[str]] = []
        self.in_flight: list[Envelope] = []
        #: ``durable``: each node's store, pipeline and the save it has in flight.
        self.stores: dict[str, MemoryStorage] | None = None
        self.pipelines: dict[str, Pipeline] = {}
        self.saving: dict[str, Ready | None] = {}

    # ------------------------------------------------------------ plumbing

    def node(self, name: str) -> MultiPaxosReplica:
        if name not in self.r:
            raise ValueError(f"no node {name!r} (members: {' '.join(self.members)})")
        return self.r[name]

    def live(self, name: str) -> MultiPaxosReplica:
        if name in self.crashed:
            raise ValueError(f"node {name} is crashed (restart it first)")
        return self.node(name)

    def drain(self, name: str) -> list[str]:
        """Take ``name``'s Readys: record its disk, send its messages, print both."""
        if self.stores is not None:
            return self.drain_durable(name)
        replica = self.r[name]
        pipeline = Pipeline(replica, durable=False)
        disk = self.disk[name]
        out: list[str] = []
        while pipeline.can_take():
            rd = pipeline.take()
            if rd.promised is not None:
                disk.promised = rd.promised
            for a in rd.accepted:
                disk.accepted[a.slot] = (a.ballot, a.value)
            for e in rd.decided:
                disk.decided[e.slot] = e.value
                disk.accepted.pop(e.slot, None)
            for env in (*rd.early, *rd.messages):
                self.in_flight.append(env)
                out.append(show(env))
            for d in rd.deliveries:
                # The TOB contract (events.py): gap-free positions from 1.
                assert d.delivery.slot == len(self.rows[name]) + 1, (name, d, self.rows[name])
                row = f"#{d.delivery.slot} {d.delivery.sender}:{d.delivery.payload.decode()!r}"
                self.rows[name].append(row)
                out.append(f"{name} delivers {row}")
            pipeline.handled(rd)
        return out

    def _row(self, name: str, d: Delivered) -> str:
        assert d.delivery.slot == len(self.rows[name]) + 1, (name, d, self.rows[name])
        row = f"#{d.delivery.slot} {d.delivery.sender}:{d.delivery.payload.decode()!r}"
        self.rows[name].append(row)
        return f"{name} delivers {row}"

    def drain_durable(self, name: str) -> list[str]:
        """``drain`` with ``durable``: late messages wait for the save (as paxostob check does)."""
        pipeline = self.pipelines[name]
        out: list[str] = []
        while pipeline.can_take():
            rd = pipeline.take()
            at_once = pipeline.completes_at_once(rd)
            for env in (*rd.early, *rd.messages) if at_once else rd.early:
                self.in_flight.append(env)
                out.append(show(env))
            out.extend(self._row(name, d) for d in rd.deliveries)
            pipeline.handled(rd)
            out.extend(self.pump(name))
        return out

    def pump(self, name: str) -> list[str]:
        pipeline = self.pipelines[name]
        out: list[str] = []
        while self.saving[name] is None:
            action = pipeline.poll()
            if action is None:
                break
            if isinstance(action, Complete):
                for rd in action.readies:
                    for env in rd.messages:
                        self.in_flight.append(env)
                        out.append(show(env))
                continue
            self.saving[name] = action.ready
        return out

    def cmd_durable(self) -> list[str]:
        self.stores = {}
        for m in self.members:
            self.stores[m] = store = MemoryStorage(incarnation_base=1)
            store.open(CLUSTER_ID, m, bootstrap=self.members)
            self.pipelines[m] = Pipeline(self.r[m], durable=True)
            self.saving[m] = None
        return []

    def cmd_save(self, name: str) -> list[str]:
        self.live(name)
        rd = self.saving[name]
        assert self.stores is not None and rd is not None, f"{name} has no save in flight"
        self.saving[name] = None
        if has_durable_part(rd):
            self.stores[name].save(rd)
        self.pipelines[name].saved()
        return self.pump(name) + self.drain(name)

    def _find(self, text: str) -> Envelope:
        for env in self.in_flight:
            if show(env) == text:
                return env
        raise ValueError(f"no message in flight is {text!r}")

    def cmd_deliver_one(self, *words: str) -> list[str]:
        env = self._find(" ".join(words))
        self.in_flight.remove(env)
        if self.cut(env):
            return [f"lost: {show(env)}"]
        self.live(env.dst).step(Receive(env))
        return self.drain(env.dst)

    def cmd_drop_one(self, *words: str) -> list[str]:
        env = self._find(" ".join(words))
        self.in_flight.remove(env)
        return [f"dropped: {show(env)}"]

    def cmd_duplicate(self, *words: str) -> list[str]:
        env = self._find(" ".join(words))
        self.in_flight.append(env)
        return [f"copied: {show(env)}"]

    def cmd_foreign(self, name: str) -> list[str]:
        sender = next(m for m in self.members if m != name)
        self.live(name).step(Receive(Envelope(name, foreign_message(sender))))
        return self.drain(name)

    def cut(self, env: Envelope) -> bool:
        src, dst = env.message.sender, env.dst
        if dst in self.crashed:
            return True
        side = {m: i for i, g in enumerate(self.groups) for m in g}
        # A node named in no group of the partition still reaches everyone.
        return src in side and dst in side and side[src] != side[dst]

    def deliver(self, spec: str) -> list[str]:
        link = _link(spec)
        now = [e for e in self.in_flight if link is None or (e.message.sender, e.dst) == link]
        self.in_flight = [e for e in self.in_flight if e not in now]
        out: list[str] = []
        receivers: list[str] = []
        for env in now:
            if self.cut(env):
                out.append(f"lost: {show(env)}")
                continue
            self.r[env.dst].step(Receive(env))
            if env.dst not in receivers:
                receivers.append(env.dst)
        for name in sorted(receivers):
            out.extend(self.drain(name))
        return out

    # ------------------------------------------------------------ commands

    def run(self, command: str) -> list[str]:
        words = command.split()
        op, args = words[0], words[1:]
        handler = getattr(self, f"cmd_{op.replace('-', '_')}", None)
        if handler is None:
            raise ValueError(f"unknown command {op!r}")
        if op != "net" and not self.members:
            raise ValueError("the first command must be 'net MEMBERS'")
        out: list[str] = handler(*args)
        return out or ["ok"]

    def cmd_net(self, members: str, *settings: str) -> list[str]:
        # LogConfig fields of several types; the ints a script may set are
        # checked by LogConfig itself (and an unknown key is a TypeError).
        values: dict[str, Any] = {}
        for s in settings:
            key, _, value = s.partition("=")
            values[key] = int(value)
        self.config = dataclasses.replace(LogConfig(), **values)
        self.members = tuple(members)
        for m in self.members:
            self.r[m] = self._replica(m, 0)
            self.disk[m] = Disk()
            self.rows[m] = []
        return []

    def _replica(self, name: str, incarnation: int) -> MultiPaxosReplica:
        # A fixed seed per node and life: election timeouts are the same on every run.
        rng = random.Random(f"{name}/{incarnation}")
        return MultiPaxosReplica(name, self.members, rng, config=self.config)

    def cmd_campaign(self, name: str) -> list[str]:
        self.live(name).step(Campaign())
        return self.drain(name)

    def cmd_propose(self, name: str, payload: str) -> list[str]:
        self.live(name).step(Propose(payload.encode()))
        return self.drain(name)

    def cmd_tick(self, name: str, count: str = "1") -> list[str]:
        replica = self.live(name)
        out: list[str] = []
        for _ in range(int(count)):
            replica.step(Tick())
            out.extend(self.drain(name))
        return out

    def cmd_deliver(self, spec: str = "all") -> list[str]:
        return self.deliver(spec)

    def cmd_drop(self, spec: str = "all") -> list[str]:
        link = _link(spec)
        gone = [e for e in self.in_flight if link is None or (e.message.sender, e.dst) == link]
        self.in_flight = [e for e in self.in_flight if e not in gone]
        return [f"dropped: {show(e)}" for e in gone]

    def cmd_stabilize(self) -> list[str]:
        out: list[str] = []
        for _ in range(STABILIZE_ROUNDS_MAX):
            if not self.in_flight:
                return out
            out.extend(self.deliver("all"))
        raise AssertionError(f"not quiet after {STABILIZE_ROUNDS_MAX} rounds")

    def cmd_partition(self, *words: str) -> list[str]:
        groups = [set(g.split()) for g in " ".join(words).split("|")]
        for g in groups:
            for name in g:
                self.node(name)
        self.groups = groups
        return []

    def cmd_heal(self) -> list[str]:
        self.groups = []
        return []

    def cmd_crash(self, name: str) -> list[str]:
        self.live(name)
        self.crashed.add(name)
        if self.stores is None:
            return []
        # A power loss: the save in flight and what was not synced are gone,
        # and so is what was on its way to the node (a connection reset).
        self.stores[name].crash(0)
        self.saving[name] = None
        lost = [e for e in self.in_flight if e.dst == name]
        self.in_flight = [e for e in self.in_flight if e.dst != name]
        return [f"lost: {show(e)}" for e in lost]

    def cmd_restart(self, name: str) -> list[str]:
        if self.stores is not None:
            return self.restart_durable(name)
        self.node(name)
        disk = self.disk[name]
        disk.incarnation += 1
        self.crashed.discard(name)
        replica = self.r[name] = self._replica(name, disk.incarnation)
        self.rows[name] = []
        replica.step(
            Restore(
                promised=disk.promised,
                accepted=[AcceptedEntry(s, b, v) for s, (b, v) in sorted(disk.accepted.items())],
                decided=[DecidedEntry(s, v) for s, v in sorted(disk.decided.items())],
                incarnation=disk.incarnation,
            )
        )
        return self.drain(name)

    def restart_durable(self, name: str) -> list[str]:
        assert self.stores is not None
        if name not in self.crashed:
            raise ValueError(f"node {name} is not crashed")
        state = self.stores[name].open(CLUSTER_ID, name)
        disk = self.disk[name]
        disk.incarnation += 1
        self.crashed.discard(name)
        replica = self.r[name] = self._replica(name, disk.incarnation)
        self.rows[name] = []
        replica.step(
            Restore(
                state.promised,
                state.accepted,
                state.decided,
                incarnation=disk.incarnation,
                snapshot=state.snapshot,
            )
        )
        self.pipelines[name] = Pipeline(replica, durable=True)
        self.saving[name] = None
        return self.drain(name)

    def cmd_status(self, name: str) -> list[str]:
        s = self.node(name).status()
        state = "crashed " if name in self.crashed else ""
        return [
            f"{name}: {state}{s.role.value} leader={s.leader or '-'} ballot={s.ballot}"
            f" promised={s.promised} decided_through={s.decided_through}"
            f" delivered={s.delivered} pending={s.pending}"
        ]

    def cmd_acceptor(self, name: str) -> list[str]:
        acc = self.node(name).acceptor
        out = [f"{name}: promised={acc.promised}"]
        for slot, (ballot, value) in sorted(acc.accepted.items()):
            out.append(f"{name}: accepted #{slot} {ballot} {payloads(value)}")
        return out

    def cmd_delivered(self, name: str) -> list[str]:
        self.node(name)
        return [f"{name}: {row}" for row in self.rows[name]] or [f"{name}: (none)"]


def run_script(path: Path) -> tuple[Script, list[list[str]]]:
    """Parse ``path`` and run its commands; the script and each block's actual output."""
    script = parse(path.read_text(), path.name)
    driver = Driver()
    outputs: list[list[str]] = []
    for block in script.blocks:
        try:
            outputs.append(driver.run(block.command))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path.name}:{block.line}: {block.command!r}: {e}") from e
        except AssertionError as e:
            # An invariant of the core or of the delivery contract broke:
            # keep the assertion, and say which block of which script did it.
            e.add_note(f"while running {path.name}:{block.line}: {block.command!r}")
            raise
    return script, outputs
