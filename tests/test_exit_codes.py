"""One end-to-end ``faultrun`` run per exit status of the table in docs/cli.md
(:class:`harness.check.verdict.ExitCode`), through the real CLI, plus the pieces behind it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from faults.actions import Delay
from faults.catalogue import CATALOGUE
from faults.plan import Limits, Matcher, Plan, Rule
from faults.scenario import Expectation, Outcome, to_dict
from harness.check.verdict import CheckReport, ExitCode, VerdictClass, combine_exit_codes, exit_code_for

REPO = Path(__file__).resolve().parent.parent


def _faultrun(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *argv, "--artifacts", str(tmp_path / "arts"),
                           "--timeout", "30"], capture_output=True, text=True, timeout=240, cwd=REPO)


def _scenario_file(tmp_path: Path, scenario) -> Path:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(to_dict(scenario)))
    return path


def _report(tmp_path: Path) -> dict:
    (report,) = (tmp_path / "arts").glob("*/report.json")
    return json.loads(report.read_text())


def test_exit_0_the_expectation_is_met(tmp_path: Path) -> None:
    p = _faultrun(tmp_path, "--fault", "duplicate-report")
    assert p.returncode == 0, p.stdout + p.stderr
    assert _report(tmp_path)["verdict_class"] == "pass"


def test_exit_1_an_outcome_that_misses_its_expectation(tmp_path: Path) -> None:
    # nothing goes wrong, but the scenario says the target must refuse: the pass misses the expectation
    base = CATALOGUE["duplicate-report"]
    scenario = base.__class__(name="expects-refusal", plan=Plan(seed=1), workload=base.workload,
                              expect=Expectation(outcome=Outcome.CLEAN_FAILURE))
    p = _faultrun(tmp_path, "--scenario", str(_scenario_file(tmp_path, scenario)))
    assert p.returncode == 1, p.stdout + p.stderr
    report = _report(tmp_path)
    assert report["verdict_class"] == "pass"
    assert "expected a clean failure, but the run passed" in report["summary"]


def test_exit_2_a_usage_error(tmp_path: Path) -> None:
    p = _faultrun(tmp_path, "--fault", "no-such-fault")
    assert p.returncode == 2
    assert p.stderr.startswith("faultrun: error: --fault no-such-fault") and "Traceback" not in p.stderr


def test_exit_3_a_role_that_cannot_start(tmp_path: Path) -> None:
    images = tmp_path / "images.toml"
    text = (REPO / "images.toml").read_text()
    start = text.index('[[helper]]\nname = "reference"')
    end = text.index("\n\n", start)
    helper = text[start:end]
    broken = helper.split("command = ")[0] + 'command = ["{python}", "-c", "import sys; sys.exit(7)", "{port}"]\n'
    images.write_text(text.replace(helper, broken))
    p = _faultrun(tmp_path, "--fault", "duplicate-report", "--images", str(images))
    assert p.returncode == 3, p.stdout + p.stderr
    assert p.stderr.startswith("faultrun: error: helper") and "Traceback" not in p.stderr


def test_exit_4_a_fault_that_never_happened(tmp_path: Path) -> None:
    # Prio3 finishes every aggregation job in the init: no continuation ever crosses the link
    plan = tmp_path / "never.toml"
    plan.write_text('version = 1\nseed = 1\n[[rules]]\nid = "slow-continue"\n'
                    '[rules.match]\nlink = "leader->helper"\nkind = "agg_continue"\n'
                    '[rules.action]\ntype = "delay"\ndelay_ms = 10\n')
    p = _faultrun(tmp_path, "--plan", str(plan))
    assert p.returncode == 4, p.stdout + p.stderr
    report = _report(tmp_path)
    assert report["verdict_class"] == "inconclusive"
    assert report["reasons"][0].startswith("rule slow-continue never fired: no agg_continue request was seen on "
                                           "leader->helper")
    assert "INCONCLUSIVE" in p.stdout and "rule slow-continue never fired" in p.stdout


def test_an_optional_rule_that_never_fires_is_no_reason(tmp_path: Path) -> None:
    plan = tmp_path / "maybe.toml"
    plan.write_text('version = 1\nseed = 1\n[[rules]]\nid = "slow-continue"\noptional = true\n'
                    '[rules.match]\nlink = "leader->helper"\nkind = "agg_continue"\n'
                    '[rules.action]\ntype = "delay"\ndelay_ms = 10\n')
    p = _faultrun(tmp_path, "--plan", str(plan))
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize(("codes", "want"), [
    ([0, 0], 0), ([0, 4], 4), ([4, 3], 3), ([3, 2], 2), ([2, 1, 4], 1), ([130, 0], 130), ([130, 4], 4), ([], 0),
])
def test_several_scenarios_take_the_most_serious_status(codes: list[int], want: int) -> None:
    assert combine_exit_codes(codes) == want


@pytest.mark.parametrize(("vc", "outcome", "want"), [
    ("pass", "pass", ExitCode.OK), ("pass", "clean_failure", ExitCode.FAILED),
    ("pass", "pass_or_clean_failure", ExitCode.OK), ("clean_failure", "pass", ExitCode.FAILED),
    ("clean_failure", "clean_failure", ExitCode.OK), ("violation", "pass_or_clean_failure", ExitCode.FAILED),
    ("inconclusive", "pass", ExitCode.INCONCLUSIVE), ("infra", "pass", ExitCode.INFRA),
])
def test_exit_code_of_one_run(vc: str, outcome: str, want: ExitCode) -> None:
    scenario = CATALOGUE["duplicate-report"].__class__(name="s", plan=Plan(), expect=Expectation(outcome=outcome))
    assert exit_code_for(CheckReport("s", VerdictClass(vc)), scenario) == want
    assert exit_code_for(None, scenario) == ExitCode.INFRA


def test_rules_are_essential_unless_marked_optional() -> None:
    rule = Rule("r", Matcher(kind="upload"), Delay(delay_ms=1), Limits(probability=0.5))
    assert rule.optional is False
    from faults.plan import dumps_plan, loads_plan
    plan = Plan(seed=1, rules=(Rule("r", Matcher(kind="upload"), Delay(delay_ms=1), optional=True),))
    assert loads_plan(dumps_plan(plan)) == plan and "optional = true" in dumps_plan(plan)
