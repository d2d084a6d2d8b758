"""End to end: real mitmdump child, real loopback upstreams (HTTP and HTTPS), httpx clients.

One proxy per module serves three links; each test installs its plan through the control
channel (as the harness does) and checks what the upstream saw and what the client saw.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from proxy_fixtures import (
    JOB_B64,
    TASK_B64,
    Upstream,
    init_req,
    job_path,
    report,
    rid,
    self_signed,
    tls_context,
    upload_path,
)

from dap import messages as m
from faults import FaultEvent, MessageEvent, comparable
from harness.errors import ControlError
from harness.stack.control import ControlClient
from harness.stack.ports import free_port
from harness.stack.proxy import FaultProxy

REPORT_CT = {"Content-Type": m.Report.MEDIA_TYPE}
INIT_CT = {"Content-Type": m.AggregationJobInitReq.MEDIA_TYPE}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def leader() -> Iterator[Upstream]:
    up = Upstream().start()
    try:
        yield up
    finally:
        up.close()


@pytest.fixture(scope="module")
def helper(certs: tuple[Path, Path]) -> Iterator[Upstream]:
    up = Upstream(tls=tls_context(*certs)).start()
    try:
        yield up
    finally:
        up.close()


@pytest.fixture(scope="module")
def proxy(leader: Upstream, helper: Upstream, certs: tuple[Path, Path],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProxy]:
    fp = FaultProxy(
        {"client->leader": leader.url, "collector->leader": leader.url, "leader->helper": helper.url},
        workdir=tmp_path_factory.mktemp("proxy"),
        upstream_ca=certs[0],
    )
    with fp:
        yield fp


class Run:
    """One test's view: proxy, upstreams, clients, and history since the plan was loaded."""

    def __init__(self, proxy: FaultProxy, leader: Upstream, helper: Upstream) -> None:
        self.proxy, self.leader, self.helper = proxy, leader, helper
        self.since = 0
        self.client = httpx.Client(trust_env=False, timeout=10)

    @property
    def control(self) -> ControlClient:
        assert self.proxy.control is not None
        return self.proxy.control

    def plan(self, text: str) -> None:
        self.leader.clear()
        self.helper.clear()
        self.since = self.control.load_plan("version = 1\nseed = 11\n" + text)

    def upload(self, i: int, **kw) -> httpx.Response:
        return self.client.put(self.proxy.url("client->leader") + upload_path("/v09"),
                               content=report(i).encode(), headers=REPORT_CT, **kw)

    def init(self, ids: list[int], headers: dict | None = None) -> httpx.Response:
        return self.client.put(self.proxy.url("leader->helper") + job_path(), content=init_req(ids).encode(),
                               headers={**INIT_CT, **(headers or {})})

    def history(self) -> list:
        return self.control.history(self.since)

    def faults(self) -> list[FaultEvent]:
        return [e for e in self.history() if isinstance(e, FaultEvent)]

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def run(proxy: FaultProxy, leader: Upstream, helper: Upstream) -> Iterator[Run]:
    r = Run(proxy, leader, helper)
    try:
        yield r
    finally:
        r.close()
        proxy.control.load_plan("version = 1\n")  # releases anything a failed test left held


def rule(rid_: str, action: str, match: str = "", limits: str = "") -> str:
    out = f'\n[[rules]]\nid = "{rid_}"\n'
    if match:
        out += f"[rules.match]\n{match}\n"
    out += f"[rules.action]\n{action}\n"
    if limits:
        out += f"[rules.limits]\n{limits}\n"
    return out


def test_passthrough_http_and_https_with_history(run: Run) -> None:
    run.plan("")
    r = run.upload(1)
    assert r.status_code == 200 and r.text == "ok"
    r2 = run.init([1, 2])
    assert r2.status_code == 200
    resp = m.AggregationJobResp.decode(r2.content)  # the https helper answered through the proxy
    assert [bytes(p.report_id) for p in resp.prepare_resps] == [rid(1), rid(2)]
    assert [(s.method, s.path) for s in run.leader.seen] == [("PUT", upload_path("/v09"))]
    assert run.leader.seen[0].body == report(1).encode()
    assert len(run.helper.seen) == 1 and run.helper.seen[0].body == init_req([1, 2]).encode()
    msgs = [e for e in run.history() if isinstance(e, MessageEvent)]
    assert [(e.link, e.kind, e.phase, e.status) for e in msgs] == [
        ("client->leader", "upload", "request", None),
        ("client->leader", "upload", "response", 200),
        ("leader->helper", "agg_init", "request", None),
        ("leader->helper", "agg_init", "response", 200),
    ]
    assert msgs[3].summary.prepare_states == {rid(1).hex(): "finished", rid(2).hex(): "finished"}
    assert msgs[0].summary.task_id == TASK_B64 and msgs[2].summary.job_id == JOB_B64
    assert msgs[0].t_mono <= msgs[1].t_mono and msgs[0].t_wall > 1.6e9


def test_drop_request(run: Run) -> None:
    run.plan(rule("d", "type = 'drop-request'", "kind = 'upload'"))
    with pytest.raises(httpx.TransportError):
        run.upload(1)
    time.sleep(0.2)
    assert run.leader.seen == []
    assert [e.rule_id for e in run.faults()] == ["d"]


def test_drop_response(run: Run) -> None:
    run.plan(rule("d", "type = 'drop-response'", "kind = 'agg_init'"))
    with pytest.raises(httpx.TransportError):
        run.init([1])
    assert len(run.helper.seen) == 1  # processed upstream, reply lost
    hist = run.history()
    assert [e.phase for e in hist if isinstance(e, MessageEvent)] == ["request", "response", "error"]


def test_delay_only_delays_the_matching_flow(run: Run) -> None:
    run.plan(rule("slow", "type = 'delay'\ndelay_ms = 600", "kind = 'upload'"))
    took: dict[str, float] = {}

    def slow() -> None:
        t = time.monotonic()
        with httpx.Client(trust_env=False, timeout=10) as c:
            c.put(run.proxy.url("client->leader") + upload_path(), content=report(1).encode())
        took["slow"] = time.monotonic() - t

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.1)
    t = time.monotonic()
    assert run.init([1]).status_code == 200
    took["fast"] = time.monotonic() - t
    th.join(5)
    assert took["slow"] >= 0.6 and took["fast"] < 0.4
    assert run.faults()[0].changed.to_dict() == {"delay_ms": 600}


def test_duplicate_concurrent_and_spaced(run: Run) -> None:
    run.plan(rule("dup", "type = 'duplicate'\ncopies = 2", "kind = 'upload'", "nth = 1")
             + rule("spaced", "type = 'duplicate'\ncopies = 2\nspacing_ms = 300", "kind = 'agg_init'"))
    assert run.upload(1).status_code == 200
    seen = run.leader.wait_for(3)
    assert len(seen) == 3 and all(s.body == report(1).encode() for s in seen)
    assert run.upload(2).status_code == 200  # nth = 1: the second upload is not duplicated
    time.sleep(0.2)
    assert len(run.leader.seen) == 4
    assert run.init([1]).status_code == 200
    hs = run.helper.wait_for(3)
    assert len(hs) == 3
    gaps = [hs[i + 1].t - hs[i].t for i in range(2)]
    assert all(g >= 0.25 for g in gaps)
    time.sleep(0.2)
    copies = [e for e in run.history() if isinstance(e, MessageEvent) and e.origin == "duplicate"]
    assert len([e for e in copies if e.phase == "request"]) == 4
    assert len(run.faults()) == 2  # copies were not matched again


def test_reorder(run: Run) -> None:
    run.plan(rule("ro", "type = 'reorder'", "kind = 'upload'", "nth = 1"))
    results: dict[int, int] = {}

    def up(i: int) -> None:
        with httpx.Client(trust_env=False, timeout=10) as c:
            results[i] = c.put(run.proxy.url("client->leader") + upload_path(), content=report(i).encode()).status_code

    t1 = threading.Thread(target=up, args=(1,))
    t1.start()
    time.sleep(0.3)
    assert run.leader.seen == []  # held
    up(2)
    t1.join(5)
    assert results == {1: 200, 2: 200}
    assert [s.body for s in run.leader.seen] == [report(2).encode(), report(1).encode()]


def test_replay_later_after_manual_event(run: Run) -> None:
    run.plan(rule("rl", "type = 'replay-later'\nafter_event = 'manual:heal'", "kind = 'upload'", "nth = 1"))
    assert run.upload(1).status_code == 200
    assert run.upload(2).status_code == 200
    assert len(run.leader.seen) == 2
    assert run.control.fire_event("manual:heal") == 1
    seen = run.leader.wait_for(3)
    assert len(seen) == 3 and seen[2].body == report(1).encode()


def test_corrupt_bytes_field_truncate(run: Run) -> None:
    run.plan(rule("cb", "type = 'corrupt-bytes'\nflips = 4", "kind = 'upload'", "nth = 1")
             + rule("cf", "type = 'corrupt-field'\nfield = 'report_metadata.report_id'\nop = 'set'\nvalue = '" + "ab" * 16 + "'",
                    "kind = 'upload'", "nth = 2")
             + rule("tr", "type = 'truncate'\ndrop_bytes = 7", "kind = 'agg_init'"))
    run.upload(1)
    run.upload(2)
    run.init([1])
    a, b = run.leader.seen
    orig = report(1).encode()
    assert len(a.body) == len(orig) and sum(bin(x ^ y).count("1") for x, y in zip(a.body, orig, strict=True)) == 4
    changed = m.Report.decode(b.body)
    assert bytes(changed.report_metadata.report_id) == bytes.fromhex("ab" * 16)
    assert changed.helper_encrypted_input_share == report(2).helper_encrypted_input_share
    assert run.helper.seen[0].body == init_req([1]).encode()[:-7]


def test_auth_wrong_scheme(run: Run) -> None:
    run.plan(rule("au", "type = 'auth'\nmode = 'wrong_scheme'", "link = 'leader->helper'"))
    run.init([1], headers={"DAP-Auth-Token": "tok-123"})
    hdrs = run.helper.seen[0].headers
    assert "dap-auth-token" not in hdrs and hdrs["authorization"] == ["Basic dG9rLTEyMw=="]


def test_respond_instead_and_after(run: Run) -> None:
    run.plan(rule("pre", "type = 'respond'\nstatus = 400\nproblem_type = 'reportRejected'", "kind = 'upload'")
             + rule("post", "type = 'respond'\nstatus = 500", "kind = 'agg_init'\nphase = 'response'"))
    r = run.upload(1)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:ietf:params:ppm:dap:error:reportRejected"
    assert run.leader.seen == []
    assert run.init([1]).status_code == 500
    assert len(run.helper.seen) == 1  # committed upstream, then "lost"


def test_synthesize_continue_for_seen_job(run: Run) -> None:
    run.plan(rule("syn", "type = 'synthesize'\nmessage = 'continue_step'\nstep = 7", "kind = 'agg_init'"))
    assert run.init([1, 2]).status_code == 200
    seen = run.helper.wait_for(2)
    assert [(s.method, s.path) for s in seen] == [("PUT", job_path()), ("POST", job_path())]
    cont = m.AggregationJobContinueReq.decode(seen[1].body)
    assert cont.step == 7 and len(cont.prepare_continues) == 2
    time.sleep(0.2)
    synth = [e for e in run.history() if isinstance(e, MessageEvent) and e.origin == "synthesize:continue_step"]
    assert [e.phase for e in synth] == ["request", "response"] and synth[0].summary.step == 7


def test_control_channel_is_not_reachable_through_links(run: Run) -> None:
    run.plan(rule("keep", "type = 'delay'\ndelay_ms = 1", "kind = 'upload'"))
    token = (run.proxy.workdir / "control.token").read_text()
    for link in ("client->leader", "leader->helper"):
        r = run.client.put(run.proxy.url(link) + "/plan", content=b"version = 1\n",
                           headers={"X-Faultrun-Token": token})
        assert r.status_code == 200  # answered by the upstream, not by the control channel
    assert [s.path for s in run.leader.seen] == ["/plan"] and [s.path for s in run.helper.seen] == ["/plan"]
    assert list(run.control.status()["rules"]) == ["keep"]  # plan unchanged


def test_control_channel_token_and_errors(run: Run) -> None:
    bad = ControlClient(run.proxy.control_port, "not-the-token")
    try:
        with pytest.raises(ControlError) as info:
            bad.status()
        assert info.value.status == 403
    finally:
        bad.close()
    with pytest.raises(ControlError) as info:
        run.control.load_plan('version = 1\n[[rules]]\nid = "oops"\n[rules.action]\ntype = "teleport"\n')
    assert info.value.status == 400 and "rule 'oops': unknown action 'teleport'" in str(info.value)
    run.plan(rule("n", "type = 'respond'\nstatus = 503", "kind = 'upload'", "nth = 1"))
    assert run.upload(1).status_code == 503
    assert run.upload(2).status_code == 200
    run.control.reset()
    assert run.upload(3).status_code == 503  # counters start again
    st = run.control.status()
    assert st["rules"]["n"] == {"seen": 1, "fires": 1}


def test_same_plan_same_traffic_same_history(run: Run) -> None:
    plan = (rule("p", "type = 'corrupt-bytes'\nflips = 2", "kind = 'upload'", "probability = 0.5")
            + rule("j", "type = 'delay'\ndelay_ms = 1\njitter_ms = 20", "kind = 'agg_init'")
            + rule("r", "type = 'respond'\nstatus = 500", "kind = 'upload'\nphase = 'response'", "every = 3"))
    histories = []
    for _ in range(2):
        run.plan(plan)
        for i in range(6):
            run.upload(i)
            run.init([i])
        histories.append(comparable(run.history()))
    assert histories[0] == histories[1]
    faults = [e for e in histories[0] if e["event"] == "fault"]
    assert {e["rule_id"] for e in faults} == {"p", "j", "r"}


def test_https_upstream_with_ssl_insecure_and_flow_file(helper: Upstream, tmp_path: Path) -> None:
    from mitmproxy.io import FlowReader

    helper.clear()
    with FaultProxy({"leader->helper": helper.url}, workdir=tmp_path, ssl_insecure=True) as fp:
        with httpx.Client(trust_env=False, timeout=10) as c:
            r = c.put(fp.url("leader->helper") + job_path(), content=init_req([3]).encode(), headers=INIT_CT)
        assert r.status_code == 200
        assert len(helper.seen) == 1
    assert fp.process is None
    with open(fp.flows_path, "rb") as fh:
        flows = list(FlowReader(fh).stream())
    assert len(flows) == 1 and flows[0].request.path == job_path() and flows[0].response.status_code == 200


def test_proxy_start_failure_is_reported_and_cleaned(tmp_path: Path) -> None:
    from harness.errors import ProxyStartError

    bad = tmp_path / "bad.toml"
    bad.write_text('version = 1\n[[rules]]\nid = "x"\n[rules.action]\ntype = "nope"\n')
    fp = FaultProxy({"client->leader": "http://127.0.0.1:1"}, workdir=tmp_path,
                    extra_args=["--set", f"faultrun_plan={bad}"])
    with pytest.raises(ProxyStartError) as info:
        fp.start()
    assert str(info.value).startswith("mitmdump exited with 1 during startup: faultrun_plan: rule 'x': unknown action 'nope'")
    assert fp.process is None


def test_proxy_start_retries_when_a_picked_port_is_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A program outside free_port's bookkeeping binds the picked port before mitmdump does.
    import harness.stack.proxy as owner

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        monkeypatch.setattr(owner, "free_port", lambda: next(picks, None) or free_port())
        with FaultProxy({"client->leader": "http://127.0.0.1:1"}, workdir=tmp_path) as fp:
            assert taken not in fp.ports.values()
            fp.control.status()
    log_text = (tmp_path / "mitmdump.log").read_text()
    assert "address already in use" in log_text  # the first attempt did hit the taken port


def test_proxy_start_gives_up_on_ports_after_three_attempts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.stack.proxy as owner
    from harness.errors import ProxyStartError

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        calls: list[int] = []

        def pick() -> int:  # the link port is always the taken one, the control port a free one
            calls.append(taken)
            return taken if len(calls) % 2 else free_port()

        monkeypatch.setattr(owner, "free_port", pick)
        fp = FaultProxy({"client->leader": "http://127.0.0.1:1"}, workdir=tmp_path)
        with pytest.raises(ProxyStartError, match=f"failed to listen on 127.0.0.1:{taken}"):
            fp.start()
    assert fp.process is None
    assert len(calls) == 3 * 2  # three attempts, one link port and the control port each


def test_dap_aware_matching_on_encoded_reports(run: Run) -> None:
    run.plan(rule("one", "type = 'drop-request'", f"kind = 'upload'\nreport_id = '{rid(2).hex()}'")
             + rule("idx", "type = 'respond'\nstatus = 409", "kind = 'agg_init'\nreport_index = 2"))
    assert run.upload(1).status_code == 200
    with pytest.raises(httpx.TransportError):
        run.upload(2)
    assert run.upload(3).status_code == 200
    assert [m.Report.decode(s.body).report_metadata.report_id for s in run.leader.seen] == [rid(1), rid(3)]
    assert run.init([1]).status_code == 200
    assert run.init([3, 1]).status_code == 409  # report 3 is the third distinct report the proxy saw
    assert len(run.helper.seen) == 1


def test_synthesize_reinit_under_new_job(run: Run) -> None:
    run.plan(rule("re", "type = 'synthesize'\nmessage = 'reinit_new_job'\nreport_index = 0", "kind = 'agg_init'"))
    assert run.init([4, 5]).status_code == 200
    seen = run.helper.wait_for(2)
    assert seen[0].path == job_path()
    assert seen[1].method == "PUT" and seen[1].path != job_path()
    assert seen[1].path.startswith(f"/tasks/{TASK_B64}/aggregation_jobs/")
    again = m.AggregationJobInitReq.decode(seen[1].body)
    assert [bytes(p.report_share.report_metadata.report_id) for p in again.prepare_inits] == [rid(4)]


def test_segments_bound_history_and_flows_per_scenario(run: Run) -> None:
    """/segment: a new history segment replaces the file (seq goes on), and flows go to one file
    per segment that is complete once closed (what a long campaign's Stack asks for)."""
    from mitmproxy.io import FlowReader

    from faults.history import read_history

    run.plan("")
    run.upload(1)
    before = run.control.status()["history_seq"]
    got = run.control.segment(history=True, flows="seg-a.mitm")
    assert got["flows"] == str(run.proxy.workdir / "flows" / "seg-a.mitm")
    since = run.control.load_plan("version = 1\n")
    assert since > got["history_seq"] > before
    run.upload(2)
    run.upload(3)
    assert run.control.segment(flows="")["flows"] is None
    run.upload(4)  # between segments: not saved
    # the stack's file holds the new segment only; reads since a seq before it return what is left
    events = read_history(run.proxy.history_path)
    assert events[0].event == "control" and events[0].what == "segment" and events[0].seq == got["history_seq"] - 1
    msgs = [e for e in run.control.history(since) if isinstance(e, MessageEvent)]
    assert len(msgs) == 6 and msgs[0].seq >= since
    assert run.control.history(0)[0].seq == events[0].seq
    with open(run.proxy.workdir / "flows" / "seg-a.mitm", "rb") as fh:
        flows = list(FlowReader(fh).stream())
    assert [f.request.content for f in flows] == [report(2).encode(), report(3).encode()]
    # a name with a path or strftime pattern in it is refused
    for bad in ("../x", "a/b", "%Y.mitm"):
        with pytest.raises(ControlError, match="400"):
            run.control.segment(flows=bad)
