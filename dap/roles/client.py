"""The reference Client: ``/internal/test/upload`` builds and uploads one real report.

Per call (dap-09.md §9.1): fetch both Aggregators' HPKE config lists (exact
``Content-Type`` required; cached per Aggregator URL and task), pick the first
supported config, draw a random report ID, take ``time`` (or now) rounded down
to ``time_precision``, shard with the task's VDAF, seal each input share, and
PUT the Report to the Leader. An ``outdatedConfig`` answer drops the cached
configs and retries once with a fresh report (same timestamp, unlike
divviup-ts). Stateless apart from that cache.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import httpx

from dap import hpke
from dap.constants import MEDIA_TYPE_HPKE_CONFIG_LIST, ProblemType, Role, problem_type_from_uri
from dap.errors import DapError
from dap.messages import HpkeConfig, HpkeConfigList, PlaintextInputShare, Report, ReportMetadata
from dap.roles.upstream import join_url
from dap.roles.task import TaskConfigError, b64d, b64e
from dap.roles.vdafs import vdaf_ops

__all__ = ["Client", "UploadError"]


class UploadError(Exception):
    """The upload failed for good; the message is for the test API's ``error``."""

    def __init__(self, message: str, *, problem: str | None = None) -> None:
        self.problem = problem
        super().__init__(message)


class Client:
    def __init__(self) -> None:
        self.http = httpx.AsyncClient(timeout=15)
        self._configs: dict[tuple[str, str], HpkeConfig] = {}

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _config(self, base: str, task_id: bytes) -> HpkeConfig:
        key = (base, b64e(task_id))
        hit = self._configs.get(key)
        if hit is not None:
            return hit
        url = join_url(base, f"hpke_config?task_id={b64e(task_id)}")
        try:
            resp = await self.http.get(url, headers={"Accept": MEDIA_TYPE_HPKE_CONFIG_LIST})
        except httpx.HTTPError as exc:
            raise UploadError(f"GET {url}: {exc!r}") from None
        if resp.status_code != 200:
            raise UploadError(f"GET {url}: HTTP {resp.status_code} {resp.text[:200]}")
        if resp.headers.get("content-type") != MEDIA_TYPE_HPKE_CONFIG_LIST:
            raise UploadError(f"GET {url}: Content-Type {resp.headers.get('content-type')!r}")
        try:
            config = hpke.select_config(HpkeConfigList.decode(resp.content))
        except DapError as exc:
            raise UploadError(f"GET {url}: {exc}") from None
        self._configs[key] = config
        return config

    async def upload(self, body: dict) -> dict:
        try:
            task_id = b64d(body.get("task_id"), length=32, what="task_id")
            leader, helper = body.get("leader"), body.get("helper")
            if not isinstance(leader, str) or not isinstance(helper, str):
                raise TaskConfigError("leader/helper: expected URLs")
            ops = vdaf_ops(body.get("vdaf"))
            try:
                measurement = ops.parse_measurement(body.get("measurement"))
            except (DapError, ValueError, TypeError) as exc:
                raise TaskConfigError(f"measurement: {exc}") from None
            tp = body.get("time_precision")
            if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
                raise TaskConfigError("time_precision: expected a positive integer")
            t = body.get("time")
            if t is None:
                t = int(time.time())
            elif isinstance(t, bool) or not isinstance(t, int) or t < 0:
                raise TaskConfigError("time: expected a non-negative integer")
            t -= t % tp
        except TaskConfigError as exc:
            return {"status": "error", "error": str(exc)}
        try:
            for attempt in range(2):
                try:
                    await self._upload_once(task_id, leader, helper, ops, measurement, t)
                    return {"status": "success"}
                except UploadError as exc:
                    if exc.problem == ProblemType.OUTDATED_CONFIG.token and attempt == 0:
                        self._configs.pop((leader, b64e(task_id)), None)
                        self._configs.pop((helper, b64e(task_id)), None)
                        continue
                    raise
        except UploadError as exc:
            return {"status": "error", "error": str(exc)}
        return {"status": "error", "error": "unreachable"}  # pragma: no cover

    async def _upload_once(self, task_id: bytes, leader: str, helper: str, ops: Any,
                           measurement: Any, t: int) -> None:
        leader_config, helper_config = await asyncio.gather(
            self._config(leader, task_id), self._config(helper, task_id))
        report_id = os.urandom(16)
        try:
            report = await asyncio.to_thread(
                self._build_report, task_id, ops, measurement, report_id, t, leader_config, helper_config)
        except DapError as exc:  # e.g. a config whose public key does not fit its KEM: the upload fails
            raise UploadError(f"sealing the report: {exc}") from None
        url = join_url(leader, f"tasks/{b64e(task_id)}/reports")
        try:
            resp = await self.http.put(url, content=report,
                                       headers={"Content-Type": Report.MEDIA_TYPE})
        except httpx.HTTPError as exc:
            raise UploadError(f"PUT {url}: {exc!r}") from None
        if 200 <= resp.status_code < 300:
            return
        problem = None
        if resp.headers.get("content-type", "").startswith("application/problem+json"):
            try:
                p = problem_type_from_uri(str(json.loads(resp.content).get("type", "")))
                problem = p.token if p else None
            except ValueError:
                pass
        raise UploadError(f"PUT {url}: HTTP {resp.status_code} {problem or ''} {resp.text[:200]}",
                          problem=problem)

    @staticmethod
    def _build_report(task_id: bytes, ops: Any, measurement: Any, report_id: bytes, t: int,
                      leader_config: HpkeConfig, helper_config: HpkeConfig) -> bytes:
        public_share, leader_share, helper_share = ops.shard(measurement, report_id)
        md = ReportMetadata(report_id, t)
        leader_ct = hpke.seal_input_share(leader_config, Role.LEADER, task_id, md, public_share,
                                          PlaintextInputShare((), leader_share))
        helper_ct = hpke.seal_input_share(helper_config, Role.HELPER, task_id, md, public_share,
                                          PlaintextInputShare((), helper_share))
        return Report(md, public_share, leader_ct, helper_ct).encode()
