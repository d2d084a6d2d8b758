"""Freezing campaign failures as regression cases (``tests/regressions/*.json``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from faults.scenario import scenario_from_dict, to_dict
from harness import REPO
from harness.campaign.result import CampaignFailure
from harness.check.verdict import VerdictClass

__all__ = ["REGRESSIONS_DIR", "freeze", "load_regression"]


REGRESSIONS_DIR = REPO / "tests" / "regressions"


def freeze(failure: CampaignFailure, directory: Path = REGRESSIONS_DIR, *, impl: Mapping[str, str] | None = None,
           images: Path | None = None, name: str | None = None,
           expected_verdict: str | None = None) -> Path:
    """Write ``failure`` as a regression case ``<directory>/<name>.json`` (literal scenario,
    the implementation it ran against, the expected verdict class); return the path.

    ``tests/regressions/test_regressions.py`` runs every such file. The default expected
    verdict is the failure's own class (``violation``, or ``clean_failure`` for an
    unexpected clean failure: the scenario's expectation is ``pass``): it pins that the
    harness keeps detecting this bug in that implementation; for an open bug in an
    implementation that should be fixed, edit it to ``"expected_verdicts": ["pass"]`` (or
    ``["pass", "clean_failure"]`` for a violation) with ``"xfail": "<why>"``.
    """
    if expected_verdict is None:
        expected_verdict = failure.report.verdict_class.value
    directory.mkdir(parents=True, exist_ok=True)
    stem = name or f"campaign-seed{failure.seed}-" + "-".join(x for x in failure.signature if x != "|")
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:100]
    path = directory / f"{stem}.json"
    n = 2
    while path.exists():
        path = directory / f"{stem}-{n}.json"
        n += 1
    img = None
    if images is not None:
        p = Path(images).resolve()
        img = str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)
    data = {
        "name": path.stem,
        "expected_verdicts": [expected_verdict],
        "expected_violations": sorted(v.invariant for v in failure.report.verdicts if v.valid is False),
        "impl": dict(impl or {}),
        "images": img,
        "seed": failure.seed,
        "found_by": failure.command,
        "summary": failure.report.summary,
        "scenario": to_dict(attrs.evolve(failure.scenario, name=path.stem)),
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def load_regression(path: Path) -> dict[str, Any]:
    """A regression file as data, with ``scenario`` built (ValueError on a bad file)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "scenario" not in data or "expected_verdicts" not in data:
        raise ValueError(f"{path}: needs 'scenario' and 'expected_verdicts'")
    expected = [VerdictClass(v).value for v in data["expected_verdicts"]]
    violations = data.get("expected_violations", [])
    if not isinstance(violations, list) or not all(isinstance(x, str) for x in violations):
        raise ValueError(f"{path}: expected_violations must be a list of invariant names")
    return {**data, "expected_verdicts": expected, "expected_violations": violations,
            "scenario": scenario_from_dict(data["scenario"])}
