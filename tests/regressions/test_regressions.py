"""Frozen regression cases: every ``tests/regressions/*.json`` runs as ``test_repro[<name>]``.

A case holds a literal scenario (workload + plan + expectation), the implementation it runs
against (``impl``, ``images`` relative to the repository) and the verdict classes it must end
in (``expected_verdicts``) and, for a violation, the invariants it must break
(``expected_violations``). ``faultrun campaign --freeze`` writes them from shrunk failures
(:func:`harness.campaign.freeze`); a hand-written one is the same shape. ``xfail``: a reason
string marks a case for an open bug (strict: fixing it turns the xfail into a failure, so the
case gets updated).

Cases that name the same implementation share one Stack (started lazily, closed at the end).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.campaign import load_regression

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CASES = sorted(HERE.glob("*.json"))


def test_regressions_directory_is_readable_and_every_case_loads() -> None:
    # collected even with no case files: the suite never silently has nothing here
    assert HERE.is_dir()
    names = set()
    for path in CASES:
        case = load_regression(path)
        assert case["scenario"].name == path.stem, f"{path.name}: scenario name must be the file stem"
        assert case["expected_verdicts"], f"{path.name}: no expected verdict"
        if "violation" in case["expected_verdicts"]:  # a violation is pinned by the invariants it breaks
            assert case["expected_violations"], f"{path.name}: expected_violations names no invariant"
        names.add(path.stem)
    assert len(names) == len(CASES)


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Any, Any]]:
    opened: dict[Any, Any] = {}
    yield opened
    for s in opened.values():
        s.close()


def _stack(stacks: dict[Any, Any], case: dict[str, Any], root: Path) -> Any:
    from harness.run import Stack
    images = case.get("images")
    key = (json.dumps(case.get("impl") or {}, sort_keys=True), images)
    if key not in stacks:
        stacks[key] = Stack.start(artifacts_root=root / f"stack-{len(stacks)}", impl=case.get("impl") or {},
                                  images=None if images is None else REPO / images)
    return stacks[key]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_repro(path: Path, stacks: dict[Any, Any], tmp_path_factory: pytest.TempPathFactory,
               request: pytest.FixtureRequest) -> None:
    case = load_regression(path)
    if case.get("xfail"):
        request.applymarker(pytest.mark.xfail(reason=case["xfail"], strict=True))
    stack = _stack(stacks, case, tmp_path_factory.mktemp("regressions"))
    result = stack.run_scenario(case["scenario"], timeout_s=float(case.get("timeout_s", 30)))
    got = result.report.verdict_class.value
    why = f"{result.report.summary}\nrun dir: {result.run_dir}"
    assert got in case["expected_verdicts"], f"{path.name}: verdict {got}, expected {case['expected_verdicts']}\n{why}"
    violated = sorted(v.invariant for v in result.report.verdicts if v.valid is False)
    want = sorted(case["expected_violations"]) if got == "violation" else []
    assert violated == want, f"{path.name}: violated {violated}, expected {want}\n{why}"
