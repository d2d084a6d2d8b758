"""The harness side of the fault proxy's control channel (httpx, synchronous).

The server and its endpoints: :mod:`proxy_addons.control`. Errors raise
:class:`harness.errors.ControlError` (exit 3: the harness's own machinery failed).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from faults.history import Event, event_from_dict
from faults.plan import Plan, dumps_plan
from harness.errors import ControlError
from proxy_addons.control import TOKEN_HEADER

__all__ = ["ControlClient"]


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

    # --- network rules (faults.network; proxy_addons.nettriggers) ---------------------------------

    def net_attach(self, on: bool = True) -> None:
        """Hold messages that trigger a network rule until :meth:`net_ack` (``on``), or stop."""
        self._call("POST", "/net/attach", params={"on": "1" if on else "0"})

    def net_triggers(self, wait_ms: int = 0) -> list[dict[str, Any]]:
        """Triggers seen since the last call (waits up to ``wait_ms`` for one)."""
        return self._call("GET", "/net/triggers", params={"wait_ms": wait_ms},
                          timeout=wait_ms / 1000 + 10).json()["triggers"]

    def net_ack(self, rule_id: str) -> bool:
        return self._call("POST", "/net/ack", params={"rule": rule_id}).json()["released"]

    def net_event(self, rule_id: str, action: str, link: str | None, changed: dict[str, Any]) -> int:
        """Record a network fault event (a window opening or closing); its seq."""
        body = json.dumps({"rule_id": rule_id, "action": action, "link": link, "changed": changed})
        return self._call("POST", "/net/event", content=body.encode()).json()["seq"]

    def segment(self, *, history: bool = False, flows: str | None = None) -> dict[str, Any]:
        """``POST /segment``: a new history segment (``history``), flows saved to ``flows/NAME``
        beside the history (``flows=NAME``) or no longer (``flows=""``); ``{"history_seq", "flows"}``."""
        params = {"history": "1" if history else "0"}
        if flows is not None:
            params["flows"] = flows
        return self._call("POST", "/segment", params=params).json()

    def history(self, since: int = 0) -> list[Event]:
        text = self._call("GET", "/history", params={"since": since}).text
        return [event_from_dict(json.loads(line)) for line in text.splitlines() if line.strip()]

    def close(self) -> None:
        self._client.close()
