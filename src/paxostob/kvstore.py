"""``paxostob.kvstore``: the documented home of ``KeyValueStore`` before ``paxostob.apps``.

Kept so that ``from paxostob.kvstore import KeyValueStore`` (docs/reference.md
taught it) keeps working; the code is in ``paxostob.apps.kv`` and
``paxostob.apps.tagged``.
"""

from __future__ import annotations

from .apps.kv import KeyValueStore
from .apps.tagged import TaggedStateMachine

__all__ = ["KeyValueStore", "TaggedStateMachine"]
