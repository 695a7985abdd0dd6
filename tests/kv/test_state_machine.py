"""KvStateMachine: the runtime's StateMachine over KvMachine; apply returns the replies."""

from __future__ import annotations

from paxostob.core.types import Delivery
from paxostob.kv.commands import Entry, Op, encode_entry
from paxostob.kv.replies import OK, Error
from paxostob.kv.state_machine import KvStateMachine
from paxostob.node.tob import StateMachine

from .util import T0_MS, op


def delivery(slot: int, *commands: str, now_ms: int = T0_MS) -> Delivery:
    return Delivery(slot, "n1", encode_entry(Entry(now_ms, tuple(op(c) for c in commands))))


def test_it_is_the_runtimes_state_machine() -> None:
    sm: StateMachine = KvStateMachine()  # checked by mypy: the protocol is structural
    assert sm is not None


def test_apply_returns_each_entrys_replies_whoever_proposed_it() -> None:
    sm = KvStateMachine()
    assert sm.apply(delivery(1, "SET k v")) == [OK]
    assert sm.apply(delivery(2, "GET k", "INCR k")) == [
        b"v",
        Error("ERR value is not an integer or out of range"),
    ]
    other = Entry(T0_MS, (op("SET k other"),))
    assert sm.apply(Delivery(3, "n2", encode_entry(other))) == [OK]
    assert sm.read([[b"GET", b"k"]]) == [b"other"]


def test_a_malformed_payload_is_an_error_reply_on_every_node() -> None:
    nodes = [KvStateMachine(), KvStateMachine()]
    for sm in nodes:
        [reply] = sm.apply(Delivery(7, "n2", b"\x09garbage"))
        assert isinstance(reply, Error) and reply.text.startswith("ERR malformed command entry")
        assert sm.apply(delivery(8, "SET k v")) == [OK]
    assert nodes[0].snapshot() == nodes[1].snapshot()


def test_snapshot_and_restore() -> None:
    sm = KvStateMachine()
    sm.apply(delivery(1, "SET k v EX 100"))
    other = KvStateMachine()
    other.apply(delivery(1, "SET stale x"))
    other.restore(sm.snapshot())
    assert other.snapshot() == sm.snapshot()
    assert other.apply(delivery(2, "TTL k", "GET stale")) == [100, None]
    assert other.machine.apply(Entry(T0_MS, (Op.of("GET", "k"),))) == [b"v"]


DAY_MS = 86_400_000


def test_an_entry_is_applied_at_the_logs_clock_never_at_its_proposers() -> None:
    """A node whose clock is two days ahead proposes a write and a read barrier: no key expires."""
    sm = KvStateMachine()
    sm.apply(Delivery(1, "n1", _entry(T0_MS, "SET k v EX 100"), clock_ms=T0_MS))
    ahead = T0_MS + 2 * DAY_MS
    sm.apply(Delivery(2, "n3", _entry(ahead, "SET other x"), clock_ms=T0_MS + 1_000))
    sm.apply(Delivery(3, "n3", _entry(ahead), clock_ms=T0_MS + 2_000))  # a read barrier
    assert sm.read([[b"GET", b"k"], [b"TTL", b"k"]]) == [b"v", 98]
    assert sm.machine.clock_ms == T0_MS + 2_000


def test_a_delivery_without_a_clock_is_applied_at_its_entrys_time() -> None:
    """A log written before clock stamps replays as it was applied then."""
    sm = KvStateMachine()
    sm.apply(Delivery(1, "n1", _entry(T0_MS, "SET k v PX 500")))
    sm.apply(Delivery(2, "n1", _entry(T0_MS + 400)))
    assert sm.read([[b"PTTL", b"k"]]) == [100]


def _entry(now_ms: int, *commands: str) -> bytes:
    return encode_entry(Entry(now_ms, tuple(op(c) for c in commands)))


def test_publish_is_handed_to_on_publish_in_order_and_changes_no_state() -> None:
    sm = KvStateMachine()
    sm.apply(delivery(1, "SET k v"))
    before = sm.snapshot()
    seen: list[tuple[bytes, bytes]] = []

    def on_publish(channel: bytes, message: bytes) -> int:
        seen.append((channel, message))
        return 7

    sm.on_publish = on_publish
    replies = sm.apply(delivery(2, "PUBLISH ch one", "publish ch two", "PUBLISH ch", "GET k"))
    # The hook's count is the reply; a wrong arity is Redis's error and publishes nothing.
    assert replies == [
        7,
        7,
        Error("ERR wrong number of arguments for 'publish' command"),
        b"v",
    ]
    assert seen == [(b"ch", b"one"), (b"ch", b"two")]
    assert sm.snapshot() == before  # same clock: nothing of the state changed
