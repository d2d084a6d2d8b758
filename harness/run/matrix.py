"""``faultrun --matrix``: implementations x faults, as the interop test runner does (docs/cli.md).

The combinations are the cross product of the ``images.toml`` lists (client x leader x helper
x collector), restricted to entries the backend can run (``command`` for local, ``image`` for
docker) and filtered by ``--impl ROLE=NAME[,NAME...]`` (repeatable; a role not named keeps all
its entries; ``all=NAME`` filters every role). Each combination gets its own stack under
``<artifacts>/<combo>/`` and runs every selected scenario; a combination whose stack cannot
start gets an ``infra`` cell per scenario (the matrix goes on). One result matrix:

``matrix.json``  ``{"combos": [...], "cells": [{"combo", "impl": {role: name}, "scenario",
                 "verdict_class", "exit_code", "run_dir" (relative), "seconds", "summary", ...}]}``
``junit.xml``    one testsuite per (combo, scenario): ``faultrun.<combo>.<scenario>``
``matrix.html``  one row per scenario, one column per combo; each cell links its run's report.html
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from faults.catalogue import CATALOGUE
from harness.check.verdict import combine_exit_codes
from harness.errors import HarnessError, UsageError
from harness.report.html import write_matrix_html
from harness.report.rundir import junit_suite, not_applicable_cell
from harness.report.terminal import not_applicable_line, styled
from harness.run.stack import Stack
from harness.stack.images import ImageEntry, Images, load_images, not_applicable, parse_impl

__all__ = ["applicable", "combo_label", "combos", "run_matrix"]

log = logging.getLogger(__name__)
ORDER = ("client", "leader", "helper", "collector")  # the interop runner's order


def combos(images: Images, filters: Mapping[str, Sequence[str]], backend: str) -> list[dict[str, ImageEntry]]:
    """Every role -> entry combination the backend can run, after the filters."""
    axes: dict[str, list[ImageEntry]] = {}
    for role in ORDER:
        wanted = list(filters.get(role) or filters.get("all") or [])
        if wanted:
            entries = [images.select(role, name) for name in wanted]  # unknown name: ImagesError
            for e in entries:  # named on purpose: say what is missing, never drop it silently
                why = e.missing(backend)
                if why is not None and backend in e.backends:
                    raise UsageError(f"--matrix: {role} {e.name} cannot run here: {why}")
        else:  # every entry this machine can run (a user's build that is not here is left out)
            entries = [e for e in images.entries[role] if backend not in e.backends or e.missing(backend) is None]
        runnable = [e for e in entries if backend in e.backends]
        if not runnable:
            named = ", ".join(e.name for e in entries)
            raise UsageError(f"--matrix: no {role} implementation the {backend} backend can run among {named} "
                             f"({'command' if backend == 'local' else 'image'} entries only)")
        skipped = [e.name for e in entries if backend not in e.backends]
        if skipped and wanted:
            raise UsageError(f"--matrix: {role} {', '.join(skipped)} cannot run under --backend {backend}")
        axes[role] = runnable
    return [dict(zip(ORDER, combo, strict=True)) for combo in itertools.product(*(axes[r] for r in ORDER))]


def combo_label(combo: Mapping[str, ImageEntry]) -> str:
    """``client=reference,leader=janus,helper=reference,collector=reference``"""
    return ",".join(f"{r}={combo[r].name}" for r in ORDER)


def _dir_name(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "=,.-_+" else "_" for ch in label)


def applicable(scenarios: Sequence[Any], impl: Mapping[str, ImageEntry]) -> tuple[list[Any], list[tuple[Any, str]]]:
    """The scenarios the implementations (role -> entry) can run, and those whose VDAF one of
    them lacks (``images.toml`` ``vdafs``) with why (:func:`harness.stack.images.not_applicable`)."""
    run: list[Any] = []
    left_out: list[tuple[Any, str]] = []
    for s in scenarios:
        why = not_applicable(impl, s.workload.task.vdaf.type)
        if why is None:
            run.append(s)
        else:
            left_out.append((s, why))
    return run, left_out


def run_matrix(args: Any, scenarios: Sequence[Any], console: Any, root: Path,
               left_out: Sequence[tuple[Any, str]] = ()) -> int:
    """Run every combination x scenario; write matrix.json, junit.xml, matrix.html; return the
    exit code. A scenario a combination cannot run (:func:`applicable`, or ``left_out``: its
    workload cannot take ``--vdaf``) is one ``not applicable`` line and an ``n/a`` cell, and
    changes no exit code."""
    images = load_images(args.images)
    matrix = combos(images, parse_impl(args.impl), args.backend)
    t0 = time.monotonic()
    cells: list[dict[str, Any]] = []
    suites: list[ET.Element] = []
    codes: list[int] = []
    plan = [(combo, *applicable(scenarios, combo)) for combo in matrix]
    n = sum(len(run) for _, run, _ in plan)
    na = sum(len(out) for _, _, out in plan) + len(left_out) * len(matrix)
    console.print(f"matrix: {len(matrix)} implementation combination(s) x {len(scenarios) + len(left_out)} "
                  f"scenario(s) = {n} runs" + (f" and {na} not applicable" if na else "")
                  + f" (--backend {args.backend})", soft_wrap=True)
    order = {s.name: i for i, s in enumerate(sorted([*scenarios, *(s for s, _ in left_out)],
                                                    key=lambda s: _catalogue_rank(s.name)))}
    combo_labels = [combo_label(c) for c in matrix]
    done = 0
    for combo, runnable, combo_left_out in plan:
        label = combo_label(combo)
        impl = {r: e.name for r, e in combo.items()}
        croot = root / _dir_name(label)
        console.print(f"[bold]{label}[/]")
        for scenario, why in sorted([*left_out, *combo_left_out], key=lambda x: order[x[0].name]):
            console.print(f"  {not_applicable_line(scenario.name, why)}", markup=False, soft_wrap=True)
            cells.append(not_applicable_cell(scenario, why, combo=label, column=label, impl=impl))
        if not runnable:
            continue
        try:
            with Stack.start(artifacts_root=croot, impl=impl, images=images, backend=args.backend,
                             pull=getattr(args, "pull", False), network=getattr(args, "network", "loopback")) as stack:
                for scenario in runnable:
                    done += 1
                    console.print(f"  [dim][{done}/{n}][/] {scenario.name} ...", end="")
                    result = stack.run_scenario(scenario, seed=args.seed, timeout_s=args.timeout)
                    vc = result.report.verdict_class.value
                    console.print(f" {vc} ({result.seconds:.2f} s, exit {result.exit_code})")
                    codes.append(result.exit_code)
                    cells.append({
                        "combo": label, "column": label, "impl": impl, "scenario": scenario.name,
                        "verdict_class": vc, "exit_code": result.exit_code,
                        "run_dir": str(result.run_dir.relative_to(root)), "expected": scenario.expect.outcome.value,
                        "seconds": round(result.seconds, 3), "summary": result.report.summary,
                        "spec_section": scenario.spec_section, "infra_errors": list(result.record.infra_errors)})
                    s = junit_suite(result.report, scenario, result.seconds, result.record.infra_errors)
                    s.set("name", f"faultrun.{label}.{scenario.name}")
                    suites.append(s)
        except HarnessError as exc:  # this combination could not run; the matrix goes on
            msg = str(exc)
            console.print(f"  [magenta]{label}: {msg}[/]")
            code = exc.exit_code if exc.exit_code in (2, 3) else 3
            ran = {c["scenario"] for c in cells if c["combo"] == label}
            for scenario in runnable:
                if scenario.name in ran:
                    continue
                done += 1
                codes.append(code)
                cells.append({
                    "combo": label, "column": label, "impl": impl, "scenario": scenario.name,
                    "verdict_class": "infra", "exit_code": code, "run_dir": None,
                    "expected": scenario.expect.outcome.value, "seconds": 0.0, "summary": msg,
                    "spec_section": scenario.spec_section, "infra_errors": [msg]})
                s = junit_suite(None, scenario, 0.0, [msg])
                s.set("name", f"faultrun.{label}.{scenario.name}")
                suites.append(s)
    cells.sort(key=lambda c: (combo_labels.index(c["combo"]), order[c["scenario"]]))
    _write(root, matrix, cells, suites)
    total = time.monotonic() - t0
    _print(console, matrix, sorted([*scenarios, *(s for s, _ in left_out)], key=lambda s: order[s.name]), cells,
           total, root)
    return combine_exit_codes(codes)


def _catalogue_rank(name: str) -> int:
    names = list(CATALOGUE)
    return names.index(name) if name in CATALOGUE else len(names)


def _write(root: Path, matrix: Sequence[Mapping[str, ImageEntry]], cells: list[dict[str, Any]],
           suites: list[ET.Element]) -> None:
    doc = {"combos": [{"label": combo_label(c), "impl": {r: e.name for r, e in c.items()},
                       "images": {r: e.image for r, e in c.items()}} for c in matrix],
           "cells": cells}
    (root / "matrix.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    top = ET.Element("testsuites", name="faultrun-matrix")
    top.extend(suites)
    ET.indent(top)
    ET.ElementTree(top).write(root / "junit.xml", encoding="utf-8", xml_declaration=True)
    try:
        html_cells = [{**c, "run_dir": str(root / c["run_dir"]) if c.get("run_dir") else None} for c in cells]
        write_matrix_html(root, html_cells, title="faultrun implementation matrix")
    except Exception:
        log.exception("writing the matrix page")


def _print(console: Any, matrix: Sequence[Mapping[str, ImageEntry]], scenarios: Sequence[Any],
           cells: list[dict[str, Any]], total: float, root: Path) -> None:
    from rich.table import Table
    t = Table(title="faultrun implementation matrix", header_style="bold")
    t.add_column(" / ".join(ORDER))
    for s in scenarios:
        t.add_column(s.name, overflow="fold")
    by = {(c["combo"], c["scenario"]): c for c in cells}
    for combo in matrix:
        label = combo_label(combo)
        row = [" / ".join(combo[r].name for r in ORDER)]
        for s in scenarios:
            c = by.get((label, s.name))
            vc = c["verdict_class"] if c else "-"
            row.append(styled(vc))
        t.add_row(*row)
    console.print(t)
    console.print(f"{len(cells)} runs in {total:.1f} s. Matrix: {root / 'matrix.json'}, {root / 'junit.xml'}, "
                  f"{root / 'matrix.html'}")
