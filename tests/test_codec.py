"""codec: every message round-trips; anything else decodes to ``DecodeError`` and nothing else."""

from __future__ import annotations

import typing

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paxostob.codec import (
    TAG_ACCEPT,
    TAG_ACCEPTED,
    TAG_HEARTBEAT,
    TAG_PRE_VOTE,
    TAG_PRE_VOTE_REPLY,
    TAG_PREPARE,
    TAG_READ_PROBE_REPLY,
    TAG_SNAPSHOT_CHUNK,
    decode_message,
    encode_message,
    encode_message_parts,
)
from paxostob.core.messages import (
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
from paxostob.core.types import Ballot, DecidedEntry, Proposal, ProposalId
from paxostob.errors import DecodeError

uints = st.integers(0, 2**64 - 1)
ids = st.text(max_size=12)
ballots = st.builds(Ballot, uints, ids)
proposals = st.builds(Proposal, st.builds(ProposalId, ids, uints), st.binary(max_size=64))
batches = st.lists(proposals, max_size=4).map(tuple)
promise_entries = st.builds(PromiseEntry, uints, ballots, batches, st.booleans())
decided_entries = st.builds(DecidedEntry, uints, batches)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Prepare, ids, ids, ballots, uints),
    st.builds(Promise, ids, ids, ballots, uints, st.lists(promise_entries, max_size=3).map(tuple)),
    st.builds(Nack, ids, ids, ballots, ballots),
    st.builds(Accept, ids, ids, ballots, uints, batches, uints),
    st.builds(Accepted, ids, ids, ballots, uints, st.none() | batches),
    st.builds(Heartbeat, ids, ids, ballots, uints),
    st.builds(HeartbeatReply, ids, ids, ballots, uints),
    st.builds(Forward, ids, ids, batches),
    st.builds(CatchUp, ids, ids, uints),
    st.builds(Decided, ids, ids, st.lists(decided_entries, max_size=3).map(tuple)),
    st.builds(PreVote, ids, ids, ballots, uints),
    st.builds(PreVoteReply, ids, ids, ballots, st.booleans(), ballots),
    st.builds(ReadProbe, ids, ids, ballots, uints, uints),
    st.builds(ReadProbeReply, ids, ids, ballots, uints, uints),
    st.builds(ReadIndexAsk, ids, ids, uints),
    st.builds(ReadIndexGrant, ids, ids, uints, uints),
)


@st.composite
def snapshot_chunks(draw: st.DrawFn) -> SnapshotChunk:
    chunk = draw(st.binary(max_size=64))
    offset = draw(st.integers(0, 2**32))
    size = draw(st.integers(offset + len(chunk), 2**64 - 1))
    return SnapshotChunk(
        draw(ids), draw(ids), draw(uints), draw(st.binary(max_size=16)), size, offset, chunk
    )


messages = messages | snapshot_chunks()

#: Anything msgpack can carry that our decoder accepts structurally (no maps: refused).
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=30,
)

BALLOT = [3, "a"]
BATCH = [["a", 1, b"x"]]


def pack(obj: object) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def check_decodes_or_refuses(data: bytes) -> None:
    """``data`` decodes to a message that round-trips, or is refused with ``DecodeError``."""
    try:
        message = decode_message(data)
    except DecodeError:
        return
    assert decode_message(encode_message(message)) == message


@given(messages)
def test_every_message_round_trips(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


@given(messages)
def test_memoryview_and_bytearray_decode_too(message: Message) -> None:
    data = encode_message(message)
    assert decode_message(memoryview(data)) == decode_message(bytearray(data)) == message


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    check_decodes_or_refuses(data)


@settings(max_examples=500)
@given(st.integers(1, 11), msgpack_values)
def test_arbitrary_msgpack_arrays_decode_or_raise_decode_error(tag: int, rest: object) -> None:
    # A valid tag in front, so the decoder gets past the first check and into the fields.
    fields = rest if isinstance(rest, list) else [rest]
    check_decodes_or_refuses(pack([tag, *fields]))


@given(messages, st.data())
def test_mutated_messages_decode_or_raise_decode_error(
    message: Message, data: st.DataObject
) -> None:
    raw = bytearray(encode_message(message))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] = data.draw(st.integers(0, 255))
    check_decodes_or_refuses(bytes(raw))


@given(messages, st.data())
def test_every_truncation_is_refused(message: Message, data: st.DataObject) -> None:
    raw = encode_message(message)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(DecodeError):
        decode_message(raw[:cut])


@given(messages, st.binary(min_size=1, max_size=8))
def test_trailing_bytes_are_refused(message: Message, tail: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_message(encode_message(message) + tail)


def test_representation_is_compact_and_tagged() -> None:
    prepare = Prepare("tob:x", "a", Ballot(3, "a"), 7)
    assert msgpack.unpackb(encode_message(prepare)) == [TAG_PREPARE, "tob:x", "a", BALLOT, 7]
    accept = Accept("i", "a", Ballot(3, "a"), 5, (Proposal(ProposalId("a", 1), b"x"),), 4)
    assert msgpack.unpackb(encode_message(accept)) == [TAG_ACCEPT, "i", "a", BALLOT, 5, BATCH, 4]


def test_every_message_type_has_its_own_tag() -> None:
    samples: list[Message] = [
        Prepare("i", "a", Ballot(1, "a"), 0),
        Promise("i", "a", Ballot(1, "a"), 0, ()),
        Nack("i", "a", Ballot(1, "a"), Ballot(2, "b")),
        Accept("i", "a", Ballot(1, "a"), 1, (), 0),
        Accepted("i", "a", Ballot(1, "a"), 1, None),
        Heartbeat("i", "a", Ballot(1, "a"), 0),
        HeartbeatReply("i", "a", Ballot(1, "a"), 0),
        Forward("i", "a", ()),
        CatchUp("i", "a", 1),
        Decided("i", "a", ()),
        SnapshotChunk("i", "a", 4, b"meta", 10, 2, b"abc"),
        PreVote("i", "a", Ballot(1, "a"), 0),
        PreVoteReply("i", "a", Ballot(1, "a"), True, Ballot(0, "")),
        ReadProbe("i", "a", Ballot(1, "a"), 1, 0),
        ReadProbeReply("i", "a", Ballot(1, "a"), 1),
        ReadIndexAsk("i", "a", 1),
        ReadIndexGrant("i", "a", 1, 0),
    ]
    assert {type(m) for m in samples} == set(typing.get_args(Message))
    tags = [msgpack.unpackb(encode_message(m))[0] for m in samples]
    assert len(set(tags)) == len(tags)


def test_encode_refuses_what_msgpack_cannot_carry() -> None:
    with pytest.raises(ValueError, match="cannot encode CatchUp"):
        encode_message(CatchUp("i", "a", 2**64))
    with pytest.raises(ValueError, match="cannot encode CatchUp"):
        encode_message(CatchUp("\ud800", "a", 1))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "malformed msgpack"),
        (b"\xc1", "malformed msgpack"),  # the one byte msgpack never uses
        (pack([]), "non-empty array"),
        (pack({"tag": 1}), "malformed msgpack"),  # maps are refused by the unpacker
        (pack(7), "non-empty array"),
        (pack([99, "i", "a", BALLOT, 1]), "unknown message tag 99"),
        (pack(["6", "i", "a", BALLOT, 1]), "tag: expected an int"),
        (pack([True, "i", "a", BALLOT, 1]), "tag: expected an int"),
        (pack([TAG_HEARTBEAT, "i", "a", BALLOT]), "Heartbeat: expected 5 elements, got 4"),
        (pack([TAG_HEARTBEAT, "i", "a", BALLOT, 1, 2]), "Heartbeat: expected 5 elements"),
        (pack([TAG_HEARTBEAT, b"i", "a", BALLOT, 1]), "Heartbeat.instance: expected a str"),
        (pack([TAG_HEARTBEAT, "i", None, BALLOT, 1]), "Heartbeat.sender: expected a str"),
        (pack([TAG_HEARTBEAT, "i", "a", BALLOT, -1]), "Heartbeat.commit: expected a non-neg"),
        (pack([TAG_PRE_VOTE, "i", "a", BALLOT]), "PreVote: expected 5 elements, got 4"),
        (
            pack([TAG_PRE_VOTE_REPLY, "i", "a", BALLOT, 1, BALLOT]),
            "PreVoteReply.granted: expected a bool",
        ),
        (pack([TAG_HEARTBEAT, "i", "a", BALLOT, 1.0]), "Heartbeat.commit: expected an int"),
        (pack([TAG_HEARTBEAT, "i", "a", BALLOT, False]), "Heartbeat.commit: expected an int"),
        (pack([TAG_HEARTBEAT, "i", "a", [3], 1]), "Heartbeat.ballot: expected 2 elements"),
        (pack([TAG_HEARTBEAT, "i", "a", [-3, "a"], 1]), "Heartbeat.ballot.round: expected a"),
        (pack([TAG_HEARTBEAT, "i", "a", [3, 4], 1]), "Heartbeat.ballot.node_id: expected a str"),
        (pack([TAG_PREPARE, "i", "a", BALLOT, -5]), "Prepare.slot: expected a non-negative"),
        (pack([TAG_ACCEPT, "i", "a", BALLOT, 1, [["a", 1, "x"]], 0]), r"value\[0\].payload"),
        (pack([TAG_ACCEPT, "i", "a", BALLOT, 1, [["a", -1, b"x"]], 0]), r"value\[0\].seq"),
        (pack([TAG_ACCEPT, "i", "a", BALLOT, 1, [["a", 1]], 0]), r"value\[0\]: expected 3"),
        (pack([TAG_ACCEPT, "i", "a", BALLOT, 1, [[1, 1, b"x"]], 0]), r"value\[0\].origin"),
        (pack([TAG_ACCEPT, "i", "a", BALLOT, 1, [["a", True, b"x"]], 0]), r"value\[0\].seq: exp"),
        (pack([TAG_ACCEPT, "i", "a", BALLOT, 1, [["a", 1.0, b"x"]], 0]), r"value\[0\].seq: exp"),
        (pack([TAG_ACCEPT, "i", "a", BALLOT, 1, [["a", 1, b"x"], "p"], 0]), r"value\[1\]: exp"),
        (pack([TAG_ACCEPT, "i", "a", BALLOT, 1, b"batch", 0]), "Accept.value: expected an array"),
        (pack([TAG_ACCEPTED, "i", "a", BALLOT, 1, 0]), "Accepted.value: expected an array"),
        (pack([2, "i", "a", BALLOT, 0, [[1, BALLOT, [], 1]]]), r"entries\[0\].decided: exp"),
        (pack([10, "i", "a", [[-1, []]]]), r"Decided.entries\[0\].slot"),
        (pack([TAG_SNAPSHOT_CHUNK, "i", "a", 4, b"m", 10, 8, b"abc"]), "lie outside"),
        (pack([TAG_SNAPSHOT_CHUNK, "i", "a", 4, "m", 10, 0, b"abc"]), "SnapshotChunk.meta"),
        (pack([TAG_READ_PROBE_REPLY, "i", "a", BALLOT, 1, 0]), "guard_ms: expected an int >= 1"),
        (pack([TAG_READ_PROBE_REPLY, "i", "a", BALLOT, 1, 150, 1]), "expected 5 elements, got 7"),
        (pack([TAG_HEARTBEAT, "i", "a", BALLOT, 1]) + b"\x00", "malformed msgpack"),
        (b"\x91" * 100_000 + b"\xc0", "malformed msgpack"),  # too deep to unpack
        (b"\xdd\xff\xff\xff\xff", "malformed msgpack"),  # claims 2**32 - 1 elements
        (b"\xc6\xff\xff\xff\xff", "malformed msgpack"),  # claims a 4 GiB bin
        (b"\xd4\x01\x00", "malformed msgpack"),  # an ext type
        (pack(["\xff"]).replace(b"\xc3\xbf", b"\xff\xfe"), "malformed msgpack"),  # bad UTF-8
    ],
)
def test_malformed_input_says_what_is_wrong(data: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode_message(data)


@pytest.mark.parametrize("data", [None, "text", 7, [1, 2]])
def test_non_bytes_input_is_refused(data: object) -> None:
    with pytest.raises(DecodeError, match="expected bytes"):
        decode_message(data)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 1 << 20])
def test_a_snapshot_chunk_encodes_in_two_parts_without_copying_the_chunk(size: int) -> None:
    chunk = bytes(range(256)) * (size // 256) + bytes(size % 256)
    m = SnapshotChunk("tob", "a", 7, b"meta", 1 << 21, 5, chunk)
    head, tail = encode_message_parts(m)
    assert tail is chunk, "the chunk travels as it is, not copied"
    assert head + tail == encode_message(m)  # the same bytes on the wire
    assert decode_message(head + tail) == m


@given(messages)
def test_encode_message_parts_joins_to_encode_message(message: Message) -> None:
    head, tail = encode_message_parts(message)
    assert head + tail == encode_message(message)
    if not isinstance(message, SnapshotChunk):
        assert tail == b""


def test_a_probe_reply_carries_its_guard_only_when_there_is_one() -> None:
    """A node without leases sends the reply releases before leases read (no guard field)."""
    plain = ReadProbeReply("i", "a", Ballot(1, "a"), 7)
    assert encode_message(plain) == pack([TAG_READ_PROBE_REPLY, "i", "a", [1, "a"], 7])
    guarded = ReadProbeReply("i", "a", Ballot(1, "a"), 7, guard_ms=150)
    assert decode_message(encode_message(guarded)) == guarded
    assert decode_message(pack([TAG_READ_PROBE_REPLY, "i", "a", [1, "a"], 7])) == plain
