"""The replicated key-value store's state machine (layer 0: pure, deterministic).

``commands`` (the log entry and the command table), ``machine`` (Redis string
semantics), ``replies`` (the reply model), ``snapshot`` (the state encoding),
``pattern`` (Redis globs) and ``state_machine`` (the runtime adapter). It knows
nothing of Paxos or of the RESP wire format.
"""

from __future__ import annotations

from .commands import COMMANDS, CommandSpec, Entry, Op, decode_entry, encode_entry, is_read_only
from .machine import KvMachine
from .replies import OK, Error, Reply, SimpleString
from .state_machine import KvStateMachine

__all__ = [
    "COMMANDS",
    "OK",
    "CommandSpec",
    "Entry",
    "Error",
    "KvMachine",
    "KvStateMachine",
    "Op",
    "Reply",
    "SimpleString",
    "decode_entry",
    "encode_entry",
    "is_read_only",
]
