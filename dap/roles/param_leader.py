"""The Leader's side of aggregation with an aggregation parameter (Poplar1, two rounds).

For Prio3 the Leader aggregates reports as they arrive. A Poplar1 report can only be
prepared once the Collector has named an aggregation parameter (tree level and candidate
prefixes), and it is prepared again for every later parameter (a heavy-hitters walk
collects the same batch once per level). So:

* **Uploads** are stored and de-duplicated exactly as for Prio3 (``reports``, state
  ``pending``, which here means "available", not "not yet aggregated"). fixed_size: the
  creator pass assigns them to batches of ``min_batch_size`` (``param_batch_members``,
  ``fs_batches.assigned``) so ``current_batch`` has batches to hand out.
* **Collection jobs drive aggregation** (:meth:`ParamLeader.try_start_collection`, one
  call per collector pass): the batch's reports that were never used with this
  agg_param, that ``Vdaf.is_valid`` allows given the params they were already used with
  (otherwise skipped: ``report_replayed``) and that are not excluded by an earlier
  collection of the batch (``batch_collected``) go into new aggregation jobs. Once no
  job for the parameter is active and no report is left to prepare, the batch sum
  under (batch, agg_param) is checked against ``min_batch_size``, the batch is marked
  collected for that parameter and the stored AggregateShareReq is handed to the
  common collection driver of :mod:`dap.roles.leader`.
* **Jobs have two steps**, each persisted before it is sent: the job row holds the
  exact AggregationJobInitReq bytes from creation; the Helper's init response is
  processed in one transaction that stores the Leader's output shares (state
  ``awaiting``), the dropped reports and the exact AggregationJobContinueReq (step 1,
  one ``finish`` per still-live report in init order) — only then is step 1 sent. Its
  response (``finished`` per report) commits the output shares to the
  (agg_param, bucket) sums, the reports' uses become ``committed``, the job
  ``finished``. A restart at any point re-sends the stored bytes of the current step;
  retries re-send the same bytes (the Helper replays a step it has processed), with
  the backoff, budget and abandonment rules of the Prio3 driver.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx

from dap import hpke
from dap.constants import (
    MEDIA_TYPE_AGGREGATION_JOB_CONTINUE_REQ,
    MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ,
    FixedSizeQueryType,
    PrepareError,
    PrepareRespState,
    QueryType,
    Role,
)
from dap.errors import DapError
from dap.messages import (
    AggregateShareReq,
    AggregationJobContinueReq,
    AggregationJobInitReq,
    AggregationJobResp,
    BatchSelector,
    HpkeCiphertext,
    HpkeConfig,
    PartialBatchSelector,
    PrepareContinue,
    PrepareInit,
    Query,
    ReportMetadata,
    ReportShare,
)
from dap.roles.buckets import bucket_key, interval_of
from dap.roles.param_agg import ParamBatches, ensure_schema
from dap.roles.task import AggregatorTask, b64e
from dap.roles.upstream import ask_helper, join_url
from dap.roles.vdafs import VdafOps
from dap.vdaf.pingpong import Finished

__all__ = ["ParamLeader"]


class ParamLeader:
    """Batches, aggregation jobs and collection start for agg-param tasks (one per Leader)."""

    def __init__(self, driver: Any) -> None:
        self.d = driver  # the dap.roles.leader.LeaderDriver (HTTP client, retry policy, log)
        self.agg = driver.agg
        self.store = driver.store
        ensure_schema(self.store)
        self.batches = ParamBatches()
        # The Leader's Continued states of freshly created jobs (recomputed after a restart:
        # preparation is deterministic).
        self._states: dict[tuple[bytes, bytes], list[Any]] = {}

    # --- fixed_size batches ------------------------------------------------------------

    def form_batches(self, task: AggregatorTask) -> None:
        """fixed_size: put unassigned reports into open batches of ``min_batch_size``."""
        if task.query_type != QueryType.FIXED_SIZE:
            return
        tid = task.task_id
        with self.store.tx() as c:
            unassigned = [bytes(r[0]) for r in c.execute(
                "SELECT r.report_id FROM reports r WHERE r.task_id=? AND r.state='pending' AND"
                " NOT EXISTS (SELECT 1 FROM param_batch_members m WHERE m.task_id=r.task_id AND"
                " m.report_id=r.report_id) ORDER BY r.time, r.report_id LIMIT 10000", (tid,))]
            if unassigned:
                self._assign(c, task, unassigned)

    def _assign(self, c: Any, task: AggregatorTask, report_ids: list[bytes]) -> None:
        """Fill the open batches, then new ones, to ``min_batch_size`` reports each."""
        tid, target = task.task_id, task.min_batch_size
        open_batches = [(bytes(b), n) for b, n in c.execute(
            "SELECT batch_id, assigned FROM fs_batches WHERE task_id=? AND collection_job IS"
            " NULL AND assigned < ? ORDER BY created", (tid, target))]
        pending = list(report_ids)
        while pending:
            if open_batches:
                batch_id, assigned = open_batches.pop(0)
            else:
                batch_id, assigned = os.urandom(32), 0
                c.execute("INSERT INTO fs_batches(task_id, batch_id, assigned, created)"
                          " VALUES(?,?,0,?)", (tid, batch_id, time.time()))
            room = target - assigned
            self._add_members(c, tid, batch_id, pending[:room])
            pending = pending[room:]

    @staticmethod
    def _add_members(c: Any, tid: bytes, batch_id: bytes, report_ids: list[bytes]) -> None:
        c.executemany("INSERT INTO param_batch_members(task_id, report_id, batch_id)"
                      " VALUES(?,?,?)", [(tid, rid, batch_id) for rid in report_ids])
        c.execute("UPDATE fs_batches SET assigned=assigned+? WHERE task_id=? AND batch_id=?",
                  (len(report_ids), tid, batch_id))

    # --- collection jobs ---------------------------------------------------------------

    def try_start_collection(self, task: AggregatorTask, ops: VdafOps, jid: bytes) -> bool:
        """One collector pass for a pending collection job; True once its share request is stored.

        Raises :class:`dap.roles.http.Problem` (the job then fails with it) for batch
        validation that is only possible once the batch is chosen.
        """
        tid = task.task_id
        to_prepare: list[tuple[bytes, int]] = []
        with self.store.tx() as c:
            row = c.execute("SELECT query, agg_param, batch_selector, state FROM collection_jobs"
                            " WHERE task_id=? AND job_id=?", (tid, jid)).fetchone()
            if row is None or row[3] != "pending":
                return False
            query, agg_param = Query.decode(row[0]), bytes(row[1])
            if row[2] is not None:
                sel = BatchSelector.decode(row[2])
            else:
                assert (query.query_type == QueryType.FIXED_SIZE and
                        query.fixed_size_query.query_type == FixedSizeQueryType.CURRENT_BATCH)
                picked = c.execute(
                    "SELECT batch_id FROM fs_batches WHERE task_id=? AND collection_job IS NULL"
                    " AND assigned >= ? ORDER BY created LIMIT 1",
                    (tid, task.min_batch_size)).fetchone()
                if picked is None:
                    return False
                sel = BatchSelector(QueryType.FIXED_SIZE, batch_id=bytes(picked[0]))
                self.agg.check_query_count_and_overlap(task, sel, agg_param, c)
                self.agg.record_query(c, task, sel, agg_param)
                # Bound for good: each current_batch query gets a batch of its own.
                c.execute("UPDATE fs_batches SET collection_job=? WHERE task_id=? AND batch_id=?",
                          (jid, tid, bytes(picked[0])))
                c.execute("UPDATE collection_jobs SET batch_selector=? WHERE task_id=? AND"
                          " job_id=?", (sel.encode(), tid, jid))
            batch_id = bytes(sel.batch_id) if sel.batch_id is not None else None
            if c.execute("SELECT 1 FROM param_jobs WHERE task_id=? AND agg_param=? AND"
                         " state='active' AND (? IS NULL OR batch_id=?) LIMIT 1",
                         (tid, agg_param, batch_id, batch_id)).fetchone() is not None:
                return False  # reports uploaded meanwhile are picked up once these finish
            used: dict[bytes, list[bytes]] = {}
            for rid, param in c.execute("SELECT report_id, agg_param FROM param_uses WHERE"
                                        " task_id=?", (tid,)):
                used.setdefault(bytes(rid), []).append(bytes(param))
            replayed = 0
            for rid, t in self._batch_reports(c, task, sel):
                previous = used.get(rid, [])
                if agg_param in previous:
                    continue  # prepared (or being prepared) with this parameter already
                if not ops.is_valid(agg_param, previous):
                    replayed += 1  # report_replayed: e.g. this level with other prefixes
                    continue
                if self.batches.excluded_by_collection(c, task, rid, t, batch_id):
                    continue  # batch_collected: not in the earlier collections of the batch
                to_prepare.append((rid, t))
            if not to_prepare:
                return self._finish_batch(c, task, ops, jid, sel, agg_param, replayed)
        if to_prepare:
            self._create_jobs(task, ops, sel, agg_param, to_prepare)
        return False

    def _batch_reports(self, c: Any, task: AggregatorTask,
                       sel: BatchSelector) -> list[tuple[bytes, int]]:
        if sel.query_type == QueryType.FIXED_SIZE:
            rows = c.execute(
                "SELECT r.report_id, r.time FROM param_batch_members m JOIN reports r ON"
                " r.task_id=m.task_id AND r.report_id=m.report_id WHERE m.task_id=? AND"
                " m.batch_id=? ORDER BY r.time, r.report_id",
                (task.task_id, bytes(sel.batch_id))).fetchall()
        else:
            iv = sel.batch_interval
            rows = c.execute(
                "SELECT report_id, time FROM reports WHERE task_id=? AND time >= ? AND time < ?"
                " ORDER BY time, report_id", (task.task_id, iv.start, iv.start + iv.duration)
            ).fetchall()
        return [(bytes(rid), t) for rid, t in rows]

    def _finish_batch(self, c: Any, task: AggregatorTask, ops: VdafOps, jid: bytes,
                      sel: BatchSelector, agg_param: bytes, replayed: int) -> bool:
        """Every report of the batch is prepared under ``agg_param``: store the share request."""
        tid = task.task_id
        share, count, chk, tmin, tmax = self.batches.batch_sum(c, task, ops, sel, agg_param)
        if count < task.min_batch_size:
            batch_id = bytes(sel.batch_id) if sel.batch_id is not None else None
            if c.execute("SELECT 1 FROM param_collections WHERE task_id=? AND selector=?",
                         (tid, sel.encode())).fetchone() is not None:
                # The batch's report set froze at its first collection: it cannot grow.
                self.d.fail_collection(c, tid, jid, "invalidBatchSize",
                             f"batch has {count} reports under this aggregation parameter"
                             f" ({replayed} already used at this level: report_replayed)")
            elif batch_id is not None:
                # fixed_size, not yet collected: top the batch up with unassigned reports.
                deficit = task.min_batch_size - count
                spare = [bytes(r[0]) for r in c.execute(
                    "SELECT r.report_id FROM reports r WHERE r.task_id=? AND r.state='pending'"
                    " AND NOT EXISTS (SELECT 1 FROM param_batch_members m WHERE"
                    " m.task_id=r.task_id AND m.report_id=r.report_id)"
                    " ORDER BY r.time, r.report_id LIMIT ?", (tid, deficit))]
                if spare:
                    self._add_members(c, tid, batch_id, spare)
            return False  # otherwise the Leader SHOULD wait for more reports (§14)
        if task.max_batch_size is not None and count > task.max_batch_size:
            self.d.fail_collection(c, tid, jid, "invalidBatchSize", f"batch has {count} reports")
            return False
        share_req = AggregateShareReq(sel, agg_param, count, chk).encode()
        leader_ct = hpke.seal_aggregate_share(HpkeConfig.decode(task.collector_hpke_config),
                                              Role.LEADER, tid, agg_param, sel, share)
        iv = interval_of(task, tmin, tmax)
        self.batches.mark_collected(c, task, sel, agg_param)
        c.execute(
            "UPDATE collection_jobs SET state='collecting', batch_selector=?, share_req=?,"
            " leader_ct=?, report_count=?, interval_start=?, interval_duration=?, attempts=0,"
            " next_attempt=0 WHERE task_id=? AND job_id=?",
            (sel.encode(), share_req, leader_ct.encode(), count, iv.start, iv.duration, tid, jid))
        return True

    # --- job creation ------------------------------------------------------------------

    def _create_jobs(self, task: AggregatorTask, ops: VdafOps, sel: BatchSelector,
                     agg_param: bytes, reports: list[tuple[bytes, int]]) -> None:
        tid = task.task_id
        batch_id = bytes(sel.batch_id) if sel.batch_id is not None else None
        pbs = (PartialBatchSelector(QueryType.FIXED_SIZE, batch_id=batch_id)
               if batch_id is not None else PartialBatchSelector(QueryType.TIME_INTERVAL))
        for i in range(0, len(reports), self.d.job_size):
            chunk = reports[i:i + self.d.job_size]
            started = time.perf_counter()
            prepared, failed = [], []
            for rid, t in chunk:
                row = self.store.one("SELECT public_share, leader_share, helper_ct FROM reports"
                                     " WHERE task_id=? AND report_id=?", (tid, rid))
                try:
                    state, outbound = ops.leader_init(task.verify_key, rid, row[0], row[1],
                                                      agg_param)
                except DapError:
                    failed.append(rid)
                    continue
                init = PrepareInit(ReportShare(ReportMetadata(rid, t), row[0],
                                               HpkeCiphertext.decode(row[2])), outbound)
                prepared.append((rid, t, init, state))
            job_id = os.urandom(16)
            with self.store.tx() as c:
                kept = []
                for rid, t, init, state in prepared:
                    # The primary key makes a report join at most one job per parameter,
                    # even if two collection jobs for the same (batch, param) race.
                    if c.execute("INSERT OR IGNORE INTO param_uses(task_id, report_id, agg_param,"
                                 " job_id, state) VALUES(?,?,?,?,'in_job')",
                                 (tid, rid, agg_param, job_id)).rowcount:
                        kept.append((rid, t, init, state))
                c.executemany("INSERT OR IGNORE INTO param_uses(task_id, report_id, agg_param,"
                              " job_id, state) VALUES(?,?,?,?,'failed')",
                              [(tid, rid, agg_param, job_id) for rid in failed])
                if not kept:
                    continue
                body = AggregationJobInitReq(agg_param, pbs, tuple(k[2] for k in kept)).encode()
                c.execute("INSERT INTO param_jobs(task_id, job_id, agg_param, batch_id, step,"
                          " state, init_req, created) VALUES(?,?,?,?,0,'active',?,?)",
                          (tid, job_id, agg_param, batch_id, body, time.time()))
                c.executemany(
                    "INSERT INTO param_job_reports(task_id, job_id, ord, report_id, time, bucket,"
                    " state) VALUES(?,?,?,?,?,?,'init')",
                    [(tid, job_id, n, rid, t, bucket_key(task, t, batch_id))
                     for n, (rid, t, _, _) in enumerate(kept)])
            self._states[(tid, job_id)] = [k[3] for k in kept]
            self.d.log({"event": "agg_job_created", "job": b64e(job_id), "reports": len(kept),
                        "agg_param": b64e(agg_param), "failed": len(failed),
                        "ms": round((time.perf_counter() - started) * 1000, 2)})

    # --- driving jobs ------------------------------------------------------------------

    async def driver_pass(self) -> None:
        rows = self.store.query("SELECT task_id, job_id FROM param_jobs WHERE state='active'"
                                " AND next_attempt <= ?", (time.time(),))
        for tid, jid in rows:
            self.d.spawn(("param-agg", bytes(tid), bytes(jid)), self._drive, bytes(tid), bytes(jid))

    async def _drive(self, tid: bytes, jid: bytes) -> None:
        row = self.store.one("SELECT step, init_req, continue_req, first_attempt, attempts, state,"
                             " agg_param FROM param_jobs WHERE task_id=? AND job_id=?", (tid, jid))
        if row is None or row[5] != "active":
            return
        step, init_req, continue_req, first_attempt, attempts, _, agg_param = row
        hit = self.agg.get_task(tid)
        if hit is None:
            return
        task, ops = hit
        if first_attempt is None:
            first_attempt = time.time()
            with self.store.tx() as c:
                c.execute("UPDATE param_jobs SET first_attempt=? WHERE task_id=? AND job_id=?",
                          (first_attempt, tid, jid))
        url = self._job_url(task, tid, jid)
        client = self.d.client
        if step == 0:
            answer = await ask_helper(lambda: client.put(url, content=init_req, headers=self.d.helper_headers(
                task, MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ)))
        else:
            answer = await ask_helper(lambda: client.post(url, content=continue_req, headers=self.d.helper_headers(
                task, MEDIA_TYPE_AGGREGATION_JOB_CONTINUE_REQ)))
        if answer.retry is not None and answer.gives_up():  # TEST-ONLY BUG leader-abandon-on-503
            await self._abandon(task, tid, jid, f"step {step}: {answer.retry}")
            return
        if answer.retry is not None:
            await self._retry(task, tid, jid, first_attempt, attempts, answer.retry)
            return
        if answer.failure is not None:
            await self._abandon(task, tid, jid, f"step {step}: {answer.failure}")
            return
        step_fn = self._after_init if step == 0 else self._after_continue
        error, nothing_left = await asyncio.to_thread(step_fn, task, ops, tid, jid, bytes(agg_param),
                                                      answer.response)
        if error:
            await self._abandon(task, tid, jid, error)
        elif nothing_left:
            await self._delete_at_helper(task, tid, jid)

    def _job_url(self, task: AggregatorTask, tid: bytes, jid: bytes) -> str:
        return join_url(task.helper, f"tasks/{b64e(tid)}/aggregation_jobs/{b64e(jid)}")

    def _after_init(self, task: AggregatorTask, ops: VdafOps, tid: bytes, jid: bytes,
                    agg_param: bytes, resp: AggregationJobResp) -> tuple[str | None, bool]:
        """The Helper's init response -> the stored step-1 request (or nothing left to do).

        Returns (error that aborts the job, whether the job ended with no report left).
        """
        ras = self.store.query("SELECT ord, report_id FROM param_job_reports WHERE task_id=? AND"
                               " job_id=? ORDER BY ord", (tid, jid))
        if [bytes(p.report_id) for p in resp.prepare_resps] != [bytes(r[1]) for r in ras]:
            return "response report IDs differ from the request's", False
        states = self._states.get((tid, jid))
        if states is None:
            states = []
            for _, rid in ras:
                row = self.store.one("SELECT public_share, leader_share FROM reports WHERE"
                                     " task_id=? AND report_id=?", (tid, bytes(rid)))
                states.append(ops.leader_init(task.verify_key, bytes(rid), row[0], row[1],
                                              agg_param)[0])
        live, failed, too_early = [], [], []
        for (ord_, rid), pr, state in zip(ras, resp.prepare_resps, states, strict=True):
            rid = bytes(rid)
            if pr.prepare_resp_state == PrepareRespState.CONTINUE:
                new_state, outbound = ops.leader_step(state, pr.payload, agg_param)
                if isinstance(new_state, Finished) and outbound is not None:
                    live.append((ord_, rid, ops.encode_out_share(new_state.out_share), outbound))
                else:
                    # Sketch verification failed (or a malformed message): left out of step 1.
                    failed.append((ord_, rid, int(PrepareError.VDAF_PREP_ERROR)))
            elif pr.prepare_resp_state == PrepareRespState.REJECT:
                if pr.prepare_error == PrepareError.REPORT_TOO_EARLY:
                    too_early.append((ord_, rid))
                else:
                    failed.append((ord_, rid, int(pr.prepare_error)))
            else:
                return "Helper answered 'finished' to an init request", False
        with self.store.tx() as c:
            row = c.execute("SELECT state, step FROM param_jobs WHERE task_id=? AND job_id=?",
                            (tid, jid)).fetchone()
            if row is None or row[0] != "active" or row[1] != 0:
                return None, False  # processed already (a concurrent pass)
            c.executemany("UPDATE param_job_reports SET state='awaiting', out_share=? WHERE"
                          " task_id=? AND job_id=? AND ord=?",
                          [(out, tid, jid, o) for o, _, out, _ in live])
            c.executemany("UPDATE param_job_reports SET state='failed', error=? WHERE task_id=?"
                          " AND job_id=? AND ord=?",
                          [(e, tid, jid, o) for o, _, e in failed]
                          + [(int(PrepareError.REPORT_TOO_EARLY), tid, jid, o) for o, _ in too_early])
            c.executemany("UPDATE param_uses SET state='failed' WHERE task_id=? AND report_id=?"
                          " AND agg_param=?", [(tid, rid, agg_param) for _, rid, _ in failed])
            # report_too_early is the one rejection after which a report may be retried.
            c.executemany("DELETE FROM param_uses WHERE task_id=? AND report_id=? AND agg_param=?",
                          [(tid, rid, agg_param) for _, rid in too_early])
            if live:
                body = AggregationJobContinueReq(1, tuple(
                    PrepareContinue(rid, outbound) for _, rid, _, outbound in live)).encode()
                c.execute("UPDATE param_jobs SET step=1, continue_req=?, attempts=0,"
                          " next_attempt=0, first_attempt=NULL, detail=NULL WHERE task_id=? AND"
                          " job_id=?", (body, tid, jid))
            else:
                c.execute("UPDATE param_jobs SET state='finished', detail='no report left after"
                          " init' WHERE task_id=? AND job_id=?", (tid, jid))
        self._states.pop((tid, jid), None)
        self.d.log({"event": "agg_job_step", "job": b64e(jid), "step": 1, "live": len(live),
                    "failed": len(failed), "retry": len(too_early)})
        return None, not live

    def _after_continue(self, task: AggregatorTask, ops: VdafOps, tid: bytes, jid: bytes,
                        agg_param: bytes, resp: AggregationJobResp) -> tuple[str | None, bool]:
        """The Helper's step-1 response: commit the output shares it reports ``finished``."""
        ras = self.store.query("SELECT ord, report_id, time, bucket, out_share FROM"
                               " param_job_reports WHERE task_id=? AND job_id=? AND"
                               " state='awaiting' ORDER BY ord", (tid, jid))
        if [bytes(p.report_id) for p in resp.prepare_resps] != [bytes(r[1]) for r in ras]:
            return "step-1 response report IDs differ from the request's", False
        items, done, failed = [], [], []
        for (ord_, rid, t, bucket, out), pr in zip(ras, resp.prepare_resps, strict=True):
            rid = bytes(rid)
            if pr.prepare_resp_state == PrepareRespState.FINISHED:
                items.append((bytes(bucket), rid, t, ops.decode_out_share(out, agg_param)))
                done.append((ord_, rid))
            elif pr.prepare_resp_state == PrepareRespState.REJECT:
                failed.append((ord_, rid, int(pr.prepare_error)))
            else:
                return "Helper answered 'continue' after the last round", False
        with self.store.tx() as c:
            row = c.execute("SELECT state, step FROM param_jobs WHERE task_id=? AND job_id=?",
                            (tid, jid)).fetchone()
            if row is None or row[0] != "active" or row[1] != 1:
                return None, False
            self.batches.accumulate(c, task, ops, agg_param, items)
            c.executemany("UPDATE param_job_reports SET state='finished', out_share=NULL WHERE"
                          " task_id=? AND job_id=? AND ord=?", [(tid, jid, o) for o, _ in done])
            c.executemany("UPDATE param_job_reports SET state='failed', error=?, out_share=NULL"
                          " WHERE task_id=? AND job_id=? AND ord=?",
                          [(e, tid, jid, o) for o, _, e in failed])
            c.executemany("UPDATE param_uses SET state=? WHERE task_id=? AND report_id=? AND"
                          " agg_param=?",
                          [("committed", tid, rid, agg_param) for _, rid in done]
                          + [("failed", tid, rid, agg_param) for _, rid, _ in failed])
            c.execute("UPDATE param_jobs SET state='finished' WHERE task_id=? AND job_id=?",
                      (tid, jid))
        self.d.log({"event": "agg_job_finished", "job": b64e(jid), "done": len(done),
                    "failed": len(failed)})
        return None, False

    async def _retry(self, task: AggregatorTask, tid: bytes, jid: bytes, first: float,
                     attempts: int, why: str) -> None:
        if time.time() - first > self.d.retry_budget:
            await self._abandon(task, tid, jid, f"retry budget exhausted; last error: {why}")
            return
        delay = self.d.backoff(attempts)
        with self.store.tx() as c:
            c.execute("UPDATE param_jobs SET attempts=attempts+1, next_attempt=?, detail=?"
                      " WHERE task_id=? AND job_id=?", (time.time() + delay, why, tid, jid))
        self.d.log({"event": "agg_job_retry", "job": b64e(jid), "attempt": attempts + 1,
                    "delay_s": round(delay, 3), "why": why})

    async def _abandon(self, task: AggregatorTask, tid: bytes, jid: bytes, why: str) -> None:
        with self.store.tx() as c:
            row = c.execute("SELECT state FROM param_jobs WHERE task_id=? AND job_id=?",
                            (tid, jid)).fetchone()
            if row is None or row[0] != "active":
                return
            # The Helper may hold these reports under this parameter: never re-sent with it.
            n = c.execute("UPDATE param_uses SET state='failed' WHERE task_id=? AND job_id=? AND"
                          " state='in_job'", (tid, jid)).rowcount
            c.execute("UPDATE param_job_reports SET state='failed', out_share=NULL WHERE"
                      " task_id=? AND job_id=? AND state IN ('init','awaiting')", (tid, jid))
            c.execute("UPDATE param_jobs SET state='abandoned', detail=? WHERE task_id=? AND"
                      " job_id=?", (why, tid, jid))
        self._states.pop((tid, jid), None)
        self.d.log({"event": "agg_job_abandoned", "job": b64e(jid), "reports": n, "why": why})
        await self._delete_at_helper(task, tid, jid)

    async def _delete_at_helper(self, task: AggregatorTask, tid: bytes, jid: bytes) -> None:
        """DELETE the job so the Helper drops prep states it still holds (best effort)."""
        try:
            await self.d.client.delete(self._job_url(task, tid, jid),
                                        headers=self.d.helper_headers(task, None))
        except httpx.HTTPError:
            pass
