"""The Helper at the HTTP level: the test plays the Leader (and the Collector) itself.

Covers authentication (missing / wrong / wrong scheme / duplicated -> 403 unauthorizedRequest,
no state change; Bearer accepted), exact Content-Type, unknown task, aggregation-job init
idempotency (replay -> byte-identical response, nothing counted twice; mutated -> 409), every
PrepareError the Helper can produce, the continue/DELETE rules, and the aggregate-share
endpoint (idempotent, batchInvalid, invalidBatchSize, batchOverlap, batchMismatch), with the
decrypted aggregate checked against the measurements.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from roles_fixtures import RoleProcess, b64, fetch_config, now_rounded

from dap import hpke
from dap.constants import PrepareError, PrepareRespState, QueryType, Role
from dap.messages import (
    AggregateShare,
    AggregateShareReq,
    AggregationJobContinueReq,
    AggregationJobInitReq,
    AggregationJobResp,
    BatchSelector,
    Extension,
    HpkeCiphertext,
    Interval,
    PartialBatchSelector,
    PlaintextInputShare,
    PrepareContinue,
    PrepareInit,
    ReportMetadata,
    ReportShare,
)
from dap.roles.aggregator import checksum_of, xor_checksum
from dap.roles.vdafs import vdaf_ops

TP = 3600
COUNT = {"type": "Prio3Count"}
INIT = "application/dap-aggregation-job-init-req"


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoleProcess]:
    with RoleProcess("helper", tmp_path_factory.mktemp("helper")) as p:
        yield p


class FakeLeader:
    """Registers a task at the Helper and builds the Leader's side of aggregation."""

    def __init__(self, helper: RoleProcess, *, query_type: int = 1, min_batch_size: int = 1,
                 max_batch_size: int | None = None, task_expiration: int = 32503680000,
                 max_batch_query_count: int = 1) -> None:
        self.helper = helper
        self.task_id_bytes = secrets.token_bytes(32)
        self.task_id = b64(self.task_id_bytes)
        self.token = "leader-" + secrets.token_hex(8)
        self.vk = secrets.token_bytes(16)
        self.collector = hpke.generate_keypair(7)
        self.ops = vdaf_ops(COUNT)
        self.query_type = query_type
        body = {
            "task_id": self.task_id, "leader": "http://127.0.0.1:1/", "helper": helper.url,
            "vdaf": COUNT, "leader_authentication_token": self.token, "role": "helper",
            "vdaf_verify_key": b64(self.vk), "max_batch_query_count": max_batch_query_count,
            "query_type": query_type, "min_batch_size": min_batch_size, "time_precision": TP,
            "collector_hpke_config": b64(self.collector.config.encode()),
            "task_expiration": task_expiration,
        }
        if query_type == 2:
            body["max_batch_size"] = max_batch_size
        assert helper.call("add_task", body)["status"] == "success"
        self.cfg = fetch_config(helper.url, self.task_id)
        self.batch_id = secrets.token_bytes(32)

    def prep(self, measurement: str = "1", t: int | None = None, *, rid: bytes | None = None,
             config_id: int | None = None, corrupt_ct: bool = False,
             extensions: tuple = (), corrupt_payload: bool = False) -> tuple[PrepareInit, Any]:
        rid = rid or os.urandom(16)
        t = now_rounded() if t is None else t
        ps, lshare, hshare = self.ops.shard(self.ops.parse_measurement(measurement), rid)
        md = ReportMetadata(rid, t)
        ct = hpke.seal_input_share(self.cfg, Role.HELPER, self.task_id_bytes, md, ps,
                                   PlaintextInputShare(extensions, hshare))
        if config_id is not None:
            ct = HpkeCiphertext(config_id, ct.enc, ct.payload)
        if corrupt_ct:
            ct = HpkeCiphertext(ct.config_id, ct.enc, bytes([ct.payload[0] ^ 1]) + ct.payload[1:])
        state, outbound = self.ops.leader_init(self.vk, rid, ps, lshare)
        if corrupt_payload:
            outbound = outbound[:-1] + bytes([outbound[-1] ^ 0xFF])
        return PrepareInit(ReportShare(md, ps, ct), outbound), state

    def pbs(self) -> PartialBatchSelector:
        if self.query_type == 2:
            return PartialBatchSelector(QueryType.FIXED_SIZE, batch_id=self.batch_id)
        return PartialBatchSelector(QueryType.TIME_INTERVAL)

    def init_body(self, inits: list[PrepareInit]) -> bytes:
        return AggregationJobInitReq(b"", self.pbs(), tuple(inits)).encode()

    def headers(self, media_type: str | None = INIT, **extra: str) -> dict[str, str]:
        h = {"DAP-Auth-Token": self.token}
        if media_type:
            h["Content-Type"] = media_type
        h.update(extra)
        return h

    def job_url(self, job_id: bytes | None = None) -> str:
        return self.helper.url + f"tasks/{self.task_id}/aggregation_jobs/{b64(job_id or os.urandom(16))}"

    def put_init(self, inits: list[PrepareInit], job_url: str | None = None) -> httpx.Response:
        return httpx.put(job_url or self.job_url(), content=self.init_body(inits),
                         headers=self.headers(), timeout=30)

    def share_req(self, count: int, checksum: bytes, interval: Interval | None = None) -> bytes:
        if self.query_type == 2:
            sel = BatchSelector(QueryType.FIXED_SIZE, batch_id=self.batch_id)
        else:
            sel = BatchSelector(QueryType.TIME_INTERVAL,
                                batch_interval=interval or Interval(now_rounded(), TP))
        return AggregateShareReq(sel, b"", count, checksum).encode()

    def post_share(self, body: bytes, headers: dict | None = None) -> httpx.Response:
        return httpx.post(self.helper.url + f"tasks/{self.task_id}/aggregate_shares", content=body,
                          headers=headers or self.headers("application/dap-aggregate-share-req"),
                          timeout=30)


def problem(r: httpx.Response, token: str, task_id: str | None, status: int = 400) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    doc = json.loads(r.content)
    assert doc["type"] == "urn:ietf:params:ppm:dap:error:" + token, doc
    if task_id is not None:
        assert doc["taskid"] == task_id
    return doc


def checksum(rids: list[bytes]) -> bytes:
    c = bytes(32)
    for rid in rids:
        c = xor_checksum(c, checksum_of(rid))
    return c


def test_auth_failures_are_403_and_change_nothing(helper: RoleProcess) -> None:
    ld = FakeLeader(helper)
    init, _ = ld.prep()
    url = ld.job_url()
    body = ld.init_body([init])
    ct = {"Content-Type": INIT}
    cases = [
        ct,  # missing
        {**ct, "DAP-Auth-Token": ld.token + "x"},  # wrong
        {**ct, "Authorization": f"Basic {ld.token}"},  # wrong scheme
        {**ct, "Authorization": f"Bearer {ld.token}x"},  # wrong bearer
    ]
    for headers in cases:
        problem(httpx.put(url, content=body, headers=headers, timeout=10), "unauthorizedRequest",
                ld.task_id, 403)
    dup = httpx.Headers([("Content-Type", INIT), ("DAP-Auth-Token", ld.token),
                         ("DAP-Auth-Token", ld.token)])
    problem(httpx.put(url, content=body, headers=dup, timeout=10), "unauthorizedRequest",
            ld.task_id, 403)
    both = {**ct, "DAP-Auth-Token": ld.token, "Authorization": f"Bearer {ld.token}"}
    problem(httpx.put(url, content=body, headers=both, timeout=10), "unauthorizedRequest",
            ld.task_id, 403)
    # Nothing was stored: the same job ID is still fresh, and Bearer auth is accepted.
    r = httpx.put(url, content=body, headers={**ct, "Authorization": f"Bearer {ld.token}"},
                  timeout=10)
    assert r.status_code == 201, r.text
    # Aggregate share endpoint and DELETE are authenticated too.
    problem(ld.post_share(ld.share_req(1, checksum([init.report_share.report_metadata.report_id])),
                          {"Content-Type": "application/dap-aggregate-share-req"}),
            "unauthorizedRequest", ld.task_id, 403)
    problem(httpx.delete(url, timeout=10), "unauthorizedRequest", ld.task_id, 403)


def test_unknown_task_and_bad_content_type(helper: RoleProcess) -> None:
    ld = FakeLeader(helper)
    init, _ = ld.prep()
    other = b64(secrets.token_bytes(32))
    r = httpx.put(helper.url + f"tasks/{other}/aggregation_jobs/{b64(os.urandom(16))}",
                  content=ld.init_body([init]), headers=ld.headers(), timeout=10)
    problem(r, "unrecognizedTask", other)
    for bad in (INIT + "; charset=utf-8", "application/octet-stream"):
        r = httpx.put(ld.job_url(), content=ld.init_body([init]), headers=ld.headers(bad),
                      timeout=10)
        problem(r, "invalidMessage", ld.task_id)
    r = httpx.put(ld.job_url(), content=b"\x00\x01", headers=ld.headers(), timeout=10)
    problem(r, "invalidMessage", ld.task_id)
    r = httpx.get(helper.url + f"hpke_config?task_id={other}", timeout=10)
    problem(r, "unrecognizedTask", other)
    r = httpx.get(helper.url + f"hpke_config?task_id={ld.task_id}", timeout=10)
    assert r.headers["content-type"] == "application/dap-hpke-config-list"
    assert "max-age" in r.headers["cache-control"]


def test_init_replay_is_identical_and_mutation_is_409(helper: RoleProcess) -> None:
    ld = FakeLeader(helper)
    preps = [ld.prep("1") for _ in range(3)]
    url = ld.job_url()
    body = ld.init_body([p for p, _ in preps])
    first = httpx.put(url, content=body, headers=ld.headers(), timeout=10)
    assert first.status_code == 201
    assert first.headers["content-type"] == "application/dap-aggregation-job-resp"
    again = httpx.put(url, content=body, headers=ld.headers(), timeout=10)
    assert again.status_code == 201 and again.content == first.content
    mutated = ld.init_body([p for p, _ in preps[:2]])
    assert httpx.put(url, content=mutated, headers=ld.headers(), timeout=10).status_code == 409
    # Nothing counted twice: the Helper's batch has 3 reports, and its share sums to 3 with ours.
    resp = AggregationJobResp.decode(first.content)
    outs = [ld.ops.leader_continued(st, pr.payload) for (_, st), pr in zip(preps, resp.prepare_resps)]
    rids = [p.report_share.report_metadata.report_id for p, _ in preps]
    share_req = ld.share_req(3, checksum(rids))
    r = ld.post_share(share_req)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/dap-aggregate-share"
    sel = AggregateShareReq.decode(share_req).batch_selector
    helper_share = hpke.open_aggregate_share(
        ld.collector, Role.HELPER, ld.task_id_bytes, b"", sel,
        AggregateShare.decode(r.content).encrypted_aggregate_share)
    assert ld.ops.unshard(ld.ops.aggregate(outs), helper_share, 3) == 3
    # Repeated aggregate-share request: the same stored bytes, no extra query consumed
    # (max_batch_query_count is 1, so a second counted query would be refused).
    r2 = ld.post_share(share_req)
    assert r2.status_code == 200 and r2.content == r.content


def test_prepare_errors(helper: RoleProcess) -> None:
    now = now_rounded()
    ld = FakeLeader(helper)
    ok, _ = ld.prep("1")
    cases = {
        PrepareError.HPKE_UNKNOWN_CONFIG_ID: ld.prep(config_id=(ld.cfg.id + 1) % 256)[0],
        PrepareError.HPKE_DECRYPT_ERROR: ld.prep(corrupt_ct=True)[0],
        PrepareError.INVALID_MESSAGE: ld.prep(extensions=(Extension(0, b""),))[0],
        PrepareError.REPORT_TOO_EARLY: ld.prep(t=now + 30 * 86400)[0],
        PrepareError.VDAF_PREP_ERROR: ld.prep(corrupt_payload=True)[0],
    }
    r = ld.put_init([ok, *cases.values()])
    assert r.status_code == 201, r.text
    resps = AggregationJobResp.decode(r.content).prepare_resps
    assert [p.report_id for p in resps] == [ok.report_share.report_metadata.report_id] + [
        c.report_share.report_metadata.report_id for c in cases.values()]
    assert resps[0].prepare_resp_state == PrepareRespState.CONTINUE
    for expected, resp in zip(cases, resps[1:]):
        assert resp.prepare_resp_state == PrepareRespState.REJECT
        assert resp.prepare_error == expected
    # report_replayed: the good report and a failed one in a new job (different batch time OK).
    replay = ld.put_init([ok, cases[PrepareError.HPKE_DECRYPT_ERROR]])
    assert [p.prepare_error for p in AggregationJobResp.decode(replay.content).prepare_resps] == [
        PrepareError.REPORT_REPLAYED, PrepareError.REPORT_REPLAYED]
    # Duplicate report IDs within one request -> invalidMessage (whole request).
    problem(ld.put_init([ok, ok]), "invalidMessage", ld.task_id)
    # Wrong partial batch selector query type -> invalidMessage.
    body = AggregationJobInitReq(b"", PartialBatchSelector(QueryType.FIXED_SIZE,
                                                           batch_id=bytes(32)), (ld.prep()[0],))
    r = httpx.put(ld.job_url(), content=body.encode(), headers=ld.headers(), timeout=10)
    problem(r, "invalidMessage", ld.task_id)
    # A report time beyond SQLite's signed 64-bit INTEGER (found by a campaign: the Helper
    # answered 500) is just far in the future: report_too_early, the job still 201.
    r = ld.put_init([ld.prep(t=2**64 - 1)[0]])
    assert r.status_code == 201, r.text
    assert AggregationJobResp.decode(r.content).prepare_resps[0].prepare_error == PrepareError.REPORT_TOO_EARLY
    # task_expired on a task whose expiration has passed.
    expired = FakeLeader(helper, task_expiration=now - 2 * TP)
    r = expired.put_init([expired.prep(t=now)[0]])
    assert AggregationJobResp.decode(r.content).prepare_resps[0].prepare_error == \
        PrepareError.TASK_EXPIRED


def test_batch_collected_after_aggregate_share(helper: RoleProcess) -> None:
    ld = FakeLeader(helper)
    now = now_rounded()
    first, _ = ld.prep("1")
    assert ld.put_init([first]).status_code == 201
    r = ld.post_share(ld.share_req(1, checksum([first.report_share.report_metadata.report_id]),
                                   Interval(now - TP, 2 * TP)))
    assert r.status_code == 200
    # Late reports: in the collected bucket, and in the interval's empty earlier hour.
    late = [ld.prep("1")[0], ld.prep("1", t=now - TP)[0], ld.prep("1", t=now - 2 * TP)[0]]
    r = ld.put_init(late)
    assert [p.prepare_error for p in AggregationJobResp.decode(r.content).prepare_resps] == [
        PrepareError.BATCH_COLLECTED, PrepareError.BATCH_COLLECTED, None]


def test_aggregate_share_validation(helper: RoleProcess) -> None:
    now = now_rounded()
    ld = FakeLeader(helper, min_batch_size=2)
    preps = [ld.prep("1")[0] for _ in range(2)]
    assert ld.put_init(preps).status_code == 201
    rids = [p.report_share.report_metadata.report_id for p in preps]
    # Misaligned interval -> batchInvalid.
    problem(ld.post_share(ld.share_req(2, checksum(rids), Interval(now + 1, TP))),
            "batchInvalid", ld.task_id)
    # Too few reports in an (aligned) interval -> invalidBatchSize.
    problem(ld.post_share(ld.share_req(0, bytes(32), Interval(now - TP, TP))),
            "invalidBatchSize", ld.task_id)
    # Count or checksum disagreement -> batchMismatch, and nothing is consumed.
    problem(ld.post_share(ld.share_req(3, checksum(rids))), "batchMismatch", ld.task_id)
    problem(ld.post_share(ld.share_req(2, checksum(rids[:1]))), "batchMismatch", ld.task_id)
    assert ld.post_share(ld.share_req(2, checksum(rids))).status_code == 200
    # An interval overlapping the collected one but not equal -> batchOverlap.
    problem(ld.post_share(ld.share_req(2, checksum(rids), Interval(now - TP, 2 * TP))),
            "batchOverlap", ld.task_id)
    # Wrong selector query type -> invalidMessage.
    bad = AggregateShareReq(BatchSelector(QueryType.FIXED_SIZE, batch_id=bytes(32)), b"", 2,
                            checksum(rids)).encode()
    problem(ld.post_share(bad), "invalidMessage", ld.task_id)


def test_fixed_size_batch_checks(helper: RoleProcess) -> None:
    ld = FakeLeader(helper, query_type=2, min_batch_size=2, max_batch_size=2)
    preps = [ld.prep("1")[0] for _ in range(3)]
    assert ld.put_init(preps).status_code == 201
    rids = [p.report_share.report_metadata.report_id for p in preps]
    problem(ld.post_share(ld.share_req(3, checksum(rids))), "invalidBatchSize", ld.task_id)
    unknown = AggregateShareReq(BatchSelector(QueryType.FIXED_SIZE, batch_id=os.urandom(32)), b"",
                                3, checksum(rids)).encode()
    problem(ld.post_share(unknown), "batchInvalid", ld.task_id)


def test_continue_and_delete(helper: RoleProcess) -> None:
    ld = FakeLeader(helper)
    init, _ = ld.prep("1")
    url = ld.job_url()
    first = ld.put_init([init], url)
    assert first.status_code == 201
    rid = init.report_share.report_metadata.report_id
    cont = "application/dap-aggregation-job-continue-req"

    def post(step: int, job_url: str = url) -> httpx.Response:
        body = AggregationJobContinueReq(step, (PrepareContinue(rid, b"\x02\x00\x00\x00\x00"),))
        return httpx.post(job_url, content=body.encode(), headers=ld.headers(cont), timeout=10)

    problem(post(0), "invalidMessage", ld.task_id)
    problem(post(1), "invalidMessage", ld.task_id)  # Prio3 job already finished
    problem(post(1, ld.job_url()), "unrecognizedAggregationJob", ld.task_id)
    # The job's state is unchanged: the init is still replayed byte for byte.
    assert ld.put_init([init], url).content == first.content
    assert httpx.delete(url, headers=ld.headers(None), timeout=10).status_code == 204
    problem(post(1), "unrecognizedAggregationJob", ld.task_id)
    # Anti-replay survives the DELETE.
    r = ld.put_init([init])
    assert AggregationJobResp.decode(r.content).prepare_resps[0].prepare_error == \
        PrepareError.REPORT_REPLAYED
