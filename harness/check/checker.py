"""The checker: invariants over one stored run (record + history), Jepsen style.

``check(record, history, scenario) -> CheckReport``. The run is data: nothing here talks to
a role or the proxy, so a stored run directory is re-checked by :func:`harness.cli.analyze.analyze`.
Each invariant is a small function ``fn(ctx) -> Verdict`` in :data:`INVARIANTS` (composed by
name); one that raises yields ``valid=None`` (unknown) with the exception text, never a crash.
They live in :mod:`harness.check.invariants`: ``base`` (the :class:`Context`: history folded per flow,
uploads mapped to report IDs), ``counted`` (S read off an aggregate), ``counting`` (safety,
completeness, collections, rejected uploads), ``protocol`` (auth, idempotency, error typing).

How the counted set S is known (never trusting an aggregator to say): the workload is
self-describing, so the aggregate itself names the reports it counts. Each upload's
contribution is rebuilt from the recorded measurement (``UploadRecord.measurement``):

- Histogram / SumVec: a report with a coordinate no other upload touches is read off that
  coordinate (multiplicity = value / contribution); the rest of the vector must be explained
  exactly (a residue is a forged or garbage bucket). Uploads sharing every coordinate
  (e.g. more reports than buckets) are bounded only (weaker evidence, said so).
- Sum with distinct powers of two: S = the bits of the aggregate; a double count carries into
  the next bit, so it shows as ``popcount(aggregate) != report_count`` (weaker than a histogram).
- Count: only ``aggregate <= report_count <= possible uploads`` (weakest evidence, said so).

**A failure (valid False) is:**

- ``safety``: a completed collection that is not the sum over a set S of uploaded reports;
  a completed collection with ``report_count < min_batch_size`` (a batch released too small);
  a report counted twice (in one collection, or in two collections of different batches);
  ``report_count != |S|``; a refused upload, an expected-rejected upload, a report whose
  bytes the proxy corrupted on the way to an Aggregator, or a report outside the queried
  interval in S; an aggregate that does not decode.
- ``completeness`` (only with ``Expectation.complete``): an acknowledged (2xx to the Client),
  unrefused, uncorrupted report of the queried batch missing from a completed collection
  (time_interval: the report's time is in the interval; fixed_size: the history shows both
  Aggregators took it into that batch ID — an init request naming the batch, answered
  ``continue``/``finished``, job not deleted).
- ``collections``: a collection recorded complete without a result, or failed with a result.
- ``auth``: a request whose credential the proxy tampered with (``auth`` fault) answered with
  anything but 400/401/403 ``unauthorizedRequest`` by an authenticated endpoint; a
  tampered request that changed state (a later genuine PUT of the same job got 409; a
  collection job that only the tampered PUT could have created answered a poll; report IDs
  of a tampered init later answered ``report_replayed`` without a genuine earlier init).
- ``idempotency``: two completed collections of the same batch (same time interval, or the
  same batch ID) with different results or counts; 200 polls of one collection job with
  different ``report_count``/``interval``; the same aggregation-job init body answered with
  different statuses or PrepareResp states; the same AggregateShareReq body answered with
  different statuses or different ciphertext (DAP-09 §16.4: stored and replayed).
- ``error-typing``: a 5xx the proxy did not synthesize; a 4xx whose DAP problem type is not
  in the table for its kind (:data:`PROBLEM_TYPES`) nor ``Expectation.allowed_problem_types``;
  a 4xx without a problem document outside :data:`BARE_4XX`; a 2xx DAP body that does not
  decode.
- ``rejected-uploads``: an ``Expectation.rejected_uploads`` index acknowledged, refused with
  another problem type, or counted.
- ``poplar1`` / ``step-skew`` (:mod:`harness.check.poplar1`): Poplar1 prefix counts
  against the recorded measurements and across levels; the Helper's answers to
  continuations (identical repeat -> the same bytes, wrong step -> ``stepMismatch``).

**Explicitly not a failure:**

- a collection that ends in a DAP error or times out without a result: it is the verdict
  class ``clean_failure`` (the Expectation decides whether that is acceptable);
- a collection the harness stopped early as ``not_ready`` because too few reports ever
  reached its batch to make ``min_batch_size`` (re-derived here from the same history
  prefix, :mod:`harness.check.fill`): a correct Leader does not complete it, so it does
  not fail the run. If instead the Leader gave up aggregating reports the batch needed, the
  collection failed (clean failure); if the history does not support the stop at all, it
  counts as a collection that did not complete (clean failure);
- an acknowledged report uploaded after a collection of its batch completed, missing from a
  later collection of that batch: a Leader may refuse or silently ignore such a late report
  (dap-09.md §12), but never add it (two collections of one batch must agree: idempotency);
- a report the Client saw fail but the Leader may have stored (response dropped or replaced
  after commit, transport error): it may be counted or not, and completeness does not need it;
- uploads the proxy answered itself, requests it dropped before delivery, and 5xx it
  synthesized (``respond`` at phase request); responses to copies the proxy sent itself are
  judged like any other;
- the Leader abandoning a job after a tampered/4xx answer (no retry of a 403 is required);
- ``auth`` faults on unauthenticated endpoints (upload, hpke_config).

**Known nondeterminism** (the checker tolerates it): how reports split into aggregation jobs;
retry timing and the number of polls; whether a duplicate reaches the Helper before or after
the original (both must get equivalent answers); whether an ambiguous upload (see above) was
stored; fixed_size batch membership (checked only as "disjoint across batches"); traffic of
other tasks in the same history window (a previous scenario's late retries on a shared stack),
which is ignored.

The verdict class (:func:`verdict_class`), most serious first: ``infra`` if the record has
infra errors; ``inconclusive`` if the record is not whole (history missing, truncated, with a
gap, or the proxy failed to record: :mod:`harness.check.validity`); ``violation`` if any
invariant is False; ``inconclusive`` if an invariant could not decide (it raised, or lacked
what it needs) or a rule of the plan that is not ``optional`` never fired (the scenario's
fault did not happen); ``clean_failure`` if a collection did not complete (except one rightly
not ready, see above; or the workload collected and nothing was recorded); ``pass``
otherwise. Unknown is never a pass. The class is then compared with ``Expectation.outcome``
(:func:`~harness.check.verdict.expectation_met`) and the summary says so, and which way a
missed expectation went.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from faults.scenario import Scenario
from harness.check.fill import rightly_not_ready
from harness.check.invariants import BARE_4XX, INVARIANTS, PROBLEM_TYPES, Context, Counted
from harness.check.validity import record_problems, unfired_rules
from harness.check.verdict import CheckReport, Verdict, VerdictClass, expectation_met, missed_expectation
from harness.record import RunRecord

__all__ = [
    "BARE_4XX",
    "INVARIANTS",
    "PROBLEM_TYPES",
    "Context",
    "Counted",
    "check",
    "check_safe",
    "verdict_class",
]


# --- composition ------------------------------------------------------------------------------------------


def check_safe(name: str, fn: Callable[[Context], Verdict], ctx: Context) -> Verdict:
    """Run one invariant; an exception becomes an unknown verdict carrying its text."""
    try:
        verdict = fn(ctx)
    except Exception as exc:  # a checker bug must not become a verdict on the target
        tb = traceback.format_exception(exc)
        return Verdict(name, None, f"invariant raised {type(exc).__name__}: {exc}",
                       {"traceback": "".join(tb[-3:])})
    if verdict.invariant != name:
        verdict = attrs.evolve(verdict, invariant=name)
    return verdict


def verdict_class(record: RunRecord, verdicts: Sequence[Verdict], scenario: Scenario | None = None,
                  rightly_not_ready: Collection[str] = (), *, record_problems: Sequence[str] = (),
                  not_judged: Sequence[str] = ()) -> VerdictClass:
    """The class of a run, most serious first: ``infra`` (the harness or a role failed);
    ``inconclusive`` because the record is not whole (``record_problems``: then not even a
    violation can be trusted); ``violation``; ``inconclusive`` because an invariant could not
    decide or the scenario's fault never happened (``not_judged``); ``clean_failure``;
    ``pass``. ``rightly_not_ready``: labels of ``not_ready`` collections whose batch the
    checker found could never hold ``min_batch_size`` reports; not completing them is what a
    correct Leader does, so they do not fail the run."""
    if record.infra_errors:
        return VerdictClass.INFRA
    if record_problems:
        return VerdictClass.INCONCLUSIVE
    if any(v.valid is False for v in verdicts):
        return VerdictClass.VIOLATION
    if not_judged or any(v.valid is None for v in verdicts):
        return VerdictClass.INCONCLUSIVE
    failed = [c for c in record.collections if c.status != "complete" and c.label not in rightly_not_ready]
    wanted = scenario is not None and any(getattr(s, "type", "") == "collect" for s in scenario.workload.steps)
    if failed or (wanted and not record.collections):
        return VerdictClass.CLEAN_FAILURE
    return VerdictClass.PASS


def check(record: RunRecord, history: Sequence[Any], scenario: Scenario | None = None, *,
          invariants: Mapping[str, Callable[[Context], Verdict]] | None = None,
          history_problems: Sequence[str] = ()) -> CheckReport:
    """Check one run: whether it can be judged (:mod:`harness.check.validity`), every invariant
    (by name), the verdict class, and a summary that compares the class with the scenario's
    Expectation. ``history_problems``: what is wrong with the history file the events came from."""
    ctx = Context(record, history, scenario)
    table = INVARIANTS if invariants is None else invariants
    verdicts = tuple(check_safe(name, fn, ctx) for name, fn in table.items())
    damaged = record_problems(record, ctx.all_events, history_problems)
    unfired = unfired_rules(ctx, scenario.plan) if scenario is not None and not damaged else []
    optional = tuple(dict.fromkeys(o for v in verdicts for o in v.optional))
    # a rule on a request the target only sends after the optional recovery the scenario relies
    # on (a retried job's aggregate share request) cannot fire when it did without: said, not unknown
    excused = unfired if (unfired and optional and ctx.expect.optional_recovery) else []
    unfired = [u for u in unfired if u not in excused]
    unknown_lines = [f"invariant {v.invariant} could not decide: {v.detail}" for v in verdicts if v.valid is None]
    ok_not_ready = rightly_not_ready(ctx)
    vc = verdict_class(record, verdicts, scenario, ok_not_ready, record_problems=damaged,
                       not_judged=[*unfired, *unknown_lines])
    bad = [v.invariant for v in verdicts if v.valid is False]
    unknown = [v.invariant for v in verdicts if v.valid is None]
    parts = [f"{vc.value}: {sum(v.valid is True for v in verdicts)}/{len(verdicts)} invariants hold"]
    if bad:
        parts.append("violated: " + ", ".join(bad))
    if unknown:
        parts.append("unknown: " + ", ".join(unknown))
    if record.infra_errors:
        parts.append("infra: " + "; ".join(record.infra_errors[:3]))
    reasons: list[str] = list(record.infra_errors) if vc == VerdictClass.INFRA else []
    if vc == VerdictClass.INCONCLUSIVE:
        reasons = [*damaged, *unfired, *unknown_lines]
        parts.append(reasons[0] + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""))
    elif unfired:  # a violation without the fault: still a finding, but say the fault never happened
        parts.append("note: " + unfired[0])
    if excused:
        parts.append(f"note: {excused[0]} (the target did without the optional recovery)")
    if vc == VerdictClass.CLEAN_FAILURE:
        failed = {c.label: c.error or c.status for c in record.collections
                  if c.status != "complete" and c.label not in ok_not_ready}
        parts.append(f"collections failed cleanly: {failed}" if failed else "no collection was recorded")
    if ok_not_ready:
        parts.append(f"not ready, rightly (batch cannot reach min_batch_size): {sorted(ok_not_ready)}")
    if optional and vc in (VerdictClass.PASS, VerdictClass.CLEAN_FAILURE):
        parts[0] = f"{vc.value} without optional recovery: " + parts[0].split(": ", 1)[1]
        parts.append("optional, not done: " + "; ".join(optional))
    notes = tuple(dict.fromkeys(n for v in verdicts for n in v.notes))
    if notes:
        parts.append("note: " + "; ".join(notes))
    expect = ctx.expect
    if vc in (VerdictClass.PASS, VerdictClass.CLEAN_FAILURE, VerdictClass.VIOLATION):
        missed = missed_expectation(vc, expect, optional)
        parts.append(f"expected {expect.outcome.value}: "
                     + ("met" if expectation_met(vc, expect, optional) else f"NOT met ({missed})" if missed
                        else "NOT met"))
    return CheckReport(record.scenario, vc, verdicts, "; ".join(parts), tuple(reasons), optional)
