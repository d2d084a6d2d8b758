"""A results page in Markdown from ``matrix.json`` files (``faultrun --all`` / ``--matrix``).

Used for the checked-in results pages (``docs/results/``): one section per file, a table
with one row per scenario and one column per implementation combination, then every cell
that is not a met pass with its summary line (the page's author explains those). The
tables are generated; the explanations are written by hand around them::

    python -m harness.report.markdown "Prio3Count=artifacts/x/matrix.json" "Prio3Sum=artifacts/y/matrix.json"
    python -m harness.report.markdown --exchanges ref/janus/janus/ref "Prio3Count=artifacts/x/matrix.json"
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["exchanges", "main", "matrix_markdown"]


def _short(label: str) -> str:
    """``client=reference,leader=janus,...`` -> ``ref/janus/janus/ref`` (the runner's role order)."""
    parts = dict(p.split("=", 1) for p in label.split(",") if "=" in p)
    if not parts:
        return label or "stack"
    return "/".join({"reference": "ref"}.get(parts.get(r, "?"), parts.get(r, "?"))
                    for r in ("client", "leader", "helper", "collector"))


def _cell(c: Mapping[str, Any]) -> str:
    vc = c.get("verdict_class", "?")
    if vc == "n/a":
        return "n/a"
    mark = "" if c.get("exit_code", 1) == 0 else " ✗"
    return f"{vc}{mark} ({c.get('seconds', 0.0):.0f} s)"


#: the Leader->Helper and Collector->Leader kinds an exchange line lists (uploads and configs
#: are many and alike: counted, not listed)
_LISTED = ("agg_init", "agg_continue", "agg_share", "agg_delete", "collection_create", "collection_poll",
           "collection_delete")


def exchanges(run_dir: Path) -> str:
    """What the target answered in one run, from its ``history.jsonl``: per message kind the
    statuses seen (``agg_init 201×2 500×1``; ``lost`` when the proxy or the network lost the
    answer) and the rules that fired. Empty when the run directory has no history."""
    try:
        lines = (run_dir / "history.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    seen: dict[str, Counter[str]] = {}
    fired: Counter[str] = Counter()
    uploads = 0
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        kind = ev.get("kind")
        if ev.get("event") == "fault" and ev.get("rule_id"):
            fired[f"{ev['rule_id']} {ev.get('action', '')}".strip()] += 1
        elif ev.get("event") == "message" and kind in _LISTED and ev.get("phase") in ("response", "error"):
            seen.setdefault(kind, Counter())[str(ev["status"]) if ev.get("phase") == "response" else "lost"] += 1
        elif ev.get("event") == "message" and kind == "upload" and ev.get("phase") == "request":
            uploads += 1
    parts = [f"{uploads} upload(s)"] if uploads else []
    parts += [f"{k} " + " ".join(f"{st}×{n}" for st, n in sorted(seen[k].items())) for k in _LISTED if k in seen]
    if fired:
        parts.append("fired: " + ", ".join(f"{r}×{n}" for r, n in sorted(fired.items())))
    return "; ".join(parts)


def matrix_markdown(title: str, doc: Mapping[str, Any], *, root: Path | None = None,
                    exchanges_of: str | None = None) -> str:
    """One section: ``doc`` is a ``matrix.json`` (with ``combos``) or a single-stack one
    (``faultrun --all``: cells without ``combo``). ``exchanges_of`` (a column, as its short
    label ``ref/janus/janus/ref`` or ``stack``) adds a table of what the target answered in each
    run of that column (:func:`exchanges`; run directories under ``root``)."""
    cells = list(doc.get("cells", ()))
    columns: list[str] = [c["label"] for c in doc.get("combos", ())] or \
        list(dict.fromkeys(c.get("combo", "") for c in cells))
    rows: list[str] = list(dict.fromkeys(c["scenario"] for c in cells))
    by = {(c.get("combo", ""), c["scenario"]): c for c in cells}
    out = [f"### {title}", ""]
    counts = Counter((c.get("verdict_class"), c.get("exit_code", 1) == 0) for c in cells)
    out.append("Cells: " + ", ".join(f"{n} {vc}{'' if ok else ' (expectation not met)'}"
                                     for (vc, ok), n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))))
               + ". ✗: the expectation is not met (exit status 1 or 3).")
    out += ["", "| scenario | expected | " + " | ".join(f"`{_short(col)}`" for col in columns) + " |",
            "|---|---|" + "---|" * len(columns)]
    for name in rows:
        first = next(c for c in cells if c["scenario"] == name)
        out.append(f"| `{name}` | {first.get('expected', '')} | "
                   + " | ".join(_cell(by[(col, name)]) if (col, name) in by else "" for col in columns) + " |")
    if exchanges_of is not None and root is not None:
        out += ["", f"What `{exchanges_of}` answered, per scenario (statuses per message kind; `lost`: "
                "no answer reached the sender; the rules that fired):", "",
                "| scenario | verdict | exchanges |", "|---|---|---|"]
        for c in cells:
            if _short(c.get("combo", "")) == exchanges_of and c.get("run_dir"):
                out.append(f"| `{c['scenario']}` | {c.get('verdict_class')} | "
                           f"{exchanges(root / c['run_dir']) or 'no history'} |")
    missed = [c for c in cells if c.get("verdict_class") != "n/a" and c.get("exit_code", 1) != 0]
    failed = [c for c in cells if c.get("verdict_class") == "clean_failure" and c.get("exit_code", 1) == 0]
    noted = [c for c in cells if c.get("verdict_class") == "pass" and c.get("exit_code", 1) == 0
             and ("note:" in c.get("summary", "") or "without optional" in c.get("summary", ""))]
    for head, group in (("Expectation not met", missed), ("Clean failures, as expected: how each ended", failed),
                        ("Passes with a note or an optional behaviour not done", noted)):
        if group:
            out += ["", f"{head}:", ""]
            out += [f"- `{c['scenario']}` on `{_short(c.get('combo', ''))}`: {_clip(c.get('summary', ''))}"
                    for c in group]
    return "\n".join(out) + "\n"


def _clip(text: str, limit: int = 240) -> str:
    """One summary line without the run's loopback URLs (ports and IDs differ in every run and
    push the problem type out of view), cut at ``limit`` characters (the run's report.json
    has it whole)."""
    text = re.sub(r"https?://(127\.0\.0\.1|\[::1\]|localhost):\d+\S*", "…", " ".join(text.split()))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or any(a in ("-h", "--help") for a in args):
        print("usage: python -m harness.report.markdown [--exchanges COLUMN] TITLE=matrix.json ...\n"
              "  COLUMN: a column's short label (ref/janus/janus/ref; 'stack' for a --all run)")
        return 0 if args else 2
    column = None
    if args[0] == "--exchanges":
        if len(args) < 3:
            print("markdown: --exchanges needs a column and a matrix.json", file=sys.stderr)
            return 2
        column, args = args[1], args[2:]
    parts = []
    for arg in args:
        title, sep, path = arg.partition("=")
        if not sep:
            title, path = Path(arg).parent.name, arg
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"markdown: {path}: {exc}", file=sys.stderr)
            return 2
        parts.append(matrix_markdown(title, doc, root=Path(path).parent, exchanges_of=column))
    print("\n".join(parts), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
