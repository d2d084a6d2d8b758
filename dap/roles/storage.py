"""SQLite storage for the reference roles (one database file per process).

Layout (``<state-dir>/<role>.sqlite3``, WAL journal):

=====================  ==========================================================
table                  holds
=====================  ==========================================================
``meta``               key/value (schema version)
``hpke_keys``          the Aggregator's HPKE key pairs (``HpkeKeypair.to_bytes``)
``tasks``              one row per task: role + the add_task JSON (immutable)
``reports``            Leader: uploaded reports (decrypted Leader share, Helper
                       ciphertext) and their state pending/in_job/done/failed
``agg_jobs``           both roles: one row per aggregation job; Leader keeps the
                       exact request bytes it sends, Helper the SHA-256 of the
                       init request, the last step's request hash and response
``report_aggs``        per report of a job: order, time, state, PrepareError
``seen_reports``       Helper anti-replay: every report ID seen in an init request
``buckets``            accumulated aggregate share, count, checksum, time span per
                       time_precision interval (time_interval) or batch ID
                       (fixed_size); ``collected`` once an aggregate share left
``collected_intervals`` time_interval batches whose aggregate share has left: a
                       report in one of them is refused even if its bucket was empty
``fs_batches``         fixed_size batches: reports assigned, collection job bound
``collection_jobs``    Leader: collection jobs, stored AggregateShareReq bytes,
                       the final Collection bytes or the problem type
``batch_queries``      both: (batch selector, agg_param) pairs queried -> query
                       count and time-interval overlap checks
``agg_share_resps``    Helper: stored AggregateShare response per request hash
``collector_tasks``    Collector: task, Leader URL, VDAF, token, HPKE key pair
``collector_jobs``     Collector: handle -> task, collection job ID, query
=====================  ==========================================================

Durability: every write that acknowledges something (an upload's 201, a Helper
response, a collection job's 201) commits before the HTTP response is sent.
``synchronous=NORMAL`` in WAL mode makes each commit durable against a crash of
the process (SIGKILL: the WAL is in the OS page cache and replayed on open); only
an OS crash or power loss can lose the last commits. ``--sync full`` selects
``synchronous=FULL`` (an fsync per commit) for that stronger guarantee.

All access goes through one connection guarded by a re-entrant lock, so a
transaction (:meth:`Store.tx`) is atomic with respect to every other request
and the background drivers of the same process.

Group commit (:class:`GroupCommit`): requests handled on the event loop (the
Leader's uploads) hand their write to a committer instead of committing alone;
everything submitted before the committer runs goes into one transaction, and
each request is answered only after that transaction committed, so an
acknowledged write is exactly as durable as before, at a fraction of the
per-commit cost when many clients upload at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["GroupCommit", "Store", "SCHEMA_VERSION", "SQLITE_MAX_INT", "wake_collections_trigger"]

SCHEMA_VERSION = 1

#: the largest value SQLite stores as INTEGER (report times are u64 on the wire)
SQLITE_MAX_INT = 2**63 - 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS hpke_keys(
    config_id INTEGER PRIMARY KEY, keypair BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tasks(
    task_id BLOB PRIMARY KEY, role TEXT NOT NULL, config TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS reports(
    task_id BLOB NOT NULL, report_id BLOB NOT NULL, time INTEGER NOT NULL,
    public_share BLOB NOT NULL, leader_share BLOB NOT NULL, helper_ct BLOB NOT NULL,
    state TEXT NOT NULL, job_id BLOB, error INTEGER,
    PRIMARY KEY(task_id, report_id));
CREATE INDEX IF NOT EXISTS reports_by_state ON reports(task_id, state, time);
CREATE INDEX IF NOT EXISTS reports_pending ON reports(task_id) WHERE state='pending';
CREATE TABLE IF NOT EXISTS agg_jobs(
    task_id BLOB NOT NULL, job_id BLOB NOT NULL, role TEXT NOT NULL, state TEXT NOT NULL,
    step INTEGER NOT NULL DEFAULT 0, batch_id BLOB, agg_param BLOB NOT NULL,
    init_hash BLOB, last_hash BLOB, request BLOB, response BLOB,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0,
    first_attempt REAL, created REAL NOT NULL, detail TEXT,
    PRIMARY KEY(task_id, job_id));
CREATE INDEX IF NOT EXISTS agg_jobs_by_state ON agg_jobs(role, state);
CREATE TABLE IF NOT EXISTS report_aggs(
    task_id BLOB NOT NULL, job_id BLOB NOT NULL, ord INTEGER NOT NULL, report_id BLOB NOT NULL,
    time INTEGER NOT NULL, state TEXT NOT NULL, error INTEGER, bucket BLOB,
    PRIMARY KEY(task_id, job_id, ord));
CREATE TABLE IF NOT EXISTS seen_reports(
    task_id BLOB NOT NULL, report_id BLOB NOT NULL, job_id BLOB NOT NULL,
    PRIMARY KEY(task_id, report_id));
CREATE TABLE IF NOT EXISTS buckets(
    task_id BLOB NOT NULL, bucket BLOB NOT NULL, agg_share BLOB,
    report_count INTEGER NOT NULL DEFAULT 0, checksum BLOB NOT NULL,
    min_time INTEGER, max_time INTEGER, collected INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY(task_id, bucket));
CREATE TABLE IF NOT EXISTS collected_intervals(
    task_id BLOB NOT NULL, start INTEGER NOT NULL, duration INTEGER NOT NULL,
    PRIMARY KEY(task_id, start, duration));
CREATE TABLE IF NOT EXISTS fs_batches(
    task_id BLOB NOT NULL, batch_id BLOB NOT NULL, assigned INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, collection_job BLOB,
    PRIMARY KEY(task_id, batch_id));
CREATE TABLE IF NOT EXISTS collection_jobs(
    task_id BLOB NOT NULL, job_id BLOB NOT NULL, req_hash BLOB NOT NULL,
    query BLOB NOT NULL, agg_param BLOB NOT NULL, batch_selector BLOB,
    state TEXT NOT NULL, share_req BLOB, leader_ct BLOB, report_count INTEGER,
    interval_start INTEGER, interval_duration INTEGER, result BLOB, problem TEXT, detail TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0,
    first_attempt REAL, created REAL NOT NULL,
    PRIMARY KEY(task_id, job_id));
CREATE INDEX IF NOT EXISTS collection_jobs_by_state ON collection_jobs(state);
CREATE TABLE IF NOT EXISTS batch_queries(
    task_id BLOB NOT NULL, selector BLOB NOT NULL, agg_param BLOB NOT NULL,
    start INTEGER, duration INTEGER,
    PRIMARY KEY(task_id, selector, agg_param));
CREATE TABLE IF NOT EXISTS agg_share_resps(
    task_id BLOB NOT NULL, req_hash BLOB NOT NULL, response BLOB NOT NULL,
    PRIMARY KEY(task_id, req_hash));
CREATE TABLE IF NOT EXISTS collector_tasks(
    task_id BLOB PRIMARY KEY, config TEXT NOT NULL, keypair BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS collector_jobs(
    handle TEXT PRIMARY KEY, task_id BLOB NOT NULL, job_id BLOB NOT NULL,
    query BLOB NOT NULL, agg_param BLOB NOT NULL, created REAL NOT NULL);
"""


def wake_collections_trigger(name: str, event: str, when: str = "") -> str:
    """A trigger that wakes the task's pending collection jobs after ``event`` (e.g. ``AFTER
    INSERT ON reports``), if ``when`` holds.

    A pending collection job whose batch is not ready is looked at again only after a backoff
    (dap/roles/leader.py, NOT_READY_MAX_S): a stack that served thousands of scenarios keeps
    every collection job that never became ready, and polling each of them every pass grew
    with the campaign. Whatever can make a batch ready wakes them instead, here in the schema
    so that no code path can forget it."""
    return (f"CREATE TRIGGER IF NOT EXISTS {name} {event} {f'WHEN {when} ' if when else ''}BEGIN"
            " UPDATE collection_jobs SET next_attempt=0, attempts=0"
            " WHERE task_id=NEW.task_id AND state='pending' AND next_attempt > 0; END")


_WAKE_TRIGGERS = (
    wake_collections_trigger("wake_collections_report_stored", "AFTER INSERT ON reports"),
    wake_collections_trigger("wake_collections_report_settled", "AFTER UPDATE OF state ON reports",
                             "OLD.state IN ('pending', 'in_job') AND NEW.state NOT IN ('pending', 'in_job')"),
    wake_collections_trigger("wake_collections_job_ended", "AFTER UPDATE OF state ON agg_jobs",
                             "NEW.role='leader' AND OLD.state='active' AND NEW.state != 'active'"),
    wake_collections_trigger("wake_collections_batch_grew", "AFTER UPDATE OF assigned ON fs_batches"),
)


class Store:
    """One SQLite database, one connection, one lock.

    ``tx()`` opens ``BEGIN IMMEDIATE`` and commits on normal exit, rolls back on an
    exception. Reads outside a transaction use :meth:`query` / :meth:`one`.
    """

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path)
        self._lock = threading.RLock()
        self._depth = 0
        self._conn = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=30
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(_SCHEMA + ";\n".join(_WAKE_TRIGGERS) + ";")
        with self.tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', ?)",
                (SCHEMA_VERSION,),
            )

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested calls join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._depth = 0
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._depth = 0
                self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple = ()) -> tuple | None:
        with self._lock:
            return self._conn.execute(sql, params).fetchone()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class GroupCommit:
    """Writes submitted from the event loop, committed together, each awaited until committed.

    ``apply(c, items)`` runs inside one :meth:`Store.tx` for every item submitted since the
    last flush and returns one outcome per item: a value, or an exception instance that
    :meth:`submit` raises for that item alone (the others still commit). If ``apply`` raises
    or the commit fails, the transaction rolls back and every item of the batch gets that
    exception: nothing of it is acknowledged.

    The flush is scheduled with ``call_soon`` when the first item of a batch arrives, so it
    runs after the request tasks that are already runnable (those whose data arrived in the
    same event-loop iteration) have submitted theirs: no timer, no added latency when there
    is a single request.
    """

    def __init__(self, store: Store, apply: Callable[[sqlite3.Connection, list[Any]], list[Any]]) -> None:
        self.store = store
        self.apply = apply
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._scheduled = False
        #: Number of transactions and of items committed (for tests and benchmarks).
        self.flushes = 0
        self.items = 0

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((item, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            with self.store.tx() as c:
                outcomes = self.apply(c, [item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"group commit: {len(outcomes)} outcomes for {len(batch)} items")
        except Exception as exc:  # noqa: BLE001 - rolled back: every waiter learns why
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.flushes += 1
        self.items += len(batch)
        for (_, fut), outcome in zip(batch, outcomes):
            if fut.done():  # the request was cancelled (client gone); its write stands
                continue
            if isinstance(outcome, BaseException):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)
