"""The installed paxostob's version, read from its package metadata.

The version is written in one place, ``pyproject.toml``; everything that
shows it (``paxostob --version``, ``paxostob.__version__``, ``INFO``) reads it
from the installed distribution's metadata here.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("paxostob")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
