"""The reference Collector: add_task, collection_start, collection_poll.

``add_task`` generates an X25519/HKDF-SHA256/AES-128-GCM key pair per task,
stores it with the task (SQLite, so a restart keeps it) and returns the
``HpkeConfig`` as unpadded base64url. ``collection_start`` PUTs a
``CollectionReq`` (authenticated with ``DAP-Auth-Token``) under a fresh
collection job ID and returns that ID (base64url) as the handle.
``collection_poll`` POSTs to the job: 202 -> ``"in progress"``; 200 -> both
aggregate shares are opened (AAD batch selector: the query's interval for
time_interval, the Collection's batch ID for fixed_size), unsharded, and the
result returned in the interop string encoding; anything else -> ``"error"``.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

from dap import hpke
from dap.codec import BatchId
from dap.constants import MEDIA_TYPE_COLLECT_REQ, FixedSizeQueryType, QueryType, Role
from dap.errors import DapError
from dap.messages import (
    BatchSelector,
    Collection,
    CollectionReq,
    FixedSizeQuery,
    Interval,
    Query,
)
from dap.roles.storage import Store
from dap.roles.task import CollectorTask, TaskConfigError, b64d, b64e
from dap.roles.upstream import join_url
from dap.roles.vdafs import vdaf_ops

__all__ = ["Collector", "query_from_interop"]


def _num(obj: dict, key: str) -> int:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise TaskConfigError(f"query.{key}: expected a non-negative integer")
    return v


def query_from_interop(obj: Any) -> Query:
    """The DAP Query for an interop query object (interop-api.md §2.2)."""
    if not isinstance(obj, dict):
        raise TaskConfigError("query: expected an object")
    qt = obj.get("type")
    if qt == QueryType.TIME_INTERVAL:
        return Query(QueryType.TIME_INTERVAL, batch_interval=Interval(
            _num(obj, "batch_interval_start"), _num(obj, "batch_interval_duration")))
    if qt == QueryType.FIXED_SIZE:
        sub = obj.get("subtype")
        if sub == FixedSizeQueryType.CURRENT_BATCH:
            return Query(QueryType.FIXED_SIZE,
                         fixed_size_query=FixedSizeQuery(FixedSizeQueryType.CURRENT_BATCH))
        if sub == FixedSizeQueryType.BY_BATCH_ID:
            bid = b64d(obj.get("batch_id"), length=32, what="query.batch_id")
            return Query(QueryType.FIXED_SIZE, fixed_size_query=FixedSizeQuery(
                FixedSizeQueryType.BY_BATCH_ID, batch_id=bid))
        raise TaskConfigError("query.subtype: expected 0 (by_batch_id) or 1 (current_batch)")
    raise TaskConfigError("query.type: expected 1 or 2")


class Collector:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.http = httpx.AsyncClient(timeout=15)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _task(self, task_id: bytes) -> tuple[CollectorTask, hpke.HpkeKeypair]:
        row = self.store.one("SELECT config, keypair FROM collector_tasks WHERE task_id=?",
                             (task_id,))
        if row is None:
            raise TaskConfigError("task_id: unknown task")
        return CollectorTask.from_json(row[0]), hpke.HpkeKeypair.from_bytes(row[1])

    async def add_task(self, body: dict) -> dict:
        task = CollectorTask.from_interop(body)
        vdaf_ops(task.vdaf)  # refuses an unsupported VDAF
        with self.store.tx() as c:
            row = c.execute("SELECT config, keypair FROM collector_tasks WHERE task_id=?",
                            (task.task_id,)).fetchone()
            if row is not None:
                if row[0] != task.to_json():
                    raise TaskConfigError("task_id: already registered with another configuration")
                keypair = hpke.HpkeKeypair.from_bytes(row[1])
            else:
                keypair = hpke.generate_keypair(os.urandom(1)[0])
                c.execute("INSERT INTO collector_tasks(task_id, config, keypair) VALUES(?,?,?)",
                          (task.task_id, task.to_json(), keypair.to_bytes()))
        return {"status": "success", "collector_hpke_config": b64e(keypair.config.encode())}

    def _headers(self, task: CollectorTask, media_type: str | None = None) -> dict[str, str]:
        h = {"DAP-Auth-Token": task.collector_token}
        if media_type:
            h["Content-Type"] = media_type
        return h

    async def collection_start(self, body: dict) -> dict:
        task_id = b64d(body.get("task_id"), length=32, what="task_id")
        task, _ = self._task(task_id)
        agg_param = b64d(body.get("agg_param", ""), what="agg_param")
        query = query_from_interop(body.get("query"))
        job_id = os.urandom(16)
        handle = b64e(job_id)
        url = join_url(task.leader, f"tasks/{b64e(task_id)}/collection_jobs/{handle}")
        req = CollectionReq(query, agg_param).encode()
        # Stored before the PUT so a poll after a lost response still finds the job.
        with self.store.tx() as c:
            c.execute("INSERT INTO collector_jobs(handle, task_id, job_id, query, agg_param, created)"
                      " VALUES(?,?,?,?,?,?)",
                      (handle, task_id, job_id, query.encode(), agg_param, time.time()))
        try:
            resp = await self.http.put(url, content=req,
                                       headers=self._headers(task, MEDIA_TYPE_COLLECT_REQ))
        except httpx.HTTPError as exc:
            return {"status": "error", "error": f"PUT {url}: {exc!r}"}
        if not 200 <= resp.status_code < 300:
            return {"status": "error", "error": f"PUT {url}: HTTP {resp.status_code} {resp.text[:300]}"}
        return {"status": "success", "handle": handle}

    async def collection_poll(self, body: dict) -> dict:
        handle = body.get("handle")
        row = self.store.one("SELECT task_id, job_id, query, agg_param FROM collector_jobs"
                             " WHERE handle=?", (handle,)) if isinstance(handle, str) else None
        if row is None:
            return {"status": "error", "error": "unknown handle"}
        task_id, job_id, query_bytes, agg_param = bytes(row[0]), bytes(row[1]), row[2], bytes(row[3])
        task, keypair = self._task(task_id)
        url = join_url(task.leader, f"tasks/{b64e(task_id)}/collection_jobs/{b64e(job_id)}")
        try:
            resp = await self.http.post(url, content=b"", headers=self._headers(task))
        except httpx.HTTPError as exc:
            return {"status": "error", "error": f"POST {url}: {exc!r}"}
        if resp.status_code == 202:
            return {"status": "in progress"}
        if resp.status_code != 200:
            return {"status": "error", "error": f"POST {url}: HTTP {resp.status_code} {resp.text[:300]}"}
        if resp.headers.get("content-type") != Collection.MEDIA_TYPE:
            return {"status": "error", "error": f"Content-Type {resp.headers.get('content-type')!r}"}
        try:
            collection = Collection.decode(resp.content)
            query = Query.decode(query_bytes)
            pbs = collection.part_batch_selector
            if query.query_type == QueryType.TIME_INTERVAL:
                sel = BatchSelector(QueryType.TIME_INTERVAL, batch_interval=query.batch_interval)
            else:
                sel = BatchSelector(QueryType.FIXED_SIZE, batch_id=pbs.batch_id)
            leader_share = hpke.open_aggregate_share(
                keypair, Role.LEADER, task_id, agg_param, sel, collection.leader_encrypted_agg_share)
            helper_share = hpke.open_aggregate_share(
                keypair, Role.HELPER, task_id, agg_param, sel, collection.helper_encrypted_agg_share)
            ops = vdaf_ops(task.vdaf)
            result = ops.unshard(leader_share, helper_share, collection.report_count, agg_param)
        except DapError as exc:
            return {"status": "error", "error": f"cannot finish the collection: {exc}"}
        out: dict[str, Any] = {
            "status": "complete",
            "report_count": collection.report_count,
            "interval_start": collection.interval.start,
            "interval_duration": collection.interval.duration,
            "result": ops.result_to_interop(result),
        }
        if query.query_type == QueryType.FIXED_SIZE:
            out["batch_id"] = BatchId(pbs.batch_id).b64()
        return out

