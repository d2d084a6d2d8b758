"""A results page in Markdown from ``matrix.json`` files (``faultrun --all`` / ``--matrix``).

Used for the checked-in results pages (``docs/results/``): one section per file, a table
with one row per scenario and one column per implementation combination, then every cell
that is not a met pass with its summary line (the page's author explains those). The
tables are generated; the explanations are written by hand around them::

    python -m harness.report.markdown "Prio3Count=artifacts/x/matrix.json" "Prio3Sum=artifacts/y/matrix.json"
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["matrix_markdown", "main"]


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


def matrix_markdown(title: str, doc: Mapping[str, Any]) -> str:
    """One section: ``doc`` is a ``matrix.json`` (with ``combos``) or a single-stack one
    (``faultrun --all``: cells without ``combo``)."""
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
    odd = [c for c in cells if c.get("verdict_class") != "n/a"
           and (c.get("exit_code", 1) != 0 or c.get("verdict_class") != "pass")]
    if odd:
        out += ["", "Not a met pass:", ""]
        for c in odd:
            out.append(f"- `{c['scenario']}` on `{_short(c.get('combo', ''))}`: {c.get('summary', '')}")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or any(a in ("-h", "--help") for a in args):
        print("usage: python -m harness.report.markdown TITLE=matrix.json [TITLE=matrix.json ...]")
        return 0 if args else 2
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
        parts.append(matrix_markdown(title, doc))
    print("\n".join(parts), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
