"""The early end of a collection whose batch cannot fill, and the checker rules campaigns
lean on: ``not_ready`` judged from the history prefix (harness.check.fill), a batch
released below ``min_batch_size``, late uploads, a far-future upload the proxy answered.

Histories are built with tests/test_checker.py's helpers; every "honest" variant is
checked first, then one thing is changed and the verdict must change with it.
"""

from __future__ import annotations

import attrs
from test_checker import BASE, HIST, QUERY, TASK, History, histogram, rid, verdict

from faults.plan import Plan
from faults.scenario import Expectation, Scenario, TaskSpec, WorkloadSpec
from harness.check import checker
from harness.check.fill import fill_bound
from harness.check.verdict import VerdictClass
from harness.record import CollectionRecord, RunRecord, UploadRecord


def upload(h: History, i: int, *, t: int = BASE, status: int | None = 201, problem: str | None = None, **kw) -> str:
    """One upload flow of report ``i`` at time ``t``; ``status`` None: no answer seen."""
    fid = h.request("upload", "PUT", f"/tasks/{TASK}/reports", {"message": "Report", "report_ids": [rid(i)], "time": t},
                    **kw)
    if status is not None:
        h.response(fid, status, problem=problem)
    return fid


def run_record(n: int, *, statuses: dict[int, str] | None = None, times: dict[int, int] | None = None,
               collections: tuple = (), min_batch_size: int = 1) -> RunRecord:
    statuses, times = statuses or {}, times or {}
    ups = tuple(UploadRecord(i, str(i), times.get(i, BASE), statuses.get(i, "success"), t_wall=float(i + 1))
                for i in range(n))
    return RunRecord("t", TASK, TaskSpec(vdaf=HIST, min_batch_size=min_batch_size), BASE, 0, ups, collections)


def bound(rec: RunRecord, h: History, query: dict = QUERY):
    b = fill_bound(rec, h.events, None, query, len(h.events))
    assert b is not None
    return b


def scenario(**expect) -> Scenario:
    return Scenario("t", Plan(), WorkloadSpec(TaskSpec(vdaf=HIST)), Expectation(**expect))


# --- the bound ---------------------------------------------------------------------------------------


def test_only_reports_that_may_be_stored_in_the_batch_count() -> None:
    h = History()
    upload(h, 0)                                                           # acknowledged
    f1 = upload(h, 1, status=None)                                         # dropped before the Leader
    h.fault(f1, "drop-request")
    h.error(f1)
    upload(h, 2, status=400, problem="reportTooEarly")                     # refused
    f3 = upload(h, 3, status=200)                                          # the proxy answered in its place
    h.fault(f3, "respond", phase="request", status=200)
    upload(h, 4, t=BASE - 3600)                                            # stored, but in the batch before
    f5 = upload(h, 5)                                                      # stored, answer lost
    h.fault(f5, "drop-response", phase="response")
    rec = run_record(6, statuses={1: "error", 2: "error", 5: "error"}, times={4: BASE - 3600})
    b = bound(rec, h)
    assert (b.storable, b.countable, b.reason) == (2, 2, None) and b.can_fill
    assert bound(attrs.evolve(rec, task=TaskSpec(vdaf=HIST, min_batch_size=3)), h).reason == "uploads"
    # the whole two hours: report 4 is in it
    assert bound(rec, h, {**QUERY, "batch_interval_start": BASE - 3600, "batch_interval_duration": 7200}).storable == 3
    # fixed_size current batch: any stored report; a batch named by ID: no bound (it filled once)
    assert bound(rec, h, {"type": 2, "subtype": 1}).storable == 3
    assert fill_bound(rec, h.events, None, {"type": 2, "subtype": 0, "batch_id": "Yg"}, len(h.events)) is None


def test_a_stored_copy_not_sent_yet_counts_until_it_is_refused() -> None:
    h = History()
    f0 = upload(h, 0, status=None)
    h.fault(f0, "replay-later", stored=True, after_event="collection_finished")
    h.fault(f0, "drop-request")
    h.error(f0)
    rec = run_record(1, statuses={0: "error"})
    assert bound(rec, h).storable == 1  # the replay may still bring report 0 to the Leader
    upload(h, 0, status=400, problem="reportRejected", copy_of=f0, origin="replay-later")
    assert bound(rec, h).storable == 0
    # duplicates sent with spacing: as many copies as the fault announced
    h2 = History()
    f = upload(h2, 0, status=None)
    h2.fault(f, "duplicate", copies=2, spacing_ms=300)
    h2.fault(f, "drop-request")
    h2.error(f)
    upload(h2, 0, status=400, problem="reportRejected", copy_of=f, origin="duplicate")
    assert bound(rec, h2).storable == 1
    upload(h2, 0, status=400, problem="reportRejected", copy_of=f, origin="duplicate")
    assert bound(rec, h2).storable == 0


def test_a_body_changed_on_the_way_counts_in_every_batch() -> None:
    h = History()
    f = upload(h, 0, t=BASE - 3600)
    h.fault(f, "corrupt-field", field="report_metadata.time", op="random", before=BASE - 3600, after=BASE)
    rec = run_record(1, times={0: BASE - 3600})
    assert bound(rec, h).storable == 1  # its stored time is unknown


def test_reports_the_leader_gave_up_do_not_count() -> None:
    h = History()
    for i in range(3):
        upload(h, i)
    rec = run_record(3, min_batch_size=2)
    h.init("J1", [0, 1], status=403, problem="unauthorizedRequest", states={})
    assert bound(rec, h).countable == 3  # retried or not: the Leader has not said
    h.exchange("agg_delete", "DELETE", f"/tasks/{TASK}/aggregation_jobs/J1", 204)
    b = bound(rec, h)
    assert (b.storable, b.countable, b.reason, b.given_up) == (3, 1, "aggregation", (rid(0), rid(1)))
    # a report in two jobs is given up only when both are
    h.init("J2", [1], states={rid(1): "continue"})
    assert bound(rec, h).countable == 2
    # the Helper's own reject is final, except report_too_early (the Leader retries that later)
    h3 = History()
    for i in range(3):
        upload(h3, i)
    h3.init("J1", [0, 1, 2], states={rid(0): "reject:report_replayed", rid(1): "reject:report_too_early",
                                     rid(2): "continue"})
    assert bound(rec, h3).given_up == (rid(0),)
    # a copy the proxy sent is not the Leader's job
    h4 = History()
    for i in range(3):
        upload(h4, i)
    h4.init("J9", [0, 1, 2], states={r: "reject:report_replayed" for r in map(rid, range(3))},
            copy_of="fx", origin="synthesize:reinit_new_job")
    assert bound(rec, h4).given_up == ()


def test_acknowledged_uploads_the_history_does_not_show_still_count() -> None:
    rec = run_record(2)
    assert bound(rec, History()).storable == 2


# --- the checker's judgement -----------------------------------------------------------------------------


def _not_ready(h: History, label: str = "main", query: dict = QUERY) -> CollectionRecord:
    return CollectionRecord(label, query, "not_ready", error="stopped early", t_wall=100.0,
                            not_ready_seq=len(h.events))


def test_not_ready_is_no_failure_when_too_few_reports_reached_the_batch() -> None:
    h = History()
    f = upload(h, 0, status=None)
    h.fault(f, "drop-request")
    h.error(f)
    upload(h, 1, t=BASE - 3600)
    rec = run_record(2, statuses={0: "error"}, times={1: BASE - 3600}, collections=(_not_ready(h),))
    rep = checker.check(rec, h.events, scenario())
    assert rep.verdict_class == VerdictClass.PASS, rep.summary
    assert "not ready, rightly" in rep.summary and "expected pass: met" in rep.summary
    assert verdict(rep, "collections").evidence["not_ready"]["main"]["reason"] == "uploads"
    # the same stop with report 1 in the batch: the claim does not hold -> not completed
    rec2 = run_record(2, statuses={0: "error"}, collections=(_not_ready(h),))
    h2 = History()
    f = upload(h2, 0, status=None)
    h2.fault(f, "drop-request")
    h2.error(f)
    upload(h2, 1)
    rep2 = checker.check(rec2, h2.events, scenario())
    assert rep2.verdict_class == VerdictClass.CLEAN_FAILURE and "NOT met" in rep2.summary
    # events after the recorded prefix do not change the judgement
    later = History()
    later.events = list(h.events)
    upload(later, 1)
    assert checker.check(rec, later.events, scenario()).verdict_class == VerdictClass.PASS


def test_not_ready_after_the_leader_gave_up_is_a_clean_failure() -> None:
    h = History()
    upload(h, 0)
    h.init("J1", [0], status=403, problem="unauthorizedRequest", states={})
    h.exchange("agg_delete", "DELETE", f"/tasks/{TASK}/aggregation_jobs/J1", 204)
    rec = run_record(1, collections=(_not_ready(h),))
    rep = checker.check(rec, h.events, scenario(allowed_problem_types=("unauthorizedRequest",)))
    assert rep.verdict_class == VerdictClass.CLEAN_FAILURE, rep.summary
    assert verdict(rep, "collections").evidence["not_ready"]["main"]["reason"] == "aggregation"


def test_a_batch_by_id_of_a_batch_that_never_formed_is_judged_as_the_current_batch() -> None:
    h = History()
    f = upload(h, 0, status=None)
    h.fault(f, "drop-request")
    h.error(f)
    cur = _not_ready(h, query={"type": 2, "subtype": 1})
    again = attrs.evolve(_not_ready(h, "again", {"type": 2, "subtype": 0}), t_wall=101.0)
    rec = attrs.evolve(run_record(1, statuses={0: "error"}, collections=(cur, again)),
                       task=TaskSpec(vdaf=HIST, query_type="fixed_size", max_batch_query_count=2))
    rep = checker.check(rec, h.events, scenario())
    assert rep.verdict_class == VerdictClass.PASS, rep.summary


def test_not_ready_without_a_history_prefix_is_not_completed() -> None:
    h = History()
    upload(h, 0, status=None)
    rec = run_record(1, statuses={0: "error"},
                     collections=(CollectionRecord("main", QUERY, "not_ready", error="x", t_wall=9.0),))
    assert checker.check(rec, h.events, scenario()).verdict_class == VerdictClass.CLEAN_FAILURE


def test_a_not_ready_collection_with_a_result_is_a_violation() -> None:
    h = History()
    upload(h, 0, status=None)
    c = attrs.evolve(_not_ready(h), result=histogram([0]))
    rep = checker.check(run_record(1, statuses={0: "error"}, collections=(c,)), h.events, scenario())
    assert rep.verdict_class == VerdictClass.VIOLATION and verdict(rep, "collections").valid is False


# --- other rules campaigns rely on ---------------------------------------------------------------------------


def _complete(label: str, ids: list[int], t_wall: float) -> CollectionRecord:
    return CollectionRecord(label, QUERY, "complete", histogram(ids), len(ids), (BASE, 3600), t_wall=t_wall)


def _honest(n: int) -> History:
    h = History()
    for i in range(n):
        upload(h, i)
    h.init("J1", list(range(n)))
    h.collect("C1", n)
    h.agg_share(n)
    return h


def test_a_batch_released_below_min_batch_size_is_a_violation() -> None:
    rec = run_record(2, collections=(_complete("main", [0, 1], 9.0),), min_batch_size=2)
    assert checker.check(rec, _honest(2).events, scenario()).verdict_class == VerdictClass.PASS
    small = attrs.evolve(rec, task=TaskSpec(vdaf=HIST, min_batch_size=3))
    rep = checker.check(small, _honest(2).events, scenario())
    assert rep.verdict_class == VerdictClass.VIOLATION
    assert "report_count 2 < min_batch_size 3" in verdict(rep, "safety").detail


def test_a_late_report_need_not_be_counted_but_must_not_change_the_batch() -> None:
    # reports 0, 1 collected at t=3; report 2 uploaded (acknowledged) at t=4; the batch again at t=5
    h = _honest(2)
    upload(h, 2)
    ups = tuple(UploadRecord(i, str(i), BASE, "success", t_wall=float(t)) for i, t in ((0, 1), (1, 2), (2, 4)))
    first, again = _complete("main", [0, 1], 3.0), _complete("again", [0, 1], 5.0)
    rec = RunRecord("t", TASK, TaskSpec(vdaf=HIST, max_batch_query_count=2), BASE, 0, ups, (first, again))
    rep = checker.check(rec, h.events, scenario())
    assert rep.verdict_class == VerdictClass.PASS, rep.summary
    assert verdict(rep, "completeness").valid is True
    # counted the second time: the two collections of one batch differ
    changed = attrs.evolve(rec, collections=(first, _complete("again", [0, 1, 2], 5.0)))
    rep = checker.check(changed, h.events, scenario())
    assert rep.verdict_class == VerdictClass.VIOLATION and verdict(rep, "idempotency").valid is False
    # an acknowledged report uploaded before the collection is still required
    early = attrs.evolve(rec, uploads=tuple(attrs.evolve(u, t_wall=2.5) if u.index == 2 else u for u in ups))
    assert verdict(checker.check(early, h.events, scenario()), "completeness").valid is False


def test_a_far_future_upload_the_proxy_acknowledged_is_not_the_leaders_doing() -> None:
    h = History()
    upload(h, 0)
    f = upload(h, 1, t=BASE + 864_000, status=200)
    h.fault(f, "respond", phase="request", status=200)
    h.init("J1", [0])
    rec = run_record(2, times={1: BASE + 864_000}, collections=(_complete("main", [0], 9.0),))
    rep = checker.check(rec, h.events, scenario(rejected_uploads={1: "reportTooEarly"}))
    assert verdict(rep, "rejected-uploads").valid is True, verdict(rep, "rejected-uploads").detail
    assert not verdict(rep, "rejected-uploads").optional  # the proxy's 2xx is not the Leader's doing
    # the Leader itself acknowledging it is the finding
    h2 = History()
    upload(h2, 0)
    upload(h2, 1, t=BASE + 864_000)
    h2.init("J1", [0])
    rep2 = checker.check(rec, h2.events, scenario(rejected_uploads={1: "reportTooEarly"}))
    assert verdict(rep2, "rejected-uploads").optional[0].startswith("Leader: upload 1 acknowledged")


def test_uploads_map_to_flows_by_time_when_one_never_reached_the_proxy() -> None:
    # upload 1 failed before any upload request (its HPKE config fetch was dropped)
    h = History()
    for i, t in ((0, 1.0), (2, 3.0)):
        upload(h, i)
        h.events[-2] = attrs.evolve(h.events[-2], t_wall=t - 0.5)
    ups = (UploadRecord(0, "0", BASE, "success", t_wall=1.0), UploadRecord(1, "1", BASE, "error", t_wall=2.0),
           UploadRecord(2, "2", BASE, "success", t_wall=3.0))
    rec = RunRecord("t", TASK, TaskSpec(vdaf=HIST), BASE, 0, ups, ())
    from harness.check.flows import Context
    ctx = Context(rec, h.events, scenario())
    assert ctx.upload_mapping_ok
    assert {i: [f.req.report_ids[0] for f in fls] for i, fls in ctx.upload_flows.items()} == \
        {0: [rid(0)], 2: [rid(2)]}
    # without wall times the old, order-based mapping stays (and sees the mismatch)
    rec0 = attrs.evolve(rec, uploads=tuple(attrs.evolve(u, t_wall=0.0) for u in ups))
    assert not Context(rec0, h.events, scenario()).upload_mapping_ok
