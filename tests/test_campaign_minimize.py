"""harness.campaign.minimize: the final delta-debugging pass and the replays, over fake runs."""

from __future__ import annotations

import attrs

from faults.actions import DropResponse, Duplicate
from faults.plan import Limits, Matcher, Plan, Rule
from faults.scenario import Expectation, Scenario
from harness.campaign.minimize import failure_part, minimize, replay, same_failure


def _scenario(*ids: str) -> Scenario:
    rules = tuple(Rule(i, Matcher(link="leader->helper", kind="agg_init"),
                       DropResponse() if i == "needed" else Duplicate(), Limits(nth=1)) for i in ids)
    return Scenario("s", Plan(seed=3, rules=rules))


def _ids(s: Scenario) -> list[str]:
    return [r.id for r in s.plan.rules]


def _keep_expect(s: Scenario) -> Scenario:
    return s


def test_rules_the_failure_does_not_need_are_removed():
    calls: list[list[str]] = []

    def run(s: Scenario) -> str:
        calls.append(_ids(s))
        return "fail" if "needed" in _ids(s) else "pass"

    out = minimize(_scenario("a", "needed", "b", "probe"), "fail", run=run, fails=lambda s, r: r == "fail",
                   expect_for=_keep_expect, budget_s=60)
    assert _ids(out.scenario) == ["needed"] and out.removed == ("a", "b", "probe") and not out.cut_short
    # each rule alone first, the last (often a probe) first: three runs, not one per removal
    assert calls == [["probe"], ["b"], ["needed"]] and out.runs == 3


def test_with_two_rules_each_is_removed_in_turn():
    calls: list[list[str]] = []

    def run(s: Scenario) -> str:
        calls.append(_ids(s))
        return "fail" if "needed" in _ids(s) else "pass"

    out = minimize(_scenario("needed", "probe"), "fail", run=run, fails=lambda s, r: r == "fail",
                   expect_for=_keep_expect, budget_s=60)
    assert _ids(out.scenario) == ["needed"] and out.removed == ("probe",) and calls == [["needed"]]


def test_two_rules_needed_together_both_stay():
    def run(s: Scenario) -> str:
        return "fail" if {"x", "y"} <= set(_ids(s)) else "pass"

    out = minimize(_scenario("x", "z", "y"), "fail", run=run, fails=lambda s, r: r == "fail",
                   expect_for=_keep_expect, budget_s=60)
    # no rule alone fails (3 runs), then one removal at a time until a pass removes nothing
    # (3 tries, z removed; then x and y again)
    assert _ids(out.scenario) == ["x", "y"] and out.removed == ("z",) and out.runs == 3 + 3 + 2


def test_an_unjudged_run_keeps_the_rule_and_the_expectation_is_rederived():
    seen: list[Expectation] = []

    def expect_for(s: Scenario) -> Scenario:
        return attrs.evolve(s, expect=Expectation(complete=len(s.plan.rules) == 1))

    def run(s: Scenario):
        seen.append(s.expect)
        return None  # infra: cannot tell

    out = minimize(_scenario("a", "b"), "fail", run=run, fails=lambda s, r: True, expect_for=expect_for, budget_s=60)
    assert _ids(out.scenario) == ["a", "b"] and out.runs == 2
    assert all(e.complete for e in seen)  # each one-rule candidate got its own expectation


def test_the_budget_stops_before_a_run_that_would_overrun_it():
    now = [0.0]

    def clock() -> float:
        return now[0]

    def run(s: Scenario) -> str:
        now[0] += 10.0  # every run takes 10 s
        return "pass"

    out = minimize(_scenario("a", "b", "c", "d"), "fail", run=run, fails=lambda s, r: r == "fail",
                   expect_for=_keep_expect, budget_s=25, clock=clock)
    assert out.cut_short and out.runs == 2 and _ids(out.scenario) == ["a", "b", "c", "d"]


def test_replay_counts_the_same_failure_only():
    results = iter(["fail", None, "other"])
    n = replay(_scenario("a"), run=lambda s: next(results), fails=lambda s, r: r == "fail")
    assert n == 1


def test_same_failure_compares_the_failure_part_of_the_signature():
    a = ("auth", "|", "drop-response", "duplicate")
    b = ("auth", "|", "duplicate")
    assert failure_part(a) == ("auth",) and same_failure(a, b)
    assert not same_failure(a, ("idempotency", "|", "duplicate"))
