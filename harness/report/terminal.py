"""What a run shows on the terminal: the verdict of one scenario, its invariant table, and the
table of many (rich; the same facts as report.json)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from faults.history import FaultEvent
from faults.scenario import Scenario, to_dict
from harness.check.verdict import CheckReport

__all__ = ["CLASS_STYLE", "NOT_APPLICABLE", "faults_applied", "not_applicable_line", "print_catalogue_matrix",
           "print_check_report", "print_result", "progress_cell", "result_json", "styled"]

MARK = {True: "[green]✓ holds[/]", False: "[red]✗ violated[/]", None: "[yellow]? unknown[/]"}
#: verdict class -> rich style (the HTML pages use the same classes: harness.report.html)
CLASS_STYLE = {"pass": "green", "clean_failure": "cyan", "violation": "bold red", "inconclusive": "yellow",
               "infra": "magenta", "n/a": "dim"}
#: The matrix cell of a scenario left out because a selected implementation lacks its VDAF.
NOT_APPLICABLE = "n/a"


def styled(verdict_class: str, text: str | None = None) -> str:
    return f"[{CLASS_STYLE.get(verdict_class, 'white')}]{text if text is not None else verdict_class}[/]"


def faults_applied(history: Iterable[Any]) -> Counter[str]:
    """``rule (action)`` -> how often it changed a message (skipped or failed attempts not counted)."""
    c: Counter[str] = Counter()
    for ev in history:
        if isinstance(ev, FaultEvent) and ev.changed.applied:
            c[f"{ev.rule_id} ({ev.action})"] += 1
    return c


def _verdict_table(report: CheckReport) -> Any:
    from rich.table import Table  # rich's tables only when printing

    t = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    t.add_column("invariant")
    t.add_column("verdict")
    t.add_column("detail", overflow="fold")
    for v in report.verdicts:
        t.add_row(v.invariant, MARK[v.valid], v.detail)
    return t


def print_check_report(console: Any, report: CheckReport, code: int) -> None:
    """A report alone (``faultrun analyze``)."""
    vc = report.verdict_class.value
    console.print(f"[bold]{report.scenario}[/]  {styled(vc, vc.upper())}  (exit {code})")
    if report.summary:
        console.print(f"  {report.summary}")
    for reason in report.reasons:
        console.print(f"  {styled(vc, vc + ':')} {reason}")
    console.print(_verdict_table(report))


def print_result(console: Any, result: Any, scenario: Scenario, stack_start_s: float | None) -> None:
    rep = result.report
    vc = rep.verdict_class.value
    console.print(f"[bold]{scenario.name}[/]  {styled(vc, vc.upper())}"
                  f"  (expected {scenario.expect.outcome.value}; exit {result.exit_code})")
    if rep.summary:
        console.print(f"  {rep.summary}")
    for reason in rep.reasons:
        console.print(f"  {styled(vc, vc + ':')} {reason}")
    if rep.verdicts:
        console.print(_verdict_table(rep))
    applied = faults_applied(result.history)
    console.print("  faults applied: " + (", ".join(f"{k} x{n}" for k, n in applied.items()) or "none"))
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


def progress_cell(result: Any) -> str:
    """One scenario of many, on its progress line: ``pass (0.61 s, exit 0)``."""
    vc = result.report.verdict_class.value
    return f"{styled(vc)} ({result.seconds:.2f} s, exit {result.exit_code})"


def result_json(result: Any) -> dict[str, Any]:
    return {"scenario": result.report.scenario, "verdict_class": result.report.verdict_class.value,
            "exit_code": result.exit_code, "run_dir": str(result.run_dir), "seconds": round(result.seconds, 3),
            "summary": result.report.summary, "reasons": list(result.report.reasons),
            "verdicts": to_dict(result.report.verdicts), "infra_errors": list(result.record.infra_errors)}


def not_applicable_line(scenario: str, why: str) -> str:
    """The one line for a scenario left out: ``NAME: not applicable: leader janus does not ...``."""
    return f"{scenario}: not applicable: {why}"


def print_catalogue_matrix(console: Any, results: Sequence[tuple[Scenario, Any]], stack_start: float, total: float,
                           root: Path, not_applicable: Sequence[tuple[Scenario, str]] = (),
                           order: Sequence[str] = ()) -> None:
    """Many scenarios on one stack (``faultrun --all``); ``not_applicable``: the ones left out
    (scenario, why), shown as ``n/a`` rows; rows in ``order`` (scenario names) when given."""
    from rich.table import Table

    t = Table(title="faultrun matrix", header_style="bold")
    t.add_column("fault")
    t.add_column("verdict")
    t.add_column("expected")
    t.add_column("exit", justify="right")
    t.add_column("s", justify="right")
    rows: list[tuple[Scenario, Any]] = [*results, *((s, None) for s, _ in not_applicable)]
    rank = {name: i for i, name in enumerate(order)}
    rows.sort(key=lambda row: rank.get(row[0].name, len(rank)))  # stable: as given otherwise
    for s, r in rows:
        if r is None:
            t.add_row(s.name, styled(NOT_APPLICABLE), s.expect.outcome.value, "", "")
        else:
            t.add_row(s.name, styled(r.report.verdict_class.value), s.expect.outcome.value, str(r.exit_code),
                      f"{r.seconds:.2f}")
    console.print(t)
    counts = Counter(r.report.verdict_class.value for _, r in results)
    if not_applicable:
        counts[NOT_APPLICABLE] = len(not_applicable)
    secs = [r.seconds for _, r in results]
    median = f"median {statistics.median(secs):.2f} s per scenario; " if secs else ""
    console.print(f"{len(results) + len(not_applicable)} scenarios "
                  f"({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))}); "
                  f"stack start {stack_start:.2f} s; {median}"
                  f"total {total:.1f} s. Matrix: {root / 'matrix.json'}, {root / 'junit.xml'}")
