"""``paxostob serve`` (or any paxostob command) as a real process, with its stderr followed.

A reader thread keeps every line and sets ``ready`` when the node logs its
ready line, so a test waits on that event with a timeout, never on a sleep.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from .cluster import READY_MARK, START_TIMEOUT_S

STOP_TIMEOUT_S = 15.0


class ServeProcess:
    def __init__(self, *args: str, cwd: Path | None = None) -> None:
        self.args = args
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "paxostob", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())
            if READY_MARK in line:
                self.ready.set()

    def wait_ready(self) -> None:
        if not self.ready.wait(START_TIMEOUT_S):
            tail = "\n".join(self.lines[-20:])
            raise AssertionError(f"{' '.join(self.args)} did not start:\n{tail}")

    def stop(self) -> int:
        """SIGTERM and wait (kill after a timeout, and fail: a node must stop on SIGTERM)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{' '.join(self.args)} ignored SIGTERM") from None
