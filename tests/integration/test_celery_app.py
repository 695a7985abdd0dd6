"""Celery with paxostob as its broker and its result backend, on a 3-process cluster.

Kombu's Redis transport keeps the queue in a list (``BRPOP``), the messages a
worker holds in a hash and a sorted set (``unacked``, ``unacked_index``) and
uses pub/sub for broadcasts; Celery's Redis result backend stores each
result with ``SET``/``PUBLISH`` and a client waits for it by subscribing to
the result's channel. Here a worker process uses one follower as broker and
result backend, the client publishes every task and reads every result
through the other follower, and once a quarter of the results are in, the
leader is killed with SIGKILL: the two followers elect a new leader (clients
get ``TRYAGAIN`` meanwhile) and every task must still run, with its result
readable from the client's node.

Not killed here: the node a worker is blocked on in ``BRPOP``. Kombu takes a
message with ``BRPOP`` and records it as unacknowledged only once it has it,
so a pop decided in the log whose reply dies with that node loses the message
(as a Redis connection that drops after its ``BRPOP`` was served does); a
test of that kill could only ever assert "all but one".

The worker is a real ``celery worker`` process (solo pool), stopped by its
PID at the end. The workload is ``TASKS`` tasks of ``square``, in order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.exceptions import TimeoutError as CeleryTimeoutError  # type: ignore[import-untyped]

from .celery_app import BACKEND_ENV, BROKER_ENV
from .cluster import Cluster, Node
from .kv_client import running_kv_cluster, status, sync_client

TASKS = 80
#: Results read before the worker's broker node is killed.
BEFORE_KILL = TASKS // 4
#: Bounds each wait for a result (the visibility timeout included) and the worker's exit.
RESULT_TIMEOUT_S = 60.0
WORKER_STOP_TIMEOUT_S = 30.0
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_kv_cluster(tmp_path) as c:
        yield c


def _url(node: Node) -> str:
    return f"redis://127.0.0.1:{node.resp_port}/0"


def test_celery_tasks_all_run_with_results_when_the_leader_is_killed(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with sync_client(cluster.nodes["1"]) as c:
        leader_id = status(c)[b"leader_id"].decode()
    victim = cluster.nodes[leader_id]
    worker_node, client_node = (n for i, n in sorted(cluster.nodes.items()) if i != leader_id)

    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        BROKER_ENV: _url(worker_node),
        BACKEND_ENV: _url(worker_node),
    }
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "tests.integration.celery_app", "worker",
                "--pool", "solo", "--loglevel", "INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # The client's app reads its URLs at import: the client's node for both.
        monkeypatch.setenv(BROKER_ENV, _url(client_node))
        monkeypatch.setenv(BACKEND_ENV, _url(client_node))
        from .celery_app import app, square

        app.conf.broker_url = _url(client_node)
        app.conf.result_backend = _url(client_node)
        results = [square.delay(x) for x in range(TASKS)]
        try:
            got = {x: results[x].get(timeout=RESULT_TIMEOUT_S) for x in range(BEFORE_KILL)}
            ready_at_kill = sum(r.ready() for r in results)
            victim.kill9()
            got.update({x: results[x].get(timeout=RESULT_TIMEOUT_S) for x in range(TASKS)})
        except CeleryTimeoutError as e:
            lines = log_path.read_text().splitlines()
            missing = {r.id: [n for n in lines if r.id in n] for r in results if not r.ready()}
            other = [n for n in lines if "] received" not in n and "] succeeded" not in n]
            raise AssertionError(
                f"no result for {missing}; the worker's other lines:\n" + "\n".join(other[-60:])
            ) from e
        assert ready_at_kill < TASKS, "the worker finished before the kill: nothing was tested"
        assert got == {x: x * x for x in range(TASKS)}
        assert all(r.state == "SUCCESS" for r in results)
    finally:
        worker.terminate()
        try:
            worker.wait(WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(WORKER_STOP_TIMEOUT_S)
    log_text = log_path.read_text()
    assert log_text.count("succeeded in") >= TASKS, log_text[-4000:]
