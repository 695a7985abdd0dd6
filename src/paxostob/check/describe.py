"""Messages as one short line, in the format of the data-driven scenarios.

``describe(env)`` is ``tests/core/scenario.py``'s ``show``, e.g.
``a->b Accept 1.a #2 ['x'] commit=1``: a counterexample's message names are
the ones a scenario script's ``deliver-one`` takes (a test keeps the two
equal).
"""

from __future__ import annotations

from ..core.membership import CHANGE_SEQ, decode_change
from ..core.messages import (
    Accept,
    Accepted,
    CatchUp,
    Decided,
    Envelope,
    Forward,
    Heartbeat,
    HeartbeatReply,
    Nack,
    Prepare,
    PreVote,
    PreVoteReply,
    Promise,
)
from ..core.types import CLOCK_ORIGIN, Batch, Proposal

__all__ = ["describe"]


def _payload(p: Proposal) -> str:
    if p.id.origin == CLOCK_ORIGIN and p.id.seq == CHANGE_SEQ:
        c = decode_change(p.payload)
        return f"change {c.op} {c.node_id}"
    return p.payload.decode(errors="replace")


def _payloads(batch: Batch) -> list[str]:
    return [_payload(p) for p in batch]


def describe(env: Envelope) -> str:
    m = env.message
    head = f"{m.sender}->{env.dst} {type(m).__name__}"
    if m.instance != "tob":
        head += f" [{m.instance}]"
    if isinstance(m, Prepare):
        return f"{head} {m.ballot} from #{m.slot}"
    if isinstance(m, Promise):
        reported = [(e.slot, str(e.ballot), _payloads(e.value), e.decided) for e in m.entries]
        return f"{head} {m.ballot} decided_through={m.decided_through} {reported}"
    if isinstance(m, Nack):
        return f"{head} {m.ballot} < promised {m.promised}"
    if isinstance(m, Accept):
        return f"{head} {m.ballot} #{m.slot} {_payloads(m.value)} commit={m.commit}"
    if isinstance(m, Accepted):
        return f"{head} {m.ballot} #{m.slot}"
    if isinstance(m, Heartbeat):
        return f"{head} {m.ballot} commit={m.commit}"
    if isinstance(m, HeartbeatReply):
        return f"{head} {m.ballot} decided_through={m.decided_through}"
    if isinstance(m, Forward):
        return f"{head} {[p.payload.decode(errors='replace') for p in m.proposals]}"
    if isinstance(m, CatchUp):
        return f"{head} from #{m.slot}"
    if isinstance(m, PreVote):
        return f"{head} {m.ballot} decided_through={m.decided_through}"
    if isinstance(m, PreVoteReply):
        return f"{head} {m.ballot} {'yes' if m.granted else 'no'} promised={m.promised}"
    if isinstance(m, Decided):
        slots = [e.slot for e in m.entries]
        return f"{head} #{slots[0]}..#{slots[-1]}" if slots else f"{head} (none)"
    return f"{head} {m!r}"
