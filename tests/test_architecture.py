"""The layout stays one-way (docs/architecture.md): packages and harness stages import
downward only, and no two modules import each other, directly or around a circle.

The graph is built from the source by grimp (import-linter's engine), function-level imports
included: an import moved into a function to dodge a loop is still a loop.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("dap", "faults", "proxy_addons", "harness")
#: top to bottom: a module may import from its own layer or below, never above
PACKAGE_LAYERS = ("harness", "proxy_addons", "faults", "dap")
#: the harness's stages, in data-path order read from the top (cli) down
HARNESS_LAYERS = (("pytest_plugin",), ("cli",), ("campaign",), ("run",), ("report",), ("check", "stack"),
                  ("record",), ("errors",))


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)


def _strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm over module -> directly imported modules."""
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in adj:
        if root in index:
            continue
        work = [(root, iter(adj[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in adj:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(adj[w])))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_loops(graph: grimp.ImportGraph) -> None:
    loops = _strongly_connected(graph)
    described = []
    for comp in loops:
        edges = [f"{a} -> {b}" for a in comp for b in sorted(graph.find_modules_directly_imported_by(a)) if b in comp]
        described.append(f"{comp}: " + "; ".join(edges))
    assert not loops, "import loops:\n" + "\n".join(described)


def test_the_loop_finder_finds_a_loop() -> None:
    g = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c"):
        g.add_module(m)
    g.add_import(importer="p.a", imported="p.b")
    g.add_import(importer="p.b", imported="p.c")
    g.add_import(importer="p.c", imported="p.a")
    assert _strongly_connected(g) == [["p.a", "p.b", "p.c"]]


def _upward(graph: grimp.ImportGraph, layers: tuple[tuple[str, ...], ...], prefix: str = "") -> list[str]:
    found = []
    for i, upper in enumerate(layers):
        for lower_i in range(i + 1, len(layers)):
            for low in layers[lower_i]:
                for up in upper:
                    for chain in graph.find_shortest_chains(importer=prefix + low, imported=prefix + up):
                        found.append(" -> ".join(chain))
    for layer in layers:  # siblings in one layer stay independent of each other
        for a in layer:
            for b in layer:
                if a != b:
                    found += [" -> ".join(c) for c in graph.find_shortest_chains(importer=prefix + a,
                                                                                 imported=prefix + b)]
    return found


def test_packages_import_one_way(graph: grimp.ImportGraph) -> None:
    bad = _upward(graph, tuple((p,) for p in PACKAGE_LAYERS))
    assert not bad, "imports against dap <- faults <- proxy_addons <- harness:\n" + "\n".join(bad)


def test_harness_stages_import_one_way(graph: grimp.ImportGraph) -> None:
    bad = _upward(graph, HARNESS_LAYERS, prefix="harness.")
    assert not bad, "harness imports against its stage order (docs/architecture.md):\n" + "\n".join(bad)


def test_the_layer_check_finds_an_upward_import() -> None:
    g = grimp.ImportGraph()
    for m in ("h", "h.cli", "h.check", "h.stack"):
        g.add_module(m)
    g.add_import(importer="h.check", imported="h.cli")
    g.add_import(importer="h.stack", imported="h.check")
    bad = _upward(g, (("cli",), ("check", "stack")), prefix="h.")
    assert "h.check -> h.cli" in bad and "h.stack -> h.check" in bad


def test_every_harness_module_is_in_a_stage(graph: grimp.ImportGraph) -> None:
    named = {m for layer in HARNESS_LAYERS for m in layer}
    top = {m.split(".")[1] for m in graph.modules if m.startswith("harness.")}
    assert top <= named, f"harness modules outside the stage list: {sorted(top - named)}"


def test_import_linter_contracts_hold() -> None:
    """The same rules as pyproject's [tool.importlinter] contracts, for anyone running lint-imports."""
    exe = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(exe), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout
