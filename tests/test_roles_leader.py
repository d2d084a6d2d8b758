"""The Leader at the HTTP level and the interop-draft test cases (interop-api.md §5).

Upload checks of dap-09.md §9.2 (reportTooEarly, reportRejected for expired / undecryptable,
outdatedConfig, invalidMessage, exact Content-Type, taskid in every problem document),
duplicate uploads counted once, collection-job PUT/POST/DELETE semantics, wrong tokens at
Leader and Helper, many aggregation jobs, batchOverlap with overlapping collections, a late
report excluded from a second identical collection.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import sqlite3
import time
from collections.abc import Iterator

import httpx
import pytest
from roles_fixtures import (
    Deployment,
    b64,
    build_report,
    expected_result,
    fetch_config,
    now_rounded,
)

from dap.constants import QueryType
from dap.messages import CollectionReq, HpkeCiphertext, Interval, Query, Report

COUNT = {"type": "Prio3Count"}
HIST = {"type": "Prio3Histogram", "length": "4", "chunk_length": "2"}
REPORT = "application/dap-report"


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = Deployment(tmp_path_factory.mktemp("leader"), leader_args=("--job-size", "40"))
    try:
        yield d
    finally:
        d.close()


def problem(r: httpx.Response, token: str, task_id: str, status: int = 400) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    doc = json.loads(r.content)
    assert doc["type"] == "urn:ietf:params:ppm:dap:error:" + token, doc
    assert doc["taskid"] == task_id


def db_rows(dep: Deployment, sql: str, *params: object) -> list[tuple]:
    con = sqlite3.connect(dep.leader.state_dir / "leader.sqlite3")
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def put_report(dep: Deployment, t: dict, body: bytes, ctype: str = REPORT) -> httpx.Response:
    return httpx.put(dep.leader.url + f"tasks/{t['task_id']}/reports", content=body,
                     headers={"Content-Type": ctype}, timeout=10)


def test_upload_checks(dep: Deployment) -> None:
    t = dep.add_task(COUNT)
    tid = t["task_id"]
    lc, hc = fetch_config(t["leader"], tid), fetch_config(t["helper"], tid)
    now = now_rounded()
    ok, _, _ = build_report(tid, COUNT, "1", now, lc, hc)
    problem(put_report(dep, t, ok, REPORT + "; charset=utf-8"), "invalidMessage", tid)
    problem(put_report(dep, t, ok[:-1]), "invalidMessage", tid)
    future, _, _ = build_report(tid, COUNT, "1", now + 10 * 86400, lc, hc)
    problem(put_report(dep, t, future), "reportTooEarly", tid)
    rep = Report.decode(ok)
    ct = rep.leader_encrypted_input_share
    outdated = Report(rep.report_metadata, rep.public_share,
                      HpkeCiphertext((ct.config_id + 1) % 256, ct.enc, ct.payload),
                      rep.helper_encrypted_input_share).encode()
    problem(put_report(dep, t, outdated), "outdatedConfig", tid)
    garbled = Report(rep.report_metadata, rep.public_share,
                     HpkeCiphertext(ct.config_id, ct.enc, bytes([ct.payload[0] ^ 1]) + ct.payload[1:]),
                     rep.helper_encrypted_input_share).encode()
    problem(put_report(dep, t, garbled), "reportRejected", tid)
    other = b64(os.urandom(32))
    r = httpx.put(dep.leader.url + f"tasks/{other}/reports", content=ok,
                  headers={"Content-Type": REPORT}, timeout=10)
    problem(r, "unrecognizedTask", other)
    # None of the refused reports was stored; the good one is, once, however often it comes.
    for _ in range(3):
        assert put_report(dep, t, ok).status_code == 201
    stored = db_rows(dep, "SELECT count(*) FROM reports WHERE task_id=?", bytes.fromhex(
        __import__("base64").urlsafe_b64decode(tid + "=").hex()))
    assert stored == [(1,)]
    # Expired task: reportRejected.
    t2 = dep.add_task(COUNT, task_expiration=now - 7200)
    lc2, hc2 = fetch_config(t2["leader"], t2["task_id"]), fetch_config(t2["helper"], t2["task_id"])
    late, _, _ = build_report(t2["task_id"], COUNT, "1", now, lc2, hc2)
    problem(put_report(dep, t2, late), "reportRejected", t2["task_id"])


def test_canned_report_uploaded_twice_counts_once(dep: Deployment) -> None:
    """interop §5 case 7."""
    t = dep.add_task(COUNT, min_batch_size=2)
    tid = t["task_id"]
    lc, hc = fetch_config(t["leader"], tid), fetch_config(t["helper"], tid)
    canned, _, _ = build_report(tid, COUNT, "1", now_rounded(), lc, hc)
    other, _, _ = build_report(tid, COUNT, "1", now_rounded(), lc, hc)
    for body in (canned, canned, other, canned):
        assert put_report(dep, t, body).status_code == 201
    r = dep.collect(t)
    assert r["status"] == "complete" and r["report_count"] == 2 and r["result"] == "2", r


def test_concurrent_uploads_share_commits_and_duplicates_count_once(dep: Deployment) -> None:
    """Concurrent uploads are group-committed: every one is acknowledged, a report uploaded
    many times at once (possibly within one transaction) is stored and counted once."""
    t = dep.add_task(COUNT, min_batch_size=17)
    tid = t["task_id"]
    lc, hc = fetch_config(t["leader"], tid), fetch_config(t["helper"], tid)
    canned, _, _ = build_report(tid, COUNT, "1", now_rounded(), lc, hc)
    others = [build_report(tid, COUNT, "1", now_rounded(), lc, hc)[0] for _ in range(16)]
    bodies = [body for pair in zip([canned] * 16, others) for body in pair]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda b: put_report(dep, t, b).status_code, bodies))
    assert codes == [201] * 32
    task_bytes = __import__("base64").urlsafe_b64decode(tid + "=")
    assert db_rows(dep, "SELECT count(*) FROM reports WHERE task_id=?", task_bytes) == [(17,)]
    r = dep.collect(t)
    assert r["status"] == "complete" and r["report_count"] == 17 and r["result"] == "17", r


def test_far_future_report_rejected_by_client_flow(dep: Deployment) -> None:
    """interop §5 case 3: the Client's upload of a far-future report fails; it is never counted."""
    t = dep.add_task(COUNT)
    r = dep.upload(t, "1", time=int(time.time()) + 365 * 86400)
    assert r["status"] == "error" and "reportTooEarly" in r["error"]
    assert dep.upload(t, "1")["status"] == "success"
    r = dep.collect(t)
    assert r["status"] == "complete" and r["result"] == "1" and r["report_count"] == 1


def test_many_reports_many_jobs(dep: Deployment) -> None:
    """interop §5 case 2: ~1000 reports split by the Leader into many aggregation jobs."""
    n = 1000
    t = dep.add_task(HIST, min_batch_size=n)
    tid = t["task_id"]
    lc, hc = fetch_config(t["leader"], tid), fetch_config(t["helper"], tid)
    rng = random.Random(5)
    ms = [str(rng.randrange(4)) for _ in range(n)]
    now = now_rounded()
    bodies = [build_report(tid, HIST, m, now, lc, hc)[0] for m in ms]
    with httpx.Client(timeout=30) as http, concurrent.futures.ThreadPoolExecutor(8) as pool:
        url = dep.leader.url + f"tasks/{tid}/reports"
        codes = list(pool.map(lambda b: http.put(url, content=b, headers={
            "Content-Type": REPORT}).status_code, bodies))
    assert codes == [201] * n
    r = dep.collect(t, timeout=120)
    assert r["status"] == "complete", r
    assert r["result"] == expected_result(HIST, ms) and r["report_count"] == n
    task_bytes = __import__("base64").urlsafe_b64decode(tid + "=")
    jobs = db_rows(dep, "SELECT count(*), max(c) FROM (SELECT count(*) AS c FROM report_aggs"
                   " WHERE task_id=? GROUP BY job_id)", task_bytes)
    assert jobs[0][0] >= n // 40 and jobs[0][1] <= 40, jobs


def test_wrong_tokens_rejected_by_leader_and_helper(dep: Deployment) -> None:
    """interop §5 case 4."""
    t = dep.add_task(COUNT)
    tid = t["task_id"]
    url = dep.leader.url + f"tasks/{tid}/collection_jobs/{b64(os.urandom(16))}"
    body = CollectionReq(Query(QueryType.TIME_INTERVAL, batch_interval=Interval(now_rounded(), 3600)),
                         b"").encode()
    ct = {"Content-Type": "application/dap-collect-req"}
    for headers in ({}, {"DAP-Auth-Token": "collector-wrong"},
                    {"DAP-Auth-Token": t["leader_token"]},
                    {"Authorization": "Bearer collector-wrong"}):
        problem(httpx.put(url, content=body, headers={**ct, **headers}, timeout=10),
                "unauthorizedRequest", tid, 403)
        problem(httpx.post(url, headers=headers, timeout=10), "unauthorizedRequest", tid, 403)
    # Nothing was created: the job is unknown to an authorised poll.
    assert httpx.post(url, headers={"DAP-Auth-Token": t["collector_token"]},
                      timeout=10).status_code == 404
    # The Helper refuses a Leader that presents the wrong token: jobs fail, nothing is counted.
    t2 = dep.add_task(COUNT)
    tid2 = t2["task_id"]
    # Re-register at a fresh task where the Helper knows another leader token.
    import secrets

    from roles_fixtures import b64 as _b64

    task_id = _b64(secrets.token_bytes(32))
    coll = dep.collector.call("add_task", {"task_id": task_id, "leader": t2["leader"], "vdaf": COUNT,
                                           "collector_authentication_token": "c-tok",
                                           "query_type": 1})
    common = {"task_id": task_id, "leader": t2["leader"], "helper": t2["helper"], "vdaf": COUNT,
              "vdaf_verify_key": _b64(os.urandom(16)), "max_batch_query_count": 1,
              "query_type": 1, "min_batch_size": 1, "time_precision": 3600,
              "collector_hpke_config": coll["collector_hpke_config"],
              "task_expiration": 32503680000}
    assert dep.leader.call("add_task", {**common, "role": "leader",
                                        "leader_authentication_token": "leader-one",
                                        "collector_authentication_token": "c-tok"})["status"] == "success"
    assert dep.helper.call("add_task", {**common, "role": "helper",
                                        "leader_authentication_token": "leader-two"})["status"] == "success"
    bad = {**t2, "task_id": task_id}
    assert dep.upload(bad, "1")["status"] == "success"
    task_bytes = __import__("base64").urlsafe_b64decode(task_id + "=")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = db_rows(dep, "SELECT state, detail FROM agg_jobs WHERE task_id=?", task_bytes)
        if rows and rows[0][0] == "abandoned":
            break
        time.sleep(0.1)
    assert rows and rows[0][0] == "abandoned" and "unauthorizedRequest" in rows[0][1], rows
    helper_log = (dep.helper.state_dir / "requests.log").read_text()
    assert f'/tasks/{task_id}/aggregation_jobs/' in helper_log
    assert '"status":403,"problem":"unauthorizedRequest"' in helper_log
    assert tid2


def test_collection_job_semantics(dep: Deployment) -> None:
    t = dep.add_task(COUNT)
    tid = t["task_id"]
    auth = {"DAP-Auth-Token": t["collector_token"]}
    url = dep.leader.url + f"tasks/{tid}/collection_jobs/{b64(os.urandom(16))}"
    now = now_rounded()
    body = CollectionReq(Query(QueryType.TIME_INTERVAL, batch_interval=Interval(now, 3600)),
                         b"").encode()
    ct = {**auth, "Content-Type": "application/dap-collect-req"}
    assert httpx.put(url, content=body, headers=ct, timeout=10).status_code == 201
    assert httpx.put(url, content=body, headers=ct, timeout=10).status_code == 201
    other = CollectionReq(Query(QueryType.TIME_INTERVAL, batch_interval=Interval(now, 7200)),
                          b"").encode()
    assert httpx.put(url, content=other, headers=ct, timeout=10).status_code == 409
    r = httpx.post(url, headers=auth, timeout=10)
    assert r.status_code == 202  # no reports yet: the Leader waits
    assert httpx.delete(url, headers=auth, timeout=10).status_code == 204
    assert httpx.post(url, headers=auth, timeout=10).status_code == 204
    # Misaligned interval, wrong query type, agg_param for Prio3.
    for bad, token in (
        (CollectionReq(Query(QueryType.TIME_INTERVAL, batch_interval=Interval(now + 1, 3600)), b""),
         "batchInvalid"),
        (CollectionReq(Query(QueryType.TIME_INTERVAL, batch_interval=Interval(now, 60)), b""),
         "batchInvalid"),
        (CollectionReq(Query(QueryType.TIME_INTERVAL, batch_interval=Interval(now, 3600)), b"x"),
         "invalidMessage"),
    ):
        u = dep.leader.url + f"tasks/{tid}/collection_jobs/{b64(os.urandom(16))}"
        problem(httpx.put(u, content=bad.encode(), headers=ct, timeout=10), token, tid)
    u = dep.leader.url + f"tasks/{tid}/collection_jobs/{b64(os.urandom(16))}"
    fs = CollectionReq.decode(bytes([2, 1, 0, 0, 0, 0]))
    problem(httpx.put(u, content=fs.encode(), headers=ct, timeout=10), "invalidMessage", tid)


def test_overlapping_collections_and_late_report(dep: Deployment) -> None:
    """interop §5 cases 5 and 6 (max_batch_query_count = 1)."""
    t = dep.add_task(COUNT, min_batch_size=3, max_batch_query_count=1)
    for m in ("1", "0", "1"):
        assert dep.upload(t, m)["status"] == "success"
    now = now_rounded()
    q = {"type": 1, "batch_interval_start": now - 3600, "batch_interval_duration": 7200}
    first = dep.collect(t, q)
    assert first["status"] == "complete" and first["result"] == "2", first
    # A late report for the collected interval is refused (never counted), also in the
    # interval's earlier hour, which had no report when it was collected ...
    for late_time in (None, now - 3600):
        extra = {} if late_time is None else {"time": late_time}
        late = dep.upload(t, "1", **extra)
        assert late["status"] == "error" and "reportRejected" in late["error"], late
    # ... and collecting the same interval again gives the same result (same agg param:
    # no extra query unit consumed).
    second = dep.collect(t, q)
    assert second["status"] == "complete" and second == first
    # An overlapping but different interval is refused with batchOverlap.
    for start, dur in ((now, 3600), (now, 7200), (now - 7200, 7200)):
        r = dep.collector.call("collection_start", {
            "task_id": t["task_id"], "agg_param": "",
            "query": {"type": 1, "batch_interval_start": start, "batch_interval_duration": dur}})
        assert r["status"] == "error" and "batchOverlap" in r["error"], r


def test_fixed_size_current_batch_gives_distinct_batches(dep: Deployment) -> None:
    t = dep.add_task(COUNT, query_type=2, min_batch_size=3, max_batch_size=3)
    for _ in range(6):
        assert dep.upload(t, "1")["status"] == "success"
    a = dep.collect(t)
    b = dep.collect(t)
    assert a["status"] == b["status"] == "complete", (a, b)
    assert a["report_count"] == b["report_count"] == 3 and a["result"] == b["result"] == "3"
    assert a["batch_id"] != b["batch_id"]
    # by_batch_id of a collected batch: same result again.
    again = dep.collect(t, {"type": 2, "subtype": 0, "batch_id": a["batch_id"]})
    assert again == a
    # by_batch_id of an unknown batch: batchInvalid.
    r = dep.collector.call("collection_start", {"task_id": t["task_id"], "agg_param": "", "query": {
        "type": 2, "subtype": 0, "batch_id": b64(os.urandom(32))}})
    assert r["status"] == "error" and "batchInvalid" in r["error"]
    # A third current_batch query has no complete batch left: it stays in progress.
    r = dep.collector.call("collection_start", {"task_id": t["task_id"], "agg_param": "",
                                                "query": {"type": 2, "subtype": 1}})
    assert r["status"] == "success"
    assert dep.poll(r["handle"], timeout=1.0)["status"] == "in progress"


def test_fixed_size_without_max_batch_size(dep: Deployment) -> None:
    """max_batch_size null (interop -07): batches are filled to min_batch_size."""
    t = dep.add_task(HIST, query_type=2, min_batch_size=4, max_batch_size=None)
    ms = ["0", "1", "1", "3", "2"]
    for m in ms:
        assert dep.upload(t, m)["status"] == "success"
    r = dep.collect(t)
    assert r["status"] == "complete" and r["report_count"] == 4, r
    # Which 4 of the 5 reports form the first batch is the Leader's choice (time order).
    assert sum(int(x) for x in r["result"]) == 4
