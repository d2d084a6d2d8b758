"""harness.campaign's driver logic: shrinking, what counts as a failure, the example
database, budgets, reproduction commands and freezing.

The stack here is a stand-in for :class:`harness.run.Stack` whose *target* has a known
bug: any plan that duplicates a request on ``leader->helper`` while the workload uploads
at least 3 reports is a violation. That makes the shrink result predictable; the real
stack runs in ``tests/test_campaign_e2e.py``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import attrs
import pytest

from faults.actions import action_name
from faults.plan import load_plan
from faults.scenario import Collect, Expectation, Scenario, Upload, WorkloadSpec
from faults.workload import upload_count, vdaf_for
from harness.campaign.driver import run_campaign
from harness.campaign.freeze import freeze, load_regression
from harness.campaign.reproduce import reproduction_command
from harness.campaign.result import CampaignFailure, derive_seed
from harness.check.verdict import CheckReport, Verdict, VerdictClass
from harness.cli.args import one_impl_each
from harness.cli.faultrun import _select, build_parser


@attrs.define
class _Result:
    run_dir: Path
    report: CheckReport
    seconds: float = 0.0


def _buggy(s: Scenario) -> bool:
    return upload_count(s.workload) >= 3 and any(
        action_name(r.action) == "duplicate" and r.match.link == "leader->helper" for r in s.plan.rules)


@attrs.define
class FakeStack:
    verdict: Any = None  # callable(scenario) -> VerdictClass; default: the bug above
    runs: list[Scenario] = attrs.field(factory=list)
    dead: bool = False
    impl: dict = attrs.field(factory=dict)
    images: Any = None

    @property
    def backend(self) -> Any:
        stack = self

        class _B:
            def check(self, role: str) -> None:
                if stack.dead:
                    from harness.errors import BackendError
                    raise BackendError(f"{role} exited", role=role)
        return _B()

    def run_scenario(self, scenario: Scenario, timeout_s: float = 60.0, run_dir: Path | None = None,
                     report_html: bool = True) -> _Result:
        assert run_dir is not None
        assert not report_html  # campaigns render report.html only for the runs they keep
        run_dir.mkdir(parents=True)
        self.runs.append(scenario)
        vc = self.verdict(scenario) if self.verdict else (VerdictClass.VIOLATION if _buggy(scenario) else VerdictClass.PASS)
        verdicts = (Verdict("idempotency", vc != VerdictClass.VIOLATION, "fake"),
                    Verdict("collections", True, "fake",
                            {"clean_failures": {"main": "collection_poll: batchMismatch"}
                             if vc == VerdictClass.CLEAN_FAILURE else {}}))
        return _Result(run_dir, CheckReport(scenario.name, vc, verdicts, f"{vc.value}: fake"))


def test_a_violation_is_shrunk_to_the_minimal_scenario_and_written(tmp_path: Path) -> None:
    stack = FakeStack()
    res = run_campaign(stack, seed=1, examples=300, artifacts=tmp_path / "c", shrink_budget_s=120)
    assert len(res.failures) == 1 and res.exit_code == 1
    f = res.failures[0]
    assert _buggy(f.scenario) and f.reproduced
    # shrunk: one rule, the fewest reports that still fail, one upload step
    assert len(f.scenario.plan.rules) == 1
    assert upload_count(f.scenario.workload) == 3
    assert f.report.verdict_class == VerdictClass.VIOLATION
    assert load_plan(f.plan_file) == f.scenario.plan
    assert json.loads(f.scenario_file.read_text())["plan"]["rules"][0]["action"]["type"] == "duplicate"
    assert f"--seed {f.seed}" in f.command and f.seed == f.scenario.plan.seed
    assert res.runs > res.examples_run  # shrinking ran more scenarios
    assert sum(res.verdicts.values()) == res.runs
    assert (tmp_path / "c" / "hypothesis-db").is_dir()
    # passing runs' directories are removed, the failure's stays
    assert f.run_dir.is_dir()
    assert len(list((tmp_path / "c" / "runs").glob("*/*"))) == res.verdicts["violation"]


def test_the_example_database_replays_a_known_failure_first(tmp_path: Path) -> None:
    first = run_campaign(FakeStack(), seed=1, examples=300, artifacts=tmp_path / "c")
    assert first.failures
    stack = FakeStack()
    again = run_campaign(stack, seed=99, examples=300, artifacts=tmp_path / "c")
    assert again.failures
    assert _buggy(stack.runs[0])  # the very first run replays the stored failure
    assert again.examples_run == 0 and again.replayed == 1  # a replay is not a generated example
    assert again.failures[0].source == "example-db"
    # without the database, the same seed has to search again
    stack3 = FakeStack()
    run_campaign(stack3, seed=99, examples=300, artifacts=tmp_path / "c", database=False)
    assert not _buggy(stack3.runs[0])


def test_allowed_clean_failures_and_passes_are_not_failures(tmp_path: Path) -> None:
    def verdict(s: Scenario) -> VerdictClass:
        if s.plan.seed % 2 and s.expect.outcome.value == "pass_or_clean_failure":
            return VerdictClass.CLEAN_FAILURE
        return VerdictClass.PASS

    stack = FakeStack(verdict=verdict)
    res = run_campaign(stack, seed=3, examples=30, artifacts=tmp_path)
    assert res.failures == () and res.exit_code == 0
    assert res.examples_run == res.runs == 30
    assert res.verdicts.get("clean_failure", 0) > 0 and set(res.verdicts) <= {"pass", "clean_failure"}


def test_a_clean_failure_where_pass_is_expected_is_shrunk_and_reported_under_its_own_label(tmp_path: Path) -> None:
    """A plan made only of faults the protocol must recover from (here: any duplicate)
    expects ``pass``; the stand-in target ends it in batchMismatch."""
    def verdict(s: Scenario) -> VerdictClass:
        dup = any(action_name(r.action) == "duplicate" for r in s.plan.rules)
        return VerdictClass.CLEAN_FAILURE if dup else VerdictClass.PASS

    res = run_campaign(FakeStack(verdict=verdict), seed=1, examples=300, artifacts=tmp_path, shrink_budget_s=120)
    assert res.exit_code == 1 and len(res.failures) == 1
    f = res.failures[0]
    assert f.kind == "unexpected_clean_failure"
    assert f.signature == ("unexpected_clean_failure:batchMismatch", "|", "duplicate")
    assert f.scenario.expect.outcome.value == "pass" and len(f.scenario.plan.rules) == 1
    assert res.verdicts["unexpected_clean_failure"] >= 1 and "violation" not in res.verdicts
    assert json.loads(json.dumps(res.to_dict()))["failures"][0]["kind"] == "unexpected_clean_failure"
    # frozen, it pins the clean failure the target should not have shown
    case = load_regression(freeze(f, tmp_path / "regressions"))
    assert case["expected_verdicts"] == ["clean_failure"] and case["scenario"].expect.outcome.value == "pass"


def test_infra_is_reported_not_shrunk_and_three_in_a_row_abort(tmp_path: Path) -> None:
    res = run_campaign(FakeStack(verdict=lambda s: VerdictClass.INFRA), seed=3, examples=20, artifacts=tmp_path)
    assert res.failures == ()
    assert res.infra_aborted and res.exit_code == 3
    assert res.runs == 3 and len(res.infra_runs) == 3


def test_a_stack_that_keeps_failing_stops_the_campaign(tmp_path: Path) -> None:
    # a role that died is restarted before the next example (Stack.heal); one that keeps
    # failing ends the campaign after three infra runs in a row, never shrunk as a finding
    stack = FakeStack(verdict=lambda s: VerdictClass.INFRA, dead=True)
    res = run_campaign(stack, seed=3, examples=20, artifacts=tmp_path)
    assert res.runs == 3 and res.infra_aborted and not res.failures and res.exit_code == 3
    assert res.verdicts == {"infra": 3}


def test_time_budget_ends_the_campaign(tmp_path: Path) -> None:
    import time

    def slow(s: Scenario) -> VerdictClass:
        time.sleep(0.05)
        return VerdictClass.PASS

    t0 = time.monotonic()
    res = run_campaign(FakeStack(verdict=slow), seed=3, time_budget_s=1.0, artifacts=tmp_path)
    assert 5 <= res.examples_run <= 25
    assert time.monotonic() - t0 < 10


def test_same_seed_same_examples(tmp_path: Path) -> None:
    a, b = FakeStack(verdict=lambda s: VerdictClass.PASS), FakeStack(verdict=lambda s: VerdictClass.PASS)
    run_campaign(a, seed=5, examples=10, artifacts=tmp_path / "a", database=False)
    run_campaign(b, seed=5, examples=10, artifacts=tmp_path / "b", database=False)
    assert a.runs == b.runs
    c = FakeStack(verdict=lambda s: VerdictClass.PASS)
    run_campaign(c, seed=6, examples=10, artifacts=tmp_path / "c", database=False)
    assert c.runs != a.runs


def test_keep_going_collects_distinct_failures(tmp_path: Path) -> None:
    def two_bugs(s: Scenario) -> VerdictClass:
        names = {action_name(r.action) for r in s.plan.rules}
        return VerdictClass.VIOLATION if names & {"truncate", "auth"} else VerdictClass.PASS

    # seed 7 draws both actions within 40 examples with faults/strategies.py as it is; a
    # failure whose plan also held another rule is cut to the one rule it needs, so the two
    # bugs are reported once each, not once per plan that happened to carry them
    res = run_campaign(FakeStack(verdict=two_bugs), seed=7, examples=40, artifacts=tmp_path, keep_going=True)
    sigs = [f.signature for f in res.failures]
    assert sorted(sigs) == [("idempotency", "|", "auth"), ("idempotency", "|", "truncate")]
    assert all(f.replays == 3 and f.reproduces == 3 for f in res.failures)
    assert res.examples_run == 40


def test_wanted_restricts_the_failures_shrunk_and_reported(tmp_path: Path) -> None:
    def two_bugs(s: Scenario) -> VerdictClass:
        names = {action_name(r.action) for r in s.plan.rules}
        return VerdictClass.VIOLATION if names & {"truncate", "auth"} else VerdictClass.PASS

    stack = FakeStack(verdict=two_bugs)
    res = run_campaign(stack, seed=3, examples=60, artifacts=tmp_path, wanted=lambda sig: "truncate" in sig)
    assert [f.signature for f in res.failures] == [("idempotency", "|", "truncate")]
    # the auth-only failures were run and counted as violations, but neither shrunk nor reported
    auth_only = [s for s in stack.runs if {action_name(r.action) for r in s.plan.rules} & {"auth", "truncate"}
                 == {"auth"}]
    assert auth_only and res.verdicts["violation"] >= len(auth_only) + 1


def test_stop_ends_generation_but_not_shrinking(tmp_path: Path) -> None:
    calls: list[int] = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 5

    res = run_campaign(FakeStack(verdict=lambda s: VerdictClass.PASS), seed=3, examples=50, artifacts=tmp_path,
                       stop=stop)
    assert res.examples_run == 5 and res.exit_code == 0
    # a failure found before the stop is still shrunk to its minimum
    calls.clear()
    stack = FakeStack()
    res = run_campaign(stack, seed=1, examples=300, artifacts=tmp_path / "b", shrink_budget_s=120,
                       stop=lambda: any(_buggy(s) for s in stack.runs))
    assert len(res.failures) == 1 and len(res.failures[0].scenario.plan.rules) == 1
    assert upload_count(res.failures[0].scenario.workload) == 3


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="examples or time_budget_s"):
        run_campaign(FakeStack(), seed=1, artifacts=tmp_path)
    with pytest.raises(ValueError, match="examples"):
        run_campaign(FakeStack(), seed=1, examples=0, artifacts=tmp_path)
    from faults.errors import WorkloadError
    with pytest.raises(WorkloadError, match="campaigns walk every level of the tree; use at most bits=4"):
        run_campaign(FakeStack(), seed=1, examples=1, vdaf="poplar1:bits=8", artifacts=tmp_path)


def _prio3_only_impl() -> dict:
    from harness.stack.images import load_images
    im = load_images()
    return {"leader": im.select("leader", "janus"), "helper": im.select("helper", "janus"),
            "client": im.select("client", "reference"), "collector": im.select("collector", "reference")}


def test_a_vdaf_the_stack_lacks_is_refused_and_never_drawn(tmp_path: Path) -> None:
    """images.toml ``vdafs``: a campaign on implementations without Poplar1 (Janus 0.7) never
    generates a Poplar1 example, and ``--vdaf poplar1`` there is a one-line usage error."""
    from harness.campaign.driver import supported_vdafs
    from harness.errors import UsageError
    impl = _prio3_only_impl()
    assert supported_vdafs(impl) == ("Prio3Count", "Prio3Sum", "Prio3SumVec", "Prio3Histogram")
    assert supported_vdafs({"leader": impl["client"]}) is None  # nobody restricts: every type
    with pytest.raises(UsageError, match="--vdaf poplar1:bits=3: not applicable: leader janus and helper janus "
                                         "do not support Poplar1"):
        run_campaign(FakeStack(impl=impl), seed=1, examples=1, vdaf="poplar1:bits=3", artifacts=tmp_path / "a")
    stack = FakeStack(impl=impl, verdict=lambda s: VerdictClass.PASS)
    run_campaign(stack, seed=5, examples=40, artifacts=tmp_path / "b")
    types = {s.workload.task.vdaf.type for s in stack.runs}
    assert len(stack.runs) == 40 and "Poplar1" not in types and len(types) > 1
    # the same seed on a stack that has Poplar1 draws it (the restriction is what kept it out)
    open_stack = FakeStack(verdict=lambda s: VerdictClass.PASS)
    run_campaign(open_stack, seed=5, examples=40, artifacts=tmp_path / "c")
    assert "Poplar1" in {s.workload.task.vdaf.type for s in open_stack.runs}


def test_campaign_cli_refuses_a_vdaf_the_implementations_lack_before_starting(tmp_path: Path, capsys: Any) -> None:
    from harness.cli import main
    code = main(["campaign", "--examples", "1", "--vdaf", "poplar1:bits=3", "--impl", "leader=janus",
                 "--artifacts", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("faultrun: error: --vdaf poplar1:bits=3: not applicable: leader janus does not "
                                 "support Poplar1 (images.toml vdafs)")
    assert not (tmp_path / "c").exists()


def test_the_scenario_timeout_follows_the_leaders_timing(tmp_path: Path) -> None:
    """No --timeout: the stack's own (Stack.scenario_timeout_s, from the Leader's images.toml
    timing) with a campaign's 30 s as the base; a given one is used as it is."""
    from harness.campaign.driver import CAMPAIGN_TIMEOUT_S

    @attrs.define
    class TimedStack(FakeStack):
        timeouts: list = attrs.field(factory=list)
        asked: list = attrs.field(factory=list)

        def scenario_timeout_s(self, base_s: float) -> float:
            self.asked.append(base_s)
            return 58.0

        def run_scenario(self, scenario: Scenario, timeout_s: float = 60.0, run_dir: Path | None = None,
                         report_html: bool = True) -> _Result:
            self.timeouts.append(timeout_s)
            return super().run_scenario(scenario, timeout_s, run_dir, report_html)

    stack = TimedStack(verdict=lambda s: VerdictClass.PASS)
    run_campaign(stack, seed=1, examples=2, artifacts=tmp_path / "a")
    assert stack.asked == [CAMPAIGN_TIMEOUT_S] and stack.timeouts == [58.0, 58.0]
    stack = TimedStack(verdict=lambda s: VerdictClass.PASS)
    run_campaign(stack, seed=1, examples=2, artifacts=tmp_path / "b", timeout_s=12.5)
    assert stack.asked == [] and stack.timeouts == [12.5, 12.5]


def test_derive_seed_is_stable_and_distinct() -> None:
    assert derive_seed(7, 0) == derive_seed(7, 0)
    assert len({derive_seed(7, i) for i in range(8)}) == 8


# --- reproduction commands ---------------------------------------------------------------------


def _plan_scenario(tmp_path: Path, steps: tuple, complete: bool = True) -> tuple[Scenario, Path, Path]:
    from faults.actions import Duplicate
    from faults.plan import Matcher, Plan, Rule, dump_plan
    from faults.scenario import TaskSpec, to_dict
    from faults.strategies import expectation_for
    plan = Plan(seed=11, rules=(Rule("r0", Matcher(link="leader->helper"), Duplicate()),))
    n = sum(s.count for s in steps if isinstance(s, Upload))
    wl = WorkloadSpec(task=TaskSpec(vdaf=vdaf_for("Prio3Sum", n), query_type="fixed_size"), steps=steps)
    exp = expectation_for(plan, wl)
    if not complete:
        exp = attrs.evolve(exp, outcome="pass_or_clean_failure", complete=False)
    s = Scenario(name="failure-1", plan=plan, workload=wl, expect=exp)
    pf, sf = tmp_path / "plan.toml", tmp_path / "scenario.json"
    dump_plan(plan, pf)
    sf.write_text(json.dumps(to_dict(s)))
    return s, pf, sf


def test_flag_expressible_workloads_reproduce_with_faultrun_plan(tmp_path: Path) -> None:
    s, pf, sf = _plan_scenario(tmp_path, (Upload(count=5), Collect()))
    assert s.expect == Expectation()  # what --plan gives: an exact, complete aggregate
    cmd = reproduction_command(s, pf, sf, impl={"leader": "reference"})
    argv = shlex.split(cmd)
    assert argv[:3] == ["faultrun", "--plan", str(pf)] and "--scenario" not in argv
    args = build_parser().parse_args(argv[1:])
    (rebuilt,), left_out = _select(args)
    assert rebuilt.workload == s.workload and rebuilt.plan == s.plan and left_out == []
    assert args.seed == 11 and one_impl_each(args.impl) == {"leader": "reference"}


def test_other_workloads_reproduce_with_faultrun_scenario(tmp_path: Path) -> None:
    s, pf, sf = _plan_scenario(tmp_path, (Upload(count=2, time_offset_s=3600), Collect()))
    argv = shlex.split(reproduction_command(s, pf, sf))
    assert argv[:3] == ["faultrun", "--scenario", str(sf)]
    (rebuilt,), left_out = _select(build_parser().parse_args(argv[1:]))
    assert rebuilt == s and left_out == []
    # completeness not demanded by the campaign: --plan (which demands it) is not used
    s2, pf2, sf2 = _plan_scenario(tmp_path, (Upload(count=5), Collect()), complete=False)
    assert shlex.split(reproduction_command(s2, pf2, sf2))[1] == "--scenario"
    # nor for a far-future upload the expectation wants refused
    s3, pf3, sf3 = _plan_scenario(tmp_path, (Upload(count=2), Upload(count=1, time_offset_s=10 * 24 * 3600),
                                             Collect()))
    assert s3.expect.rejected_uploads == {2: "reportTooEarly"}
    assert shlex.split(reproduction_command(s3, pf3, sf3))[1] == "--scenario"


def test_faultrun_scenario_flag_errors_are_one_line_usage_errors(tmp_path: Path, capsys: Any) -> None:
    from harness.cli import main
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x"}')
    assert main(["--scenario", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("faultrun: error: --scenario") and err.count("\n") == 1
    assert main(["--scenario", str(tmp_path / "missing.json")]) == 2


def test_freeze_writes_a_loadable_regression_case(tmp_path: Path) -> None:
    res = run_campaign(FakeStack(), seed=1, examples=300, artifacts=tmp_path / "c")
    f: CampaignFailure = res.failures[0]
    path = freeze(f, tmp_path / "regressions", impl={"leader": "reference"})
    case = load_regression(path)
    assert case["scenario"].plan == f.scenario.plan and case["scenario"].workload == f.scenario.workload
    assert case["expected_verdicts"] == ["violation"] and case["impl"] == {"leader": "reference"}
    assert case["scenario"].name == path.stem
    assert freeze(f, tmp_path / "regressions") != path  # never overwrites


def test_the_shrunk_failure_is_replayed_and_how_often_it_fails_is_said(tmp_path: Path) -> None:
    """After the shrink (and the one-rule-at-a-time pass) the failure runs ``replays`` more
    times; a bug that shows on every second run only is reported "reproduces 1/3" or "2/3",
    never as if it were deterministic. ``replays=0`` skips that."""
    from harness.campaign.minimize import REPLAYS

    flips = {"n": 0}

    def every_other(s: Scenario) -> VerdictClass:
        if not _buggy(s):
            return VerdictClass.PASS
        flips["n"] += 1
        return VerdictClass.VIOLATION if flips["n"] % 2 else VerdictClass.PASS

    stack = FakeStack(verdict=every_other)
    res = run_campaign(stack, seed=1, examples=300, artifacts=tmp_path / "a", shrink_budget_s=120)
    (f,) = res.failures
    assert f.replays == REPLAYS and f.reproduces in (1, 2), (f.reproduces, f.replays)
    phases = [json.loads(line)["phase"] for line in (tmp_path / "a" / "examples.jsonl").read_text().splitlines()]
    assert phases.count("reproduce") == REPLAYS and phases[-REPLAYS:] == ["reproduce"] * REPLAYS
    summary = json.loads(json.dumps(res.to_dict()))["failures"][0]
    assert summary["reproduces"] == f.reproduces and summary["replays"] == REPLAYS
    # deterministic: 3/3; none asked: no replay runs at all
    res = run_campaign(FakeStack(), seed=1, examples=300, artifacts=tmp_path / "b", shrink_budget_s=120, replays=0)
    (f,) = res.failures
    assert f.replays == 0 and f.reproduces == 0
    phases = [json.loads(line)["phase"] for line in (tmp_path / "b" / "examples.jsonl").read_text().splitlines()]
    assert "reproduce" not in phases

