"""Replicas that apply the same entries agree: same replies, same snapshots, same future.

Entries are random (hypothesis): commands of the table plus an unknown one,
with arguments drawn from keys, numbers, options and patterns, at times that
move forward or (a proposer with a slow clock) back, and with expiry times in
the range the sequence reaches, so keys expire along the way.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from paxostob.kv.commands import COMMANDS, Entry, Op
from paxostob.kv.machine import KvMachine

NAMES = [*sorted(COMMANDS), b"foo"]
WORDS = [
    *(b"k0", b"k1", b"k2", b"", b"v", b"0", b"1", b"-1", b"2", b"10", b"100", b"1500", b"abc"),
    *(b"NX", b"XX", b"GT", b"LT", b"GET", b"EX", b"PX", b"EXAT", b"PXAT", b"KEEPTTL", b"PERSIST"),
    *(b"*", b"k?", b"[k]*", b"COUNT", b"MATCH", b"TYPE", b"string", b"9223372036854775807"),
    # The aggregate types' members, scores, ranges and options.
    *(b"a", b"b", b"c", b"1.5", b"-inf", b"+inf", b"(1", b"[a", b"(b", b"-", b"+", b"0.1"),
    *(b"LEFT", b"RIGHT", b"WITHSCORES", b"BYSCORE", b"BYLEX", b"REV", b"LIMIT", b"RANK"),
    *(b"CH", b"INCR", b"MAXLEN", b"hash", b"list", b"set", b"zset"),
]
START_MS = 1_000

KEYS = [b"k0", b"k1", b"k2", b"k3", b"k4", b"k5"]
ops = st.one_of(
    st.builds(
        lambda name, args: Op((name, *args)),
        st.sampled_from(NAMES),
        st.lists(st.sampled_from(WORDS), max_size=5),
    ),
    # Aggregates of several members, so pops, draws and ranges have something to take.
    st.builds(
        lambda name, key, members: Op((name, key, *members)),
        st.sampled_from([b"SADD", b"RPUSH", b"LPUSH", b"HSET", b"SPOP", b"SRANDMEMBER"]),
        st.sampled_from(KEYS),
        st.lists(st.sampled_from([b"a", b"b", b"c", b"d", b"1", b"2", b"-1"]), max_size=6),
    ),
    st.builds(
        lambda key, pairs: Op((b"ZADD", key, *(w for pair in pairs for w in pair))),
        st.sampled_from(KEYS),
        st.lists(
            st.tuples(
                st.sampled_from([b"1", b"2", b"-1.5", b"inf"]), st.sampled_from([b"a", b"b"])
            ),
            min_size=1,
            max_size=4,
        ),
    ),
    # Many keys with short lives, so the sweep has work and the snapshot has expired keys.
    st.builds(
        lambda key, ms: Op((b"SET", key, b"v", b"PX", ms)),
        st.sampled_from(KEYS),
        st.sampled_from([b"1", b"50", b"500", b"2000"]),
    ),
)
# (time step in ms, ops): steps may be negative, as proposers' clocks differ.
steps = st.lists(st.tuples(st.integers(-300, 3000), st.lists(ops, max_size=4)), max_size=50)


def entries(plan: list[tuple[int, list[Op]]]) -> list[Entry]:
    now, out = START_MS, []
    for step, entry_ops in plan:
        now = max(0, now + step)
        out.append(Entry(now, tuple(entry_ops)))
    return out


@settings(deadline=None)
@given(steps)
def test_same_entries_same_replies_and_snapshots(plan: list[tuple[int, list[Op]]]) -> None:
    machines = [
        KvMachine(),
        KvMachine(),
        KvMachine(expire_sweep_max=1),
        KvMachine(expire_sweep_max=10**6),
    ]
    for entry in entries(plan):
        replies = [m.apply(entry) for m in machines]
        assert all(r == replies[0] for r in replies)
        snapshots = [m.snapshot() for m in machines]
        assert all(s == snapshots[0] for s in snapshots)


@settings(deadline=None)
@given(steps, st.data())
def test_restore_mid_sequence_gives_the_same_future(
    plan: list[tuple[int, list[Op]]], data: st.DataObject
) -> None:
    log = entries(plan)
    cut = data.draw(st.integers(0, len(log)), label="cut")
    original = KvMachine()
    for entry in log[:cut]:
        original.apply(entry)
    snapshot = original.snapshot()
    restored = KvMachine()
    restored.apply(Entry(START_MS, (Op((b"SET", b"k0", b"stale")),)))  # restore replaces state
    restored.restore(snapshot)
    assert restored.snapshot() == snapshot
    assert restored.clock_ms == original.clock_ms
    for entry in log[cut:]:
        assert restored.apply(entry) == original.apply(entry)
    assert restored.snapshot() == original.snapshot()


churn = st.lists(
    st.tuples(st.sets(st.integers(0, 200), max_size=30), st.sets(st.integers(0, 200), max_size=30)),
    max_size=60,
)


@settings(deadline=None)
@given(st.sets(st.integers(0, 200), max_size=40), churn, st.integers(1, 5))
def test_a_full_scan_returns_every_key_present_throughout(
    stable_ids: set[int], writes: list[tuple[set[int], set[int]]], count: int
) -> None:
    """SCAN, with other keys added and deleted between its calls, finds every stable key."""
    machine = KvMachine()
    stable = {b"s%d" % i for i in stable_ids}
    machine.apply(Entry(0, tuple(Op((b"SET", k, b"v")) for k in sorted(stable))))
    cursor, found = b"0", set()
    for i in range(10_000):
        [reply] = machine.apply(Entry(0, (Op((b"SCAN", cursor, b"COUNT", b"%d" % count)),)))
        assert isinstance(reply, list)
        next_cursor, page = reply
        assert isinstance(next_cursor, bytes) and isinstance(page, list)
        found |= {k for k in page if isinstance(k, bytes)}
        cursor = next_cursor
        if cursor == b"0":
            break
        if i < len(writes):
            added, deleted = writes[i]
            ops = [Op((b"SET", b"o%d" % n, b"v")) for n in sorted(added)]
            ops += [Op((b"DEL", b"o%d" % n)) for n in sorted(deleted)]
            machine.apply(Entry(0, tuple(ops)))
    else:
        raise AssertionError("SCAN did not terminate")
    assert stable <= found
