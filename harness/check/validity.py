"""Can this run be judged at all? Why a run is inconclusive, one line per reason.

A verdict is earned only when the run did what the scenario set out to do and its record is
whole. Two kinds of reasons, both named in one line each:

- **the record is not whole** (:func:`record_problems`): the history file is missing,
  truncated, of another schema or has an unreadable line; the history has a gap (a seq
  between the scenario's first and last is missing: an event was lost); the proxy reported
  that it failed to record. Then even a violation cannot be trusted: the run is inconclusive.
- **the scenario did not happen** (:func:`unfired_rules`): a rule of the plan that is not
  ``optional`` never changed a message. Against an implementation with other paths or
  timings a rule can silently never match; that must not read as a pass. The message says
  what the proxy saw instead, e.g. "rule dup-upload never fired: no upload request was seen
  on client->leader (3 unclassified requests there, e.g. PUT /v1/reports)". A network rule
  (:func:`unstarted_net_rules`) that never started, or never took the effect it exists for
  (a reset that reset nothing), counts the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from faults.history import FaultEvent, MessageEvent
from faults.plan import Plan, Rule
from harness.check.flows import Context
from harness.record import RunRecord

__all__ = ["history_gaps", "record_problems", "unfired_rules", "unstarted_net_rules"]


def history_gaps(record: RunRecord, events: Sequence[Any]) -> list[str]:
    """Seqs missing between the scenario's first seq and its end (or its last event)."""
    seqs = sorted({e.seq for e in events if e.seq >= record.history_since_seq})
    if not seqs:
        return [f"no history events from seq {record.history_since_seq}: nothing was recorded"]
    end = record.history_end_seq if record.history_end_seq is not None else seqs[-1] + 1
    want = range(record.history_since_seq, end)
    have = set(seqs)
    missing = [s for s in want if s not in have]
    if not missing:
        return []
    runs: list[tuple[int, int]] = []
    for s in missing:
        if runs and runs[-1][1] == s - 1:
            runs[-1] = (runs[-1][0], s)
        else:
            runs.append((s, s))
    spans = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:5]) + (" ..." if len(runs) > 5 else "")
    return [f"the history has a gap: {len(missing)} event(s) missing (seq {spans} of "
            f"{record.history_since_seq}-{end - 1}); what happened there is unknown"]


def record_problems(record: RunRecord, events: Sequence[Any], history_problems: Iterable[str] = ()) -> list[str]:
    """Why the record of this run is not whole (empty: it is)."""
    out = list(history_problems)
    out += [f"the fault proxy failed to record: {f}" for f in record.recording_failures]
    if not out:  # a damaged file explains its own gaps
        out += history_gaps(record, events)
    return out


def _limits_text(rule: Rule) -> str:
    lim = {k: v for k, v in (("nth", rule.limits.nth), ("every", rule.limits.every), ("first", rule.limits.first),
                             ("probability", rule.limits.probability), ("max_fires", rule.limits.max_fires))
           if v is not None}
    return ", ".join(f"{k}={v}" for k, v in lim.items()) or "no limits"


def _why_not_fired(ctx: Context, rule: Rule, events: Sequence[FaultEvent]) -> str:
    m = rule.match
    if events:  # it fired, but never changed a message
        first = events[0].changed
        why = first.skipped or first.action_failed or "no change"
        return (f"rule {rule.id} fired {len(events)} time(s) but never changed a message "
                f"({'skipped' if first.skipped else 'failed' if first.action_failed else 'unchanged'}: {why})")
    requests = [e for e in ctx.events if isinstance(e, MessageEvent) and e.phase == "request" and e.copy_of is None
                and (m.link is None or e.link == m.link)]
    where = f"on {m.link}" if m.link else "on any link"
    if m.kind is None:
        return (f"rule {rule.id} never fired: {len(requests)} request(s) {where} matched no other condition of it "
                f"(limits: {_limits_text(rule)})")
    same_kind = [e for e in requests if e.kind == m.kind]
    if not same_kind:
        kinds = Counter(e.kind or "unclassified" for e in requests)
        seen = ", ".join(f"{n} {k}" for k, n in kinds.most_common(4)) or "none"
        unclassified = [e for e in requests if e.kind is None]
        hint = ""
        if unclassified:
            ex = unclassified[0]
            hint = (f"; e.g. {ex.method} {ex.path} was not recognised as a DAP request: is the target's path for "
                    f"{m.kind} the one dap-09 section 5 gives?")
        return f"rule {rule.id} never fired: no {m.kind} request was seen {where} (requests there: {seen}){hint}"
    return (f"rule {rule.id} never fired: {len(same_kind)} {m.kind} request(s) {where} were seen but none was "
            f"selected (phase {rule.phase}, limits: {_limits_text(rule)}"
            + (f", matcher: {_matcher_text(rule)}" if _matcher_text(rule) else "") + ")")


def _matcher_text(rule: Rule) -> str:
    m = rule.match
    parts = [f"{k}={v}" for k, v in (("status", m.status), ("step", m.step), ("report_index", m.report_index),
                                      ("report_id", m.report_id), ("problem_type", m.problem_type),
                                      ("task_id", m.task_id), ("job_id", m.job_id)) if v is not None]
    return ", ".join(parts)


def unfired_rules(ctx: Context, plan: Plan) -> list[str]:
    """One line per rule that is not ``optional`` and never changed a message in this run."""
    out = []
    by_rule: dict[str, list[FaultEvent]] = {}
    for e in ctx.events:
        if isinstance(e, FaultEvent):
            by_rule.setdefault(e.rule_id, []).append(e)
    for rule in plan.rules:
        if rule.optional:
            continue
        events = by_rule.get(rule.id, [])
        if any(e.changed.applied for e in events):
            continue
        out.append(_why_not_fired(ctx, rule, events))
    return out + unstarted_net_rules(ctx, plan)


def unstarted_net_rules(ctx: Context, plan: Plan) -> list[str]:
    """One line per network rule (:mod:`faults.network`) that is not ``optional`` and whose window
    never opened, or, for an action with an ``effect_counter`` (a reset, a reordering), that
    never had its effect: the fault under test did not happen."""
    out = []
    for rule in plan.net_rules:
        if rule.optional:
            continue
        events = [e for e in ctx.events if isinstance(e, FaultEvent) and e.is_network and e.rule_id == rule.id]
        starts = [e for e in events if e.changed.state == "start"]
        if not starts:
            failed = [e.changed.action_failed for e in events if e.changed.action_failed]
            why = (f"it could not be applied: {failed[0]}" if failed else
                   f"its trigger ({rule.window.trigger_text(rule.link)}) never came" if rule.window.triggered else
                   "its window never opened")
            out.append(f"network rule {rule.id} never started: {why}")
            continue
        counter = rule.action.effect_counter
        if counter is not None:
            seen = sum((e.changed.packets or {}).get(counter, 0) for e in events if e.changed.state == "stop")
            if not seen:
                out.append(f"network rule {rule.id} ({rule.action_name}) was active but never took effect "
                           f"(no {counter} packets)")
    return out
