"""faults.strategies: every generated plan loads; shrinking goes toward "no fault"."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, find, given, settings

from faults import dapcodec
from faults.actions import Delay, action_name
from faults.plan import Limits, dumps_plan, loads_plan, plan_from_dict, plan_to_dict
from faults.strategies import (
    ACTION_ORDER,
    LINK_KINDS,
    corrupt_field_targets,
    expectation_for,
    plans,
    rules,
    scenarios,
    workloads,
)
from harness.model import Collect, Upload, scenario_from_dict, to_dict
from harness.run import check_scenario
from harness.workload import capacity, upload_count

def fast(n: int) -> settings:
    return settings(database=None, deadline=None, max_examples=n, suppress_health_check=[HealthCheck.too_slow])


@fast(200)
@given(plans())
def test_200_generated_plans_load_dump_and_validate(plan) -> None:
    # the same validation `faultrun --plan` runs, through both text formats
    assert plan_from_dict(plan_to_dict(plan)) == plan
    assert loads_plan(dumps_plan(plan, "toml")) == plan
    assert loads_plan(dumps_plan(plan, "json")) == plan
    assert 1 <= len(plan.rules) <= 3
    assert len({r.id for r in plan.rules}) == len(plan.rules)
    for r in plan.rules:
        if r.match.kind is not None and r.match.link is not None:
            assert r.match.kind in LINK_KINDS[r.match.link]


@fast(60)
@given(scenarios())
def test_generated_scenarios_round_trip_and_fit_the_vdaf(scenario) -> None:
    assert scenario_from_dict(json.loads(json.dumps(to_dict(scenario)))) == scenario
    check_scenario(scenario)  # the harness's own precondition (VDAF capacity)
    n = upload_count(scenario.workload)
    cap = capacity(scenario.workload.task.vdaf)
    assert cap is None or cap >= n
    for r in scenario.plan.rules:
        if r.match.report_index is not None:
            assert r.match.report_index < n


def test_every_action_is_generated() -> None:
    seen: set[str] = set()

    @fast(400)
    @given(rules())
    def collect(rule) -> None:
        seen.add(action_name(rule.action))

    collect()
    assert seen == set(ACTION_ORDER)


def test_corrupt_field_targets_are_accepted_by_the_plan_checks() -> None:
    targets = corrupt_field_targets()
    assert len(targets) > 30
    kinds = {k for k, _, _, _ in targets}
    assert {"upload", "agg_init", "agg_share", "collection_create"} <= kinds
    for kind, phase, path, ops in targets:
        for op in ops:
            dapcodec.validate_field(kind, phase, path, op)  # raises if not


def test_minimal_plan_is_one_parameterless_rule_matching_anything_on_its_link() -> None:
    p = find(plans(), lambda p: True, settings=settings(database=None))
    assert p.seed == 0
    assert len(p.rules) == 1
    assert action_name(p.rules[0].action) in ("drop-request", "drop-response")
    assert p.rules[0].limits == Limits()
    assert p.rules[0].match.kind is None and p.rules[0].match.phase is None


def test_parameters_shrink_to_their_defaults() -> None:
    p = find(plans(), lambda p: any(action_name(r.action) == "delay" for r in p.rules),
             settings=settings(database=None, max_examples=500))
    assert len(p.rules) == 1 and p.rules[0].action == Delay(delay_ms=0)


def test_a_failure_needing_one_action_shrinks_to_one_rule_with_default_parameters() -> None:
    p = find(plans(), lambda p: any(action_name(r.action) == "duplicate" for r in p.rules),
             settings=settings(database=None, max_examples=500))
    assert len(p.rules) == 1
    assert action_name(p.rules[0].action) == "duplicate"
    assert p.rules[0].action.copies == 1 and p.rules[0].action.spacing_ms == 0
    assert p.rules[0].limits == Limits()


def test_workloads_shrink_to_fewest_reports_and_simplest_shape() -> None:
    w = find(workloads(), lambda w: True, settings=settings(database=None))
    assert w.steps == (Upload(count=1), Collect())
    assert w.task.vdaf.type == "Prio3Histogram" and w.task.query_type == "time_interval"
    w3 = find(workloads(), lambda w: upload_count(w) >= 3, settings=settings(database=None))
    assert upload_count(w3) == 3
    assert [type(s).__name__ for s in w3.steps] == ["Upload", "Collect"]


def test_workloads_reach_batch_boundaries_and_both_query_types() -> None:
    found = find(workloads(), lambda w: w.task.query_type == "fixed_size"
                 and any(getattr(s, "time_offset_s", 0) == -3600 for s in w.steps),
                 settings=settings(database=None, max_examples=500))
    assert found.task.query_type == "fixed_size"


def test_fixed_vdaf_is_respected() -> None:
    @fast(30)
    @given(workloads(vdaf="sum"))
    def t(w) -> None:
        assert w.task.vdaf.type == "Prio3Sum"
        assert w.task.vdaf.bits >= upload_count(w)

    t()


def test_completeness_is_demanded_only_of_recoverable_plans() -> None:
    @fast(100)
    @given(plans())
    def t(plan) -> None:
        names = {action_name(r.action) for r in plan.rules}
        exp = expectation_for(plan)
        if not names <= {"delay", "duplicate"}:
            assert not exp.complete
        assert exp.outcome.value == "pass_or_clean_failure"

    t()
    delay = find(plans(), lambda p: action_name(p.rules[0].action) == "delay", settings=settings(database=None))
    assert expectation_for(delay).complete


def test_bad_arguments_fail_early() -> None:
    import pytest
    with pytest.raises(ValueError, match="min_rules"):
        plans(min_rules=3, max_rules=1)
    with pytest.raises(ValueError, match="max_reports"):
        workloads(max_reports=0)
    with pytest.raises(ValueError, match="query_types"):
        workloads(query_types=("sideways",))
    from harness.errors import WorkloadError
    with pytest.raises(WorkloadError, match="unknown VDAF"):
        workloads(vdaf="prio9")
