"""Invariants for multi-round aggregation: Poplar1 prefix counts and step skew.

``poplar1`` (Poplar1 tasks; others pass trivially) — per completed collection, with the
aggregation parameter the harness sent (``CollectionRecord.agg_param``) and the recorded
measurements (bit strings, ``UploadRecord.measurement``):

- the result has one count per candidate prefix;
- **counts against the reports**: with *could* = the uploads that may count in the batch
  (acknowledged or ambiguous, not refused, not corrupted in flight, in the queried
  interval) and ``report_count`` of them counted, each prefix's count lies in
  ``[C - (|could| - report_count), min(C, report_count)]`` where *C* = the uploads of
  *could* under that prefix. When nothing may be lost (every upload acknowledged and
  ``report_count = |could|``, which ``completeness`` enforces) the bounds meet: the counts
  are exact. No count exceeds ``report_count`` nor the number of distinct reports;
- the counts of one level sum to at most ``report_count``, exactly to it when the prefixes
  cover the whole level;
- **levels agree** (two collections of the same batch, levels *a* < *b*): the later one
  counts no more reports (its reports were all in the earlier collection, dap-09.md §11
  ``batch_collected``), each prefix's children at level *b* sum to at most the parent's
  count, and when *b* queries every extension of the parent, the parent's count minus the
  children's sum is at most the difference of the report counts (zero when equal);
- a batch completes under at most ``max_batch_query_count`` distinct parameters (§14), and
  never twice at one level with different prefixes (VDAF-08 ``is_valid``: one parameter per
  level, so such a collection's reports are all ``report_replayed``).

``step-skew`` (every task) — the Helper's answers to continuations, per aggregation job
(dap-09.md §10.5-10.6), from the history (request and response ``body_sha256``):

- a 2xx continuation is only legal at the next step: never at step 0, never beyond the
  VDAF's last step (``ROUNDS - 1``: Poplar1 1, Prio3 none), never at step *s* >= 2 before
  step *s - 1* was answered 2xx, and never with a body different from the one already
  answered 2xx at that step;
- a byte-identical repeat of an answered step answered 2xx carries a byte-identical
  response (the stored one replayed, not recomputed);
- the 4xx answer to a wrong step names the right problem: ``stepMismatch``, except step 0
  (``invalidMessage`` too, §10.5), a job that has finished (``invalidMessage`` too: the
  draft's check order finds no waiting state; Janus answers it for step 2, ``stepMismatch``
  from step 3) and a different body at the step just answered (bare 409 too, as Janus
  answers a mutated re-POST); ``unrecognizedAggregationJob`` / 410 for a deleted job;
- an init PUT re-sent after the job was continued fails with a 4xx (§10.3, no rewinding).

Requests whose credentials or body the proxy tampered with are left to ``auth`` /
``error-typing``; transport errors are not judged.
"""

from __future__ import annotations

from typing import Any

from faults.heavy_hitters import bits_of, decode_agg_param
from faults.vdafs import workload_vdaf
from harness.check.counting import late_uploads, same_batch
from harness.check.flows import Context, Flow, is2xx, make_verdict
from harness.check.verdict import Verdict
from harness.record import CollectionRecord

__all__ = ["poplar1", "step_skew"]


# --- poplar1 ---------------------------------------------------------------------------------


def _could(ctx: Context, c: CollectionRecord) -> set[int]:
    status = ctx.upload_status
    refused = {i for i, s in status.items() if s == "refused"} | set(ctx.expect.rejected_uploads)
    possible = {i for i, s in status.items() if s != "refused"} - refused - set(ctx.tainted)
    return possible & ctx.eligible(c)


def poplar1(ctx: Context) -> Verdict:
    """Per-prefix counts match the known measurements; levels agree; query limits hold."""
    if workload_vdaf(ctx.vdaf).readback != "prefixes":
        return Verdict("poplar1", True, f"not a Poplar1 task ({ctx.vdaf.type})", {})
    failures: list[str] = []
    ev: dict[str, Any] = {"collections": {}}
    bits = {i: bits_of(m) for i, m in ctx.measurements.items()}
    bad = sorted(i for i, b in bits.items() if b is None or len(b) != ctx.vdaf.bits)
    if bad:
        return Verdict("poplar1", None, f"uploads {bad} have no {ctx.vdaf.bits}-bit measurement recorded", {})
    done: list[tuple[CollectionRecord, int, tuple[str, ...], list[int]]] = []
    for c in ctx.completed():
        if not c.agg_param:
            failures.append(f"{c.label}: a Poplar1 collection completed without an aggregation parameter")
            continue
        level, prefixes = decode_agg_param(ctx.vdaf, c.agg_param)
        e: dict[str, Any] = {"level": level, "prefixes": list(prefixes), "result": c.result,
                             "report_count": c.report_count}
        ev["collections"][c.label] = e
        try:
            counts = [int(x) for x in c.result]
        except (TypeError, ValueError):
            failures.append(f"{c.label}: result {c.result!r} is not a list of counts")
            continue
        if len(counts) != len(prefixes) or any(x < 0 for x in counts):
            failures.append(f"{c.label}: {len(counts)} counts for {len(prefixes)} prefixes: {c.result!r}")
            continue
        rc = c.report_count if c.report_count is not None else 0
        could = _could(ctx, c)
        required = {i for i in could if ctx.upload_status.get(i) == "acknowledged"} - late_uploads(ctx, c)
        expected = [sum(1 for i in required if bits[i].startswith(p)) for p in prefixes]
        slack = len(could) - rc
        lo_hi = []
        for p, got in zip(prefixes, counts, strict=True):
            total = sum(1 for i in could if bits[i].startswith(p))
            lo, hi = max(0, total - max(slack, 0)), min(total, rc)
            lo_hi.append([lo, hi])
            if not lo <= got <= hi:
                failures.append(f"{c.label}: prefix {p} counted {got}, the uploads allow {lo}..{hi} "
                                f"({total} possible reports under it, report_count {rc} of {len(could)})")
        e.update(expected_over_acknowledged=expected, bounds=lo_hi, exact=slack == 0)
        if sum(counts) > rc:
            failures.append(f"{c.label}: counts sum to {sum(counts)} > report_count {rc}")
        if len(prefixes) == 2 ** (level + 1) and sum(counts) != rc:
            failures.append(f"{c.label}: the prefixes cover level {level} but sum to {sum(counts)} != "
                            f"report_count {rc}")
        done.append((c, level, prefixes, counts))
    # levels against each other, per batch
    for ai, (a, la, pa, ca) in enumerate(done):
        for b, lb, pb, cb in done[ai + 1:]:
            if not same_batch(ctx, a, b):
                continue
            if la == lb:
                if pa != pb:
                    failures.append(f"{a.label!r} and {b.label!r}: the batch completed twice at level {la} with "
                                    "different prefixes (VDAF-08 is_valid allows one parameter per level)")
                elif ca != cb or a.report_count != b.report_count:
                    failures.append(f"{a.label!r} and {b.label!r}: same parameter, different results")
                continue
            (hi_c, lh, ph, chh), (lo_c, ll, pl, cl) = ((a, la, pa, ca), (b, lb, pb, cb)) if la < lb else \
                ((b, lb, pb, cb), (a, la, pa, ca))
            failures += _levels(hi_c, lh, ph, chh, lo_c, ll, pl, cl)
    # distinct parameters per batch
    groups: list[list[tuple[CollectionRecord, int, tuple[str, ...], list[int]]]] = []
    for item in done:
        for g in groups:
            if same_batch(ctx, g[0][0], item[0]):
                g.append(item)
                break
        else:
            groups.append([item])
    limit = ctx.record.task.max_batch_query_count
    for g in groups:
        params = {x[0].agg_param for x in g}
        if len(params) > limit:
            failures.append(f"batch of {[x[0].label for x in g]} completed under {len(params)} distinct aggregation "
                            f"parameters > max_batch_query_count {limit} (§14: batchQueriedTooManyTimes)")
    ev["max_batch_query_count"] = limit
    if not done and not failures:
        return Verdict("poplar1", True, "no completed Poplar1 collection", ev)
    return make_verdict("poplar1", failures, ev,
                        f"{len(done)} collection(s): prefix counts within the uploads' bounds, levels agree")


def _levels(up: CollectionRecord, lu: int, pu: tuple[str, ...], cu: list[int],
            down: CollectionRecord, ld: int, pd: tuple[str, ...], cd: list[int]) -> list[str]:
    """Level ``lu`` (``up``) against the deeper level ``ld`` (``down``) of the same batch."""
    out = []
    first, second = (up, down) if up.t_wall <= down.t_wall else (down, up)
    rc_first, rc_second = first.report_count or 0, second.report_count or 0
    if rc_second > rc_first:
        out.append(f"{second.label!r} counted {rc_second} reports, more than the earlier collection "
                   f"{first.label!r} of the batch ({rc_first}): reports added after the batch was collected")
    down_counts = dict(zip(pd, cd, strict=True))
    extensions = 2 ** (ld - lu)
    for p, parent in zip(pu, cu, strict=True):
        kids = {q: n for q, n in down_counts.items() if q.startswith(p)}
        s = sum(kids.values())
        if s > parent:
            out.append(f"level {ld} ({down.label!r}) prefixes under {p} sum to {s} > its count {parent} at level "
                       f"{lu} ({up.label!r})")
        elif len(kids) == extensions:
            gap = (up.report_count or 0) - (down.report_count or 0)
            if parent - s > max(gap, 0):
                out.append(f"level {ld} ({down.label!r}) queries every extension of {p} but they sum to {s}, "
                           f"its count at level {lu} ({up.label!r}) is {parent} and the report counts differ by "
                           f"{gap}")
    return out


# --- step skew ---------------------------------------------------------------------------------


def _rounds(ctx: Context) -> int:
    try:
        return int(ctx.vdaf.build().ROUNDS)
    except Exception:  # an unknown VDAF: assume one round (no continuation)
        return 1


def _judged(ctx: Context, fl: Flow) -> bool:
    """A delivered request with the upstream's own answer and untouched credentials."""
    return (fl.delivered and fl.real_status is not None and fl.request is not None and fl.response is not None
            and not ctx.tampered(fl))


def _digest(ctx: Context, fl: Flow) -> str:
    """The request body's identity; a body changed in flight is its own (flow-unique) body."""
    if ctx.changed(fl):
        return f"changed:{fl.flow_id}"
    return str(fl.req.body_sha256 or f"unknown:{fl.flow_id}")


def step_skew(ctx: Context) -> Verdict:
    """Continuations answered per dap-09.md §10.5-10.6; no rewinding after a continuation."""
    last_step = _rounds(ctx) - 1  # ping-pong: the Leader's last message is step ROUNDS - 1
    conts = [f for f in ctx.of_kind("agg_continue") if _judged(ctx, f) and isinstance(f.req.step, int)]
    inits = [f for f in ctx.of_kind("agg_init") if _judged(ctx, f)]
    ev: dict[str, Any] = {"last_step": last_step, "jobs": {}}
    if not conts:
        return Verdict("step-skew", True, "no continuation request answered", ev)
    failures: list[str] = []
    jobs: dict[str, list[Flow]] = {}
    for fl in conts:
        jobs.setdefault(fl.path, []).append(fl)
    for path, fls in jobs.items():
        fls.sort(key=lambda f: f.response.seq)  # type: ignore[union-attr]
        answered: dict[int, tuple[str, str | None, Flow]] = {}  # step -> (request digest, response digest, flow)
        je: list[dict[str, Any]] = []
        for fl in fls:
            step = fl.req.step
            dig = _digest(ctx, fl)
            st = fl.real_status
            prob = fl.problem
            done_steps = list(answered)
            finished = max(done_steps, default=0) >= last_step  # Prio3 (last_step 0): after the init
            row = {"flow_seq": fl.flow_seq, "step": step, "status": st, "problem": prob,
                   "request_sha256": dig, "response_sha256": fl.resp.body_sha256,
                   "copy": fl.origin}
            je.append(row)
            prev = answered.get(step)
            if is2xx(st):
                why = None
                if step == 0:
                    why = "step 0 is not a continuation (§10.5)"
                elif step > last_step:
                    why = f"step {step} is beyond the VDAF's last step {last_step}"
                elif step >= 2 and step - 1 not in answered:
                    why = f"step {step - 1} was never answered: step skipped"
                elif prev is not None and prev[0] != dig:
                    why = f"step {step} was already answered for a different body (flow {prev[2].flow_seq})"
                if why:
                    failures.append(f"Helper: {path}: continuation (flow {fl.flow_seq}) answered {st}: {why}")
                    row["violation"] = why
                    continue
                if prev is None:
                    answered[step] = (dig, fl.resp.body_sha256, fl)
                elif prev[1] and fl.resp.body_sha256 and prev[1] != fl.resp.body_sha256:
                    failures.append(f"Helper: {path}: identical step-{step} request (flow {fl.flow_seq}) answered with a "
                                    f"different body than flow {prev[2].flow_seq}: not the stored response replayed")
                    row["violation"] = "replay not byte-identical"
                continue
            if st is None or not 400 <= st < 500:
                continue  # 5xx: error-typing
            # a refusal: is it typed as the case demands?
            if prob in ("unrecognizedAggregationJob", "unauthorizedRequest") or (st == 410 and prob is None):
                continue  # a deleted / unknown job, or credentials: judged by error-typing and auth
            if step == 0:
                allowed, case = {"invalidMessage", "stepMismatch"}, "step 0"
            elif prev is not None and prev[0] != dig:
                allowed, case = {"stepMismatch", "409"}, f"a different body at the answered step {step}"
            elif prev is not None:
                continue  # an identical repeat refused: a Helper need not replay (§10.6 MAY)
            elif finished:
                allowed, case = {"stepMismatch", "invalidMessage"}, f"step {step} after the job finished"
            elif step != max(done_steps, default=0) + 1:
                allowed, case = {"stepMismatch"}, f"step {step} while the job waits for step " \
                                                  f"{max(done_steps, default=0) + 1}"
            else:
                continue  # the expected next step refused: the Leader's request itself was bad (error-typing)
            got = prob if prob is not None else str(st)
            row["case"] = case
            if got not in allowed:
                failures.append(f"Helper: {path}: {case} (flow {fl.flow_seq}) answered {st} {prob or 'without a problem'}; "
                                f"expected {' or '.join(sorted(allowed))}")
                row["violation"] = f"expected {sorted(allowed)}"
        ev["jobs"][path] = je
        # no rewinding: an init PUT after the first 2xx continuation must fail (§10.3)
        if answered:
            first = min(x[2].response.seq for x in answered.values())  # type: ignore[union-attr]
            for i in inits:
                if i.path == path and i.first_seq > first and is2xx(i.real_status):
                    failures.append(f"Helper: {path}: init PUT (flow {i.flow_seq}) after the job was continued answered "
                                    f"{i.real_status}; it MUST fail (§10.3, no rewinding)")
                    ev.setdefault("rewound", []).append(i.flow_seq)
    return make_verdict("step-skew", failures, ev,
                        f"continuations of {len(jobs)} job(s) answered per §10.5-10.6")
