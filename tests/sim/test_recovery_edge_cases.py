"""Recovery at the edges: a new leader and decided slots, a lost knower, mixed snapshots.

Each scenario is a minimal event sequence (three or five replicas, messages
delivered by hand) that pins a rule a swarm seed once showed broken:

1. Found by ``paxostob sim --seed 265`` (also seeds 1377, 2025, 5255, 5487):
   a new leader re-opens a slot it already knows is decided. In
   ``Election._become_leader`` a promise may report a slot as
   *decided* above every promiser's contiguous prefix (``decided_through``);
   the leader decides it, but computes ``top`` (and so ``_next_slot``) from
   the open reports only, so ``Leadership.fill_window`` proposes a fresh batch for
   that decided slot. Followers accept it in the leader's ballot and, from
   the leader's commit watermark, decide the fresh batch: two values chosen
   for one slot ("Paxos Made Simple" P2c is bypassed: the leader proposes
   a value other than the chosen one).

2. Found by ``paxostob sim --seed 13685`` (seen only once the first bug is
   patched locally; a liveness bug): a new leader treats every slot up to
   the highest ``decided_through`` among its promises (``max_decided``) as
   "decided elsewhere: learn it, never propose it", and relies on catch-up.
   But promises carry entries only *above* the promiser's own
   ``decided_through``, so if the one promiser that knew those slots crashes,
   no live replica can supply them, the leader ignores the accepted reports
   it has for them, and the log stalls forever with a correct majority on a
   perfect network.

3. Found by ``paxostob sim --seed 1340`` (also seeds 360 and 17053; fixed:
   an older snapshot's chunk is now ignored before any assembly state is touched):
   a lagging replica mixes the chunks of two snapshots. In
   ``Catchup.assemble`` the guard against an *older*
   snapshot (``inc[0] > m.slot``) sits inside a branch taken only when
   ``inc[0] <= m.slot``, so it never fires: a chunk of an older snapshot
   (a peer that compacted less, or a stale resend) is filed into the newer
   snapshot being assembled, under its own offset. Once the byte count
   adds up, the replica adopts ``Snapshot(older slot, older meta, mixed
   bytes)`` and hands the application a state nobody ever had. In seed
   1340 ``n1`` is assembling ``n2``'s snapshot of slot 21 (64-byte chunks)
   when chunks of ``n3``'s snapshot of slot 14 arrive and fill the missing
   offsets; the application cannot even decode the result (bytes that
   happen to decode would give a silently wrong state). Earlier in that
   run a stale chunk of slot 21 had spoiled n1's assembly of slot 59 (the
   sizes did not add up, so the whole assembly was thrown away). The fix:
   ignore (and count) a chunk whose slot is below the one being assembled,
   and only then start a new assembly for a higher slot or a different
   meta/size.
"""

from __future__ import annotations

import random

from paxostob.core.events import Campaign, Persisted, Propose, Receive, Tick
from paxostob.core.messages import Accept, Envelope, SnapshotChunk
from paxostob.core.multipaxos import LogConfig, MultiPaxosReplica, Role
from paxostob.core.snapshot import SnapshotMeta, encode_meta


class Cluster:
    """Replicas a, b, c, ...; every message is delivered only when the scenario says so."""

    def __init__(self, n: int = 3, config: LogConfig | None = None) -> None:
        members = tuple("abcde"[:n])
        self.r = {
            m: MultiPaxosReplica(m, members, random.Random(i), config=config)
            for i, m in enumerate(members)
        }

    def out(self, node: str) -> list[Envelope]:
        """Drain ``node``'s Readys; the messages it sent (nothing is delivered)."""
        sent: list[Envelope] = []
        r = self.r[node]
        while r.has_ready():
            rd = r.ready()
            sent.extend(rd.early)  # instant storage: everything leaves, durable at once
            sent.extend(rd.messages)
            r.advance(rd)
            r.step(Persisted(rd.seq))
        return sent

    def deliver(self, envelopes: list[Envelope]) -> None:
        for env in envelopes:
            self.r[env.dst].step(Receive(env))


#: One proposal per slot: the scenario is easy to follow.
ONE_PER_SLOT = LogConfig(batch_count_max=1)


def _slot(env: Envelope) -> int | None:
    return env.message.slot if isinstance(env.message, Accept) else None


def leader_change_after_a_gap(c: Cluster) -> list[Envelope]:
    """Up to c becoming leader; returns what c sends next."""
    a, leader_c = c.r["a"], c.r["c"]
    # a leads ballot 1.a (b promised). It opens slot 1 = x1 and slot 2 = x2;
    # only Accept(slot 2) reaches b, so x2 is chosen by {a, b} while slot 1
    # stays open: a's log is {2: x2} with decided_through 0.
    a.step(Campaign())
    c.deliver([e for e in c.out("a") if e.dst == "b"])
    c.deliver(c.out("b"))
    assert a.role is Role.LEADER
    a.step(Propose(b"x1"))
    a.step(Propose(b"x2"))
    c.deliver([e for e in c.out("a") if e.dst == "b" and _slot(e) == 2])
    c.deliver(c.out("b"))
    c.out("a")
    assert a.log.entries[2][0].payload == b"x2" and a.log.decided_through == 0

    # c broadcasts y and campaigns; only a's promise reaches it. The promise
    # reports slot 1 accepted (x1) and slot 2 decided (x2).
    leader_c.step(Propose(b"y"))
    leader_c.step(Campaign())
    c.deliver([e for e in c.out("c") if e.dst == "a"])
    c.deliver([e for e in c.out("a") if e.dst == "c"])
    assert leader_c.role is Role.LEADER and leader_c.log.entries[2] == a.log.entries[2]
    return c.out("c")


def test_a_new_leader_never_reproposes_a_slot_it_learned_decided() -> None:
    c = Cluster(config=ONE_PER_SLOT)
    sent = leader_change_after_a_gap(c)
    chosen = c.r["a"].log.entries[2]
    # P2c: x2 is chosen in slot 2; c must not propose anything else there.
    wrong = [
        (e.dst, [p.payload for p in e.message.value])
        for e in sent
        if isinstance(e.message, Accept) and e.message.slot == 2 and e.message.value != chosen
    ]
    assert not wrong, f"c proposes {wrong} for slot 2, already decided as x2"


def test_all_replicas_agree_after_the_leader_change() -> None:
    """The same scenario to its end: without the fix b decides y in slot 2, a and c x2."""
    c = Cluster(config=ONE_PER_SLOT)
    sent = leader_change_after_a_gap(c)
    # b receives c's accepts, c learns from b's Accepted, b learns c's commit
    # (and, having accepted slot 2 in an older ballot, catches up from c).
    in_flight = [e for e in sent if e.dst == "b"]
    for _ in range(6):
        c.deliver(in_flight)
        in_flight = [e for n in ("b", "c") for e in c.out(n) if e.dst in ("b", "c")]
    decided = {
        m: [p.payload for p in r.log.entries[2]] for m, r in c.r.items() if 2 in r.log.entries
    }
    assert decided == {"a": [b"x2"], "b": [b"x2"], "c": [b"x2"]}


def test_a_leader_learns_the_slots_below_max_decided_after_their_only_knower_crashed() -> None:
    net = Cluster(5)
    r = net.r

    # a leads 1.a with b and c; slot 1 = x is chosen by {a, b, c}; a's commit
    # reaches only b, so b has decided_through 1 and c merely accepted x.
    r["a"].step(Campaign())
    net.deliver([e for e in net.out("a") if e.dst in ("b", "c")])
    net.deliver(net.out("b") + net.out("c"))
    r["a"].step(Propose(b"x"))
    net.deliver([e for e in net.out("a") if e.dst in ("b", "c")])
    net.deliver(net.out("b") + net.out("c"))
    net.deliver([e for e in net.out("a") if e.dst == "b"])
    net.out("b")
    assert r["b"].log.decided_through == 1 and r["c"].log.decided_through == 0

    # a crashes. c campaigns; b (decided_through 1) and d promise; c leads.
    r["c"].step(Campaign())
    net.deliver([e for e in net.out("c") if e.dst in ("b", "d")])
    net.deliver([e for e in net.out("b") + net.out("d") if e.dst == "c"])
    assert r["c"].role is Role.LEADER

    # b crashes. c, d, e are a majority on a perfect network: slot 1 must be learned.
    live = ("c", "d", "e")
    in_flight = [e for e in net.out("c") if e.dst in live]
    for _ in range(1000):
        net.deliver(in_flight)
        for node in live:
            r[node].step(Tick())
        in_flight = [e for node in live for e in net.out(node) if e.dst in live]
    assert {n: r[n].log.decided_through for n in live} == {"c": 1, "d": 1, "e": 1}


def _chunks(sender: str, slot: int, delivered: int, data: bytes, step: int) -> list[Envelope]:
    """The chunks ``sender`` sends of its snapshot at ``slot`` to replica c."""
    meta = encode_meta(SnapshotMeta(slot, delivered, {}))
    return [
        Envelope(
            "c", SnapshotChunk("tob", sender, slot, meta, len(data), off, data[off : off + step])
        )
        for off in range(0, len(data), step)
    ]


def test_a_lagging_replica_never_mixes_the_chunks_of_two_snapshots() -> None:
    net = Cluster(3, config=LogConfig(snapshot_chunk_bytes_max=4))
    c = net.r["c"]
    newer = _chunks("a", 21, 26, b"NEWERxxx", 4)  # a's snapshot of slot 21, two chunks
    older = _chunks("b", 14, 19, b"olderyyy", 4)  # b compacted less: slot 14
    # c gets the newer snapshot's first chunk, then a stale older chunk at the other offset.
    net.deliver([newer[0], older[1]])
    adopted = []
    while c.has_ready():
        rd = c.ready()
        if rd.snapshot is not None:
            adopted.append((rd.snapshot.slot, rd.snapshot.data))
        c.advance(rd)
    # Either still waiting for the newer snapshot's second chunk, or a real snapshot: never
    # b's slot and meta with half of a's bytes.
    assert all(pair in ((21, b"NEWERxxx"), (14, b"olderyyy")) for pair in adopted), adopted
