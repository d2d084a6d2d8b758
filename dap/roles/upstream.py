"""Requests a role sends to another DAP server (Client -> Leader, Collector -> Leader,
Leader -> Helper): URL joining, the retry classification and the Helper-answer classifier
shared by the Prio3 and Poplar1 job drivers (:mod:`dap.roles.leader`,
:mod:`dap.roles.param_leader`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from urllib.parse import urljoin

import attrs
import httpx

from dap.constants import problem_type_from_uri
from dap.errors import DecodeError
from dap.messages import AggregationJobResp
from dap.roles import bugs

__all__ = ["HelperAnswer", "ask_helper", "is_retryable_status", "join_url", "problem_of"]


def join_url(base: str, rel: str) -> str:
    """Resolve ``rel`` against ``base`` treated as a directory (dap-09.md §5)."""
    if not base.endswith("/"):
        base += "/"
    return urljoin(base, rel)


def is_retryable_status(status: int) -> bool:
    return status == 429 or (500 <= status <= 599 and status != 501)


def problem_of(resp: httpx.Response) -> tuple[str | None, str]:
    """(problem token, detail) of an error response."""
    if resp.headers.get("content-type", "").startswith("application/problem+json"):
        try:
            doc = json.loads(resp.content)
            ptype = problem_type_from_uri(str(doc.get("type", "")))
            return (ptype.token if ptype else None), str(doc.get("detail", ""))
        except (ValueError, AttributeError):
            pass
    return None, resp.text[:200]


@attrs.frozen
class HelperAnswer:
    """What became of one aggregation-job request to the Helper: exactly one of ``response``
    (a 2xx that decoded), ``retry`` (why it is worth re-sending the same bytes: transport
    error, 429/5xx but 501, an undecodable 2xx -- the Helper replays its stored response) or
    ``failure`` (a non-retryable answer: the job is abandoned)."""

    response: AggregationJobResp | None = None
    retry: str | None = None
    failure: str | None = None
    status: int | None = None  # the HTTP status, if the Helper answered

    def gives_up(self) -> bool:
        """TEST-ONLY BUG ``leader-abandon-on-503`` (dap/roles/bugs.py): a retryable HTTP
        answer (429, 5xx but 501) abandons the job at once instead of being retried."""
        return (bugs.active("leader-abandon-on-503") and self.status is not None
                and is_retryable_status(self.status))


async def ask_helper(send: Callable[[], Awaitable[httpx.Response]]) -> HelperAnswer:
    """Send one aggregation-job request (``send``) and classify the Helper's answer."""
    try:
        resp = await send()
    except httpx.TransportError as exc:
        return HelperAnswer(retry=f"transport: {exc!r}")
    if 200 <= resp.status_code < 300:
        try:
            return HelperAnswer(response=AggregationJobResp.decode(resp.content),
                                status=resp.status_code)
        except DecodeError as exc:
            return HelperAnswer(retry=f"undecodable response: {exc}", status=resp.status_code)
    if is_retryable_status(resp.status_code):
        return HelperAnswer(retry=f"HTTP {resp.status_code}", status=resp.status_code)
    ptype, detail = problem_of(resp)
    return HelperAnswer(failure=f"HTTP {resp.status_code} {ptype or ''} {detail}".strip(),
                        status=resp.status_code)
