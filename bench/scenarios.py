"""Scenario wall times against the targets: cold <= 5 s for one fault, warm <= 1 s median.

- cold: ``faultrun --fault duplicate-report`` as a subprocess (interpreter start, four
  roles + the fault proxy, one scenario, teardown), repeated ``--cold-runs`` times;
- warm: one :class:`harness.run.Stack`, every ``CATALOGUE`` entry once, per-scenario wall
  time of ``run_scenario`` (provisioning, plan load, workload, collection, check, run dir).

- netns: when this process may build network namespaces (root), the same warm pass under
  ``--network netns`` (docs/network.md), printed beside the loopback times: the per-scenario
  overhead of the namespaces (and the stack-start cost); then the network entries alone.

Run: ``.venv/bin/python bench/scenarios.py [--cold-runs 3] [--artifacts DIR] [--no-netns]``. Not a test:
it prints figures; a scenario that ends in a violation or an infra error is listed (its
time is dominated by timeouts, not by the harness).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

COLD_TARGET_S = 5.0
WARM_TARGET_S = 1.0


def cold(runs: int, root: Path) -> list[float]:
    exe = Path(sys.executable).with_name("faultrun")
    out = []
    for i in range(runs):
        t0 = time.monotonic()
        r = subprocess.run([str(exe), "--fault", "duplicate-report", "--artifacts", str(root / f"cold-{i}"), "--json"],
                           capture_output=True, text=True, timeout=300)
        out.append(time.monotonic() - t0)
        if r.returncode != 0:
            print(f"  cold run {i}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    return out


def warm(root: Path, network: str = "loopback", *, network_entries: bool = False,
         quiet: bool = False) -> tuple[float, list[tuple[str, float, str]]]:
    """One warm stack, every catalogue entry that runs on ``network`` (``network_entries``: only
    the entries with network rules)."""
    from faults.catalogue import CATALOGUE
    from harness.run import Stack

    rows = []
    with Stack.start(artifacts_root=root / f"warm-{network}", network=network) as stack:
        start = stack.started_s
        for name, scenario in CATALOGUE.items():
            if scenario.plan.needs_network != network_entries:
                continue
            r = stack.run_scenario(scenario, timeout_s=60)
            rows.append((name, r.seconds, r.report.verdict_class.value))
            if not quiet:
                print(f"  {name:<36} {r.seconds:6.2f} s  {r.report.verdict_class.value}", flush=True)
    return start, rows


def netns_overhead(root: Path, loop_start: float, loop_rows: list[tuple[str, float, str]]) -> None:
    """Print the netns mode's per-scenario overhead against the loopback mode."""
    print("netns: the same warm pass with --network netns")
    start, rows = warm(root, "netns", quiet=True)
    loop = {n: (s, vc) for n, s, vc in loop_rows}
    print(f"  {'scenario':<36} {'loopback':>9} {'netns':>8} {'overhead':>9}")
    diffs = []
    for name, secs, vc in rows:
        base, base_vc = loop[name]
        diffs.append(secs - base)
        flag = "" if vc == base_vc else f"  (verdict {base_vc} -> {vc})"
        print(f"  {name:<36} {base:8.2f}s {secs:7.2f}s {secs - base:+8.2f}s{flag}")
    print(f"  stack start: loopback {loop_start:.2f} s, netns {start:.2f} s ({start - loop_start:+.2f} s)")
    print(f"  per-scenario overhead: median {statistics.median(diffs):+.3f} s, mean {statistics.mean(diffs):+.3f} s; "
          f"total {sum(s for _, s, _ in rows):.1f} s vs {sum(s for _, s, _ in loop_rows):.1f} s")
    print("netns: the network entries (their windows dominate their time)")
    start, rows = warm(root, "netns", network_entries=True)
    print(f"  median {statistics.median([s for _, s, _ in rows]):.2f} s over {len(rows)} network entries")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--artifacts", type=Path)
    ap.add_argument("--no-netns", action="store_true", help="skip the --network netns comparison")
    args = ap.parse_args()
    root = args.artifacts or Path(tempfile.mkdtemp(prefix="faultrun-bench-"))
    print(f"artifacts: {root}")
    print("cold: faultrun --fault duplicate-report (subprocess)")
    c = cold(args.cold_runs, root)
    print("  " + ", ".join(f"{x:.2f} s" for x in c))
    print("warm: one Stack, every catalogue entry")
    start, rows = warm(root)
    times = [s for _, s, _ in rows]
    ok = [s for _, s, vc in rows if vc in ("pass", "clean_failure")]
    med_cold = statistics.median(c)
    med_warm = statistics.median(times)
    print()
    print(f"cold  median {med_cold:5.2f} s  (target <= {COLD_TARGET_S:g} s)  {'OK' if med_cold <= COLD_TARGET_S else 'MISSED'}")
    print(f"warm  median {med_warm:5.2f} s  (target <= {WARM_TARGET_S:g} s)  {'OK' if med_warm <= WARM_TARGET_S else 'MISSED'}"
          f"  over {len(times)} scenarios; stack start {start:.2f} s; total {sum(times):.1f} s")
    if len(ok) != len(times):
        print(f"warm  median over pass/clean_failure only: {statistics.median(ok) if ok else float('nan'):.2f} s; "
              f"others: {', '.join(f'{n} ({vc}, {s:.1f} s)' for n, s, vc in rows if vc not in ('pass', 'clean_failure'))}")
    if not args.no_netns:
        from harness.stack.netns import missing_requirement
        why = missing_requirement()
        if why is None:
            print()
            netns_overhead(root, start, rows)
        else:
            print(f"netns: skipped ({why})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
