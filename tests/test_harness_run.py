"""harness.run end to end: real roles and the real fault proxy on loopback, one warm Stack.

Every fixture closes its Stack in teardown (also on failure); the teardown test checks
that every child PID is gone afterwards.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faults.history import read_history
from faults.plan import Plan, load_plan
from faults.scenario import Collect, Pause, Scenario, TaskSpec, Upload, WorkloadSpec, scenario_from_dict
from faults.workload import expected_aggregate, measurement_for, vdaf_for
from harness.check.verdict import VerdictClass, check_report_from_dict
from harness.cli.analyze import analyze
from harness.errors import BackendError, UsageError
from harness.record import run_record_from_dict
from harness.run import Stack

RUN_DIR_FILES = {"scenario.json", "plan.toml", "record.json", "history.jsonl", "logs", "report.json", "junit.xml",
                 "flows.mitm"}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack.start(artifacts_root=tmp_path_factory.mktemp("artifacts"))
    try:
        yield s
    finally:
        s.close()


def test_empty_plan_end_to_end_writes_a_complete_run_dir_and_passes(stack: Stack) -> None:
    result = stack.run_scenario(Scenario(name="no-fault", plan=Plan(seed=7)), timeout_s=30)
    d = result.run_dir
    assert RUN_DIR_FILES <= {p.name for p in d.iterdir()}
    assert result.report.verdict_class == VerdictClass.PASS, result.report.summary
    assert result.exit_code == 0
    rec = run_record_from_dict(json.loads((d / "record.json").read_text()))
    assert rec == result.record
    assert [u.status for u in rec.uploads] == ["success"] * 8
    assert [u.measurement for u in rec.uploads] == [str(i) for i in range(8)]
    (coll,) = rec.collections
    assert coll.status == "complete" and coll.report_count == 8
    assert coll.result == expected_aggregate(rec.task.vdaf, range(8))
    assert scenario_from_dict(json.loads((d / "scenario.json").read_text())).plan.seed == 7
    assert load_plan(d / "plan.toml") == Plan(seed=7)
    # the history slice is this scenario's: it starts at the plan load and names our task
    hist = read_history(d / "history.jsonl")
    assert hist and hist[0].seq == rec.history_since_seq
    tasks = {e.summary.task_id for e in hist if e.event == "message" and e.summary.task_id}
    assert tasks == {rec.task_id}
    links = {e.link for e in hist if e.event == "message"}
    assert {"client->leader", "collector->leader", "leader->helper"} <= links
    # the scenario's own flows file, moved in (not the stack's), with this scenario's flows
    flows = d / "flows.mitm"
    assert flows.is_file() and not flows.is_symlink()
    from mitmproxy.io import FlowReader
    with open(flows, "rb") as fh:
        urls = [f.request.path for f in FlowReader(fh).stream()]
    assert urls and all(rec.task_id in u for u in urls if "/tasks/" in u)
    assert not list((stack.proxy.workdir / "flows").iterdir())  # nothing left behind
    # the stack's history holds this scenario's segment only (a long campaign stays bounded)
    stack_hist = read_history(stack.proxy.history_path)
    assert stack_hist[0].event == "control" and stack_hist[0].what == "segment"
    assert rec.history_since_seq - 3 <= stack_hist[0].seq < rec.history_since_seq  # then the plan load
    assert (d / "logs" / "leader.role.log").exists()
    report = check_report_from_dict(json.loads((d / "report.json").read_text()))
    assert report.verdict_class == VerdictClass.PASS
    assert analyze(d).verdict_class == VerdictClass.PASS
    junit = (d / "junit.xml").read_text()
    assert 'name="verdict"' in junit and "<failure" not in junit


def test_fault_plan_is_applied_through_the_proxy_and_reset_after(stack: Stack) -> None:
    from faults.actions import Duplicate
    from faults.plan import Matcher, Rule

    plan = Plan(seed=1, rules=(Rule(id="dup", match=Matcher(link="client->leader", kind="upload"),
                                    action=Duplicate()),))
    wl = WorkloadSpec(steps=(Upload(count=3), Collect()))
    result = stack.run_scenario(Scenario(name="dup", plan=plan, workload=wl), timeout_s=30)
    faults = [e for e in result.history if e.event == "fault"]
    assert len(faults) == 3 and {f.rule_id for f in faults} == {"dup"}
    assert result.record.collections[0].result == expected_aggregate(wl.task.vdaf, range(3))
    # the next scenario runs under its own (empty) plan: no fault carries over
    again = stack.run_scenario(Scenario(name="after", plan=Plan(), workload=wl), timeout_s=30)
    assert not [e for e in again.history if e.event == "fault"]
    assert again.record.history_since_seq > result.record.history_since_seq


@pytest.mark.parametrize("query_type", ["time_interval", "fixed_size"])
@pytest.mark.parametrize("vdaf_type", ["Prio3Count", "Prio3Sum", "Prio3SumVec", "Prio3Histogram"])
def test_workloads_aggregate_exactly(stack: Stack, vdaf_type: str, query_type: str) -> None:
    n = 5
    vdaf = vdaf_for(vdaf_type, n)
    wl = WorkloadSpec(task=TaskSpec(vdaf=vdaf, query_type=query_type, min_batch_size=n, max_batch_size=n),
                      steps=(Upload(count=2), Pause(ms=50), Upload(count=3), Collect()))
    result = stack.run_scenario(Scenario(name=f"{vdaf_type}-{query_type}", plan=Plan(), workload=wl),
                                timeout_s=30)
    rec = result.record
    assert [u.measurement for u in rec.uploads] == [measurement_for(vdaf, i) for i in range(n)]
    (coll,) = rec.collections
    assert coll.status == "complete", coll
    assert coll.result == expected_aggregate(vdaf, range(n))
    assert coll.report_count == n
    if query_type == "fixed_size":
        assert coll.batch_id
    else:
        assert coll.interval is not None
    assert result.report.verdict_class == VerdictClass.PASS, result.report.summary


def test_second_collection_by_batch_id(stack: Stack) -> None:
    vdaf = vdaf_for("Prio3Histogram", 4)
    wl = WorkloadSpec(task=TaskSpec(vdaf=vdaf, query_type="fixed_size", min_batch_size=4, max_batch_size=4,
                                    max_batch_query_count=2),
                      steps=(Upload(count=4), Collect(label="first"), Collect(label="again", batch_of="first")))
    rec = stack.run_scenario(Scenario(name="by-id", plan=Plan(), workload=wl), timeout_s=30).record
    first, again = rec.collections
    assert again.query == {"type": 2, "subtype": 0, "batch_id": first.batch_id}
    assert again.status == "complete" and again.result == first.result == expected_aggregate(vdaf, range(4))


def test_teardown_leaves_no_processes(tmp_path: Path) -> None:
    with Stack.start(artifacts_root=tmp_path) as s:
        pids = [s.backend.pid(r) for r in ("leader", "helper", "client", "collector")]
        pids.append(s.proxy.process.pid)
        assert all(_alive(p) for p in pids)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)]


def test_teardown_on_exception_inside_the_with_block(tmp_path: Path) -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), Stack.start(artifacts_root=tmp_path) as s:
        pids = [s.backend.pid(r) for r in ("leader", "helper", "client", "collector")] + [s.proxy.process.pid]
        raise RuntimeError("boom")
    time.sleep(0.2)
    assert pids and not [p for p in pids if _alive(p)]


def test_a_role_that_dies_at_start_is_an_infra_error_and_nothing_is_left(tmp_path: Path) -> None:
    from harness.stack.images import load_images

    text = (Path(load_images().path).read_text()
            .replace('"--role", "helper", "--host", "{host}"', '"--role", "nosuchrole", "--host", "{host}"'))
    bad = tmp_path / "images.toml"
    bad.write_text(text)
    with pytest.raises(BackendError, match=r"^helper: reference exited with status 2"):
        Stack.start(artifacts_root=tmp_path / "a", images=bad)
    # no role process of this stack survives (their state dirs name the stack)
    leftovers = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if str(tmp_path / "a") in cmd and _alive(int(pid)):
                leftovers.append(cmd)
    assert not leftovers


def test_container_entry_without_docker_backend_is_a_usage_error(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="needs the docker backend"):
        Stack.start(artifacts_root=tmp_path, impl={"helper": "daphne"})
    monkeypatch.setenv("DOCKER_HOST", "tcp://192.0.2.7:2376")  # refused before any connection
    with pytest.raises(UsageError, match="names another machine"):
        Stack.start(artifacts_root=tmp_path, backend="docker")


def test_images_error_from_a_custom_file(tmp_path: Path) -> None:
    from harness.errors import ImagesError
    p = tmp_path / "i.toml"
    p.write_text("leader = 3\n")
    with pytest.raises(ImagesError, match=r"i.toml:1: leader: must be a non-empty array"):
        Stack.start(artifacts_root=tmp_path, images=p)


def test_scenario_timeout_ends_polling_and_the_stack_stays_usable(stack: Stack) -> None:
    from faults.actions import Respond
    from faults.plan import Limits, Matcher, Rule

    plan = Plan(seed=1, rules=(Rule(id="helper-down", match=Matcher(link="leader->helper", kind="agg_init"),
                                    action=Respond(status=503), limits=Limits()),))
    t0 = time.monotonic()
    result = stack.run_scenario(Scenario(name="timeout", plan=plan), timeout_s=3)
    assert time.monotonic() - t0 < 8
    (coll,) = result.record.collections
    assert coll.status == "timeout" and coll.result is None
    assert [e for e in result.history if e.event == "fault"]
    after = stack.run_scenario(Scenario(name="after-timeout", plan=Plan()), timeout_s=30)
    assert after.record.collections[0].status == "complete"
    assert after.report.verdict_class == VerdictClass.PASS


def test_a_role_that_died_between_scenarios_is_restarted_first(tmp_path: Path) -> None:
    import signal
    import time

    with Stack.start(artifacts_root=tmp_path) as s:
        old = s.backend.pid("collector")
        os.killpg(old, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not s.dead() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.dead() == [s.dead()[0]] and s.dead()[0].startswith("collector: reference was killed by SIGKILL")
        result = s.run_scenario(Scenario(name="after-restart", plan=Plan()), timeout_s=20)
        assert s.backend.pid("collector") != old and not s.dead()
    assert result.report.verdict_class == VerdictClass.PASS, result.report.summary


# --- the Leader's pace (images.toml timing): pauses, not-ready grace, the default timeout ---------------------


class _NoBackend:
    """Just enough of a backend for the run loop's liveness checks (no process)."""

    name = "local"

    def check(self, role: str) -> None:
        return None

    def logs(self, role: str) -> list[Path]:
        return []

    def close(self) -> None:
        return None


class _NoProxy:
    control = object()  # the run loop only asserts that there is one


def _paced_stack(tmp_path: Path, timing: object) -> Stack:
    import attrs as _attrs

    from harness.stack.images import load_images
    images = load_images()
    impl = {r: images.default(r) for r in ("leader", "helper", "client", "collector")}
    impl["leader"] = _attrs.evolve(impl["leader"], timing=timing)
    return Stack(artifacts_root=tmp_path, backend=_NoBackend(), images=images, impl=impl, proxy=_NoProxy(),
                 clients={"client": None, "collector": None})


def test_a_pause_waits_the_leaders_job_intervals(tmp_path: Path) -> None:
    """Pause(ms, job_intervals): ms plus that many of the Leader's images.toml
    timing.job_interval_ms, so two upload halves land in different jobs at any pace."""
    from harness.stack.images import Timing
    stack = _paced_stack(tmp_path, Timing(job_interval_ms=400, request_timeout_ms=1000, give_up_ms=8000))
    try:
        sc = Scenario("p", Plan(), WorkloadSpec(steps=(Pause(ms=50, job_intervals=1),)))
        for steps, least, most in (((Pause(ms=50, job_intervals=1),), 0.45, 1.2), ((Pause(ms=50),), 0.05, 0.35)):
            t0 = time.monotonic()
            stack._run_steps(Scenario("p", Plan(), WorkloadSpec(steps=steps)), None, 0, time.monotonic() + 30,
                             [], [], [])
            took = time.monotonic() - t0
            assert least <= took < most, (steps, took)
        # the deadline still bounds a pause
        t0 = time.monotonic()
        stack._run_steps(sc, None, 0, time.monotonic() + 0.1, [], [], [])
        assert time.monotonic() - t0 < 0.35
        # the default per-scenario timeout: 60 s, or what a slow Leader needs
        assert stack.scenario_timeout_s() == 60 and stack.scenario_timeout_s(10) == 26
    finally:
        stack.close()


def test_a_collection_is_judged_not_ready_no_sooner_than_one_job_interval(tmp_path: Path) -> None:
    """A batch the history says cannot fill ends ``not_ready`` only after the grace: one
    Leader job interval when that is longer than NOT_READY_GRACE_S (Janus: 2 s)."""
    from types import SimpleNamespace

    from harness.check.fill import FillBound
    from harness.run.stack import NOT_READY_GRACE_S
    from harness.stack.images import Timing

    class _Collector:
        def call(self, op: str, body: dict, timeout_s: float = 0) -> dict:
            return {"status": "success", "handle": "h"} if op == "collection_start" else {"status": "in progress"}

    def cannot_fill(query: dict) -> FillBound:
        return FillBound(min_batch_size=1, storable=1, countable=0, until_seq=7, given_up=("r",))

    pt = SimpleNamespace(time_precision=3600, query_type=1, task_id="t", vdaf={"type": "Prio3Count"})
    for interval_ms, least in ((2000, 2.0), (200, NOT_READY_GRACE_S)):
        stack = _paced_stack(tmp_path, Timing(job_interval_ms=interval_ms, request_timeout_ms=1000, give_up_ms=8000))
        try:
            t0 = time.monotonic()
            rec = stack._collect(Collect(), pt, 0, time.monotonic() + 30, [], _Collector(), cannot_fill)
            took = time.monotonic() - t0
        finally:
            stack.close()
        assert rec.status == "not_ready" and rec.not_ready_seq == 7
        assert least <= took < least + 1.0, (interval_ms, took)


def test_a_current_batch_put_refused_for_want_of_a_batch_is_asked_again_at_the_leaders_pace(tmp_path: Path) -> None:
    """Janus 0.7 refuses a ``current_batch`` collection-job PUT with batchInvalid until an
    aggregation job has filled a batch: the harness asks again (more than START_ATTEMPTS times)
    until it is accepted; a batch the history says cannot fill ends ``not_ready`` after one job
    interval; any other refusal still ends the collection after START_ATTEMPTS."""
    from types import SimpleNamespace

    from harness.check.fill import FillBound
    from harness.record import CollectionRecord
    from harness.run.stack import START_ATTEMPTS
    from harness.stack.images import Timing

    class _Collector:
        def __init__(self, refusals: int, error: str) -> None:
            self.refusals, self.error, self.starts = refusals, error, 0

        def call(self, op: str, body: dict, timeout_s: float = 0) -> dict:
            if op == "collection_start":
                self.starts += 1
                if self.starts <= self.refusals:
                    return {"status": "error", "error": self.error}
                return {"status": "success", "handle": "h"}
            return {"status": "complete", "result": "5", "report_count": 5, "batch_id": "b"}

    def can_fill(query: dict) -> FillBound:
        return FillBound(min_batch_size=1, storable=1, countable=1, until_seq=3, given_up=())

    def cannot_fill(query: dict) -> FillBound:
        return FillBound(min_batch_size=1, storable=1, countable=0, until_seq=7, given_up=("r",))

    no_batch = "HTTP 400 Bad Request batchInvalid The batch implied by the query is invalid."
    pt = SimpleNamespace(time_precision=3600, query_type=2, task_id="t", vdaf={"type": "Prio3Count"})
    stack = _paced_stack(tmp_path, Timing(job_interval_ms=400, request_timeout_ms=1000, give_up_ms=8000))
    try:
        col = _Collector(START_ATTEMPTS + 3, no_batch)
        rec = stack._collect(Collect(), pt, 0, time.monotonic() + 30, [], col, can_fill)
        assert rec.status == "complete" and col.starts == START_ATTEMPTS + 4 and rec.starts == col.starts
        t0 = time.monotonic()
        rec = stack._collect(Collect(), pt, 0, time.monotonic() + 30, [], _Collector(100, no_batch), cannot_fill)
        assert rec.status == "not_ready" and rec.not_ready_seq == 7 and time.monotonic() - t0 < 3
        col = _Collector(100, "HTTP 400 Bad Request invalidMessage")
        rec = stack._collect(Collect(), pt, 0, time.monotonic() + 30, [], col, can_fill)
        assert rec.status == "error" and col.starts == START_ATTEMPTS
        # a by_batch_id query refused batchInvalid is a refusal like any other
        prev = CollectionRecord(label="main", query={}, status="complete", batch_id="b")
        col = _Collector(100, no_batch)
        rec = stack._collect(Collect(label="again", batch_of="main"), pt, 0, time.monotonic() + 30, [prev], col,
                             can_fill)
        assert rec.status == "error" and col.starts == START_ATTEMPTS
    finally:
        stack.close()
