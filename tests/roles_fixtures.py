"""Fixtures for the reference-role tests: real processes on loopback.

:class:`RoleProcess` starts ``python -m dap.roles`` on a free 127.0.0.1 port with
its own state dir, waits for ``/internal/test/ready`` and is always stopped
(``close()``; the fixtures call it in teardown, also on failure). Its stderr
goes to ``<state-dir>/stderr.log`` (never a pipe that could fill up).
:class:`Deployment` is the four roles plus the interop runner sequence
(interop-api.md §4) used by most tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
TIME_PRECISION = 3600


from harness.stack.backend import free_port
from harness.stack.interop import InteropClient, b64


class RoleProcess:
    """One role process; a context manager whose ``close()`` always stops it."""

    def __init__(self, role: str, state_dir: Path, *extra: str, port: int | None = None,
                 wait: bool = True) -> None:
        self.role = role
        self.state_dir = state_dir
        self.extra = list(extra)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self._err: Any = None
        self.url = f"http://127.0.0.1:{self.port}/"
        self.spawn()
        if wait:
            self.wait_ready()

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "dap.roles", "--role", self.role, "--host", "127.0.0.1",
               "--port", str(self.port), "--state-dir", str(self.state_dir), *self.extra]
        self._err = open(self.state_dir / "stderr.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=self._err)

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.role} exited with {self.proc.returncode}: "
                                   f"{(self.state_dir / 'stderr.log').read_text()[-2000:]}")
            try:
                if httpx.post(self.url + "internal/test/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.close()
        raise RuntimeError(f"{self.role} did not become ready")

    def kill(self) -> None:
        """SIGKILL, no cleanup: the durability tests' crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self._err is not None:
            self._err.close()

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._err is not None and not self._err.closed:
            self._err.close()
        if getattr(self, "_api", None) is not None:
            self._api.close()
            self._api = None

    def post(self, path: str, body: dict | None = None, timeout: float = 60) -> httpx.Response:
        return httpx.post(self.url + path.lstrip("/"), json=body if body is not None else {},
                          timeout=timeout)

    @property
    def api(self) -> InteropClient:
        """This role's interop API as the harness drives it."""
        if getattr(self, "_api", None) is None:
            self._api = InteropClient(self.role, self.url, timeout_s=60)
        return self._api

    def call(self, path: str, body: dict) -> dict:
        r = self.post("internal/test/" + path, body)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def __enter__(self) -> RoleProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Deployment:
    """Leader, Helper, Client, Collector processes plus the runner's task set-up."""

    def __init__(self, base: Path, leader_args: tuple[str, ...] = (),
                 helper_args: tuple[str, ...] = ()) -> None:
        self.base = base
        self.procs: list[RoleProcess] = []
        try:
            self.leader = self._start("leader", *leader_args)
            self.helper = self._start("helper", *helper_args)
            self.client = self._start("client")
            self.collector = self._start("collector")
            for p in self.procs:
                p.wait_ready()
        except BaseException:
            self.close()
            raise

    def _start(self, role: str, *args: str) -> RoleProcess:
        p = RoleProcess(role, self.base / role, *args, wait=False)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            p.close()

    def add_task(self, vdaf: dict, query_type: int = 1, *, min_batch_size: int = 1,
                 max_batch_size: int | None = None, max_batch_query_count: int = 1,
                 time_precision: int = TIME_PRECISION,
                 task_expiration: int = 32503680000, helper_for_leader: str = "") -> dict:
        """The runner sequence up to add_task (harness.stack.interop.provision_task); returns the task.

        ``helper_for_leader``: the Helper URL the Leader is given (e.g. a fault proxy's).
        """
        from dap.vdaf.params import VdafParams
        from faults.scenario import TaskSpec
        from harness.stack.interop import provision_task

        now = int(time.time())
        spec = TaskSpec(vdaf=VdafParams.from_interop(vdaf),
                        query_type="time_interval" if query_type == 1 else "fixed_size",
                        min_batch_size=min_batch_size, max_batch_size=max_batch_size,
                        max_batch_query_count=max_batch_query_count, time_precision_s=time_precision,
                        expiration_after_s=task_expiration - now)
        pt = provision_task(spec, leader=self.leader.api, helper=self.helper.api,
                            collector=self.collector.api, base_time=now,
                            helper_base_for_leader=helper_for_leader)
        return {"task_id": pt.task_id, "vdaf": vdaf, "query_type": query_type,
                "leader_token": pt.leader_token, "collector_token": pt.collector_token,
                "time_precision": time_precision, "leader": pt.leader_url_client,
                "helper": pt.helper_url_client}

    def upload(self, t: dict, measurement: Any, **extra: Any) -> dict:
        return self.client.call("upload", {
            "task_id": t["task_id"], "leader": t["leader"], "helper": t["helper"],
            "vdaf": t["vdaf"], "measurement": measurement, "time_precision": t["time_precision"],
            **extra})

    def query_for(self, t: dict, start: int | None = None, duration: int | None = None) -> dict:
        if t["query_type"] == 1:
            tp = t["time_precision"]
            now = int(time.time())
            return {"type": 1,
                    "batch_interval_start": start if start is not None else now - now % tp,
                    "batch_interval_duration": duration or 2 * tp}
        return {"type": 2, "subtype": 1}

    def collect(self, t: dict, query: dict | None = None, timeout: float = 60) -> dict:
        r = self.collector.call("collection_start", {
            "task_id": t["task_id"], "agg_param": "", "query": query or self.query_for(t)})
        if r["status"] != "success":
            return r
        return self.poll(r["handle"], timeout)

    def poll(self, handle: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            r = self.collector.call("collection_poll", {"handle": handle})
            if r["status"] != "in progress" or time.monotonic() > deadline:
                return r
            time.sleep(0.1)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(tmp_path)
    try:
        yield d
    finally:
        d.close()


def expected_result(vdaf: dict, measurements: list[Any]) -> Any:
    kind = vdaf["type"]
    if kind in ("Prio3Count", "Prio3Sum"):
        return str(sum(int(m) for m in measurements))
    if kind == "Prio3Histogram":
        counts = [0] * int(vdaf["length"])
        for m in measurements:
            counts[int(m)] += 1
        return [str(c) for c in counts]
    if kind == "Prio3SumVec":
        sums = [0] * int(vdaf["length"])
        for m in measurements:
            for i, v in enumerate(m):
                sums[i] += int(v)
        return [str(s) for s in sums]
    raise ValueError(kind)


def random_measurement(vdaf: dict, rng: Any) -> Any:
    kind = vdaf["type"]
    if kind == "Prio3Count":
        return str(rng.randrange(2))
    if kind == "Prio3Sum":
        return str(rng.randrange(2 ** int(vdaf["bits"])))
    if kind == "Prio3Histogram":
        return str(rng.randrange(int(vdaf["length"])))
    if kind == "Prio3SumVec":
        return [str(rng.randrange(2 ** int(vdaf["bits"]))) for _ in range(int(vdaf["length"]))]
    raise ValueError(kind)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler for the tests' scripted proxies: no access log, one way to reply."""

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"", content_type: str | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeLeaderBase:
    """A stand-in Leader: registers a time_interval task (``vdaf``) at a Helper, shards reports
    with our own code and plays the Leader's side of aggregation over HTTP: authenticated
    init PUTs, continue POSTs and aggregate-share requests."""

    INIT = "application/dap-aggregation-job-init-req"
    CONTINUE = "application/dap-aggregation-job-continue-req"
    SHARE_REQ = "application/dap-aggregate-share-req"

    def __init__(self, helper: Any, vdaf: dict, *, max_batch_query_count: int, collector_config_id: int) -> None:
        import secrets

        from dap import hpke
        from dap.roles.vdafs import vdaf_ops

        self.helper = helper
        self.vdaf = vdaf
        self.task_id_bytes = secrets.token_bytes(32)
        self.task_id = b64(self.task_id_bytes)
        self.token = "leader-" + secrets.token_hex(8)
        self.vk = secrets.token_bytes(16)
        self.collector = hpke.generate_keypair(collector_config_id)
        self.ops = vdaf_ops(vdaf)
        assert helper.call("add_task", {
            "task_id": self.task_id, "leader": "http://127.0.0.1:1/", "helper": helper.url,
            "vdaf": vdaf, "leader_authentication_token": self.token, "role": "helper",
            "vdaf_verify_key": b64(self.vk), "max_batch_query_count": max_batch_query_count,
            "query_type": 1, "min_batch_size": 1, "time_precision": TIME_PRECISION,
            "collector_hpke_config": b64(self.collector.config.encode()),
            "task_expiration": 32503680000,
        })["status"] == "success"
        self.cfg = fetch_config(helper.url, self.task_id)
        self.t0 = now_rounded()  # one batch interval for the whole test
        #: report ID -> (ReportShare, public share, Leader share)
        self.reports: dict[bytes, tuple[Any, bytes, bytes]] = {}

    def add_report(self, measurement: Any, t: int | None = None) -> bytes:
        """Shard one measurement (as the VDAF's interop form) at ``t`` (default ``t0``); its ID."""
        from dap import hpke
        from dap.constants import Role
        from dap.messages import PlaintextInputShare, ReportMetadata, ReportShare

        rid = os.urandom(16)
        ps, lshare, hshare = self.ops.shard(self.ops.parse_measurement(measurement), rid)
        md = ReportMetadata(rid, self.t0 if t is None else t)
        ct = hpke.seal_input_share(self.cfg, Role.HELPER, self.task_id_bytes, md, ps,
                                   PlaintextInputShare((), hshare))
        self.reports[rid] = (ReportShare(md, ps, ct), ps, lshare)
        return rid

    def init(self, rids: list[bytes], agg_param: bytes = b"") -> tuple[bytes, list[Any]]:
        """(AggregationJobInitReq bytes, the Leader's prep states)."""
        from dap.constants import QueryType
        from dap.messages import AggregationJobInitReq, PartialBatchSelector, PrepareInit

        inits, states = [], []
        for rid in rids:
            rs, ps, lshare = self.reports[rid]
            state, outbound = self.ops.leader_init(self.vk, rid, ps, lshare, agg_param)
            inits.append(PrepareInit(rs, outbound))
            states.append(state)
        body = AggregationJobInitReq(agg_param, PartialBatchSelector(QueryType.TIME_INTERVAL),
                                     tuple(inits)).encode()
        return body, states

    def selector(self) -> Any:
        from dap.constants import QueryType
        from dap.messages import BatchSelector, Interval

        return BatchSelector(QueryType.TIME_INTERVAL, batch_interval=Interval(self.t0, TIME_PRECISION))

    def share(self, rids: list[bytes], agg_param: bytes = b"", *, count: int | None = None,
              headers: dict[str, str] | None = None) -> httpx.Response:
        """POST an AggregateShareReq for ``rids`` (``count`` overrides their number)."""
        from dap.messages import AggregateShareReq

        body = AggregateShareReq(self.selector(), agg_param,
                                 len(rids) if count is None else count, checksum(rids)).encode()
        return httpx.post(self.helper.url + f"tasks/{self.task_id}/aggregate_shares", content=body,
                          headers=self.headers(self.SHARE_REQ) if headers is None else headers,
                          timeout=30)

    def headers(self, media_type: str | None, token: str | None = "") -> dict[str, str]:
        """``token``: "" the task's, None no auth header, else that value."""
        h = {} if token is None else {"DAP-Auth-Token": token or self.token}
        if media_type:
            h["Content-Type"] = media_type
        return h

    def job_url(self) -> str:
        return self.helper.url + f"tasks/{self.task_id}/aggregation_jobs/{b64(os.urandom(16))}"

    def put(self, url: str, body: bytes) -> httpx.Response:
        return httpx.put(url, content=body, headers=self.headers(self.INIT), timeout=30)

    def post(self, url: str, step: int, entries: list[tuple[bytes, bytes]]) -> httpx.Response:
        from dap.messages import AggregationJobContinueReq, PrepareContinue

        body = AggregationJobContinueReq(step, tuple(PrepareContinue(r, p) for r, p in entries))
        return httpx.post(url, content=body.encode(), headers=self.headers(self.CONTINUE), timeout=30)


class ForwardingProxyBase:
    """A loopback HTTP server on a thread in front of ``target`` (a role's URL): each request
    goes to :meth:`handle`, which answers it itself or :meth:`forward`s it. Subclasses set
    their own fields before calling ``__init__`` (the server starts at once)."""

    #: request headers passed on
    FORWARDED = ("content-type", "dap-auth-token", "authorization")

    def __init__(self, target: str) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        self.target = target.rstrip("/")
        self.http = httpx.Client(timeout=30)
        proxy = self

        class Handler(QuietHandler):
            def _handle(self) -> None:
                proxy.handle(self, self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            do_PUT = do_POST = do_DELETE = do_GET = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, req: QuietHandler, body: bytes) -> None:
        """Answer ``req`` (its ``_reply``), after :meth:`forward` or not: each subclass's script."""
        raise NotImplementedError(f"{type(self).__name__} must say what it does with a request")

    def forward(self, req: QuietHandler, body: bytes) -> httpx.Response:
        headers = {k: v for k, v in req.headers.items() if k.lower() in self.FORWARDED}
        return self.http.request(req.command, self.target + req.path, content=body, headers=headers)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.http.close()


def rows(path: Path, sql: str, *params: object) -> list[tuple]:
    """``sql`` on a role's SQLite file (a connection of its own: the role keeps running)."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def wait_for(pred: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``pred`` every 50 ms until it is truthy (its value), failing after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.05)


def checksum(rids: list[bytes]) -> bytes:
    """The batch checksum of ``rids``, as the Aggregators compute it (dap.roles.aggregator)."""
    from dap.roles.aggregator import checksum_of, xor_checksum

    c = bytes(32)
    for rid in rids:
        c = xor_checksum(c, checksum_of(rid))
    return c


__all__ = ["Deployment", "FakeLeaderBase", "ForwardingProxyBase", "checksum", "QuietHandler", "RoleProcess", "deployment", "expected_result", "free_port",
           "random_measurement", "rows", "wait_for", "b64", "os"]


# --- building DAP messages in tests (we play the Client or the Leader) -----------------------

def fetch_config(base: str, task_id: str) -> Any:
    from dap.messages import HpkeConfigList
    from dap.roles.leader import join_url

    r = httpx.get(join_url(base, f"hpke_config?task_id={task_id}"), timeout=10)
    assert r.status_code == 200, r.text
    return HpkeConfigList.decode(r.content).configs[0]


def build_report(task_id: str, vdaf: dict, measurement: Any, t: int, leader_cfg: Any,
                 helper_cfg: Any, report_id: bytes | None = None) -> tuple[bytes, bytes, bytes]:
    """(report bytes, leader plaintext share, report_id) built with our own Client code."""
    from dap.roles.client import Client
    from dap.roles.task import b64d
    from dap.roles.vdafs import vdaf_ops

    ops = vdaf_ops(vdaf)
    rid = report_id or os.urandom(16)
    body = Client._build_report(b64d(task_id), ops, ops.parse_measurement(measurement), rid, t,
                                leader_cfg, helper_cfg)
    return body, b"", rid


def now_rounded(tp: int = TIME_PRECISION) -> int:
    now = int(time.time())
    return now - now % tp
