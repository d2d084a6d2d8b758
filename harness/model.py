"""The harness's data: what a scenario asks for, what a run recorded, what the checker concluded.

Jepsen's split, as plain frozen values that the three parts pass along and never reach
around:

- the **workload** (:class:`WorkloadSpec`: a task and a list of steps the honest parties
  perform) — run by :mod:`harness.run`, which writes a :class:`RunRecord`;
- the **nemesis** (a :class:`faults.Plan`) — executed by the fault proxy, which writes the
  history (:mod:`faults.history`);
- the **checker** (:mod:`harness.checker`) — reads a :class:`RunRecord` and the history and
  returns a :class:`CheckReport` of :class:`Verdict` s.

A :class:`Scenario` (one catalogue entry, or a plan given on the command line) bundles a
workload, a plan and an :class:`Expectation`. Everything here round-trips through JSON
(``to_dict`` / ``from_dict``) so a run directory holds all that is needed to re-check it
(``faultrun analyze DIR``).

Run directory layout (one per scenario run)::

    scenario.json   the Scenario (workload + plan + expectation)
    plan.toml       the plan alone, loadable with ``faultrun --plan``
    record.json     the RunRecord (what the workload did and saw)
    history.jsonl   the proxy's history for this scenario only
    flows.mitm      mitmproxy flows (open in mitmweb)
    logs/           role logs
    report.json     the CheckReport
    junit.xml       one testcase per invariant
    report.html     sequence chart (Client, Collector, Leader, Helper lanes)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs
from attrs import validators as v

from dap.vdaf.params import VdafParams
from faults.plan import Plan, plan_from_dict, plan_to_dict

__all__ = [
    "QUERY_TYPES",
    "CheckReport",
    "Collect",
    "CollectionRecord",
    "Expectation",
    "FireEvent",
    "Outcome",
    "Pause",
    "RunRecord",
    "Scenario",
    "Step",
    "TaskSpec",
    "Upload",
    "UploadRecord",
    "Verdict",
    "VerdictClass",
    "WorkloadSpec",
]

QUERY_TYPES = ("time_interval", "fixed_size")


# --- workload ------------------------------------------------------------------------------


@attrs.frozen
class TaskSpec:
    """The DAP task a scenario provisions (a fresh random task ID per run)."""

    vdaf: VdafParams = attrs.field(factory=lambda: VdafParams.from_interop({"type": "Prio3Histogram", "length": "16", "chunk_length": "4"}))
    query_type: str = attrs.field(default="time_interval", validator=v.in_(QUERY_TYPES))
    min_batch_size: int = 1
    max_batch_size: int | None = None
    max_batch_query_count: int = 1
    time_precision_s: int = 3600
    #: task_expiration = run start + this
    expiration_after_s: int = 7 * 24 * 3600


@attrs.frozen
class Upload:
    """Upload ``count`` reports through the Client role, sequentially.

    Report *i* (0-based over the whole run, in upload order) gets the workload's
    self-describing measurement for index *i* (see :mod:`harness.workload`).
    ``time_offset_s`` shifts the report time from the run's base time (e.g. +10 days for a
    far-future report).
    """

    count: int = attrs.field(default=1, validator=v.ge(1))
    time_offset_s: int = 0
    type: str = "upload"


@attrs.frozen
class Collect:
    """Start a collection job and poll it to an end.

    ``label`` names it in the record (a second collection of the same batch uses another
    label). time_interval: the batch interval is the time_precision-aligned interval
    covering the run's base time, widened by ``interval_offset_s`` / ``interval_extra_s``
    (to build overlapping queries); fixed_size: ``current_batch`` unless ``batch_of`` names
    an earlier collection whose batch ID to query by ID.
    """

    label: str = "main"
    interval_offset_s: int = 0
    interval_extra_s: int = 0
    batch_of: str | None = None
    #: Poplar1: the aggregation parameter (tree level, candidate prefixes as bit strings of
    #: ``agg_level + 1`` bits, most significant first); None = no parameter (Prio3)
    agg_level: int | None = None
    agg_prefixes: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    type: str = "collect"


@attrs.frozen
class FireEvent:
    """Fire a named proxy event (``manual:<name>``) through the control channel."""

    name: str
    type: str = "fire_event"


@attrs.frozen
class Pause:
    """Let background work (aggregation) proceed for ``ms``."""

    ms: int = attrs.field(default=500, validator=v.ge(0))
    type: str = "pause"


Step = Upload | Collect | FireEvent | Pause
_STEP_TYPES: dict[str, type] = {"upload": Upload, "collect": Collect, "fire_event": FireEvent, "pause": Pause}


def _steps(value: Any) -> tuple[Step, ...]:
    return tuple(value)


@attrs.frozen
class WorkloadSpec:
    """What the honest parties do: a task plus steps (default: upload N, collect once)."""

    task: TaskSpec = attrs.field(factory=TaskSpec)
    steps: tuple[Step, ...] = attrs.field(factory=lambda: (Upload(count=8), Collect()), converter=_steps)
    #: explicit measurements, report *i* gets entry *i* (Poplar1: bit strings, most significant
    #: bit first; :mod:`harness.heavy_hitters`); None = the self-describing default
    measurements: tuple[str, ...] | None = attrs.field(
        default=None, converter=lambda x: None if x is None else tuple(x))


# --- expectation ---------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    """What a scenario's fault may legitimately end in."""

    PASS = "pass"  # exact aggregate over every accepted report
    CLEAN_FAILURE = "clean_failure"  # the spec allows refusing / giving up; must be clean
    PASS_OR_CLEAN_FAILURE = "pass_or_clean_failure"


@attrs.frozen
class Expectation:
    outcome: Outcome = attrs.field(default=Outcome.PASS, converter=Outcome)
    #: completeness required (only recoverable faults hit): counted == every accepted report
    complete: bool = True
    #: upload indices that must be refused (e.g. a far-future report), with the problem type
    rejected_uploads: Mapping[int, str] = attrs.field(factory=dict)
    #: DAP problem types the checker accepts on 4xx responses beyond the generic table
    allowed_problem_types: tuple[str, ...] = ()


# --- scenario ------------------------------------------------------------------------------


@attrs.frozen
class Scenario:
    """One thing ``faultrun`` runs: a workload, a plan, an expectation, and its docs."""

    name: str
    plan: Plan
    workload: WorkloadSpec = attrs.field(factory=WorkloadSpec)
    expect: Expectation = attrs.field(factory=Expectation)
    spec_section: str = ""
    doc: str = ""


# --- what a run recorded ---------------------------------------------------------------------


@attrs.frozen
class UploadRecord:
    index: int
    measurement: Any  # interop form (decimal strings)
    time: int
    status: str  # "success" | "error"
    error: str | None = None
    t_wall: float = 0.0


@attrs.frozen
class CollectionRecord:
    """One Collect step as the harness saw it.

    ``status``: ``complete`` (a result), ``error`` (a DAP error / too many failed polls),
    ``timeout`` (still in progress at the scenario deadline) or ``not_ready``: the harness
    stopped polling early because the history up to seq ``not_ready_seq`` showed that the
    batch cannot reach ``min_batch_size`` (too few reports can be stored in it, or the
    Leader gave up aggregating them; :mod:`harness.invariants.fill`). The checker re-derives
    that claim from the same history prefix before accepting it.
    """

    label: str
    query: dict[str, Any]
    status: str  # "complete" | "error" | "timeout" | "not_ready"
    result: Any = None  # interop form
    report_count: int | None = None
    interval: tuple[int, int] | None = None
    batch_id: str | None = None
    error: str | None = None
    polls: int = 0
    t_wall: float = 0.0
    #: every error seen while starting / polling (``error`` is the last one)
    errors: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: collection_start attempts (the harness retries a failed start, as the interop runner does)
    starts: int = 1
    #: ``not_ready``: the history prefix (seqs below this) the harness's early stop was based on
    not_ready_seq: int | None = None
    #: the interop ``agg_param`` sent with collection_start (base64url; None = none, Prio3)
    agg_param: str | None = None


@attrs.frozen
class RunRecord:
    """What the workload did and observed (``record.json``)."""

    scenario: str
    task_id: str  # base64url
    task: TaskSpec
    base_time: int
    history_since_seq: int  # first history seq of this scenario in the proxy's history
    uploads: tuple[UploadRecord, ...] = ()
    collections: tuple[CollectionRecord, ...] = ()
    fired_events: tuple[str, ...] = ()
    infra_errors: tuple[str, ...] = ()
    started_wall: float = 0.0
    finished_wall: float = 0.0


# --- what the checker concluded ----------------------------------------------------------------


class VerdictClass(enum.StrEnum):
    PASS = "pass"
    CLEAN_FAILURE = "clean_failure"
    VIOLATION = "violation"
    INFRA = "infra"


@attrs.frozen
class Verdict:
    """One invariant's result. ``valid`` None = unknown (the checker could not decide)."""

    invariant: str
    valid: bool | None
    detail: str = ""
    #: report indices / ids, history seqs, flow ids that support the verdict
    evidence: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class CheckReport:
    scenario: str
    verdict_class: VerdictClass = attrs.field(converter=VerdictClass)
    verdicts: tuple[Verdict, ...] = ()
    summary: str = ""


# --- JSON round trip -----------------------------------------------------------------------------


def to_dict(value: Any) -> Any:
    """Any value of this module (or a Plan / VdafParams inside one) as JSON-able data."""
    if isinstance(value, Plan):
        return plan_to_dict(value)
    if isinstance(value, VdafParams):
        return value.to_interop()
    if isinstance(value, enum.Enum):
        return value.value
    if attrs.has(type(value)):
        return {a.name: to_dict(getattr(value, a.name)) for a in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): to_dict(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dict(x) for x in value]
    return value


def _build(cls: type, data: Mapping[str, Any], **nested: Any) -> Any:
    names = {a.name for a in attrs.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    return cls(**{k: nested.get(k, lambda x: x)(x) for k, x in data.items()})


def task_from_dict(data: Mapping[str, Any]) -> TaskSpec:
    return _build(TaskSpec, data, vdaf=VdafParams.from_interop)


def step_from_dict(data: Mapping[str, Any]) -> Step:
    try:
        cls = _STEP_TYPES[data["type"]]
    except KeyError as exc:
        raise ValueError(f"unknown workload step {data.get('type')!r} (known: {', '.join(_STEP_TYPES)})") from exc
    return _build(cls, data)


def workload_from_dict(data: Mapping[str, Any]) -> WorkloadSpec:
    return _build(WorkloadSpec, data, task=task_from_dict, steps=lambda s: tuple(step_from_dict(x) for x in s))


def expectation_from_dict(data: Mapping[str, Any]) -> Expectation:
    return _build(Expectation, data, rejected_uploads=lambda m: {int(k): x for k, x in m.items()},
                  allowed_problem_types=tuple)


def scenario_from_dict(data: Mapping[str, Any]) -> Scenario:
    return _build(Scenario, data, plan=plan_from_dict, workload=workload_from_dict, expect=expectation_from_dict)


def run_record_from_dict(data: Mapping[str, Any]) -> RunRecord:
    return _build(
        RunRecord, data, task=task_from_dict,
        uploads=lambda xs: tuple(_build(UploadRecord, x) for x in xs),
        collections=lambda xs: tuple(
            _build(CollectionRecord, x, interval=lambda i: None if i is None else tuple(i)) for x in xs),
        fired_events=tuple, infra_errors=tuple,
    )


def check_report_from_dict(data: Mapping[str, Any]) -> CheckReport:
    return _build(CheckReport, data, verdicts=lambda xs: tuple(_build(Verdict, x) for x in xs))
