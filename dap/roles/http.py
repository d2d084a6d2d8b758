"""HTTP plumbing shared by the roles: problem documents, auth, media types, logging.

* :class:`Problem` is raised by handlers for a DAP error; :func:`problem_response`
  turns it into an ``application/problem+json`` document (RFC 9457) with
  ``type``, ``title``, ``status``, ``detail`` and — whenever the task is known —
  ``taskid`` (divviup-ts 0.9.1 crashes on a problem document without it).
  Status: 403 for ``unauthorizedRequest`` (as Janus), 400 for every other DAP
  problem type. A failure outside DAP's vocabulary that still owes the client a
  problem document (a collection job the Helper failed without a DAP problem type)
  is ``UpstreamProblem``: 502 with type ``about:blank`` (RFC 9457 section 4.2.1).
* :class:`Reply` is a handler's successful answer (status, body, media type, headers);
  :func:`decode_message` and :func:`path_id` turn a body or a path segment that does not
  decode into ``invalidMessage``.
* :class:`Plain` is a non-DAP HTTP error without a problem document (409
  Conflict for a mutated re-PUT, 404 for an unknown collection job, ...).
* :func:`check_auth` accepts exactly one credential: ``DAP-Auth-Token: <token>``
  or ``Authorization: Bearer <token>``; a missing, duplicated, wrong-scheme or
  wrong token is ``unauthorizedRequest``. The comparison is constant-time.
* :func:`check_media_type` requires the request ``Content-Type`` to equal the
  DAP media type byte for byte (no parameters); otherwise ``invalidMessage``.
* :class:`RequestLog` is ASGI middleware writing one JSON line per request
  (method, path, status, problem type, ms; ``error`` for a refused or unfinished body,
  status null when the client disconnected before the answer) to stderr and
  ``<state-dir>/requests.log``.
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dap.constants import MEDIA_TYPE_PROBLEM_JSON, ProblemType
from dap.errors import DecodeError
from dap.roles.limits import read_body
from dap.roles.task import b64e

__all__ = [
    "Plain",
    "Problem",
    "Reply",
    "UpstreamProblem",
    "RequestLog",
    "check_auth",
    "check_media_type",
    "decode_message",
    "path_id",
    "problem_response",
    "read_json",
]


class Reply:
    """A handler's successful answer: status, body, media type, extra headers."""

    __slots__ = ("status", "body", "media_type", "headers")

    def __init__(self, status: int, body: bytes = b"", media_type: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.media_type = media_type
        self.headers = headers or {}


class Problem(Exception):
    """A DAP-level error answered with a problem document (``problem_type`` None:
    ``about:blank`` with ``title``: :class:`UpstreamProblem`, and the 413 / 408 of
    :mod:`dap.roles.limits`, for which DAP-09 has no type and whose namespace servers
    must not extend)."""

    def __init__(
        self,
        problem_type: ProblemType | None,
        detail: str = "",
        *,
        task_id: bytes | None = None,
        status: int | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.problem_type = problem_type
        self.detail = detail
        self.task_id = task_id
        self.status = status or (403 if problem_type is ProblemType.UNAUTHORIZED_REQUEST else 400)
        self.title = title  # for about:blank (the DAP types carry their own)
        self.headers = headers
        super().__init__(f"{problem_type.token if problem_type else 'about:blank'}: {detail}")


class UpstreamProblem(Problem):
    """The Helper failed a request without a DAP problem type, and a client is owed a
    problem document for it (dap-09.md section 15: a failed collection job answers polls
    with an error status and a problem document): 502 Bad Gateway, type ``about:blank``."""

    def __init__(self, detail: str = "", *, task_id: bytes | None = None) -> None:
        super().__init__(None, detail, task_id=task_id, status=502, title="Bad Gateway")


class Plain(Exception):
    """A non-DAP HTTP error: status code and a short text body."""

    def __init__(self, status: int, detail: str = "") -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"{status}: {detail}")


def decode_message(cls: Any, body: bytes, task_id: bytes) -> Any:
    """``cls.decode(body)``; a body that does not decode is ``invalidMessage``."""
    try:
        return cls.decode(body)
    except DecodeError as exc:
        raise Problem(ProblemType.INVALID_MESSAGE, str(exc), task_id=task_id) from None


def path_id(cls: Any, text: str, what: str, task_id: bytes | None = None) -> Any:
    """An ID from a URL path segment (base64url); a bad one is ``invalidMessage``."""
    try:
        return cls.from_b64(text)
    except (ValueError, TypeError):
        raise Problem(ProblemType.INVALID_MESSAGE, f"bad {what} in path", task_id=task_id) from None


def problem_response(problem: Problem, request: Request | None = None) -> Response:
    pt = problem.problem_type
    doc: dict[str, Any] = {
        "type": pt.uri if pt is not None else "about:blank",
        "title": pt.description if pt is not None else (problem.title or "Error"),
        "status": problem.status,
    }
    if problem.detail:
        doc["detail"] = problem.detail
    if problem.task_id is not None:
        doc["taskid"] = b64e(problem.task_id)
    if request is not None and pt is not None:
        request.state.problem_type = pt.token
    return Response(
        json.dumps(doc).encode(), status_code=problem.status, media_type=MEDIA_TYPE_PROBLEM_JSON,
        headers=problem.headers,
    )


def plain_response(err: Plain) -> Response:
    return Response(err.detail.encode(), status_code=err.status, media_type="text/plain")


def check_media_type(request: Request, expected: str, *, task_id: bytes | None) -> None:
    values = request.headers.getlist("content-type")
    if len(values) != 1 or values[0] != expected:
        got = ", ".join(values) or "none"
        raise Problem(
            ProblemType.INVALID_MESSAGE,
            f"Content-Type must be exactly {expected!r}, got {got!r}",
            task_id=task_id,
        )


def check_auth(request: Request, expected_token: str | None, *, task_id: bytes) -> None:
    """Exactly one credential, equal to ``expected_token``; else unauthorizedRequest.

    Called before anything is read or stored, so a rejected request changes no state.
    """
    dap_tokens = request.headers.getlist("dap-auth-token")
    authz = request.headers.getlist("authorization")
    presented: str | None = None
    reason = ""
    if len(dap_tokens) + len(authz) == 0:
        reason = "no credential"
    elif len(dap_tokens) + len(authz) > 1:
        reason = "more than one credential"
    elif authz:
        scheme, _, rest = authz[0].partition(" ")
        if scheme.lower() != "bearer" or not rest or " " in rest.strip():
            reason = "Authorization scheme must be Bearer"
        else:
            presented = rest.strip()
    else:
        presented = dap_tokens[0]
    if presented is not None and expected_token is not None:
        if hmac.compare_digest(presented.encode(), expected_token.encode()):
            return
        reason = "wrong token"
    elif presented is not None:
        reason = "no token is configured for this request"
    raise Problem(ProblemType.UNAUTHORIZED_REQUEST, reason, task_id=task_id)


async def read_json(request: Request, limit: int, timeout: float) -> Any:
    """The JSON body of a test-API call; no body counts as ``{}`` (the runner sends none).

    Read by :func:`dap.roles.limits.read_body` (at most ``limit`` bytes within ``timeout``
    seconds; raises its :class:`~dap.roles.limits.BodyError`)."""
    raw = await read_body(request, limit, timeout, "test API request body")
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Plain(400, f"request body is not JSON: {exc}") from None


def interop_error(message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "error", "error": message, **extra})


# One encoder for every log line (json.dumps builds a new one per call for these separators).
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


class RequestLog:
    """ASGI middleware: one structured JSON line per HTTP request."""

    def __init__(self, app: Any, *, role: str, log_path: Path | None) -> None:
        self.app = app
        self.role = role
        self._lock = threading.Lock()
        self._file = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115

    def write(self, record: dict) -> None:
        line = _COMPACT_JSON.encode(record) + "\n"
        with self._lock:
            sys.stderr.write(line)
            sys.stderr.flush()
            if self._file is not None:
                self._file.write(line)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        status_holder = {"status": 500}
        scope.setdefault("state", {})

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            state = scope["state"]
            record = {
                "ts": round(time.time(), 3),
                "role": self.role,
                "method": scope.get("method"),
                "path": scope.get("path"),
                # None: the client left before an answer (dap.roles.limits.ClientGone)
                "status": None if state.get("client_gone") else status_holder["status"],
                "problem": state.get("problem_type"),
                "ms": round((time.monotonic() - start) * 1000, 2),
            }
            if state.get("error"):
                record["error"] = state["error"]
            self.write(record)
