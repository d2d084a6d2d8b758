"""Codec throughput: encode and decode an AggregationJobInitReq of 100 PrepareInits.

Each report is sized like Prio3Histogram(length=100, chunk_length=10) under
X25519/HKDF-SHA256/AES-128-GCM: public share 32 bytes; Helper ciphertext =
config_id, 32-byte enc, 48+16-byte payload; PrepareInit payload = a ping-pong
``initialize`` carrying a 368-byte prep share. Random bytes stand in for the
cryptographic values (the codec does not look inside them).

Run: ``.venv/bin/python bench/codec.py [--seconds S]`` (default 2 s per phase;
about 7 s in total). Prints messages/s and MB/s (from the best repeat; the median is
shown too) for encode, decode and both.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dap.messages import (  # noqa: E402
    AggregationJobInitReq,
    HpkeCiphertext,
    PartialBatchSelector,
    PingPongMessage,
    PrepareInit,
    ReportMetadata,
    ReportShare,
)

REPORTS = 100
PUBLIC_SHARE_LEN = 32
ENC_LEN = 32
HELPER_PAYLOAD_LEN = 48 + 16
PREP_SHARE_LEN = 368


def build_request(seed: int = 0) -> AggregationJobInitReq:
    rng = random.Random(seed)

    def rb(n: int) -> bytes:
        return rng.randbytes(n)

    inits = [
        PrepareInit(
            report_share=ReportShare(
                report_metadata=ReportMetadata(report_id=rb(16), time=1_700_000_000 + i),
                public_share=rb(PUBLIC_SHARE_LEN),
                encrypted_input_share=HpkeCiphertext(config_id=1, enc=rb(ENC_LEN), payload=rb(HELPER_PAYLOAD_LEN)),
            ),
            payload=PingPongMessage.initialize(rb(PREP_SHARE_LEN)).encode(),
        )
        for i in range(REPORTS)
    ]
    return AggregationJobInitReq(agg_param=b"", part_batch_selector=PartialBatchSelector.time_interval(), prepare_inits=inits)


def measure(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    """(best, median) seconds per call over repeats of ~0.2 s within ``seconds``."""
    number = 1
    while True:  # calibrate: one repeat takes about 0.2 s
        t = timeit.timeit(fn, number=number)
        if t >= 0.2:
            break
        number = max(number * 2, int(number * 0.25 / max(t, 1e-9)))
    repeats = max(3, int(seconds / 0.2))
    times = sorted(t / number for t in timeit.repeat(fn, number=number, repeat=repeats))
    return times[0], statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time budget per phase (default 2)")
    args = ap.parse_args(argv)

    req = build_request()
    data = req.encode()
    assert AggregationJobInitReq.decode(data) == req
    size = len(data)
    print(f"AggregationJobInitReq: {REPORTS} PrepareInits, {size} bytes (Python {sys.version.split()[0]})")

    def roundtrip() -> None:
        AggregationJobInitReq.decode(req.encode())

    for name, fn in (
        ("encode", req.encode),
        ("decode", lambda: AggregationJobInitReq.decode(data)),
        ("encode+decode", roundtrip),
    ):
        best, median = measure(fn, args.seconds)
        per_s = 1 / best
        print(
            f"{name:>14}: {per_s:9.1f} messages/s  {per_s * size / 1e6:8.1f} MB/s  "
            f"{per_s * REPORTS / 1e3:8.1f} k PrepareInits/s  "
            f"(best {best * 1e3:.3f} ms, median {median * 1e3:.3f} ms per message)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
