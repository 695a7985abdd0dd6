"""Pub/sub on one node: who is subscribed here, and delivery to them.

Theory of operation: ``PUBLISH`` is a log entry (``kv.pubsub``). When this
node applies one, ``KvStateMachine.on_publish`` calls ``PubSub.publish``,
which pushes the message to this node's subscribers of the channel and of
every matching pattern, and returns how many received it. Every node does
that for its own subscribers as it applies the same log, so all subscribers
of a channel, on any node, see its messages in one total order. Subscriptions
themselves are local (as in Redis Cluster): they are not in the log.

Delivery is at most once, as in Redis: a subscriber connected while its node
catches up from a snapshot misses the messages that snapshot covers, and a
client that reconnects misses those published meanwhile.
"""

from __future__ import annotations

from ..kv.pattern import pattern_matches
from .protocol import Push, Replies, Reply
from .server import Connection

__all__ = ["PubSub"]

_MESSAGE = b"message"
_PMESSAGE = b"pmessage"


class PubSub:
    """This node's subscriptions: channels and patterns, by connection."""

    def __init__(self) -> None:
        #: Subscribers by channel, and by pattern, each keyed by connection id.
        self.channels: dict[bytes, dict[int, Connection]] = {}
        self.patterns: dict[bytes, dict[int, Connection]] = {}
        #: Each subscribed connection's channels and patterns (in subscription order).
        self._of: dict[int, tuple[dict[bytes, None], dict[bytes, None]]] = {}

    def count(self, conn: Connection) -> int:
        """``conn``'s subscriptions: channels plus patterns (the count Redis replies)."""
        subs = self._of.get(conn.id)
        return 0 if subs is None else len(subs[0]) + len(subs[1])

    def _subs(self, conn: Connection) -> tuple[dict[bytes, None], dict[bytes, None]]:
        subs = self._of.get(conn.id)
        if subs is None:
            subs = self._of[conn.id] = ({}, {})
            conn.on_gone = self.forget
        return subs

    def subscribe(self, conn: Connection, names: list[bytes], *, pattern: bool) -> Reply:
        kind, table, index = (
            (b"psubscribe", self.patterns, 1) if pattern else (b"subscribe", self.channels, 0)
        )
        mine = self._subs(conn)[index]
        out: list[Reply] = []
        for name in names:
            if name not in mine:
                mine[name] = None
                table.setdefault(name, {})[conn.id] = conn
            out.append(Push([kind, name, self.count(conn)]))
        return Replies(out)

    def unsubscribe(self, conn: Connection, names: list[bytes], *, pattern: bool) -> Reply:
        kind, table, index = (
            (b"punsubscribe", self.patterns, 1) if pattern else (b"unsubscribe", self.channels, 0)
        )
        subs = self._of.get(conn.id)
        mine: dict[bytes, None] = {} if subs is None else subs[index]
        if not names:
            names = list(mine)
            if not names:  # nothing to leave: Redis still answers, with a null name
                return Push([kind, None, self.count(conn)])
        out: list[Reply] = []
        for name in names:
            if name in mine:
                del mine[name]
                here = table[name]
                del here[conn.id]
                if not here:
                    del table[name]
            out.append(Push([kind, name, self.count(conn)]))
        if subs is not None and not subs[0] and not subs[1]:
            del self._of[conn.id]
            conn.on_gone = None
        return Replies(out)

    def forget(self, conn: Connection) -> None:
        """``conn`` is closed: drop its subscriptions."""
        subs = self._of.pop(conn.id, None)
        if subs is None:
            return
        for names, table in ((subs[0], self.channels), (subs[1], self.patterns)):
            for name in names:
                here = table[name]
                here.pop(conn.id, None)
                if not here:
                    del table[name]

    def publish(self, channel: bytes, message: bytes) -> int:
        """Push ``message`` to this node's subscribers of ``channel``; how many received it."""
        received = 0
        here = self.channels.get(channel)
        if here:
            push = Push([_MESSAGE, channel, message])
            for conn in list(here.values()):  # a push may drop its client
                if conn.push is not None and conn.push(push):
                    received += 1
        if self.patterns:
            matches = pattern_matches
            for pattern, subscribers in list(self.patterns.items()):
                if matches(pattern, channel):
                    push = Push([_PMESSAGE, pattern, channel, message])
                    for conn in list(subscribers.values()):
                        if conn.push is not None and conn.push(push):
                            received += 1
        return received
