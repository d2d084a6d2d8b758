"""Hypothesis fault campaigns: generate scenarios, run them on a warm stack, shrink, freeze.

Generating, executing and checking stay separate: :mod:`faults.strategies` generates
:class:`~faults.scenario.Scenario` values, :meth:`harness.run.Stack.run_scenario` executes one
(a fresh task each time) and :mod:`harness.check.checker` judges it. This module only drives
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
  the checker confirms that a correct Leader would not complete it (:mod:`harness.check.fill`);
- ``infra``: the harness or a role failed, there is no verdict on the target. Such runs are
  counted and listed (:attr:`CampaignResult.infra_runs`), never shrunk (hypothesis sees a
  pass), so a flaky machine cannot shrink into noise. A role or proxy that died is restarted
  before the next example; three infra runs in a row end the campaign (:attr:`CampaignResult.infra_aborted`, exit 3);
- lost reports under faults that may lose them: completeness is demanded only of plans made
  of faults the protocol must recover from (:func:`faults.strategies.expectation_for`).

**Known nondeterminism.** Real processes and timing: a failure found once may not repeat
when hypothesis replays it (job batching, retry timing, a forged message racing the
collection). Then the smallest failing run seen is reported with ``reproduced=False``
instead of hypothesis' final replay.

**Determinism and replay.** ``seed`` fixes hypothesis' generation (same seed, same stack
behaviour -> same examples). ``shard`` (:mod:`harness.campaign.sharding`) keeps one of N
disjoint slices of those examples. The example database (``<artifacts>/hypothesis-db``, or
``example_db``: a directory or ``redis://``, :mod:`harness.campaign.exampledb`) is shared:
every stored failure this process has not seen is replayed before generation starts, and
again between examples (every few seconds) when another shard stored one meanwhile; then
generation goes on under a derived seed. ``<artifacts>/examples.jsonl`` lists every run
(phase ``generate`` / ``replay`` / ``shrink``, the scenario's digest, the verdict, the time
and the harness's own overhead of the run, split by phase in ``phases_ms``).

Each failure writes ``<artifacts>/failures/<name>/{scenario.json, plan.toml}`` and a
one-line reproduction: ``faultrun --plan FILE --seed S --reports N --vdaf V --query-type Q``
when flags express the workload, else ``faultrun --scenario FILE --seed S``.
:func:`freeze` turns one into a regression case under ``tests/regressions/``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, Phase, Verbosity, given, reject, settings
from hypothesis.errors import Unsatisfiable

from faults.actions import action_name
from faults.plan import dump_plan
from faults.scenario import Scenario, to_dict
from faults.strategies import (
    MAX_REPORTS,
    MAX_RULES,
    check_campaign_vdaf,
    network_scenarios,
    scenario_expectation,
    scenarios,
)
from faults.workload import parse_vdaf
from harness import REPO
from harness.campaign.exampledb import POLL_S, SharedDatabase, campaign_key, describe_db, open_example_db
from harness.campaign.minimize import REPLAYS, minimize, replay, same_failure
from harness.campaign.reproduce import reproduction_command, signature, smaller_first
from harness.campaign.result import (
    VIOLATION,
    CampaignFailure,
    CampaignProgress,
    CampaignResult,
    InfraRun,
    derive_seed,
    failure_kind,
)
from harness.campaign.sharding import Shard, scenario_digest
from harness.check.verdict import VerdictClass
from harness.errors import HarnessError, UsageError
from harness.report.html import render_report_html
from harness.report.rundir import unique_dir
from harness.stack.images import VDAF_TYPES, not_applicable

__all__ = ["CAMPAIGN_TIMEOUT_S", "run_campaign", "supported_vdafs"]

log = logging.getLogger(__name__)
#: The per-scenario timeout of a campaign when none is given (a slower Leader gets more:
#: :meth:`harness.stack.images.Timing.scenario_timeout_s`).
CAMPAIGN_TIMEOUT_S = 30.0
#: Consecutive infra runs that end a campaign (the stack is probably broken).
MAX_INFRA_IN_A_ROW = 3
#: The part of the shrink budget hypothesis' own shrink may use; the rest is kept for the
#: one-rule-at-a-time pass (:mod:`harness.campaign.minimize`), which otherwise gets nothing
#: when hypothesis shrinks until the budget ends.
HYPOTHESIS_SHRINK_SHARE = 2 / 3
#: Kept in the result; the count in ``verdicts`` is complete.
MAX_INFRA_LISTED = 20


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
    shard: Shard | None = None
    #: "generate" or "replay" (an example from the database)
    phase: str = "generate"
    #: scenarios generated so far (digests): hypothesis may draw one again from other choices
    ran: set[str] = attrs.field(factory=set)
    replayed: int = 0
    shared: SharedDatabase | None = None
    next_poll: float = 0.0
    #: the database holds failures this process has not replayed: generation stopped for them
    pickup: bool = False
    #: wall time of the current round's first failing run
    first_failure_wall: float | None = None
    examples_log: Path | None = None

    def keeps(self, workload: Any) -> bool:
        """The shard filter (:mod:`harness.campaign.sharding`): generation only."""
        return self.shard is None or self.phase != "generate" or bool(self.violations) or self.shard.keeps(workload)

    def one(self, scenario: Scenario) -> None:
        now = time.monotonic()
        shrinking = bool(self.violations)
        generating = self.phase == "generate" and not shrinking
        digest = scenario_digest(scenario)
        if generating and digest in self.ran:
            reject()  # hypothesis drew a scenario run already (from other choices): not an example again
        if not shrinking and self.deadline is not None and now >= self.deadline:
            self.stop = True
        if not shrinking and self.max_examples_left is not None and self.max_examples_left <= 0:
            self.stop = True
        # the budget bounds shrinking: no run is started that would likely end beyond it (a
        # failure that ends in a timeout makes every shrink run last that long)
        if shrinking and self.shrink_started is not None and \
                now - self.shrink_started + self.last_run_s > self.shrink_budget_s * HYPOTHESIS_SHRINK_SHARE:
            self.stop = True
        if not shrinking and self.external_stop is not None and self.external_stop():
            self.stop = True
        if self.stop:
            raise _Stop
        if generating:
            if self.shared is not None and now >= self.next_poll:
                self.next_poll = now + POLL_S
                if self.shared.unseen():  # another shard stored a failure: replay it first
                    self.pickup = True
                    raise _Stop
            self.ran.add(digest)
        self.runs += 1
        if generating:
            self.examples += 1
            if self.max_examples_left is not None:
                self.max_examples_left -= 1
        elif not shrinking:
            self.replayed += 1
        run_dir = self.runs_root / f"{self.runs:05d}"
        wall = time.time()
        try:
            # report.html is rendered for the runs kept (failures: _write_failure), not for every example
            result = self.stack.run_scenario(scenario, timeout_s=self.timeout_s, run_dir=run_dir, report_html=False)
        except HarnessError as exc:
            self.last_run_s = time.monotonic() - now
            self._log_run(digest, "shrink" if shrinking else self.phase, "infra", now, wall, None)
            self._infra(run_dir, f"{type(exc).__name__}: {exc}")
            return
        self.last_run_s = time.monotonic() - now
        vc = result.report.verdict_class
        kind = failure_kind(scenario, result.report)
        self.verdicts[kind or vc.value] += 1
        self._log_run(digest, "shrink" if shrinking else self.phase, kind or vc.value, now, wall, result)
        if vc == VerdictClass.INFRA:  # a role that died is restarted by the next run (Stack.heal)
            self._infra(result.run_dir, "; ".join(result.report.reasons) or result.report.summary)
        else:
            self.infra_in_a_row = 0
        last = f"{kind or vc.value} {result.run_dir.name} {getattr(result, 'seconds', 0.0):.1f}s"
        if kind is not None:
            sig = signature(scenario, result.report)
            if sig in self.known:
                kind = None  # keep_going: a bug already reported; not shrunk into again
            elif self.wanted is not None and not self.wanted(sig):
                kind = None  # not the failure this campaign looks for: counted, kept, not shrunk
            else:
                if not self.violations:
                    self.shrink_started = time.monotonic()
                if self.first_failure_wall is None:
                    self.first_failure_wall = wall
                self.violations.append((scenario, result))
        self._progress(last)  # after the append: the first failing run already reports "shrink"
        if kind is not None:
            raise _Violation(result.report.summary)
        if not self.keep_runs and vc in (VerdictClass.PASS, VerdictClass.CLEAN_FAILURE) \
                and failure_kind(scenario, result.report) is None:
            shutil.rmtree(result.run_dir, ignore_errors=True)

    def run_check(self, scenario: Scenario, phase: str) -> Any | None:
        """One run outside hypothesis (``phase`` ``minimize`` or ``reproduce``: the final pass and
        the reproduction count, :mod:`harness.campaign.minimize`): its result, or None when the
        run could not be judged (infra; the stack broke)."""
        if self.infra_aborted:
            return None
        now, wall = time.monotonic(), time.time()
        self.runs += 1
        run_dir = self.runs_root / f"{self.runs:05d}"
        digest = scenario_digest(scenario)
        try:
            result = self.stack.run_scenario(scenario, timeout_s=self.timeout_s, run_dir=run_dir, report_html=False)
        except HarnessError as exc:
            self.last_run_s = time.monotonic() - now
            self._log_run(digest, phase, "infra", now, wall, None)
            self._infra(run_dir, f"{type(exc).__name__}: {exc}")
            return None
        self.last_run_s = time.monotonic() - now
        vc = result.report.verdict_class
        kind = failure_kind(scenario, result.report)
        self.verdicts[kind or vc.value] += 1
        self._log_run(digest, phase, kind or vc.value, now, wall, result)
        self._progress(f"{phase} {kind or vc.value} {result.run_dir.name} {getattr(result, 'seconds', 0.0):.1f}s")
        if vc == VerdictClass.INFRA:
            self._infra(result.run_dir, "; ".join(result.report.reasons) or result.report.summary)
            return None
        self.infra_in_a_row = 0
        if not self.keep_runs and kind is None and vc in (VerdictClass.PASS, VerdictClass.CLEAN_FAILURE):
            shutil.rmtree(result.run_dir, ignore_errors=True)
        return result

    def _log_run(self, digest: str, phase: str, verdict: str, started: float, wall: float, result: Any) -> None:
        """One line of ``examples.jsonl`` (module docs); the harness's overhead is the run's
        time outside the workload's own steps (provisioning, plan loads, history, checker,
        run directory)."""
        if self.examples_log is None:
            return
        seconds = self.last_run_s
        steps = getattr(result, "steps_s", None)
        line = {"run": self.runs, "phase": phase, "digest": digest, "verdict": verdict,
                "t": round(started - self.t0, 3), "wall": round(wall, 3), "seconds": round(seconds, 4),
                "overhead_s": None if steps is None else round(max(seconds - steps, 0.0), 4)}
        phases = getattr(result, "phases", None)
        if phases:  # where the overhead goes (harness.run.stack.RunResult.phases)
            line["phases_ms"] = {k: round(v * 1000, 2) for k, v in phases.items()}
        try:
            with open(self.examples_log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
        except OSError as exc:
            log.warning("examples log %s: %s", self.examples_log, exc)

    def _infra(self, run_dir: Path, summary: str) -> None:
        if len(self.infra) < MAX_INFRA_LISTED:
            self.infra.append(InfraRun(run_dir=run_dir, summary=summary))
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


def _round(state: _State, strategy: Any, *, seed: int, max_examples: int, db: Any, replay: bool,
           key: bytes) -> tuple[Scenario, Any, bool] | None:
    """One hypothesis run; the shrunk violation (scenario, result, reproduced) or None.
    ``replay``: only the database's entries (``db`` is a one-entry view), not shrunk (the shard
    that found it shrinks it: N shards re-shrinking each other's finds would multiply the
    work), else generation."""
    phases = [Phase.reuse] if replay else [Phase.explicit, Phase.generate, Phase.shrink]

    @settings(database=db, deadline=None, max_examples=max_examples, phases=phases, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False)
    @given(strategy)
    def campaign_example(scenario: Scenario) -> None:
        state.one(scenario)

    campaign_example._hypothesis_internal_database_key = key  # type: ignore[attr-defined]  # shared by every shard
    campaign_example._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]  # as @seed, keeping the db
    state.violations = []
    state.shrink_started = None
    state.first_failure_wall = None
    state.phase = "replay" if replay else "generate"
    reproduced = flaky = False
    try:
        campaign_example()
    except _Violation:
        reproduced = True
    except (_Stop, Unsatisfiable):  # budget spent / a pickup; every example rejected (another shard's)
        pass
    except Exception as exc:  # Flaky (not reproduced), a rejected replay after the shrink budget, ...
        if not state.violations:
            raise
        flaky = True
        log.info("campaign: final replay did not fail again (%s: %s)", type(exc).__name__, exc)
    if not state.violations:
        return None
    if flaky:
        scenario, result = min(state.violations, key=smaller_first)
    else:
        # hypothesis' latest failing example is its smallest so far and the one it stored: a
        # shrink the budget ended reports it too, so a shard replaying the stored entry
        # reports the same plan
        scenario, result = state.violations[-1]
    return scenario, result, reproduced


def _with_expectation(scenario: Scenario) -> Scenario:
    """A smaller generated scenario with the expectation its own plan gets (without a lossy
    rule a plan may become one the protocol must recover from)."""
    return attrs.evolve(scenario, expect=scenario_expectation(scenario.plan, scenario.workload))


def _write_failure(artifacts: Path, index: int, scenario: Scenario, result: Any, reproduced: bool, *,
                   impl: Mapping[str, str] | None, images: Path | None, source: str = "generated",
                   found_wall: float | None = None, removed: tuple[str, ...] = (), reproduces: int = 0,
                   replays: int = 0) -> CampaignFailure:
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
        render_report_html(Path(result.run_dir))
    return CampaignFailure(scenario=scenario, report=result.report, run_dir=result.run_dir, plan_file=plan_file,
                           scenario_file=scenario_file, command=cmd, seed=scenario.plan.seed,
                           signature=signature(scenario, result.report), reproduced=reproduced,
                           kind=failure_kind(scenario, result.report) or VIOLATION, source=source,
                           found_wall=found_wall or time.time(), reported_wall=time.time(),
                           removed_rules=removed, reproduces=reproduces, replays=replays)


def _impl_of(stack: Any) -> tuple[dict[str, str] | None, Path | None]:
    impl = getattr(stack, "impl", None) or {}
    images = getattr(stack, "images", None)
    names = {}
    for role, entry in impl.items():
        default = images.default(role).name if images is not None else None
        if entry.name != default:
            names[role] = entry.name
    path = getattr(images, "path", None)
    default_path = REPO / "images.toml"
    if path is not None and Path(path).resolve() == default_path.resolve():
        path = None
    return (names or None), (Path(path).resolve() if path is not None else None)  # runnable from any cwd


def supported_vdafs(impl: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The VDAF types every implementation (role -> images.toml entry) supports, in
    :data:`dap.vdaf.params.VDAF_TYPES` order; None when none of them restricts it."""
    entries = [e for e in impl.values() if getattr(e, "vdafs", None) is not None]
    if not entries:
        return None
    return tuple(t for t in VDAF_TYPES if all(e.supports(t) for e in entries))


def run_campaign(stack: Any, *, seed: int, examples: int | None = None, time_budget_s: float | None = None,
                 vdaf: str | None = None, artifacts: Path, keep_going: bool = False, database: bool = True,
                 progress: Callable[[CampaignProgress], None] | None = None, timeout_s: float | None = None,
                 max_rules: int | None = None, max_reports: int | None = None, shrink_budget_s: float = 300.0,
                 keep_runs: bool = False, worker: int = 0, stop: Callable[[], bool] | None = None,
                 wanted: Callable[[tuple[str, ...]], bool] | None = None, shard: Shard | None = None,
                 example_db: str | Path | None = None, replay_only: bool = False,
                 replays: int = REPLAYS) -> CampaignResult:
    """Run a campaign on a warm :class:`~harness.run.Stack` (a new task per example).

    Stops after ``examples`` generated examples or ``time_budget_s`` (whichever first; one
    is required unless ``replay_only``), or at the first failure (:func:`failure_kind`; shrunk for at most
    ``shrink_budget_s``) unless ``keep_going``: then generation restarts with a derived seed
    (no replay) until the budget is spent, and a failure with an already reported signature
    (violated invariants or ``unexpected_clean_failure:<problem>``, + actions) counts as
    seen, not as a new failure, so shrinking cannot slide back into a known bug. ``vdaf``
    fixes the VDAF (a ``--vdaf`` spec; otherwise only the VDAF types every implementation of
    the stack supports are drawn, ``images.toml`` ``vdafs``); ``timeout_s`` bounds one
    scenario (None: :data:`CAMPAIGN_TIMEOUT_S`, or longer for a Leader whose ``timing``
    needs it, :meth:`harness.run.Stack.scenario_timeout_s`). Run dirs of
    passing runs are deleted unless ``keep_runs``. ``stop()`` True ends generation early
    (used by :func:`run_campaign_workers`: another worker found a failure). ``wanted``
    (self-validation: the time to find one known bug) restricts failures to those whose
    signature it accepts; other failing runs are counted in ``verdicts`` and kept on disk,
    but neither shrunk nor reported.

    ``shard`` generates only that slice of the examples (:mod:`harness.campaign.sharding`).
    ``example_db`` (a directory or ``redis://`` URL; default ``<artifacts>/hypothesis-db``,
    none without ``database``) is replayed first and watched while generating (module docs);
    ``replay_only`` replays its stored failures and generates nothing.
    """
    if replay_only and not database:
        raise ValueError("replay_only needs the example database")
    if examples is None and time_budget_s is None and not replay_only:
        raise ValueError("give examples or time_budget_s")
    if examples is not None and examples < 1:
        raise ValueError(f"examples must be >= 1, got {examples}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise ValueError(f"time_budget_s must be > 0, got {time_budget_s}")
    if vdaf is not None:
        check_campaign_vdaf(vdaf, 1)  # fail early: a bad spec, or Poplar1 (WorkloadError)
    vdaf_types = supported_vdafs(getattr(stack, "impl", None) or {})
    if vdaf is not None:
        why = not_applicable(getattr(stack, "impl", None) or {}, parse_vdaf(vdaf, 1).type)
        if why is not None:
            raise UsageError(f"--vdaf {vdaf}: not applicable: {why}")
    if timeout_s is None:
        timeout_s = stack.scenario_timeout_s(CAMPAIGN_TIMEOUT_S) if hasattr(stack, "scenario_timeout_s") \
            else CAMPAIGN_TIMEOUT_S
    max_rules = MAX_RULES if max_rules is None else max_rules
    max_reports = MAX_REPORTS if max_reports is None else max_reports
    artifacts = Path(artifacts).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    started_wall = time.time()
    # v2: workloads with min_batch_size, far-future and late uploads; recoverable plans
    netns = getattr(stack, "network", "loopback") == "netns"  # mix network rules in (docs/network.md)
    key_text = f"faultrun-campaign-v2{'-netns' if netns else ''}:{vdaf}:{max_rules}:{max_reports}"
    if vdaf_types is not None:  # a target without some VDAFs draws other examples: its own database key
        key_text += f":{','.join(vdaf_types)}"
    key = campaign_key(key_text)
    db_spec = (example_db if example_db is not None else artifacts / "hypothesis-db") if database else None
    shared = SharedDatabase(open_example_db(db_spec), key) if db_spec is not None else None
    state = _State(stack=stack, artifacts=artifacts, timeout_s=timeout_s,
                   deadline=None if time_budget_s is None else t0 + time_budget_s, shrink_budget_s=shrink_budget_s,
                   progress=progress, worker=worker, t0=t0, keep_runs=keep_runs, max_examples_left=examples,
                   external_stop=stop, wanted=wanted, shard=shard, shared=shared,
                   examples_log=artifacts / "examples.jsonl")
    state.next_poll = t0 + POLL_S
    generate = (network_scenarios if netns else scenarios)(vdaf=vdaf, max_rules=max_rules, max_reports=max_reports,
                                                             keep_workload=state.keeps, vdaf_types=vdaf_types)
    state.runs_root = unique_dir(artifacts / "runs", f"seed{seed}")
    impl, images = _impl_of(stack)
    failures: list[CampaignFailure] = []
    rounds = replayed = 0  # generation rounds: the first runs the campaign's seed, whatever was replayed before

    def report(found: tuple[Scenario, Any, bool], source: str) -> None:
        scenario, result, reproduced = found
        sig = signature(scenario, result.report)

        def fails(candidate: Scenario, got: Any) -> bool:
            """The same failure (violated invariants / clean failure), one this campaign wants."""
            if failure_kind(candidate, got.report) is None:
                return False
            got_sig = signature(candidate, got.report)
            return same_failure(got_sig, sig) and (state.wanted is None or state.wanted(got_sig))

        removed: tuple[str, ...] = ()
        if source == "generated":  # a replay is the finder's to shrink (docs/scale.md)
            spent = time.monotonic() - (state.shrink_started or time.monotonic())
            m = minimize(scenario, result, run=lambda s: state.run_check(s, "minimize"), fails=fails,
                         expect_for=_with_expectation, budget_s=max(shrink_budget_s - spent, 0.0))
            scenario, result, removed = m.scenario, m.result, m.removed
            if m.cut_short:
                state._progress("the shrink budget ended the one-rule-at-a-time pass")
            sig = signature(scenario, result.report)
        if sig in state.known:
            state.violations = []
            return
        state.known.add(sig)
        reproduces = replay(scenario, run=lambda s: state.run_check(s, "reproduce"), fails=fails, times=replays)
        failures.append(_write_failure(artifacts, len(failures) + 1, scenario, result, reproduced, impl=impl,
                                       images=images, source=source, found_wall=state.first_failure_wall,
                                       removed=removed, reproduces=reproduces, replays=replays))
        state.failures = len(failures)
        state.violations = []
        state._progress(f"{failures[-1].kind} reported: {' '.join(sig)}"
                        + (f" (reproduces {reproduces}/{replays})" if replays else ""))

    def replay_stored() -> None:
        """Replay every stored failure not seen yet, one hypothesis run each (the unfiltered
        strategy: a failure found by another shard has another shard's workload)."""
        nonlocal replayed
        assert shared is not None
        for entry in shared.unseen():
            if state.stop:
                return
            found = _round(state, generate, seed=derive_seed(seed, 100_000 + replayed), max_examples=1,
                           db=shared.replay_view(entry), replay=True, key=key)
            replayed += 1
            if found is not None:
                report(found, "example-db")
                if not keep_going and failures:
                    state.stop = True
            state.stop = state.stop or state.infra_aborted

    while not state.stop:
        if shared is not None:
            replay_stored()
        if state.stop or replay_only:
            break
        left = state.max_examples_left
        if left is not None and left <= 0:
            break
        state.pickup = False
        found = _round(state, generate, seed=seed if rounds == 0 else derive_seed(seed, 1000 + rounds),
                       max_examples=left if left is not None else 10**6, db=shared, replay=False, key=key)
        rounds += 1
        if found is None:
            if state.pickup and not state.stop:
                continue  # another shard stored a failure: replay it, then generate on
            break  # budget spent (or the stack broke)
        report(found, "generated")
        if not keep_going:
            break
        state.stop = state.infra_aborted
    state.violations = []
    state._progress("done")
    elapsed = time.monotonic() - t0
    return CampaignResult(seed=seed, examples_run=state.examples, runs=state.runs, failures=tuple(failures),
                          verdicts=dict(state.verdicts), elapsed_s=elapsed, artifacts=artifacts,
                          infra_runs=tuple(state.infra), infra_aborted=state.infra_aborted,
                          worker_elapsed_s=(elapsed,), shard=shard, replayed=state.replayed,
                          started_wall=started_wall, finished_wall=time.time(),
                          example_db=None if db_spec is None else describe_db(str(db_spec)),
                          db_errors=0 if shared is None else shared.errors)


# --- freezing ----------------------------------------------------------------------------------------
