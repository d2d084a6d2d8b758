"""Campaign benchmark: throughput, a clean run on the correct stack, and time to find + shrink
each test-only bug switch.

    .venv/bin/python bench/campaign.py                       # everything (~25 min on 2 cores)
    .venv/bin/python bench/campaign.py --skip-bugs --skip-reference --throughput-s 60 --repeat 3
    .venv/bin/python bench/campaign.py --skip-throughput --skip-reference --bugs leader-rebuild-retry

1. **Throughput**: examples/min of :func:`harness.campaign.run_campaign` against the correct
   reference stack, with 1 worker (one warm stack) and with 2 workers
   (:func:`~harness.campaign.run_campaign_workers`: two stacks in spawned processes). Every
   rate is examples over the measured time of the slowest worker (its stack start excluded,
   the example still running when the budget ran out included, and counted); the 2-worker
   wall time including both stack starts is printed beside it. ``--repeat`` runs each that
   many times (seeds S, S+1, ...); the figure is the median, and the speed-up is median(2
   workers) / median(1 worker), which cannot honestly exceed ~2 on 2 cores. Target: >= 60
   examples/min with 2 workers on 2 cores.
2. **Reference**: one bounded campaign (``--reference-examples``, default 200, 2 workers,
   fixed seed) against the correct stack must end with zero failures: neither a violation
   nor an ``unexpected_clean_failure`` (the expectation-aware criterion must not fail a
   correct implementation). Printed as ``ok`` or ``FAILED`` with each failure's command.
3. **Bugs**: for each switch of :mod:`dap.roles.bugs` (``tests/data/bug_images.toml``), one
   campaign (1 worker, fixed seed, at most ``--examples`` examples and ``--bug-budget``
   seconds of generation, ``--shrink-budget``): time to the first failure, time to the
   shrunk failure, its label (violation / unexpected_clean_failure), rules in the shrunk
   plan. Target: each found and shrunk in <= 2 min. A switch not found is printed as
   ``NOT FOUND``, never hidden (the catalogue's detection is ``tests/test_selfcheck.py``).

Where the time goes (docs/campaigns.md has the figures): a passing example is ~0.4-1 s on
warm roles, mostly the reference Leader's job-creation (0.2 s) and collection intervals;
report.html is not rendered per example (~40% of a passing run otherwise). A collection
whose batch cannot fill ends ``not_ready`` after ~1 s instead of at the per-scenario
timeout; what still runs to the timeout is a collection the Leader keeps retrying or that
waits for reports only the Leader knows it rejected (a corrupted Helper answer), and a
Leader->Helper fault that defeats every retry costs the Leader's 8 s retry budget.

4. **Long** (``--long [--minutes 20]``, alone): a 2-worker campaign against the correct stack
   for that long (keep going, no shrinking), then from each worker's ``examples.jsonl``: the
   harness's per-scenario overhead (a run's time outside the workload's own steps:
   provisioning, plan loads, history segment and fetch, checker, run directory) and
   examples/min in the first and the last minute, sixth and half of the run; the median of
   each phase of the overhead (``phases_ms``) in the first and the last minute and sixth; then
   the artifacts' size, split into what the harness writes (run dirs, the proxies' history and
   flows, role and proxy logs, examples.jsonl) and the roles' own databases. Targets (issue
   15): overhead flat (the last sixth within 10 % of the first: the issue's first vs last 10
   minutes of an hour; a single minute swings by 10-20 % with what the other worker runs),
   harness artifacts under 50 MiB.

5. **Scale** (``--scale [--scale-s 120]``, alone; docs/scale.md): with a ``redis-server`` on
   127.0.0.1 (started and stopped here) as the example database, each as separate
   ``faultrun campaign`` processes: examples/min of 1 process vs 3 shards (``--shard K/3``)
   of one campaign against the correct stack, both for ``--scale-s`` (the 3 shards' rate is
   their examples over the wall-clock span, from ``faultrun merge``); then 3 shards against
   a bug switch (``--scale-bug``, default ``leader-accept-future``: deterministic), all
   started at once with ``--keep-going``: when
   the first one found the bug, and how long its failure took to reach the other two
   through Redis (``reach_s`` of ``faultrun merge``).

Not a test: figures depend on the machine (and on whatever else shares it). Artifacts go
to a temporary directory (kept with ``--keep DIR``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from dap.roles import bugs  # noqa: E402
from harness.campaign import CampaignProgress, run_campaign, run_campaign_workers  # noqa: E402
from harness.run import Stack  # noqa: E402

BUG_IMAGES = REPO / "tests" / "data" / "bug_images.toml"
TARGET_EX_PER_MIN = 60.0
TARGET_BUG_S = 120.0
#: bug -> how its failure's signature starts (as tests/test_selfcheck_campaign.py): other
#: failures found on the way (the reference roles' own bugs) do not count as finding it
BUG_SIGNATURES = {
    "helper-reinit-reaccumulate": "idempotency", "helper-replay-per-job": "anti-replay",
    "helper-reinit-no-conflict": "idempotency", "leader-collect-overwrite": "collection-jobs",
    "helper-share-no-auth": "auth", "leader-any-auth": "auth", "leader-double-offer": "leader-jobs",
    "helper-resp-reorder": "helper-order", "leader-late-jobs": "leader-late-jobs",
    "helper-continue-reaccumulate": "batch-agreement",
    "leader-collect-no-auth": "auth",
    "leader-rebuild-retry": "leader-jobs", "accept-late-reports": "idempotency",
}


def _is_the_bug(signature: tuple[str, ...], bug: str) -> bool:
    return any(x.startswith(BUG_SIGNATURES[bug]) for x in signature[:signature.index("|")])


#: Throughput runs measure generation: a failure found on the way (a reference-role bug) is
#: not shrunk (keep_going, no shrink budget); its one extra run is counted in the time.
NO_SHRINK = {"keep_going": True, "shrink_budget_s": 1e-3}


def throughput_1(root: Path, seed: int, budget_s: float, timeout_s: float) -> tuple[int, float, int]:
    """(examples, measured seconds, failures seen)."""
    with Stack.start(root / "stack", images=BUG_IMAGES) as stack:
        r = run_campaign(stack, seed=seed, time_budget_s=budget_s, artifacts=root, database=False, timeout_s=timeout_s,
                         **NO_SHRINK)
    return r.examples_run, max(r.worker_elapsed_s), len(r.failures)


def throughput_2(root: Path, seed: int, budget_s: float, timeout_s: float) -> tuple[int, float, float, int]:
    """(examples, measured seconds of the slowest worker, wall seconds incl. two stack starts, failures seen)."""
    t0 = time.monotonic()
    r = run_campaign_workers(2, seed=seed, artifacts=root, images=BUG_IMAGES, time_budget_s=budget_s,
                             database=False, timeout_s=timeout_s, **NO_SHRINK)
    wall = time.monotonic() - t0
    return r.examples_run, max(r.worker_elapsed_s), wall, len(r.failures)


def _stats(rates: list[float]) -> str:
    return (f"median {statistics.median(rates):.1f} examples/min over {len(rates)} run(s) "
            f"(runs: {', '.join(f'{x:.1f}' for x in rates)})")


def reference_run(root: Path, seed: int, examples: int, timeout_s: float) -> int:
    t0 = time.monotonic()
    r = run_campaign_workers(2, seed=seed, artifacts=root, images=BUG_IMAGES, examples=examples, database=False,
                             timeout_s=timeout_s, keep_going=True)
    wall = time.monotonic() - t0
    vc = ", ".join(f"{k} {n}" for k, n in sorted(r.verdicts.items()))
    ok = not r.failures and not r.infra_aborted
    print(f"reference stack, seed {seed}: {r.examples_run} examples in {wall:.0f} s wall ({vc}); "
          f"{len(r.failures)} failure(s) [{'ok' if ok else 'FAILED'}]", flush=True)
    for f in r.failures:
        print(f"  {f.kind}: {f.report.summary}\n    {f.command}", flush=True)
    for inf in r.infra_runs[:5]:
        print(f"  infra {inf.run_dir}: {inf.summary}", flush=True)
    return 0 if ok else 1


def bug_run(root: Path, bug: str, seed: int, examples: int, budget_s: float, shrink_s: float,
            timeout_s: float) -> dict:
    """One campaign against the bug that shrinks and reports only this bug's failure (other
    findings, e.g. the reference roles' own bugs, are counted, not shrunk): found_s = when
    its shrinking began, elapsed_s = when it was reported."""
    roles = bugs.BUGS[bug][0]
    first: list[float] = []

    def progress(p: CampaignProgress) -> None:
        if p.phase == "shrink" and not first:
            first.append(p.elapsed_s)

    with Stack.start(root / "stack", impl={r: f"bug-{bug}" for r in roles}, images=BUG_IMAGES) as stack:
        r = run_campaign(stack, seed=seed, examples=examples, time_budget_s=budget_s, artifacts=root,
                         database=False, timeout_s=timeout_s, shrink_budget_s=shrink_s, progress=progress,
                         wanted=lambda sig: _is_the_bug(sig, bug))
    out = {"bug": bug, "examples": r.examples_run, "runs": r.runs, "elapsed_s": r.elapsed_s,
           "found_s": first[0] if first else None, "verdicts": dict(r.verdicts)}
    if r.failures:
        f = r.failures[0]
        out.update(rules=len(f.scenario.plan.rules), signature=" ".join(f.signature), reproduced=f.reproduced,
                   kind=f.kind, command=f.command)
    return out


def _dir_size(p: Path, pattern: str = "**/*") -> int:
    return sum(f.stat().st_size for f in p.glob(pattern) if f.is_file() and not f.is_symlink())


def _window(rows: list[dict], lo: float, hi: float) -> tuple[int, float | None, float | None]:
    """(examples, median overhead s, mean overhead s) of generated runs started in [lo, hi)."""
    sel = [r for r in rows if lo <= r["t"] < hi and r["phase"] == "generate"]
    over = [r["overhead_s"] for r in sel if r.get("overhead_s") is not None]
    if not over:
        return len(sel), None, None
    return len(sel), statistics.median(over), statistics.fmean(over)


def _phase_medians(rows: list[dict], first: tuple[float, float],
                   last: tuple[float, float]) -> list[tuple[str, float, float]]:
    """(phase, median ms in ``first``, median ms in ``last``) of generated runs' ``phases_ms``."""
    def medians(lo: float, hi: float) -> dict[str, float]:
        per: dict[str, list[float]] = {}
        for r in rows:
            if lo <= r["t"] < hi and r["phase"] == "generate":
                for k, v in (r.get("phases_ms") or {}).items():
                    per.setdefault(k, []).append(v)
        return {k: statistics.median(v) for k, v in per.items()}

    a, b = medians(*first), medians(*last)
    return [(k, a[k], b[k]) for k in a if k in b]


def long_run(root: Path, seed: int, minutes: float, timeout_s: float) -> int:
    """Section 4 of the module docs."""
    import json

    budget = minutes * 60
    print(f"long campaign: 2 workers, {minutes:g} min, seed {seed}, correct reference stack", flush=True)
    t0 = time.monotonic()
    r = run_campaign_workers(2, seed=seed, artifacts=root, images=BUG_IMAGES, time_budget_s=budget, database=False,
                             timeout_s=timeout_s, **NO_SHRINK)
    wall = time.monotonic() - t0
    vc = ", ".join(f"{k} {n}" for k, n in sorted(r.verdicts.items()))
    print(f"  {r.examples_run} examples in {wall:.0f} s wall ({vc}); {len(r.failures)} failure(s) seen, not shrunk",
          flush=True)
    status = 0
    sixth = budget / 6  # issue 15's criterion: the first vs the last 10 minutes of an hour
    windows = (("first minute", 0, 60), ("last minute", budget - 60, budget),
               ("first sixth", 0, sixth), ("last sixth", budget - sixth, budget),
               ("first half", 0, budget / 2), ("last half", budget / 2, budget))
    firsts, lasts, every = [], [], []
    for w in sorted(root.glob("worker-*")):
        rows = [json.loads(x) for x in (w / "examples.jsonl").read_text().splitlines() if x.strip()]
        every += rows
        parts = []
        for label, lo, hi in windows:
            n, med, mean = _window(rows, lo, hi)
            rate = n / (hi - lo) * 60
            parts.append(f"{label}: {rate:.0f} ex/min, overhead median {1000 * (med or 0):.1f} ms "
                         f"mean {1000 * (mean or 0):.1f} ms")
            if label == "first sixth" and med is not None:
                firsts.append(med)
            if label == "last sixth" and med is not None:
                lasts.append(med)
        print(f"  {w.name}: " + "; ".join(parts), flush=True)
    for label, first_w, last_w in (("minute", (0, 60), (budget - 60, budget)),
                                   ("sixth", (0, sixth), (budget - sixth, budget))):
        split = [f"{name} {a:.1f} -> {b:.1f}" for name, a, b in _phase_medians(every, first_w, last_w)]
        if split:
            print(f"  where it goes, median ms per phase, first -> last {label} (both workers): " + ", ".join(split),
                  flush=True)
    if firsts and lasts:
        first, last = statistics.fmean(firsts), statistics.fmean(lasts)
        ok = last <= first * 1.10
        print(f"  per-scenario overhead, median per worker averaged: first sixth ({sixth / 60:.3g} min) "
              f"{1000 * first:.1f} ms, last sixth {1000 * last:.1f} ms ({(last / first - 1) * 100:+.0f} %) "
              f"[{'ok' if ok else 'MISSED'}: last within 10 % of first]", flush=True)
        status |= 0 if ok else 1
    stacks = list(root.glob("worker-*/stack/_stack"))
    sizes = {
        "run dirs kept (runs/)": sum(_dir_size(w / "runs") for w in root.glob("worker-*")),
        "proxy history + flows": sum(_dir_size(s / "proxy", "history.jsonl") + _dir_size(s / "proxy" / "flows")
                                     + _dir_size(s / "proxy", "flows.mitm") for s in stacks),
        "role + proxy logs": sum(_dir_size(s, "*/*.log") for s in stacks),
        "examples.jsonl + campaign files": sum(_dir_size(w, "*.json*") for w in root.glob("worker-*")),
    }
    harness = sum(sizes.values())
    roles_db = sum(_dir_size(s, "*/*.sqlite3*") for s in stacks)
    total = _dir_size(root)
    mib = 1 << 20
    print("  artifacts: " + ", ".join(f"{k} {v / mib:.1f} MiB" for k, v in sizes.items()), flush=True)
    ok = harness < 50 * mib
    print(f"  harness artifacts {harness / mib:.1f} MiB [{'ok' if ok else 'MISSED'}: < 50 MiB]; the roles' own "
          f"databases {roles_db / mib:.1f} MiB; everything {total / mib:.1f} MiB", flush=True)
    return status | (0 if ok else 1)


def _redis(workdir: Path) -> tuple[object, str]:
    """A redis-server on a free loopback port (its process, URL)."""
    import subprocess

    import redis

    from harness.stack.lifetime import spawn
    from harness.stack.ports import free_port

    port = free_port()
    proc = spawn(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                  "--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning"], what="redis-server (bench)",
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _campaigns(root: Path, argvs: list[list[str]]) -> tuple[list[dict], dict, float]:
    """Run ``faultrun campaign`` processes at once; (their campaign.json, the merge's report.json, wall s)."""
    import json
    import subprocess

    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "harness.cli", "campaign", *a], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for a in argvs]
    try:
        for p in procs:
            p.wait()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
    wall = time.monotonic() - t0
    dirs = [Path(a[a.index("--artifacts") + 1]) for a in argvs]
    subprocess.run([sys.executable, "-m", "harness.cli", "merge", *map(str, dirs), "--out", str(root / "merged")],
                   cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return ([json.loads((d / "campaign.json").read_text()) for d in dirs],
            json.loads((root / "merged" / "report.json").read_text()), wall)


def scale_run(root: Path, seed: int, seconds: float, timeout_s: float, bug: str) -> int:
    """Section 5 of the module docs."""
    proc, url = _redis(root)
    common = ["--seed", str(seed), "--time-budget", f"{seconds:g}", "--keep-going", "--shrink-budget", "0.001",
              "--timeout", f"{timeout_s:g}", "--images", str(BUG_IMAGES)]
    try:
        (one,), _, wall1 = _campaigns(root / "one", [[*common, "--no-database", "--artifacts", str(root / "one" / "p")]])
        rate1 = one["examples_run"] / max(one["worker_elapsed_s"]) * 60
        print(f"1 process : {one['examples_run']} examples in {max(one['worker_elapsed_s']):.0f} s measured "
              f"= {rate1:.1f} examples/min ({wall1:.0f} s wall incl. the stack start)", flush=True)
        shards, merged, wall3 = _campaigns(root / "three", [
            [*common, "--shard", f"{k}/3", "--example-db", url, "--artifacts", str(root / "three" / f"s{k}")]
            for k in range(3)])
        per = ", ".join(f"{s['examples_per_min']:.1f}" for s in merged["shards"])
        print(f"3 shards  : {merged['examples_run']} examples in {merged['wall_s']:.0f} s (first start to last end) "
              f"= {merged['examples_per_min']:.1f} examples/min (per shard {per}); overlap {merged['overlap']}; "
              f"speed-up {merged['examples_per_min'] / rate1:.2f}x on {os.cpu_count()} cores", flush=True)
        role = bugs.BUGS[bug][0][0]
        bug_common = ["--seed", str(seed), "--time-budget", f"{seconds:g}", "--keep-going", "--shrink-budget", "30",
                      "--timeout", f"{timeout_s:g}", "--images", str(BUG_IMAGES), "--impl", f"{role}=bug-{bug}"]
        _, merged, _ = _campaigns(root / "bug", [
            [*bug_common, "--shard", f"{k}/3", "--example-db", url.rsplit("/", 1)[0] + "/1",
             "--artifacts", str(root / "bug" / f"s{k}")] for k in range(3)])
        starts = min(s["started_wall"] for s in merged["shards"])
        print(f"{bug}: {len(merged['failures'])} distinct failure(s) (by shrunk plan) in {merged['examples_run']} "
              f"examples; those a shard generated:", flush=True)
        for f in merged["failures"]:
            finder = next((x for x in f["found_by"] if x["source"] == "generated"), None)
            if finder is None:
                continue  # a replayed entry another shard shrank to another plan
            reach = ", ".join(f"shard {x['shard']} after {x['reach_s']:.1f} s" for x in f["found_by"]
                              if x["source"] == "example-db" and x["reach_s"] is not None)
            print(f"  {' '.join(f['signature'])}: shard {finder['shard']} "
                  f"{finder['found_wall'] - starts:.1f} s after the shards started, shrunk and reported "
                  f"{finder['reported_wall'] - finder['found_wall']:.1f} s later; reached {reach or 'no other shard'}",
                  flush=True)
        if not merged["failures"]:
            print(f"{bug}: NOT FOUND in {merged['examples_run']} examples", flush=True)
            return 1
        # the same from the runs themselves: the first failing generated run anywhere, and each
        # other shard's first failing replay (whatever plan the failure later shrank to)
        import json
        failing = ("violation", "unexpected_clean_failure")
        rows = {k: [json.loads(x) for x in (root / "bug" / f"s{k}" / "examples.jsonl").read_text().splitlines()]
                for k in range(3)}
        found = min(((r["wall"], k) for k, rs in rows.items() for r in rs
                     if r["phase"] == "generate" and r["verdict"] in failing), default=None)
        if found is not None:
            got = []
            for k, rs in rows.items():
                replay = next((r["wall"] for r in rs if r["phase"] == "replay" and r["verdict"] in failing), None)
                if k != found[1]:
                    got.append(f"shard {k}/3 after {replay - found[0]:.1f} s" if replay else f"shard {k}/3 never")
            print(f"first failing run: shard {found[1]}/3 at +{found[0] - starts:.1f} s; its failure replayed and "
                  f"failing in {', '.join(got)}", flush=True)
    finally:
        proc.terminate()  # type: ignore[attr-defined]
        proc.wait()  # type: ignore[attr-defined]
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--throughput-s", type=float, default=60.0, help="generation time per throughput run")
    p.add_argument("--repeat", type=int, default=3, help="throughput runs per worker count")
    p.add_argument("--reference-examples", type=int, default=200, help="examples of the correct-stack campaign")
    # leader-accept-future breaks a SHOULD: reported as optional, which a campaign does not count
    p.add_argument("--bugs", default=",".join(BUG_SIGNATURES), help="comma-separated switches")
    p.add_argument("--examples", type=int, default=200, help="max examples per bug campaign")
    p.add_argument("--bug-budget", type=float, default=TARGET_BUG_S, help="generation seconds per bug")
    p.add_argument("--shrink-budget", type=float, default=60.0)
    p.add_argument("--timeout", type=float, default=20.0, help="per-scenario timeout (as the tests use)")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--skip-bugs", action="store_true")
    p.add_argument("--keep", type=Path, help="keep artifacts here")
    p.add_argument("--long", action="store_true", help="only the long campaign (section 4)")
    p.add_argument("--minutes", type=float, default=20.0, help="length of the long campaign")
    p.add_argument("--scale", action="store_true", help="only 1 process vs 3 shards with Redis (section 5)")
    p.add_argument("--scale-s", type=float, default=120.0, help="generation seconds per scale run")
    p.add_argument("--scale-bug", default="leader-accept-future", help="the bug switch of the reach run")
    a = p.parse_args(argv)
    unknown = [b for b in (x.strip() for x in a.bugs.split(",")) if b and b not in BUG_SIGNATURES]
    if unknown:
        p.error(f"--bugs: no campaign case for {', '.join(unknown)} (known: {', '.join(BUG_SIGNATURES)})")
    root = a.keep or Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    status = 0
    try:
        if a.long:
            return long_run(root / "long", a.seed, a.minutes, a.timeout)
        if a.scale:
            (root / "scale").mkdir(parents=True, exist_ok=True)
            return scale_run(root / "scale", a.seed, a.scale_s, a.timeout, a.scale_bug)
        if not a.skip_throughput:
            r1s, r2s = [], []
            for i in range(a.repeat):
                n1, s1, f1 = throughput_1(root / f"tp1-{i}", a.seed + i, a.throughput_s, a.timeout)
                r1s.append(n1 / s1 * 60)
                print(f"1 worker  (seed {a.seed + i}): {n1} examples in {s1:.1f} s measured = {r1s[-1]:.1f} examples/min"
                      + (f"; {f1} failure(s) seen, not shrunk" if f1 else ""), flush=True)
                n2, s2, wall, f2 = throughput_2(root / f"tp2-{i}", a.seed + i, a.throughput_s, a.timeout)
                r2s.append(n2 / s2 * 60)
                print(f"2 workers (seed {a.seed + i}): {n2} examples in {s2:.1f} s measured ({wall:.1f} s wall incl. "
                      f"2 stack starts) = {r2s[-1]:.1f} examples/min ({n2 / wall * 60:.1f} by wall)"
                      + (f"; {f2} failure(s) seen, not shrunk" if f2 else ""), flush=True)
            med1, med2 = statistics.median(r1s), statistics.median(r2s)
            print(f"1 worker : {_stats(r1s)}", flush=True)
            print(f"2 workers: {_stats(r2s)} (target >= {TARGET_EX_PER_MIN:.0f}: "
                  f"{'ok' if med2 >= TARGET_EX_PER_MIN else 'MISSED'})", flush=True)
            print(f"speed-up 2 workers / 1 worker: {med2 / med1:.2f}x (medians; at most ~2 on 2 cores)", flush=True)
        if not a.skip_reference:
            status |= reference_run(root / "reference", a.seed, a.reference_examples, a.timeout)
        if not a.skip_bugs:
            print(f"bug switches: seed {a.seed}, <= {a.examples} examples / {a.bug_budget:.0f} s generation, "
                  f"shrink <= {a.shrink_budget:.0f} s; target found + shrunk <= {TARGET_BUG_S:.0f} s", flush=True)
            for bug in [b.strip() for b in a.bugs.split(",") if b.strip()]:
                r = bug_run(root / bug, bug, a.seed, a.examples, a.bug_budget, a.shrink_budget, a.timeout)
                if "rules" in r:
                    ok = r["elapsed_s"] <= TARGET_BUG_S
                    print(f"  {bug:28s} {r['kind']} found after {r['found_s']:.1f} s, shrunk to {r['rules']} "
                          f"rule(s) at {r['elapsed_s']:.1f} s ({r['examples']} examples, {r['runs']} runs; "
                          f"{r['signature']}{'' if r['reproduced'] else '; not reproduced on replay'}) "
                          f"[{'ok' if ok else 'MISSED'}]", flush=True)
                    print(f"  {'':28s} {r['command']}", flush=True)
                else:
                    print(f"  {bug:28s} NOT FOUND in {r['examples']} examples / {r['elapsed_s']:.1f} s "
                          f"(verdicts {r['verdicts']})", flush=True)
                    failing = r["verdicts"].get("violation", 0) + r["verdicts"].get("unexpected_clean_failure", 0)
                    if failing:  # runs failing otherwise: counted, not shrunk (a reference-role bug?)
                        print(f"  {'':28s} {failing} run(s) failed otherwise (not this switch's signature)", flush=True)
    finally:
        if a.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
