"""The fault proxy addon: classify each flow, record it, match the plan's rules, apply actions.

One mitmdump process serves every link as a reverse proxy (``--mode
reverse:URL@127.0.0.1:PORT`` per link); ``faultrun_links`` maps listen ports to links.

Options (declared in :meth:`FaultProxyAddon.load`, parsed once in ``configure``):

``faultrun_plan``        plan file (TOML, or JSON by ``.json``); empty: no rules
``faultrun_links``       ``PORT=LINK[,PORT=LINK...]``, e.g. ``8081=client->leader``
``faultrun_history``     JSONL history file (appended); empty: history kept in memory only
``faultrun_control``     loopback port of the control channel; 0: no control channel
``faultrun_control_host`` address the control channel binds (default 127.0.0.1; the docker
                        backend's proxy container binds 0.0.0.0 and publishes it on the host's loopback)
``faultrun_token_file``  file holding the control token (required with a control port)

Hooks are async (delays and held flows never block other flows) and thin: they
return early for flows that already failed or are not live, record every message, and
never match copies the proxy sent itself (``flow.is_replay`` / ``faultrun.copy`` metadata).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http

from faults import dapcodec
from faults.errors import PlanError
from faults.history import HistoryWriter, RecordingError
from faults.plan import Matcher, Plan, load_plan
from faults.vocabulary import LINKS, classify, problem_uri
from proxy_addons.control import ControlServer
from proxy_addons.nettriggers import NetTriggers
from proxy_addons.runtime import META_COPY, FlowInfo, RuleContext, RunState, events_for

__all__ = ["FaultProxyAddon", "parse_links"]

log = logging.getLogger(__name__)


def parse_links(text: str) -> dict[int, str]:
    """``"8081=client->leader,8082=leader->helper"`` -> ``{8081: "client->leader", ...}``."""
    out: dict[int, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        port_s, sep, link = part.partition("=")
        if not sep:
            raise ValueError(f"{part!r} is not PORT=LINK")
        try:
            port = int(port_s)
        except ValueError:
            raise ValueError(f"{port_s!r} is not a port number") from None
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
        link = link.strip()
        if link not in LINKS:
            raise ValueError(f"unknown link {link!r} (known: {', '.join(LINKS)})")
        if port in out:
            raise ValueError(f"port {port} given twice")
        out[port] = link
    return out


def _media_type(msg: http.Message | None) -> str | None:
    if msg is None:
        return None
    for name, value in msg.headers.fields:  # cheaper than the multidict lookup
        if name.lower() == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return None


class FaultProxyAddon:
    """Applies a :class:`faults.plan.Plan` to the traffic of every link; see module docstring."""

    def __init__(self) -> None:
        self.links: dict[int, str] = {}
        self.state: RunState | None = None
        self.history: HistoryWriter = HistoryWriter(None)
        self.sender: Any = None  # None: mitmproxy's replay.client; tests inject a callable
        self.control: Any = None
        self._infos: dict[str, FlowInfo] = {}
        #: message triggers of the plan's network rules (faults.network; applied by the harness)
        self.net = NetTriggers(self.history)

    # --- options --------------------------------------------------------------------------

    def load(self, loader: Any) -> None:
        loader.add_option("faultrun_plan", str, "", "dap-faultrun: fault plan file (TOML, or JSON by .json suffix).")
        loader.add_option("faultrun_links", str, "",
                          "dap-faultrun: listen ports to links, PORT=LINK[,PORT=LINK...]; "
                          "links: client->leader, collector->leader, leader->helper.")
        loader.add_option("faultrun_history", str, "", "dap-faultrun: JSONL history file (appended).")
        loader.add_option("faultrun_control", int, 0, "dap-faultrun: loopback port of the control channel (0: off).")
        loader.add_option("faultrun_token_file", str, "", "dap-faultrun: file with the control-channel token.")
        loader.add_option("faultrun_control_host", str, "127.0.0.1",
                          "dap-faultrun: address the control channel binds (default 127.0.0.1).")

    def configure(self, updated: set[str]) -> None:
        if "faultrun_links" in updated:
            try:
                self.links = parse_links(ctx.options.faultrun_links)
            except ValueError as exc:
                raise exceptions.OptionsError(f"faultrun_links: {exc}") from exc
        if "faultrun_history" in updated:
            path = ctx.options.faultrun_history
            try:
                new = HistoryWriter(Path(path)) if path else HistoryWriter(None)
            except OSError as exc:
                raise exceptions.OptionsError(f"faultrun_history: cannot open {path!r}: {exc.strerror}") from exc
            self.history.close()
            self.history = new
            self.net.history = new
            if self.state is not None:
                self.state.history = new
        if "faultrun_plan" in updated or self.state is None:
            path = ctx.options.faultrun_plan
            try:
                plan = load_plan(path) if path else Plan()
            except PlanError as exc:
                raise exceptions.OptionsError(f"faultrun_plan: {exc}") from exc
            self.set_plan(plan, why="plan_loaded")
        if "faultrun_control" in updated or "faultrun_token_file" in updated:
            port = ctx.options.faultrun_control
            if port and not ctx.options.faultrun_token_file:
                raise exceptions.OptionsError("faultrun_control needs faultrun_token_file (the control token)")
            if port and not 0 < port < 65536:
                raise exceptions.OptionsError(f"faultrun_control: port {port} out of range")
            if ctx.options.faultrun_token_file:
                try:
                    token = Path(ctx.options.faultrun_token_file).read_text().strip()
                except OSError as exc:
                    raise exceptions.OptionsError(f"faultrun_token_file: {exc.strerror}") from exc
                if len(token) < 16:
                    raise exceptions.OptionsError("faultrun_token_file: token shorter than 16 characters")

    def set_plan(self, plan: Plan, *, why: str) -> None:
        """Install a plan (fresh run state; held flows released)."""
        if self.state is None:
            self.state = RunState(plan, self.history, self._send)
            self.history.control(why, seed=plan.seed, rules=[r.id for r in plan.rules])
        else:
            self.state.replace_plan(plan, why=why)
        self.net.set_plan(plan)

    def _send(self, copy: http.HTTPFlow) -> None:
        if self.sender is not None:
            self.sender(copy)
        else:
            ctx.master.commands.call("replay.client", [copy])

    # --- lifecycle ----------------------------------------------------------------------------

    async def running(self) -> None:
        port = ctx.options.faultrun_control
        if port:
            token = Path(ctx.options.faultrun_token_file).read_text().strip()
            self.control = ControlServer(self, token=token)
            await self.control.start(ctx.options.faultrun_control_host or "127.0.0.1", port)

    async def done(self) -> None:
        if self.control is not None:
            await self.control.stop()
            self.control = None
        self.net.release_all()
        if self.state is not None:
            self.state.release_all(why="shutdown")
            for task in list(self.state.tasks):
                task.cancel()
        self.history.close()

    # --- hooks ------------------------------------------------------------------------------------

    def _info(self, flow: http.HTTPFlow) -> FlowInfo:
        info = self._infos.get(flow.id)
        if info is None:
            method, path = flow.request.method, flow.request.path
            c = classify(method, path)
            mode = flow.client_conn.proxy_mode
            link = self.links.get(mode.custom_listen_port) if mode.custom_listen_port is not None else None
            copy = flow.metadata.get(META_COPY)
            if copy is None and flow.is_replay:
                copy = {"origin": "replay"}
            assert self.state is not None
            info = FlowInfo(link, c.kind, c.task_id, c.job_id, self.state.next_flow_seq(), method, path, copy)
            self._infos[flow.id] = info
        return info

    def _record(self, flow: http.HTTPFlow, info: FlowInfo, phase: str, error: str | None = None) -> None:
        msg = flow.request if phase == "request" else flow.response
        summary: dict[str, Any] = {}
        media = _media_type(msg)
        body = b""
        if msg is not None and phase != "error":
            body = msg.raw_content or b""
            if info.kind is not None or (media and media.startswith("application/")):
                summary = dapcodec.summarize(info.kind, phase, media, body)
        if phase == "request":
            info.req_summary = summary
        elif phase == "response":
            info.resp_summary = summary
        if "report_ids" in summary and self.state is not None:
            self.state.register_reports(summary["report_ids"])
        if info.task_id:
            summary = {"task_id": info.task_id, **summary}
        if info.job_id:
            summary = {"job_id": info.job_id, **summary}
        self.history.message(
            link=info.link, kind=info.kind, phase=phase, flow_id=flow.id, flow_seq=info.flow_seq,
            method=info.method, path=info.path,
            status=flow.response.status_code if (flow.response is not None and phase == "response") else None,
            media_type=media if phase != "error" else None, body_len=len(body), summary=summary,
            copy_of=(info.copy or {}).get("of"), origin=(info.copy or {}).get("origin"), error=error,
            copy_rule=(info.copy or {}).get("rule_id"),
        )

    # --- recording is never lossy -------------------------------------------------------------------

    def _record_or_refuse(self, flow: http.HTTPFlow, info: FlowInfo, phase: str, error: str | None = None) -> bool:
        """Record one message; if that fails, the flow does not go on unrecorded (False)."""
        try:
            self._record(flow, info, phase, error)
        except Exception as exc:
            self._refuse_unrecorded(flow, phase, exc)
            return False
        return True

    def _refuse_unrecorded(self, flow: http.HTTPFlow, phase: str, exc: BaseException) -> None:
        """A history write failed: note it (the run becomes inconclusive) and answer 502 with a
        problem document naming the proxy instead of letting the message through unrecorded
        (mitmproxy's own ``save`` addon fails loudly too)."""
        if not isinstance(exc, RecordingError):  # the writer notes its own failures
            self.history.failures.append({"seq": -1, "error": f"recording a {phase}: {type(exc).__name__}: {exc}"})
        log.error("faultrun: recording a %s failed, answering 502: %s", phase, exc)
        if phase == "error" or not flow.live:
            return
        doc = {"type": "about:blank", "status": 502, "title": "dap-faultrun fault proxy: the message could not be "
               "recorded in the history, so it was not forwarded", "detail": str(exc)[:300]}
        flow.response = http.Response.make(502, json.dumps(doc).encode(),
                                           {"Content-Type": "application/problem+json"})

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None or flow.error is not None or not flow.live or self.state is None:
            return
        info = self._info(flow)
        if not self._record_or_refuse(flow, info, "request"):
            info.answered = True
            return
        await self._net_trigger(flow, info, "request")
        if info.copy is None and self.state.candidates("request", info.kind):
            await self._apply(flow, info, "request")

    async def response(self, flow: http.HTTPFlow) -> None:
        if self.state is None:
            return
        info = self._infos.get(flow.id)
        if info is None:
            if flow.error is not None or not flow.live:
                return
            info = self._info(flow)
        if not self._record_or_refuse(flow, info, "response"):
            self._finish(flow, info)
            return
        await self._net_trigger(flow, info, "response")
        if (flow.live and flow.error is None and info.copy is None and not info.answered
                and self.state.candidates("response", info.kind)):
            await self._apply(flow, info, "response")
            if flow.error is not None:  # killed in the response hook: mitmproxy fires no error hook
                self._record_or_refuse(flow, info, "error", error=flow.error.msg)
        self._finish(flow, info)

    async def error(self, flow: http.HTTPFlow) -> None:
        info = self._infos.get(flow.id)
        if info is None or self.state is None:
            return
        self._record_or_refuse(flow, info, "error", error=flow.error.msg if flow.error else "error")
        self._finish(flow, info)

    def _finish(self, flow: http.HTTPFlow, info: FlowInfo) -> None:
        for fut in info.release:
            if not fut.done():
                fut.set_result(f"after flow {info.flow_seq}")
        info.release.clear()
        self._infos.pop(flow.id, None)
        if flow.response is not None and self.state is not None:
            for name in events_for(info.kind, flow.response.status_code):
                self.state.fire_event(name)

    async def _net_trigger(self, flow: http.HTTPFlow, info: FlowInfo, phase: str) -> None:
        """A network rule's window opens on this message: tell the harness, and hold the message
        until the rule is in place (:mod:`proxy_addons.nettriggers`)."""
        if not self.net.triggers:
            return
        status = flow.response.status_code if (phase == "response" and flow.response is not None) else None
        try:
            fired = self.net.match(link=info.link, kind=info.kind, phase=phase, events=events_for(info.kind, status),
                                   flow_seq=info.flow_seq, is_copy=info.copy is not None)
        except RecordingError as exc:
            self._refuse_unrecorded(flow, phase, exc)
            return
        await self.net.hold(fired)

    # --- matching -----------------------------------------------------------------------------------

    async def _apply(self, flow: http.HTTPFlow, info: FlowInfo, phase: str) -> None:
        state = self.state
        assert state is not None
        for rs in state.candidates(phase, info.kind):
            if not self._matches(rs.rule.match, flow, info, phase):
                continue
            action = rs.rule.action
            rctx = RuleContext(state, rs, flow, info, phase)
            if action.observes and action.observe(flow, rctx):
                continue
            if not state.decide(rs):
                continue
            try:
                await action.apply(flow, rctx)
            except RecordingError as exc:  # the fault happened but is not in the history: refuse the flow
                self._refuse_unrecorded(flow, phase, exc)
                info.answered = True
                break
            except Exception as exc:  # an action bug is recorded as such, the flow goes on
                log.exception("faultrun: action %s of rule %s failed", type(action).__name__, rs.rule.id)
                try:
                    rctx.record(action_failed=f"{type(exc).__name__}: {exc}")
                except RecordingError as rec_exc:
                    self._refuse_unrecorded(flow, phase, rec_exc)
                    info.answered = True
                    break
            if phase == "request" and flow.response is not None:
                info.answered = True  # the proxy answered: response rules do not apply
                break
            if flow.error is not None or not flow.live:
                break

    def _matches(self, m: Matcher, flow: http.HTTPFlow, info: FlowInfo, phase: str) -> bool:
        if m.link is not None and m.link != info.link:
            return False
        if m.kind is not None and m.kind != info.kind:
            return False
        if m.task_id is not None and m.task_id != info.task_id:
            return False
        if m.job_id is not None and m.job_id != info.job_id:
            return False
        if m.status is not None and (flow.response is None or flow.response.status_code != m.status):
            return False
        if m.step is not None and info.req_summary.get("step") != m.step:
            return False
        if m.report_id is not None and m.report_id.lower() not in info.report_ids(phase):
            return False
        if m.report_index is not None:
            index = self.state.report_index if self.state else {}
            if not any(index.get(r) == m.report_index for r in info.report_ids(phase)):
                return False
        if m.problem_type is not None:
            if info.resp_summary.get("problem_type") != problem_uri(m.problem_type):
                return False
        return True

    # --- used by the control channel ------------------------------------------------------------------

    def fire_event(self, name: str) -> int:
        assert self.state is not None
        self.history.control("event", name=name)
        return self.state.fire_event(name)

    def new_segment(self, *, history: bool, flows: str | None) -> str | None:
        """``/segment`` (:mod:`proxy_addons.control`): a new history segment if ``history``;
        flows saved to ``flows/<flows>`` beside the history from now on, or no longer (``""``),
        or as they were (None). Returns the flows file now written (None: none)."""
        if history:
            self.history.rotate()
        if flows is not None:
            if flows and self.history.path is None:
                raise ValueError("flows need a history file (faultrun_history): they are saved beside it")
            target = str(self.history.path.parent / "flows" / flows) if flows else None  # type: ignore[union-attr]
            # mitmproxy's save addon closes the previous file (and strftime-formats the path)
            ctx.options.update(save_stream_file=None if target is None else target.replace("%", "%%"))
        try:
            current = ctx.options.save_stream_file
        except AttributeError:  # no save addon (an in-process test)
            return None
        return current.replace("%%", "%") if current else None
