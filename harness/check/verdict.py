"""What the checker concluded: one :class:`Verdict` per invariant, a :class:`CheckReport` per
run, its :class:`VerdictClass`, and the exit status that follows from it (one table).

Verdict classes (``docs/cli.md``):

============== =============================================================================
pass           every invariant holds and every collection completed
clean_failure  a collection ended without a result in a way the spec allows (e.g.
               ``batchMismatch`` after a corrupted message), nothing wrong was returned
violation      an invariant is False: the target did something DAP-09 forbids
inconclusive   the run cannot tell: a fault the scenario needs never fired, an invariant
               could not decide, the history is missing, truncated or has a gap, or the
               proxy failed to record. Unknown is never a pass.
infra          the harness or a role process failed: no verdict on the target
============== =============================================================================

Whether a class is acceptable is the scenario's :class:`~faults.scenario.Expectation`
(:func:`expectation_met`); :func:`exit_code_for` turns both into the exit status.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from faults.scenario import Expectation, Outcome, Scenario, build

__all__ = ["CheckReport", "ExitCode", "Verdict", "VerdictClass", "check_report_from_dict", "combine_exit_codes",
           "exit_code_for", "expectation_met", "missed_expectation"]


class VerdictClass(enum.StrEnum):
    PASS = "pass"
    CLEAN_FAILURE = "clean_failure"
    VIOLATION = "violation"
    INCONCLUSIVE = "inconclusive"
    INFRA = "infra"


class ExitCode(enum.IntEnum):
    """``faultrun``'s exit status (and every place that reports one: JUnit, the plugin, campaigns)."""

    #: every scenario met its expectation
    OK = 0
    #: an invariant was violated, or an outcome missed the scenario's expectation
    FAILED = 1
    #: usage or configuration error (one ``faultrun: error:`` line)
    USAGE = 2
    #: infrastructure failure: the harness or a role failed, no verdict on the target
    INFRA = 3
    #: inconclusive: the run could not tell (a needed fault never fired, an invariant could not
    #: decide, the history is incomplete or was not recorded)
    INCONCLUSIVE = 4
    #: interrupted (SIGINT/SIGTERM); every process was stopped
    INTERRUPTED = 130


#: Several results -> one status: the most serious first.
_PRIORITY = (ExitCode.FAILED, ExitCode.USAGE, ExitCode.INFRA, ExitCode.INCONCLUSIVE, ExitCode.INTERRUPTED)


def combine_exit_codes(codes: Iterable[int]) -> int:
    """One status for several scenarios: 1 before 2 before 3 before 4 (130 last), else 0."""
    seen = set(codes)
    return next((int(c) for c in _PRIORITY if c in seen), int(ExitCode.OK))


@attrs.frozen
class Verdict:
    """One invariant's result. ``valid`` None = unknown (the checker could not decide: the run
    is inconclusive)."""

    invariant: str
    valid: bool | None
    detail: str = ""
    #: report indices / ids, history seqs, flow ids that support the verdict
    evidence: dict[str, Any] = attrs.field(factory=dict)
    #: optional behaviours (MAY / SHOULD) the run did without, one line each naming the role and
    #: the section: never a violation, but said in the summary ("pass without optional recovery")
    optional: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: what the target did differently from a non-normative wording of the draft (not a
    #: recovery, so never a reason to accept a clean failure), one line each: said in the
    #: summary ("note: ...") and nothing else
    notes: tuple[str, ...] = attrs.field(default=(), converter=tuple)


@attrs.frozen
class CheckReport:
    scenario: str
    verdict_class: VerdictClass = attrs.field(converter=VerdictClass)
    verdicts: tuple[Verdict, ...] = ()
    summary: str = ""
    #: why the run is inconclusive (or infra), one line each
    reasons: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: optional recoveries (MAY / SHOULD) the run did without (from the verdicts), one line each
    optional: tuple[str, ...] = attrs.field(default=(), converter=tuple)


def expectation_met(verdict: VerdictClass | str, expect: Expectation, optional: Iterable[str] = ()) -> bool:
    """Whether a verdict class is what the scenario's Expectation allows (violation, inconclusive,
    infra: never). ``optional``: the optional recoveries the run did without; when the
    expectation relies on one (``optional_recovery``), a clean failure is compliant too."""
    vc = VerdictClass(verdict)
    if vc in (VerdictClass.VIOLATION, VerdictClass.INCONCLUSIVE, VerdictClass.INFRA):
        return False
    if expect.outcome == Outcome.PASS_OR_CLEAN_FAILURE:
        return True
    if vc == VerdictClass.CLEAN_FAILURE and expect.optional_recovery and any(True for _ in optional):
        return True  # compliant: the target did without the optional recovery the pass relies on
    return vc.value == expect.outcome.value


def missed_expectation(verdict: VerdictClass | str, expect: Expectation, optional: Iterable[str] = ()) -> str | None:
    """For a pass or clean failure the expectation does not allow: which way it missed, in words
    ("expected a clean failure, but the run passed"); None otherwise."""
    vc = VerdictClass(verdict)
    if vc not in (VerdictClass.PASS, VerdictClass.CLEAN_FAILURE) or expectation_met(vc, expect, optional):
        return None
    if vc == VerdictClass.PASS:
        return ("expected a clean failure, but the run passed: the target accepted what the scenario expects it to "
                "refuse")
    return "expected pass, but a collection failed cleanly: the target did not recover from a fault it must survive"


def exit_code_for(report: CheckReport | None, scenario: Scenario) -> int:
    """The exit status of one run: 0 the expectation is met, 1 a violation or a missed
    expectation, 3 infra (or no report), 4 inconclusive."""
    if report is None:
        return int(ExitCode.INFRA)
    vc = report.verdict_class
    if vc == VerdictClass.INFRA:
        return int(ExitCode.INFRA)
    if vc == VerdictClass.INCONCLUSIVE:
        return int(ExitCode.INCONCLUSIVE)
    return int(ExitCode.OK if expectation_met(vc, scenario.expect, report.optional) else ExitCode.FAILED)


def check_report_from_dict(data: Mapping[str, Any]) -> CheckReport:
    return build(CheckReport, data, verdicts=lambda xs: tuple(build(Verdict, x) for x in xs))
