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
from .family import Family, Handler, help_reply, wrong_arity
from .protocol import Error, Push, Replies, Reply
from .server import Connection

__all__ = ["IN_SUBSCRIBE_MODE", "PubSub", "PubSubCommands"]

#: What a RESP2 client may send while subscribed (Redis's subscribe mode; RESP3 has none).
IN_SUBSCRIBE_MODE = frozenset(
    {b"SUBSCRIBE", b"UNSUBSCRIBE", b"PSUBSCRIBE", b"PUNSUBSCRIBE", b"PING", b"QUIT", b"RESET"}
    | {b"SSUBSCRIBE", b"SUNSUBSCRIBE"}
)

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


_PUBSUB_HELP = (
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
)


class PubSubCommands(Family):
    """``SUBSCRIBE``, ``PSUBSCRIBE``, their ``UNSUBSCRIBE``s and ``PUBSUB`` (``PUBLISH`` is a
    key-value command: it goes through the log)."""

    needs_kv = True

    def table(self) -> dict[bytes, Handler]:
        return {
            b"SUBSCRIBE": self._subscribe,
            b"UNSUBSCRIBE": self._unsubscribe,
            b"PSUBSCRIBE": self._subscribe,
            b"PUNSUBSCRIBE": self._unsubscribe,
            b"PUBSUB": self._pubsub,
        }

    def _subscribe(self, conn: Connection, args: list[bytes]) -> Reply:
        """``SUBSCRIBE``/``PSUBSCRIBE``: one confirmation per name (a push in RESP3)."""
        if len(args) < 2:
            return wrong_arity(args[0])
        return self.node.pubsub.subscribe(conn, args[1:], pattern=args[0].upper() == b"PSUBSCRIBE")

    def _unsubscribe(self, conn: Connection, args: list[bytes]) -> Reply:
        pattern = args[0].upper() == b"PUNSUBSCRIBE"
        return self.node.pubsub.unsubscribe(conn, args[1:], pattern=pattern)

    def _pubsub(self, conn: Connection, args: list[bytes]) -> Reply:
        """``PUBSUB CHANNELS|NUMSUB|NUMPAT``: this node's subscriptions (Redis Cluster's view)."""
        if len(args) < 2:
            return wrong_arity(args[0])
        sub = args[1].upper()
        ps = self.node.pubsub
        if sub == b"HELP" and len(args) == 2:
            return help_reply("PUBSUB", _PUBSUB_HELP)
        if sub in (b"CHANNELS", b"SHARDCHANNELS") and len(args) <= 3:
            if sub == b"SHARDCHANNELS":
                return []  # no shard channels: every node holds every key
            if len(args) == 2:
                return list(ps.channels)
            return [c for c in ps.channels if pattern_matches(args[2], c)]
        if sub in (b"NUMSUB", b"SHARDNUMSUB"):
            counts: list[Reply] = []
            for channel in args[2:]:
                here = ps.channels.get(channel) if sub == b"NUMSUB" else None
                counts += [channel, 0 if here is None else len(here)]
            return counts
        if sub == b"NUMPAT" and len(args) == 2:
            return sum(len(subscribers) for subscribers in ps.patterns.values())
        return Error(
            f"ERR unknown subcommand or wrong number of arguments for "
            f"'{args[1].decode(errors='replace')}'. Try PUBSUB HELP."
        )
