"""The acceptor's answers: what a replica says to the owner of a ballot it hears.

Theory of operation ("Paxos Made Simple" §2.2-2.3, §3; multipaxos.py has the
protocol): the ``Acceptor`` holds the promises and acceptances and never
sends; this part answers the messages that ask for a vote or carry a
leader's ballot, and learns what a leader's commit watermark says decided.

- ``Prepare`` (phase 1b): promise and report, or ``Nack`` with our promise.
- ``Accept`` (phase 2b): accept and answer ``Accepted``, or ``Nack``.
- ``Heartbeat``, ``ReadProbe``: a leader of a ballot we promised nothing
  above is followed and its commit watermark learned from; a deposed one
  gets a ``Nack``, so it steps down. A heartbeat is answered at most once
  per tick and ballot, a probe always (reads.py argues the probe).
- With leases (``LogConfig.leases``, core/reads.py 'Leases'): hearing the
  leader we follow (an admitted ``Accept``, ``Heartbeat`` or ``ReadProbe``
  from its ballot's owner) starts our ``Guard``; while it holds, a
  ``Prepare`` of a higher ballot from any other node is dropped unanswered
  (our own campaigns wait for the guard instead: election.py), and a
  probe's reply says how long we guard.
- Learning from a watermark (multipaxos.py, 'Learning'): a slot ``s <= c``
  is decided when the leader of ballot ``b`` says every slot ``<= c`` is
  decided and we accepted ``s`` in ``b``; anything else is fetched.

Every slot learned decided goes through the replica's ``decide``.
"""

from __future__ import annotations

from collections.abc import Callable

from .acceptor import Acceptor
from .catchup import Catchup
from .election import Election
from .lease import Guard
from .log import DecidedLog
from .messages import (
    Accept,
    Accepted,
    Heartbeat,
    HeartbeatReply,
    Message,
    Nack,
    Prepare,
    Promise,
    PromiseEntry,
    ReadProbe,
    ReadProbeReply,
)
from .types import ZERO_BALLOT, Ballot, Batch

__all__ = ["Voter"]


class Voter:
    """A replica's answers as acceptor, and learning from commit watermarks (module docstring)."""

    __slots__ = (
        "_acceptor",
        "_catchup",
        "_decide",
        "_election",
        "_instance",
        "_log",
        "_me",
        "_replied",
        "_send",
        "guard",
        "refused",
    )

    def __init__(
        self,
        *,
        me: str,
        instance: str,
        acceptor: Acceptor,
        log: DecidedLog,
        election: Election,
        catchup: Catchup,
        send: Callable[[str, Message], None],
        decide: Callable[[int, Batch], None],
        guard: Guard | None = None,
    ) -> None:
        self._me = me
        self._instance = instance
        self._acceptor = acceptor
        self._log = log
        self._election = election
        self._catchup = catchup
        self._send = send
        self._decide = decide
        #: With leases: whom we let no other node depose, and until when.
        self.guard = guard
        #: Prepares dropped by the guard.
        self.refused = 0
        #: (tick, ballot) of our last HeartbeatReply or Accepted to a leader.
        self._replied: tuple[int, Ballot] = (-1, ZERO_BALLOT)

    def on_message(self, m: Prepare | Accept | Heartbeat | ReadProbe, now: int) -> bool:
        """Answer a message of a ballot's owner; False when it is ignored."""
        if isinstance(m, Accept):
            return self._on_accept(m, now)
        if isinstance(m, Heartbeat):
            self._on_heartbeat(m, now)
        elif isinstance(m, Prepare):
            self._on_prepare(m, now)
        else:
            self._on_read_probe(m, now)
        return True

    def _on_prepare(self, m: Prepare, now: int) -> None:
        acceptor = self._acceptor
        # Asked again for the ballot we promised (the leader asks the voters of
        # a new configuration, or our promise was lost): promise it again.
        again = m.ballot == acceptor.promised and m.sender == m.ballot.node_id
        guard = self.guard
        if (
            guard is not None
            and not again
            and m.sender != self._me  # (our own campaigns wait for the guard: election.py)
            and m.ballot > acceptor.promised
            and guard.refuses(m.sender)
        ):
            # Unanswered, not refused with a Nack: the candidate retries
            # (accept_retry_ticks) without raising its ballot each time.
            self.refused += 1
            return
        if not again and not acceptor.promise(m.ballot):
            self._send(m.sender, Nack(self._instance, self._me, m.ballot, acceptor.promised))
            return
        self._election.promised(m, now)
        # Decided slots the candidate lacks, from its first missing one: the
        # candidate must learn them here, since we may be the only live node
        # that knows them (bounded like a catch-up chunk; the rest by catch-up).
        log = self._log
        entries = [
            PromiseEntry(e.slot, ZERO_BALLOT, e.value, decided=True)
            for e in self._catchup.chunk(m.slot)
        ]
        low = max(m.slot, log.decided_through + 1)
        entries.extend(
            PromiseEntry(s, ZERO_BALLOT, v, decided=True)
            for s, v in log.entries.items()
            if s >= low and s > log.decided_through
        )
        entries.extend(acceptor.report(low, log.entries))
        entries.sort(key=lambda e: e.slot)
        promise = Promise(self._instance, self._me, m.ballot, log.decided_through, tuple(entries))
        self._send(m.sender, promise)

    def _on_accept(self, m: Accept, now: int) -> bool:
        """Phase 2b; False when the message is ignored (a value other than the one chosen)."""
        acceptor = self._acceptor
        if not acceptor.admit(m.ballot):
            self._send(m.sender, Nack(self._instance, self._me, m.ballot, acceptor.promised))
            return True
        el = self._election
        if m.ballot > el.highest_seen:
            el.highest_seen = m.ballot
        el.follow(m.ballot, now)
        self._heard(m.sender, m.ballot)
        log = self._log
        chosen = log.entries.get(m.slot)
        if chosen is not None:
            if chosen != m.value:
                # Only a broken proposer could propose another value for a
                # chosen slot; never count towards its quorum.
                return False
        elif m.slot > log.decided_through:
            acceptor.accept(m.slot, m.ballot, m.value)
        self._send(m.sender, Accepted(self._instance, self._me, m.ballot, m.slot, None))
        self._replied = (now, m.ballot)  # the leader heard from us this tick
        self._learn_commit(m.ballot, m.commit, now)
        return True

    def _on_heartbeat(self, m: Heartbeat, now: int) -> None:
        promised = self._acceptor.promised
        if m.ballot < promised:
            # A deposed leader: tell it, so it steps down.
            self._send(m.sender, Nack(self._instance, self._me, m.ballot, promised))
            return
        self._election.follow(m.ballot, now)
        self._heard(m.sender, m.ballot)
        self._learn_commit(m.ballot, m.commit, now)
        # The leader only needs to hear from us now and then (its quorum check
        # spans two election timeouts), and an Accepted counts as hearing:
        # answer at most once per tick and ballot. Under load a commit
        # heartbeat follows every decision; answering each doubled our frames.
        if self._replied != (now, m.ballot):
            self._replied = (now, m.ballot)
            reply = HeartbeatReply(self._instance, self._me, m.ballot, self._log.decided_through)
            self._send(m.sender, reply)

    def _on_read_probe(self, m: ReadProbe, now: int) -> None:
        """A heartbeat that is always answered: we promised nothing above its ballot."""
        promised = self._acceptor.promised
        if m.ballot < promised:
            self._send(m.sender, Nack(self._instance, self._me, m.ballot, promised))
            return
        self._election.follow(m.ballot, now)
        self._learn_commit(m.ballot, m.commit, now)
        self._replied = (now, m.ballot)
        guarding = self._heard(m.sender, m.ballot)
        guard_ms = self.guard.guard_ms if guarding and self.guard is not None else 0
        reply = ReadProbeReply(self._instance, self._me, m.ballot, m.round, guard_ms)
        self._send(m.sender, reply)

    def _heard(self, sender: str, ballot: Ballot) -> bool:
        """Guard ``ballot``'s leader (leases only); whether we now guard it."""
        guard = self.guard
        if guard is None or sender != ballot.node_id or sender == self._me:
            return False
        return guard.heard(ballot)

    def _learn_commit(self, ballot: Ballot, commit: int, now: int) -> None:
        log = self._log
        if commit <= log.decided_through:
            return
        if commit > log.known_commit:
            log.known_commit = commit
        # Safe only for slots we accepted in the leader's own ballot.
        accepted = self._acceptor.accepted
        for slot in sorted(s for s in accepted if s <= commit):
            b, v = accepted[slot]
            if b == ballot:
                self._decide(slot, v)
        if log.decided_through < log.known_commit and now >= self._catchup.due:
            self._election.ask_catchup(now)
