"""Tools the tests drive (redis-server, redis-cli, openssl, ...): present, or a clear failure in CI.

CI (``.ci/run``, with ``CI`` set) installs every tool, so there a missing one
fails the test: a skip would let a whole family of tests vanish unnoticed.
Elsewhere (a developer's machine without the tool) the test is skipped,
naming what to install.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

__all__ = ["missing_tool", "need"]


def missing_tool(reason: str) -> NoReturn:
    """Fail (in CI) or skip (elsewhere) because a tool is missing; ``reason`` says which."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI installs it (.ci/run), so its absence is a failure")
    pytest.skip(reason)


def need(command: str, package: str) -> str:
    """The path of ``command``, or ``missing_tool`` naming the Debian ``package``."""
    path = shutil.which(command)
    if path is None:
        missing_tool(f"{command} is not installed (apt-get install {package})")
    return path
