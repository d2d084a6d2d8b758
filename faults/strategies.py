"""Hypothesis strategies for fault plans and workloads: campaigns as data.

Everything generated here is a plain value (:class:`~faults.plan.Plan`,
:class:`~harness.model.WorkloadSpec`, :class:`~harness.model.Scenario`) that loads, dumps and
validates like a hand-written one: **every generated plan passes**
``plan_from_dict(plan_to_dict(plan))`` (the same checks as ``faultrun --plan``). Validity is
by construction (link -> kinds carried on it, action -> phases it can run in, ``corrupt-field``
paths and ops from the codec's own field table), never by ``filter``.

Shrinking goes toward "no fault" and the smallest workload:

- :func:`plans` -> fewer rules (``lists`` shrink by deleting: the biggest step toward "no
  fault"), each rule toward the first action in :data:`ACTION_ORDER` and its parameters'
  defaults (``delay`` 0 ms, one duplicate copy, status 500), simpler matchers (every
  predicate toward ``None``: "any"), ``Limits()`` (no limit) and seed 0;
- :func:`workloads` -> one ``Upload`` of one report at the run's base time, one ``Collect``,
  Prio3Histogram, time_interval.

As in hypothesis' own attrs inference (``st.builds`` over attrs classes): a parameter's
default is its minimal shrink, then ``None`` where allowed, then the sampled values; the
simplest alternative always comes first in ``one_of`` / ``sampled_from``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from dap import codec
from dap.constants import ProblemType
from faults import dapcodec
from faults.actions import (
    AUTH_MODES,
    CORRUPT_OPS,
    EVENT_NAMES,
    Auth,
    CorruptBytes,
    CorruptField,
    Delay,
    DropRequest,
    DropResponse,
    Duplicate,
    Reorder,
    ReplayLater,
    Respond,
    Synthesize,
    Truncate,
    action_name,
)
from faults.classify import LINKS
from faults.plan import Limits, Matcher, Plan, Rule

__all__ = [
    "ACTION_ORDER",
    "LINK_KINDS",
    "MAX_DELAY_MS",
    "RECOVERABLE",
    "MAX_REPORTS",
    "MAX_RULES",
    "actions_and_matchers",
    "corrupt_field_targets",
    "expectation_for",
    "limits",
    "plans",
    "rules",
    "scenarios",
    "workloads",
]

MAX_RULES = 3
MAX_REPORTS = 8

#: Which kinds travel on which link (the classifier's vocabulary; the Client reaches the
#: Helper directly, so Helper-bound uploads and HPKE configs are on no link).
LINK_KINDS: dict[str, tuple[str, ...]] = {
    "client->leader": ("upload", "hpke_config"),
    "collector->leader": ("collection_create", "collection_poll", "collection_delete"),
    "leader->helper": ("agg_init", "agg_continue", "agg_share", "agg_delete"),
}
_KIND_LINK = {k: link for link, kinds in LINK_KINDS.items() for k in kinds}
_REPORT_KINDS = ("upload", "agg_init", "agg_continue")

#: Actions, simplest first: the order ``one_of`` shrinks toward. Hypothesis orders examples
#: shortlex (fewer choices first, then smaller ones), so parameterless actions come first,
#: then those whose parameters shrink to a harmless default (``delay`` 0 ms, one duplicate).
ACTION_ORDER: tuple[str, ...] = (
    "drop-request", "drop-response", "delay", "duplicate", "respond", "auth", "truncate",
    "corrupt-bytes", "corrupt-field", "reorder", "replay-later", "synthesize",
)

#: Bounds that keep one example inside a scenario timeout (the reference Leader's
#: per-request timeout is 1 s; a longer delay is a timeout fault, still allowed).
MAX_DELAY_MS = 1_500
MAX_HOLD_MS = 2_000
_RESPOND_STATUSES = (500, 503, 400, 404, 429, 200)
_PROBLEM_TOKENS = tuple(p.token for p in ProblemType)
_MATCH_STATUSES = (200, 201, 400)


def _none_or(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``None`` first (the minimal shrink: "not set"), then the strategy."""
    return st.one_of(st.none(), strategy)


# --- corrupt-field targets ---------------------------------------------------------------


@functools.cache
def corrupt_field_targets() -> tuple[tuple[str, str, str, tuple[str, ...]], ...]:
    """Every ``(kind, phase, field pattern, ops)`` that ``corrupt-field`` accepts at plan load.

    Built from the codec's field table (``codec.field_patterns``) and checked with the same
    :func:`faults.dapcodec.validate_field` the plan loader uses: lists get the list ops,
    leaves the leaf ops (``add`` only on integers), sub-messages nothing (no op applies).
    """
    out = []
    for (kind, phase) in dapcodec.BODY_CLASSES:
        if kind not in _KIND_LINK:
            continue
        cls = dapcodec.message_class(kind, phase)
        assert cls is not None
        for path in codec.field_patterns(cls, leaves_only=False):
            wire = codec.validate_path(cls, path)
            ops = []
            for op in CORRUPT_OPS:
                if op == "set":
                    continue  # needs a value of the field's own wire type; random/zero/add cover it
                if op == "add" and not isinstance(wire, (codec.UInt, codec.EnumWire)):
                    continue
                try:
                    dapcodec.validate_field(kind, phase, path, op)
                except Exception:
                    continue
                ops.append(op)
            if ops:
                out.append((kind, phase, path, tuple(ops)))
    return tuple(out)


# --- matchers + actions -----------------------------------------------------------------------


def _phase_choice(cls: type) -> st.SearchStrategy[str | None]:
    """``None`` (the action's default phase) first, then the other phases it allows."""
    others = sorted(p for p in cls.phases if p != cls.default_phase)
    return st.sampled_from((None, *others))


@st.composite
def _matcher_for(draw: Any, cls: type, *, kinds: Sequence[str] | None = None, max_reports: int = MAX_REPORTS) -> Matcher:
    """A matcher valid for action class ``cls``: link, then a kind carried on that link
    (``None`` = any, first), phase (``None`` = default, first), then DAP predicates that
    apply to that kind and phase (each ``None`` first). Shrinks toward ``client->leader``,
    any kind, default phase, no predicates."""
    if kinds is not None:  # the action needs one of these kinds
        kind = draw(st.sampled_from(tuple(kinds)))
        link = _KIND_LINK[kind]
    else:
        link = draw(st.sampled_from(LINKS))
        kind = draw(st.sampled_from((None, *LINK_KINDS[link])))
    phase = draw(_phase_choice(cls))
    effective = phase or cls.default_phase
    report_index = None
    if kind in _REPORT_KINDS:
        report_index = draw(_none_or(st.integers(0, max(max_reports - 1, 0))))
    step = draw(_none_or(st.integers(1, 2))) if kind == "agg_continue" else None
    status = draw(_none_or(st.sampled_from(_MATCH_STATUSES))) if effective == "response" else None
    return Matcher(link=link, kind=kind, phase=phase, report_index=report_index, step=step, status=status)


def _pair(cls: type, action: st.SearchStrategy[Any], **kw: Any) -> st.SearchStrategy[tuple[Matcher, Any]]:
    return st.tuples(_matcher_for(cls, **kw), action)


@st.composite
def _corrupt_field_pair(draw: Any, max_reports: int = MAX_REPORTS) -> tuple[Matcher, CorruptField]:
    """``corrupt-field``: a (kind, phase, path) from :func:`corrupt_field_targets` (shrinks
    toward the first message's first field), then an op it allows (leaf: ``random`` first)."""
    kind, phase, path, ops = draw(st.sampled_from(corrupt_field_targets()))
    op = draw(st.sampled_from(ops))
    value = draw(st.integers(1, 3)) if op == "add" else None
    report_index = None
    if kind in _REPORT_KINDS:
        report_index = draw(_none_or(st.integers(0, max(max_reports - 1, 0))))
    match = Matcher(link=_KIND_LINK[kind], kind=kind, phase=None if phase == CorruptField.default_phase else phase,
                    report_index=report_index)
    return match, CorruptField(field=path, op=op, value=value)


def actions_and_matchers(max_reports: int = MAX_REPORTS) -> st.SearchStrategy[tuple[Matcher, Any]]:
    """One ``(matcher, action)`` pair, valid together; actions in :data:`ACTION_ORDER`.

    Each action's parameters shrink to their defaults (``delay_ms`` to 0, ``copies`` to 1,
    ``status`` 500, ``mode`` strip, ...), bounded so one example fits a scenario timeout.
    """
    mr = {"max_reports": max_reports}
    by_name: dict[str, st.SearchStrategy[tuple[Matcher, Any]]] = {
        "drop-request": _pair(DropRequest, st.just(DropRequest()), **mr),
        "drop-response": _pair(DropResponse, st.just(DropResponse()), **mr),
        "delay": _pair(Delay, st.builds(Delay, delay_ms=st.integers(0, MAX_DELAY_MS),
                                        jitter_ms=st.just(0) | st.integers(0, 200)), **mr),
        "duplicate": _pair(Duplicate, st.builds(Duplicate, copies=st.integers(1, 3),
                                                spacing_ms=st.just(0) | st.integers(0, 300)), **mr),
        "respond": _pair(Respond, st.builds(Respond, status=st.sampled_from(_RESPOND_STATUSES),
                                            problem_type=_none_or(st.sampled_from(_PROBLEM_TOKENS))), **mr),
        "auth": _pair(Auth, st.builds(Auth, mode=st.sampled_from(AUTH_MODES)), **mr),
        "truncate": _pair(Truncate, st.builds(Truncate, drop_bytes=st.integers(1, 64)), **mr),
        "corrupt-bytes": _pair(CorruptBytes, st.builds(CorruptBytes, flips=st.integers(1, 8)), **mr),
        "corrupt-field": _corrupt_field_pair(max_reports),
        "reorder": _pair(Reorder, st.builds(Reorder, max_hold_ms=st.integers(50, MAX_HOLD_MS)), **mr),
        "replay-later": _pair(ReplayLater, st.one_of(
            st.builds(ReplayLater, after_messages=st.integers(1, 3)),
            st.builds(ReplayLater, after_event=st.sampled_from(sorted(EVENT_NAMES))),
        ), **mr),
        "synthesize": _pair(Synthesize, st.builds(
            Synthesize, message=st.sampled_from(("continue_step", "reinit_new_job", "reinit_mutated")),
            step=st.integers(1, 3) | st.just(0),
            report_index=_none_or(st.integers(0, max(max_reports - 1, 0)))), kinds=("agg_init",), **mr),
    }
    assert tuple(by_name) == ACTION_ORDER
    return st.one_of(*by_name.values())


def limits() -> st.SearchStrategy[Limits]:
    """``Limits()`` (every matching message) first, then exactly one of ``nth`` (shrinks to
    1), ``first``, ``every``, ``probability``; ``max_fires`` ``None`` first."""
    cap = _none_or(st.integers(1, 3))
    return st.one_of(
        st.just(Limits()),
        st.builds(Limits, nth=st.integers(1, 4), max_fires=cap),
        st.builds(Limits, first=st.integers(1, 4), max_fires=cap),
        st.builds(Limits, every=st.integers(2, 4), max_fires=cap),
        st.builds(Limits, probability=st.sampled_from((0.5, 0.25, 0.75, 1.0)), max_fires=cap),
    )


def rules(rule_id: str = "r0", max_reports: int = MAX_REPORTS) -> st.SearchStrategy[Rule]:
    """One valid rule named ``rule_id``: (matcher, action) then limits; shrinks as both do."""
    return st.builds(lambda pair, lim: Rule(id=rule_id, match=pair[0], action=pair[1], limits=lim),
                     actions_and_matchers(max_reports), limits())


def plans(min_rules: int = 1, max_rules: int = MAX_RULES, max_reports: int = MAX_REPORTS) -> st.SearchStrategy[Plan]:
    """A plan of ``min_rules..max_rules`` rules (ids ``r0``, ``r1``, ... in order) and a seed.

    Shrinks by deleting rules (toward ``min_rules``), then each rule as :func:`rules`, the
    seed toward 0. Bad arguments raise ValueError here, not at draw time.
    """
    if not 0 <= min_rules <= max_rules:
        raise ValueError(f"need 0 <= min_rules <= max_rules, got {min_rules}, {max_rules}")
    if max_reports < 1:
        raise ValueError(f"max_reports must be >= 1, got {max_reports}")
    return _plans(min_rules, max_rules, max_reports)


@st.composite
def _plans(draw: Any, min_rules: int, max_rules: int, max_reports: int) -> Plan:
    pairs = draw(st.lists(st.tuples(actions_and_matchers(max_reports), limits()),
                          min_size=min_rules, max_size=max_rules))
    seed = draw(st.integers(0, 2**16))
    return Plan(seed=seed, rules=tuple(Rule(id=f"r{i}", match=m, action=a, limits=lim)
                                      for i, ((m, a), lim) in enumerate(pairs)))


# --- workloads --------------------------------------------------------------------------------------


def workloads(vdaf: str | None = None, max_reports: int = MAX_REPORTS,
              query_types: Sequence[str] = ("time_interval", "fixed_size")) -> st.SearchStrategy[Any]:
    """A workload the harness can run and judge.

    - VDAF type (``vdaf`` fixes it: a ``--vdaf`` spec) Histogram first, sized to the reports;
    - query type, time_interval first;
    - one ``Upload`` (or two, split by a 500 ms pause so they land in different aggregation
      jobs), 1..``max_reports`` reports in total, each group at time offset 0 (first), or one
      time_precision before / after: the neighbouring batches (batch-boundary edges);
    - one ``Collect``; time_interval may widen its interval to the neighbour batch
      (``interval_offset_s=-tp`` / ``interval_extra_s=tp``); optionally a second ``Collect``
      of the same batch (``max_batch_query_count`` 2) for the idempotency checks.

    Shrinks toward one upload of one report at offset 0, one collection, Histogram,
    time_interval. Bad arguments raise here (ValueError; a bad ``vdaf`` spec: WorkloadError).
    """
    from harness.model import QUERY_TYPES
    from harness.workload import parse_vdaf

    if max_reports < 1:
        raise ValueError(f"max_reports must be >= 1, got {max_reports}")
    if not query_types or not set(query_types) <= set(QUERY_TYPES):
        raise ValueError(f"query_types must be a non-empty subset of {QUERY_TYPES}, got {query_types!r}")
    if vdaf is not None:
        parse_vdaf(vdaf, max_reports)  # harness.errors.WorkloadError on a bad spec or size
    return _workloads(vdaf, max_reports, tuple(query_types))


@st.composite
def _workloads(draw: Any, vdaf: str | None, max_reports: int, query_types: tuple[str, ...]) -> Any:
    from harness.model import Collect, Pause, TaskSpec, Upload, WorkloadSpec
    from harness.workload import VDAF_TYPES, parse_vdaf, vdaf_for

    query_type = draw(st.sampled_from(tuple(query_types)))
    tp = 3600
    offsets = st.sampled_from((0, -tp, tp))
    total = draw(st.integers(1, max_reports))
    two = total >= 2 and draw(st.booleans())
    steps: list[Any] = []
    if two:
        first = draw(st.integers(1, total - 1))
        steps += [Upload(count=first, time_offset_s=draw(offsets)), Pause(ms=500),
                  Upload(count=total - first, time_offset_s=draw(offsets))]
    else:
        steps.append(Upload(count=total, time_offset_s=draw(offsets)))
    widen = draw(st.sampled_from(((0, 0), (0, tp), (-tp, tp))))  # drawn for both: equal-length choices
    if query_type == "time_interval":
        steps.append(Collect(interval_offset_s=widen[0], interval_extra_s=widen[1]))
    else:
        steps.append(Collect())
    again = draw(st.booleans())
    if again:
        steps.append(Collect(label="again", batch_of="main" if query_type == "fixed_size" else None,
                             interval_offset_s=steps[-1].interval_offset_s,
                             interval_extra_s=steps[-1].interval_extra_s))
    if vdaf is not None:
        params = parse_vdaf(vdaf, total)
    else:
        params = vdaf_for(draw(st.sampled_from(VDAF_TYPES)), total)
    task = TaskSpec(vdaf=params, query_type=query_type, time_precision_s=tp,
                    max_batch_query_count=2 if again else 1)
    return WorkloadSpec(task=task, steps=tuple(steps))


#: Actions whose faults the reference protocol recovers from completely (no report may be
#: lost): a plan made only of these is checked with ``Expectation(complete=True)``.
RECOVERABLE = ("delay", "duplicate")


def expectation_for(plan: Plan) -> Any:
    """What a campaign demands of a generated scenario (see :mod:`harness.campaign`).

    Outcome ``pass_or_clean_failure`` (a random fault may legitimately end a collection);
    completeness only if every rule is recoverable (:data:`RECOVERABLE`, delays below the
    Leader's 1 s request timeout).
    """
    from harness.model import Expectation, Outcome

    def recoverable(rule: Rule) -> bool:
        name = action_name(rule.action)
        if name == "delay":
            return rule.action.delay_ms + rule.action.jitter_ms < 1_000
        return name in RECOVERABLE

    return Expectation(outcome=Outcome.PASS_OR_CLEAN_FAILURE, complete=all(recoverable(r) for r in plan.rules))


@st.composite
def scenarios(draw: Any, vdaf: str | None = None, max_rules: int = MAX_RULES, max_reports: int = MAX_REPORTS,
              name: str = "campaign") -> Any:
    """A :class:`~harness.model.Scenario`: a workload first (it bounds report indices), then a
    plan (:func:`plans`) and its :func:`expectation_for`. Shrinks as both do."""
    from harness.model import Scenario
    from harness.workload import upload_count

    wl = draw(workloads(vdaf=vdaf, max_reports=max_reports))
    plan = draw(plans(max_rules=max_rules, max_reports=upload_count(wl)))
    return Scenario(name=name, plan=plan, workload=wl, expect=expectation_for(plan),
                    doc="generated by faultrun campaign")
