"""The command line, ``paxostob <command> [flags]``: the composition root.

See docs/design.md, 'Layers and the dependency rule' and 'The public surface'.

Each subcommand is one entry of ``COMMANDS``: a function that adds its
flags to its subparser and a function that runs it and returns the exit
code. Adding ``serve``, ``cluster`` or ``status`` is adding an entry.

Exit codes: 0 success, 1 the command ran and found a failure, 2 a usage
error (reported on one line, without a traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import NoReturn, TextIO

from ..sim.checkers import CheckFailure
from ..sim.runner import RunResult, replay_command, run_many, simulate
from ..version import __version__
from . import check as check
from . import cluster as cluster
from . import init as init
from . import member as member
from . import serve as serve
from . import snapshot as snapshot
from . import status as status
from .config import ConfigError

__all__ = ["COMMANDS", "Command", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command-line arguments (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


@dataclass(frozen=True, slots=True)
class Command:
    help: str
    #: Adds the command's flags to its parser.
    configure: Callable[[argparse.ArgumentParser], None]
    #: Runs the command; returns the exit code.
    run: Callable[[argparse.Namespace, TextIO], int]


# ==================================================================== sim


def _configure_sim(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--seed", type=int, metavar="N", help="run the schedule of seed N verbosely (a replay)"
    )
    which.add_argument(
        "--runs", type=_positive, metavar="K", help="run K schedules, one status line each"
    )
    p.add_argument(
        "--start", type=int, default=0, metavar="S", help="with --runs: the first seed (0)"
    )
    p.add_argument(
        "--synod", action="store_true", help="single-decree consensus instead of Multi-Paxos"
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _print_result(result: RunResult, out: TextIO) -> None:
    out.write("options:\n")
    for f in fields(result.options):
        out.write(f"  {f.name} = {getattr(result.options, f.name)}\n")
    s = result.schedule
    out.write("schedule:\n")
    for e in s.partitions:
        groups = "the leader" if e.groups is None else " | ".join(",".join(g) for g in e.groups)
        out.write(f"  ticks {e.start}-{e.end}: partition ({e.kind}): {groups}\n")
    for c in s.crashes:
        out.write(f"  tick {c.tick}: crash {c.node or 'the leader'}\n")
    out.write(f"  {len(s.proposals)} proposals at ticks {s.proposals[0].tick}..")
    out.write(f"{s.proposals[-1].tick}; heal at tick {result.heal_tick}\n")
    if s.spares:
        out.write(
            f"  from tick {s.membership_start}: membership plan {result.options.membership} "
            f"(spare nodes {','.join(s.spares)}, started with join)\n"
        )
    out.write("replicas at the end:\n")
    for line in result.replicas:
        out.write(f"  {line}\n")
    out.write(f"status: {result.status_line()}\n")


def _sim_one(args: argparse.Namespace, out: TextIO) -> int:
    outcome = simulate(args.seed, synod=args.synod)
    _print_result(outcome.result, out)
    if outcome.failure is not None:
        cause = outcome.failure.__cause__
        if cause is not None:  # the core raised: its traceback is the first clue
            out.write("".join(traceback.format_exception(cause)))
        out.write(f"checks: FAILED {outcome.failure}\n")
        return EXIT_FAILED
    out.write("checks: ok (all properties hold)\n")
    out.write(f"replay: {replay_command(args.seed, synod=args.synod)}\n")
    return EXIT_OK


def _sim_many(args: argparse.Namespace, out: TextIO) -> int:
    seeds = range(args.start, args.start + args.runs)
    failures: list[tuple[int, CheckFailure]] = []
    started = time.process_time()
    for outcome in run_many(seeds, synod=args.synod):
        if outcome.failure is None:
            out.write(f"ok   {outcome.result.status_line()}\n")
        else:
            failures.append((outcome.seed, outcome.failure))
            out.write(f"FAIL {outcome.result.status_line()} {outcome.failure.prop}\n")
        out.flush()
    cpu_s = time.process_time() - started
    mode = "single-decree" if args.synod else "multi-paxos"
    out.write(
        f"{len(seeds)} {mode} runs: {len(seeds) - len(failures)} passed, {len(failures)} "
        f"failed ({1000 * cpu_s / len(seeds):.1f} ms CPU per run)\n"
    )
    for seed, failure in failures:
        out.write(f"\nFAILED seed {seed}: {failure}\n")
    if failures:
        out.write("\nreplay:\n")
        for seed, _ in failures:
            out.write(f"  {replay_command(seed, synod=args.synod)}\n")
    return EXIT_FAILED if failures else EXIT_OK


def _sim(args: argparse.Namespace, out: TextIO) -> int:
    if args.seed is not None:
        return _sim_one(args, out)
    return _sim_many(args, out)


# ================================================================ commands

COMMANDS: dict[str, Command] = {
    "serve": Command(
        help="run one node in the foreground (TCP to peers, durable storage, RESP for clients)",
        configure=serve.configure,
        run=serve.run,
    ),
    "cluster": Command(
        help="start N local nodes with durable storage, show their status, stop on Ctrl-C",
        configure=cluster.configure,
        run=cluster.run,
    ),
    "init": Command(
        help="write a new cluster's secret (mode 0600) and one node config (TOML) per member",
        configure=init.configure,
        run=init.run,
    ),
    "member": Command(
        help="list, add, promote, remove or replace members of a running cluster",
        configure=member.configure,
        run=member.run,
    ),
    "snapshot": Command(
        help="save a live node's state to a file, or restore one into a new cluster's stores",
        configure=snapshot.configure,
        run=snapshot.run,
    ),
    "status": Command(
        help="print each node's role, leader, ballot and positions (or that it is unreachable)",
        configure=status.configure,
        run=status.run,
    ),
    "sim": Command(
        help="run seeded fault schedules in the deterministic simulator and check them",
        configure=_configure_sim,
        run=_sim,
    ),
    "check": Command(
        "explore every state of a small cluster, membership changes included (model checking)",
        check.configure,
        check.run,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="paxostob", description="Paxos consensus and total-order broadcast.")
    parser.add_argument("--version", action="version", version=f"paxostob {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.configure(p)
        p.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``paxostob`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except UsageError as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:  # --help and --version exit through argparse
        return e.code if isinstance(e.code, int) else EXIT_OK
    handler: Callable[[argparse.Namespace, TextIO], int] = args.handler
    try:
        return handler(args, sys.stdout)
    except ConfigError as e:
        print(f"paxostob {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
