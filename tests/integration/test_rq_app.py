"""An RQ (python-rq) job queue and worker on a 3-process cluster, through a node crash.

RQ keeps its queue in lists, its jobs in hashes, its registries in sorted
sets, and moves a job between them with MULTI/EXEC pipelines; its worker
announces itself with sets and hashes and listens on pub/sub. Here a first
batch of jobs is enqueued on node 1 and run by a worker process connected to
node 1; node 1 is then killed with SIGKILL, a second batch is enqueued on
node 2 and run by a new worker process connected to node 2, and every job's
status and result is read back from node 3: the crash of the node both the
first worker and the first enqueuer used loses nothing.

The RQ workers are real ``rq worker --burst`` processes (``SimpleWorker``: no
fork per job), which exit once the queue is empty; each is bounded by a
timeout. RQ keeps each job's results in a Redis stream (``XADD`` with
``MAXLEN``, read back with ``XREVRANGE`` and ``XLEN``): every result is read
from that stream on node 3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.results import Result

from .cluster import Cluster, Node
from .kv_client import running_kv_cluster, settle, sync_client
from .rq_jobs import square

QUEUE = "squares"
#: Jobs per batch: one batch before the crash, one after.
BATCH = 15
WORKER_TIMEOUT_S = 120.0
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_kv_cluster(tmp_path) as c:
        yield c


def run_burst_worker(node: Node) -> str:
    """Run an RQ worker process on ``node`` until ``QUEUE`` is empty; return its log."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [
            sys.executable, "-m", "rq.cli", "worker", "--burst",
            "--worker-class", "rq.worker.SimpleWorker",
            "--url", f"redis://127.0.0.1:{node.resp_port}", QUEUE,
        ],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S,
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the RQ worker on node {node.node_id} failed:\n{log[-4000:]}"
    return log


def enqueue_batch(client: redis.Redis, xs: range) -> list[str]:
    queue = Queue(QUEUE, connection=client)
    return [queue.enqueue(square, x).id for x in xs]


def test_rq_jobs_all_finish_with_their_results_when_the_workers_node_is_killed(
    cluster: Cluster,
) -> None:
    n1, n2, n3 = (cluster.nodes[i] for i in ("1", "2", "3"))
    expected: dict[str, int] = {}

    with sync_client(n1, single_connection=False) as c1:
        ids = enqueue_batch(c1, range(BATCH))
        expected.update(zip(ids, (x * x for x in range(BATCH)), strict=True))
    log1 = run_burst_worker(n1)
    assert log1.count("Job OK") == BATCH, log1[-4000:]

    n1.kill9()  # the node the first enqueuer and the first worker used
    settle(cluster)  # nodes 2 and 3 agree on a leader (a new one if node 1 led)

    with sync_client(n2, single_connection=False) as c2:
        ids = enqueue_batch(c2, range(BATCH, 2 * BATCH))
        expected.update(zip(ids, (x * x for x in range(BATCH, 2 * BATCH)), strict=True))
    log2 = run_burst_worker(n2)
    assert log2.count("Job OK") == BATCH, log2[-4000:]

    with sync_client(n3, single_connection=False) as c3:
        queue = Queue(QUEUE, connection=c3)
        assert queue.count == 0
        assert queue.failed_job_registry.count == 0
        assert queue.started_job_registry.count == 0
        assert queue.finished_job_registry.count == 2 * BATCH
        results = {}
        for job_id in expected:
            job = Job.fetch(job_id, connection=c3)
            assert job.get_status() == JobStatus.FINISHED, (job_id, job.get_status())
            results[job_id] = job.return_value()
            # One run, one entry in the job's result stream (XLEN, XREVRANGE).
            assert Result.count(job) == 1
            assert [r.type for r in job.results()] == [Result.Type.SUCCESSFUL]
            # With a timeout RQ reads the stream with XREAD BLOCK (served at once here).
            latest = job.latest_result(timeout=5)
            assert latest is not None and latest.return_value == expected[job_id]
    assert results == expected


#: CLIENT LIST polls while waiting for the result reader to block.
BLOCKED_POLLS_MAX = 2_000


def test_rq_latest_result_waits_for_a_worker_on_another_node(cluster: Cluster) -> None:
    """``latest_result(timeout=...)`` blocks in ``XREAD BLOCK`` on node 1 until the worker,
    connected to node 2, adds the job's result to its stream."""
    n1, n2 = cluster.nodes["1"], cluster.nodes["2"]
    with sync_client(n1, single_connection=False) as c1, sync_client(n1) as watcher:
        job = Queue(QUEUE, connection=c1).enqueue(square, 7)
        got: list[object] = []

        def wait_for_result() -> None:
            try:
                got.append(Job.fetch(job.id, connection=c1).latest_result(timeout=60))
            except BaseException as e:
                got.append(e)

        reader = threading.Thread(target=wait_for_result)
        reader.start()
        for _ in range(BLOCKED_POLLS_MAX):
            if any("b" in c["flags"] for c in watcher.client_list()) or got:
                break
        assert not got, f"the reader did not block: {got}"
        run_burst_worker(n2)
        reader.join(WORKER_TIMEOUT_S)
        assert not reader.is_alive()
    [latest] = got
    assert isinstance(latest, Result), latest
    assert latest.return_value == 49 and latest.type == Result.Type.SUCCESSFUL
