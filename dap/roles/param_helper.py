"""The Helper's side of aggregation with an aggregation parameter (Poplar1, two rounds).

:class:`dap.roles.aggregator.Aggregator` hands the init PUT, the continue POST and the
aggregate-share POST of a task whose VDAF needs an aggregation parameter to
:class:`ParamHelper`. Authentication, media types, the init-replay / 409 / 410 rules and
DELETE are shared with Prio3; what differs:

* **Init (PUT, 201)**: per report, after the HPKE / time checks, ``Vdaf.is_valid(agg_param,
  agg params this report was already used with in this task)`` — false ->
  ``report_replayed`` (anti-replay is per (report, agg_param), table ``param_uses``);
  then ``batch_collected`` if the report's batch was collected under a parameter the
  report was not committed under. A report that passes answers ``continue`` and its
  ``Continued`` prep state is stored (``param_prep_states``) in the transaction that
  stores the job and its response. Nothing is accumulated at init.
* **Continue (POST, 200)**, DAP-09 §10.5 / §10.6, in this order: unknown or deleted job ->
  ``unrecognizedAggregationJob``; ``step == 0`` -> ``invalidMessage``; a byte-identical
  repeat of the last step processed -> its stored response (the VDAF is not re-run);
  repeated report IDs or IDs that are not in the job -> ``invalidMessage``; a job whose
  preparation is complete (Poplar1: after step 1) or a step other than last + 1 ->
  ``stepMismatch``; a report without a waiting prep state (rejected at init) or reports
  out of their init order -> ``invalidMessage``. Then each report's ``finish`` is
  consumed and its output share committed, all in one transaction with the response;
  reports the Leader left out are dropped (``report_dropped``, never counted).
* **Aggregate share (POST, 200)**: as for Prio3 but the sum is over the (batch, agg_param)
  buckets, and the batch's report set is frozen for later parameters.

A different body at the last step gets ``stepMismatch`` (the draft's MUST; Janus 0.7
answers 409 there). After step 1, a request for a later step also gets ``stepMismatch``:
with the prep states kept (as they must be, to replay step 1) every report ID is known,
and a finished job has no next step.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from dap import hpke
from dap.codec import AggregationJobId
from dap.constants import (
    MEDIA_TYPE_AGGREGATE_SHARE_REQ,
    MEDIA_TYPE_AGGREGATION_JOB_CONTINUE_REQ,
    MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ,
    PrepareError,
    ProblemType,
    Role,
)
from dap.errors import DapError, DecodeError
from dap.messages import (
    AggregateShare,
    AggregateShareReq,
    AggregationJobContinueReq,
    AggregationJobInitReq,
    AggregationJobResp,
    HpkeConfig,
    PrepareResp,
)
from dap.roles import bugs
from dap.roles.buckets import bucket_key
from dap.roles.http import Problem, Reply, check_auth, check_media_type, decode_message, path_id
from dap.roles.param_agg import ParamBatches, ensure_schema
from dap.roles.storage import SQLITE_MAX_INT
from dap.roles.task import AggregatorTask
from dap.roles.vdafs import VdafOps
from dap.vdaf.pingpong import Finished

__all__ = ["ParamHelper"]


def _invalid(detail: str, task_id: bytes) -> Problem:
    return Problem(ProblemType.INVALID_MESSAGE, detail, task_id=task_id)


class ParamHelper:
    """Helper handlers for tasks whose VDAF needs an aggregation parameter."""

    def __init__(self, agg: Any) -> None:
        self.agg = agg  # the dap.roles.aggregator.Aggregator this serves
        self.store = agg.store
        ensure_schema(self.store)
        self.batches = ParamBatches()

    # --- init --------------------------------------------------------------------------

    def init(self, task: AggregatorTask, ops: VdafOps, job_id_text: str, request: Any,
             body: bytes) -> Reply:
        tid = task.task_id
        check_auth(request, task.leader_token, task_id=tid)
        check_media_type(request, MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ, task_id=tid)
        job_id = bytes(path_id(AggregationJobId, job_id_text, "aggregation job ID", tid))
        digest = hashlib.sha256(body).digest()
        replay = self.agg.init_replay(tid, job_id, digest)
        if replay is not None:
            return replay
        req = decode_message(AggregationJobInitReq, body, tid)
        pbs = req.part_batch_selector
        if pbs.query_type != task.query_type:
            raise _invalid("partial batch selector query type differs from the task's", tid)
        agg_param = bytes(req.agg_param)
        # Decoded up front, as Janus does: a bad parameter fails the whole request.
        if not ops.agg_param_ok(agg_param):
            raise _invalid("invalid aggregation parameter", tid)
        ids = [bytes(p.report_share.report_metadata.report_id) for p in req.prepare_inits]
        if len(set(ids)) != len(ids):
            raise _invalid("repeated report ID in the request", tid)
        batch_id = bytes(pbs.batch_id) if pbs.batch_id is not None else None

        # Per-report work (HPKE open, IDPF evaluation) outside the transaction: CPU only.
        results: list[tuple[bytes, int, Any, PrepareError | None, bytes | None]] = []
        for pi in req.prepare_inits:
            rs = pi.report_share
            md = rs.report_metadata
            err = self.agg.time_check(task, md.time)
            state = outbound = None
            if err is None:
                plaintext, err = self.agg.open_input_share(
                    Role.HELPER, task, md, rs.public_share, rs.encrypted_input_share)
                if err is None:
                    try:
                        state, outbound = ops.helper_init_step(
                            task.verify_key, bytes(md.report_id), rs.public_share,
                            plaintext.payload, pi.payload, agg_param)
                    except DecodeError:
                        err = PrepareError.INVALID_MESSAGE
                    except DapError:
                        err = PrepareError.VDAF_PREP_ERROR
                    if err is None and isinstance(state, Finished):
                        # Two-round VDAFs cannot finish at init; never commit outside step 1.
                        err = PrepareError.VDAF_PREP_ERROR
            results.append((bytes(md.report_id), md.time, state, err, outbound))

        with self.store.tx() as c:
            replay = self.agg.init_replay(tid, job_id, digest, c)
            if replay is not None:
                return replay
            if batch_id is not None:
                c.execute("INSERT OR IGNORE INTO fs_batches(task_id, batch_id, created)"
                          " VALUES(?,?,?)", (tid, batch_id, time.time()))
            resps, rows, prep_rows = [], [], []
            for ord_, (rid, t, state, err, outbound) in enumerate(results):
                bucket = bucket_key(task, t, batch_id)
                if err is not PrepareError.REPORT_TOO_EARLY:
                    # Every other report counts as used with this parameter, as Prio3 counts
                    # every report ID seen in an init request.
                    if not ops.is_valid(agg_param, self.batches.params_used(c, tid, rid)):
                        err = PrepareError.REPORT_REPLAYED
                    else:
                        if err is None and self.batches.excluded_by_collection(c, task, rid, t,
                                                                                batch_id):
                            err = PrepareError.BATCH_COLLECTED
                        c.execute("INSERT INTO param_uses(task_id, report_id, agg_param, job_id,"
                                  " state) VALUES(?,?,?,?,?)",
                                  (tid, rid, agg_param, job_id, "in_job" if err is None else "failed"))
                if err is None:
                    resps.append(PrepareResp.continue_(rid, outbound))
                    rows.append((tid, job_id, ord_, rid, t, "continued", None, bucket))
                    prep_rows.append((tid, job_id, ord_, ops.encode_prep_state(state)))
                else:
                    resps.append(PrepareResp.reject(rid, err))
                    # report_too_early may carry any u64 time; SQLite's INTEGER is signed 64-bit
                    rows.append((tid, job_id, ord_, rid, min(t, SQLITE_MAX_INT), "failed", int(err), bucket))
            if bugs.active("helper-resp-reorder"):
                resps.reverse()  # TEST-ONLY BUG: not in request order
            response = AggregationJobResp(tuple(resps)).encode()
            c.executemany(
                "INSERT INTO report_aggs(task_id, job_id, ord, report_id, time, state, error, bucket)"
                " VALUES(?,?,?,?,?,?,?,?)", rows)
            c.executemany("INSERT INTO param_prep_states(task_id, job_id, ord, state)"
                          " VALUES(?,?,?,?)", prep_rows)
            c.execute(
                "INSERT INTO agg_jobs(task_id, job_id, role, state, step, batch_id, agg_param,"
                " init_hash, last_hash, response, created)"
                " VALUES(?,?,'helper','continued',0,?,?,?,?,?,?)",
                (tid, job_id, batch_id, agg_param, digest, digest, response, time.time()))
        return Reply(201, response, AggregationJobResp.MEDIA_TYPE)

    # --- continue ----------------------------------------------------------------------

    def continue_(self, task: AggregatorTask, ops: VdafOps, job_id_text: str, request: Any,
                  body: bytes) -> Reply:
        tid = task.task_id
        check_auth(request, task.leader_token, task_id=tid)
        check_media_type(request, MEDIA_TYPE_AGGREGATION_JOB_CONTINUE_REQ, task_id=tid)
        job_id = bytes(path_id(AggregationJobId, job_id_text, "aggregation job ID", tid))
        digest = hashlib.sha256(body).digest()
        # Step 1 costs little CPU (Poplar1: the output share is already in the prep
        # state), so the whole step runs in one transaction: checks, VDAF, commit.
        with self.store.tx() as c:
            row = c.execute("SELECT step, state, last_hash, response, agg_param, batch_id FROM"
                            " agg_jobs WHERE task_id=? AND job_id=? AND role='helper'",
                            (tid, job_id)).fetchone()
            if row is None or row[1] == "deleted":
                raise Problem(ProblemType.UNRECOGNIZED_AGGREGATION_JOB, "unknown aggregation job",
                              task_id=tid)
            step, state, last_hash, stored_response, agg_param, batch_id = row
            agg_param = bytes(agg_param)
            req = decode_message(AggregationJobContinueReq, body, tid)
            if req.step == 0:
                raise _invalid("step 0 is not a continuation", tid)
            redo = False
            if step >= 1 and req.step == step and digest == last_hash:
                # Step-skew recovery (§10.6): the Leader re-sent the step we processed.
                if not bugs.active("helper-continue-reaccumulate"):
                    return Reply(200, stored_response, AggregationJobResp.MEDIA_TYPE)
                redo = True  # TEST-ONLY BUG: run the step again from the kept prep states
            ids = [bytes(pc.report_id) for pc in req.prepare_continues]
            if len(set(ids)) != len(ids):
                raise _invalid("repeated report ID in the request", tid)
            ras = {bytes(r[1]): r for r in c.execute(
                "SELECT ord, report_id, time, state, bucket FROM report_aggs WHERE task_id=? AND"
                " job_id=? ORDER BY ord", (tid, job_id))}
            unknown = [rid for rid in ids if rid not in ras]
            if unknown:
                raise _invalid(f"report {unknown[0].hex()} is not in this aggregation job", tid)
            if state == "finished" and not redo:
                raise Problem(ProblemType.STEP_MISMATCH,
                              f"preparation finished at step {step}; got step {req.step}",
                              task_id=tid)
            if req.step != step + 1 and not redo:
                raise Problem(ProblemType.STEP_MISMATCH,
                              f"expected step {step + 1}, got {req.step}", task_id=tid)
            waiting = [rid for rid in ids if ras[rid][3] != "continued" and not redo]
            if waiting:
                raise _invalid(f"report {waiting[0].hex()} has no prep state to continue", tid)
            ords = [ras[rid][0] for rid in ids]
            if ords != sorted(ords):
                raise _invalid("reports are not in the order of the init request", tid)
            states = dict(c.execute("SELECT ord, state FROM param_prep_states WHERE task_id=? AND"
                                    " job_id=?", (tid, job_id)).fetchall())
            resps, items, done, failed = [], [], [], []
            for pc, rid in zip(req.prepare_continues, ids):
                ord_, _, t, _, bucket = ras[rid]
                err: PrepareError | None = None
                new_state, outbound = ops.helper_continued(
                    ops.decode_prep_state(states[ord_], agg_param), pc.payload, agg_param)
                if not isinstance(new_state, Finished) or outbound is not None:
                    err = PrepareError.VDAF_PREP_ERROR  # Rejected, or a round Poplar1 lacks
                elif self.batches.excluded_by_collection(c, task, rid, t, batch_id):
                    err = PrepareError.BATCH_COLLECTED
                if err is None:
                    resps.append(PrepareResp.finished(rid))
                    items.append((bytes(bucket), rid, t, new_state.out_share))
                    done.append((ord_, rid))
                else:
                    resps.append(PrepareResp.reject(rid, err))
                    failed.append((ord_, rid, int(err)))
            # Reports the Leader left out were rejected by it: drop them, never count them.
            sent = set(ids)
            for rid, (ord_, _, _, ra_state, _) in ras.items():
                if ra_state == "continued" and rid not in sent:
                    failed.append((ord_, rid, int(PrepareError.REPORT_DROPPED)))
            if bugs.active("helper-resp-reorder"):
                resps.reverse()  # TEST-ONLY BUG: not in request order
            response = AggregationJobResp(tuple(resps)).encode()
            self.batches.accumulate(c, task, ops, agg_param, items)
            c.executemany("UPDATE report_aggs SET state='finished' WHERE task_id=? AND job_id=?"
                          " AND ord=?", [(tid, job_id, o) for o, _ in done])
            c.executemany("UPDATE report_aggs SET state='failed', error=? WHERE task_id=? AND"
                          " job_id=? AND ord=?", [(e, tid, job_id, o) for o, _, e in failed])
            c.executemany("UPDATE param_uses SET state=? WHERE task_id=? AND report_id=? AND"
                          " agg_param=?",
                          [("committed", tid, rid, agg_param) for _, rid in done]
                          + [("failed", tid, rid, agg_param) for _, rid, _ in failed])
            # Prep states are no longer needed: a replay of this step returns the response.
            if not bugs.active("helper-continue-reaccumulate"):  # TEST-ONLY BUG: kept, see above
                c.execute("DELETE FROM param_prep_states WHERE task_id=? AND job_id=?", (tid, job_id))
            c.execute("UPDATE agg_jobs SET step=?, state='finished', last_hash=?, response=?"
                      " WHERE task_id=? AND job_id=?", (req.step, digest, response, tid, job_id))
        return Reply(200, response, AggregationJobResp.MEDIA_TYPE)

    # --- aggregate share ---------------------------------------------------------------

    def aggregate_share(self, task: AggregatorTask, ops: VdafOps, request: Any,
                        body: bytes) -> Reply:
        tid = task.task_id
        self.agg.authenticate("agg_share", request, task.leader_token, tid)
        check_media_type(request, MEDIA_TYPE_AGGREGATE_SHARE_REQ, task_id=tid)
        req = decode_message(AggregateShareReq, body, tid)
        digest = hashlib.sha256(body).digest()
        stored_sql = "SELECT response FROM agg_share_resps WHERE task_id=? AND req_hash=?"
        row = self.store.one(stored_sql, (tid, digest))
        if row is not None:
            return Reply(200, row[0], AggregateShare.MEDIA_TYPE)
        sel = req.batch_selector
        if sel.query_type != task.query_type:
            raise _invalid("batch selector query type differs from the task's", tid)
        agg_param = bytes(req.agg_param)
        if not ops.agg_param_ok(agg_param):
            raise _invalid("invalid aggregation parameter", tid)
        collector_config = HpkeConfig.decode(task.collector_hpke_config)
        with self.store.tx() as c:
            row = c.execute(stored_sql, (tid, digest)).fetchone()
            if row is not None:
                return Reply(200, row[0], AggregateShare.MEDIA_TYPE)
            self.agg.check_batch_boundary(task, sel, c)
            share, count, chk, _, _ = self.batches.batch_sum(c, task, ops, sel, agg_param)
            if count < task.min_batch_size or (
                task.max_batch_size is not None and count > task.max_batch_size
            ):
                raise Problem(ProblemType.INVALID_BATCH_SIZE, f"batch has {count} reports",
                              task_id=tid)
            self.agg.check_query_count_and_overlap(task, sel, agg_param, c)
            if count != req.report_count or chk != bytes(req.checksum):
                raise Problem(ProblemType.BATCH_MISMATCH,
                              f"Helper has {count} reports (checksum {chk.hex()[:16]}...), Leader"
                              f" sent {req.report_count} ({bytes(req.checksum).hex()[:16]}...)",
                              task_id=tid)
            ct = hpke.seal_aggregate_share(collector_config, Role.HELPER, tid, agg_param, sel,
                                           share)
            response = AggregateShare(ct).encode()
            self.agg.record_query(c, task, sel, agg_param)
            self.batches.mark_collected(c, task, sel, agg_param)
            c.execute("INSERT INTO agg_share_resps(task_id, req_hash, response) VALUES(?,?,?)",
                      (tid, digest, response))
        return Reply(200, response, AggregateShare.MEDIA_TYPE)

    # --- DELETE ------------------------------------------------------------------------

    @staticmethod
    def discard_job(c: Any, tid: bytes, job_id: bytes) -> None:
        """Inside the DELETE's transaction: drop the prep states a deleted job still holds.

        Its reports stay used with the job's parameter (anti-replay, as for Prio3), and
        output shares committed at step 1 stay counted; the uncommitted ones never will be.
        """
        c.execute("DELETE FROM param_prep_states WHERE task_id=? AND job_id=?", (tid, job_id))
        c.execute("UPDATE param_uses SET state='failed' WHERE task_id=? AND job_id=? AND"
                  " state='in_job'", (tid, job_id))
