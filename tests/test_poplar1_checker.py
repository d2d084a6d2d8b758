"""Poplar1 in the harness, without roles: heavy-hitters workloads and the ``poplar1`` /
``step-skew`` invariants on constructed records and histories.

Each invariant test first checks an honest variant passes, then breaks one thing and
asserts the invariant fails (so every check here can fail).
"""

from __future__ import annotations

import json

import attrs
import pytest

from faults.errors import WorkloadError
from faults.heavy_hitters import (
    agg_param_interop,
    check_workload,
    decode_agg_param,
    expected_counts,
    heavy_hitters_workload,
    measurements_for,
    poplar1,
    walk,
)
from faults.history import MessageEvent
from faults.plan import Plan
from faults.scenario import Collect, Expectation, Scenario, TaskSpec, WorkloadSpec, scenario_from_dict, to_dict
from faults.workload import apply_overrides, measurement_of
from harness.check import checker
from harness.check.verdict import VerdictClass
from harness.record import CollectionRecord, RunRecord, UploadRecord

TASK = "dGFzaw"
BASE = 1_700_000_000 - 1_700_000_000 % 3600
QUERY = {"type": 1, "batch_interval_start": BASE, "batch_interval_duration": 3600}
V4 = poplar1(4)
#: 8 reports: three under 0111, four under 1111, one 1011
MS = ("0111", "0111", "0111", "1111", "1111", "1111", "1111", "1011")
JOB = f"/tasks/{TASK}/aggregation_jobs/J1"
PREFIX = "urn:ietf:params:ppm:dap:error:"


# --- the workload ------------------------------------------------------------------------------


def test_measurements_are_deterministic_with_heavy_hitters() -> None:
    a = measurements_for(8, 12, seed=3)
    assert a == measurements_for(8, 12, seed=3) and a != measurements_for(8, 12, seed=4)
    assert all(len(m) == 8 and set(m) <= {"0", "1"} for m in a)
    top = sorted((a.count(m) for m in set(a)), reverse=True)
    assert top[0] >= 4 and top[1] >= 4  # two heavy hitters take 8 of the 12 reports (a random one may collide)


def test_walk_follows_heavy_prefixes() -> None:
    w = walk(MS, 4, threshold=2)
    assert w[0] == (0, ("0", "1"))
    assert w[1] == (1, ("00", "01", "10", "11"))
    # "00" and "10" have fewer than 2 reports: only the children of "01" and "11"
    assert w[2] == (2, ("010", "011", "110", "111"))
    assert w[3] == (3, ("0110", "0111", "1110", "1111"))
    assert expected_counts(MS, 3, w[3][1]) == [0, 3, 0, 4]
    assert walk(MS, 4, threshold=5) == [(0, ("0", "1")), (1, ("10", "11"))]  # only "1" (5 reports) kept
    assert len(walk(MS, 4, levels=2)) == 2


def test_workload_sets_query_count_and_round_trips() -> None:
    wl = heavy_hitters_workload(4, measurements=MS, extra=((1, ("01",)),))
    collects = [s for s in wl.steps if isinstance(s, Collect)]
    assert [c.label for c in collects] == ["level0", "level1", "level2", "level3", "extra0"]
    assert wl.task.max_batch_query_count == 5  # one unit per distinct aggregation parameter
    assert heavy_hitters_workload(4, measurements=MS, max_batch_query_count=2).task.max_batch_query_count == 2
    sc = Scenario("x", Plan(), wl)
    again = scenario_from_dict(json.loads(json.dumps(to_dict(sc))))
    assert again == sc
    assert measurement_of(wl, 3) == [True, True, True, True]
    assert measurement_of(wl, 0) == [False, True, True, True]
    check_workload(wl, 8)
    with pytest.raises(WorkloadError, match="lists 8 measurements"):
        check_workload(wl, 9)


def test_agg_param_round_trip_and_errors() -> None:
    text = agg_param_interop(V4, 2, ("010", "111"))
    assert decode_agg_param(V4, text) == (2, ("010", "111"))
    assert V4.agg_param_from_interop(text).prefixes == (0b010, 0b111)
    with pytest.raises(WorkloadError):
        agg_param_interop(V4, 2, ("01",))  # wrong length
    with pytest.raises(WorkloadError):
        agg_param_interop(V4, 1, ("11", "01"))  # not increasing
    prio = WorkloadSpec(steps=(Collect(agg_level=0, agg_prefixes=("0",)),))
    with pytest.raises(WorkloadError, match="takes no aggregation parameter"):
        check_workload(prio, 8)
    with pytest.raises(WorkloadError, match="needs explicit measurements"):
        check_workload(WorkloadSpec(task=TaskSpec(vdaf=V4)), 8)


def test_cli_vdaf_poplar1_gives_the_walk() -> None:
    sc = Scenario("x", Plan())  # the default Prio3 workload
    out = apply_overrides(sc, vdaf="poplar1:bits=6", reports=10, query_type=None)
    wl = out.workload
    assert wl.task.vdaf.type == "Poplar1" and wl.task.vdaf.bits == 6
    assert len(wl.measurements) == 10
    levels = [s.agg_level for s in wl.steps if isinstance(s, Collect)]
    assert levels == list(range(len(levels))) and levels
    assert wl.task.max_batch_query_count >= len(levels)
    with pytest.raises(WorkloadError):
        apply_overrides(sc, vdaf="poplar1:length=3", reports=None, query_type=None)


# --- records and histories ---------------------------------------------------------------------


def bools(m: str) -> list[bool]:
    return [c == "1" for c in m]


def col(label: str, level: int, prefixes: tuple[str, ...], counts: list[int] | None = None,
        rc: int | None = None, status: str = "complete", t: float = 0.0, ms: tuple[str, ...] = MS) -> CollectionRecord:
    counts = expected_counts(ms, level, prefixes) if counts is None else counts
    return CollectionRecord(label, QUERY, status, [str(c) for c in counts] if status == "complete" else None,
                            (len(ms) if rc is None else rc) if status == "complete" else None,
                            (BASE, 3600) if status == "complete" else None, t_wall=t,
                            agg_param=agg_param_interop(V4, level, prefixes))


def record(collections, *, statuses=None, max_q=4, ms=MS) -> RunRecord:
    statuses = statuses or {}
    ups = tuple(UploadRecord(i, bools(m), BASE + 5, statuses.get(i, "success"), t_wall=0.0)
                for i, m in enumerate(ms))
    return RunRecord("t", TASK, TaskSpec(vdaf=V4, max_batch_query_count=max_q), BASE, 0, ups, tuple(collections))


def scenario(**expect) -> Scenario:
    return Scenario("t", Plan(), heavy_hitters_workload(4, measurements=MS), Expectation(**expect))


def walk_cols() -> list[CollectionRecord]:
    return [col(f"level{lv}", lv, ps, t=float(lv)) for lv, ps in walk(MS, 4)]


class H:
    """A Leader->Helper history: init / continue exchanges with body digests."""

    def __init__(self) -> None:
        self.events: list = []
        self.n = 0

    def _ev(self, fid, kind, phase, method, path, status=None, summary=None, media=None, origin=None, copy_of=None):
        self.events.append(MessageEvent(len(self.events), 0.0, 0.0, "leader->helper", kind, phase, fid, int(fid[1:]),
                                        method, path, status=status, media_type=media,
                                        summary={"task_id": TASK, **(summary or {})}, origin=origin,
                                        copy_of=copy_of))

    def x(self, kind, method, status, req, resp=None, problem=None, path=JOB, origin=None):
        self.n += 1
        fid = f"f{self.n}"
        copy_of = "f1" if origin else None
        self._ev(fid, kind, "request", method, path, summary=req, origin=origin, copy_of=copy_of)
        if problem is not None:
            resp, media = {"problem_type": PREFIX + problem, "problem_token": problem}, "application/problem+json"
        else:
            media = None
        self._ev(fid, kind, "response", method, path, status, resp, media, origin=origin, copy_of=copy_of)
        return self

    def init(self, status=201, body="i1", problem=None, path=JOB):
        # one aggregation parameter (level) per job, as the reference Leader makes them
        return self.x("agg_init", "PUT", status, {"message": "AggregationJobInitReq", "body_sha256": body,
                                                  "agg_param_sha256": f"param-of-{path}"},
                      {"message": "AggregationJobResp", "body_sha256": "ir1",
                       "prepare_states": {f"{i:032x}": "continue" for i in range(8)}}
                      if status == 201 else None, problem, path=path)

    def cont(self, step=1, status=200, body="c1", resp="cr1", problem=None, origin=None, path=JOB):
        return self.x("agg_continue", "POST", status,
                      {"message": "AggregationJobContinueReq", "step": step, "body_sha256": body},
                      {"message": "AggregationJobResp", "body_sha256": resp,
                       "prepare_states": {f"{i:032x}": "finished" for i in range(8)}}
                      if 200 <= status < 300 else None, problem, origin=origin, path=path)


def honest_history(levels: int = 4) -> H:
    h = H()
    for lv in range(levels):
        path = f"/tasks/{TASK}/aggregation_jobs/L{lv}"
        h.init(path=path, body=f"i{lv}")
        h.cont(path=path, body=f"c{lv}", resp=f"r{lv}")
    return h


def verdict(rep, name):
    return next(v for v in rep.verdicts if v.invariant == name)


def check(rec, hist=None, sc=None):
    return checker.check(rec, (hist or honest_history()).events, sc or scenario())


# --- poplar1 -------------------------------------------------------------------------------------


def test_honest_walk_passes_everything() -> None:
    rep = check(record(walk_cols()))
    assert rep.verdict_class == VerdictClass.PASS, rep.summary
    assert all(v.valid is True for v in rep.verdicts), [(v.invariant, v.detail) for v in rep.verdicts]
    ev = verdict(rep, "poplar1").evidence["collections"]["level3"]
    assert ev["exact"] and ev["expected_over_acknowledged"] == [0, 3, 0, 4]


def test_wrong_prefix_count_is_violation() -> None:
    cols = walk_cols()
    cols[2] = col("level2", 2, ("010", "011", "110", "111"), [0, 3, 1, 4], t=2.0)  # one report moved
    v = verdict(check(record(cols)), "poplar1")
    assert v.valid is False and "prefix 110 counted 1" in v.detail


def test_count_above_report_count_is_violation() -> None:
    cols = [col("level0", 0, ("0", "1"), [3, 9], rc=8)]
    rep = check(record(cols))
    v = verdict(rep, "poplar1")
    assert v.valid is False and "prefix 1 counted 9" in v.detail and "sum to 12" in v.detail
    assert rep.verdict_class == VerdictClass.VIOLATION


def test_children_not_summing_to_parent_is_violation() -> None:
    # upload 7 (1011) is ambiguous: the bounds alone allow one report less under "1" and "10"/"11"
    cols = [col("level0", 0, ("0", "1"), [3, 4], rc=7, t=0.0),
            col("level1", 1, ("00", "01", "10", "11"), [0, 3, 0, 4], rc=7, t=1.0)]
    ok = verdict(check(record(cols, statuses={7: "error"}), sc=scenario(complete=False)), "poplar1")
    assert ok.valid is True, ok.detail
    bad = [cols[0], col("level1", 1, ("00", "01", "10", "11"), [0, 3, 0, 3], rc=7, t=1.0)]
    v = verdict(check(record(bad, statuses={7: "error"}), sc=scenario(complete=False)), "poplar1")
    assert v.valid is False and "every extension of 1" in v.detail


def test_children_above_parent_is_violation() -> None:
    cols = [col("level0", 0, ("0", "1"), [3, 4], rc=7, t=0.0),
            col("level1", 1, ("10", "11"), [1, 4], rc=7, t=1.0)]
    v = verdict(check(record(cols, statuses={7: "error"}), sc=scenario(complete=False)), "poplar1")
    assert v.valid is False and "under 1 sum to 5 > its count 4" in v.detail


def test_later_level_with_more_reports_is_violation() -> None:
    cols = [col("level0", 0, ("0", "1"), [3, 4], rc=7, t=0.0),
            col("level1", 1, ("00", "01", "10", "11"), [0, 3, 1, 4], rc=8, t=1.0)]
    v = verdict(check(record(cols, statuses={7: "error"}), sc=scenario(complete=False)), "poplar1")
    assert v.valid is False and "more than the earlier collection" in v.detail


def test_same_level_twice_is_violation() -> None:
    cols = walk_cols()[:2] + [col("again", 1, ("01", "11"), t=5.0)]
    v = verdict(check(record(cols, max_q=8)), "poplar1")
    assert v.valid is False and "twice at level 1" in v.detail
    # the same parameter again is a repeat, not a second level-1 query
    cols = walk_cols()[:2] + [attrs.evolve(walk_cols()[1], label="repeat", t_wall=5.0)]
    assert verdict(check(record(cols)), "poplar1").valid is True
    assert verdict(check(record(cols)), "idempotency").valid is True


def test_more_parameters_than_query_count_is_violation() -> None:
    assert verdict(check(record(walk_cols(), max_q=4)), "poplar1").valid is True
    v = verdict(check(record(walk_cols(), max_q=3)), "poplar1")
    assert v.valid is False and "4 distinct aggregation parameters > max_batch_query_count 3" in v.detail


def test_lost_report_needs_completeness_and_bounds() -> None:
    # report 7 acknowledged but missing: counts are consistent, but the run lost a report
    ms7 = MS[:7]
    cols = [col(f"level{lv}", lv, ps, expected_counts(ms7, lv, ps), rc=7, t=float(lv)) for lv, ps in walk(MS, 4)]
    rep = check(record(cols))
    assert verdict(rep, "completeness").valid is False
    assert verdict(rep, "poplar1").valid is True  # within bounds: one of 8 may be missing
    # ... but not under a prefix no missing report has
    cols[1] = col("level1", 1, ("00", "01", "10", "11"), [0, 2, 1, 4], rc=7, t=1.0)
    assert verdict(check(record(cols)), "poplar1").valid is False


def test_failed_collection_is_clean_failure_not_violation() -> None:
    cols = walk_cols()[:2] + [col("again", 1, ("01", "11"), status="error", t=5.0)]
    rep = check(record(cols, max_q=3), sc=scenario(outcome="clean_failure"))
    assert rep.verdict_class == VerdictClass.CLEAN_FAILURE, rep.summary
    assert verdict(rep, "poplar1").valid is True


def test_not_poplar1_passes_trivially() -> None:
    from faults.scenario import TaskSpec as T
    rec = attrs.evolve(record([]), task=T(), uploads=())
    v = verdict(checker.check(rec, [], Scenario("t", Plan())), "poplar1")
    assert v.valid is True and "not a Poplar1 task" in v.detail


# --- step-skew -----------------------------------------------------------------------------------


def skew(h: H):
    return verdict(check(record(walk_cols()[:1]), h), "step-skew")


def test_identical_replay_must_be_byte_identical() -> None:
    ok = skew(H().init().cont().cont())
    assert ok.valid is True, ok.detail
    bad = skew(H().init().cont().cont(resp="other"))
    assert bad.valid is False and "not the stored response replayed" in bad.detail
    # refusing an identical repeat is allowed (the replay is a MAY)
    rep = check(record(walk_cols()[:1]), H().init().cont().cont(status=400, problem="stepMismatch"))
    assert verdict(rep, "step-skew").valid is True and verdict(rep, "idempotency").valid is True
    # ... but not with another problem
    rep = check(record(walk_cols()[:1]), H().init().cont().cont(status=400, problem="invalidMessage"))
    assert verdict(rep, "idempotency").valid is False


def test_mutated_body_at_same_step() -> None:
    assert skew(H().init().cont().cont(body="m", status=400, problem="stepMismatch",
                                       origin="synthesize:continue_mutated")).valid is True
    assert skew(H().init().cont().cont(body="m", status=409)).valid is True  # Janus
    v = skew(H().init().cont().cont(body="m", status=400, problem="invalidMessage"))
    assert v.valid is False and "different body at the answered step 1" in v.detail
    v = skew(H().init().cont().cont(body="m", resp="r2"))
    assert v.valid is False and "already answered for a different body" in v.detail


def test_skipped_step() -> None:
    assert skew(H().init().cont(step=2, body="s", status=400, problem="stepMismatch").cont()).valid is True
    v = skew(H().init().cont(step=2, body="s", status=400, problem="invalidMessage").cont())
    assert v.valid is False and "waits for step 1" in v.detail
    v = skew(H().init().cont(step=2, body="s", resp="x").cont())
    assert v.valid is False and "beyond the VDAF's last step 1" in v.detail


def test_steps_after_the_job_finished() -> None:
    for prob in ("stepMismatch", "invalidMessage"):  # draft order vs Janus: either
        assert skew(H().init().cont().cont(step=3, body="s", status=400, problem=prob)).valid is True
    v = skew(H().init().cont().cont(step=3, body="s", status=400, problem="batchMismatch"))
    assert v.valid is False


def test_step_zero() -> None:
    assert skew(H().init().cont().cont(step=0, body="z", status=400, problem="invalidMessage")).valid is True
    v = skew(H().init().cont(step=0, body="z", resp="z"))
    assert v.valid is False and "step 0 is not a continuation" in v.detail


def test_init_after_continue_must_fail() -> None:
    ok = check(record(walk_cols()[:1]), H().init().cont().init(status=409))
    assert verdict(ok, "step-skew").valid is True and verdict(ok, "idempotency").valid is True
    bad = verdict(check(record(walk_cols()[:1]), H().init().cont().init()), "step-skew")
    assert bad.valid is False and "no rewinding" in bad.detail


def test_an_init_replayed_while_the_continue_was_in_flight_may_be_refused() -> None:
    """The proxy re-sent the init after the continue request left but before its answer: the
    Helper may already have continued the job (then the re-PUT MUST fail, 409) -- not a
    repeated request answered two ways (found by a 20-minute campaign on the correct stack)."""
    h = H().init()
    init_req = {"message": "AggregationJobInitReq", "body_sha256": "i1", "agg_param_sha256": f"param-of-{JOB}"}
    h._ev("f2", "agg_continue", "request", "POST", JOB, summary={"message": "AggregationJobContinueReq", "step": 1,
                                                                 "body_sha256": "c1"})
    h._ev("f3", "agg_init", "request", "PUT", JOB, summary=init_req, origin="replay-later", copy_of="f1")
    h._ev("f3", "agg_init", "response", "PUT", JOB, 409, origin="replay-later", copy_of="f1")
    h._ev("f2", "agg_continue", "response", "POST", JOB, 200,
          {"message": "AggregationJobResp", "body_sha256": "cr1",
           "prepare_states": {f"{i:032x}": "finished" for i in range(8)}})
    h.n = 3
    rep = check(record(walk_cols()[:1]), h)
    assert verdict(rep, "idempotency").valid is True, verdict(rep, "idempotency").detail
    # before the continue was sent, the same refusal is two answers to one request
    bad = check(record(walk_cols()[:1]), H().init().init(status=409).cont())
    assert verdict(bad, "idempotency").valid is False


def test_prio3_continue_accepted_is_violation() -> None:
    from faults.scenario import TaskSpec as T
    rec = attrs.evolve(record([]), task=T(), uploads=())
    h = H().init().cont(step=1, status=400, problem="invalidMessage")
    assert verdict(checker.check(rec, h.events, Scenario("t", Plan())), "step-skew").valid is True
    h = H().init().cont(step=1)
    v = verdict(checker.check(rec, h.events, Scenario("t", Plan())), "step-skew")
    assert v.valid is False and "beyond the VDAF's last step 0" in v.detail


# --- the continue_mutated synthesizer ----------------------------------------------------------


def test_mutate_continue_changes_one_payload_bit_only() -> None:
    import random

    from dap import messages as m
    from faults import dapcodec

    req = m.AggregationJobContinueReq(step=1, prepare_continues=tuple(
        m.PrepareContinue(report_id=bytes([i]) * 16, payload=b"\x02\x00\x00\x00\x00") for i in range(3)))
    body = req.encode()
    new, ids, mutated, step = dapcodec.mutate_continue(body, 1, random.Random(7))
    out = m.AggregationJobContinueReq.decode(new)
    assert new != body and step == 1 and out.step == 1 and mutated == ids[1] == (bytes([1]) * 16).hex()
    diff = [bin(a ^ b).count("1") for a, b in zip(bytes(out.prepare_continues[1].payload),
                                                    bytes(req.prepare_continues[1].payload), strict=True)]
    assert sum(diff) == 1
    assert out.prepare_continues[0] == req.prepare_continues[0] and out.prepare_continues[2] == req.prepare_continues[2]


def test_continue_mutated_rule_needs_a_continue_match() -> None:
    from faults.plan import PlanError, loads_plan

    rule = '''version = 1
[[rules]]
id = "m"
[rules.match]
kind = "{kind}"
[rules.action]
type = "synthesize"
message = "continue_mutated"
'''
    plan = loads_plan(rule.format(kind="agg_continue"), "toml")
    assert plan.rules[0].action.message == "continue_mutated" and plan.rules[0].phase == "response"
    with pytest.raises(PlanError, match="built from an agg_continue flow"):
        loads_plan(rule.format(kind="agg_init"), "toml")
    with pytest.raises(PlanError, match="built from an agg_init flow"):
        loads_plan(rule.replace("continue_mutated", "continue_step").format(kind="agg_continue"), "toml")
