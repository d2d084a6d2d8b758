"""The run as the invariants see it: the history folded per flow, uploads mapped to report IDs.

:class:`Context` is built once per check from the record, the history (from
``record.history_since_seq``, this task only) and the scenario's Expectation; its views are
computed lazily and shared by every invariant. :class:`Flow` is one HTTP exchange: request,
response or transport error, and the faults the proxy applied to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import attrs

from faults.history import FaultEvent, MessageEvent, Summary, event_from_dict
from faults.scenario import Expectation, Scenario
from faults.vocabulary import problem_token
from harness.check.counted import Counted, decode_counted
from harness.check.verdict import Verdict
from harness.record import CollectionRecord, RunRecord

__all__ = ["Context", "Flow", "fold_flows", "is2xx", "make_verdict"]


_NO_SUMMARY = Summary()


def is2xx(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def _seqs(events: Iterable[Any]) -> list[int]:
    return sorted({e.seq for e in events if e is not None})


# --- the history, folded per flow -------------------------------------------------------------------


@attrs.define
class Flow:
    """One HTTP exchange as the proxy saw it: its request, response/error and faults."""

    flow_id: str
    flow_seq: int
    link: str | None
    kind: str | None
    method: str
    path: str
    copy_of: str | None = None
    origin: str | None = None
    #: the rule that made this copy (None: not a copy, or a history without it)
    copy_rule: str | None = None
    request: MessageEvent | None = None
    response: MessageEvent | None = None
    error: MessageEvent | None = None
    faults: list[FaultEvent] = attrs.field(factory=list)
    first_seq: int = 0

    def applied(self, trait: str | None = None, *, phase: str | None = None) -> list[FaultEvent]:
        """The faults that acted on this flow (not skipped, did not fail), optionally only those
        whose action has ``trait`` (an :class:`faults.actions.Action` class attribute such as
        ``"changes_body"``) and at ``phase``."""
        return [f for f in self.faults if f.applied and (trait is None or getattr(f.action_class, trait))
                and (phase is None or f.phase == phase)]

    @property
    def is_copy(self) -> bool:
        """A request the proxy sent itself (a duplicate, replay or forged message)."""
        return self.copy_of is not None

    @property
    def answered_by_proxy(self) -> bool:
        """The proxy answered in place of the upstream (which never saw the request)."""
        return bool(self.applied("answers_in_place", phase="request"))

    @property
    def delivered(self) -> bool:
        """The request reached the upstream (not dropped, not answered by the proxy)."""
        return not self.applied("drops", phase="request") and not self.answered_by_proxy

    @property
    def response_changed(self) -> bool:
        """A fault did more to the response than delay it (dropped, replaced, corrupted)."""
        return any(not f.action_class.timing_only for f in self.applied(phase="response"))

    @property
    def real_status(self) -> int | None:
        """The upstream's own status (None: none seen, or the proxy answered)."""
        if self.answered_by_proxy or self.response is None:
            return None
        return self.response.status

    @property
    def req(self) -> Summary:
        return self.request.summary if self.request is not None else _NO_SUMMARY

    @property
    def resp(self) -> Summary:
        return self.response.summary if self.response is not None else _NO_SUMMARY

    @property
    def problem(self) -> str | None:
        return problem_token(self.resp.problem_type)

    def body_changed(self) -> list[FaultEvent]:
        """Request-body faults that changed something (the upstream saw other bytes); none when
        the last one left the body the Client sent (changes that undid each other)."""
        out = [f for f in self.applied("changes_body", phase="request") if f.changed.changed_anything]
        after = out[-1].changed.body_sha256 if out else None
        if after is not None and after == self.req.body_sha256:
            return []
        return out

    def evidence(self) -> dict[str, Any]:
        return {"flow_id": self.flow_id, "flow_seq": self.flow_seq, "kind": self.kind, "path": self.path,
                "seqs": _seqs([self.request, self.response, self.error, *self.faults]),
                "status": self.response.status if self.response else None, "problem": self.problem}


def fold_flows(events: Iterable[Any]) -> dict[str, Flow]:
    """The history folded per HTTP exchange (flow id -> :class:`Flow`, in the order the proxy
    first saw them): what the checker judges and the report draws."""
    flows: dict[str, Flow] = {}
    for ev in events:
        if isinstance(ev, MessageEvent):
            fl = flows.get(ev.flow_id)
            if fl is None:
                fl = flows[ev.flow_id] = Flow(ev.flow_id, ev.flow_seq, ev.link, ev.kind, ev.method, ev.path,
                                              ev.copy_of, ev.origin, ev.copy_rule, first_seq=ev.seq)
            if ev.phase == "request":
                fl.request = ev
            elif ev.phase == "response":
                fl.response = ev
            else:
                fl.error = ev
        elif isinstance(ev, FaultEvent) and not ev.is_network:  # network faults have no flow
            fl = flows.get(ev.flow_id)
            if fl is None:
                fl = flows[ev.flow_id] = Flow(ev.flow_id, ev.flow_seq, ev.link, ev.kind, "", "", first_seq=ev.seq)
            fl.faults.append(ev)
    return dict(sorted(flows.items(), key=lambda kv: kv[1].first_seq))


class Context:
    """The run as the invariants see it: record, history since the scenario's first seq,
    expectation, and views derived once (flows, upload index <-> report ids, counted sets)."""

    def __init__(self, record: RunRecord, history: Sequence[Any], scenario: Scenario | None) -> None:
        self.record = record
        self.scenario = scenario
        self.expect: Expectation = scenario.expect if scenario is not None else Expectation()
        events = [event_from_dict(e) if isinstance(e, Mapping) else e for e in history]
        events = [e for e in events if e.seq >= record.history_since_seq]
        #: every event of the scenario's history window, other tasks' traffic included
        self.all_events = events
        # another task's traffic (a previous scenario's late retries on a shared stack) is not this run's
        other = {e.flow_id for e in events if isinstance(e, MessageEvent) and record.task_id
                 and e.summary.task_id not in (None, record.task_id)}
        self.other_task_flows = len(other)
        self.events = [e for e in events if getattr(e, "flow_id", None) not in other]
        self.vdaf = record.task.vdaf
        self._memo: dict[str, Any] = {}

    # -- flows --
    @cached_property
    def flows(self) -> dict[str, Flow]:
        return fold_flows(self.events)

    def of_kind(self, *kinds: str) -> list[Flow]:
        return [f for f in self.flows.values() if f.kind in kinds]

    def inherited_faults(self, fl: Flow) -> list[FaultEvent]:
        """For a copy: the faults its original had before the copy was made (copies inherit
        the headers/body the original had at that moment)."""
        if fl.copy_of is None or fl.copy_of not in self.flows:
            return []
        orig = self.flows[fl.copy_of]
        made = [f.seq for f in orig.faults if f.action_class.sends_copies]
        if not made:
            return []
        return [f for f in orig.faults if f.seq < max(made) and f.applied and not f.action_class.sends_copies]

    def tampered(self, fl: Flow) -> list[FaultEvent]:
        """The faults that changed this request's credentials: its own, its original's before the
        proxy copied it, or (a forgery) the one that forged it with changed credentials."""
        own = fl.applied("tampers_auth") + [f for f in self.inherited_faults(fl) if f.action_class.tampers_auth]
        orig = self.flows.get(fl.copy_of) if fl.copy_of is not None else None
        if orig is not None:
            # the forging fault: the rule that made the copy, or (older histories) the one whose
            # origin (``synthesize:<message>``) it carries
            own += [f for f in orig.faults if f.changed.copy_credentials_tampered
                    and (f.rule_id == fl.copy_rule if fl.copy_rule is not None
                         else fl.origin == f"{f.action}:{getattr(f.changed, 'message', '')}")]
        return own

    def changed(self, fl: Flow) -> list[FaultEvent]:
        """The faults that changed the body the upstream saw: its own, or its original's before
        the proxy copied it."""
        return fl.body_changed() + [f for f in self.inherited_faults(fl)
                                    if f.action_class.changes_body and f.phase == "request"
                                    and f.changed.changed_anything]

    # -- uploads --
    @cached_property
    def _upload_mapping(self) -> tuple[dict[int, list[Flow]], bool]:
        """(upload index -> its original upload flows and their copies, mapping trusted).

        Uploads are sequential. In flow order, one original per upload (a retry after
        outdatedConfig is the same index); if that does not give one per recorded upload
        (an upload that never produced a flow, e.g. its HPKE config fetch was dropped), by
        time instead: upload *i*'s originals are the ones whose request the proxy saw after
        upload *i-1* returned and before upload *i* did (``UploadRecord.t_wall``; one clock).
        """
        originals = [f for f in self.of_kind("upload") if f.copy_of is None and f.request is not None]
        by_id: dict[str, int] = {}
        idx = 0
        retried = False
        for fl in originals:
            by_id[fl.flow_id] = idx
            if fl.problem == "outdatedConfig" and not retried:
                retried = True  # the Client retries once with a fresh report
                continue
            retried = False
            idx += 1
        ok = idx == len(self.record.uploads)
        uploads = sorted(self.record.uploads, key=lambda u: u.index)
        if not ok and uploads and all(u.t_wall > 0 for u in uploads):
            by_id = {}
            for fl in originals:
                t = fl.request.t_wall if fl.request is not None else 0.0
                i = next((u.index for u in uploads if t <= u.t_wall), None)
                if i is None:
                    break  # an upload after the last recorded one: the mapping cannot be trusted
                by_id[fl.flow_id] = i
            else:
                ok = True
        out: dict[int, list[Flow]] = {}
        for fl in originals:
            if fl.flow_id in by_id:
                out.setdefault(by_id[fl.flow_id], []).append(fl)
        for fl in self.of_kind("upload"):
            if fl.copy_of is not None and fl.copy_of in by_id:
                out[by_id[fl.copy_of]].append(fl)
        return out, ok

    @cached_property
    def upload_flows(self) -> dict[int, list[Flow]]:
        """Upload index -> its original upload flows and the copies of them (an upload that
        never produced a flow has no entry)."""
        return self._upload_mapping[0]

    @cached_property
    def upload_mapping_ok(self) -> bool:
        return self._upload_mapping[1]

    @cached_property
    def report_index(self) -> dict[str, int]:
        """Report ID (hex) -> upload index."""
        out: dict[str, int] = {}
        if not self.upload_mapping_ok:
            return out
        for idx, fls in self.upload_flows.items():
            for fl in fls:
                for rid in fl.req.report_ids:
                    out.setdefault(rid, idx)
        return out

    def report_ids(self, indices: Iterable[int]) -> dict[str, list[str]]:
        """Evidence: upload index -> the report IDs the history shows for it."""
        if not self.upload_mapping_ok:
            return {}
        return {str(i): sorted({r for f in self.upload_flows.get(i, []) for r in f.req.report_ids})
                for i in indices}

    @cached_property
    def upload_status(self) -> dict[int, str]:
        """Index -> ``acknowledged`` (Client saw 2xx), ``refused`` (every delivery got a real
        4xx), ``ambiguous`` (Client saw a failure but the Leader may have stored it)."""
        out: dict[int, str] = {}
        for u in self.record.uploads:
            if u.status == "success":
                out[u.index] = "acknowledged"
                continue
            fls = self.upload_flows.get(u.index, []) if self.upload_mapping_ok else []
            delivered = [f for f in fls if f.delivered]
            if fls and all(f.real_status is not None and 400 <= f.real_status < 500 for f in delivered):
                out[u.index] = "refused"
            elif not fls and u.index in self.expect.rejected_uploads:
                out[u.index] = "refused"
            else:
                out[u.index] = "ambiguous"
        return out

    @cached_property
    def tainted(self) -> dict[int, list[int]]:
        """Upload index -> history seqs of faults that corrupted its report on the way to an
        Aggregator (and no clean copy of it got through): it must never be counted."""
        out: dict[int, list[int]] = {}
        for idx, fls in self.upload_flows.items():
            clean_ok = False
            bad: list[int] = []
            for fl in fls:
                changed = self.changed(fl)
                if changed and fl.delivered:
                    bad += [f.seq for f in changed]
                elif is2xx(fl.real_status) and not changed:
                    clean_ok = True
            if bad and not clean_ok:
                out[idx] = bad
        # corrupt-field on an init request, at a path naming prepare_inits[k] (or [*]) -> those reports
        for fl in self.of_kind("agg_init"):
            if not fl.delivered:
                continue
            rids = fl.req.report_ids
            for f in fl.body_changed():
                field = str(getattr(f.changed, "field", None) or "")  # a field-level corruption names its path
                if not field.startswith("prepare_inits[") or field.startswith("prepare_inits[]"):
                    continue
                sel = field[len("prepare_inits["):].split("]", 1)[0]
                picked = rids if sel == "*" else ([rids[int(sel)]] if sel.isdigit() and int(sel) < len(rids) else [])
                for rid in picked:
                    if rid in self.report_index:
                        out.setdefault(self.report_index[rid], []).append(f.seq)
        return out

    @cached_property
    def measurements(self) -> dict[int, Any]:
        return {u.index: u.measurement for u in self.record.uploads if u.measurement is not None}

    # -- collections --
    def query_interval(self, c: CollectionRecord) -> tuple[int, int] | None:
        q = c.query or {}
        if q.get("type") in (1, "1", "time_interval") and "batch_interval_start" in q:
            return int(q["batch_interval_start"]), int(q["batch_interval_duration"])
        if self.record.task.query_type == "time_interval" and c.interval is not None:
            return tuple(c.interval)  # type: ignore[return-value]
        return None

    def eligible(self, c: CollectionRecord) -> set[int]:
        """Upload indices the query covers (time_interval: report time in the interval)."""
        iv = self.query_interval(c)
        return {u.index for u in self.record.uploads
                if iv is None or iv[0] <= u.time < iv[0] + iv[1]}

    @cached_property
    def counted(self) -> dict[str, Counted]:
        out = {}
        for c in self.completed():
            try:
                out[c.label] = decode_counted(self.vdaf, c, self.measurements)
            except (ValueError, TypeError, IndexError) as exc:
                out[c.label] = Counted(c.label, {}, tuple(sorted(self.measurements)), {"result": c.result},
                                       c.report_count, False, "",
                                       (f"aggregate does not decode as {self.vdaf.type}: {exc}",))
        return out

    @cached_property
    def batch_members(self) -> dict[str, set[int]]:
        """fixed_size: batch ID -> upload indices both Aggregators took into it, per the history:
        in a genuine, delivered, unchanged init request naming the batch, answered 2xx with
        ``continue``/``finished`` for the report, response not tampered with, job not DELETEd
        (the Leader aborts a job it cannot use by deleting it)."""
        deleted = {f.path for f in self.of_kind("agg_delete") if f.request is not None}
        out: dict[str, set[int]] = {}
        for fl in self.of_kind("agg_init"):
            b = fl.req.batch_id
            if (b is None or not fl.delivered or not is2xx(fl.real_status) or fl.path in deleted
                    or fl.body_changed() or fl.applied("tampers_auth") or fl.response_changed):
                continue
            for rid, st in fl.resp.prepare_states.items():
                if st in ("continue", "finished") and rid in self.report_index:
                    out.setdefault(b, set()).add(self.report_index[rid])
        return out

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """A view derived once per check by another module (e.g. :mod:`harness.check.fill`)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def completed(self) -> list[CollectionRecord]:
        return [c for c in self.record.collections if c.status == "complete" and c.result is not None]


def make_verdict(name: str, failures: list[str], evidence: dict[str, Any], ok_detail: str) -> Verdict:
    if failures:
        return Verdict(name, False, "; ".join(failures), evidence)
    return Verdict(name, True, ok_detail, evidence)
