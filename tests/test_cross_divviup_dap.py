"""Cross-implementation check: reports uploaded by divviup-ts (@divviup/dap 0.9.1) open here.

A stdlib HTTP server on 127.0.0.1 plays both Aggregators' ``hpke_config`` endpoints (fresh keys
per task) and the Leader's upload endpoint; ``tests/node/dap_upload.mjs`` drives the real
divviup-ts client against it for Prio3Count, Prio3Sum, Prio3Histogram and Prio3SumVec. Every
recorded Report must decode and re-encode to the same bytes, carry the right task ID in its URL,
a timestamp rounded down to the time precision, ciphertexts under the config the client should
have chosen, and input shares that open (dap.hpke, DAP-09 info and AAD) and have exactly the
sizes of vdaf-08-prio3.md §5. Finally both opened shares of every report are prepared with
dap.vdaf.prio3 (one round, as in DAP) and must give back the measurement divviup-ts was given.
"""

from __future__ import annotations

import base64
import json
import math
import os
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest

from dap import hpke
from dap.constants import (
    MEDIA_TYPE_HPKE_CONFIG_LIST,
    MEDIA_TYPE_PROBLEM_JSON,
    MEDIA_TYPE_REPORT,
    HpkeAeadId,
    HpkeKdfId,
    HpkeKemId,
    ProblemType,
    Role,
)
from dap.messages import HpkeConfig, HpkeConfigList, Report
from dap.vdaf.prio3 import Prio3, Prio3Count, Prio3Histogram, Prio3Sum, Prio3SumVec

pytestmark = pytest.mark.node

NODE_SCRIPT = Path(__file__).parent / "node" / "dap_upload.mjs"
NODE_TIMEOUT_S = 60

X25519_CHACHA = hpke.HpkeSuite(
    HpkeKemId.X25519_HKDF_SHA256, HpkeKdfId.HKDF_SHA256, HpkeAeadId.CHACHA20_POLY1305
)
P256_AES256 = hpke.HpkeSuite(HpkeKemId.P256_HKDF_SHA256, HpkeKdfId.HKDF_SHA256, HpkeAeadId.AES_256_GCM)
# A config no client can use: divviup-ts must skip it and take the next one.
UNUSABLE_SUITE = hpke.HpkeSuite(0x0099, HpkeKdfId.HKDF_SHA256, HpkeAeadId.AES_128_GCM)

ENC_LEN = {HpkeKemId.X25519_HKDF_SHA256: 32, HpkeKemId.P256_HKDF_SHA256: 65}
AEAD_TAG_LEN = 16


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@attrs.frozen
class Case:
    """One divviup-ts task: its VDAF, measurements, and what its reports must look like.

    ``leader_suites`` / ``helper_suites`` are the published config lists, in order (config
    ids are their index + 1); ``*_choice`` is the index divviup-ts must pick.
    Sizes are vdaf-08-prio3.md §5 "Concrete sizes" (public share, Leader and Helper input share).
    """

    name: str
    vdaf: dict[str, Any]
    prio3: Callable[[], Prio3]
    measurements: list[Any]
    time_precision_s: int
    public_share_len: int
    leader_share_len: int
    helper_share_len: int
    leader_suites: tuple[hpke.HpkeSuite, ...] = (hpke.MANDATORY_SUITE,)
    leader_choice: int = 0
    helper_suites: tuple[hpke.HpkeSuite, ...] = (hpke.MANDATORY_SUITE,)
    helper_choice: int = 0
    report_len: int | None = None


CASES = [
    Case(
        "Prio3Count",
        {"type": "count"},
        Prio3Count,
        [True, False, True, True],
        time_precision_s=300,
        public_share_len=0,
        leader_share_len=48,
        helper_share_len=32,
        report_len=230,  # dap-09.md §4.2 size check
    ),
    Case(
        "Prio3Sum(bits=8)",
        {"type": "sum", "bits": 8},
        lambda: Prio3Sum(8),
        [0, 1, 255, 42],
        time_precision_s=3600,
        public_share_len=32,
        leader_share_len=656,
        helper_share_len=48,
        helper_suites=(UNUSABLE_SUITE, X25519_CHACHA, hpke.MANDATORY_SUITE),
        helper_choice=1,
    ),
    Case(
        "Prio3Histogram(length=5,chunk=2)",
        {"type": "histogram", "length": 5, "chunkLength": 2},
        lambda: Prio3Histogram(5, 2),
        [0, 4, 2],
        time_precision_s=60,
        public_share_len=32,
        leader_share_len=272,
        helper_share_len=48,
        leader_suites=(P256_AES256, hpke.MANDATORY_SUITE),
        leader_choice=0,
    ),
    Case(
        "Prio3SumVec(length=10,bits=8,chunk=12)",
        {"type": "sumVec", "length": 10, "bits": 8, "chunkLength": 12},
        lambda: Prio3SumVec(10, 8, 12),
        [list(range(10)), [255] * 10, [0] * 10],
        time_precision_s=600,
        public_share_len=32,
        leader_share_len=1920,
        helper_share_len=48,
    ),
]


@attrs.frozen
class TaskKeys:
    """A task's ID and the keys behind its published configs (None: a config nobody can use)."""

    case: Case
    task_id: bytes
    leader: tuple[hpke.HpkeKeypair | None, ...]
    helper: tuple[hpke.HpkeKeypair | None, ...]

    @classmethod
    def generate(cls, case: Case) -> TaskKeys:
        def keys(suites: tuple[hpke.HpkeSuite, ...]) -> tuple[hpke.HpkeKeypair | None, ...]:
            return tuple(hpke.generate_keypair(i + 1, s) if s.supported else None for i, s in enumerate(suites))

        return cls(case, os.urandom(32), keys(case.leader_suites), keys(case.helper_suites))

    def keypair(self, role: Role) -> hpke.HpkeKeypair:
        """The keypair divviup-ts must have chosen for ``role``."""
        keypairs, choice = (
            (self.leader, self.case.leader_choice) if role == Role.LEADER else (self.helper, self.case.helper_choice)
        )
        keypair = keypairs[choice]
        assert keypair is not None
        return keypair

    def config_list(self, role: str) -> bytes:
        suites, keypairs = (
            (self.case.leader_suites, self.leader) if role == "leader" else (self.case.helper_suites, self.helper)
        )
        configs = [
            # An unusable suite is published with a dummy key: no client may seal to it.
            kp.config if kp is not None else HpkeConfig(i + 1, s.kem_id, s.kdf_id, s.aead_id, b"\x01" * 32)
            for i, (s, kp) in enumerate(zip(suites, keypairs, strict=True))
        ]
        return HpkeConfigList(configs).encode()


@attrs.frozen
class Upload:
    task_id_b64: str
    content_type: str | None
    body: bytes


@attrs.define
class FakeAggregators:
    """Leader + Helper ``hpke_config`` and the Leader's upload endpoint on 127.0.0.1.

    Serves ``GET /{leader,helper}/hpke_config?task_id=`` and ``PUT
    /leader/tasks/{task-id}/reports`` (201, the upload recorded). Errors are problem
    documents that always carry ``taskid`` (divviup-ts crashes without it). Close it.
    """

    tasks: dict[str, TaskKeys]
    uploads: list[Upload] = attrs.Factory(list)
    config_requests: list[tuple[str, str, str | None]] = attrs.Factory(list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = attrs.Factory(threading.Lock)

    def start(self) -> FakeAggregators:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:
                owner._get(self)

            def do_PUT(self) -> None:
                owner._put(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-aggregators", daemon=True)
        self._thread.start()
        return self

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeAggregators:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- request handling (runs on server threads) ---

    def _get(self, req: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(req.path)
        role = url.path.strip("/").split("/")[0]
        query = urllib.parse.parse_qs(url.query)
        task_id = query.get("task_id", [""])[0]
        if url.path not in ("/leader/hpke_config", "/helper/hpke_config"):
            return _send(req, HTTPStatus.NOT_FOUND)
        with self._lock:
            self.config_requests.append((role, task_id, req.headers.get("Accept")))
        if task_id not in self.tasks:
            return _problem(req, ProblemType.UNRECOGNIZED_TASK, task_id)
        body = self.tasks[task_id].config_list(role)
        _send(
            req,
            HTTPStatus.OK,
            body,
            {"Content-Type": MEDIA_TYPE_HPKE_CONFIG_LIST, "Cache-Control": "max-age=86400"},
        )

    def _put(self, req: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(req.path).path.strip("/").split("/")
        body = req.rfile.read(int(req.headers.get("Content-Length", "0")))
        if len(parts) != 4 or parts[0] != "leader" or parts[1] != "tasks" or parts[3] != "reports":
            return _send(req, HTTPStatus.NOT_FOUND)
        task_id = parts[2]
        if task_id not in self.tasks:
            return _problem(req, ProblemType.UNRECOGNIZED_TASK, task_id)
        content_type = req.headers.get("Content-Type")
        with self._lock:
            self.uploads.append(Upload(task_id, content_type, body))
        if content_type != MEDIA_TYPE_REPORT:
            return _problem(req, ProblemType.INVALID_MESSAGE, task_id)
        _send(req, HTTPStatus.CREATED)


def _send(req: BaseHTTPRequestHandler, status: HTTPStatus, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    req.send_response(status)
    for name, value in (headers or {}).items():
        req.send_header(name, value)
    req.send_header("Content-Length", str(len(body)))
    req.end_headers()
    req.wfile.write(body)


def _problem(req: BaseHTTPRequestHandler, problem: ProblemType, task_id_b64: str) -> None:
    doc = {
        "type": problem.uri,
        "title": problem.description,
        "status": 400,
        "detail": problem.description,
        "instance": "..",
        "taskid": task_id_b64,
    }
    _send(req, HTTPStatus.BAD_REQUEST, json.dumps(doc).encode(), {"Content-Type": MEDIA_TYPE_PROBLEM_JSON})


# --- the test ----------------------------------------------------------------------------


@attrs.frozen
class Run:
    keys: dict[str, TaskKeys]
    uploads: list[Upload]
    config_requests: list[tuple[str, str, str | None]]
    started_s: float
    finished_s: float
    node_output: dict[str, Any]


@pytest.fixture(scope="module")
def divviup_run(node: str, repo_root: Path) -> Run:
    """Run dap_upload.mjs once for every case against fresh fake Aggregators."""
    keys = {}
    for case in CASES:
        task = TaskKeys.generate(case)
        keys[b64url(task.task_id)] = task
    with FakeAggregators(keys) as server:
        plan = {
            # One base URL without and one with a trailing slash: divviup-ts treats both as directories.
            "leader": f"{server.base_url}/leader",
            "helper": f"{server.base_url}/helper/",
            "tasks": [
                {
                    "id": task_id,
                    "vdaf": task.case.vdaf,
                    "timePrecisionSeconds": task.case.time_precision_s,
                    "measurements": task.case.measurements,
                }
                for task_id, task in keys.items()
            ],
        }
        started = time.time()
        proc = subprocess.run(
            [node, str(NODE_SCRIPT)],
            input=json.dumps(plan),
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
            cwd=repo_root,
            check=False,
        )
        finished = time.time()
        assert proc.returncode == 0, f"dap_upload.mjs failed ({proc.returncode}):\n{proc.stderr}"
        return Run(
            keys, list(server.uploads), list(server.config_requests), started, finished, json.loads(proc.stdout)
        )


def test_every_measurement_uploaded_once(divviup_run: Run) -> None:
    expected = {task_id: len(task.case.measurements) for task_id, task in divviup_run.keys.items()}
    reported = {entry["id"]: entry["reports"] for entry in divviup_run.node_output["uploaded"]}
    assert reported == expected
    counts: dict[str, int] = {}
    for upload in divviup_run.uploads:
        counts[upload.task_id_b64] = counts.get(upload.task_id_b64, 0) + 1
    assert counts == expected
    assert all(upload.content_type == MEDIA_TYPE_REPORT for upload in divviup_run.uploads)


def test_hpke_config_fetched_per_aggregator_with_task_id(divviup_run: Run) -> None:
    # The client caches the lists per Task: one GET per Aggregator and task.
    expected = sorted((role, task_id) for task_id in divviup_run.keys for role in ("leader", "helper"))
    assert sorted((role, task_id) for role, task_id, _ in divviup_run.config_requests) == expected
    assert {accept for _, _, accept in divviup_run.config_requests} == {MEDIA_TYPE_HPKE_CONFIG_LIST}


def _reports(run: Run, case_name: str) -> list[tuple[TaskKeys, bytes, Report]]:
    out = []
    for upload in run.uploads:
        task = run.keys[upload.task_id_b64]
        if task.case.name == case_name:
            out.append((task, upload.body, Report.decode(upload.body)))
    assert len(out) == len(next(c for c in CASES if c.name == case_name).measurements)
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_report_bytes_round_trip(divviup_run: Run, case: Case) -> None:
    for _, body, report in _reports(divviup_run, case.name):
        assert report.encode() == body
        if case.report_len is not None:
            assert len(body) == case.report_len


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_report_metadata(divviup_run: Run, case: Case) -> None:
    precision = case.time_precision_s
    earliest = math.floor(divviup_run.started_s / precision) * precision
    ids = set()
    for _, _, report in _reports(divviup_run, case.name):
        metadata = report.report_metadata
        assert metadata.time % precision == 0
        assert earliest <= metadata.time <= divviup_run.finished_s
        ids.add(bytes(metadata.report_id))
        assert len(report.public_share) == case.public_share_len
    assert len(ids) == len(case.measurements)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_input_shares_open(divviup_run: Run, case: Case) -> None:
    for task, _, report in _reports(divviup_run, case.name):
        for role, ciphertext, share_len in (
            (Role.LEADER, report.leader_encrypted_input_share, case.leader_share_len),
            (Role.HELPER, report.helper_encrypted_input_share, case.helper_share_len),
        ):
            keypair = task.keypair(role)
            assert ciphertext.config_id == keypair.config.id, f"{role.name}: divviup-ts chose another config"
            assert len(ciphertext.enc) == ENC_LEN[keypair.config.kem_id]
            share = hpke.open_input_share(
                keypair, role, task.task_id, report.report_metadata, report.public_share, ciphertext
            )
            assert list(share.extensions) == []
            assert len(share.payload) == share_len
            # PlaintextInputShare = list16 extensions (empty) || vec32 payload, then the AEAD tag.
            assert len(ciphertext.payload) == 2 + 4 + share_len + AEAD_TAG_LEN


def _expected_result(case: Case, measurement: Any) -> Any:
    """What unsharding a single report must give (the VDAF's decoded aggregate of one)."""
    match case.vdaf["type"]:
        case "count":
            return int(measurement)
        case "histogram":
            return [int(i == measurement) for i in range(case.vdaf["length"])]
        case _:
            return measurement


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_shares_prepare_to_the_measurements(divviup_run: Run, case: Case) -> None:
    vdaf = case.prio3()
    verify_key = os.urandom(vdaf.VERIFY_KEY_SIZE)
    recovered, out_shares = [], ([], [])
    for task, _, report in _reports(divviup_run, case.name):
        metadata, nonce = report.report_metadata, bytes(report.report_metadata.report_id)
        public_share = vdaf.decode_public_share(report.public_share)
        states, prep_shares = [], []
        for agg_id, (role, ciphertext) in enumerate(
            ((Role.LEADER, report.leader_encrypted_input_share), (Role.HELPER, report.helper_encrypted_input_share))
        ):
            share = hpke.open_input_share(task.keypair(role), role, task.task_id, metadata, report.public_share, ciphertext)
            input_share = vdaf.decode_input_share(agg_id, share.payload)
            state, prep_share = vdaf.prep_init(verify_key, agg_id, None, nonce, public_share, input_share)
            states.append(state)
            prep_shares.append(prep_share)
        prep_msg = vdaf.prep_shares_to_prep(None, prep_shares)
        report_out = [vdaf.prep_next(state, prep_msg) for state in states]
        for agg_id, out_share in enumerate(report_out):
            out_shares[agg_id].append(out_share)
        recovered.append(vdaf.unshard(None, [vdaf.aggregate(None, [o]) for o in report_out], 1))
    # Uploads arrive in measurement order (the client sends them one at a time).
    assert recovered == [_expected_result(case, m) for m in case.measurements]
    total = vdaf.unshard(None, [vdaf.aggregate(None, shares) for shares in out_shares], len(recovered))
    assert total == _sum_results(case, recovered)


def _sum_results(case: Case, results: list[Any]) -> Any:
    if case.vdaf["type"] in ("count", "sum"):
        return sum(results)
    return [sum(column) for column in zip(*results, strict=True)]
