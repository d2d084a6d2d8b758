"""Hypothesis fault campaigns: generate scenarios, run them on a warm stack, shrink, freeze.

Generating, executing and checking stay separate: :mod:`faults.strategies` generates
:class:`~harness.model.Scenario` values, :meth:`harness.run.Stack.run_scenario` executes one
(a fresh task each time) and :mod:`harness.checker` judges it. This module only drives
hypothesis over them::

    from harness.campaign import run_campaign
    with Stack.start(artifacts_root=root) as stack:
        result = run_campaign(stack, seed=7, examples=50, artifacts=root / "campaign")
    for f in result.failures:
        print(f.command)          # faultrun --scenario .../scenario.json --seed 123

**What is a failure** (:func:`failure_kind`), shrunk and reported alike, each under its
own label:

- ``violation``: the verdict class ``violation`` (an invariant is False: wrong aggregate,
  double count, auth bypass, unexpected 5xx, inconsistent replays, a batch released below
  ``min_batch_size``, a far-future upload acknowledged, a lost acknowledged report when
  completeness is demanded);
- ``unexpected_clean_failure``: the verdict class ``clean_failure`` where the scenario's
  expectation is ``pass``: :func:`faults.strategies.expectation_for` demands ``pass`` only
  of plans made entirely of faults a correct pair of Aggregators MUST recover from
  (duplicates, replays of identical requests, short delays, the proxy's forged
  re-inits/continues sent after the genuine answer, and Leader->Helper drops/5xx/timeouts
  few enough that the Leader's retries outlast them). A collection that fails there (e.g.
  ``batchMismatch``: the Aggregators disagree) is a bug the spec's safety net caught.

**What explicitly is not:**

- ``clean_failure`` under any other plan: a random fault may legitimately end a collection
  (the spec allows an Aggregator to refuse or give up); those scenarios expect
  ``pass_or_clean_failure``;
- a collection whose batch never received ``min_batch_size`` reports (every upload lost or
  refused, or uploaded into another batch): the harness ends it early as ``not_ready`` and
  the checker confirms that a correct Leader would not complete it (:mod:`harness.invariants.fill`);
- ``infra``: the harness or a role failed, there is no verdict on the target. Such runs are
  counted and listed (:attr:`CampaignResult.infra_runs`), never shrunk (hypothesis sees a
  pass), so a flaky machine cannot shrink into noise. Three infra runs in a row, or a dead
  role, end the campaign (:attr:`CampaignResult.infra_aborted`, exit 3);
- lost reports under faults that may lose them: completeness is demanded only of plans made
  of faults the protocol must recover from (:func:`faults.strategies.expectation_for`).

**Known nondeterminism.** Real processes and timing: a failure found once may not repeat
when hypothesis replays it (job batching, retry timing, a forged message racing the
collection). Then the smallest failing run seen is reported with ``reproduced=False``
instead of hypothesis' final replay.

**Determinism and replay.** ``seed`` fixes hypothesis' generation (same seed, same stack
behaviour -> same examples). The example database lives in ``<artifacts>/hypothesis-db``:
a later campaign with the same artifacts directory replays stored failures first.

Each failure writes ``<artifacts>/failures/<name>/{scenario.json, plan.toml}`` and a
one-line reproduction: ``faultrun --plan FILE --seed S --reports N --vdaf V --query-type Q``
when flags express the workload, else ``faultrun --scenario FILE --seed S``.
:func:`freeze` turns one into a regression case under ``tests/regressions/``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import multiprocessing
import queue as queue_mod
import shlex
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from faults.actions import action_name
from faults.plan import dump_plan
from harness.model import CheckReport, Scenario, VerdictClass, scenario_from_dict, to_dict

__all__ = [
    "REGRESSIONS_DIR",
    "CampaignFailure",
    "CampaignProgress",
    "CampaignResult",
    "InfraRun",
    "campaign_command",
    "derive_seed",
    "failure_kind",
    "freeze",
    "reproduction_command",
    "run_campaign",
    "run_campaign_workers",
]

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS_DIR = REPO_ROOT / "tests" / "regressions"
#: Consecutive infra runs that end a campaign (the stack is probably broken).
MAX_INFRA_IN_A_ROW = 3
#: Kept in the result; the count in ``verdicts`` is complete.
MAX_INFRA_LISTED = 20


# --- values ------------------------------------------------------------------------------------


#: :func:`failure_kind` values (labels in the summary and ``CampaignResult.verdicts``).
VIOLATION = "violation"
UNEXPECTED_CLEAN_FAILURE = "unexpected_clean_failure"


def failure_kind(scenario: Scenario, report: CheckReport) -> str | None:
    """``violation``, ``unexpected_clean_failure`` (a clean failure where the expectation
    demands ``pass``) or None (not a failure of the target)."""
    from harness.checker import expectation_met
    vc = report.verdict_class
    if vc == VerdictClass.VIOLATION:
        return VIOLATION
    if vc == VerdictClass.CLEAN_FAILURE and not expectation_met(vc, scenario.expect):
        return UNEXPECTED_CLEAN_FAILURE
    return None


@attrs.frozen
class CampaignFailure:
    """One shrunk failure: the scenario, its report, where it ran and how to rerun it."""

    scenario: Scenario
    report: CheckReport
    run_dir: Path
    plan_file: Path
    scenario_file: Path
    command: str
    seed: int
    #: violated invariants + actions of the plan: failures with the same one are one bug
    signature: tuple[str, ...]
    #: hypothesis' final replay of the shrunk example failed again (False: seen once)
    reproduced: bool = True
    frozen: Path | None = None
    #: :func:`failure_kind`: ``violation`` or ``unexpected_clean_failure``
    kind: str = VIOLATION


@attrs.frozen
class InfraRun:
    run_dir: Path
    summary: str


@attrs.frozen
class CampaignResult:
    seed: int
    #: generated examples run (not counting shrink and replay runs)
    examples_run: int
    #: every scenario run, shrinking included
    runs: int
    failures: tuple[CampaignFailure, ...]
    #: verdict class -> runs; a clean failure the expectation did not allow is counted as
    #: ``unexpected_clean_failure`` instead of ``clean_failure``
    verdicts: Mapping[str, int]
    elapsed_s: float
    artifacts: Path
    infra_runs: tuple[InfraRun, ...] = ()
    infra_aborted: bool = False

    @property
    def elapsed(self) -> float:
        return self.elapsed_s

    @property
    def verdict_counts(self) -> Mapping[str, int]:
        return self.verdicts

    @property
    def exit_code(self) -> int:
        """faultrun's: 1 any failure, 3 infra stopped the campaign (or every run was infra), else 0."""
        if self.failures:
            return 1
        infra = self.verdicts.get(VerdictClass.INFRA.value, 0)
        if self.infra_aborted or (self.runs and infra == self.runs):
            return 3
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "examples_run": self.examples_run, "runs": self.runs,
            "verdicts": dict(self.verdicts), "elapsed_s": round(self.elapsed_s, 3),
            "artifacts": str(self.artifacts), "infra_aborted": self.infra_aborted, "exit_code": self.exit_code,
            "infra_runs": [{"run_dir": str(r.run_dir), "summary": r.summary} for r in self.infra_runs],
            "failures": [{
                "kind": f.kind, "command": f.command, "seed": f.seed, "signature": list(f.signature),
                "reproduced": f.reproduced,
                "run_dir": str(f.run_dir), "plan_file": str(f.plan_file), "scenario_file": str(f.scenario_file),
                "summary": f.report.summary, "frozen": None if f.frozen is None else str(f.frozen),
                "scenario": to_dict(f.scenario), "report": to_dict(f.report),
            } for f in self.failures],
        }


@attrs.frozen
class CampaignProgress:
    """Passed to ``progress`` after every run."""

    examples_run: int
    runs: int
    failures: int
    verdicts: Mapping[str, int]
    phase: str  # "generate" | "shrink"
    elapsed_s: float
    last: str = ""
    worker: int = 0


def derive_seed(seed: int, index: int) -> int:
    """Worker ``index``'s seed: a stable 32-bit hash of (seed, index)."""
    return int.from_bytes(hashlib.sha256(f"faultrun-campaign:{seed}:{index}".encode()).digest()[:4], "big")


# --- reproduction ---------------------------------------------------------------------------------


def _vdaf_flag(scenario: Scenario) -> str:
    v = scenario.workload.task.vdaf.to_interop()
    params = ",".join(f"{k}={x}" for k, x in v.items() if k != "type")
    return v["type"] + (f":{params}" if params else "")


def _flags_workload(scenario: Scenario) -> list[str] | None:
    """The ``--reports/--vdaf/--query-type`` flags that rebuild this scenario's workload and
    verdict semantics under ``faultrun --plan``, or None if flags cannot express it."""
    from harness.cli import apply_overrides
    from harness.model import Expectation
    from harness.workload import upload_count
    if scenario.expect != Expectation():
        return None  # --plan demands an exact, complete aggregate and nothing else; the campaign did not
    n = upload_count(scenario.workload)
    flags = ["--reports", str(n), "--vdaf", _vdaf_flag(scenario), "--query-type", scenario.workload.task.query_type]
    try:
        rebuilt = apply_overrides(Scenario(name=scenario.name, plan=scenario.plan), vdaf=flags[3], reports=n,
                                  query_type=flags[5])
    except Exception:
        return None
    return flags if rebuilt.workload == scenario.workload else None


def _impl_flags(impl: Mapping[str, str] | None, images: Path | None) -> list[str]:
    out: list[str] = []
    for role, name in (impl or {}).items():
        out += ["--impl", f"{role}={name}"]
    if images is not None:
        out += ["--images", str(images)]
    return out


def reproduction_command(scenario: Scenario, plan_file: Path, scenario_file: Path, *,
                         impl: Mapping[str, str] | None = None, images: Path | None = None) -> str:
    """The one-line ``faultrun`` command that reruns a failure (see the module docs)."""
    flags = _flags_workload(scenario)
    if flags is not None:
        argv = ["faultrun", "--plan", str(plan_file), "--seed", str(scenario.plan.seed), *flags]
    else:
        argv = ["faultrun", "--scenario", str(scenario_file), "--seed", str(scenario.plan.seed)]
    return shlex.join([*argv, *_impl_flags(impl, images)])


def _signature(scenario: Scenario, report: CheckReport) -> tuple[str, ...]:
    """Violated invariants (or ``unexpected_clean_failure:<problem>``) + the plan's actions."""
    bad = sorted(v.invariant for v in report.verdicts if v.valid is False)
    if not bad and failure_kind(scenario, report) == UNEXPECTED_CLEAN_FAILURE:
        bad = [f"{UNEXPECTED_CLEAN_FAILURE}:{_failed_how(report)}"]
    acts = sorted({action_name(r.action) for r in scenario.plan.rules})
    return (*bad, "|", *acts)


def _failed_how(report: CheckReport) -> str:
    """How the first failed collection ended: its DAP problem type(s), e.g. ``batchMismatch``,
    or ``not-ready`` / ``timeout`` / ``error`` (later ones often fail because it did)."""
    from dap.constants import ProblemType
    ev = next((v.evidence for v in report.verdicts if v.invariant == "collections"), {})
    texts = [str(x) for x in (ev.get("clean_failures") or {}).values()][:1]
    found = {p.token for p in ProblemType for t in texts if p.token in t}
    for t in texts:
        if not any(p in t for p in found):
            found.add("not-ready" if "min_batch_size" in t else "timeout" if "deadline" in t else "error")
    return ",".join(sorted(found)) or "no-collection"


def _size(item: tuple[Scenario, Any]) -> tuple[int, ...]:
    """Our own simplicity order (used when hypothesis' final replay did not fail again)."""
    from faults.strategies import ACTION_ORDER
    from harness.workload import upload_count
    s = item[0]
    return (len(s.plan.rules), sum(ACTION_ORDER.index(action_name(r.action)) for r in s.plan.rules),
            upload_count(s.workload), len(s.workload.steps), len(json.dumps(to_dict(s))))


# --- the campaign -----------------------------------------------------------------------------------


class _Violation(Exception):
    """Raised inside the hypothesis test for a failing run (what hypothesis shrinks)."""


class _Stop(BaseException):
    """Ends a hypothesis run at once (budget spent, stack broken): hypothesis lets a
    BaseException through without shrinking it or storing it as a failure."""


@attrs.define
class _State:
    stack: Any
    artifacts: Path
    timeout_s: float
    deadline: float | None
    shrink_budget_s: float
    progress: Callable[[CampaignProgress], None] | None
    worker: int
    t0: float
    keep_runs: bool
    runs_root: Path = Path()
    runs: int = 0
    examples: int = 0
    verdicts: Counter[str] = attrs.field(factory=Counter)
    infra: list[InfraRun] = attrs.field(factory=list)
    infra_in_a_row: int = 0
    infra_aborted: bool = False
    stop: bool = False
    failures: int = 0
    max_examples_left: int | None = None
    #: failing runs of the current round (scenario, result), see :func:`failure_kind`
    violations: list[tuple[Scenario, Any]] = attrs.field(factory=list)
    shrink_started: float | None = None
    #: how long the latest run took
    last_run_s: float = 0.0
    #: signatures already reported (keep_going): not failures in later rounds
    known: set[tuple[str, ...]] = attrs.field(factory=set)
    #: True ends generation (another worker found a failure); shrinking is never cut short by it
    external_stop: Callable[[], bool] | None = None
    #: only failures whose signature this accepts are shrunk and reported (None: all)
    wanted: Callable[[tuple[str, ...]], bool] | None = None

    def one(self, scenario: Scenario) -> None:
        from harness.errors import BackendError, HarnessError
        now = time.monotonic()
        shrinking = bool(self.violations)
        if not shrinking and self.deadline is not None and now >= self.deadline:
            self.stop = True
        if not shrinking and self.max_examples_left is not None and self.max_examples_left <= 0:
            self.stop = True
        # the budget bounds shrinking: no run is started that would likely end beyond it (a
        # failure that ends in a timeout makes every shrink run last that long)
        if shrinking and self.shrink_started is not None and \
                now - self.shrink_started + self.last_run_s > self.shrink_budget_s:
            self.stop = True
        if not shrinking and self.external_stop is not None and self.external_stop():
            self.stop = True
        if self.stop:
            raise _Stop
        self.runs += 1
        if not shrinking:
            self.examples += 1
            if self.max_examples_left is not None:
                self.max_examples_left -= 1
        run_dir = self.runs_root / f"{self.runs:05d}"
        try:
            # report.html is rendered for the runs kept (failures: _write_failure), not for every example
            result = self.stack.run_scenario(scenario, timeout_s=self.timeout_s, run_dir=run_dir, report_html=False)
        except HarnessError as exc:
            self._infra(run_dir, f"{type(exc).__name__}: {exc}")
            return
        finally:
            self.last_run_s = time.monotonic() - now
        vc = result.report.verdict_class
        kind = failure_kind(scenario, result.report)
        self.verdicts[kind or vc.value] += 1
        if vc == VerdictClass.INFRA:
            self._infra(result.run_dir, result.report.summary)
            for role in ("leader", "helper", "client", "collector"):
                try:
                    self.stack.backend.check(role)
                except BackendError as dead:
                    self.infra_aborted = self.stop = True
                    self._infra(result.run_dir, f"stack broken: {dead}")
                    break
        else:
            self.infra_in_a_row = 0
        last = f"{kind or vc.value} {result.run_dir.name} {getattr(result, 'seconds', 0.0):.1f}s"
        if kind is not None:
            sig = _signature(scenario, result.report)
            if sig in self.known:
                kind = None  # keep_going: a bug already reported; not shrunk into again
            elif self.wanted is not None and not self.wanted(sig):
                kind = None  # not the failure this campaign looks for: counted, kept, not shrunk
            else:
                if not self.violations:
                    self.shrink_started = time.monotonic()
                self.violations.append((scenario, result))
        self._progress(last)  # after the append: the first failing run already reports "shrink"
        if kind is not None:
            raise _Violation(result.report.summary)
        if not self.keep_runs and vc in (VerdictClass.PASS, VerdictClass.CLEAN_FAILURE) \
                and failure_kind(scenario, result.report) is None:
            shutil.rmtree(result.run_dir, ignore_errors=True)

    def _infra(self, run_dir: Path, summary: str) -> None:
        if len(self.infra) < MAX_INFRA_LISTED:
            self.infra.append(InfraRun(run_dir=run_dir, summary=summary))
        if not summary.startswith("stack broken"):
            self.infra_in_a_row += 1
        if self.infra_in_a_row >= MAX_INFRA_IN_A_ROW:
            self.infra_aborted = self.stop = True

    def _progress(self, last: str) -> None:
        if self.progress is None:
            return
        try:
            self.progress(CampaignProgress(
                examples_run=self.examples, runs=self.runs, failures=self.failures + (1 if self.violations else 0),
                verdicts=dict(self.verdicts), phase="shrink" if self.violations else "generate",
                elapsed_s=time.monotonic() - self.t0, last=last, worker=self.worker))
        except Exception:
            log.exception("progress callback")


def _round(state: _State, strategy: Any, *, seed: int, max_examples: int, db: Any, reuse: bool,
           digest: bytes) -> tuple[Scenario, Any, bool] | None:
    """One hypothesis run; the shrunk violation (scenario, result, reproduced) or None."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    phases = [Phase.explicit, Phase.generate, Phase.shrink]
    if reuse:
        phases.insert(1, Phase.reuse)

    @settings(database=db, deadline=None, max_examples=max_examples, phases=phases, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False)
    @given(strategy)
    def campaign_example(scenario: Scenario) -> None:
        state.one(scenario)

    campaign_example.hypothesis.inner_test._hypothesis_internal_add_digest = digest  # type: ignore[attr-defined]
    campaign_example._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]  # as @seed, keeping the db
    state.violations = []
    state.shrink_started = None
    reproduced = False
    try:
        campaign_example()
    except _Violation:
        reproduced = True
    except _Stop:
        pass
    except Exception as exc:  # Flaky (not reproduced), a rejected replay after the shrink budget, ...
        if not state.violations:
            raise
        log.info("campaign: final replay did not fail again (%s: %s)", type(exc).__name__, exc)
    if not state.violations:
        return None
    if reproduced:
        scenario, result = state.violations[-1]
    else:
        scenario, result = min(state.violations, key=_size)
    return scenario, result, reproduced


def _write_failure(artifacts: Path, index: int, scenario: Scenario, result: Any, reproduced: bool, *,
                   impl: Mapping[str, str] | None, images: Path | None) -> CampaignFailure:
    from harness.artifacts import unique_dir
    name = f"failure-{index}-" + "-".join(sorted({action_name(r.action) for r in scenario.plan.rules}))
    d = unique_dir(artifacts / "failures", name)
    scenario = attrs.evolve(scenario, name=d.name)
    plan_file = d / "plan.toml"
    scenario_file = d / "scenario.json"
    dump_plan(scenario.plan, plan_file)
    scenario_file.write_text(json.dumps(to_dict(scenario), indent=2) + "\n", encoding="utf-8")
    (d / "report.json").write_text(json.dumps(to_dict(result.report), indent=2) + "\n", encoding="utf-8")
    cmd = reproduction_command(scenario, plan_file, scenario_file, impl=impl, images=images)
    (d / "reproduce.sh").write_text(cmd + "\n", encoding="utf-8")
    if (Path(result.run_dir) / "record.json").is_file():  # a real run dir: its sequence chart, now it is kept
        from harness.run import write_report_html
        write_report_html(Path(result.run_dir))
    return CampaignFailure(scenario=scenario, report=result.report, run_dir=result.run_dir, plan_file=plan_file,
                           scenario_file=scenario_file, command=cmd, seed=scenario.plan.seed,
                           signature=_signature(scenario, result.report), reproduced=reproduced,
                           kind=failure_kind(scenario, result.report) or VIOLATION)


def _impl_of(stack: Any) -> tuple[dict[str, str] | None, Path | None]:
    impl = getattr(stack, "impl", None) or {}
    images = getattr(stack, "images", None)
    names = {}
    for role, entry in impl.items():
        default = images.default(role).name if images is not None else None
        if entry.name != default:
            names[role] = entry.name
    path = getattr(images, "path", None)
    default_path = REPO_ROOT / "images.toml"
    if path is not None and Path(path).resolve() == default_path.resolve():
        path = None
    return (names or None), (Path(path).resolve() if path is not None else None)  # runnable from any cwd


def run_campaign(stack: Any, *, seed: int, examples: int | None = None, time_budget_s: float | None = None,
                 vdaf: str | None = None, artifacts: Path, keep_going: bool = False, database: bool = True,
                 progress: Callable[[CampaignProgress], None] | None = None, timeout_s: float = 30.0,
                 max_rules: int | None = None, max_reports: int | None = None, shrink_budget_s: float = 300.0,
                 keep_runs: bool = False, worker: int = 0, stop: Callable[[], bool] | None = None,
                 wanted: Callable[[tuple[str, ...]], bool] | None = None) -> CampaignResult:
    """Run a campaign on a warm :class:`~harness.run.Stack` (a new task per example).

    Stops after ``examples`` generated examples or ``time_budget_s`` (whichever first; one
    is required), or at the first failure (:func:`failure_kind`; shrunk for at most
    ``shrink_budget_s``) unless ``keep_going``: then generation restarts with a derived seed
    (no replay) until the budget is spent, and a failure with an already reported signature
    (violated invariants or ``unexpected_clean_failure:<problem>``, + actions) counts as
    seen, not as a new failure, so shrinking cannot slide back into a known bug. ``vdaf``
    fixes the VDAF (a ``--vdaf`` spec); ``timeout_s`` bounds one scenario. Run dirs of
    passing runs are deleted unless ``keep_runs``. ``stop()`` True ends generation early
    (used by :func:`run_campaign_workers`: another worker found a failure). ``wanted``
    (self-validation: the time to find one known bug) restricts failures to those whose
    signature it accepts; other failing runs are counted in ``verdicts`` and kept on disk,
    but neither shrunk nor reported.
    """
    from hypothesis.database import DirectoryBasedExampleDatabase

    from faults.strategies import MAX_REPORTS, MAX_RULES, check_campaign_vdaf, scenarios
    if examples is None and time_budget_s is None:
        raise ValueError("give examples or time_budget_s")
    if examples is not None and examples < 1:
        raise ValueError(f"examples must be >= 1, got {examples}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise ValueError(f"time_budget_s must be > 0, got {time_budget_s}")
    if vdaf is not None:
        check_campaign_vdaf(vdaf, 1)  # fail early: a bad spec, or Poplar1 (WorkloadError)
    max_rules = MAX_RULES if max_rules is None else max_rules
    max_reports = MAX_REPORTS if max_reports is None else max_reports
    artifacts = Path(artifacts).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    db = DirectoryBasedExampleDatabase(str(artifacts / "hypothesis-db")) if database else None
    strategy = scenarios(vdaf=vdaf, max_rules=max_rules, max_reports=max_reports)
    # v2: workloads with min_batch_size, far-future and late uploads; recoverable plans
    digest = f"faultrun-campaign-v2:{vdaf}:{max_rules}:{max_reports}".encode()
    state = _State(stack=stack, artifacts=artifacts, timeout_s=timeout_s,
                   deadline=None if time_budget_s is None else t0 + time_budget_s, shrink_budget_s=shrink_budget_s,
                   progress=progress, worker=worker, t0=t0, keep_runs=keep_runs, max_examples_left=examples,
                   external_stop=stop, wanted=wanted)
    from harness.artifacts import unique_dir
    state.runs_root = unique_dir(artifacts / "runs", f"seed{seed}")
    impl, images = _impl_of(stack)
    failures: list[CampaignFailure] = []
    round_no = 0
    while not state.stop:
        left = state.max_examples_left
        if left is not None and left <= 0:
            break
        found = _round(state, strategy, seed=seed if round_no == 0 else derive_seed(seed, 1000 + round_no),
                       max_examples=left if left is not None else 10**6, db=db, reuse=round_no == 0, digest=digest)
        round_no += 1
        if found is None:
            break  # budget spent (or the stack broke)
        scenario, result, reproduced = found
        sig = _signature(scenario, result.report)
        if sig not in state.known:
            state.known.add(sig)
            failures.append(_write_failure(artifacts, len(failures) + 1, scenario, result, reproduced,
                                           impl=impl, images=images))
            state.failures = len(failures)
            state.violations = []
            state._progress(f"{failures[-1].kind} reported: {' '.join(sig)}")
        if not keep_going:
            break
        state.stop = state.infra_aborted
    state.violations = []
    state._progress("done")
    return CampaignResult(seed=seed, examples_run=state.examples, runs=state.runs, failures=tuple(failures),
                          verdicts=dict(state.verdicts), elapsed_s=time.monotonic() - t0, artifacts=artifacts,
                          infra_runs=tuple(state.infra), infra_aborted=state.infra_aborted)


# --- freezing ----------------------------------------------------------------------------------------


def freeze(failure: CampaignFailure, directory: Path = REGRESSIONS_DIR, *, impl: Mapping[str, str] | None = None,
           images: Path | None = None, name: str | None = None,
           expected_verdict: str | None = None) -> Path:
    """Write ``failure`` as a regression case ``<directory>/<name>.json`` (literal scenario,
    the implementation it ran against, the expected verdict class); return the path.

    ``tests/regressions/test_regressions.py`` runs every such file. The default expected
    verdict is the failure's own class (``violation``, or ``clean_failure`` for an
    unexpected clean failure: the scenario's expectation is ``pass``): it pins that the
    harness keeps detecting this bug in that implementation; for an open bug in an
    implementation that should be fixed, edit it to ``"expected_verdicts": ["pass"]`` (or
    ``["pass", "clean_failure"]`` for a violation) with ``"xfail": "<why>"``.
    """
    if expected_verdict is None:
        expected_verdict = failure.report.verdict_class.value
    directory.mkdir(parents=True, exist_ok=True)
    stem = name or f"campaign-seed{failure.seed}-" + "-".join(x for x in failure.signature if x != "|")
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:100]
    path = directory / f"{stem}.json"
    n = 2
    while path.exists():
        path = directory / f"{stem}-{n}.json"
        n += 1
    img = None
    if images is not None:
        p = Path(images).resolve()
        img = str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)
    data = {
        "name": path.stem,
        "expected_verdicts": [expected_verdict],
        "impl": dict(impl or {}),
        "images": img,
        "seed": failure.seed,
        "found_by": failure.command,
        "summary": failure.report.summary,
        "scenario": to_dict(attrs.evolve(failure.scenario, name=path.stem)),
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def load_regression(path: Path) -> dict[str, Any]:
    """A regression file as data, with ``scenario`` built (ValueError on a bad file)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "scenario" not in data or "expected_verdicts" not in data:
        raise ValueError(f"{path}: needs 'scenario' and 'expected_verdicts'")
    expected = [VerdictClass(v).value for v in data["expected_verdicts"]]
    return {**data, "expected_verdicts": expected, "scenario": scenario_from_dict(data["scenario"])}


# --- workers -------------------------------------------------------------------------------------------


def _result_from_dict(data: Mapping[str, Any]) -> CampaignResult:
    from harness.model import check_report_from_dict
    failures = tuple(CampaignFailure(
        scenario=scenario_from_dict(f["scenario"]), report=check_report_from_dict(f["report"]),
        run_dir=Path(f["run_dir"]), plan_file=Path(f["plan_file"]), scenario_file=Path(f["scenario_file"]),
        command=f["command"], seed=f["seed"], signature=tuple(f["signature"]), reproduced=f["reproduced"],
        frozen=None if f["frozen"] is None else Path(f["frozen"]), kind=f.get("kind", VIOLATION))
        for f in data["failures"])
    return CampaignResult(seed=data["seed"], examples_run=data["examples_run"], runs=data["runs"], failures=failures,
                          verdicts=data["verdicts"], elapsed_s=data["elapsed_s"], artifacts=Path(data["artifacts"]),
                          infra_runs=tuple(InfraRun(Path(r["run_dir"]), r["summary"]) for r in data["infra_runs"]),
                          infra_aborted=data["infra_aborted"])


def _worker_main(index: int, params: dict[str, Any], events: Any, found: Any = None) -> None:
    """One worker process: its own Stack (own ports, own state dirs) and campaign."""
    from harness.run import Stack

    def sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, sigterm)
    logging.basicConfig(level=logging.WARNING)
    try:
        root = Path(params["artifacts"])
        with Stack.start(artifacts_root=root / "stack", impl=params["impl"], images=params["images"],
                         backend=params["backend"]) as stack:
            result = run_campaign(
                stack, seed=params["seed"], examples=params["examples"], time_budget_s=params["time_budget_s"],
                vdaf=params["vdaf"], artifacts=root, keep_going=params["keep_going"], database=params["database"],
                timeout_s=params["timeout_s"], shrink_budget_s=params["shrink_budget_s"], worker=index,
                progress=lambda p: events.put(("progress", index, attrs.asdict(p))),
                stop=None if found is None else found.is_set)
        events.put(("done", index, result.to_dict()))
    except KeyboardInterrupt:
        events.put(("error", index, "interrupted"))
    except Exception as exc:
        from harness.errors import HarnessError
        code = exc.exit_code if isinstance(exc, HarnessError) else 3
        events.put(("error", index, f"{type(exc).__name__}: {exc}", code))


def run_campaign_workers(workers: int, *, seed: int, artifacts: Path, impl: Mapping[str, str] | None = None,
                         images: Path | None = None, backend: str = "local", examples: int | None = None,
                         time_budget_s: float | None = None, vdaf: str | None = None, keep_going: bool = False,
                         database: bool = True, timeout_s: float = 30.0, shrink_budget_s: float = 300.0,
                         progress: Callable[[CampaignProgress], None] | None = None) -> CampaignResult:
    """``workers`` independent stacks in spawned processes, one campaign each (seed
    :func:`derive_seed` ``(seed, i)``, artifacts ``<artifacts>/worker-<i>``, examples split),
    merged into one result. Without ``keep_going`` the first failure any worker finds ends the
    others' generation (they finish the example in progress; the finder shrinks it). Every
    process is stopped on return, error or Ctrl-C."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    artifacts = Path(artifacts).resolve()
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    found = ctx.Event()  # set once a worker is shrinking a failure (without keep_going)
    procs = []
    t0 = time.monotonic()
    for i in range(workers):
        n = None if examples is None else examples // workers + (1 if i < examples % workers else 0)
        if n == 0:
            continue
        params = {"artifacts": str(artifacts / f"worker-{i}"), "impl": dict(impl or {}),
                  "images": None if images is None else str(images), "backend": backend, "seed": derive_seed(seed, i),
                  "examples": n, "time_budget_s": time_budget_s, "vdaf": vdaf, "keep_going": keep_going,
                  "database": database, "timeout_s": timeout_s, "shrink_budget_s": shrink_budget_s}
        p = ctx.Process(target=_worker_main, args=(i, params, events, None if keep_going else found),
                        name=f"faultrun-campaign-{i}")
        p.start()
        procs.append(p)
    results: dict[int, CampaignResult] = {}
    errors: dict[int, tuple[str, int]] = {}
    latest: dict[int, dict[str, Any]] = {}
    try:
        while len(results) + len(errors) < len(procs):
            try:
                msg = events.get(timeout=0.5)
            except queue_mod.Empty:
                for i, p in enumerate(procs):
                    if not p.is_alive() and i not in results and i not in errors:
                        with contextlib.suppress(queue_mod.Empty):  # its last message may be in flight
                            msg = events.get(timeout=2.0)
                            break
                        errors[i] = (f"worker {i} exited with code {p.exitcode}", 3)
                else:
                    continue
            kind, i = msg[0], msg[1]
            if kind == "progress":
                latest[i] = msg[2]
                if msg[2]["phase"] == "shrink":
                    found.set()
                if progress is not None:
                    progress(_merge_progress(latest, t0))
            elif kind == "done":
                results[i] = _result_from_dict(msg[2])
            else:
                errors[i] = (msg[2], msg[3] if len(msg) > 3 else 130)
    finally:
        for p in procs:
            if p.is_alive():
                p.join(timeout=5.0 if (results or errors) else 0.1)
            if p.is_alive():
                p.terminate()  # SIGTERM -> KeyboardInterrupt in the worker: its Stack closes
                p.join(timeout=15.0)
            if p.is_alive():
                p.kill()
                p.join()
        events.close()
    if errors and not results:
        from harness.errors import InfraError
        raise InfraError("; ".join(f"worker {i}: {e}" for i, (e, _) in sorted(errors.items())))
    merged_verdicts: Counter[str] = Counter()
    for r in results.values():
        merged_verdicts.update(r.verdicts)
    ordered = [results[i] for i in sorted(results)]
    infra = tuple(x for r in ordered for x in r.infra_runs)
    infra += tuple(InfraRun(artifacts / f"worker-{i}", e) for i, (e, _) in sorted(errors.items()))
    return CampaignResult(
        seed=seed, examples_run=sum(r.examples_run for r in ordered), runs=sum(r.runs for r in ordered),
        failures=tuple(f for r in ordered for f in r.failures), verdicts=dict(merged_verdicts),
        elapsed_s=time.monotonic() - t0, artifacts=artifacts, infra_runs=infra,
        infra_aborted=bool(errors) or any(r.infra_aborted for r in ordered))


def _merge_progress(latest: Mapping[int, Mapping[str, Any]], t0: float) -> CampaignProgress:
    verdicts: Counter[str] = Counter()
    for p in latest.values():
        verdicts.update(p["verdicts"])
    phases = {p["phase"] for p in latest.values()}
    return CampaignProgress(
        examples_run=sum(p["examples_run"] for p in latest.values()), runs=sum(p["runs"] for p in latest.values()),
        failures=sum(p["failures"] for p in latest.values()), verdicts=dict(verdicts),
        phase="shrink" if "shrink" in phases else "generate", elapsed_s=time.monotonic() - t0,
        last=next(reversed(latest.values()))["last"] if latest else "", worker=-1)


# --- CLI: faultrun campaign -----------------------------------------------------------------------------


def _duration(text: str) -> float:
    t = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        x = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90, 90s, 10m, 1h)") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return x


class _Parser(argparse.ArgumentParser):
    """Usage errors as :class:`~harness.errors.UsageError` (one line, exit 2 via faultrun's main)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        from harness.errors import UsageError
        raise UsageError(message)


def build_campaign_parser() -> Any:
    from dap.argtypes import nonneg_int, positive_float, positive_int
    from harness.cli import PROG, _impl
    p = _Parser(prog=f"{PROG} campaign",
                description="Hypothesis fault campaign: random plans and workloads on warm roles; "
                            "violations are shrunk, written and printed as a faultrun command (docs/campaigns.md).")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--examples", type=positive_int, metavar="N", help="generated examples to run")
    size.add_argument("--time-budget", type=_duration, metavar="T", help="run until T (e.g. 600, 10m, 1h) is spent")
    p.add_argument("--seed", type=nonneg_int, required=True, help="hypothesis seed (workers derive theirs)")
    p.add_argument("--vdaf", metavar="SPEC", help="fix the VDAF (as faultrun --vdaf); default: every type")
    p.add_argument("--impl", type=_impl, action="append", default=[], metavar="ROLE=NAME")
    p.add_argument("--images", type=Path, metavar="FILE")
    p.add_argument("--backend", default="local", choices=["local", "docker"])
    p.add_argument("--workers", type=positive_int, default=1, metavar="K", help="K independent stacks in parallel")
    p.add_argument("--keep-going", action="store_true", help="after a failure, keep generating until the budget")
    p.add_argument("--freeze", action="store_true", help="write each failure as a tests/regressions/ case")
    p.add_argument("--regressions-dir", type=Path, default=REGRESSIONS_DIR, help=argparse.SUPPRESS)
    p.add_argument("--artifacts", type=Path, metavar="DIR", help="output root (default ./artifacts/campaign-<ts>)")
    p.add_argument("--timeout", type=positive_float, default=30.0, metavar="S", help="per-scenario timeout")
    p.add_argument("--shrink-budget", type=_duration, default=300.0, metavar="T", help="time allowed for shrinking")
    p.add_argument("--no-database", action="store_true", help="do not use or write <artifacts>/hypothesis-db")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def _progress_ui(console: Any, total: int | None) -> tuple[Any, Callable[[CampaignProgress], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    prog = Progress(TextColumn("[bold]campaign[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[stats]}"), console=console, transient=False)
    task = prog.add_task("campaign", total=total, stats="")

    def update(p: CampaignProgress) -> None:
        rate = p.examples_run / p.elapsed_s if p.elapsed_s > 0 else 0.0
        vc = " ".join(f"{k}={n}" for k, n in sorted(p.verdicts.items()))
        fails = f"[red]failures={p.failures}[/]" if p.failures else "failures=0"
        prog.update(task, completed=p.examples_run,
                    stats=f"{rate:.2f} ex/s {fails} {vc}" + (" [yellow]shrinking[/]" if p.phase == "shrink" else ""))

    return prog, update


def campaign_command(argv: Sequence[str]) -> int:
    """``faultrun campaign ...``; errors propagate to :func:`harness.cli.main` (one line)."""
    from rich.console import Console

    from harness.cli import _logging
    from harness.errors import UsageError
    args = build_campaign_parser().parse_args(list(argv))
    _logging(args.verbose)
    impl: dict[str, str] = {}
    for role, name in args.impl:
        if role in impl:
            raise UsageError(f"--impl {role}= given twice")
        impl[role] = name
    if args.vdaf is not None:
        from faults.strategies import check_campaign_vdaf
        check_campaign_vdaf(args.vdaf, 1)
    root = args.artifacts or Path("artifacts") / time.strftime("campaign-%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--artifacts {root}: {exc.strerror or exc}") from exc
    root = root.resolve()
    console = Console(stderr=True, highlight=False)
    ui, update = _progress_ui(console, args.examples)
    common = dict(seed=args.seed, examples=args.examples, time_budget_s=args.time_budget, vdaf=args.vdaf,
                  keep_going=args.keep_going, database=not args.no_database, timeout_s=args.timeout,
                  shrink_budget_s=args.shrink_budget, progress=update)
    with ui:
        if args.workers > 1:
            result = run_campaign_workers(args.workers, artifacts=root, impl=impl, images=args.images,
                                          backend=args.backend, **common)
        else:
            from harness.run import Stack
            with Stack.start(artifacts_root=root / "stack", impl=impl, images=args.images,
                             backend=args.backend) as stack:
                result = run_campaign(stack, artifacts=root, **common)
    if args.freeze and result.failures:
        images = args.images.resolve() if args.images else None
        frozen = [attrs.evolve(f, frozen=freeze(f, args.regressions_dir, impl=impl, images=images))
                  for f in result.failures]
        result = attrs.evolve(result, failures=tuple(frozen))
    (root / "campaign.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return result.exit_code
    out = Console(highlight=False)
    vc = ", ".join(f"{k} {n}" for k, n in sorted(result.verdicts.items())) or "no runs"
    out.print(f"campaign seed {result.seed}: {result.examples_run} examples ({result.runs} runs incl. shrinking) "
              f"in {result.elapsed_s:.1f} s; {vc}; {len(result.failures)} failure(s)")
    for r in result.infra_runs[:5]:
        out.print(f"  [magenta]infra[/] {r.run_dir}: {r.summary}")
    if result.infra_aborted:
        out.print("  [magenta]campaign stopped: the stack is broken (infrastructure errors)[/]")
    for f in result.failures:
        label = "VIOLATION" if f.kind == VIOLATION else "UNEXPECTED CLEAN FAILURE"
        out.print(f"[bold red]{label}[/] {f.report.summary}" + ("" if f.reproduced else " (seen once; not reproduced on replay)"))
        out.print(f"  run dir: {f.run_dir}")
        if f.frozen is not None:
            out.print(f"  frozen: {f.frozen}")
        out.print(f.command, markup=False, soft_wrap=True)
    out.print(f"summary: {root / 'campaign.json'}")
    return result.exit_code
