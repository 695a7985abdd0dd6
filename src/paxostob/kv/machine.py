"""``KvMachine``: Redis key-space semantics as a pure, deterministic state machine.

Theory of operation: every replica applies the same log of entries
(``commands.Entry``) in the same order; this class turns each into the same
state and the same replies on every replica. So nothing here reads a clock,
draws a random number, or depends on the iteration order of a dict:

- Time is the log's: the machine's clock is the largest ``now_ms`` of any
  entry applied so far (time never moves back, so an expired key never
  comes back to life). ``KvStateMachine`` applies each entry at the log's
  clock, which the leader decides (``core.multipaxos``: clock stamps), so
  no proposer's clock reaches the machine.
- A key is expired when ``clock > expiry`` (as in Redis); an expired key is
  invisible to every command. It is also removed: lazily when a command
  touches it, and actively by a sweep at the start of each entry that
  removes at most ``expire_sweep_max`` expired keys, oldest expiry first
  (ties by key), so one entry's cost stays bounded. ``DBSIZE``, ``KEYS`` and
  ``SCAN`` first remove every expired key (each removal is paid for once, by
  the command that set the expiry).
- ``KEYS`` replies in byte order; ``SCAN`` walks keys in the order of a
  64-bit BLAKE2b hash and its cursor is "the next hash to visit", so a scan
  terminates and returns every key present for the whole scan, whatever
  writes interleave (a key may come back twice, as in Redis).
- Replies match Redis 7.0 for the commands of ``commands.COMMANDS``, errors
  included (their texts are what clients and tests compare), except where
  determinism or our bounds decide otherwise: ``DBSIZE`` counts live keys only
  (Redis also counts expired keys it has not yet evicted); ``KEYS`` is sorted
  and ``SCAN`` pages and cursors differ (both unordered in Redis); orders
  Redis leaves to its hash tables follow the aggregate's own order
  (``values``); ``SPOP``/``SRANDMEMBER`` draw from the log (``sets``); a value
  above ``value_bytes_max`` gets "ERR string exceeds maximum allowed size
  (value_bytes_max)" (Redis names ``proto-max-bulk-len``). docs/commands.md
  lists every difference.

Only the *logical* state (clock, live keys, values, expiry times, draws) is
deterministic: two replicas may hold different already-expired keys not yet
swept (for example one restored from a snapshot), which no command can see.
``snapshot`` writes the logical state only (``kv.snapshot``), so replicas in the
same state write the same bytes, and ``restore(snapshot())`` gives the same
future replies.

The commands live in one module per family (``strings``, ``keys``, ...), each
with its own table of handlers working on a ``keyspace.Keyspace``; this class
owns the key space, dispatches each op to its family and takes snapshots.

Rules: input from clients (op arguments) never raises: every problem is an
``Error`` reply. Every value is at most ``value_bytes_max`` bytes.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

from ..errors import ConfigurationError
from .commands import TABLE, Entry
from .keyspace import Failed, Handler, Keyspace, arity_error, c_string, text
from .replies import Error, Reply
from .scripting import ARITY_FROM_SCRIPT, NOT_ALLOWED_FROM_SCRIPT, UNKNOWN_FROM_SCRIPT
from .snapshot import StateEncoder, decode_state, encode_state

__all__ = [
    "EXPIRE_SWEEP_MAX_DEFAULT",
    "LOCAL_READS",
    "SKIPPED",
    "VALUE_BYTES_MAX_DEFAULT",
    "KvMachine",
]

#: Redis' default ``proto-max-bulk-len``: clients expect values this large to work.
VALUE_BYTES_MAX_DEFAULT = 512 << 20
#: Redis' active expiry examines 20 keys per loop; the same bound keeps an entry cheap.
EXPIRE_SWEEP_MAX_DEFAULT = 20


def _unknown_command(args: tuple[bytes, ...]) -> Error:
    shown = b""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + c_string(arg)[: 128 - len(shown)] + b"' "
    message = (
        b"ERR unknown command '"
        + c_string(args[0])[:128]
        + b"', with args beginning with: "
        + shown
    )
    # Arguments come from clients: no CR or LF may reach a RESP error line.
    return Error(text(message.replace(b"\r", b" ").replace(b"\n", b" ")))


#: The reply of an op of a transaction whose watched keys changed (never sent:
#: the server replies a null array for the whole transaction).
SKIPPED = Error("EXECABORT a watched key changed")

#: Commands ``KvMachine.read`` answers: reads of named keys whose only effect
#: in an applied entry would be removing an expired key (DBSIZE, KEYS and SCAN
#: sweep every expired key, so they stay in the log). Each family marks its own.
LOCAL_READS = frozenset(name for name, c in TABLE.items() if c.local_read)
#: Commands a Lua script may not call: Redis' ``noscript`` ones (scripts, blocking
#: pops) and the internal ones.
_NOT_FROM_SCRIPT = frozenset(
    name for name, c in TABLE.items() if c.internal or "noscript" in c.spec.flags
) | {b"publish"}  # its delivery hook sees an entry's ops, not a script's calls


class KvMachine:
    """The key space of one replica: keys, their values and expiry times.

    ``value_bytes_max`` bounds each value (``SET`` and friends reply an error
    beyond it; every replica must use the same bound). ``expire_sweep_max``
    bounds the expired keys removed by the sweep at the start of each entry.
    """

    def __init__(
        self,
        *,
        value_bytes_max: int = VALUE_BYTES_MAX_DEFAULT,
        expire_sweep_max: int = EXPIRE_SWEEP_MAX_DEFAULT,
    ) -> None:
        if value_bytes_max < 0 or expire_sweep_max < 1:
            raise ConfigurationError("value_bytes_max must be >= 0 and expire_sweep_max >= 1")
        self._ks = Keyspace(value_bytes_max=value_bytes_max, expire_sweep_max=expire_sweep_max)
        # name -> (handler, exact argc or -1, minimum argc, spec name): one lookup per op.
        self._dispatch: dict[bytes, tuple[Handler, int, int, str]] = {
            name: (
                c.handler,
                c.spec.arity if c.spec.arity > 0 else -1,
                -c.spec.arity,
                c.spec.name,
            )
            for name, c in TABLE.items()
        }
        self._ks.execute_from_script = self._execute_from_script

    # --- the public surface ---------------------------------------------------------------

    @property
    def keyspace(self) -> Keyspace:
        """The state the command families work on (for tests and metrics; do not mutate)."""
        return self._ks

    @property
    def clock_ms(self) -> int:
        """The machine's time: the largest ``now_ms`` of the entries applied so far."""
        return self._ks.clock_ms

    @property
    def value_bytes_max(self) -> int:
        return self._ks.value_bytes_max

    @property
    def stored_keys(self) -> int:
        """Keys held in memory, expired ones not yet removed included (for metrics)."""
        return len(self._ks.values)

    def apply(self, entry: Entry) -> list[Reply]:
        """Apply ``entry``'s ops in order at its time; one reply per op."""
        ks = self._ks
        if entry.now_ms > ks.clock_ms:
            ks.clock_ms = entry.now_ms
        ks.sweep(ks.expire_sweep_max)
        # A failed ``exec-if`` (``transactions``) skips the ops of its transaction.
        replies: list[Reply] = []
        add = replies.append
        execute = self._execute
        for op in entry.ops:
            if ks.skip_ops:
                ks.skip_ops -= 1
                add(SKIPPED)
            else:
                add(execute(op.args))
        ks.skip_ops = 0  # a count beyond the entry never reaches the next one
        return replies

    def read(self, ops: Sequence[Sequence[bytes]]) -> list[Reply]:
        """Point reads (``LOCAL_READS``) on the state as it is now, changing nothing.

        What a read op would reply if it were applied in an entry right now,
        except that an expired key is not removed (removing it on one replica
        only would make replicas' states differ). Reads run at the time of
        the last applied entry (``clock_ms``). The caller makes them
        linearizable by reading only after applying an entry that was
        proposed after the reads arrived (``KeyValueStore`` does).
        """
        self._ks.reading = True
        try:
            return [
                self._execute(tuple(op))
                if op and op[0].lower() in LOCAL_READS
                else Error("ERR not a local read")
                for op in ops
            ]
        finally:
            self._ks.reading = False

    def expiry_due(self, now_ms: int) -> bool:
        """Whether some key may expire by ``now_ms`` (stale heap pairs may say yes).

        Reads run at the clock of the last applied entry: a reader that
        wants ``now_ms`` must first apply an entry stamped later.
        """
        heap = self._ks.expiry_heap
        return bool(heap) and heap[0][0] <= now_ms

    def snapshot(self) -> bytes:
        """The logical state, canonical: equal states give equal bytes."""
        ks = self._ks
        return encode_state(ks.clock_ms, ks.values, ks.expiries, ks.draws)

    def snapshot_copy(self) -> Callable[[], bytes | None]:
        """Copy the state now; encode that copy as ``snapshot`` would, a step per call.

        The copy is two shallow dictionary copies: a few milliseconds for
        100,000 keys. Strings are immutable bytes; an aggregate (a hash,
        list, set or sorted set) is copied by the machine before its next
        change, not here (``Keyspace.writable``: copy-on-write). Each call of
        the returned function encodes a bounded number of keys and returns
        ``None``, the last returns the snapshot: the caller interleaves the
        steps with other work (this machine goes on applying entries).
        """
        return self._encoder().step

    def snapshot_copy_parts(self) -> Callable[[], list[bytes] | None]:
        """``snapshot_copy``, the snapshot left in pieces (``StateEncoder.step_parts``)."""
        return self._encoder().step_parts

    def _encoder(self) -> StateEncoder:
        ks = self._ks
        ks.gen += 1  # every aggregate of the copy is now one the machine must not change
        return StateEncoder(ks.clock_ms, ks.values.copy(), ks.expiries.copy(), ks.draws)

    def restore(self, data: bytes) -> None:
        """Replace the state by ``data``'s (from ``snapshot``); ``DecodeError`` if damaged.

        On error the state is left as it was.
        """
        state = decode_state(data)
        ks = self._ks
        ks.clock_ms = state.clock_ms
        ks.values = state.values
        ks.expiries = state.expiries
        ks.draws = state.draws
        ks.gen = 0  # the decoded aggregates' generation: no snapshot holds them
        ks.expiry_heap = [(at, key) for key, at in state.expiries.items()]
        heapq.heapify(ks.expiry_heap)
        ks.scan_order = None

    # --- dispatch -------------------------------------------------------------------------

    def _execute_from_script(self, args: tuple[bytes, ...]) -> Reply:
        """``_execute`` for ``redis.call``: Redis' script error texts, and no nested scripts."""
        name = args[0].lower()
        found = self._dispatch.get(name)
        if found is None:
            return UNKNOWN_FROM_SCRIPT
        if name in _NOT_FROM_SCRIPT:
            return NOT_ALLOWED_FROM_SCRIPT
        handler, exact, least, _ = found
        argc = len(args)
        if argc != exact and (exact > 0 or argc < least):
            return ARITY_FROM_SCRIPT
        try:
            return handler(self._ks, args)
        except Failed as failed:
            return failed.reply

    def _execute(self, args: tuple[bytes, ...]) -> Reply:
        found = self._dispatch.get(args[0].lower())
        if found is None:
            return _unknown_command(args)
        handler, exact, least, name = found
        argc = len(args)
        if argc != exact and (exact > 0 or argc < least):  # CommandSpec.arity_ok, inlined
            return arity_error(name)
        try:
            return handler(self._ks, args)
        except Failed as failed:
            return failed.reply
