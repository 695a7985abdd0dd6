"""``PUBLISH``: the machine's half of pub/sub.

A message is a log entry, so every node delivers a channel's messages in
the log's order. Applied, ``PUBLISH`` changes nothing (no key, no snapshot
byte) and replies 0 on every replica; the node's ``KvStateMachine.on_publish``
hook then hands the message to that node's own subscribers and its count of
receivers becomes the reply (Redis Cluster's: the receivers on this node).
"""

from __future__ import annotations

from .keyspace import Keyspace
from .replies import Reply
from .table import NO_KEYS, Command, command

__all__ = ["TABLE"]


def publish(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return 0


TABLE: dict[bytes, Command] = dict(
    [
        command(
            "publish",
            3,
            "pubsub loading stale fast may_replicate",
            NO_KEYS,
            "@pubsub @fast",
            publish,
        ),
    ]
)
