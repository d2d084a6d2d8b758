"""The DAP interop test API, harness side: call roles, provision tasks.

:class:`InteropClient` wraps one role's ``/internal/test/*`` API (httpx, no proxy from the
environment). An HTTP-level failure (connection refused, non-200, bad JSON) is an
:class:`~harness.errors.InteropError` (infrastructure); a DAP-level failure is a normal
answer with ``"status": "error"`` the caller records.

:func:`provision_task` is the interop runner's sequence (interop-api.md section 4, steps 3-6):
fresh random task ID, tokens and verify key; ``endpoint_for_task`` on Leader and Helper;
Collector ``add_task``; Leader then Helper ``add_task``. ``leader_url_for`` /
``helper_url_for`` say where each party must send its DAP traffic — the fault proxy's
listeners in a :class:`~harness.run.Stack`, the roles themselves without a proxy.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

import attrs
import httpx

from faults.scenario import TaskSpec
from faults.vocabulary import CLIENT_LEADER, COLLECTOR_LEADER
from harness.errors import InteropError

__all__ = ["InteropClient", "ProvisionedTask", "b64", "provision_task", "wait_ready"]

QUERY_TYPE_NUMBER = {"time_interval": 1, "fixed_size": 2}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class InteropClient:
    """One role's interop test API."""

    def __init__(self, role: str, base_url: str, *, timeout_s: float = 30.0) -> None:
        self.role = role
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self._http = httpx.Client(timeout=timeout_s, trust_env=False)

    def call(self, name: str, body: dict[str, Any] | None = None, *, timeout_s: float | None = None) -> dict[str, Any]:
        path = "internal/test/" + name
        try:
            r = self._http.post(self.base_url + path, json=body if body is not None else {},
                                timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            raise InteropError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                               role=self.role, path=name) from exc
        if r.status_code != 200:
            raise InteropError(f"HTTP {r.status_code}: {r.text[:200]}", role=self.role, path=name)
        try:
            data = r.json()
        except ValueError as exc:
            raise InteropError(f"not JSON: {r.text[:200]!r}", role=self.role, path=name) from exc
        if not isinstance(data, dict):
            raise InteropError(f"not a JSON object: {data!r}", role=self.role, path=name)
        return data

    def ready(self) -> bool:
        try:
            return self._http.post(self.base_url + "internal/test/ready", json={}, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._http.close()


def wait_ready(clients: dict[str, InteropClient], *, timeout_s: float, check: Callable[[str], None]) -> None:
    """Poll ``ready`` on every role until all answer 200; ``check(role)`` raises if one died."""
    waiting = dict(clients)
    deadline = time.monotonic() + timeout_s
    while waiting:
        for role in list(waiting):
            check(role)
            if waiting[role].ready():
                del waiting[role]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise InteropError(f"not ready after {timeout_s:g} s", role=", ".join(waiting), path="ready")
        time.sleep(0.03)


@attrs.frozen
class ProvisionedTask:
    task_id: str
    vdaf: dict[str, str]
    query_type: int
    time_precision: int
    #: where the Client and Collector send Leader traffic, and the Helper URL they are given
    leader_url_client: str
    leader_url_collector: str
    helper_url_client: str
    #: where the Leader sends Helper traffic
    helper_url_leader: str
    leader_token: str
    collector_token: str


def _absolute(base: str, endpoint: str) -> str:
    """Resolve an endpoint_for_task answer against an aggregator's base URL (runner: urljoin)."""
    return urljoin(base if base.endswith("/") else base + "/", endpoint)


def provision_task(
    task: TaskSpec, *, leader: InteropClient, helper: InteropClient, collector: InteropClient,
    base_time: int, peer_host: str | Callable[[str], str] = "127.0.0.1",
    leader_base_for: Callable[[str], str] = lambda link: "",
    helper_base_for_leader: str = "", helper_base_for_client: str = "", leader_base_for_peers: str = "",
) -> ProvisionedTask:
    """Register a fresh random task with Collector, Leader and Helper.

    ``leader_base_for(link)`` gives the base URL a party uses for the Leader on ``link``
    (``client->leader`` / ``collector->leader``); ``helper_base_for_leader`` the one the
    Leader uses for the Helper; ``helper_base_for_client`` the Helper as the Client reaches it;
    ``leader_base_for_peers`` the Leader's own URL as given in ``add_task``. Empty = the role's
    own URL (no proxy). ``peer_host`` is the ``hostname`` for ``endpoint_for_task``, or a
    function of the role (the docker backend: each role's network alias).
    """
    task_id = b64(secrets.token_bytes(32))
    qt = QUERY_TYPE_NUMBER[task.query_type]
    vdaf = task.vdaf.to_interop()
    leader_token = "leader-" + secrets.token_hex(10)
    collector_token = "collector-" + secrets.token_hex(10)
    ends: dict[str, str] = {}
    for role, client in (("leader", leader), ("helper", helper)):
        hostname = peer_host(role) if callable(peer_host) else peer_host
        r = client.call("endpoint_for_task", {"task_id": task_id, "role": role, "hostname": hostname})
        if r.get("status") != "success" or not isinstance(r.get("endpoint"), str):
            raise InteropError(f"endpoint_for_task failed: {r.get('error') or r}", role=role, path="endpoint_for_task")
        ends[role] = r["endpoint"]

    def url(base: str, own: str, endpoint: str) -> str:
        return _absolute(base or own, endpoint)

    c2l = url(leader_base_for(CLIENT_LEADER), leader.base_url, ends["leader"])
    k2l = url(leader_base_for(COLLECTOR_LEADER), leader.base_url, ends["leader"])
    l2h = url(helper_base_for_leader, helper.base_url, ends["helper"])
    h_client = url(helper_base_for_client, helper.base_url, ends["helper"])
    leader_real = url(leader_base_for_peers, leader.base_url, ends["leader"])
    r = collector.call("add_task", {"task_id": task_id, "leader": k2l, "vdaf": vdaf,
                                    "collector_authentication_token": collector_token, "query_type": qt})
    if r.get("status") != "success":
        raise InteropError(f"add_task failed: {r.get('error') or r}", role="collector", path="add_task")
    common: dict[str, Any] = {
        "task_id": task_id, "leader": leader_real, "helper": l2h, "vdaf": vdaf,
        "leader_authentication_token": leader_token, "vdaf_verify_key": b64(secrets.token_bytes(16)),
        "max_batch_query_count": task.max_batch_query_count, "query_type": qt,
        "min_batch_size": task.min_batch_size, "time_precision": task.time_precision_s,
        "collector_hpke_config": r["collector_hpke_config"],
        "task_expiration": base_time + task.expiration_after_s,
    }
    if qt == 2:
        common["max_batch_size"] = task.max_batch_size
    for role, client, extra in (("leader", leader, {"collector_authentication_token": collector_token}),
                                ("helper", helper, {})):
        r = client.call("add_task", {**common, **extra, "role": role})
        if r.get("status") != "success":
            raise InteropError(f"add_task failed: {r.get('error') or r}", role=role, path="add_task")
    return ProvisionedTask(task_id=task_id, vdaf=vdaf, query_type=qt, time_precision=task.time_precision_s,
                           leader_url_client=c2l, leader_url_collector=k2l, helper_url_client=h_client,
                           helper_url_leader=l2h, leader_token=leader_token, collector_token=collector_token)
