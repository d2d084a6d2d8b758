"""Prio3 throughput, Python (dap.vdaf) next to TypeScript (@divviup/prio3 0.8.0) and Rust (prio 0.16.8).

Usage: .venv/bin/python bench/prio3.py [--seconds S] [--rounds N] [--variant NAME ...] [--no-ts] [--no-rust]
       [--profile NAME]

For each variant it prints shards/s and full preparations/s for the three
implementations and the Python/TypeScript and Python/Rust ratios. A full preparation is the
whole two-Aggregator exchange through the ping-pong functions DAP uses:
``ping_pong_leader_init`` (decode shares, prep_init as Leader, encode
``initialize``), ``ping_pong_helper_init`` (decode, prep_init as Helper,
prep_shares_to_prep, prep_next, encode ``finish``) and
``ping_pong_leader_continued`` (decode, prep_next). The TypeScript side
(bench/prio3_ts.mjs) runs prepareInit x2, unshardPreparationShares and
prepareNext x2 on already-decoded objects (divviup-ts has no share decoders),
so the comparison slightly favours TypeScript. The Rust side is the Janus peer
binary's ``bench`` command (peers/janus/src/oracle.rs, built by ``bash
scripts/bootstrap --test``): shard, and decode + prepare_init x2 +
prepare_shares_to_prepare_message + prepare_next x2 (prio 0.16.8, one thread).

Rates are per CPU second of the measuring process (Python ``process_time``,
node ``process.cpuUsage``, Rust ``CLOCK_PROCESS_CPUTIME_ID``), after a warm-up (node's JIT needs it), so other
load on the machine distorts them less than wall time would. The two runtimes
run one after the other, alternating per variant for ``--rounds`` rounds (best
kept), never concurrently (the Rust side too). This is a benchmark, not a test: nothing here
asserts a speed.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dap.vdaf.pingpong import (  # noqa: E402
    Finished,
    ping_pong_helper_init,
    ping_pong_leader_continued,
    ping_pong_leader_init,
)
from dap.vdaf.prio3 import Prio3, Prio3Count, Prio3Histogram, Prio3Sum, Prio3SumVec  # noqa: E402

VARIANTS: dict[str, tuple[str, Callable[[], Prio3], Callable[[random.Random], Any]]] = {
    "count": ("Count", lambda: Prio3Count(), lambda r: r.randrange(2)),
    "sum32": ("Sum(bits=32)", lambda: Prio3Sum(32), lambda r: r.randrange(2**32)),
    "sumvec100": (
        "SumVec(100, bits=8, chunk=10)",
        lambda: Prio3SumVec(100, 8, 10),
        lambda r: [r.randrange(256) for _ in range(100)],
    ),
    "histogram100": ("Histogram(100, chunk=10)", lambda: Prio3Histogram(100, 10), lambda r: r.randrange(100)),
    "histogram1000": ("Histogram(1000, chunk=32)", lambda: Prio3Histogram(1000, 32), lambda r: r.randrange(1000)),
}


def _rate(seconds: float, fn: Callable[[], None]) -> float:
    """Calls per CPU second of this process (less sensitive to other load than wall time)."""
    clock = time.process_time
    warm_until = clock() + min(0.5, seconds / 2)
    while clock() < warm_until:
        fn()
    n = 0
    start = clock()
    elapsed = 0.0
    while n < 3 or elapsed < seconds:
        fn()
        n += 1
        elapsed = clock() - start
    return n / elapsed


def bench_python(name: str, seconds: float) -> dict[str, float]:
    _, make, gen = VARIANTS[name]
    vdaf = make()
    rng = random.Random(1)
    verify_key = os.urandom(16)
    reports = []
    for _ in range(8):
        nonce = os.urandom(16)
        public_share, input_shares = vdaf.shard_encoded(gen(rng), nonce, os.urandom(vdaf.RAND_SIZE))
        reports.append((nonce, public_share, input_shares))

    def shard() -> None:
        vdaf.shard_encoded(gen(rng), os.urandom(16), os.urandom(vdaf.RAND_SIZE))

    counter = iter(range(1 << 62))

    def prepare() -> None:
        nonce, public_share, (leader_share, helper_share) = reports[next(counter) % len(reports)]
        leader, outbound = ping_pong_leader_init(vdaf, verify_key, b"", nonce, public_share, leader_share)
        helper, reply = ping_pong_helper_init(vdaf, verify_key, b"", nonce, public_share, helper_share, outbound)
        leader, _ = ping_pong_leader_continued(vdaf, b"", leader, reply)
        if not (isinstance(leader, Finished) and isinstance(helper, Finished)):
            raise RuntimeError(f"preparation failed: {leader} / {helper}")

    return {"shards_per_s": _rate(seconds, shard), "preps_per_s": _rate(seconds, prepare)}


def bench_ts(names: list[str], seconds: float) -> dict[str, dict[str, float]]:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "@divviup" / "prio3").is_dir():
        print("node or node_modules/@divviup/prio3 missing: skipping the TypeScript side", file=sys.stderr)
        return {}
    proc = subprocess.run(
        [node, str(REPO / "bench" / "prio3_ts.mjs"), str(seconds), *names],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    out = {}
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        out[row["variant"]] = row
    return out


def bench_rust(names: list[str], seconds: float) -> dict[str, dict[str, float]]:
    target = Path(os.environ.get("DAP_FAULTRUN_CARGO_TARGET") or Path.home() / ".cache" / "dap-faultrun" / "cargo-target")
    binary = target / "release" / "dap-faultrun-janus-peer"
    if not os.access(binary, os.X_OK):
        print(f"{binary} missing (bash scripts/bootstrap --test builds it): skipping the Rust side", file=sys.stderr)
        return {}
    proc = subprocess.run([str(binary), "bench", str(seconds), *names], capture_output=True, text=True, check=True)
    return {row["variant"]: row for row in map(json.loads, proc.stdout.splitlines())}


def profile(name: str, seconds: float) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    bench_python(name, seconds)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per phase per variant and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is kept")
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), help="repeatable; default all")
    parser.add_argument("--no-ts", action="store_true", help="no TypeScript side")
    parser.add_argument("--no-rust", action="store_true", help="no Rust side")
    parser.add_argument("--profile", choices=sorted(VARIANTS), help="cProfile one variant and exit")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile, args.seconds)
        return
    names = args.variant or list(VARIANTS)
    header = (
        f"{'variant':<28} {'py shard/s':>11} {'ts shard/s':>11} {'rs shard/s':>11} {'py/ts':>6} {'py/rs':>6}   "
        f"{'py prep/s':>10} {'ts prep/s':>10} {'rs prep/s':>10} {'py/ts':>6} {'py/rs':>6}"
    )
    print(f"rates per CPU second, best of {args.rounds} alternating rounds of {args.seconds} s per phase")
    print(header)
    print("-" * len(header))

    def best(into: dict[str, float], rows: dict[str, dict[str, float]], name: str) -> None:
        for key, value in rows.get(name, {}).items():
            if key != "variant":
                into[key] = max(into.get(key, 0.0), value)

    def cell(d: dict[str, float], key: str, width: int) -> str:
        return f"{d[key]:>{width}.1f}" if key in d else f"{'-':>{width}}"

    def ratio(py: dict[str, float], other: dict[str, float], key: str) -> str:
        return f"{py[key] / other[key]:>5.2f}x" if key in other else f"{'-':>6}"

    for name in names:
        label = VARIANTS[name][0]
        py: dict[str, float] = {}
        ts: dict[str, float] = {}
        rs: dict[str, float] = {}
        for _ in range(args.rounds):
            if not args.no_ts:
                best(ts, bench_ts([name], args.seconds), name)
            if not args.no_rust:
                best(rs, bench_rust([name], args.seconds), name)
            best(py, {name: bench_python(name, args.seconds)}, name)
        print(
            f"{label:<28} {cell(py, 'shards_per_s', 11)} {cell(ts, 'shards_per_s', 11)} {cell(rs, 'shards_per_s', 11)} "
            f"{ratio(py, ts, 'shards_per_s')} {ratio(py, rs, 'shards_per_s')}   "
            f"{cell(py, 'preps_per_s', 10)} {cell(ts, 'preps_per_s', 10)} {cell(rs, 'preps_per_s', 10)} "
            f"{ratio(py, ts, 'preps_per_s')} {ratio(py, rs, 'preps_per_s')}",
            flush=True,
        )


if __name__ == "__main__":
    main()
