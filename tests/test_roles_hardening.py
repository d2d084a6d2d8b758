"""Request size limits, auth before the body, read timeouts (dap/roles/limits.py).

Real role processes on 127.0.0.1 (started and stopped by the fixtures, also on failure),
driven over raw sockets so a test can announce a body it never sends, stall mid-headers
or mid-body, or hang up. Bodies are streamed from one reused chunk: the test never holds
more than 256 KiB of body itself. What is measured:

* a wrong token with a huge body is answered 403 before the body is read, and the
  role's RSS (/proc/PID/status VmRSS) does not grow with the body;
* a body over the limit with the right token is 413 with a problem document, from
  Content-Length before anything is read, or by counting a chunked body;
* ``Content-Length: 10**12`` with 10 bytes sent, a stall mid-body and a stall mid-headers
  are closed within the configured timeouts (1 s here), and the file descriptors come
  back;
* 200 stalled connections do not stop a normal upload;
* a client hanging up mid-body is one log line, not a 500 with a traceback.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from roles_fixtures import RoleProcess, b64, build_report, fetch_config, now_rounded

from dap import hpke

TP = 3600
COUNT = {"type": "Prio3Count"}
MiB = 1 << 20
TIMEOUT = 1.0  # --header-timeout and --body-timeout of the roles here
AGG_LIMIT = 4 * MiB  # --max-agg-job-bytes here (default 16 MiB)
SHORT = ("--header-timeout", str(TIMEOUT), "--body-timeout", str(TIMEOUT),
         "--max-agg-job-bytes", str(AGG_LIMIT))
INIT = "application/dap-aggregation-job-init-req"
REPORT = "application/dap-report"
CHUNK = bytes(256 * 1024)


def _task_body(role: str, helper_url: str) -> tuple[dict, str]:
    tid = b64(secrets.token_bytes(32))
    body = {
        "task_id": tid, "leader": "http://127.0.0.1:1/", "helper": helper_url, "vdaf": COUNT,
        "leader_authentication_token": "leader-" + secrets.token_hex(8), "role": role,
        "vdaf_verify_key": b64(secrets.token_bytes(16)), "max_batch_query_count": 1,
        "query_type": 1, "min_batch_size": 1, "time_precision": TP,
        "collector_hpke_config": b64(hpke.generate_keypair(7).config.encode()),
        "task_expiration": 32503680000,
    }
    if role == "leader":
        body["collector_authentication_token"] = "collector-" + secrets.token_hex(8)
    return body, tid


class Role:
    """A role process with one registered task."""

    def __init__(self, proc: RoleProcess) -> None:
        self.proc = proc
        self.task, self.task_id = _task_body(proc.role, proc.url)
        assert proc.call("add_task", self.task)["status"] == "success"
        self.token = self.task["leader_authentication_token"]

    @property
    def port(self) -> int:
        return self.proc.port

    @property
    def pid(self) -> int:
        assert self.proc.proc is not None
        return self.proc.proc.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def fds(self) -> int:
        return len(list(Path(f"/proc/{self.pid}/fd").iterdir()))

    def log_lines(self) -> list[dict]:
        text = (self.proc.state_dir / "requests.log").read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def last_log(self, match: Any, timeout: float = 5) -> dict:
        """The last request-log line ``match`` accepts, waiting for it (the line is written
        just after the answer is sent)."""
        deadline = time.monotonic() + timeout
        while True:
            hits = [x for x in self.log_lines() if match(x)]
            if hits or time.monotonic() > deadline:
                assert hits, "no matching log line"
                return hits[-1]
            time.sleep(0.05)

    def stderr(self) -> str:
        return (self.proc.state_dir / "stderr.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Role]:
    with RoleProcess("helper", tmp_path_factory.mktemp("helper"), *SHORT) as p:
        yield Role(p)


@pytest.fixture(scope="module")
def leader(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Role]:
    with RoleProcess("leader", tmp_path_factory.mktemp("leader"), *SHORT) as p:
        yield Role(p)


# --- a raw HTTP/1.1 client ---------------------------------------------------------------

def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Conn:
    """One connection; a thread reads whatever the server sends until it closes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.received = bytearray()
        self.closed_at: float | None = None
        self.opened_at = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.received += data
        except OSError:
            pass
        self.closed_at = time.monotonic()

    def send(self, data: bytes) -> bool:
        """False once the server has closed (or reset) the connection."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def stream(self, total: int, *, chunked: bool = False) -> int:
        """Send up to ``total`` body bytes; stop when the server closes. Bytes sent."""
        sent = 0
        while sent < total:
            n = min(len(CHUNK), total - sent)
            piece = CHUNK[:n]
            if chunked:
                piece = b"%x\r\n" % n + piece + b"\r\n"
            if not self.send(piece):
                break
            sent += n
        else:
            if chunked:
                self.send(b"0\r\n\r\n")
        return sent

    def wait_closed(self, timeout: float) -> float | None:
        """Seconds from opening to the server's close, or None if still open."""
        self._reader.join(timeout)
        return None if self.closed_at is None else self.closed_at - self.opened_at

    def status(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.received and time.monotonic() < deadline:
            if self.closed_at is not None and b"\r\n" not in self.received:
                break
            time.sleep(0.01)
        line = bytes(self.received).split(b"\r\n", 1)[0]
        assert line.startswith(b"HTTP/1.1 "), bytes(self.received[:200])
        return int(line.split()[1])

    def json_body(self, timeout: float = 10) -> tuple[dict[str, str], Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = bytes(self.received)
            if b"\r\n\r\n" in raw:
                headers_raw, body = raw.split(b"\r\n\r\n", 1)
                headers = {}
                for line in headers_raw.split(b"\r\n")[1:]:
                    k, _, v = line.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                if len(body) >= int(headers.get("content-length", "0")):
                    return headers, json.loads(body[: int(headers["content-length"])])
            time.sleep(0.01)
        raise AssertionError(f"no complete response: {bytes(self.received[:300])!r}")

    def close(self) -> None:
        # shutdown first: a plain close() leaves the connection up while the reader
        # thread is still blocked in recv() on it
        for step in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):
            try:
                step()
            except OSError:
                pass


def agg_job_path(role: Role) -> str:
    return f"/tasks/{role.task_id}/aggregation_jobs/{b64(secrets.token_bytes(16))}"


def settle_rss(role: Role) -> int:
    time.sleep(0.3)
    return role.rss_kib()


# --- size limits and authentication before the body -----------------------------------

def test_wrong_token_with_huge_bodies_is_403_without_reading_them(helper: Role) -> None:
    """4 x 64 MiB announced (2 by Content-Length, 2 chunked), wrong token: 403 at once,
    the body is never buffered; the Helper's RSS stays put (before: +1 GiB for 4 x 128)."""
    before = settle_rss(helper)
    sent_total = 0
    for i in range(4):
        chunked = i % 2 == 1
        framing = ({"Transfer-Encoding": "chunked"} if chunked
                   else {"Content-Length": str(64 * MiB)})
        c = Conn(helper.port)
        try:
            c.send(head("PUT", agg_job_path(helper), {
                "Content-Type": INIT, "DAP-Auth-Token": "wrong-token", **framing}))
            sent_total += c.stream(64 * MiB, chunked=chunked)
            assert c.status() == 403
            _, doc = c.json_body()
            assert doc["type"] == "urn:ietf:params:ppm:dap:error:unauthorizedRequest"
            assert doc["taskid"] == helper.task_id
            # The rest of the body is discarded for at most --body-timeout / 1 MiB, then closed.
            assert c.wait_closed(TIMEOUT + 5) is not None
        finally:
            c.close()
    after = settle_rss(helper)
    assert after - before < 8 * 1024, (before, after)
    # Far less than 256 MiB went through before the Helper hung up.
    assert sent_total < 64 * MiB, sent_total
    print(f"wrong token, 4 x 64 MiB: RSS {before} -> {after} KiB, {sent_total} bytes accepted")


def test_oversized_body_with_right_token_is_413_problem(helper: Role, leader: Role) -> None:
    # By Content-Length: refused before any body byte is read.
    c = Conn(helper.port)
    try:
        c.send(head("PUT", agg_job_path(helper), {
            "Content-Type": INIT, "DAP-Auth-Token": helper.token,
            "Content-Length": str(AGG_LIMIT + 1)}))
        assert c.status() == 413
        headers, doc = c.json_body()
        assert headers["content-type"] == "application/problem+json"
        assert doc["type"] == "about:blank" and doc["title"] == "Content Too Large"
        assert doc["status"] == 413 and doc["taskid"] == helper.task_id
        assert str(AGG_LIMIT) in doc["detail"]
    finally:
        c.close()
    # Chunked: counted while it streams; 413 once past the limit, the rest never buffered.
    before = settle_rss(helper)
    c = Conn(helper.port)
    try:
        c.send(head("PUT", agg_job_path(helper), {
            "Content-Type": INIT, "DAP-Auth-Token": helper.token,
            "Transfer-Encoding": "chunked"}))
        sent = c.stream(64 * MiB, chunked=True)
        assert c.status() == 413
        assert c.json_body()[1]["taskid"] == helper.task_id
        assert sent < 64 * MiB
    finally:
        c.close()
    assert settle_rss(helper) - before < 3 * AGG_LIMIT // 1024 + 8 * 1024
    # An upload (no authentication in DAP) over --max-upload-bytes (default 1 MiB).
    r = httpx.put(f"{leader.proc.url}tasks/{leader.task_id}/reports", content=bytes(MiB + 1),
                  headers={"Content-Type": REPORT}, timeout=10)
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["taskid"] == leader.task_id
    last = leader.last_log(lambda x: x.get("path", "").endswith("/reports")
                           and x.get("status") == 413)
    assert "exceeds the limit" in last["error"]


def test_httpx_client_gets_the_early_answer(helper: Role) -> None:
    """A real client streaming a big body with a wrong token reads the 403 (the Helper
    discards the rest for a moment instead of resetting the connection under it)."""

    def body() -> Iterator[bytes]:
        for _ in range(32):  # 8 MiB
            yield CHUNK

    with httpx.Client(timeout=10) as client:
        r = client.put(f"{helper.proc.url.rstrip('/')}{agg_job_path(helper)}", content=body(),
                       headers={"Content-Type": INIT, "DAP-Auth-Token": "nope"})
        assert r.status_code == 403
        # A wrong token with a small body leaves the connection usable.
        r = client.put(f"{helper.proc.url.rstrip('/')}{agg_job_path(helper)}", content=b"x" * 100,
                       headers={"Content-Type": INIT, "DAP-Auth-Token": "nope"})
        assert r.status_code == 403
        r = client.post(f"{helper.proc.url}internal/test/ready")
        assert r.status_code == 200


# --- timeouts ----------------------------------------------------------------------------

def test_announced_terabyte_with_ten_bytes_is_closed_within_the_timeout(helper: Role,
                                                                        leader: Role) -> None:
    fds_before = helper.fds()
    conns = []
    try:
        for token in (helper.token, "wrong"):  # 413 / 403 at once, then the discard ends
            c = Conn(helper.port)
            conns.append(c)
            c.send(head("PUT", agg_job_path(helper), {
                "Content-Type": INIT, "DAP-Auth-Token": token, "Content-Length": str(10**12)}))
            c.send(b"0123456789")
        # An upload within the limit that stalls: 408 after --body-timeout, then closed.
        c = Conn(leader.port)
        conns.append(c)
        c.send(head("PUT", f"/tasks/{leader.task_id}/reports", {
            "Content-Type": REPORT, "Content-Length": "1000"}))
        c.send(b"0123456789")
        for conn in conns:
            took = conn.wait_closed(TIMEOUT + 3)
            assert took is not None, "connection still open"
            assert took < TIMEOUT + 2, took
        assert [conn.status() for conn in conns] == [413, 403, 408]
        assert b"connection: close" in bytes(conns[2].received).lower()
    finally:
        for conn in conns:
            conn.close()
    time.sleep(0.2)
    assert helper.fds() <= fds_before
    last = leader.last_log(lambda x: x.get("path", "").endswith("/reports")
                           and x.get("status") == 408)
    assert "not received within" in last["error"]


def test_stall_mid_headers_is_closed_within_the_header_timeout(helper: Role) -> None:
    quiet, partial, trickle = Conn(helper.port), Conn(helper.port), Conn(helper.port)
    try:
        partial.send(b"PUT /tasks/x/aggregation_jobs/y HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        trickle.send(b"PUT /tasks/x/aggregation_jobs/y HTTP/1.1\r\n")
        for i in range(6):  # a header line every 0.3 s does not push the deadline back
            time.sleep(0.3)
            if not trickle.send(b"X-Slow-%d: 1\r\n" % i):
                break
        for conn in (quiet, partial, trickle):
            took = conn.wait_closed(TIMEOUT + 3)
            # the trickle ran for 1.8 s: its deadline was not pushed back by its lines
            assert took is not None and took < TIMEOUT + 1.5, took
        assert partial.status() == 408
    finally:
        for conn in (quiet, partial, trickle):
            conn.close()
    helper.last_log(lambda x: x.get("event") == "connection_dropped"
                    and "headers not received" in x["why"])


def test_header_flood_is_431(helper: Role) -> None:
    before = settle_rss(helper)
    c = Conn(helper.port)
    try:
        c.send(b"GET /hpke_config HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for i in range(4096):  # up to 4 MiB of headers
            if not c.send(b"X-Pad-%d: " % i + b"a" * 1000 + b"\r\n"):
                break
        assert c.wait_closed(5) is not None
        assert c.status() == 431
    finally:
        c.close()
    assert settle_rss(helper) - before < 8 * 1024


def test_200_stalled_connections_do_not_stop_an_upload(tmp_path: Path) -> None:
    with RoleProcess("leader", tmp_path / "leader", "--header-timeout", "3",
                     "--body-timeout", "3") as p:
        leader = Role(p)
        configs = (fetch_config(p.url, leader.task_id), hpke.generate_keypair(9).config)
        warm_up, report = (build_report(leader.task_id, COUNT, "1", now_rounded(TP), *configs)[0]
                           for _ in range(2))
        # The first upload opens the database's WAL files: count descriptors after it.
        assert httpx.put(f"{p.url}tasks/{leader.task_id}/reports", content=warm_up,
                         headers={"Content-Type": REPORT}, timeout=5).status_code == 201
        time.sleep(0.2)
        fds_idle = leader.fds()
        stalled = []
        try:
            for i in range(200):
                c = Conn(p.port)
                stalled.append(c)
                if i % 2:  # mid-headers
                    c.send(b"PUT /tasks/" + leader.task_id.encode() + b"/reports HTTP/1.1\r\n")
                else:  # mid-body
                    c.send(head("PUT", f"/tasks/{leader.task_id}/reports", {
                        "Content-Type": REPORT, "Content-Length": str(len(report))}))
                    c.send(report[:10])
            deadline = time.monotonic() + 1.5
            while (fds_stalled := leader.fds()) < fds_idle + 190 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert fds_stalled >= fds_idle + 190, (fds_idle, fds_stalled)
            r = httpx.put(f"{p.url}tasks/{leader.task_id}/reports", content=report,
                          headers={"Content-Type": REPORT}, timeout=5)
            assert r.status_code == 201, r.text
            assert all(c.closed_at is None for c in stalled[:10])  # still held meanwhile
            for c in stalled:
                assert c.wait_closed(3 + 5) is not None
        finally:
            for c in stalled:
                c.close()
        time.sleep(0.3)
        fds_after = leader.fds()
        assert fds_after <= fds_idle, (fds_idle, fds_after)
        print(f"200 stalled connections: fds {fds_idle} -> {fds_stalled} -> {fds_after}")


# --- a client that hangs up ----------------------------------------------------------------

def test_disconnect_mid_body_is_one_log_line(helper: Role, leader: Role) -> None:
    path = agg_job_path(helper)
    c = Conn(helper.port)
    c.send(head("PUT", path, {"Content-Type": INIT, "DAP-Auth-Token": helper.token,
                              "Content-Length": "100000"}))
    c.send(bytes(1000))
    time.sleep(0.2)
    c.close()
    c = Conn(leader.port)
    c.send(head("POST", "/internal/test/add_task", {"Content-Length": "5000"}))
    c.send(b'{"task_id":')
    time.sleep(0.2)
    c.close()
    for role, p in ((helper, path), (leader, "/internal/test/add_task")):
        line = role.last_log(lambda x, p=p: x.get("path") == p and x.get("status") is None)
        assert "client disconnected" in line["error"], line
        err = role.stderr()
        assert "Traceback" not in err and "Exception in ASGI" not in err
        assert '"status":500' not in err
