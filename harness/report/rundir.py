"""Writing (and reading back) run directories and their JUnit / JSON reports.

Run directory layout (one per scenario run)::

    scenario.json   the Scenario (workload + plan + expectation; faults.scenario)
    plan.toml       the plan alone, loadable with ``faultrun --plan``
    record.json     the RunRecord (what the workload did and saw; harness.record)
    code.json       the code identity (version, git commit, dirty flag, source digest)
    history.jsonl   the proxy's history for this scenario only
    flows.mitm      this scenario's mitmproxy flows (open in mitmweb)
    logs/           role logs
    report.json     the CheckReport
    junit.xml       one testcase per invariant
    report.html     sequence chart (Client, Collector, Leader, Helper lanes)

``report.html`` (per run) and the matrix page come from :mod:`harness.report.html` when it
is installed; failing to write them is logged, never fatal. ``flows.mitm`` is the file the
proxy saved this scenario's flows to, moved here when the scenario ended
(:mod:`harness.run.stack`); with a proxy that cannot start one file per scenario it is a
symlink to the stack's single flows file instead (filter by task ID in mitmweb:
``~u <task_id>``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from faults.history import Event, load_history, write_history
from faults.plan import dump_plan
from faults.scenario import Scenario, scenario_from_dict, to_dict
from harness.check.verdict import CheckReport, ExitCode, exit_code_for
from harness.errors import InfraError
from harness.record import RunRecord, run_record_from_dict
from harness.report.provenance import code_identity

__all__ = ["AnalyzeError", "StoredRun", "junit_matrix", "junit_run", "junit_suite", "load_run", "not_applicable_cell",
           "unique_dir", "write_catalogue_matrix", "write_json", "write_run_dir"]

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


def junit_suite(report: CheckReport | None, scenario: Scenario, seconds: float, infra: Sequence[str] = ()) -> ET.Element:
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
        elif v.valid is None:  # could not decide: the run is inconclusive, an error, never skipped
            e = ET.SubElement(case, "error", message=f"unknown: {v.detail}"[:500], type="inconclusive")
            e.text = json.dumps(v.evidence, indent=1, default=str)
            errors += 1
    case = ET.SubElement(suite, "testcase", classname=f"faultrun.{scenario.name}", name="verdict",
                         time=f"{seconds:.3f}")
    cases += 1
    code = exit_code_for(report, scenario)
    summary = report.summary if report is not None else "no check report"
    cls = report.verdict_class.value if report is not None else "infra"
    if code == ExitCode.FAILED:
        ET.SubElement(case, "failure", message=f"{cls}: {summary}"[:500], type=cls)
        failures += 1
    elif code in (ExitCode.INFRA, ExitCode.INCONCLUSIVE):
        e = ET.SubElement(case, "error", message=f"{cls}: {summary}"[:500], type=cls)
        e.text = "\n".join([*infra, *(report.reasons if report is not None else ())])
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
    root.append(junit_suite(report, scenario, seconds, infra))
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def junit_matrix(path: Path, runs: Iterable[tuple[CheckReport | None, Scenario, float]]) -> None:
    root = ET.Element("testsuites", name="faultrun")
    for report, scenario, seconds in runs:
        root.append(junit_suite(report, scenario, seconds))
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
                  flows: Path | None, move_flows: bool = False) -> None:
    """Everything but report.html (see :func:`harness.report.html.render_report_html`).
    ``flows`` is moved in as ``flows.mitm`` (``move_flows``: the scenario's own file) or linked."""
    write_json(run_dir / "scenario.json", scenario)
    dump_plan(scenario.plan, run_dir / "plan.toml")
    write_json(run_dir / "record.json", record)
    (run_dir / "code.json").write_text(json.dumps(code_identity(), indent=2) + "\n", encoding="utf-8")
    write_history(run_dir / "history.jsonl", history)
    _copy_slices(run_dir / "logs", log_slices)
    if flows is not None and move_flows:
        try:
            shutil.move(flows, run_dir / "flows.mitm")
        except OSError as exc:
            log.warning("moving flows %s: %s", flows, exc)
    elif flows is not None:
        link = run_dir / "flows.mitm"
        try:
            link.symlink_to(os.path.relpath(flows, run_dir))
        except OSError as exc:
            log.warning("linking flows: %s", exc)
    if report is not None:
        write_json(run_dir / "report.json", report)
    junit_run(run_dir / "junit.xml", report, scenario, max(record.finished_wall - record.started_wall, 0.0),
              record.infra_errors)


def not_applicable_cell(scenario: Scenario, why: str, **extra: Any) -> dict[str, Any]:
    """The matrix cell of a scenario left out of a run: a selected implementation lacks its
    VDAF (``images.toml`` ``vdafs``). Verdict ``n/a``, exit code 0 (it changes nothing)."""
    return {"scenario": scenario.name, **extra, "verdict_class": "n/a", "exit_code": 0, "run_dir": None,
            "expected": scenario.expect.outcome.value, "seconds": 0.0, "summary": f"not applicable: {why}",
            "spec_section": scenario.spec_section, "not_applicable": why}


def write_catalogue_matrix(root: Path, results: Sequence[tuple[Scenario, Any]],
                           not_applicable: Sequence[tuple[Scenario, str]] = (), order: Sequence[str] = ()) -> None:
    """``matrix.json``, ``junit.xml`` and ``matrix.html`` for many scenarios run on one stack;
    ``not_applicable`` (scenario, why) are ``n/a`` cells (:func:`not_applicable_cell`), cells
    in ``order`` (scenario names) when given."""
    from harness.report.html import write_matrix_html  # the page's module is large: only when one is drawn

    cells = [{"scenario": s.name, "verdict_class": r.report.verdict_class.value, "run_dir": str(r.run_dir),
              "exit_code": r.exit_code, "expected": s.expect.outcome.value, "seconds": round(r.seconds, 3),
              "summary": r.report.summary, "spec_section": s.spec_section} for s, r in results]
    cells += [not_applicable_cell(s, why) for s, why in not_applicable]
    rank = {name: i for i, name in enumerate(order)}
    cells.sort(key=lambda c: rank.get(c["scenario"], len(rank)))
    (root / "matrix.json").write_text(json.dumps({"cells": cells}, indent=2) + "\n", encoding="utf-8")
    junit_matrix(root / "junit.xml", [(r.report, s, r.seconds) for s, r in results])
    try:
        write_matrix_html(root, cells)
    except Exception:
        log.exception("writing the matrix page")


# --- reading a run directory back ---------------------------------------------------------------------


class AnalyzeError(InfraError):
    """A run directory cannot be read (missing file, bad JSON, schema mismatch): exit 3."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(message)


@attrs.frozen
class StoredRun:
    """A run directory read back: what the checker needs, and what is wrong with its history."""

    scenario: Scenario
    record: RunRecord
    history: tuple[Event, ...]
    #: the history is missing, truncated, of an unknown schema or has a bad line (one line each)
    history_problems: tuple[str, ...] = ()


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AnalyzeError(f"{path}: missing", path=path) from exc
    except (OSError, ValueError) as exc:
        raise AnalyzeError(f"{path}: {exc}", path=path) from exc


def load_run(run_dir: str | os.PathLike[str]) -> StoredRun:
    """A stored run directory (AnalyzeError if scenario.json or record.json cannot be used; a
    missing or damaged history.jsonl is named in ``history_problems``, never guessed around)."""
    d = Path(run_dir)
    if not d.is_dir():
        raise AnalyzeError(f"{d}: not a run directory", path=d)
    try:
        scenario = scenario_from_dict(_load_json(d / "scenario.json"))
        record = run_record_from_dict(_load_json(d / "record.json"))
    except AnalyzeError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise AnalyzeError(f"{d}: {type(exc).__name__}: {exc}", path=d) from exc
    hist_path = d / "history.jsonl"
    try:
        loaded = load_history(hist_path, since_seq=record.history_since_seq)
    except FileNotFoundError:
        return StoredRun(scenario, record, (), (f"{hist_path}: missing: nothing to judge the run by",))
    except OSError as exc:
        return StoredRun(scenario, record, (), (f"{hist_path}: unreadable: {exc.strerror or exc}",))
    return StoredRun(scenario, record, loaded.events, loaded.problems)
