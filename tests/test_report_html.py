"""report.html and matrix.html, checked in a real headless Chromium.

The run directory is made for real: a mitmdump fault proxy (``FaultProxy``) in front of
loopback upstreams that answer with encoded DAP messages, a plan with five faults, traffic
on all three links; its history.jsonl and flows.mitm are copied into a run dir next to
hand-written scenario.json / record.json / report.json. The page is then opened in
Chromium (Debian's ``chromium``; ``bash scripts/bootstrap --test`` installs it) driven over
the DevTools protocol (a small websocket client on wsproto, which mitmproxy brings):
lanes, arrows, fault badges and a real mouse click that shows a decoded body.

Set ``FAULTRUN_SCREENSHOT_DIR`` to keep the screenshots the browser test takes.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from proxy_fixtures import TASK_B64, Upstream, init_req, job_path, report, rid, upload_path
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

from dap import messages as m
from dap.constants import QueryType
from faults.plan import dumps_plan, loads_plan
from faults.scenario import Scenario, TaskSpec, to_dict
from harness.check.verdict import CheckReport, Verdict, VerdictClass
from harness.record import CollectionRecord, RunRecord, UploadRecord
from harness.report.html import LANES, VERDICT_COLOURS, decode_body, write_matrix_html, write_report_html
from harness.stack.proxy import FaultProxy

PLAN = """
version = 1
seed = 7

[[rules]]
id = "dup-upload"
[rules.match]
kind = "upload"
[rules.action]
type = "duplicate"
copies = 1
[rules.limits]
nth = 2

[[rules]]
id = "corrupt-time"
[rules.match]
kind = "agg_init"
[rules.action]
type = "corrupt-field"
field = "prepare_inits[0].report_share.report_metadata.time"
op = "add"
value = 3600

[[rules]]
id = "lose-continue"
[rules.match]
kind = "agg_continue"
[rules.action]
type = "drop-response"

[[rules]]
id = "refuse-collect"
[rules.match]
kind = "collection_create"
[rules.action]
type = "respond"
status = 400
problem_type = "batchInvalid"
[rules.limits]
nth = 1
"""

COLLECT_JOB = "Y29sbGVjdGlvbi1qb2ItMDE"  # 16 bytes, base64url
BASE_TIME = 1_700_000_000


def _interval() -> m.Interval:
    return m.Interval(start=BASE_TIME - BASE_TIME % 3600, duration=3600)


def _collection(n: int) -> m.Collection:
    ct = m.HpkeCiphertext(config_id=2, enc=bytes([0x44]) * 32, payload=bytes([0x55]) * 48)
    return m.Collection(part_batch_selector=m.PartialBatchSelector(QueryType.TIME_INTERVAL), report_count=n,
                        interval=_interval(), leader_encrypted_agg_share=ct, helper_encrypted_agg_share=ct)


def _hpke_configs() -> m.HpkeConfigList:
    return m.HpkeConfigList(configs=(m.HpkeConfig(id=1, kem_id=0x20, kdf_id=1, aead_id=1, public_key=bytes(range(32))),))


def make_run_dir(dest: Path, work: Path) -> Path:
    """Drive real traffic through a real fault proxy; lay out a run directory in ``dest``."""
    leader, helper = Upstream(), Upstream()
    coll_path = f"/tasks/{TASK_B64}/collection_jobs/{COLLECT_JOB}"
    leader.routes[("GET", "/hpke_config")] = (200, m.HpkeConfigList.MEDIA_TYPE, _hpke_configs().encode())
    leader.routes[("PUT", upload_path())] = (200, "", b"")
    leader.routes[("PUT", coll_path)] = (201, "", b"")
    leader.routes[("POST", coll_path)] = (200, m.Collection.MEDIA_TYPE, _collection(3).encode())
    agg_share_path = f"/tasks/{TASK_B64}/aggregate_shares"
    helper.routes[("POST", agg_share_path)] = (
        200, m.AggregateShare.MEDIA_TYPE,
        m.AggregateShare(encrypted_aggregate_share=m.HpkeCiphertext(config_id=3, enc=b"\x66" * 32,
                                                                   payload=b"\x77" * 40)).encode())
    plan = loads_plan(PLAN)
    leader.start()
    helper.start()
    uploads = []
    started = time.time()
    try:
        with FaultProxy({"client->leader": leader.url, "collector->leader": leader.url,
                         "leader->helper": helper.url}, workdir=work, plan=plan) as proxy, \
                httpx.Client(trust_env=False, timeout=10) as c:
            cl, co, lh = (proxy.url(x) for x in ("client->leader", "collector->leader", "leader->helper"))
            assert c.get(cl + "/hpke_config").status_code == 200
            for i in range(3):
                r = c.put(cl + upload_path(), content=report(i + 1).encode(),
                          headers={"Content-Type": m.Report.MEDIA_TYPE})
                uploads.append(UploadRecord(index=i, measurement=str(i), time=BASE_TIME, status="success",
                                            t_wall=time.time()))
                assert r.status_code == 200
            assert c.put(lh + job_path(), content=init_req([1, 2, 3]).encode(),
                         headers={"Content-Type": m.AggregationJobInitReq.MEDIA_TYPE}).status_code == 200
            cont = m.AggregationJobContinueReq(
                step=1, prepare_continues=tuple(m.PrepareContinue(report_id=rid(i), payload=b"\x01\x02")
                                                for i in (1, 2, 3)))
            with pytest.raises(httpx.TransportError):
                c.post(lh + job_path(), content=cont.encode(),
                       headers={"Content-Type": m.AggregationJobContinueReq.MEDIA_TYPE})
            share_req = m.AggregateShareReq(batch_selector=m.BatchSelector.time_interval(_interval()), agg_param=b"",
                                            report_count=3, checksum=bytes(32))
            assert c.post(lh + agg_share_path, content=share_req.encode(),
                          headers={"Content-Type": m.AggregateShareReq.MEDIA_TYPE}).status_code == 200
            creq = m.CollectionReq(query=m.Query.time_interval(_interval()), agg_param=b"")
            for want in (400, 201):
                assert c.put(co + coll_path, content=creq.encode(),
                             headers={"Content-Type": m.CollectionReq.MEDIA_TYPE}).status_code == want
            assert c.post(co + coll_path).status_code == 200
            leader.wait_for(7)
            time.sleep(0.3)  # the duplicate's response
    finally:
        leader.close()
        helper.close()
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(work / "history.jsonl", dest / "history.jsonl")
    shutil.copy(work / "flows.mitm", dest / "flows.mitm")
    scen = Scenario(name="corrupt-init-time", plan=plan, spec_section="4.5.1.2",
                    doc="Shift the first report's time in the aggregation job init by one hour.")
    (dest / "scenario.json").write_text(json.dumps(to_dict(scen), indent=2))
    (dest / "plan.toml").write_text(dumps_plan(plan))
    rec = RunRecord(
        scenario=scen.name, task_id=TASK_B64, task=TaskSpec(), base_time=BASE_TIME, history_since_seq=0,
        uploads=tuple(uploads),
        collections=(CollectionRecord(label="main", query={"batch_interval": [BASE_TIME, 3600]}, status="complete",
                                      result=["1", "1", "1"] + ["0"] * 13, report_count=3, polls=1),),
        started_wall=started, finished_wall=time.time())
    (dest / "record.json").write_text(json.dumps(to_dict(rec), indent=2))
    rep = CheckReport(scenario=scen.name, verdict_class=VerdictClass.VIOLATION, summary="report 0 counted twice", verdicts=(
        Verdict("exact_aggregate", False, "bucket 0 is 2, expected 1", {"double_counted": [0], "flow_seq": [5]}),
        Verdict("no_5xx", True, "no unexpected 5xx"),
        Verdict("clean_refusals", None, "checker raised: KeyError('x')"),
    ))
    (dest / "report.json").write_text(json.dumps(to_dict(rep), indent=2))
    return dest


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("report_html")
    return make_run_dir(base / "runs" / "corrupt-init-time", base / "proxy")


# --- without a browser -----------------------------------------------------------------------------


def _data(page: str) -> dict[str, Any]:
    start = page.index('id="faultrun-data">') + len('id="faultrun-data">')
    return json.loads(page[start:page.index("</script>", start)])


def test_report_embeds_decoded_bodies_and_faults(run_dir: Path) -> None:
    out = write_report_html(run_dir)
    assert out == run_dir / "report.html"
    page = out.read_text()
    assert "http://" not in page.replace("http://127.0.0.1", "") and "https://" not in page  # nothing fetched
    data = _data(page)["messages"]
    msgs = list(data.values())
    links = {x["link"] for x in msgs}
    assert links == {"client->leader", "collector->leader", "leader->helper"}
    init = next(x for x in msgs if x["kind"] == "agg_init" and x["phase"] == "request")
    assert [f["rule_id"] for f in init["faults"]] == ["corrupt-time"]
    assert init["body"]["type"] == "AggregationJobInitReq"
    # the body is what was delivered: the corrupted time (+3600), the summary what was received
    assert init["body"]["json"]["prepare_inits"][0]["report_share"]["report_metadata"]["time"] == 1_700_003_600
    assert any("prepare_inits: 3 items" in line for line in init["body"]["tree"])
    copies = [x for x in msgs if x["origin"] == "duplicate"]
    assert copies and copies[0]["copy_of_seq"] is not None
    faulted = next(x for x in msgs if x["kind"] == "collection_create" and x["faults"])
    assert faulted["phase"] == "request" and faulted["faults"][0]["action"] == "respond"
    refused = next(x for x in msgs if x["flow_id"] == faulted["flow_id"] and x["phase"] == "response")
    assert refused["status"] == 400 and "batchInvalid" in refused["body"]["text"]
    assert refused["answered_by_proxy"] == "refuse-collect"
    assert "messages: <a href=\"#msg=" in page  # evidence flow_seq 5 links to its message
    err = next(x for x in msgs if x["phase"] == "error")
    assert err["kind"] == "agg_continue"
    poll = next(x for x in msgs if x["kind"] == "collection_poll" and x["phase"] == "response")
    assert poll["body"]["json"]["report_count"] == 3


def test_report_without_flows_report_or_record(run_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "history.jsonl", bare / "history.jsonl")
    shutil.copy(run_dir / "scenario.json", bare / "scenario.json")
    page = write_report_html(bare).read_text()
    assert "report.json is missing" in page and "record.json is missing" in page
    assert "not checked" in page and "summaries only" in page
    data = _data(page)
    assert data["bodies"] is False and all("body" not in x or "none" in x["body"] for x in data["messages"].values())
    empty = tmp_path / "empty"
    empty.mkdir()
    page = write_report_html(empty).read_text()
    assert "history.jsonl is missing" in page and "scenario.json is missing" in page


def test_decode_body_kinds() -> None:
    ok = decode_body(report(1).encode(), m.Report.MEDIA_TYPE)
    assert ok["type"] == "Report" and ok["json"]["report_metadata"]["report_id"]
    bad = decode_body(b"\x00\x01", m.Report.MEDIA_TYPE)
    assert "error" in bad and bad["hex"].startswith("00 01")
    by_kind = decode_body(init_req([1]).encode(), None, "agg_init", "request")
    assert by_kind["type"] == "AggregationJobInitReq"
    assert decode_body(b'{"type":"x"}', "application/problem+json")["text"].startswith("{\n")


def _big_history(run: Path, n: int = 3000) -> None:
    run.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        fid = f"flow-{i // 2}"
        phase = "request" if i % 2 == 0 else "response"
        lines.append(json.dumps({
            "event": "message", "seq": i, "t_mono": i * 0.001, "t_wall": 1.7e9 + i * 0.001,
            "link": ("client->leader", "leader->helper", "collector->leader")[(i // 2) % 3],
            "kind": "upload", "phase": phase, "flow_id": fid, "flow_seq": i // 2, "method": "PUT",
            "path": "/tasks/x/reports", "status": None if phase == "request" else 200,
            "summary": {"report_ids": ["00" * 16]}}))
        if i % 100 == 0:
            lines.append(json.dumps({"event": "fault", "seq": i, "t_mono": i * 0.001, "t_wall": 0, "rule_id": "d",
                                     "action": "delay", "link": None, "kind": "upload", "phase": phase,
                                     "flow_id": fid, "flow_seq": i // 2, "changed": {"delay_ms": 5}}))
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")


def test_report_scales_to_thousands_of_messages(tmp_path: Path) -> None:
    _big_history(tmp_path / "big")
    t = time.monotonic()
    page = write_report_html(tmp_path / "big").read_text()
    assert time.monotonic() - t < 5
    assert page.count('class="row m ') == 3000


def test_report_escapes_what_it_embeds(tmp_path: Path) -> None:
    run = tmp_path / "x"
    run.mkdir()
    evil = "</script><script>alert(1)</script><b>"
    (run / "history.jsonl").write_text(json.dumps({
        "event": "message", "seq": 0, "t_mono": 1.0, "t_wall": 1.0, "link": "client->leader", "kind": None,
        "phase": "request", "flow_id": "f", "flow_seq": 1, "method": "GET", "path": "/" + evil,
        "summary": {"decode_error": evil}}) + "\n" + '{"torn": ')
    (run / "scenario.json").write_text(json.dumps({"name": evil}))
    (run / "report.json").write_text(json.dumps({"scenario": evil, "verdict_class": "infra", "summary": evil,
                                                 "verdicts": [{"invariant": evil, "valid": None, "detail": evil,
                                                               "evidence": {"x": evil}}]}))
    page = write_report_html(run).read_text()
    assert evil not in page and "<script>alert" not in page
    assert _data(page)["messages"]["0"]["path"] == "/" + evil


# --- matrix ---------------------------------------------------------------------------------------


def test_matrix_links_and_colours(tmp_path: Path) -> None:
    out = tmp_path / "campaign"
    cells = [
        {"scenario": "baseline", "verdict_class": "pass", "run_dir": out / "runs" / "baseline", "column": "ref/ref"},
        {"scenario": "baseline", "verdict_class": "violation", "run_dir": "runs/baseline-janus",
         "column": "janus/ref", "summary": "double count"},
        {"scenario": "drop response", "verdict_class": "clean_failure", "run_dir": out / "runs" / "drop response",
         "column": "ref/ref", "expected": "pass_or_clean_failure"},
        {"scenario": "drop response", "verdict_class": "infra", "run_dir": None, "column": "janus/ref"},
    ]
    page = write_matrix_html(out, cells).read_text()
    assert 'href="runs/baseline/report.html"' in page
    assert 'href="runs/baseline-janus/report.html"' in page
    assert 'href="runs/drop%20response/report.html"' in page
    assert str(tmp_path) not in page  # relative links only
    for vc in ("pass", "violation", "clean_failure", "infra"):
        assert f'class="cell v-{vc}' in page
    assert page.count("<tr><th scope='row'>") == 2 and "janus/ref" in page and "pass or clean failure" in page
    # drop response expects pass_or_clean_failure: infra is a surprise, clean_failure is not
    assert '<td class="cell v-infra surprise"' in page and '<td class="cell v-clean_failure"' in page


# --- in Chromium ----------------------------------------------------------------------------------------


class CDP:
    """A minimal synchronous Chrome DevTools Protocol client (one websocket, one target)."""

    def __init__(self, ws_url: str) -> None:
        rest = ws_url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host=hostport, target="/" + path)))
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self._buf: list[str] = []
        self._pending: list[Any] = []
        while not any(isinstance(e, AcceptConnection) for e in self._pump()):
            pass

    def _pump(self) -> list[Any]:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("DevTools websocket closed")
        self.ws.receive_data(data)
        return list(self.ws.events())

    def _recv(self) -> dict[str, Any]:
        """The next complete DevTools message (buffered: one read may carry several)."""
        while not self._pending:
            for ev in self._pump():
                if isinstance(ev, TextMessage):
                    self._buf.append(ev.data)
                    if ev.message_finished:
                        self._pending.append(json.loads("".join(self._buf)))
                        self._buf.clear()
                elif isinstance(ev, Ping):
                    self.sock.sendall(self.ws.send(ev.response()))
                elif isinstance(ev, CloseConnection):
                    raise ConnectionError("DevTools websocket closed")
        return self._pending.pop(0)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        mid = self.next_id
        self.sock.sendall(self.ws.send(TextMessage(json.dumps({"id": mid, "method": method, "params": params}))))
        while True:
            msg = self._recv()
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout_s: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(method)
                self.sock.settimeout(left)
                msg = self._recv()
                if msg.get("method") == method:
                    return msg
                self.events.append(msg)
        except socket.timeout:
            raise TimeoutError(f"{method}; saw {[e.get('method') for e in self.events]}") from None
        finally:
            self.sock.settimeout(30)

    def eval(self, expr: str) -> Any:
        res = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expr}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def _load(self, url: str) -> None:
        self.events.clear()
        res = self.send("Page.navigate", url=url)
        assert not res.get("errorText"), f"{url}: {res['errorText']}"
        self.wait_event("Page.loadEventFired")

    def navigate(self, url: str) -> None:
        """Load ``url`` afresh (via about:blank, so a new fragment is a new load) and wait for
        the page's script to finish."""
        self._load("about:blank")
        self._load(url)
        deadline = time.monotonic() + 10
        while self.eval("document.body && document.body.getAttribute('data-ready')") != "1":
            assert time.monotonic() < deadline, "page script never finished"
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """A real mouse click (pressed + released) at the centre of the element."""
        box = self.eval(f"(function(){{var el=document.querySelector({json.dumps(selector)});"
                        "el.scrollIntoView({block:'center'});var r=el.getBoundingClientRect();"
                        "return [r.left+r.width/2, r.top+r.height/2];})()")
        x, y = box
        for typ in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=typ, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        try:
            self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        except Exception:
            pass
        self.sock.close()


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium not found: the report.html tests need Debian's chromium package; "
                    "run `bash scripts/bootstrap --test` (as root) or `apt-get install -y chromium`", pytrace=False)
    return exe


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CDP]:
    exe = _chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = open(profile.parent / "chromium.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", "--window-size=1400,900", "about:blank"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # Chromium's own scratch dirs (org.chromium.Chromium.*) go under the test's tmp, not /tmp,
        # so a killed browser leaves nothing behind.
        env={**os.environ, "TMPDIR": str(profile.parent)},
    )
    cdp = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (profile.parent / "chromium.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"chromium did not start (exit {proc.poll()}):\n{tail}", pytrace=False)
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/json/list")
        targets = json.loads(conn.getresponse().read())
        conn.close()
        page = next(t for t in targets if t.get("type") == "page")
        cdp = CDP(page["webSocketDebuggerUrl"])
        cdp.send("Page.enable")
        cdp.send("Runtime.enable")
        cdp.send("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)
        yield cdp
    finally:
        if cdp is not None:
            cdp.close()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this fixture started: browser + its children
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
        log.close()


def _shot(cdp: CDP, tmp: Path, name: str) -> Path:
    path = cdp.screenshot(tmp / name)
    keep = os.environ.get("FAULTRUN_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    return path


def test_report_in_chromium_lanes_faults_and_click(run_dir: Path, browser: CDP, tmp_path: Path) -> None:
    page = write_report_html(run_dir)
    browser.navigate(page.as_uri())
    lanes = browser.eval("Array.from(document.querySelectorAll('.lanehead .lane')).map(e => e.textContent)")
    assert lanes == list(LANES)
    # every lane has a visible box, left to right
    xs = browser.eval("Array.from(document.querySelectorAll('.lanehead .lane')).map(e => e.getBoundingClientRect().x)")
    assert xs == sorted(xs) and len(set(xs)) == 4
    n_msgs = len(_data(page.read_text())["messages"])
    assert browser.eval("document.querySelectorAll('#chart .row.m .ar').length") == n_msgs
    verdict = browser.eval("getComputedStyle(document.querySelector('h1 .badge')).backgroundColor")
    assert verdict == "rgb(207, 34, 46)"  # violation red
    faults = browser.eval("Array.from(document.querySelectorAll('#chart .fault')).map(e => e.textContent)")
    assert {f.split(":")[0].lstrip("⚡ ") for f in faults} == {"dup-upload", "corrupt-time", "lose-continue",
                                                              "refuse-collect"}
    assert browser.eval("document.querySelectorAll('#chart .row.copy').length") >= 2  # copy request + response
    assert browser.eval("document.querySelectorAll('#chart .row.ph-error').length") == 1
    # arrows span the right lanes: the helper link's request goes Leader -> Helper
    geo = browser.eval("""(function(){var lanes=Array.from(document.querySelectorAll('.lanehead .lane'))
        .map(e=>{var r=e.getBoundingClientRect();return r.x+r.width/2;});
        var row=Array.from(document.querySelectorAll('#chart .row.m.faulted')).find(r=>r.textContent.includes('agg_init PUT'));
        var a=row.querySelector('.ar').getBoundingClientRect(); return [lanes, a.left, a.right];})()""")
    (lane_x, a_left, a_right) = geo
    assert abs(a_left - lane_x[2]) < 3 and abs(a_right - lane_x[3]) < 3

    _shot(browser, tmp_path, "report-overview.png")
    # a real click on the faulted agg_init request: the pane shows its decoded tree
    seq = browser.eval("Array.from(document.querySelectorAll('#chart .row.m.faulted'))"
                       ".find(r => r.textContent.includes('agg_init PUT')).dataset.seq")
    browser.click(f"#m{seq} .lbl")
    tree = browser.eval("(document.querySelector('#details .body-tree')||{}).textContent")
    assert tree and tree.startswith("AggregationJobInitReq") and "prepare_inits: 3 items" in tree
    assert "time: 1700003600" in tree  # corrupted by +3600, as delivered
    assert "corrupt-time" in browser.eval("document.querySelector('#details').textContent")
    assert browser.eval("location.hash") == f"#msg={seq}"
    assert browser.eval(f"document.getElementById('m{seq}').classList.contains('sel')")
    _shot(browser, tmp_path, "report-clicked.png")
    # the JSON view of the same body
    browser.click("#details button[data-view=json]")
    body_json = json.loads(browser.eval("document.querySelector('#details .body-json').textContent"))
    assert body_json["prepare_inits"][0]["report_share"]["report_metadata"]["time"] == 1_700_003_600
    # a link from the fault list jumps to the faulted message; #msg= honoured at load
    browser.navigate(page.as_uri() + "#flow=" + _data(page.read_text())["messages"][seq]["flow_id"])
    assert browser.eval("document.querySelector('#details h3').textContent").startswith(f"#{seq} agg_init")


def test_matrix_in_chromium(run_dir: Path, browser: CDP, tmp_path: Path) -> None:
    write_report_html(run_dir)
    out = run_dir.parent.parent
    page = write_matrix_html(out, [
        {"scenario": "corrupt-init-time", "verdict_class": "violation", "run_dir": run_dir, "column": "ref/ref"},
        {"scenario": "corrupt-init-time", "verdict_class": "pass", "run_dir": run_dir, "column": "ref/janus"},
        {"scenario": "baseline", "verdict_class": "clean_failure", "run_dir": run_dir, "column": "ref/ref"},
    ])
    browser.navigate(page.as_uri())
    colours = browser.eval("Array.from(document.querySelectorAll('td.cell[data-class]'))"
                           ".map(td => [td.dataset.class, getComputedStyle(td).backgroundColor])")
    for cls, colour in colours:
        r, g, b = (int(VERDICT_COLOURS[cls][0][i:i + 2], 16) for i in (1, 3, 5))
        assert colour == f"rgb({r}, {g}, {b})"
    _shot(browser, tmp_path, "matrix.png")
    browser.click("td.cell.v-violation a")
    deadline = time.monotonic() + 10
    while not browser.eval("location.href").endswith("/report.html"):
        assert time.monotonic() < deadline, "the matrix link did not open the report"
        time.sleep(0.05)
    browser.wait_event("Page.loadEventFired")
    assert browser.eval("document.querySelector('h1').textContent").startswith("corrupt-init-time")


def test_big_report_stays_responsive_in_chromium(browser: CDP, tmp_path: Path) -> None:
    _big_history(tmp_path / "big")
    page = write_report_html(tmp_path / "big")
    t = time.monotonic()
    browser.navigate(page.as_uri())
    load_s = time.monotonic() - t
    assert browser.eval("document.querySelectorAll('#chart .row.m').length") == 3000
    t = time.monotonic()
    browser.click("#m2999 .lbl")
    assert browser.eval("document.querySelector('#details h3').textContent").startswith("#2999 upload response")
    click_s = time.monotonic() - t
    assert load_s < 5 and click_s < 2, (load_s, click_s)
    _shot(browser, tmp_path, "report-big.png")
