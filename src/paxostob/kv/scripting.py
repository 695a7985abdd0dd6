"""Lua scripts (``EVAL``) run inside the state machine: every replica runs the same script
on the same state, so a script is one more deterministic command.

Theory of operation: the script's text travels in the log entry (``EVAL
script numkeys key ... arg ...``; the RESP server turns ``EVALSHA`` into
``EVAL`` with the text from its own script cache), so replicas need no
script cache, and a replica restored from a snapshot runs what the others
ran. Each script runs in a fresh Lua 5.1 interpreter (``lupa.lua51``, the
Lua of Redis) that lives for that script only: no global, loaded function or
random state survives it, and the interpreter costs about 0.1 ms.

Determinism: what a script may read is its arguments, ``redis.call`` and
``redis.pcall`` (commands of this machine, at this entry's time) and Lua's
pure libraries: ``os``, ``io``, ``debug``, ``coroutine``, ``load*``,
``dofile``, ``require``, ``collectgarbage``, ``print`` and
``math.random``/``math.randomseed`` are removed; ``tostring`` of a table or a
function is its type name (Lua would print an address). What remains is a
function of the script, its arguments and the state, but for one thing a
script must not do: iterate (``pairs``/``next``) a table keyed by tables or
functions, whose order follows memory addresses.

Bounds, the same on every replica so a script that passes them fails alike
everywhere: ``SCRIPT_STEPS_MAX`` Lua instructions (a count hook, not a
clock: a timeout would fire on a slow replica only) and
``SCRIPT_MEMORY_MAX`` bytes of Lua memory. A script past a bound fails with
an error reply and its writes so far stay (Redis keeps a failed script's
writes too); the machine goes on with the next op. A single long C call (a
pathological ``string.find`` pattern) is one instruction: the step bound does
not cut it.

Replies and conversions are Redis': a Lua number becomes an integer
(truncated), a string a bulk string, a table an array (up to its first
nil), ``{ok=...}`` a status, ``{err=...}`` an error, ``true`` 1, ``false``
and nil a null; a command's reply reaches Lua as Redis converts it (a null
is ``false``, a status ``{ok=...}``, an error ``{err=...}`` from
``redis.pcall`` and a raised error from ``redis.call``).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from typing import Any

import lupa.lua51 as lua  # type: ignore[import-untyped]

from .keyspace import INT64_MAX, INT64_MIN, Failed, Keyspace, parse_int
from .replies import Error, Reply, SimpleString
from .table import NO_KEYS, Command, command

__all__ = [
    "ARITY_FROM_SCRIPT",
    "NOT_ALLOWED_FROM_SCRIPT",
    "SCRIPT_MEMORY_MAX",
    "SCRIPT_STEPS_MAX",
    "TABLE",
    "UNKNOWN_FROM_SCRIPT",
    "compile_error",
    "sha1hex",
]

#: Lua instructions one script may run. Every replica runs every script while
#: applying the log, so a script holds every node's apply loop: ten million
#: instructions took 0.02 s (an empty loop) to 1.1 s (a loop of ``redis.call``
#: SETs) on one core of a shared 2-core AMD EPYC VM (December 2026), under
#: Redis's ``busy-reply-threshold`` (5 s), as there is no SCRIPT KILL here.
SCRIPT_STEPS_MAX = 10_000_000
#: Bytes of Lua memory one script may allocate (its tables and strings).
#: Redis does not bound it; 64 MiB is a few times what a script handling
#: Redis-sized values needs, and keeps a runaway script from exhausting a node.
SCRIPT_MEMORY_MAX = 64 << 20
#: Elements of a script's reply converted, at most (a table may refer to
#: itself: a bounded walk), and their nesting depth.
REPLY_ELEMENTS_MAX = 1 << 20
REPLY_DEPTH_MAX = 100

NOT_ALLOWED_FROM_SCRIPT = Error("ERR This Redis command is not allowed from script")
UNKNOWN_FROM_SCRIPT = Error("ERR Unknown Redis command called from script")
ARITY_FROM_SCRIPT = Error("ERR Wrong number of args calling Redis command from script")
_NO_ARGS = Error("ERR Please specify at least one argument for this redis lib call")
_BAD_ARG = Error("ERR Lua redis lib command arguments must be strings or integers")
_STEPS = "ERR script ran past its step budget (script_steps_max)"
_MEMORY = "ERR script ran out of memory (script_memory_max)"

# Runs in each fresh interpreter: takes the tools it needs as locals, builds the
# ``redis`` table, removes what is not deterministic, then runs the script.
_SANDBOX = """
local call_py, exhausted, keys, argv, source, steps = ...
local sethook, loadstring, setfenv, pcall, error = debug.sethook, loadstring, setfenv, pcall, error
local type, tostring, sha1 = type, tostring, sha1hex
local getinfo = debug.getinfo
local function raise_err(reply)
  if type(reply) == "table" and type(reply.err) == "string" then
    local caller = getinfo(3, "l")
    error({err = reply.err, line = caller and caller.currentline or -1}, 0)
  end
  return reply
end
redis = {
  call = function(...) local r = raise_err(call_py(...)); return r end,  -- no tail call:
  -- raise_err reads the script's line two frames up
  pcall = function(...) return call_py(...) end,
  error_reply = function(e) return {err = e} end,
  status_reply = function(s) return {ok = s} end,
  sha1hex = sha1,
  log = function() end,
  setresp = function() end,
  set_repl = function() end,
  replicate_commands = function() return true end,
  breakpoint = function() return false end,
  debug = function() end,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REPL_NONE = 0, REPL_AOF = 1, REPL_SLAVE = 2, REPL_REPLICA = 2, REPL_ALL = 3,
}
_G.tostring = function(v)
  local t = type(v)
  if t == "table" or t == "function" or t == "userdata" or t == "thread" then return t end
  return tostring(v)
end
for _, name in ipairs({"os", "io", "debug", "coroutine", "package", "require", "module",
    "dofile", "loadfile", "load", "loadstring", "collectgarbage", "gcinfo", "newproxy",
    "getfenv", "setfenv", "print", "python", "sha1hex"}) do
  _G[name] = nil
end
math.random, math.randomseed = nil, nil
KEYS, ARGV = keys, argv
local fn, err = loadstring(source, "@user_script")
if not fn then return false, "compile", err end
local function every_step() exhausted() end
sethook(function() sethook(every_step, "", 1); exhausted() end, "", steps)
local ok, result = pcall(fn)
return ok, "run", result
"""


_LINE = re.compile(r"user_script:(\d+): ")


def _where(sha: str, line: object) -> str:
    """Redis' suffix of a script's error: which script, and the line when known."""
    if isinstance(line, int | float) and line > 0:
        return f" script: {sha}, on @user_script:{int(line)}."
    return f" script: {sha}"


def sha1hex(script: bytes) -> bytes:
    """The script's name for ``EVALSHA`` (lower-case hex SHA-1, as Redis)."""
    return hashlib.sha1(script, usedforsecurity=False).hexdigest().encode("ascii")


def _deny_attributes(obj: object, name: object, setting: bool) -> object:
    # A script never reaches a Python object's attributes (no escape from the sandbox).
    raise AttributeError("not accessible from Lua")


def _runtime() -> Any:
    return lua.LuaRuntime(
        encoding=None,
        register_eval=False,
        register_builtins=False,
        unpack_returned_tuples=True,
        attribute_filter=_deny_attributes,
        max_memory=SCRIPT_MEMORY_MAX,
    )


def compile_error(script: bytes) -> str | None:
    """Redis' error text if ``script`` does not compile (for ``SCRIPT LOAD``); else None."""
    rt = _runtime()
    loader = rt.eval("function(s) local f, e = loadstring(s, '@user_script'); return e end")
    try:
        err = loader(script)
    except lua.LuaError as e:  # out of memory while compiling
        return f"ERR Error compiling script (new function): {e}"
    if err is None:
        return None
    return f"ERR Error compiling script (new function): {_text(err)}"


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _arg(value: object) -> bytes:
    """A ``redis.call`` argument as Redis takes it: a string, or a number as text."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Failed(_BAD_ARG)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e17:
            return str(int(value)).encode()
        return b"%.17g" % value
    return str(value).encode()


class _Exhausted(Exception):
    """Raised into Lua at every instruction once a script used its step budget."""


class _Script:
    """One run of one script: the bridge between Lua and the machine's commands."""

    def __init__(self, ks: Keyspace, rt: Any) -> None:
        self.ks = ks
        self.rt = rt
        self.exhausted = False

    def call(self, *raw: object) -> object:
        execute = self.ks.execute_from_script
        assert execute is not None, "KvMachine sets it"
        if not raw:
            return self.to_lua(_NO_ARGS)
        try:
            args = tuple(_arg(a) for a in raw)
        except Failed as failed:
            return self.to_lua(failed.reply)
        return self.to_lua(execute(args))

    def on_exhausted(self) -> None:
        self.exhausted = True
        raise _Exhausted(_STEPS)

    def to_lua(self, reply: Reply) -> object:
        """A command's reply as Redis gives it to Lua."""
        if reply is None:
            return False
        if isinstance(reply, bytes | int):
            return reply
        if isinstance(reply, SimpleString):
            return self._table({b"ok": reply.text.encode()})
        if isinstance(reply, Error):
            return self._table({b"err": reply.text.encode()})
        if isinstance(reply, dict):
            flat: list[Reply] = []
            for k, v in reply.items():
                flat += (k, v)
            reply = flat
        t = self.rt.table()
        for i, item in enumerate(reply, 1):
            t[i] = self.to_lua(item)
        return t

    def _table(self, fields: dict[bytes, bytes]) -> object:
        t = self.rt.table()
        for k, v in fields.items():
            t[k] = v
        return t


def _to_reply(value: object, depth: int, budget: list[int]) -> Reply:
    """A script's result as Redis converts it to a reply."""
    budget[0] -= 1
    if budget[0] < 0 or depth > REPLY_DEPTH_MAX:
        raise Failed(Error("ERR reached lua stack limit"))
    if value is None or value is False:
        return None
    if value is True:
        return 1
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else INT64_MIN
    if isinstance(value, float):
        # C's (long long) cast on x86-64: out of range (and NaN) gives LLONG_MIN.
        if not math.isfinite(value) or not INT64_MIN <= value < 2.0**63:
            return INT64_MIN
        return int(value)
    if lua.lua_type(value) == "table":
        err = value[b"err"]  # type: ignore[index]
        if isinstance(err, bytes):
            return Error(_text(err))
        ok = value[b"ok"]  # type: ignore[index]
        if isinstance(ok, bytes):
            return SimpleString(_text(ok).replace("\r", " ").replace("\n", " "))
        out: list[Reply] = []
        i = 1
        while True:
            item = value[i]  # type: ignore[index]
            if item is None:
                return out
            out.append(_to_reply(item, depth + 1, budget))
            i += 1
    return None  # a function or userdata: Redis replies nil


def run(ks: Keyspace, script: bytes, keys: list[bytes], argv: list[bytes]) -> Reply:
    """Run ``script`` on ``ks`` with ``KEYS`` and ``ARGV``; its reply or its error."""
    rt = _runtime()
    run_ = _Script(ks, rt)
    g = rt.globals()
    g.sha1hex = lambda s: sha1hex(_arg(s))
    setup: Callable[..., Any] = rt.execute(f"return function(...) {_SANDBOX} end")
    sha = sha1hex(script).decode()
    try:
        ok, stage, result = setup(
            run_.call,
            run_.on_exhausted,
            rt.table_from(keys),
            rt.table_from(argv),
            script,
            SCRIPT_STEPS_MAX,
        )
    except lua.LuaMemoryError:
        return Error(_MEMORY)
    except (lua.LuaError, _Exhausted) as e:
        if run_.exhausted:
            return Error(_STEPS)
        return Error(f"ERR {e} script: {sha}")
    if run_.exhausted:
        return Error(_STEPS)  # caught by the script's pcall, but the script is over
    if not ok:
        if stage == b"compile":
            return Error(f"ERR Error compiling script (new function): {_text(result)}")
        if lua.lua_type(result) == "table" and isinstance(result[b"err"], bytes):
            line = result[b"line"]
            return Error(f"{_text(result[b'err'])}{_where(sha, line)}")
        if isinstance(result, bytes) and result.startswith(b"not enough memory"):
            return Error(_MEMORY)
        message = _text(result) if result is not None else "error"
        at = _LINE.match(message)
        return Error(f"ERR {message}{_where(sha, int(at[1]) if at else None)}")
    try:
        return _to_reply(result, 0, [REPLY_ELEMENTS_MAX])
    except Failed as failed:
        return failed.reply


def _numkeys(args: tuple[bytes, ...]) -> int:
    numkeys = parse_int(args[2])
    if numkeys > len(args) - 3:
        raise Failed(Error("ERR Number of keys can't be greater than number of args"))
    if numkeys < 0:
        raise Failed(Error("ERR Number of keys can't be negative"))
    return numkeys


def eval_(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    numkeys = _numkeys(args)
    return run(ks, args[1], list(args[3 : 3 + numkeys]), list(args[3 + numkeys :]))


def evalsha(ks: Keyspace, args: tuple[bytes, ...]) -> Reply:
    # The RESP server replaces EVALSHA by EVAL when it knows the script; one
    # that reaches the log named a script the proposing node did not know.
    _numkeys(args)
    return Error("NOSCRIPT No matching script. Please use EVAL.")


TABLE: dict[bytes, Command] = dict(
    [
        command("eval", -3, "noscript skip_monitor", NO_KEYS, "@slow @scripting", eval_),
        command(
            "evalsha",
            -3,
            "noscript skip_monitor",
            NO_KEYS,
            "@slow @scripting",
            evalsha,
        ),
    ]
)
