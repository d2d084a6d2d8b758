"""Writing run directories and their JUnit / JSON reports (layout: :mod:`harness.model`).

``report.html`` (per run) and the matrix page come from :mod:`harness.report_html` when it
is installed; failing to write them is logged, never fatal. ``flows.mitm`` is a symlink to
the stack's single mitmproxy flow file (one proxy serves every scenario of a stack; filter
by task ID in mitmweb: ``~u <task_id>``).
"""

from __future__ import annotations

import json
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from faults.history import Event, event_to_dict
from faults.plan import dump_plan
from harness.model import CheckReport, Outcome, RunRecord, Scenario, VerdictClass, to_dict
from harness.provenance import code_identity

__all__ = ["exit_code_for", "junit_matrix", "junit_run", "unique_dir", "write_json", "write_run_dir"]

log = logging.getLogger(__name__)


def unique_dir(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``... if taken; created."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "scenario"
    n = 1
    while True:
        d = parent / (safe if n == 1 else f"{safe}-{n}")
        try:
            d.mkdir(parents=True)
            return d
        except FileExistsError:
            n += 1


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(to_dict(value), indent=2, default=str) + "\n", encoding="utf-8")


def exit_code_for(report: CheckReport | None, scenario: Scenario) -> int:
    """0 pass (or an allowed clean failure), 1 violation / unexpected clean failure, 3 infra."""
    if report is None:
        return 3
    vc = report.verdict_class
    if vc == VerdictClass.PASS:
        return 0
    if vc == VerdictClass.CLEAN_FAILURE:
        return 0 if scenario.expect.outcome in (Outcome.CLEAN_FAILURE, Outcome.PASS_OR_CLEAN_FAILURE) else 1
    if vc == VerdictClass.VIOLATION:
        return 1
    return 3


def _suite(report: CheckReport | None, scenario: Scenario, seconds: float, infra: Sequence[str] = ()) -> ET.Element:
    suite = ET.Element("testsuite", name=f"faultrun.{scenario.name}")
    cases = 0
    failures = errors = skipped = 0
    verdicts = report.verdicts if report is not None else ()
    for v in verdicts:
        case = ET.SubElement(suite, "testcase", classname=f"faultrun.{scenario.name}", name=v.invariant,
                             time="0")
        cases += 1
        if v.valid is False:
            f = ET.SubElement(case, "failure", message=v.detail[:500] or "invariant violated", type="violation")
            f.text = json.dumps(v.evidence, indent=1, default=str)
            failures += 1
        elif v.valid is None:
            ET.SubElement(case, "skipped", message=f"unknown: {v.detail}"[:500])
            skipped += 1
    case = ET.SubElement(suite, "testcase", classname=f"faultrun.{scenario.name}", name="verdict",
                         time=f"{seconds:.3f}")
    cases += 1
    code = exit_code_for(report, scenario)
    summary = report.summary if report is not None else "no check report"
    cls = report.verdict_class.value if report is not None else "infra"
    if code == 1:
        ET.SubElement(case, "failure", message=f"{cls}: {summary}"[:500], type=cls)
        failures += 1
    elif code == 3:
        e = ET.SubElement(case, "error", message=f"{cls}: {summary}"[:500], type="infra")
        e.text = "\n".join(infra)
        errors += 1
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{seconds:.3f}")
    return suite


def junit_run(path: Path, report: CheckReport | None, scenario: Scenario, seconds: float,
              infra: Sequence[str] = ()) -> None:
    """One testsuite: one testcase per invariant plus ``verdict`` (fails per the exit rule)."""
    root = ET.Element("testsuites", name="faultrun")
    root.append(_suite(report, scenario, seconds, infra))
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def junit_matrix(path: Path, runs: Iterable[tuple[CheckReport | None, Scenario, float]]) -> None:
    root = ET.Element("testsuites", name="faultrun")
    for report, scenario, seconds in runs:
        root.append(_suite(report, scenario, seconds))
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _copy_slices(dest: Path, slices: Mapping[str, tuple[Path, int]]) -> None:
    """Copy each log from its recorded offset (what the scenario appended) into ``dest``."""
    dest.mkdir(exist_ok=True)
    for name, (src, offset) in slices.items():
        try:
            with open(src, "rb") as fh:
                fh.seek(offset)
                (dest / name).write_bytes(fh.read())
        except OSError as exc:
            log.warning("copying log %s: %s", src, exc)


def write_run_dir(run_dir: Path, *, scenario: Scenario, record: RunRecord, history: Sequence[Event],
                  report: CheckReport | None, log_slices: Mapping[str, tuple[Path, int]],
                  flows: Path | None) -> None:
    """Everything but report.html (see :func:`harness.run.write_report_html`)."""
    write_json(run_dir / "scenario.json", scenario)
    dump_plan(scenario.plan, run_dir / "plan.toml")
    write_json(run_dir / "record.json", record)
    (run_dir / "code.json").write_text(json.dumps(code_identity(), indent=2) + "\n", encoding="utf-8")
    with open(run_dir / "history.jsonl", "w", encoding="utf-8") as fh:
        for ev in history:
            fh.write(json.dumps(event_to_dict(ev), default=str) + "\n")
    _copy_slices(run_dir / "logs", log_slices)
    if flows is not None:
        link = run_dir / "flows.mitm"
        try:
            link.symlink_to(os.path.relpath(flows, run_dir))
        except OSError as exc:
            log.warning("linking flows: %s", exc)
    if report is not None:
        write_json(run_dir / "report.json", report)
    junit_run(run_dir / "junit.xml", report, scenario, max(record.finished_wall - record.started_wall, 0.0),
              record.infra_errors)
