"""Cross-implementation: reports sharded by divviup-ts (@divviup/prio3 0.8.0), prepared by dap.vdaf.

tests/node/prio3_shard.mjs shards interop-encoded measurements with fresh
nonces and randomness; each report then goes through both Aggregators via the
ping-pong functions (Leader init, Helper init, Leader continued), is aggregated
and unsharded, and the result must equal the sum computed here. Needs node and
node_modules (the ``node`` fixture FAILS without them, it never skips).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dap.vdaf import VdafParams
from dap.vdaf.pingpong import (
    Finished,
    Rejected,
    ping_pong_helper_init,
    ping_pong_leader_continued,
    ping_pong_leader_init,
)

pytestmark = pytest.mark.node

REPORTS = 24

VARIANTS: list[dict[str, Any]] = [
    {"type": "Prio3Count"},
    {"type": "Prio3Sum", "bits": "1"},
    {"type": "Prio3Sum", "bits": "8"},
    {"type": "Prio3Sum", "bits": "64"},
    {"type": "Prio3SumVec", "bits": "8", "length": "10", "chunk_length": "12"},
    {"type": "Prio3SumVec", "bits": "3", "length": "7", "chunk_length": "4"},
    {"type": "Prio3SumVec", "bits": "16", "length": "3", "chunk_length": "9"},
    {"type": "Prio3Histogram", "length": "5", "chunk_length": "2"},
    {"type": "Prio3Histogram", "length": "12", "chunk_length": "4"},
    {"type": "Prio3Histogram", "length": "100", "chunk_length": "10"},
    {"type": "Prio3Histogram", "length": "3", "chunk_length": "5"},
]
IDS = ["-".join(str(v) for v in variant.values()) for variant in VARIANTS]


def random_measurement(params: VdafParams, rng: random.Random) -> Any:
    """A random valid measurement in the interop encoding (decimal strings)."""
    if params.type == "Prio3Count":
        return str(rng.randrange(2))
    if params.type == "Prio3Sum":
        assert params.bits is not None
        return str(rng.choice([0, 2**params.bits - 1, rng.randrange(2**params.bits)]))
    if params.type == "Prio3SumVec":
        assert params.bits is not None and params.length is not None
        return [str(rng.randrange(2**params.bits)) for _ in range(params.length)]
    assert params.length is not None
    return str(rng.randrange(params.length))


def expected_result(params: VdafParams, measurements: list[Any]) -> Any:
    values = [params.measurement_from_interop(m) for m in measurements]
    if params.type == "Prio3SumVec":
        return [sum(col) for col in zip(*values)]
    if params.type == "Prio3Histogram":
        assert params.length is not None
        return [values.count(i) for i in range(params.length)]
    return sum(values)


@pytest.fixture(scope="module")
def divviup_reports(node: str, repo_root: Path) -> list[dict[str, Any]]:
    """One node run sharding every variant's measurements; returns per-variant task data."""
    rng = random.Random(20240228)
    tasks = []
    for variant in VARIANTS:
        params = VdafParams.from_interop(variant)
        tasks.append({"vdaf": variant, "measurements": [random_measurement(params, rng) for _ in range(REPORTS)]})
    proc = subprocess.run(
        [node, str(repo_root / "tests" / "node" / "prio3_shard.mjs")],
        input=json.dumps({"tasks": tasks}),
        capture_output=True,
        text=True,
        cwd=repo_root,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"prio3_shard.mjs failed:\n{proc.stderr}"
    out = json.loads(proc.stdout)["tasks"]
    assert len(out) == len(tasks)
    return [{**task, **result} for task, result in zip(tasks, out)]


@pytest.mark.parametrize("index", range(len(VARIANTS)), ids=IDS)
def test_divviup_reports_prepare_and_aggregate(divviup_reports: list[dict[str, Any]], index: int) -> None:
    task = divviup_reports[index]
    params = VdafParams.from_interop(task["vdaf"])
    vdaf = params.build()
    verify_key = os.urandom(vdaf.VERIFY_KEY_SIZE)
    reports = task["reports"]
    assert len(reports) == len(task["measurements"]) == REPORTS

    agg = [vdaf.agg_init(None), vdaf.agg_init(None)]
    for report in reports:
        nonce = bytes.fromhex(report["nonce"])
        public_share = bytes.fromhex(report["public_share"])
        leader_share, helper_share = (bytes.fromhex(s) for s in report["input_shares"])
        # Wire sizes are fixed by the instance.
        assert len(public_share) == (16 * vdaf.SHARES if vdaf.uses_joint_rand else 0)
        assert len(helper_share) == 16 * (3 if vdaf.uses_joint_rand else 2)

        leader, init = ping_pong_leader_init(vdaf, verify_key, b"", nonce, public_share, leader_share)
        assert init is not None, leader
        helper, reply = ping_pong_helper_init(vdaf, verify_key, b"", nonce, public_share, helper_share, init)
        assert isinstance(helper, Finished) and reply is not None, helper
        leader, last = ping_pong_leader_continued(vdaf, b"", leader, reply)
        assert isinstance(leader, Finished) and last is None, leader
        agg = [vdaf.agg_update(None, agg[0], leader.out_share), vdaf.agg_update(None, agg[1], helper.out_share)]

    result = vdaf.unshard(None, [vdaf.decode_agg_share(None, vdaf.encode_agg_share(a)) for a in agg], len(reports))
    assert result == expected_result(params, task["measurements"])
    assert params.result_to_interop(result) == params.result_to_interop(expected_result(params, task["measurements"]))


def test_aggregators_with_different_verify_keys_reject_a_divviup_report(divviup_reports: list[dict[str, Any]]) -> None:
    """Aggregators that disagree on the verify key must reject a genuine divviup-ts report."""
    task = divviup_reports[0]
    vdaf = VdafParams.from_interop(task["vdaf"]).build()
    report = task["reports"][0]
    nonce = bytes.fromhex(report["nonce"])
    public_share = bytes.fromhex(report["public_share"])
    leader_share, helper_share = (bytes.fromhex(s) for s in report["input_shares"])
    _, init = ping_pong_leader_init(vdaf, bytes(16), b"", nonce, public_share, leader_share)
    assert init is not None
    helper, reply = ping_pong_helper_init(vdaf, b"\x01" * 16, b"", nonce, public_share, helper_share, init)
    assert isinstance(helper, Rejected) and reply is None
