"""Per-role conformance invariants (harness.check.conformance) over recorded histories: each
one holds on an honest run, fails on the behaviour it names, and names the culprit role."""

from __future__ import annotations

import attrs
from test_checker import BASE, TASK, History, honest, record, rid, scenario

from harness.check import checker
from harness.check.conformance import checksum_of
from harness.check.verdict import VerdictClass


def verdict(h: History, name: str, rec=None, sc=None):
    rep = checker.check(rec or record(), h.events, sc or scenario())
    return next(v for v in rep.verdicts if v.invariant == name), rep


def share(h: History, ids, *, status=200, problem=None, copy_of=None, origin=None):
    """An AggregateShareReq for the run's batch, with the real count and checksum of ``ids``."""
    ids = [rid(i) for i in ids]
    return h.exchange("agg_share", "POST", f"/tasks/{TASK}/aggregate_shares", status,
                      {"message": "AggregateShareReq", "report_count": len(ids), "checksum": checksum_of(ids),
                       "interval": [BASE, 3600], "body_sha256": "s" + "".join(ids)},
                      {"message": "AggregateShare", "body_sha256": "c1"}, problem=problem, copy_of=copy_of,
                      origin=origin)


def base(n=6) -> History:
    h = History()
    for i in range(n):
        h.upload(i)
    return h


# --- leader-jobs --------------------------------------------------------------------------------------------


def test_leader_jobs_holds_for_one_job_per_report_and_identical_retries():
    h = base()
    h.init("J1", [0, 1, 2])
    h.init("J1", [0, 1, 2])  # a retry: same path, same body
    h.init("J2", [3, 4, 5])
    v, _ = verdict(h, "leader-jobs")
    assert v.valid is True


def test_leader_jobs_flags_a_report_in_two_jobs():
    h = base()
    h.init("J1", [0, 1, 2])
    h.init("J2", [2, 3])
    v, rep = verdict(h, "leader-jobs")
    assert v.valid is False and rep.verdict_class == VerdictClass.VIOLATION
    assert v.detail.startswith(f"Leader: report {rid(2)} offered in aggregation jobs J1 and J2 (dap-09 §10.1")


def test_leader_jobs_flags_a_failed_job_resharded_under_a_new_id():
    h = base()
    j1 = h.request("agg_init", "PUT", f"/tasks/{TASK}/aggregation_jobs/J1",
                   {"message": "AggregationJobInitReq", "report_ids": [rid(0), rid(1)], "body_sha256": "J1b"})
    h.error(j1, "timeout")
    h.init("J2", [0, 1])
    v, _ = verdict(h, "leader-jobs")
    assert v.valid is False and "re-sent report" in v.detail and "under a new job ID J2 instead of retrying J1" in v.detail


def test_leader_jobs_allows_report_too_early_and_a_refused_request_and_copies():
    h = base()
    h.init("J1", [0], states={rid(0): "reject:report_too_early"})
    h.init("J2", [0])  # the one rejection after which a later job may carry it
    h.init("J3", [1], status=403, problem="unauthorizedRequest")
    h.init("J4", [1])  # the Helper refused J3 as a whole: nothing changed
    orig = h.init("J5", [2])
    h.init("J6", [2], copy_of=orig, origin="synthesize:reinit_new_job")  # the proxy's forgery, not the Leader's
    v, _ = verdict(h, "leader-jobs")
    assert v.valid is True, v.detail


def test_leader_jobs_flags_a_retry_with_another_body():
    h = base()
    h.init("J1", [0, 1], body="a")
    h.init("J1", [0, 1], body="b")
    v, _ = verdict(h, "leader-jobs")
    assert v.valid is False and "re-sent the init of job J1 with another body" in v.detail


# --- leader-late-jobs ---------------------------------------------------------------------------------------


def test_leader_late_jobs():
    h = base(7)
    h.init("J1", list(range(6)))
    share(h, range(6))
    v, _ = verdict(h, "leader-late-jobs", rec=record(7))
    assert v.valid is True
    h.init("J2", [6])  # report 6 is in the batch already shared
    v, _ = verdict(h, "leader-late-jobs", rec=record(7))
    assert v.valid is False and v.detail.startswith("Leader: aggregation job J2 carries 1 report(s) of a batch")
    # the share request agreed with what both had committed when it was sent: the late job is
    # leader-late-jobs' finding, not a disagreement about the batch
    v, _ = verdict(h, "batch-agreement", rec=record(7), sc=scenario(complete=False))
    assert v.valid is True, v.detail


# --- leader-retries (SHOULD) ----------------------------------------------------------------------------------


def test_leader_retries_is_optional_never_a_violation():
    h = base()
    h.fault(h.init("J1", [0, 1, 2], status=503), "respond", status=503)  # the proxy's 503
    h.init("J1", [0, 1, 2])  # retried
    h.init("J2", [3, 4, 5])
    share(h, range(6))
    v, rep = verdict(h, "leader-retries")
    assert v.valid is True and not v.optional
    h = base()
    h.fault(h.init("J1", [0, 1, 2], status=503), "respond", status=503)
    h.exchange("agg_delete", "DELETE", f"/tasks/{TASK}/aggregation_jobs/J1", 200)
    v, rep = verdict(h, "leader-retries", sc=scenario(complete=False))
    assert v.valid is True and v.optional == ("Leader: gave up aggregation job J1 after one retryable answer (503 from the proxy) "
                                              "without retrying it (SHOULD: requests to the Helper are retryable, "
                                              "dap-09 §10.3, §16)",)
    assert rep.optional == v.optional and "without optional recovery" in rep.summary



def test_leader_retries_an_aggregate_share_given_up_when_the_collection_failed():
    """A lost AggregateShare not re-sent and the collection job failed: optional, the clean
    failure meets an expectation that relies on the retry (Expectation.optional_recovery)."""
    from harness.check.verdict import expectation_met

    h = base()
    h.init("J1", list(range(6)))
    h.fault(share(h, range(6)), "drop-response", phase="response")
    h.exchange("collection_create", "PUT", f"/tasks/{TASK}/collection_jobs/C1", 201,
               {"message": "CollectionReq", "interval": [BASE, 3600]})
    h.exchange("collection_poll", "POST", f"/tasks/{TASK}/collection_jobs/C1", 502, problem="about:blank")
    rec = record(collections=())
    v, rep = verdict(h, "leader-retries", rec=rec, sc=scenario(optional_recovery="retries"))
    assert v.valid is True and v.optional and v.optional[0].startswith(
        "Leader: gave up the aggregate share request after one retryable answer (no answer)")
    assert expectation_met(VerdictClass.CLEAN_FAILURE, scenario(optional_recovery="retries").expect, rep.optional)
    assert not expectation_met(VerdictClass.CLEAN_FAILURE, scenario().expect, rep.optional)

# --- helper-order ----------------------------------------------------------------------------------------------


def test_helper_order():
    h = base()
    h.init("J1", [0, 1, 2])
    v, _ = verdict(h, "helper-order")
    assert v.valid is True
    h = base()
    fid = h.request("agg_init", "PUT", f"/tasks/{TASK}/aggregation_jobs/J1",
                    {"message": "AggregationJobInitReq", "report_ids": [rid(0), rid(1)], "body_sha256": "J1b"})
    h.response(fid, 201, {"message": "AggregationJobResp", "report_ids": [rid(1), rid(0)],
                          "prepare_states": {rid(0): "continue", rid(1): "continue"}})
    v, _ = verdict(h, "helper-order")
    assert v.valid is False and v.detail.startswith("Helper: answered agg_init J1") and "another order" in v.detail


def test_helper_order_leaves_a_response_the_proxy_changed_to_the_other_checks():
    h = base()
    fid = h.request("agg_init", "PUT", f"/tasks/{TASK}/aggregation_jobs/J1",
                    {"message": "AggregationJobInitReq", "report_ids": [rid(0), rid(1)], "body_sha256": "J1b"})
    h.response(fid, 201, {"message": "AggregationJobResp", "report_ids": [rid(1), rid(0)],
                          "prepare_states": {rid(0): "continue", rid(1): "continue"}})
    h.fault(fid, "corrupt-field", phase="request", field="prepare_inits", op="reverse", before=[1], after=[2])
    v, _ = verdict(h, "helper-order")
    assert v.valid is True


# --- batch-agreement -----------------------------------------------------------------------------------------


def test_batch_agreement_holds_when_both_sides_agree():
    h = base()
    h.init("J1", list(range(6)))
    share(h, range(6))
    v, _ = verdict(h, "batch-agreement")
    assert v.valid is True and "1 aggregate share request(s) agree" in v.detail


def test_batch_agreement_blames_the_helper_for_a_wrong_batch_mismatch():
    h = base()
    h.init("J1", list(range(6)))
    h.init("J1", list(range(6)))  # an identical retry the Helper re-accumulated (it answers the same)
    share(h, range(6), status=400, problem="batchMismatch")
    v, rep = verdict(h, "batch-agreement", sc=scenario(complete=False))
    assert v.valid is False and v.detail.startswith("Helper: answered batchMismatch to an AggregateShareReq")
    assert rep.verdict_class == VerdictClass.VIOLATION


def test_batch_agreement_blames_the_leader_for_a_count_its_jobs_did_not_commit():
    h = base()
    h.init("J1", list(range(6)))
    h.exchange("agg_delete", "DELETE", f"/tasks/{TASK}/aggregation_jobs/J1", 200)  # the Leader dropped the job
    share(h, range(6), status=400, problem="batchMismatch")
    v, _ = verdict(h, "batch-agreement", sc=scenario(complete=False))
    assert v.valid is False and "Leader: AggregateShareReq" in v.detail and "committed 0" in v.detail


def test_batch_agreement_blames_a_helper_that_accepts_a_mismatch():
    h = base()
    h.init("J1", list(range(6)))
    orig = share(h, range(6))
    share(h, range(7), copy_of=orig, origin="synthesize:agg_share_mutated")  # a forged count, accepted
    v, _ = verdict(h, "batch-agreement")
    assert v.valid is False and "Helper: accepted an AggregateShareReq" in v.detail and "for 7 report(s)" in v.detail


def test_batch_agreement_does_not_judge_what_the_history_cannot_show():
    h = base()
    orig = h.init("J1", list(range(6)))
    copy = h.request("agg_init", "PUT", f"/tasks/{TASK}/aggregation_jobs/J9",
                     {"message": "AggregationJobInitReq", "report_ids": [rid(0)], "body_sha256": "J9b"},
                     copy_of=orig, origin="synthesize:reinit_new_job")
    h.error(copy, "connection reset")  # the Helper may have committed report 0 again: its side is unknown
    share(h, range(6), status=400, problem="batchMismatch")
    v, _ = verdict(h, "batch-agreement", sc=scenario(complete=False))
    assert v.valid is True and "not judged" in v.evidence["note"]


def test_checksum_is_the_xor_of_report_id_digests():
    import hashlib
    a, b = rid(1), rid(2)
    want = bytes(x ^ y for x, y in zip(hashlib.sha256(bytes.fromhex(a)).digest(),
                                      hashlib.sha256(bytes.fromhex(b)).digest(), strict=True)).hex()
    assert checksum_of([a, b]) == want and checksum_of([]) == "00" * 32 and checksum_of([a, a]) == "00" * 32


# --- collection-jobs -----------------------------------------------------------------------------------------


def _collection_put(h: History) -> str:
    return h.exchange("collection_create", "PUT", f"/tasks/{TASK}/collection_jobs/C1", 201,
                      {"message": "CollectionReq", "body_sha256": "main", "interval": [BASE, 3600]})


def test_collection_jobs():
    h = honest()
    orig = _collection_put(h)
    v, _ = verdict(h, "collection-jobs")
    assert v.valid is True
    path = f"/tasks/{TASK}/collection_jobs/C1"
    h.exchange("collection_create", "PUT", path, 201, {"message": "CollectionReq", "body_sha256": "other",
                                                        "interval": [BASE + 3600, 3600]},
               copy_of=orig, origin="synthesize:collection_mutated")
    v, _ = verdict(h, "collection-jobs")
    assert v.valid is False and v.detail.startswith("Leader: accepted 2 different CollectionReqs for collection job C1")


def test_collection_jobs_a_refused_second_request_is_right():
    h = honest()
    orig = _collection_put(h)
    h.exchange("collection_create", "PUT", f"/tasks/{TASK}/collection_jobs/C1", 400,
               {"message": "CollectionReq", "body_sha256": "other"}, problem="invalidMessage", copy_of=orig,
               origin="synthesize:collection_mutated")
    v, _ = verdict(h, "collection-jobs", rec=attrs.evolve(record()))
    assert v.valid is True


def test_docs_list_every_invariant_with_its_section_and_role():
    """docs/invariants.md's table names every invariant of the checker, with a DAP-09 (or
    VDAF-08) section and the role it judges."""
    from pathlib import Path

    from harness.check.invariants import INVARIANTS

    doc = (Path(__file__).resolve().parent.parent / "docs" / "invariants.md").read_text()
    table = doc.split("## Every invariant: its section and the role it judges", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    assert set(rows) == set(INVARIANTS)
    for name, (_, section, role, _) in rows.items():
        assert "§" in section or "VDAF-08" in section, name
        assert any(r in role for r in ("Leader", "Helper")), name
