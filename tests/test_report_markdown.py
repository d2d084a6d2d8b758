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
    assert "n/a" not in md.split("Not a met pass:")[1]  # left out, not a finding
    assert "2 pass" in lines[2] and "1 violation (expectation not met)" in lines[2]


def test_cli_reads_titled_files_and_refuses_a_bad_one_in_a_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) \
        -> None:
    (tmp_path / "m.json").write_text(json.dumps(_doc()))
    assert main([f"Prio3Sum={tmp_path / 'm.json'}"]) == 0
    assert capsys.readouterr().out.startswith("### Prio3Sum\n")
    assert main([str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("markdown: ") and err.count("\n") == 1
