"""The Poplar1 catalogue entries end to end, through the proxy, against the reference roles:
beyond the verdict (``tests/test_catalogue_e2e.py`` checks that for every entry), each test
asserts from the recorded history that the fault really happened as the entry says — a
continuation replayed, a wrong step refused — so an entry cannot pass by not firing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faults.catalogue import CATALOGUE, POPLAR1_REPORTS
from faults.heavy_hitters import decode_agg_param, expected_counts
from faults.history import MessageEvent
from harness.check.verdict import VerdictClass
from harness.run import RunResult, Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.start(artifacts_root=tmp_path_factory.mktemp("poplar1")) as s:
        yield s


def run(stack: Stack, name: str) -> RunResult:
    sc = CATALOGUE[name]
    result = stack.run_scenario(sc, timeout_s=20)
    rep = result.report
    assert not [v for v in rep.verdicts if v.valid is not True], rep.summary
    assert rep.verdict_class.value == sc.expect.outcome.value, rep.summary
    return result


def continues(result: RunResult) -> list[tuple[MessageEvent, MessageEvent]]:
    """(request, response) of every continuation the Helper answered, in response order."""
    ev = [e for e in result.history if isinstance(e, MessageEvent) and e.kind == "agg_continue"]
    reqs = {e.flow_id: e for e in ev if e.phase == "request"}
    return [(reqs[e.flow_id], e) for e in ev if e.phase == "response" and e.flow_id in reqs]


def exact_levels(result: RunResult, labels: list[str]) -> None:
    """The listed collections completed with the counts of the workload's measurements."""
    ms = [("".join("1" if b else "0" for b in u.measurement)) for u in result.record.uploads]
    assert len(ms) == POPLAR1_REPORTS
    got = {c.label: c for c in result.record.collections}
    for label in labels:
        c = got[label]
        level, prefixes = decode_agg_param(result.record.task.vdaf, c.agg_param)
        assert c.status == "complete" and c.report_count == POPLAR1_REPORTS, c
        assert [int(x) for x in c.result] == expected_counts(ms, level, prefixes), c


def test_baseline_walks_every_level(stack: Stack) -> None:
    r = run(stack, "poplar1-heavy-hitters")
    exact_levels(r, ["level0", "level1", "level2", "level3"])
    steps = [req.summary.step for req, resp in continues(r) if resp.status == 200]
    assert steps == [1, 1, 1, 1]  # one real continuation per level's job


@pytest.mark.parametrize("name", ["drop-agg-continue-response", "delay-agg-continue-beyond-timeout",
                                  "duplicate-agg-continue"])
def test_identical_continuation_is_replayed(stack: Stack, name: str) -> None:
    r = run(stack, name)
    exact_levels(r, ["level0", "level1"])
    by_body: dict[str, set[str]] = {}
    for req, resp in continues(r):
        assert resp.status == 200, resp
        by_body.setdefault(req.summary.body_sha256, set()).add(resp.summary.body_sha256)
    # some step-1 body reached the Helper twice, and both answers are the same bytes
    assert sum(1 for req, _ in continues(r)) > len(by_body)
    assert all(len(resps) == 1 for resps in by_body.values())


def test_mutated_continuation_is_step_mismatch(stack: Stack) -> None:
    r = run(stack, "mutate-agg-continue")
    exact_levels(r, ["level0", "level1"])
    synth = [(q, a) for q, a in continues(r) if q.origin == "synthesize:continue_mutated"]
    assert len(synth) == 1
    q, a = synth[0]
    assert q.summary.step == 1 and a.status == 400 and a.summary.problem_token == "stepMismatch"
    genuine = [x for x, y in continues(r) if x.path == q.path and x.origin is None]
    assert genuine and genuine[0].summary.body_sha256 != q.summary.body_sha256


def test_skipped_step_is_step_mismatch_before_step_one(stack: Stack) -> None:
    r = run(stack, "skip-step")
    exact_levels(r, ["level0", "level1"])
    job = [(q, a) for q, a in continues(r) if q.path == continues(r)[0][0].path]
    assert [(q.summary.step, a.status) for q, a in job] == [(2, 400), (1, 200)]
    assert job[0][1].summary.problem_token == "stepMismatch"


def test_old_step_replayed_is_refused(stack: Stack) -> None:
    r = run(stack, "replay-old-step")
    exact_levels(r, ["level0", "level1"])
    inits = [e for e in r.history if isinstance(e, MessageEvent) and e.kind == "agg_init" and e.phase == "response"]
    replayed = [e for e in inits if e.origin == "replay-later"]
    assert len(replayed) == 1 and replayed[0].status == 409
    first_continue = min(a.seq for _, a in continues(r) if a.path == replayed[0].path)
    assert replayed[0].seq > first_continue


def test_level_not_allowed_fails_cleanly(stack: Stack) -> None:
    r = run(stack, "poplar1-level-not-allowed")
    exact_levels(r, ["level0", "level1"])
    extra = next(c for c in r.record.collections if c.label == "extra0")
    assert extra.status == "error" and extra.result is None and "invalidBatchSize" in (extra.error or "")
    assert r.report.verdict_class == VerdictClass.CLEAN_FAILURE


def test_too_many_queries_is_refused(stack: Stack) -> None:
    r = run(stack, "poplar1-too-many-queries")
    assert r.record.task.max_batch_query_count == 2
    exact_levels(r, ["level0", "level1"])
    third = next(c for c in r.record.collections if c.label == "level2")
    assert third.status == "error" and "batchQueriedTooManyTimes" in (third.error or "")
