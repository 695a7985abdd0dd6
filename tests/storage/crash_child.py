"""The process test_crash.py kills: it saves synced Readys in a loop until it dies.

Usage: ``python crash_child.py DATA_DIR [KIND]``. It opens the store of
``KIND`` (``sqlite``, the default, or ``log``: a key of ``STORES``) on DATA_DIR,
prints ``open <incarnation>``, then runs save ``n`` for n = h+1, h+2, ...
where ``h`` is the last save the store holds (its promise is ``Ballot(h)``).
Save ``n`` is one ``Ready`` with ``must_sync``:

- promise ``Ballot(n, NODE)``;
- accepted slots ``2n-1`` and ``2n`` at ballot ``n``, and slot ``2n-2``
  accepted again at ballot ``n`` (a replacement);
- decided slots ``2n-1`` and ``2n``.

After ``save`` returns it prints ``n``; every ``SNAPSHOT_EVERY`` saves it
then installs a snapshot through slot ``2n`` and prints ``snap n``. Each line
is flushed at once: a printed line is a promise that the save is durable.

The test imports the ``expected_*`` functions to know what a store holding
saves 1..h must contain, exactly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from paxostob.core.events import AcceptedEntry, Ready
from paxostob.core.types import Ballot, Batch, DecidedEntry, Proposal, ProposalId
from paxostob.storage.base import Snapshot, Storage
from paxostob.storage.log import LogStorage
from paxostob.storage.sqlite import SqliteStorage

CLUSTER = "crash-test"
NODE = "n1"
#: Often enough that kills land in ``install_snapshot`` too, and the store stays small.
SNAPSHOT_EVERY = 50
#: The durable stores the crash test runs, by the name the command line gives.
STORES: dict[str, Callable[[str], Storage]] = {"sqlite": SqliteStorage, "log": LogStorage}


def value(slot: int, tag: str) -> Batch:
    return (Proposal(ProposalId(NODE, slot), f"{tag}:{slot}".encode()),)


def expected_accepted_ballot(slot: int, last_save: int) -> int:
    """The ballot slot ``slot`` holds after saves 1..``last_save``."""
    n = (slot + 1) // 2  # the save that first accepted it
    if slot % 2 == 0 and n + 1 <= last_save:
        return n + 1  # save n+1 accepted it again
    return n


def expected_accepted(slot: int, last_save: int) -> AcceptedEntry:
    ballot = expected_accepted_ballot(slot, last_save)
    return AcceptedEntry(slot, Ballot(ballot, NODE), value(slot, f"a{ballot}"))


def expected_decided(slot: int) -> DecidedEntry:
    return DecidedEntry(slot, value(slot, "d"))


def ready_of_save(n: int) -> Ready:
    accepted = [AcceptedEntry(s, Ballot(n, NODE), value(s, f"a{n}")) for s in (2 * n - 1, 2 * n)]
    if n >= 2:
        accepted.insert(0, AcceptedEntry(2 * n - 2, Ballot(n, NODE), value(2 * n - 2, f"a{n}")))
    return Ready(
        promised=Ballot(n, NODE),
        accepted=tuple(accepted),
        decided=(expected_decided(2 * n - 1), expected_decided(2 * n)),
        must_sync=True,
    )


def main(data_dir: str, kind: str) -> None:
    storage = STORES[kind](data_dir)
    state = storage.open(CLUSTER, NODE, bootstrap=[NODE])
    print(f"open {state.incarnation}", flush=True)
    n = state.promised.round
    while True:
        n += 1
        storage.save(ready_of_save(n))
        print(n, flush=True)
        if n % SNAPSHOT_EVERY == 0:
            storage.install_snapshot(Snapshot(2 * n, b"", str(n).encode()))
            print(f"snap {n}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "sqlite")
