"""Self-describing workloads: the aggregate itself says which reports were counted.

Report *i* (0-based, in upload order over the whole run) gets :func:`measurement_for`:

===============  ==========================  =============================================
VDAF             measurement of report *i*   what the aggregate tells
===============  ==========================  =============================================
Prio3Histogram   bucket *i* (one-hot)        bucket *i* = how often report *i* was counted
Prio3SumVec      one-hot vector at *i*       as Histogram (needs ``bits >= 1``)
Prio3Sum         ``2**i``                    bit *i* of the sum, while no report counts
                                             twice (a double count carries into bit *i+1*)
Prio3Count       ``1``                       only how many reports were counted
===============  ==========================  =============================================

So a bucket of 2 is a double count, a 1 in a bucket never uploaded is a forgery, a 0 in
an acknowledged report's bucket a lost report. The VDAF must be large enough:
:func:`capacity` reports (Histogram/SumVec ``length``, Sum ``bits``); :func:`vdaf_for`
sizes a VDAF for ``--reports N`` and :func:`parse_vdaf` reads the CLI's ``--vdaf``.

For the checker: :func:`expected_aggregate` (interop form, the exact result over a list of
indices, repeats allowed) and :func:`counted_indices` (index -> times counted, decoded from
a result; ``None`` for Count, which does not name reports).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from dap.errors import VdafError
from dap.vdaf.params import VdafParams
from harness.errors import WorkloadError
from harness.model import Upload, WorkloadSpec

__all__ = ["DEFAULT_VDAF", "VDAF_TYPES", "capacity", "counted_indices", "expected_aggregate",
           "measurement_for", "parse_vdaf", "upload_count", "vdaf_for", "with_reports"]

VDAF_TYPES = ("Prio3Histogram", "Prio3SumVec", "Prio3Sum", "Prio3Count")
DEFAULT_VDAF = "Prio3Histogram"
_SHORT = {"histogram": "Prio3Histogram", "sumvec": "Prio3SumVec", "sum": "Prio3Sum", "count": "Prio3Count"}


def _params(vdaf: VdafParams | Mapping[str, Any]) -> VdafParams:
    return vdaf if isinstance(vdaf, VdafParams) else VdafParams.from_interop(vdaf)


def capacity(vdaf: VdafParams | Mapping[str, Any]) -> int | None:
    """How many reports the workload can tell apart (None: unbounded, Count)."""
    p = _params(vdaf)
    if p.type in ("Prio3Histogram", "Prio3SumVec"):
        return p.length
    if p.type == "Prio3Sum":
        return p.bits
    return None


def measurement_for(vdaf: VdafParams | Mapping[str, Any], i: int) -> Any:
    """Report ``i``'s measurement in interop form (decimal strings)."""
    p = _params(vdaf)
    cap = capacity(p)
    if i < 0 or (cap is not None and i >= cap):
        raise WorkloadError(f"report index {i} does not fit {p.type} (capacity {cap}); "
                            f"raise the VDAF's {'bits' if p.type == 'Prio3Sum' else 'length'}")
    if p.type == "Prio3Histogram":
        return str(i)
    if p.type == "Prio3SumVec":
        return ["1" if j == i else "0" for j in range(p.length or 0)]
    if p.type == "Prio3Sum":
        return str(1 << i)
    if p.type == "Prio3Count":
        return "1"
    raise WorkloadError(f"no self-describing workload for VDAF {p.type}")


def expected_aggregate(vdaf: VdafParams | Mapping[str, Any], indices: Iterable[int]) -> Any:
    """The exact aggregate (interop form) of the reports ``indices`` (repeats count twice)."""
    p = _params(vdaf)
    idx = list(indices)
    if p.type in ("Prio3Histogram", "Prio3SumVec"):
        counts = [0] * (p.length or 0)
        for i in idx:
            measurement_for(p, i)  # range check
            counts[i] += 1
        return [str(c) for c in counts]
    if p.type == "Prio3Sum":
        for i in idx:
            measurement_for(p, i)
        return str(sum(1 << i for i in idx))
    if p.type == "Prio3Count":
        return str(len(idx))
    raise WorkloadError(f"no self-describing workload for VDAF {p.type}")


def counted_indices(vdaf: VdafParams | Mapping[str, Any], result: Any) -> dict[int, int] | None:
    """Report index -> times counted, read from an aggregate (interop form).

    Histogram / SumVec are exact. Sum is exact only if no report was counted twice (a
    double count carries into the next bit); read the bits as given. Count: ``None``.
    """
    p = _params(vdaf)
    try:
        value = p.result_from_interop(result)
    except VdafError as exc:
        raise WorkloadError(f"not a {p.type} result: {exc}") from exc
    if p.type in ("Prio3Histogram", "Prio3SumVec"):
        return {i: int(c) for i, c in enumerate(value) if int(c)}  # type: ignore[arg-type]
    if p.type == "Prio3Sum":
        n = int(value)  # type: ignore[arg-type]
        return {i: 1 for i in range(n.bit_length()) if n >> i & 1}
    return None


def upload_count(workload: WorkloadSpec) -> int:
    return sum(s.count for s in workload.steps if isinstance(s, Upload))


def vdaf_for(vdaf_type: str, reports: int, **params: int) -> VdafParams:
    """A VDAF of ``vdaf_type`` able to hold ``reports`` reports (params override sizes)."""
    vdaf_type = _SHORT.get(vdaf_type.lower(), vdaf_type)
    if vdaf_type not in VDAF_TYPES:
        raise WorkloadError(f"unknown VDAF {vdaf_type!r}; known: {', '.join(VDAF_TYPES)}")
    n = max(reports, 1)
    if vdaf_type == "Prio3Histogram":
        obj = {"length": max(n, 2), "chunk_length": 4}
    elif vdaf_type == "Prio3SumVec":
        obj = {"length": n, "bits": 1, "chunk_length": 4}
    elif vdaf_type == "Prio3Sum":
        obj = {"bits": n}
    else:
        obj = {}
    obj.update(params)
    try:
        p = VdafParams.from_interop({"type": vdaf_type, **obj})
    except VdafError as exc:
        raise WorkloadError(str(exc)) from exc
    cap = capacity(p)
    if cap is not None and cap < reports:
        raise WorkloadError(f"{vdaf_type} with {p.to_interop()} holds {cap} reports, the workload uploads "
                            f"{reports}; raise {'bits' if vdaf_type == 'Prio3Sum' else 'length'}")
    return p


def parse_vdaf(text: str, reports: int) -> VdafParams:
    """``--vdaf``: ``TYPE[:key=value,...]`` (e.g. ``Prio3Histogram:length=16,chunk_length=4``,
    ``sum``) or an interop JSON object (``{"type": "Prio3Sum", "bits": "8"}``). Sizes not
    given follow ``reports``. ``poplar1[:bits=N]`` (default 8 bits) selects Poplar1, whose
    workload is the heavy-hitters walk of :mod:`harness.heavy_hitters`."""
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
    vdaf_type = _SHORT.get(vdaf_type.lower(), vdaf_type)
    if vdaf_type.lower() == "poplar1":  # heavy-hitters workload, harness.heavy_hitters
        from harness.heavy_hitters import poplar1_from_spec
        return poplar1_from_spec(params)
    if vdaf_type not in VDAF_TYPES:
        import difflib
        near = difflib.get_close_matches(vdaf_type, VDAF_TYPES, n=2, cutoff=0.5)
        raise WorkloadError(f"--vdaf: unknown VDAF {vdaf_type!r}"
                            + (f"; did you mean {' or '.join(near)}?" if near else f"; known: {', '.join(VDAF_TYPES)}"))
    ints: dict[str, int] = {}
    for key, value in params.items():
        try:
            ints[key] = int(value)
        except (TypeError, ValueError):
            raise WorkloadError(f"--vdaf: {key}: expected an integer, got {value!r}") from None
    return vdaf_for(vdaf_type, reports, **ints)


def with_reports(workload: WorkloadSpec, reports: int) -> WorkloadSpec:
    """The workload with its Upload steps rescaled to ``reports`` in total (each >= 1)."""
    import attrs

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
