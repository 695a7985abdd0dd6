"""Deployment: configs made by ``paxostob init`` start a cluster; the container image builds."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from paxostob.cli.config import load_node_config

from .cluster import free_ports
from .kv_client import await_leader
from .serve_process import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
DOCKER_BUILD_TIMEOUT_S = 600


def init(tmp_path: Path, members: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paxostob", "init", "--members", members, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


def test_init_configs_start_a_three_node_cluster_that_replicates(tmp_path: Path) -> None:
    ports = free_ports(6)
    members = ",".join(f"{i}=127.0.0.1:{ports[i - 1]}" for i in (1, 2, 3))
    done = init(tmp_path, members, "--out", "conf", "--data-dir", str(tmp_path / "node{id}"))
    assert done.returncode == 0, done.stderr
    secret = tmp_path / "conf" / "secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text().strip()) == 64
    configs = {i: tmp_path / "conf" / f"node-{i}.toml" for i in "123"}
    loaded = {i: load_node_config({}, path) for i, path in configs.items()}
    assert {c.node_id for c in loaded.values()} == {"1", "2", "3"}
    assert len({c.cluster_id for c in loaded.values()}) == 1, "one cluster id for all"
    assert all(c.members == loaded["1"].members for c in loaded.values())
    assert {c.data_dir for c in loaded.values()} == {tmp_path / f"node{i}" for i in "123"}

    # A second init into the same place refuses, and changes nothing.
    before = {p: p.read_bytes() for p in (secret, *configs.values())}
    again = init(tmp_path, members, "--out", "conf")
    assert again.returncode == 2 and "exist" in again.stderr
    assert {p: p.read_bytes() for p in before} == before

    nodes = [
        ServeProcess(
            "serve", "--config", str(configs[i]), "--bootstrap",
            "--resp-port", str(ports[2 + int(i)]), "--tick-interval", "0.005",
        )
        for i in "123"
    ]  # fmt: skip
    try:
        for node in nodes:
            node.wait_ready()
        first = nodes[0].lines[0]
        assert "event loop uvloop" in first, f"the first log line names the loop: {first}"
        await_leader(ports[3], None)  # node 1 delivered a broadcast: it knows the leader
        with redis.Redis(port=ports[3], socket_timeout=15) as one:
            assert one.set("deploy:k", "v") is True
        await_leader(ports[5], None)  # and so does node 3 (else it answers TRYAGAIN at once)
        with redis.Redis(port=ports[5], socket_timeout=15) as three:
            assert three.get("deploy:k") == b"v"
    finally:
        codes = [node.stop() for node in nodes]
    assert codes == [0, 0, 0]


def _docker_unusable() -> str | None:
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    probe = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        lines = (probe.stderr or probe.stdout).strip().splitlines()
        return f"docker info failed: {lines[-1] if lines else probe.returncode}"
    return None


def test_the_container_image_builds_and_runs_paxostob() -> None:
    why = _docker_unusable()
    if why is not None:
        pytest.skip(f"cannot build the image here: {why}")
    tag = "paxostob-test:build-check"
    build = subprocess.run(
        ["docker", "build", "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=DOCKER_BUILD_TIMEOUT_S,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    version = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "paxostob", tag, "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert version.returncode == 0 and version.stdout.startswith("paxostob "), version.stderr
    user = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert user.stdout.strip() not in ("", "0"), "the image runs as a non-root user"
