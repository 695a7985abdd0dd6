"""Every ballot has one proposer, in every simulated schedule (the Go original's defect 2).

The Go original made ballots by adding node ids to a counter, so two
proposers could own one ballot. Here a ballot is ``(round, node_id)``, and
the acceptors' strict promise rule (``rules.may_promise``) means that even
colliding ballots would rarely break agreement in a run: only one proposer
can gather a phase-1 quorum for a given ballot. So the safety checkers
cannot be relied on to notice, and this test checks the premise of the
Paxos proof itself, over the messages every run sends:

- a ``Prepare`` or ``Accept`` of ballot ``b`` is sent only by ``b``'s owner
  (``b.node_id``), and no two proposers send the same ballot;
- one ballot proposes one value per slot (every ``Accept`` of ``(b, slot)``
  carries the same value).

The seeds run the default swarm (crashes, restarts, outages, compaction) for
Multi-Paxos and single-decree consensus.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from paxostob.core.messages import Accept, Envelope, Prepare
from paxostob.core.types import Ballot
from paxostob.sim.network import SimNetwork
from paxostob.sim.runner import simulate

MULTIPAXOS_SEEDS = range(60)
SYNOD_SEEDS = range(100)


class Ballots:
    """The proposers and values seen per ballot in one run."""

    def __init__(self) -> None:
        self.owners: dict[Ballot, set[str]] = {}
        self.values: dict[tuple[Ballot, int], set[object]] = {}

    def record(self, envelope: Envelope) -> None:
        m = envelope.message
        if isinstance(m, Prepare | Accept):
            self.owners.setdefault(m.ballot, set()).add(m.sender)
        if isinstance(m, Accept):
            self.values.setdefault((m.ballot, m.slot), set()).add(m.value)

    def problems(self) -> list[str]:
        out = [
            f"ballot {b} sent by {sorted(senders)}"
            for b, senders in self.owners.items()
            if senders != {b.node_id}
        ]
        out += [
            f"ballot {b} proposed {len(values)} values for slot {slot}"
            for (b, slot), values in self.values.items()
            if len(values) > 1
        ]
        return out


@contextmanager
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[Ballots]:
    ballots = Ballots()
    send = SimNetwork.send

    def spy(self: SimNetwork, envelope: Envelope) -> None:
        ballots.record(envelope)
        send(self, envelope)

    with monkeypatch.context() as m:
        m.setattr(SimNetwork, "send", spy)
        yield ballots


@pytest.mark.parametrize("synod", [False, True], ids=["multipaxos", "synod"])
def test_every_ballot_is_sent_by_its_one_owner_with_one_value_per_slot(
    monkeypatch: pytest.MonkeyPatch, synod: bool
) -> None:
    seeds = SYNOD_SEEDS if synod else MULTIPAXOS_SEEDS
    dueling = 0  # runs where two or more proposers sent ballots: where collisions could be
    for seed in seeds:
        with recording(monkeypatch) as ballots:
            simulate(seed, synod=synod)
        problems = ballots.problems()
        assert not problems, f"paxostob sim --seed {seed}{' --synod' * synod}: {problems[:5]}"
        dueling += len(set().union(*ballots.owners.values())) > 1
    assert dueling > len(seeds) // 2, f"only {dueling} runs had more than one proposer"
