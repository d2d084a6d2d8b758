"""What the Leader and the Helper share for VDAFs with an aggregation parameter (Poplar1).

With Poplar1 the same report is aggregated once per *aggregation parameter* (one tree
level and its candidate prefixes), and the parameter is only known when a collection job
names it. So everything that is per report or per batch for Prio3 is per
(report, agg_param) or per (batch, agg_param) here. This module owns the tables for that
(created next to the ones of :mod:`dap.roles.storage`, in the same database):

=======================  ==============================================================
table                    holds
=======================  ==============================================================
``param_uses``           both roles: every (report, agg_param) that went into an init
                         request, and whether its output share was committed
                         (``in_job`` -> ``committed`` | ``failed``). The agg params of a
                         report are the ``previous`` of ``Vdaf.is_valid`` (anti-replay).
``param_buckets``        both roles: accumulated aggregate share, count, checksum, time
                         span per (agg_param, time_precision interval or batch ID)
``param_collections``    both roles: (batch, agg_param) pairs whose aggregate share left;
                         a report of such a batch not committed under *all* of them is
                         ``batch_collected`` for any later parameter (the report set of a
                         batch freezes at its first collection)
``param_jobs``           Leader: aggregation jobs with the exact init and step-1 request
                         bytes, stored before each is first sent
``param_job_reports``    Leader: per report of a job: order, time, bucket, state and the
                         Leader's output share (kept between init and step 1)
``param_batch_members``  Leader, fixed_size: which batch each report was assigned to
``param_prep_states``    Helper: the ``Continued`` prep state of each report between the
                         init and step 1
=======================  ==============================================================

The Helper's aggregation jobs themselves live in ``agg_jobs`` / ``report_aggs`` (as for
Prio3), so the init-replay, 409 and DELETE rules of :mod:`dap.roles.aggregator` apply.
"""

from __future__ import annotations

import struct
from typing import Any

from dap.constants import QueryType
from dap.messages import BatchSelector
from dap.roles.buckets import ZERO_CHECKSUM, checksum_of, xor_checksum
from dap.roles.storage import wake_collections_trigger
from dap.roles.task import AggregatorTask
from dap.roles.vdafs import VdafOps

__all__ = ["ParamBatches", "ensure_schema"]

_TABLES = (
    """CREATE TABLE IF NOT EXISTS param_uses(
        task_id BLOB NOT NULL, report_id BLOB NOT NULL, agg_param BLOB NOT NULL,
        job_id BLOB NOT NULL, state TEXT NOT NULL,
        PRIMARY KEY(task_id, report_id, agg_param))""",
    """CREATE TABLE IF NOT EXISTS param_buckets(
        task_id BLOB NOT NULL, agg_param BLOB NOT NULL, bucket BLOB NOT NULL, agg_share BLOB,
        report_count INTEGER NOT NULL DEFAULT 0, checksum BLOB NOT NULL,
        min_time INTEGER, max_time INTEGER,
        PRIMARY KEY(task_id, agg_param, bucket))""",
    """CREATE TABLE IF NOT EXISTS param_collections(
        task_id BLOB NOT NULL, selector BLOB NOT NULL, agg_param BLOB NOT NULL,
        start INTEGER, duration INTEGER, batch_id BLOB,
        PRIMARY KEY(task_id, selector, agg_param))""",
    """CREATE TABLE IF NOT EXISTS param_jobs(
        task_id BLOB NOT NULL, job_id BLOB NOT NULL, agg_param BLOB NOT NULL, batch_id BLOB,
        step INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL,
        init_req BLOB NOT NULL, continue_req BLOB,
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0,
        first_attempt REAL, created REAL NOT NULL, detail TEXT,
        PRIMARY KEY(task_id, job_id))""",
    "CREATE INDEX IF NOT EXISTS param_jobs_by_state ON param_jobs(state, next_attempt)",
    # a Poplar1 collection waits for its aggregation jobs: their end wakes it
    wake_collections_trigger("wake_collections_param_job_ended", "AFTER UPDATE OF state ON param_jobs",
                             "OLD.state='active' AND NEW.state != 'active'"),
    """CREATE TABLE IF NOT EXISTS param_job_reports(
        task_id BLOB NOT NULL, job_id BLOB NOT NULL, ord INTEGER NOT NULL,
        report_id BLOB NOT NULL, time INTEGER NOT NULL, bucket BLOB NOT NULL,
        state TEXT NOT NULL, error INTEGER, out_share BLOB,
        PRIMARY KEY(task_id, job_id, ord))""",
    """CREATE TABLE IF NOT EXISTS param_batch_members(
        task_id BLOB NOT NULL, report_id BLOB NOT NULL, batch_id BLOB NOT NULL,
        PRIMARY KEY(task_id, report_id))""",
    "CREATE INDEX IF NOT EXISTS param_batch_members_by_batch ON param_batch_members(task_id, batch_id)",
    """CREATE TABLE IF NOT EXISTS param_prep_states(
        task_id BLOB NOT NULL, job_id BLOB NOT NULL, ord INTEGER NOT NULL, state BLOB NOT NULL,
        PRIMARY KEY(task_id, job_id, ord))""",
)


def ensure_schema(store: Any) -> None:
    """Create this module's tables if missing (idempotent; one transaction)."""
    with store.tx() as c:
        for statement in _TABLES:
            c.execute(statement)


class ParamBatches:
    """Accumulation, batch sums and collected-batch bookkeeping per (batch, agg_param)."""

    # --- accumulation ------------------------------------------------------------------

    def accumulate(self, c: Any, task: AggregatorTask, ops: VdafOps, agg_param: bytes,
                   items: list[tuple[bytes, bytes, int, Any]]) -> None:
        """Add (bucket, report_id, time, out_share) items under ``agg_param``, inside tx ``c``."""
        groups: dict[bytes, list[tuple[bytes, int, Any]]] = {}
        for bucket, rid, t, out in items:
            groups.setdefault(bytes(bucket), []).append((rid, t, out))
        for bucket, entries in groups.items():
            share = ops.aggregate([e[2] for e in entries], agg_param)
            chk = ZERO_CHECKSUM
            for rid, _, _ in entries:
                chk = xor_checksum(chk, checksum_of(rid))
            tmin = min(e[1] for e in entries)
            tmax = max(e[1] for e in entries)
            key = (task.task_id, bytes(agg_param), bucket)
            row = c.execute("SELECT agg_share, report_count, checksum, min_time, max_time FROM"
                            " param_buckets WHERE task_id=? AND agg_param=? AND bucket=?",
                            key).fetchone()
            if row is None:
                c.execute("INSERT INTO param_buckets(task_id, agg_param, bucket, agg_share,"
                          " report_count, checksum, min_time, max_time) VALUES(?,?,?,?,?,?,?,?)",
                          (*key, share, len(entries), chk, tmin, tmax))
            else:
                c.execute("UPDATE param_buckets SET agg_share=?, report_count=?, checksum=?,"
                          " min_time=?, max_time=? WHERE task_id=? AND agg_param=? AND bucket=?",
                          (ops.merge(row[0], share, agg_param), row[1] + len(entries),
                           xor_checksum(row[2], chk), min(row[3], tmin), max(row[4], tmax), *key))

    def batch_sum(self, c: Any, task: AggregatorTask, ops: VdafOps, selector: BatchSelector,
                  agg_param: bytes) -> tuple[bytes, int, bytes, int | None, int | None]:
        """(aggregate share, report count, checksum, min time, max time) of a batch under a param."""
        rows = c.execute("SELECT bucket, agg_share, report_count, checksum, min_time, max_time"
                         " FROM param_buckets WHERE task_id=? AND agg_param=?",
                         (task.task_id, bytes(agg_param))).fetchall()
        share = ops.empty_share(agg_param)
        count, chk, tmin, tmax = 0, ZERO_CHECKSUM, None, None
        for bucket, s, n, ck, lo, hi in rows:
            if not n or not self.bucket_in_batch(bytes(bucket), selector):
                continue
            share = ops.merge(share, s, agg_param)
            count += n
            chk = xor_checksum(chk, ck)
            tmin = lo if tmin is None else min(tmin, lo)
            tmax = hi if tmax is None else max(tmax, hi)
        return share, count, chk, tmin, tmax

    @staticmethod
    def bucket_in_batch(bucket: bytes, selector: BatchSelector) -> bool:
        if selector.query_type == QueryType.FIXED_SIZE:
            return bucket == bytes(selector.batch_id)
        if len(bucket) != 8:
            return False
        (start,) = struct.unpack(">Q", bucket)
        iv = selector.batch_interval
        return iv.start <= start < iv.start + iv.duration

    # --- collected batches -------------------------------------------------------------

    def mark_collected(self, c: Any, task: AggregatorTask, selector: BatchSelector,
                       agg_param: bytes) -> None:
        """The aggregate share of (batch, agg_param) is leaving: freeze the batch's report set."""
        iv = selector.batch_interval
        c.execute("INSERT OR IGNORE INTO param_collections(task_id, selector, agg_param, start,"
                  " duration, batch_id) VALUES(?,?,?,?,?,?)",
                  (task.task_id, selector.encode(), bytes(agg_param),
                   iv.start if iv is not None else None, iv.duration if iv is not None else None,
                   bytes(selector.batch_id) if selector.batch_id is not None else None))
        if iv is not None:
            # Uploads into a collected interval are refused (reportRejected), as for Prio3.
            c.execute("INSERT OR IGNORE INTO collected_intervals(task_id, start, duration)"
                      " VALUES(?,?,?)", (task.task_id, iv.start, iv.duration))

    def collections_of(self, c: Any, task: AggregatorTask, t: int,
                       batch_id: bytes | None) -> list[bytes]:
        """The agg params under which the batch holding a report (time ``t``) was collected."""
        if task.query_type == QueryType.FIXED_SIZE:
            if batch_id is None:
                return []
            rows = c.execute("SELECT agg_param FROM param_collections WHERE task_id=? AND"
                             " batch_id=?", (task.task_id, bytes(batch_id))).fetchall()
        else:
            rows = c.execute("SELECT agg_param FROM param_collections WHERE task_id=? AND"
                             " start <= ? AND ? < start + duration", (task.task_id, t, t)).fetchall()
        return [bytes(r[0]) for r in rows]

    def excluded_by_collection(self, c: Any, task: AggregatorTask, report_id: bytes, t: int,
                               batch_id: bytes | None) -> bool:
        """DAP-09 §11 item 7: the report's batch was collected and the report was not
        included in all of those collections -> ``batch_collected``."""
        for param in self.collections_of(c, task, t, batch_id):
            row = c.execute("SELECT state FROM param_uses WHERE task_id=? AND report_id=? AND"
                            " agg_param=?", (task.task_id, bytes(report_id), param)).fetchone()
            if row is None or row[0] != "committed":
                return True
        return False

    @staticmethod
    def params_used(c: Any, task_id: bytes, report_id: bytes) -> list[bytes]:
        """Every agg param this report already went into an init request with (``is_valid``)."""
        return [bytes(r[0]) for r in c.execute(
            "SELECT agg_param FROM param_uses WHERE task_id=? AND report_id=?",
            (bytes(task_id), bytes(report_id)))]
