"""Per-role conformance: which Aggregator broke which DAP-09 rule, read off the history.

The counting invariants (:mod:`harness.check.counting`) say *that* a run went wrong; these
say *who* did what. Each finding names the role and cites the section of
``shared/spec/dap-09.md`` it breaks, e.g. "Leader: report r offered in aggregation jobs J1
and J2 (§10.1, §12)". The Leader's conduct is judged from its own requests (never the
proxy's copies) and from the answers as the Leader received them; the Helper's from its real
answers to requests that reached it unchanged with genuine credentials.

=====================  ======  ==========  ===============================================
invariant              role    level       breaks
=====================  ======  ==========  ===============================================
``leader-jobs``        Leader  MUST        a report offered in two aggregation jobs of one
                                           aggregation parameter (§10.1 step 5, §12), a
                                           failed init re-sent under a new job ID or with
                                           another body (§10.3)
``leader-late-jobs``   Leader  MUST        an aggregation job with reports of a batch whose
                                           AggregateShareReq it already sent (§16 step 5)
``leader-retries``     Leader  SHOULD      a retryable answer (429, 5xx, no answer) not
                                           retried before the job was given up (§10.3:
                                           creation is retryable) -- optional: reported as a
                                           recovery the run did without, never a violation
``helper-order``       Helper  MUST        PrepareResps not the request's report IDs in the
                                           request's order (§10.2 step 6)
``batch-agreement``    either  MUST        an AggregateShareReq whose count/checksum is not
                                           what the Leader's jobs committed (Leader, §16
                                           step 1), or a Helper that refuses one that
                                           agrees with the reports it accepted, or accepts
                                           one that does not (Helper, §16 step 3)
``collection-jobs``    Leader  MUST        two different CollectionReqs under one job ID
                                           both accepted (§15 step 3)
=====================  ======  ==========  ===============================================

**Not a finding:** a report offered again after the Helper answered ``report_too_early``
(the one rejection after which a later job may carry it, §10.1) or refused the earlier
request as a whole with a 4xx (it changed nothing, §6, §10.2); re-offering under another
aggregation parameter (Poplar1 walks a batch once per level); anything the proxy changed,
forged or answered itself (judged by the other invariants); what a history cannot show
(an answer lost in transport leaves the Helper's commit unknown: that batch is not judged).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from faults.vocabulary import LEADER_HELPER
from harness.check.flows import Context, Flow, is2xx, make_verdict
from harness.check.verdict import Verdict

__all__ = ["batch_agreement", "collection_jobs", "given_up_without_retry", "helper_order", "leader_jobs",
           "leader_late_jobs", "leader_retries"]

_RETRYABLE = frozenset({429, 500, 502, 503, 504})


# --- the Leader's own traffic, as it saw it -----------------------------------------------------------


def _leader_requests(ctx: Context, *kinds: str) -> list[Flow]:
    """The Leader's own requests to the Helper (never the proxy's copies), in order."""
    return [f for f in ctx.of_kind(*kinds) if f.link == LEADER_HELPER and not f.is_copy and f.request is not None]


def _leader_saw(fl: Flow) -> str:
    """What the Leader got back: ``ok`` (the Helper's 2xx, unchanged), ``retryable`` (429/5xx,
    also one the proxy made up, or no answer at all), ``refused`` (another 4xx), ``changed``
    (a body the proxy altered: unknown to us)."""
    answered = fl.applied("answers_in_place")
    if answered:
        status = answered[-1].changed.status
        return "retryable" if status in _RETRYABLE else "ok" if is2xx(status) else "refused"
    if fl.applied("drops") or fl.response is None:
        return "retryable"  # no answer reached the Leader: a timeout or a reset
    if fl.applied("changes_body", phase="response"):
        return "changed"
    status = fl.response.status
    if status in _RETRYABLE:
        return "retryable"
    return "ok" if is2xx(status) else "refused"


def _agg_param(fl: Flow, ctx: Context | None = None) -> str:
    """The aggregation parameter (digest) a request works under; a continuation carries none:
    its job's init does."""
    if fl.kind == "agg_continue" and ctx is not None:
        return _job_params(ctx).get(fl.path, "")
    return fl.req.agg_param_sha256 or ""


def _job_params(ctx: Context) -> dict[str, str]:
    return ctx.memo("job_params", lambda: {f.path: f.req.agg_param_sha256 or "" for f in ctx.of_kind("agg_init")
                                           if f.request is not None})


def _job(fl: Flow) -> str:
    return fl.req.job_id or fl.path.rstrip("/").rsplit("/", 1)[-1]


def _deleted_by_leader(ctx: Context) -> dict[str, int]:
    """Job path -> seq of the Leader's own DELETE of it."""
    return {f.path: f.first_seq for f in _leader_requests(ctx, "agg_delete")}


# --- leader-jobs ------------------------------------------------------------------------------------------


def leader_jobs(ctx: Context) -> Verdict:
    """Leader: one job per report and aggregation parameter; retries are byte-identical."""
    failures: list[str] = []
    ev: dict[str, Any] = {"role": "leader", "in_two_jobs": {}, "changed_retries": {}}
    inits = _leader_requests(ctx, "agg_init")
    first_offer: dict[tuple[str, str], Flow] = {}  # (report, agg param) -> the init that first carried it
    for fl in inits:
        for rid in fl.req.report_ids:
            key = (rid, _agg_param(fl))
            prev = first_offer.get(key)
            if prev is None or prev.path == fl.path:
                first_offer.setdefault(key, fl)
                continue
            # a later job is allowed after the Helper refused the earlier request as a whole (a 4xx:
            # nothing changed, §6, §10.2) or answered report_too_early for this report (§10.1)
            saw = _leader_saw(prev)
            if saw == "refused" or (saw == "ok" and prev.resp.prepare_states.get(rid) == "reject:report_too_early"):
                first_offer[key] = fl
                continue
            j1, j2 = _job(prev), _job(fl)
            ev["in_two_jobs"].setdefault(rid, [prev.flow_seq, fl.flow_seq])
            if _leader_saw(prev) in ("retryable", "changed"):
                failures.append(f"Leader: re-sent report {rid} of failed aggregation job {j1} under a new job ID "
                                f"{j2} instead of retrying {j1} with identical bytes (dap-09 §10.3; the Helper "
                                f"may have prepared it: §12 then refuses it as report_replayed)")
            else:
                failures.append(f"Leader: report {rid} offered in aggregation jobs {j1} and {j2} "
                                f"(dap-09 §10.1 step 5, §12)")
            first_offer[key] = fl
    for path, by_body in _distinct_bodies(inits).items():
        seqs = sorted(f.flow_seq for f in by_body.values())
        ev["changed_retries"][path] = seqs
        failures.append(f"Leader: re-sent the init of job {_job(next(iter(by_body.values())))} with another "
                        f"body (flows {seqs}): a retry MUST be byte-identical (dap-09 §10.3)")
    n = len({r for r, _ in first_offer})
    return make_verdict("leader-jobs", _dedup(failures), ev,
                        f"Leader: {n} report(s) each offered in one aggregation job; retries identical")


# --- leader-late-jobs ---------------------------------------------------------------------------------------


def _report_times(ctx: Context) -> dict[str, int]:
    """Report ID (hex) -> its time, from the uploads the history maps."""
    times = {u.index: u.time for u in ctx.record.uploads}
    return {rid: times[i] for rid, i in ctx.report_index.items() if i in times}


def _in_batch(share: Flow, init: Flow, rid: str, times: dict[str, int]) -> bool | None:
    """Whether report ``rid`` of ``init`` belongs to the batch ``share`` asks for (None: unknown)."""
    if share.req.batch_id is not None:
        return init.req.batch_id == share.req.batch_id
    if share.req.interval is not None:
        t = times.get(rid)
        if t is None:
            return None
        start, dur = share.req.interval
        return start <= t < start + dur
    return None


def leader_late_jobs(ctx: Context) -> Verdict:
    """Leader: no aggregation job with reports of a batch after its AggregateShareReq (§16 step 5)."""
    failures: list[str] = []
    ev: dict[str, Any] = {"role": "leader", "late": {}}
    shares = _leader_requests(ctx, "agg_share")
    times = _report_times(ctx)
    for init in _leader_requests(ctx, "agg_init"):
        for share in shares:
            if share.first_seq > init.first_seq or (share.req.agg_param_sha256 or "") != _agg_param(init):
                continue
            late = [r for r in init.req.report_ids if _in_batch(share, init, r, times)]
            if late:
                ev["late"].setdefault(init.flow_seq, {"after_share": share.flow_seq, "reports": late})
                failures.append(f"Leader: aggregation job {_job(init)} carries {len(late)} report(s) of a batch "
                                f"whose AggregateShareReq it had sent (flow {share.flow_seq}): no more jobs for a "
                                f"collected batch (dap-09 §16 step 5)")
                break
    return make_verdict("leader-late-jobs", failures, ev, "Leader: no aggregation job for a batch already shared")


# --- leader-retries (SHOULD) --------------------------------------------------------------------------------


def _collection_failed_after(ctx: Context, fl: Flow) -> bool:
    """A Collector's poll after ``fl`` answered with an error by the Leader: a collection job
    failed (the Leader gave the aggregate share up)."""
    return any(g.first_seq > fl.first_seq and g.real_status is not None and g.real_status >= 400
               and not g.applied("answers_in_place") and not ctx.tampered(g) for g in ctx.of_kind("collection_poll"))


def given_up_without_retry(ctx: Context) -> tuple[list[Flow], list[str]]:
    """(the Leader's requests it gave up after one retryable answer, one line each): see
    :func:`leader_retries`; derived once per check."""
    def compute() -> tuple[list[Flow], list[str]]:
        flows: list[Flow] = []
        lines: list[str] = []
        reqs = _leader_requests(ctx, "agg_init", "agg_continue", "agg_share")
        deleted = _deleted_by_leader(ctx)
        for i, fl in enumerate(reqs):
            if _leader_saw(fl) != "retryable":
                continue
            later = reqs[i + 1:]
            if any(g.path == fl.path and g.method == fl.method for g in later):
                continue  # retried
            if (deleted.get(fl.path, -1) > fl.first_seq
                    or (fl.kind != "agg_share" and any(g.kind == "agg_share" for g in later))
                    or (fl.kind == "agg_share" and _collection_failed_after(ctx, fl))):
                what = "the aggregate share request" if fl.kind == "agg_share" else f"aggregation job {_job(fl)}"
                flows.append(fl)
                lines.append(f"Leader: gave up {what} after one retryable answer ({_answer(fl)}) without retrying "
                             f"it (SHOULD: requests to the Helper are retryable, dap-09 §10.3, §16)")
        return flows, _dedup(lines)
    return ctx.memo("given_up_without_retry", compute)


def leader_retries(ctx: Context) -> Verdict:
    """Leader SHOULD retry a retryable answer (429, 5xx, none) before giving a job up.

    Optional (DAP-09 makes job creation and aggregate-share requests retryable, §10.3, §16.4,
    but mandates no retry): a job given up after one such answer is reported as a recovery
    the run did without (``Verdict.optional``), never as a violation. "Given up": the Leader
    DELETEd the job, or asked for the batch's aggregate share, without re-sending it."""
    flows, missing = given_up_without_retry(ctx)
    ev: dict[str, Any] = {"role": "leader", "not_retried": [f.flow_seq for f in flows]}
    detail = "Leader: every retryable answer retried (or the run ended first)" if not missing else "; ".join(missing)
    return Verdict("leader-retries", True, detail, ev, optional=tuple(missing))


def _answer(fl: Flow) -> str:
    answered = fl.applied("answers_in_place")
    if answered:
        return f"{answered[-1].changed.status} from the proxy"
    if fl.response is None or fl.applied("drops"):
        return "no answer"
    return str(fl.response.status)


# --- helper-order -------------------------------------------------------------------------------------------


def _helper_judged(ctx: Context, fl: Flow) -> bool:
    """A request the Helper got as recorded, with genuine credentials, and its real 2xx answer."""
    return (fl.link == LEADER_HELPER and fl.delivered and fl.request is not None and fl.response is not None
            and is2xx(fl.real_status) and not ctx.changed(fl) and not ctx.tampered(fl))


def helper_order(ctx: Context) -> Verdict:
    """Helper: PrepareResps for exactly the request's report IDs, in request order (§10.2 step 6)."""
    failures: list[str] = []
    ev: dict[str, Any] = {"role": "helper", "out_of_order": []}
    n = 0
    for fl in ctx.of_kind("agg_init", "agg_continue"):
        if not _helper_judged(ctx, fl) or not fl.resp.report_ids and not fl.req.report_ids:
            continue
        n += 1
        if tuple(fl.resp.report_ids) != tuple(fl.req.report_ids):
            ev["out_of_order"].append(fl.evidence())
            same_set = sorted(fl.resp.report_ids) == sorted(fl.req.report_ids)
            failures.append(f"Helper: answered {fl.kind} {_job(fl)} (flow {fl.flow_seq}) with "
                            + ("the report IDs in another order" if same_set else "other report IDs")
                            + " than the request (dap-09 §10.2 step 6: entries in request order)")
    return make_verdict("helper-order", failures, ev, f"Helper: {n} answer(s) in request order")


# --- batch-agreement -----------------------------------------------------------------------------------------


def checksum_of(report_ids: Iterable[str]) -> str:
    """XOR over SHA-256(report ID) (dap-09 §16 step 1), hex; all zero for none."""
    acc = bytes(32)
    for rid in report_ids:
        acc = bytes(a ^ b for a, b in zip(acc, hashlib.sha256(bytes.fromhex(rid)).digest(), strict=True))
    return acc.hex()


def _rounds(ctx: Context) -> int:
    try:
        return int(ctx.vdaf.build().ROUNDS)
    except Exception:  # an unknown VDAF: one round trip
        return 1


def _commit_step(fl: Flow) -> int:
    return 0 if fl.kind == "agg_init" else int(fl.req.step or 0)


def _helper_commits(ctx: Context) -> tuple[dict[str, dict[str, int]], bool]:
    """(agg param -> report the Helper finished preparing -> seq of the answer that says so,
    whether every answer is known).

    The Helper commits a report's output share when it answers the VDAF's last round with
    ``continue``/``finished`` (Prio3: the init; Poplar1: the step-1 continuation). A request
    it received but whose answer nobody saw, or a body the proxy changed, makes the set
    unknown."""
    last = _rounds(ctx) - 1
    out: dict[str, set[str]] = {}
    known = True
    for fl in ctx.of_kind("agg_init", "agg_continue"):
        if fl.link != LEADER_HELPER or not fl.delivered:
            continue
        if fl.response is None or ctx.changed(fl) or (ctx.tampered(fl) and is2xx(fl.real_status)):
            known = False  # it may have committed something we cannot see (auth judges the last case)
            continue
        if ctx.tampered(fl):
            continue  # refused: nothing committed
        if not is2xx(fl.real_status) or _commit_step(fl) != last:
            continue
        for rid, state in fl.resp.prepare_states.items():
            if state in ("continue", "finished"):
                _commit(out.setdefault(_agg_param(fl, ctx), {}), rid, fl)
    return out, known


def _commit(into: dict[str, int], rid: str, fl: Flow) -> None:
    """Report ``rid`` committed by ``fl``'s answer: keep the earliest answer's seq."""
    seq = fl.response.seq if fl.response is not None else fl.first_seq
    into[rid] = min(into.get(rid, seq), seq)


def _leader_commits(ctx: Context) -> tuple[dict[str, dict[str, int]], bool]:
    """(agg param -> report the Leader has an output share for -> seq of the answer, whether
    its view is known): its own requests of the last round answered ``continue``/``finished``
    as it received them, in jobs it did not DELETE."""
    last = _rounds(ctx) - 1
    deleted = _deleted_by_leader(ctx)
    out: dict[str, set[str]] = {}
    known = True
    for fl in _leader_requests(ctx, "agg_init", "agg_continue"):
        saw = _leader_saw(fl)
        if saw == "changed":
            known = False
            continue
        if saw != "ok" or _commit_step(fl) != last or fl.response is None or fl.applied("answers_in_place"):
            continue
        if fl.path in deleted:
            continue
        for rid, state in fl.resp.prepare_states.items():
            if state in ("continue", "finished"):
                _commit(out.setdefault(_agg_param(fl, ctx), {}), rid, fl)
    return out, known


def batch_agreement(ctx: Context) -> Verdict:
    """The AggregateShareReq's count and checksum: the Leader's jobs (§16 step 1) and the
    Helper's answer to it (§16 step 3), each against the reports the history shows."""
    failures: list[str] = []
    ev: dict[str, Any] = {"batches": []}
    helper, helper_known = _helper_commits(ctx)
    leader, leader_known = _leader_commits(ctx)
    times = _report_times(ctx)
    inits = {f.flow_id: f for f in ctx.of_kind("agg_init")}
    batch_of_report: dict[str, str | None] = {}  # fixed_size: report -> batch ID from its init
    for f in inits.values():
        for rid in f.req.report_ids:
            batch_of_report.setdefault(rid, f.req.batch_id)

    def in_batch(share: Flow, rid: str) -> bool | None:
        if share.req.batch_id is not None:
            b = batch_of_report.get(rid)
            return None if b is None else b == share.req.batch_id
        if share.req.interval is not None:
            t = times.get(rid)
            return None if t is None else share.req.interval[0] <= t < sum(share.req.interval)
        return None

    judged = 0
    for share in ctx.of_kind("agg_share"):
        if (share.link != LEADER_HELPER or share.request is None or share.req.report_count is None
                or share.req.checksum is None or (share.req.batch_id is None and share.req.interval is None)):
            continue  # not a decoded AggregateShareReq: nothing to compare
        param = share.req.agg_param_sha256 or ""
        asked = (share.req.report_count, share.req.checksum)
        item: dict[str, Any] = {"flow_seq": share.flow_seq, "asked": list(asked)}
        # the Leader's own request against what its jobs had committed when it sent it (a job
        # created later is leader-late-jobs' to judge)
        if not share.is_copy and leader_known and not ctx.changed(share):
            before = [r for r, seq in leader.get(param, {}).items() if seq < share.first_seq]
            members = [r for r in before if in_batch(share, r)]
            if all(in_batch(share, r) is not None for r in before):
                mine = (len(members), checksum_of(members))
                item["leader_committed"] = [mine[0], mine[1]]
                if asked != mine:
                    failures.append(f"Leader: AggregateShareReq (flow {share.flow_seq}) says {asked[0]} report(s) "
                                    f"but its aggregation jobs committed {mine[0]}"
                                    + ("" if asked[0] != mine[0] else " (another checksum)")
                                    + " (dap-09 §16 step 1)")
        # the Helper's answer against the reports it accepted
        # a commit answered while the request was in flight may or may not count: judged only
        # when none was
        answered = share.response.seq if share.response is not None else share.first_seq
        commits = helper.get(param, {})
        before = [r for r, seq in commits.items() if seq < share.first_seq]
        racing = [r for r, seq in commits.items() if share.first_seq <= seq < answered and in_batch(share, r)]
        if racing:
            item["helper_racing"] = racing
        if _helper_judged_share(ctx, share) and helper_known and not racing:
            members = [r for r in before if in_batch(share, r)]
            if all(in_batch(share, r) is not None for r in before):
                theirs = (len(members), checksum_of(members))
                item["helper_accepted"] = [theirs[0], theirs[1]]
                judged += 1
                status, problem = share.real_status, share.problem
                if asked == theirs and problem == "batchMismatch":
                    failures.append(f"Helper: answered batchMismatch to an AggregateShareReq (flow {share.flow_seq}) "
                                    f"that agrees with the {theirs[0]} report(s) it accepted: it counted a report "
                                    f"twice or lost one (dap-09 §16 step 3)")
                elif asked != theirs and is2xx(status):
                    failures.append(f"Helper: accepted an AggregateShareReq (flow {share.flow_seq}) for {asked[0]} "
                                    f"report(s) though it accepted {theirs[0]}"
                                    + ("" if asked[0] != theirs[0] else " (another checksum)")
                                    + ": it MUST answer batchMismatch (dap-09 §16 step 3)")
        ev["batches"].append(item)
    if not helper_known:
        ev["note"] = "an answer of the Helper was lost or a body changed in flight: its side is not judged"
    culprits = sorted({f.split(":", 1)[0].lower() for f in failures})
    ev["role"] = ",".join(culprits) if culprits else "leader,helper"
    return make_verdict("batch-agreement", failures, ev,
                        f"{judged} aggregate share request(s) agree with the reports both Aggregators accepted")


def _helper_judged_share(ctx: Context, share: Flow) -> bool:
    return (share.delivered and share.response is not None and share.real_status is not None
            and not ctx.changed(share) and not ctx.tampered(share))


# --- collection-jobs ----------------------------------------------------------------------------------------


def collection_jobs(ctx: Context) -> Verdict:
    """Leader: a collection job's CollectionReq is immutable (§15 step 3)."""
    failures: list[str] = []
    ev: dict[str, Any] = {"role": "leader", "overwritten": {}}
    accepted = [fl for fl in ctx.of_kind("collection_create") if fl.delivered and is2xx(fl.real_status)
                and not ctx.tampered(fl) and not fl.applied("changes_body")]
    for path, by_body in _distinct_bodies(accepted).items():
        seqs = sorted(f.flow_seq for f in by_body.values())
        ev["overwritten"][path] = seqs
        failures.append(f"Leader: accepted {len(by_body)} different CollectionReqs for collection job "
                        f"{path.rstrip('/').rsplit('/', 1)[-1]} (flows {seqs}): the same ID with another "
                        f"request MUST fail with a 4xx (dap-09 §15 step 3)")
    return make_verdict("collection-jobs", failures, ev, "Leader: no collection job accepted two requests")


def _distinct_bodies(flows: Iterable[Flow]) -> dict[str, dict[str, Flow]]:
    """Path -> {body SHA-256 -> its first flow} for the paths that saw more than one body: one
    resource (an aggregation or collection job) sent or accepted with different requests."""
    by_path: dict[str, dict[str, Flow]] = {}
    for fl in flows:
        if fl.req.body_sha256:
            by_path.setdefault(fl.path, {}).setdefault(fl.req.body_sha256, fl)
    return {path: bodies for path, bodies in by_path.items() if len(bodies) > 1}


def _dedup(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))
