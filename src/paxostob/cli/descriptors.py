"""How many clients a node can serve: its open-files limit, less what peers and storage need.

Every client connection is a file descriptor. When clients take the last
ones, the node cannot open a snapshot file or accept a peer's connection,
and it limps on without making progress. So, as Redis does at start
(``adjustOpenFilesLimit``), a node raises its soft ``RLIMIT_NOFILE`` towards
the hard limit, as far as ``maxclients`` plus a reserve needs, and lowers
``maxclients`` to what the limit then allows after the reserve.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .config import ConfigError

__all__ = [
    "DESCRIPTORS_PER_PEER",
    "DESCRIPTORS_RESERVED_MIN",
    "ClientBudget",
    "client_budget",
    "descriptors_reserved",
    "plan_maxclients",
]

log = logging.getLogger("paxostob.serve")

#: Descriptors kept for everything but clients and peers: stdio, the two
#: listening sockets, the event loop's own (epoll, its wake-up pipe), the log
#: file, the files a snapshot or a compaction has open at once and the
#: directory opened to fsync them. Redis keeps 32 (``CONFIG_MIN_RESERVED_FDS``)
#: for its listeners, log and persistence files; twice that leaves room for
#: what Python and its libraries open on their own. (A node of a 3-member
#: cluster had 18 descriptors open besides its clients under a write load,
#: 2026-12-04, Linux, Python 3.11, uvloop.)
DESCRIPTORS_RESERVED_MIN = 64
#: Per peer: its connection to this node and this node's to it, and as many
#: again while reconnections overlap the connections they replace.
DESCRIPTORS_PER_PEER = 4


def descriptors_reserved(peers: int) -> int:
    """Descriptors a node keeps from clients, with ``peers`` other members."""
    return DESCRIPTORS_RESERVED_MIN + DESCRIPTORS_PER_PEER * peers


@dataclass(frozen=True, slots=True)
class ClientBudget:
    """What ``plan_maxclients`` decided: the soft limit to set and the clients it leaves."""

    maxclients: int
    #: The soft RLIMIT_NOFILE to ask for (the current one when no raise is needed).
    soft_limit: int


def plan_maxclients(wanted: int, reserved: int, soft: int, hard: int | None) -> ClientBudget:
    """Raise the soft limit towards ``wanted + reserved`` (never above ``hard``;
    None: unlimited), and the clients the result allows: ``wanted`` at most."""
    needed = wanted + reserved
    target = soft
    if soft < needed:
        target = needed if hard is None else min(needed, hard)
        target = max(target, soft)
    return ClientBudget(maxclients=min(wanted, target - reserved), soft_limit=target)


def client_budget(configured: int | None, default: int, peers: int) -> int:
    """``maxclients`` for this process, the soft open-files limit raised as needed.

    ``configured`` None takes ``default``, lowered to what the limit allows
    (logged at INFO); a configured value that does not fit is lowered with a
    WARNING, as Redis does. A ``ConfigError`` when not one client fits.
    """
    wanted = default if configured is None else configured
    reserved = descriptors_reserved(peers)
    try:
        import resource
    except ImportError:  # not Unix: no limit to read; serve what was asked
        log.info("maxclients %d (no open files limit to read here)", wanted)
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    unlimited = resource.RLIM_INFINITY
    if soft == unlimited:
        log.info("maxclients %d (no open files limit)", wanted)
        return wanted
    plan = plan_maxclients(wanted, reserved, soft, None if hard == unlimited else hard)
    raised = soft
    if plan.soft_limit > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (plan.soft_limit, hard))
            raised = plan.soft_limit
        except (ValueError, OSError) as e:
            log.warning(
                "cannot raise the open files limit from %d to %d: %s", soft, plan.soft_limit, e
            )
            plan = plan_maxclients(wanted, reserved, soft, soft)
    if plan.maxclients < 1:
        raise ConfigError(
            f"the open files limit ({raised}) leaves no descriptor for clients after the "
            f"{reserved} kept for peers and storage: raise it (ulimit -n)"
        )
    how = f"open files limit {raised}" + (f", raised from {soft}" if raised != soft else "")
    if plan.maxclients < wanted and configured is not None:
        log.warning(
            "maxclients %d lowered to %d: %s, %d kept for peers and storage",
            wanted,
            plan.maxclients,
            how,
            reserved,
        )
    else:
        log.info(
            "maxclients %d (%s, %d kept for peers and storage)", plan.maxclients, how, reserved
        )
    return plan.maxclients
