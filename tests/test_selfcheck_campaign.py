"""Self-validation, campaign part: a bounded hypothesis campaign finds and shrinks bugs.

A campaign counts only ``violation`` runs as failures (:mod:`harness.campaign`), and its
workloads have no far-future or post-collection uploads, so only some switches are in its
reach (docs/self-validation.md has the table). Here: ``helper-share-recompute`` (any
workload that collects the same batch twice sends the Helper an identical
AggregateShareReq, which the buggy Helper re-seals: idempotency) with a fixed seed and at
most 200 examples; the shrunk plan must have at most 3 rules and still violate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.campaign import run_campaign
from harness.model import VerdictClass
from harness.run import Stack

BUG_IMAGES = Path(__file__).resolve().parent / "data" / "bug_images.toml"


def impl_for(bug: str) -> dict[str, str]:
    from dap.roles import bugs

    return {role: f"bug-{bug}" for role in bugs.BUGS[bug][0]}


#: bug -> fixed seed that finds it quickly with harness/campaign.py + faults/strategies.py
CAMPAIGN_BUGS = {"helper-share-recompute": 1}


@pytest.mark.slow
@pytest.mark.parametrize("bug", list(CAMPAIGN_BUGS))
def test_campaign_finds_and_shrinks_bug(bug: str, tmp_path: Path) -> None:
    with Stack.start(tmp_path / "stack", impl=impl_for(bug), images=BUG_IMAGES) as stack:
        result = run_campaign(stack, seed=CAMPAIGN_BUGS[bug], examples=200, artifacts=tmp_path / "campaign",
                              timeout_s=20, shrink_budget_s=60, database=False)
    assert result.failures, f"{bug}: no violation in {result.examples_run} examples ({result.verdicts})"
    assert result.examples_run <= 200
    f = result.failures[0]
    assert 1 <= len(f.scenario.plan.rules) <= 3, f.scenario.plan
    assert f.report.verdict_class == VerdictClass.VIOLATION
    assert "idempotency" in f.signature, f.signature
    assert f.plan_file.is_file() and f.scenario_file.is_file()
    assert "--impl helper=bug-helper-share-recompute" in f.command and str(BUG_IMAGES) in f.command
