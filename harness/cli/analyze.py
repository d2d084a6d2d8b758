"""``faultrun analyze DIR``: re-check a stored run directory without re-running anything.

The directory (layout in :mod:`harness.report.rundir`) is read back with
:func:`~harness.report.rundir.load_run` and handed to :func:`harness.check.checker.check`:
the same CheckReport the run produced, or a different one if the checker changed. A run
directory whose ``history.jsonl`` is missing, unreadable or truncated is checked as such: the
verdict is ``inconclusive`` (exit 4), never a pass.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from faults.scenario import to_dict
from harness.check.checker import check
from harness.check.verdict import CheckReport, exit_code_for
from harness.cli.args import PROG, Parser, console, setup_logging
from harness.errors import UsageError
from harness.report.rundir import load_run
from harness.report.terminal import print_check_report

__all__ = ["analyze", "analyze_command", "build_analyze_parser"]


def build_analyze_parser() -> argparse.ArgumentParser:
    p = Parser(prog=f"{PROG} analyze", description="Re-check a stored run directory (no processes started).")
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the CheckReport as JSON")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def analyze(run_dir: str | os.PathLike[str]) -> CheckReport:
    """Re-check the run stored in ``run_dir``."""
    run = load_run(run_dir)
    return check(run.record, run.history, run.scenario, history_problems=run.history_problems)


def analyze_command(argv: list[str]) -> int:
    args = build_analyze_parser().parse_args(argv)
    setup_logging(args.verbose)
    d: Path = args.dir
    if not d.is_dir():
        raise UsageError(f"analyze {d}: not a directory")
    if not (d / "scenario.json").is_file() or not (d / "record.json").is_file():
        raise UsageError(f"analyze {d}: not a run directory (needs scenario.json and record.json)")
    run = load_run(d)
    report = check(run.record, run.history, run.scenario, history_problems=run.history_problems)
    code = exit_code_for(report, run.scenario)
    if args.json:
        print(json.dumps({**to_dict(report), "exit_code": code}, indent=2))
    else:
        print_check_report(console(), report, code)
    return code
