"""Proof on this machine (issue 20): three campaign shards as separate processes share a real
``redis-server`` as their example database, against the reference stack with a test-only bug
switch (a Helper that answers an aggregation job's PrepareResps in reverse order:
``helper-resp-reorder``, tests/data/bug_images.toml; deterministic, so a replay fails as the
first run did, and common: any job of two or more reports shows it).

1. shard 0/3 runs alone until it has found, shrunk and stored the bug (then it stops);
2. shards 1/3 and 2/3 start after it, at once, and go on generating after it (``--keep-going``;
   the bug is common, so they may find it again under other plans: those are theirs);
3. checked: (a) the three shards generated disjoint examples (each from its own workload
   partition), (b) both later shards replayed shard 0's failure from Redis before generating,
   and reported it as found there, (c) ``faultrun merge`` reports it once, naming all three.

The Redis server binds 127.0.0.1 on a free port, keeps nothing on disk, and is stopped by the
fixture whatever happens (as is every campaign process: each runs under ``timeout``-bounded
``subprocess.run``, and the reaper kills anything that still mentions this test's directory).
``scripts/bootstrap --test`` installs Debian's ``redis-server``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from process_fixtures import procs_mentioning, reap

from faults.scenario import scenario_from_dict
from harness.campaign.sharding import partition
from harness.stack.lifetime import forget_child, spawn
from harness.stack.ports import free_port

REPO = Path(__file__).resolve().parent.parent
BUG_IMAGES = REPO / "tests" / "data" / "bug_images.toml"
BUG = "helper-resp-reorder"
#: the campaign: shard 0/3 of this seed meets the bug within its first examples; shards 1 and
#: 2 may meet it again in their own (--keep-going: those are theirs, under other plans)
SEED = 1
SHARD0_EXAMPLES = 8
LATER_EXAMPLES = 3


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(exe).exists():
        pytest.fail("redis-server not found: `bash scripts/bootstrap --test` installs Debian's redis-server")
    import redis

    port = free_port()
    proc = spawn([exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                  "--dir", str(tmp_path), "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning"],
                 what="redis-server (test)", stdout=open(tmp_path / "redis.log", "wb"), stderr=subprocess.STDOUT)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {(tmp_path / 'redis.log').read_text()}")
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        forget_child(proc.pid)


def _shard(k: int, examples: int, root: Path, db: str, *extra: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "harness.cli", "campaign", "--shard", f"{k}/3", "--seed", str(SEED),
            "--examples", str(examples), "--example-db", db, "--artifacts", str(root / f"shard-{k}"),
            "--images", str(BUG_IMAGES), "--impl", f"helper=bug-{BUG}", "--timeout", "10", "--keep-runs", *extra]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(p: subprocess.Popen, timeout_s: float) -> str:
    try:
        out, _ = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        pytest.fail(f"campaign shard did not finish in {timeout_s} s:\n{out[-3000:]}")
    return out


def _rows(d: Path) -> list[dict]:
    return [json.loads(x) for x in (d / "examples.jsonl").read_text().splitlines()]


def test_three_shards_share_a_failure_through_redis_and_merge_it_once(tmp_path: Path, redis_url: str) -> None:
    root = tmp_path / "night"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_shard(0, SHARD0_EXAMPLES, root, redis_url, "--shrink-budget", "15"))
        out0 = _finish(procs[0], 150)
        assert procs[0].returncode == 1, out0[-3000:]  # it found the bug
        procs += [_shard(k, LATER_EXAMPLES, root, redis_url, "--keep-going", "--shrink-budget", "5") for k in (1, 2)]
        outs = [_finish(p, 150) for p in procs[1:]]
        for p, out in zip(procs[1:], outs, strict=True):
            assert p.returncode == 1, out[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        reap(str(tmp_path))
    summaries = [json.loads((root / f"shard-{k}" / "campaign.json").read_text()) for k in range(3)]
    (found,) = summaries[0]["failures"]
    assert found["source"] == "generated" and found["signature"][0] == "helper-order"
    # (a) disjoint: no scenario was generated by two shards
    generated = []
    for k in range(3):
        rows = _rows(root / f"shard-{k}")
        digests = {r["digest"] for r in rows if r["phase"] == "generate"}
        assert len(digests) == summaries[k]["examples_run"] >= (1 if k == 0 else LATER_EXAMPLES)
        generated.append(digests)
    assert not (generated[0] & generated[1] or generated[0] & generated[2] or generated[1] & generated[2])
    for k in (1, 2):
        # (b) its first run replayed shard 0's failure from Redis; it failed here too, and was
        # reported as found there, after shard 0 found it
        rows = _rows(root / f"shard-{k}")
        before = rows[:next(i for i, r in enumerate(rows) if r["phase"] == "generate")]
        # (hypothesis keeps more than the failure under a key: an entry may replay as a pass)
        assert any(r["phase"] == "replay" and r["verdict"] == "violation" for r in before), before
        # (an entry stored while shard 0 still shrank replays its plan of then: the same bug)
        f = summaries[k]["failures"][0]
        assert f["source"] == "example-db" and f["signature"][0] == "helper-order"
        assert f["found_wall"] > found["found_wall"]
        assert summaries[k]["replayed"] >= 1 and summaries[k]["examples_run"] == LATER_EXAMPLES
    # every example a shard generated has a workload of its own partition (--keep-runs kept them)
    for k in range(3):
        for row in _rows(root / f"shard-{k}"):
            if row["phase"] == "generate":
                (path,) = (root / f"shard-{k}" / "runs").glob(f"*/{row['run']:05d}/scenario.json")
                assert partition(scenario_from_dict(json.loads(path.read_text())).workload, 3) == k
    # (c) one report, the failure once
    merged = subprocess.run([sys.executable, "-m", "harness.cli", "merge", str(root), "--out", str(tmp_path / "m")],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert merged.returncode == 1, merged.stdout + merged.stderr
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    (m,) = [x for x in report["failures"] if x["scenario"]["plan"] == found["scenario"]["plan"]]
    assert {(x["shard"], x["source"]) for x in m["found_by"]} >= {
        ("0/3", "generated"), ("1/3", "example-db"), ("2/3", "example-db")}
    assert all(x["reach_s"] > 0 for x in m["found_by"] if x["source"] == "example-db")
    # every replay joined a generated failure: one merged entry per plan a shard generated
    assert len(report["failures"]) == len({json.dumps(x["scenario"]["plan"], sort_keys=True)
                                           for s in summaries for x in s["failures"] if x["source"] == "generated"})
    assert report["overlap"] == 0 and report["missing_shards"] == [] and report["examples_run"] == sum(
        s["examples_run"] for s in summaries)
    assert f"{len(report['failures'])} distinct failure(s)" in " ".join(merged.stdout.split())
    assert (tmp_path / "m" / "report.html").is_file() and (tmp_path / "m" / "junit.xml").is_file()
    assert not procs_mentioning(str(tmp_path / "night"))
