"""``python -m paxostob``: the same as the ``paxostob`` command."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
