"""``KvMachine``: Redis string-key semantics as a pure, deterministic state machine.

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
  and ``SCAN`` pages and cursors differ (both unordered in Redis); a value
  above ``value_bytes_max`` gets "ERR string exceeds maximum allowed size
  (value_bytes_max)" (Redis names ``proto-max-bulk-len``).

Only the *logical* state (clock, live keys, values, expiry times) is
deterministic: two replicas may hold different already-expired keys not yet
swept (for example one restored from a snapshot), which no command can see.
``snapshot`` writes the logical state only (``kv.snapshot``), so replicas in the
same state write the same bytes, and ``restore(snapshot())`` gives the same
future replies.

Rules: input from clients (op arguments) never raises: every problem is an
``Error`` reply. Every value is at most ``value_bytes_max`` bytes.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from bisect import bisect_left
from collections.abc import Callable, Sequence

from ..errors import ConfigurationError
from .commands import COMMANDS, Entry
from .pattern import compile_pattern
from .replies import OK, Error, Reply, SimpleString
from .snapshot import StateEncoder, decode_state, encode_state

__all__ = ["EXPIRE_SWEEP_MAX_DEFAULT", "LOCAL_READS", "VALUE_BYTES_MAX_DEFAULT", "KvMachine"]

#: Redis' default ``proto-max-bulk-len``: clients expect values this large to work.
VALUE_BYTES_MAX_DEFAULT = 512 << 20
#: Redis' active expiry examines 20 keys per loop; the same bound keeps an entry cheap.
EXPIRE_SWEEP_MAX_DEFAULT = 20

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1
_SECONDS_MAX = _INT64_MAX // 1000  # so seconds * 1000 fits (C truncates: also -_SECONDS_MAX)
_SCAN_COUNT_DEFAULT = 10  # as in Redis

# Redis' string2ll: no sign but '-', no leading zeros, no "-0", under 21 bytes.
_INTEGER = re.compile(rb"0|-?[1-9][0-9]{0,19}")

_SYNTAX = Error("ERR syntax error")
_NOT_INTEGER = Error("ERR value is not an integer or out of range")
_OVERFLOW = Error("ERR increment or decrement would overflow")
_NO_SUCH_KEY = Error("ERR no such key")
_INVALID_CURSOR = Error("ERR invalid cursor")
_STRING = SimpleString("string")
_NONE = SimpleString("none")

# SET/GETEX option names (Redis' OBJ_* flags) and which options exclude which.
_NX, _XX, _GET, _KEEPTTL, _PERSIST = "NX", "XX", "GET", "KEEPTTL", "PERSIST"
_EX, _PX, _EXAT, _PXAT = "EX", "PX", "EXAT", "PXAT"
_EXPIRY_OPTIONS = frozenset({_EX, _PX, _EXAT, _PXAT})

_Handler = Callable[[tuple[bytes, ...]], Reply]


class _Failed(Exception):
    """Ends a command early with an error reply; caught in ``_execute``, never escapes."""

    def __init__(self, reply: Error) -> None:
        super().__init__(reply.text)
        self.reply = reply


def _parse_int(raw: bytes) -> int:
    """``raw`` as Redis parses a 64-bit integer argument or value (``string2ll``)."""
    if _INTEGER.fullmatch(raw) is None:
        raise _Failed(_NOT_INTEGER)
    value = int(raw)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Failed(_NOT_INTEGER)
    return value


def _parse_cursor(raw: bytes) -> int:
    """A ``SCAN`` cursor as Redis reads it (C's ``strtoul``, base 10, no leading space)."""
    if raw[:1].isspace():
        raise _Failed(_INVALID_CURSOR)
    digits = raw[1:] if raw[:1] in (b"+", b"-") else raw
    if not raw:
        return 0  # strtoul("") parses nothing and leaves nothing unparsed
    if not digits.isdigit():
        raise _Failed(_INVALID_CURSOR)
    value = int(digits)
    if value > _UINT64_MAX:
        raise _Failed(_INVALID_CURSOR)
    return (-value) & _UINT64_MAX if raw[:1] == b"-" else value


def _c_string(raw: bytes) -> bytes:
    """What C's ``%s`` prints of ``raw``: up to its first NUL."""
    return raw.split(b"\0", 1)[0]


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _unknown_command(args: tuple[bytes, ...]) -> Error:
    shown = b""
    for arg in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + _c_string(arg)[: 128 - len(shown)] + b"' "
    text = (
        b"ERR unknown command '"
        + _c_string(args[0])[:128]
        + b"', with args beginning with: "
        + shown
    )
    # Arguments come from clients: no CR or LF may reach a RESP error line.
    return Error(_text(text.replace(b"\r", b" ").replace(b"\n", b" ")))


def _arity_error(name: str) -> Error:
    return Error(f"ERR wrong number of arguments for '{name}' command")


def _expire_error(name: str) -> Error:
    return Error(f"ERR invalid expire time in '{name}' command")


def _scan_hash(key: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


#: Commands ``KvMachine.read`` answers: reads of named keys whose only effect
#: in an applied entry would be removing an expired key (DBSIZE, KEYS and SCAN
#: sweep every expired key, so they stay in the log).
LOCAL_READS = frozenset(
    {
        *(b"get", b"mget", b"exists", b"strlen", b"getrange", b"substr", b"type"),
        *(b"ttl", b"pttl", b"expiretime", b"pexpiretime"),
    }
)


class KvMachine:
    """The key space of one replica: string keys, string values, expiry times.

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
        self._value_bytes_max = value_bytes_max
        self._expire_sweep_max = expire_sweep_max
        self._clock_ms = 0
        self._values: dict[bytes, bytes] = {}
        # Invariant: keys of _expiries are keys of _values; every (at, key) of
        # _expiries is in _expiry_heap (which may also hold stale pairs).
        self._expiries: dict[bytes, int] = {}
        self._expiry_heap: list[tuple[int, bytes]] = []
        # Live keys by (scan hash, key); None when the key set changed since built.
        self._scan_order: list[tuple[int, bytes]] | None = None
        #: True inside ``read``: an expired key is reported absent but left in place.
        self._reading = False
        self._handlers: dict[bytes, _Handler] = {
            b"get": self._get,
            b"set": self._set,
            b"setnx": self._setnx,
            b"setex": self._setex,
            b"psetex": self._psetex,
            b"getset": self._getset,
            b"getdel": self._getdel,
            b"getex": self._getex,
            b"mget": self._mget,
            b"mset": self._mset,
            b"msetnx": self._msetnx,
            b"del": self._del,
            b"unlink": self._del,
            b"exists": self._exists_count,
            b"touch": self._exists_count,
            b"incr": self._incr,
            b"incrby": self._incrby,
            b"decr": self._decr,
            b"decrby": self._decrby,
            b"append": self._append,
            b"strlen": self._strlen,
            b"getrange": self._getrange,
            b"substr": self._getrange,
            b"setrange": self._setrange,
            b"expire": self._expire,
            b"pexpire": self._pexpire,
            b"expireat": self._expireat,
            b"pexpireat": self._pexpireat,
            b"ttl": self._ttl,
            b"pttl": self._pttl,
            b"expiretime": self._expiretime,
            b"pexpiretime": self._pexpiretime,
            b"persist": self._persist,
            b"type": self._type,
            b"rename": self._rename,
            b"renamenx": self._renamenx,
            b"dbsize": self._dbsize,
            b"keys": self._keys,
            b"scan": self._scan,
            b"flushdb": self._flush,
            b"flushall": self._flush,
        }
        assert self._handlers.keys() == COMMANDS.keys(), "every command has exactly one handler"
        # name -> (handler, exact argc or -1, minimum argc, spec name): one lookup per op.
        self._dispatch: dict[bytes, tuple[_Handler, int, int, str]] = {
            name: (
                handler,
                COMMANDS[name].arity if COMMANDS[name].arity > 0 else -1,
                -COMMANDS[name].arity,
                COMMANDS[name].name,
            )
            for name, handler in self._handlers.items()
        }

    # --- the public surface ---------------------------------------------------------------

    @property
    def clock_ms(self) -> int:
        """The machine's time: the largest ``now_ms`` of the entries applied so far."""
        return self._clock_ms

    @property
    def value_bytes_max(self) -> int:
        return self._value_bytes_max

    @property
    def stored_keys(self) -> int:
        """Keys held in memory, expired ones not yet removed included (for metrics)."""
        return len(self._values)

    def apply(self, entry: Entry) -> list[Reply]:
        """Apply ``entry``'s ops in order at its time; one reply per op."""
        if entry.now_ms > self._clock_ms:
            self._clock_ms = entry.now_ms
        self._sweep(self._expire_sweep_max)
        return [self._execute(op.args) for op in entry.ops]

    def read(self, ops: Sequence[Sequence[bytes]]) -> list[Reply]:
        """Point reads (``LOCAL_READS``) on the state as it is now, changing nothing.

        What a read op would reply if it were applied in an entry right now,
        except that an expired key is not removed (removing it on one replica
        only would make replicas' states differ). Reads run at the time of
        the last applied entry (``clock_ms``). The caller makes them
        linearizable by reading only after applying an entry that was
        proposed after the reads arrived (``KeyValueStore`` does).
        """
        self._reading = True
        try:
            return [
                self._execute(tuple(op))
                if op and op[0].lower() in LOCAL_READS
                else Error("ERR not a local read")
                for op in ops
            ]
        finally:
            self._reading = False

    def snapshot(self) -> bytes:
        """The logical state, canonical: equal states give equal bytes."""
        return encode_state(self._clock_ms, self._values, self._expiries)

    def snapshot_copy(self) -> Callable[[], bytes | None]:
        """Copy the state now; encode that copy as ``snapshot`` would, a step per call.

        The copy is two shallow dictionary copies (keys and values are
        immutable bytes): a few milliseconds for 100,000 keys. Each call of
        the returned function encodes a bounded number of keys and returns
        ``None``, the last returns the snapshot: the caller interleaves the
        steps with other work (this machine goes on applying entries).
        """
        return self._encoder().step

    def snapshot_copy_parts(self) -> Callable[[], list[bytes] | None]:
        """``snapshot_copy``, the snapshot left in pieces (``StateEncoder.step_parts``)."""
        return self._encoder().step_parts

    def _encoder(self) -> StateEncoder:
        values, expiries = self._values.copy(), self._expiries.copy()
        return StateEncoder(self._clock_ms, values, expiries)

    def restore(self, data: bytes) -> None:
        """Replace the state by ``data``'s (from ``snapshot``); ``DecodeError`` if damaged.

        On error the state is left as it was.
        """
        state = decode_state(data)
        self._clock_ms = state.clock_ms
        self._values = state.values
        self._expiries = state.expiries
        self._expiry_heap = [(at, key) for key, at in state.expiries.items()]
        heapq.heapify(self._expiry_heap)
        self._scan_order = None

    # --- the key space --------------------------------------------------------------------

    def _execute(self, args: tuple[bytes, ...]) -> Reply:
        found = self._dispatch.get(args[0].lower())
        if found is None:
            return _unknown_command(args)
        handler, exact, least, name = found
        argc = len(args)
        if argc != exact and (exact > 0 or argc < least):  # CommandSpec.arity_ok, inlined
            return _arity_error(name)
        try:
            return handler(args)
        except _Failed as failed:
            return failed.reply

    def _lookup(self, key: bytes) -> bytes | None:
        """The live value of ``key`` (removing it if it has expired)."""
        value = self._values.get(key)
        if value is not None and key in self._expiries and self._clock_ms > self._expiries[key]:
            if not self._reading:
                self._remove(key)
            return None
        return value

    def _exists(self, key: bytes) -> bool:
        return self._lookup(key) is not None

    def _store(self, key: bytes, value: bytes, *, keep_ttl: bool = False) -> None:
        if key not in self._values:
            self._scan_order = None
        self._values[key] = value
        if not keep_ttl:
            self._expiries.pop(key, None)

    def _remove(self, key: bytes) -> bool:
        if key not in self._values:
            return False
        del self._values[key]
        self._expiries.pop(key, None)
        self._scan_order = None
        return True

    def _set_expiry(self, key: bytes, at: int) -> None:
        assert key in self._values
        self._expiries[key] = at
        heap = self._expiry_heap
        heapq.heappush(heap, (at, key))
        if len(heap) > 2 * len(self._expiries) + 64:
            # Mostly stale pairs (expiries changed or removed): rebuild to bound memory.
            self._expiry_heap = [(t, k) for k, t in self._expiries.items()]
            heapq.heapify(self._expiry_heap)

    def _sweep(self, limit: int | None) -> None:
        """Remove expired keys, oldest expiry first: at most ``limit`` (None: all)."""
        heap = self._expiry_heap
        removed = 0
        while heap and heap[0][0] < self._clock_ms:
            at, key = heapq.heappop(heap)
            if self._expiries.get(key) == at:  # else a stale pair
                self._remove(key)
                removed += 1
                if limit is not None and removed >= limit:
                    return

    def _check_size(self, size: int) -> None:
        if size > self._value_bytes_max:
            raise _Failed(Error("ERR string exceeds maximum allowed size (value_bytes_max)"))

    def _expire_at(self, raw: bytes, option: str, name: str) -> int:
        """The absolute expiry time of a ``SET``/``GETEX`` expiry ``option`` (Redis' rules)."""
        when = _parse_int(raw)
        seconds = option in (_EX, _EXAT)
        if when <= 0 or (seconds and when > _SECONDS_MAX):
            raise _Failed(_expire_error(name))
        if seconds:
            when *= 1000
        if option in (_EX, _PX):
            when += self._clock_ms
            if when > _INT64_MAX:
                raise _Failed(_expire_error(name))
        return when

    # --- strings --------------------------------------------------------------------------

    def _get(self, args: tuple[bytes, ...]) -> Reply:
        return self._lookup(args[1])

    def _set(self, args: tuple[bytes, ...]) -> Reply:
        key, value = args[1], args[2]
        self._check_size(len(value))
        if len(args) == 3:
            # Plain SET, the most common write: no options to parse, and the old
            # value (live or expired) is simply replaced, its TTL dropped.
            self._store(key, value)
            return OK
        flags, expiry = _parse_string_options(args, 3, for_set=True)
        at = None if expiry is None else self._expire_at(expiry[1], expiry[0], "set")
        old = self._lookup(key)
        reply: Reply = old if _GET in flags else OK
        if (_NX in flags and old is not None) or (_XX in flags and old is None):
            return old if _GET in flags else None
        self._store(key, value, keep_ttl=_KEEPTTL in flags)
        if at is not None:
            self._set_expiry(key, at)
        return reply

    def _setnx(self, args: tuple[bytes, ...]) -> Reply:
        self._check_size(len(args[2]))
        if self._exists(args[1]):
            return 0
        self._store(args[1], args[2])
        return 1

    def _setex(self, args: tuple[bytes, ...]) -> Reply:
        return self._set_with_expiry(args, _EX, "setex")

    def _psetex(self, args: tuple[bytes, ...]) -> Reply:
        return self._set_with_expiry(args, _PX, "psetex")

    def _set_with_expiry(self, args: tuple[bytes, ...], option: str, name: str) -> Reply:
        key, value = args[1], args[3]
        self._check_size(len(value))
        at = self._expire_at(args[2], option, name)
        self._store(key, value)
        self._set_expiry(key, at)
        return OK

    def _getset(self, args: tuple[bytes, ...]) -> Reply:
        self._check_size(len(args[2]))
        old = self._lookup(args[1])
        self._store(args[1], args[2])
        return old

    def _getdel(self, args: tuple[bytes, ...]) -> Reply:
        value = self._lookup(args[1])
        if value is not None:
            self._remove(args[1])
        return value

    def _getex(self, args: tuple[bytes, ...]) -> Reply:
        key = args[1]
        flags, expiry = _parse_string_options(args, 2, for_set=False)
        value = self._lookup(key)
        if value is None:
            return None
        if expiry is not None:
            at = self._expire_at(expiry[1], expiry[0], "getex")
            if expiry[0] in (_EXAT, _PXAT) and at <= self._clock_ms:
                self._remove(key)  # an absolute time already past: Redis deletes
            else:
                self._set_expiry(key, at)
        elif _PERSIST in flags:
            self._expiries.pop(key, None)
        return value

    def _mget(self, args: tuple[bytes, ...]) -> Reply:
        return [self._lookup(key) for key in args[1:]]

    def _mset_pairs(self, args: tuple[bytes, ...]) -> list[tuple[bytes, bytes]]:
        if len(args) % 2 == 0:
            raise _Failed(_arity_error(_text(args[0].lower())))
        pairs = list(zip(args[1::2], args[2::2], strict=True))
        for _, value in pairs:
            self._check_size(len(value))
        return pairs

    def _mset(self, args: tuple[bytes, ...]) -> Reply:
        for key, value in self._mset_pairs(args):
            self._store(key, value)
        return OK

    def _msetnx(self, args: tuple[bytes, ...]) -> Reply:
        pairs = self._mset_pairs(args)
        if any(self._exists(key) for key, _ in pairs):
            return 0
        for key, value in pairs:
            self._store(key, value)
        return 1

    def _incr(self, args: tuple[bytes, ...]) -> Reply:
        return self._incr_by(args[1], 1)

    def _decr(self, args: tuple[bytes, ...]) -> Reply:
        return self._incr_by(args[1], -1)

    def _incrby(self, args: tuple[bytes, ...]) -> Reply:
        return self._incr_by(args[1], _parse_int(args[2]))

    def _decrby(self, args: tuple[bytes, ...]) -> Reply:
        decrement = _parse_int(args[2])
        if decrement == _INT64_MIN:
            return Error("ERR decrement would overflow")
        return self._incr_by(args[1], -decrement)

    def _incr_by(self, key: bytes, increment: int) -> Reply:
        old = self._lookup(key)
        value = 0 if old is None else _parse_int(old)
        if (increment < 0 and value < 0 and increment < _INT64_MIN - value) or (
            increment > 0 and value > 0 and increment > _INT64_MAX - value
        ):
            return _OVERFLOW
        value += increment
        self._store(key, str(value).encode("ascii"), keep_ttl=True)
        return value

    def _append(self, args: tuple[bytes, ...]) -> Reply:
        old = self._lookup(args[1]) or b""
        self._check_size(len(old) + len(args[2]))
        value = old + args[2]
        self._store(args[1], value, keep_ttl=True)
        return len(value)

    def _strlen(self, args: tuple[bytes, ...]) -> Reply:
        return len(self._lookup(args[1]) or b"")

    def _getrange(self, args: tuple[bytes, ...]) -> Reply:
        start, end = _parse_int(args[2]), _parse_int(args[3])
        value = self._lookup(args[1])
        if value is None or (start < 0 and end < 0 and start > end):
            return b""
        size = len(value)
        if start < 0:
            start = max(size + start, 0)
        if end < 0:
            end = max(size + end, 0)
        end = min(end, size - 1)
        if start > end or size == 0:
            return b""
        return value[start : end + 1]

    def _setrange(self, args: tuple[bytes, ...]) -> Reply:
        key, patch = args[1], args[3]
        offset = _parse_int(args[2])
        if offset < 0:
            return Error("ERR offset is out of range")
        old = self._lookup(key)
        if not patch:
            return 0 if old is None else len(old)
        self._check_size(offset + len(patch))
        old = old or b""
        value = old[:offset].ljust(offset, b"\0") + patch + old[offset + len(patch) :]
        self._store(key, value, keep_ttl=True)
        return len(value)

    # --- keys and expiry ------------------------------------------------------------------

    def _del(self, args: tuple[bytes, ...]) -> Reply:
        return sum(1 for key in args[1:] if self._exists(key) and self._remove(key))

    def _exists_count(self, args: tuple[bytes, ...]) -> Reply:
        return sum(1 for key in args[1:] if self._exists(key))

    def _expire(self, args: tuple[bytes, ...]) -> Reply:
        return self._expire_generic(args, self._clock_ms, seconds=True)

    def _pexpire(self, args: tuple[bytes, ...]) -> Reply:
        return self._expire_generic(args, self._clock_ms, seconds=False)

    def _expireat(self, args: tuple[bytes, ...]) -> Reply:
        return self._expire_generic(args, 0, seconds=True)

    def _pexpireat(self, args: tuple[bytes, ...]) -> Reply:
        return self._expire_generic(args, 0, seconds=False)

    def _expire_generic(self, args: tuple[bytes, ...], base_ms: int, *, seconds: bool) -> Reply:
        key = args[1]
        options = _parse_expire_options(args[3:])
        when = _parse_int(args[2])
        name = _text(args[0].lower())
        if seconds:
            if not -_SECONDS_MAX <= when <= _SECONDS_MAX:
                return _expire_error(name)
            when *= 1000
        if when > _INT64_MAX - base_ms:
            return _expire_error(name)
        when += base_ms
        if not self._exists(key):
            return 0
        current = self._expiries.get(key)
        if (
            ("nx" in options and current is not None)
            or ("xx" in options and current is None)
            # No expiry is an infinite one: GT never beats it, LT always does.
            or ("gt" in options and (current is None or when <= current))
            or ("lt" in options and current is not None and when >= current)
        ):
            return 0
        if when <= self._clock_ms:
            self._remove(key)
        else:
            self._set_expiry(key, when)
        return 1

    def _ttl(self, args: tuple[bytes, ...]) -> Reply:
        return self._ttl_generic(args[1], ms=False, absolute=False)

    def _pttl(self, args: tuple[bytes, ...]) -> Reply:
        return self._ttl_generic(args[1], ms=True, absolute=False)

    def _expiretime(self, args: tuple[bytes, ...]) -> Reply:
        return self._ttl_generic(args[1], ms=False, absolute=True)

    def _pexpiretime(self, args: tuple[bytes, ...]) -> Reply:
        return self._ttl_generic(args[1], ms=True, absolute=True)

    def _ttl_generic(self, key: bytes, *, ms: bool, absolute: bool) -> Reply:
        if not self._exists(key):
            return -2
        at = self._expiries.get(key)
        if at is None:
            return -1
        ttl = max(at if absolute else at - self._clock_ms, 0)
        return ttl if ms else (ttl + 500) // 1000  # Redis rounds to the nearest second

    def _persist(self, args: tuple[bytes, ...]) -> Reply:
        if not self._exists(args[1]):
            return 0
        return 0 if self._expiries.pop(args[1], None) is None else 1

    def _type(self, args: tuple[bytes, ...]) -> Reply:
        return _STRING if self._exists(args[1]) else _NONE

    def _rename(self, args: tuple[bytes, ...]) -> Reply:
        return self._rename_generic(args[1], args[2], nx=False)

    def _renamenx(self, args: tuple[bytes, ...]) -> Reply:
        return self._rename_generic(args[1], args[2], nx=True)

    def _rename_generic(self, source: bytes, target: bytes, *, nx: bool) -> Reply:
        value = self._lookup(source)
        if value is None:
            return _NO_SUCH_KEY
        if source == target:
            return 0 if nx else OK
        if nx and self._exists(target):
            return 0
        at = self._expiries.get(source)
        self._remove(source)
        self._store(target, value)
        if at is not None:
            self._set_expiry(target, at)
        return 1 if nx else OK

    def _dbsize(self, args: tuple[bytes, ...]) -> Reply:
        self._sweep(None)
        return len(self._values)

    def _keys(self, args: tuple[bytes, ...]) -> Reply:
        self._sweep(None)
        pattern = None if args[1] == b"*" else compile_pattern(args[1])
        keys: list[Reply] = [
            key for key in sorted(self._values) if pattern is None or pattern.matches(key)
        ]
        return keys

    def _scan(self, args: tuple[bytes, ...]) -> Reply:
        cursor = _parse_cursor(args[1])
        count = _SCAN_COUNT_DEFAULT
        match: bytes | None = None
        type_name: bytes | None = None
        i = 2
        while i < len(args):
            option = args[i].lower()
            if option == b"count" and len(args) - i >= 2:
                count = _parse_int(args[i + 1])
                if count < 1:
                    return _SYNTAX
            elif option == b"match" and len(args) - i >= 2:
                match = None if args[i + 1] == b"*" else args[i + 1]
            elif option == b"type" and len(args) - i >= 2:
                type_name = args[i + 1].lower()
            else:
                return _SYNTAX
            i += 2
        self._sweep(None)
        order = self._scan_order
        if order is None:
            order = self._scan_order = sorted((_scan_hash(key), key) for key in self._values)
        start = bisect_left(order, (cursor, b""))
        stop = min(start + count, len(order))
        # Never split keys of one hash across calls: the cursor is a hash.
        while start < stop < len(order) and order[stop][0] == order[stop - 1][0]:
            stop += 1
        next_cursor = 0 if stop >= len(order) else order[stop - 1][0] + 1
        pattern = None if match is None else compile_pattern(match)
        keys: list[Reply] = []
        if type_name is None or type_name == b"string":
            keys += (k for _, k in order[start:stop] if pattern is None or pattern.matches(k))
        return [str(next_cursor).encode("ascii"), keys]

    def _flush(self, args: tuple[bytes, ...]) -> Reply:
        if len(args) > 2 or (len(args) == 2 and args[1].lower() not in (b"sync", b"async")):
            return _SYNTAX
        self._values = {}
        self._expiries = {}
        self._expiry_heap = []
        self._scan_order = None
        return OK


def _parse_string_options(
    args: tuple[bytes, ...], start: int, *, for_set: bool
) -> tuple[set[str], tuple[str, bytes] | None]:
    """``SET``'s (or ``GETEX``'s) options: the flags and the expiry option with its value.

    Mirrors Redis' ``parseExtendedStringArgumentsOrReply``: an option that
    conflicts with one already given is a syntax error; repeating one is not
    (the last value wins).
    """
    flags: set[str] = set()
    expiry: tuple[str, bytes] | None = None
    j = start
    while j < len(args):
        option = args[j].upper()
        has_value = j + 1 < len(args)
        if option == b"NX" and for_set and _XX not in flags:
            flags.add(_NX)
        elif option == b"XX" and for_set and _NX not in flags:
            flags.add(_XX)
        elif option == b"GET" and for_set:
            flags.add(_GET)
        elif option == b"KEEPTTL" and for_set and not flags & (_EXPIRY_OPTIONS | {_PERSIST}):
            flags.add(_KEEPTTL)
        elif option == b"PERSIST" and not for_set and not flags & (_EXPIRY_OPTIONS | {_KEEPTTL}):
            flags.add(_PERSIST)
        elif (
            option in (b"EX", b"PX", b"EXAT", b"PXAT")
            and has_value
            and not flags & ((_EXPIRY_OPTIONS | {_KEEPTTL, _PERSIST}) - {option.decode()})
        ):
            flags.add(option.decode())
            expiry = (option.decode(), args[j + 1])
            j += 1
        else:
            raise _Failed(_SYNTAX)
        j += 1
    return flags, expiry


def _parse_expire_options(options: tuple[bytes, ...]) -> set[str]:
    """``EXPIRE``'s NX/XX/GT/LT options (Redis' ``parseExtendedExpireArgumentsOrReply``)."""
    found: set[str] = set()
    for raw in options:
        option = raw.lower()
        if option not in (b"nx", b"xx", b"gt", b"lt"):
            raise _Failed(Error(f"ERR Unsupported option {_text(_c_string(raw))}"))
        found.add(option.decode())
    if "nx" in found and found & {"xx", "gt", "lt"}:
        raise _Failed(Error("ERR NX and XX, GT or LT options at the same time are not compatible"))
    if {"gt", "lt"} <= found:
        raise _Failed(Error("ERR GT and LT options at the same time are not compatible"))
    return found
