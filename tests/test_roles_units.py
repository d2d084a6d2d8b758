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


def test_a_client_given_an_unusable_hpke_config_fails_the_upload_not_the_test_api() -> None:
    """A corrupted HPKE config (here: the KEM id of X448 with an X25519-sized key, as a campaign's
    corrupt-field on the hpke_config answer makes it) ends the upload with an error result;
    before, sealing raised and the test API answered 500, which the harness counts as infra."""
    import asyncio

    from dap.messages import HpkeConfig
    from dap.roles.client import Client

    async def go() -> dict:
        client = Client()
        task = bytes(range(32))
        bad = HpkeConfig(1, 0x0021, 0x0001, 0x0001, b"\x55" * 32)
        client._configs[("http://leader.invalid/", b64e(task))] = bad
        client._configs[("http://helper.invalid/", b64e(task))] = bad
        try:
            return await client.upload({"task_id": b64e(task), "leader": "http://leader.invalid/",
                                        "helper": "http://helper.invalid/", "vdaf": {"type": "Prio3Count"},
                                        "measurement": "1", "time_precision": 3600, "time": 1_700_000_000})
        finally:
            await client.aclose()

    result = asyncio.run(go())
    assert result["status"] == "error" and "sealing the report" in result["error"], result
