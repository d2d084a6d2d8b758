"""Benchmark: what the fault proxy addon costs on top of bare mitmdump (not a test).

Sends N sequential small POSTs (keep-alive httpx client) to a loopback upstream:

(interleaved: request i goes to every setup in turn, so load from other processes on the
machine hits all setups alike)

1. direct to the upstream,
2. through bare ``mitmdump --mode reverse:...`` (no script),
3. through mitmdump with our addon and an empty plan (history JSONL written),
4. the same with 20 rules that do not match the traffic.

Prints median and p99 latency per setup and the addon/bare ratios (target <= 1.10).
Flow files (-w) are off in every setup so only the addon differs.

    .venv/bin/python bench/proxy.py [--n 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faults import Limits, Matcher, Plan, Rule  # noqa: E402
from faults.actions import Delay, DropRequest, Respond  # noqa: E402
from harness.stack.proxy import FaultProxy, free_port, mitmdump_command  # noqa: E402


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a: object) -> None:
        pass


def _measure(urls: dict[str, str], n: int, warmup: int = 100) -> dict[str, list[float]]:
    """Interleaved: request i goes to every setup in turn, so machine noise hits all alike."""
    body = b"x" * 64
    out: dict[str, list[float]] = {name: [] for name in urls}
    clients = {name: httpx.Client(trust_env=False, timeout=10) for name in urls}
    try:
        names = list(urls)
        for i in range(warmup + n):
            k = i % len(names)  # rotate the order too: no setup always goes first
            for name in names[k:] + names[:k]:
                url = urls[name]
                t = time.perf_counter()
                r = clients[name].post(url + "/bench", content=body)
                dt = time.perf_counter() - t
                if r.status_code != 200:
                    raise SystemExit(f"{name}: unexpected status {r.status_code}")
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


def twenty_rules() -> Plan:
    kinds = ("upload", "agg_init", "agg_continue", "agg_share", "collection_poll")
    actions = (Delay(delay_ms=100), DropRequest(), Respond(status=500))
    rules = tuple(
        Rule(f"r{i}", Matcher(kind=kinds[i % len(kinds)]), actions[i % len(actions)], Limits(first=1 + i))
        for i in range(20)
    )
    return Plan(seed=1, rules=rules)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upstream = f"http://127.0.0.1:{server.server_address[1]}"
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        stack.callback(server.shutdown)
        bare = _Bare(upstream)
        stack.callback(bare.close)
        empty = stack.enter_context(
            FaultProxy({"client->leader": upstream}, workdir=Path(tmp) / "empty", plan=Plan(), save_flows=False))
        twenty = stack.enter_context(
            FaultProxy({"client->leader": upstream}, workdir=Path(tmp) / "twenty", plan=twenty_rules(),
                       save_flows=False))
        results = _measure({
            "direct": upstream,
            "bare mitmdump": f"http://127.0.0.1:{bare.port}",
            "addon, empty plan": empty.url("client->leader"),
            "addon, 20 non-matching rules": twenty.url("client->leader"),
        }, args.n)
    bare_med, bare_p99 = _stats(results["bare mitmdump"])
    print(f"{args.n} sequential POSTs (64-byte body), latency per request")
    print(f"{'setup':32} {'median ms':>10} {'p99 ms':>10} {'median/bare':>12} {'p99/bare':>10}")
    for name, samples in results.items():
        med, p99 = _stats(samples)
        print(f"{name:32} {med:10.3f} {p99:10.3f} {med / bare_med:12.3f} {p99 / bare_p99:10.3f}")


if __name__ == "__main__":
    main()
