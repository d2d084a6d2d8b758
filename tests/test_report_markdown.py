"""harness.report.markdown: the results-page tables from matrix.json files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.report.markdown import main, matrix_markdown

COMBO_J = "client=reference,leader=janus,helper=janus,collector=reference"
COMBO_R = "client=reference,leader=reference,helper=reference,collector=reference"


def _doc() -> dict:
    return {"combos": [{"label": COMBO_R}, {"label": COMBO_J}], "cells": [
        {"combo": COMBO_R, "scenario": "duplicate-report", "verdict_class": "pass", "exit_code": 0, "seconds": 1.2,
         "expected": "pass", "summary": "pass: 16/16 invariants hold; expected pass: met"},
        {"combo": COMBO_J, "scenario": "duplicate-report", "verdict_class": "violation", "exit_code": 1,
         "seconds": 4.4, "expected": "pass", "summary": "violation: error-typing"},
        {"combo": COMBO_R, "scenario": "poplar1-heavy-hitters", "verdict_class": "pass", "exit_code": 0,
         "seconds": 3.0, "expected": "pass", "summary": "pass"},
        {"combo": COMBO_J, "scenario": "poplar1-heavy-hitters", "verdict_class": "n/a", "exit_code": 0,
         "seconds": 0.0, "expected": "pass", "summary": "not applicable: leader janus does not support Poplar1"},
    ]}


def test_a_table_per_file_and_every_cell_that_is_not_a_met_pass_listed() -> None:
    md = matrix_markdown("Prio3Count", _doc())
    lines = md.splitlines()
    assert lines[0] == "### Prio3Count"
    assert "| scenario | expected | `ref/ref/ref/ref` | `ref/janus/janus/ref` |" in lines
    assert "| `duplicate-report` | pass | pass (1 s) | violation ✗ (4 s) |" in lines
    assert "| `poplar1-heavy-hitters` | pass | pass (3 s) | n/a |" in lines
    assert lines[-1] == "- `duplicate-report` on `ref/janus/janus/ref`: violation: error-typing"
    assert "Expectation not met:" in lines and "n/a" not in md.split("Expectation not met:")[1]
    assert "2 pass" in lines[2] and "1 violation (expectation not met)" in lines[2]


def test_cli_reads_titled_files_and_refuses_a_bad_one_in_a_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) \
        -> None:
    (tmp_path / "m.json").write_text(json.dumps(_doc()))
    assert main([f"Prio3Sum={tmp_path / 'm.json'}"]) == 0
    assert capsys.readouterr().out.startswith("### Prio3Sum\n")
    assert main([str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("markdown: ") and err.count("\n") == 1


def test_clean_failures_and_noted_passes_get_their_own_lists_clipped() -> None:
    doc = _doc()
    doc["cells"] += [
        {"combo": COMBO_J, "scenario": "corrupt-helper-share", "verdict_class": "clean_failure", "exit_code": 0,
         "seconds": 2.0, "expected": "clean_failure",
         "summary": "clean_failure: poll: POST http://127.0.0.1:16711/tasks/abc/collection_jobs/def: HTTP 400 "
                    "batchMismatch " + "x" * 400},
        {"combo": COMBO_J, "scenario": "drop-agg-share-response", "verdict_class": "pass", "exit_code": 0,
         "seconds": 6.0, "expected": "pass", "summary": "pass: 16/16 invariants hold; note: Helper: re-sealed"},
    ]
    md = matrix_markdown("Prio3Count", doc)
    failed = md.split("Clean failures, as expected: how each ended:")[1].split("Passes with a note")[0]
    assert "`corrupt-helper-share` on `ref/janus/janus/ref`: clean_failure: poll: POST … HTTP 400 batchMismatch" \
        in failed
    assert max(len(line) for line in failed.splitlines()) < 320 and "…" in failed
    assert "`drop-agg-share-response` on `ref/janus/janus/ref`: pass: 16/16 invariants hold; note: Helper: re-sealed" \
        in md.split("Passes with a note or an optional behaviour not done:")[1]


def test_exchanges_say_what_the_target_answered_from_the_history(tmp_path: Path) -> None:
    from harness.report.markdown import exchanges

    run = tmp_path / COMBO_J / "duplicate-report"
    run.mkdir(parents=True)
    events = [{"event": "schema", "history_version": 1},
              {"event": "message", "kind": "upload", "phase": "request"},
              {"event": "message", "kind": "upload", "phase": "request"},
              {"event": "message", "kind": "agg_init", "phase": "response", "status": 200},
              {"event": "fault", "rule_id": "lose", "action": "drop-response", "kind": "agg_init"},
              {"event": "message", "kind": "agg_init", "phase": "error", "status": None},
              {"event": "message", "kind": "collection_poll", "phase": "response", "status": 202},
              {"event": "message", "kind": "collection_poll", "phase": "response", "status": 200}]
    (run / "history.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\nnot json\n")
    assert exchanges(run) == ("2 upload(s); agg_init 200×1 lost×1; collection_poll 200×1 202×1; "
                              "fired: lose drop-response×1")
    assert exchanges(tmp_path / "nothing") == ""
    doc = _doc()
    doc["cells"][1]["run_dir"] = f"{COMBO_J}/duplicate-report"
    md = matrix_markdown("Prio3Count", doc, root=tmp_path, exchanges_of="ref/janus/janus/ref")
    assert "| `duplicate-report` | violation | 2 upload(s); agg_init 200×1 lost×1;" in md
