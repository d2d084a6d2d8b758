"""The pages of a merged campaign (``faultrun merge``): ``junit.xml`` and ``report.html``.

Both are drawn from the merged report as plain data (``MergedReport.to_dict()`` of
:mod:`harness.campaign.merge`): shards with their rates, failures deduplicated by shrunk plan
with the shards that reported them. The page is self-contained (inline CSS, no script) and
links each failure's run directory (its ``report.html``, the sequence chart) relatively.
"""

from __future__ import annotations

import html
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.report.html import VERDICT_COLOURS

__all__ = ["write_merged_html", "write_merged_junit"]


def write_merged_junit(path: Path, merged: Mapping[str, Any]) -> None:
    """One testsuite: a testcase per shard (an error if it is missing or stopped by infra
    errors) and one per failure (a ``failure`` element with its reproduction command)."""
    root = ET.Element("testsuites", name="faultrun-merge")
    suite = ET.SubElement(root, "testsuite", name="faultrun.campaign")
    tests = failures = errors = 0
    for s in merged["shards"]:
        case = ET.SubElement(suite, "testcase", classname="faultrun.campaign.shards", name=f"shard {s['shard']}",
                             time=f"{s['elapsed_s']:.3f}")
        tests += 1
        if s["infra_aborted"]:
            e = ET.SubElement(case, "error", type="infra", message=f"shard {s['shard']}: stopped by infrastructure "
                                                                   "errors")
            e.text = s["dir"]
            errors += 1
    for i in merged["missing_shards"]:
        case = ET.SubElement(suite, "testcase", classname="faultrun.campaign.shards", name=f"shard {i} (missing)",
                             time="0")
        ET.SubElement(case, "error", type="infra", message=f"shard {i}: no artifacts")
        tests += 1
        errors += 1
    for n, f in enumerate(merged["failures"], 1):
        sig = " ".join(f["signature"])
        case = ET.SubElement(suite, "testcase", classname="faultrun.campaign.failures", name=f"failure {n}: {sig}",
                             time="0")
        el = ET.SubElement(case, "failure", type=f["kind"], message=f"{f['kind']}: {f['summary']}"[:500])
        shards = ", ".join(f"{x['shard']} ({x['source']})" for x in f["found_by"])
        el.text = f"{f['command']}\nreported by shard(s): {shards}"
        tests += 1
        failures += 1
    for el, value in (("tests", tests), ("failures", failures), ("errors", errors), ("skipped", 0)):
        suite.set(el, str(value))
    suite.set("time", f"{merged['wall_s']:.3f}")
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1f2328}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;margin:4px 0} th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;
vertical-align:top} th{background:#f6f8fa} td.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600}
code{font:12px ui-monospace,monospace;background:#f6f8fa;padding:1px 4px;border-radius:4px;word-break:break-all}
.note{color:#9a6700}
"""


def _badge(kind: str) -> str:
    bg, fg = VERDICT_COLOURS.get("violation" if kind != "clean_failure" and kind != "pass" else kind,
                                 VERDICT_COLOURS["unknown"])
    return f'<span class="badge" style="background:{bg};color:{fg}">{html.escape(kind)}</span>'


def _link(out_dir: Path, target: str | None, text: str) -> str:
    if not target:
        return html.escape(text)
    try:
        rel = os.path.relpath(target, out_dir)
    except ValueError:
        rel = target
    return f'<a href="{html.escape(rel)}">{html.escape(text)}</a>'


def write_merged_html(path: Path, merged: Mapping[str, Any]) -> Path:
    """``report.html`` of a merged campaign (module docs)."""
    out_dir = path.parent
    e = html.escape
    code = merged["exit_code"]
    verdicts = ", ".join(f"{k} {n}" for k, n in sorted(merged["verdicts"].items())) or "no runs"
    status = "failures found" if code == 1 else "incomplete (infrastructure)" if code == 3 else "no failure"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>faultrun merge: {e(status)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>faultrun merge: {len(merged['shards'])} shard(s), {e(status)} (exit {code})</h1>",
             f"<p>{merged['examples_run']} generated examples ({merged['runs']} runs incl. shrinking, "
             f"{merged['replayed']} replayed from the example database) in {merged['wall_s'] / 60:.1f} min wall: "
             f"<b>{merged['examples_per_min']:.1f} examples/min</b>; {e(verdicts)}; "
             f"{len(merged['failures'])} distinct failure(s).</p>"]
    if merged["overlap"] is not None:
        parts.append(f"<p>Examples generated by more than one shard: {merged['overlap']}.</p>")
    if merged["missing_shards"]:
        parts.append(f"<p class='note'>Missing shards: {', '.join(map(str, merged['missing_shards']))}.</p>")
    parts += [f"<p class='note'>{e(n)}</p>" for n in merged["notes"]]
    parts.append("<h2>Failures (deduplicated by shrunk plan)</h2>")
    if not merged["failures"]:
        parts.append("<p>None.</p>")
    else:
        parts.append("<table><tr><th>#</th><th>kind</th><th>signature / summary</th><th>reported by</th>"
                     "<th>reproduce</th></tr>")
        for n, f in enumerate(merged["failures"], 1):
            rows = []
            for x in f["found_by"]:
                when = time.strftime("%H:%M:%S", time.localtime(x["found_wall"])) if x["found_wall"] else "?"
                reach = f", reached it {x['reach_s']:.1f} s after the first find" if x.get("reach_s") is not None \
                    else ""
                run = _link(out_dir, str(Path(x["run_dir"]) / "report.html") if x.get("run_dir") else None,
                            "run")
                rows.append(f"shard {e(x['shard'])}: {e(x['source'])} at {when}{e(reach)} ({run}, "
                            f"{_link(out_dir, x.get('failure_dir'), 'files')})")
            parts.append(f"<tr><td class='n'>{n}</td><td>{_badge(f['kind'])}</td>"
                         f"<td><code>{e(' '.join(f['signature']))}</code><br>{e(f['summary'])}</td>"
                         f"<td>{'<br>'.join(rows)}</td><td><code>{e(f['command'])}</code></td></tr>")
        parts.append("</table>")
    parts.append("<h2>Shards</h2><table><tr><th>shard</th><th>seed</th><th>examples</th><th>replayed</th>"
                 "<th>runs</th><th>min</th><th>examples/min</th><th>verdicts</th><th>failures</th><th>exit</th>"
                 "<th>artifacts</th></tr>")
    for s in merged["shards"]:
        v = ", ".join(f"{k} {n}" for k, n in sorted(s["verdicts"].items()))
        note = " (stopped: infra)" if s["infra_aborted"] else ""
        parts.append(f"<tr><td>{e(s['shard'])}</td><td class='n'>{s['seed']}</td><td class='n'>{s['examples_run']}"
                     f"</td><td class='n'>{s['replayed']}</td><td class='n'>{s['runs']}</td>"
                     f"<td class='n'>{s['elapsed_s'] / 60:.1f}</td><td class='n'>{s['examples_per_min']:.1f}</td>"
                     f"<td>{e(v)}</td><td class='n'>{s['failures']}</td><td class='n'>{s['exit_code']}{e(note)}</td>"
                     f"<td>{_link(out_dir, s['dir'], s['dir'])}</td></tr>")
    parts.append("</table>")
    parts.append(f"<p>The same data: {_link(out_dir, str(out_dir / 'report.json'), 'report.json')}, "
                 f"{_link(out_dir, str(out_dir / 'junit.xml'), 'junit.xml')}.</p></body></html>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path
