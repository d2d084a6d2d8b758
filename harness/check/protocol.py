"""Invariants over the protocol exchanges: authentication, idempotency, error typing."""

from __future__ import annotations

from typing import Any

from faults.vocabulary import AUTHENTICATED_KINDS, LINK_ROLES, problem_token
from harness.check.counted import ints
from harness.check.counting import same_batch
from harness.check.fill import FillBound, fill_bound
from harness.check.flows import Context, Flow, is2xx, make_verdict
from harness.check.verdict import Verdict

__all__ = ["BARE_4XX", "PROBLEM_TYPES", "anti_replay", "auth", "error_typing", "idempotency"]

_BATCH = ("batchInvalid", "invalidBatchSize", "batchQueriedTooManyTimes", "batchOverlap", "batchMismatch")

#: kind -> DAP problem type tokens a 4xx of that kind may carry (dap-09.md §7.2, §9.2, §10, §14-16).
PROBLEM_TYPES: dict[str, frozenset[str]] = {
    "hpke_config": frozenset({"missingTaskID", "unrecognizedTask", "invalidMessage"}),
    "upload": frozenset({"invalidMessage", "unrecognizedTask", "outdatedConfig", "reportRejected", "reportTooEarly"}),
    "agg_init": frozenset({"unauthorizedRequest", "unrecognizedTask", "invalidMessage"}),
    "agg_continue": frozenset({"unauthorizedRequest", "unrecognizedTask", "invalidMessage",
                               "unrecognizedAggregationJob", "stepMismatch"}),
    "agg_delete": frozenset({"unauthorizedRequest", "unrecognizedTask", "unrecognizedAggregationJob"}),
    "agg_share": frozenset({"unauthorizedRequest", "unrecognizedTask", "invalidMessage", *_BATCH}),
    "collection_create": frozenset({"unauthorizedRequest", "unrecognizedTask", "invalidMessage", *_BATCH}),
    # a failed job's poll carries the failure (the Helper's answer to the AggregateShareReq)
    "collection_poll": frozenset({"unauthorizedRequest", "unrecognizedTask", "invalidMessage", *_BATCH}),
    "collection_delete": frozenset({"unauthorizedRequest", "unrecognizedTask"}),
}

#: kind -> 4xx statuses allowed without a DAP problem document (Janus's behaviour, §7.2 [impl]):
#: 409 mutated re-PUT, 404 unknown collection job, 410 deleted aggregation job.
BARE_4XX: dict[str, frozenset[int]] = {
    "agg_init": frozenset({409, 410}),
    "agg_continue": frozenset({409, 410}),
    "agg_delete": frozenset({404, 410}),
    "collection_create": frozenset({409}),
    "collection_poll": frozenset({404}),
    "collection_delete": frozenset({404}),
}

_AUTH_STATUSES = frozenset({400, 401, 403})


def _answerer(fl: Flow) -> str:
    """The role that answered a flow: the culprit of a wrong answer."""
    return LINK_ROLES[fl.link][1].capitalize() if fl.link in LINK_ROLES else "the target"


def auth(ctx: Context) -> Verdict:
    """Tampered credentials: 400/401/403 unauthorizedRequest, no state change."""
    failures = []
    tampered: list[Flow] = []
    for fl in ctx.flows.values():
        if fl.kind not in AUTHENTICATED_KINDS:
            continue
        if ctx.tampered(fl) and fl.delivered:
            tampered.append(fl)
    ev: dict[str, Any] = {"tampered": [], "genuine_after": {}}
    if not tampered:
        return Verdict("auth", True, "no tampered request to an authenticated endpoint", ev)
    tampered_ids = {fl.flow_id for fl in tampered}
    genuine = [f for f in ctx.flows.values() if f.flow_id not in tampered_ids and f.delivered]
    ev["ambiguous_accepted"] = []
    for fl in tampered:
        ev["tampered"].append(fl.evidence())
        st = fl.real_status
        if st is None:
            continue  # no answer seen (transport error): nothing to judge
        modes = {getattr(f.changed, "mode", None) or getattr(f.changed, "credentials", None)
                 for f in ctx.tampered(fl)}
        if modes == {"conflicting"} and is2xx(st):
            # the genuine credential beside a wrong one: DAP-09 fixes no rule for two credentials,
            # so accepting on the genuine one is allowed (Janus checks the Bearer first and refuses)
            ev["ambiguous_accepted"].append(fl.flow_seq)
            continue
        if st not in _AUTH_STATUSES or fl.problem != "unauthorizedRequest":
            failures.append(f"{_answerer(fl)}: tampered {fl.kind} {fl.path} (flow {fl.flow_seq}) answered {st} "
                            f"{fl.problem or 'without a problem type'}")
        later = [g for g in genuine if g.first_seq > fl.first_seq and g.path == fl.path and g.method == fl.method]
        ok = [g for g in later if is2xx(g.real_status)]
        ev["genuine_after"][fl.flow_id] = [g.flow_seq for g in ok]
        if fl.kind in ("agg_init", "collection_create"):
            conflict = [g for g in later if g.real_status == 409]
            earlier_ok = [g for g in genuine if g.first_seq < fl.first_seq and g.path == fl.path
                          and is2xx(g.real_status)]
            if conflict and not earlier_ok:
                failures.append(f"{_answerer(fl)}: genuine {fl.kind} {fl.path} after the tampered one got 409: "
                                "the tampered request changed state (dap-09 §6)")
        if fl.kind == "collection_create":
            created = [g for g in genuine if g.kind == "collection_create" and g.path == fl.path
                       and is2xx(g.real_status)]
            polls = [g for g in genuine if g.kind == "collection_poll" and g.path == fl.path
                     and g.first_seq > fl.first_seq and is2xx(g.real_status)]
            if polls and not created:
                failures.append(f"Leader: collection job {fl.path} answered a poll though only a tampered PUT created it "
                                "(dap-09 §6)")
        if fl.kind == "agg_init":
            rids = set(fl.req.report_ids)
            seen_genuinely: set[str] = set()
            for g in sorted((g for g in genuine if g.kind == "agg_init"), key=lambda g: g.first_seq):
                states = g.resp.prepare_states if is2xx(g.real_status) else {}
                if g.first_seq > fl.first_seq:
                    replayed = [r for r, s in states.items()
                                if r in rids and s.endswith("report_replayed") and r not in seen_genuinely]
                    if replayed:
                        failures.append(f"Helper: reports {replayed} of tampered init {fl.path} later answered "
                                        f"report_replayed: the tampered request changed state")
                if is2xx(g.real_status):
                    seen_genuinely |= set(g.req.report_ids)
    amb = len(ev["ambiguous_accepted"])
    return make_verdict("auth", failures, ev, f"{len(tampered) - amb} tampered request(s) refused without state change"
                        + (f"; {amb} carrying the genuine credential beside a wrong one accepted (allowed)"
                           if amb else ""))


def _body_key(ctx: Context, fl: Flow) -> tuple | None:
    """What identifies a request body (None: the body was changed in flight — not comparable)."""
    if ctx.changed(fl):
        return None
    s = fl.req
    if s.body_sha256 is not None:
        return (fl.kind, fl.method, fl.path, s.body_sha256)
    # older histories without a body hash: the summary, and a synthesized message is its own body
    synth = fl.origin if (fl.origin or "").startswith("synthesize:") else None
    return (fl.kind, fl.method, fl.path, s.report_ids, s.step, s.report_count, s.checksum, synth)


def idempotency(ctx: Context) -> Verdict:
    """Repeated requests and re-collections agree."""
    failures = []
    resealed: list[str] = []
    ev: dict[str, Any] = {"groups": []}
    done = ctx.completed()
    for a_i, a in enumerate(done):
        for b in done[a_i + 1:]:
            if not same_batch(ctx, a, b) or getattr(a, "agg_param", None) != getattr(b, "agg_param", None):
                continue  # different aggregation parameters (Poplar1 levels) give different results
            if ints(a.result) != ints(b.result) or a.report_count != b.report_count:
                failures.append(f"collections {a.label!r} and {b.label!r} of the same batch disagree: "
                                f"{a.result}/{a.report_count} vs {b.result}/{b.report_count}")
                ev.setdefault("disagreeing_collections", []).append([a.label, b.label])
    # polls of one collection job
    polls: dict[str, list[Flow]] = {}
    for fl in ctx.of_kind("collection_poll"):
        if fl.real_status == 200 and fl.response is not None and fl.resp.report_count is not None:
            polls.setdefault(fl.path, []).append(fl)
    for path, fls in polls.items():
        views = {(f.resp.report_count, tuple(f.resp.interval or ())) for f in fls}
        if len(views) > 1:
            failures.append(f"Leader: polls of {path} returned different collections: {sorted(views)} (dap-09 §15)")
            ev.setdefault("disagreeing_polls", {})[path] = [f.flow_seq for f in fls]
    # repeated init / aggregate-share / continue requests
    groups: dict[tuple, list[Flow]] = {}
    for fl in ctx.of_kind("agg_init", "agg_continue", "agg_share"):
        if not fl.delivered or fl.real_status is None or fl.request is None:
            continue
        if ctx.tampered(fl):
            continue
        key = _body_key(ctx, fl)
        if key is not None:
            groups.setdefault(key, []).append(fl)
    deleted = {}  # job path -> seq of the first successful DELETE (a later re-send may differ)
    for fl in ctx.of_kind("agg_delete"):
        if is2xx(fl.real_status) and fl.response is not None:
            deleted.setdefault(fl.path, fl.response.seq)
    # job path -> seq of the first 2xx continue's *request*: an init re-PUT after the Helper
    # processed it MUST fail (§10.3, no rewinding), so it is not a repeat of the init
    # (harness.check.poplar1 judges it); one sent while the continue was in flight may find
    # the job continued or not, so either answer is compliant
    continued: dict[str, int] = {}
    for fl in ctx.of_kind("agg_continue"):
        if is2xx(fl.real_status) and fl.request is not None:
            continued[fl.path] = min(continued.get(fl.path, fl.first_seq), fl.first_seq)
    failures += _conflicting_inits(groups, deleted, ev)
    for key, fls in groups.items():
        cut = deleted.get(key[2])
        if cut is not None:
            fls = [f for f in fls if f.first_seq < cut]
        cut = continued.get(key[2]) if key[0] == "agg_init" else None
        if cut is not None:
            fls = [f for f in fls if f.first_seq < cut]
        if len(fls) < 2:
            continue
        ev["groups"].append({"kind": key[0], "path": key[2], "flows": [f.flow_seq for f in fls],
                             "statuses": [f.real_status for f in fls]})
        ok = [f for f in fls if is2xx(f.real_status)]
        # a Helper need not replay a continuation it processed: stepMismatch to an identical
        # repeat is allowed (§10.6 MAY; harness.check.poplar1 judges continuations)
        statuses = {"2xx" if is2xx(f.real_status) else f.real_status
                    for f in fls if f.real_status is not None and f.real_status < 500
                    and not (key[0] == "agg_continue" and f.problem == "stepMismatch")}
        if len(statuses) > 1:
            failures.append(f"Helper: same {key[0]} request {key[2]} answered {sorted(map(str, statuses))} "
                            f"(flows {[f.flow_seq for f in fls]})")
        if key[0] in ("agg_init", "agg_continue"):
            states = {tuple(sorted(f.resp.prepare_states.items())) for f in ok}
            if len(states) > 1:
                failures.append(f"Helper: same {key[0]} request {key[2]} got different PrepareResp states "
                                f"(flows {[f.flow_seq for f in ok]})")
        if key[0] == "agg_share":
            # DAP-09 §4.6.2 (digest §16 step 4): handling MUST be idempotent -- identical requests
            # served, one unit of max_batch_query_count (a second unit would be refused: the
            # status check above) -- and they "should all yield the same response" (lowercase).
            # The draft does not require the stored ciphertext: a fresh HPKE encryption of the
            # same share to the same Collector config (Janus 0.7 stores the plaintext share and
            # seals it per request) is a note, never a violation; another config is.
            configs = {f.resp.config_ids for f in ok if f.resp.config_ids}
            bodies = {f.resp.body_sha256 for f in ok if f.resp.body_sha256}
            if len(configs) > 1:
                failures.append(f"Helper: same AggregateShareReq {key[2]} answered under different HPKE configs "
                                f"{sorted(configs)} (flows {[f.flow_seq for f in ok]}): not the same response "
                                "(dap-09 §4.6.2)")
            elif len(bodies) > 1:
                resealed.append(f"Helper: repeated identical AggregateShareReq {key[2]} answered with a fresh HPKE "
                                f"encryption (flows {[f.flow_seq for f in ok]}), not the stored bytes "
                                "(dap-09 §4.6.2: 'should all yield the same response')")
                ev.setdefault("resealed", []).append([f.flow_seq for f in ok])
    if failures:
        return make_verdict("idempotency", failures, ev, "")
    return Verdict("idempotency", True, "repeated requests and collections agree", ev, notes=tuple(resealed))


def _conflicting_inits(groups: dict[tuple, list[Flow]], deleted: dict[str, int], ev: dict[str, Any]) -> list[str]:
    """Init PUTs with different bodies both answered 2xx under one job ID (before any DELETE
    of the job). A Helper stores what it answered 2xx to, so a re-PUT with another body MUST
    fail (dap-09.md §10.3); accepting it means the job was prepared anew. This judges the
    answer itself, whatever the race with the collection made of the counts. ``groups`` hold
    only bodies the Helper received as recorded (none changed in flight)."""
    accepted: dict[str, dict[str, list[Flow]]] = {}  # job path -> body key -> 2xx flows
    for key, fls in groups.items():
        if key[0] != "agg_init":
            continue
        cut = deleted.get(key[2])
        ok = [f for f in fls if is2xx(f.real_status) and (cut is None or f.first_seq < cut)]
        if ok:
            accepted.setdefault(key[2], {})[repr(key[3:])] = ok
    failures = []
    for path, by_body in accepted.items():
        if len(by_body) < 2:
            continue
        seqs = sorted(f.flow_seq for fls in by_body.values() for f in fls)
        ev.setdefault("conflicting_inits", {})[path] = seqs
        failures.append(f"Helper: init PUTs to {path} with {len(by_body)} different bodies all answered 2xx "
                        f"(flows {seqs}): a re-PUT with another body MUST fail (§10.3)")
    return failures


def anti_replay(ctx: Context) -> Verdict:
    """No report is prepared in two aggregation jobs (dap-09.md §12).

    The Helper's own answers decide: a report its 2xx init response did not reject (state
    ``continue``/``finished``) under two job IDs of one task, with one aggregation parameter
    (Poplar1 prepares a report once per parameter), means the second job took a report the
    Helper had already aggregated: it MUST have answered ``report_replayed``. This holds
    whatever the collections counted (a replay that lands after the collection is refused
    as batch_collected by the buckets, not by anti-replay, and counts nothing)."""
    accepted: dict[tuple[str, str], dict[str, int]] = {}  # (report, agg param) -> job path -> flow_seq
    for fl in ctx.of_kind("agg_init"):
        if not fl.delivered or not is2xx(fl.real_status) or _body_key(ctx, fl) is None:
            continue  # not answered by the Helper, or the Helper saw another body than recorded
        if ctx.tampered(fl):
            continue  # judged by auth
        agg_param = fl.req.agg_param_sha256 or ""
        for report_id, state in fl.resp.prepare_states.items():
            if not str(state).startswith("reject"):
                accepted.setdefault((report_id, agg_param), {}).setdefault(fl.path, fl.flow_seq)
    failures: list[str] = []
    ev: dict[str, Any] = {"replayed": {}}
    for (report_id, _), jobs in sorted(accepted.items()):
        if len(jobs) > 1:
            ev["replayed"][report_id] = dict(sorted(jobs.items(), key=lambda kv: kv[1]))
            failures.append(f"Helper: report {report_id} prepared in {len(jobs)} aggregation jobs (flows "
                            f"{sorted(jobs.values())}): a replay MUST be answered report_replayed (§12)")
    n = len({r for r, _ in accepted})
    return make_verdict("anti-replay", failures, ev, f"{n} report(s) prepared, each in one aggregation job")


def _failed_aggregate_share(ctx: Context, poll: Flow) -> bool:
    """Whether the Leader had failed to obtain the Helper's aggregate share for the poll's
    task when it answered the poll: it sent an AggregateShareReq of the task before the poll
    and none of those got a 2xx as the Leader saw it (refused, answered 5xx / 429, or no
    answer at all; a ``respond`` fault's status counts as the Helper's). DAP-09 §4.6.1
    (digest §15): "If obtaining aggregate shares fails, then the Leader responds to
    subsequent HTTP POST requests to the collection job with an HTTP error status and a
    problem document", and §3.2 allows 4xx or 5xx with a type outside the DAP namespace
    (the reference Leader answers 502 / 400 batchMismatch, Janus 500
    ``collection-job-abandoned``)."""
    task_prefix = poll.path.split("/collection_jobs/", 1)[0] + "/"
    shares = [fl for fl in ctx.of_kind("agg_share")
              if fl.first_seq < poll.first_seq and fl.path.startswith(task_prefix) and not fl.is_copy]
    if not shares:
        return False
    for fl in shares:
        injected = fl.applied("answers_in_place")
        if injected:
            status = injected[-1].changed.status
        elif fl.applied("drops") or fl.response is None:
            status = None  # no answer reached the Leader
        else:
            status = fl.response.status
        if isinstance(status, int) and 200 <= status < 300:
            return False
    return True


def _unfillable_collection(ctx: Context, poll: Flow) -> FillBound | None:
    """The fill bound of the poll's collection job when, at the poll, the history shows its
    batch can no longer reach ``min_batch_size`` (:mod:`harness.check.fill`), else None.
    Such a job cannot complete; a Leader that gives it up instead of waiting for more reports
    (DAP-09 §4.6.5: it SHOULD wait; §4.6.1: "it either aborts the collection job or tries
    again later") answers its polls with an error status and a problem document."""
    creates = [fl for fl in ctx.of_kind("collection_create") if fl.path == poll.path and not ctx.tampered(fl)
               and not fl.is_copy and fl.first_seq < poll.first_seq and is2xx(fl.real_status)]
    if not creates:
        return None
    req = creates[0].req
    if req.interval is not None:
        query: dict[str, Any] = {"type": 1, "batch_interval_start": req.interval[0],
                                 "batch_interval_duration": req.interval[1]}
    else:  # fixed_size: bound over every report (a by-ID batch was returned complete: no bound)
        query = {"type": 2, "subtype": 1}
    bound = fill_bound(ctx.record, ctx.events, ctx.scenario, query, poll.first_seq)
    return bound if bound is not None and not bound.can_fill else None


def error_typing(ctx: Context) -> Verdict:
    """Every 4xx carries an expected DAP problem type; no 5xx but injected ones."""
    failures = []
    gave_up: dict[str, str] = {}  # collection job path -> the optional line (one per job)
    ev: dict[str, Any] = {"unexpected": []}
    allowed_extra = {problem_token(p) for p in ctx.expect.allowed_problem_types}
    for fl in ctx.flows.values():
        st = fl.real_status
        if st is None or fl.kind is None:
            continue
        why = None
        if st >= 500:
            bound = None
            if fl.kind == "collection_poll" and fl.resp.problem_type and _failed_aggregate_share(ctx, fl):
                ev.setdefault("relayed", []).append(fl.flow_seq)
            elif fl.kind == "collection_poll" and fl.resp.problem_type and \
                    (bound := _unfillable_collection(ctx, fl)) is not None:
                ev.setdefault("given_up_unfillable", []).append(fl.flow_seq)
                gave_up.setdefault(fl.path, f"Leader: gave up collection job {fl.path} (answered {st}) when its "
                                            f"batch could no longer fill ({bound.summary()}) instead of waiting "
                                            "for more reports (dap-09 §4.6.5: SHOULD wait)")
            else:
                why = f"{st} from the upstream"
        elif 400 <= st < 500:
            tok = fl.problem
            if tok is None:
                if st not in BARE_4XX.get(fl.kind, frozenset()):
                    why = f"{st} without a DAP problem type"
            elif tok not in PROBLEM_TYPES.get(fl.kind, frozenset()) and tok not in allowed_extra:
                why = f"{st} {tok} is not expected for {fl.kind}"
        elif is2xx(st) and fl.resp.decode_error:
            why = f"{st} body does not decode: {fl.resp.decode_error}"
        if why:
            failures.append(f"{_answerer(fl)}: {fl.kind} {fl.method} {fl.path} (flow {fl.flow_seq}): {why}")
            ev["unexpected"].append(fl.evidence())
    if failures:
        return make_verdict("error-typing", failures, ev, "")
    return Verdict("error-typing", True, "every error response is typed as expected", ev,
                   optional=tuple(gave_up.values()))
