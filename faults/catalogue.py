"""The named fault catalogue: one :class:`~faults.scenario.Scenario` per well-known fault.

Each entry bundles the fault (a :class:`~faults.plan.Plan` written out as Rule values),
the honest workload it runs under, the expected-behaviour class
(:class:`~faults.scenario.Expectation`), the section of ``shared/spec/dap-09.md`` it tests
(heading text, section 21 of that file gives the expected outcomes) and a paragraph of
docs whose first sentence is the one-liner ``faultrun --list`` prints.

Conventions kept by every entry:

- a fresh task per run, Prio3Histogram(16) so the aggregate names the counted reports;
  6-8 reports (the reference Leader batches them into jobs within a fraction of a second);
- faults that must leave *some* reports aggregated normally hit only the first matching
  message (``Limits(nth=1)``) and the workload uploads in two halves with a pause between,
  so the first half is in the first aggregation job and the second half is not;
- outcome ``pass`` = exact aggregate over every acknowledged report (``complete=True``) or
  over the reports the fault legitimately removed (``complete=False``); ``clean_failure``
  = the spec makes the run end in a refusal (e.g. ``batchMismatch``) and the checker only
  asserts that nothing wrong was ever returned.

``docs/faults.md`` describes every entry (one section each); ``tests/test_catalogue.py``
checks the entries statically, ``tests/test_catalogue_e2e.py`` runs all of them.
"""

from __future__ import annotations

import difflib
import json

from dap.vdaf.params import VdafParams
from faults.actions import (
    Auth,
    CorruptBytes,
    CorruptField,
    Delay,
    DropRequest,
    DropResponse,
    Duplicate,
    ReplayLater,
    Respond,
    Synthesize,
)
from faults.heavy_hitters import heavy_hitters_workload
from faults.network import Blackhole, Latency, Loss, NetRule, Partition, Rate, Reorder, Reset, Window
from faults.plan import Limits, Matcher, Plan, Rule, dumps_plan
from faults.scenario import (
    LEADER_RETRY,
    Collect,
    Expectation,
    FireEvent,
    Outcome,
    Pause,
    Scenario,
    TaskSpec,
    Upload,
    WorkloadSpec,
)
from faults.vocabulary import CLIENT_LEADER, COLLECTOR_LEADER, LEADER_HELPER

__all__ = ["CATALOGUE", "UnknownScenario", "get_scenario", "names"]

C2L, K2L, L2H = CLIENT_LEADER, COLLECTOR_LEADER, LEADER_HELPER

#: The reference Leader's per-request timeout against the Helper that the harness uses
#: (``--request-timeout``); ``delay-beyond-timeout`` holds a response longer than this.
LEADER_REQUEST_TIMEOUT_MS = 1_000
#: Pause between the two upload halves: one of the Leader's job intervals (images.toml
#: ``timing.job_interval_ms``: 200 ms for the reference Leader, 1 s for Janus) plus this
#: margin, so the halves land in different aggregation jobs.
HALF_PAUSE_MS = 300

TIME_PRECISION_S = 3600
FUTURE_S = 10 * 24 * 3600


def _plan(*rules: Rule, seed: int = 1) -> Plan:
    return Plan(seed=seed, rules=rules)


def _steps(*steps: object) -> WorkloadSpec:
    return WorkloadSpec(steps=steps)


#: Every way of presenting a wrong credential (faults.actions.Auth modes): none, a wrong
#: DAP-Auth-Token, a wrong Bearer, the token as HTTP Basic, and the genuine credential with a
#: wrong one in the other header beside it (DAP-09 fixes no rule for two credentials, so the
#: checker accepts either answer to that one, but a refusal must still be unauthorizedRequest).
CREDENTIAL_MODES = ("strip", "wrong_value", "wrong_bearer", "wrong_scheme", "conflicting")
#: The modes a request must be refused with: a DELETE carrying the genuine credential beside a
#: wrong one may legitimately delete.
WRONG_CREDENTIALS = CREDENTIAL_MODES[:-1]
REFUSED = Expectation(allowed_problem_types=("unauthorizedRequest",))


def _forged_credentials(link: str, kind: str, message: str = "forged_copy", modes: tuple[str, ...] = CREDENTIAL_MODES,
                        limits: Limits = Limits(nth=1)) -> Plan:
    """One forged request per credential mode, sent after the target answered the genuine one."""
    return _plan(*(Rule(f"{message.replace('_', '-')}-{mode.replace('_', '-')}", Matcher(link=link, kind=kind),
                        Synthesize(message=message, credentials=mode), limits) for mode in modes))


#: Default workload: upload 8 reports, collect once.
DEFAULT = WorkloadSpec(steps=(Upload(count=8), Collect()))
#: Two halves in different aggregation jobs, then collect.
HALVES = _steps(Upload(count=4), Pause(ms=HALF_PAUSE_MS, job_intervals=1), Upload(count=4), Collect())

PASS = Expectation()
#: pass, or (a Leader that does not retry) a clean failure / lost reports said as such
RETRIED = Expectation(optional_recovery=LEADER_RETRY)
#: A refused aggregation job under Poplar1: the reference Leader puts every report of a
#: collection in one job, so losing it may lose them all (a clean failure); a Leader that
#: splits them passes over the rest.
REFUSED_JOB_POPLAR1 = Expectation(outcome=Outcome.PASS_OR_CLEAN_FAILURE, complete=False,
                                  allowed_problem_types=("unauthorizedRequest", "unrecognizedAggregationJob"))


def _scenario(name: str, spec_section: str, doc: str, plan: Plan, workload: WorkloadSpec = DEFAULT,
              expect: Expectation = PASS, *, poplar1: Expectation | None = None) -> tuple[str, Scenario]:
    """One entry; ``poplar1``: the expectation when ``--vdaf poplar1`` runs it as a
    heavy-hitters walk, where it differs (a Poplar1 job is prepared over two rounds, and the
    reference Leader puts every report of a collection in one job)."""
    return name, Scenario(name=name, plan=plan, workload=workload, expect=expect,
                          spec_section=spec_section, doc=" ".join(doc.split()),
                          expect_by_family={} if poplar1 is None else {"poplar1": poplar1})


_ENTRIES = [
    # --- upload (Client -> Leader) ---------------------------------------------------------
    _scenario(
        "duplicate-report", "12. Anti-replay",
        """The Client's upload of every second report reaches the Leader twice. The Leader
        MUST ignore a repeated report ID (it may answer 2xx or reportRejected to the copy),
        so every report is counted exactly once and the aggregate is exact and complete.""",
        _plan(Rule("dup-upload", Matcher(link=C2L, kind="upload"), Duplicate(copies=1), Limits(every=2))),
    ),
    _scenario(
        "replay-report-after-collection", "12. Anti-replay",
        """An already aggregated report is uploaded again after its batch was collected, then
        the same interval is collected a second time. The Leader ignores the replay (or answers
        reportRejected) and the identical second collection returns the same exact aggregate:
        a report contributes to at most one aggregate, exactly once.""",
        _plan(Rule("replay-upload", Matcher(link=C2L, kind="upload"),
                   ReplayLater(after_event="collection_finished"), Limits(nth=1))),
        _steps(Upload(count=8), Collect(label="main"), Pause(ms=200), Collect(label="again")),
    ),
    _scenario(
        "replay-report-after-aggregation", "12. Anti-replay",
        """The first report's upload is sent to the Leader again once the reports were
        aggregated (a pause of a job interval and more after the uploads), before the
        collection. The report is stored and aggregated already: the Leader MUST ignore the
        repeated report ID (2xx or reportRejected) and never offer it in a second aggregation
        job (leader-jobs), so it is counted once and the aggregate is exact and complete.""",
        # Fired by the workload after a pause, not on the proxy's agg_init_done: the Helper's
        # answer passes the proxy before the Leader has stored what it says, and a replay in
        # that window only races the Leader's own bookkeeping.
        _plan(Rule("replay-upload", Matcher(link=C2L, kind="upload"),
                   ReplayLater(after_event="manual:aggregated"), Limits(nth=1))),
        _steps(Upload(count=8), Pause(ms=HALF_PAUSE_MS, job_intervals=1), FireEvent("aggregated"), Collect()),
        Expectation(allowed_problem_types=("reportRejected",)),
    ),
    _scenario(
        "late-report-after-collection", "12. Anti-replay",
        """A new report for an interval that was already collected is uploaded, then the
        interval is collected again. The Leader must not add it to the collected batch: it
        may refuse it (reportRejected, as the reference Leader does) or acknowledge and never
        aggregate it (DAP-09 leaves the choice open), but it MUST NOT put it in an aggregation
        job for the batch it already asked the Helper's share of (leader-late-jobs), and the
        identical second collection returns the first result.""",
        _plan(),
        _steps(Upload(count=7), Collect(label="main"), Upload(count=1), Collect(label="again")),
        Expectation(allowed_problem_types=("reportRejected",)),
    ),
    _scenario(
        "drop-upload-response", "9.1 Client procedure",
        """The Leader's answer to the third upload is lost after the Leader stored the report.
        The Client sees a connection error and does not retry; the report is nevertheless
        stored and aggregated, which is allowed (it was genuinely uploaded): every
        acknowledged report is counted, and nothing is counted twice.""",
        _plan(Rule("lose-upload-reply", Matcher(link=C2L, kind="upload"), DropResponse(), Limits(nth=3))),
    ),
    _scenario(
        "outdated-hpke-config", "9.2 Leader checks on upload (order not mandated)",
        """The second upload's Leader ciphertext names an HPKE config id the Leader does not
        have. The Leader answers outdatedConfig; the Client drops its cached configs and
        retries once with a freshly encrypted report, which goes through untouched, so the
        aggregate is exact and complete.""",
        _plan(Rule("bad-config-id", Matcher(link=C2L, kind="upload"),
                   CorruptField(field="leader_encrypted_input_share.config_id", op="add", value=1),
                   Limits(nth=2))),
        expect=Expectation(allowed_problem_types=("outdatedConfig",)),
    ),
    _scenario(
        "corrupt-report-bytes", "9.2 Leader checks on upload (order not mandated)",
        """One bit of the fourth report's upload body is flipped on the way to the Leader (the
        seed puts it inside an HPKE ciphertext). The report must never be counted wrongly: the
        Leader refuses it (reportRejected when its own share does not decrypt) or accepts it
        and both Aggregators drop it during aggregation (hpke_decrypt_error); the aggregate is
        exact over the other reports.""",
        _plan(Rule("flip-report-bit", Matcher(link=C2L, kind="upload"), CorruptBytes(flips=1), Limits(nth=4))),
        expect=Expectation(complete=False, allowed_problem_types=("reportRejected", "invalidMessage")),
    ),
    _scenario(
        "future-report", "9.2 Leader checks on upload (order not mandated)",
        """One report carries a timestamp ten days in the future. The Leader SHOULD refuse it
        with reportTooEarly (the reference Leader allows 60 s of clock skew); it is never
        counted, and the other seven reports are aggregated exactly. The fault is in the
        workload (an honest Client with a skewed clock), so the plan has no rules.""",
        _plan(),
        _steps(Upload(count=3), Upload(count=1, time_offset_s=FUTURE_S), Upload(count=4), Collect()),
        Expectation(rejected_uploads={3: "reportTooEarly"}),
    ),
    # --- aggregation (Leader -> Helper) ------------------------------------------------------
    _scenario(
        "drop-agg-init-request", "10.3 Re-sent init requests",
        """The Leader's first aggregation-job PUT never reaches the Helper (the connection is
        closed without an answer). The Leader retries the stored request byte for byte; the
        Helper sees it once, and the aggregate is exact and complete.""",
        _plan(Rule("lose-init", Matcher(link=L2H, kind="agg_init"), DropRequest(), Limits(nth=1))),
        expect=RETRIED,
    ),
    _scenario(
        "drop-agg-init-response", "10.3 Re-sent init requests",
        """The Helper's answer to the first aggregation-job PUT is lost after the Helper
        committed the job (round-skew recovery). The Leader retries byte-identically and the
        Helper replays its stored AggregationJobResp instead of preparing again (a second
        preparation would answer report_replayed), so nothing is aggregated twice and the
        aggregate is exact and complete.""",
        _plan(Rule("lose-init-reply", Matcher(link=L2H, kind="agg_init"), DropResponse(), Limits(nth=1))),
        expect=RETRIED,
    ),
    _scenario(
        "helper-503-burst", "10.3 Re-sent init requests",
        """The Helper appears overloaded: the first three aggregation-job PUTs and the first
        two AggregateShareReqs are answered 503 by the proxy without reaching the Helper. The
        Leader backs off and re-sends the same bytes until the Helper answers; the aggregate
        is exact and complete.""",
        _plan(Rule("init-503", Matcher(link=L2H, kind="agg_init"), Respond(status=503), Limits(first=3)),
              Rule("share-503", Matcher(link=L2H, kind="agg_share"), Respond(status=503), Limits(first=2))),
        expect=RETRIED,
    ),
    _scenario(
        "delay-beyond-timeout", "10.3 Re-sent init requests",
        """The Helper's answer to the first aggregation-job PUT is held longer than the
        Leader's request timeout. The Leader gives up on that attempt and re-sends the stored
        request; the Helper, which committed the job already, replays its stored response, and
        the late original answer is discarded. The aggregate is exact and complete.""",
        _plan(Rule("slow-init-reply", Matcher(link=L2H, kind="agg_init", phase="response"),
                   Delay(delay_ms=LEADER_REQUEST_TIMEOUT_MS + 300), Limits(nth=1))),
        expect=RETRIED,
    ),
    _scenario(
        "duplicate-agg-init", "10.3 Re-sent init requests",
        """Every aggregation-job PUT reaches the Helper twice, concurrently. A byte-identical
        init PUT is a safe retry: the Helper answers the copy with the same
        AggregationJobResp and aggregates nothing twice; the aggregate is exact and
        complete.""",
        _plan(Rule("dup-init", Matcher(link=L2H, kind="agg_init"), Duplicate(copies=1))),
    ),
    _scenario(
        "mutate-agg-init", "10.3 Re-sent init requests",
        """After the first aggregation job finished, its init PUT is sent again under the same
        job ID with one bit of the Leader's ping-pong message flipped. A re-sent init with a
        different body MUST fail with a 4xx (the reference Helper, like Janus, answers 409) and
        leave the job unchanged; the aggregate is exact and complete.""",
        _plan(Rule("mutated-reinit", Matcher(link=L2H, kind="agg_init"),
                   Synthesize(message="reinit_mutated"), Limits(nth=1))),
    ),
    _scenario(
        "replay-agg-init-after-collection", "10.3 Re-sent init requests",
        """The first aggregation-job PUT is sent to the Helper once more after the batch was
        collected. It is byte-identical and the job was never continued, so the Helper replays
        its stored AggregationJobResp and aggregates nothing again (a fresh preparation would
        answer batch_collected or report_replayed); re-collecting the interval gives the
        same exact, complete aggregate.""",
        _plan(Rule("replay-init", Matcher(link=L2H, kind="agg_init"),
                   ReplayLater(after_event="collection_finished"), Limits(nth=1))),
        _steps(Upload(count=8), Collect(label="main"), Pause(ms=200), Collect(label="again")),
    ),
    _scenario(
        "replay-report-in-new-job", "12. Anti-replay",
        """After the first aggregation job finished, its first report is PUT again in a new
        aggregation job. The Helper MUST answer report_replayed for it (Prio3 reports may be
        aggregated once), so the report is counted once and the aggregate is exact and
        complete.""",
        _plan(Rule("reinit-new-job", Matcher(link=L2H, kind="agg_init"),
                   Synthesize(message="reinit_new_job", report_index=0), Limits(nth=1))),
    ),
    _scenario(
        "inject-continue-step-skew", "10.6 The `step` field and recovering from step skew",
        """After the first aggregation job finished, the Helper receives continuation requests
        for it at step 1 and at the skewed step 3. Prio3 finishes in the init round, so no
        report awaits a continuation: the Helper refuses both (invalidMessage, or stepMismatch
        for the wrong step) without changing state, and the aggregate is exact and complete.""",
        _plan(
            Rule("continue-step-1", Matcher(link=L2H, kind="agg_init"),
                 Synthesize(message="continue_step", step=1), Limits(nth=1)),
            Rule("continue-step-3", Matcher(link=L2H, kind="agg_init"),
                 Synthesize(message="continue_step", step=3), Limits(nth=1)),
        ),
        expect=Expectation(allowed_problem_types=("invalidMessage", "stepMismatch")),
        # Poplar1's reports do await step 1: the forged step-1 request is indistinguishable from
        # the Leader's, the Helper may take it, and the genuine one then fails the job
        poplar1=Expectation(outcome=Outcome.PASS_OR_CLEAN_FAILURE, complete=False,
                            allowed_problem_types=("invalidMessage", "stepMismatch")),
    ),
    _scenario(
        "corrupt-leader-share", "10.2 Helper: handling the init PUT",
        """One bit of the Leader's ping-pong message (its prepare share) for the first report of
        the first aggregation job is flipped on the way to the Helper. The Helper rejects that
        report (vdaf_prep_error), the Leader drops it too, and the two Aggregators agree on
        count and checksum: the aggregate is exact over the other reports. That one report is
        legitimately lost, so completeness is not required.""",
        _plan(Rule("flip-leader-prep", Matcher(link=L2H, kind="agg_init"),
                   CorruptField(field="prepare_inits[0].payload", op="flip"), Limits(nth=1))),
        expect=Expectation(complete=False),
    ),
    _scenario(
        "corrupt-helper-share", "10.1 Leader: creating a job",
        """One bit of the Helper's ping-pong message for the first report of the first job is
        flipped on the way back to the Leader. The Leader's ping_pong_leader_continued rejects
        that report, but the Prio3 Helper has already committed its output share, so the
        Aggregators' counts differ and the collection ends in batchMismatch (dap-09.md section
        21): a clean failure, never a wrong aggregate.""",
        _plan(Rule("flip-helper-prep", Matcher(link=L2H, kind="agg_init", phase="response"),
                   CorruptField(field="prepare_resps[0].payload", op="flip"), Limits(nth=1))),
        expect=Expectation(outcome=Outcome.CLEAN_FAILURE, complete=False,
                           allowed_problem_types=("batchMismatch",)),
        # Poplar1's Helper commits nothing at init: the Leader leaves the report out of the
        # continuation, both drop it, and the rest is exact
        poplar1=Expectation(complete=False),
    ),
    _scenario(
        "reorder-prepare-resps", "10.1 Leader: creating a job",
        """The Helper's PrepareResps for the aggregation job holding the second report arrive
        in reverse order. The Leader MUST abort that job (and DELETEs it), but the Helper has
        already committed those output shares and DAP-09 does not undo them, so the
        collection may end in batchMismatch: a clean failure, or an exact aggregate (a
        reversed list of one is unchanged; the reports are uploaded faster than the Leader
        forms jobs, so the job holding the second report also holds the first or the third).
        Never a wrong aggregate.""",
        _plan(Rule("reverse-resps", Matcher(link=L2H, kind="agg_init", phase="response", report_index=1),
                   CorruptField(field="prepare_resps", op="reverse"), Limits(nth=1))),
        HALVES,
        Expectation(outcome=Outcome.PASS_OR_CLEAN_FAILURE, complete=False, allowed_problem_types=("batchMismatch",)),
    ),
    # --- aggregate shares (Leader -> Helper) -------------------------------------------------
    _scenario(
        "drop-agg-share-response", "16. Aggregate share request (Leader → Helper)",
        """The Helper's AggregateShare is lost after the Helper stored it. The Leader re-sends
        the stored AggregateShareReq; the Helper's handling MUST be idempotent (DAP-09
        §4.6.2), so it answers again without consuming another query -- replaying its stored
        ciphertext, or sealing the same share afresh, which is noted (the draft's "should all
        yield the same response" is not normative) -- and the aggregate is exact and
        complete.""",
        _plan(Rule("lose-share-reply", Matcher(link=L2H, kind="agg_share"), DropResponse(), Limits(nth=1))),
        expect=RETRIED,
    ),
    _scenario(
        "duplicate-agg-share-request", "16. Aggregate share request (Leader → Helper)",
        """The AggregateShareReq reaches the Helper twice, concurrently. The Helper's handling
        MUST be idempotent: both are answered with the share under the same Collector config
        and consume one unit of max_batch_query_count (which is 1 here, so a second unit would
        fail the batch); a fresh HPKE sealing for the copy is noted, not a violation. The
        aggregate is exact and complete.""",
        _plan(Rule("dup-share-req", Matcher(link=L2H, kind="agg_share"), Duplicate(copies=1))),
    ),
    _scenario(
        "mutate-agg-share-request", "16. Aggregate share request (Leader → Helper)",
        """After the Helper answered the AggregateShareReq, the same request is POSTed again
        with report_count one higher. It does not match the Helper's own count, so the Helper
        MUST answer batchMismatch (and not replay its stored share for a different request);
        the collection keeps the exact, complete aggregate.""",
        _plan(Rule("mutated-share-req", Matcher(link=L2H, kind="agg_share"),
                   Synthesize(message="agg_share_mutated"), Limits(nth=1))),
        expect=Expectation(allowed_problem_types=("batchMismatch",)),
    ),
    _scenario(
        "corrupt-agg-share-count", "16. Aggregate share request (Leader → Helper)",
        """The report_count of the AggregateShareReq is raised by one on the way to the Helper.
        The Helper's own count differs, so it MUST answer batchMismatch; the Leader fails the
        collection job with that problem and the Collector sees it: a clean failure, never a
        wrong aggregate.""",
        _plan(Rule("count-plus-one", Matcher(link=L2H, kind="agg_share"),
                   CorruptField(field="report_count", op="add", value=1))),
        expect=Expectation(outcome=Outcome.CLEAN_FAILURE, complete=False,
                           allowed_problem_types=("batchMismatch",)),
    ),
    _scenario(
        "untyped-agg-share-error", "15. Collection job lifecycle (Collector ↔ Leader)",
        """The Helper's AggregateShare is replaced by a bare 400 without a problem document
        (an error outside DAP's vocabulary, not retryable). The Leader cannot obtain the
        Helper's share, so the collection job fails, and a failed job MUST answer polls with
        an error status and a problem document (the reference Leader: 502, type
        about:blank; Janus: 500 with its own type): a clean failure, never a bare error and
        never an aggregate.""",
        _plan(Rule("untyped-share-error", Matcher(link=L2H, kind="agg_share", phase="response"),
                   Respond(status=400))),
        expect=Expectation(outcome=Outcome.CLEAN_FAILURE, complete=False),
    ),
    # --- authentication ----------------------------------------------------------------------
    _scenario(
        "bad-leader-token", "6. Request authentication",
        """The Leader's first aggregation-job PUT carries a wrong DAP-Auth-Token. The Helper
        MUST refuse it with unauthorizedRequest (403) before touching any state; the Leader
        abandons that job (its reports are lost, and its DELETE finds no job), and the later
        jobs succeed. Both Aggregators agree on the rest, so the aggregate is exact over the
        second half of the reports.""",
        _plan(Rule("wrong-token", Matcher(link=L2H, kind="agg_init"), Auth(mode="wrong_value"), Limits(nth=1))),
        HALVES,
        Expectation(complete=False, allowed_problem_types=("unauthorizedRequest", "unrecognizedAggregationJob")),
        poplar1=REFUSED_JOB_POPLAR1,
    ),
    _scenario(
        "wrong-auth-scheme", "6. Request authentication",
        """The Leader's first aggregation-job PUT presents its token as HTTP Basic credentials
        instead of DAP-Auth-Token / Bearer. The Helper MUST refuse it (unauthorizedRequest)
        without changing state; the Leader abandons that job and the later jobs succeed, so
        the aggregate is exact over the second half of the reports.""",
        _plan(Rule("basic-auth", Matcher(link=L2H, kind="agg_init"), Auth(mode="wrong_scheme"), Limits(nth=1))),
        HALVES,
        Expectation(complete=False, allowed_problem_types=("unauthorizedRequest", "unrecognizedAggregationJob")),
        poplar1=REFUSED_JOB_POPLAR1,
    ),
    _scenario(
        "bad-collector-token", "6. Request authentication",
        """The Collector's first collection-job PUT carries a wrong DAP-Auth-Token. The Leader
        MUST refuse it with unauthorizedRequest (403) and create no job (the job ID of the
        refused PUT is never answered); the Collector's next attempt, with its own token,
        creates the job and returns the exact, complete aggregate.""",
        _plan(Rule("wrong-collector-token", Matcher(link=K2L, kind="collection_create"),
                   Auth(mode="wrong_value"), Limits(nth=1))),
        expect=Expectation(allowed_problem_types=("unauthorizedRequest",)),
    ),
    _scenario(
        "forged-credentials-agg-init", "6. Request authentication",
        """After the Helper answered the first aggregation-job PUT, the same PUT is sent again
        five times with forged credentials: none, a wrong DAP-Auth-Token, a wrong Bearer
        token, the token as HTTP Basic, and a wrong Bearer beside the genuine token. The
        Helper MUST refuse each with unauthorizedRequest and not answer from the job it stored
        (a replayed AggregationJobResp would accept a forgery); the genuine jobs are untouched
        and the aggregate is exact and complete.""",
        _forged_credentials(L2H, "agg_init"),
        expect=REFUSED,
    ),
    _scenario(
        "forged-credentials-agg-share", "6. Request authentication",
        """After the Helper answered the AggregateShareReq, the same request is sent again with
        each forged credential (none, wrong DAP-Auth-Token, wrong Bearer, Basic, a wrong Bearer
        beside the genuine token). The Helper MUST refuse each with unauthorizedRequest instead
        of serving the aggregate share it stored; the collection is exact and complete.""",
        _forged_credentials(L2H, "agg_share"),
        expect=REFUSED,
    ),
    _scenario(
        "forged-credentials-collection-create", "6. Request authentication",
        """After the Leader answered the Collector's collection-job PUT, the same PUT is sent
        again with each forged credential. The Leader MUST refuse each with
        unauthorizedRequest (not answer 201 from the job it stored) and leave the job as it
        is; the collection is exact and complete.""",
        _forged_credentials(K2L, "collection_create"),
        expect=REFUSED,
    ),
    _scenario(
        "forged-credentials-collection-poll", "6. Request authentication",
        """Every poll of the collection job is sent again, after the Leader answered it, with
        each forged credential. The Leader MUST refuse each with unauthorizedRequest: a forged
        poll of a finished job must not be served the aggregate. The Collector's own polls get
        the exact, complete aggregate.""",
        _forged_credentials(K2L, "collection_poll", limits=Limits()),
        expect=REFUSED,
    ),
    _scenario(
        "forged-credentials-delete", "6. Request authentication",
        """After the Helper answered the first aggregation-job PUT, DELETEs of that job arrive
        with forged credentials (none, wrong DAP-Auth-Token, wrong Bearer, Basic); after the
        Leader answered the collection-job PUT, DELETEs of that job arrive the same way. Both
        MUST be refused with unauthorizedRequest and delete nothing: the collection finishes
        with the exact, complete aggregate.""",
        _plan(*_forged_credentials(L2H, "agg_init", "delete_job", WRONG_CREDENTIALS).rules,
              *_forged_credentials(K2L, "collection_create", "delete_collection", WRONG_CREDENTIALS).rules),
        expect=REFUSED,
    ),
    # --- collection (Collector -> Leader) ----------------------------------------------------
    _scenario(
        "duplicate-collection-create", "15. Collection job lifecycle (Collector ↔ Leader)",
        """The Collector's collection-job PUT reaches the Leader twice. An identical PUT is a
        safe retry: 201 again and still one job, one AggregateShareReq, one exact and complete
        aggregate.""",
        _plan(Rule("dup-collect", Matcher(link=K2L, kind="collection_create"), Duplicate(copies=1))),
    ),
    _scenario(
        "mutate-collection-create", "15. Collection job lifecycle (Collector ↔ Leader)",
        """After the Leader answered the Collector's collection-job PUT, a PUT under the same
        collection job ID asks for another query (the next batch interval). The job exists
        with a different query, so the Leader MUST refuse it with a 4xx and keep the job as
        it was: the collection returns the exact, complete aggregate of the original
        interval.""",
        _plan(Rule("mutated-collection", Matcher(link=K2L, kind="collection_create"),
                   Synthesize(message="collection_mutated"), Limits(nth=1))),
        expect=Expectation(allowed_problem_types=("invalidMessage", "batchInvalid")),
    ),
    _scenario(
        "overlapping-collections", "14. Batch validation",
        """After one hour's interval was collected, the Collector asks for a two-hour interval
        that contains it. The batch would include reports already collected in a different
        batch, so the Leader refuses it with batchOverlap; the first collection is exact and
        complete. The refused collection makes the run a clean failure by definition, which
        is the expected class. The fault is in the workload (the queries), so the plan has no
        rules.""",
        _plan(),
        _steps(Upload(count=8), Collect(label="main"), Collect(label="overlap", interval_extra_s=TIME_PRECISION_S)),
        Expectation(outcome=Outcome.CLEAN_FAILURE, allowed_problem_types=("batchOverlap",)),
    ),
]

#: Poplar1 entries: BITS 4, 8 reports from a fixed seed (two heavy hitters), a walk down the
#: prefix tree (:mod:`faults.heavy_hitters`). The reference Leader creates one aggregation
#: job per collection (level): the init (step 0) and one continuation (step 1), so a fault
#: with ``Limits(nth=1)`` on a continuation hits level 0's job.
POPLAR1_BITS = 4
POPLAR1_REPORTS = 8
#: The full walk (4 levels) for the baseline; two levels for the step-skew faults.
HH_WALK = heavy_hitters_workload(POPLAR1_BITS, POPLAR1_REPORTS)
HH_TWO = heavy_hitters_workload(POPLAR1_BITS, POPLAR1_REPORTS, levels=2)
#: Step-skew faults: besides the VDAF's own rules, the Helper must never accept a wrong step.
SKEW = Expectation(allowed_problem_types=("stepMismatch", "invalidMessage"))
SKEW_RETRIED = Expectation(allowed_problem_types=("stepMismatch", "invalidMessage"), optional_recovery=LEADER_RETRY)

_ENTRIES += [
    # --- Poplar1: real continuations (Leader -> Helper) ---------------------------------------
    _scenario(
        "poplar1-heavy-hitters", "10.5 Continuation (multi-round VDAFs)",
        """No fault: a Poplar1 heavy-hitters walk. Eight 4-bit reports (two heavy hitters) are
        collected once per tree level, each level's candidates being the children of the
        previous level's prefixes counted at least twice; every aggregation job runs the init
        and one real continuation (step 1). Every level's counts are exact, each parent's
        count is the sum of its children's, and the batch is queried under four distinct
        aggregation parameters (max_batch_query_count 4).""",
        _plan(),
        HH_WALK,
    ),
    _scenario(
        "drop-agg-continue-response", "10.6 The `step` field and recovering from step skew",
        """The Helper's answer to the first continuation (step 1) is lost after the Helper
        committed the step. The Leader re-sends the same step byte for byte; the Helper must
        recognise the identical request and replay its stored AggregationJobResp, byte for
        byte, without running the VDAF again. The counts of both levels are exact and
        complete. Unlike the synthesized Prio3 continuations of inject-continue-step-skew,
        this is real step skew.""",
        _plan(Rule("lose-continue-reply", Matcher(link=L2H, kind="agg_continue"), DropResponse(), Limits(nth=1))),
        HH_TWO, SKEW_RETRIED,
    ),
    _scenario(
        "duplicate-agg-continue", "10.6 The `step` field and recovering from step skew",
        """Every continuation (step 1) reaches the Helper twice, concurrently. The Helper
        processes one and answers the identical other with its stored response (byte for
        byte), or refuses it with stepMismatch (the replay is a MAY); nothing is
        aggregated twice, and the counts of both levels are exact and complete.""",
        _plan(Rule("dup-continue", Matcher(link=L2H, kind="agg_continue"), Duplicate(copies=1))),
        HH_TWO, SKEW,
    ),
    _scenario(
        "mutate-agg-continue", "10.6 The `step` field and recovering from step skew",
        """After the Helper answered the first continuation (step 1), the same step is POSTed
        again with one bit of a report's ping-pong message flipped. A different body at the
        step just processed is not a retry: the Helper MUST answer stepMismatch (Janus
        answers 409, also accepted) and change nothing, so the counts of both levels stay
        exact and complete.""",
        _plan(Rule("mutated-continue", Matcher(link=L2H, kind="agg_continue"),
                   Synthesize(message="continue_mutated"), Limits(nth=1))),
        HH_TWO, SKEW,
    ),
    _scenario(
        "skip-step", "10.6 The `step` field and recovering from step skew",
        """As soon as the Helper has answered the first aggregation job's init, it receives a
        continuation for step 2 (built from the init), while the Leader's genuine step 1 is
        held back 300 ms. The Helper expects step 1, so it MUST answer stepMismatch and keep
        the job waiting; the genuine step 1 then succeeds and the counts of both levels are
        exact and complete.""",
        _plan(Rule("step-2-first", Matcher(link=L2H, kind="agg_init"),
                   Synthesize(message="continue_step", step=2), Limits(nth=1)),
              Rule("hold-step-1", Matcher(link=L2H, kind="agg_continue"), Delay(delay_ms=300), Limits(nth=1))),
        HH_TWO, SKEW,
    ),
    _scenario(
        "replay-old-step", "10.3 Re-sent init requests",
        """After the first aggregation job was continued (step 1 answered), its init PUT (step
        0) is replayed byte for byte. Once a job has been continued, any init PUT for it MUST
        fail with a 4xx (no rewinding; the reference Helper, like Janus, answers 409) and leave
        the job unchanged, so the counts of both levels are exact and complete. With Prio3
        (replay-agg-init-after-collection) the same replay is answered from storage.""",
        _plan(Rule("replay-init", Matcher(link=L2H, kind="agg_init"),
                   ReplayLater(after_event="agg_continue_done"), Limits(nth=1))),
        HH_TWO, SKEW,
    ),
    _scenario(
        "delay-agg-continue-beyond-timeout", "10.6 The `step` field and recovering from step skew",
        """The Helper's answer to the first continuation is held longer than the Leader's
        request timeout. The Leader gives up on that attempt and re-sends step 1; the Helper,
        which committed the step already, replays its stored response byte for byte and the
        late original answer is discarded. The counts of both levels are exact and
        complete.""",
        _plan(Rule("slow-continue-reply", Matcher(link=L2H, kind="agg_continue", phase="response"),
                   Delay(delay_ms=LEADER_REQUEST_TIMEOUT_MS + 300), Limits(nth=1))),
        HH_TWO, SKEW_RETRIED,
    ),
    _scenario(
        "bad-leader-token-continue", "6. Request authentication",
        """The Leader's first continuation (step 1) carries a wrong DAP-Auth-Token. The Helper
        MUST refuse it with unauthorizedRequest and leave the job waiting at step 1 (no state
        change); the Leader abandons that job, so level 0's reports may be lost (the
        reference Leader puts a collection's reports in one job: a clean failure), and level 1
        is collected exactly.""",
        _plan(Rule("wrong-token-continue", Matcher(link=L2H, kind="agg_continue"), Auth(mode="wrong_value"),
                   Limits(nth=1))),
        HH_TWO,
        Expectation(outcome=Outcome.PASS_OR_CLEAN_FAILURE, complete=False,
                    allowed_problem_types=("unauthorizedRequest", "unrecognizedAggregationJob", "stepMismatch",
                                           "invalidBatchSize")),
    ),
    _scenario(
        "forged-credentials-agg-continue", "6. Request authentication",
        """After the Helper answered the first continuation (step 1), it is POSTed again with
        each forged credential (none, wrong DAP-Auth-Token, wrong Bearer, Basic, a wrong
        Bearer beside the genuine token). The Helper MUST refuse each with
        unauthorizedRequest, not replay its stored answer; the counts of both levels are exact
        and complete.""",
        _forged_credentials(L2H, "agg_continue"),
        HH_TWO,
        Expectation(allowed_problem_types=("unauthorizedRequest", "stepMismatch", "invalidMessage")),
    ),
    # --- Poplar1: aggregation parameters (Collector -> Leader) -------------------------------
    _scenario(
        "poplar1-level-not-allowed", "12. Anti-replay",
        """After levels 0 and 1 were collected, the Collector asks for level 1 again with other
        prefixes. VDAF-08 allows one aggregation parameter per tree level, so every report
        is report_replayed for it and the collection MUST fail, a clean failure (the reference
        Leader fails it with invalidBatchSize); the two earlier levels stay exact and
        consistent. The fault is in the workload (the queries), so the plan has no rules.""",
        _plan(),
        heavy_hitters_workload(POPLAR1_BITS, POPLAR1_REPORTS, levels=2, extra=((1, ("01", "11")),)),
        Expectation(outcome=Outcome.CLEAN_FAILURE, allowed_problem_types=("invalidBatchSize", "invalidMessage")),
    ),
    _scenario(
        "poplar1-too-many-queries", "14. Batch validation",
        """The Collector walks three levels of the prefix tree, but the task allows only two
        queries per batch (max_batch_query_count 2, counted in distinct aggregation
        parameters). The third collection MUST be refused with batchQueriedTooManyTimes; the
        first two levels are exact and complete. The fault is in the workload (the task and
        the queries), so the plan has no rules.""",
        _plan(),
        heavy_hitters_workload(POPLAR1_BITS, POPLAR1_REPORTS, levels=3, max_batch_query_count=2),
        Expectation(outcome=Outcome.CLEAN_FAILURE, allowed_problem_types=("batchQueriedTooManyTimes",)),
    ),
]

# --- network entries (faults.network; they need --network netns, docs/network.md) ------------------
# Appended as one block. A network rule cuts or slows the packets of a link between its source
# role and the fault proxy, inside a router namespace; the windows below are sized for the
# reference Leader's harness timings (1 s request timeout, 8 s retry budget, images.toml).

#: A link partition long enough for several of the Leader's 1 s attempts, well inside its 8 s budget.
PARTITION_MS = 3_000
#: 100 reports of Prio3Histogram(100): aggregation jobs of ~10-25 reports, 5-13 KB init requests.
HUNDRED = WorkloadSpec(task=TaskSpec(vdaf=VdafParams.from_interop(
    {"type": "Prio3Histogram", "length": "100", "chunk_length": "10"})), steps=(Upload(count=100), Collect()))


def _net_plan(*rules: NetRule, seed: int = 1) -> Plan:
    return Plan(seed=seed, net_rules=rules)


_NET_ENTRIES = [
    _scenario(
        "partition-leader-helper", "10.3 Re-sent init requests",
        """The Leader<->Helper link is partitioned both ways for 3 s from the moment the first
        AggregationJobInitReq reaches the Helper's side: the Helper prepares the job, its answer is
        lost on the wire and the Leader's retries time out until the partition heals. The Leader
        then re-sends the stored request byte for byte and the Helper replays its stored
        AggregationJobResp (a job may also be abandoned cleanly if its retry budget runs out); no
        report is aggregated twice and the aggregate is exact and complete.""",
        _net_plan(NetRule("cut-l2h", L2H, Partition(), direction="both",
                          window=Window(after_kind="agg_init", for_ms=PARTITION_MS))),
    ),
    _scenario(
        "one-way-partition-helper-answers", "10.3 Re-sent init requests",
        """Only the Helper's direction of the Leader<->Helper link is cut, for 2.5 s from the first
        AggregationJobInitReq: the request arrives and the Helper commits the job, but its
        AggregationJobResp (and every SYN-ACK of the Leader's new connections) vanishes at the TCP
        level. After the heal the Leader's byte-identical retry is answered from the Helper's
        stored response, so nothing is aggregated twice; the aggregate is exact and complete.""",
        _net_plan(NetRule("lose-helper-answers", L2H, Partition(), direction="response",
                          window=Window(after_kind="agg_init", for_ms=2_500))),
    ),
    _scenario(
        "reset-mid-agg-share", "16. Aggregate share request (Leader → Helper)",
        """The Helper's answer to the first AggregateShareReq is cut by a TCP reset after its first
        200 bytes (the headers and the start of the AggregateShare): both ends see the connection
        reset mid-response. The Leader re-sends the stored request; the Helper replays the identical
        encrypted share without consuming another query (max_batch_query_count is 1), and the
        aggregate is exact and complete.""",
        _net_plan(NetRule("rst-share", L2H, Reset(after_bytes=200), direction="response",
                          window=Window(after_kind="agg_share"))),
    ),
    _scenario(
        "loss-20-all-links", "10.3 Re-sent init requests",
        """Every link loses 20 % of its packets in both directions for the whole run (seeded). TCP
        retransmits; a Leader request that misses its 1 s timeout is re-sent byte for byte and
        answered from the Helper's storage; the run is slower but the aggregate is exact and
        complete, nothing counted twice.""",
        _net_plan(*(NetRule(f"loss-{name}", link, Loss(probability=0.2)) for name, link in
                    (("c2l", C2L), ("k2l", K2L), ("l2h", L2H)))),
    ),
    _scenario(
        "slow-helper-link", "10.3 Re-sent init requests",
        """The Leader<->Helper link is limited to 256 kbit/s (a token bucket, tbf) both ways while
        100 reports of a Prio3Histogram(100) are uploaded and aggregated (aggregation jobs of 5-13 KB
        init requests). Every job gets through within the Leader's timeouts, or is re-sent
        identically; the aggregate over the 100 reports is exact and complete.""",
        _net_plan(NetRule("slow-l2h", L2H, Rate(kbit=256))),
        HUNDRED,
    ),
    _scenario(
        "client-partition-during-uploads", "9.1 Client procedure",
        """The Client<->Leader link is partitioned for 1.5 s from the third upload on: the Leader
        stores that report but its 201 is lost on the wire. The reference Client has no
        application-level retry for a transport error; TCP's retransmissions carry the answer (and
        the next upload) across once the link heals, within the Client's 15 s timeout. Every
        report is stored once and counted once: the aggregate is exact and complete.""",
        _net_plan(NetRule("cut-c2l", C2L, Partition(), window=Window(after_kind="upload", after_nth=3,
                                                                     for_ms=1_500))),
    ),
    _scenario(
        "collector-partition-during-polling", "15. Collection job lifecycle (Collector ↔ Leader)",
        """The Collector<->Leader link is partitioned for 2 s from the second collection poll on.
        The poll and its answer wait in TCP retransmission; polling is safe to repeat and the
        collection job's state is the Leader's, so once the link heals the Collector gets the same
        exact, complete aggregate.""",
        _net_plan(NetRule("cut-k2l", K2L, Partition(), window=Window(after_kind="collection_poll", after_nth=2,
                                                                     for_ms=2_000))),
    ),
    _scenario(
        "reorder-leader-helper-packets", "10.1 Leader: creating a job",
        """Packets on the Leader<->Helper link are reordered (each held, with probability 0.5, until
        the next packet of its direction overtook it, at most 200 ms) while 100 reports are
        aggregated. TCP reassembles every message, so the Helper sees the same AggregationJobInitReq
        bytes and the Leader the same PrepareResps in the same order (a reordered list would abort
        the job): the aggregate is exact and complete.""",
        _net_plan(NetRule("reorder-l2h", L2H, Reorder(probability=0.5, max_hold_ms=200))),
        HUNDRED,
    ),
    _scenario(
        "blackhole-agg-init", "10.3 Re-sent init requests",
        """From the first AggregationJobInitReq on, the connection that carried it is a black hole
        (a half-open connection: every packet dropped, no reset), while new connections work. The
        Helper has prepared the job; the Leader waits for its 1 s timeout, re-sends the request on
        a new connection and gets the stored AggregationJobResp: nothing aggregated twice, the
        aggregate exact and complete.""",
        _net_plan(NetRule("blackhole-l2h", L2H, Blackhole(), window=Window(after_kind="agg_init"))),
    ),
    _scenario(
        "latency-all-links", "10.3 Re-sent init requests",
        """Every link adds 150 ms +- 100 ms (seeded jitter, order kept) to each packet in both
        directions: round trips of 300-500 ms, so a Leader request with a retransmission can miss
        its 1 s timeout and be re-sent. Re-sent requests are byte-identical and answered from the
        Helper's storage; the aggregate is exact and complete.""",
        _net_plan(*(NetRule(f"latency-{name}", link, Latency(delay_ms=150, jitter_ms=100)) for name, link in
                    (("c2l", C2L), ("k2l", K2L), ("l2h", L2H)))),
    ),
]
_ENTRIES += _NET_ENTRIES

#: name -> Scenario, in catalogue order.
CATALOGUE: dict[str, Scenario] = dict(_ENTRIES)
assert len(CATALOGUE) == len(_ENTRIES), "duplicate catalogue name"


class UnknownScenario(KeyError):
    """No catalogue entry has this name; the message lists the nearest names."""

    def __init__(self, name: str, *, near: list[str]) -> None:
        self.name = name
        self.near = near
        super().__init__(name)

    def __str__(self) -> str:
        hint = f"; did you mean {', '.join(self.near)}?" if self.near else f"; known: {', '.join(CATALOGUE)}"
        return f"unknown fault {self.name!r}{hint}"


def names() -> list[str]:
    return list(CATALOGUE)


def get_scenario(name: str) -> Scenario:
    """The catalogue entry ``name``; :class:`UnknownScenario` (a KeyError) names near matches."""
    try:
        return CATALOGUE[name]
    except KeyError:
        near = difflib.get_close_matches(name, list(CATALOGUE), n=3, cutoff=0.5)
        raise UnknownScenario(name, near=near) from None


# --- docs/faults.md ----------------------------------------------------------------------------

_OUTCOME_TEXT = {"pass": "pass", "clean_failure": "clean failure", "pass_or_clean_failure": "pass or clean failure"}

_INTRO = """\
# The fault catalogue

`faults/catalogue.py` holds the named scenarios `faultrun --fault NAME` runs (`faultrun --list`
prints their one-line docs, `faultrun --all` runs them all). Each entry is a fault plan (plain
`Plan`/`Rule` values, printed below as the TOML `faultrun --plan` accepts), the honest workload it
runs under, the expected-behaviour class and the section of `shared/spec/dap-09.md` it tests;
section 21 of that file lists the outcome a conformant Leader/Helper pair should show under each
fault. This page is generated from the catalogue: `.venv/bin/python -m faults.catalogue >
docs/faults.md` (a test keeps the two equal).

Every scenario provisions a fresh Prio3Histogram(16) task (time_interval, `time_precision` 3600 s,
`min_batch_size` 1, `max_batch_query_count` 1) and uploads 6-8 reports, report *i* measuring bucket
*i*, so the aggregate itself names which reports were counted — except the Poplar1 entries (the
last ones): a Poplar1 task with 4 bits, 8 reports with known bit strings (two heavy hitters, from a
fixed seed; `faults/heavy_hitters.py`) and one collection per level of the prefix tree, each with
its aggregation parameter, checked prefix by prefix (docs/poplar1.md). Prio3 finishes in the init
round, so the Prio3 entries can only emulate step skew with synthesized continuations
(`inject-continue-step-skew`); the Poplar1 entries (`drop-agg-continue-response`,
`duplicate-agg-continue`, `mutate-agg-continue`, `skip-step`, `replay-old-step`,
`delay-agg-continue-beyond-timeout`) are the real thing: each job has a genuine step-1
continuation.

Expected outcomes:

- **pass**: the collection returns the exact aggregate. With *complete* it covers every acknowledged
  report; without, the fault legitimately removed some (they must then be missing on both
  Aggregators, never half-counted).
- **clean failure**: the spec makes the run end in a refusal (e.g. `batchMismatch`); the checker
  asserts that no wrong aggregate, double count, unexpected 5xx or auth bypass ever happened.
- **pass or clean failure**: either, depending on timing the fault cannot control (stated per entry).

Allowed problem types are DAP problem types the checker accepts on 4xx answers in that scenario
beyond its generic table. Faults that must leave some reports aggregated normally hit only the first
matching message and upload the reports in two halves with a pause between, so the halves land in
different aggregation jobs.
"""


def _step_text(s: object) -> str:

    if isinstance(s, Upload):
        return f"upload {s.count}" + (f" (time +{s.time_offset_s} s)" if s.time_offset_s else "")
    if isinstance(s, Collect):
        extra = f", interval widened by {s.interval_extra_s} s" if s.interval_extra_s else ""
        if s.agg_level is not None:
            extra += f" at level {s.agg_level}, prefixes {', '.join(s.agg_prefixes)}"
        return f"collect `{s.label}`{extra}"
    if isinstance(s, Pause):
        plural = "s" if s.job_intervals > 1 else ""
        jobs = f" + {s.job_intervals} Leader job interval{plural}" if s.job_intervals else ""
        return f"pause {s.ms} ms{jobs}"
    return f"fire `{getattr(s, 'name', s)}`"


def markdown() -> str:
    """``docs/faults.md``: a table, then one section per entry."""

    lines = [_INTRO, "| name | outcome | spec section |", "|---|---|---|"]
    for n, s in CATALOGUE.items():
        lines.append(f"| [`{n}`](#{n}) | {_OUTCOME_TEXT[s.expect.outcome]} | {s.spec_section} |")
    lines.append("")
    for n, s in CATALOGUE.items():
        ex = s.expect
        lines += [f"## `{n}`", "", s.doc, "",
                  f"- **Spec**: dap-09.md § {s.spec_section}",
                  f"- **Expected**: {_OUTCOME_TEXT[ex.outcome]}" + ("" if ex.complete else " (completeness not required)")]
        if ex.allowed_problem_types:
            lines.append("- **Allowed problem types**: " + ", ".join(f"`{p}`" for p in ex.allowed_problem_types))
        if ex.rejected_uploads:
            lines.append("- **Uploads the Leader SHOULD refuse** (never counted): "
                         + ", ".join(f"report {i} with `{p}`" for i, p in ex.rejected_uploads.items()))
        if ex.optional_recovery:
            lines.append(f"- **Relies on an optional recovery**: {ex.optional_recovery}; without it the run may "
                         "end in a clean failure or lose those reports, said as \"without optional recovery\"")
        for family, other in sorted(s.expect_by_family.items()):
            lines.append(f"- **Under `--vdaf {family}`**: {_OUTCOME_TEXT[other.outcome]}"
                         + ("" if other.complete else " (completeness not required)")
                         + (f"; allowed problem types {', '.join(f'`{p}`' for p in other.allowed_problem_types)}"
                            if other.allowed_problem_types and other.allowed_problem_types != ex.allowed_problem_types
                            else ""))
        lines.append("- **Workload**: " + "; ".join(_step_text(x) for x in s.workload.steps))
        if s.workload.task.vdaf.type != "Prio3Histogram" or s.workload.measurements is not None:
            t = s.workload.task
            lines.append(f"- **Task**: `{json.dumps(t.vdaf.to_interop())}`, max_batch_query_count "
                         f"{t.max_batch_query_count}"
                         + (f"; measurements {', '.join(s.workload.measurements)}"
                            if s.workload.measurements is not None else ""))
        net = " --network netns" if s.plan.needs_network else ""  # network entries: docs/network.md
        lines += ["", "```sh", f".venv/bin/faultrun{net} --fault {n}", "```", ""]
        if s.plan.rules or s.plan.net_rules:
            lines += ["Plan:", "", "```toml", dumps_plan(s.plan).rstrip(), "```", ""]
        else:
            lines += ["Plan: no rules (the fault is in the workload).", ""]
    return "\n".join(lines).rstrip() + "\n"


__all__ += ["markdown"]

if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.stdout.write(markdown())
