"""Introspection commands: ``INFO``, ``COMMAND``, ``CONFIG GET``.

``INFO`` has Redis's sections and field names where Redis has the field,
plus a ``# Paxos`` section; ``COMMAND`` lists every command this node
answers (the key-value table ``kv.commands.COMMANDS`` and every family's).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time

from ..kv.commands import COMMANDS, CommandSpec
from ..version import __version__
from . import membership
from .family import REDIS_ROLE, REDIS_VERSION, Family, Handler, help_reply
from .protocol import Error, Reply, SimpleString
from .server import Connection

__all__ = ["IntrospectionCommands"]


_COMMAND_HELP = (
    "(no subcommand)",
    "    Return details about all commands.",
    "COUNT",
    "    Return the total number of commands.",
    "DOCS [<command-name> ...]",
    "    Return an empty map (no command documentation is kept).",
    "INFO [<command-name> ...]",
    "    Return details about the named commands.",
)


#: INFO's sections, in Redis's order; titles where ``capitalize`` is not Redis's.
_SECTIONS = (
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "paxos",
    "commandstats",
    "keyspace",
)
_TITLES = {"cpu": "CPU"}


def _rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc``; 0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _human(n: int) -> str:
    """Redis's ``*_human`` form: ``1.50M``."""
    value = float(n)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.2f}{unit}" if unit != "B" else f"{n}B"
        value /= 1024
    return f"{n}B"  # pragma: no cover - the loop returns at G


class IntrospectionCommands(Family):
    """``INFO``, ``COMMAND`` and ``CONFIG GET``."""

    def table(self) -> dict[bytes, Handler]:
        return {
            b"INFO": self._info,
            b"COMMAND": self._command,
            b"CONFIG": self._config,
        }

    def _specs(self) -> dict[bytes, CommandSpec]:
        specs = dict(COMMANDS) if self.node.kv is not None else {}
        for name in self.node.table:
            specs.setdefault(
                name.lower(),
                CommandSpec(
                    name.decode().lower(), -1, frozenset({"fast"}), 0, 0, 0, ("@connection",)
                ),
            )
        return specs

    def _command(self, conn: Connection, args: list[bytes]) -> Reply:
        specs = self._specs()

        def info(spec: CommandSpec) -> Reply:
            return [
                spec.name.encode(),
                spec.arity,
                [SimpleString(f) for f in sorted(spec.flags)],
                spec.first_key,
                spec.last_key,
                spec.step,
                [SimpleString(c) for c in spec.categories],
            ]

        sub = args[1].upper() if len(args) >= 2 else b""
        if sub == b"COUNT":
            return len(specs)
        if sub == b"DOCS":
            return {}  # redis-cli uses docs only for hints; none is fine
        if sub == b"INFO":
            return [info(specs[a.lower()]) if a.lower() in specs else None for a in args[2:]]
        if sub == b"":
            return [info(spec) for spec in specs.values()]
        if sub == b"HELP" and len(args) == 2:
            return help_reply("COMMAND", _COMMAND_HELP)
        return Error(
            f"ERR unknown subcommand '{args[1].decode(errors='replace')}'. Try COMMAND HELP."
        )

    def _config(self, conn: Connection, args: list[bytes]) -> Reply:
        if len(args) >= 3 and args[1].upper() == b"GET":
            # What redis-benchmark asks at start: answer like a server without persistence
            # knobs (ours are not Redis's).
            known = {b"save": b"", b"appendonly": b"no"}
            out: dict[bytes, Reply] = {}
            for pattern in args[2:]:
                if pattern in known:
                    out[pattern] = known[pattern]
            return out
        return Error("ERR CONFIG subcommand not supported (only CONFIG GET)")

    def info_text(self, sections: frozenset[str] | None = None) -> str:
        """``INFO``'s text: Redis's sections and field names where Redis has the field.

        ``sections``: the lower-case section names to include; None: the
        default ones (every section but ``commandstats``, as in Redis).
        """
        st = self.node.tob.status()
        now = time.monotonic()
        uptime = int(now - self.node.started)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        rss = _rss_bytes()
        snaps = self.node.tob.snapshots
        server = self.node.server
        parts: dict[str, list[str]] = {
            "server": [
                f"redis_version:{REDIS_VERSION}",
                f"paxostob_version:{__version__}",
                "redis_mode:standalone",
                f"os:{platform.system()} {platform.release()} {platform.machine()}",
                f"arch_bits:{64 if sys.maxsize > 2**32 else 32}",
                f"process_id:{os.getpid()}",
                f"tcp_port:{server.port if server is not None else 0}",
                f"uptime_in_seconds:{uptime}",
                f"uptime_in_days:{uptime // 86400}",
                f"executable:{sys.executable}",
            ],
            "clients": [],
            "memory": [
                # A Python process has no allocator total to report: used_memory
                # is the resident set, as used_memory_rss.
                f"used_memory:{rss}",
                f"used_memory_human:{_human(rss)}",
                f"used_memory_rss:{rss}",
                f"used_memory_rss_human:{_human(rss)}",
                f"used_memory_peak:{usage.ru_maxrss * 1024}",
                f"used_memory_peak_human:{_human(usage.ru_maxrss * 1024)}",
                "maxmemory:0",
                "maxmemory_human:0B",
                "maxmemory_policy:noeviction",
                "mem_allocator:libc",
            ],
            "persistence": [
                "loading:0",
                f"rdb_changes_since_last_save:{self.node.tob.entries_since_snapshot}",
                f"rdb_bgsave_in_progress:{int(self.node.tob.snapshot_in_progress)}",
                f"rdb_saves:{snaps.saved}",
                f"rdb_last_save_time:{int(snaps.last_saved_at)}",
                f"rdb_last_bgsave_status:{'err' if snaps.last_failed else 'ok'}",
                f"rdb_last_bgsave_time_sec:"
                f"{round(snaps.last_encode_s + snaps.last_save_s) if snaps.saved else -1}",
                "aof_enabled:0",
                f"snapshot_last_slot:{snaps.last_slot}",
                f"snapshot_last_bytes:{snaps.last_bytes}",
                f"snapshots_installed_from_peers:{snaps.installed}",
                f"log_fsyncs:{getattr(self.node.tob.storage, 'sync_count', 0)}",
            ],
            "stats": [
                f"total_commands_processed:{self.node.stats.calls}",
                f"total_error_replies:{self.node.stats.errors}",
                f"unknown_commands:{self.node.stats.unknown}",
            ],
            "replication": [
                f"role:{REDIS_ROLE}",
            ],
            "cpu": [
                f"used_cpu_sys:{usage.ru_stime:.6f}",
                f"used_cpu_user:{usage.ru_utime:.6f}",
            ],
            "paxos": [
                f"node_id:{self.node.node_id}",
                f"role:{st.role.value}",
                f"leader_id:{st.leader or ''}",
                f"ballot:{st.ballot}",
                f"promised:{st.promised}",
                f"chosen_slot:{st.known_commit}",
                f"applied_slot:{st.decided_through}",
                f"delivered:{st.delivered}",
                f"pending:{st.pending}",
                f"elections:{st.elections}",
                f"pre_votes_lost:{st.pre_votes_lost}",
                f"leader_changes:{self.node.tob.leader_changes}",
                f"proposals_failed:{self.node.tob.proposals_failed}",
                *([] if self.node.kv is None else [f"read_mode:{self.node.kv.reads}"]),
                f"reads_leased:{self.node.tob.reads_leased}",
                *membership.info_lines(self.node),
            ],
            "commandstats": self.node.stats.info_lines(),
        }
        if server is not None:
            parts["clients"] = [
                f"connected_clients:{server.clients}",
                f"maxclients:{server.limits.maxclients}",
            ]
            parts["stats"][:0] = [
                f"total_connections_received:{server.connections}",
                f"rejected_connections:{server.rejected_connections}",
                f"total_net_input_bytes:{server.input_bytes}",
                f"total_net_output_bytes:{server.output_bytes}",
            ]
            parts["stats"].append(f"idle_clients_closed:{server.idle_closed}")
        if self.node.kv is not None:
            keys = self.node.kv.stored_keys()
            parts["keyspace"] = [f"db0:keys={keys},expires=0,avg_ttl=0"] if keys else []
        lines: list[str] = []
        for name, body in parts.items():
            if (name == "commandstats") if sections is None else (name not in sections):
                continue
            lines += [f"# {_TITLES.get(name, name.capitalize())}", *body, ""]
        return "\r\n".join(lines)

    def _info(self, conn: Connection, args: list[bytes]) -> Reply:
        wanted = {a.lower().decode(errors="replace") for a in args[1:]}
        sections: frozenset[str] | None = None
        if wanted & {"all", "everything"}:
            sections = frozenset(_SECTIONS)
        elif wanted and "default" not in wanted:
            sections = frozenset(wanted)
        text = self.info_text(sections)
        if text:  # as in Redis, every line ends in CRLF, the last one too
            text = text.removesuffix("\r\n") + "\r\n"
        return text.encode()
