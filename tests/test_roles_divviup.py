"""The independent divviup-ts client (@divviup/dap 0.9.1) uploads to our Leader.

``tests/node/dap_upload.mjs`` sends 50 reports per VDAF (Count, Sum, Histogram, SumVec) for
tasks set up through the interop API; our Collector's result must be exact.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from roles_fixtures import Deployment, expected_result

pytestmark = pytest.mark.node

NODE_SCRIPT = Path(__file__).parent / "node" / "dap_upload.mjs"
N = 50

CASES = [
    ({"type": "Prio3Count"}, {"type": "count"}),
    ({"type": "Prio3Sum", "bits": "8"}, {"type": "sum", "bits": 8}),
    ({"type": "Prio3Histogram", "length": "5", "chunk_length": "2"},
     {"type": "histogram", "length": 5, "chunkLength": 2}),
    ({"type": "Prio3SumVec", "bits": "8", "length": "10", "chunk_length": "12"},
     {"type": "sumVec", "bits": 8, "length": 10, "chunkLength": 12}),
]


@pytest.fixture
def dep(tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(tmp_path)
    try:
        yield d
    finally:
        d.close()


def _js(vdaf: dict, m: object) -> object:
    if vdaf["type"] == "Prio3Count":
        return m == "1"
    if isinstance(m, list):
        return [int(x) for x in m]
    return int(m)  # type: ignore[arg-type]


@pytest.mark.parametrize("query_type", [1, 2], ids=["time", "fixed"])
def test_divviup_ts_uploads_are_aggregated_exactly(dep: Deployment, node: str,
                                                   query_type: int) -> None:
    rng = random.Random(query_type)
    plan_tasks, expected = [], []
    from roles_fixtures import random_measurement

    for vdaf, js_vdaf in CASES:
        t = dep.add_task(vdaf, query_type, min_batch_size=N,
                         max_batch_size=N if query_type == 2 else None)
        ms = [random_measurement(vdaf, rng) for _ in range(N)]
        plan_tasks.append({"id": t["task_id"], "timePrecisionSeconds": t["time_precision"],
                           "vdaf": js_vdaf, "measurements": [_js(vdaf, m) for m in ms]})
        expected.append((t, vdaf, ms))
    plan = {"leader": dep.leader.url, "helper": dep.helper.url, "tasks": plan_tasks}
    proc = subprocess.run([node, str(NODE_SCRIPT)], input=json.dumps(plan), capture_output=True,
                          text=True, timeout=180, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [u["reports"] for u in json.loads(proc.stdout)["uploaded"]] == [N] * len(CASES)
    for t, vdaf, ms in expected:
        r = dep.collect(t, timeout=120)
        assert r["status"] == "complete", (vdaf, r)
        assert r["report_count"] == N
        assert r["result"] == expected_result(vdaf, ms), vdaf
