"""Benchmark: what the fault proxy addon costs on top of bare mitmdump, on DAP traffic (not a test).

Real DAP messages, so the addon classifies, decodes, hashes and records every one of them:

- **uploads**: ``PUT /tasks/{id}/reports`` with an ``application/dap-report`` body (a Report the
  size of a Prio3Histogram(16) upload) on the client->leader listener; the upstream answers 201;
- **aggregation-job inits**: ``PUT /tasks/{id}/aggregation_jobs/{job}`` with an
  ``AggregationJobInitReq`` of 10 report shares on the leader->helper listener; the upstream
  answers 201 with an ``AggregationJobResp`` of 10 PrepareResps (decoded too).

Setups, interleaved (request i goes to every setup in turn, so load from other processes hits
all alike):

1. direct to the upstream;
2. bare ``mitmdump --mode reverse:...`` (no script);
3. mitmdump with our addon and an empty plan (history JSONL written);
4. the addon with 20 rules that match the message's kind but miss on another field (the link,
   a report index, an ``every`` that never comes round): every rule is evaluated;
5. the addon with one matching ``delay 0`` rule: the action path (fault event recorded).

Prints median and p99 latency per setup and the ratios to bare mitmdump (target: addon with
an empty plan / bare <= 1.10 on uploads). Flow files are off in every setup so only the addon
differs.

    .venv/bin/python bench/proxy.py [--n 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dap import messages as m  # noqa: E402
from dap.constants import PrepareRespState, QueryType  # noqa: E402
from faults import Limits, Matcher, Plan, Rule  # noqa: E402
from faults.actions import Delay, DropRequest, Respond  # noqa: E402
from faults.vocabulary import CLIENT_LEADER, LEADER_HELPER  # noqa: E402
from harness.stack.proxy import FaultProxy, free_port, mitmdump_command  # noqa: E402

TASK = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
JOB = "qqqqqqqqqqqqqqqqqqqqqg"
REPORTS_PER_INIT = 10


def _ct(n: int) -> m.HpkeCiphertext:
    return m.HpkeCiphertext(config_id=1, enc=os.urandom(32), payload=os.urandom(n))


def upload_body(i: int) -> bytes:
    """A Report of a Prio3Histogram(16) upload's size (measured Leader/Helper shares)."""
    return m.Report(report_metadata=m.ReportMetadata(report_id=i.to_bytes(16, "big"), time=1_700_000_000),
                    public_share=os.urandom(32), leader_encrypted_input_share=_ct(560),
                    helper_encrypted_input_share=_ct(48)).encode()


def init_body(i: int) -> bytes:
    inits = tuple(m.PrepareInit(
        report_share=m.ReportShare(report_metadata=m.ReportMetadata(
            report_id=(i * REPORTS_PER_INIT + k).to_bytes(16, "big"), time=1_700_000_000),
            public_share=os.urandom(32), encrypted_input_share=_ct(48)),
        payload=os.urandom(180)) for k in range(REPORTS_PER_INIT))
    return m.AggregationJobInitReq(agg_param=b"", part_batch_selector=m.PartialBatchSelector(QueryType.TIME_INTERVAL),
                                   prepare_inits=inits).encode()


INIT_RESP = m.AggregationJobResp(prepare_resps=tuple(
    m.PrepareResp(k.to_bytes(16, "big"), PrepareRespState.FINISHED) for k in range(REPORTS_PER_INIT))).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_PUT(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        body, ctype = (INIT_RESP, m.AggregationJobResp.MEDIA_TYPE) if "/aggregation_jobs/" in self.path else (b"", None)
        self.send_response(201)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a: object) -> None:
        pass


@contextlib.contextmanager
def _upstream():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _measure(urls: dict[str, str], path: str, media: str, bodies: list[bytes], warmup: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {name: [] for name in urls}
    headers = {"Content-Type": media}
    clients = {name: httpx.Client(trust_env=False, timeout=10) for name in urls}
    try:
        names = list(urls)
        for i, body in enumerate(bodies):
            k = i % len(names)  # rotate the order too: no setup always goes first
            for name in names[k:] + names[:k]:
                t = time.perf_counter()
                r = clients[name].put(urls[name] + path, content=body, headers=headers)
                dt = time.perf_counter() - t
                if r.status_code != 201:
                    raise SystemExit(f"{name}: unexpected status {r.status_code} {r.text[:200]}")
                if i >= warmup:
                    out[name].append(dt)
    finally:
        for c in clients.values():
            c.close()
    return out


def _stats(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s) * 1e3, s[min(len(s) - 1, int(len(s) * 0.99))] * 1e3


def _wait_port(port: int, timeout_s: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never listened")


class _Bare:
    """Bare mitmdump, same options as the addon runs minus the script."""

    def __init__(self, upstream: str) -> None:
        self.port = free_port()
        cmd = [*mitmdump_command(), "-q", "--mode", f"reverse:{upstream}@127.0.0.1:{self.port}",
               "--set", "flow_detail=0", "--set", "termlog_verbosity=warn", "--set", "connection_strategy=lazy"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        _wait_port(self.port)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def near_misses(kind: str, link: str) -> Plan:
    """20 rules on ``kind`` that each miss on something else, so all of them are evaluated."""
    other = LEADER_HELPER if link == CLIENT_LEADER else CLIENT_LEADER
    actions = (Delay(delay_ms=100), DropRequest(), Respond(status=500))
    rules = []
    for i in range(20):
        if i % 3 == 0:
            match, limits = Matcher(link=other, kind=kind), Limits()  # wrong link
        elif i % 3 == 1:
            match, limits = Matcher(link=link, kind=kind, report_index=10**6 + i), Limits()  # no such report
        else:
            match, limits = Matcher(link=link, kind=kind), Limits(every=10**9)  # never comes round
        rules.append(Rule(f"miss{i}", match, actions[i % len(actions)], limits))
    return Plan(seed=1, rules=tuple(rules))


def one_delay_0(kind: str, link: str) -> Plan:
    return Plan(seed=1, rules=(Rule("delay0", Matcher(link=link, kind=kind), Delay(delay_ms=0)),))


def _table(title: str, results: dict[str, list[float]], n: int) -> dict[str, float]:
    bare_med, bare_p99 = _stats(results["bare mitmdump"])
    print(f"\n{title}: {n} sequential requests, latency per request")
    print(f"{'setup':34} {'median ms':>10} {'p99 ms':>10} {'median/bare':>12} {'p99/bare':>10}")
    ratios = {}
    for name, samples in results.items():
        med, p99 = _stats(samples)
        ratios[name] = med / bare_med
        print(f"{name:34} {med:10.3f} {p99:10.3f} {med / bare_med:12.3f} {p99 / bare_p99:10.3f}")
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="measured requests per table (default 2000)")
    ap.add_argument("--warmup", type=int, default=100)
    args = ap.parse_args()
    cases = (
        ("uploads (PUT /tasks/{id}/reports, application/dap-report)", "upload", CLIENT_LEADER,
         f"/tasks/{TASK}/reports", m.Report.MEDIA_TYPE, upload_body),
        (f"aggregation-job inits ({REPORTS_PER_INIT} report shares; AggregationJobResp decoded)", "agg_init",
         LEADER_HELPER, f"/tasks/{TASK}/aggregation_jobs/{JOB}", m.AggregationJobInitReq.MEDIA_TYPE, init_body),
    )
    verdict = []
    for title, kind, link, path, media, make in cases:
        bodies = [make(i) for i in range(args.n + args.warmup)]
        with _upstream() as upstream, contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
            bare = _Bare(upstream)
            stack.callback(bare.close)
            proxies = {}
            for name, plan in (("addon, empty plan", Plan()),
                               ("addon, 20 near-miss rules", near_misses(kind, link)),
                               ("addon, 1 matching delay 0", one_delay_0(kind, link))):
                proxies[name] = stack.enter_context(FaultProxy({link: upstream}, workdir=Path(tmp) / name.split(",")[1],
                                                               plan=plan, save_flows=False))
            urls = {"direct": upstream, "bare mitmdump": f"http://127.0.0.1:{bare.port}",
                    **{name: p.url(link) for name, p in proxies.items()}}
            results = _measure(urls, path, media, bodies, args.warmup)
            history = {name: (Path(tmp) / name.split(",")[1] / "history.jsonl").stat().st_size for name in proxies}
        ratios = _table(title, results, args.n)
        print("history written: " + ", ".join(f"{k}: {v / 1e6:.1f} MB" for k, v in history.items()))
        if kind == "upload":
            verdict.append(f"uploads: addon (empty plan) / bare = {ratios['addon, empty plan']:.3f} (target <= 1.10: "
                           f"{'met' if ratios['addon, empty plan'] <= 1.10 else 'NOT met'})")
    print("\n" + "\n".join(verdict))


if __name__ == "__main__":
    main()
