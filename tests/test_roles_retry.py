"""The Leader's retries against a faulty Leader->Helper link (a tiny fault proxy in between).

The proxy forwards to the real Helper but, per a script, answers 503 / 429 itself, drops the
connection, or forwards the request and then throws the Helper's response away (answering 500):
the "lost response" case, where only the Helper's idempotent replay keeps counts exact — or
forwards and answers too late (the Leader's request timeout fires first).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from roles_fixtures import Deployment

COUNT = {"type": "Prio3Count"}


class FaultProxy:
    """Reverse proxy on 127.0.0.1; ``script`` is consumed one action per request."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.script: list[str] = []
        self.log: list[tuple[str, str, bytes, int]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with proxy.lock:
                    action = proxy.script.pop(0) if proxy.script else "forward"
                if action == "drop":
                    proxy.log.append((self.command, self.path, body, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if action in ("503", "429"):
                    proxy.log.append((self.command, self.path, body, int(action)))
                    self.send_response(int(action))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "dap-auth-token", "authorization")}
                r = httpx.request(self.command, proxy.target + self.path, content=body,
                                  headers=headers, timeout=30)
                if action == "slow":  # the Helper has answered; the Leader times out first
                    proxy.log.append((self.command, self.path, body, -1))
                    time.sleep(1.5)
                    self.close_connection = True
                    return
                status = 500 if action == "lose" else r.status_code
                proxy.log.append((self.command, self.path, body, status))
                payload = b"" if action == "lose" else r.content
                self.send_response(status)
                if action != "lose" and "content-type" in r.headers:
                    self.send_header("Content-Type", r.headers["content-type"])
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_PUT = do_POST = do_DELETE = do_GET = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Deployment, FaultProxy]]:
    d = Deployment(tmp_path, leader_args=("--job-size", "5", "--retry-budget", "4",
                                          "--request-timeout", "0.5"))
    proxy = FaultProxy(d.helper.url)
    try:
        yield d, proxy
    finally:
        proxy.close()
        d.close()


def test_retries_and_lost_responses_count_once(setup: tuple[Deployment, FaultProxy]) -> None:
    d, proxy = setup
    import secrets

    from roles_fixtures import b64

    task_id = b64(secrets.token_bytes(32))
    coll = d.collector.call("add_task", {"task_id": task_id, "leader": d.leader.url, "vdaf": COUNT,
                                         "collector_authentication_token": "c-tok",
                                         "query_type": 1})
    common = {"task_id": task_id, "leader": d.leader.url, "helper": proxy.url, "vdaf": COUNT,
              "vdaf_verify_key": b64(secrets.token_bytes(16)), "max_batch_query_count": 1,
              "query_type": 1, "min_batch_size": 10, "time_precision": 3600,
              "collector_hpke_config": coll["collector_hpke_config"],
              "leader_authentication_token": "l-tok", "task_expiration": 32503680000}
    assert d.leader.call("add_task", {**common, "role": "leader",
                                      "collector_authentication_token": "c-tok"})["status"] == "success"
    assert d.helper.call("add_task", {**common, "role": "helper"})["status"] == "success"
    t = {"task_id": task_id, "leader": d.leader.url, "helper": d.helper.url, "vdaf": COUNT,
         "time_precision": 3600, "query_type": 1}
    # GET hpke_config goes through the proxy only if the client uses it; our client uses
    # the helper URL given to upload, i.e. the real Helper. The Leader's traffic is scripted:
    proxy.script = ["503", "429", "drop", "lose", "slow", "forward", "lose", "slow", "503"]
    for _ in range(10):
        assert d.upload(t, "1")["status"] == "success"
    r = d.collect(t, timeout=60)
    assert r["status"] == "complete" and r["report_count"] == 10 and r["result"] == "10", r
    puts = [e for e in proxy.log if e[0] == "PUT"]
    # Every retry re-sent exactly the bytes of the first attempt for that job.
    by_path: dict[str, set[bytes]] = {}
    for _, path, body, _ in puts:
        by_path.setdefault(path, set()).add(body)
    assert all(len(bodies) == 1 for bodies in by_path.values())
    assert len(puts) > len(by_path)  # there were retries
    assert any(status == 500 for *_, status in puts)  # and at least one lost response
    assert any(status == -1 for *_, status in puts)  # and one timed out after the Helper ran


def test_budget_exhausted_abandons_and_deletes(setup: tuple[Deployment, FaultProxy]) -> None:
    d, proxy = setup
    import secrets
    import sqlite3
    import time

    from roles_fixtures import b64

    task_id = b64(secrets.token_bytes(32))
    coll = d.collector.call("add_task", {"task_id": task_id, "leader": d.leader.url, "vdaf": COUNT,
                                         "collector_authentication_token": "c-tok",
                                         "query_type": 1})
    common = {"task_id": task_id, "leader": d.leader.url, "helper": proxy.url, "vdaf": COUNT,
              "vdaf_verify_key": b64(secrets.token_bytes(16)), "max_batch_query_count": 1,
              "query_type": 1, "min_batch_size": 1, "time_precision": 3600,
              "collector_hpke_config": coll["collector_hpke_config"],
              "leader_authentication_token": "l-tok", "task_expiration": 32503680000}
    assert d.leader.call("add_task", {**common, "role": "leader",
                                      "collector_authentication_token": "c-tok"})["status"] == "success"
    assert d.helper.call("add_task", {**common, "role": "helper"})["status"] == "success"
    proxy.script = ["503"] * 1000
    t = {"task_id": task_id, "leader": d.leader.url, "helper": d.helper.url, "vdaf": COUNT,
         "time_precision": 3600}
    assert d.upload(t, "1")["status"] == "success"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(e[0] == "DELETE" for e in proxy.log):
            break
        time.sleep(0.1)
    deletes = [e for e in proxy.log if e[0] == "DELETE"]
    assert deletes, proxy.log[-3:]
    con = sqlite3.connect(d.leader.state_dir / "leader.sqlite3")
    try:
        states = con.execute("SELECT state, detail FROM agg_jobs").fetchall()
        reports = con.execute("SELECT state FROM reports").fetchall()
    finally:
        con.close()
    assert [s for s, _ in states] == ["abandoned"] and "budget" in states[0][1]
    assert reports == [("failed",)]
    # 501 would not have been retried; 503 was, more than once.
    assert sum(1 for e in proxy.log if e[0] == "PUT") >= 3
