"""One state of a small cluster of real replicas, and the actions that change it.

Theory of operation: a ``World`` holds, per member, the real
``MultiPaxosReplica`` (None while crashed), the real ``core.pipeline.Pipeline``
its Readys go through, the save that pipeline has in flight, and its
``MemoryStorage`` (the durable store); plus the multiset of messages in
flight and the run's history in the simulator's terms (``sim.checkers``'s
``TobHistory``), which the properties are judged on. It is driven exactly as
the simulator drives a replica (``sim/runner.py``): after each event, take
Readys, send their ``early`` messages at once, apply their deliveries, hand
them back (``handled``), and let the pipeline say what to write; the late
``messages`` leave and ``Persisted`` is stepped only once the save lands.

An ``Action`` is one step of the environment:

- ``deliver``: one message in flight reaches its destination (any order:
  the network is a multiset, so every reordering is explored);
- ``drop``, ``duplicate``: the network loses or copies one message;
- ``tick``: a node's clock runs until one of its timers fires (its first
  ``Tick`` after which the replica has effects; at most ``ticks_max``):
  ticks that change nothing visible are not separate states;
- ``save``: the save a node's pipeline has in flight lands. With ``async``
  saves it is one action among the others; with ``eager`` saves, while a
  save is in flight the only actions are to land it or to crash its node
  (which loses it): no node steps another event while its save is in
  flight, so group commit and overlapping saves are explored only with
  ``async``;
- ``crash``: a power loss: the replica, its pipeline and the save in flight
  are gone, its store loses what was not synced, messages to it are lost;
- ``restart``: a new replica from its store (``Restore``), its incarnation
  one more, its generator seeded from its name and incarnation as the
  data-driven scenarios seed theirs (``tests/core/datadriven.py``);
- ``propose``: a live node broadcasts a new payload;
- ``foreign``: a node receives a message of another instance sharing its
  transport (a ``Decided`` of instance ``other``): the Go original's first
  defect;
- ``campaign``: a ``Campaign`` event: the node's election timer fires now
  (the scripted start, and ``Scope.campaigns``: elections without clocks);
- ``change``: a ``ProposeChange`` at a node that leads: add a spare as a
  learner, promote a learner, or remove a member (``Scope.changes``). Only
  changes valid against the leader's newest configuration are tried, and
  one the leader refuses anyway (one change at a time, a learner that has
  not answered it yet) does nothing, so it is no transition.

Membership: the first ``Scope.replicas`` nodes are the founding voters; the
``Scope.spares`` after them boot outside the configuration (``join``) and
learn the log once a change adds them. Every replica runs with the scope's
alpha (``Scope.alpha``, the core's ``config_delay_slots``): production's 64
slots are out of reach of a small scope, so a scope with changes takes a
small one, and its window (``window_slots_max``) no larger. The history
knows the founding voters and alpha, so the properties judge each slot by
the configuration the chosen log gives it (``sim.checkers.slot_configs``),
not by what the replicas believe.

Everything is deterministic: the same actions from the same start give the
same world (``replay``).
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass, field, replace

from ..core.events import Campaign, Event, Propose, ProposeChange, Ready, Receive, Restore, Tick
from ..core.membership import CONFIG_DELAY_SLOTS
from ..core.messages import Accept, Accepted, Decided, Envelope, Prepare, Promise
from ..core.multipaxos import LogConfig, MultiPaxosReplica, Role
from ..core.pipeline import Complete, Pipeline
from ..core.types import Ballot, Batch, DecidedEntry, Proposal, ProposalId
from ..sim.checkers import Broadcast, Recovered, TobHistory, TobLife, TobTrace
from ..storage.base import has_durable_part
from ..storage.memory import MemoryStorage
from .describe import describe

__all__ = ["CLUSTER_ID", "KINDS", "Action", "Scope", "World", "foreign_message"]

#: The cluster id every store is opened with.
CLUSTER_ID = "check"
#: The instance of the foreign messages (another log on the same transport).
FOREIGN_INSTANCE = "other"
KINDS = (
    "deliver",
    "drop",
    "duplicate",
    "tick",
    "save",
    "crash",
    "restart",
    "propose",
    "foreign",
    "campaign",
    "change",
)
#: Names of the nodes, founding voters first, then spares.
NAMES = "abcde"


def foreign_message(sender: str) -> Decided:
    """What another instance on the same transport may send: slot 1 of *its* log."""
    value: Batch = (Proposal(ProposalId(sender, 1), b"foreign"),)
    return Decided(FOREIGN_INSTANCE, sender, (DecidedEntry(1, value),))


@dataclass(frozen=True, slots=True)
class Scope:
    """The bounds of the search (docs/design.md, 'Model checking', has what each leaves out)."""

    replicas: int = 3
    #: Broadcasts in a run, in all.
    proposals: int = 1
    #: No replica campaigns with a ballot round above this (the successor is cut).
    ballots: int = 2
    #: Crashes (each may be followed by a restart), drops, duplicates, foreign messages.
    crashes: int = 1
    drops: int = 0
    duplicates: int = 0
    foreign: int = 0
    #: Actions after the start. The default is the small scope the test suite
    #: and ``make test`` explore exhaustively (seconds); deeper runs ask for more.
    depth: int = 5
    #: ``async``: a save lands by its own action; ``eager``: at the end of the action.
    saves: str = "eager"
    #: ``boot``: every replica fresh; ``elected``: the first replica has led
    #: ballot 1 and every message and save is done (a scripted prefix).
    start: str = "boot"
    pre_vote: bool = False
    #: Script commands (``check.scenario``'s language) done after the start:
    #: the search starts from the state they reach.
    script: tuple[str, ...] = ()
    #: Which replicas may broadcast (by index; all by default).
    proposers: tuple[int, ...] = ()
    #: Whether clocks run at all (``tick`` actions): without, no timer ever
    #: fires (no elections after the start, no heartbeats, no retries).
    ticks: bool = True
    #: Whether a node's election timer may fire at any moment (``campaign``
    #: actions, bounded by ``ballots``): elections without running clocks.
    campaigns: bool = False
    #: The longest a ``tick`` action runs a clock without an effect: above the
    #: longest timer of the default ``LogConfig`` (an election timeout is at
    #: most 2 x 15 ticks, check-quorum 2 x 15), so every timer can fire.
    ticks_max: int = 80
    #: Messages in flight at most: a successor with more is cut. Twelve is
    #: two full rounds of three replicas (each sends to two peers); above it
    #: the extra states are mostly heartbeats and retransmissions piling up.
    in_flight_max: int = 12
    #: Membership changes (``change`` actions) in a run, in all.
    changes: int = 0
    #: Nodes after the founding voters, booted outside the configuration
    #: (``join``): a change may add them.
    spares: int = 0
    #: Of the spares, how many the scripted start (``elected``) adds as
    #: learners, each change run until it is in effect, then a heartbeat
    #: round so the leader knows they answer (a promotion needs it).
    learners: int = 0
    #: alpha: a change decided in slot i governs slots >= i + alpha. Every
    #: replica of the world shares it; ``window_slots_max`` is capped to it.
    alpha: int = CONFIG_DELAY_SLOTS

    def __post_init__(self) -> None:
        if not 1 <= self.replicas <= len(NAMES):
            raise ValueError(f"replicas: 1 to {len(NAMES)}")
        if self.spares < 0 or self.replicas + self.spares > len(NAMES):
            raise ValueError(f"spares: 0 to {len(NAMES)} - replicas (nodes: at most {len(NAMES)})")
        if not 0 <= self.learners <= self.spares:
            raise ValueError("learners: 0 to spares (a learner is a spare the start adds)")
        if self.learners and self.start != "elected":
            raise ValueError("learners need start elected (a leader adds them)")
        if self.alpha < 1:
            raise ValueError("alpha must be >= 1")
        if self.saves not in ("async", "eager"):
            raise ValueError("saves: async or eager")
        if self.start not in ("boot", "elected"):
            raise ValueError("start: boot or elected")
        for name in (
            "proposals",
            "ballots",
            "crashes",
            "drops",
            "duplicates",
            "foreign",
            "changes",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.depth < 0:
            raise ValueError("depth must be >= 0")

    @property
    def members(self) -> tuple[str, ...]:
        """Every node: the founding voters, then the spares."""
        return tuple(NAMES[: self.replicas + self.spares])

    @property
    def voters(self) -> tuple[str, ...]:
        """The founding configuration's voters."""
        return tuple(NAMES[: self.replicas])

    def config(self) -> LogConfig:
        # The window may not exceed alpha (the core refuses it): a leader
        # must know the configuration of every slot it opens.
        window = min(LogConfig().window_slots_max, self.alpha)
        return LogConfig(pre_vote=self.pre_vote, window_slots_max=window)


@dataclass(frozen=True, slots=True)
class Action:
    kind: str
    node: str = ""
    envelope: Envelope | None = None
    payload: bytes = b""
    #: ``tick``: how many ``Tick`` events it stepped (known once applied).
    ticks: int = 0
    #: The saves that landed right after it, in order: with ``eager`` saves
    #: and no crash left in the scope, landing them is the only thing that
    #: can happen next, so it is part of the action (no state in between).
    saved: tuple[str, ...] = ()
    #: ``change``: the operation (``add``, ``promote``, ``remove``) and its node.
    op: str = ""
    target: str = ""

    def __str__(self) -> str:
        if self.envelope is not None:
            text = f"{self.kind} {describe(self.envelope)}"
        elif self.kind == "change":
            text = f"change {self.node} {self.op} {self.target}"
        elif self.kind == "propose":
            text = f"propose {self.node} {self.payload.decode()}"
        elif self.kind == "tick" and self.ticks:
            text = f"tick {self.node} {self.ticks}"
        else:
            text = f"{self.kind} {self.node}"
        if self.saved:
            text += f" (then save {' '.join(self.saved)})"
        return text


@dataclass
class Counts:
    """The faults and broadcasts used so far (bounded by the ``Scope``)."""

    crashes: int = 0
    drops: int = 0
    duplicates: int = 0
    foreign: int = 0
    proposals: int = 0
    changes: int = 0


def _rng(node: str, incarnation: int) -> random.Random:
    return random.Random(f"{node}/{incarnation}")


def _replica(scope: Scope, node: str, incarnation: int, config: LogConfig) -> MultiPaxosReplica:
    """A replica as the runtime builds one: spares join, every one with the scope's alpha."""
    return MultiPaxosReplica(
        node,
        scope.voters,
        _rng(node, incarnation),
        config=config,
        join=node not in scope.voters,
        config_delay_slots=scope.alpha,
    )


@dataclass
class World:
    scope: Scope
    config: LogConfig
    members: tuple[str, ...]
    replicas: dict[str, MultiPaxosReplica | None]
    pipelines: dict[str, Pipeline | None]
    #: The coalesced save each node has in flight.
    saving: dict[str, Ready | None]
    stores: dict[str, MemoryStorage]
    lives: dict[str, int]
    net: list[Envelope]
    history: TobHistory
    counts: Counts = field(default_factory=Counts)
    #: Prepares and Accepts sent in a ballot that names another node.
    unowned: list[str] = field(default_factory=list)
    #: Actions applied since boot: the history's "tick".
    now: int = 0
    #: Change requests refused in the action being applied (always empty
    #: between actions: a refused change is no transition).
    refused: list[int] = field(default_factory=list)

    # ------------------------------------------------------------ building

    @classmethod
    def boot(cls, scope: Scope) -> World:
        members, founding = scope.members, scope.voters
        config = scope.config()
        replicas: dict[str, MultiPaxosReplica | None] = {}
        pipelines: dict[str, Pipeline | None] = {}
        stores = {}
        for m in members:
            r = _replica(scope, m, 0, config)
            replicas[m] = r
            pipelines[m] = Pipeline(r, durable=True)
            stores[m] = s = MemoryStorage(incarnation_base=1)
            s.open(CLUSTER_ID, m, bootstrap=founding)
        history = TobHistory(
            members=members,
            broadcasts={},
            traces={m: TobTrace(m) for m in members},
            heal_tick=0,
            liveness_ticks=0,
            end_tick=0,
            durable={},
            founding=founding,
            config_delay=scope.alpha,
        )
        return cls(
            scope=scope,
            config=config,
            members=members,
            replicas=replicas,
            pipelines=pipelines,
            saving=dict.fromkeys(members),
            stores=stores,
            lives=dict.fromkeys(members, 0),
            net=[],
            history=history,
        )

    def copy(self) -> World:
        copied: World = pickle.loads(pickle.dumps(self, pickle.HIGHEST_PROTOCOL))
        return copied

    def live(self) -> list[str]:
        return [m for m in self.members if self.replicas[m] is not None]

    # ------------------------------------------------------------ actions

    def enabled(self) -> list[Action]:
        """Every action possible here within the scope's bounds, in a fixed order."""
        s, c = self.scope, self.counts
        live = self.live()
        if s.saves == "eager":
            # A save in flight lands before anything else happens, unless its
            # node crashes first (which loses it).
            due = [m for m in live if self.saving[m] is not None]
            if due:
                acts = [Action("save", due[0])]
                if c.crashes < s.crashes:
                    acts += [Action("crash", m) for m in due]
                return acts
        distinct = sorted(set(self.net), key=describe)
        acts = [Action("deliver", e.dst, e) for e in distinct if self.replicas[e.dst] is not None]
        if s.ticks:
            acts += [Action("tick", m) for m in live]
        if s.campaigns:
            acts += [Action("campaign", m) for m in live]
        if c.changes < s.changes:
            acts += [a for m in self.leaders() for a in self._changes(m)]
        acts += [Action("save", m) for m in live if self.saving[m] is not None]
        if c.proposals < s.proposals:
            proposers = [
                m
                for i, m in enumerate(self.members)
                if i in s.proposers or (not s.proposers and i < s.replicas)
            ]
            payload = f"p{c.proposals + 1}".encode()
            acts += [Action("propose", m, payload=payload) for m in proposers if m in live]
        if c.drops < s.drops:
            acts += [Action("drop", e.dst, e) for e in distinct]
        if c.duplicates < s.duplicates:
            acts += [Action("duplicate", e.dst, e) for e in distinct]
        if c.crashes < s.crashes:
            acts += [Action("crash", m) for m in live]
        acts += [Action("restart", m) for m in self.members if self.replicas[m] is None]
        if c.foreign < s.foreign:
            acts += [Action("foreign", m) for m in live]
        return acts

    def apply(self, a: Action) -> Action | None:
        """Do ``a``; the action as done (a tick's count filled in), or None if it does nothing."""
        self.now += 1
        done: Action | None = a
        k = a.kind
        if k == "deliver":
            assert a.envelope is not None
            self.net.remove(a.envelope)
            self._step(a.node, Receive(a.envelope))
        elif k == "tick":
            done = self._tick(a)
        elif k == "save":
            self._save(a.node)
        elif k == "propose":
            self._propose(a.node, a.payload)
        elif k == "drop":
            assert a.envelope is not None
            self.net.remove(a.envelope)
            self.counts.drops += 1
        elif k == "duplicate":
            assert a.envelope is not None
            self.net.append(a.envelope)
            self.counts.duplicates += 1
        elif k == "crash":
            self._crash(a.node)
        elif k == "restart":
            self._restart(a.node)
        elif k == "foreign":
            sender = (
                next(m for m in self.members if m != a.node) if len(self.members) > 1 else a.node
            )
            self.counts.foreign += 1
            self._step(a.node, Receive(Envelope(a.node, foreign_message(sender))))
        elif k == "campaign":
            self._step(a.node, Campaign())
        elif k == "change":
            done = self._change(a)
        else:
            raise ValueError(f"unknown action {k!r}")
        self.refused.clear()
        if done is not None and self.forced_saves():
            done = replace(done, saved=tuple(self.settle_saves()))
        return done

    def forced_saves(self) -> bool:
        """Whether a save in flight can only land next (``eager``, no crash left)."""
        return self.scope.saves == "eager" and self.counts.crashes >= self.scope.crashes

    def settle_saves(self) -> list[str]:
        """Land every save in flight (and those they lead to), oldest node first; who saved."""
        saved: list[str] = []
        while True:
            due = [m for m in self.members if self.saving[m] is not None]
            if not due:
                return saved
            self._save(due[0])
            saved.append(due[0])

    def out_of_scope(self) -> bool:
        """A bound the scope sets was passed: the successor is not explored."""
        if len(self.net) > self.scope.in_flight_max:
            return True
        top = self.scope.ballots
        for r in self.replicas.values():
            if r is None:
                continue
            el = r.election
            if el.ballot.round > top or (el.pre_ballot is not None and el.pre_ballot.round > top):
                return True
        return False

    def _changes(self, leader: str) -> list[Action]:
        """The changes valid against ``leader``'s newest configuration, in a fixed order."""
        r = self.replicas[leader]
        assert r is not None
        newest = r.membership.newest
        spares = self.members[self.scope.replicas :]
        adds = [t for t in spares if t not in newest.members and t not in newest.removed]
        return [
            *(Action("change", leader, op="add", target=t) for t in adds),
            *(Action("change", leader, op="promote", target=t) for t in sorted(newest.learners)),
            *(Action("change", leader, op="remove", target=t) for t in sorted(newest.members)),
        ]

    # ------------------------------------------------------------ the runtime's part

    def _change(self, a: Action) -> Action | None:
        """``ProposeChange`` at ``a.node``: None if the replica refused it (nothing changed)."""
        r = self.replicas[a.node]
        assert r is not None
        request = self.counts.changes + 1
        r.step(ProposeChange(a.op, a.target, request))
        self._drain(a.node)
        if request in self.refused:
            return None
        self.counts.changes += 1
        return a

    def _tick(self, a: Action) -> Action | None:
        r = self.replicas[a.node]
        assert r is not None
        for n in range(1, self.scope.ticks_max + 1):
            r.step(Tick())
            if r.has_ready():
                self._drain(a.node)
                return replace(a, ticks=n)
        return None

    def _step(self, node: str, event: Event) -> None:
        r = self.replicas[node]
        assert r is not None
        r.step(event)
        self._drain(node)

    def _propose(self, node: str, payload: bytes) -> None:
        r = self.replicas[node]
        assert r is not None
        self.counts.proposals += 1
        r.step(Propose(payload))
        pid = r.proposals.last_id
        assert pid is not None
        self.history.broadcasts[pid] = Broadcast(pid, payload, self.now)
        self._drain(node)

    def _send(self, env: Envelope) -> None:
        if self.replicas[env.dst] is not None:
            self.net.append(env)

    def _drain(self, node: str) -> None:
        """Take ``node``'s Readys through its pipeline, as the simulator and the driver do."""
        r = self.replicas[node]
        pipeline = self.pipelines[node]
        assert r is not None and pipeline is not None
        life = self.history.traces[node].life
        while pipeline.can_take():
            rd = pipeline.take()
            at_once = pipeline.completes_at_once(rd)
            for env in (*rd.early, *rd.messages) if at_once else rd.early:
                self._sent(node, r, life, env)
                self._send(env)
            for e in rd.decided:
                life.decided.append((self.now, e))
            for d in rd.deliveries:
                life.deliveries.append((self.now, d))
            self.refused += [c.request for c in rd.changes if c.error is not None]
            pipeline.handled(rd)
            if at_once:
                self._counted(node, rd, life)
            self._pump(node)

    def _pump(self, node: str) -> None:
        pipeline = self.pipelines[node]
        r = self.replicas[node]
        assert pipeline is not None and r is not None
        life = self.history.traces[node].life
        while self.saving[node] is None:
            action = pipeline.poll()
            if action is None:
                return
            if isinstance(action, Complete):
                for rd in action.readies:
                    for env in rd.messages:
                        self._sent(node, r, life, env)
                        self._send(env)
                    self._counted(node, rd, life)
                continue
            self.saving[node] = action.ready

    def _save(self, node: str) -> None:
        rd = self.saving[node]
        pipeline = self.pipelines[node]
        assert rd is not None and pipeline is not None
        self.saving[node] = None
        store = self.stores[node]
        if has_durable_part(rd):
            store.save(rd)
        durable = self.history.durable
        assert durable is not None
        if store.unsynced_saves == 0:
            for a in rd.accepted:
                durable.setdefault((a.slot, a.ballot), (a.value, {}))[1].setdefault(node, self.now)
        pipeline.saved()
        self._pump(node)
        self._drain(node)

    def _crash(self, node: str) -> None:
        r = self.replicas[node]
        assert r is not None
        self.counts.crashes += 1
        life = self.history.traces[node].life
        life.ended = self.now
        life.log = dict(r.log.entries)
        life.decided_through = r.log.decided_through
        self.stores[node].crash(0)
        self.replicas[node] = self.pipelines[node] = self.saving[node] = None
        # A connection reset: what was on its way to the node is lost.
        self.net = [e for e in self.net if e.dst != node]

    def _restart(self, node: str) -> None:
        state = self.stores[node].open(CLUSTER_ID, node)
        self.lives[node] += 1
        incarnation = self.lives[node]
        r = _replica(self.scope, node, incarnation, self.config)
        r.step(
            Restore(
                state.promised,
                state.accepted,
                state.decided,
                incarnation=incarnation,
                snapshot=state.snapshot,
            )
        )
        life = TobLife(self.now)
        life.recovered = Recovered(
            promised=state.promised,
            accepted={a.slot: a.ballot for a in state.accepted},
            decided={d.slot: d.value for d in state.decided},
            snapshot_slot=0,
        )
        self.history.traces[node].lives.append(life)
        self.replicas[node] = r
        self.pipelines[node] = Pipeline(r, durable=True)
        self._drain(node)

    # ------------------------------------------------------------ the history (sim/runner.py's)

    def _counted(self, node: str, rd: Ready, life: TobLife) -> None:
        """``rd`` is durable as far as the core knows: its promise and acceptances count."""
        if rd.promised is not None and rd.promised > life.promised_sent[0]:
            life.promised_sent = (rd.promised, self.now)
        for a in rd.accepted:
            self._ack(life, a.slot, a.ballot)
            if a.ballot.node_id == node:
                acc = self.history.acceptances
                acc.setdefault((a.slot, a.ballot), (a.value, {}))[1].setdefault(node, self.now)

    def _sent(self, node: str, r: MultiPaxosReplica, life: TobLife, env: Envelope) -> None:
        m = env.message
        h = self.history
        if isinstance(m, Prepare | Accept) and m.ballot.node_id != m.sender:
            self.unowned.append(describe(env))
        if isinstance(m, Accept):
            proposed = h.acceptances.setdefault((m.slot, m.ballot), (m.value, {}))[0]
            if proposed != m.value:
                h.conflicts.append((m.slot, m.ballot, proposed, m.value, self.now))
        elif isinstance(m, Promise | Accepted):
            if m.ballot > life.promised_sent[0]:
                life.promised_sent = (m.ballot, self.now)
            if isinstance(m, Accepted):
                if m.slot not in r.log.entries:
                    self._ack(life, m.slot, m.ballot)
                known = h.acceptances.get((m.slot, m.ballot))
                if known is not None:
                    known[1].setdefault(node, self.now)

    def _ack(self, life: TobLife, slot: int, ballot: Ballot) -> None:
        old = life.acked.get(slot)
        if old is None or ballot > old[0]:
            life.acked[slot] = (ballot, self.now)

    # ------------------------------------------------------------ views

    def leaders(self) -> list[str]:
        return [m for m, r in self.replicas.items() if r is not None and r.role is Role.LEADER]

    def _membership(self, r: MultiPaxosReplica) -> str:
        """Its newest configuration (`` voters=ab learners=c from #5``), if the scope has any."""
        if not (self.scope.spares or self.scope.changes):
            return ""
        c = r.membership.newest
        voters, learners = "".join(sorted(c.voters)), "".join(sorted(c.learners))
        return f" voters={voters} learners={learners or '-'} from #{c.effective_slot}"

    def summary(self) -> list[str]:
        out = []
        for m in self.members:
            r = self.replicas[m]
            if r is None:
                out.append(f"{m}: crashed")
                continue
            s = r.status()
            out.append(
                f"{m}: {s.role.value} leader={s.leader or '-'} ballot={s.ballot} "
                f"promised={s.promised} decided_through={s.decided_through} "
                f"delivered={s.delivered} pending={s.pending}" + self._membership(r)
            )
        out.append(f"in flight: {', '.join(describe(e) for e in self.net) or '-'}")
        return out
