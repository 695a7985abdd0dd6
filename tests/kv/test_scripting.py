"""``EVAL`` in the state machine: bounded, sandboxed, and the same on every replica."""

from __future__ import annotations

import pytest

from paxostob.kv import scripting
from paxostob.kv.commands import Entry, Op, is_read_only
from paxostob.kv.machine import KvMachine
from paxostob.kv.replies import OK, Error, Reply

STEPS = "ERR script ran past its step budget (script_steps_max)"
MEMORY = "ERR script ran out of memory (script_memory_max)"


def ev(m: KvMachine, script: str, *args: str | int) -> Reply:
    [reply] = m.apply(Entry(1, (Op.of("eval", script, *args),)))
    return reply


@pytest.fixture(autouse=True)
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # A small step budget keeps a runaway script's test fast; the rule is the same.
    monkeypatch.setattr(scripting, "SCRIPT_STEPS_MAX", 200_000)


@pytest.mark.parametrize(
    "loop",
    [
        "while true do end",
        # The script catches the budget's error: the budget fires again at once.
        "while true do pcall(function() while true do end end) end",
        "local n = 0 while true do n = n + 1 redis.call('set', 'x', n) end",
    ],
)
def test_a_runaway_script_fails_alone_and_keeps_its_writes(loop: str) -> None:
    m = KvMachine()
    replies = m.apply(
        Entry(
            1,
            (
                Op.of("eval", "redis.call('set', 'before', 'yes') " + loop, 0),
                Op.of("set", "after", "ok"),
            ),
        )
    )
    assert replies == [Error(STEPS), OK]
    assert m.read([[b"get", b"before"], [b"get", b"after"]]) == [b"yes", b"ok"]


def test_a_script_that_allocates_without_bound_fails_alone() -> None:
    m = KvMachine()
    assert ev(m, "local s = 'x' while true do s = s .. s end", 0) == Error(MEMORY)
    assert ev(m, "return 1", 0) == 1


@pytest.mark.parametrize(
    "script",
    [
        "return os.time()",
        "return io.open('/etc/passwd')",
        "return debug.getinfo(1)",
        "return loadstring('return 1')()",
        "return math.random()",
        "return coroutine.create(print)",
        "return require('os')",
        "return python.eval('1')",
    ],
)
def test_nothing_outside_the_state_is_reachable(script: str) -> None:
    reply = ev(KvMachine(), script, 0)
    assert isinstance(reply, Error) and "nil value" in reply.text, reply


def test_python_attributes_are_not_reachable() -> None:
    reply = ev(KvMachine(), "return redis.call.__class__", 0)
    assert isinstance(reply, Error)


def test_tostring_of_a_table_names_no_address_and_globals_do_not_survive() -> None:
    m = KvMachine()
    assert ev(m, "return {tostring({}), tostring(redis.call)}", 0) == [b"table", b"function"]
    assert ev(m, "leaked = 5 return leaked", 0) == 5
    assert ev(m, "return leaked", 0) is None


def test_replicas_running_the_same_scripts_agree() -> None:
    scripts = [
        ("for i = 1, 50 do redis.call('rpush', KEYS[1], i * 3 % 7) end return 1", 1, "l"),
        (
            "local t = {} for _, v in ipairs(redis.call('lrange', KEYS[1], 0, -1)) do "
            "t[v] = (t[v] or 0) + 1 end local out = {} for k, n in pairs(t) do "
            "out[#out + 1] = k .. '=' .. n end return out",
            1,
            "l",
        ),
        ("return redis.call('incrbyfloat', KEYS[1], ARGV[1])", 1, "f", "1.25"),
        ("return redis.pcall('incr', KEYS[1])", 1, "l"),
    ]
    a, b = KvMachine(), KvMachine()
    for script, *args in scripts:
        assert ev(a, str(script), *args) == ev(b, str(script), *args)
    assert a.snapshot() == b.snapshot()


def test_evalsha_in_the_log_is_noscript_and_eval_is_a_write() -> None:
    m = KvMachine()
    assert ev(m, "return 1", 0) == 1
    [reply] = m.apply(Entry(1, (Op.of("evalsha", scripting.sha1hex(b"return 1"), 0),)))
    assert reply == Error("NOSCRIPT No matching script. Please use EVAL.")
    assert not is_read_only(Entry(1, (Op.of("eval", "return 1", 0),)))


def test_compile_errors_are_reported_like_redis() -> None:
    assert scripting.compile_error(b"return 1") is None
    assert scripting.compile_error(b"return +") == (
        "ERR Error compiling script (new function): user_script:1: unexpected symbol near '+'"
    )


def test_a_script_that_caught_its_budget_error_runs_nothing_more() -> None:
    m = KvMachine()
    script = "pcall(function() while true do end end) redis.call('set', 'escaped', '1')"
    assert ev(m, script, 0) == Error(STEPS)
    assert m.read([[b"exists", b"escaped"]]) == [0]
