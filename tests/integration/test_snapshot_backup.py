"""Backup and restore with real processes: save a live cluster, restore a NEW cluster from it.

The save asks a running node (``PAXOS.SNAPSHOT``); the node runs a read
barrier first, so the file holds every write acknowledged before the save
began, even on a node that was behind. The restore makes each member's
store of a new cluster (its own cluster id), which then starts without
``--bootstrap`` and serves the saved keys, broadcasts and expiry times.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from paxostob.apps.broadcast_log import BroadcastLog
from paxostob.apps.tagged import TaggedStateMachine
from paxostob.cli import main
from paxostob.cli.snapshot import read_file, restored_cluster_id
from paxostob.kv.state_machine import KvStateMachine

from .cluster import Cluster
from .kv_client import settle, start_kv_cluster, sync_client

KEYS = 300
#: Written while one node is stopped, so that node is behind when it is asked to save.
LAGGING_KEYS = 2000


def read_snapshot_reply(sock: socket.socket) -> tuple[int, int, bytes]:
    """``PAXOS.SNAPSHOT``'s reply, ``*3 :position :clock_ms $state``, read off a raw socket."""
    buf = b""
    while buf.count(b"\r\n") < 4:
        chunk = sock.recv(1 << 16)
        assert chunk, f"connection closed after {buf[:200]!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n")
    assert head == b"*3", buf[:200]
    position, clock, size, rest = rest.split(b"\r\n", 3)
    n = int(size[1:])
    while len(rest) < n + 2:
        chunk = sock.recv(1 << 20)
        assert chunk, "connection closed inside the state"
        rest += chunk
    return int(position[1:]), int(clock[1:]), rest[:n]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paxostob", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_save_from_a_live_node_then_restore_into_a_new_three_node_cluster(
    tmp_path: Path,
) -> None:
    for name in ("old", "new"):
        (tmp_path / name).mkdir()
    old = start_kv_cluster(tmp_path / "old")
    try:
        one, two, three = (old.nodes[i] for i in "123")
        with sync_client(one) as c:
            for k in range(KEYS):
                assert c.set(f"k{k}", f"v{k}") is True
            assert c.set("ttl", "x", ex=100_000) is True
            pos, _ = c.execute_command("PAXOS.BROADCAST", "hello")
        # Node 3 falls behind: the others acknowledge writes it has not seen,
        # and it is asked for a snapshot (the request waits in its socket) before
        # it runs again. Its snapshot must hold them all the same.
        assert three.proc is not None
        os.kill(three.proc.pid, signal.SIGSTOP)
        try:
            with sync_client(two) as c, c.pipeline(transaction=False) as p:
                for k in range(LAGGING_KEYS):
                    p.set(f"late{k}", k)
                assert all(r is True for r in p.execute())
            asked = socket.create_connection(("127.0.0.1", three.resp_port), timeout=30)
            asked.sendall(b"*1\r\n$14\r\nPAXOS.SNAPSHOT\r\n")
        finally:
            os.kill(three.proc.pid, signal.SIGCONT)
        with asked:
            at, _, state = read_snapshot_reply(asked)
        kv = KvStateMachine()
        TaggedStateMachine({b"K": kv}, observer=BroadcastLog()).restore(state)
        [late] = kv.read([[b"MGET", *(f"late{k}".encode() for k in range(LAGGING_KEYS))]])
        assert isinstance(late, list)
        missing = [k for k, v in enumerate(late) if v != str(k).encode()]
        assert not missing, f"{len(missing)} acknowledged writes missing from the snapshot at {at}"
        backup = tmp_path / "backup.snap"
        saved = cli("snapshot", "save", str(backup), "--port", str(three.resp_port))
        assert saved.returncode == 0, saved.stderr
        assert f"to {backup}" in saved.stdout
    finally:
        old.stop()

    snap = read_file(backup)
    assert snap.position >= int(pos) and snap.clock_ms > 0

    new = Cluster(tmp_path / "new")
    members = new.nodes["1"].members
    cluster_id = restored_cluster_id(snap, list(new.nodes))
    for i, node in new.nodes.items():
        done = cli(
            "snapshot", "restore", str(backup), "--data-dir", str(node.data_dir),
            "--members", members, "--id", i,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"cluster {cluster_id}" in done.stdout
        node.starts = 1  # the store exists: started without --bootstrap, as a user must
        node.extra_args = ("--cluster-id", cluster_id)
    try:
        new.start()
        settle(new)
        for i, node in new.nodes.items():
            with sync_client(node) as c:
                got = c.mget([f"k{k}" for k in range(KEYS)])
                assert got == [f"v{k}".encode() for k in range(KEYS)], f"node {i}"
                late = c.mget([f"late{k}" for k in range(LAGGING_KEYS)])
                missing = [k for k, v in enumerate(late) if v != str(k).encode()]
                assert not missing, f"node {i}: {len(missing)} writes acknowledged before the save"
                assert 0 < c.ttl("ttl") <= 100_000, "expiry times come along"
                rows = c.execute_command("PAXOS.READ", pos, 1)
                assert [(int(r[0]), r[2]) for r in rows] == [(int(pos), b"hello")]
        with sync_client(new.nodes["2"]) as c:
            assert c.set("after", "restore") is True
            p2, _ = c.execute_command("PAXOS.BROADCAST", "next")
            assert int(p2) > snap.position, "positions continue after the saved one"
        with sync_client(new.nodes["3"]) as c:
            assert c.get("after") == b"restore"
    finally:
        new.stop()


def test_restore_refuses_a_damaged_file_and_a_used_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from paxostob.cli.snapshot import encode_file

    state = b"not a real state, but the checks come first"
    good = tmp_path / "good.snap"
    good.write_bytes(
        encode_file(
            {
                "format": 1,
                "position": 5,
                "clock_ms": 1,
                "state_bytes": len(state),
                "state_sha256": __import__("hashlib").sha256(state).hexdigest(),
            },
            state,
        )
    )
    bad = tmp_path / "bad.snap"
    data = bytearray(good.read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    members = "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003"
    argv = ["snapshot", "restore", str(bad), "--data-dir", str(tmp_path / "d"),
            "--members", members, "--id", "1"]  # fmt: skip
    assert main(argv) == 2
    assert "damaged" in capsys.readouterr().err
    assert not (tmp_path / "d").exists(), "nothing is made from a damaged file"
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("x")
    argv[2], argv[4] = str(good), str(used)
    assert main(argv) == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in used.iterdir()) == ["something"]
