"""Hypothesis strategies for fault plans and workloads: campaigns as data.

Everything generated here is a plain value (:class:`~faults.plan.Plan`,
:class:`~faults.scenario.WorkloadSpec`, :class:`~faults.scenario.Scenario`) that loads, dumps and
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
  Prio3Histogram, time_interval, ``min_batch_size`` 1.

Generated workloads always upload into the batch they query (so it fills unless a fault
loses reports), optionally add far-future reports (which must be refused) and late reports
between two collections of one batch (which must not change it). :func:`expectation_for`
says what a run must show: ``pass`` for plans a correct implementation MUST recover from
(:func:`must_recover`), else ``pass_or_clean_failure``.

Generated rules are ``optional``: a random matcher may legitimately never meet a message, and
such an example still checks the honest path (a hand-written plan's rules are essential: one
that never fires makes the run inconclusive).

As in hypothesis' own attrs inference (``st.builds`` over attrs classes): a parameter's
default is its minimal shrink, then ``None`` where allowed, then the sampled values; the
simplest alternative always comes first in ``one_of`` / ``sampled_from``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import attrs
from hypothesis import reject
from hypothesis import strategies as st

from dap import codec
from dap.constants import ProblemType
from faults import dapcodec
from faults.actions import (
    AUTH_MODES,
    CORRUPT_OPS,
    EVENT_NAMES,
    SYNTHESIZERS,
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
)
from faults.errors import WorkloadError
from faults.heavy_hitters import poplar1, with_poplar1
from faults.plan import Limits, Matcher, Plan, Rule
from faults.scenario import (
    LEADER_RETRY,
    QUERY_TYPES,
    Collect,
    Expectation,
    Outcome,
    Pause,
    Scenario,
    TaskSpec,
    Upload,
    WorkloadSpec,
)
from faults.vdafs import workload_vdaf
from faults.vocabulary import AUTHENTICATED_KINDS, CLIENT_LEADER, COLLECTOR_LEADER, LEADER_HELPER, LINK_KINDS, LINKS
from faults.workload import PRIO3_TYPES, parse_vdaf, upload_count, vdaf_for

__all__ = [
    "ACTION_ORDER",
    "FUTURE_OFFSET_S",
    "MAX_COLLECTION_RETRIED",
    "MAX_DELAY_MS",
    "MAX_REPORTS",
    "MAX_RETRIED_FIRES",
    "MAX_RULES",
    "PROBES",
    "SHORT_DELAY_MS",
    "actions_and_matchers",
    "corrupt_field_targets",
    "expectation_for",
    "limits",
    "must_recover",
    "plans",
    "probes",
    "recoverable_rules",
    "recovery",
    "rules",
    "scenarios",
    "workloads",
]

MAX_RULES = 3
MAX_REPORTS = 8

_KIND_LINK = {k: link for link, kinds in LINK_KINDS.items() for k in kinds}
_REPORT_KINDS = ("upload", "agg_init", "agg_continue")
_AUTH_LINKS = (COLLECTOR_LEADER, LEADER_HELPER)

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
#: The reference Leader's request timeout toward the Helper in the harness's images.
LEADER_TIMEOUT_MS = 1_000
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
def _matcher_for(draw: Any, cls: type, *, kinds: Sequence[str] | None = None, max_reports: int = MAX_REPORTS,
                 link: str | None = None, links: Sequence[str] = LINKS, default_phase_only: bool = False,
                 predicates: bool = True, link_kinds: Sequence[str] | None = None) -> Matcher:
    """A matcher valid for action class ``cls``: link (``link`` fixes it, else one of
    ``links``), then a kind carried on that link (``None`` = any, first; ``link_kinds``
    narrows the kinds), phase (``None`` = default, first;
    ``default_phase_only``: always), then DAP predicates that apply to that kind and phase
    (each ``None`` first; ``predicates=False``: none). Shrinks toward ``client->leader``,
    any kind, default phase, no predicates."""
    if kinds is not None:  # the action needs one of these kinds
        kind = draw(st.sampled_from(tuple(kinds)))
        link = _KIND_LINK[kind]
    else:
        if link is None:
            link = draw(st.sampled_from(tuple(links)))
        kind = draw(st.sampled_from((None, *(link_kinds or LINK_KINDS[link]))))
    phase = None if default_phase_only else draw(_phase_choice(cls))
    effective = phase or cls.default_phase
    report_index = step = status = None
    if predicates:
        if kind in _REPORT_KINDS:
            report_index = draw(_none_or(st.integers(0, max(max_reports - 1, 0))))
        step = draw(_none_or(st.integers(1, 2))) if kind == "agg_continue" else None
        if effective == "response" and not default_phase_only:
            status = draw(_none_or(st.sampled_from(_MATCH_STATUSES)))
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


#: Synthesized messages, simplest first (the order ``sampled_from`` shrinks toward).
SYNTH_MESSAGES: tuple[str, ...] = ("continue_step", "reinit_new_job", "reinit_mutated", "continue_mutated",
                                   "collection_mutated", "agg_share_mutated", "delete_job", "delete_collection",
                                   "forged_copy")
#: Credential modes of a forged request that it must be refused with (``duplicate`` with the
#: same token twice may be accepted: not a forgery).
FORGED_CREDENTIALS: tuple[str, ...] = ("strip", "wrong_value", "wrong_bearer", "wrong_scheme", "conflicting")
_AUTH_KINDS = tuple(sorted(AUTHENTICATED_KINDS))


@st.composite
def _synthesize_pair(draw: Any, max_reports: int = MAX_REPORTS, messages: Sequence[str] = SYNTH_MESSAGES,
                     credentials: bool | None = None) -> tuple[Matcher, Synthesize]:
    """A forged request: its message, the kind it is built from (any authenticated kind for
    ``forged_copy``), forged credentials (``None``, the genuine ones, first; always for
    ``forged_copy``; ``credentials`` True/False forces them / none). Phase: the default
    (after the genuine request was answered)."""
    message = draw(st.sampled_from(tuple(messages)))
    base = SYNTHESIZERS[message][0]
    kind = draw(st.sampled_from(_AUTH_KINDS)) if base is None else base
    if base is None or credentials:
        cred = draw(st.sampled_from(FORGED_CREDENTIALS))
    elif credentials is False:
        cred = None
    else:
        cred = draw(_none_or(st.sampled_from(FORGED_CREDENTIALS)))
    report_index = step = None
    if message in ("continue_step", "reinit_new_job", "reinit_mutated", "continue_mutated"):
        report_index = draw(_none_or(st.integers(0, max(max_reports - 1, 0))))
    if message == "continue_step":
        step = draw(st.integers(1, 3) | st.just(0))
    act = Synthesize(message=message, step=1 if step is None else step, report_index=report_index, credentials=cred)
    return Matcher(link=_KIND_LINK[kind], kind=kind), act


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
        # only the links with authenticated endpoints: a credential on an upload or HPKE
        # config request is ignored by design (the checker does not judge it)
        "auth": _pair(Auth, st.builds(Auth, mode=st.sampled_from(AUTH_MODES)), links=_AUTH_LINKS, **mr),
        "truncate": _pair(Truncate, st.builds(Truncate, drop_bytes=st.integers(1, 64)), **mr),
        "corrupt-bytes": _pair(CorruptBytes, st.builds(CorruptBytes, flips=st.integers(1, 8)), **mr),
        "corrupt-field": _corrupt_field_pair(max_reports),
        "reorder": _pair(Reorder, st.builds(Reorder, max_hold_ms=st.integers(50, MAX_HOLD_MS)), **mr),
        "replay-later": _pair(ReplayLater, st.one_of(
            st.builds(ReplayLater, after_messages=st.integers(1, 3)),
            st.builds(ReplayLater, after_event=st.sampled_from(sorted(EVENT_NAMES))),
        ), **mr),
        "synthesize": _synthesize_pair(max_reports),
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
    return st.builds(lambda pair, lim: Rule(id=rule_id, match=pair[0], action=pair[1], limits=lim, optional=True),
                     actions_and_matchers(max_reports), limits())


def _fires_once() -> st.SearchStrategy[Limits]:
    """Limits under which a rule fires at most once (``nth`` first: the simplest)."""
    return st.one_of(
        st.builds(Limits, nth=st.integers(1, 4)),
        st.builds(Limits, first=st.just(1)),
        st.builds(Limits, every=st.integers(2, 4), max_fires=st.just(1)),
        st.builds(Limits, probability=st.sampled_from((0.5, 0.25, 0.75, 1.0)), max_fires=st.just(1)),
    )


def recoverable_rules(max_reports: int = MAX_REPORTS) -> st.SearchStrategy[tuple[Matcher, Any, Limits]]:
    """One ``(matcher, action, limits)`` a correct pair of Aggregators MUST recover from
    (:func:`recovery` is not None), in :data:`ACTION_ORDER`: Leader->Helper ``drop-request``
    / ``drop-response`` / ``respond`` 429, 500, 503 / a delay beyond the Leader's timeout,
    each firing at most once (so up to :data:`MAX_RULES` of them stay within
    :data:`MAX_RETRIED_FIRES`); a ``delay`` of at most :data:`SHORT_DELAY_MS` anywhere;
    ``duplicate`` and ``replay-later`` anywhere; ``auth`` on the first collection-job PUT;
    ``synthesize`` after the Helper's answer."""
    mr = {"max_reports": max_reports}
    # a fault that fires once must hit a request the Leader retries: no predicate that may
    # match nothing (a report index, a status) -- the rule's limits already pick the message --
    # and no kind that never travels here (no Prio3 continuation; no job is deleted)
    l2h = {"link": LEADER_HELPER, "predicates": False, "link_kinds": ("agg_init", "agg_share"), **mr}

    def with_limits(pair: st.SearchStrategy[tuple[Matcher, Any]], lim: st.SearchStrategy[Limits]) -> Any:
        return st.builds(lambda p, li: (p[0], p[1], li), pair, lim)

    short_delay = st.builds(Delay, delay_ms=st.integers(0, SHORT_DELAY_MS - 200), jitter_ms=st.just(0) | st.integers(0, 200))
    timeout_delay = st.builds(Delay, delay_ms=st.integers(LEADER_TIMEOUT_MS + 100, MAX_DELAY_MS),
                              jitter_ms=st.just(0) | st.integers(0, 200))
    by_name = {
        "drop-request": with_limits(_pair(DropRequest, st.just(DropRequest()), **l2h), _fires_once()),
        "drop-response": with_limits(_pair(DropResponse, st.just(DropResponse()), **l2h), _fires_once()),
        "delay": st.one_of(with_limits(_pair(Delay, short_delay, **mr), limits()),
                           with_limits(_pair(Delay, timeout_delay, **l2h), _fires_once())),
        "duplicate": with_limits(_pair(Duplicate, st.builds(Duplicate, copies=st.integers(1, 3),
                                                            spacing_ms=st.just(0) | st.integers(0, 300)), **mr),
                                 limits()),
        "respond": with_limits(_pair(Respond, st.builds(Respond, status=st.sampled_from(sorted(_RETRYABLE_STATUSES))),
                                     **l2h), _fires_once()),
        # the first collection-job PUT only (every auth rule here hits that one message)
        "auth": st.builds(lambda mode: (Matcher(link=COLLECTOR_LEADER, kind="collection_create"), Auth(mode=mode),
                                        Limits(nth=1)), st.sampled_from(AUTH_MODES)),
        "replay-later": with_limits(_pair(ReplayLater, st.one_of(
            st.builds(ReplayLater, after_messages=st.integers(1, 3)),
            st.builds(ReplayLater, after_event=st.sampled_from(sorted(EVENT_NAMES)))), **mr), limits()),
        # one family per forged message: each tests another Helper rule (dap-09.md §10.3, §10.6, §12)
        # report_index counts within the matched job, which often holds one report: the
        # whole job (None) or its first report, never an index the job may not have
        "synthesize": st.one_of(*(with_limits(_pair(Synthesize, st.builds(
            Synthesize, message=st.just(message), step=st.integers(1, 3) | st.just(0),
            report_index=_none_or(st.just(0))),
            kinds=("agg_init",), default_phase_only=True, **mr), limits())
            for message in ("continue_step", "reinit_new_job", "reinit_mutated"))),
    }
    return st.one_of(*by_name.values())


def plans(min_rules: int = 1, max_rules: int = MAX_RULES, max_reports: int = MAX_REPORTS,
          recoverable: bool = False) -> st.SearchStrategy[Plan]:
    """A plan of ``min_rules..max_rules`` rules (ids ``r0``, ``r1``, ... in order) and a seed.

    ``recoverable``: only rules of :func:`recoverable_rules`, so :func:`must_recover` holds
    and a run must end in the exact, complete aggregate. Shrinks by deleting rules (toward
    ``min_rules``), then each rule as :func:`rules`, the seed toward 0. Bad arguments raise
    ValueError here, not at draw time.
    """
    if not 0 <= min_rules <= max_rules:
        raise ValueError(f"need 0 <= min_rules <= max_rules, got {min_rules}, {max_rules}")
    if max_reports < 1:
        raise ValueError(f"max_reports must be >= 1, got {max_reports}")
    if recoverable and max_rules > MAX_RETRIED_FIRES:
        raise ValueError(f"recoverable plans have at most {MAX_RETRIED_FIRES} rules (MAX_RETRIED_FIRES)")
    return _plans(min_rules, max_rules, max_reports, recoverable)


@st.composite
def _plans(draw: Any, min_rules: int, max_rules: int, max_reports: int, recoverable: bool = False) -> Plan:
    if recoverable:
        triples = draw(st.lists(recoverable_rules(max_reports), min_size=min_rules, max_size=max_rules))
    else:
        pairs = draw(st.lists(st.tuples(actions_and_matchers(max_reports), limits()),
                              min_size=min_rules, max_size=max_rules))
        triples = [(m, a, lim) for (m, a), lim in pairs]
    seed = draw(st.integers(0, 2**16))
    return Plan(seed=seed, rules=tuple(Rule(id=f"r{i}", match=m, action=a, limits=lim, optional=True)
                                      for i, (m, a, lim) in enumerate(triples)))


# --- workloads --------------------------------------------------------------------------------------

#: A far-future report's time offset: beyond any Leader's clock-skew tolerance (the
#: reference Leader allows 60 s), so a correct Leader refuses it with ``reportTooEarly``
#: (dap-09.md §9.2, §11) and never counts it; as the catalogue's ``future-report``.
FUTURE_OFFSET_S = 10 * 24 * 3600
#: The generated tasks' time precision; the second upload group may land one batch earlier.
TIME_PRECISION_S = 3600
#: Largest generated ``min_batch_size`` (never above the reports uploaded into the queried batch).
MAX_MIN_BATCH_SIZE = 3
#: Poplar1 workloads: the tree depths drawn (each collection walks every level: one
#: aggregation job with a real continuation per level), and the deepest a campaign runs.
POPLAR1_BITS = (2, 3)
MAX_POPLAR1_BITS = 4


def workloads(vdaf: str | None = None, max_reports: int = MAX_REPORTS,
              query_types: Sequence[str] = ("time_interval", "fixed_size"),
              vdaf_types: Sequence[str] | None = None) -> st.SearchStrategy[Any]:
    """A workload the harness can run and judge, whose queried batch can fill.

    - query type, time_interval first; VDAF type (``vdaf`` fixes it: a ``--vdaf`` spec;
      ``vdaf_types`` limits the types drawn to those the target supports, ``images.toml``
      ``vdafs``) Histogram first, sized to the reports;
    - ``Upload`` of 1.. reports at the run's base time: always inside the queried batch, so
      the batch fills unless a fault loses reports; ``min_batch_size`` 1..3, never more
      than these reports, or (first) 1 for time_interval and all of them for fixed_size
      (whose collected batch then holds every one of them);
    - optionally a far-future ``Upload`` (``FUTURE_OFFSET_S``) right after it: the
      expectation then demands ``reportTooEarly`` for those indices (:func:`expectation_for`);
    - optionally a second ``Upload`` after a pause of one Leader job interval + 300 ms
      (another aggregation job, :class:`~faults.scenario.Pause`), at the
      base time or one time_precision earlier (the neighbouring batch: a batch-boundary
      edge; time_interval may widen its query to cover it);
    - one ``Collect``; then optionally a second ``Collect`` of the same batch
      (``max_batch_query_count`` 2: the idempotency checks), either at once or after
      late uploads into the collected batch (a correct Leader refuses or ignores them and
      the second collection equals the first).

    At most ``max_reports`` reports in all. Shrinks toward one upload of one report at
    offset 0, ``min_batch_size`` 1, one collection, Histogram, time_interval. Bad arguments
    raise here (ValueError; a bad ``vdaf`` spec: WorkloadError).
    """

    if max_reports < 1:
        raise ValueError(f"max_reports must be >= 1, got {max_reports}")
    if not query_types or not set(query_types) <= set(QUERY_TYPES):
        raise ValueError(f"query_types must be a non-empty subset of {QUERY_TYPES}, got {query_types!r}")
    if vdaf is not None:
        check_campaign_vdaf(vdaf, max_reports)
    families = _families(vdaf_types)
    return _workloads(vdaf, max_reports, tuple(query_types), families)


def _families(vdaf_types: Sequence[str] | None) -> tuple[str, ...]:
    """The VDAF types a campaign draws, simplest first: every one the workloads know, or
    those of them in ``vdaf_types`` (ValueError if none is)."""
    every = (*PRIO3_TYPES, "Poplar1")
    if vdaf_types is None:
        return every
    out = tuple(t for t in every if t in vdaf_types)
    if not out:
        raise ValueError(f"vdaf_types {list(vdaf_types)!r}: none of them has a workload ({', '.join(every)})")
    return out


def check_campaign_vdaf(vdaf: str, max_reports: int = MAX_REPORTS) -> None:
    """Raise :class:`harness.errors.WorkloadError` (one line) for a ``--vdaf`` spec campaigns
    cannot run: a bad spec or size, or a Poplar1 tree deeper than :data:`MAX_POPLAR1_BITS`
    (every generated collection walks the whole tree: one collection per level)."""

    params = parse_vdaf(vdaf, max_reports)
    if workload_vdaf(params).explicit_measurements and (params.bits or 0) > MAX_POPLAR1_BITS:
        raise WorkloadError(f"--vdaf {vdaf}: campaigns walk every level of the tree; use at most "
                            f"bits={MAX_POPLAR1_BITS} (e.g. --vdaf poplar1:bits=3)")


@st.composite
def _workloads(draw: Any, vdaf: str | None, max_reports: int, query_types: tuple[str, ...],
               families: tuple[str, ...] = (*PRIO3_TYPES, "Poplar1")) -> Any:

    # Every choice is drawn whatever the earlier ones were and then clamped to the report
    # budget: hypothesis orders examples shortlex (fewer choices first), so a draw that
    # happened only when reports were left would make *more* reports the simpler example.
    # The total comes first and the optional groups take from it, the rest going to the
    # first upload: dropping a group (its flag to False) keeps the total, so a failure that
    # needs N reports shrinks to one upload of N.
    tp = TIME_PRECISION_S
    query_type = draw(st.sampled_from(tuple(query_types)))
    total = draw(st.integers(1, max_reports))
    # 0 (the simplest): time_interval 1; fixed_size all of the first upload, so the collected
    # (first) batch holds every report of it and a fault on any of their jobs matters -- with
    # 1, fixed_size batches hold one report each and the collection sees only the first
    size_choice = draw(st.integers(0, MAX_MIN_BATCH_SIZE))
    spare = total - 1  # the first upload keeps at least one report
    future = second = late = offset = 0
    if draw(st.booleans()):  # far-future reports
        future = min(draw(st.integers(1, 2)), spare)
        spare -= future
    if draw(st.booleans()):  # a second job, in this batch or the one before
        second = min(draw(st.integers(1, max_reports)), spare)
        offset = draw(st.sampled_from((0, -tp)))
        spare -= second
    widen = draw(st.sampled_from(((0, 0), (-tp, tp))))  # drawn for both query types: equal-length choices
    again = draw(st.sampled_from(("none", "at_once", "after_late_uploads")))
    if again == "after_late_uploads":
        late = min(draw(st.integers(1, 2)), spare)
        spare -= late
    main = 1 + spare
    if size_choice == 0:
        min_batch_size = main if query_type == "fixed_size" else 1
    else:
        min_batch_size = min(size_choice, main)
    steps: list[Any] = [Upload(count=main)]
    if future:
        steps.append(Upload(count=future, time_offset_s=FUTURE_OFFSET_S))
    if second:
        steps += [Pause(ms=300, job_intervals=1), Upload(count=second, time_offset_s=offset)]
    first = Collect(interval_offset_s=widen[0], interval_extra_s=widen[1]) if query_type == "time_interval" \
        else Collect()
    steps.append(first)
    if late:
        steps.append(Upload(count=late))
    if again != "none":
        steps.append(Collect(label="again", batch_of="main" if query_type == "fixed_size" else None,
                             interval_offset_s=first.interval_offset_s, interval_extra_s=first.interval_extra_s))
    total = sum(s.count for s in steps if isinstance(s, Upload))
    # Poplar1 last (the most complex): the same shape as a heavy-hitters walk
    # (faults.heavy_hitters.with_poplar1: the first collection walks the tree, a second one
    # repeats level 0, far-future and late uploads stay what they are)
    family = draw(st.sampled_from(families)) if vdaf is None else None
    if vdaf is not None:
        params = parse_vdaf(vdaf, total)
    elif family == "Poplar1":
        params = poplar1(draw(st.sampled_from(POPLAR1_BITS)))
    else:
        params = vdaf_for(family, total)
    shape = WorkloadSpec(task=TaskSpec(vdaf=vdaf_for(PRIO3_TYPES[0], total), query_type=query_type,
                                       time_precision_s=tp, min_batch_size=min_batch_size,
                                       max_batch_query_count=1 if again == "none" else 2),
                         steps=tuple(steps))
    if workload_vdaf(params).explicit_measurements:
        return with_poplar1(shape, params, total)
    return attrs.evolve(shape, task=attrs.evolve(shape.task, vdaf=params))


# --- what a generated scenario must show ---------------------------------------------------------------

#: A delay (plus jitter) this short is harmless on every link: half the reference Leader's
#: 1 s request timeout toward the Helper (room for the Helper's own processing time), and a
#: small part of a scenario's time budget for the Client's and Collector's messages.
SHORT_DELAY_MS = 500
#: Leader->Helper faults the Leader's retries must outlast when they fire at most this
#: often in all: its retry budget (8 s in the harness's images) covers three failed attempts
#: of one request with backoff, each at most a timed-out 1 s attempt.
MAX_RETRIED_FIRES = 3
#: Collector->Leader requests refused before they change anything that the harness's own
#: collection retries outlast (it starts a collection up to 3 times, tolerates 4 failed
#: polls in a row): at most this many such messages in all.
MAX_COLLECTION_RETRIED = 2
_RETRYABLE_STATUSES = frozenset({429, 500, 503})


def _max_fires(limits: Limits) -> int | None:
    """How often a rule can fire at most (None: unbounded)."""
    caps = [c for c in (limits.max_fires, limits.first, 1 if limits.nth is not None else None) if c is not None]
    return min(caps) if caps else None


#: Forged credentials a target may take as genuine (the genuine one is still there).
_MAY_AUTHENTICATE = (None, "conflicting", "duplicate")


def recovery(rule: Rule, family: str = "prio3") -> str | None:
    """How a correct pair of Aggregators recovers from ``rule`` whatever else happens, for a
    workload of VDAF ``family`` (:attr:`faults.vdafs.WorkloadVdaf.family`):

    - ``always``: nothing is lost however often it fires: ``duplicate`` (an identical
      request again: ignored / replayed, dap-09.md §10.3, §12, §16), ``replay-later`` (the
      same, later), a ``delay`` of at most :data:`SHORT_DELAY_MS`, and the proxy's forged
      ``synthesize`` messages sent after the genuine answer (phase response, answer 2xx
      or any): a re-init under a new job ID is ``report_replayed``, a changed re-init a
      4xx, a continuation of a finished Prio3 job a 4xx, a changed collection request a 4xx,
      a changed AggregateShareReq ``batchMismatch``, a request with forged credentials
      ``unauthorizedRequest``; the Leader never sees them. Not: a DELETE with credentials the
      target may take as genuine, a forged step-1 continuation of a Poplar1 job (its reports
      await step 1, so the Helper may take it);
    - ``retried``: Leader->Helper ``drop-request``, ``drop-response``, ``respond`` 429 /
      500 / 503 and a longer ``delay`` (a timeout): the Leader re-sends the identical
      request and the Helper replays its answer, provided the faults fire few enough times
      (:data:`MAX_RETRIED_FIRES` in all, see :func:`expectation_for`);
    - ``collection_retried``: a tampered credential (``auth``) on Collector->Leader
      requests: a correct Leader refuses it with ``unauthorizedRequest`` before changing
      anything and the Collector's next attempt goes through (the catalogue's
      ``bad-collector-token``), provided at most :data:`MAX_COLLECTION_RETRIED` messages
      are tampered with;
    - None: the fault may legitimately lose reports or end the collection (a Client that
      does not retry an upload, a tampered or corrupted message, a 4xx, a held message...).
    """
    act = rule.action
    if act.copies_verbatim:  # the same request again
        return "always"
    if isinstance(act, Delay):
        if act.delay_ms + act.jitter_ms <= SHORT_DELAY_MS:
            return "always"
        return "retried"  # a timeout toward the Helper, or a slow Client/Collector message
    if act.sends_copies:  # a forged message
        if isinstance(act, Synthesize) and act.message.startswith("delete_") and act.credentials in _MAY_AUTHENTICATE:
            return None  # a DELETE the target may take as genuine: it may legitimately delete
        if isinstance(act, Synthesize) and act.message == "continue_step" and family == "poplar1":
            return None  # Poplar1's reports await step 1: a forged one may be taken (catalogue inject-continue-step-skew)
        after_answer = rule.phase == "response" and rule.match.status in (None, 200, 201) and act.delay_ms == 0
        return "always" if after_answer else None
    if act.tampers_auth and rule.match.link == COLLECTOR_LEADER:
        return "collection_retried"
    if rule.match.link != LEADER_HELPER:
        return None
    if act.drops:
        return "retried"
    if act.answers_in_place and act.status in _RETRYABLE_STATUSES:
        return "retried"
    return None


def must_recover(plan: Plan, family: str = "prio3") -> bool:
    """Whether a correct implementation MUST end ``plan`` with the exact, complete aggregate:
    every rule recovers ``always``, or is ``retried`` and all of those together fire at most
    :data:`MAX_RETRIED_FIRES` times, or is ``collection_retried`` and all of those hit at
    most :data:`MAX_COLLECTION_RETRIED` messages (:func:`recovery`; rules limited to the
    same n-th message of the same matcher hit one message)."""
    fires = {"retried": 0, "collection_retried": 0}
    same_message: set[tuple[Matcher, int]] = set()
    for rule in plan.rules:
        how = recovery(rule, family)
        if how is None:
            return False
        if how in fires:
            cap = _max_fires(rule.limits)
            if cap is None:
                return False
            if rule.limits.nth is not None:
                if (rule.match, rule.limits.nth) in same_message:
                    continue
                same_message.add((rule.match, rule.limits.nth))
            fires[how] += cap
    return fires["retried"] <= MAX_RETRIED_FIRES and fires["collection_retried"] <= MAX_COLLECTION_RETRIED


def expectation_for(plan: Plan, workload: Any = None) -> Any:
    """What a campaign demands of a generated scenario (see :mod:`harness.campaign`).

    - Plans the protocol MUST recover from (:func:`must_recover`): outcome ``pass``, complete:
      a clean failure there is a finding (``unexpected_clean_failure``), unless the plan
      relies on the Leader's retries (``optional_recovery``) and the run shows it did without;
    - any other plan: ``pass_or_clean_failure`` (a random fault may legitimately end a
      collection), completeness not demanded;
    - far-future uploads of ``workload`` (time offset >= :data:`FUTURE_OFFSET_S`) are never
      counted and SHOULD be refused with ``reportTooEarly``, whatever the plan (faults on the
      Client->Leader link may keep them from the Leader, which the checker accepts).
    """

    rejected: dict[int, str] = {}
    family = workload_vdaf(workload.task.vdaf).family if workload is not None else "prio3"
    if workload is not None:
        index = 0
        for step in workload.steps:
            if isinstance(step, Upload):
                if step.time_offset_s >= FUTURE_OFFSET_S:
                    rejected.update({i: "reportTooEarly" for i in range(index, index + step.count)})
                index += step.count
    if must_recover(plan, family):
        # a lost or refused Leader->Helper exchange is recovered by the Leader's retry, a SHOULD:
        # without it the run is compliant, said "without optional recovery"
        retried = any(recovery(r, family) == "retried" for r in plan.rules)
        return Expectation(outcome=Outcome.PASS, complete=True, rejected_uploads=rejected,
                           optional_recovery=LEADER_RETRY if retried else "")
    return Expectation(outcome=Outcome.PASS_OR_CLEAN_FAILURE, complete=False, rejected_uploads=rejected)


#: What :func:`probes` adds, each to about half the examples (rule id ``probe-<name>``).
PROBES: tuple[str, ...] = ("dup-upload", "forged-replay", "collection-forgery", "forged-credentials")
#: Forged credentials a request must be refused with (a DELETE with the genuine credential
#: beside a wrong one may legitimately delete).
_REFUSED_CREDENTIALS = FORGED_CREDENTIALS[:-1]


@st.composite
def probes(draw: Any, max_reports: int = MAX_REPORTS, family: str = "prio3") -> tuple[Rule, ...]:
    """Rules a campaign adds to the random plan so that what a uniform draw over actions
    reaches rarely is in every campaign: each of :data:`PROBES` behind its own boolean
    (about half the examples each; False, no probe, shrinks first), each a fault the protocol
    always recovers from (:func:`recovery`), so the expectation stays what the plan makes it:

    - ``dup-upload``: uploads reach the Leader twice (dap-09 §12: counted once);
    - ``forged-replay``: a report PUT again in a new aggregation job, an upload replayed once
      its report is aggregated or after the collection, an init replayed after the
      collection, a continuation (Poplar1) replayed once answered (§12, §10.3, §10.6);
    - ``collection-forgery``: the collection-job PUT again with another query (§15), the
      AggregateShareReq with another count (§16), a DELETE of the collection job with forged
      credentials (§6);
    - ``forged-credentials``: a copy of an authenticated request (any kind) or a DELETE of an
      aggregation job with forged credentials (§6).
    """
    out: list[tuple[str, Matcher, Any, Limits]] = []
    if draw(st.booleans()):
        copies = draw(st.integers(1, 2))
        lim = draw(st.sampled_from((Limits(), Limits(every=2), Limits(nth=1))))
        out.append(("dup-upload", Matcher(link=CLIENT_LEADER, kind="upload"), Duplicate(copies=copies), lim))
    if draw(st.booleans()):
        how = draw(st.sampled_from(("reinit_new_job", "upload", "agg_init", "agg_continue")))
        if family == "poplar1" and draw(st.booleans()):
            how = "agg_continue"  # the message only Poplar1 has: half its replays
        if how == "reinit_new_job":
            act: Any = Synthesize(message="reinit_new_job", report_index=draw(_none_or(st.just(0))))
            out.append(("forged-replay", Matcher(link=LEADER_HELPER, kind="agg_init"), act, Limits(nth=1)))
        else:  # again after the collection, or (uploads) once the report is aggregated, or
            # (a continuation: Poplar1) once the Helper answered it
            event = {"upload": draw(st.sampled_from(("collection_finished", "agg_init_done"))),
                     "agg_continue": "agg_continue_done"}.get(how, "collection_finished")
            out.append(("forged-replay", Matcher(link=_KIND_LINK[how], kind=how),
                        ReplayLater(after_event=event), Limits(nth=1)))
    if draw(st.booleans()):
        message = draw(st.sampled_from(("collection_mutated", "agg_share_mutated", "delete_collection")))
        cred = draw(st.sampled_from(_REFUSED_CREDENTIALS)) if message == "delete_collection" else None
        kind = SYNTHESIZERS[message][0]
        out.append(("collection-forgery", Matcher(link=_KIND_LINK[kind], kind=kind),
                    Synthesize(message=message, credentials=cred), Limits(nth=1)))
    if draw(st.booleans()):
        kind = draw(st.sampled_from((*_AUTH_KINDS, "delete_job")))
        if kind == "delete_job":
            act = Synthesize(message="delete_job", credentials=draw(st.sampled_from(_REFUSED_CREDENTIALS)))
            match = Matcher(link=LEADER_HELPER, kind="agg_init")
        else:
            act = Synthesize(message="forged_copy", credentials=draw(st.sampled_from(FORGED_CREDENTIALS)))
            match = Matcher(link=_KIND_LINK[kind], kind=kind)
        out.append(("forged-credentials", match, act, Limits(nth=1)))
    return tuple(Rule(id=f"probe-{name}", match=m, action=a, limits=lim, optional=True) for name, m, a, lim in out)


@st.composite
def scenarios(draw: Any, vdaf: str | None = None, max_rules: int = MAX_RULES, max_reports: int = MAX_REPORTS,
              name: str = "campaign", with_probes: bool = True, keep_workload: Any = None,
              vdaf_types: Sequence[str] | None = None) -> Any:
    """A :class:`~faults.scenario.Scenario`: a workload first (it bounds report indices), then a
    plan (:func:`plans`; half of them ``recoverable``) plus :func:`probes` (``with_probes``),
    and its :func:`expectation_for`. ``vdaf_types``: the VDAF types the target supports
    (:func:`workloads`). Shrinks as all three do. ``keep_workload(workload) -> bool``
    (campaign shards, :mod:`harness.campaign.sharding`): a workload it refuses rejects the
    example before the plan, the costly part, is drawn."""

    wl = draw(workloads(vdaf=vdaf, max_reports=max_reports, vdaf_types=vdaf_types))
    if keep_workload is not None and not keep_workload(wl):
        reject()
    # Half the plans are made only of faults the protocol must recover from: there the
    # expectation is an exact aggregate, and a clean failure is a finding. False (any fault)
    # first: the simpler choice.
    recoverable = max_rules <= MAX_RETRIED_FIRES and draw(st.booleans())
    plan = draw(plans(min_rules=0 if with_probes else 1, max_rules=max_rules, max_reports=upload_count(wl),
                      recoverable=recoverable))
    if with_probes:
        extra = draw(probes(upload_count(wl), workload_vdaf(wl.task.vdaf).family))
        plan = attrs.evolve(plan, rules=(*plan.rules, *extra))
        if not plan.rules:  # at least one rule, as plans() alone gives
            plan = attrs.evolve(plan, rules=draw(plans(max_rules=1, max_reports=upload_count(wl),
                                                       recoverable=recoverable)).rules)
    return Scenario(name=name, plan=plan, workload=wl, expect=expectation_for(plan, wl),
                    doc="generated by faultrun campaign")


# --- network rules (faults.network; campaigns under --network netns) ------------------------------
# Appended as one block. Generated network rules are ``optional`` like the HTTP ones, their
# windows are bounded so a partition heals inside the Leader's retry budget, and a scenario with
# any of them demands ``pass_or_clean_failure`` (a job abandoned after its retry budget is a
# legitimate outcome; a wrong or double-counted aggregate never is).

from faults import network as net  # noqa: E402 - the network block is self-contained (net.Reorder is not the HTTP Reorder)

__all__ += ["MAX_CUT_MS", "MAX_NET_RULES", "NET_ACTION_ORDER", "net_actions", "net_rules", "network_scenarios",
            "scenario_expectation", "windows", "with_net_rules"]

#: Network actions, simplest first (the order ``one_of`` shrinks toward).
NET_ACTION_ORDER: tuple[str, ...] = ("partition", "blackhole", "loss", "latency", "rate", "reorder", "duplicate",
                                     "reset")
assert set(NET_ACTION_ORDER) == set(net.NET_ACTIONS)
MAX_NET_RULES = 2
#: the longest a generated window cuts a link: well inside the Leader's 8 s retry budget
MAX_CUT_MS = 3_000
_MAX_LOSS = 0.3
_MAX_LATENCY_MS = 300


def net_actions() -> st.SearchStrategy[Any]:
    """A network action with bounded parameters (shrinks toward a partition, then each action's
    gentlest parameters)."""
    by_name = {
        "partition": st.just(net.Partition()),
        "blackhole": st.just(net.Blackhole()),
        "loss": st.builds(net.Loss, probability=st.floats(0.01, _MAX_LOSS)),
        "latency": st.builds(net.Latency, delay_ms=st.integers(0, _MAX_LATENCY_MS), jitter_ms=st.integers(0, 100)),
        "rate": st.builds(net.Rate, kbit=st.sampled_from((4096, 1024, 512, 256, 128))),
        "reorder": st.builds(net.Reorder, probability=st.floats(0.05, 0.5), max_hold_ms=st.integers(10, 200)),
        "duplicate": st.builds(net.DuplicatePackets, probability=st.floats(0.05, 0.5), copies=st.integers(1, 2)),
        "reset": st.builds(net.Reset, after_bytes=st.integers(0, 2000), count=st.integers(1, 2)),
    }
    return st.one_of(*(by_name[n] for n in NET_ACTION_ORDER))


@st.composite
def windows(draw: Any, link: str, *, cut: bool = False) -> net.Window:
    """A window on ``link``: from the scenario's start (``after_ms``), or from a message of a kind
    that travels on it; bounded by :data:`MAX_CUT_MS` when ``cut`` (partition, blackhole)."""
    for_ms = draw(st.integers(100, MAX_CUT_MS)) if cut else draw(_none_or(st.integers(100, 5_000)))
    if draw(st.booleans()):  # triggered by a message (the second choice: time windows are simpler)
        kind = draw(st.sampled_from(LINK_KINDS[link]))
        return net.Window(after_ms=draw(st.integers(0, 500)), for_ms=for_ms, after_kind=kind,
                      after_nth=draw(st.integers(1, 3)))
    return net.Window(after_ms=draw(st.integers(0, 2_000)), for_ms=for_ms)


@st.composite
def net_rules(draw: Any, rule_id: str = "n0") -> net.NetRule:
    """One optional network rule: link, direction (as the action allows), window, action."""
    action = draw(net_actions())
    link = draw(st.sampled_from(LINKS))
    dirs = [d for d in net.DIRECTIONS if d in action.directions]
    direction = draw(st.sampled_from(dirs[::-1]))  # "both" first where allowed
    window = draw(windows(link, cut=action.cuts))
    return net.NetRule(id=rule_id, link=link, action=action, direction=direction, window=window, optional=True)


@st.composite
def with_net_rules(draw: Any, plan_strategy: st.SearchStrategy[Plan], max_net_rules: int = MAX_NET_RULES) -> Plan:
    """A plan from ``plan_strategy`` plus 0..``max_net_rules`` network rules (ids ``n0``, ``n1``...);
    shrinks by deleting network rules first."""
    plan = draw(plan_strategy)
    n = draw(st.integers(0, max_net_rules))
    nets = tuple(draw(net_rules(f"n{i}")) for i in range(n))
    return Plan(seed=plan.seed, rules=plan.rules, version=plan.version, net_rules=nets)


@st.composite
def network_scenarios(draw: Any, vdaf: str | None = None, max_rules: int = MAX_RULES, max_reports: int = MAX_REPORTS,
                      max_net_rules: int = MAX_NET_RULES, name: str = "campaign", keep_workload: Any = None,
                      vdaf_types: Sequence[str] | None = None) -> Any:
    """:func:`scenarios` with network rules mixed in (``faultrun campaign --network netns``): a plan
    with network rules expects ``pass_or_clean_failure`` (never a wrong aggregate)."""
    sc = draw(scenarios(vdaf=vdaf, max_rules=max_rules, max_reports=max_reports, name=name,
                        keep_workload=keep_workload, vdaf_types=vdaf_types))
    plan = draw(with_net_rules(st.just(sc.plan), max_net_rules))
    if not plan.net_rules:
        return sc
    return Scenario(name=name, plan=plan, workload=sc.workload, expect=scenario_expectation(plan, sc.workload),
                    doc=sc.doc)


def scenario_expectation(plan: Plan, workload: Any) -> Any:
    """What a campaign demands of any generated plan, network rules included: with network rules
    ``pass_or_clean_failure`` (never a wrong aggregate), else :func:`expectation_for`. Used to
    re-derive a smaller plan's expectation (:mod:`harness.campaign.minimize`)."""
    expect = expectation_for(plan, workload)
    if not plan.net_rules:
        return expect
    return Expectation(outcome=Outcome.PASS_OR_CLEAN_FAILURE, complete=False, rejected_uploads=expect.rejected_uploads)
