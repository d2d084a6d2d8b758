"""The fault catalogue, statically: names, plans, docs, spec sections (no processes)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from proxy_fixtures import init_req

from dap import messages as m
from faults import dapcodec, dumps_plan, loads_plan, plan_from_dict, plan_to_dict
from faults.catalogue import CATALOGUE, UnknownScenario, get_scenario
from faults.scenario import Outcome, Pause, Scenario, Upload, scenario_from_dict, to_dict

SPEC = Path("/work/shared/spec/dap-09.md")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "faults.md"

REQUIRED = (
    "duplicate-report", "replay-report-after-collection", "drop-upload-response", "drop-agg-init-request",
    "drop-agg-init-response", "duplicate-agg-init", "mutate-agg-init", "reorder-prepare-resps",
    "corrupt-helper-share", "corrupt-leader-share", "replay-report-in-new-job", "inject-continue-step-skew",
    "drop-agg-share-response", "duplicate-agg-share-request", "corrupt-agg-share-count", "bad-leader-token",
    "bad-collector-token", "wrong-auth-scheme", "future-report", "helper-503-burst", "delay-beyond-timeout",
    "duplicate-collection-create", "overlapping-collections",
)
ENTRIES = list(CATALOGUE.items())
IDS = list(CATALOGUE)


def _headings() -> list[str]:
    if not SPEC.is_file():
        pytest.fail(f"{SPEC} not present: the catalogue cites its sections (clone ../shared beside the repo)")
    return [line.lstrip("#").strip() for line in SPEC.read_text(encoding="utf-8").splitlines()
            if line.startswith("#")]


def test_required_names_present_and_ordered() -> None:
    missing = [n for n in REQUIRED if n not in CATALOGUE]
    assert not missing
    assert len(CATALOGUE) >= len(REQUIRED)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", n) for n in CATALOGUE)


@pytest.mark.parametrize(("name", "sc"), ENTRIES, ids=IDS)
def test_entry_plan_round_trips(name: str, sc: Scenario) -> None:
    assert sc.name == name
    for fmt in ("toml", "json"):
        text = dumps_plan(sc.plan, fmt)
        assert loads_plan(text, fmt) == sc.plan
        assert dumps_plan(loads_plan(text, fmt), fmt) == text
    # plan_from_dict runs the load-time checks (field paths against the kind's message, phases)
    assert plan_from_dict(plan_to_dict(sc.plan)) == sc.plan
    assert len({r.id for r in sc.plan.rules}) == len(sc.plan.rules)


@pytest.mark.parametrize(("name", "sc"), ENTRIES, ids=IDS)
def test_entry_rule_fields_valid(name: str, sc: Scenario) -> None:
    for rule in sc.plan.rules:
        assert rule.phase in rule.action.phases
        if rule.action_name == "corrupt-field":
            dapcodec.validate_field(rule.match.kind, rule.phase, rule.action.field, rule.action.op)


@pytest.mark.parametrize(("name", "sc"), ENTRIES, ids=IDS)
def test_entry_scenario_json_round_trip(name: str, sc: Scenario) -> None:
    assert scenario_from_dict(to_dict(sc)) == sc


@pytest.mark.parametrize(("name", "sc"), ENTRIES, ids=IDS)
def test_entry_docs_and_spec_section(name: str, sc: Scenario) -> None:
    assert len(sc.doc) > 80 and sc.doc == " ".join(sc.doc.split())
    line = sc.summary_line
    assert line.endswith(".") and 10 < len(line) < len(sc.doc)
    num = re.match(r"^(\d+(?:\.\d+)?)\.? ", sc.spec_section)
    assert num, sc.spec_section
    assert any(h.startswith(sc.spec_section) for h in _headings()), sc.spec_section


@pytest.mark.parametrize(("name", "sc"), ENTRIES, ids=IDS)
def test_entry_expectation_consistent(name: str, sc: Scenario) -> None:
    ex = sc.expect
    if ex.outcome is not Outcome.PASS:
        # a fault that may legitimately end in a refusal cannot promise completeness, unless the
        # fault is in the workload (no rules): a refused later query leaves the earlier complete...
        assert not ex.complete or not sc.plan.rules
        # ...and the doc says why
        assert "clean failure" in sc.doc or "refuse" in sc.doc
    uploads = [s for s in sc.workload.steps if isinstance(s, Upload)]
    total = sum(u.count for u in uploads)
    if sc.plan.needs_network:  # a slow link or reordered packets are tested with a 100-report workload
        assert 6 <= total <= 100
    else:
        assert 6 <= total <= 8, "catalogue scenarios stay small and fast"
    assert all(0 <= i < total for i in ex.rejected_uploads)
    assert sum(s.ms for s in sc.workload.steps if isinstance(s, Pause)) <= 500


def test_docs_page_has_a_section_per_entry() -> None:
    text = DOCS.read_text(encoding="utf-8")
    sections = re.findall(r"^## `([a-z0-9-]+)`", text, flags=re.M)
    assert sections == list(CATALOGUE)
    for name, sc in CATALOGUE.items():
        net = " --network netns" if sc.plan.needs_network else ""
        assert f"faultrun{net} --fault {name}" in text


def test_get_scenario_and_near_names() -> None:
    assert get_scenario("duplicate-report") is CATALOGUE["duplicate-report"]
    with pytest.raises(KeyError) as err:
        get_scenario("duplicate-reprot")
    assert isinstance(err.value, UnknownScenario)
    assert "duplicate-report" in err.value.near and "duplicate-report" in str(err.value)
    with pytest.raises(UnknownScenario) as err:
        get_scenario("zzzz")
    assert err.value.near == [] and "known:" in str(err.value)


def test_mutate_init_changes_one_payload_bit() -> None:
    body = init_req([1, 2, 3]).encode()
    new, ids, which = dapcodec.mutate_init(body, 1, random.Random(3))
    old_m, new_m = m.AggregationJobInitReq.decode(body), m.AggregationJobInitReq.decode(new)
    assert new != body and len(ids) == 3 and which == ids[1]
    diffs = [(a, b) for a, b in zip(old_m.prepare_inits, new_m.prepare_inits, strict=True) if a != b]
    assert len(diffs) == 1
    a, b = (bytes(x.payload) for x in diffs[0])
    assert bin(int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).count("1") == 1
    again, _, _ = dapcodec.mutate_init(body, 1, random.Random(3))
    assert again == new  # seeded


def test_docs_page_is_generated_from_the_catalogue() -> None:
    from faults.catalogue import markdown

    assert DOCS.read_text(encoding="utf-8") == markdown(), "regenerate: .venv/bin/python -m faults.catalogue > docs/faults.md"


def test_upload_halves_wait_one_leader_job_interval() -> None:
    """Uploads split by a pause must land in different aggregation jobs at any Leader's pace:
    the pause waits one of the Leader's job intervals (images.toml timing, Stack) plus a
    margin, never a fixed time tuned to the reference Leader's 0.2 s."""
    from faults.scenario import Pause, Upload
    halves = 0
    for name, s in CATALOGUE.items():
        steps = s.workload.steps
        for before, pause, after in zip(steps, steps[1:], steps[2:]):
            if isinstance(before, Upload) and isinstance(pause, Pause) and isinstance(after, Upload):
                halves += 1
                assert pause.job_intervals >= 1, name
    assert halves >= 3  # bad-leader-token, wrong-auth-scheme, reorder-prepare-resps
