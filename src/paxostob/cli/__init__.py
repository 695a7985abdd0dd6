"""The command line, ``paxostob <command>``: the composition root.

See docs/design.md, 'Layers and the dependency rule'.

The only place that picks concrete classes (TCP transport, the default store,
the RESP server) and wires them together.
"""

from __future__ import annotations

from .app import COMMANDS, Command, build_parser, main

__all__ = ["COMMANDS", "Command", "build_parser", "main"]
