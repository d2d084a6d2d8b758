"""Campaigns against the real reference roles: the fixed-seed smoke of the fast suite.

Random long campaigns stay out of the suite (docs/campaigns.md has the command). These
runs use a fixed seed and a handful of examples, so they are deterministic in what they
generate, and bounded: each test well under 60 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.campaign import run_campaign, run_campaign_workers
from harness.run import Stack

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.start(artifacts_root=tmp_path_factory.mktemp("stack")) as s:
        yield s


def test_fixed_seed_smoke_campaign_on_the_reference(stack: Stack, tmp_path: Path) -> None:
    seen = []
    res = run_campaign(stack, seed=0, examples=4, artifacts=tmp_path, timeout_s=10, progress=seen.append)
    assert res.examples_run == 4
    assert sum(res.verdicts.values()) == res.runs >= 4
    # the reference roles have no known bug: a violation here is a finding, shown in full
    assert not res.failures, "\n".join(f"{f.report.summary}\n{f.command}" for f in res.failures)
    assert res.verdicts.get("infra", 0) == 0, res.infra_runs
    assert res.exit_code == 0
    assert [p.examples_run for p in seen][-1] == 4 and seen[-1].last == "done"


def test_a_buggy_helper_is_caught_and_the_printed_command_reproduces_it(tmp_path: Path) -> None:
    """A Helper with a test-only bug switch (a repeated AggregateShareReq is recomputed and
    re-sealed, not replayed; tests/data/bug_images.toml). Seed 1 generates a workload that
    collects the same batch twice on its 3rd example; the shrunk failure's one-line command
    must fail the same way under faultrun."""
    import shlex
    with Stack.start(artifacts_root=tmp_path / "stack", impl={"helper": "bug-helper-share-recompute"},
                     images=REPO / "tests" / "data" / "bug_images.toml") as s:
        res = run_campaign(s, seed=1, examples=3, artifacts=tmp_path / "c", timeout_s=10, shrink_budget_s=10,
                           database=False)
    assert res.exit_code == 1 and len(res.failures) == 1, res.to_dict()
    f = res.failures[0]
    assert "idempotency" in f.signature
    assert "--impl helper=bug-helper-share-recompute" in f.command
    argv = shlex.split(f.command)
    assert argv[0] == "faultrun"
    p = subprocess.run([sys.executable, "-m", "harness.cli", *argv[1:], "--artifacts", str(tmp_path / "rep")],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "idempotency" in p.stdout


def test_cli_campaign_runs_writes_summary_and_exits_0(tmp_path: Path) -> None:
    arts = tmp_path / "arts"
    p = subprocess.run([sys.executable, "-m", "harness.cli", "campaign", "--examples", "2", "--seed", "1",
                        "--timeout", "10", "--artifacts", str(arts), "--json"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["examples_run"] == 2 and out["exit_code"] == 0 and out["failures"] == []
    assert json.loads((arts / "campaign.json").read_text())["examples_run"] == 2
    assert "campaign" in p.stderr  # the progress bar goes to stderr


def test_cli_campaign_usage_errors(tmp_path: Path) -> None:
    for argv, msg in ((["campaign", "--seed", "1"], "one of the arguments --examples --time-budget is required"),
                      (["campaign", "--examples", "2"], "--seed"),
                      (["campaign", "--examples", "2", "--time-budget", "1m", "--seed", "1"], "not allowed with"),
                      (["campaign", "--time-budget", "soon", "--seed", "1"], "not a duration")):
        p = subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True,
                           timeout=60, cwd=REPO)
        assert p.returncode == 2, (argv, p.stderr)
        assert p.stderr.startswith("faultrun: error:") and msg in p.stderr, p.stderr


def test_two_workers_merge_into_one_result(tmp_path: Path) -> None:
    res = run_campaign_workers(2, seed=3, examples=2, artifacts=tmp_path, timeout_s=10)
    assert res.examples_run == 2 and res.runs >= 2
    assert not res.failures and res.exit_code == 0, res.to_dict()
    # own state per worker: separate artifacts and stacks
    assert (tmp_path / "worker-0" / "runs").is_dir() and (tmp_path / "worker-1" / "runs").is_dir()
