"""Workloads: what the honest Client and Collector do in a scenario, sized to its VDAF.

Report *i* (0-based, in upload order over the whole run) gets :func:`measurement_of`: the
self-describing measurement of the task's VDAF (:mod:`faults.vdafs`: the aggregate itself
names the reports it counts), or the workload's explicit measurement *i* (Poplar1,
:mod:`faults.heavy_hitters`). A bucket of 2 is a double count, a 1 in a bucket never
uploaded a forgery, a 0 in an acknowledged report's bucket a lost report.

The VDAF must be large enough: :func:`capacity` reports; :func:`vdaf_for` sizes a VDAF for
``--reports N``, :func:`parse_vdaf` reads ``--vdaf``, :func:`apply_overrides` applies both
(and ``--query-type``) to a scenario.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from dap.vdaf.params import VdafParams
from faults.errors import NotApplicable, WorkloadError
from faults.heavy_hitters import one_batch, poplar1_from_spec, with_poplar1
from faults.scenario import Scenario, Upload, WorkloadSpec
from faults.vdafs import WORKLOAD_VDAFS, workload_vdaf, workload_vdaf_class

__all__ = ["DEFAULT_VDAF", "PRIO3_TYPES", "apply_overrides", "capacity", "counted_indices", "expected_aggregate",
           "measurement_for", "measurement_of", "parse_vdaf", "upload_count", "vdaf_for", "with_reports"]

DEFAULT_VDAF = "Prio3Histogram"
#: the VDAFs with a self-describing workload (campaigns draw from these)
PRIO3_TYPES = tuple(name for name, cls in WORKLOAD_VDAFS.items() if not cls.explicit_measurements)


def capacity(vdaf: VdafParams | Mapping[str, Any]) -> int | None:
    """How many reports the workload can tell apart (None: unbounded)."""
    return workload_vdaf(vdaf).capacity


def measurement_for(vdaf: VdafParams | Mapping[str, Any], i: int) -> Any:
    """Report ``i``'s self-describing measurement in interop form (decimal strings)."""
    return workload_vdaf(vdaf).measurement(i)


def measurement_of(workload: WorkloadSpec, index: int) -> Any:
    """Report ``index``'s measurement in interop form: the workload's explicit measurement
    ``index`` if it lists them (Poplar1: a list of booleans), else the self-describing one."""
    wv = workload_vdaf(workload.task.vdaf)
    if workload.measurements is None:
        return wv.measurement(index)
    if index >= len(workload.measurements):
        raise WorkloadError(f"report index {index}: the workload lists {len(workload.measurements)} measurements")
    return wv.interop_measurement(workload.measurements[index])


def expected_aggregate(vdaf: VdafParams | Mapping[str, Any], indices: Iterable[int]) -> Any:
    """The exact aggregate (interop form) of the reports ``indices`` (repeats count twice)."""
    return workload_vdaf(vdaf).expected_aggregate(indices)


def counted_indices(vdaf: VdafParams | Mapping[str, Any], result: Any) -> dict[int, int] | None:
    """Report index -> times counted, read from an aggregate (interop form); None when the
    aggregate does not name reports (Count, Poplar1)."""
    return workload_vdaf(vdaf).counted_indices(result)


def upload_count(workload: WorkloadSpec) -> int:
    return sum(s.count for s in workload.steps if isinstance(s, Upload))


def vdaf_for(vdaf_type: str, reports: int, **params: int) -> VdafParams:
    """A VDAF of ``vdaf_type`` (a type name or alias) able to hold ``reports`` reports
    (``params`` override sizes)."""
    cls = workload_vdaf_class(vdaf_type)
    if cls is None or cls.explicit_measurements:
        known = ", ".join(PRIO3_TYPES)
        raise WorkloadError(f"unknown VDAF {vdaf_type!r}; known: {known}")
    return cls.sized(reports, **params)


def parse_vdaf(text: str, reports: int) -> VdafParams:
    """``--vdaf``: ``TYPE[:key=value,...]`` (e.g. ``Prio3Histogram:length=16,chunk_length=4``,
    ``sum``) or an interop JSON object (``{"type": "Prio3Sum", "bits": "8"}``). Sizes not
    given follow ``reports``. ``poplar1[:bits=N]`` (default 8 bits) selects Poplar1, whose
    workload is the heavy-hitters walk of :mod:`faults.heavy_hitters`."""
    text = text.strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkloadError(f"--vdaf: not valid JSON: {exc.msg} at column {exc.colno}") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            raise WorkloadError("--vdaf: JSON must be an object with a string \"type\"")
        vdaf_type = obj.pop("type")
        params = obj
    else:
        vdaf_type, _, rest = text.partition(":")
        params = {}
        for item in filter(None, (x.strip() for x in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise WorkloadError(f"--vdaf: expected key=value, got {item!r}")
            params[key.strip()] = value.strip()
    cls = workload_vdaf_class(vdaf_type)
    if cls is None:
        names = list(WORKLOAD_VDAFS)
        near = difflib.get_close_matches(vdaf_type, names, n=2, cutoff=0.5)
        raise WorkloadError(f"--vdaf: unknown VDAF {vdaf_type!r}"
                            + (f"; did you mean {' or '.join(near)}?" if near else f"; known: {', '.join(names)}"))
    if cls.explicit_measurements:  # heavy-hitters workload, faults.heavy_hitters
        return poplar1_from_spec(params)
    ints: dict[str, int] = {}
    for key, value in params.items():
        try:
            ints[key] = int(value)
        except (TypeError, ValueError):
            raise WorkloadError(f"--vdaf: {key}: expected an integer, got {value!r}") from None
    return cls.sized(reports, **ints)


def with_reports(workload: WorkloadSpec, reports: int) -> WorkloadSpec:
    """The workload with its Upload steps rescaled to ``reports`` in total (each >= 1)."""
    ups = [i for i, s in enumerate(workload.steps) if isinstance(s, Upload)]
    if not ups:
        return workload
    if reports < len(ups):
        raise WorkloadError(f"--reports {reports}: this workload has {len(ups)} upload steps, needs at least {len(ups)}")
    total = upload_count(workload)
    counts = [max(1, workload.steps[i].count * reports // total) for i in ups]  # type: ignore[union-attr]
    counts[-1] += reports - sum(counts)
    if counts[-1] < 1:
        counts = [1] * (len(ups) - 1) + [reports - len(ups) + 1]
    steps = list(workload.steps)
    for i, c in zip(ups, counts, strict=True):
        steps[i] = attrs.evolve(steps[i], count=c)
    return attrs.evolve(workload, steps=tuple(steps))


def apply_overrides(scenario: Scenario, *, vdaf: str | None, reports: int | None,
                    query_type: str | None) -> Scenario:
    """``--vdaf`` / ``--reports`` / ``--query-type`` applied to one scenario's workload (and the
    expectation of the VDAF family it then runs, ``Scenario.expect_by_family``).
    :class:`~faults.errors.NotApplicable` for a Poplar1 walk under a Prio3 ``--vdaf``."""
    wl = scenario.workload
    if query_type is not None:
        wl = attrs.evolve(wl, task=attrs.evolve(wl.task, query_type=query_type))
    if vdaf is not None or reports is not None:
        target = parse_vdaf(vdaf, 1) if vdaf is not None else wl.task.vdaf
        if workload_vdaf(wl.task.vdaf).explicit_measurements and not workload_vdaf(target).explicit_measurements:
            raise NotApplicable(f"a {wl.task.vdaf.type} tree walk (aggregation parameters, two rounds), "
                                f"not a {target.type} workload")
        if workload_vdaf(target).explicit_measurements:  # Poplar1 runs the heavy-hitters walk (docs/cli.md)
            if reports is not None:
                wl = with_reports(wl, reports)
            if reports is not None or target != wl.task.vdaf:
                wl = with_poplar1(wl, target, reports if reports is not None else upload_count(wl))
            return attrs.evolve(scenario, workload=one_batch(wl)).for_family(workload_vdaf(wl.task.vdaf).family)
    if reports is not None:
        wl = with_reports(wl, reports)
    n = upload_count(wl)
    task = wl.task
    if vdaf is not None:
        task = attrs.evolve(task, vdaf=parse_vdaf(vdaf, n))
    elif reports is not None:
        task = attrs.evolve(task, vdaf=workload_vdaf(task.vdaf).resized(n))
    wl = one_batch(attrs.evolve(wl, task=task))
    return attrs.evolve(scenario, workload=wl).for_family(workload_vdaf(task.vdaf).family)
