"""A leader at the edges of its ballot: slots decided above its proposals, snapshots, a stall.

Each scenario is driven by hand. Without the rules they pin, the first two
end with two replicas deciding different values for slot 2, and the third
stalls forever with a healthy majority.
"""

# ruff: noqa: E501

from __future__ import annotations

from paxostob.core.events import Campaign, Compact, Propose, Tick
from paxostob.core.messages import Accept, CatchUp, Envelope, Heartbeat
from paxostob.core.multipaxos import MultiPaxosReplica, Role

from ..sim.test_recovery_edge_cases import Cluster
from .scenario import Net


def agree(replicas: dict[str, MultiPaxosReplica]) -> None:
    """Uniform agreement: every slot two replicas both decided holds one value."""
    chosen: dict[int, tuple[str, object]] = {}
    for name, r in replicas.items():
        for slot, value in r.log.entries.items():
            first = chosen.setdefault(slot, (name, value))
            assert first[1] == value, f"slot {slot}: {first[0]} and {name} decided differently"


def test_a_leader_that_learns_a_slot_above_its_proposals_decided_steps_down() -> None:
    """Safety: a late Decided for a slot >= the leader's next slot meant a higher ballot."""
    n = Net("abcde")
    out, R = n.out, n.r

    def dl(envs: list[Envelope], to: str) -> None:
        n.deliver([e for e in envs if e.dst in to])

    def log(x: str) -> dict[int, list[str]]:
        return {s: [p.payload.decode() for p in v] for s, v in sorted(R[x].log.entries.items())}

    # Phase 0: e leads 1.e with {c,d,e}; decides slot 1='v0'; its heartbeat (commit=1) reaches a,c,d.
    R["e"].step(Campaign())
    dl(out("e"), "cd")
    for x in "cd":
        dl(out(x), "e")
    R["e"].step(Propose(b"v0"))
    for _ in range(3):
        m = out("e")
        dl(m, "cd")
        for x in "cd":
            dl(out(x), "e")
    R["e"].step(Tick())
    for _ in range(3):
        R["e"].step(Tick())
    dl(out("e"), "acd")
    [out(x) for x in "cd"]
    # a now knows commit 1 but has nothing: it asks for catch-up on a tick. We hold that CatchUp.
    for _ in range(6):
        R["a"].step(Tick())
    held = [e for e in out("a") if isinstance(e.message, CatchUp)]

    # Phase 1: a campaigns (2.a); a, b, c promise. c reports slot 1 decided. a leads, next_slot 2.
    R["a"].step(Campaign())
    m = out("a")
    dl(m, "bc")
    for x in "bc":
        dl(out(x), "a")
    if R["a"].role is not Role.LEADER:  # 1.a < 1.e: c nacked; a retries higher
        R["a"].step(Campaign())
        m = out("a")
        dl(m, "bc")
        for x in "bc":
            dl(out(x), "a")
    assert R["a"].role is Role.LEADER
    aout = out("a")  # heartbeats, catch-up (dropped here), etc.
    dl([e for e in aout if not isinstance(e.message, CatchUp)], "bc")
    [out(x) for x in "bc"]

    # Phase 2: d campaigns (3.d) with {c,d,e}; decides slot 2 = 'w'; e learns it.
    R["d"].step(Campaign())
    dl(out("d"), "ce")
    for x in "ce":
        dl(out(x), "d")
    assert R["d"].role is Role.LEADER
    R["d"].step(Propose(b"w"))
    for _ in range(4):
        m = out("d")
        dl(m, "ce")
        for x in "ce":
            dl(out(x), "d")
    for _ in range(4):
        R["d"].step(Tick())
    dl(out("d"), "ce")
    [out(x) for x in "ce"]

    # Phase 3: a's delayed CatchUp reaches its target; the Decided reply reaches a.
    n.deliver(held)
    tgt = held[0].dst
    rep = [e for e in out(tgt) if e.dst == "a"]

    n.deliver(rep)

    # Phase 4: a client broadcasts 'x' at a; a opens slot 2 with ['x'] in 2.a; b accepts and decides.
    R["a"].step(Propose(b"x"))
    m = out("a")

    dl(m, "b")
    out("b")

    agree(R)
    assert R["a"].role is not Role.LEADER


def test_a_leader_never_installs_a_snapshot_across_its_open_slots_and_keeps_leading() -> None:
    """Safety: a peer's snapshot over a leader's open slot: the leader steps down."""
    n = Net("abcde")
    out, R = n.out, n.r

    def dl(envs: list[Envelope], to: str) -> None:
        n.deliver([e for e in envs if e.dst in to])

    def log(x: str) -> dict[int, list[str]]:
        return {s: [p.payload.decode() for p in v] for s, v in sorted(R[x].log.entries.items())}

    # Phase 0: e leads 1.e with {c,d,e}; decides slot 1='v0'; only its heartbeat reaches a.
    R["e"].step(Campaign())
    dl(out("e"), "cd")
    for x in "cd":
        dl(out(x), "e")
    R["e"].step(Propose(b"v0"))
    for _ in range(3):
        m = out("e")
        dl(m, "cd")
        for x in "cd":
            dl(out(x), "e")
    for _ in range(4):
        R["e"].step(Tick())
    dl(out("e"), "acd")
    [out(x) for x in "cd"]
    for _ in range(6):
        R["a"].step(Tick())
    held = [e for e in out("a") if isinstance(e.message, CatchUp)][:1]  # delayed in the network

    # Phase 1: a leads (2.a) with {a,b,c}; proposes 'v' in slot 2; only b's accept happens.
    for _ in range(2):
        if R["a"].role is Role.LEADER:
            break
        R["a"].step(Campaign())
        dl(out("a"), "bc")
        for x in "bc":
            dl(out(x), "a")
    assert R["a"].role is Role.LEADER
    dl([e for e in out("a") if not isinstance(e.message, CatchUp)], "bc")
    [out(x) for x in "bc"]
    R["a"].step(Propose(b"v"))
    m = out("a")
    dl([e for e in m if isinstance(e.message, Accept)], "b")
    out("b")  # b's Accepted to a is lost

    # Phase 2: d leads 3.d with {c,d,e}; decides slot 2='w'; e learns it; e compacts.
    R["d"].step(Campaign())
    dl(out("d"), "ce")
    for x in "ce":
        dl(out(x), "d")
    assert R["d"].role is Role.LEADER
    R["d"].step(Propose(b"w"))
    for _ in range(4):
        m = out("d")
        dl(m, "ce")
        for x in "ce":
            dl(out(x), "d")
    for _ in range(4):
        R["d"].step(Tick())
    dl(out("d"), "ce")
    [out(x) for x in "ce"]

    R["e"].step(Compact(b"app-state-through-2"))
    out("e")

    # Phase 3: a's delayed CatchUp reaches e; e's snapshot chunk reaches a (still leader of 2.a).
    n.deliver(held)
    rep = [e for e in out("e") if e.dst == "a"]

    n.deliver(rep)
    ra = R["a"]

    out("a")
    # a's next heartbeat reaches b.
    for _ in range(4):
        ra.step(Tick())
    hb = [e for e in out("a") if e.dst == "b" and isinstance(e.message, Heartbeat | Accept)]

    n.deliver(hb)
    out("b")

    agree(R)
    assert R["a"].role is not Role.LEADER


def test_a_leader_stuck_below_max_decided_runs_phase_one_again() -> None:
    """Liveness: the only promiser that knew slots decided crashed after a bounded promise."""
    big = b"y" * 700_000  # seven of them exceed one promise's 4 MiB of decided entries
    net = Cluster(5)  # default LogConfig
    r = net.r
    r["a"].step(Campaign())
    net.deliver([e for e in net.out("a") if e.dst in ("b", "c")])
    net.deliver(net.out("b") + net.out("c"))
    # 7 proposals of ~700 KB each, one per slot, chosen by {a,b,c}; only b learns the commit.
    for i in range(7):
        r["a"].step(Propose(bytes([65 + i]) + big))
    net.deliver([e for e in net.out("a") if e.dst in ("b", "c")])
    net.deliver(net.out("b") + net.out("c"))
    net.out("a")
    for _ in range(4):
        r["a"].step(Tick())
    net.deliver([e for e in net.out("a") if e.dst == "b"])
    net.out("b")

    # a crashes; c campaigns and b, d promise.
    r["c"].step(Campaign())
    net.deliver([e for e in net.out("c") if e.dst in ("b", "d")])
    prom = [e for e in net.out("b") + net.out("d") if e.dst == "c"]

    net.deliver(prom)
    assert r["c"].role is Role.LEADER

    # b crashes. c, d, e: a majority on a perfect network; every one keeps proposing.
    live = ("c", "d", "e")
    in_flight = [e for e in net.out("c") if e.dst in live]
    for t in range(2000):
        if t % 100 == 0:
            r["d"].step(Propose(f"new{t}".encode()))
        net.deliver(in_flight)
        for node in live:
            r[node].step(Tick())
        in_flight = [e for node in live for e in net.out(node) if e.dst in live]

    assert all(r[n].log.decided_through >= 7 for n in live), "stalled with a healthy majority"
    agree({n: r[n] for n in live})
