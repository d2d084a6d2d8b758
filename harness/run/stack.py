"""Run scenarios against a warm stack: roles + ONE fault proxy, started once.

::

    from harness.run import Stack
    with Stack.start(artifacts_root=Path("artifacts/x"), impl={"leader": "reference"},
                     images=None, backend="local") as stack:
        result = stack.run_scenario(scenario, seed=None, timeout_s=60)
        result.run_dir, result.record, result.report, result.exit_code

``Stack.start`` starts the four roles named in ``images.toml`` (``impl`` maps role ->
entry name, ``"all"`` sets every role; default: each role's first entry) through a
:class:`~harness.stack.backend.Backend` (``"local"``, or ``"docker"``: docs/docker.md) and, at the same time, one
:class:`~proxy_addons.FaultProxy` with a reverse listener per link
(``client->leader`` and ``collector->leader`` -> Leader, ``leader->helper`` -> Helper),
then waits for every ``/internal/test/ready``. Its own files go to
``<artifacts_root>/_stack/`` (role state dirs and logs, the proxy's ``history.jsonl``,
``flows/``, ``mitmdump.log``).

**Bounded for long campaigns.** One proxy serves every scenario, so nothing it keeps may grow
with their number: each scenario starts a new history *segment* (the proxy's
``history.jsonl`` then holds this scenario, not the campaign) and its own flows file, which
is moved into the run directory when the scenario ends (a passing campaign example's run
directory is deleted, a kept failure's ``report.html`` reads its own small file); local role
and proxy logs above :data:`LOG_KEEP_BYTES` are emptied between scenarios (each run directory
keeps its slice). The roles' own state (their databases) is the target's business.

``run_scenario`` (any number of times, one after the other):

0. starts a history segment and a flows file for the scenario (``/segment``, above);
1. provisions a fresh random task (task ID, tokens, verify key) through the interop API.
   The Client gets the proxy's ``client->leader`` listener as Leader URL, the Collector the
   ``collector->leader`` listener, the Leader the ``leader->helper`` listener as Helper URL;
   the Client reaches the Helper directly (no link in the plan vocabulary);
2. loads the scenario's plan through the control channel (counters reset; ``seed``
   replaces the plan's seed); the returned history seq starts this scenario's history;
3. runs the steps (:class:`~faults.scenario.Upload`: report *i* carries
   :func:`faults.workload.measurement_for` *i*, or the workload's explicit measurement *i*
   (Poplar1, :mod:`faults.heavy_hitters`), time = base time + offset; a Collect with an
   aggregation parameter passes it to collection_start;
   :class:`~faults.scenario.Collect`: start (up to 3 attempts), poll (every 50 ms, after 2 s every 250 ms)
   until complete, 5 errors in a row, the deadline, or -- after 1 s in progress, checked
   every 1 s -- the history shows its batch cannot reach ``min_batch_size``: status
   ``not_ready``, see :mod:`harness.check.fill`; :class:`~faults.scenario.FireEvent`;
   :class:`~faults.scenario.Pause`) and records a :class:`~harness.record.RunRecord`;
   an interop API failure at the HTTP level or a dead role ends the run with
   ``infra_errors``;
4. loads an empty plan (held flows released, never dropped; stored replays discarded and
   recorded so), slices the history from its start seq to there, closes the flows file, calls
   :func:`harness.check.checker.check`, and writes the run directory (layout in
   :mod:`harness.report.rundir`; the flows file is moved into it).

``timeout_s`` bounds the whole scenario (uploads, polling); by default
:meth:`Stack.scenario_timeout_s` (60 s, or longer when the Leader's ``images.toml`` timing
needs it). A :class:`~faults.scenario.Pause` waits its ``ms`` plus ``job_intervals`` of the
Leader's ``timing.job_interval_ms``, and a collection is judged ``not_ready`` no sooner than
one such interval: the scenarios adapt to the target's pace (the reference Leader creates
jobs every 0.2 s, Janus every 1 s). Every process started is
stopped by ``close()`` (the context manager), also on exceptions and Ctrl-C; an atexit hook
is the last resort. Errors: :mod:`harness.errors` (config -> exit 2, infra -> exit 3).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from dap.vdaf.params import VdafParams
from faults.actions import EVENT_NAMES
from faults.errors import WorkloadError
from faults.heavy_hitters import check_workload, step_agg_param
from faults.history import Event
from faults.plan import Plan
from faults.scenario import Collect, FireEvent, Pause, Scenario, Upload
from faults.vocabulary import LEADER_HELPER, LINK_ROLES
from faults.workload import capacity, measurement_of, upload_count
from harness.check.checker import check
from harness.check.fill import FillBound, fill_bound
from harness.check.verdict import CheckReport, VerdictClass, exit_code_for
from harness.errors import BackendError, ControlError, InfraError, InteropError, ProxyStartError, UsageError
from harness.record import CollectionRecord, RunRecord, UploadRecord
from harness.report.html import render_report_html
from harness.report.rundir import unique_dir, write_run_dir
from harness.stack.backend import Backend, get_backend
from harness.stack.images import ROLES, ImageEntry, Images, Timing, load_images
from harness.stack.interop import InteropClient, ProvisionedTask, provision_task, wait_ready
from harness.stack.lifetime import exit_text, last_line, sweep
from harness.stack.netfaults import NetFaults
from harness.stack.netns import sweep as sweep_netns
from harness.stack.proxy import FaultProxy

__all__ = ["DEFAULT_TIMEOUT_S", "RunResult", "Stack", "check_scenario", "resolve_impl"]

log = logging.getLogger(__name__)
POLL_INTERVAL_S = 0.05  # for the first POLL_FAST_S of a collection, then POLL_SLOW_S
POLL_FAST_S = 2.0
POLL_SLOW_S = 0.25
START_ATTEMPTS = 3
#: A ``current_batch`` collection-job PUT refused with one of these: the Leader has no batch
#: ready yet (Janus 0.7 refuses the PUT until an aggregation job has filled one; DAP-09 says
#: nothing of this case). The harness asks again at the Leader's pace until the batch is
#: known not to fill (then ``not_ready``) or the deadline, not after START_ATTEMPTS.
NO_BATCH_YET = ("batchInvalid", "invalidBatchSize")
MAX_POLL_ERRORS = 5
#: A collection still in progress this long (or one Leader job interval, if longer) is
#: checked for a batch that cannot fill (then it ends ``not_ready``): the Leader has had time
#: to aggregate what it has, and to complete a collection it should not (the checker flags that).
NOT_READY_GRACE_S = 1.0
#: The per-scenario timeout when none is given, before the Leader's timing may lengthen it
#: (:meth:`harness.stack.images.Timing.scenario_timeout_s`).
DEFAULT_TIMEOUT_S = 60.0
#: The same for a collection after one that ended ``not_ready`` in the same run.
NOT_READY_AGAIN_S = 0.25
#: ... and re-checked this often (the Leader may give up aggregating later: retry budgets).
FILL_RECHECK_S = 1.0
#: While a collection is polled, every role and the proxy are checked this often: a role that
#: died is infrastructure, reported at once, not a collection that times out.
ALIVE_RECHECK_S = 0.5
#: A local role's or the proxy's log larger than this is emptied before the next scenario
#: (the writers append, O_APPEND; every run directory already has its slice).
LOG_KEEP_BYTES = 1 << 20


class _Laps:
    """Time spent per phase of one run: ``lap(name)`` charges the time since the last lap to
    ``name`` (a phase that runs twice adds up)."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self.spent: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.spent[phase] = self.spent.get(phase, 0.0) + now - self._last
        self._last = now


@attrs.frozen
class RunResult:
    run_dir: Path
    record: RunRecord
    report: CheckReport
    history: tuple[Event, ...] = ()
    exit_code: int = 0
    seconds: float = 0.0
    #: of ``seconds``, the workload's own steps (uploads, collections); the rest is the harness's
    steps_s: float = 0.0
    #: the harness's part by phase, seconds (where a slow-down comes from): ``segment`` (log
    #: offsets, history segment), ``plan`` (plan load), ``provision`` (the task), ``history``
    #: (plan unload, history read), ``check`` (checker), ``write`` (run directory)
    phases: Mapping[str, float] = attrs.field(factory=dict)


def resolve_impl(images: Images, impl: Mapping[str, str] | None) -> dict[str, ImageEntry]:
    """role -> entry from ``{"leader": "reference", "all": "janus"}`` (role keys beat ``all``)."""
    impl = dict(impl or {})
    unknown = sorted(set(impl) - {*ROLES, "all"})
    if unknown:
        raise UsageError(f"--impl {unknown[0]}=...: unknown role (roles: {', '.join(ROLES)}, all)")
    out = {}
    for role in ROLES:
        name = impl.get(role, impl.get("all"))
        out[role] = images.select(role, name)
    return out


def check_scenario(scenario: Scenario) -> None:
    """Static checks before running: the workload fits the VDAF (WorkloadError otherwise)."""
    n = upload_count(scenario.workload)
    check_workload(scenario.workload, n)  # explicit measurements / Poplar1 aggregation parameters
    cap = None if scenario.workload.measurements is not None else capacity(scenario.workload.task.vdaf)
    if cap is not None and n > cap:
        raise WorkloadError(f"scenario {scenario.name!r} uploads {n} reports but "
                            f"{scenario.workload.task.vdaf.type} {scenario.workload.task.vdaf.to_interop()} "
                            f"holds {cap}; use --reports or a larger --vdaf")


def _agg_param(pt: ProvisionedTask, step: Collect) -> str:
    """The interop agg_param of a Collect step (``""``: none; :mod:`faults.heavy_hitters`)."""
    return step_agg_param(VdafParams.from_interop(pt.vdaf), step)


@attrs.define(eq=False)
class Stack:
    """Roles + one fault proxy for many scenarios. Context manager; ``close()`` stops all."""

    artifacts_root: Path
    backend: Backend
    images: Images
    impl: dict[str, ImageEntry]
    proxy: FaultProxy | None = None
    clients: dict[str, InteropClient] = attrs.field(factory=dict)
    started_s: float = 0.0
    _closed: bool = False
    #: the proxy answers /segment (one that does not: a stale proxy image; then one history file)
    _segments: bool = True
    _scenario_no: int = 0

    @property
    def stack_dir(self) -> Path:
        return self.artifacts_root / "_stack"

    # --- lifecycle -------------------------------------------------------------------

    @classmethod
    def start(cls, artifacts_root: Path | str, impl: Mapping[str, str] | None = None,
              images: Path | str | Images | None = None, backend: str | Backend = "local",
              *, ready_timeout_s: float = 30.0, save_flows: bool = True, pull: bool = False,
              network: str = "loopback") -> Stack:
        """``network``: ``loopback`` (default) or ``netns``: every role and the proxy in a network
        namespace of its own, so the plan's network rules can act on the links (docs/network.md)."""
        t0 = time.monotonic()
        sweep()  # a harness killed with kill -9 earlier may have left children behind
        sweep_netns()  # ... and network namespaces
        root = Path(artifacts_root).resolve()  # child processes run elsewhere: never hand them a relative path
        imgs = images if isinstance(images, Images) else load_images(images)
        entries = resolve_impl(imgs, impl)
        stack_dir = root / "_stack"
        stack_dir.mkdir(parents=True, exist_ok=True)
        be = get_backend(backend, stack_dir, pull=pull, network=network) if isinstance(backend, str) else backend
        stack = cls(artifacts_root=root, backend=be, images=imgs, impl=entries)
        try:
            for role in ("leader", "helper", "client", "collector"):  # spawn all, wait below
                if entries[role].command is None and be.name == "local":
                    raise UsageError(f"{role} {entries[role].name!r} is a container image; it needs the docker "
                                     "backend (--backend docker, docs/docker.md)")
                why = entries[role].missing(be.name)
                if why is not None:
                    raise UsageError(f"{role} {entries[role].name!r} cannot run here: {why} (docs/images.md)")
            prepare = getattr(be, "prepare", None)  # docker: images present (or pulled), network created
            if prepare is not None:
                prepare(entries)
            for role in ("leader", "helper", "client", "collector"):
                stack._start_role(role)
            stack._start_proxy(save_flows)
            wait_ready(stack.clients, timeout_s=ready_timeout_s, check=be.check)
        except BaseException:
            stack.close()
            raise
        stack.started_s = time.monotonic() - t0
        return stack

    @property
    def network(self) -> str:
        """``loopback`` or ``netns`` (docs/network.md)."""
        return getattr(self.backend, "network", "loopback")

    def _start_role(self, role: str) -> None:
        url = self.backend.start(role, self.impl[role])
        old = self.clients.pop(role, None)
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        self.clients[role] = InteropClient(role, url)

    def _start_proxy(self, save_flows: bool) -> None:
        """The fault proxy, forwarding to each role as the roles see each other (docker:
        ``http://helper:8080``; local: the role's current port)."""
        peer_url = getattr(self.backend, "peer_url", None)
        upstreams = {link: (peer_url(target) if peer_url else self.clients[target].base_url).rstrip("/")
                     for link, (_, target) in LINK_ROLES.items()}
        make_proxy = getattr(self.backend, "fault_proxy", None) or FaultProxy
        # made here, not by the proxy: a proxy container's files in it stay movable by the harness
        (self.stack_dir / "proxy" / "flows").mkdir(parents=True, exist_ok=True)
        self.proxy = make_proxy(upstreams, workdir=self.stack_dir / "proxy", plan=Plan(), save_flows=save_flows)
        self._segments = True
        try:
            self.proxy.start()
        except ProxyStartError as exc:
            raise BackendError(f"fault proxy: {exc}", role="proxy") from exc

    def dead(self) -> list[str]:
        """One line per role or proxy process that is no longer running (empty: all run)."""
        out = []
        for role in ROLES:
            try:
                self.backend.check(role)
            except BackendError as exc:
                out.append(str(exc))
        proc = getattr(self.proxy, "process", None)
        if self.proxy is not None and proc is not None and proc.poll() is not None:
            out.append(f"proxy: mitmdump {exit_text(proc.returncode)}; last log line: "
                       f"{last_line(self.proxy.log_path)}")
        elif self.proxy is not None and getattr(self.proxy, "control", None) is None:
            out.append("proxy: the fault proxy is not running")
        return out

    def heal(self, ready_timeout_s: float = 30.0) -> list[str]:
        """Restart what died (a dead role on its own state dir; the proxy with every restart,
        since it forwards to the roles' ports); return what was dead. BackendError if that fails."""
        dead = self.dead()
        if not dead:
            return []
        log.warning("restarting the stack after: %s", "; ".join(dead))
        for role in ROLES:
            try:
                self.backend.check(role)
            except BackendError:
                self.backend.stop(role)
                self._start_role(role)
        save_flows = bool(getattr(self.proxy, "save_flows", True))
        if self.proxy is not None:
            self.proxy.close()
        self._start_proxy(save_flows)
        wait_ready(self.clients, timeout_s=ready_timeout_s, check=self.backend.check)
        return dead

    def close(self) -> None:
        """Stop the proxy and every role. Never raises; idempotent."""
        if self._closed:
            return
        self._closed = True
        for c in self.clients.values():
            with contextlib.suppress(Exception):
                c.close()
        if self.proxy is not None:
            try:
                self.proxy.close()
            except Exception:
                log.exception("closing the fault proxy")
        try:
            self.backend.close()
        except Exception:
            log.exception("closing the backend")

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn("Stack collected while running; closing it", ResourceWarning, stacklevel=1)
            self.close()

    # --- one scenario ----------------------------------------------------------------------

    def _log_offsets(self) -> dict[str, tuple[Path, int]]:
        out: dict[str, tuple[Path, int]] = {}
        for role in ROLES:
            for p in self.backend.logs(role):
                out[f"{role}.{p.name}"] = (p, p.stat().st_size if p.exists() else 0)
        if self.proxy is not None:
            p = self.proxy.log_path
            out["proxy.mitmdump.log"] = (p, p.stat().st_size if p.exists() else 0)
        if self.backend.name == "local":  # its writers append (O_APPEND): emptying a log is safe
            for name, (p, size) in list(out.items()):
                if size > LOG_KEEP_BYTES:
                    try:
                        os.truncate(p, 0)
                        out[name] = (p, 0)
                    except OSError as exc:
                        log.warning("emptying %s: %s", p, exc)
        return out

    def _segment(self, flows: str | None, *, history: bool) -> bool:
        """Ask the proxy for a new history segment / flows file (module docs); False if it
        cannot (a proxy image from before /segment: then one history file, and flows as they are)."""
        if not self._segments or self.proxy is None or self.proxy.control is None:
            return False
        try:
            self.proxy.control.segment(history=history, flows=flows)
        except ControlError as exc:
            if exc.status != 404:
                raise
            log.warning("the fault proxy has no /segment (an old proxy image?): its history and flows grow "
                        "with every scenario; rebuild the image (docs/docker.md)")
            self._segments = False
            return False
        return True

    @property
    def timing(self) -> Timing:
        """The Leader's pace (``images.toml`` ``timing``): what the scenarios wait for."""
        return self.impl["leader"].timing

    def scenario_timeout_s(self, base_s: float = DEFAULT_TIMEOUT_S) -> float:
        """The per-scenario timeout for this stack's Leader: ``base_s`` or, for a Leader that
        takes longer to give up failing requests, what its ``timing`` needs."""
        return self.timing.scenario_timeout_s(base_s)

    def run_scenario(self, scenario: Scenario, seed: int | None = None, timeout_s: float | None = None,
                     run_dir: Path | None = None, report_html: bool = True) -> RunResult:
        """Run one scenario on a fresh task; write and return its run directory.

        ``timeout_s`` None: :meth:`scenario_timeout_s`. ``report_html=False`` skips
        report.html (about 40% of a passing run's time; campaigns render it only for the runs
        they keep, see :func:`harness.report.html.render_report_html`)."""
        if self._closed or self.proxy is None:
            raise InfraError("stack is closed")
        if timeout_s is None:
            timeout_s = self.scenario_timeout_s()
        check_scenario(scenario)
        if scenario.plan.net_rules and self.network != "netns":
            raise UsageError(f"{scenario.name}: its plan has network rules "
                             f"({', '.join(r.id for r in scenario.plan.net_rules)}); they need --network netns "
                             "(docs/network.md)")
        healed = self.heal()  # a role or the proxy died in an earlier scenario: restart it first
        if healed:
            log.warning("%s: restarted the stack after %s", scenario.name, "; ".join(healed))
        if seed is not None:
            scenario = attrs.evolve(scenario, plan=attrs.evolve(scenario.plan, seed=seed))
        t0 = time.monotonic()
        laps = _Laps()
        deadline = t0 + timeout_s
        run_dir = run_dir or unique_dir(self.artifacts_root, scenario.name)
        run_dir.mkdir(parents=True, exist_ok=True)
        offsets = self._log_offsets()
        control = self.proxy.control
        started_wall = time.time()
        base_time = int(started_wall)
        task = scenario.workload.task
        infra: list[str] = []
        uploads: list[UploadRecord] = []
        collections: list[CollectionRecord] = []
        fired: list[str] = []
        since = 0
        task_id = ""
        net: NetFaults | None = None
        steps_s = 0.0
        self._scenario_no += 1
        flows_name = f"scenario-{self._scenario_no:06d}.mitm" if self.proxy.save_flows else None
        flows_file: Path | None = None
        try:
            if self._segment(flows_name, history=True) and flows_name is not None:
                flows_file = self.proxy.workdir / "flows" / flows_name
            laps.lap("segment")
            since = control.load_plan(scenario.plan)
            if scenario.plan.net_rules:  # windows count from here (the scenario's start)
                net = NetFaults.open(self.backend, self.proxy, scenario.plan)
            laps.lap("plan")
            peer_url = getattr(self.backend, "peer_url", None)  # docker: URLs as the containers see them
            pt = provision_task(
                task, leader=self.clients["leader"], helper=self.clients["helper"],
                collector=self.clients["collector"], base_time=base_time,
                peer_host=getattr(self.backend, "hostname", None) or self.backend.peer_host,
                leader_base_for=self.proxy.url, helper_base_for_leader=self.proxy.url(LEADER_HELPER),
                helper_base_for_client=peer_url("helper") if peer_url else "",
                leader_base_for_peers=peer_url("leader") if peer_url else "")
            task_id = pt.task_id
            laps.lap("provision")
            try:
                self._run_steps(scenario, pt, base_time, deadline, uploads, collections, fired, since=since)
            finally:
                laps.lap("steps")
                steps_s = laps.spent["steps"]
        except (InteropError, BackendError, ControlError) as exc:
            infra.append(self._explain(exc))
        finally:
            if net is not None:  # every open window closes (recorded) before the plan is unloaded
                net.close()
            # a role or the proxy that died during the scenario: its end is no verdict on the target
            for what in self.dead():
                line = f"{what} (detected at +{time.monotonic() - t0:.2f} s)"
                if not any(what.split(";")[0] in x for x in infra):
                    infra.append(line)
            end_seq = None
            recording: list[str] = []
            try:
                end_seq = control.load_plan(Plan())  # releases held flows; ends this scenario's faults
                history = [e for e in control.history(since) if e.seq < end_seq]
                recording = [f for f in control.status().get("recording_failures", []) if f["seq"] < end_seq
                             and f["seq"] >= since or f["seq"] < 0]
            except ControlError as exc:
                infra.append(f"fault proxy control channel: {exc}")
                history = []
            if flows_file is not None:
                try:
                    self._segment("", history=False)  # the scenario's flows file is complete
                except ControlError as exc:
                    log.warning("closing the flows file %s: %s", flows_file, exc)
                    flows_file = None
        record = RunRecord(
            scenario=scenario.name, task_id=task_id, task=task, base_time=base_time, history_since_seq=since,
            history_end_seq=end_seq, uploads=tuple(uploads), collections=tuple(collections),
            fired_events=tuple(fired), infra_errors=tuple(infra),
            recording_failures=tuple(f["error"] for f in recording),
            started_wall=started_wall, finished_wall=time.time())
        laps.lap("history")
        report = self._check(record, history, scenario)
        laps.lap("check")
        if flows_file is not None:
            flows, owned = (flows_file, True) if flows_file.is_file() else (None, False)
        else:  # no segments: the proxy's one flows file, linked
            flows, owned = (self.proxy.flows_path if self.proxy.save_flows else None), False
        write_run_dir(run_dir, scenario=scenario, record=record, history=history, report=report,
                      log_slices=offsets, flows=flows, move_flows=owned)
        if report_html:
            render_report_html(run_dir)
        laps.lap("write")
        return RunResult(run_dir=run_dir, record=record, report=report, history=tuple(history),
                         exit_code=exit_code_for(report, scenario), seconds=time.monotonic() - t0,
                         steps_s=steps_s, phases={k: v for k, v in laps.spent.items() if k != "steps"})

    def _explain(self, exc: Exception) -> str:
        """An infra error, plus which role died if one did (that is usually the real cause).

        A killed role refuses connections a moment before it can be reaped as exited, so
        look for a dead role for up to a second before blaming the error alone.
        """
        deadline = time.monotonic() + 1.0
        while True:
            dead = self.dead()
            if dead:
                return f"{'; '.join(dead)} (then: {exc})"
            if time.monotonic() >= deadline:
                return str(exc)
            time.sleep(0.05)

    @staticmethod
    def _check(record: RunRecord, history: list[Event], scenario: Scenario) -> CheckReport:
        try:
            return check(record, history, scenario)
        except Exception as exc:  # a checker bug is the harness's failure, not the target's
            log.exception("checker failed")
            return CheckReport(scenario=scenario.name, verdict_class=VerdictClass.INFRA,
                               summary=f"checker failed: {type(exc).__name__}: {exc}",
                               reasons=(f"checker failed: {type(exc).__name__}: {exc}",))

    def _run_steps(self, scenario: Scenario, pt: ProvisionedTask, base_time: int, deadline: float,
                   uploads: list[UploadRecord], collections: list[CollectionRecord], fired: list[str],
                   since: int = 0) -> None:
        assert self.proxy is not None and self.proxy.control is not None

        def fill_check(query: dict[str, Any]) -> FillBound | None:
            return self._fill_bound(query, pt, scenario.workload.task, base_time, since, uploads)

        client, collector = self.clients["client"], self.clients["collector"]
        index = 0
        for step in scenario.workload.steps:
            if time.monotonic() > deadline:
                raise InteropError("scenario timeout before all steps ran", role="harness", path="steps")
            if isinstance(step, Upload):
                for _ in range(step.count):
                    m = measurement_of(scenario.workload, index)
                    t = base_time + step.time_offset_s
                    r = client.call("upload", {
                        "task_id": pt.task_id, "leader": pt.leader_url_client, "helper": pt.helper_url_client,
                        "vdaf": pt.vdaf, "measurement": m, "time": t, "time_precision": pt.time_precision,
                    }, timeout_s=max(deadline - time.monotonic(), 1.0))
                    ok = r.get("status") == "success"
                    uploads.append(UploadRecord(index=index, measurement=m, time=t,
                                                status="success" if ok else "error",
                                                error=None if ok else str(r.get("error") or r), t_wall=time.time()))
                    index += 1
            elif isinstance(step, Collect):
                rec = self._collect(step, pt, base_time, deadline, collections, collector, fill_check)
                collections.append(attrs.evolve(rec, agg_param=_agg_param(pt, step) or None))
            elif isinstance(step, FireEvent):
                name = step.name if (":" in step.name or step.name in EVENT_NAMES) else f"manual:{step.name}"
                self.proxy.control.fire_event(name)
                fired.append(name)
            elif isinstance(step, Pause):
                wait = self.timing.pause_s(step.ms, step.job_intervals)
                time.sleep(min(wait, max(deadline - time.monotonic(), 0)))

    def _fill_bound(self, query: dict[str, Any], pt: ProvisionedTask, task: Any, base_time: int, since: int,
                    uploads: list[UploadRecord]) -> FillBound | None:
        """Whether this collection's batch can still reach min_batch_size, from the history so far
        (:mod:`harness.check.fill`; the checker re-derives it from the same prefix)."""
        assert self.proxy is not None and self.proxy.control is not None
        events = self.proxy.control.history(since)
        until = max((e.seq for e in events), default=since - 1) + 1
        record = RunRecord(scenario="", task_id=pt.task_id, task=task, base_time=base_time,
                           history_since_seq=since, uploads=tuple(uploads))
        return fill_bound(record, events, None, query, until)

    def _collect(self, step: Collect, pt: ProvisionedTask, base_time: int, deadline: float,
                 earlier: list[CollectionRecord], collector: InteropClient,
                 fill_check: Callable[[dict[str, Any]], FillBound | None] | None = None) -> CollectionRecord:
        tp = pt.time_precision
        query: dict[str, Any]
        if pt.query_type == 1:
            query = {"type": 1, "batch_interval_start": base_time - base_time % tp + step.interval_offset_s,
                     "batch_interval_duration": tp + step.interval_extra_s}
        elif step.batch_of is not None:
            prev = next((c for c in earlier if c.label == step.batch_of), None)
            if prev is not None and prev.status == "not_ready":  # that batch never formed: nor can this one
                return CollectionRecord(label=step.label, query={"type": 2, "subtype": 0}, status="not_ready",
                                        error=f"batch of collection {step.batch_of!r} never formed: {prev.error}",
                                        t_wall=time.time(), starts=0, not_ready_seq=prev.not_ready_seq)
            if prev is None or prev.batch_id is None:
                return CollectionRecord(label=step.label, query={"type": 2, "subtype": 0}, status="error",
                                        error=f"no batch ID from collection {step.batch_of!r}", t_wall=time.time(),
                                        errors=(f"no batch ID from collection {step.batch_of!r}",), starts=0)
            query = {"type": 2, "subtype": 0, "batch_id": prev.batch_id}
        else:
            query = {"type": 2, "subtype": 1}
        errors: list[str] = []
        handle = None
        starts = refused = 0
        t_first = time.monotonic()
        fill_check_at = t_first + max(NOT_READY_GRACE_S, self.timing.job_interval_ms / 1000)
        while refused < START_ATTEMPTS and time.monotonic() < deadline:
            starts += 1
            r = collector.call("collection_start", {"task_id": pt.task_id, "agg_param": _agg_param(pt, step),
                                                    "query": query},
                               timeout_s=max(deadline - time.monotonic(), 1.0))
            if r.get("status") == "success" and isinstance(r.get("handle"), str):
                handle = r["handle"]
                break
            error = str(r.get("error") or r)
            errors.append(f"collection_start: {error}")
            if query.get("subtype") == 1 and any(tok in error for tok in NO_BATCH_YET):
                # no batch ready yet: once the Leader had a job interval, is one able to fill?
                if fill_check is not None and time.monotonic() >= fill_check_at:
                    bound = fill_check(query)
                    if bound is not None and not bound.can_fill:
                        return CollectionRecord(label=step.label, query=query, status="not_ready",
                                                error=bound.summary(), t_wall=time.time(), errors=tuple(errors),
                                                starts=starts, not_ready_seq=bound.until_seq)
                    fill_check_at = time.monotonic() + FILL_RECHECK_S
                time.sleep(max(0.2, min(self.timing.job_interval_ms / 2000, deadline - time.monotonic())))
                continue
            refused += 1
            time.sleep(0.2)
        if handle is None:
            return CollectionRecord(label=step.label, query=query, status="error" if errors else "timeout",
                                    error=errors[-1] if errors else "timeout before collection_start",
                                    t_wall=time.time(), errors=tuple(errors), starts=starts)
        polls = 0
        in_a_row = 0
        t_start = time.monotonic()
        # a later collection of a run whose earlier one found its batch unfillable: the Leader
        # has had its grace already; check (almost) at once
        grace = NOT_READY_AGAIN_S if any(c.status == "not_ready" for c in earlier) else \
            max(NOT_READY_GRACE_S, self.timing.job_interval_ms / 1000)
        fill_check_at = t_start + grace
        alive_check_at = t_start + ALIVE_RECHECK_S
        while True:
            polls += 1
            r = collector.call("collection_poll", {"handle": handle}, timeout_s=max(deadline - time.monotonic(), 1.0))
            status = r.get("status")
            if status == "complete":
                interval = None
                if "interval_start" in r and "interval_duration" in r:
                    interval = (int(r["interval_start"]), int(r["interval_duration"]))
                return CollectionRecord(label=step.label, query=query, status="complete", result=r.get("result"),
                                        report_count=r.get("report_count"), interval=interval,
                                        batch_id=r.get("batch_id"), polls=polls, t_wall=time.time(),
                                        errors=tuple(errors), starts=starts)
            if time.monotonic() >= alive_check_at:  # a dead Helper shows only as a collection that never ends
                dead = self.dead()
                if dead:
                    raise BackendError("; ".join(dead))
                alive_check_at = time.monotonic() + ALIVE_RECHECK_S
            if status == "in progress":
                in_a_row = 0
                if fill_check is not None and time.monotonic() >= fill_check_at:
                    bound = fill_check(query)
                    if bound is not None and not bound.can_fill:
                        return CollectionRecord(label=step.label, query=query, status="not_ready",
                                                error=bound.summary(), polls=polls, t_wall=time.time(),
                                                errors=tuple(errors), starts=starts, not_ready_seq=bound.until_seq)
                    fill_check_at = time.monotonic() + FILL_RECHECK_S
            else:
                errors.append(f"collection_poll: {r.get('error') or r}")
                in_a_row += 1
                if in_a_row >= MAX_POLL_ERRORS:
                    return CollectionRecord(label=step.label, query=query, status="error", error=errors[-1],
                                            polls=polls, t_wall=time.time(), errors=tuple(errors), starts=starts)
            wait = POLL_INTERVAL_S if time.monotonic() - t_start < POLL_FAST_S else POLL_SLOW_S
            if time.monotonic() + wait > deadline:
                return CollectionRecord(label=step.label, query=query, status="timeout",
                                        error=errors[-1] if errors else "still in progress at the deadline",
                                        polls=polls, t_wall=time.time(), errors=tuple(errors), starts=starts)
            time.sleep(wait)
