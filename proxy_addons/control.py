"""The control channel: load a plan, reset, read history, fire events, without a restart.

It is served from inside the addon on its own loopback port (never through a proxied
link: a request to a link port is forwarded upstream like any other), as a minimal
HTTP/1.1 server on asyncio streams. Every request must carry the per-run token in
``X-Faultrun-Token``; anything else is answered 403 and changes nothing.

=========  =================  ==========================================================
method     path               effect / answer (JSON unless noted)
=========  =================  ==========================================================
GET        /status            counters per rule, held flows, pending replays, history seq
PUT        /plan              body = plan text (TOML, or JSON starting with ``{``);
                              installs it (counters reset, held flows released);
                              400 ``{"error": "<one line>"}`` for a bad plan
POST       /reset             same plan, fresh counters and RNGs, held flows released
POST       /release           release held flows now
POST       /event?name=N      fire named event N (``manual:...`` or an EVENT_NAMES entry)
GET        /history?since=S   JSONL (``application/jsonl``): events with seq >= S
=========  =================  ==========================================================

:class:`ControlClient` is the harness side (httpx, synchronous).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx

from faults.errors import ControlError, PlanError
from faults.history import Event, event_from_dict, event_to_dict
from faults.plan import Plan, dumps_plan, loads_plan

if TYPE_CHECKING:  # pragma: no cover
    from proxy_addons.addon import FaultProxyAddon

__all__ = ["TOKEN_HEADER", "ControlClient", "ControlServer"]

log = logging.getLogger(__name__)
TOKEN_HEADER = "X-Faultrun-Token"
_MAX_BODY = 4 * 1024 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 500: "Internal Server Error"}


class ControlServer:
    """Serves the control API for one :class:`~proxy_addons.addon.FaultProxyAddon`."""

    def __init__(self, addon: FaultProxyAddon, *, token: str) -> None:
        self.addon = addon
        self.token = token
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._serve, host, port)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, ctype, body = await self._handle(reader)
        except Exception as exc:  # the control channel must answer, never crash the proxy
            log.exception("faultrun control: request failed")
            status, ctype, body = 500, "application/json", json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode() + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
        line = (await reader.readline()).decode("latin-1").strip()
        parts = line.split()
        if len(parts) != 3:
            return _json(400, {"error": "bad request line"})
        method, target, _ = parts
        headers: dict[str, str] = {}
        while True:
            h = (await reader.readline()).decode("latin-1")
            if h in ("\r\n", "\n", ""):
                break
            name, _, value = h.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length > _MAX_BODY:
            return _json(413, {"error": "body too large"})
        body = await reader.readexactly(length) if length else b""
        if not hmac.compare_digest(headers.get(TOKEN_HEADER.lower(), "").encode(), self.token.encode()):
            return _json(403, {"error": "missing or wrong control token"})
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        return self._route(method.upper(), url.path, query, body)

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        addon = self.addon
        state = addon.state
        assert state is not None
        if path == "/status" and method == "GET":
            return _json(200, {**state.status(), "plan": dumps_plan(state.plan, "json")})
        if path == "/plan" and method == "PUT":
            try:
                plan = loads_plan(body.decode("utf-8"))
            except UnicodeDecodeError:
                return _json(400, {"error": "plan: not UTF-8 text"})
            except PlanError as exc:
                return _json(400, {"error": str(exc), "rule_id": exc.rule_id})
            addon.set_plan(plan, why="plan_loaded")
            return _json(200, {"rules": len(plan.rules), "history_seq": addon.history.next_seq})
        if path == "/reset" and method == "POST":
            addon.set_plan(state.plan, why="reset")
            return _json(200, {"history_seq": addon.history.next_seq})
        if path == "/release" and method == "POST":
            return _json(200, {"released": state.release_all(why="released_by_control")})
        if path == "/event" and method == "POST":
            name = query.get("name", "")
            if not name:
                return _json(400, {"error": "event needs ?name="})
            return _json(200, {"sent": addon.fire_event(name)})
        if path == "/history" and method == "GET":
            try:
                since = int(query.get("since", "0"))
            except ValueError:
                return _json(400, {"error": "since must be an integer"})
            return 200, "application/jsonl", self._history(since)
        if path in ("/status", "/plan", "/reset", "/release", "/event", "/history"):
            return _json(405, {"error": f"{method} not allowed on {path}"})
        return _json(404, {"error": f"no control endpoint {path}"})

    def _history(self, since: int) -> bytes:
        hist = self.addon.history
        if hist.path is not None:
            out = []
            with open(hist.path, "rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n"):
                        break
                    if since and json.loads(line).get("seq", 0) < since:
                        continue
                    out.append(line)
            return b"".join(out)
        return b"".join(
            json.dumps(event_to_dict(e), default=str).encode() + b"\n" for e in hist.events if e.seq >= since
        )


def _json(status: int, obj: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(obj).encode()


class ControlClient:
    """Synchronous client of the control channel (harness side). Errors raise ControlError."""

    def __init__(self, port: int, token: str, *, host: str = "127.0.0.1", timeout_s: float = 10.0) -> None:
        self.base_url = f"http://{host}:{port}"
        self._client = httpx.Client(base_url=self.base_url, headers={TOKEN_HEADER: token}, timeout=timeout_s,
                                    trust_env=False)

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self._client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ControlError(f"control channel {method} {path}: {exc}") from exc
        if resp.status_code != 200:
            try:
                msg = resp.json().get("error", resp.text)
            except ValueError:
                msg = resp.text
            raise ControlError(f"control channel {method} {path}: {resp.status_code} {msg}", status=resp.status_code)
        return resp

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status").json()

    def load_plan(self, plan: Plan | str) -> int:
        """Install a plan (a :class:`Plan` or its text); return the history seq it starts at."""
        text = dumps_plan(plan, "toml") if isinstance(plan, Plan) else plan
        return self._call("PUT", "/plan", content=text.encode()).json()["history_seq"]

    def reset(self) -> int:
        return self._call("POST", "/reset").json()["history_seq"]

    def release(self) -> int:
        return self._call("POST", "/release").json()["released"]

    def fire_event(self, name: str) -> int:
        return self._call("POST", "/event", params={"name": name}).json()["sent"]

    def history(self, since: int = 0) -> list[Event]:
        text = self._call("GET", "/history", params={"since": since}).text
        return [event_from_dict(json.loads(line)) for line in text.splitlines() if line.strip()]

    def close(self) -> None:
        self._client.close()
