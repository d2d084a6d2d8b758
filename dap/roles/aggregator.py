"""Leader and Helper: DAP-09 request handling over the SQLite store.

One :class:`Aggregator` serves the tasks of one role (``--role leader`` or
``--role helper``). Handlers here are synchronous (the Starlette layer in
:mod:`dap.roles.server` runs them in a worker thread) and follow one pattern:
task lookup (``unrecognizedTask``) -> authentication (``unauthorizedRequest``,
nothing read or stored before) -> exact ``Content-Type`` -> strict decode
(``invalidMessage``) -> checks -> one transaction that stores everything the
response acknowledges -> response.

Accumulation: output shares are added, in the transaction that finishes
their aggregation, to a *bucket* — the ``time_precision`` interval holding the
report's timestamp (time_interval) or the batch ID (fixed_size) — together with
the report count, the checksum (XOR of SHA-256(report_id)) and the time span.
A collection sums the buckets of its batch. A bucket is marked ``collected``
when an aggregate share for a batch containing it has left the Aggregator;
later reports for it are refused (``batch_collected`` / ``reportRejected``).

The Leader's background work (creating and driving aggregation jobs, driving
collection jobs) lives in :mod:`dap.roles.leader`.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import time
from typing import Any, NamedTuple

from dap import hpke
from dap.codec import AggregationJobId, CollectionJobId, TaskId
from dap.constants import (
    MEDIA_TYPE_AGGREGATE_SHARE_REQ,
    MEDIA_TYPE_AGGREGATION_JOB_CONTINUE_REQ,
    MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ,
    MEDIA_TYPE_COLLECT_REQ,
    MEDIA_TYPE_REPORT,
    FixedSizeQueryType,
    PrepareError,
    PrepareRespState,
    ProblemType,
    QueryType,
    Role,
)
from dap.errors import DapError, DecodeError, HpkeError
from dap.messages import (
    AggregateShare,
    AggregateShareReq,
    AggregationJobContinueReq,
    AggregationJobInitReq,
    AggregationJobResp,
    BatchSelector,
    Collection,
    CollectionReq,
    HpkeConfig,
    HpkeConfigList,
    PlaintextInputShare,
    PrepareResp,
    Report,
)
from dap.roles import bugs
from dap.roles.buckets import ZERO_CHECKSUM, bucket_key, checksum_of, xor_checksum
from dap.roles.http import (
    Plain,
    Problem,
    Reply,
    UpstreamProblem,
    check_auth,
    check_media_type,
    decode_message,
    path_id,
)
from dap.roles.param_helper import ParamHelper
from dap.roles.storage import SQLITE_MAX_INT, Store
from dap.roles.task import AggregatorTask, TaskConfigError
from dap.roles.vdafs import VdafOps, vdaf_ops

__all__ = ["Aggregator", "PendingUpload"]


class PendingUpload(NamedTuple):
    """An upload that passed :meth:`Aggregator.upload_check`: what the Leader stores."""

    task: AggregatorTask
    report_id: bytes
    time: int
    public_share: bytes
    leader_share: bytes  # the decrypted Leader input share (VDAF encoding)
    helper_ct: bytes  # the Helper's HpkeCiphertext, encoded


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Aggregator:
    """State and request handlers of one Leader or Helper process."""

    def __init__(self, store: Store, *, role: str, clock_skew: int) -> None:
        self.store = store
        self.role = role
        self.clock_skew = clock_skew
        self._tasks: dict[bytes, tuple[AggregatorTask, VdafOps]] = {}
        self._tasks_lock = threading.Lock()
        self.keypairs = self._load_or_create_keys()
        # Tasks whose VDAF needs an aggregation parameter (Poplar1) are served there.
        self.param = ParamHelper(self)

    # --- setup -------------------------------------------------------------------------

    def _load_or_create_keys(self) -> dict[int, hpke.HpkeKeypair]:
        rows = self.store.query("SELECT config_id, keypair FROM hpke_keys ORDER BY created")
        if not rows:
            config_id = os.urandom(1)[0]
            keypair = hpke.generate_keypair(config_id)
            with self.store.tx() as c:
                c.execute(
                    "INSERT INTO hpke_keys(config_id, keypair, created) VALUES(?,?,?)",
                    (config_id, keypair.to_bytes(), time.time()),
                )
            rows = [(config_id, keypair.to_bytes())]
        return {cid: hpke.HpkeKeypair.from_bytes(kp) for cid, kp in rows}

    def now(self) -> int:
        return int(time.time())

    # --- tasks -------------------------------------------------------------------------

    def add_task(self, body: Any) -> None:
        """Register a task (interop add_task); raises TaskConfigError with one line."""
        task = AggregatorTask.from_interop(body)
        if task.role != self.role:
            raise TaskConfigError(f"role: this process is the {self.role}, not the {task.role}")
        try:
            HpkeConfig.decode(task.collector_hpke_config)
        except DecodeError as exc:
            raise TaskConfigError(f"collector_hpke_config: {exc}") from None
        if not hpke.HpkeSuite.of(HpkeConfig.decode(task.collector_hpke_config)).supported:
            raise TaskConfigError("collector_hpke_config: unsupported HPKE suite")
        ops = vdaf_ops(task.vdaf)
        if len(task.verify_key) != ops.verify_key_size:
            raise TaskConfigError(
                f"vdaf_verify_key: {len(task.verify_key)} bytes, expected {ops.verify_key_size}"
            )
        with self.store.tx() as c:
            row = c.execute("SELECT config FROM tasks WHERE task_id=?", (task.task_id,)).fetchone()
            if row is not None:
                if not AggregatorTask.from_json(row[0]).same_config(task):
                    raise TaskConfigError("task_id: already registered with another configuration")
                return
            c.execute(
                "INSERT INTO tasks(task_id, role, config, created) VALUES(?,?,?,?)",
                (task.task_id, task.role, task.to_json(), time.time()),
            )
        with self._tasks_lock:
            self._tasks[task.task_id] = (task, ops)

    def get_task(self, task_id: bytes) -> tuple[AggregatorTask, VdafOps] | None:
        with self._tasks_lock:
            hit = self._tasks.get(bytes(task_id))
        if hit is not None:
            return hit
        row = self.store.one("SELECT config FROM tasks WHERE task_id=?", (bytes(task_id),))
        if row is None:
            return None
        task = AggregatorTask.from_json(row[0])
        hit = (task, vdaf_ops(task.vdaf))
        with self._tasks_lock:
            self._tasks[task.task_id] = hit
        return hit

    def tasks_with_pending_reports(self) -> list[tuple[AggregatorTask, VdafOps]]:
        """The Leader's tasks that hold a ``pending`` report: the only ones its job creator has
        work in. Not every task: a stack that served thousands of scenarios keeps their tasks,
        and a pass over all of them every job interval grew with the campaign (issue 15)."""
        # INDEXED BY: left alone, SQLite scans every report through reports_by_state instead
        rows = self.store.query("SELECT DISTINCT task_id FROM reports INDEXED BY reports_pending"
                                " WHERE state='pending'")
        out = []
        for (tid,) in rows:
            hit = self.get_task(tid)
            if hit is not None:
                out.append(hit)
        return out

    def _task_for(self, task_id_text: str, role: str) -> tuple[AggregatorTask, VdafOps]:
        task_id = path_id(TaskId, task_id_text, "task ID")
        hit = self.get_task(task_id)
        if hit is None or hit[0].role != role:
            raise Problem(ProblemType.UNRECOGNIZED_TASK, "unknown task", task_id=task_id)
        return hit

    # --- checks before the body is read -------------------------------------------------

    #: request kind -> (role that serves it, task attribute with the expected token or None
    #: for unauthenticated uploads, the exact media type of its body)
    GATES: dict[str, tuple[str, str | None, str]] = {
        "upload": ("leader", None, MEDIA_TYPE_REPORT),
        "agg_init": ("helper", "leader_token", MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ),
        "agg_continue": ("helper", "leader_token", MEDIA_TYPE_AGGREGATION_JOB_CONTINUE_REQ),
        "agg_share": ("helper", "leader_token", MEDIA_TYPE_AGGREGATE_SHARE_REQ),
        "collection_put": ("leader", "collector_token", MEDIA_TYPE_COLLECT_REQ),
    }

    def gate(self, kind: str, task_id_text: str, request: Any) -> bytes:
        """The checks of a request with a body that need only its path and headers, in the
        handlers' order: ``unrecognizedTask``, ``unauthorizedRequest``, exact
        ``Content-Type`` (``invalidMessage``). Run before the body is read
        (:mod:`dap.roles.server`), so a refused request costs no memory and no wait for its
        body; the handler then repeats them (a cached lookup, a header compare). Returns
        the task ID (for the ``taskid`` of a later 413 / 408)."""
        role, token_attr, media_type = self.GATES[kind]
        task, _ = self._task_for(task_id_text, role)
        tid = task.task_id
        if token_attr is not None:
            self.authenticate(kind, request, getattr(task, token_attr), tid)
        check_media_type(request, media_type, task_id=tid)
        return tid

    @staticmethod
    def authenticate(kind: str, request: Any, token: str | None, task_id: bytes) -> None:
        """:func:`check_auth` for a request of ``kind`` (a :data:`GATES` kind, or
        ``collection_post`` / ``collection_delete``)."""
        if bugs.skips_auth(kind, bool(request.headers.getlist("authorization")
                                      or request.headers.getlist("dap-auth-token"))):
            return  # TEST-ONLY BUGS (dap/roles/bugs.py): the credential is not checked
        check_auth(request, token, task_id=task_id)

    # --- hpke_config -------------------------------------------------------------------

    def hpke_config(self, task_id_text: str | None) -> Reply:
        if task_id_text is not None:
            task_id = path_id(TaskId, task_id_text, "task_id")
            if self.get_task(task_id) is None:
                raise Problem(ProblemType.UNRECOGNIZED_TASK, "unknown task", task_id=task_id)
        configs = tuple(kp.config for kp in self.keypairs.values())
        return Reply(
            200, HpkeConfigList(configs).encode(), HpkeConfigList.MEDIA_TYPE,
            {"Cache-Control": "max-age=86400"},
        )

    # --- shared checks -----------------------------------------------------------------

    def open_input_share(
        self, role: Role, task: AggregatorTask, metadata: Any, public_share: bytes, ct: Any
    ) -> tuple[PlaintextInputShare | None, PrepareError | None]:
        """HPKE-open one report share: (plaintext, None) or (None, the PrepareError)."""
        keypair = self.keypairs.get(ct.config_id)
        if keypair is None:
            return None, PrepareError.HPKE_UNKNOWN_CONFIG_ID
        try:
            plaintext = hpke.open_input_share(keypair, role, task.task_id, metadata, public_share, ct)
        except HpkeError:
            return None, PrepareError.HPKE_DECRYPT_ERROR
        except DecodeError:
            return None, PrepareError.INVALID_MESSAGE
        if plaintext.extensions:
            # DAP-09 defines no extension: any one is unrecognized (and duplicates too).
            return None, PrepareError.INVALID_MESSAGE
        return plaintext, None

    def time_check(self, task: AggregatorTask, t: int) -> PrepareError | None:
        """``report_too_early`` / ``task_expired`` for a report time, else None."""
        if t > self.now() + self.clock_skew:
            return PrepareError.REPORT_TOO_EARLY
        if task.task_expiration is not None and t > task.task_expiration:
            return PrepareError.TASK_EXPIRED
        return None

    # --- Leader: upload ----------------------------------------------------------------

    def upload_check(self, task_id_text: str, content_type_req: Any, body: bytes) -> PendingUpload:
        """Every upload check that needs no stored state, in Janus's order; the report to store.

        Raises :class:`Problem`. The remaining check (batch already collected) and the write
        happen in :meth:`store_uploads`, inside the transaction, for many uploads at once.
        """
        task, ops = self._task_for(task_id_text, "leader")
        tid = task.task_id
        check_media_type(content_type_req, MEDIA_TYPE_REPORT, task_id=tid)
        report = decode_message(Report, body, tid)
        md = report.report_metadata
        err = self.time_check(task, md.time)
        if err is PrepareError.REPORT_TOO_EARLY and not bugs.active("leader-accept-future"):
            raise Problem(ProblemType.REPORT_TOO_EARLY, f"report time {md.time} is in the future",
                          task_id=tid)
        if err is PrepareError.TASK_EXPIRED:
            raise Problem(ProblemType.REPORT_REJECTED, "report time is after task_expiration",
                          task_id=tid)
        if not ops.public_share_ok(report.public_share):
            raise Problem(ProblemType.REPORT_REJECTED, "public share does not decode", task_id=tid)
        ct = report.leader_encrypted_input_share
        if ct.config_id not in self.keypairs:
            raise Problem(ProblemType.OUTDATED_CONFIG, f"unknown HPKE config id {ct.config_id}",
                          task_id=tid)
        try:
            plaintext = hpke.open_input_share(
                self.keypairs[ct.config_id], Role.LEADER, tid, md, report.public_share, ct
            )
        except HpkeError:
            raise Problem(ProblemType.REPORT_REJECTED, "Leader input share does not decrypt",
                          task_id=tid) from None
        except DecodeError:
            raise Problem(ProblemType.REPORT_REJECTED, "Leader input share does not decode",
                          task_id=tid) from None
        if plaintext.extensions:
            raise Problem(ProblemType.INVALID_MESSAGE, "unrecognized report extension", task_id=tid)
        if not ops.input_share_ok(0, plaintext.payload):
            raise Problem(ProblemType.REPORT_REJECTED, "Leader input share is malformed",
                          task_id=tid)
        return PendingUpload(task, bytes(md.report_id), md.time, bytes(report.public_share),
                             bytes(plaintext.payload),
                             report.helper_encrypted_input_share.encode())

    def store_uploads(self, c: Any, uploads: list[PendingUpload]) -> list[Reply | Problem]:
        """Inside transaction ``c``: the collected-batch check and the write of each upload.

        One outcome per upload, in order: ``Reply(201)`` (stored, or a repeated report ID
        acknowledged and ignored) or the :class:`Problem` to answer. A refused upload writes
        nothing and does not affect the others.
        """
        outcomes: list[Reply | Problem] = []
        collected: dict[tuple[bytes, int], bool] = {}  # (task, time) -> in a collected batch
        rows = []
        for up in uploads:
            task, tid = up.task, up.task.task_id
            if task.query_type == QueryType.TIME_INTERVAL:
                key = (tid, up.time)
                hit = collected.get(key)
                if hit is None:
                    hit = collected[key] = self.is_collected(c, task, up.time, None)
                if hit and not (bugs.active("accept-late-reports") or bugs.active("leader-late-jobs")):
                    exists = c.execute(
                        "SELECT 1 FROM reports WHERE task_id=? AND report_id=?",
                        (tid, up.report_id),
                    ).fetchone()
                    if exists is None:
                        outcomes.append(Problem(ProblemType.REPORT_REJECTED,
                                                "the report's batch was already collected",
                                                task_id=tid))
                        continue
            # A repeated report ID is ignored: stored once, acknowledged again.
            rows.append((tid, up.report_id, up.time, up.public_share, up.leader_share,
                         up.helper_ct))
            outcomes.append(Reply(201))
        # TEST-ONLY BUG leader-double-offer: an upsert, a report already in a job is pending again
        c.executemany(
            ("INSERT OR REPLACE" if bugs.active("leader-double-offer") else "INSERT OR IGNORE")
            + " INTO reports(task_id, report_id, time, public_share, leader_share,"
            " helper_ct, state) VALUES(?,?,?,?,?,?, 'pending')", rows)
        return outcomes

    # --- accumulation (both roles) -----------------------------------------------------

    def accumulate(self, c: Any, task: AggregatorTask, ops: VdafOps,
                   items: list[tuple[bytes, bytes, int, Any]]) -> None:
        """Add (bucket, report_id, time, out_share) items to their buckets, inside tx ``c``."""
        groups: dict[bytes, list[tuple[bytes, int, Any]]] = {}
        for bucket, rid, t, out in items:
            groups.setdefault(bucket, []).append((rid, t, out))
        for bucket, entries in groups.items():
            share = ops.aggregate([e[2] for e in entries])
            chk = ZERO_CHECKSUM
            for rid, _, _ in entries:
                chk = xor_checksum(chk, checksum_of(rid))
            tmin = min(e[1] for e in entries)
            tmax = max(e[1] for e in entries)
            row = c.execute(
                "SELECT agg_share, report_count, checksum, min_time, max_time FROM buckets"
                " WHERE task_id=? AND bucket=?", (task.task_id, bucket),
            ).fetchone()
            if row is None:
                c.execute(
                    "INSERT INTO buckets(task_id, bucket, agg_share, report_count, checksum,"
                    " min_time, max_time) VALUES(?,?,?,?,?,?,?)",
                    (task.task_id, bucket, share, len(entries), chk, tmin, tmax),
                )
            else:
                merged = ops.merge(row[0], share) if row[0] is not None else share
                c.execute(
                    "UPDATE buckets SET agg_share=?, report_count=?, checksum=?, min_time=?,"
                    " max_time=? WHERE task_id=? AND bucket=?",
                    (merged, row[1] + len(entries), xor_checksum(row[2], chk),
                     min(row[3], tmin) if row[3] is not None else tmin,
                     max(row[4], tmax) if row[4] is not None else tmax,
                     task.task_id, bucket),
                )

    def is_collected(self, c: Any, task: AggregatorTask, t: int, batch_id: bytes | None) -> bool:
        """Whether a report at time ``t`` (fixed_size: in ``batch_id``) is in a collected batch."""
        if task.query_type == QueryType.FIXED_SIZE:
            row = c.execute("SELECT collected FROM buckets WHERE task_id=? AND bucket=?",
                            (task.task_id, bytes(batch_id))).fetchone()
            return bool(row and row[0])
        return c.execute(
            "SELECT 1 FROM collected_intervals WHERE task_id=? AND start <= ? AND ? < start + duration",
            (task.task_id, t, t)).fetchone() is not None

    def mark_collected(self, c: Any, task: AggregatorTask, selector: BatchSelector,
                       rows: list[tuple]) -> None:
        """Mark a batch collected (its buckets, and for time_interval the whole interval)."""
        for r in rows:
            c.execute("UPDATE buckets SET collected=1 WHERE task_id=? AND bucket=?",
                      (task.task_id, r[0]))
        if selector.query_type == QueryType.TIME_INTERVAL:
            iv = selector.batch_interval
            c.execute("INSERT OR IGNORE INTO collected_intervals(task_id, start, duration)"
                      " VALUES(?,?,?)", (task.task_id, iv.start, iv.duration))

    def batch_buckets(self, c: Any, task: AggregatorTask, selector: BatchSelector) -> list[tuple]:
        """Rows (bucket, agg_share, report_count, checksum, min_time, max_time) of a batch."""
        if selector.query_type == QueryType.FIXED_SIZE:
            return c.execute(
                "SELECT bucket, agg_share, report_count, checksum, min_time, max_time FROM buckets"
                " WHERE task_id=? AND bucket=?", (task.task_id, bytes(selector.batch_id)),
            ).fetchall()
        iv = selector.batch_interval
        rows = c.execute(
            "SELECT bucket, agg_share, report_count, checksum, min_time, max_time FROM buckets"
            " WHERE task_id=? AND length(bucket)=8", (task.task_id,),
        ).fetchall()
        out = []
        for r in rows:
            (start,) = struct.unpack(">Q", r[0])
            if iv.start <= start < iv.start + iv.duration:
                out.append(r)
        return out

    @staticmethod
    def sum_buckets(ops: VdafOps, rows: list[tuple]) -> tuple[bytes | None, int, bytes, int | None, int | None]:
        share: bytes | None = None
        count = 0
        chk = ZERO_CHECKSUM
        tmin = tmax = None
        for _, s, n, ck, lo, hi in rows:
            if n == 0:
                continue
            share = s if share is None else ops.merge(share, s)
            count += n
            chk = xor_checksum(chk, ck)
            tmin = lo if tmin is None else min(tmin, lo)
            tmax = hi if tmax is None else max(tmax, hi)
        return share, count, chk, tmin, tmax

    def check_batch_boundary(self, task: AggregatorTask, selector: BatchSelector, c: Any) -> None:
        tid = task.task_id
        if selector.query_type == QueryType.TIME_INTERVAL:
            iv = selector.batch_interval
            tp = task.time_precision
            if iv.duration < tp or iv.start % tp or iv.duration % tp:
                raise Problem(ProblemType.BATCH_INVALID,
                              "batch interval is not aligned to time_precision", task_id=tid)
        else:
            row = c.execute("SELECT 1 FROM fs_batches WHERE task_id=? AND batch_id=?",
                            (tid, bytes(selector.batch_id))).fetchone()
            if row is None:
                raise Problem(ProblemType.BATCH_INVALID, "unknown batch ID", task_id=tid)

    def check_query_count_and_overlap(self, task: AggregatorTask, selector: BatchSelector,
                                      agg_param: bytes, c: Any) -> None:
        """Section 14 steps 3 and 4; Prio3 uses one agg_param, so re-queries are free."""
        tid = task.task_id
        sel = selector.encode()
        params = {bytes(r[0]) for r in c.execute(
            "SELECT agg_param FROM batch_queries WHERE task_id=? AND selector=?", (tid, sel))}
        if bytes(agg_param) not in params and len(params) >= task.max_batch_query_count:
            raise Problem(ProblemType.BATCH_QUERIED_TOO_MANY_TIMES,
                          f"batch already queried with {len(params)} aggregation parameters",
                          task_id=tid)
        if selector.query_type == QueryType.TIME_INTERVAL:
            iv = selector.batch_interval
            for start, duration in c.execute(
                "SELECT start, duration FROM batch_queries WHERE task_id=? AND start IS NOT NULL",
                (tid,),
            ):
                if (start, duration) == (iv.start, iv.duration):
                    continue
                if start < iv.start + iv.duration and iv.start < start + duration:
                    raise Problem(ProblemType.BATCH_OVERLAP,
                                  f"interval overlaps the queried interval [{start}, +{duration})",
                                  task_id=tid)

    def record_query(self, c: Any, task: AggregatorTask, selector: BatchSelector,
                     agg_param: bytes) -> None:
        iv = selector.batch_interval
        c.execute(
            "INSERT OR IGNORE INTO batch_queries(task_id, selector, agg_param, start, duration)"
            " VALUES(?,?,?,?,?)",
            (task.task_id, selector.encode(), bytes(agg_param),
             iv.start if iv is not None else None, iv.duration if iv is not None else None),
        )

    # --- Helper: aggregation jobs ------------------------------------------------------

    def helper_init(self, task_id_text: str, job_id_text: str, request: Any, body: bytes) -> Reply:
        task, ops = self._task_for(task_id_text, "helper")
        if ops.needs_agg_param:
            return self.param.init(task, ops, job_id_text, request, body)
        tid = task.task_id
        check_auth(request, task.leader_token, task_id=tid)
        check_media_type(request, MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ, task_id=tid)
        job_id = bytes(path_id(AggregationJobId, job_id_text, "aggregation job ID", tid))
        digest = _sha256(body)
        replay = self.init_replay(tid, job_id, digest)
        if replay is not None:
            return replay
        req = decode_message(AggregationJobInitReq, body, tid)
        pbs = req.part_batch_selector
        if pbs.query_type != task.query_type:
            raise Problem(ProblemType.INVALID_MESSAGE, "partial batch selector query type differs"
                          " from the task's", task_id=tid)
        if not ops.agg_param_ok(req.agg_param):
            raise Problem(ProblemType.INVALID_MESSAGE, "invalid aggregation parameter", task_id=tid)
        ids = [bytes(p.report_share.report_metadata.report_id) for p in req.prepare_inits]
        if len(set(ids)) != len(ids):
            raise Problem(ProblemType.INVALID_MESSAGE, "repeated report ID in the request",
                          task_id=tid)
        batch_id = bytes(pbs.batch_id) if pbs.batch_id is not None else None

        # Per-report work outside the transaction (CPU only, no state).
        results: list[tuple[bytes, int, Any, PrepareError | None, bytes | None]] = []
        for pi in req.prepare_inits:
            rs = pi.report_share
            md = rs.report_metadata
            err = self.time_check(task, md.time)
            out_share = outbound = None
            if err is None:
                plaintext, err = self.open_input_share(
                    Role.HELPER, task, md, rs.public_share, rs.encrypted_input_share)
                if err is None:
                    try:
                        out_share, outbound = ops.helper_init(
                            task.verify_key, bytes(md.report_id), rs.public_share,
                            plaintext.payload, pi.payload)
                    except DecodeError:
                        err = PrepareError.INVALID_MESSAGE
                    except DapError:
                        err = PrepareError.VDAF_PREP_ERROR
            results.append((bytes(md.report_id), md.time, out_share, err, outbound))

        with self.store.tx() as c:
            replay = self.init_replay(tid, job_id, digest, c)
            if replay is not None:
                return replay
            resps = []
            items = []
            rows = []
            if batch_id is not None:
                c.execute("INSERT OR IGNORE INTO fs_batches(task_id, batch_id, created)"
                          " VALUES(?,?,?)", (tid, batch_id, time.time()))
            # Anti-replay: one lookup for the whole job (report IDs are distinct within it).
            seen_in = self._seen_in_jobs(
                c, tid, [r[0] for r in results if r[3] is not PrepareError.REPORT_TOO_EARLY])
            new_seen = []
            collected: dict[int, bool] = {}  # report time -> in a collected batch
            for ord_, (rid, t, out_share, err, outbound) in enumerate(results):
                bucket = bucket_key(task, t, batch_id)
                if err is not PrepareError.REPORT_TOO_EARLY:
                    seen = seen_in.get(rid)
                    if seen is not None and bugs.not_a_replay(seen, job_id):
                        pass  # TEST-ONLY BUGS (dap/roles/bugs.py): the replay goes unnoticed
                    elif seen is not None:
                        err = PrepareError.REPORT_REPLAYED
                    else:
                        new_seen.append((tid, rid, job_id))
                if err is None:
                    if t not in collected:
                        collected[t] = self.is_collected(c, task, t, batch_id)
                    if collected[t] and not bugs.active("accept-late-reports"):
                        err = PrepareError.BATCH_COLLECTED
                if err is None:
                    resps.append(PrepareResp(rid, PrepareRespState.CONTINUE, payload=outbound))
                    items.append((bucket, rid, t, out_share))
                    rows.append((tid, job_id, ord_, rid, t, "finished", None, bucket))
                else:
                    resps.append(PrepareResp(rid, PrepareRespState.REJECT, prepare_error=err))
                    # a rejected report's time may be any u64 (report_too_early): SQLite's
                    # INTEGER is signed 64-bit, so the stored copy is clamped
                    rows.append((tid, job_id, ord_, rid, min(t, SQLITE_MAX_INT), "failed", int(err), bucket))
            c.executemany("INSERT INTO seen_reports(task_id, report_id, job_id) VALUES(?,?,?)",
                          new_seen)
            self.accumulate(c, task, ops, items)
            if bugs.active("helper-resp-reorder"):
                resps.reverse()  # TEST-ONLY BUG: not in request order
            response = AggregationJobResp(tuple(resps)).encode()
            if bugs.reprocesses_jobs():  # TEST-ONLY BUGS: the job is overwritten (upsert)
                c.execute("DELETE FROM report_aggs WHERE task_id=? AND job_id=?", (tid, job_id))
                c.execute("DELETE FROM agg_jobs WHERE task_id=? AND job_id=?", (tid, job_id))
            c.executemany(
                "INSERT INTO report_aggs(task_id, job_id, ord, report_id, time, state, error, bucket)"
                " VALUES(?,?,?,?,?,?,?,?)", rows)
            c.execute(
                "INSERT INTO agg_jobs(task_id, job_id, role, state, step, batch_id, agg_param,"
                " init_hash, last_hash, response, created) VALUES(?,?,'helper','finished',0,?,?,?,?,?,?)",
                (tid, job_id, batch_id, bytes(req.agg_param), digest, digest, response, time.time()),
            )
        return Reply(201, response, AggregationJobResp.MEDIA_TYPE)

    @staticmethod
    def _seen_in_jobs(c: Any, tid: bytes, report_ids: list[bytes]) -> dict[bytes, bytes]:
        """report ID -> the aggregation job it was first seen in, for those already seen."""
        seen: dict[bytes, bytes] = {}
        for i in range(0, len(report_ids), 500):  # bounded IN lists (SQLite variable limit)
            part = report_ids[i : i + 500]
            for rid, jid in c.execute(
                "SELECT report_id, job_id FROM seen_reports WHERE task_id=? AND report_id IN"
                f" ({','.join('?' * len(part))})", (tid, *part)):
                seen[bytes(rid)] = bytes(jid)
        return seen

    def init_replay(self, tid: bytes, job_id: bytes, digest: bytes, c: Any = None) -> Reply | None:
        """An init PUT for a job that exists: its stored response (identical request), 409
        (different request, or already continued), 410 (deleted); None for a new job.
        Shared with :mod:`dap.roles.param_helper`. ``c``: inside that transaction."""
        sql = "SELECT init_hash, step, state, response FROM agg_jobs WHERE task_id=? AND job_id=?"
        row = (c.execute(sql, (tid, job_id)).fetchone() if c is not None
               else self.store.one(sql, (tid, job_id)))
        if row is None:
            return None
        init_hash, step, state, response = row
        if state == "deleted":
            raise Plain(410, "aggregation job was deleted")
        if init_hash != digest:
            if bugs.active("helper-reinit-no-conflict"):
                return None  # TEST-ONLY BUG: processed as a new job, no 409
            raise Plain(409, "aggregation job exists with a different request")
        if step != 0:
            raise Plain(409, "aggregation job was already continued")
        if bugs.active("helper-reinit-reaccumulate"):
            return None  # TEST-ONLY BUG: prepared again instead of replaying the stored response
        return Reply(201, response, AggregationJobResp.MEDIA_TYPE)

    def helper_continue(self, task_id_text: str, job_id_text: str, request: Any, body: bytes) -> Reply:
        task, ops = self._task_for(task_id_text, "helper")
        if ops.needs_agg_param:
            return self.param.continue_(task, ops, job_id_text, request, body)
        tid = task.task_id
        check_auth(request, task.leader_token, task_id=tid)
        check_media_type(request, MEDIA_TYPE_AGGREGATION_JOB_CONTINUE_REQ, task_id=tid)
        job_id = bytes(path_id(AggregationJobId, job_id_text, "aggregation job ID", tid))
        row = self.store.one(
            "SELECT step, state, last_hash, response FROM agg_jobs WHERE task_id=? AND job_id=?",
            (tid, job_id))
        if row is None or row[1] == "deleted":
            raise Problem(ProblemType.UNRECOGNIZED_AGGREGATION_JOB, "unknown aggregation job",
                          task_id=tid)
        step, state, last_hash, response = row
        req = decode_message(AggregationJobContinueReq, body, tid)
        if req.step == 0:
            raise Problem(ProblemType.INVALID_MESSAGE, "step 0 is not a continuation", task_id=tid)
        digest = _sha256(body)
        if step >= 1 and req.step == step and digest == last_hash:
            return Reply(200, response, AggregationJobResp.MEDIA_TYPE)  # step-skew recovery
        if state == "finished":
            # Prio3 finishes in the init step: no report is left in a Continued state.
            raise Problem(ProblemType.INVALID_MESSAGE,
                          "no report of this job awaits a continuation (job finished)", task_id=tid)
        if req.step != step + 1:
            raise Problem(ProblemType.STEP_MISMATCH,
                          f"expected step {step + 1}, got {req.step}", task_id=tid)
        # Only single-round VDAFs (Prio3) are served, so an unfinished job cannot exist.
        raise Problem(ProblemType.INVALID_MESSAGE, "no report awaits a continuation", task_id=tid)

    def helper_delete(self, task_id_text: str, job_id_text: str, request: Any) -> Reply:
        task, _ = self._task_for(task_id_text, "helper")
        tid = task.task_id
        check_auth(request, task.leader_token, task_id=tid)
        job_id = bytes(path_id(AggregationJobId, job_id_text, "aggregation job ID", tid))
        with self.store.tx() as c:
            n = c.execute("UPDATE agg_jobs SET state='deleted' WHERE task_id=? AND job_id=?",
                          (tid, job_id)).rowcount
            if n:
                self.param.discard_job(c, tid, job_id)  # Poplar1 prep states still waiting
        if not n:
            raise Problem(ProblemType.UNRECOGNIZED_AGGREGATION_JOB, "unknown aggregation job",
                          task_id=tid)
        # Anti-replay rows and committed output shares stay: DAP-09 does not undo them.
        return Reply(204)

    # --- Helper: aggregate shares ------------------------------------------------------

    def aggregate_share(self, task_id_text: str, request: Any, body: bytes) -> Reply:
        task, ops = self._task_for(task_id_text, "helper")
        if ops.needs_agg_param:
            return self.param.aggregate_share(task, ops, request, body)
        tid = task.task_id
        self.authenticate("agg_share", request, task.leader_token, tid)
        check_media_type(request, MEDIA_TYPE_AGGREGATE_SHARE_REQ, task_id=tid)
        req = decode_message(AggregateShareReq, body, tid)
        digest = _sha256(body)
        row = self.store.one("SELECT response FROM agg_share_resps WHERE task_id=? AND req_hash=?",
                             (tid, digest))
        if row is not None and not bugs.active("helper-share-recompute"):
            return Reply(200, row[0], AggregateShare.MEDIA_TYPE)
        sel = req.batch_selector
        if sel.query_type != task.query_type:
            raise Problem(ProblemType.INVALID_MESSAGE, "batch selector query type differs from"
                          " the task's", task_id=tid)
        if not ops.agg_param_ok(req.agg_param):
            raise Problem(ProblemType.INVALID_MESSAGE, "invalid aggregation parameter", task_id=tid)
        collector_config = HpkeConfig.decode(task.collector_hpke_config)
        with self.store.tx() as c:
            row = c.execute("SELECT response FROM agg_share_resps WHERE task_id=? AND req_hash=?",
                            (tid, digest)).fetchone()
            if row is not None and not bugs.active("helper-share-recompute"):
                return Reply(200, row[0], AggregateShare.MEDIA_TYPE)
            self.check_batch_boundary(task, sel, c)
            rows = self.batch_buckets(c, task, sel)
            share, count, chk, _, _ = self.sum_buckets(ops, rows)
            if count < task.min_batch_size or (
                task.max_batch_size is not None and count > task.max_batch_size
            ):
                raise Problem(ProblemType.INVALID_BATCH_SIZE,
                              f"batch has {count} reports", task_id=tid)
            self.check_query_count_and_overlap(task, sel, req.agg_param, c)
            if count != req.report_count or chk != bytes(req.checksum):
                raise Problem(ProblemType.BATCH_MISMATCH,
                              f"Helper has {count} reports (checksum {chk.hex()[:16]}...), Leader"
                              f" sent {req.report_count} ({bytes(req.checksum).hex()[:16]}...)",
                              task_id=tid)
            ct = hpke.seal_aggregate_share(
                collector_config, Role.HELPER, tid, bytes(req.agg_param), sel,
                share if share is not None else ops.empty_share())
            response = AggregateShare(ct).encode()
            self.record_query(c, task, sel, req.agg_param)
            self.mark_collected(c, task, sel, rows)
            c.execute(("INSERT OR REPLACE" if bugs.active("helper-share-recompute") else "INSERT")
                      + " INTO agg_share_resps(task_id, req_hash, response) VALUES(?,?,?)",
                      (tid, digest, response))
        return Reply(200, response, AggregateShare.MEDIA_TYPE)

    # --- Leader: collection jobs -------------------------------------------------------

    def collection_put(self, task_id_text: str, job_id_text: str, request: Any, body: bytes) -> Reply:
        task, ops = self._task_for(task_id_text, "leader")
        tid = task.task_id
        self.authenticate("collection_put", request, task.collector_token, tid)
        check_media_type(request, MEDIA_TYPE_COLLECT_REQ, task_id=tid)
        job_id = bytes(path_id(CollectionJobId, job_id_text, "collection job ID", tid))
        digest = _sha256(body)
        # TEST-ONLY BUG leader-collect-overwrite: another request for a known job is an upsert
        overwrite = bugs.active("leader-collect-overwrite")
        row = self.store.one("SELECT req_hash FROM collection_jobs WHERE task_id=? AND job_id=?",
                             (tid, job_id))
        if row is not None:
            if row[0] == digest:
                return Reply(201)
            if not overwrite:
                raise Plain(409, "collection job exists with a different request")
        req = decode_message(CollectionReq, body, tid)
        q = req.query
        if q.query_type != task.query_type:
            raise Problem(ProblemType.INVALID_MESSAGE, "query type differs from the task's",
                          task_id=tid)
        if not ops.agg_param_ok(req.agg_param):
            raise Problem(ProblemType.INVALID_MESSAGE, "invalid aggregation parameter", task_id=tid)
        selector = None
        with self.store.tx() as c:
            row = c.execute("SELECT req_hash FROM collection_jobs WHERE task_id=? AND job_id=?",
                            (tid, job_id)).fetchone()
            if row is not None:
                if row[0] == digest:
                    return Reply(201)
                if not overwrite:
                    raise Plain(409, "collection job exists with a different request")
                c.execute("DELETE FROM collection_jobs WHERE task_id=? AND job_id=?", (tid, job_id))
            if q.query_type == QueryType.TIME_INTERVAL:
                selector = BatchSelector(QueryType.TIME_INTERVAL, batch_interval=q.batch_interval)
                self.check_batch_boundary(task, selector, c)
                self.check_query_count_and_overlap(task, selector, req.agg_param, c)
                self.record_query(c, task, selector, req.agg_param)
            elif q.fixed_size_query.query_type == FixedSizeQueryType.BY_BATCH_ID:
                bid = bytes(q.fixed_size_query.batch_id)
                known = c.execute(
                    "SELECT 1 FROM collection_jobs WHERE task_id=? AND batch_selector=?"
                    " AND state='finished'",
                    (tid, BatchSelector(QueryType.FIXED_SIZE, batch_id=bid).encode()),
                ).fetchone()
                if known is None:
                    raise Problem(ProblemType.BATCH_INVALID,
                                  "batch ID was not returned by an earlier collection", task_id=tid)
                selector = BatchSelector(QueryType.FIXED_SIZE, batch_id=bid)
                self.check_query_count_and_overlap(task, selector, req.agg_param, c)
                self.record_query(c, task, selector, req.agg_param)
            c.execute(
                "INSERT INTO collection_jobs(task_id, job_id, req_hash, query, agg_param,"
                " batch_selector, state, created) VALUES(?,?,?,?,?,?,'pending',?)",
                (tid, job_id, digest, q.encode(), bytes(req.agg_param),
                 selector.encode() if selector is not None else None, time.time()),
            )
        return Reply(201)

    def collection_post(self, task_id_text: str, job_id_text: str, request: Any) -> Reply:
        """A collection-job poll (DAP-09: empty body, never read)."""
        task, _ = self._task_for(task_id_text, "leader")
        tid = task.task_id
        self.authenticate("collection_post", request, task.collector_token, tid)
        job_id = bytes(path_id(CollectionJobId, job_id_text, "collection job ID", tid))
        row = self.store.one(
            "SELECT state, result, problem, detail FROM collection_jobs WHERE task_id=? AND job_id=?",
            (tid, job_id))
        if row is None:
            raise Plain(404, "unknown collection job")
        state, result, problem, detail = row
        if state == "deleted":
            return Reply(204)
        if state == "finished":
            return Reply(200, result, Collection.MEDIA_TYPE)
        if state == "failed":
            ptype = ProblemType.from_token(problem) if problem else None
            if ptype is None:  # the Helper's answer carried no DAP problem type
                raise UpstreamProblem(detail or "collection job failed", task_id=tid)
            raise Problem(ptype, detail or "", task_id=tid)
        return Reply(202, headers={"Retry-After": "1"})

    def collection_delete(self, task_id_text: str, job_id_text: str, request: Any) -> Reply:
        task, _ = self._task_for(task_id_text, "leader")
        tid = task.task_id
        self.authenticate("collection_delete", request, task.collector_token, tid)
        job_id = bytes(path_id(CollectionJobId, job_id_text, "collection job ID", tid))
        with self.store.tx() as c:
            n = c.execute("UPDATE collection_jobs SET state='deleted' WHERE task_id=? AND job_id=?",
                          (tid, job_id)).rowcount
        if not n:
            raise Plain(404, "unknown collection job")
        return Reply(204)
