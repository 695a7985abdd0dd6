"""``TaggedStateMachine``: several applications on one total-order broadcast group.

Theory of operation: a node runs one broadcast group; each payload's first
byte names the application it is for (a *tag*). Every application sees its
own deliveries, in total order, with the tag stripped, and returns its
result for each (``StateMachine.apply``); that result travels back to this
node's ``TotalOrderBroadcast.submit`` caller. An ``observer`` sees every
delivery as it is (e.g. to track the applied position); its result is not
returned. The snapshot is each application's snapshot, in tag order,
length-prefixed, so every application survives compaction and restarts.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.types import Delivery
from ..errors import ConfigurationError, PaxosError
from ..node.tob import StateMachine

__all__ = ["TaggedStateMachine"]


def _in_one_piece(step: Callable[[], bytes | None]) -> Callable[[], list[bytes] | None]:
    """A ``snapshot_copy`` step as a ``snapshot_copy_parts`` one."""

    def parts() -> list[bytes] | None:
        data = step()
        return None if data is None else [data]

    return parts


def _already(data: bytes) -> Callable[[], list[bytes] | None]:
    """A one-step encoder of a snapshot taken already."""
    return lambda: [data]


class TaggedStateMachine:
    """Routes each delivery to the application named by its payload's first byte.

    An application gets its own deliveries with the tag stripped; the
    ``observer`` (if any) sees every delivery as it is, tag included (e.g. to
    track the applied position). The snapshot is each application's
    snapshot, in tag order, length-prefixed (the observer's under tag 0).
    """

    OBSERVER_TAG = b"\x00"

    def __init__(
        self, apps: dict[bytes, StateMachine], observer: StateMachine | None = None
    ) -> None:
        if not apps or any(len(tag) != 1 or tag == self.OBSERVER_TAG for tag in apps):
            raise ConfigurationError("tags are single, distinct, non-zero bytes")
        self.apps = dict(sorted(apps.items()))
        self.observer = observer
        self._all = dict(self.apps)
        if observer is not None:
            self._all[self.OBSERVER_TAG] = observer

    def apply(self, delivery: Delivery) -> object:
        """Apply ``delivery`` to the application its tag names; that application's result.

        ``None`` for a payload whose tag names no application (every replica
        skips it alike).
        """
        app = self.apps.get(delivery.payload[:1])
        result = None
        if app is not None:
            result = app.apply(
                Delivery(delivery.slot, delivery.sender, delivery.payload[1:], delivery.clock_ms)
            )
        if self.observer is not None:
            self.observer.apply(delivery)
        return result

    def snapshot(self) -> bytes:
        parts = []
        for tag, app in self._all.items():
            data = app.snapshot()
            parts.append(tag + len(data).to_bytes(8, "big") + data)
        return b"".join(parts)

    def snapshot_copy(self) -> Callable[[], bytes | None]:
        """``snapshot()`` in steps: every application is copied *now* (one point of
        the log for all of them), then encoded a step at a time by the returned
        function (``None`` until the last step returns the same bytes as
        ``snapshot()`` would have). Applications without ``snapshot_copy`` are
        snapshotted at once, here.

        An application's snapshot is taken in pieces where it offers that
        (``snapshot_copy_parts``) and everything is joined once, at the end:
        the snapshot of a large state is then allocated once rather than
        copied again for its frame and again for the whole (the node's
        memory would otherwise swing by a few snapshot sizes at each one).
        """
        steps: list[tuple[bytes, Callable[[], list[bytes] | None]]] = []
        for tag, app in self._all.items():
            copy_parts = getattr(app, "snapshot_copy_parts", None)
            copy = getattr(app, "snapshot_copy", None)
            if copy_parts is not None:
                steps.append((tag, copy_parts()))
            elif copy is not None:
                steps.append((tag, _in_one_piece(copy())))
            else:
                steps.append((tag, _already(app.snapshot())))
        pieces: list[bytes] = []
        done = 0

        def step() -> bytes | None:
            nonlocal done, pieces
            tag, encode = steps[done]
            parts = encode()
            if parts is None:
                return None
            size = sum(len(p) for p in parts)
            pieces += (tag, size.to_bytes(8, "big"), *parts)
            del parts
            done += 1
            if done < len(steps):
                return None
            data = b"".join(pieces)
            pieces = []
            return data

        return step

    def restore(self, data: bytes) -> None:
        pos = 0
        found: dict[bytes, bytes] = {}
        while pos < len(data):
            tag = data[pos : pos + 1]
            size = int.from_bytes(data[pos + 1 : pos + 9], "big")
            found[tag] = data[pos + 9 : pos + 9 + size]
            pos += 9 + size
        if set(found) != set(self._all) or pos != len(data):
            raise PaxosError("snapshot does not match this node's applications")
        for tag, app in self._all.items():
            app.restore(found[tag])
