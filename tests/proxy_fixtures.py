"""Fixtures for the fault-proxy tests: real DAP bodies, a recording loopback upstream, TLS certs.

Import what a test module needs (``from tests.proxy_fixtures import ...``); pytest fixtures
defined here are re-exported by the test modules that use them.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import attrs

from dap import messages as m
from dap.constants import PrepareRespState, QueryType

TASK = bytes(range(32))
TASK_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
JOB = bytes([0xAA] * 16)
JOB_B64 = "qqqqqqqqqqqqqqqqqqqqqg"


def rid(i: int) -> bytes:
    """Report ID number ``i`` (deterministic, 16 bytes)."""
    return bytes([i]) * 16


def ciphertext(cfg: int = 1, n: int = 40) -> m.HpkeCiphertext:
    return m.HpkeCiphertext(config_id=cfg, enc=bytes([0x11]) * 32, payload=bytes([0x22]) * n)


def report(i: int, t: int = 1_700_000_000) -> m.Report:
    return m.Report(
        report_metadata=m.ReportMetadata(report_id=rid(i), time=t),
        public_share=b"",
        leader_encrypted_input_share=ciphertext(1, 70),
        helper_encrypted_input_share=ciphertext(1, 54),
    )


def init_req(ids: list[int]) -> m.AggregationJobInitReq:
    inits = tuple(
        m.PrepareInit(
            report_share=m.ReportShare(
                report_metadata=m.ReportMetadata(report_id=rid(i), time=1_700_000_000),
                public_share=b"",
                encrypted_input_share=ciphertext(1, 54),
            ),
            payload=bytes([0x33]) * 20 + bytes([i]),
        )
        for i in ids
    )
    return m.AggregationJobInitReq(
        agg_param=b"", part_batch_selector=m.PartialBatchSelector(QueryType.TIME_INTERVAL), prepare_inits=inits
    )


def agg_resp(ids: list[int]) -> m.AggregationJobResp:
    return m.AggregationJobResp(
        prepare_resps=tuple(m.PrepareResp(rid(i), PrepareRespState.FINISHED) for i in ids)
    )


def continue_req(step: int, ids: list[int]) -> m.AggregationJobContinueReq:
    return m.AggregationJobContinueReq(
        step=step, prepare_continues=tuple(m.PrepareContinue(report_id=rid(i), payload=b"\x01\x02") for i in ids)
    )


def upload_path(prefix: str = "") -> str:
    return f"{prefix}/tasks/{TASK_B64}/reports"


def job_path(job: str = JOB_B64, prefix: str = "") -> str:
    return f"{prefix}/tasks/{TASK_B64}/aggregation_jobs/{job}"


# --- a recording upstream ------------------------------------------------------------------------


@attrs.frozen
class Seen:
    method: str
    path: str
    headers: dict[str, list[str]]
    body: bytes
    t: float


@attrs.define
class Upstream:
    """A threaded stdlib HTTP(S) server on 127.0.0.1 that records every request.

    Answers: the ``routes`` entry for (method, path-without-query) if any, else
    200 with ``application/dap-aggregation-job-resp`` for agg-job PUT/POST bodies built
    from the request's report IDs, else 200 ``ok``. ``delay_s`` sleeps before answering.
    """

    tls: ssl.SSLContext | None = None
    seen: list[Seen] = attrs.field(factory=list)
    routes: dict[tuple[str, str], tuple[int, str, bytes]] = attrs.field(factory=dict)
    delay_s: float = 0.0
    _server: Any = None
    _thread: Any = None
    _lock: Any = attrs.field(factory=threading.Lock)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> Upstream:
        up = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _any(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                hdrs: dict[str, list[str]] = {}
                for k, v in self.headers.items():
                    hdrs.setdefault(k.lower(), []).append(v)
                with up._lock:
                    up.seen.append(Seen(self.command, self.path, hdrs, body, time.monotonic()))
                if up.delay_s:
                    time.sleep(up.delay_s)
                status, ctype, out = up.answer(self.command, self.path, body)
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_PUT = do_POST = do_DELETE = _any

            def log_message(self, *a: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        key = (method, path.split("?", 1)[0])
        if key in self.routes:
            return self.routes[key]
        if "/aggregation_jobs/" in path and method in ("PUT", "POST") and body:
            try:
                cls = m.AggregationJobInitReq if method == "PUT" else m.AggregationJobContinueReq
                req = cls.decode(body)
                items = req.prepare_inits if method == "PUT" else req.prepare_continues
                ids = [
                    (x.report_share.report_metadata.report_id if method == "PUT" else x.report_id) for x in items
                ]
                resp = m.AggregationJobResp(
                    prepare_resps=tuple(m.PrepareResp(r, PrepareRespState.FINISHED) for r in ids)
                )
                return 200, m.AggregationJobResp.MEDIA_TYPE, resp.encode()
            except Exception:
                return 400, "application/problem+json", b'{"type":"urn:ietf:params:ppm:dap:error:invalidMessage"}'
        return 200, "text/plain", b"ok"

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()
        self.routes.clear()
        self.delay_s = 0.0

    def wait_for(self, n: int, timeout_s: float = 5.0) -> list[Seen]:
        """Wait until at least ``n`` requests were seen; return them all."""
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.seen)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def self_signed(dirpath: Path) -> tuple[Path, Path]:
    """A self-signed cert + key for 127.0.0.1 / localhost (PEM files in ``dirpath``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dap-faultrun test upstream")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = dirpath / "upstream-cert.pem", dirpath / "upstream-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(key_path, 0o600)
    return cert_path, key_path


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx
