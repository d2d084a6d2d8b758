"""Campaigns against the real reference roles: the fixed-seed smoke of the fast suite.

Random long campaigns stay out of the suite (docs/campaigns.md has the command). These
runs use a fixed seed and a handful of examples, so they are deterministic in what they
generate, and bounded: each test well under 60 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.campaign import run_campaign, run_campaign_workers
from harness.check.verdict import VerdictClass
from harness.run import Stack

REPO = Path(__file__).resolve().parent.parent


class Recording:
    """The stack, recording the scenarios the campaign runs on it."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.scenarios: list = []

    def __getattr__(self, name: str):
        return getattr(self.stack, name)

    def run_scenario(self, scenario, **kw):
        self.scenarios.append(scenario)
        return self.stack.run_scenario(scenario, **kw)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.start(artifacts_root=tmp_path_factory.mktemp("stack")) as s:
        yield s


def test_fixed_seed_smoke_campaign_on_the_reference(stack: Stack, tmp_path: Path) -> None:
    """Seed 0's first 12 examples include plans the protocol must recover from (a clean
    failure would fail the campaign), far-future and late uploads, and batches that end
    not ready; the correct stack passes them all."""
    seen = []
    recording = Recording(stack)
    res = run_campaign(recording, seed=0, examples=12, artifacts=tmp_path, timeout_s=20, progress=seen.append)
    scenarios = recording.scenarios
    assert res.examples_run == 12
    assert sum(res.verdicts.values()) == res.runs >= 12
    # the reference roles have no known bug: a failure here is a finding, shown in full
    assert not res.failures, "\n".join(f"{f.kind}: {f.report.summary}\n{f.command}" for f in res.failures)
    assert res.verdicts.get("infra", 0) == 0, res.infra_runs
    assert res.exit_code == 0
    assert [p.examples_run for p in seen][-1] == 12 and seen[-1].last == "done"
    # what the fixed seed covers (so the smoke keeps testing the strict criterion)
    assert sum(s.expect.outcome.value == "pass" for s in scenarios) >= 3
    assert any(s.expect.rejected_uploads for s in scenarios)


def test_a_buggy_helper_is_caught_and_the_printed_command_reproduces_it(tmp_path: Path) -> None:
    """A Helper with a test-only bug switch (its PrepareResps in reverse order in any job of
    two or more reports; tests/data/bug_images.toml). Seed 1 meets it within 3 examples; the
    shrunk failure is replayed (3/3: the bug needs no fault) and its one-line command must
    fail the same way under faultrun."""
    import shlex
    with Stack.start(artifacts_root=tmp_path / "stack", impl={"helper": "bug-helper-resp-reorder"},
                     images=REPO / "tests" / "data" / "bug_images.toml") as s:
        res = run_campaign(s, seed=1, examples=3, artifacts=tmp_path / "c", timeout_s=10, shrink_budget_s=10,
                           database=False)
    assert res.exit_code == 1 and len(res.failures) == 1, res.to_dict()
    f = res.failures[0]
    assert f.signature[0] == "helper-order" and (f.reproduces, f.replays) == (3, 3), (f.signature, f.reproduces)
    assert "--impl helper=bug-helper-resp-reorder" in f.command
    argv = shlex.split(f.command)
    assert argv[0] == "faultrun"
    p = subprocess.run([sys.executable, "-m", "harness.cli", *argv[1:], "--artifacts", str(tmp_path / "rep")],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "helper-order" in p.stdout


def test_a_batch_that_cannot_fill_ends_not_ready_at_once_and_passes(stack: Stack) -> None:
    """Every upload dropped: the collection is not polled to the timeout but ends ~1 s
    after it started, ``not_ready``, and the checker agrees that is what a correct Leader
    does (so the run passes, also where the expectation is an exact aggregate)."""
    from faults.actions import DropRequest
    from faults.plan import Matcher, Plan, Rule
    from faults.scenario import Collect, Scenario, Upload, WorkloadSpec

    plan = Plan(seed=1, rules=(Rule("lose-uploads", Matcher(link="client->leader", kind="upload"), DropRequest()),))
    t0 = time.monotonic()
    result = stack.run_scenario(Scenario("all-dropped", plan, WorkloadSpec(steps=(Upload(count=3), Collect()))),
                                timeout_s=20)
    assert time.monotonic() - t0 < 8
    (c,) = result.record.collections
    assert c.status == "not_ready" and c.not_ready_seq is not None, c
    assert result.report.verdict_class == VerdictClass.PASS, result.report.summary
    # reports uploaded only into the hour before the queried one: the same
    wl = WorkloadSpec(steps=(Upload(count=2, time_offset_s=-3600), Collect()))
    result = stack.run_scenario(Scenario("other-batch", Plan(), wl), timeout_s=20)
    assert result.record.collections[0].status == "not_ready"
    assert result.report.verdict_class == VerdictClass.PASS, result.report.summary


def test_reports_the_leader_gave_up_end_the_collection_early_as_a_clean_failure(stack: Stack) -> None:
    """The Helper refuses every aggregation job (tampered token): the Leader abandons and
    DELETEs them, so the batch cannot fill; the collection ends well before the timeout."""
    from faults.actions import Auth
    from faults.plan import Matcher, Plan, Rule
    from faults.scenario import Collect, Expectation, Scenario, Upload, WorkloadSpec

    plan = Plan(seed=1, rules=(Rule("bad-token", Matcher(link="leader->helper", kind="agg_init"),
                                    Auth(mode="wrong_value")),))
    s = Scenario("all-refused", plan, WorkloadSpec(steps=(Upload(count=2), Collect())),
                 Expectation(outcome="pass_or_clean_failure", complete=False,
                             allowed_problem_types=("unauthorizedRequest", "unrecognizedAggregationJob")))
    t0 = time.monotonic()
    result = stack.run_scenario(s, timeout_s=20)
    assert time.monotonic() - t0 < 10
    (c,) = result.record.collections
    assert c.status == "not_ready" and "gave up" in (c.error or ""), c
    assert result.report.verdict_class == VerdictClass.CLEAN_FAILURE, result.report.summary
    assert result.exit_code == 0


def test_far_future_and_late_uploads_on_the_reference(stack: Stack) -> None:
    from faults.plan import Plan
    from faults.scenario import Collect, Scenario, TaskSpec, Upload, WorkloadSpec
    from faults.strategies import FUTURE_OFFSET_S, expectation_for
    from faults.workload import vdaf_for

    wl = WorkloadSpec(task=TaskSpec(vdaf=vdaf_for("Prio3Histogram", 5), max_batch_query_count=2),
                      steps=(Upload(count=2), Upload(count=1, time_offset_s=FUTURE_OFFSET_S), Collect(),
                             Upload(count=2), Collect(label="again")))
    s = Scenario("future-and-late", Plan(), wl, expectation_for(Plan(), wl))
    assert s.expect.rejected_uploads == {2: "reportTooEarly"} and s.expect.outcome.value == "pass"
    result = stack.run_scenario(s, timeout_s=20)
    assert result.report.verdict_class == VerdictClass.PASS, result.report.summary
    main, again = result.record.collections
    assert main.result == again.result and main.report_count == 2


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


def test_cli_reports_an_unexpected_clean_failure_under_its_own_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A clean failure where the plan is one the protocol must recover from (expectation
    ``pass``) is a failure of its own kind: not a violation, labelled UNEXPECTED CLEAN FAILURE,
    counted as ``unexpected_clean_failure``, signature ``unexpected_clean_failure:<problem>``.
    The stack is a stand-in (tests/test_campaign.py's FakeStack): since the per-role invariants
    name the culprit, the bug switches that once ended only in ``batchMismatch`` are violations."""
    import contextlib

    from test_campaign import FakeStack

    from harness.cli import main
    from harness.run import Stack as RealStack

    def batch_mismatch_where_pass_is_due(s):  # type: ignore[no-untyped-def]
        return VerdictClass.CLEAN_FAILURE if s.expect.outcome.value == "pass" else VerdictClass.PASS

    fake = FakeStack(verdict=batch_mismatch_where_pass_is_due)
    monkeypatch.setattr(RealStack, "start", classmethod(lambda cls, *a, **k: contextlib.nullcontext(fake)))
    arts = tmp_path / "arts"
    code = main(["campaign", "--examples", "20", "--seed", "2", "--shrink-budget", "30", "--no-database",
                 "--artifacts", str(arts)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "UNEXPECTED CLEAN FAILURE" in out and "VIOLATION" not in out, out
    summary = json.loads((arts / "campaign.json").read_text())
    assert summary["verdicts"]["unexpected_clean_failure"] >= 1 and "violation" not in summary["verdicts"]
    assert "unexpected_clean_failure" in " ".join(out.split())  # the summary line's verdict counts
    (f,) = summary["failures"]
    assert f["kind"] == "unexpected_clean_failure" and f["scenario"]["expect"]["outcome"] == "pass"
    assert f["signature"][0] == "unexpected_clean_failure:batchMismatch"
    assert (f["reproduces"], f["replays"]) == (3, 3) and "(reproduces 3/3)" in out


def test_cli_campaign_usage_errors(tmp_path: Path) -> None:
    for argv, msg in ((["campaign", "--seed", "1"], "one of --examples, --time-budget or --replay-only is required"),
                      (["campaign", "--examples", "2", "--shard", "1/3"], "--shard needs --seed"),
                      (["campaign", "--examples", "2", "--seed", "1", "--shard", "3/3"], "shard index must be 0..2"),
                      (["campaign", "--examples", "2", "--seed", "1", "--shard", "x"], "not a shard"),
                      (["campaign", "--replay-only", "--seed", "1", "--no-database"], "excludes"),
                      (["campaign", "--examples", "2", "--time-budget", "1m", "--seed", "1"], "not allowed with"),
                      (["campaign", "--time-budget", "soon", "--seed", "1"], "not a duration"),
                      (["campaign", "--examples", "2", "--seed", "1", "--vdaf", "poplar1:bits=9"], "use at most bits=4")):
        p = subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True, text=True,
                           timeout=60, cwd=REPO)
        assert p.returncode == 2, (argv, p.stderr)
        assert p.stderr.startswith("faultrun: error:") and msg in p.stderr, p.stderr


def test_campaign_without_seed_picks_one_and_prints_it(tmp_path: Path) -> None:
    arts = tmp_path / "arts"
    p = subprocess.run([sys.executable, "-m", "harness.cli", "campaign", "--examples", "1", "--timeout", "10",
                        "--artifacts", str(arts), "--no-database"], capture_output=True, text=True, timeout=180,
                       cwd=REPO)
    assert p.returncode == 0, p.stderr
    printed = int(p.stderr.split("campaign seed ", 1)[1].split()[0])
    assert f"rerun this campaign with --seed {printed}" in p.stderr
    assert json.loads((arts / "campaign.json").read_text())["seed"] == printed  # reproducible from the summary


def test_two_workers_merge_into_one_result(tmp_path: Path) -> None:
    res = run_campaign_workers(2, seed=3, examples=2, artifacts=tmp_path, timeout_s=10)
    assert res.examples_run == 2 and res.runs >= 2
    assert not res.failures and res.exit_code == 0, res.to_dict()
    # own state per worker: separate artifacts and stacks
    assert (tmp_path / "worker-0" / "runs").is_dir() and (tmp_path / "worker-1" / "runs").is_dir()
