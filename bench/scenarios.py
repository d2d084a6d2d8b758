"""Scenario wall times against the targets: cold <= 5 s for one fault, warm <= 1 s median.

- cold: ``faultrun --fault duplicate-report`` as a subprocess (interpreter start, four
  roles + the fault proxy, one scenario, teardown), repeated ``--cold-runs`` times;
- warm: one :class:`harness.run.Stack`, every ``CATALOGUE`` entry once, per-scenario wall
  time of ``run_scenario`` (provisioning, plan load, workload, collection, check, run dir).

Run: ``.venv/bin/python bench/scenarios.py [--cold-runs 3] [--artifacts DIR]``. Not a test:
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


def warm(root: Path) -> tuple[float, list[tuple[str, float, str]]]:
    from faults.catalogue import CATALOGUE
    from harness.run import Stack

    rows = []
    with Stack.start(artifacts_root=root / "warm") as stack:
        start = stack.started_s
        for name, scenario in CATALOGUE.items():
            r = stack.run_scenario(scenario, timeout_s=60)
            rows.append((name, r.seconds, r.report.verdict_class.value))
            print(f"  {name:<36} {r.seconds:6.2f} s  {r.report.verdict_class.value}", flush=True)
    return start, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--artifacts", type=Path)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
