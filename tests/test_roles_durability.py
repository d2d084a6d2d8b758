"""SIGKILL-and-restart durability of the Leader and the Helper (same state dir, same port).

Invariant checked every time: every acknowledged report is counted, nothing is counted twice
(Prio3Count with all measurements 1, so result == report_count == number of reports), and the
Leader resumes stored jobs by re-sending the stored request bytes (the Helper sees the same
init hash).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from roles_fixtures import Deployment, rows, wait_for

COUNT = {"type": "Prio3Count"}


@pytest.fixture
def dep(tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(tmp_path, leader_args=("--job-size", "10", "--retry-budget", "60"))
    try:
        yield d
    finally:
        d.close()


def tid_bytes(t: dict) -> bytes:
    return base64.urlsafe_b64decode(t["task_id"] + "=")


def leader_db(dep: Deployment) -> Path:
    return dep.leader.state_dir / "leader.sqlite3"


def helper_db(dep: Deployment) -> Path:
    return dep.helper.state_dir / "helper.sqlite3"


def test_leader_killed_before_aggregation(dep: Deployment) -> None:
    dep.leader.extra += ["--min-job-size", "100000"]  # acknowledge, never aggregate
    dep.leader.restart()
    t = dep.add_task(COUNT, min_batch_size=20)
    for _ in range(20):
        assert dep.upload(t, "1")["status"] == "success"
    assert rows(leader_db(dep), "SELECT count(*) FROM agg_jobs") == [(0,)]
    dep.leader.kill()
    dep.leader.extra = ["--job-size", "10"]
    dep.leader.start()
    r = dep.collect(t)
    assert r["status"] == "complete" and r["report_count"] == 20 and r["result"] == "20", r


def test_leader_killed_while_helper_down_resends_stored_bytes(dep: Deployment) -> None:
    t = dep.add_task(COUNT, min_batch_size=30)
    assert dep.upload(t, "1")["status"] == "success"  # the Client now caches both HPKE configs
    dep.helper.kill()
    for _ in range(29):
        assert dep.upload(t, "1")["status"] == "success"
    # Jobs are stored and being retried against the dead Helper.
    wait_for(lambda: rows(leader_db(dep), "SELECT count(*) FROM agg_jobs WHERE state='active'"
                          " AND attempts >= 1")[0][0] >= 3)
    stored = dict(rows(leader_db(dep), "SELECT job_id, init_hash FROM agg_jobs WHERE task_id=?",
                       tid_bytes(t)))
    dep.leader.kill()
    dep.helper.start()
    dep.leader.start()
    r = dep.collect(t)
    assert r["status"] == "complete" and r["report_count"] == 30 and r["result"] == "30", r
    seen = dict(rows(helper_db(dep), "SELECT job_id, init_hash FROM agg_jobs WHERE task_id=?",
                     tid_bytes(t)))
    for job_id, digest in stored.items():
        assert seen[job_id] == digest  # the very bytes stored before the crash were sent


def test_kills_at_several_points_during_upload_and_aggregation(dep: Deployment) -> None:
    t = dep.add_task(COUNT, min_batch_size=1)
    attempted, acked = 0, 0
    stop = threading.Event()

    def uploader() -> None:
        nonlocal attempted, acked
        while not stop.is_set() and attempted < 120:
            attempted += 1
            try:
                if dep.upload(t, "1")["status"] == "success":
                    acked += 1
            except AssertionError:
                pass

    th = threading.Thread(target=uploader)
    th.start()
    try:
        for victim, pause in ((dep.leader, 0.4), (dep.helper, 0.3), (dep.leader, 0.5),
                              (dep.helper, 0.2), (dep.leader, 0.3)):
            time.sleep(pause)
            victim.kill()
            time.sleep(0.1)
            victim.start()
    finally:
        th.join(120)
        stop.set()
    assert acked >= 60
    wait_for(lambda: rows(leader_db(dep), "SELECT count(*) FROM reports WHERE state IN"
                          " ('pending','in_job')")[0][0] == 0, timeout=60)
    assert rows(leader_db(dep), "SELECT count(*) FROM agg_jobs WHERE state='abandoned'") == [(0,)]
    now = int(time.time())
    q = {"type": 1, "batch_interval_start": now - now % 3600 - 3600,
         "batch_interval_duration": 3 * 3600}
    r = dep.collect(t, q)
    assert r["status"] == "complete", r
    assert acked <= r["report_count"] <= attempted
    assert r["result"] == str(r["report_count"])  # nothing counted twice
    stored = rows(leader_db(dep), "SELECT count(*) FROM reports WHERE task_id=?", tid_bytes(t))
    assert stored == [(r["report_count"],)]


def test_collection_survives_helper_and_leader_kills(dep: Deployment) -> None:
    t = dep.add_task(COUNT, min_batch_size=15)
    for _ in range(15):
        assert dep.upload(t, "1")["status"] == "success"
    wait_for(lambda: rows(leader_db(dep), "SELECT count(*) FROM reports WHERE state='done'")[0][0]
             == 15)
    dep.helper.kill()
    start = dep.collector.call("collection_start", {"task_id": t["task_id"], "agg_param": "",
                                                    "query": dep.query_for(t)})
    assert start["status"] == "success"
    wait_for(lambda: rows(leader_db(dep), "SELECT state FROM collection_jobs") == [("collecting",)])
    share_req = rows(leader_db(dep), "SELECT share_req FROM collection_jobs")[0][0]
    dep.leader.kill()
    dep.helper.start()
    dep.leader.start()
    r = dep.poll(start["handle"], timeout=30)
    assert r["status"] == "complete" and r["report_count"] == 15 and r["result"] == "15", r
    assert rows(leader_db(dep), "SELECT share_req FROM collection_jobs")[0][0] == share_req
    assert rows(helper_db(dep), "SELECT count(*) FROM agg_share_resps") == [(1,)]
