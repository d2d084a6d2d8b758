"""harness.cli.analyze: re-checking stored run directories (tests/data/runs/*) without running anything.

Each directory holds scenario.json, record.json, history.jsonl and expected.json (the verdict
class, the invariants that must be violated, whether the Expectation is met, and why). The
"must fail" runs prove the checker can fail: double count, forged bucket, garbage sum, auth
bypass, unexpected 5xx, lost acknowledged report, disagreeing collections.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from faults.scenario import to_dict
from harness.check.verdict import VerdictClass, check_report_from_dict, exit_code_for, expectation_met
from harness.cli.analyze import analyze
from harness.report.rundir import AnalyzeError, load_run

RUNS = Path(__file__).parent / "data" / "runs"
ALL = sorted(p.name for p in RUNS.iterdir() if (p / "expected.json").is_file())
MUST_FAIL = {"double-count", "forged-bucket", "wrong-sum", "auth-bypass", "unexpected-5xx",
             "lost-acknowledged-report", "collections-disagree"}


def test_the_must_fail_runs_are_there():
    assert MUST_FAIL <= set(ALL)
    for name in MUST_FAIL:
        assert json.loads((RUNS / name / "expected.json").read_text())["verdict_class"] == "violation"


@pytest.mark.parametrize("name", ALL)
def test_stored_run(name):
    want = json.loads((RUNS / name / "expected.json").read_text())
    report = analyze(RUNS / name)
    violated = sorted(v.invariant for v in report.verdicts if v.valid is False)
    assert report.verdict_class == VerdictClass(want["verdict_class"]), report.summary
    assert violated == sorted(want["violated"]), [(v.invariant, v.detail) for v in report.verdicts]
    assert not [v for v in report.verdicts if v.valid is None], report.summary
    scenario = load_run(RUNS / name).scenario
    assert expectation_met(report.verdict_class, scenario.expect) is want["expectation_met"]
    assert ("NOT met" not in report.summary) is want["expectation_met"] or report.verdict_class == "infra"
    # every failed verdict carries evidence
    for v in report.verdicts:
        if v.valid is False:
            assert v.detail and v.evidence
    # the report round-trips through JSON (report.json)
    again = check_report_from_dict(json.loads(json.dumps(to_dict(report))))
    assert again == report


def test_evidence_names_the_reports():
    rep = analyze(RUNS / "double-count")
    safety = next(v for v in rep.verdicts if v.invariant == "safety")
    assert safety.evidence["collections"]["main"]["double_counted"] == [2]
    rep = analyze(RUNS / "auth-bypass")
    auth = next(v for v in rep.verdicts if v.invariant == "auth")
    assert auth.evidence["tampered"][0]["status"] == 201 and auth.evidence["tampered"][0]["seqs"]
    rep = analyze(RUNS / "lost-acknowledged-report")
    assert next(v for v in rep.verdicts if v.invariant == "completeness").evidence["lost"] == {"main": [3]}


def test_history_is_read_from_the_records_first_seq(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUNS / "unexpected-5xx", run)
    record = json.loads((run / "record.json").read_text())
    last = max(json.loads(x)["seq"] for x in (run / "history.jsonl").read_text().splitlines())
    record["history_since_seq"] = last - 1  # the 500 exchange is the last two events
    (run / "record.json").write_text(json.dumps(record))
    assert analyze(run).verdict_class == VerdictClass.VIOLATION
    record["history_since_seq"] = last + 1  # ... and now nothing of the history belongs to this run
    (run / "record.json").write_text(json.dumps(record))
    rep = analyze(run)
    assert rep.verdict_class == VerdictClass.INCONCLUSIVE  # unknown is never a pass
    assert rep.reasons and "nothing was recorded" in rep.reasons[0]


def test_torn_last_line_is_a_gap_not_a_verdict(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUNS / "auth-bypass", run)
    assert analyze(run).verdict_class == VerdictClass.VIOLATION
    with open(run / "history.jsonl", "a") as fh:
        fh.write('{"seq": 999, "event": "mess')
    rep = analyze(run)
    assert rep.verdict_class == VerdictClass.INCONCLUSIVE
    assert "truncated" in rep.reasons[0] and "inconclusive" in rep.summary


def test_missing_history_is_inconclusive_never_pass(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUNS / "honest-pass", run)
    assert analyze(run).verdict_class == VerdictClass.PASS
    (run / "history.jsonl").unlink()
    rep = analyze(run)
    assert rep.verdict_class == VerdictClass.INCONCLUSIVE
    assert "history.jsonl: missing" in rep.reasons[0]
    assert exit_code_for(rep, load_run(run).scenario) == 4


def test_a_gap_in_the_history_is_inconclusive(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUNS / "honest-pass", run)
    lines = (run / "history.jsonl").read_text().splitlines(keepends=True)
    (run / "history.jsonl").write_text("".join(lines[:3] + lines[4:]))  # one event lost
    rep = analyze(run)
    assert rep.verdict_class == VerdictClass.INCONCLUSIVE
    assert "gap" in rep.reasons[0]


def test_unknown_history_schema_version_is_rejected(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUNS / "honest-pass", run)
    body = (run / "history.jsonl").read_text()
    (run / "history.jsonl").write_text('{"event": "schema", "history_version": 7}\n' + body)
    rep = analyze(run)
    assert rep.verdict_class == VerdictClass.INCONCLUSIVE
    assert "schema version 7" in rep.reasons[0]


def test_unreadable_run_dirs(tmp_path):
    with pytest.raises(AnalyzeError, match="not a run directory"):
        analyze(tmp_path / "nope")
    run = tmp_path / "run"
    shutil.copytree(RUNS / "honest-pass", run)
    (run / "record.json").write_text("{not json")
    with pytest.raises(AnalyzeError, match="record.json"):
        analyze(run)
    (run / "record.json").write_text(json.dumps({"scenario": "x", "bogus": 1}))
    with pytest.raises(AnalyzeError, match="unknown keys"):
        analyze(run)
    (run / "scenario.json").unlink()
    with pytest.raises(AnalyzeError, match="scenario.json: missing"):
        analyze(run)
