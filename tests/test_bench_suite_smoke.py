"""The benchmark suite still runs, in a tiny configuration (no timing is asserted).

No peer is installed and nothing is fetched: the parts that need only
paxostob run against a real 3-node cluster on loopback (200 SETs, 50
broadcasts); a peer whose programs are missing must be reported as "not
available: <reason>", never dropped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import benchcommon  # noqa: E402
import peers  # noqa: E402
import profile_node  # noqa: E402
import report  # noqa: E402
import run_all  # noqa: E402
import soak  # noqa: E402
from drivers import Budget  # noqa: E402

pytestmark = pytest.mark.timeout(180)

HAND_WRITTEN = "## Where the time goes\n\nwritten by hand, kept across runs\n"


def test_run_all_measures_the_parts_and_writes_the_report(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(report.SKELETON + "\n" + HAND_WRITTEN)
    json_path = tmp_path / "rows.json"
    argv = [
        "--quick", "--parts", "tob_inmemory,tob_cluster,kv", "--requests", "200",
        "--clients", "1,50", "--run-s", "20", "--doc", str(doc),
        "--plots-dir", str(tmp_path / "plots"), "--json", str(json_path),
    ]  # fmt: skip
    assert run_all.main(argv) == 0
    systems, rows = benchcommon.load_json(json_path)
    assert [s.name for s in systems] == ["paxostob"]
    by = {(r.system, r.workload, r.tool, r.clients, r.pipeline): r for r in rows}
    for clients in (1, 50):
        assert by["paxostob", "set", "python-asyncio", clients, 1].requests == 200
        assert by["paxostob", "broadcast", "python-asyncio", clients, 1].requests == 200
    assert by["paxostob (in-process)", "tob r=3 batching=on 100B", "in-process", 50, 1].requests
    if "redis-benchmark rows: not available" not in " ".join(systems[0].notes):
        get50 = by["paxostob", "get", "redis-benchmark", 50, 1]
        assert get50.ops_s > 0
        # The nodes' CPU is read around each run (ticks of 10 ms: a tiny run may read 0).
        assert get50.cpu_us_per_op is not None and get50.cpu_us_per_op >= 0
        assert "CPU per SET at `-c 50 -P 1`" in doc.read_text()
    text = doc.read_text()
    for heading in ("### Machine", "### Systems", "### Performance goals", "### Every row"):
        assert heading in text
    assert "| cpu " in text and "| kernel " in text and "| python " in text
    assert text.endswith(HAND_WRITTEN), "the hand-written part is kept"
    # Regenerating replaces the block instead of appending another.
    # (--plots-dir each time: the committed plots in docs/bench are not the test's to rewrite.)
    plots = ["--plots-dir", str(tmp_path / "plots")]
    assert run_all.main(["--from-json", str(json_path), "--doc", str(doc), "--no-doc", *plots]) == 0
    assert run_all.main(["--from-json", str(json_path), "--doc", str(doc), *plots]) == 0
    assert doc.read_text().count("<!-- BEGIN generated -->") == 1
    if benchcommon.optional_module("matplotlib") is not None:
        assert (tmp_path / "plots" / "throughput_vs_clients.png").stat().st_size > 0


def test_a_missing_peer_is_reported_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peers, "ZK_JAR", tmp_path / "no-zookeeper.jar")
    monkeypatch.setattr("shutil.which", lambda name: None)
    budget = Budget(run_s=1, repeats=1, clients=(1,), requests=10)
    infos, rows = peers.run(
        budget, benchcommon.quiet_progress(), only=["zookeeper", "etcd", "redis"]
    )
    assert rows == []
    assert [i.name for i in infos] == ["zookeeper", "etcd", "redis"]
    for info in infos:
        assert info.unavailable is not None and info.unavailable.startswith("not available: ")
    table = report.systems_table(infos)
    assert table.count("not available: ") == 3


def test_the_soak_samples_every_node(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    argv = ["--minutes", "0.05", "--clients", "5", "--sample-s", "0.5", "--doc", str(doc)]
    assert soak.main([*argv, "--plot", str(tmp_path / "soak.png")]) == 0
    text = doc.read_text()
    assert "<!-- BEGIN soak -->" in text and "Memory and fds flat after warm-up" in text
    assert text.count("| 1 ") == text.count("| 2 ") == text.count("| 3 ") == 1


def test_profile_summary_counts_self_and_total_time(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "process 1;thread (0x1);main (a/paxostob/x.py:1);f (a/paxostob/y.py:2) 3\n"
        "process 1;thread (0x1);main (a/paxostob/x.py:1);g (a/paxostob/y.py:9) 1\n"
    )
    samples, self_pct, total_pct = profile_node.summarize(raw, top=5)
    assert samples == 4
    assert dict(self_pct) == {"f (y.py)": 75.0, "g (y.py)": 25.0}
    assert dict(total_pct)["main (x.py)"] == 100.0
