"""Every catalogue entry end to end against the reference implementation.

One warm :class:`harness.run.Stack` (Leader, Helper, Client, Collector, fault proxy) serves
the whole module; each test runs one scenario through it and asserts that the checker's
verdict class is what the entry expects and that no invariant is violated. The fixture
always closes the stack, also when a test fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faults.catalogue import CATALOGUE
from faults.history import FaultEvent
from faults.scenario import Outcome, Scenario
from harness.check.verdict import VerdictClass, expectation_met
from harness.run import Stack

# the network entries need --network netns: tests/test_netns_e2e.py runs them
ENTRIES = [(n, s) for n, s in CATALOGUE.items() if not s.plan.needs_network]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.start(artifacts_root=tmp_path_factory.mktemp("catalogue")) as s:
        yield s


def _explain(result: object) -> str:
    report = result.report  # type: ignore[attr-defined]
    lines = [f"run dir: {result.run_dir}", report.summary]  # type: ignore[attr-defined]
    for v in report.verdicts:
        if v.valid is not True:
            lines.append(f"  {v.invariant}: {v.valid} {v.detail}")
    for c in result.record.collections:  # type: ignore[attr-defined]
        lines.append(f"  collection {c.label}: {c.status} count={c.report_count} error={(c.error or '')[:200]}")
    return "\n".join(lines)


@pytest.mark.parametrize(("name", "scenario"), ENTRIES, ids=[n for n, _ in ENTRIES])
def test_catalogue_entry(stack: Stack, name: str, scenario: Scenario) -> None:
    started = time.monotonic()
    result = stack.run_scenario(scenario, timeout_s=20)
    elapsed = time.monotonic() - started
    report = result.report
    why = _explain(result)
    violated = [v.invariant for v in report.verdicts if v.valid is False]
    assert not violated, why
    assert report.verdict_class not in (VerdictClass.VIOLATION, VerdictClass.INFRA), why
    assert expectation_met(report.verdict_class, scenario.expect), why
    if scenario.expect.outcome is not Outcome.PASS_OR_CLEAN_FAILURE:
        assert report.verdict_class.value == scenario.expect.outcome.value, why
    # the reference implementation decides every entry: no invariant left unknown
    unknown = [v.invariant for v in report.verdicts if v.valid is None]
    assert not unknown, why
    # the fault under test happened: every essential rule changed a message
    changed = {e.rule_id for e in result.history if isinstance(e, FaultEvent) and e.changed.applied}
    essential = {r.id for r in scenario.plan.rules if not r.optional}
    assert essential <= changed, f"rules that never fired: {sorted(essential - changed)}\n{why}"
    assert report.verdict_class != VerdictClass.INCONCLUSIVE and not report.reasons, why
    assert Path(result.run_dir).is_dir()
    assert elapsed < 20, f"{name} took {elapsed:.1f} s"


def test_reference_does_every_optional_recovery(stack: Stack) -> None:
    """The reference roles retry, refuse far-future reports...: a run that relies on an
    optional recovery says so when the target did without it, so the reference must show none
    (else the catalogue's passes would be earned by the optional branch)."""
    for name in ("helper-503-burst", "drop-agg-share-response", "future-report"):
        result = stack.run_scenario(CATALOGUE[name], timeout_s=20)
        assert result.report.verdict_class == VerdictClass.PASS and not result.report.optional, _explain(result)


def test_all_under_poplar1_cli(tmp_path: Path) -> None:
    """``faultrun --all --vdaf poplar1`` (issue 16): every entry, run as a heavy-hitters walk
    with the entry's Poplar1 expectation, meets it on the reference stack."""
    import json
    import subprocess
    import sys

    out = tmp_path / "p1"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "--all", "--vdaf", "poplar1", "--artifacts", str(out),
                           "--timeout", "30"], capture_output=True, text=True, timeout=900,
                          cwd=Path(__file__).resolve().parent.parent)
    cells = json.loads((out / "matrix.json").read_text())["cells"]
    missed = [f"{c['scenario']}: {c['summary']}" for c in cells if c["exit_code"] != 0]
    assert proc.returncode == 0 and not missed, "\n".join(missed) + proc.stdout[-3000:] + proc.stderr[-2000:]
    assert {c["scenario"] for c in cells} == {n for n, _ in ENTRIES}  # the network entries need netns
