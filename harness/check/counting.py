"""Invariants over what was counted: safety, completeness, collection outcomes, rejected uploads."""

from __future__ import annotations

from typing import Any

import attrs

from faults.vocabulary import problem_token
from harness.check.conformance import given_up_without_retry
from harness.check.counted import Counted
from harness.check.fill import not_ready_bounds
from harness.check.flows import Context, is2xx, make_verdict
from harness.check.verdict import Verdict
from harness.record import CollectionRecord

__all__ = ["collections", "completeness", "late_uploads", "rejected_uploads", "safety", "same_batch"]


def safety(ctx: Context) -> Verdict:
    """Each completed collection = sum over a set S of uploaded, unrefused, uncorrupted reports of
    its batch, none twice, report_count = |S|; disjoint batches share no report."""
    failures: list[str] = []
    ev: dict[str, Any] = {"uploaded": sorted(ctx.measurements), "collections": {}}
    status = ctx.upload_status
    refused = {i for i, s in status.items() if s == "refused"} | set(ctx.expect.rejected_uploads)
    tainted = ctx.tainted
    possible = {i for i, s in status.items() if s != "refused"} - set(tainted)
    if not ctx.completed():
        return Verdict("safety", True, "no completed collection: nothing counted", ev)
    for c in ctx.completed():
        k = ctx.counted[c.label]
        eligible = ctx.eligible(c)
        e: dict[str, Any] = {"counted": k.counted, "report_count": c.report_count, "exact": k.exact}
        if k.note:
            e["note"] = k.note
        if k.undetermined:
            e["undetermined"] = list(k.undetermined)
        if k.double:
            failures.append(f"{c.label}: reports counted twice: {k.double}")
            e["double_counted"] = k.double
            e["double_counted_report_ids"] = ctx.report_ids(k.double)
            e["multiplicity"] = {str(i): k.multiplicity[i] for i in k.double}
        if k.unexplained:
            failures.append(f"{c.label}: aggregate not explained by uploaded reports (forged or garbage): "
                            f"{k.unexplained}")
            e["unexplained"] = k.unexplained
        for p in k.problems:
            failures.append(f"{c.label}: {p}")
        bad = sorted(set(k.counted) & refused)
        if bad:
            failures.append(f"{c.label}: refused/expected-rejected uploads counted: {bad}")
            e["counted_refused"] = bad
            e["counted_refused_report_ids"] = ctx.report_ids(bad)
        bad = sorted(set(k.counted) & set(tainted))
        if bad:
            failures.append(f"{c.label}: reports corrupted in flight counted: {bad}")
            e["counted_corrupted"] = {str(i): tainted[i] for i in bad}
        bad = sorted(set(k.counted) - eligible)
        if bad:
            failures.append(f"{c.label}: reports outside the queried interval counted: {bad}")
            e["counted_outside_batch"] = bad
        if c.report_count is not None and c.report_count < ctx.record.task.min_batch_size:
            failures.append(f"{c.label}: released with report_count {c.report_count} < min_batch_size "
                            f"{ctx.record.task.min_batch_size}")
            e["below_min_batch_size"] = ctx.record.task.min_batch_size
        could = possible & eligible  # acknowledged or ambiguous, uncorrupted, in the batch
        if c.report_count is not None and c.report_count > len(could):
            failures.append(f"{c.label}: report_count {c.report_count} > {len(could)} reports that could count")
            e["could_count"] = sorted(could)
        ev["collections"][c.label] = e
    # the same report in two different batches
    done = ctx.completed()
    for a_i, a in enumerate(done):
        for b in done[a_i + 1:]:
            if same_batch(ctx, a, b):
                continue
            both = sorted(set(ctx.counted[a.label].counted) & set(ctx.counted[b.label].counted))
            if both:
                failures.append(f"reports counted in two different batches {a.label!r} and {b.label!r}: {both}")
                ev.setdefault("double_counted_across_batches", {})[f"{a.label}|{b.label}"] = both
    ev["refused"] = sorted(refused)
    ev["corrupted"] = {str(i): s for i, s in tainted.items()}
    if not ctx.upload_mapping_ok:
        ev["note"] = (f"history shows {len(ctx.upload_flows)} upload(s) for {len(ctx.record.uploads)} recorded: "
                      "upload <-> flow mapping not used (refusals taken from the record only)")
    return make_verdict("safety", failures, ev, "every completed collection is an exact sum over uploaded reports")


def same_batch(ctx: Context, a: CollectionRecord, b: CollectionRecord) -> bool:
    if ctx.record.task.query_type == "fixed_size":
        return a.batch_id is not None and a.batch_id == b.batch_id
    ia, ib = ctx.query_interval(a), ctx.query_interval(b)
    return ia is not None and ia == ib


def late_uploads(ctx: Context, c: CollectionRecord) -> set[int]:
    """Uploads made after an earlier collection of ``c``'s batch had completed: a Leader may
    refuse or ignore such a late report (dap-09.md §12), so ``c`` need not count it."""
    uploads = {u.index: u for u in ctx.record.uploads}
    out: set[int] = set()
    for d in ctx.completed():
        if d.t_wall > c.t_wall or not same_batch(ctx, c, d):
            continue
        out |= {i for i, u in uploads.items() if u.t_wall > d.t_wall}
    return out


def completeness(ctx: Context) -> Verdict:
    """With Expectation.complete: every acknowledged, unrejected, uncorrupted report of a completed
    collection's batch is counted (fixed_size: batch membership from the init requests), except
    reports uploaded after the batch had been collected (:func:`late_uploads`)."""
    status = ctx.upload_status
    required_all = {i for i, s in status.items() if s == "acknowledged"} - set(ctx.expect.rejected_uploads) - set(
        ctx.tainted)
    ev: dict[str, Any] = {"acknowledged": sorted(i for i, s in status.items() if s == "acknowledged"),
                          "ambiguous": sorted(i for i, s in status.items() if s == "ambiguous")}
    done = ctx.completed()
    if not done:
        return Verdict("completeness", True, "no completed collection: nothing to compare", ev)
    failures = []
    lost_all: dict[str, list[int] | str] = {}
    groups: list[tuple[str, set[int], list[Counted]]] = []
    if ctx.record.task.query_type == "fixed_size":
        # a fixed_size collection covers one batch: what the Aggregators took into it (history)
        members = ctx.batch_members
        ev["batches"] = {b: sorted(m) for b, m in members.items()}
        for c in done:
            if c.batch_id is None or not ctx.upload_mapping_ok:
                ev.setdefault("note", []).append(f"{c.label}: batch membership unknown, not checked")
                continue
            required = required_all & members.get(c.batch_id, set())
            groups.append((c.label, required - late_uploads(ctx, c), [ctx.counted[c.label]]))
    else:
        for c in done:
            groups.append((c.label, required_all & ctx.eligible(c) - late_uploads(ctx, c), [ctx.counted[c.label]]))
    for name, required, ks in groups:
        if all(k.exact for k in ks):
            lost = sorted(required - set().union(*(k.counted for k in ks)))
            if lost:
                lost_all[name] = lost
            continue
        # Count / shared buckets: which reports is unknown; compare how many
        rc = sum(k.report_count or 0 for k in ks)
        if rc < len(required):
            lost_all[name] = f"{len(required) - rc} of {len(required)} (by count only)"
    ev["lost"] = lost_all
    lost_idx = sorted({i for x in lost_all.values() if isinstance(x, list) for i in x})
    if lost_idx:
        ev["lost_report_ids"] = ctx.report_ids(lost_idx)
    if not ctx.expect.complete:
        return Verdict("completeness", True, "not required by the expectation"
                       + (f" (lost: {lost_all})" if lost_all else ""), ev)
    # reports lost only because the Leader gave their job up without the retry the expectation
    # relies on (a SHOULD): not a violation, the run did without an optional recovery
    optional: list[str] = []
    if ctx.expect.optional_recovery:
        gave_up, lines = given_up_without_retry(ctx)
        dropped = {ctx.report_index[r] for f in gave_up for r in f.req.report_ids if r in ctx.report_index}
        for name in list(lost_all):
            lost = lost_all[name]
            if isinstance(lost, list) and dropped and set(lost) <= dropped:
                optional.append(f"{name}: reports {lost} not counted: {lines[0]}")
                del lost_all[name]
    for name, lost in lost_all.items():
        failures.append(f"{name}: acknowledged reports not counted: {lost}")
    verdict = make_verdict("completeness", failures, ev, "every acknowledged report is counted"
                           + (" but those of a job given up without retry" if optional else ""))
    return attrs.evolve(verdict, optional=tuple(optional)) if optional else verdict


def collections(ctx: Context) -> Verdict:
    """Collections end either complete with a result or failed (DAP error / timeout) or not
    ready (stopped early, batch cannot fill) without one."""
    failures = []
    ev: dict[str, Any] = {"complete": [], "clean_failures": {}}
    for c in ctx.record.collections:
        if c.status == "complete":
            if c.result is None or c.report_count is None:
                failures.append(f"{c.label}: recorded complete without a result/report_count")
            ev["complete"].append(c.label)
        elif c.status == "not_ready":
            if c.result is not None:
                failures.append(f"{c.label}: not ready but carries a result {c.result!r}")
            bound = not_ready_bounds(ctx).get(c.label)
            ev.setdefault("not_ready", {})[c.label] = (
                "history prefix not recorded: treated as not completed" if bound is None else
                {"reason": bound.reason, "storable": bound.storable, "countable": bound.countable,
                 "min_batch_size": bound.min_batch_size, "until_seq": bound.until_seq,
                 "given_up": list(bound.given_up), "summary": bound.summary()})
            if bound is None or bound.reason != "uploads":
                ev["clean_failures"][c.label] = c.error or c.status
        elif c.status in ("error", "timeout"):
            if c.result is not None:
                failures.append(f"{c.label}: failed ({c.status}) but carries a result {c.result!r}")
            ev["clean_failures"][c.label] = c.error or c.status
        else:
            failures.append(f"{c.label}: unknown status {c.status!r}")
    return make_verdict("collections", failures, ev, "each collection completed with a result or failed without one")


def rejected_uploads(ctx: Context) -> Verdict:
    """Uploads the Leader SHOULD refuse (``Expectation.rejected_uploads``: a far-future report,
    ``reportTooEarly``, dap-09 §9.2) are never counted (a violation if one is); one the Leader
    acknowledged or refused otherwise is a SHOULD the run did without (``optional``)."""
    want = ctx.expect.rejected_uploads
    if not want:
        return Verdict("rejected-uploads", True, "no upload expected to be rejected", {})
    failures: list[str] = []
    optional: list[str] = []
    ev: dict[str, Any] = {"role": "leader"}
    uploads = {u.index: u for u in ctx.record.uploads}
    for idx, problem in sorted(want.items()):
        e: dict[str, Any] = {"expected": problem}
        u = uploads.get(idx)
        if u is None:
            return Verdict("rejected-uploads", None, f"upload {idx} expected refused ({problem}) was never made: "
                           "the workload and the expectation disagree", ev)
        e["status"] = u.status
        if ctx.upload_mapping_ok:
            fls = [f for f in ctx.upload_flows.get(idx, []) if f.real_status is not None]
            # an upload whose body or credentials a fault changed is refused for that (a
            # truncated report: invalidMessage): its answer says nothing about the report's time
            changed = [f for f in fls if ctx.changed(f) or ctx.tampered(f)]
            if changed:
                e["changed_by_faults"] = [f.flow_seq for f in changed]
            fls = [f for f in fls if f not in changed]
            e["flows"] = [f.evidence() for f in fls]
            # the Leader's own answers only: a 2xx the proxy made up (respond) is not its doing
            if any(is2xx(f.real_status) for f in fls):
                optional.append(f"Leader: upload {idx} acknowledged; it SHOULD be refused with {problem} "
                                f"(dap-09 §9.2)")
            got = {f.problem for f in fls}
            if fls and problem_token(problem) not in got and not any(is2xx(f.real_status) for f in fls):
                optional.append(f"Leader: upload {idx} answered {sorted(map(str, got))}; it SHOULD be refused with "
                                f"{problem} (dap-09 §9.2)")
        elif u.status == "success":
            optional.append(f"Leader: upload {idx} acknowledged; it SHOULD be refused with {problem} (dap-09 §9.2)")
        elif u.error is not None and problem_token(problem) not in u.error:
            e["note"] = "no history mapping; the record's error does not name the problem type"
        for label, k in ctx.counted.items():
            if k.multiplicity.get(idx, 0):
                failures.append(f"upload {idx}, which the Leader should have refused ({problem}), counted in "
                                f"{label!r}")
        ev[str(idx)] = e
    verdict = make_verdict("rejected-uploads", failures, ev,
                           f"{len(want)} upload(s) refused as they should be" if not optional
                           else f"{len(want)} upload(s) not counted")
    return attrs.evolve(verdict, optional=tuple(optional)) if optional else verdict
