"""Test-only bug switches of the reference roles (dap/roles/bugs.py, docs/self-validation.md).

Each test runs real role processes on 127.0.0.1, one with the switch on
(``DAP_FAULTRUN_TEST_MODE=1 DAP_FAULTRUN_BUGS=NAME``) and one without, and shows the buggy
behaviour and the correct one side by side. Where the test plays the Leader or the Collector
it speaks HTTP to the role directly; where the bug is in the Leader's background work a
whole :class:`~roles_fixtures.Deployment` runs (the Leader reaching the Helper through a
small scripted proxy where an answer must be forged). How the harness's checker catches
each switch is ``tests/test_selfcheck.py``'s business, not this file's.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from roles_fixtures import (
    REPO,
    Deployment,
    FakeLeaderBase,
    ForwardingProxyBase,
    QuietHandler,
    RoleProcess,
    b64,
    build_report,
    checksum,
    fetch_config,
    now_rounded,
    rows,
    wait_for,
)

from dap import hpke
from dap.constants import PrepareError, PrepareRespState, QueryType, Role
from dap.messages import (
    AggregateShare,
    AggregationJobResp,
    CollectionReq,
    Interval,
    Query,
)
from dap.roles import bugs
from dap.roles.task import b64d
from dap.vdaf.pingpong import Finished

TP = 3600
COUNT = {"type": "Prio3Count"}
POPLAR = {"type": "Poplar1", "bits": "4"}
CONTINUE = FakeLeaderBase.CONTINUE
SHARE_REQ = FakeLeaderBase.SHARE_REQ
COLLECT_REQ = "application/dap-collect-req"
REPORT = "application/dap-report"
ON_OFF = pytest.mark.parametrize("on", [True, False], ids=["bug-on", "bug-off"])


# --- role processes with or without a switch ---------------------------------------------------


class BugRole(RoleProcess):
    """A :class:`RoleProcess` started with the bug switch ``bug`` on (None: no switch, also
    none inherited from this process's environment)."""

    def __init__(self, role: str, state_dir: Path, *extra: str, bug: str | None,
                 wait: bool = True) -> None:
        self.bug = bug
        super().__init__(role, state_dir, *extra, wait=wait)

    def spawn(self) -> None:
        with mock.patch.dict(os.environ):
            os.environ.pop(bugs.TEST_MODE_VAR, None)
            os.environ.pop(bugs.BUGS_VAR, None)
            if self.bug:
                os.environ.update({bugs.TEST_MODE_VAR: "1", bugs.BUGS_VAR: self.bug})
            super().spawn()

    def wait_ready(self) -> None:
        super().wait_ready()
        log = (self.state_dir / "stderr.log").read_text(errors="replace")
        assert (f"bug switches on: {self.bug}" in log) == bool(self.bug), log[-2000:]


class BugDeployment(Deployment):
    """The four roles; ``bug`` on in the role(s) it lives in (per :data:`bugs.BUGS`) if ``on``."""

    def __init__(self, base: Path, bug: str, on: bool, **kw: Any) -> None:
        self.bug_roles = bugs.BUGS[bug][0] if on else ()
        self.bug = bug
        super().__init__(base, **kw)

    def _start(self, role: str, *args: str) -> RoleProcess:
        p = BugRole(role, self.base / role, *args, bug=self.bug if role in self.bug_roles else None,
                    wait=False)
        self.procs.append(p)
        return p


@pytest.fixture(scope="module")
def roles(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., BugRole]]:
    """``roles(role, bug or None)``: one long-lived process per (role, switch) in this module."""
    started: dict[tuple[str, str | None], BugRole] = {}

    def get(role: str, bug: str | None) -> BugRole:
        key = (role, bug)
        if key not in started:
            started[key] = BugRole(role, tmp_path_factory.mktemp(f"{role}-{bug or 'none'}"), bug=bug)
        return started[key]

    try:
        yield get
    finally:
        for p in started.values():
            p.close()


def problem_type(r: httpx.Response) -> str | None:
    if r.headers.get("content-type") != "application/problem+json":
        return None
    return json.loads(r.content)["type"].rsplit(":", 1)[-1]


# --- playing the Leader against a Helper -------------------------------------------------------


class FakeLeader(FakeLeaderBase):
    """Registers a time_interval task (Prio3Count or Poplar1) at a Helper and plays the
    Leader's side of aggregation over HTTP."""

    def __init__(self, helper: RoleProcess, vdaf: dict, *, max_batch_query_count: int = 1) -> None:
        super().__init__(helper, vdaf, max_batch_query_count=max_batch_query_count, collector_config_id=7)

    def report(self, measurement: Any) -> bytes:
        return self.add_report(measurement)


def resp_ids(r: httpx.Response) -> list[bytes]:
    return [bytes(p.report_id) for p in AggregationJobResp.decode(r.content).prepare_resps]


def poplar_step1(ld: FakeLeader, url: str, rids: list[bytes], agg_param: bytes
                 ) -> tuple[httpx.Response, dict[bytes, tuple[Any, bytes]]]:
    """PUT a Poplar1 init; (its response, {report ID: (Leader out share, step-1 message)})."""
    body, states = ld.init(rids, agg_param)
    r = ld.put(url, body)
    assert r.status_code == 201, r.text
    by_id = dict(zip(rids, states))
    fin = {}
    for pr in AggregationJobResp.decode(r.content).prepare_resps:
        assert pr.prepare_resp_state == PrepareRespState.CONTINUE, pr
        rid = bytes(pr.report_id)
        new_state, outbound = ld.ops.leader_step(by_id[rid], pr.payload, agg_param)
        assert isinstance(new_state, Finished) and outbound is not None
        fin[rid] = (new_state.out_share, outbound)
    return r, fin


# --- playing the Collector against a Leader ----------------------------------------------------


class FakeCollector:
    """Registers a Prio3Count task at a Leader (whose Helper is never reached) and speaks the
    collection-job API to it."""

    def __init__(self, leader: RoleProcess) -> None:
        self.leader = leader
        self.task_id = b64(secrets.token_bytes(32))
        self.token = "collector-" + secrets.token_hex(8)
        collector = hpke.generate_keypair(5)
        assert leader.call("add_task", {
            "task_id": self.task_id, "leader": leader.url, "helper": "http://127.0.0.1:1/",
            "vdaf": COUNT, "leader_authentication_token": "leader-" + secrets.token_hex(8),
            "collector_authentication_token": self.token, "role": "leader",
            "vdaf_verify_key": b64(os.urandom(16)), "max_batch_query_count": 1,
            "query_type": 1, "min_batch_size": 1, "time_precision": TP,
            "collector_hpke_config": b64(collector.config.encode()),
            "task_expiration": 32503680000,
        })["status"] == "success"

    def url(self, job_id: bytes) -> str:
        return self.leader.url + f"tasks/{self.task_id}/collection_jobs/{b64(job_id)}"

    @staticmethod
    def req(start: int, duration: int = TP) -> bytes:
        return CollectionReq(Query(QueryType.TIME_INTERVAL, batch_interval=Interval(start, duration)),
                             b"").encode()

    def put(self, job_id: bytes, body: bytes, auth: dict[str, str] | None = None) -> httpx.Response:
        headers = {"DAP-Auth-Token": self.token} if auth is None else auth
        return httpx.put(self.url(job_id), content=body,
                         headers={**headers, "Content-Type": COLLECT_REQ}, timeout=10)

    def poll(self, job_id: bytes, auth: dict[str, str] | None = None) -> httpx.Response:
        headers = {"DAP-Auth-Token": self.token} if auth is None else auth
        return httpx.post(self.url(job_id), headers=headers, timeout=10)

    def delete(self, job_id: bytes, auth: dict[str, str] | None = None) -> httpx.Response:
        headers = {"DAP-Auth-Token": self.token} if auth is None else auth
        return httpx.delete(self.url(job_id), headers=headers, timeout=10)


# --- a scripted proxy on the Leader->Helper link -----------------------------------------------


class ScriptedProxy(ForwardingProxyBase):
    """Forwards the Leader's requests to the Helper; the first ``fail_puts`` aggregation-job
    PUTs are answered ``status`` without being forwarded. Records (method, path, status)."""

    def __init__(self, target: str, *, fail_puts: int = 0, status: int = 503) -> None:
        self.fail_puts = fail_puts
        self.status = status
        self.log: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        super().__init__(target)

    def handle(self, req: QuietHandler, body: bytes) -> None:
        with self._lock:
            forge = req.command == "PUT" and "/aggregation_jobs/" in req.path and self.fail_puts > 0
            if forge:
                self.fail_puts -= 1
        if forge:
            self.log.append((req.command, req.path, self.status))
            req._reply(self.status)
            return
        resp = self.forward(req, body)
        self.log.append((req.command, req.path, resp.status_code))
        req._reply(resp.status_code, resp.content, resp.headers.get("content-type"))

    def agg_job_requests(self) -> list[tuple[str, str, int]]:
        return [e for e in list(self.log) if "/aggregation_jobs/" in e[1]]


# --- 1. leader-collect-overwrite ---------------------------------------------------------------


@ON_OFF
def test_leader_collect_overwrite(roles: Callable[..., BugRole], on: bool) -> None:
    leader = roles("leader", "leader-collect-overwrite" if on else None)
    col = FakeCollector(leader)
    job = os.urandom(16)
    first, other = col.req(now_rounded(TP)), col.req(now_rounded(TP) - 2 * TP)  # disjoint batches
    assert col.put(job, first).status_code == 201
    assert col.put(job, first).status_code == 201  # an identical PUT is a safe retry either way
    r = col.put(job, other)
    db = leader.state_dir / "leader.sqlite3"
    stored = rows(db, "SELECT query FROM collection_jobs WHERE task_id=? AND job_id=?",
                  b64d(col.task_id), job)
    if on:  # accepted, and the job now answers the other query
        assert r.status_code == 201, r.text
        assert stored == [(CollectionReq.decode(other).query.encode(),)]
    else:  # §15 step 3: a different CollectionReq for a known job ID fails with a 4xx
        assert r.status_code == 409, r.text
        assert stored == [(CollectionReq.decode(first).query.encode(),)]
    assert col.poll(job).status_code == 202


# --- 2. helper-share-no-auth -------------------------------------------------------------------


@ON_OFF
def test_helper_share_no_auth(roles: Callable[..., BugRole], on: bool) -> None:
    helper = roles("helper", "helper-share-no-auth" if on else None)
    ld = FakeLeader(helper, COUNT)
    rid = ld.report("1")
    assert ld.put(ld.job_url(), ld.init([rid])[0]).status_code == 201
    bad_credentials = [
        {},  # none
        {"DAP-Auth-Token": "leader-wrong"},
        {"Authorization": "Bearer leader-wrong"},
        {"Authorization": "Basic " + b64(b"leader:wrong")},
    ]
    for cred in bad_credentials:
        r = ld.share([rid], headers={**cred, "Content-Type": SHARE_REQ})
        if on:
            assert r.status_code == 200, (cred, r.text)
            AggregateShare.decode(r.content)
        else:
            assert r.status_code == 403 and problem_type(r) == "unauthorizedRequest", (cred, r.text)
    # The Leader's own token works either way (with the bug: the stored share, replayed).
    assert ld.share([rid]).status_code == 200
    # The Poplar1 path too: an empty batch is invalidBatchSize, but only past the auth check.
    pl = FakeLeader(helper, POPLAR)
    param = pl.ops.vdaf.encode_agg_param((0, (0, 1)))
    r = pl.share([], param, headers={"Content-Type": SHARE_REQ})
    assert (r.status_code, problem_type(r)) == ((400, "invalidBatchSize") if on
                                                else (403, "unauthorizedRequest")), r.text


# --- 3. leader-any-auth ------------------------------------------------------------------------


@ON_OFF
def test_leader_any_auth(roles: Callable[..., BugRole], on: bool) -> None:
    leader = roles("leader", "leader-any-auth" if on else None)
    col = FakeCollector(leader)
    body = col.req(now_rounded(TP))
    forged = [
        {"DAP-Auth-Token": "collector-wrong"},
        {"DAP-Auth-Token": ""},
        {"Authorization": "Bearer collector-wrong"},
        {"Authorization": "Basic " + b64(b"collector:wrong")},
        {"Authorization": "whatever"},
    ]
    for cred in forged:
        job = os.urandom(16)
        put, poll, delete = col.put(job, body, cred), col.poll(job, cred), col.delete(job, cred)
        if on:
            assert [put.status_code, poll.status_code, delete.status_code] == [201, 202, 204], cred
        else:
            for r in (put, poll, delete):
                assert r.status_code == 403 and problem_type(r) == "unauthorizedRequest", (cred, r.text)
    # Without any credential the request is refused even with the bug ...
    job = os.urandom(16)
    for r in (col.put(job, body, {}), col.poll(job, {}), col.delete(job, {})):
        assert r.status_code == 403 and problem_type(r) == "unauthorizedRequest", r.text
    # ... and the Collector's own token works either way.
    assert [col.put(job, body).status_code, col.poll(job).status_code,
            col.delete(job).status_code] == [201, 202, 204]


# --- 4. leader-double-offer --------------------------------------------------------------------


@ON_OFF
def test_leader_double_offer(tmp_path: Path, on: bool) -> None:
    dep = BugDeployment(tmp_path, "leader-double-offer", on, leader_args=("--job-interval", "0.1"))
    try:
        t = dep.add_task(COUNT)
        tid = b64d(t["task_id"])
        lc, hc = fetch_config(t["leader"], t["task_id"]), fetch_config(t["helper"], t["task_id"])
        body, _, rid = build_report(t["task_id"], COUNT, "1", now_rounded(TP), lc, hc)
        url = dep.leader.url + f"tasks/{t['task_id']}/reports"
        put = lambda: httpx.put(url, content=body, headers={"Content-Type": REPORT}, timeout=10)  # noqa: E731
        leader_db = dep.leader.state_dir / "leader.sqlite3"
        helper_db = dep.helper.state_dir / "helper.sqlite3"
        assert put().status_code == 201
        wait_for(lambda: rows(leader_db, "SELECT state FROM reports WHERE task_id=?", tid) == [("done",)],
                 what="the report aggregated")
        assert put().status_code == 201  # the same report ID again
        offers = "SELECT job_id, state, error FROM report_aggs WHERE task_id=? AND report_id=? ORDER BY rowid"
        if on:
            # Stored again as pending, offered to the Helper in a second job, which the
            # correct Helper answers report_replayed.
            def second_offer() -> list[tuple] | None:
                got = rows(leader_db, offers, tid, rid)
                return got if len(got) == 2 and got[1][1] != "init" else None

            got = wait_for(second_offer, what="a second, finished offer of the report")
            assert got[0][0] != got[1][0], got
            assert got[0][1:] == ("finished", None)
            assert got[1][1:] == ("failed", int(PrepareError.REPORT_REPLAYED)), got
            at_helper = rows(helper_db, offers, tid, rid)
            assert [r[0] for r in at_helper] == [r[0] for r in got]
            assert at_helper[1][2] == int(PrepareError.REPORT_REPLAYED)
        else:
            time.sleep(1.0)  # ten creator passes
            assert len(rows(leader_db, offers, tid, rid)) == 1
            assert rows(leader_db, "SELECT state FROM reports WHERE task_id=?", tid) == [("done",)]
        # The correct Helper keeps the count right either way.
        r = dep.collect(t)
        assert r["status"] == "complete" and r["report_count"] == 1 and r["result"] == "1", r
    finally:
        dep.close()


# --- 5. leader-abandon-on-503 ------------------------------------------------------------------


@ON_OFF
def test_leader_abandon_on_503(tmp_path: Path, on: bool) -> None:
    dep = BugDeployment(tmp_path, "leader-abandon-on-503", on,
                        leader_args=("--retry-budget", "8", "--request-timeout", "2"))
    proxy = ScriptedProxy(dep.helper.url, fail_puts=1, status=503)
    try:
        t = dep.add_task(COUNT, helper_for_leader=proxy.url)
        tid = b64d(t["task_id"])
        assert dep.upload(t, "1")["status"] == "success"
        leader_db = dep.leader.state_dir / "leader.sqlite3"
        state = lambda: rows(leader_db, "SELECT state, detail FROM agg_jobs WHERE task_id=?", tid)  # noqa: E731
        [(job_state, detail)] = wait_for(
            lambda: [s for s in state() if s[0] in ("abandoned", "finished")], what="the job's end")
        reqs = wait_for(lambda: len(proxy.agg_job_requests()) >= 2 and proxy.agg_job_requests(),
                        what="a second request for the job")
        path = reqs[0][1]
        assert all(p == path for _, p, _ in reqs), reqs
        if on:
            # Abandoned at once: the one 503, then the DELETE, no retry of the PUT (the
            # Helper never saw the job: unrecognizedAggregationJob).
            assert (job_state, detail) == ("abandoned", "HTTP 503")
            assert [(m, s) for m, _, s in reqs] == [("PUT", 503), ("DELETE", 400)], reqs
            assert rows(leader_db, "SELECT state FROM reports WHERE task_id=?", tid) == [("failed",)]
        else:
            # Retried with the same bytes within the budget, then aggregated.
            assert job_state == "finished"
            assert [(m, s) for m, _, s in reqs] == [("PUT", 503), ("PUT", 201)], reqs
            r = dep.collect(t)
            assert r["status"] == "complete" and r["result"] == "1", r
    finally:
        proxy.close()
        dep.close()


# --- 6. helper-resp-reorder --------------------------------------------------------------------


@ON_OFF
def test_helper_resp_reorder(roles: Callable[..., BugRole], on: bool) -> None:
    helper = roles("helper", "helper-resp-reorder" if on else None)
    order = (lambda ids: ids[::-1]) if on else (lambda ids: ids)
    # Prio3: the init response.
    ld = FakeLeader(helper, COUNT)
    rids = [ld.report(m) for m in ("1", "0", "1")]
    url = ld.job_url()
    body = ld.init(rids)[0]
    r = ld.put(url, body)
    assert r.status_code == 201 and resp_ids(r) == order(rids)
    assert ld.put(url, body).content == r.content  # the stored response is the one sent
    # Poplar1: the init response and the step-1 response.
    pl = FakeLeader(helper, POPLAR)
    prids = [pl.report([bool(b) for b in bits]) for bits in ((1, 0, 1, 1), (0, 1, 1, 0), (1, 1, 0, 0))]
    param = pl.ops.vdaf.encode_agg_param((1, (0, 2, 3)))
    purl = pl.job_url()
    init, fin = poplar_step1(pl, purl, prids, param)
    assert resp_ids(init) == order(prids)
    cont = pl.post(purl, 1, [(rid, fin[rid][1]) for rid in prids])
    assert cont.status_code == 200 and resp_ids(cont) == order(prids)


def test_reference_leader_aborts_a_reordered_job(tmp_path: Path) -> None:
    """dap-09 §10.1 step 5: the reference Leader aborts the job the buggy Helper answered
    out of order (and DELETEs it); nothing is counted."""
    dep = BugDeployment(tmp_path, "helper-resp-reorder", True,
                        leader_args=("--min-job-size", "2", "--job-interval", "0.1"))
    try:
        t = dep.add_task(COUNT)
        tid = b64d(t["task_id"])
        for m in ("1", "0"):
            assert dep.upload(t, m)["status"] == "success"
        leader_db = dep.leader.state_dir / "leader.sqlite3"
        [(state, detail)] = wait_for(lambda: rows(
            leader_db, "SELECT state, detail FROM agg_jobs WHERE task_id=? AND state != 'active'",
            tid), what="the job's end")
        assert state == "abandoned" and "report IDs differ" in detail, detail
        helper_db = dep.helper.state_dir / "helper.sqlite3"
        wait_for(lambda: rows(helper_db, "SELECT state FROM agg_jobs WHERE task_id=?", tid)
                 == [("deleted",)], what="the DELETE at the Helper")
        assert rows(leader_db, "SELECT state FROM reports WHERE task_id=?", tid) == [("failed",)] * 2
    finally:
        dep.close()


# --- 7. leader-late-jobs -----------------------------------------------------------------------


@ON_OFF
def test_leader_late_jobs(tmp_path: Path, on: bool) -> None:
    dep = BugDeployment(tmp_path, "leader-late-jobs", on, leader_args=("--job-interval", "0.1"))
    try:
        t = dep.add_task(COUNT)
        tid = b64d(t["task_id"])
        assert dep.upload(t, "1")["status"] == "success"
        first = dep.collect(t)
        assert first["status"] == "complete" and first["result"] == "1", first
        leader_db = dep.leader.state_dir / "leader.sqlite3"
        helper_db = dep.helper.state_dir / "helper.sqlite3"
        jobs = "SELECT job_id FROM agg_jobs WHERE task_id=? ORDER BY created"
        [(first_job,)] = rows(leader_db, jobs, tid)
        late = dep.upload(t, "1")  # the AggregateShareReq for its batch has left
        if on:
            # Acknowledged, and offered to the Helper in a new job for the collected batch,
            # which the correct Helper answers batch_collected.
            assert late["status"] == "success", late
            offers = ("SELECT job_id, state, error FROM report_aggs WHERE task_id=? AND job_id != ?"
                      " AND state != 'init'")
            [(job, state, error)] = wait_for(lambda: rows(leader_db, offers, tid, first_job),
                                             what="the late report's job finished")
            assert (state, error) == ("failed", int(PrepareError.BATCH_COLLECTED))
            assert rows(helper_db, "SELECT state, error FROM report_aggs WHERE task_id=? AND job_id=?",
                        tid, job) == [("failed", int(PrepareError.BATCH_COLLECTED))]
        else:
            assert late["status"] == "error" and "reportRejected" in late["error"], late
            time.sleep(0.5)  # five creator passes
            assert rows(leader_db, jobs, tid) == [(first_job,)]
        # The correct Helper keeps the batch unchanged either way.
        assert dep.collect(t) == first
    finally:
        dep.close()


# --- 8. helper-continue-reaccumulate -----------------------------------------------------------


@ON_OFF
def test_helper_continue_reaccumulate(roles: Callable[..., BugRole], on: bool) -> None:
    helper = roles("helper", "helper-continue-reaccumulate" if on else None)
    ld = FakeLeader(helper, POPLAR)
    rids = [ld.report([bool(b) for b in bits]) for bits in ((1, 0, 1, 1), (0, 1, 1, 0))]
    param = ld.ops.vdaf.encode_agg_param((0, (0, 1)))
    url = ld.job_url()
    _, fin = poplar_step1(ld, url, rids, param)
    step1 = [(rid, fin[rid][1]) for rid in rids]
    first = ld.post(url, 1, step1)
    assert first.status_code == 200, first.text
    # The Leader re-sends the byte-identical step 1 (its answer was lost): same answer ...
    again = ld.post(url, 1, step1)
    assert again.status_code == 200 and again.content == first.content
    db = helper.state_dir / "helper.sqlite3"
    [(count, chk)] = rows(db, "SELECT report_count, checksum FROM param_buckets WHERE task_id=?",
                          ld.task_id_bytes)
    share = ld.share(rids, param)
    if on:
        # ... but the output shares were accumulated a second time: 4 reports (and the
        # checksum XORed twice: zero); the Leader's 2 are a batchMismatch.
        assert (count, chk) == (4, bytes(32))
        assert share.status_code == 400 and problem_type(share) == "batchMismatch", share.text
    else:
        assert (count, chk) == (2, checksum(rids))
        assert share.status_code == 200, share.text
        ct = AggregateShare.decode(share.content).encrypted_aggregate_share
        helper_share = hpke.open_aggregate_share(ld.collector, Role.HELPER, ld.task_id_bytes,
                                                 param, ld.selector(), ct)
        leader_share = ld.ops.aggregate([fin[rid][0] for rid in rids], param)
        assert ld.ops.unshard(leader_share, helper_share, 2, param) == [1, 1]


def test_every_switch_has_an_images_entry_and_docs() -> None:
    from harness.stack.images import load_images

    images = load_images(REPO / "tests" / "data" / "bug_images.toml")
    docs = (REPO / "docs" / "self-validation.md").read_text()
    for bug, (in_roles, _) in bugs.BUGS.items():
        for role in in_roles:
            entry = images.select(role, f"bug-{bug}")
            assert entry.env == {bugs.TEST_MODE_VAR: "1", bugs.BUGS_VAR: bug}
            assert entry.command == images.select(role, "reference").command
        assert f"``{bug}``" in (bugs.__doc__ or ""), bug
        assert f"| `{bug}` |" in docs, bug
