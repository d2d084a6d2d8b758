"""Re-check a stored run directory without re-running anything (``faultrun analyze DIR``).

A run directory (layout in :mod:`harness.model`) holds ``scenario.json``, ``record.json`` and
``history.jsonl``; :func:`analyze` loads them and hands them to :func:`harness.checker.check`.
A missing or unreadable file is a harness problem, raised as :class:`AnalyzeError` (exit 3),
except a missing ``history.jsonl``, which is checked as an empty history (the invariants
that need it then have nothing to judge; the report says so).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from faults.history import read_history
from harness.checker import check
from harness.model import CheckReport, run_record_from_dict, scenario_from_dict

__all__ = ["AnalyzeError", "analyze", "load_run"]


class AnalyzeError(Exception):
    """A run directory cannot be read (missing file, bad JSON, schema mismatch)."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(message)


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AnalyzeError(f"{path}: missing", path=path) from exc
    except (OSError, ValueError) as exc:
        raise AnalyzeError(f"{path}: {exc}", path=path) from exc


def load_run(run_dir: str | os.PathLike[str]):
    """(scenario, record, history) of a stored run directory."""
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
        history = read_history(hist_path, since_seq=record.history_since_seq) if hist_path.exists() else []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AnalyzeError(f"{hist_path}: {type(exc).__name__}: {exc}", path=hist_path) from exc
    return scenario, record, history


def analyze(run_dir: str | os.PathLike[str]) -> CheckReport:
    """Re-check the run stored in ``run_dir``: the same CheckReport ``faultrun run`` produced."""
    scenario, record, history = load_run(run_dir)
    return check(record, history, scenario)
