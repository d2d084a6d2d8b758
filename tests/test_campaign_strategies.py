"""faults.strategies: every generated plan loads; shrinking goes toward "no fault"."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import HealthCheck, find, given, settings

from faults import dapcodec
from faults.actions import (
    Auth,
    Delay,
    DropRequest,
    DropResponse,
    Duplicate,
    Reorder,
    ReplayLater,
    Respond,
    Synthesize,
    action_name,
)
from faults.plan import Limits, Matcher, Plan, Rule, dumps_plan, loads_plan, plan_from_dict, plan_to_dict
from faults.scenario import Collect, Pause, Upload, WorkloadSpec, scenario_from_dict, to_dict
from faults.strategies import (
    ACTION_ORDER,
    FUTURE_OFFSET_S,
    MAX_COLLECTION_RETRIED,
    MAX_REPORTS,
    MAX_RETRIED_FIRES,
    SHORT_DELAY_MS,
    corrupt_field_targets,
    expectation_for,
    must_recover,
    plans,
    recovery,
    rules,
    scenarios,
    workloads,
)
from faults.vocabulary import LINK_KINDS
from faults.workload import capacity, upload_count
from harness.run import check_scenario


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
    # shrinking may stop at Upload(2), Upload(1): still only plain uploads and one final collection
    names = [type(s).__name__ for s in w3.steps]
    assert names[-1] == "Collect" and set(names[:-1]) == {"Upload"}
    assert all(s.time_offset_s == 0 for s in w3.steps if isinstance(s, Upload))


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


def test_vdaf_types_limit_what_is_drawn_and_pauses_wait_a_leader_job_interval() -> None:
    """A campaign on implementations without Poplar1 (images.toml vdafs) draws none; the pause
    before a second upload waits one Leader job interval (images.toml timing), whatever the pace."""
    prio3 = ("Prio3Count", "Prio3Sum", "Prio3SumVec", "Prio3Histogram")
    seen: set[str] = set()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(workloads(vdaf_types=prio3))
    def check(wl: WorkloadSpec) -> None:
        seen.add(wl.task.vdaf.type)
        for step in wl.steps:
            if isinstance(step, Pause):
                assert step.job_intervals == 1
    check()
    assert seen and seen <= set(prio3) and len(seen) > 1
    find(workloads(), lambda wl: wl.task.vdaf.type == "Poplar1")  # without the limit Poplar1 is drawn
    find(workloads(), lambda wl: any(isinstance(s, Pause) for s in wl.steps))
    with pytest.raises(ValueError, match="none of them has a workload"):
        workloads(vdaf_types=("Prio3SumVecWithMultiproof",))


def test_pass_is_demanded_exactly_of_plans_that_must_recover() -> None:
    @fast(150)
    @given(plans())
    def t(plan) -> None:
        exp = expectation_for(plan)
        if must_recover(plan):
            assert exp.outcome.value == "pass" and exp.complete
            assert all(recovery(r) is not None for r in plan.rules)
        else:
            assert exp.outcome.value == "pass_or_clean_failure" and not exp.complete
        names = {action_name(r.action) for r in plan.rules}
        if names & {"truncate", "corrupt-bytes", "corrupt-field", "reorder"} or any(
                action_name(r.action) == "auth" and r.match.link != "collector->leader" for r in plan.rules):
            assert not must_recover(plan)  # tampering may legitimately end a collection

    t()


def _rule(link: str, action, limits: Limits = Limits(), **match) -> Rule:
    return Rule("r", Matcher(link=link, **match), action, limits)


def test_which_faults_must_be_recovered() -> None:
    l2h, c2l, k2l = "leader->helper", "client->leader", "collector->leader"
    always = [_rule(c2l, Duplicate(copies=3, spacing_ms=300)), _rule(l2h, ReplayLater(after_event="collection_finished")),
              _rule(k2l, Delay(delay_ms=SHORT_DELAY_MS)), _rule(l2h, Delay(delay_ms=300, jitter_ms=200)),
              _rule(l2h, Synthesize(message="reinit_new_job"), kind="agg_init"),
              _rule(l2h, Synthesize(message="reinit_mutated"), kind="agg_init", phase="response", status=200)]
    for r in always:
        assert recovery(r) == "always", r
        assert must_recover(Plan(rules=(r,)))
    retried = [_rule(l2h, DropRequest()), _rule(l2h, DropResponse(), kind="agg_init"),
               _rule(l2h, Respond(status=503)), _rule(l2h, Respond(status=429), phase="response"),
               _rule(l2h, Delay(delay_ms=1_300)), _rule(c2l, Delay(delay_ms=SHORT_DELAY_MS + 1))]
    for r in retried:
        assert recovery(r) == "retried", r
        assert not must_recover(Plan(rules=(r,)))  # every matching message, unbounded
        assert must_recover(Plan(rules=(attrs.evolve(r, limits=Limits(nth=2)),)))
    never = [_rule(c2l, DropRequest()), _rule(k2l, DropResponse()), _rule(l2h, Respond(status=400)),
             _rule(l2h, Respond(status=501)), _rule(l2h, Auth(mode="wrong_value")),
             _rule(l2h, Synthesize(message="reinit_new_job"), kind="agg_init", phase="request"),
             _rule(l2h, Synthesize(message="reinit_new_job"), kind="agg_init", status=400),
             _rule(l2h, Reorder(max_hold_ms=100))]
    for r in never:
        assert recovery(r) is None, r
        assert not must_recover(Plan(rules=(r,)))
    # retried faults: at most MAX_RETRIED_FIRES fires in all
    drops = [attrs.evolve(retried[0], id=f"r{i}", limits=Limits(nth=i + 1)) for i in range(MAX_RETRIED_FIRES)]
    assert must_recover(Plan(rules=tuple(drops)))
    # rules limited to the same n-th message of the same matcher fail one message, not two
    assert must_recover(Plan(rules=(*drops, attrs.evolve(drops[0], id="same"))))
    assert not must_recover(Plan(rules=(*drops, attrs.evolve(retried[0], id="rx", limits=Limits(first=1)))))
    assert must_recover(Plan(rules=(attrs.evolve(retried[0], limits=Limits(every=2, max_fires=MAX_RETRIED_FIRES)),)))
    assert not must_recover(Plan(rules=(attrs.evolve(retried[0], limits=Limits(first=MAX_RETRIED_FIRES + 1)),)))
    assert not must_recover(Plan(rules=(attrs.evolve(retried[0], limits=Limits(probability=0.5)),)))
    # one rule that may lose reports makes the whole plan lossy
    assert not must_recover(Plan(rules=(always[0], never[0])))
    # a tampered Collector request: the Collector's own retries recover, at most twice
    bad_token = _rule(k2l, Auth(mode="wrong_value"), Limits(nth=1), kind="collection_create")
    assert recovery(bad_token) == "collection_retried" and must_recover(Plan(rules=(bad_token,)))
    assert not must_recover(Plan(rules=(attrs.evolve(bad_token, limits=Limits()),)))
    assert must_recover(Plan(rules=(bad_token, attrs.evolve(bad_token, id="r2"))))  # the same message twice
    twice = [attrs.evolve(bad_token, id=f"r{n}", limits=Limits(nth=n)) for n in (1, 2, 3)]
    assert must_recover(Plan(rules=tuple(twice[:MAX_COLLECTION_RETRIED])))
    assert not must_recover(Plan(rules=tuple(twice)))


@fast(150)
@given(plans(recoverable=True))
def test_recoverable_plans_are_plans_the_protocol_must_recover_from(plan) -> None:
    assert must_recover(plan), plan
    assert expectation_for(plan).outcome.value == "pass"
    assert loads_plan(dumps_plan(plan, "toml")) == plan


def test_far_future_uploads_must_be_refused_whatever_the_plan() -> None:
    wl = WorkloadSpec(steps=(Upload(count=2), Upload(count=2, time_offset_s=FUTURE_OFFSET_S), Pause(),
                             Upload(count=1, time_offset_s=-3600), Collect()))
    lossy = Plan(rules=(_rule("client->leader", DropRequest()),))
    for plan in (Plan(rules=(_rule("leader->helper", Duplicate()),)), lossy):
        assert expectation_for(plan, wl).rejected_uploads == {2: "reportTooEarly", 3: "reportTooEarly"}
    assert expectation_for(lossy).rejected_uploads == {}


@fast(150)
@given(workloads())
def test_generated_workloads_fill_the_batch_they_query(w) -> None:
    ups = [s for s in w.steps if isinstance(s, Upload)]
    # a Poplar1 walk (level0, level1, ...) is the first collection, done level by level
    collects = [i for i, s in enumerate(w.steps) if isinstance(s, Collect)
                and not (s.label.startswith("level") and s.label != "level0")]
    assert 1 <= len(collects) <= 2 and upload_count(w) <= MAX_REPORTS
    main = w.steps[0]
    # the first upload is at the base time: inside the queried batch, enough for min_batch_size
    assert isinstance(main, Upload) and main.time_offset_s == 0
    assert 1 <= w.task.min_batch_size <= main.count
    assert w.task.min_batch_size <= 3 or w.task.query_type == "fixed_size"  # there: the whole first upload
    first = w.steps[collects[0]]
    walked = [s for s in w.steps if isinstance(s, Collect) and s.label.startswith("level")]
    assert first.interval_offset_s <= 0 < first.interval_offset_s + 3600 + first.interval_extra_s
    assert {u.time_offset_s for u in ups} <= {0, -3600, FUTURE_OFFSET_S}
    # uploads after the first collection only as late reports before a second collection of it
    late = [s for s in w.steps[collects[0]:] if isinstance(s, Upload)]
    if late:
        assert len(collects) == 2 and all(u.time_offset_s == 0 for u in late)
    if len(collects) == 2:
        again = w.steps[collects[1]]
        assert w.task.max_batch_query_count == (2 if w.measurements is None else max(2, len(walked)))
        assert (again.interval_offset_s, again.interval_extra_s) == (first.interval_offset_s, first.interval_extra_s)
        assert again.batch_of == (first.label if w.task.query_type == "fixed_size" else None)
        # Poplar1: the second collection repeats level 0's query
        assert (again.agg_level, again.agg_prefixes) == (first.agg_level, first.agg_prefixes)


def test_workloads_reach_every_step_kind() -> None:
    find(workloads(), lambda w: any(getattr(s, "time_offset_s", 0) == FUTURE_OFFSET_S for s in w.steps)
         and w.task.min_batch_size == 3, settings=settings(database=None, max_examples=500))
    late = find(workloads(), lambda w: [type(s).__name__ for s in w.steps][-3:] == ["Collect", "Upload", "Collect"],
                settings=settings(database=None, max_examples=500))
    assert late.steps == (Upload(count=1), Collect(), Upload(count=1), Collect(label="again"))


def test_bad_arguments_fail_early() -> None:
    import pytest
    with pytest.raises(ValueError, match="min_rules"):
        plans(min_rules=3, max_rules=1)
    with pytest.raises(ValueError, match="max_reports"):
        workloads(max_reports=0)
    with pytest.raises(ValueError, match="query_types"):
        workloads(query_types=("sideways",))
    from faults.errors import WorkloadError
    with pytest.raises(WorkloadError, match="unknown VDAF"):
        workloads(vdaf="prio9")
    with pytest.raises(WorkloadError, match="use at most bits=4"):
        workloads(vdaf="poplar1:bits=8")


def _campaign_draws(n: int, seed_: int):
    """The first ``n`` scenarios a campaign with hypothesis seed ``seed_`` generates."""
    from hypothesis import seed

    out = []

    @seed(seed_)
    @settings(database=None, deadline=None, max_examples=n, suppress_health_check=list(HealthCheck))
    @given(scenarios())
    def t(sc) -> None:
        out.append(sc)

    t()
    return out


def _kinds_probed(sc) -> set[str]:
    """Which of the rare behaviours a scenario reaches (probes or its random rules alike)."""
    got = set()
    for r in sc.plan.rules:
        a = r.action
        if isinstance(a, Duplicate) and r.match.kind == "upload":
            got.add("duplicate uploads")
        if (isinstance(a, Synthesize) and a.message == "reinit_new_job") or isinstance(a, ReplayLater):
            got.add("forged replays")
        if isinstance(a, Synthesize) and a.message in ("collection_mutated", "agg_share_mutated", "delete_collection"):
            got.add("collection-side forgeries")
        if isinstance(a, Synthesize) and a.credentials is not None or isinstance(a, Auth):
            got.add("auth on any endpoint")
    return got


def test_rare_behaviours_are_in_a_quarter_of_a_60_example_campaign() -> None:
    """Issue 16: duplicate uploads, forged replays, collection-side forgeries and forged
    credentials each in >= 25 % of 60 examples (the campaign's own seeds), Poplar1 too."""
    from collections import Counter

    for seed_ in (1, 2):
        draws = _campaign_draws(60, seed_)
        assert len(draws) == 60
        counts = Counter(k for sc in draws for k in _kinds_probed(sc))
        for kind in ("duplicate uploads", "forged replays", "collection-side forgeries", "auth on any endpoint"):
            assert counts[kind] >= 15, (seed_, counts)
        assert sum(sc.workload.task.vdaf.type == "Poplar1" for sc in draws) >= 5
        # the forged credentials reach every authenticated endpoint over a campaign
        kinds = {r.match.kind for sc in draws for r in sc.plan.rules if r.id == "probe-forged-credentials"}
        assert len(kinds) >= 4, kinds


def test_probes_are_always_recovered_and_keep_the_expectation() -> None:
    from faults.strategies import probes

    @fast(100)
    @given(probes())
    def t(extra) -> None:
        for r in extra:
            assert r.id.startswith("probe-") and r.optional
            assert recovery(r) == "always", r
        assert must_recover(Plan(rules=extra))
        assert loads_plan(dumps_plan(Plan(rules=extra))) == Plan(rules=extra)

    t()


def test_destructive_forgeries_and_poplar1_step_skew_are_not_recoverable() -> None:
    l2h, k2l = "leader->helper", "collector->leader"
    assert recovery(_rule(l2h, Synthesize(message="delete_job"), kind="agg_init")) is None
    assert recovery(_rule(k2l, Synthesize(message="delete_collection", credentials="conflicting"),
                          kind="collection_create")) is None
    assert recovery(_rule(k2l, Synthesize(message="delete_collection", credentials="strip"),
                          kind="collection_create")) == "always"
    skew = _rule(l2h, Synthesize(message="continue_step"), kind="agg_init")
    assert recovery(skew) == "always" and recovery(skew, "poplar1") is None


def test_poplar1_workloads_keep_the_campaign_shape() -> None:
    w = find(workloads(), lambda w: w.task.vdaf.type == "Poplar1" and sum(isinstance(s, Collect) for s in w.steps) > 3
             and any(isinstance(s, Upload) and s.time_offset_s == FUTURE_OFFSET_S for s in w.steps),
             settings=settings(database=None, max_examples=2000))
    assert w.measurements is not None and len(w.measurements) == upload_count(w)
    levels = [s for s in w.steps if isinstance(s, Collect) and s.label.startswith("level")]
    assert levels and [c.agg_level for c in levels] == list(range(len(levels)))
    assert w.task.max_batch_query_count >= len(levels)


def test_retried_plans_say_they_rely_on_the_leader_retrying() -> None:
    from faults.scenario import LEADER_RETRY

    drop = _rule("leader->helper", DropResponse(), Limits(nth=1), kind="agg_init")
    assert expectation_for(Plan(rules=(drop,))).optional_recovery == LEADER_RETRY
    dup = _rule("client->leader", Duplicate(), kind="upload")
    assert expectation_for(Plan(rules=(dup,))).optional_recovery == ""
