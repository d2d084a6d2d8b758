"""``faultrun``: run named faults (or a plan file) against DAP-09 aggregators and judge them.

Usage (docs/cli.md)::

    faultrun --fault duplicate-report                 # one catalogue entry
    faultrun --fault a --fault b --impl leader=reference
    faultrun --plan my-plan.toml --reports 12 --vdaf Prio3Sum
    faultrun --all --junit matrix.xml                 # the whole catalogue as a matrix
    faultrun --list                                   # faults and implementations, one line each
    faultrun analyze artifacts/2026.../duplicate-report   # re-check a stored run dir

Exit status: 0 every scenario passed (a clean failure counts as passed when the scenario's
expectation allows it); 1 an invariant was violated (or a clean failure the scenario did
not allow); 2 usage or configuration error; 3 infrastructure failure (the harness or a role
failed, no verdict on the target). With several scenarios: 1 if any is 1, else 3 if any
is 3, else 0. Every user mistake is one ``faultrun: error: ...`` line, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import signal
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs
from dap.argtypes import nonneg_int, positive_float, positive_int

__all__ = ["build_parser", "main"]

log = logging.getLogger("faultrun")
PROG = "faultrun"


class _Usage(Exception):
    """A usage error found by argparse (exit 2, one line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise _Usage(message)


def _impl(text: str) -> tuple[str, str]:
    role, eq, name = text.partition("=")
    if not eq or not role.strip() or not name.strip():
        raise argparse.ArgumentTypeError(f"expected ROLE=NAME (e.g. leader=reference or all=reference), got {text!r}")
    return role.strip(), name.strip()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Fault-injection runs against DAP-09 aggregators (docs/cli.md).",
                epilog="Subcommands: faultrun analyze DIR  (re-check a stored run directory); "
                       "faultrun campaign --examples N --seed S  (hypothesis campaign, docs/campaigns.md)")
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
    env.add_argument("--impl", type=_impl, action="append", default=[], metavar="ROLE=NAME",
                     help="implementation per role from images.toml (ROLE: leader, helper, client, collector, all)")
    env.add_argument("--images", type=Path, metavar="FILE", help="images.toml to use (default: the repository's)")
    env.add_argument("--backend", default="local", choices=["local", "docker"],
                     help="how roles run: local processes (default) or containers on DOCKER_HOST (docs/docker.md)")
    env.add_argument("--pull", action="store_true",
                     help="docker backend: pull images missing from the engine (never pulled without it)")
    out = p.add_argument_group("run and output")
    out.add_argument("--seed", type=nonneg_int, help="replace every plan's seed")
    out.add_argument("--artifacts", type=Path, metavar="DIR", help="output root (default ./artifacts/<timestamp>)")
    out.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    out.add_argument("--junit", type=Path, metavar="FILE", help="also write one JUnit XML for every scenario run")
    out.add_argument("--timeout", type=positive_float, default=60.0, metavar="S",
                     help="per-scenario timeout in seconds (default 60)")
    out.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv: debug)")
    return p


def build_analyze_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} analyze", description="Re-check a stored run directory (no processes started).")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the CheckReport as JSON")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


# --- scenario selection ------------------------------------------------------------------


def _catalogue() -> dict[str, Any]:
    try:
        from faults.catalogue import CATALOGUE
    except ImportError as exc:
        from harness.errors import InfraError
        raise InfraError(f"the fault catalogue (faults.catalogue) cannot be imported: {exc}") from exc
    return CATALOGUE


def _one_line(scenario: Any) -> str:
    doc = " ".join((scenario.doc or "").split())
    for i, ch in enumerate(doc):
        if ch == "." and (i + 1 == len(doc) or doc[i + 1] == " "):
            return doc[: i + 1]
    return doc


def _fault(name: str) -> Any:
    from harness.errors import UsageError
    cat = _catalogue()
    if name in cat:
        return cat[name]
    near = difflib.get_close_matches(name, list(cat), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(near)}?" if near else "faultrun --list shows them"
    raise UsageError(f"--fault {name}: no such fault; {hint}")


def _plan_scenario(path: Path) -> Any:
    from faults.errors import PlanError
    from faults.plan import load_plan
    from harness.errors import UsageError
    from harness.model import Scenario
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


def _scenario_file(path: Path) -> Any:
    from harness.errors import UsageError
    from harness.model import scenario_from_dict
    if not path.is_file():
        raise UsageError(f"--scenario {path}: file not found")
    try:
        return scenario_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise UsageError(f"--scenario {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # JSON, shape, plan or VDAF errors: the file is wrong
        raise UsageError(f"--scenario {path}: {' '.join(str(exc).split())}") from exc


def apply_overrides(scenario: Any, *, vdaf: str | None, reports: int | None, query_type: str | None) -> Any:
    """--vdaf / --reports / --query-type applied to one scenario's workload."""
    from harness.workload import parse_vdaf, upload_count, vdaf_for, with_reports
    wl = scenario.workload
    if vdaf is not None or reports is not None:
        from harness.heavy_hitters import is_poplar1, with_poplar1
        target = parse_vdaf(vdaf, 1) if vdaf is not None else wl.task.vdaf
        if is_poplar1(target):  # Poplar1 runs the heavy-hitters walk (docs/cli.md)
            wl = with_poplar1(wl, target, reports)
            if query_type is not None:
                wl = attrs.evolve(wl, task=attrs.evolve(wl.task, query_type=query_type))
            return attrs.evolve(scenario, workload=wl)
    if reports is not None:
        wl = with_reports(wl, reports)
    n = upload_count(wl)
    task = wl.task
    if vdaf is not None:
        task = attrs.evolve(task, vdaf=parse_vdaf(vdaf, n))
    elif reports is not None:
        cur = task.vdaf.to_interop()
        params = {k: int(v) for k, v in cur.items() if k != "type"}
        size_key = "bits" if task.vdaf.type == "Prio3Sum" else "length"
        if size_key in params:
            params[size_key] = max(params[size_key], n)
        task = attrs.evolve(task, vdaf=vdaf_for(task.vdaf.type, n, **params))
    if query_type is not None:
        task = attrs.evolve(task, query_type=query_type)
    return attrs.evolve(scenario, workload=attrs.evolve(wl, task=task))


def _select(args: argparse.Namespace) -> list[Any]:
    from harness.errors import UsageError
    if args.list and (args.fault or args.plan or args.scenario or args.all):
        raise UsageError("--list cannot be combined with --fault, --plan, --scenario or --all")
    if args.all and (args.fault or args.plan or args.scenario):
        raise UsageError("--all runs the whole catalogue; drop --fault / --plan (or drop --all)")
    if args.all:
        scenarios = list(_catalogue().values())
    else:
        scenarios = [_fault(n) for n in args.fault] + [_plan_scenario(p) for p in args.plan]
        scenarios += [_scenario_file(p) for p in args.scenario]
    if not scenarios:
        raise UsageError("nothing to run: give --fault NAME, --plan FILE, --scenario FILE, --all or --list")
    from harness.run import check_scenario
    out = []
    for s in scenarios:
        s = apply_overrides(s, vdaf=args.vdaf, reports=args.reports, query_type=args.query_type)
        check_scenario(s)
        out.append(s)
    return out


# --- output ------------------------------------------------------------------------------------


def _console(args: argparse.Namespace | None = None) -> Any:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich exits with status 1 here; a reader that stopped early (`| head`) must
            # neither abort the run nor change its exit status: go quiet and carry on.
            self.quiet = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    return _Console(stderr=bool(getattr(args, "json", False)), highlight=False)


_MARK = {True: "[green]✓ holds[/]", False: "[red]✗ violated[/]", None: "[yellow]? unknown[/]"}
_CLASS_STYLE = {"pass": "green", "clean_failure": "cyan", "violation": "bold red", "infra": "magenta"}


def _faults_applied(history: Sequence[Any]) -> Counter[str]:
    c: Counter[str] = Counter()
    for ev in history:
        if getattr(ev, "event", "") == "fault":
            c[f"{ev.rule_id} ({ev.action})"] += 1
    return c


def _print_result(console: Any, result: Any, scenario: Any, stack_start_s: float | None) -> None:
    from rich.table import Table
    rep = result.report
    vc = rep.verdict_class.value
    console.print(f"[bold]{scenario.name}[/]  [{_CLASS_STYLE.get(vc, 'white')}]{vc.upper()}[/]"
                  f"  (expected {scenario.expect.outcome.value}; exit {result.exit_code})")
    if rep.summary:
        console.print(f"  {rep.summary}")
    if rep.verdicts:
        t = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
        t.add_column("invariant")
        t.add_column("verdict")
        t.add_column("detail", overflow="fold")
        for v in rep.verdicts:
            t.add_row(v.invariant, _MARK[v.valid], v.detail)
        console.print(t)
    applied = _faults_applied(result.history)
    if applied:
        console.print("  faults applied: " + ", ".join(f"{k} x{n}" for k, n in applied.items()))
    else:
        console.print("  faults applied: none")
    for err in result.record.infra_errors:
        console.print(f"  [magenta]infrastructure:[/] {err}")
    rec = result.record
    ups = sum(1 for u in rec.uploads if u.status == "success")
    timing = f"scenario {result.seconds:.2f} s"
    if stack_start_s is not None:
        timing = f"stack start {stack_start_s:.2f} s, " + timing
    console.print(f"  uploads {ups}/{len(rec.uploads)} accepted; collections "
                  + (", ".join(f"{c.label}={c.status}" for c in rec.collections) or "none")
                  + f"; {timing}")
    console.print(f"  run dir: {result.run_dir}")


def _result_json(result: Any) -> dict[str, Any]:
    from harness.model import to_dict
    return {"scenario": result.report.scenario, "verdict_class": result.report.verdict_class.value,
            "exit_code": result.exit_code, "run_dir": str(result.run_dir), "seconds": round(result.seconds, 3),
            "summary": result.report.summary, "verdicts": to_dict(result.report.verdicts),
            "infra_errors": list(result.record.infra_errors)}


def _combine(codes: Sequence[int]) -> int:
    if 1 in codes:
        return 1
    if 3 in codes:
        return 3
    return 0


# --- commands ------------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    from harness.images import ROLES, load_images
    cat = _catalogue()
    images = load_images(args.images)
    if args.json:
        print(json.dumps({
            "faults": [{"name": n, "doc": _one_line(s), "expect": s.expect.outcome.value,
                        "spec_section": s.spec_section} for n, s in cat.items()],
            "implementations": {r: [{"name": e.name, "kind": e.kind, "doc": e.doc} for e in images.entries[r]]
                                for r in ROLES}}, indent=2))
        return 0
    width = max(map(len, cat), default=10)
    print(f"faults ({len(cat)}):")
    for name, s in cat.items():
        print(f"  {name:<{width}}  {_one_line(s)}")
    print("implementations (images.toml; first = default):")
    for role in ROLES:
        for e in images.entries[role]:
            print(f"  {role:<9} {e.name:<12} {e.kind:<12} {e.doc}")
    return 0


def _default_artifacts() -> Path:
    return Path("artifacts") / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _run(args: argparse.Namespace) -> int:
    from harness.artifacts import junit_matrix
    from harness.errors import UsageError
    from harness.run import Stack

    scenarios = _select(args)
    if args.pull and args.backend != "docker":
        raise UsageError("--pull needs --backend docker")
    if args.matrix:
        return _run_matrix(args, scenarios)
    impl: dict[str, str] = {}
    for role, name in args.impl:
        if role in impl:
            raise UsageError(f"--impl {role}= given twice")
        impl[role] = name
    root = args.artifacts or _default_artifacts()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--artifacts {root}: {exc.strerror or exc}") from exc
    console = _console(args)
    results: list[tuple[Any, Any]] = []
    t0 = time.monotonic()
    with Stack.start(artifacts_root=root, impl=impl, images=args.images, backend=args.backend,
                     pull=args.pull) as stack:
        log.info("stack up in %.2f s (%s)", stack.started_s,
                 ", ".join(f"{r}={e.name}" for r, e in stack.impl.items()))
        for i, scenario in enumerate(scenarios, 1):
            if len(scenarios) > 1:
                console.print(f"[dim][{i}/{len(scenarios)}][/] {scenario.name} ...", end="")
            result = stack.run_scenario(scenario, seed=args.seed, timeout_s=args.timeout)
            results.append((scenario, result))
            if len(scenarios) > 1:
                vc = result.report.verdict_class.value
                console.print(f" [{_CLASS_STYLE.get(vc, 'white')}]{vc}[/] ({result.seconds:.2f} s, exit {result.exit_code})")
            elif not args.json:
                _print_result(console, result, scenario, stack.started_s)
        stack_start = stack.started_s
    codes = [r.exit_code for _, r in results]
    if len(results) > 1:
        _write_matrix(root, results)
        if not args.json:
            _print_matrix(console, results, stack_start, time.monotonic() - t0, root)
    if args.junit is not None:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        junit_matrix(args.junit, [(r.report, s, r.seconds) for s, r in results])
    if args.json:
        print(json.dumps({"exit_code": _combine(codes), "artifacts": str(root),
                          "stack_start_s": round(stack_start, 3),
                          "results": [_result_json(r) for _, r in results]}, indent=2))
    return _combine(codes)


def _run_matrix(args: argparse.Namespace, scenarios: list[Any]) -> int:
    """--matrix: implementations x scenarios (harness.impl_matrix)."""
    import shutil

    from harness.errors import UsageError
    from harness.impl_matrix import run_matrix
    root = args.artifacts or _default_artifacts()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--artifacts {root}: {exc.strerror or exc}") from exc
    code = run_matrix(args, scenarios, _console(args), root)
    if args.junit is not None:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "junit.xml", args.junit)
    if args.json:
        doc = json.loads((root / "matrix.json").read_text(encoding="utf-8"))
        print(json.dumps({"exit_code": code, "artifacts": str(root), **doc}, indent=2))
    return code


def _write_matrix(root: Path, results: list[tuple[Any, Any]]) -> None:
    from harness.artifacts import junit_matrix
    cells = [{"scenario": s.name, "verdict_class": r.report.verdict_class.value, "run_dir": str(r.run_dir),
              "exit_code": r.exit_code, "expected": s.expect.outcome.value, "seconds": round(r.seconds, 3),
              "summary": r.report.summary, "spec_section": s.spec_section} for s, r in results]
    (root / "matrix.json").write_text(json.dumps({"cells": cells}, indent=2) + "\n", encoding="utf-8")
    junit_matrix(root / "junit.xml", [(r.report, s, r.seconds) for s, r in results])
    try:
        from harness.report_html import write_matrix_html
    except ImportError:
        return
    try:
        write_matrix_html(root, cells)
    except Exception:
        log.exception("writing the matrix page")


def _print_matrix(console: Any, results: list[tuple[Any, Any]], stack_start: float, total: float,
                  root: Path) -> None:
    import statistics

    from rich.table import Table
    t = Table(title="faultrun matrix", header_style="bold")
    t.add_column("fault")
    t.add_column("verdict")
    t.add_column("expected")
    t.add_column("exit", justify="right")
    t.add_column("s", justify="right")
    for s, r in results:
        vc = r.report.verdict_class.value
        t.add_row(s.name, f"[{_CLASS_STYLE.get(vc, 'white')}]{vc}[/]", s.expect.outcome.value, str(r.exit_code),
                  f"{r.seconds:.2f}")
    console.print(t)
    secs = [r.seconds for _, r in results]
    console.print(f"{len(results)} scenarios; stack start {stack_start:.2f} s; median {statistics.median(secs):.2f} s "
                  f"per scenario; total {total:.1f} s. Matrix: {root / 'matrix.json'}, {root / 'junit.xml'}")


def _analyze(argv: list[str]) -> int:
    from harness.artifacts import exit_code_for
    from harness.errors import InfraError, UsageError
    from harness.model import scenario_from_dict, to_dict
    args = build_analyze_parser().parse_args(argv)
    _logging(args.verbose)
    d: Path = args.dir
    if not d.is_dir():
        raise UsageError(f"analyze {d}: not a directory")
    if not (d / "scenario.json").is_file() or not (d / "record.json").is_file():
        raise UsageError(f"analyze {d}: not a run directory (needs scenario.json and record.json)")
    try:
        from harness.analyze import analyze
    except ImportError as exc:
        raise InfraError(f"harness.analyze is not available: {exc}") from exc
    report = analyze(d)
    try:
        scenario = scenario_from_dict(json.loads((d / "scenario.json").read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"analyze {d}: scenario.json: {exc}") from exc
    code = exit_code_for(report, scenario)
    if args.json:
        print(json.dumps({**to_dict(report), "exit_code": code}, indent=2))
        return code
    from rich.table import Table
    console = _console()
    vc = report.verdict_class.value
    console.print(f"[bold]{report.scenario}[/]  [{_CLASS_STYLE.get(vc, 'white')}]{vc.upper()}[/]  (exit {code})")
    if report.summary:
        console.print(f"  {report.summary}")
    t = Table(box=None, padding=(0, 2), header_style="bold")
    t.add_column("invariant")
    t.add_column("verdict")
    t.add_column("detail", overflow="fold")
    for v in report.verdicts:
        t.add_row(v.invariant, _MARK[v.valid], v.detail)
    console.print(t)
    return code


def _logging(verbose: int) -> None:
    level = logging.WARNING if not verbose else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (never raises for user mistakes)."""
    from dap.errors import VdafError
    from faults.errors import FaultError
    from harness.errors import HarnessError

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = sum(a.count("v") for a in argv if a.startswith("-") and not a.startswith("--") and set(a[1:]) == {"v"})
    verbose += argv.count("--verbose")
    previous = previous_int = None
    try:
        previous = signal.signal(signal.SIGTERM, _sigterm)
        # A shell starts background jobs with SIGINT ignored and Python then installs no
        # KeyboardInterrupt handler: faultrun must still stop its processes on SIGINT.
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread
        pass
    try:
        if argv and argv[0] == "analyze":
            return _analyze(argv[1:])
        if argv and argv[0] == "campaign":
            from harness.campaign import campaign_command
            return campaign_command(argv[1:])
        args = build_parser().parse_args(argv)
        _logging(args.verbose)
        if args.list:
            if args.fault or args.plan or args.scenario or args.all:
                from harness.errors import UsageError
                raise UsageError("--list cannot be combined with --fault, --plan, --scenario or --all")
            return _list(args)
        return _run(args)
    except _Usage as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    except HarnessError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        tail = getattr(exc, "log_tail", "") or getattr(exc.__cause__, "log_tail", "")
        if tail:
            sys.stderr.write(tail if verbose else f"{PROG}: (-v shows the failing process's log)\n")
        return exc.exit_code
    except (VdafError, FaultError) as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    except BrokenPipeError:  # e.g. `faultrun --list | head`
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted; every process was stopped\n")
        return 130
    except SystemExit as exc:  # argparse --help
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    except Exception as exc:  # a harness bug: one line, traceback only with -v
        if verbose:
            log.exception("internal error")
        sys.stderr.write(f"{PROG}: internal error: {type(exc).__name__}: {exc} (run with -v for the traceback)\n")
        return 3
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
