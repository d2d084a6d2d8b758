"""A user's Janus 0.7 build as Leader and Helper through harness/stack/janus.py: a Prio3Count
interop flow (the runner's sequence, interop-api.md section 4) with our Client and Collector.

Opt-in (marker ``janus``, outside the default run): ``JANUS_BIN_DIR=... JANUS_SRC=...
.venv/bin/python -m pytest -m janus tests/test_janus_e2e.py``. Without them the test FAILS
with one line naming what is missing (docs/janus.md).
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.stack.interop import InteropClient
from harness.stack.janus import LaunchError, find_install
from harness.stack.ports import free_port

pytestmark = pytest.mark.janus

REPO = Path(__file__).resolve().parents[1]
REPORTS = 10


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def require_janus() -> None:
    """FAIL (never skip) in one line when the install the launcher needs is missing."""
    try:
        find_install(bin_dir=os.environ.get("JANUS_BIN_DIR"), src=os.environ.get("JANUS_SRC"),
                     pg_bin=os.environ.get("PG_BIN"))
    except LaunchError as exc:
        missing = str(exc)
    else:
        return
    pytest.fail(f"the janus tests need a Janus 0.7 build: {missing} (docs/janus.md)", pytrace=False)


class Role:
    def __init__(self, name: str, argv: list[str], state_dir: Path, port: int) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.name, self.state_dir = name, state_dir
        self.log = open(state_dir / "role.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.api = InteropClient(name, f"http://127.0.0.1:{port}/", timeout_s=60)

    def tail(self) -> str:
        return (self.state_dir / "role.log").read_text(errors="replace")[-2000:]

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.api.close()
        self.log.close()
        return self.proc.returncode


@contextlib.contextmanager
def janus_stack(tmp_path: Path) -> Iterator[dict[str, Role]]:
    """Janus Leader and Helper through the launcher, our Client and Collector; all stopped after."""
    roles: dict[str, Role] = {}
    try:
        for name in ("leader", "helper"):
            port = free_port()
            roles[name] = Role(name, [sys.executable, "-m", "harness.stack.janus", "--role", name, "--host",
                                      "127.0.0.1", "--port", str(port), "--state-dir", str(tmp_path / name)],
                               tmp_path / name, port)
        for name in ("client", "collector"):
            port = free_port()
            roles[name] = Role(name, [sys.executable, "-m", "dap.roles", "--role", name, "--host", "127.0.0.1",
                                      "--port", str(port), "--state-dir", str(tmp_path / name)],
                               tmp_path / name, port)
        deadline = time.monotonic() + 120
        waiting = dict(roles)
        while waiting:
            for name, r in list(waiting.items()):
                if r.proc.poll() is not None:
                    pytest.fail(f"{name} exited with status {r.proc.returncode}:\n{r.tail()}", pytrace=False)
                if r.api.ready():
                    del waiting[name]
            if time.monotonic() > deadline:
                pytest.fail(f"not ready after 120 s: {', '.join(waiting)}", pytrace=False)
            time.sleep(0.2)
        yield roles
    finally:
        codes = {name: r.stop() for name, r in roles.items()}
    for name in ("leader", "helper"):
        assert codes.get(name) == 0, f"{name} launcher exit status {codes.get(name)}:\n{roles[name].tail()}"
        assert not (tmp_path / name / "pg").exists(), "the cluster directory was not removed"


def test_prio3count_time_interval_through_janus(tmp_path: Path) -> None:
    require_janus()
    with janus_stack(tmp_path) as stack:
        _count_flow(stack)


def _count_flow(stack: dict[str, Role]) -> None:
    leader, helper, client, collector = (stack[n].api for n in ("leader", "helper", "client", "collector"))
    task_id, vdaf, precision = b64(secrets.token_bytes(32)), {"type": "Prio3Count"}, 3600
    ends = {}
    for name, api in (("leader", leader), ("helper", helper)):
        r = api.call("endpoint_for_task", {"task_id": task_id, "role": name, "hostname": "127.0.0.1"})
        assert r["status"] == "success", r
        ends[name] = api.base_url.rstrip("/") + "/" + r["endpoint"].lstrip("/")
    leader_token, collector_token = "leader-" + secrets.token_hex(10), "collector-" + secrets.token_hex(10)
    r = collector.call("add_task", {"task_id": task_id, "leader": ends["leader"], "vdaf": vdaf,
                                    "collector_authentication_token": collector_token, "query_type": 1})
    assert r["status"] == "success", r
    common = {"task_id": task_id, "leader": ends["leader"], "helper": ends["helper"], "vdaf": vdaf,
              "leader_authentication_token": leader_token, "vdaf_verify_key": b64(secrets.token_bytes(16)),
              "max_batch_query_count": 1, "query_type": 1, "min_batch_size": REPORTS, "time_precision": precision,
              "collector_hpke_config": r["collector_hpke_config"], "task_expiration": 32503680000}
    for name, api, extra in (("leader", leader, {"collector_authentication_token": collector_token}),
                             ("helper", helper, {})):
        r = api.call("add_task", {**common, **extra, "role": name})
        assert r["status"] == "success", (name, r)
    measurements = [secrets.randbelow(2) for _ in range(REPORTS)]
    for m in measurements:
        r = client.call("upload", {"task_id": task_id, "leader": ends["leader"], "helper": ends["helper"],
                                   "vdaf": vdaf, "measurement": str(m), "time_precision": precision})
        assert r["status"] == "success", r
    start = int(time.time()) // precision * precision
    r = collector.call("collection_start", {"task_id": task_id, "agg_param": "", "query": {
        "type": 1, "batch_interval_start": start, "batch_interval_duration": 2 * precision}})
    assert r["status"] == "success", r
    handle, deadline = r["handle"], time.monotonic() + 90
    while True:
        r = collector.call("collection_poll", {"handle": handle})
        if r["status"] != "in progress" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r["status"] == "complete", r
    assert r["report_count"] == REPORTS
    assert r["result"] == str(sum(measurements))


# --- five catalogue entries through the harness against a Janus Leader and Helper --------------------------

#: Entries that exercise what running against Janus changed in the harness: the Leader's pace
#: (upload halves in separate jobs, retries after a lease), a failed collection job answered
#: with a 5xx and a problem document (DAP-09 §4.6.1), a re-sealed aggregate share (a note,
#: §4.6.2), and the plain baseline.
JANUS_ENTRIES = ("duplicate-report", "bad-leader-token", "drop-agg-init-response", "corrupt-helper-share",
                 "duplicate-agg-share-request")


def test_five_catalogue_entries_against_janus(tmp_path: Path) -> None:
    require_janus()
    from faults.catalogue import CATALOGUE
    from harness.check.verdict import VerdictClass, expectation_met
    from harness.run import Stack

    with Stack.start(artifacts_root=tmp_path / "a", impl={"leader": "janus", "helper": "janus"},
                     ready_timeout_s=120) as stack:
        assert stack.timing.job_interval_ms == 2000  # images.toml: the scenarios wait at Janus's pace
        results = {name: stack.run_scenario(CATALOGUE[name]) for name in JANUS_ENTRIES}
    for name, r in results.items():
        why = f"{name}: {r.report.summary} ({r.run_dir})"
        assert r.report.verdict_class not in (VerdictClass.VIOLATION, VerdictClass.INFRA,
                                              VerdictClass.INCONCLUSIVE), why
        assert expectation_met(r.report.verdict_class, CATALOGUE[name].expect, r.report.optional), why
    # the first half's job refused (403) and abandoned, the second half aggregated in its own job
    assert results["bad-leader-token"].report.verdict_class == VerdictClass.PASS
    # a failed collection job: 500 with Janus's problem document, accepted as DAP-09 §4.6.1 allows
    typing = next(v for v in results["corrupt-helper-share"].report.verdicts if v.invariant == "error-typing")
    assert results["corrupt-helper-share"].report.verdict_class == VerdictClass.CLEAN_FAILURE
    assert typing.valid is True and typing.evidence.get("relayed"), typing
    # Janus seals the stored share afresh for the repeated request: a note, not a violation
    assert "fresh HPKE encryption" in results["duplicate-agg-share-request"].report.summary


def test_a_poplar1_entry_is_not_applicable_to_janus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_janus()
    from harness.cli import main
    assert main(["--fault", "skip-step", "--fault", "poplar1-heavy-hitters", "--impl", "all=janus",
                 "--artifacts", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "skip-step: not applicable: leader janus and helper janus do not support Poplar1 (images.toml vdafs)" in out
    assert "poplar1-heavy-hitters: not applicable: leader janus and helper janus" in out
    assert not (tmp_path / "a").exists(), "nothing to run: no stack started"
