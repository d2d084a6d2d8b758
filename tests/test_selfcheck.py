"""Self-validation: the harness catches realistic aggregator bugs (docs/self-validation.md).

The reference roles carry test-only bug switches (:mod:`dap.roles.bugs`), selected through
``tests/data/bug_images.toml`` (the reference command plus ``DAP_FAULTRUN_TEST_MODE=1`` and
``DAP_FAULTRUN_BUGS=NAME``). For each bug one warm :class:`~harness.run.Stack` runs the
catalogue entries that exercise the buggy code path (:data:`DETECTED_BY`; the other entries
never reach it, e.g. a Helper bug in the aggregate-share replay cannot show in an upload
fault) and the ordinary checker must flag every one of them: the verdict is ``violation`` or
the entry's expected outcome is not met. The same entries run on a correct stack and meet
their expectation (as the full catalogue does in ``tests/test_catalogue_e2e.py``): the
detection is the bug's, not the scenario's.

The bounded hypothesis campaign against every switch is in ``tests/test_selfcheck_campaign.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dap.roles import bugs
from faults.catalogue import CATALOGUE
from harness.check.verdict import VerdictClass, expectation_met
from harness.run import RunResult, Stack

REPO = Path(__file__).resolve().parent.parent
BUG_IMAGES = REPO / "tests" / "data" / "bug_images.toml"
TIMEOUT_S = 20

#: bug -> catalogue entry -> the invariants its run must violate (all of them), at least one of
#: them naming the role the bug lives in ("Helper: ..."). Every listed entry must catch it. An
#: ``optional:NAME`` entry is a SHOULD the bug breaks: the invariant is not violated (a SHOULD
#: never is) but reports the optional behaviour the run did without, naming the role. A
#: ``note:NAME`` entry is a deviation the draft words as a lowercase "should" (no requirement):
#: the invariant holds and says what it saw in a note, naming the role.
DETECTED_BY: dict[str, dict[str, tuple[str, ...]]] = {
    # the Helper counted the first job twice: batchMismatch to an AggregateShareReq that agrees
    # with what it accepted; the late identical replay gets different PrepareResps
    "helper-reinit-reaccumulate": {"drop-agg-init-response": ("batch-agreement",),
                                   "duplicate-agg-init": ("batch-agreement",),
                                   "delay-beyond-timeout": ("batch-agreement",),
                                   "replay-agg-init-after-collection": ("idempotency",)},
    # the forged new job's report answered continue, not report_replayed
    "helper-replay-per-job": {"replay-report-in-new-job": ("anti-replay",)},
    # the same AggregateShareReq answered with another ciphertext of the same share: DAP-09
    # §4.6.2 asks repeated requests to "yield the same response" in lowercase (the digest's MUST
    # is stronger than the draft; Janus 0.7 re-seals too), so a note, not a violation
    "helper-share-recompute": {"drop-agg-share-response": ("note:idempotency",),
                               "duplicate-agg-share-request": ("note:idempotency",)},
    # the mutated re-init under the same job ID answered 201
    "helper-reinit-no-conflict": {"mutate-agg-init": ("idempotency",)},
    # the tampered collection-job PUT answered 201
    "leader-collect-no-auth": {"bad-collector-token": ("auth",)},
    # the far-future report acknowledged: reportTooEarly is a SHOULD (dap-09 §9.2)
    "leader-accept-future": {"future-report": ("optional:rejected-uploads",)},
    # the failed job's reports re-sent under a new job ID
    "leader-rebuild-retry": {"drop-agg-init-response": ("leader-jobs",), "delay-beyond-timeout": ("leader-jobs",)},
    # the late report aggregated into a batch already shared, and the second collection recomputed
    "accept-late-reports": {"late-report-after-collection": ("idempotency", "leader-late-jobs")},
    # a second, different CollectionReq under one job ID answered 201
    "leader-collect-overwrite": {"mutate-collection-create": ("collection-jobs",)},
    # forged AggregateShareReqs served the stored share
    "helper-share-no-auth": {"forged-credentials-agg-share": ("auth",)},
    # a wrong Bearer, a Basic token... accepted on the collection endpoints
    "leader-any-auth": {"forged-credentials-collection-create": ("auth",),
                        "forged-credentials-collection-poll": ("auth",)},
    # the upload replayed after its job re-stored and offered in a second job
    "leader-double-offer": {"replay-report-after-aggregation": ("leader-jobs",)},
    # one 503 and the job is given up: a SHOULD (retry) not done
    "leader-abandon-on-503": {"helper-503-burst": ("optional:leader-retries",)},
    # PrepareResps in reverse order (jobs of two or more reports)
    "helper-resp-reorder": {"duplicate-report": ("helper-order",), "poplar1-heavy-hitters": ("helper-order",)},
    # the late report put into a new job for the collected batch
    "leader-late-jobs": {"late-report-after-collection": ("leader-late-jobs",)},
    # an identical step-1 continuation run again: batchMismatch to an agreeing share request
    "helper-continue-reaccumulate": {"duplicate-agg-continue": ("batch-agreement",),
                                     "drop-agg-continue-response": ("batch-agreement",)},
}


def impl_for(bug: str) -> dict[str, str]:
    """Stack.start impl for one bug: its role(s) run the ``bug-NAME`` entry."""
    roles, _ = bugs.BUGS[bug]
    return {role: f"bug-{bug}" for role in roles}


def detected(result: RunResult, expect: object) -> bool:
    """What the ordinary checker says, nothing more: a violation, an unmet expectation or an
    optional behaviour (SHOULD) the run did without."""
    vc = result.report.verdict_class
    return (vc == VerdictClass.VIOLATION or bool(result.report.optional)
            or any(v.notes for v in result.report.verdicts)
            or not expectation_met(vc, expect, result.report.optional))  # type: ignore[arg-type]


def violated(result: RunResult) -> set[str]:
    """Invariants the run violated, ``optional:NAME`` for each that reports a SHOULD not done and
    ``note:NAME`` for each that notes a deviation."""
    return ({v.invariant for v in result.report.verdicts if v.valid is False}
            | {f"optional:{v.invariant}" for v in result.report.verdicts if v.optional}
            | {f"note:{v.invariant}" for v in result.report.verdicts if v.notes})


def findings(result: RunResult, invariants: tuple[str, ...]) -> list[str]:
    """The lines of the listed invariants' findings (violation details, optional lines, notes)."""
    lines = [v.detail for v in result.report.verdicts if v.invariant in invariants and v.valid is False]
    lines += [o for v in result.report.verdicts if f"optional:{v.invariant}" in invariants for o in v.optional]
    return lines + [n for v in result.report.verdicts if f"note:{v.invariant}" in invariants for n in v.notes]


def _explain(result: RunResult) -> str:
    lines = [f"run dir: {result.run_dir}", result.report.summary]
    lines += [f"  {v.invariant}: {v.valid} {v.detail}" for v in result.report.verdicts if v.valid is not True]
    return "\n".join(lines)


def test_every_bug_has_images_entries_and_scenarios() -> None:
    from harness.stack.images import load_images

    images = load_images(BUG_IMAGES)
    assert set(DETECTED_BY) == set(bugs.BUGS)
    for bug, (roles, _) in bugs.BUGS.items():
        for role in roles:
            entry = images.select(role, f"bug-{bug}")
            assert entry.env == {bugs.TEST_MODE_VAR: "1", bugs.BUGS_VAR: bug}
            assert entry.command == images.select(role, "reference").command
        assert DETECTED_BY[bug] and all(n in CATALOGUE for n in DETECTED_BY[bug])
    for role in ("leader", "helper", "client", "collector"):
        assert images.default(role).name == "reference" and not images.default(role).env


@pytest.mark.parametrize("bug", list(DETECTED_BY))
def test_catalogue_detects_bug(bug: str, tmp_path: Path) -> None:
    with Stack.start(tmp_path, impl=impl_for(bug), images=BUG_IMAGES) as stack:
        for role in bugs.BUGS[bug][0]:  # the switch is really on in that process
            logs = "".join(p.read_text(errors="replace") for p in stack.backend.logs(role) if p.exists())
            assert f"bug switches on: {bug}" in logs, logs[-2000:]
        for name, invariants in DETECTED_BY[bug].items():
            scenario = CATALOGUE[name]
            result = stack.run_scenario(scenario, timeout_s=TIMEOUT_S)
            assert result.report.verdict_class not in (VerdictClass.INFRA, VerdictClass.INCONCLUSIVE), \
                _explain(result)
            assert detected(result, scenario.expect), f"{bug} not detected by {name}:\n{_explain(result)}"
            assert set(invariants) <= violated(result), \
                f"{bug} by {name}: expected {sorted(invariants)} violated\n{_explain(result)}"
            # ... and the finding points at the role the bug lives in
            culprits = {role.capitalize() for role in bugs.BUGS[bug][0]}
            named = findings(result, invariants)
            assert any(f"{c}:" in d for c in culprits for d in named), \
                f"{bug} by {name}: no finding names {sorted(culprits)}\n{_explain(result)}"


def test_same_entries_pass_without_bugs(tmp_path: Path) -> None:
    names = sorted({n for ns in DETECTED_BY.values() for n in ns})
    with Stack.start(tmp_path, images=BUG_IMAGES) as stack:
        for name in names:
            scenario = CATALOGUE[name]
            result = stack.run_scenario(scenario, timeout_s=TIMEOUT_S)
            assert not detected(result, scenario.expect), f"{name} fails without a bug:\n{_explain(result)}"


# --- the switch is refused outside test mode ---------------------------------------------------


def _role(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (bugs.TEST_MODE_VAR, bugs.BUGS_VAR)}
    return subprocess.run(
        [sys.executable, "-m", "dap.roles", "--role", "helper", "--port", "0", "--state-dir", str(tmp_path / "h")],
        env={**clean, **env}, cwd=REPO, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("test_mode", [None, "0", "yes"])
def test_bug_refused_without_test_mode(tmp_path: Path, test_mode: str | None) -> None:
    env = {bugs.BUGS_VAR: "helper-replay-per-job"}
    if test_mode is not None:
        env[bugs.TEST_MODE_VAR] = test_mode
    proc = _role(tmp_path, env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "helper-replay-per-job" in lines[0] and f"{bugs.TEST_MODE_VAR}=1" in lines[0]
    assert not (tmp_path / "h").exists()  # refused before touching any state


def test_unknown_bug_refused(tmp_path: Path) -> None:
    proc = _role(tmp_path, {bugs.TEST_MODE_VAR: "1", bugs.BUGS_VAR: "helper-replay-per-jobs"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown bug 'helper-replay-per-jobs'" in lines[0], proc.stderr


def test_configure_in_process() -> None:
    try:
        assert bugs.configure({}) == frozenset()
        assert bugs.configure({bugs.BUGS_VAR: " , "}) == frozenset()
        with pytest.raises(bugs.BugConfigError):
            bugs.configure({bugs.BUGS_VAR: "leader-accept-future"})
        on = bugs.configure({bugs.TEST_MODE_VAR: "1", bugs.BUGS_VAR: "leader-accept-future, helper-replay-per-job"})
        assert on == {"leader-accept-future", "helper-replay-per-job"}
        assert bugs.active("leader-accept-future") and not bugs.active("accept-late-reports")
        assert bugs.not_a_replay(b"a", b"b") and not bugs.not_a_replay(b"a", b"a")
    finally:
        bugs.configure({})
    assert not bugs.active("leader-accept-future")


@pytest.fixture(autouse=True)
def _no_bugs_leak() -> Iterator[None]:
    yield
    assert bugs.enabled() == frozenset()
