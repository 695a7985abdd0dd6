"""A data directory on a disk that fills up: a real full file system for fail-stop tests.

A tmpfs of a few pages mounted on the directory: writes past its size fail
with ENOSPC, as on a full disk. Mounting needs root (CAP_SYS_ADMIN); where
``mount`` is refused, the node's process gets an RLIMIT_FSIZE instead (set
in the child before it runs), and its writes past the limit fail with EFBIG
(CPython ignores SIGXFSZ, so the write fails rather than the signal killing
the process). Either way the node's real storage code meets a real OS error.
"""

from __future__ import annotations

import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

#: Where ``mount`` is refused the error is EFBIG, else ENOSPC.
FORCE_FSIZE = False


class SmallDisk:
    """``path`` on a disk of ``size_bytes``; ``free()`` makes room, as an operator would."""

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = path
        self.size_bytes = size_bytes
        self.mounted = False
        self.limited = False

    def __enter__(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        if not FORCE_FSIZE:
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={self.size_bytes}", "tmpfs", str(self.path)],
                capture_output=True,
                text=True,
                check=False,
            )
            self.mounted = done.returncode == 0
            if not self.mounted:
                print(f"mount refused ({done.stderr.strip()}): using RLIMIT_FSIZE instead")
        self.limited = not self.mounted
        return self

    @property
    def errno_name(self) -> str:
        """The error a write past the end meets."""
        return "ENOSPC" if self.mounted else "EFBIG"

    @property
    def advice(self) -> str:
        """What the node's failure line tells the operator to do."""
        return f"free space on {self.path}" if self.mounted else "raise the file size limit"

    def preexec(self) -> Callable[[], None] | None:
        """For ``Popen(preexec_fn=...)`` of the node's process: its file size limit, if any."""
        if not self.limited:
            return None
        size = self.size_bytes

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

        return limit

    def free(self, size_bytes: int = 256 << 20) -> None:
        """Make room: a larger file system (remount), or no file size limit for the next start."""
        if self.mounted:
            subprocess.run(
                ["mount", "-o", f"remount,size={size_bytes}", str(self.path)],
                check=True,
                capture_output=True,
            )
        self.limited = False

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=True, capture_output=True)
            self.mounted = False
