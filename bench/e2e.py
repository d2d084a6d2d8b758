"""End-to-end throughput of the reference roles: upload -> aggregate -> collect.

Starts a Leader, a Helper and a Collector (real processes on 127.0.0.1, fresh state dirs),
registers a time_interval task, builds N reports in this process (our Client code: Prio3
shard + two HPKE seals), uploads them with a concurrent async HTTP client, waits until the
Leader has aggregated all of them, collects through the Collector, and checks the result.

Run: ``.venv/bin/python bench/e2e.py [--reports N] [--vdaf count|hist100|both]
[--concurrency C] [--job-size J]`` (defaults: 10000, both, 8, 500).

Prints reports/s per phase and where the time goes: client-side report building (not part
of the end-to-end figure, which runs from the first upload to the finished collection),
the CPU seconds per 1,000 reports of the Leader, Helper, Collector (with any child
processes) and of the uploading client over that same window, from /proc (the figure to
compare across runs on a machine shared with other work), the seconds each waited for a
CPU during the upload phase and how the Leader's event-loop thread spent it (/proc
schedstat), and the summed request / job times from the request logs (wall time: it
includes waiting for a CPU, the GIL and the group commit).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import random
import secrets
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from roles_fixtures import RoleProcess, b64, fetch_config  # noqa: E402

from dap.roles.client import Client  # noqa: E402
from dap.roles.task import b64d  # noqa: E402
from dap.roles.vdafs import vdaf_ops  # noqa: E402

VDAFS = {
    "count": {"type": "Prio3Count"},
    "hist100": {"type": "Prio3Histogram", "length": "100", "chunk_length": "10"},
}


def _log_ms(path: Path, method: str, fragment: str) -> tuple[int, float]:
    """(count, seconds) of requests (or ``method="event"``: driver events) in a request log."""
    n, total = 0, 0.0
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if method == "event":
            hit = rec.get("event") == fragment
        else:
            hit = rec.get("method") == method and fragment in (rec.get("path") or "")
        if hit:
            n += 1
            total += rec["ms"]
    return n, total / 1000


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of a process (all its threads) and of its live
    descendants (e.g. a preparation worker), plus those it has reaped, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    # utime, stime, cutime, cstime (proc(5) fields 14-17)
    total = sum(int(f) for f in fields[11:15]) / _CLK_TCK
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = task.read_text().split()
        except FileNotFoundError:
            continue
        total += sum(_cpu_s(int(child)) for child in children)
    return total


def _sched_s(pid: int, tid: int | None = None) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for a CPU) of a process's threads
    (or of one thread), from /proc/.../schedstat; the rest of the wall time the thread was
    blocked (I/O, a lock, the GIL) or idle."""
    paths = ([Path(f"/proc/{pid}/task/{tid}/schedstat")] if tid is not None
             else list(Path(f"/proc/{pid}/task").glob("*/schedstat")))
    run = wait = 0
    for path in paths:
        try:
            fields = path.read_text().split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        run += int(fields[0])
        wait += int(fields[1])
    return run / 1e9, wait / 1e9


def _upload(url: str, bodies: list[bytes], concurrency: int) -> list[int]:
    """PUT every body with ``concurrency`` threads, each on one keep-alive connection.

    (Plain http.client: httpx's async pool costs several ms per request at this
    concurrency and would measure the client, not the Leader.)"""
    parts = urllib.parse.urlsplit(url)
    local = threading.local()

    def one(body: bytes) -> int:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        conn.request("PUT", parts.path, body=body,
                     headers={"Content-Type": "application/dap-report"})
        resp = conn.getresponse()
        resp.read()
        return resp.status

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, bodies, chunksize=16))


def run(name: str, n: int, concurrency: int, job_size: int, base: Path) -> dict:
    vdaf = VDAFS[name]
    ops = vdaf_ops(vdaf)
    leader = RoleProcess("leader", base / "leader", "--job-size", str(job_size), wait=False)
    helper = RoleProcess("helper", base / "helper", wait=False)
    collector = RoleProcess("collector", base / "collector", wait=False)
    procs = [leader, helper, collector]
    try:
        for p in procs:
            p.wait_ready()
        task_id = b64(secrets.token_bytes(32))
        coll = collector.call("add_task", {"task_id": task_id, "leader": leader.url, "vdaf": vdaf,
                                           "collector_authentication_token": "c-tok",
                                           "query_type": 1})
        common = {"task_id": task_id, "leader": leader.url, "helper": helper.url, "vdaf": vdaf,
                  "vdaf_verify_key": b64(secrets.token_bytes(16)), "max_batch_query_count": 1,
                  "query_type": 1, "min_batch_size": n, "time_precision": 3600,
                  "collector_hpke_config": coll["collector_hpke_config"],
                  "leader_authentication_token": "l-tok", "task_expiration": 32503680000}
        leader.call("add_task", {**common, "role": "leader", "collector_authentication_token": "c-tok"})
        helper.call("add_task", {**common, "role": "helper"})
        lc, hc = fetch_config(leader.url, task_id), fetch_config(helper.url, task_id)
        rng = random.Random(1)
        if name == "count":
            ms = [str(rng.randrange(2)) for _ in range(n)]
        else:
            ms = [str(rng.randrange(100)) for _ in range(n)]
        now = int(time.time())
        now -= now % 3600
        t0 = time.perf_counter()
        bodies = [Client._build_report(b64d(task_id), ops, ops.parse_measurement(m),
                                       secrets.token_bytes(16), now, lc, hc) for m in ms]
        t_build = time.perf_counter() - t0

        pids = {"leader": leader.proc.pid, "helper": helper.proc.pid,
                 "collector": collector.proc.pid}

        def cpu_now() -> dict[str, float]:
            snap = {role: _cpu_s(pid) for role, pid in pids.items()}
            snap["client"] = time.process_time()  # this process: the upload threads
            return snap

        sched_pids = {**pids, "client": os.getpid()}
        sched0 = {role: _sched_s(pid) for role, pid in sched_pids.items()}
        loop0 = _sched_s(leader.proc.pid, leader.proc.pid)
        cpu0 = cpu_now()
        t1 = time.perf_counter()
        codes = _upload(leader.url + f"tasks/{task_id}/reports", bodies, concurrency)
        t_upload = time.perf_counter() - t1
        cpu_upload = cpu_now()
        sched1 = {role: _sched_s(pid) for role, pid in sched_pids.items()}
        loop1 = _sched_s(leader.proc.pid, leader.proc.pid)
        assert codes == [201] * n, {c: codes.count(c) for c in set(codes)}

        db = leader.state_dir / "leader.sqlite3"
        while True:
            con = sqlite3.connect(db)
            (left,) = con.execute("SELECT count(*) FROM reports WHERE state IN"
                                  " ('pending','in_job')").fetchone()
            con.close()
            if left == 0:
                break
            time.sleep(0.05)
        t_agg = time.perf_counter() - t1 - t_upload

        t3 = time.perf_counter()
        start = collector.call("collection_start", {
            "task_id": task_id, "agg_param": "",
            "query": {"type": 1, "batch_interval_start": now, "batch_interval_duration": 3600}})
        while True:
            r = collector.call("collection_poll", {"handle": start["handle"]})
            if r["status"] != "in progress":
                break
            time.sleep(0.05)
        t_collect = time.perf_counter() - t3
        total = time.perf_counter() - t1
        cpu_end = cpu_now()
        if name == "count":
            expected = str(sum(int(m) for m in ms))
        else:
            counts = [0] * 100
            for m in ms:
                counts[int(m)] += 1
            expected = [str(c) for c in counts]
        assert r["status"] == "complete" and r["result"] == expected and r["report_count"] == n, r
        leader_up = _log_ms(leader.state_dir / "requests.log", "PUT", "/reports")
        helper_agg = _log_ms(helper.state_dir / "requests.log", "PUT", "/aggregation_jobs/")
        created = _log_ms(leader.state_dir / "requests.log", "event", "agg_job_created")
        finished = _log_ms(leader.state_dir / "requests.log", "event", "agg_job_finished")
        return {"leader_job_prep_s": created[1], "leader_job_finish_s": finished[1],
                "vdaf": name, "reports": n, "build_s": t_build, "upload_s": t_upload,
                "aggregate_s": t_agg, "collect_s": t_collect, "total_s": total,
                "leader_upload_handler_s": leader_up[1], "helper_jobs": helper_agg[0],
                "helper_job_handler_s": helper_agg[1],
                "cpu_s": {role: cpu_end[role] - cpu0[role] for role in cpu0},
                "cpu_upload_s": {role: cpu_upload[role] - cpu0[role] for role in cpu0},
                "runq_wait_upload_s": {role: sched1[role][1] - sched0[role][1] for role in sched0},
                "leader_loop_upload_s": (loop1[0] - loop0[0], loop1[1] - loop0[1])}
    finally:
        for p in procs:
            p.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reports", type=int, default=10000)
    ap.add_argument("--vdaf", choices=["count", "hist100", "both"], default="both")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--job-size", type=int, default=500)
    args = ap.parse_args()
    names = ["count", "hist100"] if args.vdaf == "both" else [args.vdaf]
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"e2e-{name}-") as d:
            s = run(name, args.reports, args.concurrency, args.job_size, Path(d))
        n = s["reports"]
        print(f"== {name}: {n} reports, job size {args.job_size}, concurrency {args.concurrency}")
        print(f"  client build (shard + 2 seals, not in e2e): {s['build_s']:7.2f} s"
              f"  {n / s['build_s']:8.0f} reports/s")
        print(f"  upload (201 for all)                       : {s['upload_s']:7.2f} s"
              f"  {n / s['upload_s']:8.0f} reports/s")
        print(f"  aggregation after the last upload          : {s['aggregate_s']:7.2f} s")
        print(f"  upload + aggregation                       : "
              f"{s['upload_s'] + s['aggregate_s']:7.2f} s"
              f"  {n / (s['upload_s'] + s['aggregate_s']):8.0f} reports/s")
        print(f"  collection                                 : {s['collect_s']:7.2f} s")
        print(f"  END TO END (first upload -> result)        : {s['total_s']:7.2f} s"
              f"  {n / s['total_s']:8.0f} reports/s")
        cpu, cpu_up = s["cpu_s"], s["cpu_upload_s"]
        print("  CPU seconds per 1,000 reports, first upload -> result (less sensitive to"
              " other load than wall time):")
        for role in ("leader", "helper", "client", "collector"):
            print(f"    {role:9s}: {cpu[role] * 1000 / n:6.3f} s"
                  f"   (during the upload phase: {cpu_up[role] * 1000 / n:6.3f} s)")
        servers = cpu["leader"] + cpu["helper"] + cpu["collector"]
        print(f"    Leader + Helper + Collector: {servers * 1000 / n:6.3f} s;"
              f" with the uploading client: {(servers + cpu['client']) * 1000 / n:6.3f} s"
              f"  -> at most {n / (servers + cpu['client']) * 2:6.0f} reports/s on 2 free cores")
        wait = s["runq_wait_upload_s"]
        print(f"  upload phase ({s['upload_s']:.2f} s): seconds runnable but waiting for a CPU"
              " (contention, from our processes and any other load):")
        print("    " + ", ".join(f"{role} {wait[role]:.2f}" for role in ("leader", "helper", "client")))
        on_cpu, queued = s["leader_loop_upload_s"]
        print(f"    Leader event-loop thread: on a CPU {on_cpu:.2f} s, waiting for one {queued:.2f} s,"
              f" blocked {s['upload_s'] - on_cpu - queued:.2f} s (GIL, SQLite lock, no request)")
        print("  summed wall times from the request logs (include waiting for a CPU or the GIL):")
        print(f"    Leader upload requests (HPKE open, checks, commit): "
              f"{s['leader_upload_handler_s']:7.2f} s")
        print(f"    Leader job creation (Prio3 prep_init, encode):      "
              f"{s['leader_job_prep_s']:7.2f} s")
        print(f"    Helper init requests ({s['helper_jobs']:4d} jobs; HPKE open, prep): "
              f"{s['helper_job_handler_s']:7.2f} s")
        print(f"    Leader response processing (prep_next, accumulate): "
              f"{s['leader_job_finish_s']:7.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
