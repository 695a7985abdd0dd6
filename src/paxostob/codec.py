"""The wire encoding of every core ``Message``: compact, tagged msgpack arrays.

Theory of operation: a message is one msgpack array whose first element is
its type tag and whose other elements are its fields, in declaration order.
Nested values are arrays too, never maps, so no field names travel:

- ``Ballot`` is ``[round, node_id]``;
- a ``Batch`` (and ``Forward.proposals``) is a list of ``[origin, seq, payload]``;
- a ``PromiseEntry`` is ``[slot, ballot, batch, decided]``, a ``DecidedEntry``
  ``[slot, batch]``; ``Accepted.value`` is a batch or nil;
- ``SnapshotChunk`` carries ``meta`` and ``chunk`` as bin, and its chunk must
  lie inside the snapshot (``offset + len(chunk) <= size``).

Rules:

- Tags are part of the wire format: never renumber or reuse one; a new message
  type takes a new tag. There is no version byte: a node of an older release
  refuses a newer tag with ``DecodeError`` (the TCP transport then closes
  that connection), and every older message reads as before. ``PreVote`` and
  ``PreVoteReply`` (12, 13) are such additions: upgrade a cluster from a
  release without them with ``LogConfig.pre_vote`` off, and turn it on once
  every node reads them. So are the ReadIndex messages (14-17): a node
  sends them only for reads by read index (``KeyValueStore(reads=...)``),
  so upgrade with ``reads="barrier"`` until every node reads them.
- ``decode_message`` reads bytes from outside (a peer): it checks every type,
  arity and range and raises ``DecodeError`` for anything else, never another
  exception. Integers are non-negative (slots, rounds, seqs and watermarks
  all are; the watermarks of a ``Promise`` and an ``Accept`` may be -1:
  nothing decided, as a single-decree instance sends), ints are
  never bools, payloads are msgpack bin (``bytes``), ids
  are msgpack str, and nothing may follow the message.
- Decoding allocates in proportion to the input: every msgpack length limit is
  the input's own length (a header that claims 2**32 elements fails at once),
  maps and extension types are refused outright, and msgpack's own nesting
  limit (a ``StackError``) bounds recursion. The caller bounds the input (the
  TCP transport's ``frame_bytes_max``).
- ``encode_message`` takes a well-formed message; a field msgpack cannot
  represent (an int outside 0..2**64-1, a str with lone surrogates) raises
  ``ValueError``.

msgpack is the one third-party dependency of layer 0 (the ``net`` extra):
only the networked adapters import this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .core.messages import (
    Accept,
    Accepted,
    CatchUp,
    Decided,
    Forward,
    Heartbeat,
    HeartbeatReply,
    Message,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
    PromiseEntry,
    ReadIndexAsk,
    ReadIndexGrant,
    ReadProbe,
    ReadProbeReply,
    SnapshotChunk,
)
from .core.types import Ballot, Batch, DecidedEntry, new_proposal
from .errors import DecodeError

try:
    import msgpack  # type: ignore[import-untyped]
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "paxostob.codec needs msgpack: install the 'net' extra (pip install 'paxostob[net]')"
    ) from e

__all__ = [
    "TAG_ACCEPT",
    "TAG_ACCEPTED",
    "TAG_CATCH_UP",
    "TAG_DECIDED",
    "TAG_FORWARD",
    "TAG_HEARTBEAT",
    "TAG_HEARTBEAT_REPLY",
    "TAG_NACK",
    "TAG_PREPARE",
    "TAG_PRE_VOTE",
    "TAG_PRE_VOTE_REPLY",
    "TAG_PROMISE",
    "TAG_READ_INDEX_ASK",
    "TAG_READ_INDEX_GRANT",
    "TAG_READ_PROBE",
    "TAG_READ_PROBE_REPLY",
    "TAG_SNAPSHOT_CHUNK",
    "decode_message",
    "encode_message",
    "encode_message_parts",
]

TAG_PREPARE = 1
TAG_PROMISE = 2
TAG_NACK = 3
TAG_ACCEPT = 4
TAG_ACCEPTED = 5
TAG_HEARTBEAT = 6
TAG_HEARTBEAT_REPLY = 7
TAG_FORWARD = 8
TAG_CATCH_UP = 9
TAG_DECIDED = 10
TAG_SNAPSHOT_CHUNK = 11
TAG_PRE_VOTE = 12
TAG_PRE_VOTE_REPLY = 13
TAG_READ_PROBE = 14
TAG_READ_PROBE_REPLY = 15
TAG_READ_INDEX_ASK = 16
TAG_READ_INDEX_GRANT = 17

# ---------------------------------------------------------------------------------- encoding


def _ballot(b: Ballot) -> list[Any]:
    return [b.round, b.node_id]


def _batch(batch: Batch) -> list[Any]:
    return [[p.id.origin, p.id.seq, p.payload] for p in batch]


def _fields(m: Message) -> list[Any]:
    """``[tag, instance, sender, *fields]`` of ``m``."""
    if isinstance(m, Prepare):
        return [TAG_PREPARE, m.instance, m.sender, _ballot(m.ballot), m.slot]
    if isinstance(m, Promise):
        entries = [[e.slot, _ballot(e.ballot), _batch(e.value), e.decided] for e in m.entries]
        return [TAG_PROMISE, m.instance, m.sender, _ballot(m.ballot), m.decided_through, entries]
    if isinstance(m, Nack):
        return [TAG_NACK, m.instance, m.sender, _ballot(m.ballot), _ballot(m.promised)]
    if isinstance(m, Accept):
        return [
            TAG_ACCEPT,
            m.instance,
            m.sender,
            _ballot(m.ballot),
            m.slot,
            _batch(m.value),
            m.commit,
        ]
    if isinstance(m, Accepted):
        value = None if m.value is None else _batch(m.value)
        return [TAG_ACCEPTED, m.instance, m.sender, _ballot(m.ballot), m.slot, value]
    if isinstance(m, Heartbeat):
        return [TAG_HEARTBEAT, m.instance, m.sender, _ballot(m.ballot), m.commit]
    if isinstance(m, HeartbeatReply):
        return [TAG_HEARTBEAT_REPLY, m.instance, m.sender, _ballot(m.ballot), m.decided_through]
    if isinstance(m, Forward):
        return [TAG_FORWARD, m.instance, m.sender, _batch(m.proposals)]
    if isinstance(m, CatchUp):
        return [TAG_CATCH_UP, m.instance, m.sender, m.slot]
    if isinstance(m, Decided):
        entries = [[e.slot, _batch(e.value)] for e in m.entries]
        return [TAG_DECIDED, m.instance, m.sender, entries]
    if isinstance(m, SnapshotChunk):
        return [
            TAG_SNAPSHOT_CHUNK,
            m.instance,
            m.sender,
            m.slot,
            m.meta,
            m.size,
            m.offset,
            m.chunk,
        ]
    if isinstance(m, PreVote):
        return [TAG_PRE_VOTE, m.instance, m.sender, _ballot(m.ballot), m.decided_through]
    if isinstance(m, PreVoteReply):
        return [
            TAG_PRE_VOTE_REPLY,
            m.instance,
            m.sender,
            _ballot(m.ballot),
            m.granted,
            _ballot(m.promised),
        ]
    if isinstance(m, ReadProbe):
        return [TAG_READ_PROBE, m.instance, m.sender, _ballot(m.ballot), m.round, m.commit]
    if isinstance(m, ReadProbeReply):
        # The guard only when there is one: a node without leases sends what
        # releases before leases read.
        guard = [m.guard_ms] if m.guard_ms else []
        return [TAG_READ_PROBE_REPLY, m.instance, m.sender, _ballot(m.ballot), m.round, *guard]
    if isinstance(m, ReadIndexAsk):
        return [TAG_READ_INDEX_ASK, m.instance, m.sender, m.ask]
    if isinstance(m, ReadIndexGrant):
        return [TAG_READ_INDEX_GRANT, m.instance, m.sender, m.ask, m.index]
    raise TypeError(f"not a core message: {type(m).__name__}")


def encode_message(message: Message) -> bytes:
    """The wire bytes of ``message`` (``ValueError`` if msgpack cannot represent a field)."""
    fields = _fields(message)
    try:
        packed: bytes = msgpack.packb(fields, use_bin_type=True)
    except (OverflowError, ValueError, TypeError) as e:
        raise ValueError(f"cannot encode {type(message).__name__}: {e}") from e
    return packed


#: msgpack's encoding of an empty bin (bin 8, length 0): the tail of a
#: ``SnapshotChunk`` encoded with its chunk left out.
_EMPTY_BIN = b"\xc4\x00"


def _bin_header(length: int) -> bytes:
    """msgpack's header of a bin of ``length`` bytes, in the smallest format, as ``packb`` picks."""
    if length <= 0xFF:
        return b"\xc4" + length.to_bytes(1, "big")
    if length <= 0xFFFF:
        return b"\xc5" + length.to_bytes(2, "big")
    if length <= 0xFFFFFFFF:
        return b"\xc6" + length.to_bytes(4, "big")
    raise ValueError(f"a bin of {length} bytes is too large for msgpack")


def encode_message_parts(message: Message) -> tuple[bytes, bytes]:
    """``encode_message(message)`` in two parts whose concatenation is exactly those bytes.

    For a ``SnapshotChunk`` the second part is its ``chunk`` itself, not a
    copy: the chunk is the message's last field, so the first part ends with
    its bin header. A transport writes the two buffers one after the other
    instead of copying up to a MiB into msgpack's buffer, out of it, and
    into a frame (three copies of fresh memory per chunk, which on a busy VM
    cost milliseconds each). Any other message: ``(encode_message(m), b"")``.
    """
    if type(message) is not SnapshotChunk:
        return encode_message(message), b""
    chunk = message.chunk
    if type(chunk) is not bytes:
        raise ValueError(f"cannot encode SnapshotChunk: chunk is a {type(chunk).__name__}")
    head = encode_message(replace(message, chunk=b""))
    assert head.endswith(_EMPTY_BIN)
    return head[: -len(_EMPTY_BIN)] + _bin_header(len(chunk)), chunk


# ---------------------------------------------------------------------------------- decoding


def _str(x: object, what: str) -> str:
    if type(x) is not str:
        raise DecodeError(f"{what}: expected a str, got {type(x).__name__}")
    return x


def _uint(x: object, what: str, *, low: int = 0) -> int:
    if type(x) is not int:
        raise DecodeError(f"{what}: expected an int, got {type(x).__name__}")
    if x < low:
        bound = "a non-negative int" if low == 0 else f"an int >= {low}"
        raise DecodeError(f"{what}: expected {bound}, got {x}")
    return x


def _bool(x: object, what: str) -> bool:
    if type(x) is not bool:
        raise DecodeError(f"{what}: expected a bool, got {type(x).__name__}")
    return x


def _bytes(x: object, what: str) -> bytes:
    if type(x) is not bytes:
        raise DecodeError(f"{what}: expected bytes (msgpack bin), got {type(x).__name__}")
    return x


def _array(x: object, what: str, arity: int | None = None) -> list[Any]:
    if type(x) is not list:
        raise DecodeError(f"{what}: expected an array, got {type(x).__name__}")
    if arity is not None and len(x) != arity:
        raise DecodeError(f"{what}: expected {arity} elements, got {len(x)}")
    return x


def _read_ballot(x: object, what: str) -> Ballot:
    round_, node_id = _array(x, what, 2)
    return Ballot(_uint(round_, f"{what}.round"), _str(node_id, f"{what}.node_id"))


def _read_batch(x: object, what: str) -> Batch:
    out = []
    for i, item in enumerate(_array(x, what)):
        # Every proposal of every batch passes here: the well-formed ones
        # are checked inline, and only a malformed one pays for naming its
        # place in the error (the same checks as below).
        if type(item) is list and len(item) == 3:
            origin, seq, payload = item
            if type(origin) is str and type(seq) is int and seq >= 0 and type(payload) is bytes:
                out.append(new_proposal(origin, seq, payload))
                continue
        where = f"{what}[{i}]"
        origin, seq, payload = _array(item, where, 3)
        out.append(
            new_proposal(
                _str(origin, f"{where}.origin"),
                _uint(seq, f"{where}.seq"),
                _bytes(payload, f"{where}.payload"),
            )
        )
    return tuple(out)


def _read_promise_entries(x: object, what: str) -> tuple[PromiseEntry, ...]:
    out = []
    for i, item in enumerate(_array(x, what)):
        where = f"{what}[{i}]"
        slot, ballot, value, decided = _array(item, where, 4)
        out.append(
            PromiseEntry(
                _uint(slot, f"{where}.slot"),
                _read_ballot(ballot, f"{where}.ballot"),
                _read_batch(value, f"{where}.value"),
                _bool(decided, f"{where}.decided"),
            )
        )
    return tuple(out)


def _read_decided_entries(x: object, what: str) -> tuple[DecidedEntry, ...]:
    out = []
    for i, item in enumerate(_array(x, what)):
        where = f"{what}[{i}]"
        slot, value = _array(item, where, 2)
        out.append(DecidedEntry(_uint(slot, f"{where}.slot"), _read_batch(value, f"{where}.value")))
    return tuple(out)


def _prepare(i: str, s: str, f: list[Any]) -> Message:
    ballot, slot = f
    return Prepare(i, s, _read_ballot(ballot, "Prepare.ballot"), _uint(slot, "Prepare.slot"))


def _promise(i: str, s: str, f: list[Any]) -> Message:
    ballot, decided_through, entries = f
    return Promise(
        i,
        s,
        _read_ballot(ballot, "Promise.ballot"),
        # -1: nothing decided (a single-decree instance's one slot is 0).
        _uint(decided_through, "Promise.decided_through", low=-1),
        _read_promise_entries(entries, "Promise.entries"),
    )


def _nack(i: str, s: str, f: list[Any]) -> Message:
    ballot, promised = f
    return Nack(i, s, _read_ballot(ballot, "Nack.ballot"), _read_ballot(promised, "Nack.promised"))


def _accept(i: str, s: str, f: list[Any]) -> Message:
    ballot, slot, value, commit = f
    return Accept(
        i,
        s,
        _read_ballot(ballot, "Accept.ballot"),
        _uint(slot, "Accept.slot"),
        _read_batch(value, "Accept.value"),
        _uint(commit, "Accept.commit", low=-1),  # -1 in a single-decree Accept
    )


def _accepted(i: str, s: str, f: list[Any]) -> Message:
    ballot, slot, value = f
    return Accepted(
        i,
        s,
        _read_ballot(ballot, "Accepted.ballot"),
        _uint(slot, "Accepted.slot"),
        None if value is None else _read_batch(value, "Accepted.value"),
    )


def _heartbeat(i: str, s: str, f: list[Any]) -> Message:
    ballot, commit = f
    return Heartbeat(
        i, s, _read_ballot(ballot, "Heartbeat.ballot"), _uint(commit, "Heartbeat.commit")
    )


def _heartbeat_reply(i: str, s: str, f: list[Any]) -> Message:
    ballot, decided_through = f
    return HeartbeatReply(
        i,
        s,
        _read_ballot(ballot, "HeartbeatReply.ballot"),
        _uint(decided_through, "HeartbeatReply.decided_through"),
    )


def _forward(i: str, s: str, f: list[Any]) -> Message:
    (proposals,) = f
    return Forward(i, s, _read_batch(proposals, "Forward.proposals"))


def _catch_up(i: str, s: str, f: list[Any]) -> Message:
    (slot,) = f
    return CatchUp(i, s, _uint(slot, "CatchUp.slot"))


def _decided(i: str, s: str, f: list[Any]) -> Message:
    (entries,) = f
    return Decided(i, s, _read_decided_entries(entries, "Decided.entries"))


def _snapshot_chunk(i: str, s: str, f: list[Any]) -> Message:
    slot, meta, size, offset, chunk = f
    m = SnapshotChunk(
        i,
        s,
        _uint(slot, "SnapshotChunk.slot"),
        _bytes(meta, "SnapshotChunk.meta"),
        _uint(size, "SnapshotChunk.size"),
        _uint(offset, "SnapshotChunk.offset"),
        _bytes(chunk, "SnapshotChunk.chunk"),
    )
    if m.offset + len(m.chunk) > m.size:
        raise DecodeError(
            f"SnapshotChunk: bytes {m.offset}..{m.offset + len(m.chunk)} "
            f"lie outside a snapshot of {m.size} bytes"
        )
    return m


def _pre_vote(i: str, s: str, f: list[Any]) -> Message:
    ballot, decided_through = f
    return PreVote(
        i,
        s,
        _read_ballot(ballot, "PreVote.ballot"),
        _uint(decided_through, "PreVote.decided_through"),
    )


def _pre_vote_reply(i: str, s: str, f: list[Any]) -> Message:
    ballot, granted, promised = f
    return PreVoteReply(
        i,
        s,
        _read_ballot(ballot, "PreVoteReply.ballot"),
        _bool(granted, "PreVoteReply.granted"),
        _read_ballot(promised, "PreVoteReply.promised"),
    )


def _read_probe(i: str, s: str, f: list[Any]) -> Message:
    ballot, round_, commit = f
    return ReadProbe(
        i,
        s,
        _read_ballot(ballot, "ReadProbe.ballot"),
        _uint(round_, "ReadProbe.round"),
        _uint(commit, "ReadProbe.commit"),
    )


def _read_probe_reply(i: str, s: str, f: list[Any]) -> Message:
    ballot, round_, *guard = f
    return ReadProbeReply(
        i,
        s,
        _read_ballot(ballot, "ReadProbeReply.ballot"),
        _uint(round_, "ReadProbeReply.round"),
        _uint(guard[0], "ReadProbeReply.guard_ms", low=1) if guard else 0,
    )


def _read_index_ask(i: str, s: str, f: list[Any]) -> Message:
    (ask,) = f
    return ReadIndexAsk(i, s, _uint(ask, "ReadIndexAsk.ask"))


def _read_index_grant(i: str, s: str, f: list[Any]) -> Message:
    ask, index = f
    return ReadIndexGrant(
        i, s, _uint(ask, "ReadIndexGrant.ask"), _uint(index, "ReadIndexGrant.index")
    )


#: tag -> (name, number of fields after instance and sender, reader)
_READERS: dict[int, tuple[str, int, Callable[[str, str, list[Any]], Message]]] = {
    TAG_PREPARE: ("Prepare", 2, _prepare),
    TAG_PROMISE: ("Promise", 3, _promise),
    TAG_NACK: ("Nack", 2, _nack),
    TAG_ACCEPT: ("Accept", 4, _accept),
    TAG_ACCEPTED: ("Accepted", 3, _accepted),
    TAG_HEARTBEAT: ("Heartbeat", 2, _heartbeat),
    TAG_HEARTBEAT_REPLY: ("HeartbeatReply", 2, _heartbeat_reply),
    TAG_FORWARD: ("Forward", 1, _forward),
    TAG_CATCH_UP: ("CatchUp", 1, _catch_up),
    TAG_DECIDED: ("Decided", 1, _decided),
    TAG_SNAPSHOT_CHUNK: ("SnapshotChunk", 5, _snapshot_chunk),
    TAG_PRE_VOTE: ("PreVote", 2, _pre_vote),
    TAG_PRE_VOTE_REPLY: ("PreVoteReply", 3, _pre_vote_reply),
    TAG_READ_PROBE: ("ReadProbe", 3, _read_probe),
    TAG_READ_PROBE_REPLY: ("ReadProbeReply", 2, _read_probe_reply),
    TAG_READ_INDEX_ASK: ("ReadIndexAsk", 1, _read_index_ask),
    TAG_READ_INDEX_GRANT: ("ReadIndexGrant", 2, _read_index_grant),
}


#: Tags whose message may carry one more field, last (``ReadProbeReply.guard_ms``).
_OPTIONAL_LAST = frozenset({TAG_READ_PROBE_REPLY})


def _unpack(data: bytes | bytearray | memoryview) -> object:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    size = len(data)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            # Nothing can be longer than the input itself: a header claiming
            # more fails before anything is allocated for it.
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises several types (ValueError, StackError, ...)
        raise DecodeError(f"malformed msgpack ({type(e).__name__}: {e})") from e


def decode_message(data: bytes | bytearray | memoryview) -> Message:
    """The message ``data`` encodes; ``DecodeError`` for anything that is not exactly one."""
    top = _unpack(data)
    if type(top) is not list or not top:
        raise DecodeError(f"a message is a non-empty array, got {type(top).__name__}")
    tag = top[0]
    if type(tag) is not int:
        raise DecodeError(f"message tag: expected an int, got {type(tag).__name__}")
    reader = _READERS.get(tag)
    if reader is None:
        raise DecodeError(f"unknown message tag {tag}")
    name, arity, read = reader
    if len(top) != 3 + arity and not (tag in _OPTIONAL_LAST and len(top) == 4 + arity):
        raise DecodeError(f"{name}: expected {3 + arity} elements, got {len(top)}")
    instance = _str(top[1], f"{name}.instance")
    sender = _str(top[2], f"{name}.sender")
    return read(instance, sender, top[3:])
