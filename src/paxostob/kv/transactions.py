"""Optimistic transactions (``WATCH``/``EXEC``): the state machine's half.

Theory of operation: Redis' ``WATCH`` makes the next ``EXEC`` fail (a null
reply) if a watched key changed in between. Here the decision must be the
same on every replica, so it is taken where the order is: in the log.

- At ``WATCH`` the node reads a *digest* of each watched key at a
  linearizable read point (``watch-digest``, a point read ordered by the log
  like ``GET``): a hash of the key's type, value and expiry time, or the
  empty digest for a missing key.
- ``EXEC`` proposes the transaction's unit as ``exec-if n key digest ...``
  followed by the ``n`` queued commands. When the entry is applied, every
  replica recomputes the digests: if one differs, the guard replies ``None``
  and the ``n`` commands after it are skipped (``KvMachine.apply``);
  otherwise the guard replies ``OK`` and they run.

Both commands are internal (``Command.internal``): not in ``COMMANDS``, so no
client can send them; the RESP server builds them.

Difference from Redis: a key is "changed" when its digest is, so a key
written back to the very value (and expiry) it had at ``WATCH`` does not
abort the transaction (Redis aborts on any write). The transaction's
premise, that the watched keys hold what was read, holds either way.
"""

from __future__ import annotations

import hashlib

from .keyspace import SYNTAX, Failed, Keyspace, parse_int
from .replies import OK, Reply
from .snapshot import encode_value
from .table import NO_KEYS, Command, command

__all__ = ["ABSENT", "EXEC_IF", "TABLE", "WATCH_DIGEST", "digest"]

#: The internal commands' names (lower case, as the table keys them).
WATCH_DIGEST = b"watch-digest"
EXEC_IF = b"exec-if"
#: The digest of a missing key (a real digest is never empty).
ABSENT = b""


def digest(ks: Keyspace, key: bytes) -> bytes:
    """A 16-byte hash of ``key``'s live type, value and expiry; ``ABSENT`` if missing."""
    value = ks.get(key)
    if value is None:
        return ABSENT
    at = ks.expiries.get(key)
    h = hashlib.blake2b(encode_value(value), digest_size=16)
    h.update(b"" if at is None else at.to_bytes(8, "big", signed=True))
    return h.digest()


def watch_digest(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    return [digest(ks, key) for key in args[1:]]


def exec_if(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    """``exec-if n key digest ...``: ``OK``, or ``None`` and skip the next ``n`` ops."""
    count = parse_int(args[1])
    pairs = args[2:]
    if count < 0 or len(pairs) % 2:
        raise Failed(SYNTAX)
    for i in range(0, len(pairs), 2):
        if digest(ks, pairs[i]) != pairs[i + 1]:
            ks.skip_ops = count
            return None
    return OK


TABLE: dict[bytes, Command] = dict(
    [
        command(
            "watch-digest",
            -2,
            "readonly fast",
            NO_KEYS,
            "@transaction",
            watch_digest,
            local_read=True,
            internal=True,
        ),
        command("exec-if", -2, "write", NO_KEYS, "@transaction", exec_if, internal=True),
    ]
)
