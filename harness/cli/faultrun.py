"""``faultrun``: run named faults (or a plan file) against DAP-09 aggregators and judge them.

Usage (docs/cli.md)::

    faultrun --fault duplicate-report                 # one catalogue entry
    faultrun --fault a --fault b --impl leader=reference
    faultrun --plan my-plan.toml --reports 12 --vdaf Prio3Sum
    faultrun --all --junit matrix.xml                 # the whole catalogue as a matrix
    faultrun --list                                   # faults and implementations, one line each

Exit status: :class:`harness.check.verdict.ExitCode` (0 every expectation met, 1 a violation
or a missed expectation, 2 usage, 3 infrastructure, 4 inconclusive; several scenarios: the
most serious). Every user mistake is one ``faultrun: error: ...`` line, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dap.argtypes import nonneg_int, positive_float, positive_int
from faults.catalogue import CATALOGUE
from faults.errors import NotApplicable, PlanError, WorkloadError, one_line
from faults.plan import load_plan
from faults.scenario import Scenario, scenario_from_dict
from faults.workload import apply_overrides
from harness.check.verdict import combine_exit_codes
from harness.cli.args import PROG, Parser, add_impl_option, console, make_root, one_impl_each
from harness.errors import UsageError
from harness.stack.images import ROLES, load_images, parse_impl

__all__ = ["build_parser", "run_command"]

log = logging.getLogger("faultrun")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description="Fault-injection runs against DAP-09 aggregators (docs/cli.md).",
               epilog="Subcommands: faultrun analyze DIR  (re-check a stored run directory); "
                      "faultrun campaign --examples N --seed S  (hypothesis campaign, docs/campaigns.md; "
                      "--shard K/N, docs/scale.md); faultrun merge DIR...  (one report from many shards). "
                      "Exit status: 0 expectations met, 1 violation or missed expectation, 2 usage, "
                      "3 infrastructure, 4 inconclusive.")
    sel = p.add_argument_group("what to run")
    sel.add_argument("--fault", action="append", default=[], metavar="NAME",
                     help="a catalogue fault (repeatable; --list shows them)")
    sel.add_argument("--plan", type=Path, action="append", default=[], metavar="FILE",
                     help="a plan file (TOML or JSON, docs/plans.md) run under the default workload (repeatable)")
    sel.add_argument("--scenario", type=Path, action="append", default=[], metavar="FILE",
                     help="a scenario.json (workload + plan + expectation, e.g. from a run dir or a campaign "
                          "failure) (repeatable)")
    sel.add_argument("--all", action="store_true", help="every catalogue fault, as a matrix")
    sel.add_argument("--list", action="store_true", help="list faults and implementations, then exit")
    sel.add_argument("--matrix", action="store_true",
                     help="implementation matrix: every client x leader x helper x collector of images.toml the "
                          "backend can run (--impl ROLE=A,B filters) times the selected faults")
    wl = p.add_argument_group("workload")
    wl.add_argument("--vdaf", metavar="SPEC",
                    help="TYPE[:key=value,...] (e.g. Prio3Histogram:length=16,chunk_length=4, sum, count, "
                         "poplar1:bits=8) or an interop JSON object; sizes not given follow --reports; Poplar1 "
                         "runs the heavy-hitters walk")
    wl.add_argument("--reports", type=positive_int, metavar="N", help="reports to upload (rescales the workload)")
    wl.add_argument("--query-type", choices=["time_interval", "fixed_size"])
    env = p.add_argument_group("implementations")
    add_impl_option(env, matrix=True)
    env.add_argument("--images", type=Path, metavar="FILE", help="images.toml to use (default: the repository's)")
    env.add_argument("--backend", default="local", choices=["local", "docker"],
                     help="how roles run: local processes (default) or containers on DOCKER_HOST (docs/docker.md)")
    env.add_argument("--network", default="loopback", choices=["loopback", "netns"],
                     help="loopback (default): every role on 127.0.0.1; netns: each role and the fault proxy in "
                          "its own network namespace, so network rules (partitions, loss, latency, resets) can act "
                          "on the links; needs root (docs/network.md)")
    env.add_argument("--pull", action="store_true",
                     help="docker backend: pull images missing from the engine (never pulled without it)")
    out = p.add_argument_group("run and output")
    out.add_argument("--seed", type=nonneg_int, help="replace every plan's seed")
    out.add_argument("--artifacts", type=Path, metavar="DIR", help="output root (default ./artifacts/<timestamp>)")
    out.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    out.add_argument("--junit", type=Path, metavar="FILE", help="also write one JUnit XML for every scenario run")
    out.add_argument("--timeout", type=positive_float, default=None, metavar="S",
                     help="per-scenario timeout in seconds (default 60, or more for a Leader whose images.toml "
                          "timing needs it)")
    out.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    return p


# --- scenario selection ------------------------------------------------------------------


def _fault(name: str) -> Scenario:
    if name in CATALOGUE:
        return CATALOGUE[name]
    near = difflib.get_close_matches(name, list(CATALOGUE), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(near)}?" if near else "faultrun --list shows them"
    raise UsageError(f"--fault {name}: no such fault; {hint}")


def _plan_scenario(path: Path) -> Scenario:
    if not path.is_file():
        raise UsageError(f"--plan {path}: file not found")
    try:
        plan = load_plan(path)
    except FileNotFoundError:
        raise UsageError(f"--plan {path}: file not found") from None
    except PlanError as exc:
        raise UsageError(f"--plan {path}: {exc}") from exc
    except OSError as exc:
        raise UsageError(f"--plan {path}: {exc.strerror or exc}") from exc
    return Scenario(name=path.stem, plan=plan, doc=f"plan file {path}")


def _scenario_file(path: Path) -> Scenario:
    if not path.is_file():
        raise UsageError(f"--scenario {path}: file not found")
    try:
        return scenario_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise UsageError(f"--scenario {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # JSON, shape, plan or VDAF errors: the file is wrong
        raise UsageError(f"--scenario {path}: {one_line(exc)}") from exc


def _select(args: argparse.Namespace) -> tuple[list[Scenario], list[tuple[Scenario, str]]]:
    """The scenarios to run, and (``--all``) those left out because their workload cannot take
    the ``--vdaf`` asked for (scenario, why): a Poplar1 walk under Prio3."""
    from harness.run import check_scenario  # harness.run pulls in the process machinery: only to run

    if args.all and (args.fault or args.plan or args.scenario):
        raise UsageError("--all runs the whole catalogue; drop --fault / --plan (or drop --all)")
    if args.all:
        scenarios = list(CATALOGUE.values())
        if getattr(args, "network", "loopback") != "netns":
            skipped = [s.name for s in scenarios if s.plan.needs_network]
            if skipped:
                log.warning("--all: %d network entries skipped (they need --network netns): %s", len(skipped),
                            ", ".join(skipped))
                console(stderr=True).print(f"--all: {len(skipped)} network entries skipped (they need --network "
                                           f"netns, docs/network.md)")
            scenarios = [s for s in scenarios if not s.plan.needs_network]
    else:
        scenarios = [_fault(n) for n in args.fault] + [_plan_scenario(p) for p in args.plan]
        scenarios += [_scenario_file(p) for p in args.scenario]
    if not scenarios:
        raise UsageError("nothing to run: give --fault NAME, --plan FILE, --scenario FILE, --all or --list")
    out = []
    left_out: list[tuple[Scenario, str]] = []
    for s in scenarios:
        try:
            s2 = apply_overrides(s, vdaf=args.vdaf, reports=args.reports, query_type=args.query_type)
        except NotApplicable as exc:
            if not args.all:  # asked for by name: the combination is the user's mistake
                raise WorkloadError(f"--fault {s.name} --vdaf {args.vdaf}: {exc}") from exc
            left_out.append((s, str(exc)))
            continue
        check_scenario(s2)
        out.append(s2)
    return out, left_out


# --- commands ------------------------------------------------------------------------------------


def _listed_applicability(args: argparse.Namespace, images: Any) -> dict[str, str]:
    """--list: fault name -> why it is not applicable to the implementations --impl selects
    (every name given per role; default: each role's default) under --vdaf."""
    chosen = parse_impl(args.impl)
    per_role = {role: [images.select(role, n) for n in (chosen.get(role) or chosen.get("all") or [])]
                or [images.default(role)] for role in ROLES}
    out: dict[str, str] = {}
    for name, scenario in CATALOGUE.items():
        try:
            s = apply_overrides(scenario, vdaf=args.vdaf, reports=None, query_type=None)
        except NotApplicable as exc:
            out[name] = f"--vdaf {args.vdaf}: {exc}"
            continue
        lacking = [f"{e.role} {e.name}" for role in ROLES for e in per_role[role]
                   if not e.supports(s.workload.task.vdaf.type)]
        if lacking:
            out[name] = f"{', '.join(lacking)}: no {s.workload.task.vdaf.type} (images.toml vdafs)"
    return out


def list_command(args: argparse.Namespace) -> int:
    if args.fault or args.plan or args.scenario or args.all:
        raise UsageError("--list cannot be combined with --fault, --plan, --scenario or --all")
    images = load_images(args.images)
    na = _listed_applicability(args, images)
    if args.json:
        print(json.dumps({
            "faults": [{"name": n, "doc": s.summary_line, "expect": s.expect.outcome.value,
                        "spec_section": s.spec_section, **({"not_applicable": na[n]} if n in na else {})}
                       for n, s in CATALOGUE.items()],
            "implementations": {r: [{"name": e.name, "kind": e.kind, "doc": e.doc,
                                     "missing_here": {b: e.missing(b) for b in e.backends if e.missing(b)},
                                     "vdafs": list(e.vdafs) if e.vdafs is not None else None}
                                    for e in images.entries[r]] for r in ROLES}}, indent=2))
        return 0
    width = max(map(len, CATALOGUE), default=10)
    print(f"faults ({len(CATALOGUE)}):")
    for name, s in CATALOGUE.items():
        note = f"n/a ({na[name]}) " if name in na else ""
        print(f"  {name:<{width}}  {note}{s.summary_line}")
    print("implementations (images.toml; first = default):")
    for role in ROLES:
        for e in images.entries[role]:
            why = e.missing("local") if "local" in e.backends else None
            note = f"  [local: cannot run here: {why}]" if why else ""
            vdafs = f"  [vdafs: {', '.join(e.vdafs)}]" if e.vdafs is not None else ""
            print(f"  {role:<9} {e.name:<12} {e.kind:<12} {e.doc}{vdafs}{note}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    """``faultrun [--fault ...|--plan ...|--scenario ...|--all] [--matrix]``."""
    from harness.report import terminal
    from harness.report.rundir import junit_matrix, write_catalogue_matrix
    from harness.run import Stack

    if args.list:
        return list_command(args)
    selected, vdaf_left_out = _select(args)
    if args.pull and args.backend != "docker":
        raise UsageError("--pull needs --backend docker")
    if args.network == "netns" and args.backend != "local":
        raise UsageError("--network netns runs local roles in namespaces; it cannot be combined with --backend "
                         f"{args.backend}")
    if args.network != "netns":
        need = [s.name for s in selected if s.plan.needs_network]
        if need:
            raise UsageError(f"{need[0]}: its plan has network rules; run it with --network netns (as root; "
                             "docs/network.md)")
    if args.matrix:
        return _run_matrix(args, selected, vdaf_left_out)
    impl = one_impl_each(args.impl)
    from harness.run.matrix import applicable
    from harness.run.stack import resolve_impl
    scenarios, left_out = applicable(selected, resolve_impl(load_images(args.images), impl))
    left_out = sorted([*vdaf_left_out, *left_out], key=lambda x: _rank(x[0]))
    out = console(stderr=args.json)
    for s, why in left_out:  # one line each, whatever else is printed; the exit code stays as it is
        out.print(terminal.not_applicable_line(s.name, why), markup=False, soft_wrap=True)
    if not scenarios:
        out.print("nothing to run: every selected scenario is not applicable here")
        if args.json:
            print(json.dumps({"exit_code": 0, "results": [], "not_applicable": [
                {"scenario": s.name, "why": why} for s, why in left_out]}, indent=2))
        return 0
    root = make_root(args.artifacts)
    results: list[tuple[Scenario, Any]] = []
    t0 = time.monotonic()
    order = [s.name for s in CATALOGUE.values()] if args.all else []
    with Stack.start(artifacts_root=root, impl=impl, images=args.images, backend=args.backend,
                     pull=args.pull, network=args.network) as stack:
        log.info("stack up in %.2f s (%s)", stack.started_s,
                 ", ".join(f"{r}={e.name}" for r, e in stack.impl.items()))
        for i, scenario in enumerate(scenarios, 1):
            if len(scenarios) > 1:
                out.print(f"[dim][{i}/{len(scenarios)}][/] {scenario.name} ...", end="")
            result = stack.run_scenario(scenario, seed=args.seed, timeout_s=args.timeout)
            results.append((scenario, result))
            if len(scenarios) > 1:
                out.print(" " + terminal.progress_cell(result))
            elif not args.json:
                terminal.print_result(out, result, scenario, stack.started_s)
        stack_start = stack.started_s
    codes = [r.exit_code for _, r in results]
    if len(results) + len(left_out) > 1:
        write_catalogue_matrix(root, results, left_out, order)
        if not args.json:
            terminal.print_catalogue_matrix(out, results, stack_start, time.monotonic() - t0, root, left_out, order)
    if args.junit is not None:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        junit_matrix(args.junit, [(r.report, s, r.seconds) for s, r in results])
    if args.json:
        print(json.dumps({"exit_code": combine_exit_codes(codes), "artifacts": str(root),
                          "stack_start_s": round(stack_start, 3),
                          "results": [terminal.result_json(r) for _, r in results],
                          "not_applicable": [{"scenario": s.name, "why": why} for s, why in left_out]}, indent=2))
    return combine_exit_codes(codes)


def _rank(scenario: Scenario) -> int:
    names = list(CATALOGUE)
    return names.index(scenario.name) if scenario.name in CATALOGUE else len(names)


def _run_matrix(args: argparse.Namespace, scenarios: list[Scenario],
                left_out: Sequence[tuple[Scenario, str]] = ()) -> int:
    """--matrix: implementations x scenarios (:mod:`harness.run.matrix`); ``left_out``: the
    scenarios no combination can run (their workload cannot take ``--vdaf``)."""
    from harness.run.matrix import run_matrix

    root = make_root(args.artifacts)
    code = run_matrix(args, scenarios, console(stderr=args.json), root, left_out=left_out)
    if args.junit is not None:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "junit.xml", args.junit)
    if args.json:
        doc = json.loads((root / "matrix.json").read_text(encoding="utf-8"))
        print(json.dumps({"exit_code": code, "artifacts": str(root), **doc}, indent=2))
    return code

