"""The Leader's background work: aggregation-job creation and driving, collection jobs.

Three loops run inside the Leader process (started from the ASGI lifespan):

* **creator** (every ``--job-interval`` s): takes ``pending`` reports of a task,
  up to ``--job-size`` per job (fixed_size: into the open batch, which is filled
  to ``min_batch_size``), runs ``ping_pong_leader_init`` and stores, in one
  transaction, the job row with the *exact* AggregationJobInitReq bytes, the
  report-aggregation rows and the reports' new state ``in_job``. Only then is
  anything sent, so a restart re-sends byte-identical requests. A pass goes on
  creating jobs only while they come out full (``--job-size``); the job that
  takes every pending report ends it, so reports uploaded meanwhile wait for the
  next pass rather than leave at once in ever smaller jobs.
* **driver**: sends each active job's stored request to the Helper with
  ``DAP-Auth-Token``. Timeouts, connection errors, 429 and 5xx other than 501
  are retried with exponential backoff and full jitter until ``--retry-budget``
  seconds after the first attempt; then the job is abandoned (its reports
  marked failed — the Helper may already hold them, so they are never re-sent)
  and DELETEd at the Helper. Any other 4xx abandons at once. A response that
  does not decode is retried (the Helper replays its stored response); one
  whose report IDs differ from the request aborts the job. The response is
  processed in one transaction: output shares accumulated, reports ``done`` or
  ``failed`` (``report_too_early``: back to ``pending``), job ``finished``.
  After a restart the Leader's prep state is recomputed from the stored report
  (Prio3 preparation is deterministic), never the request.
* **collector** (every ``--collect-interval`` s): a ``pending`` collection job
  waits until no report of its batch is pending or in an active job and the
  batch has ``min_batch_size`` reports (until then it is looked at again after a
  backoff of up to ``NOT_READY_MAX_S``, or at once when a report is stored or
  settled, an aggregation job ends or a batch grows: triggers in
  :mod:`dap.roles.storage`; a warm stack keeps every collection job that never
  became ready, and polling them all every pass grew with a campaign); then, in
  one transaction, it marks the batch's buckets collected, stores the
  AggregateShareReq bytes and the sealed Leader share and becomes ``collecting``.
  The stored request is sent (retried with backoff, never abandoned) until the
  Helper answers: 200 -> the Collection is stored (``finished``); a problem
  document -> ``failed`` with that problem type, which collection polls then return.

Tasks whose VDAF needs an aggregation parameter (Poplar1) are aggregated per
collection job instead, by :mod:`dap.roles.param_leader` (hooked into the creator
and collector loops, plus a fourth loop, ``param_jobs``, driving its two-step jobs).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

from dap import hpke
from dap.constants import (
    MEDIA_TYPE_AGGREGATE_SHARE_REQ,
    MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ,
    FixedSizeQueryType,
    PrepareError,
    PrepareRespState,
    QueryType,
    Role,
)
from dap.errors import DapError, DecodeError
from dap.messages import (
    AggregateShare,
    AggregateShareReq,
    AggregationJobInitReq,
    AggregationJobResp,
    BatchSelector,
    Collection,
    HpkeCiphertext,
    HpkeConfig,
    Interval,
    PartialBatchSelector,
    PrepareInit,
    Query,
    ReportMetadata,
    ReportShare,
)
from dap.roles import bugs
from dap.roles.aggregator import Aggregator
from dap.roles.buckets import bucket_key, interval_of
from dap.roles.http import Problem
from dap.roles.param_leader import ParamLeader
from dap.roles.task import AggregatorTask, b64e
from dap.roles.upstream import ask_helper, is_retryable_status, join_url, problem_of
from dap.roles.vdafs import VdafOps

# join_url and is_retryable_status live in dap.roles.upstream; re-exported for callers of
# this module's older surface (tests/roles_fixtures.py).
__all__ = ["LeaderDriver", "join_url", "is_retryable_status"]


# Outcomes of LeaderDriver._create_one_job.
_CREATED_FULL = "created a job of --job-size reports (more may be pending)"
_CREATED_PARTIAL = "created a job with every pending report"
_NOTHING = "nothing to do"
_RETRY = "state changed under the creator: try again"
#: the longest a pending collection job whose batch was not ready waits before it is looked at
#: again when nothing woke it (a safety net: the wake triggers should see every change)
NOT_READY_MAX_S = 8.0


class LeaderDriver:
    """The Leader's creator, aggregation-job driver and collection-job driver."""

    def __init__(self, agg: Aggregator, *, job_size: int, min_job_size: int, job_interval: float,
                 collect_interval: float, retry_budget: float, request_timeout: float,
                 log: Any = None) -> None:
        self.agg = agg
        self.store = agg.store
        self.job_size = job_size
        self.min_job_size = min_job_size
        self.job_interval = job_interval
        self.collect_interval = collect_interval
        self.retry_budget = retry_budget
        self.request_timeout = request_timeout
        self.log = log or (lambda rec: print(json.dumps(rec), file=sys.stderr, flush=True))
        self._states: dict[tuple[bytes, bytes], list[Any]] = {}
        self._inflight: set[tuple[str, bytes, bytes]] = set()
        #: the highest report rowid the creator has seen (0: every report is new after a start)
        self._reports_seen = 0
        self._wake = asyncio.Event()
        self._sem = asyncio.Semaphore(8)
        self._client: httpx.AsyncClient | None = None
        # Tasks whose VDAF needs an aggregation parameter (Poplar1): aggregated per collection.
        self.param = ParamLeader(self)

    # --- loops -------------------------------------------------------------------------

    async def run(self) -> None:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        async with httpx.AsyncClient(timeout=self.request_timeout, limits=limits) as client:
            self._client = client
            await asyncio.gather(
                self._loop("creator", self.creator_pass, self.job_interval),
                self._loop("driver", self.driver_pass, 0.05, wake=True),
                self._loop("collector", self.collection_pass, self.collect_interval),
                self._loop("param_jobs", self.param.driver_pass, 0.05),
            )

    async def _loop(self, name: str, fn: Any, interval: float, wake: bool = False) -> None:
        while True:
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a loop must survive one bad pass
                self.log({"event": "driver_error", "loop": name, "error": repr(exc),
                          "trace": traceback.format_exc(limit=5)})
            if wake:
                try:
                    await asyncio.wait_for(self._wake.wait(), interval)
                except TimeoutError:
                    pass
                self._wake.clear()
            else:
                await asyncio.sleep(interval)

    # --- job creation ------------------------------------------------------------------

    async def creator_pass(self) -> None:
        created = await asyncio.to_thread(self._create_jobs)
        if created:
            self._wake.set()

    def _create_jobs(self) -> int:
        created = 0
        # Reports stored since the last complete pass (rowids only grow: reports are never deleted).
        top = self.store.one("SELECT coalesce(max(rowid), 0) FROM reports")[0]
        arrived = {bytes(t) for (t,) in self.store.query(
            "SELECT DISTINCT task_id FROM reports WHERE rowid > ? AND rowid <= ?", (self._reports_seen, top))}
        for task, ops in self.agg.tasks_with_pending_reports():
            if ops.needs_agg_param:  # jobs come from collection jobs (dap/roles/param_leader.py)
                # A Poplar1 report stays pending for good: only new ones can change a batch.
                if task.task_id in arrived:
                    self.param.form_batches(task)
                continue
            for _ in range(50):
                outcome = self._create_one_job(task, ops)
                if outcome in (_CREATED_FULL, _CREATED_PARTIAL):
                    created += 1
                # A job that took every pending report ends the pass: reports uploaded while
                # it was prepared wait for the next pass (--job-interval) instead of going out
                # at once in ever smaller jobs, each costing a request and a transaction.
                if outcome not in (_CREATED_FULL, _RETRY):
                    break
        self._reports_seen = top
        return created

    def _create_one_job(self, task: AggregatorTask, ops: VdafOps) -> str:
        """Create at most one aggregation job; one of the ``_CREATED_*`` / ``_NOTHING`` /
        ``_RETRY`` outcomes (``_RETRY``: the reports or the batch changed meanwhile)."""
        tid = task.task_id
        batch_id: bytes | None = None
        limit = self.job_size
        new_batch = False
        if task.query_type == QueryType.FIXED_SIZE:
            target = task.min_batch_size
            row = self.store.one(
                "SELECT batch_id, assigned FROM fs_batches WHERE task_id=? AND collection_job IS NULL"
                " AND assigned < ? ORDER BY created LIMIT 1", (tid, target))
            if row is None:
                batch_id, new_batch = os.urandom(32), True
                limit = min(limit, target)
            else:
                batch_id = bytes(row[0])
                limit = min(limit, target - row[1])
        if self.min_job_size > 1:
            (pending,) = self.store.one(
                "SELECT count(*) FROM reports WHERE task_id=? AND state='pending'", (tid,))
            if pending < min(self.min_job_size, limit if batch_id is not None else pending + 1):
                return _NOTHING
        rows = self.store.query(
            "SELECT report_id, time, public_share, leader_share, helper_ct FROM reports"
            " WHERE task_id=? AND state='pending' ORDER BY time, report_id LIMIT ?", (tid, limit))
        if not rows:
            return _NOTHING
        inits, states, good, failed = [], [], [], []
        started = time.perf_counter()
        for rid, t, public_share, leader_share, helper_ct in rows:
            try:
                state, outbound = ops.leader_init(task.verify_key, bytes(rid), public_share,
                                                  leader_share)
            except DapError:
                failed.append(bytes(rid))
                continue
            inits.append(PrepareInit(
                ReportShare(ReportMetadata(rid, t), public_share, HpkeCiphertext.decode(helper_ct)),
                outbound))
            states.append(state)
            good.append((bytes(rid), t))
        job_id = os.urandom(16)
        pbs = (PartialBatchSelector(QueryType.FIXED_SIZE, batch_id=batch_id)
               if batch_id is not None else PartialBatchSelector(QueryType.TIME_INTERVAL))
        body = (AggregationJobInitReq(b"", pbs, tuple(inits)).encode() if inits else b"")
        with self.store.tx() as c:
            # Re-check under the lock: the reports are still pending, the batch still open.
            still = {bytes(r[0]) for r in c.execute(
                "SELECT report_id FROM reports WHERE task_id=? AND state='pending' AND report_id IN"
                f" ({','.join('?' * len(rows))})", (tid, *[bytes(r[0]) for r in rows]))}
            if len(still) != len(rows):
                return _RETRY
            if task.query_type == QueryType.TIME_INTERVAL:
                collected: dict[int, bool] = {}
                for rid, t in good:
                    if t not in collected:
                        collected[t] = self.agg.is_collected(c, task, t, None)
                    if collected[t] and not (bugs.active("accept-late-reports")
                                             or bugs.active("leader-late-jobs")):
                        c.execute("UPDATE reports SET state='failed', error=? WHERE task_id=? AND"
                                  " report_id=?", (int(PrepareError.BATCH_COLLECTED), tid, rid))
                        return _RETRY
            else:
                if new_batch:
                    c.execute("INSERT INTO fs_batches(task_id, batch_id, assigned, created)"
                              " VALUES(?,?,0,?)", (tid, batch_id, time.time()))
                else:
                    b = c.execute("SELECT assigned, collection_job FROM fs_batches WHERE task_id=?"
                                  " AND batch_id=?", (tid, batch_id)).fetchone()
                    if b[1] is not None or b[0] + len(good) > task.min_batch_size:
                        return _RETRY
                c.execute("UPDATE fs_batches SET assigned=assigned+? WHERE task_id=? AND batch_id=?",
                          (len(good), tid, batch_id))
            for rid in failed:
                c.execute("UPDATE reports SET state='failed', error=? WHERE task_id=? AND report_id=?",
                          (int(PrepareError.VDAF_PREP_ERROR), tid, rid))
            if not good:
                return _RETRY
            c.execute(
                "INSERT INTO agg_jobs(task_id, job_id, role, state, step, batch_id, agg_param,"
                " init_hash, request, created) VALUES(?,?,'leader','active',0,?,?,?,?,?)",
                (tid, job_id, batch_id, b"", hashlib.sha256(body).digest(), body, time.time()))
            c.executemany(
                "INSERT INTO report_aggs(task_id, job_id, ord, report_id, time, state, bucket)"
                " VALUES(?,?,?,?,?,'init',?)",
                [(tid, job_id, i, rid, t, bucket_key(task, t, batch_id))
                 for i, (rid, t) in enumerate(good)])
            c.executemany(
                "UPDATE reports SET state='in_job', job_id=? WHERE task_id=? AND report_id=?",
                [(job_id, tid, rid) for rid, _ in good])
        self._states[(tid, job_id)] = states
        self.log({"event": "agg_job_created", "job": b64e(job_id), "reports": len(good),
                  "ms": round((time.perf_counter() - started) * 1000, 2)})
        return _CREATED_FULL if len(rows) == limit else _CREATED_PARTIAL

    # --- aggregation-job driver --------------------------------------------------------

    async def driver_pass(self) -> None:
        now = time.time()
        rows = self.store.query(
            "SELECT task_id, job_id FROM agg_jobs WHERE role='leader' AND state='active'"
            " AND next_attempt <= ?", (now,))
        for tid, jid in rows:
            self.spawn(("agg", bytes(tid), bytes(jid)), self._drive_job, bytes(tid), bytes(jid))

    def spawn(self, key: tuple[str, bytes, bytes],
              fn: Callable[..., Coroutine[Any, Any, None]], *args: Any) -> bool:
        """Run ``fn(*args)`` as a background task unless the job ``key`` (kind, task ID, job
        ID) is already in flight. At most 8 run at once; an exception is logged, not raised.
        False if the job was in flight already."""
        if key in self._inflight:
            return False
        self._inflight.add(key)
        asyncio.create_task(self._guarded(key, fn(*args)))
        return True

    async def _guarded(self, key: tuple, coro: Any) -> None:
        try:
            async with self._sem:
                await coro
        except Exception as exc:  # noqa: BLE001
            self.log({"event": "driver_error", "job": key[2].hex(), "error": repr(exc),
                      "trace": traceback.format_exc(limit=5)})
        finally:
            self._inflight.discard(key)

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client toward the Helper (exists while :meth:`run` runs)."""
        assert self._client is not None, "LeaderDriver.run() has not started"
        return self._client

    def backoff(self, attempts: int, cap: float = 2.0) -> float:
        """Seconds to wait before retry ``attempts + 1``: exponential, capped, full jitter."""
        return random.uniform(0, min(cap, 0.05 * (2 ** min(attempts, 16))))

    def helper_headers(self, task: AggregatorTask, media_type: str | None) -> dict[str, str]:
        """Headers of a request to the Helper: ``DAP-Auth-Token`` and the media type."""
        h = {"DAP-Auth-Token": task.leader_token}
        if media_type:
            h["Content-Type"] = media_type
        return h

    async def _drive_job(self, tid: bytes, jid: bytes) -> None:
        row = self.store.one(
            "SELECT request, first_attempt, attempts, state FROM agg_jobs WHERE task_id=? AND job_id=?",
            (tid, jid))
        if row is None or row[3] != "active":
            return
        body, first_attempt, attempts, _ = row
        hit = self.agg.get_task(tid)
        if hit is None:
            return
        task, ops = hit
        now = time.time()
        if first_attempt is None:
            first_attempt = now
            with self.store.tx() as c:
                c.execute("UPDATE agg_jobs SET first_attempt=? WHERE task_id=? AND job_id=?",
                          (now, tid, jid))
        url = join_url(task.helper, f"tasks/{b64e(tid)}/aggregation_jobs/{b64e(jid)}")
        client = self.client
        answer = await ask_helper(lambda: client.put(
            url, content=body, headers=self.helper_headers(task, MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ)))
        if answer.retry is not None and answer.gives_up():  # TEST-ONLY BUG leader-abandon-on-503
            await self._abandon(task, tid, jid, answer.retry)
        elif answer.retry is not None:
            await self._retry_job(task, tid, jid, first_attempt, attempts, answer.retry)
        elif answer.failure is not None:
            await self._abandon(task, tid, jid, answer.failure)
        else:
            assert answer.response is not None
            error = await asyncio.to_thread(self._finish_job, task, ops, tid, jid, answer.response)
            if error:
                await self._abandon(task, tid, jid, error)

    async def _retry_job(self, task: AggregatorTask, tid: bytes, jid: bytes, first: float,
                         attempts: int, why: str) -> None:
        now = time.time()
        if now - first > self.retry_budget:
            await self._abandon(task, tid, jid, f"retry budget exhausted; last error: {why}")
            return
        if bugs.active("leader-rebuild-retry"):  # TEST-ONLY BUG: re-build, do not re-send
            with self.store.tx() as c:
                n = c.execute("UPDATE reports SET state='pending', job_id=NULL WHERE task_id=? AND"
                              " job_id=? AND state='in_job'", (tid, jid)).rowcount
                c.execute("UPDATE fs_batches SET assigned=assigned-? WHERE task_id=? AND batch_id=(SELECT"
                          " batch_id FROM agg_jobs WHERE task_id=? AND job_id=?)", (n, tid, tid, jid))
                c.execute("UPDATE agg_jobs SET state='abandoned', detail=? WHERE task_id=? AND job_id=?",
                          (f"re-built after: {why}", tid, jid))
            self._states.pop((tid, jid), None)
            return
        delay = self.backoff(attempts)
        with self.store.tx() as c:
            c.execute("UPDATE agg_jobs SET attempts=attempts+1, next_attempt=?, detail=?"
                      " WHERE task_id=? AND job_id=?", (now + delay, why, tid, jid))
        self.log({"event": "agg_job_retry", "job": b64e(jid), "attempt": attempts + 1,
                  "delay_s": round(delay, 3), "why": why})

    async def _abandon(self, task: AggregatorTask, tid: bytes, jid: bytes, why: str) -> None:
        with self.store.tx() as c:
            row = c.execute("SELECT state, batch_id FROM agg_jobs WHERE task_id=? AND job_id=?",
                            (tid, jid)).fetchone()
            if row is None or row[0] != "active":
                return
            n = c.execute("UPDATE reports SET state='failed' WHERE task_id=? AND job_id=?"
                          " AND state='in_job'", (tid, jid)).rowcount
            c.execute("UPDATE report_aggs SET state='failed' WHERE task_id=? AND job_id=?",
                      (tid, jid))
            c.execute("UPDATE agg_jobs SET state='abandoned', detail=? WHERE task_id=? AND job_id=?",
                      (why, tid, jid))
            if row[1] is not None:
                c.execute("UPDATE fs_batches SET assigned=assigned-? WHERE task_id=? AND batch_id=?",
                          (n, tid, row[1]))
        self._states.pop((tid, jid), None)
        self.log({"event": "agg_job_abandoned", "job": b64e(jid), "reports": n, "why": why})
        url = join_url(task.helper, f"tasks/{b64e(tid)}/aggregation_jobs/{b64e(jid)}")
        try:
            await self.client.delete(url, headers=self.helper_headers(task, None))
        except httpx.HTTPError:
            pass

    def _finish_job(self, task: AggregatorTask, ops: VdafOps, tid: bytes, jid: bytes,
                    resp: AggregationJobResp) -> str | None:
        """Process the Helper's response in one transaction; an error string aborts the job."""
        started = time.perf_counter()
        ras = self.store.query(
            "SELECT ord, report_id, time, bucket FROM report_aggs WHERE task_id=? AND job_id=?"
            " ORDER BY ord", (tid, jid))
        if [bytes(p.report_id) for p in resp.prepare_resps] != [bytes(r[1]) for r in ras]:
            return "response report IDs differ from the request's"
        states = self._states.get((tid, jid))
        if states is None:
            states = []
            for _, rid, _, _ in ras:
                rrow = self.store.one("SELECT public_share, leader_share FROM reports WHERE"
                                      " task_id=? AND report_id=?", (tid, bytes(rid)))
                states.append(ops.leader_init(task.verify_key, bytes(rid), rrow[0], rrow[1])[0])
        # done / failed / retry hold (ord, report_id[, error]): report_aggs rows are updated
        # by their primary key (task, job, ord), reports by theirs (task, report_id).
        items, done, failed, retry = [], [], [], []
        for (ord_, rid, t, bucket), pr, state in zip(ras, resp.prepare_resps, states, strict=True):
            rid = bytes(rid)
            if pr.prepare_resp_state == PrepareRespState.CONTINUE:
                try:
                    out = ops.leader_continued(state, pr.payload)
                except DapError:
                    failed.append((ord_, rid, int(PrepareError.VDAF_PREP_ERROR)))
                    continue
                items.append((bytes(bucket), rid, t, out))
                done.append((ord_, rid))
            elif pr.prepare_resp_state == PrepareRespState.REJECT:
                if pr.prepare_error == PrepareError.REPORT_TOO_EARLY:
                    retry.append((ord_, rid))
                else:
                    failed.append((ord_, rid, int(pr.prepare_error)))
            else:
                return "Helper answered 'finished' to an init request"
        with self.store.tx() as c:
            row = c.execute("SELECT state, batch_id FROM agg_jobs WHERE task_id=? AND job_id=?",
                            (tid, jid)).fetchone()
            if row is None or row[0] != "active":
                return None
            self.agg.accumulate(c, task, ops, items)
            c.executemany("UPDATE reports SET state='done' WHERE task_id=? AND report_id=?",
                          [(tid, rid) for _, rid in done])
            c.executemany("UPDATE reports SET state='failed', error=? WHERE task_id=? AND report_id=?",
                          [(err, tid, rid) for _, rid, err in failed])
            c.executemany("UPDATE reports SET state='pending', job_id=NULL WHERE task_id=? AND"
                          " report_id=?", [(tid, rid) for _, rid in retry])
            c.executemany("UPDATE report_aggs SET state=?, error=? WHERE task_id=? AND job_id=?"
                          " AND ord=?",
                          [("finished", None, tid, jid, ord_) for ord_, _ in done]
                          + [("failed", err, tid, jid, ord_) for ord_, _, err in failed]
                          + [("failed", int(PrepareError.REPORT_TOO_EARLY), tid, jid, ord_)
                             for ord_, _ in retry])
            if row[1] is not None and (failed or retry):
                c.execute("UPDATE fs_batches SET assigned=assigned-? WHERE task_id=? AND batch_id=?",
                          (len(failed) + len(retry), tid, row[1]))
            c.execute("UPDATE agg_jobs SET state='finished', step=0 WHERE task_id=? AND job_id=?",
                      (tid, jid))
        self._states.pop((tid, jid), None)
        self.log({"event": "agg_job_finished", "job": b64e(jid), "done": len(done),
                  "failed": len(failed), "retry": len(retry),
                  "ms": round((time.perf_counter() - started) * 1000, 2)})
        return None

    # --- collection jobs ---------------------------------------------------------------

    async def collection_pass(self) -> None:
        now = time.time()
        rows = self.store.query(
            "SELECT task_id, job_id, state FROM collection_jobs WHERE state IN"
            " ('pending','collecting') AND next_attempt <= ?", (now,))
        for tid, jid, state in rows:
            tid, jid = bytes(tid), bytes(jid)
            hit = self.agg.get_task(tid)
            if hit is None:
                continue
            if state == "pending":
                try:
                    started = await asyncio.to_thread(self._try_start_collection, hit[0], hit[1],
                                                      jid)
                except Problem as p:
                    # Batch validation failed once the batch was known (current_batch):
                    # the job fails with that problem type, reported on the next poll.
                    with self.store.tx() as c:
                        self.fail_collection(c, tid, jid, p.problem_type.token if p.problem_type else None, p.detail)
                    continue
                if not started:
                    continue
            self.spawn(("col", tid, jid), self._drive_collection, hit[0], tid, jid)

    def _try_start_collection(self, task: AggregatorTask, ops: VdafOps, jid: bytes) -> bool:
        """Start a pending collection job if its batch is ready; else look again after a backoff
        (collect interval, doubling, at most :data:`NOT_READY_MAX_S`) or as soon as something
        that can make the batch ready happens (the wake triggers in dap/roles/storage.py)."""
        started = (self.param.try_start_collection(task, ops, jid) if ops.needs_agg_param
                   else self._start_collection(task, ops, jid))
        if not started:
            with self.store.tx() as c:
                c.execute("UPDATE collection_jobs SET next_attempt=? + min(?, ? * (1 << min(attempts, 16))),"
                          " attempts=attempts+1 WHERE task_id=? AND job_id=? AND state='pending'",
                          (time.time(), NOT_READY_MAX_S, self.collect_interval, task.task_id, jid))
        return started

    def _start_collection(self, task: AggregatorTask, ops: VdafOps, jid: bytes) -> bool:
        tid = task.task_id
        with self.store.tx() as c:
            row = c.execute("SELECT query, agg_param, batch_selector, state FROM collection_jobs"
                            " WHERE task_id=? AND job_id=?", (tid, jid)).fetchone()
            if row is None or row[3] != "pending":
                return False
            query = Query.decode(row[0])
            agg_param = bytes(row[1])
            if query.query_type == QueryType.TIME_INTERVAL:
                sel = BatchSelector.decode(row[2])
                iv = sel.batch_interval
                busy = c.execute(
                    "SELECT count(*) FROM reports WHERE task_id=? AND state IN ('pending','in_job')"
                    " AND time >= ? AND time < ?", (tid, iv.start, iv.start + iv.duration)
                ).fetchone()[0]
                if busy:
                    return False
            elif query.fixed_size_query.query_type == FixedSizeQueryType.BY_BATCH_ID:
                sel = BatchSelector.decode(row[2])
                if self._batch_busy(c, tid, bytes(sel.batch_id)):
                    return False
            else:
                bid = self._pick_current_batch(c, task)
                if bid is None:
                    return False
                sel = BatchSelector(QueryType.FIXED_SIZE, batch_id=bid)
                self.agg.check_query_count_and_overlap(task, sel, agg_param, c)
                self.agg.record_query(c, task, sel, agg_param)
                c.execute("UPDATE fs_batches SET collection_job=? WHERE task_id=? AND batch_id=?",
                          (jid, tid, bid))
            rows = self.agg.batch_buckets(c, task, sel)
            share, count, chk, tmin, tmax = self.agg.sum_buckets(ops, rows)
            if count < task.min_batch_size:
                return False  # Leader SHOULD wait for more reports (dap-09.md §14)
            if task.max_batch_size is not None and count > task.max_batch_size:
                self.fail_collection(c, tid, jid, "invalidBatchSize", f"batch has {count} reports")
                return False
            share_req = AggregateShareReq(sel, agg_param, count, chk).encode()
            collector_config = HpkeConfig.decode(task.collector_hpke_config)
            leader_ct = hpke.seal_aggregate_share(collector_config, Role.LEADER, tid, agg_param,
                                                  sel, share if share is not None else ops.empty_share())
            iv = interval_of(task, tmin, tmax)
            self.agg.mark_collected(c, task, sel, rows)
            c.execute(
                "UPDATE collection_jobs SET state='collecting', batch_selector=?, share_req=?,"
                " leader_ct=?, report_count=?, interval_start=?, interval_duration=?, attempts=0,"
                " next_attempt=0 WHERE task_id=? AND job_id=?",
                (sel.encode(), share_req, leader_ct.encode(), count, iv.start, iv.duration, tid, jid))
        return True

    def _batch_busy(self, c: Any, tid: bytes, bid: bytes) -> bool:
        return c.execute("SELECT 1 FROM agg_jobs WHERE task_id=? AND role='leader' AND"
                         " state='active' AND batch_id=?", (tid, bid)).fetchone() is not None

    def _pick_current_batch(self, c: Any, task: AggregatorTask) -> bytes | None:
        rows = c.execute(
            "SELECT b.batch_id, k.report_count FROM fs_batches b JOIN buckets k ON"
            " k.task_id=b.task_id AND k.bucket=b.batch_id WHERE b.task_id=? AND"
            " b.collection_job IS NULL AND k.report_count >= ? ORDER BY b.created",
            (task.task_id, task.min_batch_size)).fetchall()
        for bid, _ in rows:
            if not self._batch_busy(c, task.task_id, bytes(bid)):
                return bytes(bid)
        return None

    def fail_collection(self, c: Any, tid: bytes, jid: bytes, problem: str | None,
                        detail: str) -> None:
        """Inside tx ``c``: the collection job fails with ``problem`` (a DAP problem token,
        or None), which its polls then report."""
        c.execute("UPDATE collection_jobs SET state='failed', problem=?, detail=? WHERE task_id=?"
                  " AND job_id=? AND state IN ('pending','collecting')", (problem, detail, tid, jid))
        self.log({"event": "collection_failed", "job": b64e(jid), "problem": problem,
                  "detail": detail})

    async def _drive_collection(self, task: AggregatorTask, tid: bytes, jid: bytes) -> None:
        row = self.store.one(
            "SELECT state, share_req, leader_ct, report_count, interval_start, interval_duration,"
            " batch_selector, attempts FROM collection_jobs WHERE task_id=? AND job_id=?", (tid, jid))
        if row is None or row[0] != "collecting":
            return
        _, share_req, leader_ct, count, istart, idur, sel_bytes, attempts = row
        url = join_url(task.helper, f"tasks/{b64e(tid)}/aggregate_shares")
        why = ""
        try:
            resp = await self.client.post(
                url, content=share_req, headers=self.helper_headers(task, MEDIA_TYPE_AGGREGATE_SHARE_REQ))
        except httpx.TransportError as exc:
            resp, why = None, f"transport: {exc!r}"
        if resp is not None and 200 <= resp.status_code < 300:
            try:
                helper_share = AggregateShare.decode(resp.content)
            except DecodeError as exc:
                why = f"undecodable response: {exc}"
            else:
                sel = BatchSelector.decode(sel_bytes)
                pbs = (PartialBatchSelector(QueryType.FIXED_SIZE, batch_id=sel.batch_id)
                       if sel.query_type == QueryType.FIXED_SIZE
                       else PartialBatchSelector(QueryType.TIME_INTERVAL))
                collection = Collection(pbs, count, Interval(istart, idur),
                                        HpkeCiphertext.decode(leader_ct),
                                        helper_share.encrypted_aggregate_share).encode()
                with self.store.tx() as c:
                    c.execute("UPDATE collection_jobs SET state='finished', result=? WHERE"
                              " task_id=? AND job_id=? AND state='collecting'", (collection, tid, jid))
                self.log({"event": "collection_finished", "job": b64e(jid), "reports": count})
                return
        elif resp is not None and not is_retryable_status(resp.status_code):
            ptype, detail = problem_of(resp)
            with self.store.tx() as c:
                self.fail_collection(c, tid, jid, ptype, f"Helper: HTTP {resp.status_code} {detail}".strip())
            return
        elif resp is not None:
            why = f"HTTP {resp.status_code}"
        delay = self.backoff(attempts, cap=5.0)
        with self.store.tx() as c:
            c.execute("UPDATE collection_jobs SET attempts=attempts+1, next_attempt=?, detail=?"
                      " WHERE task_id=? AND job_id=?", (time.time() + delay, why, tid, jid))
        self.log({"event": "collection_retry", "job": b64e(jid), "attempt": attempts + 1,
                  "delay_s": round(delay, 3), "why": why})

