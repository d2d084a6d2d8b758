"""Poplar1 through the reference roles: real processes on 127.0.0.1.

* The interop flow (Client uploads of boolean bit strings, Collector walking the prefix tree
  level by level, each level's candidates being the children of the previous level's heavy
  hitters) for BITS 4 and 16 under time_interval and fixed_size, with exact counts per prefix,
  ``max_batch_query_count`` = number of levels, a repeated collection that consumes no query
  and one distinct parameter too many (``batchQueriedTooManyTimes``).
* The Helper at the HTTP level (the test plays the Leader): per-(report, agg_param)
  anti-replay, every continue rule (step 0, wrong steps, unknown / repeated / reordered
  report IDs, byte-identical replay, mutated re-send, omitted reports), aggregate shares per
  parameter (idempotent, query count, batchMismatch, batch_collected) and DELETE.
* A Leader SIGKILLed between the init and the continue (a proxy on the Leader->Helper link
  holds the continue, before or after the Helper processed it): the restarted Leader
  re-sends the byte-identical stored continue and the counts are exact, nothing counted twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from roles_fixtures import (
    Deployment,
    FakeLeaderBase,
    ForwardingProxyBase,
    QuietHandler,
    RoleProcess,
    rows,
)

from dap import hpke
from dap.constants import PrepareError, PrepareRespState, Role
from dap.messages import (
    AggregateShare,
    AggregationJobResp,
)
from dap.vdaf.params import VdafParams
from dap.vdaf.pingpong import Finished

CONTINUE = FakeLeaderBase.CONTINUE
THRESHOLD = 2  # a prefix counted at least this often is a heavy hitter


def poplar(bits: int) -> dict:
    return {"type": "Poplar1", "bits": str(bits)}


def bools(value: int, bits: int) -> list[bool]:
    """Interop measurement: element 0 is the most significant bit (tree level 0)."""
    return [bool(value >> (bits - 1 - i) & 1) for i in range(bits)]


def prefix_counts(values: list[int], bits: int, level: int, prefixes: list[int]) -> list[int]:
    return [sum(1 for v in values if v >> (bits - 1 - level) == p) for p in prefixes]


def problem(r: httpx.Response, token: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert json.loads(r.content)["type"] == "urn:ietf:params:ppm:dap:error:" + token, r.text

# --- the interop flow: a heavy-hitters walk ------------------------------------------------


def walk_measurements(bits: int, rng: random.Random) -> list[int]:
    """Two heavy values (3 clients each) and three singletons, all distinct."""
    values: set[int] = set()
    while len(values) < 5:
        values.add(rng.randrange(2 ** bits))
    heavy_a, heavy_b, *singles = sorted(values)
    return [heavy_a] * 3 + [heavy_b] * 3 + singles


def start_collection(dep: Deployment, t: dict, agg_param: str, query: dict) -> dict:
    return dep.collector.call("collection_start", {"task_id": t["task_id"], "agg_param": agg_param,
                                                   "query": query})


def collect(dep: Deployment, t: dict, agg_param: str, query: dict) -> dict:
    r = start_collection(dep, t, agg_param, query)
    assert r["status"] == "success", r
    return dep.poll(r["handle"], timeout=60)


@pytest.mark.parametrize("query_type", [1, 2], ids=["time_interval", "fixed_size"])
@pytest.mark.parametrize("bits", [4, 16])
def test_heavy_hitters_walk(tmp_path: Path, bits: int, query_type: int) -> None:
    vdaf = poplar(bits)
    params = VdafParams.from_interop(vdaf)
    values = walk_measurements(bits, random.Random(bits * 10 + query_type))
    dep = Deployment(tmp_path, leader_args=("--collect-interval", "0.05", "--job-size", "4"))
    try:
        t = dep.add_task(vdaf, query_type, min_batch_size=len(values), max_batch_query_count=bits)
        for v in values:
            r = dep.upload(t, bools(v, bits))
            assert r["status"] == "success", r
        query = dep.query_for(t)
        prefixes = [0, 1]
        for level in range(bits):
            agg_param = params.agg_param_to_interop((level, prefixes))
            r = collect(dep, t, agg_param, query)
            assert r["status"] == "complete", (level, r)
            expected = prefix_counts(values, bits, level, prefixes)
            assert r["report_count"] == len(values)
            assert r["result"] == [str(n) for n in expected], (level, prefixes)
            if query_type == 2:
                query = {"type": 2, "subtype": 0, "batch_id": r["batch_id"]}
            heavy = [p for p, n in zip(prefixes, expected) if n >= THRESHOLD]
            assert heavy  # the two heavy values keep the walk going down to the leaves
            last = (agg_param, r["result"])
            prefixes = sorted(c for p in heavy for c in (2 * p, 2 * p + 1))
        # The leaves found are exactly the two heavy values.
        assert sorted(v for v in set(values) if values.count(v) >= THRESHOLD) == [
            p for p, n in zip(prefixes_of_leaves(last[0], params), last[1]) if int(n) >= THRESHOLD]
        # All `bits` query units are used; the same parameter again consumes none.
        again = collect(dep, t, last[0], query)
        assert again["status"] == "complete" and again["result"] == last[1], again
        # One more distinct parameter is one too many, at the Leader.
        extra = start_collection(dep, t, params.agg_param_to_interop((0, [1])), query)
        assert extra["status"] == "error" and "batchQueriedTooManyTimes" in extra["error"], extra
        helper_db = dep.helper.state_dir / "helper.sqlite3"
        assert rows(helper_db, "SELECT count(DISTINCT agg_param) FROM batch_queries") == [(bits,)]
        # Each report was committed once per level at both Aggregators, never more.
        for db in (dep.leader.state_dir / "leader.sqlite3", helper_db):
            assert rows(db, "SELECT count(*), count(DISTINCT report_id || agg_param) FROM param_uses"
                            " WHERE state='committed'") == [(bits * len(values),) * 2]
    finally:
        dep.close()


def prefixes_of_leaves(agg_param: str, params: VdafParams) -> list[int]:
    return list(params.agg_param_from_interop(agg_param).prefixes)


def test_same_level_again_is_report_replayed(tmp_path: Path) -> None:
    """Level 0 with other prefixes after level 0: every report is report_replayed at the
    Leader, the batch (frozen at its first collection) cannot grow: invalidBatchSize."""
    vdaf = poplar(4)
    params = VdafParams.from_interop(vdaf)
    values = [1, 9, 9]
    dep = Deployment(tmp_path, leader_args=("--collect-interval", "0.05"))
    try:
        t = dep.add_task(vdaf, 1, min_batch_size=len(values), max_batch_query_count=2)
        for v in values:
            assert dep.upload(t, bools(v, 4))["status"] == "success"
        query = dep.query_for(t)
        first = collect(dep, t, params.agg_param_to_interop((0, [0, 1])), query)
        assert first["status"] == "complete" and first["result"] == ["1", "2"], first
        again = collect(dep, t, params.agg_param_to_interop((0, [1])), query)
        assert again["status"] == "error" and "invalidBatchSize" in again["error"], again
        # Nothing was sent to the Helper for the second parameter.
        helper_db = dep.helper.state_dir / "helper.sqlite3"
        assert rows(helper_db, "SELECT count(*) FROM agg_jobs") == [(1,)]
    finally:
        dep.close()


# --- the Helper at the HTTP level ------------------------------------------------------------


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoleProcess]:
    with RoleProcess("helper", tmp_path_factory.mktemp("helper")) as p:
        yield p


class PoplarLeader(FakeLeaderBase):
    """Registers a Poplar1 task at the Helper and plays the Leader's side of aggregation."""

    def __init__(self, helper: RoleProcess, *, bits: int = 4, max_batch_query_count: int = 2) -> None:
        super().__init__(helper, poplar(bits), max_batch_query_count=max_batch_query_count, collector_config_id=9)
        self.bits = bits

    def param(self, level: int, prefixes: tuple[int, ...]) -> bytes:
        return self.ops.vdaf.encode_agg_param((level, prefixes))

    def report(self, value: int, t: int | None = None) -> bytes:
        return self.add_report(bools(value, self.bits), t)

    def run_init(self, url: str, rids: list[bytes], agg_param: bytes) -> tuple[list, dict]:
        """PUT the init; (response entries, {report ID: (out share, finish message)})."""
        body, states = self.init(rids, agg_param)
        r = self.put(url, body)
        assert r.status_code == 201, r.text
        resps = AggregationJobResp.decode(r.content).prepare_resps
        finished = {}
        for pr, state in zip(resps, states):
            if pr.prepare_resp_state == PrepareRespState.CONTINUE:
                new_state, outbound = self.ops.leader_step(state, pr.payload, agg_param)
                assert isinstance(new_state, Finished) and outbound == b"\x02\x00\x00\x00\x00"
                finished[bytes(pr.report_id)] = (new_state.out_share, outbound)
        return list(resps), finished

    def result(self, r: httpx.Response, agg_param: bytes, leader_outs: list[Any]) -> list[int]:
        """Open the Helper's share and combine it with the Leader's output shares."""
        assert r.status_code == 200, r.text
        ct = AggregateShare.decode(r.content).encrypted_aggregate_share
        helper_share = hpke.open_aggregate_share(self.collector, Role.HELPER, self.task_id_bytes,
                                                 agg_param, self.selector(), ct)
        leader_share = self.ops.aggregate(leader_outs, agg_param)
        return self.ops.unshard(leader_share, helper_share, len(leader_outs), agg_param)


def states_of(resps: list) -> list[Any]:
    return [pr.prepare_resp_state if pr.prepare_resp_state != PrepareRespState.REJECT
            else PrepareError(pr.prepare_error) for pr in resps]


def test_helper_continue_rules_and_per_param_aggregation(helper: RoleProcess) -> None:
    ld = PoplarLeader(helper, max_batch_query_count=2)
    db = helper.state_dir / "helper.sqlite3"
    a, b, c = (ld.report(v) for v in (13, 13, 6))
    level0 = ld.param(0, (0, 1))
    url = ld.job_url()
    resps, fin = ld.run_init(url, [a, b, c], level0)
    assert states_of(resps) == [PrepareRespState.CONTINUE] * 3
    # Before step 1 a byte-identical init is a safe retry: the stored response, no new work.
    again = ld.put(url, ld.init([a, b, c], level0)[0])
    assert again.status_code == 201
    assert AggregationJobResp.decode(again.content).prepare_resps == tuple(resps)
    # Nothing is committed at init; each report's prep state is stored.
    assert rows(db, "SELECT count(*) FROM param_buckets WHERE task_id=?", ld.task_id_bytes) == [(0,)]

    problem(ld.post(url, 0, [(a, fin[a][1])]), "invalidMessage")
    problem(ld.post(url, 2, [(a, fin[a][1])]), "stepMismatch")  # the Helper is at step 0
    problem(ld.post(url, 1, [(os.urandom(16), fin[a][1])]), "invalidMessage")  # unknown report
    problem(ld.post(url, 1, [(a, fin[a][1]), (a, fin[a][1])]), "invalidMessage")  # repeated
    problem(ld.post(url, 1, [(c, fin[c][1]), (a, fin[a][1])]), "invalidMessage")  # reordered

    # Step 1 with b left out (as a Leader whose sketch check rejected it would send).
    step1 = [(a, fin[a][1]), (c, fin[c][1])]
    first = ld.post(url, 1, step1)
    assert first.status_code == 200, first.text
    assert states_of(AggregationJobResp.decode(first.content).prepare_resps) == \
        [PrepareRespState.FINISHED] * 2
    replay = ld.post(url, 1, step1)
    assert replay.status_code == 200 and replay.content == first.content
    # A different body at the step just processed is a wrong step (draft §10.6 MUST).
    problem(ld.post(url, 1, [(a, fin[a][1])]), "stepMismatch")
    problem(ld.post(url, 1, [(a, fin[a][1]), (c, b"\x02\x00\x00\x00\x01\x00")]), "stepMismatch")
    problem(ld.post(url, 2, step1), "stepMismatch")  # preparation finished at step 1
    problem(ld.post(url, 3, step1), "stepMismatch")
    assert ld.put(url, ld.init([a, b, c], level0)[0]).status_code == 409  # no rewinding
    assert rows(db, "SELECT count(*) FROM param_prep_states WHERE task_id=?", ld.task_id_bytes) == [(0,)]

    # The aggregate share under level 0 counts a and c once each (the replay added nothing).
    share0 = ld.share([a, c], level0)
    assert ld.result(share0, level0, [fin[a][0], fin[c][0]]) == [1, 1]
    assert ld.share([a, c], level0).content == share0.content  # stored, not re-sealed
    problem(ld.share([a, c], level0, count=3), "batchMismatch")

    # Level 1 on the same reports is allowed (is_valid: another level); the same level with
    # other prefixes is a replay; b (omitted at level 0) and a new report are not part of
    # the batch collected at level 0.
    d = ld.report(12)
    level1 = ld.param(1, (1, 3))
    url1 = ld.job_url()
    resps1, fin1 = ld.run_init(url1, [a, b, c, d], level1)
    assert states_of(resps1) == [PrepareRespState.CONTINUE, PrepareError.BATCH_COLLECTED,
                                 PrepareRespState.CONTINUE, PrepareError.BATCH_COLLECTED]
    other0 = ld.param(0, (1,))
    resps_other, _ = ld.run_init(ld.job_url(), [a], other0)
    assert states_of(resps_other) == [PrepareError.REPORT_REPLAYED]
    r = ld.post(url1, 1, [(a, fin1[a][1]), (c, fin1[c][1])])
    assert r.status_code == 200, r.text
    assert ld.result(ld.share([a, c], level1), level1, [fin1[a][0], fin1[c][0]]) == [1, 1]

    # A third distinct parameter exceeds max_batch_query_count = 2; repeats cost nothing.
    level2 = ld.param(2, (3, 6))
    url2 = ld.job_url()
    _, fin2 = ld.run_init(url2, [a, c], level2)
    assert ld.post(url2, 1, [(a, fin2[a][1]), (c, fin2[c][1])]).status_code == 200
    problem(ld.share([a, c], level2), "batchQueriedTooManyTimes")
    assert ld.share([a, c], level0).content == share0.content
    assert rows(db, "SELECT count(*) FROM batch_queries WHERE task_id=?", ld.task_id_bytes) == [(2,)]


def test_helper_delete_discards_prep_states(helper: RoleProcess) -> None:
    ld = PoplarLeader(helper)
    db = helper.state_dir / "helper.sqlite3"
    rid = ld.report(5)
    level = ld.param(3, (5,))
    url = ld.job_url()
    _, fin = ld.run_init(url, [rid], level)
    assert rows(db, "SELECT count(*) FROM param_prep_states WHERE task_id=?", ld.task_id_bytes) == [(1,)]
    assert httpx.delete(url, headers=ld.headers(None), timeout=10).status_code == 204
    assert rows(db, "SELECT count(*) FROM param_prep_states WHERE task_id=?", ld.task_id_bytes) == [(0,)]
    r = ld.post(url, 1, [(rid, fin[rid][1])])
    assert r.status_code == 400 and "unrecognizedAggregationJob" in r.text
    # The report stays used with that parameter (anti-replay), and nothing was counted.
    resps, _ = ld.run_init(ld.job_url(), [rid], level)
    assert states_of(resps) == [PrepareError.REPORT_REPLAYED]
    assert rows(db, "SELECT count(*) FROM param_buckets WHERE task_id=?", ld.task_id_bytes) == [(0,)]


# --- the Leader killed between init and continue ----------------------------------------------


class ContinueProxy(ForwardingProxyBase):
    """Leader->Helper forwarder with a script for the aggregation-job continues (POSTs).

    Each continue takes the next action of ``script`` (then ``pass``): ``hold`` (held
    unsent until :meth:`release`), ``forward-hold`` (forwarded, the Helper's response
    withheld until :meth:`release`: the Helper has committed, the Leader has not), ``503``
    (answered without forwarding) or ``lose`` (forwarded, the response replaced by a 500).
    Every continue's (path, body) is recorded; other requests pass through.
    """

    def __init__(self, target: str, script: list[str]) -> None:
        self.script = list(script)
        self.held = threading.Event()
        self.released = threading.Event()
        self.continues: list[tuple[str, bytes]] = []
        self.forwarded = 0  # continues that reached the Helper
        super().__init__(target)

    def handle(self, req: QuietHandler, body: bytes) -> None:
        action = "pass"
        is_continue = req.command == "POST" and "/aggregation_jobs/" in req.path
        if is_continue:
            self.continues.append((req.path, body))
            action = self.script.pop(0) if self.script else "pass"
        if action == "503":
            req._reply(503)
            return
        if action == "hold":
            self.held.set()
            self.released.wait(60)
            return  # the Leader that sent it is gone by now
        resp = self.forward(req, body)
        if action != "pass" or is_continue:
            self.forwarded += 1
        if action == "forward-hold":
            self.held.set()
            self.released.wait(60)
            return
        if action == "lose":
            req._reply(500)
            return
        req._reply(resp.status_code, resp.content, resp.headers.get("content-type"))

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        super().close()


def check_continue_resent_and_counted_once(dep: Deployment, proxy: ContinueProxy,
                                           n_reports: int) -> None:
    """Every continue carried the bytes the Leader stored; each report committed once."""
    leader_db = dep.leader.state_dir / "leader.sqlite3"
    helper_db = dep.helper.state_dir / "helper.sqlite3"
    [(stored,)] = rows(leader_db, "SELECT continue_req FROM param_jobs")
    path = proxy.continues[0][0]
    assert len(proxy.continues) >= 2
    assert set(proxy.continues) == {(path, stored)}
    assert rows(helper_db, "SELECT state, step, last_hash FROM agg_jobs") == [
        ("finished", 1, hashlib.sha256(stored).digest())]
    for db in (leader_db, helper_db):
        assert rows(db, "SELECT count(*) FROM param_uses WHERE state='committed'") == [(n_reports,)]
    # Every continue that reached the Helper got 200: processed once, then replayed.
    helper_log = (dep.helper.state_dir / "requests.log").read_text().splitlines()
    posts = [json.loads(line) for line in helper_log if '"POST"' in line and path in line]
    assert [p["status"] for p in posts] == [200] * proxy.forwarded


@pytest.mark.parametrize("held", ["forward-hold", "hold"],
                         ids=["helper-processed-step-1", "step-1-never-arrived"])
def test_leader_killed_between_init_and_continue(tmp_path: Path, held: str) -> None:
    vdaf = poplar(4)
    params = VdafParams.from_interop(vdaf)
    values = [13, 13, 6, 9, 13]
    dep = Deployment(tmp_path, leader_args=("--collect-interval", "0.05"))
    proxy = ContinueProxy(dep.helper.url, [held])
    try:
        t = dep.add_task(vdaf, 1, min_batch_size=len(values), helper_for_leader=proxy.url)
        for v in values:
            assert dep.upload(t, bools(v, 4))["status"] == "success"
        level = params.agg_param_to_interop((3, [9, 13]))
        start = start_collection(dep, t, level, dep.query_for(t))
        assert start["status"] == "success", start
        assert proxy.held.wait(30), "the Leader never sent a continue"
        # Step 1 was stored before it was sent.
        leader_db = dep.leader.state_dir / "leader.sqlite3"
        assert rows(leader_db, "SELECT step, continue_req FROM param_jobs") == [
            (1, proxy.continues[0][1])]
        helper_db = dep.helper.state_dir / "helper.sqlite3"
        assert rows(helper_db, "SELECT state FROM agg_jobs") == [
            ("finished" if held == "forward-hold" else "continued",)]
        dep.leader.kill()
        proxy.release()
        dep.leader.start()
        r = dep.poll(start["handle"], timeout=60)
        assert r["status"] == "complete", r
        assert r["report_count"] == len(values) and r["result"] == ["1", "3"], r
        check_continue_resent_and_counted_once(dep, proxy, len(values))
    finally:
        proxy.close()
        dep.close()


def test_leader_retries_continue_with_identical_bytes(tmp_path: Path) -> None:
    vdaf = poplar(4)
    params = VdafParams.from_interop(vdaf)
    values = [3, 3, 12, 5]
    dep = Deployment(tmp_path, leader_args=("--collect-interval", "0.05"))
    # A 503, then a lost response (the Helper committed), then through: the Helper replays.
    proxy = ContinueProxy(dep.helper.url, ["503", "lose"])
    try:
        t = dep.add_task(vdaf, 2, min_batch_size=len(values), helper_for_leader=proxy.url)
        for v in values:
            assert dep.upload(t, bools(v, 4))["status"] == "success"
        r = collect(dep, t, params.agg_param_to_interop((1, [0, 1, 3])), dep.query_for(t))
        assert r["status"] == "complete", r
        assert r["report_count"] == len(values) and r["result"] == ["2", "1", "1"], r
        assert len(proxy.continues) == 3 and proxy.forwarded == 2
        check_continue_resent_and_counted_once(dep, proxy, len(values))
    finally:
        proxy.close()
        dep.close()


def test_helper_report_time_beyond_sqlite_integer(helper: RoleProcess) -> None:
    # A report time above SQLite's signed 64-bit INTEGER (a campaign corrupting the time
    # found the Prio3 Helper answering 500) is just far in the future: report_too_early,
    # the job still 201, the job's other report prepared.
    ld = PoplarLeader(helper)
    late, ok = ld.report(5, t=2**64 - 1), ld.report(6)
    resps, _ = ld.run_init(ld.job_url(), [late, ok], ld.param(0, (0, 1)))
    assert states_of(resps) == [PrepareError.REPORT_TOO_EARLY, PrepareRespState.CONTINUE]
