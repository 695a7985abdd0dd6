"""``paxostob status``: each node's role, leader, ballot and positions, or "unreachable".

The last line says whether the cluster has a quorum: a majority of the
members answered and name the same leader. Without one the exit status is 1
(a script or a probe can rely on it), with one 0.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from typing import TextIO

from .client import RespClientError, request
from .config import ConfigError, parse_members, resp_address

__all__ = ["configure", "fetch_status", "format_status", "quorum_line", "run"]


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--members",
        required=True,
        metavar="ID=HOST:PORT,...",
        help="the cluster's peer addresses (clients are asked on port + 1000)",
    )
    p.add_argument(
        "--resp-members",
        dest="resp_members",
        metavar="ID=HOST:PORT,...",
        help="client (RESP) addresses, when not peer port + 1000",
    )
    p.add_argument("--password", help="AUTH password, if the nodes require one")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S", help="per node (2 s)")


async def fetch_status(
    host: str, port: int, *, password: str | None = None, timeout_s: float = 2.0
) -> dict[str, str] | str:
    """The node's PAXOS.STATUS as text fields, or why it could not be read."""
    try:
        reply = await request(host, port, [b"PAXOS.STATUS"], timeout_s=timeout_s, password=password)
    except RespClientError as e:
        return f"unreachable ({e})"
    if not isinstance(reply, list) or len(reply) % 2:
        return "unreachable (unexpected reply)"
    fields: dict[str, str] = {}
    for k, v in zip(reply[::2], reply[1::2], strict=True):
        key = k.decode() if isinstance(k, bytes) else str(k)
        fields[key] = v.decode() if isinstance(v, bytes) else str(v)
    return fields


def format_status(node_id: str, address: str, st: dict[str, str] | str) -> str:
    if isinstance(st, str):
        return f"node {node_id:<4} {address:<21} {st}"
    return (
        f"node {node_id:<4} {address:<21} {st.get('role', '?'):<9} "
        f"leader={st.get('leader_id') or '-':<4} ballot={st.get('ballot', '?'):<8} "
        f"chosen={st.get('chosen_slot', '?'):<7} applied={st.get('applied_slot', '?'):<7} "
        f"delivered={st.get('delivered', '?')}"
    )


def quorum_line(results: list[dict[str, str] | str]) -> tuple[bool, str]:
    """Whether a majority of the members (``results``, one per member) answered
    and name the same leader; and the line that says so."""
    majority = len(results) // 2 + 1
    reachable = sum(not isinstance(st, str) for st in results)
    leaders = Counter(
        st["leader_id"] for st in results if not isinstance(st, str) and st.get("leader_id")
    )
    if leaders:
        leader, backing = leaders.most_common(1)[0]
        if backing >= majority:
            return True, (
                f"quorum: yes: {backing} of {len(results)} nodes follow leader {leader} "
                f"(a majority is {majority})"
            )
        why = f"at most {backing} of {len(results)} nodes name the same leader ({leader})"
    else:
        why = f"{reachable} of {len(results)} nodes answered, and none knows a leader"
    return False, f"quorum: NO: {why}; a majority is {majority}"


def run(ns: argparse.Namespace, out: TextIO) -> int:
    members = parse_members(ns.members)
    if ns.resp_members:
        resp = parse_members(ns.resp_members)
        if set(resp) != set(members):
            raise ConfigError("--resp-members must name the same ids as --members")
    else:
        resp = {m: resp_address(members, m) for m in members}
    if ns.timeout <= 0:
        raise ConfigError("--timeout must be > 0")

    async def all_status() -> list[dict[str, str] | str]:
        return await asyncio.gather(
            *(
                fetch_status(h, p, password=ns.password, timeout_s=ns.timeout)
                for h, p in resp.values()
            )
        )

    results = asyncio.run(all_status())
    for (node_id, (host, port)), st in zip(resp.items(), results, strict=True):
        out.write(format_status(node_id, f"{host}:{port}", st) + "\n")
    ok, line = quorum_line(results)
    out.write(line + "\n")
    return 0 if ok else 1
