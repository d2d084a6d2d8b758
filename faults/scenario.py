"""What a scenario asks for: a workload (what the honest parties do), a plan (the nemesis) and
an expectation, as frozen values that round-trip through JSON.

Jepsen's split: the **workload** (:class:`WorkloadSpec`: a task and steps) is driven by the
harness's run stage, the **nemesis** (a :class:`faults.plan.Plan`) by the fault proxy, and the
**checker** judges what both recorded. A :class:`Scenario` (one catalogue entry, a plan given on
the command line, or a generated campaign example) bundles a workload, a plan and an
:class:`Expectation`. :func:`to_dict` / :func:`scenario_from_dict` make ``scenario.json``, so a
stored run can be re-run (``faultrun --scenario``) and re-checked (``faultrun analyze``).
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
    "LEADER_RETRY",
    "QUERY_TYPES",
    "Collect",
    "Expectation",
    "FireEvent",
    "Outcome",
    "Pause",
    "Scenario",
    "Step",
    "TaskSpec",
    "Upload",
    "WorkloadSpec",
    "build",
    "expectation_from_dict",
    "scenario_from_dict",
    "step_from_dict",
    "task_from_dict",
    "to_dict",
    "workload_from_dict",
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
    self-describing measurement for index *i* (see :mod:`faults.workload`).
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
    """Let background work (aggregation) proceed for ``ms``, plus ``job_intervals`` of the
    Leader's job intervals (its ``images.toml`` ``timing.job_interval_ms``: the longest an
    upload waits for an aggregation job), so uploads before and after the pause land in
    different aggregation jobs whatever the target's pace."""

    ms: int = attrs.field(default=500, validator=v.ge(0))
    job_intervals: int = attrs.field(default=0, validator=v.ge(0))
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
    #: bit first; :mod:`faults.heavy_hitters`); None = the self-describing default
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
    """What a compliant implementation may end the scenario in (the spec's MUSTs only).

    An outcome that needs an optional behaviour (a MAY or SHOULD: a Leader retrying a
    request that got no answer) names it in ``optional_recovery``: a run whose target did
    without it (the checker reports the role and section) may then also end in a clean
    failure, or lose the reports it would have saved, and still meet the expectation --
    said so in the verdict ("clean failure without optional recovery: ...")."""

    outcome: Outcome = attrs.field(default=Outcome.PASS, converter=Outcome)
    #: completeness required (only recoverable faults hit): counted == every accepted report
    complete: bool = True
    #: upload indices the Leader SHOULD refuse (a far-future report: ``reportTooEarly``, dap-09
    #: §9.2), with the problem type; never counted (MUST), acknowledged = without the SHOULD
    rejected_uploads: Mapping[int, str] = attrs.field(factory=dict)
    #: DAP problem types the checker accepts on 4xx responses beyond the generic table
    allowed_problem_types: tuple[str, ...] = ()
    #: the optional behaviour (MAY / SHOULD, with its section) the ``outcome`` relies on
    #: (e.g. :data:`LEADER_RETRY`)
    optional_recovery: str = ""


#: The optional recovery of the faults that lose or refuse a Leader->Helper exchange.
LEADER_RETRY = ("Leader retries a request to the Helper that got no answer, a 429 or a 5xx "
                "(dap-09 §10.3, §16: retryable, no retry mandated)")


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
    #: VDAF family (``prio3``, ``poplar1``: :mod:`faults.vdafs`) -> the expectation when the
    #: workload runs that family instead (``--vdaf poplar1`` puts every report in one job...)
    expect_by_family: Mapping[str, Expectation] = attrs.field(factory=dict)

    def for_family(self, family: str) -> Scenario:
        """This scenario with the expectation of VDAF ``family`` (itself if none differs)."""
        other = self.expect_by_family.get(family)
        return self if other is None or other == self.expect else attrs.evolve(self, expect=other)

    @property
    def summary_line(self) -> str:
        """The first sentence of the doc (what ``faultrun --list`` shows)."""
        doc = " ".join(self.doc.split())
        for i, ch in enumerate(doc):
            if ch == "." and (i + 1 == len(doc) or doc[i + 1] == " "):
                return doc[: i + 1]
        return doc


# --- JSON round trip -----------------------------------------------------------------------------


def to_dict(value: Any) -> Any:
    """Any attrs value (scenario, record, verdict; a Plan / VdafParams inside one) as JSON-able data."""
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


def build(cls: type, data: Mapping[str, Any], **nested: Any) -> Any:
    """``cls(**data)`` with ``nested`` converters per key; unknown keys are an error (ValueError)."""
    names = {a.name for a in attrs.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    return cls(**{k: nested.get(k, lambda x: x)(x) for k, x in data.items()})


def task_from_dict(data: Mapping[str, Any]) -> TaskSpec:
    return build(TaskSpec, data, vdaf=VdafParams.from_interop)


def step_from_dict(data: Mapping[str, Any]) -> Step:
    try:
        cls = _STEP_TYPES[data["type"]]
    except KeyError as exc:
        raise ValueError(f"unknown workload step {data.get('type')!r} (known: {', '.join(_STEP_TYPES)})") from exc
    return build(cls, data)


def workload_from_dict(data: Mapping[str, Any]) -> WorkloadSpec:
    return build(WorkloadSpec, data, task=task_from_dict, steps=lambda s: tuple(step_from_dict(x) for x in s))


def expectation_from_dict(data: Mapping[str, Any]) -> Expectation:
    return build(Expectation, data, rejected_uploads=lambda m: {int(k): x for k, x in m.items()},
                  allowed_problem_types=tuple)


def scenario_from_dict(data: Mapping[str, Any]) -> Scenario:
    return build(Scenario, data, plan=plan_from_dict, workload=workload_from_dict, expect=expectation_from_dict,
                 expect_by_family=lambda m: {k: expectation_from_dict(x) for k, x in m.items()})
