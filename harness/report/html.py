"""``report.html`` for one run directory, and ``matrix.html`` for many.

:func:`write_report_html` reads what a run directory holds (see :mod:`harness.report.rundir`:
``scenario.json``, ``plan.toml``, ``record.json``, ``history.jsonl``, ``report.json`` and,
if present, the proxy's mitmproxy flows) and writes one self-contained page (inline CSS and
JS, no network resources; it works from ``file://``):

- a header: scenario name, verdict class (coloured), the checker's summary, the task,
  timings, the expectation, the invariant verdicts with detail and evidence, what the
  workload recorded, the plan, and a list of the faults applied;
- a message sequence chart with four lanes (Client, Collector, Leader, Helper): one row and
  one arrow per request, response and transport error in history order. Labels carry the
  kind, method, status, problem type and a few summary facts; copies the proxy sent itself
  (``copy_of`` / ``origin``) are drawn in another colour and name the original; faults are
  badges on the message they hit (matched by flow id and phase: rule id, action, what
  changed). Control events (plan loads, manual events) are thin divider rows;
- a details pane: clicking a row shows the event, its decoded summary, its faults and the
  decoded body (DAP tree as in ``dap-decode``, or its JSON view). History holds summaries
  only; bodies come from the flows file, decoded now and embedded as JSON. Without a flows
  file the pane says so and shows the summary. The body is the one mitmproxy saved: what was
  *delivered* (after this flow's faults), while the summary is what the proxy *received*.

``report.html#msg=<seq>`` (or ``#flow=<flow id>``) opens with that message selected, so
evidence elsewhere can link to a message. Missing files are named on the page; nothing
here raises for a damaged run directory except an unwritable output file.

The chart is plain HTML rows with ``content-visibility: auto`` (the browser skips layout of
rows off screen), built once on the Python side; the script only handles selection, so a
few thousand messages stay responsive.

:func:`write_matrix_html` writes a scenario x implementation table whose cells are coloured
by verdict class and link (relatively) to each run's ``report.html``.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dap.codec import to_jsonable
from dap.decode_cli import format_tree
from dap.errors import DecodeError
from dap.messages import message_class_for_media_type
from faults.actions import ACTIONS
from faults.dapcodec import message_class
from faults.errors import one_line
from faults.history import Event, event_to_dict, load_history
from faults.network import NET_PHASE, is_net_action, net_action_class
from faults.vocabulary import LINK_ROLES, problem_token
from harness.check.flows import fold_flows

log = logging.getLogger(__name__)

__all__ = [
    "LANES",
    "VERDICT_COLOURS",
    "decode_body",
    "find_flows_file",
    "load_bodies",
    "write_matrix_html",
    "render_report_html",
    "write_report_html",
]

LANES = ("Client", "Collector", "Leader", "Helper")
#: link -> (requesting lane, answering lane), indices into LANES
#: link -> (lane of the sender, lane of the receiver)
_LINK_LANES = {link: (LANES.index(a.capitalize()), LANES.index(b.capitalize())) for link, (a, b) in LINK_ROLES.items()}
#: verdict class -> (background, text) colours; "unknown" when there is no report
VERDICT_COLOURS = {
    "pass": ("#1a7f37", "#ffffff"),
    "clean_failure": ("#9a6700", "#ffffff"),
    "violation": ("#cf222e", "#ffffff"),
    "infra": ("#6e40c9", "#ffffff"),
    "unknown": ("#6e7781", "#ffffff"),
    # a scenario left out: a selected implementation lacks its VDAF (images.toml vdafs)
    "n/a": ("#d0d7de", "#24292f"),
}
#: flows files looked for, in order, when none is given
_FLOWS_NAMES = ("flows.mitm", "flows")
_MAX_TREE_LINES = 400
_MAX_JSON_CHARS = 100_000
_MAX_TEXT_CHARS = 8_000
_MAX_HEX_BYTES = 256


# --- reading the run directory -----------------------------------------------------------------


def _read_json(path: Path, missing: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        missing.append(f"{path.name} is missing")
    except (OSError, ValueError) as exc:
        missing.append(f"{path.name} is unreadable: {_one_line(exc)}")
    return None


def _one_line(exc: BaseException) -> str:
    return one_line(f"{type(exc).__name__}: {one_line(exc)}", limit=300)


def _read_history(path: Path, missing: list[str]) -> list[Event] | None:
    """The typed history (:func:`faults.history.load_history`); what is wrong with the file is
    named on the page."""
    try:
        loaded = load_history(path)
    except FileNotFoundError:
        missing.append(f"{path.name} is missing: no sequence chart")
        return None
    except OSError as exc:
        missing.append(f"{path.name} is unreadable: {_one_line(exc)}")
        return None
    missing.extend(loaded.problems)
    return sorted(loaded.events, key=lambda e: e.seq)


def find_flows_file(run_dir: Path) -> Path | None:
    """The mitmproxy flows file for ``run_dir``: ``flows.mitm`` (or ``flows``) in it, a path
    named in ``flows.path`` in it, else a campaign-wide ``flows.mitm`` in its parent."""
    for name in _FLOWS_NAMES:
        if (run_dir / name).is_file():
            return run_dir / name
    pointer = run_dir / "flows.path"
    if pointer.is_file():
        target = Path(pointer.read_text(encoding="utf-8").strip())
        target = target if target.is_absolute() else run_dir / target
        if target.is_file():
            return target
    if (run_dir.parent / "flows.mitm").is_file():
        return run_dir.parent / "flows.mitm"
    return None


# --- bodies ----------------------------------------------------------------------------------------


def _content(msg: Any) -> bytes:
    try:
        data = msg.get_content(strict=False)
    except Exception:  # odd content-encoding: show what was on the wire
        data = None
    return data if data is not None else (msg.raw_content or b"")


def load_bodies(flows_path: Path, wanted: Iterable[str]) -> dict[str, dict[str, tuple[bytes, str | None]]]:
    """``{flow_id: {"request": (body, content type), "response": (...)}}`` for the wanted
    flow ids found in a mitmproxy flows file (the last saved state of each flow).

    Raises ``OSError`` / ``mitmproxy.exceptions.FlowReadException`` for an unreadable file;
    a file cut short (proxy killed) yields what was read before the cut.
    """
    from mitmproxy import exceptions as mexc
    from mitmproxy import http as mhttp
    from mitmproxy.io import FlowReader

    want = set(wanted)
    out: dict[str, dict[str, tuple[bytes, str | None]]] = {}
    with open(flows_path, "rb") as fh:
        try:
            for flow in FlowReader(fh).stream():
                if flow.id not in want or not isinstance(flow, mhttp.HTTPFlow):
                    continue
                got: dict[str, tuple[bytes, str | None]] = {
                    "request": (_content(flow.request), flow.request.headers.get("content-type"))}
                if flow.response is not None:
                    got["response"] = (_content(flow.response), flow.response.headers.get("content-type"))
                out[flow.id] = got
        except mexc.FlowReadException:
            if not out:
                raise
    return out


def _hex_preview(body: bytes) -> str:
    text = body[:_MAX_HEX_BYTES].hex(" ")
    return text + (f" … ({len(body)} bytes)" if len(body) > _MAX_HEX_BYTES else "")


def decode_body(body: bytes, media_type: str | None, kind: str | None = None, phase: str = "request") -> dict[str, Any]:
    """What the details pane shows for one body, as JSON-able data.

    DAP bodies: ``{"type", "media_type", "length", "tree": [lines], "json": {...}}`` (the
    ``dap-decode`` tree and JSON views); a body that does not decode: ``{"error", "hex"}``;
    problem documents and other text: ``{"text"}``; anything else: ``{"hex"}``.
    """
    out: dict[str, Any] = {"length": len(body), "media_type": media_type}
    if not body:
        out["empty"] = True
        return out
    mt = (media_type or "").split(";", 1)[0].strip().lower()
    cls = message_class_for_media_type(mt)
    if cls is None and not mt.startswith(("application/problem", "text/", "application/json")):
        cls = _class_for_kind(kind, phase)
    if cls is not None:
        out["type"] = cls.__name__
        try:
            msg = cls.decode(body)
        except DecodeError as exc:
            out["error"] = str(exc)
            out["hex"] = _hex_preview(body)
            return out
        except Exception as exc:  # a codec bug must not take the report down
            out["error"] = _one_line(exc)
            out["hex"] = _hex_preview(body)
            return out
        try:
            tree = format_tree(msg)
            if len(tree) > _MAX_TREE_LINES:
                tree = tree[:_MAX_TREE_LINES] + [f"… {len(tree) - _MAX_TREE_LINES} more lines"]
            out["tree"] = tree
            doc = to_jsonable(msg)
            if len(json.dumps(doc)) <= _MAX_JSON_CHARS:
                out["json"] = doc
            else:
                out["json_omitted"] = f"JSON view omitted (over {_MAX_JSON_CHARS} characters)"
        except Exception as exc:  # pragma: no cover - defensive
            out["error"] = f"rendering: {_one_line(exc)}"
        return out
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        out["hex"] = _hex_preview(body)
        return out
    if "json" in mt:
        try:
            text = json.dumps(json.loads(text), indent=2)
        except ValueError:
            pass
    out["text"] = text[:_MAX_TEXT_CHARS] + ("…" if len(text) > _MAX_TEXT_CHARS else "")
    return out


def _class_for_kind(kind: str | None, phase: str) -> Any:
    try:
        return message_class(kind, phase)
    except Exception:
        return None


# --- formatting helpers --------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _utc(t: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(t), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return "?"


def _compact(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, separators=(", ", ": "), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _script_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">."""
    text = json.dumps(data, separators=(",", ":"), default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _verdict_class(value: Any) -> str:
    return value if isinstance(value, str) and value in VERDICT_COLOURS else "unknown"


def _css(cls: str) -> str:
    """A verdict class as a CSS class name (``n/a`` -> ``na``)."""
    return cls.replace("/", "")


def _badge(cls: str, text: str | None = None) -> str:
    return f'<span class="badge v-{_e(_css(cls))}">{_e(text or cls.replace("_", " "))}</span>'


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


# --- the chart -------------------------------------------------------------------------------------


def _label(ev: dict[str, Any], seq_of_flow: Mapping[str, int], proxy_reply: str | None = None) -> str:
    s = ev.get("summary") or {}
    kind = ev.get("kind") or "other"
    phase = ev.get("phase")
    parts: list[str] = []
    if phase == "request":
        parts.append(f"{kind} {ev.get('method', '')}".strip())
        if "step" in s:
            parts.append(f"step {s['step']}")
        ids = s.get("report_ids")
        if isinstance(ids, list) and ids:
            parts.append(f"{len(ids)} report{'s' if len(ids) != 1 else ''}")
    elif phase == "response":
        parts.append(f"{ev.get('status')} {kind}")
        tok = problem_token(s.get("problem_type")) if isinstance(s.get("problem_type"), str) else None
        if tok:
            parts.append(tok)
        states = s.get("prepare_states")
        if isinstance(states, dict) and states:
            counts: dict[str, int] = {}
            for st in states.values():
                counts[str(st)] = counts.get(str(st), 0) + 1
            parts.append(", ".join(f"{n} {st}" for st, n in sorted(counts.items())))
        if "report_count" in s:
            parts.append(f"report_count {s['report_count']}")
    else:
        parts.append(f"✕ {kind}: {ev.get('error') or 'error'}")
    if s.get("decode_error"):
        parts.append("undecodable body")
    if phase == "response" and proxy_reply:
        parts.append(f"reply by the proxy ({proxy_reply})")
    if ev.get("copy_of") or ev.get("origin"):
        of = seq_of_flow.get(ev.get("copy_of") or "")
        what = f"{ev.get('origin') or 'copy'}" + (f" of #{of}" if of is not None else "")
        parts.insert(0, what + (" (kept by the proxy)" if phase == "response" else ""))
    return " · ".join(parts)


def _fault_text(f: dict[str, Any]) -> str:
    changed = f.get("changed") or {}
    return f"{f.get('rule_id')}: {f.get('action')}" + (f" {_compact(changed, 120)}" if changed else "")


def _net_shades(windows: Mapping[str, tuple[str, str, str]]) -> str:
    """The open network windows (faults.network) as shaded bands between their link's lanes:
    a cut link (partition, blackhole) red, a slowed or lossy one amber."""
    out = []
    for rule_id, (link, action, cls) in windows.items():
        a, b = _LINK_LANES.get(link, (2, 2))
        lo, hi = min(a, b), max(a, b)
        out.append(f'<div class="nw {cls}" style="left:{12.5 + 25 * lo}%;width:{max(25 * (hi - lo), 6)}%" '
                   f'title="{_e(f"{rule_id}: {action} on {link}")}"></div>')
    return "".join(out)


def _net_text(ev: dict[str, Any]) -> str:
    c = ev.get("changed") or {}
    state = c.get("state") or ("failed" if c.get("action_failed") else "?")
    extra = {k: c[k] for k in ("trigger", "stopped_by", "packets", "action_failed") if c.get(k)}
    return (f"{ev.get('rule_id')}: {ev.get('action')} {state} on {ev.get('link')} ({c.get('direction', '')})"
            + (f" {_compact(extra, 140)}" if extra else ""))


def _chart_rows(events: list[dict[str, Any]], faults_by_msg: Mapping[int, list[dict[str, Any]]],
                stray_faults: set[int], seq_of_flow: Mapping[str, int], proxy_replies: Mapping[str, str],
                t0: float) -> list[str]:
    rows: list[str] = []
    windows: dict[str, tuple[str, str, str]] = {}  # open network windows: rule -> (link, action, css class)
    for ev in events:
        kind_of_event = ev.get("event")
        seq = ev.get("seq")
        t = f"+{float(ev.get('t_mono', t0)) - t0:.3f}s"
        gutter = f'<span class="t">{t}</span><span class="n">#{_e(seq)}</span>'
        if kind_of_event == "fault" and ev.get("phase") == NET_PHASE:
            state = (ev.get("changed") or {}).get("state")
            action = str(ev.get("action") or "")
            if state == "start":
                cut = is_net_action(action) and net_action_class(action).cuts
                windows[str(ev.get("rule_id"))] = (str(ev.get("link")), action, "cut" if cut else "slow")
            shades = _net_shades(windows)
            if state != "start":
                windows.pop(str(ev.get("rule_id")), None)
            rows.append(f'<div class="row f net">{gutter}<div class="lanes">{shades}</div>'
                        f'<div class="ctl">⚡ {_e(_net_text(ev))}</div></div>')
            continue
        shades = _net_shades(windows) if windows else ""
        if kind_of_event == "control":
            detail = ev.get("detail") or {}
            text = f"{ev.get('what')}" + (f" {_compact(detail, 140)}" if detail else "")
            lanes = f'<div class="lanes">{shades}</div>' if shades else ""
            rows.append(f'<div class="row c">{gutter}{lanes}<div class="ctl">{_e(text)}</div></div>')
            continue
        if kind_of_event == "fault":
            if seq in stray_faults:
                rows.append(f'<div class="row f">{gutter}<div class="ctl">⚡ {_e(_fault_text(ev))} '
                            f'(flow {_e(ev.get("flow_id"))}, no message recorded)</div></div>')
            continue
        if kind_of_event != "message":
            continue
        phase = ev.get("phase") or "request"
        a, b = _LINK_LANES.get(ev.get("link") or "", (2, 2))
        src, dst = (a, b) if phase == "request" else (b, a)
        lo, hi = min(src, dst), max(src, dst)
        left = 12.5 + 25 * lo
        width = max(25 * (hi - lo), 6)
        direction = "rt" if dst >= src else "lt"
        classes = ["row", "m", f"ph-{phase}", direction]
        if ev.get("copy_of") or ev.get("origin"):
            classes.append("copy")
        status = ev.get("status")
        if isinstance(status, int) and status >= 400:
            classes.append("bad")
        fl = faults_by_msg.get(seq, [])
        if fl:
            classes.append("faulted")
        label = _label(ev, seq_of_flow, proxy_replies.get(ev.get("flow_id") or ""))
        badges = ""
        if fl:
            badges = (f'<div class="fb" style="left:{min(left, 37.5)}%">'
                      + "".join(f'<span class="fault">⚡ {_e(_fault_text(f))}</span>' for f in fl) + "</div>")
        rows.append(
            f'<div class="{" ".join(classes)}" data-seq="{_e(seq)}" id="m{_e(seq)}" tabindex="-1">{gutter}'
            f'<div class="lanes">{shades}<div class="ar" style="left:{left}%;width:{width}%" title="{_e(label)}">'
            f'<span class="lbl">{_e(label)}</span></div>{badges}</div></div>'
        )
    return rows


# --- header pieces ----------------------------------------------------------------------------------


def _evidence_links(evidence: Any, index: Mapping[str, Mapping[Any, int]], limit: int = 30) -> list[int]:
    """Message seqs the evidence names: known flow ids (any string), history seqs (ints under
    a key with "seq"), flow seqs (ints under a key with "flow_seq")."""
    found: list[int] = []

    def walk(value: Any, key: str) -> None:
        if len(found) >= limit:
            return
        if isinstance(value, Mapping):
            for k, x in value.items():
                walk(x, str(k).lower())
        elif isinstance(value, (list, tuple)):
            for x in value:
                walk(x, key)
        elif isinstance(value, str) and value in index["flow"]:
            found.append(index["flow"][value])
        elif isinstance(value, int) and not isinstance(value, bool):
            if "flow_seq" in key:
                hit = index["flow_seq"].get(value)
            elif "seq" in key:
                hit = value if value in index["seq"] else None
            else:
                hit = None
            if hit is not None:
                found.append(hit)

    walk(evidence, "")
    return list(dict.fromkeys(found))


def _verdict_table(report: Mapping[str, Any], index: Mapping[str, Mapping[Any, int]]) -> str:
    verdicts = report.get("verdicts") or []
    if not verdicts:
        return "<p class='note'>The report holds no invariant verdicts.</p>"
    out = ["<table class='verdicts'><thead><tr><th>invariant</th><th>result</th><th>detail</th>"
           "<th>evidence</th></tr></thead><tbody>"]
    for v in verdicts:
        valid = v.get("valid")
        res = {True: ("pass", "holds"), False: ("violation", "violated"), None: ("unknown", "unknown")}.get(
            valid, ("unknown", str(valid)))
        evidence = v.get("evidence") or {}
        ev_html = ""
        if evidence:
            short = _compact(evidence, 200)
            full = json.dumps(evidence, indent=2, default=str)
            ev_html = (f"<code>{_e(short)}</code>" if short == _compact(evidence, 10**9)
                       else f"<details><summary><code>{_e(short)}</code></summary><pre>{_e(full)}</pre></details>")
        seqs = _evidence_links(evidence, index)
        if seqs:
            ev_html += "<div class='evlinks'>messages: " + " ".join(
                f'<a href="#msg={n}" data-goto="{n}">#{n}</a>' for n in seqs) + "</div>"
        out.append(f"<tr><td>{_e(v.get('invariant'))}</td><td>{_badge(res[0], res[1])}</td>"
                   f"<td>{_e(v.get('detail', ''))}</td><td>{ev_html}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _record_section(record: Mapping[str, Any]) -> str:
    uploads = record.get("uploads") or []
    ok = sum(1 for u in uploads if u.get("status") == "success")
    parts = [f"<div>Uploads: {len(uploads)} ({ok} accepted, {len(uploads) - ok} refused or failed)"]
    errors = [u for u in uploads if u.get("status") != "success"]
    if errors:
        parts.append("<ul class='tight'>" + "".join(
            f"<li>upload {_e(u.get('index'))}: {_e(u.get('error') or u.get('status'))}</li>" for u in errors[:20])
            + (f"<li>… {len(errors) - 20} more</li>" if len(errors) > 20 else "") + "</ul>")
    parts.append("</div>")
    cols = record.get("collections") or []
    if cols:
        parts.append("<table class='small'><thead><tr><th>collection</th><th>status</th><th>report count</th>"
                     "<th>result</th><th>polls</th><th>error</th></tr></thead><tbody>")
        for c in cols:
            parts.append(f"<tr><td>{_e(c.get('label'))}</td><td>{_e(c.get('status'))}</td>"
                         f"<td>{_e(c.get('report_count'))}</td><td><code>{_e(_compact(c.get('result'), 120))}</code></td>"
                         f"<td>{_e(c.get('polls'))}</td><td>{_e(c.get('error') or '')}</td></tr>")
        parts.append("</tbody></table>")
    infra = record.get("infra_errors") or []
    if infra:
        parts.append("<p>Harness errors:</p><ul class='tight'>" + "".join(f"<li>{_e(x)}</li>" for x in infra) + "</ul>")
    fired = record.get("fired_events") or []
    if fired:
        parts.append(f"<p>Fired events: {_e(', '.join(map(str, fired)))}</p>")
    return "".join(parts)


def _facts(scenario: Mapping[str, Any] | None, record: Mapping[str, Any] | None) -> str:
    rows: list[tuple[str, str]] = []
    if record:
        task = record.get("task") or {}
        vdaf = task.get("vdaf") or {}
        vdaf_text = vdaf.get("type", "?") + "".join(f" {k}={val}" for k, val in vdaf.items() if k != "type")
        rows.append(("task", f"<code>{_e(record.get('task_id', '?'))}</code> · {_e(vdaf_text)} · "
                             f"{_e(task.get('query_type', '?'))} · min batch {_e(task.get('min_batch_size', '?'))}"))
        start, end = record.get("started_wall") or 0, record.get("finished_wall") or 0
        took = f" · {end - start:.2f} s" if start and end and end >= start else ""
        rows.append(("timings", f"{_e(_utc(start))} → {_e(_utc(end))}{_e(took)}"))
    if scenario:
        expect = scenario.get("expect") or {}
        if expect:
            rows.append(("expected", _e(expect.get("outcome", "?"))
                         + (" (complete)" if expect.get("complete") else " (completeness not required)")))
        if scenario.get("spec_section"):
            rows.append(("spec", _e(scenario["spec_section"])))
        if scenario.get("doc"):
            rows.append(("about", _e(scenario["doc"])))
    return "<dl class='facts'>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _plan_text(run_dir: Path, scenario: Mapping[str, Any] | None) -> str | None:
    try:
        return (run_dir / "plan.toml").read_text(encoding="utf-8")
    except OSError:
        pass
    if scenario and scenario.get("plan") is not None:
        return json.dumps(scenario["plan"], indent=2)
    return None


# --- the page --------------------------------------------------------------------------------------


def write_report_html(run_dir: Path, *, flows_path: Path | None = None) -> Path:
    """Write ``run_dir/report.html`` from the files in ``run_dir``; return its path.

    ``flows_path`` overrides where the mitmproxy flows are read from (default:
    :func:`find_flows_file`). Missing or unreadable inputs are named on the page.
    """
    run_dir = Path(run_dir)
    missing: list[str] = []
    scenario = _read_json(run_dir / "scenario.json", missing)
    record = _read_json(run_dir / "record.json", missing)
    report = _read_json(run_dir / "report.json", missing)
    events = _read_history(run_dir / "history.jsonl", missing)

    scenario = scenario if isinstance(scenario, dict) else None
    record = record if isinstance(record, dict) else None
    report = report if isinstance(report, dict) else None
    name = ((scenario or {}).get("name") or (report or {}).get("scenario") or (record or {}).get("scenario")
            or run_dir.name)
    vclass = _verdict_class((report or {}).get("verdict_class"))

    # the checker's grouping: each flow's messages and the faults that acted on it
    flows = fold_flows(events or [])
    events = [event_to_dict(e) for e in events or []]
    messages = [e for e in events if e.get("event") == "message"]
    seq_of_flow = {fid: fl.first_seq for fid, fl in flows.items()
                   if fl.request is not None or fl.response is not None or fl.error is not None}
    # faults -> the message they hit: the flow's message of the fault's phase
    faults_by_msg: dict[int, list[dict[str, Any]]] = {}
    stray: set[int] = set()
    as_dict = {e["seq"]: e for e in events if e.get("event") == "fault"}
    for fl in flows.values():
        for f in fl.faults:
            hit = fl.request if f.phase == "request" else fl.response or fl.error
            hit = hit or fl.request or fl.response or fl.error
            if hit is None:
                stray.add(f.seq)
            else:
                faults_by_msg.setdefault(hit.seq, []).append(as_dict[f.seq])
    # flows the proxy answered itself (its reply replaced the upstream's)
    proxy_replies = {fid: fl.applied("answers_in_place", phase="request")[0].rule_id
                     for fid, fl in flows.items() if fl.answered_by_proxy}

    # bodies
    flows_file = Path(flows_path) if flows_path is not None else find_flows_file(run_dir)
    bodies: dict[str, dict[str, tuple[bytes, str | None]]] = {}
    body_note = ""
    if flows_file is None:
        body_note = "No flows file in the run directory: message bodies are not available, summaries only."
    else:
        try:
            bodies = load_bodies(flows_file, {m.get("flow_id") for m in messages})
        except Exception as exc:  # FlowReadException, OSError: the page still shows the history
            body_note = f"Flows file {flows_file} unreadable ({_one_line(exc)}): summaries only."
            missing.append(body_note)

    t0 = float(events[0].get("t_mono", 0.0)) if events else 0.0
    data_msgs: dict[str, Any] = {}
    for ev in messages:
        seq = ev.get("seq")
        item = {k: ev.get(k) for k in ("seq", "link", "kind", "phase", "flow_id", "flow_seq", "method", "path",
                                       "status", "media_type", "body_len", "copy_of", "origin", "error", "t_wall")}
        item["t_rel"] = round(float(ev.get("t_mono", t0)) - t0, 6)
        item["summary"] = ev.get("summary") or {}
        item["faults"] = [{**{k: f.get(k) for k in ("seq", "rule_id", "action", "phase", "changed")},
                           "changes_message": _changes_message(f.get("action"))}
                          for f in faults_by_msg.get(seq, [])]
        if ev.get("phase") == "response" and ev.get("flow_id") in proxy_replies:
            item["answered_by_proxy"] = proxy_replies[ev["flow_id"]]
        if ev.get("copy_of"):
            item["copy_of_seq"] = seq_of_flow.get(ev["copy_of"])
        phase = ev.get("phase")
        saved = bodies.get(ev.get("flow_id", ""), {}).get(phase or "")
        if phase == "error":
            item["body"] = {"none": "transport error: no body"}
        elif saved is not None:
            body, ctype = saved
            item["body"] = decode_body(body, ctype or ev.get("media_type"), ev.get("kind"), phase or "request")
        elif flows_file is not None and not body_note:
            item["body"] = {"none": "this flow is not in the flows file"}
        data_msgs[str(seq)] = item

    fault_events = [e for e in events if e.get("event") == "fault"]
    rows = _chart_rows(events, faults_by_msg, stray, seq_of_flow, proxy_replies, t0)

    head: list[str] = [
        f"<h1>{_e(name)} {_badge(vclass, vclass.replace('_', ' ') if report else 'not checked')}</h1>"]
    if report and report.get("summary"):
        head.append(f"<p class='summary'>{_e(report['summary'])}</p>")
    if missing:
        head.append("<div class='missing'><b>Missing from this run directory:</b><ul class='tight'>"
                    + "".join(f"<li>{_e(x)}</li>" for x in missing) + "</ul></div>")
    head.append(_facts(scenario, record))
    if report:
        index: dict[str, dict[Any, int]] = {"flow": dict(seq_of_flow), "seq": {}, "flow_seq": {}}
        for ev in messages:
            index["seq"][ev.get("seq")] = ev.get("seq")
            index["flow_seq"].setdefault(ev.get("flow_seq"), ev.get("seq"))
        head.append("<h2>Invariants</h2>" + _verdict_table(report, index))
    if record:
        head.append("<h2>Workload</h2>" + _record_section(record))
    plan = _plan_text(run_dir, scenario)
    if plan:
        head.append(f"<details><summary>Plan</summary><pre>{_e(plan)}</pre></details>")
    if fault_events:
        items = []
        for f in fault_events[:200]:
            target = next((s for s, fl in faults_by_msg.items() if f in fl), None)
            link = f'<a href="#msg={target}" data-goto="{target}">#{target}</a>' if target is not None else \
                ("network" if f.get("phase") == NET_PHASE else "no message")
            items.append(f"<li>{link} ⚡ {_e(_fault_text(f))}</li>")
        more = f"<li>… {len(fault_events) - 200} more</li>" if len(fault_events) > 200 else ""
        head.append(f"<details open><summary>Faults applied ({len(fault_events)})</summary>"
                    f"<ul class='tight faults'>{''.join(items)}{more}</ul></details>")
    elif events:
        head.append("<p class='note'>No fault was applied in this run.</p>")

    counts = {ln: 0 for ln in _LINK_LANES}
    for ev in messages:
        if ev.get("link") in counts:
            counts[ev["link"]] += 1
    stats = " · ".join(f"{ln}: {n}" for ln, n in counts.items())
    lanes_head = "".join(f'<div class="lane" style="left:{12.5 + 25 * i}%">{ln}</div>' for i, ln in enumerate(LANES))
    chart = (
        f"<h2>Messages <small>({len(messages)} events · {_e(stats)})</small></h2>"
        + (f"<p class='note'>{_e(body_note)}</p>" if body_note else "")
        + "<p class='legend'><span class='lg rq'>request</span> <span class='lg rs'>response</span> "
          "<span class='lg er'>transport error</span> <span class='lg cp'>copy sent by the proxy</span> "
          "<span class='fault'>⚡ fault</span> · click a message for details, j / k to step</p>"
        + f'<div class="chart" id="chart"><div class="lanehead"><span class="gut">time · seq</span>'
          f'<div class="lanes">{lanes_head}</div></div>'
        + ("".join(rows) if rows else "<p class='note'>No history events.</p>")
        + "</div>"
    )
    data = {"messages": data_msgs, "bodies": bool(bodies), "body_note": body_note}
    page = _PAGE.format(
        title=_e(f"{name} — {vclass}"),
        css=_CSS,
        head="".join(head),
        chart=chart,
        data=_script_json(data),
        js=_JS,
    )
    return _write(run_dir / "report.html", page)


def _changes_message(action: Any) -> bool:
    """Whether the bytes delivered differ from what the proxy received (the page says the body
    shown is the one as delivered): a changed body or credentials, a proxy answer, a forgery."""
    cls = ACTIONS.get(action) if isinstance(action, str) else None
    return cls is not None and (cls.changes_body or cls.tampers_auth or cls.answers_in_place
                                or (cls.sends_copies and not cls.copies_verbatim))


def render_report_html(run_dir: Path) -> Path | None:
    """:func:`write_report_html` for the run loop: a failure to draw the page is logged, never
    raised (the run's verdict does not depend on its page)."""
    try:
        return write_report_html(run_dir)
    except Exception:
        log.exception("writing report.html for %s", run_dir)
        return None


# --- matrix ---------------------------------------------------------------------------------------


def _cell_get(cell: Mapping[str, Any], *names: str) -> Any:
    for n in names:
        if cell.get(n) is not None:
            return cell[n]
    return None


def write_matrix_html(out_dir: Path, cells: Sequence[Mapping[str, Any]], *, title: str = "faultrun matrix",
                      filename: str = "matrix.html") -> Path:
    """Write ``out_dir/<filename>``: one row per scenario, one column per implementation combo.

    Each cell is a dict: ``scenario`` (required), ``verdict_class`` (``pass`` /
    ``clean_failure`` / ``violation`` / ``infra`` / ``n/a``, a scenario left out as not
    applicable; missing = unknown), ``run_dir`` (its
    ``report.html`` is linked relative to ``out_dir``), optional ``column`` (implementation
    combo, e.g. ``"janus/janus"``; one column when none is given), ``summary`` (tooltip),
    ``expected`` (the scenario's expected outcome, shown once per row), ``exit_code``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Mapping[str, Any]]] = {}
    expected: dict[str, str] = {}
    spec: dict[str, str] = {}
    columns: list[str] = []
    for cell in cells:
        scen = str(_cell_get(cell, "scenario", "name"))
        col = str(_cell_get(cell, "column", "impl") or "")
        if col not in columns:
            columns.append(col)
        rows.setdefault(scen, {})[col] = cell
        if cell.get("expected") is not None:
            expected.setdefault(scen, str(cell["expected"]))
        if cell.get("spec_section"):
            spec.setdefault(scen, str(cell["spec_section"]))
    totals: dict[str, int] = {}
    for cell in cells:
        vc = _verdict_class(_cell_get(cell, "verdict_class", "verdict"))
        totals[vc] = totals.get(vc, 0) + 1

    head_cols = "".join(f"<th>{_e(c or 'verdict')}</th>" for c in columns)
    exp_head = ("<th>spec</th>" if spec else "") + ("<th>expected</th>" if expected else "")
    body: list[str] = []
    for scen, by_col in rows.items():
        tds = []
        for col in columns:
            cell = by_col.get(col)
            if cell is None:
                tds.append("<td class='cell none'>—</td>")
                continue
            vc = _verdict_class(_cell_get(cell, "verdict_class", "verdict"))
            text = vc.replace("_", " ")
            tip = " · ".join(x for x in (
                f"exit {cell['exit_code']}" if cell.get("exit_code") is not None else "",
                f"{float(cell['seconds']):.2f} s" if isinstance(cell.get("seconds"), (int, float)) else "",
                str(cell.get("summary") or "")) if x)
            exp_text = expected.get(scen)
            # Outcome values: pass / clean_failure / pass_or_clean_failure
            surprise = bool(exp_text) and vc not in ("unknown", "n/a") and vc not in exp_text.split("_or_")
            if surprise:
                text += " (unexpected)"
            run = cell.get("run_dir")
            if run is not None:
                target = Path(run)
                target = target if target.is_absolute() else out_dir / target
                rel = os.path.relpath(target / "report.html", out_dir)
                href = urllib.parse.quote(Path(rel).as_posix())
                inner = f'<a href="{_e(href)}">{_e(text)}</a>'
            else:
                inner = _e(text)
            tds.append(f'<td class="cell v-{_css(vc)}{" surprise" if surprise else ""}" data-class="{vc}" '
                       f'title="{_e(tip)}">{inner}</td>')
        exp = ((f"<td>{_e(spec.get(scen, ''))}</td>" if spec else "")
               + (f"<td>{_e(expected.get(scen, '').replace('_', ' '))}</td>" if expected else ""))
        body.append(f"<tr><th scope='row'>{_e(scen)}</th>{exp}{''.join(tds)}</tr>")
    total_html = " ".join(_badge(vc, f"{n} {vc.replace('_', ' ')}") for vc, n in sorted(totals.items()))
    page = _MATRIX_PAGE.format(
        title=_e(title), css=_CSS,
        body=(f"<h1>{_e(title)}</h1><p>{len(rows)} scenarios · {len(cells)} runs · {total_html}</p>"
              f"<table class='matrix'><thead><tr><th>scenario</th>{exp_head}{head_cols}</tr></thead>"
              f"<tbody>{''.join(body)}</tbody></table>"),
    )
    return _write(out_dir / filename, page)


# --- static parts -------------------------------------------------------------------------------------

_VERDICT_CSS = "".join(f".v-{_css(k)}{{background:{bg};color:{fg}}}" for k, (bg, fg) in VERDICT_COLOURS.items())

_CSS = _VERDICT_CSS + """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1f2328;background:#fff}
header,.main{padding:0 16px}
h1{font-size:20px;margin:12px 0 6px}h2{font-size:16px;margin:14px 0 6px}h2 small{font-weight:normal;color:#59636e}
code,pre,.tree{font:12px/1.35 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{white-space:pre-wrap;word-break:break-all;background:#f6f8fa;padding:6px;margin:4px 0}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;vertical-align:middle}
.summary{font-size:15px;margin:4px 0 8px}
.missing{border:1px solid #d4a72c;background:#fff8c5;padding:4px 10px;margin:6px 0}
.note{color:#59636e}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0}
dl.facts dt{color:#59636e}dl.facts dd{margin:0}
table{border-collapse:collapse;margin:4px 0}
th,td{border:1px solid #d1d9e0;padding:3px 6px;text-align:left;vertical-align:top}
thead th{background:#f6f8fa}
ul.tight{margin:2px 0;padding-left:20px}
.evlinks{font-size:12px;margin-top:2px}
.wrap{display:grid;grid-template-columns:minmax(0,1fr) 38%;gap:0}
.main{min-width:0}
aside{position:sticky;top:0;height:100vh;overflow:auto;border-left:1px solid #d1d9e0;padding:8px 12px;background:#fbfbfc}
aside h3{margin:4px 0;font-size:15px}
aside table{width:100%;table-layout:fixed}aside td{word-break:break-all}
aside td:first-child{color:#59636e;width:110px;word-break:normal}
aside .fault{display:block;white-space:normal;word-break:break-all;margin:2px 0}
.chart{position:relative;border:1px solid #d1d9e0;margin-bottom:40px}
.chart>.row,.lanehead{position:relative;display:block;height:36px;border-bottom:1px solid #f0f2f4}
.chart>.row.faulted{height:56px}
.chart>.row{content-visibility:auto;contain-intrinsic-size:auto 36px}
.chart>.row.faulted{contain-intrinsic-size:auto 56px}
.lanehead{position:sticky;top:0;z-index:2;background:#f6f8fa;height:30px;border-bottom:1px solid #d1d9e0}
.lanehead .gut{position:absolute;left:6px;top:6px;color:#59636e;font-size:12px}
.lane{position:absolute;top:5px;transform:translateX(-50%);font-weight:600;background:#fff;border:1px solid #8c959f;
 border-radius:4px;padding:0 10px}
.lanes{position:absolute;left:120px;right:0;top:0;bottom:0;
 background:linear-gradient(to right,transparent calc(12.5% - 1px),#c5ccd3 calc(12.5% - 1px),#c5ccd3 12.5%,transparent 12.5%,
 transparent calc(37.5% - 1px),#c5ccd3 calc(37.5% - 1px),#c5ccd3 37.5%,transparent 37.5%,
 transparent calc(62.5% - 1px),#c5ccd3 calc(62.5% - 1px),#c5ccd3 62.5%,transparent 62.5%,
 transparent calc(87.5% - 1px),#c5ccd3 calc(87.5% - 1px),#c5ccd3 87.5%,transparent 87.5%)}
.lanehead .lanes{background:none}
.row .t{position:absolute;left:6px;top:10px;font:11px ui-monospace,monospace;color:#59636e}
.row .n{position:absolute;left:72px;top:10px;font:11px ui-monospace,monospace;color:#8c959f}
.row.m{cursor:pointer}
.row.m:hover{background:#f3f6fa}
.row.sel{background:#ddf4ff!important}
.ar{position:absolute;top:22px;height:0;border-top:2px solid #0969da}
.ar::after{content:"";position:absolute;top:-7px;border:6px solid transparent}
.rt .ar::after{right:-2px;border-left:9px solid #0969da;border-right:0}
.lt .ar::after{left:-2px;border-right:9px solid #0969da;border-left:0}
.ph-response .ar{border-top-style:dashed;border-top-color:#1a7f37}
.rt.ph-response .ar::after{border-left-color:#1a7f37}.lt.ph-response .ar::after{border-right-color:#1a7f37}
.bad .ar{border-top-color:#bc4c00}.rt.bad .ar::after{border-left-color:#bc4c00}.lt.bad .ar::after{border-right-color:#bc4c00}
.ph-error .ar{border-top:2px dotted #cf222e}
.ph-error .ar::after{content:"✕";border:0;top:-11px;color:#cf222e;font-weight:700}
.rt.ph-error .ar::after{right:-6px}.lt.ph-error .ar::after{left:-6px}
.copy .ar{border-top-color:#8250df}.rt.copy .ar::after{border-left-color:#8250df}.lt.copy .ar::after{border-right-color:#8250df}
.lbl{position:absolute;bottom:2px;left:-50px;right:-50px;text-align:center;white-space:nowrap;overflow:hidden;
 text-overflow:ellipsis;font-size:12px}
.ph-error .lbl{color:#cf222e}.copy .lbl{color:#8250df}.bad .lbl{color:#bc4c00}
.fb{position:absolute;top:30px;right:4px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.fault{display:inline-block;background:#ffebe9;border:1px solid #ff8182;color:#82071e;border-radius:4px;padding:0 5px;
 margin-right:4px;font-size:12px}
.row.c,.row.f{height:22px;contain-intrinsic-size:auto 22px}
.row.c .t,.row.f .t,.row.c .n,.row.f .n{top:4px}
.ctl{position:absolute;left:120px;right:0;top:3px;text-align:center;font-size:11px;color:#59636e;white-space:nowrap;
 overflow:hidden;text-overflow:ellipsis;border-top:1px dashed #d1d9e0}
.row.f .ctl{color:#82071e}
.nw{position:absolute;top:0;bottom:0;pointer-events:none}
.nw.cut{background:repeating-linear-gradient(135deg,rgba(207,34,46,.13) 0 6px,rgba(207,34,46,.05) 6px 12px)}
.nw.slow{background:rgba(191,135,0,.10)}
.row.net .ctl{background:#fff8f0}
.legend .lg{display:inline-block;padding-left:26px;position:relative;margin-right:8px}
.legend .lg::before{content:"";position:absolute;left:0;top:50%;width:22px;border-top:2px solid #0969da}
.legend .rs::before{border-top:2px dashed #1a7f37}.legend .er::before{border-top:2px dotted #cf222e}
.legend .cp::before{border-top-color:#8250df}
.tabs button{font:inherit;font-size:12px;padding:1px 8px;margin-right:4px;cursor:pointer}
.tabs button.on{background:#0969da;color:#fff;border-color:#0969da}
.tree{white-space:pre;overflow-x:auto;background:#f6f8fa;padding:6px;margin:4px 0}
table.matrix td.cell{text-align:center;min-width:90px}
table.matrix td.cell a{color:inherit;display:block}
table.matrix td.none{color:#8c959f}
table.matrix td.surprise{font-weight:700;outline:3px solid #1f2328;outline-offset:-3px}
"""

_JS = r"""
(function(){
'use strict';
var D = JSON.parse(document.getElementById('faultrun-data').textContent);
var M = D.messages, pane = document.getElementById('details'), chart = document.getElementById('chart');
var order = Object.keys(M).map(Number).sort(function(a,b){return a-b;});
var current = null, view = 'tree';
function esc(s){return String(s).replace(/[&<>"']/g,function(c){return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c];});}
function row(k,v){return v===null||v===undefined||v===''?'':'<tr><td>'+esc(k)+'</td><td>'+v+'</td></tr>';}
function bodyHtml(m){
  var b = m.body;
  if(!b){return '<p class="note">'+esc(D.body_note||'No body recorded for this message.')+'</p>';}
  if(b.none){return '<p class="note">'+esc(b.none)+'</p>';}
  var h = '<p class="note">'+esc(b.type||b.media_type||'body')+' · '+esc(b.length)+' bytes'
    +(m.faults.some(function(f){return f.changes_message;})?' · as delivered, after this message\'s faults (the summary is what the proxy received)':'')+'</p>';
  if(b.empty){return h+'<p class="note">(empty body)</p>';}
  if(b.error){h+='<p class="fault">decode error: '+esc(b.error)+'</p>';}
  if(b.tree){
    h+='<div class="tabs"><button data-view="tree" class="'+(view==='tree'?'on':'')+'">tree</button>'
      +'<button data-view="json" class="'+(view==='json'?'on':'')+'">JSON</button></div>';
    if(view==='json'){h+= b.json ? '<pre class="tree body-json">'+esc(JSON.stringify(b.json,null,2))+'</pre>'
                                  : '<p class="note">'+esc(b.json_omitted||'no JSON view')+'</p>';}
    else{h+='<pre class="tree body-tree">'+esc(b.type+'\n'+b.tree.join('\n'))+'</pre>';}
  }
  if(b.text!==undefined){h+='<pre class="tree body-text">'+esc(b.text)+'</pre>';}
  if(b.hex){h+='<pre class="tree body-hex">'+esc(b.hex)+'</pre>';}
  return h;
}
function show(seq, scroll){
  var m = M[seq]; if(!m){return;}
  if(current!==null){var old=document.getElementById('m'+current); if(old){old.classList.remove('sel');}}
  current = seq;
  var el = document.getElementById('m'+seq);
  if(el){el.classList.add('sel'); if(scroll){el.scrollIntoView({block:'center'});}}
  var h = '<h3>#'+esc(m.seq)+' '+esc(m.kind||'other')+' '+esc(m.phase)+'</h3><table>'
    + row('link', esc(m.link||'?')) + row('method / path', esc(m.method+' '+m.path))
    + row('status', m.status===null?'':esc(m.status)) + row('media type', m.media_type?esc(m.media_type):'')
    + row('body length', m.body_len==null?'':esc(m.body_len)) + row('time', '+'+esc(m.t_rel.toFixed(3))+' s')
    + row('flow', esc(m.flow_id)+' (flow_seq '+esc(m.flow_seq)+')')
    + row('copy', (m.copy_of||m.origin)?esc((m.origin||'copy')+(m.copy_of?' of flow '+m.copy_of:''))
          +(m.copy_of_seq!==undefined&&m.copy_of_seq!==null?' <a href="#msg='+m.copy_of_seq+'" data-goto="'+m.copy_of_seq+'">#'+m.copy_of_seq+'</a>':''):'')
    + row('error', m.error?esc(m.error):'')
    + row('answered by', m.answered_by_proxy?'the proxy (rule '+esc(m.answered_by_proxy)+'), not the upstream':'')
    + '</table>';
  if(m.faults.length){
    h += '<h3>Faults</h3>' + m.faults.map(function(f){
      return '<div class="fault fault-detail">⚡ '+esc(f.rule_id)+': '+esc(f.action)+' ('+esc(f.phase)+')'
        +(f.changed&&Object.keys(f.changed).length?' '+esc(JSON.stringify(f.changed)):'')+'</div>';}).join('');
  }
  h += '<h3>Summary</h3><pre class="tree summary-json">'+esc(JSON.stringify(m.summary,null,2))+'</pre>';
  h += '<h3>Body</h3>' + bodyHtml(m);
  pane.innerHTML = h;
  pane.scrollTop = 0;
  if(history.replaceState){history.replaceState(null,'','#msg='+seq);}
}
chart.addEventListener('click', function(e){
  var r = e.target.closest('[data-seq]'); if(r){show(Number(r.getAttribute('data-seq')), false);}
});
document.addEventListener('click', function(e){
  var g = e.target.closest('[data-goto]'); if(g){e.preventDefault(); show(Number(g.getAttribute('data-goto')), true);}
  var b = e.target.closest('button[data-view]');
  if(b){view=b.getAttribute('data-view'); if(current!==null){var s=pane.scrollTop; show(current,false); pane.scrollTop=s;}}
});
document.addEventListener('keydown', function(e){
  if(e.target.tagName==='INPUT'||e.ctrlKey||e.metaKey||e.altKey){return;}
  if(e.key!=='j'&&e.key!=='k'){return;}
  var i = current===null ? -1 : order.indexOf(current);
  i = e.key==='j' ? Math.min(order.length-1, i+1) : Math.max(0, i-1);
  if(order.length){show(order[i], true);}
});
function fromHash(){
  var h = decodeURIComponent(location.hash.slice(1)), mm;
  if((mm=/^msg=(\d+)$/.exec(h))){show(Number(mm[1]), true);}
  else if((mm=/^flow=(.+)$/.exec(h))){
    for(var i=0;i<order.length;i++){if(M[order[i]].flow_id===mm[1]){show(order[i], true);break;}}
  }
}
window.addEventListener('hashchange', fromHash);
fromHash();
document.body.setAttribute('data-ready','1');
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style></head>
<body>
<div class="wrap">
<div class="main">
<header>{head}</header>
{chart}
</div>
<aside id="details"><p class="note">Click a message in the chart to see its details and decoded body.</p></aside>
</div>
<script type="application/json" id="faultrun-data">{data}</script>
<script>{js}</script>
</body></html>
"""

_MATRIX_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style></head>
<body data-ready="1"><div class="main">{body}</div></body></html>
"""
