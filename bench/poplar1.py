"""Poplar1 throughput in Python (dap.vdaf): sharding and the full two-round preparation.

Usage: .venv/bin/python bench/poplar1.py [--seconds S] [--rounds N] [--bits B ...] [--prefixes N ...] [--profile]

For each BITS it prints shards/s (``shard_encoded``: IDPF key generation,
correlated randomness, encodings) and, for each number of candidate prefixes,
full preparations/s at the deepest inner level (``BITS-2``, Field64) and at
the leaf level (``BITS-1``, Field255). A full preparation is the whole
two-Aggregator exchange through the ping-pong functions DAP uses:
``ping_pong_leader_init`` (decode, prep_init as Leader, ``initialize``),
``ping_pong_helper_init`` (decode, prep_init as Helper, round-1 sketch,
round-2 share, ``continue``), ``ping_pong_leader_continued`` (round-2 share,
verdict, ``finish``) and ``ping_pong_helper_continued`` (output share).

Candidate prefixes are the report's own prefix plus random ones, so the IDPF
walks share little beyond the first few levels: close to the worst case for a
given number of prefixes (a heavy-hitters walk, where candidates are siblings,
shares almost every node).

Rates are per CPU second of this process (``process_time``) after a short
warm-up, best of ``--rounds``. This is a benchmark, not a test: nothing here
asserts a speed.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dap.vdaf.pingpong import (  # noqa: E402
    Finished,
    ping_pong_helper_continued,
    ping_pong_helper_init,
    ping_pong_leader_continued,
    ping_pong_leader_init,
)
from dap.vdaf.poplar1 import Poplar1  # noqa: E402

REPORTS = 4


def _rate(seconds: float, fn: Callable[[], None]) -> float:
    """Calls per CPU second of this process (less sensitive to other load than wall time)."""
    clock = time.process_time
    warm_until = clock() + min(0.3, seconds / 3)
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


def bench_shard(bits: int, seconds: float) -> float:
    vdaf = Poplar1.with_bits(bits)
    rng = random.Random(bits)

    def shard() -> None:
        vdaf.shard_encoded(rng.getrandbits(bits), os.urandom(16), os.urandom(vdaf.RAND_SIZE))

    return _rate(seconds, shard)


def bench_prepare(bits: int, level: int, prefix_count: int, seconds: float) -> float:
    vdaf = Poplar1.with_bits(bits)
    rng = random.Random(bits * 1000 + prefix_count)
    verify_key = os.urandom(16)
    jobs = []
    for _ in range(REPORTS):
        alpha = rng.getrandbits(bits)
        nonce = os.urandom(16)
        public_share, (leader_share, helper_share) = vdaf.shard_encoded(alpha, nonce, os.urandom(vdaf.RAND_SIZE))
        prefixes = {alpha >> (bits - 1 - level)}
        while len(prefixes) < min(prefix_count, 2 << level):
            prefixes.add(rng.getrandbits(level + 1))
        agg_param = vdaf.encode_agg_param((level, sorted(prefixes)))
        jobs.append((agg_param, nonce, public_share, leader_share, helper_share))
    counter = iter(range(1 << 62))

    def prepare() -> None:
        agg_param, nonce, public_share, leader_share, helper_share = jobs[next(counter) % len(jobs)]
        leader, init = ping_pong_leader_init(vdaf, verify_key, agg_param, nonce, public_share, leader_share)
        helper, reply = ping_pong_helper_init(vdaf, verify_key, agg_param, nonce, public_share, helper_share, init)
        leader, finish = ping_pong_leader_continued(vdaf, agg_param, leader, reply)
        helper, _ = ping_pong_helper_continued(vdaf, agg_param, helper, finish)
        if not (isinstance(leader, Finished) and isinstance(helper, Finished)):
            raise RuntimeError(f"preparation failed: {leader} / {helper}")

    return _rate(seconds, prepare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per measurement and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; the best of each is kept")
    parser.add_argument("--bits", type=int, action="append", help="repeatable; default 16 and 256")
    parser.add_argument("--prefixes", type=int, action="append", help="repeatable; default 1 and 64")
    parser.add_argument("--profile", action="store_true", help="cProfile the first preparation case and exit")
    args = parser.parse_args()
    all_bits = args.bits or [16, 256]
    counts = args.prefixes or [1, 64]
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        bench_prepare(all_bits[0], all_bits[0] - 1, counts[-1], args.seconds)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    print(f"Poplar1, rates per CPU second, best of {args.rounds} rounds of {args.seconds} s")
    header = f"{'BITS':>5} {'shard/s':>9}   {'prefixes':>8} {'level':>6} {'field':>8} {'prep/s':>9} {'ms/prep':>8}"
    print(header)
    print("-" * len(header))
    for bits in all_bits:
        shard = max(bench_shard(bits, args.seconds) for _ in range(args.rounds))
        first = True
        levels = [bits - 2, bits - 1] if bits > 1 else [0]
        for count in counts:
            for level in levels:
                rate = max(bench_prepare(bits, level, count, args.seconds) for _ in range(args.rounds))
                field = Poplar1.with_bits(bits).current_field(level).NAME
                shard_text = f"{shard:>9.1f}" if first else f"{'':>9}"
                print(
                    f"{bits:>5} {shard_text}   {count:>8} {level:>6} {field:>8} {rate:>9.1f} {1000 / rate:>8.2f}",
                    flush=True,
                )
                first = False


if __name__ == "__main__":
    main()
