"""The snapshot encoding of the key-value state: versioned, checksummed, canonical.

Theory of operation: a snapshot is the *logical* state only: the machine's
clock and the live keys with their values and expiry times. Keys already
expired at the clock are left out, and keys are written in byte order, so two
replicas in the same logical state write the same bytes, whatever their
dictionaries' insertion orders or how far their lazy expiry has got.

Snapshot, version 1 (``uvarint`` = unsigned LEB128, shortest form)::

    4s      magic b"PXKV"
    u8      version (= 1)
    u32     CRC-32 of the body
    body:
        u64     clock_ms (at most 2**63 - 1)
        uvarint count of keys
        count times, keys strictly increasing:
            uvarint key length, key
            uvarint value length, value
            u8      1 if an expiry time follows, else 0
            [i64    expiry time, Unix milliseconds]

Version 2 is version 1 with two additions, so a state of strings only (and
no random draw made yet) is still written as version 1, which nodes without
the aggregate types read:

- the flag byte after a value is ``type << 1 | has_expiry``, ``type`` 0 for a
  string, 1 hash, 2 list, 3 set, 4 sorted set; an aggregate's "value" is its
  elements: ``uvarint count`` then each element (``uvarint length, bytes``):
  a hash's field and value pairs in insertion order, a list from head to
  tail, a set's members in their array order, a sorted set's member and
  ``f64`` big-endian score pairs by (score, member). No aggregate is empty;
- after the last key, ``u64 draws``: the random draws made so far
  (``Keyspace.draws``).

Type 5 is a stream (``stream_value``), which may be empty; its "value" is
``u64 u64`` its last ID, ``uvarint`` its node count, then each node:
``u64 u64`` its first ID, ``u64 u64`` its last ID, ``uvarint`` slots used,
``uvarint`` live entries, and that many entries, each ``u64 u64`` its ID,
``uvarint`` its field and value count (even, at least 2) and each of them
(``uvarint length, bytes``). IDs strictly increase across the stream.

Rules: ``decode_state`` reads bytes from outside (a disk, a peer): it checks
the checksum first, never trusts a count or a length, consumes its input
exactly, and raises ``DecodeError`` on anything malformed.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import DecodeError
from .stream_value import StreamNode
from .values import HashValue, ListValue, SetValue, StreamValue, Value, ZSetValue
from .wire import encode_uvarint, read_uvarint

__all__ = [
    "SNAPSHOT_MAGIC",
    "SNAPSHOT_VERSION",
    "State",
    "StateEncoder",
    "decode_state",
    "encode_state",
    "encode_value",
]

SNAPSHOT_MAGIC = b"PXKV"
#: The version byte ``encode_state`` writes when the state needs it (else 1); both are read.
SNAPSHOT_VERSION = 2
_VERSIONS = (1, 2)

_HEAD = struct.Struct(">4sBI")  # magic, version, crc
_CLOCK = struct.Struct(">Q")
_EXPIRY = struct.Struct(">q")
_DRAWS = struct.Struct(">Q")
_SCORE = struct.Struct(">d")
# The type codes of the flag byte (version 2).
_STRING, _HASH, _LIST, _SET, _ZSET, _STREAM = range(6)
_ID = struct.Struct(">QQ")
_CLOCK_MAX = (1 << 63) - 1
#: Keys a ``StateEncoder`` step encodes: about a millisecond or two of work
#: for small values, so a loop interleaving the steps stays responsive.
KEYS_PER_STEP_DEFAULT = 2048
#: The varint of every length below 128 (most keys and many values).
_SMALL_UVARINTS = tuple(encode_uvarint(n) for n in range(128))


@dataclass(frozen=True, slots=True)
class State:
    """The logical state: the clock, every live key's value and expiry time, the draws."""

    clock_ms: int
    values: dict[bytes, Value]
    expiries: dict[bytes, int]  # a subset of values' keys
    draws: int = 0


def encode_state(
    clock_ms: int,
    values: Mapping[bytes, Value],
    expiries: Mapping[bytes, int],
    draws: int = 0,
) -> bytes:
    """The snapshot of ``values`` and ``expiries`` (keys expired at ``clock_ms`` left out)."""
    encoder = StateEncoder(clock_ms, values, expiries, draws, keys_per_step=1 << 62)
    while True:
        data = encoder.step()
        if data is not None:
            return data


class StateEncoder:
    """``encode_state`` in bounded steps, for a caller that interleaves other work.

    Each ``step()`` encodes at most ``keys_per_step`` keys and returns
    ``None``; the last returns the snapshot, the same bytes ``encode_state``
    gives. The first step also selects and sorts the live keys (a C sort,
    milliseconds for 100,000 keys). ``values`` and ``expiries`` must not
    change until the last step: give it copies of a live state (an
    aggregate value is never changed in place once a copy holds it:
    ``Keyspace.writable``).

    ``step_parts`` is ``step`` with the last result left in pieces (their
    concatenation is the snapshot): a caller that frames the snapshot in a
    larger record joins everything once, instead of joining here and copying
    the whole snapshot again (each copy of a large state is another
    snapshot-sized allocation).
    """

    def __init__(
        self,
        clock_ms: int,
        values: Mapping[bytes, Value],
        expiries: Mapping[bytes, int],
        draws: int = 0,
        *,
        keys_per_step: int = KEYS_PER_STEP_DEFAULT,
    ) -> None:
        assert 0 <= clock_ms <= _CLOCK_MAX and keys_per_step >= 1 and 0 <= draws < 1 << 64
        self._clock_ms = clock_ms
        self._draws = draws
        #: Whether a value needs version 2 (an aggregate).
        self._aggregates = False
        self._values = values
        self._expiries = expiries
        self._keys_per_step = keys_per_step
        self._live: list[bytes] | None = None
        self._at = 0
        self._chunks: list[bytes] = []
        self._crc = 0

    def step(self) -> bytes | None:
        """Encode the next keys; the snapshot once every key is encoded, else ``None``."""
        parts = self.step_parts()
        return None if parts is None else b"".join(parts)

    def step_parts(self) -> list[bytes] | None:
        """``step``, but the snapshot is returned as the pieces it is the concatenation of."""
        values, expiries = self._values, self._expiries
        live = self._live
        if live is None:
            # A key is expired once the clock is past its expiry time (Redis: now > when).
            clock_ms = self._clock_ms
            if expiries:
                live = sorted(k for k in values if k not in expiries or expiries[k] >= clock_ms)
            else:
                live = sorted(values)
            self._live = live
            self._add(_CLOCK.pack(clock_ms) + encode_uvarint(len(live)))
        start = self._at
        stop = min(len(live), start + self._keys_per_step)
        # Every key of the store passes here: one-byte lengths come from a
        # table, and each key adds its five pieces with one call.
        small = _SMALL_UVARINTS
        body: list[bytes] = []
        extend = body.extend
        pack = _EXPIRY.pack
        expiry = expiries.get
        for key in live[start:stop]:
            value = values[key]
            if type(value) is bytes:
                flag = 0
            else:
                flag, value = _encode_aggregate(value)
                self._aggregates = True
            n, m = len(key), len(value)
            at = expiry(key) if expiries else None
            extend(
                (
                    small[n] if n < 128 else encode_uvarint(n),
                    key,
                    small[m] if m < 128 else encode_uvarint(m),
                    value,
                    _FLAGS[flag] if at is None else _FLAGS[flag | 1] + pack(at),
                )
            )
        self._add(b"".join(body))
        self._at = stop
        if stop < len(live):
            return None
        version = 1
        if self._aggregates or self._draws:
            version = 2
            self._add(_DRAWS.pack(self._draws))
        parts, self._chunks = self._chunks, []
        parts.insert(0, _HEAD.pack(SNAPSHOT_MAGIC, version, self._crc))
        # The copies of the state are no longer needed: drop them now, not
        # when the caller drops this encoder.
        self._values, self._expiries, self._live = {}, {}, []
        return parts

    def _add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._crc = zlib.crc32(chunk, self._crc)


_FLAGS = tuple(bytes((n,)) for n in range(12))


def encode_value(value: Value) -> bytes:
    """One value as the snapshot writes it, its type first: equal values, equal bytes."""
    if type(value) is bytes:
        return b"\x00" + value
    flag, data = _encode_aggregate(value)
    return bytes((flag,)) + data


def _encode_aggregate(value: Value) -> tuple[int, bytes]:
    """The flag byte's type bits and the element encoding of an aggregate."""
    small = _SMALL_UVARINTS
    if isinstance(value, StreamValue):
        return _STREAM << 1, _encode_stream(value)
    parts: list[bytes] = [encode_uvarint(len(value))]
    add = parts.append
    if isinstance(value, HashValue):
        kind = _HASH
        for field, item in value.items():
            add(small[len(field)] if len(field) < 128 else encode_uvarint(len(field)))
            add(field)
            add(small[len(item)] if len(item) < 128 else encode_uvarint(len(item)))
            add(item)
    elif isinstance(value, ZSetValue):
        kind = _ZSET
        pack = _SCORE.pack
        for score, member in value.order:
            add(small[len(member)] if len(member) < 128 else encode_uvarint(len(member)))
            add(member)
            add(pack(score))
    else:
        if isinstance(value, ListValue):
            kind, items = _LIST, list(value)
        else:
            assert isinstance(value, SetValue)
            kind, items = _SET, value.members
        for item in items:
            add(small[len(item)] if len(item) < 128 else encode_uvarint(len(item)))
            add(item)
    return kind << 1, b"".join(parts)


def _encode_stream(stream: StreamValue) -> bytes:
    pack = _ID.pack
    parts = [pack(*stream.last_id), encode_uvarint(len(stream.nodes))]
    add = parts.append
    at = 0
    ids, entries = stream.ids, stream.entries
    for node in stream.nodes:
        add(pack(*node.first) + pack(*node.last))
        add(encode_uvarint(node.slots) + encode_uvarint(node.live))
        for entry_id in ids[at : at + node.live]:
            fields = entries[entry_id]
            add(pack(*entry_id) + encode_uvarint(len(fields)))
            for item in fields:
                add(encode_uvarint(len(item)))
                add(item)
        at += node.live
    assert at == len(ids)
    return b"".join(parts)


def _decode_stream(data: bytes, what: str) -> StreamValue:
    """The stream ``_encode_stream`` wrote; every ID order and count checked."""
    view = memoryview(data)
    end = len(view)

    def read_id(pos: int) -> tuple[tuple[int, int], int]:
        if pos + _ID.size > end:
            raise DecodeError(f"snapshot ends inside an ID of {what}")
        ms, seq = _ID.unpack_from(view, pos)
        return (ms, seq), pos + _ID.size

    stream = StreamValue(0)
    stream.last_id, pos = read_id(0)
    count, pos = read_uvarint(view, pos, f"the node count of {what}")
    if count * 34 > end - pos:
        raise DecodeError(f"snapshot {what} claims {count} nodes in {end - pos} bytes")
    previous = (-1, -1)
    for _ in range(count):
        first, pos = read_id(pos)
        last, pos = read_id(pos)
        slots, pos = read_uvarint(view, pos, f"the slots of a node of {what}")
        live, pos = read_uvarint(view, pos, f"the entries of a node of {what}")
        if not previous < first <= last <= stream.last_id or live > slots or slots < 1:
            raise DecodeError(f"snapshot {what} has a malformed node")
        previous = last
        for _ in range(live):
            entry_id, pos = read_id(pos)
            if not first <= entry_id <= last or (stream.ids and entry_id <= stream.ids[-1]):
                raise DecodeError(f"snapshot {what} has an entry out of order")
            n, pos = read_uvarint(view, pos, f"the field count of an entry of {what}")
            if n < 2 or n % 2 or n > end - pos:
                raise DecodeError(f"snapshot {what} has an entry of {n} fields and values")
            fields = []
            for _ in range(n):
                item, pos = _read_bytes(view, pos, f"a field of {what}")
                fields.append(item)
            stream.ids.append(entry_id)
            stream.entries[entry_id] = tuple(fields)
        stream.nodes.append(StreamNode(first, last, slots, live))
    if pos != end:
        raise DecodeError(f"snapshot {what} has {end - pos} trailing bytes")
    return stream


def decode_state(data: bytes) -> State:
    """The state ``encode_state`` wrote into ``data``; ``DecodeError`` if it is not one."""
    view = memoryview(data)
    end = len(view)
    if end < _HEAD.size + _CLOCK.size:
        raise DecodeError(f"snapshot of {end} bytes is shorter than its header")
    magic, version, crc = _HEAD.unpack_from(view, 0)
    if magic != SNAPSHOT_MAGIC:
        raise DecodeError(f"not a key-value snapshot (magic {bytes(magic)!r})")
    if version not in _VERSIONS:
        raise DecodeError(f"snapshot version {version} is not one of {_VERSIONS}")
    if zlib.crc32(view[_HEAD.size :]) != crc:
        raise DecodeError("snapshot checksum mismatch: the snapshot is damaged")
    draws = 0
    if version >= 2:
        if end < _HEAD.size + _CLOCK.size + _DRAWS.size:
            raise DecodeError(f"snapshot of {end} bytes is shorter than its header")
        end -= _DRAWS.size
        (draws,) = _DRAWS.unpack_from(view, end)
        view = view[:end]
    pos = _HEAD.size
    (clock_ms,) = _CLOCK.unpack_from(view, pos)
    if clock_ms > _CLOCK_MAX:
        raise DecodeError(f"snapshot clock {clock_ms} is above {_CLOCK_MAX}")
    count, pos = read_uvarint(view, pos + _CLOCK.size, "the key count")
    # A key takes at least three bytes: a garbled count cannot make us loop long.
    if count * 3 > end - pos:
        raise DecodeError(f"snapshot claims {count} keys but has {end - pos} bytes left")
    values: dict[bytes, Value] = {}
    expiries: dict[bytes, int] = {}
    previous: bytes | None = None
    flag_max = 1 if version == 1 else (_STREAM << 1) | 1
    aggregates = False
    for i in range(count):
        key, pos = _read_bytes(view, pos, f"key {i}")
        if previous is not None and key <= previous:
            raise DecodeError(f"snapshot key {i} is out of order")
        previous = key
        value, pos = _read_bytes(view, pos, f"the value of key {i}")
        if pos >= end:
            raise DecodeError(f"snapshot ends inside key {i}")
        flag = view[pos]
        pos += 1
        if flag > flag_max:
            raise DecodeError(f"snapshot key {i} has expiry flag {flag}")
        kind = flag >> 1
        if kind == _STRING:
            values[key] = value
        else:
            values[key] = _decode_typed(kind, value, f"key {i}")
            aggregates = True
        if flag & 1:
            if pos + _EXPIRY.size > end:
                raise DecodeError(f"snapshot ends inside the expiry time of key {i}")
            (expiries[key],) = _EXPIRY.unpack_from(view, pos)
            pos += _EXPIRY.size
    if pos != end:
        raise DecodeError(f"snapshot has {end - pos} trailing bytes")
    if version == 2 and not aggregates and not draws:
        raise DecodeError("snapshot version 2 of a state that version 1 encodes")
    return State(clock_ms, values, expiries, draws)


def _decode_typed(kind: int, data: bytes, what: str) -> Value:
    if kind == _STREAM:
        return _decode_stream(data, what)
    return _decode_aggregate(kind, data, what)


def _decode_aggregate(
    kind: int, data: bytes, what: str
) -> HashValue | ListValue | SetValue | ZSetValue:
    """The aggregate ``_encode_aggregate`` wrote; each element checked, none trusted."""
    view = memoryview(data)
    count, pos = read_uvarint(view, 0, f"the element count of {what}")
    if count == 0 or count > len(view) - pos:
        raise DecodeError(f"snapshot {what} claims {count} elements in {len(view) - pos} bytes")
    items: list[bytes] = []
    scores: list[float] = []
    per_item = 2 if kind == _HASH else 1
    for _ in range(count * per_item):
        item, pos = _read_bytes(view, pos, f"an element of {what}")
        items.append(item)
        if kind == _ZSET:
            if pos + _SCORE.size > len(view):
                raise DecodeError(f"snapshot ends inside a score of {what}")
            (score,) = _SCORE.unpack_from(view, pos)
            if math.isnan(score):
                raise DecodeError(f"snapshot {what} has a NaN score")
            scores.append(score)
            pos += _SCORE.size
    if pos != len(view):
        raise DecodeError(f"snapshot {what} has {len(view) - pos} trailing bytes")
    value: HashValue | ListValue | SetValue | ZSetValue
    if kind == _HASH:
        value = HashValue(0)
        value.update(zip(items[0::2], items[1::2], strict=True))
    elif kind == _LIST:
        value = ListValue(0)
        value.extend(items)
    elif kind == _SET:
        value = SetValue(0)
        for item in items:
            value.add(item)
    else:
        value = ZSetValue(0)
        pairs = list(zip(scores, items, strict=True))
        if any(a >= b for a, b in itertools.pairwise(pairs)):
            raise DecodeError(f"snapshot {what} is not in (score, member) order")
        value.order = pairs
        value.scores = {member: score for score, member in pairs}
    if len(value) != count:
        raise DecodeError(f"snapshot {what} repeats an element")
    return value


def _read_bytes(view: memoryview, pos: int, what: str) -> tuple[bytes, int]:
    length, pos = read_uvarint(view, pos, f"the length of {what}")
    if length > len(view) - pos:
        raise DecodeError(f"snapshot ends inside {what}")
    return bytes(view[pos : pos + length]), pos + length
