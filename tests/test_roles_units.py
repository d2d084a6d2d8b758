"""In-process checks of the roles' building blocks: storage transactions, task parsing,
auth header rules, URL joining and retry classification."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from starlette.requests import Request

from dap.constants import ProblemType
from dap.roles.http import Problem, check_auth, check_media_type
from dap.roles.leader import is_retryable_status, join_url
from dap.roles.storage import Store
from dap.roles.task import AggregatorTask, TaskConfigError, b64d, b64e


def test_store_commits_and_rolls_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    with store.tx() as c:
        c.execute("INSERT INTO meta(key, value) VALUES('a', 1)")
        with store.tx() as inner:  # nested joins the outer transaction
            inner.execute("INSERT INTO meta(key, value) VALUES('b', 2)")
    with pytest.raises(RuntimeError):
        with store.tx() as c:
            c.execute("INSERT INTO meta(key, value) VALUES('c', 3)")
            raise RuntimeError("boom")
    assert store.query("SELECT key FROM meta WHERE key IN ('a','b','c') ORDER BY key") == [
        ("a",), ("b",)]
    store.close()
    # Visible to another connection: committed, WAL mode.
    con = sqlite3.connect(tmp_path / "s.sqlite3")
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert con.execute("SELECT count(*) FROM meta WHERE key IN ('a','b')").fetchone() == (2,)
    con.close()
    with pytest.raises(ValueError):
        Store(tmp_path / "t.sqlite3", synchronous="OFF")


def _task_body(**over: object) -> dict:
    body = {
        "task_id": b64e(bytes(32)), "leader": "http://l/", "helper": "http://h/",
        "vdaf": {"type": "Prio3Count"}, "leader_authentication_token": "leader-x",
        "collector_authentication_token": "collector-y", "role": "leader",
        "vdaf_verify_key": b64e(bytes(16)), "max_batch_query_count": 1, "query_type": 2,
        "min_batch_size": 5, "max_batch_size": None, "time_precision": 3600,
        "collector_hpke_config": b64e(b"\x01"), "task_expiration": 1,
    }
    body.update(over)
    return body


def test_task_parsing() -> None:
    t = AggregatorTask.from_interop(_task_body())
    assert t.max_batch_size is None and t.collector_token == "collector-y"
    assert AggregatorTask.from_json(t.to_json()) == t
    padded = AggregatorTask.from_interop(_task_body(task_id=b64e(bytes(32)) + "="))
    assert padded.task_id == bytes(32)
    for key, value in (("query_type", 3), ("min_batch_size", "5"), ("task_id", "abc"),
                       ("leader", "ftp://x"), ("max_batch_size", 2), ("role", "client"),
                       ("leader_authentication_token", "a b")):
        with pytest.raises(TaskConfigError, match=key.split("_")[0]):
            AggregatorTask.from_interop(_task_body(**{key: value}))
    with pytest.raises(TaskConfigError):
        b64d("a+b/")


def _request(*headers: tuple[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers]
    return Request({"type": "http", "method": "PUT", "path": "/", "headers": raw,
                    "query_string": b""})


def test_auth_rules() -> None:
    tid = bytes(32)
    check_auth(_request(("DAP-Auth-Token", "tok")), "tok", task_id=tid)
    check_auth(_request(("Authorization", "Bearer tok")), "tok", task_id=tid)
    check_auth(_request(("Authorization", "bearer tok")), "tok", task_id=tid)
    for headers in ((), (("DAP-Auth-Token", "tok2"),), (("Authorization", "Basic tok"),),
                    (("DAP-Auth-Token", "tok"), ("DAP-Auth-Token", "tok")),
                    (("DAP-Auth-Token", "tok"), ("Authorization", "Bearer tok")),
                    (("Authorization", "Bearer"),)):
        with pytest.raises(Problem) as e:
            check_auth(_request(*headers), "tok", task_id=tid)
        assert e.value.problem_type is ProblemType.UNAUTHORIZED_REQUEST
        assert e.value.status == 403 and e.value.task_id == tid
    with pytest.raises(Problem):  # a Helper task has no collector token
        check_auth(_request(("DAP-Auth-Token", "x")), None, task_id=tid)


def test_media_type_is_exact() -> None:
    check_media_type(_request(("Content-Type", "application/dap-report")),
                     "application/dap-report", task_id=None)
    for value in ("application/dap-report; charset=utf-8", "Application/dap-report", ""):
        with pytest.raises(Problem):
            check_media_type(_request(("Content-Type", value)), "application/dap-report",
                             task_id=None)


def test_join_and_retry_classes() -> None:
    assert join_url("http://h:1/dap", "tasks/x") == "http://h:1/dap/tasks/x"
    assert join_url("http://h:1/", "tasks/x") == "http://h:1/tasks/x"
    assert [s for s in (200, 400, 409, 429, 500, 501, 502, 503, 504) if is_retryable_status(s)] \
        == [429, 500, 502, 503, 504]


def test_group_commit_batches_concurrent_writes_and_isolates_refusals(tmp_path: Path) -> None:
    """Writes submitted in the same event-loop turn share one transaction; an item whose
    outcome is an exception gets it alone, the others are committed and answered."""
    import asyncio

    from dap.roles.storage import GroupCommit

    store = Store(tmp_path / "g.sqlite3")

    def apply(c: sqlite3.Connection, items: list[str]) -> list[object]:
        outcomes: list[object] = []
        for key in items:
            if key == "refused":
                outcomes.append(ValueError("refused alone"))
                continue
            c.execute("INSERT INTO meta(key, value) VALUES(?, 1)", (key,))
            outcomes.append(f"stored {key}")
        return outcomes

    commit = GroupCommit(store, apply)

    async def main() -> list[object]:
        return await asyncio.gather(*(commit.submit(k) for k in ("a", "refused", "b", "c")),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert results[0] == "stored a" and results[2] == "stored b" and results[3] == "stored c"
    assert isinstance(results[1], ValueError)
    assert (commit.flushes, commit.items) == (1, 4)
    # Committed: visible to another connection.
    con = sqlite3.connect(tmp_path / "g.sqlite3")
    assert con.execute("SELECT key FROM meta WHERE key IN ('a','b','c','refused') ORDER BY key"
                       ).fetchall() == [("a",), ("b",), ("c",)]
    con.close()

    async def later() -> object:
        return await commit.submit("d")

    assert asyncio.run(later()) == "stored d"
    assert (commit.flushes, commit.items) == (2, 5)


def test_group_commit_failure_rolls_back_the_whole_batch(tmp_path: Path) -> None:
    """If the batch's transaction fails, no item of it is stored or acknowledged."""
    import asyncio

    from dap.roles.storage import GroupCommit

    store = Store(tmp_path / "g.sqlite3")

    def apply(c: sqlite3.Connection, items: list[str]) -> list[object]:
        for key in items:
            c.execute("INSERT INTO meta(key, value) VALUES(?, 1)", (key,))  # 'x' twice: PK clash
        return ["ok"] * len(items)

    commit = GroupCommit(store, apply)

    async def main() -> list[object]:
        return await asyncio.gather(*(commit.submit(k) for k in ("y", "x", "x")),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
    assert store.query("SELECT key FROM meta WHERE key IN ('x','y')") == []
    assert commit.flushes == 0


def test_client_refuses_an_unusable_hpke_config_with_an_error_status() -> None:
    """A config that decodes and names a supported suite but whose key does not fit it (a
    P-256 KEM with a 32-byte key, as a corrupted kem_id gives): upload says error, no 500."""
    import asyncio

    import httpx

    from dap.constants import MEDIA_TYPE_HPKE_CONFIG_LIST
    from dap.messages import HpkeConfig, HpkeConfigList
    from dap.roles.client import Client

    bad = HpkeConfigList((HpkeConfig(7, 0x0010, 0x0001, 0x0001, bytes(32)),)).encode()
    fetched: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        fetched.append(request.url.host)
        return httpx.Response(200, content=bad, headers={"content-type": MEDIA_TYPE_HPKE_CONFIG_LIST})

    async def main() -> dict:
        client = Client()
        client.http = httpx.AsyncClient(transport=httpx.MockTransport(serve))
        try:
            return await client.upload({
                "task_id": b64e(bytes(32)), "leader": "http://leader.test/", "helper": "http://helper.test/",
                "vdaf": {"type": "Prio3Count"}, "measurement": "1", "time_precision": 3600})
        finally:
            await client.aclose()

    out = asyncio.run(main())
    assert out["status"] == "error" and "HPKE config unusable" in out["error"], out
    assert sorted(fetched) == ["helper.test", "leader.test"]


def test_the_job_creator_visits_only_tasks_with_pending_reports(tmp_path: Path) -> None:
    """A warm stack keeps every task it served; the Leader's creator pass (every job interval)
    must not walk them all (issue 15: a 20-minute campaign slowed down as tasks piled up)."""
    from dap import hpke
    from dap.roles.aggregator import Aggregator

    store = Store(tmp_path / "leader.sqlite3")
    agg = Aggregator(store, role="leader", clock_skew=0)
    cfg = b64e(hpke.generate_keypair(1).config.encode())
    ids = [bytes([i]) * 32 for i in range(1, 5)]
    for tid in ids:
        agg.add_task(_task_body(task_id=b64e(tid), collector_hpke_config=cfg, task_expiration=2**40))
    states = {ids[0]: ("pending", "done"), ids[1]: ("done", "failed"), ids[2]: ("in_job",), ids[3]: ("pending",)}
    with store.tx() as c:
        for tid, report_states in states.items():
            for n, state in enumerate(report_states):
                c.execute("INSERT INTO reports(task_id, report_id, time, public_share, leader_share, helper_ct,"
                          " state) VALUES(?,?,0,x'',x'',x'',?)", (tid, bytes([n]) * 16, state))
    assert sorted(t.task_id for t, _ in agg.tasks_with_pending_reports()) == [ids[0], ids[3]]
    store.close()


def test_a_collection_job_not_ready_backs_off_until_its_batch_can_change(tmp_path: Path) -> None:
    """A pending collection job whose batch is not ready is looked at again only after a
    backoff (a warm stack keeps every such job: polling them all each pass grew with a
    campaign); a report stored or settled, an aggregation job ended or a batch grown wakes it."""
    store = Store(tmp_path / "leader.sqlite3")
    tid, other = bytes([1]) * 32, bytes([2]) * 32

    def next_attempt() -> float:
        return store.one("SELECT next_attempt FROM collection_jobs WHERE task_id=?", (tid,))[0]

    def backed_off() -> None:
        with store.tx() as c:
            c.execute("UPDATE collection_jobs SET next_attempt=1e12, attempts=3 WHERE task_id=?", (tid,))

    with store.tx() as c:
        for t in (tid, other):
            c.execute("INSERT INTO collection_jobs(task_id, job_id, req_hash, query, agg_param, state, created)"
                      " VALUES(?, x'01', x'', x'', x'', 'pending', 0)", (t,))
        c.execute("INSERT INTO agg_jobs(task_id, job_id, role, state, agg_param, created)"
                  " VALUES(?, x'02', 'leader', 'active', x'', 0)", (tid,))
        c.execute("INSERT INTO fs_batches(task_id, batch_id, assigned, created) VALUES(?, x'03', 0, 0)", (tid,))
    wakes = {
        "report stored": "INSERT INTO reports(task_id, report_id, time, public_share, leader_share, helper_ct,"
                         " state) VALUES(?, x'04', 0, x'', x'', x'', 'pending')",
        "report settled": "UPDATE reports SET state='done' WHERE task_id=?",
        "job ended": "UPDATE agg_jobs SET state='finished' WHERE task_id=?",
        "batch grew": "UPDATE fs_batches SET assigned=assigned+1 WHERE task_id=?",
    }
    for what, sql in wakes.items():
        backed_off()
        with store.tx() as c:
            c.execute(sql, (tid,))
        assert next_attempt() == 0, what
        assert store.one("SELECT attempts FROM collection_jobs WHERE task_id=?", (tid,))[0] == 0, what
    backed_off()
    with store.tx() as c:  # nothing that can make the batch ready: the backoff stands
        c.execute("UPDATE reports SET state='in_job' WHERE task_id=?", (tid,))
        c.execute("INSERT INTO reports(task_id, report_id, time, public_share, leader_share, helper_ct, state)"
                  " VALUES(?, x'05', 0, x'', x'', x'', 'pending')", (other,))
    assert next_attempt() == 1e12
    store.close()


def test_the_not_ready_backoff_doubles_up_to_its_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dap import hpke
    from dap.roles import leader as leader_mod
    from dap.roles.aggregator import Aggregator

    store = Store(tmp_path / "leader.sqlite3")
    agg = Aggregator(store, role="leader", clock_skew=0)
    tid = bytes([1]) * 32
    agg.add_task(_task_body(task_id=b64e(tid), collector_hpke_config=b64e(hpke.generate_keypair(1).config.encode()),
                            task_expiration=2**40))
    task, ops = agg.get_task(tid)
    drv = leader_mod.LeaderDriver(agg, job_size=10, min_job_size=1, job_interval=0.2, collect_interval=0.25,
                                  retry_budget=5, request_timeout=5, log=lambda rec: None)
    with store.tx() as c:
        c.execute("INSERT INTO collection_jobs(task_id, job_id, req_hash, query, agg_param, state, created)"
                  " VALUES(?, x'01', x'', x'', x'', 'pending', 0)", (tid,))
    monkeypatch.setattr(drv, "_start_collection", lambda *a: False)  # its batch never gets ready
    monkeypatch.setattr(leader_mod.time, "time", lambda: 1000.0)
    waits = []
    for _ in range(9):
        assert drv._try_start_collection(task, ops, b"\x01") is False
        waits.append(store.one("SELECT next_attempt FROM collection_jobs")[0] - 1000.0)
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, leader_mod.NOT_READY_MAX_S, 8.0, 8.0, 8.0]
    store.close()
