"""Plan model: classifier, round trips, validation (every bad plan -> one line naming the rule)."""

from __future__ import annotations

import json

import pytest

from faults import ACTIONS, Limits, Matcher, Plan, PlanError, Rule, classify, dumps_plan, loads_plan
from faults.actions import CorruptField, Delay, Duplicate, ReplayLater, Respond, Synthesize
from faults.plan import dump_plan, load_plan

EXAMPLE = """
version = 1
seed = 42

[[rules]]
id = "slow-init"
[rules.match]
link = "leader->helper"
kind = "agg_init"
[rules.action]
type = "delay"
delay_ms = 250
jitter_ms = 50
[rules.limits]
first = 2

[[rules]]
id = "lose-continue-reply"
[rules.match]
link = "leader->helper"
kind = "agg_continue"
phase = "response"
[rules.action]
type = "drop-response"
[rules.limits]
probability = 0.25
max_fires = 3

[[rules]]
id = "bad-report-id"
[rules.match]
kind = "upload"
report_index = 3
[rules.action]
type = "corrupt-field"
field = "report_metadata.report_id"
op = "flip"

[[rules]]
id = "reorder-prepare-resps"
[rules.match]
kind = "agg_init"
phase = "response"
[rules.action]
type = "corrupt-field"
field = "prepare_resps"
op = "reverse"

[[rules]]
id = "replay-upload"
[rules.match]
kind = "upload"
[rules.action]
type = "replay-later"
after_event = "collection_finished"
[rules.limits]
nth = 1

[[rules]]
id = "lost-after-commit"
[rules.match]
kind = "agg_share"
phase = "response"
[rules.action]
type = "respond"
status = 500
problem_type = "batchMismatch"

[[rules]]
id = "stale-continue"
[rules.match]
kind = "agg_init"
[rules.action]
type = "synthesize"
message = "continue_step"
step = 3
"""


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        ("GET", "/hpke_config", "hpke_config"),
        ("GET", "/v09/hpke_config?task_id=abc", "hpke_config"),
        ("PUT", "/tasks/T/reports", "upload"),
        ("PUT", "/dap/tasks/T/reports", "upload"),
        ("PUT", "/tasks/T/aggregation_jobs/J", "agg_init"),
        ("POST", "/tasks/T/aggregation_jobs/J", "agg_continue"),
        ("DELETE", "/v09/tasks/T/aggregation_jobs/J", "agg_delete"),
        ("POST", "/tasks/T/aggregate_shares", "agg_share"),
        ("PUT", "/tasks/T/collection_jobs/C", "collection_create"),
        ("POST", "/tasks/T/collection_jobs/C?x=1", "collection_poll"),
        ("DELETE", "/tasks/T/collection_jobs/C", "collection_delete"),
        ("GET", "/tasks/T/reports", None),
        ("POST", "/tasks/T/reports", None),
        ("PUT", "/tasks/T/aggregation_jobs", None),
        ("GET", "/faultrun/status", None),
        ("PUT", "/tasks/T/reports/extra", None),
    ],
)
def test_classify(method: str, path: str, kind: str | None) -> None:
    assert classify(method, path).kind == kind


def test_classify_ids() -> None:
    c = classify("POST", "/v09/tasks/TASK_id-1/aggregation_jobs/JOB-2")
    assert (c.task_id, c.job_id) == ("TASK_id-1", "JOB-2")


def test_example_loads_with_typed_values() -> None:
    plan = loads_plan(EXAMPLE)
    assert plan.seed == 42 and plan.version == 1
    assert [r.id for r in plan.rules][:2] == ["slow-init", "lose-continue-reply"]
    assert plan.rules[0].action == Delay(delay_ms=250, jitter_ms=50)
    assert plan.rules[0].limits == Limits(first=2)
    assert plan.rules[1].phase == "response"
    assert plan.rules[1].limits.probability == 0.25
    assert plan.rule("bad-report-id").match.report_index == 3
    assert plan.rule("bad-report-id").action == CorruptField(field="report_metadata.report_id", op="flip")
    assert plan.rule("replay-upload").action == ReplayLater(after_event="collection_finished")
    assert plan.rule("lost-after-commit").action == Respond(status=500, problem_type="batchMismatch")
    assert plan.rule("stale-continue").action == Synthesize(message="continue_step", step=3)
    assert plan.rule("stale-continue").phase == "response"  # synthesize defaults to after the response


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_round_trip(fmt: str) -> None:
    plan = loads_plan(EXAMPLE)
    text = dumps_plan(plan, fmt)
    again = loads_plan(text)
    assert again == plan
    assert dumps_plan(again, fmt) == text  # stable
    assert hash(plan) == hash(again)  # frozen values are hashable


def test_round_trip_files(tmp_path) -> None:
    plan = loads_plan(EXAMPLE)
    for name in ("p.toml", "p.json"):
        dump_plan(plan, tmp_path / name)
        assert load_plan(tmp_path / name) == plan
    assert json.loads((tmp_path / "p.json").read_text())["rules"][0]["action"]["type"] == "delay"


def test_every_action_round_trips() -> None:
    samples = {
        "drop-request": {}, "drop-response": {}, "delay": {"delay_ms": 5}, "duplicate": {"copies": 2},
        "reorder": {}, "replay-later": {"after_messages": 2}, "corrupt-bytes": {"flips": 3},
        "corrupt-field": {"field": "step", "op": "add", "value": 1}, "truncate": {"drop_bytes": 4},
        "auth": {"mode": "wrong_scheme"}, "respond": {"status": 503}, "synthesize": {"message": "reinit_new_job"},
    }
    assert set(samples) == set(ACTIONS)
    kinds = {"corrupt-field": "agg_continue", "synthesize": "agg_init"}
    phases = {"drop-response": "response"}
    for name, params in samples.items():
        match: dict = {}
        if name in kinds:
            match["kind"] = kinds[name]
        if name in phases:
            match["phase"] = phases[name]
        data = {"version": 1, "seed": 1, "rules": [{"id": name, "match": match, "action": {"type": name, **params}}]}
        plan = loads_plan(json.dumps(data))
        assert loads_plan(dumps_plan(plan)) == plan
        assert plan.rules[0].action_name == name


def test_programmatic_plan_dumps() -> None:
    plan = Plan(seed=3, rules=(Rule("d", Matcher(kind="upload"), Duplicate(copies=2), Limits(nth=1)),))
    assert loads_plan(dumps_plan(plan)) == plan


def test_toml_string_escapes_round_trip() -> None:
    plan = Plan(seed=1, rules=(Rule('we"ird\\id\n', Matcher(), Respond(status=500, detail="tab\there ü")),))
    assert loads_plan(dumps_plan(plan)) == plan


def _rule(**parts) -> str:
    rule = {"id": "r1", "action": {"type": "delay", "delay_ms": 1}, **parts}
    return json.dumps({"version": 1, "seed": 0, "rules": [rule]})


BAD = [
    (_rule(action={"type": "explode"}), "unknown action 'explode'"),
    (_rule(action={"delay_ms": 3}), "missing 'type'"),
    (_rule(action={"type": "delay"}), "missing required parameter 'delay_ms'"),
    (_rule(action={"type": "delay", "delay_ms": 1, "speed": 2}), "unknown key 'speed'"),
    (_rule(action={"type": "delay", "delay_ms": -1}), "delay_ms"),
    (_rule(action={"type": "delay", "delay_ms": "fast"}), "delay_ms must be an integer"),
    (_rule(match={"kind": "uplaod"}), "'kind' must be in"),
    (_rule(match={"link": "client->helper"}), "'link' must be in"),
    (_rule(match={"phase": "middle"}), "'phase' must be in"),
    (_rule(match={"colour": "red"}), "unknown key 'colour'"),
    (_rule(limits={"nth": 0}), "nth must be >= 1"),
    (_rule(limits={"every": 0}), "every must be >= 1"),
    (_rule(limits={"first": -2}), "first must be >= 1"),
    (_rule(limits={"probability": 1.5}), "probability must be a number in [0, 1]"),
    (_rule(limits={"probability": -0.1}), "probability"),
    (_rule(limits={"max_fires": 0}), "max_fires must be >= 1"),
    (_rule(limits={"nth": 1, "probability": 0.5}), "exclude each other"),
    (_rule(match={"kind": "upload"}, action={"type": "corrupt-field", "field": "report_metadata.nope"}),
     "field 'report_metadata.nope'"),
    (_rule(match={"kind": "upload"}, action={"type": "corrupt-field", "field": "report_metadata.report_id", "op": "reverse"}),
     "needs a list field"),
    (_rule(match={"kind": "agg_init", "phase": "response"},
           action={"type": "corrupt-field", "field": "prepare_resps", "op": "random"}), "needs a leaf field"),
    (_rule(match={"kind": "agg_delete"}, action={"type": "corrupt-field", "field": "step"}), "carries no DAP message"),
    (_rule(action={"type": "corrupt-field", "field": "step"}), "corrupt-field needs a matcher kind"),
    (_rule(action={"type": "corrupt-field", "field": "step", "op": "set"}), "needs a value"),
    (_rule(action={"type": "drop-response"}, match={"phase": "request"}), "cannot run in phase 'request'"),
    (_rule(action={"type": "drop-request"}, match={"phase": "response"}), "cannot run in phase 'response'"),
    (_rule(action={"type": "duplicate"}, match={"phase": "response"}), "cannot run in phase 'response'"),
    (_rule(action={"type": "replay-later"}), "exactly one of after_event, after_messages"),
    (_rule(action={"type": "replay-later", "after_event": "lunch"}), "after_event must be one of"),
    (_rule(action={"type": "respond", "status": 99}), "status"),
    (_rule(action={"type": "respond", "problem_type": "notAThing"}), "unknown DAP problem type"),
    (_rule(action={"type": "auth", "mode": "sneaky"}), "'mode' must be in"),
    (_rule(action={"type": "synthesize", "message": "hello"}), "'message' must be in"),
    (_rule(action={"type": "synthesize", "message": "continue_step"}), "set kind = 'agg_init'"),
    (_rule(match={"status": 500}), "need phase 'response'"),
    (_rule(match={"kind": "upload", "step": 1}), "step applies only to kind 'agg_continue'"),
    (_rule(match={"kind": "agg_share", "report_index": 1}), "do not apply to kind 'agg_share'"),
    (_rule(match={"report_id": "xyz"}), "32 hex digits"),
    (_rule(match={"phase": "response", "problem_type": "nope"}), "unknown DAP problem type"),
]


@pytest.mark.parametrize(("text", "needle"), BAD, ids=[n for _, n in BAD])
def test_bad_plan_rejected_one_line_naming_rule(text: str, needle: str) -> None:
    with pytest.raises(PlanError) as info:
        loads_plan(text)
    msg = str(info.value)
    assert "\n" not in msg
    assert info.value.rule_id == "r1"
    assert msg.startswith("rule 'r1': ")
    assert needle in msg


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"version": 2, "seed": 0, "rules": []}', "version must be 1"),
        ('{"seed": 0, "rules": []}', "version must be 1"),
        ('{"version": 1, "seed": -1}', "seed must be"),
        ('{"version": 1, "seeds": 1}', "unknown top-level key 'seeds'"),
        ("version = 1\nseed = [", "not valid TOML"),
        ('{"version": 1, "rules": [{"action": {"type": "delay", "delay_ms": 1}}]}', "missing or empty 'id'"),
    ],
)
def test_bad_plan_without_rule(text: str, needle: str) -> None:
    with pytest.raises(PlanError) as info:
        loads_plan(text)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_duplicate_rule_id() -> None:
    data = {"version": 1, "rules": [{"id": "a", "action": {"type": "drop-request"}}] * 2}
    with pytest.raises(PlanError, match="rule 'a': duplicate rule id"):
        loads_plan(json.dumps(data))


def test_missing_plan_file(tmp_path) -> None:
    with pytest.raises(PlanError, match="cannot read plan file"):
        load_plan(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("kind", "phase", "field", "op"),
    [
        ("upload", "request", "report_metadata.report_id", "random"),
        ("upload", "request", "report_metadata.time", "add"),
        ("upload", "request", "leader_encrypted_input_share.config_id", "set"),
        ("upload", "request", "helper_encrypted_input_share.payload", "flip"),
        ("upload", "request", "public_share", "zero"),
        ("agg_init", "request", "prepare_inits[*].report_share.encrypted_input_share.payload", "random"),
        ("agg_init", "request", "prepare_inits", "duplicate_first"),
        ("agg_init", "request", "part_batch_selector.batch_id", "random"),
        ("agg_init", "response", "prepare_resps", "shuffle"),
        ("agg_continue", "request", "step", "add"),
        ("agg_continue", "request", "prepare_continues", "drop_first"),
        ("agg_share", "request", "report_count", "add"),
        ("agg_share", "request", "checksum", "flip"),
        ("agg_share", "request", "batch_selector.batch_interval.start", "add"),
        ("collection_poll", "response", "report_count", "add"),
        ("collection_poll", "response", "interval.duration", "zero"),
        ("collection_create", "request", "query.batch_interval.start", "add"),
        ("hpke_config", "response", "configs[0].id", "random"),
    ],
)
def test_corrupt_field_paths_accepted(kind: str, phase: str, field: str, op: str) -> None:
    value = {"add": 1, "set": 7}.get(op)
    data = {"version": 1, "rules": [{"id": "f", "match": {"kind": kind, "phase": phase},
                                     "action": {"type": "corrupt-field", "field": field, "op": op,
                                                **({"value": value} if value is not None else {})}}]}
    plan = loads_plan(json.dumps(data))
    assert plan.rules[0].action.field == field


# --- property: any plan built from values round-trips through TOML and JSON -------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from faults.actions import Auth, CorruptBytes, DropRequest, Reorder, Truncate  # noqa: E402
from faults.vocabulary import KINDS, LINKS  # noqa: E402

_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)
_small = st.integers(min_value=0, max_value=10_000)
_actions = st.one_of(
    st.builds(DropRequest),
    st.builds(Delay, delay_ms=_small, jitter_ms=_small),
    st.builds(Duplicate, copies=st.integers(1, 5), spacing_ms=_small),
    st.builds(Reorder, max_hold_ms=st.integers(1, 10_000)),
    st.builds(ReplayLater, after_messages=st.integers(1, 9)),
    st.builds(CorruptBytes, flips=st.integers(1, 64)),
    st.builds(Truncate, drop_bytes=st.integers(1, 64)),
    st.builds(Auth, mode=st.sampled_from(("strip", "wrong_value", "wrong_scheme", "duplicate")),
              value=st.none() | _text),
    st.builds(Respond, status=st.integers(100, 599), detail=st.none() | _text,
              problem_type=st.none() | st.sampled_from(("batchMismatch", "stepMismatch"))),
)
_limits = st.one_of(
    st.builds(Limits),
    st.builds(Limits, nth=st.integers(1, 99), max_fires=st.none() | st.integers(1, 9)),
    st.builds(Limits, every=st.integers(1, 99)),
    st.builds(Limits, first=st.integers(1, 99)),
    st.builds(Limits, probability=st.floats(0.0, 1.0), max_fires=st.none() | st.integers(1, 9)),
)
_matchers = st.builds(Matcher, link=st.none() | st.sampled_from(LINKS), kind=st.none() | st.sampled_from(KINDS),
                      task_id=st.none() | st.from_regex(r"\A[A-Za-z0-9_-]{1,43}\Z"))
_rules = st.lists(st.tuples(_text, _matchers, _actions, _limits), max_size=5, unique_by=lambda t: t[0])
_plans = st.builds(lambda seed, rules: Plan(seed=seed, rules=tuple(Rule(*r) for r in rules)),
                   st.integers(0, 2**63), _rules)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_plans, st.sampled_from(["toml", "json"]))
def test_property_round_trip(plan: Plan, fmt: str) -> None:
    text = dumps_plan(plan, fmt)
    again = loads_plan(text)
    assert again == plan
    assert dumps_plan(again, fmt) == text
