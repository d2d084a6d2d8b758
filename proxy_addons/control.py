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
POST       /net/attach?on=1   a harness applies the plan's network rules: hold triggering
                              messages until acknowledged (``on=0``: stop holding)
GET        /net/triggers      network-rule triggers seen since the last call
           ?wait_ms=N         (waits up to N ms for one; :mod:`proxy_addons.nettriggers`)
POST       /net/ack?rule=ID   the rule is in place: release the message that triggered it
POST       /net/event         body = JSON ``{rule_id, action, link, changed}``: record a
                              network fault event (``phase`` network, no flow); answers its seq
POST       /segment?...       ``history=1``: start a new history segment (the file is
                              replaced; seq goes on); ``flows=NAME``: save mitmproxy flows
                              to ``flows/NAME`` beside the history from now on,
                              ``flows=`` (empty): stop saving them (the file is complete);
                              answers ``{"history_seq", "flows"}``
=========  =================  ==========================================================

``/segment`` is how a long-lived proxy stays bounded: the harness starts a segment at each
scenario's start (the previous scenario's slice is already in its run directory) and moves
the scenario's flows file into its run directory at its end (:mod:`harness.run.stack`).

The harness side is :class:`harness.stack.control.ControlClient`.
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from faults.errors import PlanError
from faults.history import HistoryWriter, RecordingError, event_to_dict
from faults.network import NET_PHASE, is_net_action, net_change_from_dict
from faults.plan import Plan, dumps_plan, loads_plan
from proxy_addons.nettriggers import NetTriggers
from proxy_addons.runtime import RunState

__all__ = ["TOKEN_HEADER", "ControlServer"]

log = logging.getLogger(__name__)
TOKEN_HEADER = "X-Faultrun-Token"
_MAX_BODY = 4 * 1024 * 1024
_FLOWS_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 500: "Internal Server Error"}


class ControlledProxy(Protocol):
    """What the control channel needs of the proxy it controls (the addon)."""

    state: RunState | None
    history: HistoryWriter
    net: NetTriggers

    def set_plan(self, plan: Plan, *, why: str) -> None: ...

    def fire_event(self, name: str) -> int: ...

    def new_segment(self, *, history: bool, flows: str | None) -> str | None: ...


class ControlServer:
    """Serves the control API for one proxy (:class:`~proxy_addons.addon.FaultProxyAddon`)."""

    def __init__(self, addon: ControlledProxy, *, token: str) -> None:
        self.addon = addon
        self.token = token
        self.server: asyncio.Server | None = None
        self._index = _SeqIndex(None)

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
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if url.path == "/history" and method.upper() == "GET":
            try:
                since = int(query.get("since", "0"))
            except ValueError:
                return _json(400, {"error": "since must be an integer"})
            # off the event loop: the proxy keeps forwarding while a long history is read
            return 200, "application/jsonl", await asyncio.to_thread(self._history, since)
        if url.path == "/net/triggers" and method.upper() == "GET":
            try:
                wait_ms = min(max(int(query.get("wait_ms", "0")), 0), 10_000)
            except ValueError:
                return _json(400, {"error": "wait_ms must be an integer"})
            return _json(200, {"triggers": await self.addon.net.wait(wait_ms / 1000)})
        if url.path.startswith("/net/"):
            return self._route_net(method.upper(), url.path, query, body)
        return self._route(method.upper(), url.path, query, body)

    def _route_net(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        """The network-rule endpoints (:mod:`proxy_addons.nettriggers`)."""
        net = self.addon.net
        if path == "/net/attach" and method == "POST":
            net.attached = query.get("on", "1") != "0"
            if not net.attached:
                net.release_all()
            return _json(200, {"attached": net.attached})
        if path == "/net/ack" and method == "POST":
            return _json(200, {"released": net.ack(query.get("rule", ""))})
        if path == "/net/event" and method == "POST":
            try:
                ev = json.loads(body.decode("utf-8"))
                action = ev["action"]
                if not is_net_action(action):
                    raise ValueError(f"not a network action: {action!r}")
                changed = net_change_from_dict(ev.get("changed"))
                rule_id, link = str(ev["rule_id"]), ev.get("link")
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                return _json(400, {"error": f"network event: {exc}"})
            seq = self.addon.history.next_seq
            try:
                self.addon.history.fault(rule_id=rule_id, action=action, link=link, kind=None, phase=NET_PHASE,
                                         flow_id="", flow_seq=-1, changed=changed)
            except RecordingError as exc:
                return _json(500, {"error": str(exc)})
            return _json(200, {"seq": seq})
        if path in ("/net/attach", "/net/ack", "/net/event", "/net/triggers"):
            return _json(405, {"error": f"{method} not allowed on {path}"})
        return _json(404, {"error": f"no control endpoint {path}"})

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
        if path == "/segment" and method == "POST":
            flows = query.get("flows")
            if flows and not _FLOWS_NAME.fullmatch(flows):
                return _json(400, {"error": "flows: a file name of letters, digits, '.', '_' and '-'"})
            try:
                written = addon.new_segment(history=query.get("history") in ("1", "true"), flows=flows)
            except (OSError, ValueError) as exc:
                return _json(500, {"error": f"{type(exc).__name__}: {exc}"})
            return _json(200, {"history_seq": addon.history.next_seq, "flows": written})
        if path in ("/status", "/plan", "/reset", "/release", "/event", "/history", "/segment"):
            return _json(405, {"error": f"{method} not allowed on {path}"})
        return _json(404, {"error": f"no control endpoint {path}"})

    def _history(self, since: int) -> bytes:
        """Events with seq >= ``since`` as JSONL (run in a worker thread). Reading starts at the
        last checkpoint at or before ``since`` (:class:`_SeqIndex`), so a scenario late in an
        hour-long campaign reads its own events, not the whole file."""
        hist = self.addon.history
        if hist.path is None:
            return b"".join(json.dumps(event_to_dict(e), default=str).encode() + b"\n"
                            for e in hist.events if e.seq >= since)
        if self._index.path != hist.path or self._index.segment != hist.segments:  # a new file or segment
            self._index = _SeqIndex(hist.path, hist.segments)
        return self._index.read_since(since)


class _SeqIndex:
    """Byte offsets of history lines by seq, kept as the file is read (it only grows), every
    :data:`CHECKPOINT_EVERY` events: where to start reading for a given ``since``."""

    CHECKPOINT_EVERY = 256

    def __init__(self, path: Path | None, segment: int = 0) -> None:
        self.path = path
        self.segment = segment
        self.seqs: list[int] = []  # ascending
        self.offsets: list[int] = []
        self._lock = threading.Lock()

    def read_since(self, since: int) -> bytes:
        assert self.path is not None
        with self._lock:
            i = bisect.bisect_right(self.seqs, since) - 1
            offset = self.offsets[i] if i >= 0 else 0
            out: list[bytes] = []
            with open(self.path, "rb") as fh:
                fh.seek(offset)
                pos = offset
                for line in fh:
                    if not line.endswith(b"\n"):
                        break  # a line being written right now: the next read gets it
                    seq = _seq_of(line)
                    if seq is not None:
                        if (not self.seqs or seq > self.seqs[-1]) and seq % self.CHECKPOINT_EVERY == 0:
                            self.seqs.append(seq)
                            self.offsets.append(pos)
                        if seq >= since:
                            out.append(line)
                    pos += len(line)
            return b"".join(out)


def _seq_of(line: bytes) -> int | None:
    """The seq of one history line (the writer puts it first: ``{"seq":12,...``); None for the
    schema line or a damaged line (the reader's gap check names those)."""
    if line.startswith(b'{"seq":'):
        end = line.find(b",", 7)
        try:
            return int(line[7:end])
        except ValueError:
            return None
    try:
        seq = json.loads(line).get("seq")
    except (ValueError, AttributeError):
        return None
    return seq if isinstance(seq, int) else None


def _json(status: int, obj: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(obj).encode()
