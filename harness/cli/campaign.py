"""``faultrun campaign``: the command line of :mod:`harness.campaign` (docs/campaigns.md)."""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from dap.argtypes import nonneg_int, positive_float, positive_int
from faults.strategies import check_campaign_vdaf
from faults.workload import parse_vdaf
from harness.campaign.driver import run_campaign
from harness.campaign.exampledb import is_redis_url
from harness.campaign.freeze import REGRESSIONS_DIR, freeze
from harness.campaign.minimize import REPLAYS
from harness.campaign.result import VIOLATION, CampaignProgress
from harness.campaign.sharding import Shard, parse_shard
from harness.campaign.workers import run_campaign_workers
from harness.cli.args import PROG, Parser, add_impl_option, console, make_root, one_impl_each, setup_logging
from harness.errors import UsageError
from harness.stack.images import load_images, not_applicable

__all__ = ["build_campaign_parser", "campaign_command"]


def _duration(text: str) -> float:
    t = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        x = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90, 90s, 10m, 1h)") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return x


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_campaign_parser() -> Any:
    p = Parser(prog=f"{PROG} campaign",
                description="Hypothesis fault campaign: random plans and workloads on warm roles; "
                            "violations are shrunk, written and printed as a faultrun command (docs/campaigns.md).")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--examples", type=positive_int, metavar="N", help="generated examples to run")
    size.add_argument("--time-budget", type=_duration, metavar="T", help="run until T (e.g. 600, 10m, 1h) is spent")
    size.add_argument("--replay-only", action="store_true",
                      help="replay the example database's stored failures, generate nothing (with --freeze: "
                           "freeze those that fail again)")
    p.add_argument("--seed", type=nonneg_int,
                   help="the campaign's hypothesis seed (every shard and worker runs it); default: a random one, "
                        "printed")
    p.add_argument("--shard", type=_shard, metavar="K/N",
                   help="run slice K of N disjoint slices of the campaign (0 <= K < N; needs --seed; docs/scale.md)")
    p.add_argument("--example-db", metavar="URL",
                   help="shared example database: redis://host:port/db or a directory "
                        "(default <artifacts>/hypothesis-db); failures stored there are replayed first")
    p.add_argument("--vdaf", metavar="SPEC", help="fix the VDAF (as faultrun --vdaf); default: every type")
    add_impl_option(p)
    p.add_argument("--images", type=Path, metavar="FILE")
    p.add_argument("--backend", default="local", choices=["local", "docker"])
    p.add_argument("--network", default="loopback", choices=["loopback", "netns"],
                   help="netns: roles in network namespaces, and generated plans mix network rules (partitions, "
                        "loss, latency, resets) with HTTP faults; needs root (docs/network.md)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="K", help="K independent stacks in parallel")
    p.add_argument("--keep-going", action="store_true", help="after a failure, keep generating until the budget")
    p.add_argument("--freeze", action="store_true", help="write each failure as a tests/regressions/ case")
    p.add_argument("--regressions-dir", type=Path, default=REGRESSIONS_DIR, help=argparse.SUPPRESS)
    p.add_argument("--artifacts", type=Path, metavar="DIR", help="output root (default ./artifacts/campaign-<ts>)")
    p.add_argument("--timeout", type=positive_float, default=None, metavar="S",
                   help="per-scenario timeout (default 30, or more for a Leader whose images.toml timing needs it)")
    p.add_argument("--shrink-budget", type=_duration, default=300.0, metavar="T",
                   help="time allowed for shrinking (2/3 hypothesis' shrink, then one rule at a time)")
    p.add_argument("--replays", type=nonneg_int, default=REPLAYS, metavar="N",
                   help=f"fresh runs of each shrunk failure, said as 'reproduces k/N' (default {REPLAYS}; 0: none)")
    p.add_argument("--no-database", action="store_true", help="do not use or write an example database")
    p.add_argument("--keep-runs", action="store_true", help="keep the run directories of passing examples too")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def _progress_ui(console: Any, total: int | None) -> tuple[Any, Callable[[CampaignProgress], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    prog = Progress(TextColumn("[bold]campaign[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[stats]}"), console=console, transient=False)
    task = prog.add_task("campaign", total=total, stats="")

    def update(p: CampaignProgress) -> None:
        rate = p.examples_run / p.elapsed_s if p.elapsed_s > 0 else 0.0
        vc = " ".join(f"{k}={n}" for k, n in sorted(p.verdicts.items()))
        fails = f"[red]failures={p.failures}[/]" if p.failures else "failures=0"
        prog.update(task, completed=p.examples_run,
                    stats=f"{rate:.2f} ex/s {fails} {vc}" + (" [yellow]shrinking[/]" if p.phase == "shrink" else ""))

    return prog, update


def campaign_command(argv: Sequence[str]) -> int:
    """``faultrun campaign ...``; errors propagate to :func:`harness.cli.main` (one line)."""
    args = build_campaign_parser().parse_args(list(argv))
    setup_logging(args.verbose)
    if args.examples is None and args.time_budget is None and not args.replay_only:
        raise UsageError("one of --examples, --time-budget or --replay-only is required")
    if args.no_database and (args.example_db or args.replay_only):
        raise UsageError("--no-database excludes --example-db and --replay-only")
    if args.shard is not None and args.seed is None:
        raise UsageError("--shard needs --seed: every shard must run the same campaign")
    impl = one_impl_each(args.impl)
    if args.vdaf is not None:
        check_campaign_vdaf(args.vdaf, 1)
        from harness.run.stack import resolve_impl  # before any stack starts: one line, nothing to stop
        why = not_applicable(resolve_impl(load_images(args.images), impl), parse_vdaf(args.vdaf, 1).type)
        if why is not None:
            raise UsageError(f"--vdaf {args.vdaf}: not applicable: {why}")
    root = make_root(args.artifacts, prefix="campaign-").resolve()
    err = console(stderr=True)
    seed = args.seed
    if seed is None:  # reproducible all the same: the seed is printed and stored in campaign.json
        seed = random.SystemRandom().randrange(2**32)
        err.print(f"campaign seed {seed} (random; rerun this campaign with --seed {seed})")
    ui, update = _progress_ui(err, args.examples)
    if args.network == "netns" and args.backend != "local":
        raise UsageError("--network netns cannot be combined with --backend docker")
    example_db = args.example_db
    if example_db is not None and not is_redis_url(example_db):
        example_db = str(Path(example_db).resolve())
    common = dict(seed=seed, examples=args.examples, time_budget_s=args.time_budget, vdaf=args.vdaf,
                  keep_going=args.keep_going or args.replay_only, database=not args.no_database,
                  timeout_s=args.timeout, shrink_budget_s=args.shrink_budget, progress=update, shard=args.shard,
                  example_db=example_db, keep_runs=args.keep_runs, replay_only=args.replay_only,
                  replays=args.replays)
    with ui:
        if args.workers > 1:
            result = run_campaign_workers(args.workers, artifacts=root, impl=impl, images=args.images,
                                          backend=args.backend, network=args.network, **common)
        else:
            from harness.run import Stack  # the process machinery, only once a campaign runs
            with Stack.start(artifacts_root=root / "stack", impl=impl, images=args.images,
                             backend=args.backend, network=args.network) as stack:
                result = run_campaign(stack, artifacts=root, **common)
    if args.freeze and result.failures:
        images = args.images.resolve() if args.images else None
        frozen = [attrs.evolve(f, frozen=freeze(f, args.regressions_dir, impl=impl, images=images))
                  for f in result.failures]
        result = attrs.evolve(result, failures=tuple(frozen))
    (root / "campaign.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return result.exit_code
    out = console()
    vc = ", ".join(f"{k} {n}" for k, n in sorted(result.verdicts.items())) or "no runs"
    shard = "" if result.shard is None else f" shard {result.shard}"
    replayed = f", {result.replayed} replayed from the example database" if result.replayed else ""
    out.print(f"campaign seed {result.seed}{shard}: {result.examples_run} examples ({result.runs} runs incl. "
              f"shrinking{replayed}) in {result.elapsed_s:.1f} s; {vc}; {len(result.failures)} failure(s)")
    if result.db_errors:
        out.print(f"  [yellow]example database {result.example_db}: {result.db_errors} operation(s) failed "
                  "(skipped)[/]")
    for r in result.infra_runs[:5]:
        out.print(f"  [magenta]infra[/] {r.run_dir}: {r.summary}")
    if result.infra_aborted:
        out.print("  [magenta]campaign stopped: the stack is broken (infrastructure errors)[/]")
    for f in result.failures:
        label = "VIOLATION" if f.kind == VIOLATION else "UNEXPECTED CLEAN FAILURE"
        out.print(f"[bold red]{label}[/] {f.report.summary}"
                  + (f" (reproduces {f.reproduces}/{f.replays})" if f.replays else
                     "" if f.reproduced else " (seen once; not reproduced on replay)")
                  + (" (replayed from the example database)" if f.source == "example-db" else ""))
        out.print(f"  run dir: {f.run_dir}")
        if f.frozen is not None:
            out.print(f"  frozen: {f.frozen}")
        out.print(f.command, markup=False, soft_wrap=True)
    out.print(f"summary: {root / 'campaign.json'}")
    return result.exit_code
