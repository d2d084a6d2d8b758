"""Unit tests of harness.check.checker: each invariant on constructed records and histories.

Every honest-run variant below is checked to pass first, then one thing is broken and the
invariant named must fail (so each test could fail).
"""

from __future__ import annotations

import attrs
import pytest

from dap.vdaf.params import VdafParams
from faults.history import FaultEvent, MessageEvent
from faults.plan import Plan
from faults.scenario import Expectation, Scenario, TaskSpec, WorkloadSpec
from harness.check import checker
from harness.check.verdict import VerdictClass, exit_code_for, expectation_met
from harness.record import CollectionRecord, RunRecord, UploadRecord

TASK = "dGFzaw"
BASE = 1_700_000_000 - 1_700_000_000 % 3600
PREFIX = "urn:ietf:params:ppm:dap:error:"
HIST = VdafParams.from_interop({"type": "Prio3Histogram", "length": "8", "chunk_length": "2"})


def rid(i: int) -> str:
    return f"{i:032x}"


class History:
    """Builds a proxy history: flows of request/response events plus faults."""

    def __init__(self) -> None:
        self.events: list = []
        self.flow_seq = 0

    def _seq(self) -> int:
        return len(self.events)

    def request(self, kind, method, path, summary=None, *, link=None, copy_of=None, origin=None, flow_id=None,
                copy_rule=None):
        self.flow_seq += 1
        fid = flow_id or f"f{self.flow_seq}"
        self.events.append(MessageEvent(self._seq(), 0.0, 0.0, link or _link(kind), kind, "request", fid,
                                        self.flow_seq, method, path, summary={"task_id": TASK, **(summary or {})},
                                        copy_of=copy_of, origin=origin, copy_rule=copy_rule))
        return fid

    def response(self, fid, status, summary=None, *, problem=None):
        req = next(e for e in self.events if isinstance(e, MessageEvent) and e.flow_id == fid)
        s = dict(summary or {})
        media = None
        if problem is not None:
            s = {"problem_type": PREFIX + problem if ":" not in problem else problem, "problem_token": problem}
            media = "application/problem+json"
        self.events.append(MessageEvent(self._seq(), 0.0, 0.0, req.link, req.kind, "response", fid, req.flow_seq,
                                        req.method, req.path, status=status, media_type=media, summary=s,
                                        copy_of=req.copy_of, origin=req.origin))

    def error(self, fid, msg="connection lost"):
        req = next(e for e in self.events if isinstance(e, MessageEvent) and e.flow_id == fid)
        self.events.append(MessageEvent(self._seq(), 0.0, 0.0, req.link, req.kind, "error", fid, req.flow_seq,
                                        req.method, req.path, error=msg))

    def fault(self, fid, action, phase="request", rule_id="r1", **changed):
        req = next(e for e in self.events if isinstance(e, MessageEvent) and e.flow_id == fid)
        self.events.append(FaultEvent(self._seq(), 0.0, 0.0, rule_id, action, req.link, req.kind, phase, fid,
                                      req.flow_seq, changed=changed))

    def exchange(self, kind, method, path, status, req=None, resp=None, *, problem=None, **kw):
        fid = self.request(kind, method, path, req, **kw)
        self.response(fid, status, resp, problem=problem)
        return fid

    # DAP shapes
    def upload(self, i, status=201, problem=None, **kw):
        return self.exchange("upload", "PUT", f"/tasks/{TASK}/reports", status,
                             {"message": "Report", "report_ids": [rid(i)], "time": BASE}, problem=problem, **kw)

    def init(self, job, ids, status=201, states=None, problem=None, body="b", **kw):
        states = states if states is not None else {rid(i): "continue" for i in ids}
        resp = {"message": "AggregationJobResp", "report_ids": [rid(i) for i in ids], "prepare_states": states}
        return self.exchange("agg_init", "PUT", f"/tasks/{TASK}/aggregation_jobs/{job}", status,
                             {"message": "AggregationJobInitReq", "report_ids": [rid(i) for i in ids],
                              "body_sha256": f"{job}{body}"}, resp, problem=problem, **kw)

    def agg_share(self, count, status=200, problem=None, cipher="c1", body="s", config=None, **kw):
        resp = {"message": "AggregateShare", "body_sha256": cipher}
        if config is not None:
            resp["config_ids"] = [config]
        return self.exchange("agg_share", "POST", f"/tasks/{TASK}/aggregate_shares", status,
                             {"message": "AggregateShareReq", "report_count": count, "body_sha256": body},
                             resp, problem=problem, **kw)

    def collect(self, job, count, *, status=200, problem=None, **kw):
        self.exchange("collection_create", "PUT", f"/tasks/{TASK}/collection_jobs/{job}", 201,
                      {"message": "CollectionReq", "interval": [BASE, 3600]})
        self.exchange("collection_poll", "POST", f"/tasks/{TASK}/collection_jobs/{job}", 202)
        resp = {"message": "Collection", "report_count": count, "interval": [BASE, 3600]} if status == 200 else {}
        return self.exchange("collection_poll", "POST", f"/tasks/{TASK}/collection_jobs/{job}", status, None, resp,
                             problem=problem, **kw)


def _link(kind):
    if kind == "upload":
        return "client->leader"
    if kind.startswith("collection"):
        return "collector->leader"
    return "leader->helper"


QUERY = {"type": 1, "batch_interval_start": BASE, "batch_interval_duration": 3600}


def histogram(ids, n=8):
    out = ["0"] * n
    for i in ids:
        out[i] = str(int(out[i]) + 1)
    return out


def record(n=6, *, statuses=None, collections=None, vdaf=HIST, measure=str, infra=()):
    statuses = statuses or {}
    ups = tuple(UploadRecord(i, measure(i), BASE + 5, statuses.get(i, "success")) for i in range(n))
    if collections is None:
        collections = (CollectionRecord("main", QUERY, "complete", histogram(range(n), vdaf.length or 8), n,
                                        (BASE, 3600)),)
    return RunRecord("t", TASK, TaskSpec(vdaf=vdaf), BASE, 0, ups, tuple(collections), infra_errors=tuple(infra))


def scenario(**expect):
    return Scenario("t", Plan(), WorkloadSpec(TaskSpec(vdaf=HIST)), Expectation(**expect))


def honest(n=6):
    h = History()
    for i in range(n):
        h.upload(i)
    h.init("J1", list(range(n)))
    h.collect("C1", n)
    h.agg_share(n)
    return h


def verdict(report, name):
    return next(v for v in report.verdicts if v.invariant == name)


def test_honest_run_passes():
    rep = checker.check(record(), honest().events, scenario())
    assert rep.verdict_class == VerdictClass.PASS, rep.summary
    assert all(v.valid is True for v in rep.verdicts), [(v.invariant, v.detail) for v in rep.verdicts]
    assert "expected pass: met" in rep.summary


# --- safety -----------------------------------------------------------------------------------------


def test_double_count_is_violation():
    rec = record(collections=[CollectionRecord("main", QUERY, "complete", histogram([0, 1, 1, 2, 3, 4, 5]), 7)])
    rep = checker.check(rec, honest().events, scenario())
    v = verdict(rep, "safety")
    assert v.valid is False and rep.verdict_class == VerdictClass.VIOLATION
    assert v.evidence["collections"]["main"]["double_counted"] == [1]


def test_forged_bucket_is_violation():
    # bucket 7 was never uploaded (6 uploads: buckets 0..5)
    rec = record(collections=[CollectionRecord("main", QUERY, "complete", histogram([0, 1, 2, 3, 4, 5, 7]), 7)])
    v = verdict(checker.check(rec, honest().events, scenario()), "safety")
    assert v.valid is False
    assert v.evidence["collections"]["main"]["unexplained"] == {"7": 1}


def test_garbage_aggregate_is_violation():
    rec = record(collections=[CollectionRecord("main", QUERY, "complete",
                                               ["1", "1", "1", "1", "1", str(2**60), "0", "0"], 6)])
    v = verdict(checker.check(rec, honest().events, scenario()), "safety")
    assert v.valid is False and v.evidence["collections"]["main"]["double_counted"] == [5]
    assert v.evidence["collections"]["main"]["multiplicity"] == {"5": 2**60}


def test_report_count_mismatch_is_violation():
    rec = record(collections=[CollectionRecord("main", QUERY, "complete", histogram(range(6)), 5)])
    v = verdict(checker.check(rec, honest().events, scenario()), "safety")
    assert v.valid is False and "report_count 5 != |S| 6" in v.detail


def test_refused_upload_counted_is_violation():
    h = History()
    for i in range(6):
        if i == 2:
            h.upload(i, status=400, problem="reportRejected")
        else:
            h.upload(i)
    rec = record(statuses={2: "error"})
    v = verdict(checker.check(rec, h.events, scenario(complete=False)), "safety")
    assert v.valid is False and v.evidence["collections"]["main"]["counted_refused"] == [2]


def test_ambiguous_upload_may_count():
    """The client saw the response replaced by a 500 after the Leader stored the report."""
    h = History()
    for i in range(6):
        fid = h.upload(i)
        if i == 3:
            h.fault(fid, "respond", phase="response", status=500, replaced_status=201)
    rec = record(statuses={3: "error"})
    rep = checker.check(rec, h.events, scenario())
    assert rep.verdict_class == VerdictClass.PASS, rep.summary
    assert verdict(rep, "completeness").evidence["ambiguous"] == [3]


def test_corrupted_upload_counted_is_violation():
    h = History()
    for i in range(6):
        fid = h.upload(i)
        if i == 4:
            h.fault(fid, "corrupt-field", field="helper_encrypted_input_share.payload", op="flip",
                    before="aa", after="ab")
    v = verdict(checker.check(record(), h.events, scenario(complete=False)), "safety")
    assert v.valid is False and "4" in {str(i) for i in v.evidence["collections"]["main"]["counted_corrupted"]}


def test_changes_that_undo_each_other_leave_the_upload_clean():
    """Two rules flipping the same bit: the Leader got the Client's bytes (body_sha256 after
    the last change = the original's), so counting the report is right."""
    def run(after_last: str):
        h = History()
        for i in range(6):
            if i != 4:
                h.upload(i)
                continue
            fid = h.exchange("upload", "PUT", f"/tasks/{TASK}/reports", 201,
                             {"message": "Report", "report_ids": [rid(i)], "time": BASE, "body_sha256": "orig"})
            h.fault(fid, "corrupt-field", field="public_share", op="flip", before="aa", after="ab", body_sha256="x1")
            h.fault(fid, "corrupt-field", field="public_share", op="flip", before="ab", after="aa",
                    body_sha256=after_last)
        return verdict(checker.check(record(), h.events, scenario(complete=False)), "safety")

    assert run("orig").valid is True
    v = run("x2")
    assert v.valid is False and "reports corrupted in flight counted: [4]" in v.detail


def test_corrupted_init_payload_counted_is_violation():
    h = History()
    for i in range(6):
        h.upload(i)
    fid = h.init("J1", list(range(6)))
    h.fault(fid, "corrupt-field", field="prepare_inits[2].payload", op="flip", before="00", after="01")
    v = verdict(checker.check(record(), h.events, scenario(complete=False)), "safety")
    assert v.valid is False and "counted_corrupted" in v.evidence["collections"]["main"]


def test_corrupted_report_excluded_passes():
    h = History()
    for i in range(6):
        h.upload(i)
    fid = h.init("J1", list(range(6)), states={**{rid(i): "continue" for i in range(6)},
                                              rid(2): "reject:vdaf_prep_error"})
    h.fault(fid, "corrupt-field", field="prepare_inits[2].payload", op="flip", before="00", after="01")
    rec = record(collections=[CollectionRecord("main", QUERY, "complete", histogram([0, 1, 3, 4, 5]), 5)])
    rep = checker.check(rec, h.events, scenario())
    assert rep.verdict_class == VerdictClass.PASS, rep.summary
    assert verdict(rep, "safety").evidence["corrupted"] == {"2": [fid and h.events[-1].seq]}


def test_report_outside_interval_is_violation():
    ups = tuple(UploadRecord(i, str(i), BASE + 5 if i else BASE + 7200, "success") for i in range(6))
    rec = attrs.evolve(record(), uploads=ups)
    v = verdict(checker.check(rec, honest().events, scenario(complete=False)), "safety")
    assert v.valid is False and v.evidence["collections"]["main"]["counted_outside_batch"] == [0]


def test_disjoint_batches_sharing_a_report_is_violation():
    q2 = {"type": 1, "batch_interval_start": BASE + 3600, "batch_interval_duration": 3600}
    ups = tuple(UploadRecord(i, str(i), BASE + 5 if i < 3 else BASE + 3605, "success") for i in range(6))
    cols = [CollectionRecord("a", QUERY, "complete", histogram([0, 1, 2]), 3),
            CollectionRecord("b", q2, "complete", histogram([3, 4, 5]), 3)]
    rec = attrs.evolve(record(collections=cols), uploads=ups)
    assert checker.check(rec, honest().events, scenario()).verdict_class == VerdictClass.PASS
    # a collection of a wider interval (overlapping both) that double counts across batches
    q3 = {"type": 1, "batch_interval_start": BASE, "batch_interval_duration": 7200}
    cols.append(CollectionRecord("c", q3, "complete", histogram([2, 3]), 2))
    v = verdict(checker.check(attrs.evolve(rec, collections=tuple(cols)), honest().events, scenario()), "safety")
    assert v.valid is False and "double_counted_across_batches" in v.evidence


def test_sum_power_of_two_decoding():
    vdaf = VdafParams.from_interop({"type": "Prio3Sum", "bits": "8"})
    ok = record(vdaf=vdaf, measure=lambda i: str(2**i),
                collections=[CollectionRecord("main", QUERY, "complete", str(63), 6)])
    rep = checker.check(ok, honest().events, scenario())
    assert rep.verdict_class == VerdictClass.PASS, rep.summary
    # report 1 counted twice: 2+2 carries into bit 2 -> 1 + 4 + 4... popcount != report_count
    dbl = attrs.evolve(ok, collections=(CollectionRecord("main", QUERY, "complete", str(1 + 2 + 2 + 4 + 8 + 16 + 32), 7),))
    v = verdict(checker.check(dbl, honest().events, scenario()), "safety")
    assert v.valid is False and "popcount" in v.detail
    forged = attrs.evolve(ok, collections=(CollectionRecord("main", QUERY, "complete", str(63 + 128), 7),))
    assert verdict(checker.check(forged, honest().events, scenario()), "safety").valid is False


def test_count_is_weak_but_bounded():
    vdaf = VdafParams.from_interop({"type": "Prio3Count"})
    ok = record(vdaf=vdaf, measure=lambda i: "1", collections=[CollectionRecord("main", QUERY, "complete", "6", 6)])
    rep = checker.check(ok, honest().events, scenario())
    assert rep.verdict_class == VerdictClass.PASS, rep.summary
    assert "weakest" in verdict(rep, "safety").evidence["collections"]["main"]["note"]
    too_many = attrs.evolve(ok, collections=(CollectionRecord("main", QUERY, "complete", "7", 7),))
    assert verdict(checker.check(too_many, honest().events, scenario()), "safety").valid is False
    inconsistent = attrs.evolve(ok, collections=(CollectionRecord("main", QUERY, "complete", "5", 6),))
    assert verdict(checker.check(inconsistent, honest().events, scenario()), "safety").valid is False


# --- completeness --------------------------------------------------------------------------------------


def test_lost_acknowledged_report():
    rec = record(collections=[CollectionRecord("main", QUERY, "complete", histogram([0, 1, 2, 4, 5]), 5)])
    v = verdict(checker.check(rec, honest().events, scenario(complete=True)), "completeness")
    assert v.valid is False and v.evidence["lost"] == {"main": [3]}
    v = verdict(checker.check(rec, honest().events, scenario(complete=False)), "completeness")
    assert v.valid is True and v.evidence["lost"] == {"main": [3]}


def test_expected_rejected_not_required():
    h = History()
    for i in range(6):
        h.upload(i, status=400 if i == 5 else 201, problem="reportTooEarly" if i == 5 else None)
    rec = record(statuses={5: "error"},
                 collections=[CollectionRecord("main", QUERY, "complete", histogram(range(5)), 5)])
    rep = checker.check(rec, h.events, scenario(rejected_uploads={5: "reportTooEarly"}))
    assert rep.verdict_class == VerdictClass.PASS, rep.summary
    assert verdict(rep, "rejected-uploads").valid is True


# --- rejected uploads ------------------------------------------------------------------------------------


def test_a_should_refuse_upload_acknowledged_is_optional_but_counting_it_is_a_violation():
    rep = checker.check(record(), honest().events, scenario(rejected_uploads={5: "reportTooEarly"}))
    v = verdict(rep, "rejected-uploads")
    # acknowledging is a SHOULD the Leader did without; counting it is the violation
    assert v.valid is False and "counted in 'main'" in v.detail
    assert v.optional == ("Leader: upload 5 acknowledged; it SHOULD be refused with reportTooEarly (dap-09 §9.2)",)
    assert verdict(rep, "safety").valid is False


def test_expected_rejection_wrong_problem_type():
    h = History()
    for i in range(6):
        h.upload(i, status=400 if i == 5 else 201, problem="reportRejected" if i == 5 else None)
    rec = record(statuses={5: "error"}, collections=[CollectionRecord("main", QUERY, "complete",
                                                                      histogram(range(5)), 5)])
    rep = checker.check(rec, h.events, scenario(rejected_uploads={5: "reportTooEarly"}))
    v = verdict(rep, "rejected-uploads")
    assert v.valid is True and "SHOULD be refused with reportTooEarly" in v.optional[0]
    assert rep.verdict_class == VerdictClass.PASS and "pass without optional recovery" in rep.summary


def test_a_far_future_upload_a_fault_corrupted_is_not_judged_by_its_refusal():
    """A truncated or corrupted far-future report is refused for that (invalidMessage): its
    answer says nothing about reportTooEarly, so no SHOULD is reported missing; the same
    answer to the report as the Client sent it is."""
    def run(corrupted: bool):
        h = History()
        for i in range(6):
            fid = h.upload(i, status=400 if i == 5 else 201, problem="invalidMessage" if i == 5 else None)
            if corrupted and i == 5:
                h.fault(fid, "corrupt-field", field="public_share", op="flip", before="aa", after="ab")
        rec = record(statuses={5: "error"}, collections=[CollectionRecord("main", QUERY, "complete",
                                                                          histogram(range(5)), 5)])
        return checker.check(rec, h.events, scenario(rejected_uploads={5: "reportTooEarly"}))

    rep = run(corrupted=True)
    v = verdict(rep, "rejected-uploads")
    assert v.valid is True and v.optional == () and v.evidence["5"]["changed_by_faults"], v
    assert rep.verdict_class == VerdictClass.PASS and "optional" not in rep.summary, rep.summary
    v = verdict(run(corrupted=False), "rejected-uploads")
    assert v.valid is True and "SHOULD be refused with reportTooEarly" in v.optional[0]


# --- collections / clean failure ----------------------------------------------------------------------------


def test_clean_failure_class_and_expectation():
    h = honest()
    rec = record(collections=[CollectionRecord("main", QUERY, "error", None, None, error="batchMismatch")])
    rep = checker.check(rec, h.events, scenario(outcome="pass_or_clean_failure"))
    assert rep.verdict_class == VerdictClass.CLEAN_FAILURE, rep.summary
    assert "met" in rep.summary and "NOT" not in rep.summary
    rep = checker.check(rec, h.events, scenario(outcome="pass"))
    assert rep.verdict_class == VerdictClass.CLEAN_FAILURE and "expected pass: NOT met" in rep.summary
    assert not expectation_met(rep.verdict_class, Expectation(outcome="pass"))


def test_failed_collection_with_result_is_violation():
    rec = record(collections=[CollectionRecord("main", QUERY, "timeout", histogram(range(6)), 6)])
    rep = checker.check(rec, honest().events, scenario())
    assert verdict(rep, "collections").valid is False and rep.verdict_class == VerdictClass.VIOLATION


def test_infra_wins():
    rep = checker.check(record(infra=("helper did not start",)), [], scenario())
    assert rep.verdict_class == VerdictClass.INFRA
    assert not expectation_met(rep.verdict_class, Expectation(outcome="pass_or_clean_failure"))


# --- auth ---------------------------------------------------------------------------------------------------


def test_tampered_init_refused_passes_and_bypass_fails():
    h = History()
    for i in range(6):
        h.upload(i)
    bad = h.init("J1", list(range(6)), status=403, problem="unauthorizedRequest")
    h.fault(bad, "auth", mode="strip")
    h.init("J1", list(range(6)))
    h.collect("C1", 6)
    h.agg_share(6)
    rep = checker.check(record(), h.events, scenario())
    v = verdict(rep, "auth")
    assert v.valid is True and rep.verdict_class == VerdictClass.PASS, rep.summary
    assert v.evidence["genuine_after"][bad]

    h2 = History()
    for i in range(6):
        h2.upload(i)
    bad = h2.init("J1", list(range(6)))  # tampered and accepted
    h2.fault(bad, "auth", mode="wrong_value")
    v = verdict(checker.check(record(), h2.events, scenario()), "auth")
    assert v.valid is False and "answered 201" in v.detail


def test_tampered_init_changing_state_fails():
    h = History()
    for i in range(6):
        h.upload(i)
    bad = h.init("J1", list(range(6)), status=403, problem="unauthorizedRequest")
    h.fault(bad, "auth", mode="strip")
    h.init("J1", list(range(6)), status=409)
    v = verdict(checker.check(record(), h.events, scenario(complete=False)), "auth")
    assert v.valid is False and "409" in v.detail
    h = History()
    bad = h.init("J1", [0, 1], status=403, problem="unauthorizedRequest")
    h.fault(bad, "auth", mode="strip")
    h.init("J2", [0, 1], states={rid(0): "reject:report_replayed", rid(1): "continue"})
    v = verdict(checker.check(record(), h.events, scenario(complete=False)), "auth")
    assert v.valid is False and "report_replayed" in v.detail


def test_tampered_collection_job_created_fails():
    h = honest()
    fid = h.exchange("collection_create", "PUT", f"/tasks/{TASK}/collection_jobs/C9", 403,
                     problem="unauthorizedRequest")
    h.fault(fid, "auth", mode="strip")
    assert verdict(checker.check(record(), h.events, scenario()), "auth").valid is True
    h.exchange("collection_poll", "POST", f"/tasks/{TASK}/collection_jobs/C9", 202)
    v = verdict(checker.check(record(), h.events, scenario()), "auth")
    assert v.valid is False and "only a tampered PUT" in v.detail


def test_tampered_copy_is_judged_too():
    h = honest()
    orig = h.agg_share(6, status=403, problem="unauthorizedRequest")
    h.fault(orig, "auth", mode="strip")
    h.fault(orig, "duplicate", copies=1)
    h.agg_share(6, status=200, copy_of=orig, origin="duplicate")
    v = verdict(checker.check(record(), h.events, scenario()), "auth")
    assert v.valid is False and len(v.evidence["tampered"]) == 2


def test_forged_poll_with_wrong_credentials_must_be_refused():
    """A forged copy of a poll (synthesize forged_copy): served the aggregate = violation naming the Leader."""
    h = honest()
    poll = [e.flow_id for e in h.events if getattr(e, "kind", None) == "collection_poll"][-1]
    h.fault(poll, "synthesize", phase="response", message="forged_copy", credentials="wrong_bearer")
    h.exchange("collection_poll", "POST", f"/tasks/{TASK}/collection_jobs/C1", 403, problem="unauthorizedRequest",
               copy_of=poll, origin="synthesize:forged_copy")
    v = verdict(checker.check(record(), h.events, scenario()), "auth")
    assert v.valid is True and len(v.evidence["tampered"]) == 1
    h = honest()
    poll = [e.flow_id for e in h.events if getattr(e, "kind", None) == "collection_poll"][-1]
    h.fault(poll, "synthesize", phase="response", message="forged_copy", credentials="wrong_bearer")
    h.exchange("collection_poll", "POST", f"/tasks/{TASK}/collection_jobs/C1", 200,
               None, {"message": "Collection", "report_count": 6}, copy_of=poll, origin="synthesize:forged_copy")
    v = verdict(checker.check(record(), h.events, scenario()), "auth")
    assert v.valid is False and v.detail.startswith("Leader: tampered collection_poll") and "answered 200" in v.detail


def test_two_forgeries_of_one_flow_are_told_apart_by_their_rule():
    """One rule forges a DELETE with the genuine credentials, another with none: only the
    second is a tampered request (the copy names the rule that made it)."""
    h = honest()
    create = next(e.flow_id for e in h.events if getattr(e, "kind", None) == "collection_create")
    path = f"/tasks/{TASK}/collection_jobs/C1"
    h.fault(create, "synthesize", phase="response", rule_id="genuine", message="delete_collection")
    h.fault(create, "synthesize", phase="response", rule_id="forged", message="delete_collection", credentials="strip")
    h.exchange("collection_delete", "DELETE", path, 204, copy_of=create, origin="synthesize:delete_collection",
               copy_rule="genuine")
    h.exchange("collection_delete", "DELETE", path, 403, problem="unauthorizedRequest", copy_of=create,
               origin="synthesize:delete_collection", copy_rule="forged")
    v = verdict(checker.check(record(), h.events, scenario()), "auth")
    assert v.valid is True and len(v.evidence["tampered"]) == 1, v.detail


def test_genuine_credential_beside_a_wrong_one_may_be_accepted():
    """``conflicting``: DAP-09 fixes no rule for two credentials; a refusal must still be typed."""
    h = honest()
    orig = h.agg_share(6)
    h.fault(orig, "synthesize", phase="response", message="forged_copy", credentials="conflicting")
    h.agg_share(6, copy_of=orig, origin="synthesize:forged_copy")
    v = verdict(checker.check(record(), h.events, scenario()), "auth")
    assert v.valid is True and len(v.evidence["ambiguous_accepted"]) == 1 and "accepted (allowed)" in v.detail
    h = honest()
    orig = h.agg_share(6)
    h.fault(orig, "synthesize", phase="response", message="forged_copy", credentials="conflicting")
    h.agg_share(6, status=400, problem="invalidMessage", copy_of=orig, origin="synthesize:forged_copy")
    v = verdict(checker.check(record(), h.events, scenario()), "auth")
    assert v.valid is False and "Helper: tampered agg_share" in v.detail and "invalidMessage" in v.detail


def test_auth_on_upload_is_not_judged():
    h = honest()
    fid = h.upload(99)
    h.fault(fid, "auth", mode="strip")
    assert verdict(checker.check(record(), h.events, scenario()), "auth").valid is True


# --- idempotency ----------------------------------------------------------------------------------------------


def test_collections_of_same_batch_must_agree():
    cols = [CollectionRecord("a", QUERY, "complete", histogram(range(6)), 6),
            CollectionRecord("b", QUERY, "complete", histogram(range(6)), 6)]
    assert checker.check(record(collections=cols), honest().events, scenario()).verdict_class == VerdictClass.PASS
    cols[1] = CollectionRecord("b", QUERY, "complete", histogram(range(5)), 5)
    v = verdict(checker.check(record(collections=cols), honest().events, scenario(complete=False)), "idempotency")
    assert v.valid is False and v.evidence["disagreeing_collections"] == [["a", "b"]]


def test_polls_must_agree():
    h = honest()
    h.exchange("collection_poll", "POST", f"/tasks/{TASK}/collection_jobs/C1", 200, None,
               {"message": "Collection", "report_count": 5, "interval": [BASE, 3600]})
    v = verdict(checker.check(record(), h.events, scenario()), "idempotency")
    assert v.valid is False and "disagreeing_polls" in v.evidence


def test_duplicate_init_must_get_same_states():
    h = honest()
    orig = next(e.flow_id for e in h.events if e.kind == "agg_init")
    h.init("J1", list(range(6)), copy_of=orig, origin="duplicate")
    assert verdict(checker.check(record(), h.events, scenario()), "idempotency").valid is True
    h.init("J1", list(range(6)), states={rid(i): "reject:report_replayed" for i in range(6)},
           copy_of=orig, origin="duplicate")
    v = verdict(checker.check(record(), h.events, scenario()), "idempotency")
    assert v.valid is False and "PrepareResp states" in v.detail


def test_duplicate_init_with_changed_body_is_not_compared():
    h = honest()
    fid = h.init("J1", list(range(6)), status=409)
    h.fault(fid, "corrupt-field", field="prepare_inits[0].payload", op="flip", before="00", after="01")
    # 201 vs 409 is fine when the body differed
    assert verdict(checker.check(record(), h.events, scenario(complete=False)), "idempotency").valid is True
    h2 = honest()
    h2.init("J1", list(range(6)), status=409)
    assert verdict(checker.check(record(), h2.events, scenario()), "idempotency").valid is False


def test_reinit_with_other_body_accepted_is_violation():
    # the mutated re-PUT answered 409: what the Helper must do
    h = honest()
    orig = next(e.flow_id for e in h.events if e.kind == "agg_init")
    h.init("J1", list(range(6)), status=409, body="mutated", copy_of=orig, origin="synthesize:reinit_mutated")
    assert verdict(checker.check(record(), h.events, scenario()), "idempotency").valid is True
    # answered 201 (prepared anew), even with every report refused so that nothing counts twice
    h = honest()
    orig = next(e.flow_id for e in h.events if e.kind == "agg_init")
    mutated = h.init("J1", list(range(6)), body="mutated",
                     states={rid(i): "reject:batch_collected" for i in range(6)},
                     copy_of=orig, origin="synthesize:reinit_mutated")
    v = verdict(checker.check(record(), h.events, scenario()), "idempotency")
    assert v.valid is False and "different bodies" in v.detail
    seq = {e.flow_id: e.flow_seq for e in h.events}
    assert v.evidence["conflicting_inits"] == {f"/tasks/{TASK}/aggregation_jobs/J1": [seq[orig], seq[mutated]]}


def test_reinit_with_other_body_after_delete_or_changed_in_flight_is_not_judged():
    h = honest()
    h.exchange("agg_delete", "DELETE", f"/tasks/{TASK}/aggregation_jobs/J1", 204)
    h.init("J1", list(range(6)), body="other")
    assert verdict(checker.check(record(), h.events, scenario()), "idempotency").valid is True
    # the first body was changed in flight: what the Helper stored is not the recorded body
    h = honest()
    first = next(e.flow_id for e in h.events if e.kind == "agg_init")
    h.fault(first, "corrupt-field", field="prepare_inits[0].payload", op="flip", before="00", after="01")
    h.init("J1", list(range(6)), body="other")
    assert "conflicting_inits" not in verdict(checker.check(record(), h.events, scenario()), "idempotency").evidence


def test_report_prepared_in_two_jobs_is_violation():
    h = honest()
    orig = next(e.flow_id for e in h.events if e.kind == "agg_init")
    # the forged second job answered report_replayed: anti-replay works
    h.init("J2", [0], states={rid(0): "reject:report_replayed"}, copy_of=orig, origin="synthesize:reinit_new_job")
    assert verdict(checker.check(record(), h.events, scenario()), "anti-replay").valid is True
    h = honest()
    orig = next(e.flow_id for e in h.events if e.kind == "agg_init")
    forged = h.init("J2", [0], copy_of=orig, origin="synthesize:reinit_new_job")
    v = verdict(checker.check(record(), h.events, scenario()), "anti-replay")
    assert v.valid is False and "prepared in 2 aggregation jobs" in v.detail
    seq = {e.flow_id: e.flow_seq for e in h.events}
    assert v.evidence["replayed"] == {rid(0): {f"/tasks/{TASK}/aggregation_jobs/J1": seq[orig],
                                               f"/tasks/{TASK}/aggregation_jobs/J2": seq[forged]}}


def test_report_in_two_jobs_allowed_when_first_rejected_or_other_agg_param():
    # report_too_early at first: the Leader may send it again in a later job
    h = History()
    h.upload(0)
    h.init("J1", [0], states={rid(0): "reject:report_too_early"})
    h.init("J2", [0])
    assert verdict(checker.check(record(1), h.events, scenario(complete=False)), "anti-replay").valid is True
    # Poplar1: once per aggregation parameter
    h = History()
    h.upload(0)
    for job, param in (("J1", "level0"), ("J2", "level1")):
        fid = h.init(job, [0])
        i = next(i for i, e in enumerate(h.events) if e.flow_id == fid and e.phase == "request")
        h.events[i] = attrs.evolve(h.events[i], summary=attrs.evolve(h.events[i].summary, agg_param_sha256=param))
    assert verdict(checker.check(record(1), h.events, scenario(complete=False)), "anti-replay").valid is True


def test_duplicate_agg_share_resealed_is_a_note_another_config_a_violation():
    """DAP-09 §4.6.2: the Helper's handling of identical AggregateShareReqs MUST be idempotent
    (served, one query unit); "should all yield the same response" is lowercase, so a fresh
    HPKE sealing of the share (Janus 0.7) is a note in the summary, never a violation, nor a
    reason to accept a clean failure. The share under another Collector config, or a refusal
    of the repeat, is not the same response: a violation."""
    h = honest()
    h.agg_share(6, cipher="c1", config=7)
    report = checker.check(record(), h.events, scenario())
    assert verdict(report, "idempotency").valid is True and not verdict(report, "idempotency").notes
    h.agg_share(6, cipher="c2", config=7)
    report = checker.check(record(), h.events, scenario())
    v = verdict(report, "idempotency")
    assert v.valid is True, v.detail
    assert len(v.notes) == 1 and "fresh HPKE encryption" in v.notes[0] and "§4.6.2" in v.notes[0]
    assert v.evidence["resealed"] and not v.optional and not report.optional
    assert report.verdict_class.value == "pass"
    assert "note: Helper: repeated identical AggregateShareReq" in report.summary
    # another Collector config for the same request: a different response
    h.agg_share(6, cipher="c3", config=8)
    v = verdict(checker.check(record(), h.events, scenario()), "idempotency")
    assert v.valid is False and "different HPKE configs" in v.detail
    # a repeat refused (a second query unit consumed): different status classes
    h = honest()
    h.agg_share(6, cipher="c1", config=7)
    h.agg_share(6, status=400, problem="batchQueriedTooManyTimes")
    v = verdict(checker.check(record(), h.events, scenario()), "idempotency")
    assert v.valid is False and "answered" in v.detail


def test_reseal_note_never_turns_a_clean_failure_into_a_met_expectation():
    """A note is not an optional recovery: an expectation that relies on one (the Leader's
    retries) is not met by a clean failure because the Helper re-sealed a share."""
    from faults.scenario import LEADER_RETRY, Expectation
    h = honest()
    h.agg_share(6, cipher="c1", config=7)
    h.agg_share(6, cipher="c2", config=7)
    rec = record(collections=(CollectionRecord("main", QUERY, "error", error="collection_poll: HTTP 500"),))
    sc = attrs.evolve(scenario(), expect=Expectation(optional_recovery=LEADER_RETRY))
    report = checker.check(rec, h.events, sc)
    assert report.verdict_class.value == "clean_failure" and not report.optional
    assert not expectation_met(report.verdict_class, sc.expect, report.optional)


# --- error typing ------------------------------------------------------------------------------------------------


def test_unexpected_5xx_is_violation_injected_is_not():
    h = honest()
    fid = h.agg_share(6, status=503)
    h.fault(fid, "respond", phase="request", status=503)
    assert verdict(checker.check(record(), h.events, scenario()), "error-typing").valid is True
    h.agg_share(6, status=500, body="other")
    v = verdict(checker.check(record(), h.events, scenario()), "error-typing")
    assert v.valid is False and v.evidence["unexpected"][0]["status"] == 500


def _failed_collection(share_fault=None, poll_problem="about:blank", drop=False):
    """A history whose only AggregateShareReq failed as the Leader saw it (``share_fault``: a
    ``respond`` fault's answer; ``drop``: the answer lost), then a 502 poll."""
    h = History()
    for i in range(6):
        h.upload(i)
    h.init("J1", list(range(6)))
    h.exchange("collection_create", "PUT", f"/tasks/{TASK}/collection_jobs/C1", 201,
               {"message": "CollectionReq", "interval": [BASE, 3600]})
    fid = h.agg_share(6)
    if share_fault is not None:
        h.fault(fid, "respond", phase="response", replaced_status=200, **share_fault)
    if drop:
        h.fault(fid, "drop-response", phase="response", dropped="response", upstream_status=200)
    h.exchange("collection_poll", "POST", f"/tasks/{TASK}/collection_jobs/C1", 502, problem=poll_problem)
    return h


def test_poll_5xx_after_the_aggregate_share_failed_is_allowed():
    """DAP-09 §4.6.1: "If obtaining aggregate shares fails, then the Leader responds to
    subsequent HTTP POST requests to the collection job with an HTTP error status and a
    problem document"; §3.2 allows 4xx or 5xx and types outside the DAP namespace. So a
    failed job's 5xx with a problem document is conformant whatever the Helper's failure
    was (the reference Leader: 502 about:blank, Janus: 500 collection-job-abandoned)."""
    failed = [CollectionRecord("main", QUERY, "error")]
    seq = lambda h: [max(e.flow_seq for e in h.events)]  # noqa: E731 - the poll is the last flow
    # the Helper's share replaced by a bare 400: the Leader cannot type the failure
    h = _failed_collection({"status": 400, "problem_type": None})
    v = verdict(checker.check(record(collections=failed), h.events, scenario(complete=False)), "error-typing")
    assert v.valid is True and v.evidence["relayed"] == seq(h)
    # a typed refusal (batchMismatch): the draft does not make the Leader relay the Helper's type
    h = _failed_collection({"status": 400, "problem_type": "batchMismatch"})
    v = verdict(checker.check(record(collections=failed), h.events, scenario(complete=False)), "error-typing")
    assert v.valid is True and v.evidence["relayed"] == seq(h)
    # retryable answers the Leader gave up on, or no answer at all
    for fault in ({"status": 503, "problem_type": None}, None):
        h = _failed_collection(fault, drop=fault is None)
        v = verdict(checker.check(record(collections=failed), h.events, scenario(complete=False)), "error-typing")
        assert v.valid is True and v.evidence["relayed"] == seq(h), fault
    # ... but not without a problem document (a bare 5xx: §4.6.1 owes one)
    h = _failed_collection({"status": 400, "problem_type": None}, poll_problem=None)
    assert verdict(checker.check(record(collections=failed), h.events, scenario(complete=False)),
                   "error-typing").valid is False
    # ... nor when the Helper answered 200 untouched: nothing failed
    h = _failed_collection()
    assert verdict(checker.check(record(collections=failed), h.events, scenario(complete=False)),
                   "error-typing").valid is False


def test_poll_5xx_of_a_batch_that_cannot_fill_is_an_optional_wait_not_done():
    """The Leader gave the only aggregation job up (DELETE), so the batch cannot reach
    min_batch_size; a Leader that then abandons the collection job (Janus: 500 with a problem
    document) instead of waiting for more reports skipped a SHOULD (DAP-09 §4.6.5): optional,
    not a violation. While the batch could still fill, the same 5xx is a violation."""
    failed = [CollectionRecord("main", QUERY, "error")]

    def history(delete_first: bool) -> History:
        h = History()
        for i in range(6):
            h.upload(i)
        h.exchange("collection_create", "PUT", f"/tasks/{TASK}/collection_jobs/C1", 201,
                   {"message": "CollectionReq", "interval": [BASE, 3600]})
        h.init("J1", list(range(6)), status=403, problem="unauthorizedRequest")
        if delete_first:
            h.exchange("agg_delete", "DELETE", f"/tasks/{TASK}/aggregation_jobs/J1", 204)
        h.exchange("collection_poll", "POST", f"/tasks/{TASK}/collection_jobs/C1", 500,
                   problem="https://docs.divviup.org/references/janus-errors#collection-job-abandoned")
        return h

    h, early = history(True), history(False)  # early: the 5xx while the job could still be retried
    report = checker.check(record(collections=failed), h.events, scenario(complete=False))
    v = verdict(report, "error-typing")
    assert v.valid is True, v.detail
    assert v.evidence["given_up_unfillable"] and len(v.optional) == 1
    assert "SHOULD wait" in v.optional[0] and "§4.6.5" in v.optional[0] and v.optional[0].startswith("Leader:")
    assert report.verdict_class.value == "clean_failure" and "without optional recovery" in report.summary
    v = verdict(checker.check(record(collections=failed), early.events, scenario(complete=False)), "error-typing")
    assert v.valid is False and "500 from the upstream" in v.detail


def test_real_5xx_behind_replaced_response_is_violation():
    h = honest()
    fid = h.agg_share(6, status=500, body="x")
    h.fault(fid, "respond", phase="response", status=503, replaced_status=500)
    assert verdict(checker.check(record(), h.events, scenario()), "error-typing").valid is False


def test_problem_type_table():
    h = honest()
    h.upload(50, status=400, problem="batchMismatch")
    rep = checker.check(record(), h.events, scenario())
    v = verdict(rep, "error-typing")
    assert v.valid is False and "batchMismatch is not expected for upload" in v.detail
    rep = checker.check(record(), h.events, scenario(allowed_problem_types=("batchMismatch",)))
    assert verdict(rep, "error-typing").valid is True


def test_bare_4xx():
    h = honest()
    h.exchange("collection_poll", "POST", f"/tasks/{TASK}/collection_jobs/nope", 404)
    h.init("J1", list(range(6)), status=409, body="other")
    assert verdict(checker.check(record(), h.events, scenario()), "error-typing").valid is True
    h.exchange("agg_share", "POST", f"/tasks/{TASK}/aggregate_shares", 400)
    assert verdict(checker.check(record(), h.events, scenario()), "error-typing").valid is False


def test_undecodable_2xx_is_violation():
    h = honest()
    h.exchange("agg_share", "POST", f"/tasks/{TASK}/aggregate_shares", 200, {"body_sha256": "q"},
               {"decode_error": "AggregateShare: trailing bytes"})
    assert verdict(checker.check(record(), h.events, scenario()), "error-typing").valid is False


# --- composition -------------------------------------------------------------------------------------------------


def test_raising_invariant_is_unknown_not_a_crash():
    def boom(ctx):
        raise RuntimeError("kaput")

    rep = checker.check(record(), honest().events, scenario(), invariants={**checker.INVARIANTS, "boom": boom})
    v = verdict(rep, "boom")
    assert v.valid is None and "kaput" in v.detail
    # an invariant that cannot decide makes the run inconclusive: unknown is never a pass
    assert rep.verdict_class == VerdictClass.INCONCLUSIVE and "unknown: boom" in rep.summary
    assert rep.reasons == (f"invariant boom could not decide: {v.detail}",)
    assert exit_code_for(rep, scenario()) == 4


def test_history_before_the_scenario_is_ignored():
    h = History()
    h.agg_share(1, status=500, body="old", flow_id="old")  # seq 0..1: an earlier scenario's 5xx
    start = len(h.events)
    for ev in honest().events:
        h.events.append(attrs.evolve(ev, seq=ev.seq + start))
    rec = attrs.evolve(record(), history_since_seq=start)
    assert checker.check(rec, h.events, scenario()).verdict_class == VerdictClass.PASS
    assert checker.check(attrs.evolve(rec, history_since_seq=0), h.events,
                         scenario()).verdict_class == VerdictClass.VIOLATION


@pytest.mark.parametrize("outcome,cls,met", [
    ("pass", "pass", True), ("pass", "clean_failure", False), ("clean_failure", "clean_failure", True),
    ("clean_failure", "pass", False), ("pass_or_clean_failure", "pass", True),
    ("pass_or_clean_failure", "violation", False),
])
def test_expectation_met(outcome, cls, met):
    assert expectation_met(cls, Expectation(outcome=outcome)) is met


def test_resend_after_delete_may_differ():
    h = honest()
    h.exchange("agg_delete", "DELETE", f"/tasks/{TASK}/aggregation_jobs/J1", 204)
    h.init("J1", list(range(6)), status=410)
    assert verdict(checker.check(record(), h.events, scenario()), "idempotency").valid is True


def test_synthesized_copy_without_hash_is_its_own_body():
    h = honest()
    orig = next(e.flow_id for e in h.events if e.kind == "agg_init")
    fid = h.request("agg_init", "PUT", f"/tasks/{TASK}/aggregation_jobs/J1",
                    {"report_ids": [rid(i) for i in range(6)]}, copy_of=orig, origin="synthesize:reinit_mutated")
    h.response(fid, 409)
    h.events[:] = [attrs.evolve(ev, summary=attrs.evolve(ev.summary, body_sha256=None))  # an older history
                   if isinstance(ev, MessageEvent) else ev for ev in h.events]
    assert verdict(checker.check(record(), h.events, scenario()), "idempotency").valid is True


def test_count_completeness_by_count_only():
    vdaf = VdafParams.from_interop({"type": "Prio3Count"})
    short = record(vdaf=vdaf, measure=lambda i: "1", collections=[CollectionRecord("main", QUERY, "complete", "5", 5)])
    v = verdict(checker.check(short, honest().events, scenario()), "completeness")
    assert v.valid is False and "by count only" in v.detail


def test_undecodable_aggregate_is_violation():
    rec = record(collections=[CollectionRecord("main", QUERY, "complete", "not a vector", 6)])
    v = verdict(checker.check(rec, honest().events, scenario()), "safety")
    assert v.valid is False and "does not decode" in v.detail


def test_report_count_beyond_possible_reports():
    vdaf = VdafParams.from_interop({"type": "Prio3Count"})
    h = History()
    for i in range(6):
        h.upload(i, status=400 if i < 2 else 201, problem="reportRejected" if i < 2 else None)
    rec = record(vdaf=vdaf, measure=lambda i: "1", statuses={0: "error", 1: "error"},
                 collections=[CollectionRecord("main", QUERY, "complete", "5", 5)])
    v = verdict(checker.check(rec, h.events, scenario(complete=False)), "safety")
    assert v.valid is False and v.evidence["collections"]["main"]["could_count"] == [2, 3, 4, 5]


def test_fixed_size_batches_are_disjoint_and_complete_per_batch():
    fs = TaskSpec(vdaf=HIST, query_type="fixed_size")
    q = {"type": 2, "subtype": 1}
    h = History()
    for i in range(6):
        h.upload(i)
    for job, batch, ids in (("J1", "B1", [0, 1, 2]), ("J2", "B2", [3, 4, 5])):
        h.init(job, ids)
        h.events[-2] = attrs.evolve(h.events[-2], summary=attrs.evolve(h.events[-2].summary, batch_id=batch))
    cols = [CollectionRecord("a", q, "complete", histogram([0, 1, 2]), 3, batch_id="B1"),
            CollectionRecord("b", q, "complete", histogram([3, 4, 5]), 3, batch_id="B2")]
    rec = attrs.evolve(record(collections=cols), task=fs)
    rep = checker.check(rec, h.events, scenario())
    assert rep.verdict_class == VerdictClass.PASS, rep.summary
    assert verdict(rep, "completeness").evidence["batches"] == {"B1": [0, 1, 2], "B2": [3, 4, 5]}
    # only batch B1 collected: B2's reports are not lost, just not collected
    only_a = attrs.evolve(rec, collections=(cols[0],))
    assert checker.check(only_a, h.events, scenario()).verdict_class == VerdictClass.PASS
    lost = attrs.evolve(rec, collections=(cols[0], CollectionRecord("b", q, "complete", histogram([3, 4]), 2,
                                                                   batch_id="B2")))
    v = verdict(checker.check(lost, h.events, scenario()), "completeness")
    assert v.valid is False and v.evidence["lost"] == {"b": [5]}
    shared = attrs.evolve(rec, collections=(cols[0], CollectionRecord("b", q, "complete", histogram([2, 3, 4, 5]),
                                                                     4, batch_id="B2")))
    v = verdict(checker.check(shared, h.events, scenario()), "safety")
    assert v.valid is False and v.evidence["double_counted_across_batches"] == {"a|b": [2]}
    # the same batch ID twice (by_batch_id re-collection) must agree instead
    same = attrs.evolve(rec, collections=(cols[0], attrs.evolve(cols[0], label="again", result=histogram([0, 1]),
                                                                report_count=2)))
    assert verdict(checker.check(same, h.events, scenario(complete=False)), "idempotency").valid is False


def test_outdated_config_retry_is_the_same_index():
    h = History()
    for i in range(6):
        if i == 1:
            fid = h.upload(100 + i, status=400, problem="outdatedConfig")
            h.fault(fid, "corrupt-field", field="leader_encrypted_input_share.config_id", op="add", before=1, after=2)
        h.upload(i)
    rep = checker.check(record(), h.events, scenario())
    assert rep.verdict_class == VerdictClass.PASS, rep.summary
    assert verdict(rep, "safety").evidence["corrupted"] == {}
    # without the retry succeeding the index is corrupted-only and must not be counted
    h2 = History()
    for i in range(6):
        fid = h2.upload(i)
        if i == 1:
            h2.fault(fid, "corrupt-bytes", flipped_bits=[100])
    v = verdict(checker.check(record(), h2.events, scenario()), "safety")
    assert v.valid is False and "1" in v.evidence["collections"]["main"]["counted_corrupted"]


def test_evidence_carries_report_ids_and_history_dicts_are_accepted():
    from faults.history import event_to_dict

    rec = record(collections=[CollectionRecord("main", QUERY, "complete", histogram([0, 1, 1, 2, 4, 5]), 6)])
    rep = checker.check(rec, [event_to_dict(e) for e in honest().events], scenario())
    safety, compl = verdict(rep, "safety"), verdict(rep, "completeness")
    assert safety.evidence["collections"]["main"]["double_counted_report_ids"] == {"1": [rid(1)]}
    assert compl.evidence["lost_report_ids"] == {"3": [rid(3)]}


def test_other_tasks_traffic_is_ignored():
    h = honest()
    fid = h.request("agg_init", "PUT", "/tasks/b3RoZXI/aggregation_jobs/X", {"report_ids": [rid(0)]})
    h.events[-1] = attrs.evolve(h.events[-1], summary={"task_id": "b3RoZXI", "report_ids": [rid(0)]})
    h.response(fid, 500)
    h.events[-1] = attrs.evolve(h.events[-1], summary={"task_id": "b3RoZXI"})
    assert checker.check(record(), h.events, scenario()).verdict_class == VerdictClass.PASS
    h.events[-1] = attrs.evolve(h.events[-1], summary={"task_id": TASK})  # now it is this task's 500
    h.events[-2] = attrs.evolve(h.events[-2], summary={"task_id": TASK, "report_ids": [rid(0)]})
    assert checker.check(record(), h.events, scenario()).verdict_class == VerdictClass.VIOLATION


def test_every_report_round_trips_through_json():
    """report.json is written with to_dict: evidence keys must already be strings."""
    import json

    from faults.scenario import to_dict
    from harness.check.verdict import check_report_from_dict

    h = History()
    for i in range(6):
        fid = h.upload(i)
        if i == 4:
            h.fault(fid, "corrupt-bytes", flipped_bits=[7])
    rec = record(collections=[CollectionRecord("main", QUERY, "complete", histogram([0, 1, 1, 2, 4, 5, 7]), 7)])
    rep = checker.check(rec, h.events, scenario(rejected_uploads={5: "reportTooEarly"}))
    assert rep.verdict_class == VerdictClass.VIOLATION
    assert check_report_from_dict(json.loads(json.dumps(to_dict(rep)))) == rep


# --- can the run be judged at all ------------------------------------------------------------------------


def test_a_recording_failure_makes_the_run_inconclusive():
    h = honest()
    assert checker.check(record(), h.events, scenario()).verdict_class == VerdictClass.PASS
    rec = attrs.evolve(record(), recording_failures=("history /x/history.jsonl: seq 5: OSError: No space left",))
    rep = checker.check(rec, h.events, scenario())
    assert rep.verdict_class == VerdictClass.INCONCLUSIVE
    assert rep.reasons == ("the fault proxy failed to record: history /x/history.jsonl: seq 5: OSError: "
                           "No space left",)


def test_a_history_gap_makes_even_a_violation_inconclusive():
    h = honest()
    gap = [e for e in h.events if e.seq != 3]
    rep = checker.check(record(), gap, scenario())
    assert rep.verdict_class == VerdictClass.INCONCLUSIVE and "gap" in rep.reasons[0] and "seq 3" in rep.reasons[0]
    # the end of the scenario is recorded: events lost at the end are a gap too
    rep = checker.check(attrs.evolve(record(), history_end_seq=max(e.seq for e in h.events) + 3), h.events,
                        scenario())
    assert rep.verdict_class == VerdictClass.INCONCLUSIVE and "2 event(s) missing" in rep.reasons[0]
    # a double count seen through a gap is not trusted either: what was lost could explain it
    bad = record(collections=[CollectionRecord("main", QUERY, "complete", ["2", "1", "1", "1", "1", "1", "0", "0"],
                                               7)])
    assert checker.check(bad, h.events, scenario()).verdict_class == VerdictClass.VIOLATION
    assert checker.check(bad, gap, scenario()).verdict_class == VerdictClass.INCONCLUSIVE


def test_a_rule_that_never_fired_makes_the_run_inconclusive_and_says_what_was_seen():
    from faults.actions import Delay
    from faults.plan import Matcher, Rule
    h = honest()
    plan = Plan(seed=1, rules=(Rule("slow-delete", Matcher(link="collector->leader", kind="collection_delete"),
                                    Delay(delay_ms=5)),))
    rep = checker.check(record(), h.events, attrs.evolve(scenario(), plan=plan))
    assert rep.verdict_class == VerdictClass.INCONCLUSIVE
    assert rep.reasons[0].startswith("rule slow-delete never fired: no collection_delete request was seen on "
                                     "collector->leader")
    optional = Plan(seed=1, rules=(attrs.evolve(plan.rules[0], optional=True),))
    assert checker.check(record(), h.events, attrs.evolve(scenario(), plan=optional)).verdict_class == \
        VerdictClass.PASS
