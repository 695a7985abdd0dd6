"""``paxostob check``: explore every state of a small cluster of real replicas (check/).

Prints the scope, the states explored, the transitions tried, the time, the
peak memory and the verdict; on a violation, the property, the actions that
lead to it from the start (a replayable trace) and, with ``--scenario FILE``,
writes them as a data-driven scenario script (tests/core/testdata format).
Exit status 1 on a violation.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from ..check.explore import STATES_MAX_DEFAULT, Result, explore, replay
from ..check.model import NAMES, Scope
from ..check.scenario import script, script_commands
from .config import ConfigError

__all__ = ["configure", "run"]


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    d = Scope()
    p.add_argument("--replicas", type=_count, default=d.replicas, help="members (3)")
    p.add_argument("--proposals", type=_count, default=d.proposals, help="broadcasts (1)")
    p.add_argument(
        "--ballots", type=_count, default=d.ballots, help="highest ballot round a replica may use"
    )
    p.add_argument("--crashes", type=_count, default=d.crashes, help="power losses (1)")
    p.add_argument("--drops", type=_count, default=d.drops, help="messages lost (0)")
    p.add_argument("--duplicates", type=_count, default=d.duplicates, help="messages copied (0)")
    p.add_argument(
        "--foreign", type=_count, default=d.foreign, help="messages of another instance (0)"
    )
    p.add_argument(
        "--depth",
        type=_count,
        default=d.depth,
        help="actions after the start (5: the small scope, exhausted in seconds)",
    )
    p.add_argument("--mode", choices=("bfs", "dfs"), default="bfs")
    p.add_argument(
        "--saves",
        choices=("eager", "async"),
        default=d.saves,
        help="eager: a save lands (or its node crashes) before anything else happens",
    )
    p.add_argument(
        "--start",
        choices=("boot", "elected"),
        default=d.start,
        help="elected: from the state where the first replica leads ballot 1",
    )
    p.add_argument(
        "--script",
        type=Path,
        metavar="FILE",
        help="start from the state a scenario script's commands reach (after --start)",
    )
    p.add_argument("--pre-vote", action="store_true", help="with LogConfig.pre_vote")
    p.add_argument(
        "--no-ticks", action="store_true", help="clocks never run: no timer fires after the start"
    )
    p.add_argument(
        "--campaigns",
        action="store_true",
        help="a node's election timer may fire at any moment (with or without --no-ticks)",
    )
    p.add_argument(
        "--proposers",
        default="",
        help="indexes of the nodes that broadcast (the founding voters), e.g. 01",
    )
    p.add_argument(
        "--in-flight-max", type=_count, default=d.in_flight_max, help="messages in flight at most"
    )
    p.add_argument(
        "--changes",
        type=_count,
        default=d.changes,
        help="membership changes the leader may propose: add a spare as a learner, promote a "
        "learner, remove a member (0)",
    )
    p.add_argument(
        "--spares",
        type=_count,
        default=d.spares,
        help=f"nodes outside the founding configuration that a change may add (0; replicas + "
        f"spares <= {len(NAMES)})",
    )
    p.add_argument(
        "--learners",
        type=_count,
        default=d.learners,
        help="of the spares, how many the start adds as learners (0; needs --start elected)",
    )
    p.add_argument(
        "--alpha",
        type=int,
        default=None,
        help=f"slots a change waits before it governs (alpha; {d.alpha} as in production, "
        f"{SMALL_ALPHA} with --changes, --spares or --learners: a small scope never reaches "
        f"slot 1 + {d.alpha}); the window is capped to it",
    )
    p.add_argument(
        "--liveness-every",
        type=_count,
        default=0,
        metavar="N",
        help="also check bounded liveness in every N-th state (0: never)",
    )
    p.add_argument(
        "--states-max",
        type=_count,
        default=STATES_MAX_DEFAULT,
        help=f"stop after this many states ({STATES_MAX_DEFAULT:,}: a few GiB)",
    )
    p.add_argument(
        "--scenario", type=Path, metavar="FILE", help="write a counterexample as a scenario script"
    )


#: alpha for a scope with membership when ``--alpha`` is not given: the least
#: that still tells a change governing "alpha slots later" from "the next slot".
SMALL_ALPHA = 2


def scope_of(args: argparse.Namespace) -> Scope:
    script: tuple[str, ...] = ()
    if args.script is not None:
        try:
            script = tuple(script_commands(args.script.read_text()))
        except OSError as e:
            raise ValueError(f"--script: {e}") from e
    return Scope(
        script=script,
        replicas=args.replicas,
        proposals=args.proposals,
        ballots=args.ballots,
        crashes=args.crashes,
        drops=args.drops,
        duplicates=args.duplicates,
        foreign=args.foreign,
        depth=args.depth,
        saves=args.saves,
        start=args.start,
        pre_vote=args.pre_vote,
        ticks=not args.no_ticks,
        campaigns=args.campaigns,
        proposers=tuple(int(c) for c in args.proposers),
        in_flight_max=args.in_flight_max,
        changes=args.changes,
        spares=args.spares,
        learners=args.learners,
        alpha=args.alpha if args.alpha is not None else _alpha(args),
    )


def _alpha(args: argparse.Namespace) -> int:
    membership = args.changes or args.spares or args.learners
    return SMALL_ALPHA if membership else Scope().alpha


def report(result: Result, out: TextIO) -> None:
    s = result.scope
    out.write(
        f"scope: replicas={s.replicas} proposals={s.proposals} ballots={s.ballots} "
        f"crashes={s.crashes} drops={s.drops} duplicates={s.duplicates} foreign={s.foreign} "
        f"depth={s.depth} saves={s.saves} start={s.start} pre_vote={s.pre_vote} ticks={s.ticks} "
        f"campaigns={s.campaigns} "
        f"changes={s.changes} spares={s.spares} learners={s.learners} alpha={s.alpha} "
        f"in_flight_max={s.in_flight_max} mode={result.mode}\n"
    )
    out.write(
        f"states: {result.states}  transitions: {result.transitions}  cut: {result.cut}  "
        f"depth: {result.depth}  time: {result.seconds:.1f} s (CPU {result.cpu_seconds:.1f} s)  "
        f"peak memory: {result.peak_rss_mib:.0f} MiB\n"
    )
    if result.failure is None:
        if result.truncated:
            out.write(
                f"verdict: no violation in the {result.states} states checked, but the scope "
                "is NOT exhausted (stopped at --states-max)\n"
            )
        else:
            out.write("verdict: ok (every state: no property broken)\n")
        return
    trace = result.trace or []
    out.write(f"verdict: VIOLATION of {result.failure.prop} after {len(trace)} actions\n")
    out.write(f"  {result.failure.detail}\n")
    if result.prefix:
        out.write(f"start ({len(result.prefix)} scripted actions): ")
        out.write("; ".join(str(a) for a in result.prefix) + "\n")
    out.write("trace:\n")
    for i, a in enumerate(trace, 1):
        out.write(f"  {i:3}. {a}\n")
    world, _ = replay(s, trace)
    out.write("state at the end:\n")
    for line in world.summary():
        out.write(f"  {line}\n")


def run(args: argparse.Namespace, out: TextIO) -> int:
    try:
        scope = scope_of(args)
        explore(scope, mode=args.mode, states_max=1)  # the start applies, or a clear error
    except ValueError as e:
        raise ConfigError(str(e)) from e

    def progress(r: Result) -> None:
        out.write(
            f"  level {r.depth} expanded: {r.states} states checked (through depth "
            f"{r.depth + 1}), {r.transitions} transitions\n"
        )
        out.flush()

    result = explore(
        scope,
        mode=args.mode,
        states_max=args.states_max,
        liveness_every=args.liveness_every,
        progress=progress,
    )
    report(result, out)
    if result.failure is None:
        return 0
    if args.scenario is not None:
        try:
            text = script(scope, [*result.prefix, *(result.trace or [])], result)
        except ValueError as e:
            out.write(f"scenario: not written: {e}\n")
        else:
            args.scenario.write_text(text)
            out.write(f"scenario: {args.scenario}\n")
    return 1
