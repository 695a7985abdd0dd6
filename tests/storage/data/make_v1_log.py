"""Writes ``v1.log``, a format-1 log for test_log.py, with the format-1 LogStorage.

Run with a paxostob from before format 2 on the path (commit b3264ca), e.g.
``git worktree add /tmp/v1 b3264ca && PYTHONPATH=/tmp/v1/src python
tests/storage/data/make_v1_log.py tests/storage/data/v1.log``. The state it
holds is what ``test_log.V1_STATE`` expects.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from paxostob.core.events import AcceptedEntry, Ready
from paxostob.core.types import Ballot, Batch, DecidedEntry, Proposal, ProposalId
from paxostob.storage.base import Snapshot
from paxostob.storage.log import FORMAT_VERSION, LogStorage


def value(slot: int) -> Batch:
    return (Proposal(ProposalId("n1", slot), f"v{slot}".encode()),)


def main(out: str) -> None:
    assert FORMAT_VERSION == 1, "run this with a format-1 paxostob on the path"
    with tempfile.TemporaryDirectory() as d:
        s = LogStorage(d)
        s.open("cluster-1", "n1")
        s.save(
            Ready(
                promised=Ballot(1, "n1"),
                accepted=(AcceptedEntry(1, Ballot(1, "n1"), value(1)),),
                decided=(DecidedEntry(1, value(1)),),
                must_sync=True,
            )
        )
        s.install_snapshot(Snapshot(1, b"meta", b"data"))
        for slot in range(2, 6):
            entry = AcceptedEntry(slot, Ballot(slot, "n1"), value(slot))
            s.save(Ready(promised=Ballot(slot, "n1"), accepted=(entry,), must_sync=True))
            s.save(Ready(decided=(DecidedEntry(slot, value(slot)),)))
        s.close()
        s.open("cluster-1", "n1")
        s.close()
        shutil.copy(Path(d) / "paxostob.log", out)


if __name__ == "__main__":
    main(sys.argv[1])
