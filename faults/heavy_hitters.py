"""Poplar1 heavy-hitters workloads: known bit strings, a prefix-tree walk as fixed steps.

A Poplar1 task cannot use the self-describing workload of :mod:`faults.workload` (an
aggregate is one count per candidate prefix, not per report). Instead the workload carries
its measurements explicitly (``WorkloadSpec.measurements``: one bit string per report,
most significant bit first = tree level 0) and collects the batch once per tree level
(``Collect.agg_level`` / ``Collect.agg_prefixes``), as a heavy-hitters Collector does:

- level 0 with both prefixes ``0`` and ``1``;
- at each next level, both children of every previous-level prefix whose count reached
  ``threshold``; the walk stops at the leaves (level ``bits - 1``), after ``levels``
  levels, or when no prefix reached the threshold.

**Why the prefixes are computed here, not from the previous result.** A real Collector picks
level *L+1*'s candidates from level *L*'s result. The harness's steps must be fixed data: a
scenario (``scenario.json``) must run again identically, with the same plan decisions, and
the checker must know what each collection asked for without trusting what an Aggregator
answered. So :func:`walk` computes the heavy prefixes from the known measurements. When every
level's result is exact — which is what the checker verifies — this is the walk a real
Collector would make; when a fault legitimately removes reports, the fixed walk still queries
meaningful prefixes and the checker compares against bounds instead.

``max_batch_query_count`` counts distinct aggregation parameters per batch (dap-09.md §14):
a walk of *L* levels needs at least *L*; :func:`heavy_hitters_workload` sets it from the
walk unless told otherwise.

Measurements (:func:`measurements_for`) are deterministic from a seed: ``heavy`` heavy-hitter
strings receive two of every three reports, the rest are uniformly random strings.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from dap.errors import VdafError
from dap.vdaf.params import VdafParams
from dap.vdaf.poplar1 import Poplar1AggParam
from faults.errors import WorkloadError
from faults.scenario import Collect, Pause, TaskSpec, Upload, WorkloadSpec
from faults.vdafs import Poplar1Workload, workload_vdaf

__all__ = [
    "DEFAULT_BITS",
    "agg_param_interop",
    "decode_agg_param",
    "expected_counts",
    "heavy_hitters_workload",
    "measurements_for",
    "poplar1",
    "prefix_counts",
    "walk",
]

DEFAULT_BITS = Poplar1Workload.DEFAULT_BITS


def poplar1(bits: int = DEFAULT_BITS) -> VdafParams:
    return VdafParams.from_interop({"type": Poplar1Workload.type_name, "bits": str(bits)})


def _takes_agg_param(vdaf: VdafParams) -> bool:
    return workload_vdaf(vdaf).takes_agg_param


def measurements_for(bits: int, reports: int, seed: int = 1, heavy: int = 2) -> tuple[str, ...]:
    """``reports`` bit strings of ``bits`` bits, deterministic from ``seed``: ``heavy`` distinct
    heavy hitters take reports ``i`` with ``i % 3 != 2`` (round robin), the others are random;
    then the order is shuffled (seeded)."""
    if bits < 1 or reports < 1 or heavy < 1:
        raise WorkloadError("measurements_for: bits, reports and heavy must be >= 1")
    rng = random.Random(f"heavy-hitters:{seed}:{bits}")
    heavy = min(heavy, 1 << bits)
    hitters = [format(x, f"0{bits}b") for x in rng.sample(range(1 << bits), heavy)] if bits < 60 else [
        format(rng.getrandbits(bits), f"0{bits}b") for _ in range(heavy)]
    out = []
    k = 0
    for i in range(reports):
        if i % 3 != 2:
            out.append(hitters[k % heavy])
            k += 1
        else:
            out.append(format(rng.getrandbits(bits), f"0{bits}b"))
    rng.shuffle(out)
    return tuple(out)


def prefix_counts(measurements: Iterable[str], level: int, prefixes: Iterable[str] | None = None) -> dict[str, int]:
    """Prefix (``level + 1`` bits) -> how many measurements start with it (only ``prefixes``
    if given, zeros included)."""
    counts: dict[str, int] = {}
    for m in measurements:
        p = m[: level + 1]
        counts[p] = counts.get(p, 0) + 1
    if prefixes is None:
        return counts
    return {p: counts.get(p, 0) for p in prefixes}


def expected_counts(measurements: Iterable[str], level: int, prefixes: Sequence[str]) -> list[int]:
    """The exact Poplar1 result (one count per candidate prefix) over ``measurements``."""
    counts = prefix_counts(measurements, level, prefixes)
    return [counts[p] for p in prefixes]


def walk(measurements: Sequence[str], bits: int, threshold: int = 2,
         levels: int | None = None) -> list[tuple[int, tuple[str, ...]]]:
    """The heavy-hitters walk over known measurements: ``[(level, prefixes), ...]``."""
    if threshold < 1:
        raise WorkloadError("walk: threshold must be >= 1")
    last = bits if levels is None else min(levels, bits)
    out: list[tuple[int, tuple[str, ...]]] = []
    prefixes: tuple[str, ...] = ("0", "1")
    for level in range(last):
        if level > 0:
            counts = prefix_counts(measurements, level - 1, out[-1][1])
            keep = [p for p in out[-1][1] if counts[p] >= threshold]
            if not keep:
                break
            prefixes = tuple(sorted(p + b for p in keep for b in "01"))
        out.append((level, prefixes))
    return out


def heavy_hitters_workload(bits: int = DEFAULT_BITS, reports: int = 8, *, seed: int = 1, threshold: int = 2,
                           levels: int | None = None, heavy: int = 2,
                           max_batch_query_count: int | None = None, query_type: str = "time_interval",
                           measurements: Sequence[str] | None = None,
                           extra: Sequence[tuple[int, Sequence[str]]] = (),
                           pause_ms: int = 0) -> WorkloadSpec:
    """Upload ``reports`` Poplar1 reports, then collect the batch once per level of the walk
    (labels ``level0``, ``level1``, ...), then the ``extra`` (level, prefixes) collections
    (labels ``extra0``, ...). ``max_batch_query_count`` defaults to the number of distinct
    parameters the workload sends."""
    ms = tuple(Poplar1Workload(poplar1(bits)).check_measurement(m) for m in measurements) \
        if measurements is not None else \
        measurements_for(bits, reports, seed, heavy)
    steps: list[Any] = [Upload(count=len(ms))]
    if pause_ms:
        steps.append(Pause(ms=pause_ms))
    params = walk(ms, bits, threshold, levels)
    steps += [Collect(label=f"level{lv}", agg_level=lv, agg_prefixes=ps) for lv, ps in params]
    steps += [Collect(label=f"extra{i}", agg_level=lv, agg_prefixes=tuple(ps)) for i, (lv, ps) in enumerate(extra)]
    distinct = len({(lv, tuple(ps)) for lv, ps in [*params, *extra]})
    task = TaskSpec(vdaf=poplar1(bits), query_type=query_type,
                    max_batch_query_count=distinct if max_batch_query_count is None else max_batch_query_count)
    return one_batch(WorkloadSpec(task=task, steps=tuple(steps), measurements=ms))


def one_batch(workload: WorkloadSpec) -> WorkloadSpec:
    """A fixed_size Poplar1 workload whose later collections query the batch the first one
    collected (``batch_of``): a walk goes down one batch's tree, and a "current batch" query
    would ask for a new batch, which reports already in one can never fill. Other workloads
    are returned as they are."""
    if workload.task.query_type != "fixed_size" or not _takes_agg_param(workload.task.vdaf):
        return workload
    first: str | None = None
    steps = []
    for s in workload.steps:
        if isinstance(s, Collect):
            if first is None:
                first = s.label
            elif s.batch_of is None:
                s = attrs.evolve(s, batch_of=first)
        steps.append(s)
    return attrs.evolve(workload, steps=tuple(steps))


# --- used by the run and the checker -----------------------------------------------------------


def bits_of(measurement: Any) -> str | None:
    """A recorded Poplar1 measurement (list of booleans, or a bit string) as a bit string."""
    if isinstance(measurement, str) and measurement and not set(measurement) - {"0", "1"}:
        return measurement
    if isinstance(measurement, (list, tuple)) and all(isinstance(b, bool) for b in measurement):
        return "".join("1" if b else "0" for b in measurement)
    return None


def agg_param_interop(vdaf: VdafParams, level: int, prefixes: Sequence[str]) -> str:
    """(level, bit-string prefixes) -> the interop ``agg_param`` (base64url)."""
    for p in prefixes:
        if len(p) != level + 1 or set(p) - {"0", "1"}:
            raise WorkloadError(f"agg_param: prefix {p!r} is not {level + 1} bits")
    try:
        return vdaf.agg_param_to_interop(Poplar1AggParam(level, tuple(int(p, 2) for p in prefixes)))
    except VdafError as exc:
        raise WorkloadError(f"agg_param level {level} prefixes {list(prefixes)}: {exc}") from exc


def decode_agg_param(vdaf: VdafParams, text: str) -> tuple[int, tuple[str, ...]]:
    """The interop ``agg_param`` -> (level, bit-string prefixes); VdafError if it does not decode."""
    ap = vdaf.agg_param_from_interop(text)
    return ap.level, tuple(format(p, f"0{ap.level + 1}b") for p in ap.prefixes)


def step_agg_param(vdaf: VdafParams, step: Collect) -> str:
    """The interop ``agg_param`` a Collect step sends (``""``: none)."""
    if step.agg_level is None:
        if _takes_agg_param(vdaf):
            raise WorkloadError(f"collection {step.label!r}: a Poplar1 collection needs agg_level / agg_prefixes")
        return ""
    if not _takes_agg_param(vdaf):
        raise WorkloadError(f"collection {step.label!r}: agg_level given but {vdaf.type} takes no aggregation "
                            "parameter")
    return agg_param_interop(vdaf, step.agg_level, step.agg_prefixes)


def check_workload(workload: WorkloadSpec, uploads: int) -> None:
    """Static checks for explicit measurements and aggregation parameters (WorkloadError)."""
    vdaf = workload.task.vdaf
    if workload.measurements is not None and uploads > len(workload.measurements):
        raise WorkloadError(f"the workload uploads {uploads} reports but lists {len(workload.measurements)} "
                            "measurements")
    wv = workload_vdaf(vdaf)
    if wv.explicit_measurements:
        if workload.measurements is None:
            raise WorkloadError(f"a {wv.type_name} workload needs explicit measurements (faults.heavy_hitters)")
        for m in workload.measurements:
            wv.check_measurement(m)
    for s in workload.steps:
        if isinstance(s, Collect):
            step_agg_param(vdaf, s)


def with_poplar1(workload: WorkloadSpec, vdaf: VdafParams, reports: int) -> WorkloadSpec:
    """``--vdaf poplar1...``: the workload as a heavy-hitters walk, keeping its shape.

    Its uploads stay as they are (counts, time offsets, pauses, order: rescale them first,
    ``faults.workload.with_reports``), so a far-future or late upload is still one;
    measurements are drawn for them (:func:`measurements_for`); a workload without uploads
    gets one of ``reports``. The first collection becomes the walk
    (``level0``, ``level1``, ...) and every later one a collection at level 0 with the walk's
    first parameter, keeping its label, interval and batch: "collect the batch again" stays
    the same query. A workload that already runs Poplar1 keeps its collections (the walk's
    levels re-derived for the new measurements, other collections as they are) and its
    task's query limit."""
    already = _takes_agg_param(workload.task.vdaf)
    n = sum(s.count for s in workload.steps if isinstance(s, Upload))
    if n < 1:
        n = max(reports, 1)
        workload = attrs.evolve(workload, steps=(Upload(count=n), *workload.steps))
    bits = vdaf.bits or DEFAULT_BITS
    ms = measurements_for(bits, n)
    collects = [s for s in workload.steps if isinstance(s, Collect)]
    if already:
        levels = sum(1 for c in collects if c.label.startswith("level"))
        walked = iter(walk(ms, bits, levels=max(levels, 1)))
        steps = []
        for s in workload.steps:
            if isinstance(s, Collect) and s.label.startswith("level"):
                lv, ps = next(walked, (None, ()))
                if lv is None:
                    continue  # the new measurements' walk is shorter
                s = attrs.evolve(s, label=f"level{lv}", agg_level=lv, agg_prefixes=ps)
            elif isinstance(s, Collect) and s.agg_level is not None and s.agg_level >= bits:
                continue  # a collection at a level the new VDAF does not have
            steps.append(s)
        task = attrs.evolve(workload.task, vdaf=vdaf)
        return one_batch(attrs.evolve(workload, task=task, steps=tuple(steps), measurements=ms))
    params = walk(ms, bits)
    steps = []
    renamed: dict[str, str] = {}  # the first collection's label -> its level-0 collection's
    for s in workload.steps:
        if isinstance(s, Collect) and not renamed:
            prefix = "" if s.label == "main" else f"{s.label}-"
            renamed[s.label] = f"{prefix}level0"
            steps += [attrs.evolve(s, label=f"{prefix}level{lv}", agg_level=lv, agg_prefixes=ps) for lv, ps in params]
        elif isinstance(s, Collect):
            steps.append(attrs.evolve(s, agg_level=params[0][0], agg_prefixes=params[0][1],
                                      batch_of=renamed.get(s.batch_of, s.batch_of) if s.batch_of else None))
        else:
            steps.append(s)
    task = attrs.evolve(workload.task, vdaf=vdaf,
                        max_batch_query_count=max(workload.task.max_batch_query_count, len(params)))
    return one_batch(attrs.evolve(workload, task=task, steps=tuple(steps), measurements=ms))


def collection_param(vdaf: VdafParams, record_agg_param: str | None) -> tuple[int, tuple[str, ...]] | None:
    """A CollectionRecord's agg_param decoded, None if absent or not Poplar1."""
    if not _takes_agg_param(vdaf) or not record_agg_param:
        return None
    return decode_agg_param(vdaf, record_agg_param)


def counts_by_prefix(prefixes: Sequence[str], result: Any) -> Mapping[str, int]:
    return dict(zip(prefixes, (int(x) for x in result), strict=True))


def poplar1_from_spec(params: Mapping[str, Any]) -> VdafParams:
    """``--vdaf poplar1:bits=N`` / ``{"type": "Poplar1", "bits": "N"}`` (default 8 bits)."""
    unknown = sorted(set(params) - {"bits"})
    if unknown:
        raise WorkloadError(f"--vdaf: Poplar1 takes only bits, got {', '.join(unknown)}")
    raw = params.get("bits", DEFAULT_BITS)
    try:
        bits = int(raw)
    except (TypeError, ValueError):
        raise WorkloadError(f"--vdaf: bits: expected an integer, got {raw!r}") from None
    try:
        return poplar1(bits)
    except VdafError as exc:
        raise WorkloadError(f"--vdaf: {exc}") from exc
