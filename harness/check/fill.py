"""Can a collection's batch still reach ``min_batch_size``? The evidence behind ``not_ready``.

A correct Leader never completes a collection whose batch holds fewer than
``min_batch_size`` reports (dap-09.md §14: it waits for more). Polling such a collection
until the scenario deadline proves nothing and costs the whole timeout, so the harness
stops early (collection status ``not_ready``, :meth:`harness.run.Stack.run_scenario`) once
the history shows the batch cannot fill, and the checker re-derives the same claim from the
same history prefix (``CollectionRecord.not_ready_seq``) before accepting it.

:func:`fill_bound` is an upper bound, computed from the proxy's history alone (never from
what an Aggregator says about itself):

- **storable**: distinct reports the Leader may hold in the queried batch: every upload
  (original or proxy copy) that was delivered and not refused with a real 4xx (so
  acknowledged, answered 5xx, answered by nothing yet, or whose answer was lost), plus the
  copies the proxy has stored but not sent yet (``duplicate`` with spacing,
  ``replay-later``). A report is in a time_interval batch if its recorded time is in the
  queried interval; a body the proxy changed on the way is counted as its own report in
  every batch (its ID and time are unknown). fixed_size ``current_batch``: every report.
  Acknowledged uploads of the run record that the history does not explain are added (an
  acknowledgement the proxy made up, ``respond`` at phase request, is explained: nothing
  reached the Leader).
- **countable**: of those, the ones the Leader has not finally given up: a report is
  given up when every aggregation job of the Leader's that carried it was DELETEd by the
  Leader (it abandons a job that way) or rejected by the Helper's own answer (any
  PrepareError but ``report_too_early``, after which a Leader retries the report later).
  A report never put into a job yet is countable: the Leader may still aggregate it.

``storable < min_batch_size``: the batch never had enough reports; the collection is
rightly not ready and does not fail the run. ``countable < min_batch_size <= storable``:
enough reports were uploaded but the Leader gave up aggregating some (a fault defeated its
retries): the collection failed, cleanly. Assumption, stated for other implementations:
a Leader does not put a report of an aggregation job it DELETEd into a new job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from faults.actions import ACTIONS
from faults.scenario import Scenario
from harness.check.flows import Context, Flow, is2xx
from harness.record import CollectionRecord, RunRecord

__all__ = ["FillBound", "fill_bound", "judge_not_ready", "not_ready_bounds", "rightly_not_ready"]



@attrs.frozen
class FillBound:
    """What the history up to ``until_seq`` allows a collection's batch to hold."""

    min_batch_size: int
    storable: int
    countable: int
    until_seq: int
    #: report IDs (hex) the Leader gave up aggregating
    given_up: tuple[str, ...] = ()

    @property
    def can_fill(self) -> bool:
        return self.countable >= self.min_batch_size

    @property
    def reason(self) -> str | None:
        """``uploads`` (too few reports ever reached the batch), ``aggregation`` (the Leader
        gave some up) or None (the batch can still fill)."""
        if self.storable < self.min_batch_size:
            return "uploads"
        if self.countable < self.min_batch_size:
            return "aggregation"
        return None

    def summary(self) -> str:
        if self.reason == "uploads":
            return (f"batch cannot reach min_batch_size {self.min_batch_size}: at most {self.storable} report(s) "
                    f"can be stored in it (history up to seq {self.until_seq})")
        if self.reason == "aggregation":
            return (f"batch cannot reach min_batch_size {self.min_batch_size}: the Leader gave up aggregating "
                    f"{len(self.given_up)} of {self.storable} report(s) (history up to seq {self.until_seq})")
        return f"batch can still reach min_batch_size {self.min_batch_size} ({self.countable} countable report(s))"


def _interval(query: Mapping[str, Any]) -> tuple[int, int] | None | bool:
    """The queried interval, None for "any report" (fixed_size current batch), False for a
    batch named by ID (it was returned by an earlier, completed collection: no bound)."""
    if query.get("type") in (1, "1", "time_interval"):
        return int(query["batch_interval_start"]), int(query["batch_interval_duration"])
    if query.get("subtype") in (0, "0") and query.get("batch_id"):
        return False
    return None


def _in(interval: tuple[int, int] | None, t: int | None) -> bool:
    return interval is None or t is None or interval[0] <= t < interval[0] + interval[1]


def _storable(ctx: Context, interval: tuple[int, int] | None) -> set[tuple[str, str]]:
    """Keys ``("report", id)`` / ``("flow", flow id[+copy])`` of reports the Leader may hold."""
    # verbatim copies of an upload the proxy sent (the copy flow's origin is the action's name)
    sent: Counter[tuple[str, str]] = Counter()
    for fl in ctx.flows.values():
        if fl.copy_of is not None and fl.origin in ACTIONS and ACTIONS[fl.origin].copies_verbatim:
            sent[(fl.copy_of, fl.origin)] += 1
    out: set[tuple[str, str]] = set()
    for fl in ctx.of_kind("upload"):
        if fl.request is None:
            continue
        changed = ctx.changed(fl)
        rids = fl.req.report_ids or []
        t = fl.req.time
        exact = not changed and len(rids) == 1 and isinstance(t, int)

        def add(suffix: str, fl: Flow = fl, rids: list[str] = rids, t: Any = t, exact: bool = exact) -> None:
            if not exact:
                out.add(("flow", fl.flow_id + suffix))  # ID and time unknown: its own report, any batch
            elif _in(interval, t):
                out.add(("report", rids[0]))

        refused = fl.real_status is not None and 400 <= fl.real_status < 500
        if fl.delivered and not refused:
            add("")
        made: Counter[str] = Counter()
        for f in fl.applied("copies_verbatim"):
            made[f.action] += f.changed.copies_made
        for action, n in made.items():
            for i in range(sent[(fl.flow_id, action)], n):  # stored, not sent yet
                add(f"+{action}{i}")
    return out


def _given_up(ctx: Context) -> set[str]:
    """Report IDs every one of whose Leader aggregation jobs was DELETEd or rejected them."""
    deleted = {f.path for f in ctx.of_kind("agg_delete") if f.request is not None and f.copy_of is None}
    jobs: dict[str, set[str]] = {}
    rejected: dict[str, set[str]] = {}
    for fl in ctx.of_kind("agg_init"):
        if fl.copy_of is not None or fl.request is None:
            continue  # the Leader's own requests only: it never sees the answers to the proxy's copies
        for rid in fl.req.report_ids:
            jobs.setdefault(rid, set()).add(fl.path)
        if is2xx(fl.real_status):
            for rid, st in fl.resp.prepare_states.items():
                if st.startswith("reject") and st != "reject:report_too_early":
                    rejected.setdefault(rid, set()).add(fl.path)
    return {rid for rid, paths in jobs.items()
            if all(p in deleted or p in rejected.get(rid, ()) for p in paths)}


def fill_bound(record: RunRecord, history: Iterable[Any], scenario: Scenario | None,
               query: Mapping[str, Any], until_seq: int) -> FillBound | None:
    """The bound for a collection ``query`` over the history below ``until_seq`` (None: a
    batch named by ID, which an earlier collection returned, so it filled)."""
    interval = _interval(query)
    if interval is False:
        return None
    ctx = Context(record, [e for e in history if (e["seq"] if isinstance(e, Mapping) else e.seq) < until_seq],
                  scenario)
    keys = _storable(ctx, interval)
    given_up = _given_up(ctx)
    lost = {k for k in keys if k[0] == "report" and k[1] in given_up}
    # acknowledged uploads the history does not explain (it should): count them, never lose them
    acked = [u for u in record.uploads if u.status == "success" and _in(interval, u.time)]
    if ctx.upload_mapping_ok:  # each upload's own flows decided above, a 2xx the proxy made up included
        unexplained = sum(1 for u in acked if not ctx.upload_flows.get(u.index))
    else:
        unexplained = max(0, len(acked) - len(keys))
    return FillBound(min_batch_size=record.task.min_batch_size, storable=len(keys) + unexplained,
                     countable=len(keys - lost) + unexplained, until_seq=until_seq,
                     given_up=tuple(sorted(k[1] for k in lost)))


def judge_not_ready(ctx: Context, c: CollectionRecord) -> FillBound | None:
    """The checker's own bound for a ``not_ready`` collection (None: no claim can hold)."""
    if c.status != "not_ready" or c.not_ready_seq is None:
        return None
    query = dict(c.query or {})
    if query.get("type") in (2, "2") and not query.get("batch_id"):
        query["subtype"] = 1  # by-ID of a batch that never formed: as the current batch then
    # uploads made before this collection ended (a later upload step cannot explain its stop)
    before = attrs.evolve(ctx.record, uploads=tuple(u for u in ctx.record.uploads if u.t_wall <= c.t_wall))
    return fill_bound(before, ctx.events, ctx.scenario, query, c.not_ready_seq)


def not_ready_bounds(ctx: Context) -> dict[str, FillBound | None]:
    """Label -> the checker's own :class:`FillBound` for each ``not_ready`` collection of the run
    (None: the record gives no history prefix to judge); derived once per check."""
    return ctx.memo("not_ready", lambda: {c.label: judge_not_ready(ctx, c) for c in ctx.record.collections
                                          if c.status == "not_ready"})


def rightly_not_ready(ctx: Context) -> set[str]:
    """Labels of ``not_ready`` collections whose stop the history confirms with reason
    ``uploads``: too few reports ever reached the batch, so a correct Leader does not complete it."""
    return {label for label, b in not_ready_bounds(ctx).items() if b is not None and b.reason == "uploads"}
