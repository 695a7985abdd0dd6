"""The tunables of a Multi-Paxos replica, and its roles (multipaxos.py has the protocol)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["LogConfig", "Role"]


class Role(Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Tunables, in ticks, counts and bytes. Defaults assume a 10 ms tick."""

    #: The leader tells followers it is alive (and its commit) this often.
    heartbeat_ticks: int = 3
    #: A follower campaigns after hearing no leader for a random time in
    #: ``[T, 2T]``; several heartbeats must be lost before that happens.
    election_timeout_ticks: int = 15
    #: Resend Accept / Prepare to acceptors that have not answered.
    accept_retry_ticks: int = 5
    #: Re-forward an undelivered own proposal after this long.
    forward_retry_ticks: int = 30
    #: Re-ask for missing decided slots after this long.
    catchup_retry_ticks: int = 5
    #: Open (proposed, not yet decided) slots at the leader: the pipeline.
    window_slots_max: int = 64
    #: Proposals in one slot, and their bytes.
    batch_count_max: int = 512
    batch_bytes_max: int = 1 << 20
    #: Proposals waiting at the leader for a slot; more are refused and the
    #: origin retries later (back-pressure instead of unbounded memory).
    queue_max: int = 50_000
    #: Decided slots per catch-up reply, and their bytes.
    catchup_entries_max: int = 256
    catchup_bytes_max: int = 4 << 20
    #: A snapshot travels to a lagging replica in chunks of at most this
    #: (well under a TCP frame), and is not resent to the same peer sooner
    #: than ``snapshot_resend_ticks`` (a big transfer outlives catch-up retries).
    snapshot_chunk_bytes_max: int = 1 << 20
    snapshot_resend_ticks: int = 50
    #: Bytes of snapshot chunks sent per tick, to all peers together (at
    #: least one chunk per tick); the rest waits for the next ticks. One
    #: default chunk: 100 MiB/s at the 10 ms tick, far more than a follower
    #: restores per second, while the runtime encodes and writes at most a
    #: MiB of it per tick instead of the whole snapshot at once (which kept
    #: a leader's event loop, and its heartbeats, away for 485 ms on a 39 MB
    #: snapshot).
    snapshot_send_bytes_per_tick_max: int = 1 << 20
    #: Ask peers (``PreVote``) before campaigning, and refuse to let others
    #: campaign while a live leader is heard (multipaxos.py's docstring). Off: a
    #: node whose timer fires runs phase 1 at once, as releases before it
    #: did (and as a rolling upgrade from one needs until every node reads
    #: the new messages).
    pre_vote: bool = True
    #: The log's clock advances by at most this many ms per tick (see the
    #: docstring of multipaxos.py). Twice the 10 ms tick: the clock keeps up with a
    #: leader whose ticks come late, and a leader whose wall clock jumped
    #: ahead moves it at most at twice real time, so a key's TTL shrinks by
    #: at most half. Must be at least the tick interval (``tob`` checks),
    #: or the log's clock falls behind real time.
    clock_step_ms_max: int = 20
    #: A learner is promoted to voter only if it is at most this many slots
    #: behind the leader's decided prefix (core/reconfig.py): about a second
    #: of a busy log, fetched in four catch-up chunks, so a new voter can
    #: complete quorums at once.
    learner_lag_max: int = 1000
    #: A ``ReadIndex`` not served within this many ticks is reported failed
    #: (``Ready.reads_failed``): 10 s at the 10 ms tick, the key-value
    #: store's own deadline, so the core keeps nothing a caller gave up on.
    read_timeout_ticks: int = 1000
    #: Leader leases (core/reads.py, 'Leases'): a follower that hears its
    #: leader refuses every other node's ``Prepare`` for an election timeout
    #: of its own monotonic clock, and a leader that a quorum of such
    #: followers answered serves point reads with no round until its lease
    #: ends. Off by default: the lease rests on bounded clock drift
    #: (``lease_drift_max``), which ReadIndex rounds do not need.
    leases: bool = False
    #: The drift bound leases assume: every node's monotonic clock runs
    #: within this fraction of real time (0.05: within 5%). An NTP-disciplined
    #: clock slews by at most 0.05% and a free-running crystal drifts by
    #: about 0.01%, so 5% leaves a hundredfold margin (for a VM's stolen
    #: ticks too) and costs a tenth of the lease (``(1 - r) / (1 + r)``).
    lease_drift_max: float = 0.05
    #: The runtime's tick interval in ms (the runtime sets it): the guard of
    #: a lease lasts ``election_timeout_ticks * tick_ms`` of monotonic time.
    tick_ms: int = 10

    def __post_init__(self) -> None:
        for name in (
            "heartbeat_ticks",
            "election_timeout_ticks",
            "accept_retry_ticks",
            "forward_retry_ticks",
            "catchup_retry_ticks",
            "window_slots_max",
            "batch_count_max",
            "batch_bytes_max",
            "queue_max",
            "catchup_entries_max",
            "catchup_bytes_max",
            "snapshot_chunk_bytes_max",
            "snapshot_resend_ticks",
            "snapshot_send_bytes_per_tick_max",
            "clock_step_ms_max",
            "learner_lag_max",
            "read_timeout_ticks",
            "tick_ms",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"LogConfig.{name} must be >= 1")
        if self.heartbeat_ticks >= self.election_timeout_ticks:
            raise ValueError("heartbeat_ticks must be below election_timeout_ticks")
        if not 0 <= self.lease_drift_max < 1:
            raise ValueError("LogConfig.lease_drift_max must be in [0, 1)")

    @property
    def guard_ms(self) -> int:
        """How long a follower with leases refuses other candidates after it heard its leader.

        The (shortest) election timeout: pre-vote refuses that long already,
        so the guard costs no election that pre-vote would have allowed.
        """
        return self.election_timeout_ticks * self.tick_ms
