"""Plant one bug at a time in the safety code and run the tests that should catch it.

Usage: ``python tests/mutation/mutate.py [--only NAME ...] [--list] [--timeout S]``
(``make mutate`` runs them all; it is not part of ``make test``: about ten
minutes on a two-core machine).

Each mutant is a list of exact text replacements in ``src/paxostob`` and the
tests that must fail with it. The source tree is never edited in place:
``src`` is copied to a temporary directory, the copy is mutated, and pytest
runs the named tests (from this checkout's ``tests``) with ``PYTHONPATH``
pointing at the copy, which Python then imports instead of the installed
package. A mutant is *killed* when pytest reports failing tests (exit
status 1) or runs past the timeout; *survived* when they pass; an *error*
(the replacement text not found exactly once, pytest's usage errors) is
reported as such and counts as neither, so a stale mutant is noticed.

Mutants that survive are the tests' blind spots. Those known are listed in
``SURVIVORS_EXPECTED`` with the reason; the score counts them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "src/paxostob"


@dataclass(frozen=True)
class Mutant:
    name: str
    edits: tuple[tuple[str, str, str], ...]  # (file under src/paxostob, exact old text, new text)
    tests: tuple[str, ...]  # pytest arguments: files, node ids, -k expressions


def m(name: str, file: str, old: str, new: str, *tests: str) -> Mutant:
    return Mutant(name, ((file, old, new),), tests)


_SWARM_FILE = "tests/sim/test_swarm.py::test_"
#: 100 Multi-Paxos and 200 single-decree schedules of the simulator.
SWARM = (
    _SWARM_FILE + "multipaxos_schedules_keep_every_property[seeds0-49]",
    _SWARM_FILE + "multipaxos_schedules_keep_every_property[seeds50-99]",
    _SWARM_FILE + "single_decree_schedules_keep_every_property[seeds0-199]",
)
REAL_SYNCS = ("tests/storage/test_real_syncs.py", "tests/storage/test_power_loss_disk.py")

MUTANTS: tuple[Mutant, ...] = (
    # ---------------------------------------------------------------- storage: fsync
    m(
        "log: a synced save is not synced",
        "storage/log.py",
        "            if ready.must_sync:\n                self._sync_file(fd)\n",
        "            if ready.must_sync:\n                pass\n",
        *REAL_SYNCS,
        "tests/storage/test_log_power_loss.py",
    ),
    m(
        "log: the sync call is a no-op (fdatasync removed)",
        "storage/log.py",
        "        os.fdatasync(fd)  # the data and the size",
        "        pass  # the data and the size",
        *REAL_SYNCS,
    ),
    m(
        "sqlite: synchronous=OFF instead of the mode asked for",
        "storage/sqlite.py",
        'conn.execute(f"PRAGMA synchronous = {mode}")',
        'conn.execute("PRAGMA synchronous = OFF")',
        *REAL_SYNCS,
    ),
    m(
        "sqlite: a synced save commits with synchronous=NORMAL",
        "storage/sqlite.py",
        '"FULL" if ready.must_sync else "NORMAL"',
        '"NORMAL"',
        *REAL_SYNCS,
    ),
    m(
        "log: close does not sync the unsynced saves",
        "storage/log.py",
        "            if self._unsynced:\n                self._sync_file(fd)\n",
        "            if False:\n                self._sync_file(fd)\n",
        "tests/storage/test_real_syncs.py",
        "tests/storage/test_log.py",
    ),
    # ---------------------------------------------------------------- storage: recovery
    m(
        "log recovery: a record's checksum is not checked",
        "storage/log.py",
        "return end if _crc(data[pos + 4 : body - 4], data[body:end]) == crc else -1",
        "return end",
        "tests/storage/test_log.py",
    ),
    m(
        "log recovery: damage before a flagged (synced) record is cut, not refused",
        "storage/log.py",
        "                if flags:\n                    raise StorageError(",
        "                if False:\n                    raise StorageError(",
        "tests/storage/test_log.py",
        "tests/storage/test_log_power_loss.py",
    ),
    m(
        "log recovery: damage before a record noting a later sync is cut, not refused",
        "storage/log.py",
        "                if claim > bad:",
        "                if False:",
        "tests/storage/test_log.py",
        "tests/storage/test_log_power_loss.py",
    ),
    m(
        "log recovery: the cut of an unsynced tail is not synced before the new incarnation",
        "storage/log.py",
        "                if dropped:\n",
        "                if False:\n",
        "tests/storage/test_log.py",
        "tests/storage/test_log_power_loss.py",
        "tests/storage/test_real_syncs.py",
    ),
    # ---------------------------------------------------------------- quorums
    m(
        "rules: a quorum is a minority (n // 2)",
        "core/rules.py",
        "    return members // 2 + 1",
        "    return max(1, members // 2)",
        "tests/core/test_synod_rules.py",
        *SWARM,
    ),
    # Both counts of promises: phase 1's, and the leader's before it opens a
    # slot of a configuration. Either alone survives: the other still holds.
    Mutant(
        "multipaxos: a candidate leads with one promise short of a quorum",
        (
            (
                "core/election.py",
                "        return all(c.is_quorum(ids) for c in configs)",
                "        return all(len(c.voters & ids) >= c.quorum - 1 for c in configs)",
            ),
            (
                "core/leadership.py",
                "self._me in config.voters and config.is_quorum(self.promised),",
                "self._me in config.voters "
                "and len(config.voters & self.promised) >= config.quorum - 1,",
            ),
        ),
        SWARM,
    ),
    m(
        "multipaxos: a slot is chosen with one acceptance short of a quorum",
        "core/leadership.py",
        "rules.Tally(config.quorum)",
        "rules.Tally(max(1, config.quorum - 1))",
        *SWARM,
    ),
    m(
        "synod: a learner decides with one acceptance short of a quorum",
        "core/synod.py",
        "tally = self._learned.setdefault(m.ballot, rules.Tally(self._quorum))",
        "tally = self._learned.setdefault(m.ballot, rules.Tally(max(1, self._quorum - 1)))",
        "tests/core/test_synod_rules.py",
        *SWARM,
    ),
    m(
        "tally: counts messages, not distinct senders (Go defect 3)",
        "core/rules.py",
        "        self.senders.add(sender)\n",
        "        self.senders.add(f'{sender}#{len(self.senders)}')\n",
        "tests/core/test_synod_rules.py",
        "tests/core/test_multipaxos_scenarios.py",
    ),
    # ---------------------------------------------------------------- promise / accept rules
    m(
        "rules: promise a ballot of the same round, ignoring the proposer",
        "core/rules.py",
        "    return ballot > promised\n",
        "    return ballot.round >= promised.round\n",
        "tests/core/test_synod_rules.py",
        *SWARM,
    ),
    m(
        "rules: accept below the promise",
        "core/rules.py",
        "    return ballot >= promised\n",
        "    return True\n",
        "tests/core/test_synod_rules.py",
        *SWARM,
    ),
    # ---------------------------------------------------------------- ballots
    m(
        "ballots: ordering and equality ignore the proposer (colliding ballots)",
        "core/types.py",
        "    round: int\n    node_id: str\n",
        "    round: int\n    node_id: str = field(compare=False)\n",
        "tests/sim/test_ballot_ownership.py",
    ),
    m(
        "multipaxos: a new ballot takes the node id of the highest seen (Go defect 2)",
        "core/election.py",
        "        self.ballot = Ballot(top.round + 1, self._me)",
        "        self.ballot = Ballot(top.round + 1, top.node_id or self._me)",
        "tests/sim/test_ballot_ownership.py",
    ),
    m(
        "synod: a new ballot takes the node id of the highest seen (Go defect 2)",
        "core/synod.py",
        "        self._ballot = Ballot(top.round + 1, self.node_id)",
        "        self._ballot = Ballot(top.round + 1, top.node_id or self.node_id)",
        "tests/sim/test_ballot_ownership.py",
    ),
    # ---------------------------------------------------------------- P2c
    m(
        "rules: phase 2 adopts the lowest-ballot accepted value (Go defect 4)",
        "core/rules.py",
        "report[0] > best[0]",
        "report[0] < best[0]",
        "tests/core/test_synod_rules.py",
        "tests/core/test_multipaxos_scenarios.py",
    ),
    m(
        "multipaxos: a new leader ignores the values reported accepted",
        "core/election.py",
        "            best = rules.highest_accepted(reports.get(slot, ()))",
        "            best = None",
        "tests/core/test_multipaxos_scenarios.py",
        *SWARM,
    ),
    # ---------------------------------------------------------------- durability of votes
    m(
        "multipaxos: the leader counts its own acceptance before it is durable",
        "core/outbox.py",
        "        self.held.append((self.ready_seq + 1, vote))",
        "        self.loopback.append(vote)",
        *SWARM,
    ),
    m(
        "multipaxos: promises and acceptances are saved without a sync",
        "core/outbox.py",
        "_SET_MUST_SYNC(r, acceptor.promised_dirty or bool(acceptor.accepted_new))",
        "_SET_MUST_SYNC(r, False)",
        "tests/node/test_tob_durability.py",
    ),
    m(
        "synod: promises and acceptances are saved without a sync",
        "core/synod.py",
        "must_sync=self._promised_dirty or self._accepted_dirty",
        "must_sync=False",
        "tests/core/test_synod_rules.py",
        _SWARM_FILE + "single_decree_schedules_keep_every_property[seeds0-199]",
        _SWARM_FILE + "single_decree_schedules_keep_every_property[seeds200-399]",
    ),
    # ---------------------------------------------------------------- identity
    Mutant(
        "log: a missing store is made without bootstrap (a wiped node rejoins empty)",
        (
            (
                "storage/log.py",
                "                if bootstrap is None:\n"
                "                    raise StoreMissingError("
                "missing_store_message(self.path, node_id))\n",
                "",
            ),
            (
                "storage/log.py",
                "self._create(header, tuple(sorted(set(bootstrap))))",
                "self._create(header, tuple(sorted(set(bootstrap or ()))))",
            ),
        ),
        (
            "tests/storage/test_log.py::TestLogConformance",
            "tests/integration/test_wiped_disk.py",
        ),
    ),
    m(
        "storage: a new store's first incarnation is not random (ids of a wiped life repeat)",
        "storage/base.py",
        "    return INCARNATION_BASE_MIN + "
        "secrets.randbelow(INCARNATION_BASE_MAX - INCARNATION_BASE_MIN)",
        "    return 2",
        "tests/storage/test_memory.py",
        "tests/integration/test_wiped_disk.py",
    ),
    m(
        "multipaxos: a delivery under our pending id is taken as ours whatever its payload",
        "core/log.py",
        "                    if mine.payload != p.payload:",
        "                    if False:",
        "tests/core/test_proposal_id_conflicts.py",
    ),
    m(
        "runtime: a node's store made for other members is opened anyway",
        "node/_common.py",
        "    if state.members and state.members != members:",
        "    if False:",
        "tests/node/test_tob_durability.py",
    ),
    m(
        "proposals: a life numbers past its counter, into the next incarnation's ids",
        "core/proposals.py",
        "        if self._seq & COUNTER_MASK == COUNTER_MASK:",
        "        if False:",
        "tests/core/test_proposal_id_conflicts.py",
    ),
    # ---------------------------------------------------------------- handshake
    m(
        "handshake: a wrong proof is accepted",
        "transport/auth.py",
        "    if not hmac.compare_digest(expected, got):",
        "    if False:",
        "tests/transport/test_tcp_auth.py",
    ),
    m(
        "handshake: the dialer does not check the listener's proof",
        "transport/tcp.py",
        'verify_proof(proof(self._secret, "listener", *args), decode_proof(await stream.read()))',
        "decode_proof(await stream.read())",
        "tests/transport/test_tcp_listener_proof.py",
    ),
    # ---------------------------------------------------------------- reads by read index
    m(
        "reads: a leader serves reads without a quorum answering its probe",
        "core/reads.py",
        "            if all(rules.is_quorum(voters, sorted(c.voters)) for c in configs):",
        "            if True:",
        "tests/core/test_read_index.py",
        "tests/sim/test_reads.py",
        "tests/kv_embedded/test_kvstore.py",
    ),
    m(
        "reads: a new leader's read index leaves out the slots its phase 1 recovered",
        "core/reads.py",
        "    return max(log.decided_through, lead.recovered_through)",
        "    return log.decided_through",
        "tests/core/test_read_index.py",
        "tests/sim/test_reads.py",
    ),
    m(
        "reads: a follower answers a read probe of a ballot below its promise",
        "core/voter.py",
        "        if m.ballot < promised:\n"
        "            self._send(m.sender, Nack(self._instance, self._me, m.ballot, promised))\n"
        "            return\n"
        "        self._election.follow(m.ballot, now)\n"
        "        self._learn_commit(m.ballot, m.commit, now)\n"
        "        self._replied = (now, m.ballot)\n",
        "        self._election.follow(m.ballot, now)\n"
        "        self._learn_commit(m.ballot, m.commit, now)\n"
        "        self._replied = (now, m.ballot)\n",
        "tests/core/test_read_index.py",
    ),
    Mutant(
        "reads: a read runs once its index is confirmed, before it is applied here",
        (
            (
                "core/reads.py",
                "        self._applying += [(m.index, rid) for rid in ask.request_ids "
                "if rid in waiting]",
                "        self._applying += [(0, rid) for rid in ask.request_ids if rid in waiting]",
            ),
            (
                "core/reads.py",
                "                        self._applying.append((index, n))",
                "                        self._applying.append((0, n))",
            ),
        ),
        ("tests/core/test_read_index.py", "tests/sim/test_reads.py"),
    ),
    # ---------------------------------------------------------------- leader leases
    m(
        "lease: a follower answers probes as guarding but lets any candidate in",
        "core/lease.py",
        "        if not (self.pending or self.now_ms < self.until):\n            return False\n",
        "        if True:\n            return False\n",
        "tests/core/test_lease.py",
        "tests/sim/test_lease.py",
    ),
    m(
        "lease: the lease's voters are not checked against a configuration decided since",
        "core/reads.py",
        "        return all(c.is_quorum(voters) for c in self._configs())\n",
        "        return True\n",
        "tests/core/test_lease.py",
    ),
    m(
        "lease: the lease is the whole guard (the drift bound ignored)",
        "core/lease.py",
        "math.floor(guard_ms * (1 - drift_max) / (1 + drift_max))",
        "guard_ms",
        "tests/core/test_lease.py",
        "tests/sim/test_lease.py",
    ),
    m(
        "lease: a read is checked against the last tick's reading (a stalled loop stretches it)",
        "core/multipaxos.py",
        "                    self._mono_ms + event.elapsed_ms,\n",
        "                    self._mono_ms,\n",
        "tests/core/test_lease.py",
    ),
    m(
        "lease: a follower's guard starts from the reading before the message arrived",
        "core/lease.py",
        "        self.ballot = ballot\n        self.pending = True\n",
        "        self.ballot = ballot\n"
        "        self.until = max(self.until, self.now_ms + self.guard_ms)\n",
        "tests/core/test_lease.py",
    ),
    m(
        "lease: a restarted node guards nobody until it hears a leader",
        "core/lease.py",
        "        # On from the start: the first reading sets ``until``.\n"
        "        self.pending = True\n",
        "        self.pending = False\n",
        "tests/core/test_lease.py",
    ),
    m(
        "lease: a follower vouches for an older leader than the one it guards",
        "core/lease.py",
        "        if guarded is not None and ballot < guarded:\n",
        "        if False:\n",
        "tests/core/test_lease.py",
    ),
    m(
        "lease: commit heartbeats stand in for the lease's rounds (it lapses under load)",
        "core/multipaxos.py",
        "            and now >= self.reads.round_at + self.config.heartbeat_ticks\n",
        "            and now >= lead.heartbeat_due\n",
        "tests/core/test_lease.py",
    ),
    Mutant(
        "lease: a guarding node refuses its own Prepare instead of deferring its campaign",
        (
            (
                "core/election.py",
                "        if guard is not None and guard.refuses(self._me):\n",
                "        if False:\n",
            ),
            (
                "core/voter.py",
                "            and m.sender != self._me  # (our own campaigns wait for the guard: "
                "election.py)\n",
                "",
            ),
        ),
        ("tests/core/test_lease.py",),
    ),
    m(
        "lease: a follower's ask is granted by the last tick's reading (a stall stretches it)",
        "core/multipaxos.py",
        "                self._on_ask(m, self._mono_ms + event.elapsed_ms)\n",
        "                self._on_ask(m, self._mono_ms)\n",
        "tests/core/test_lease.py",
    ),
    m(
        "lease: a reply without a guard counts towards a lease",
        "core/reads.py",
        "        if not m.guard_ms:\n"
        "            guarded.pop(m.sender, None)  # (mixed leases, or it guards a newer leader)\n"
        "            return\n",
        "        if not m.guard_ms:\n"
        "            m = ReadProbeReply(m.instance, m.sender, m.ballot, m.round, 150)\n",
        "tests/core/test_lease.py",
    ),
)

# The Go original's defects and the durable-vote rule that the model checker
# must find (tests/check/test_defects.py plants each of these, and some of
# MUTANTS, by name): in the defect's scope the shipped core keeps every
# property, and the mutant does not.
_CHECK = "tests/check/test_defects.py::test_shipped_core_keeps_every_property_in_the_scope_of"
CHECK_MUTANTS: tuple[Mutant, ...] = (
    m(
        "multipaxos: messages of another instance are taken as ours (Go defect 1)",
        "core/multipaxos.py",
        "        if m.instance != self.instance or (\n",
        "        if (\n",
        _CHECK + "[instance ids]",
    ),
    m(
        "multipaxos: a proposal that lost its slot is taken as settled by the winner (Go defect 5)",
        "core/multipaxos.py",
        "        self.acceptor.accepted.pop(slot, None)\n"
        "        self._outbox.decided_new.append(DecidedEntry(slot, value))",
        "        ours = self.acceptor.accepted.pop(slot, None)\n"
        "        if ours is not None and ours[1] != value:\n"
        "            for p in ours[1]:\n"
        "                self.proposals.pending.pop(p.id, None)\n"
        "                self.proposals.forwarded_at.pop(p.id, None)\n"
        "        self._outbox.decided_new.append(DecidedEntry(slot, value))",
        _CHECK + "[re-proposing the winner]",
    ),
    Mutant(
        "outbox: promises and acceptances leave before they are durable",
        (
            (
                "core/outbox.py",
                "    ReadProbeReply,\n    SnapshotChunk,\n)\nfrom .types",
                "    Promise,\n    ReadProbeReply,\n    SnapshotChunk,\n)\nfrom .types",
            ),
            (
                "core/outbox.py",
                "EARLY: tuple[type[Message], ...] = (\n    Accept,\n",
                "EARLY: tuple[type[Message], ...] = (\n    Promise,\n    Accepted,\n    Accept,\n",
            ),
        ),
        (_CHECK + "[votes sent before durable]",),
    ),
    m(
        "multipaxos: a change governs the slot right after its own (alpha ignored)",
        "core/multipaxos.py",
        "        self.log = DecidedLog(Configuration(frozenset(self.members)), "
        "config_delay_slots)\n",
        "        self.log = DecidedLog(Configuration(frozenset(self.members)), 1)\n",
        _CHECK + "[alpha ignored]",
    ),
    m(
        "leadership: a slot is opened with the newest configuration's voters and quorum",
        "core/leadership.py",
        "        config = self._log.membership.config_for(slot)\n"
        "        self.open[slot] = OpenSlot(",
        "        config = self._log.membership.newest\n        self.open[slot] = OpenSlot(",
        _CHECK + "[newest configuration too early]",
    ),
)

#: Mutants the tests are known not to kill, and why (reported, not hidden).
SURVIVORS_EXPECTED: dict[str, str] = {}


@dataclass
class Outcome:
    mutant: Mutant
    verdict: str  # killed | survived | error
    seconds: float
    detail: str


def mutated_tree(mutant: Mutant, into: Path) -> None:
    """A copy of ``src`` with the mutant's edits; ``ValueError`` if an edit does not apply."""
    shutil.copytree(ROOT / "src", into / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for file, old, new in mutant.edits:
        path = into / PACKAGE / file
        text = path.read_text()
        if text.count(old) != 1:
            raise ValueError(f"{file}: the text to replace occurs {text.count(old)} times: {old!r}")
        path.write_text(text.replace(old, new))


def run_one(mutant: Mutant, timeout_s: float, *, every: bool = False) -> Outcome:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="paxostob-mutant-") as tmp:
        try:
            mutated_tree(mutant, Path(tmp))
        except ValueError as e:
            return Outcome(mutant, "error", 0.0, str(e))
        env = {**os.environ, "PYTHONPATH": str(Path(tmp) / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
        where = subprocess.run(
            [sys.executable, "-c", "import paxostob; print(paxostob.__file__)"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not where.startswith(tmp):
            return Outcome(mutant, "error", 0.0, f"imported {where}, not the mutated copy")
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        argv += [] if every else ["-x"]
        argv += ["-o", "addopts=", *mutant.tests]
        try:
            done = subprocess.run(
                argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            return Outcome(mutant, "killed", time.monotonic() - start, f"timeout {timeout_s:.0f}s")
    seconds = time.monotonic() - start
    lines = done.stdout.strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    if failed:
        summary = "\n".join(line.split(" - ")[0] for line in failed)
    else:
        summary = lines[-1] if lines else done.stderr.strip()[-200:]
    if done.returncode == 1:
        return Outcome(mutant, "killed", seconds, summary)
    if done.returncode == 0:
        return Outcome(mutant, "survived", seconds, summary)
    return Outcome(mutant, "error", seconds, f"pytest exit {done.returncode}: {summary}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", default=[], help="mutants whose name has this")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    ap.add_argument(
        "--every", action="store_true", help="run every named test (not -x): all that catch it"
    )
    args = ap.parse_args(argv)
    chosen = [
        x
        for x in (*MUTANTS, *CHECK_MUTANTS)
        if not args.only or any(o in x.name for o in args.only)
    ]
    if args.list:
        for x in chosen:
            print(f"{x.name}\n    tests: {' '.join(x.tests)}")
        return 0
    outcomes: list[Outcome] = []
    for x in chosen:
        o = run_one(x, args.timeout, every=args.every)
        outcomes.append(o)
        detail = o.detail.replace("\n", "\n" + " " * 18)
        print(f"{o.verdict:8} {o.seconds:6.1f}s  {x.name}\n{'':18}{detail}", flush=True)
    killed = sum(o.verdict == "killed" for o in outcomes)
    scored = sum(o.verdict != "error" for o in outcomes)
    print(f"\nscore: {killed}/{scored} mutants killed", end="")
    print(f" ({100 * killed / scored:.0f}%)" if scored else "")
    for o in outcomes:
        if o.verdict == "survived":
            why = SURVIVORS_EXPECTED.get(o.mutant.name, "not expected: a blind spot to fix")
            print(f"survived: {o.mutant.name}: {why}")
        elif o.verdict == "error":
            print(f"error: {o.mutant.name}: {o.detail}")
    unexpected = [
        o
        for o in outcomes
        if o.verdict == "error"
        or (o.verdict == "survived" and o.mutant.name not in SURVIVORS_EXPECTED)
    ]
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
