"""The interop runner sequence (interop-api.md §4) against our four role processes.

ready -> endpoint_for_task -> Collector add_task -> Leader/Helper add_task -> uploads through
our Client -> collection_start -> collection_poll until complete; for every Prio3 variant of
the reference runner's table and both query types. The result must equal the locally computed
aggregate exactly (decimal strings), with the right report_count, interval and batch_id.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from roles_fixtures import Deployment, RoleProcess, expected_result, random_measurement

VDAFS = {
    "count": {"type": "Prio3Count"},
    "sum8": {"type": "Prio3Sum", "bits": "8"},
    "sumvec": {"type": "Prio3SumVec", "bits": "8", "length": "10", "chunk_length": "12"},
    "hist5": {"type": "Prio3Histogram", "length": "5", "chunk_length": "2"},
    "hist12": {"type": "Prio3Histogram", "length": "12", "chunk_length": "4"},
}
N_REPORTS = 10


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = Deployment(tmp_path_factory.mktemp("interop"))
    try:
        yield d
    finally:
        d.close()


@pytest.mark.parametrize("query_type", [1, 2], ids=["time", "fixed"])
@pytest.mark.parametrize("name", list(VDAFS))
def test_runner_sequence(dep: Deployment, name: str, query_type: int) -> None:
    vdaf = VDAFS[name]
    t = dep.add_task(vdaf, query_type, min_batch_size=N_REPORTS,
                     max_batch_size=N_REPORTS if query_type == 2 else None)
    rng = random.Random(f"{name}-{query_type}")
    ms = [random_measurement(vdaf, rng) for _ in range(N_REPORTS)]
    for m in ms:
        assert dep.upload(t, m) == {"status": "success"}
    r = dep.collect(t)
    assert r["status"] == "complete", r
    assert r["result"] == expected_result(vdaf, ms)
    assert r["report_count"] == N_REPORTS
    tp = t["time_precision"]
    now = int(time.time())
    assert r["interval_duration"] == tp
    assert r["interval_start"] == now - now % tp or r["interval_start"] == now - now % tp - tp
    if query_type == 2:
        assert len(r["batch_id"]) == 43
    else:
        assert "batch_id" not in r


def test_ready_accepts_no_body_and_unknown_test_path_is_404(dep: Deployment) -> None:
    import httpx

    for p in dep.procs:
        assert httpx.post(p.url + "internal/test/ready", timeout=5).status_code == 200
        assert httpx.post(p.url + "internal/test/ready", json={}, timeout=5).status_code == 200
        assert p.post("internal/test/no_such_endpoint", {}).status_code == 404


def test_add_task_errors_are_status_error(dep: Deployment) -> None:
    t = dep.add_task(VDAFS["count"])
    bad = dep.leader.call("add_task", {"task_id": t["task_id"], "role": "leader"})
    assert bad["status"] == "error" and bad["error"]
    unsupported = dep.collector.call("add_task", {
        "task_id": t["task_id"][:-2] + "AA", "leader": t["leader"], "vdaf": {
            "type": "Prio3MultihotCountVec", "length": "8"},
        "collector_authentication_token": "x", "query_type": 1})
    assert unsupported["status"] == "error"
    # Malformed JSON is a 400 (not a parsed command).
    import httpx

    r = httpx.post(dep.leader.url + "internal/test/add_task", content=b"{nope", timeout=5)
    assert r.status_code == 400


def test_bad_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    from roles_fixtures import REPO

    for args in (["--role", "leader"], ["--role", "nobody", "--state-dir", str(tmp_path)],
                 ["--role", "helper", "--state-dir", str(tmp_path), "--port", "99999"],
                 ["--role", "leader", "--state-dir", str(tmp_path), "--job-size", "0"],
                 ["--role", "leader", "--state-dir", str(tmp_path / "f")]):
        (tmp_path / "f").write_text("not a directory")
        p = subprocess.run([sys.executable, "-m", "dap.roles", *args], cwd=REPO,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = subprocess.run([sys.executable, "-m", "dap.roles", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "for testing only" in p.stdout


def test_request_log_has_one_line_per_request(dep: Deployment) -> None:
    import json

    lines = (dep.leader.state_dir / "requests.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    reqs = [r for r in records if "method" in r]
    assert reqs and all({"method", "path", "status", "problem", "ms"} <= set(r) for r in reqs)


def test_role_process_is_stopped(tmp_path: Path) -> None:
    with RoleProcess("client", tmp_path / "c") as p:
        assert p.proc.poll() is None
    assert p.proc.poll() is not None
