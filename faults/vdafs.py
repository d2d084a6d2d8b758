"""What each VDAF means to a workload and to the checker, behind one interface.

A run is judged without trusting any aggregator: the workload chooses measurements whose
aggregate names the reports it counts (Jepsen's "the history explains itself"). How that
works differs per VDAF, and it is written down here once, one class per VDAF:

===============  ==========================  =============================================
VDAF             measurement of report *i*   what the aggregate tells (``readback``)
===============  ==========================  =============================================
Prio3Histogram   bucket *i* (one-hot)        ``vector``: bucket *i* = times report *i* counted
Prio3SumVec      one-hot vector at *i*       ``vector``, as Histogram (``bits >= 1``)
Prio3Sum         ``2**i``                    ``bits``: bit *i* of the sum, while no report
                                             counts twice (a double count carries)
Prio3Count       ``1``                       ``count``: only how many were counted
Poplar1          explicit bit strings        ``prefixes``: one count per queried prefix
                 (the heavy-hitters walk,    (judged by the checker's ``poplar1``
                 :mod:`faults.heavy_hitters`) invariant against the known strings)
===============  ==========================  =============================================

:func:`workload_vdaf` gives the object for a task's :class:`~dap.vdaf.params.VdafParams`;
:data:`WORKLOAD_VDAFS` is the table by type name. Adding a VDAF to the harness means adding
one class here (and its wire support in :mod:`dap.vdaf`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs

from dap.errors import VdafError
from dap.vdaf.params import VdafParams
from faults.errors import WorkloadError

__all__ = [
    "WORKLOAD_VDAFS",
    "Poplar1Workload",
    "Prio3CountWorkload",
    "Prio3HistogramWorkload",
    "Prio3SumVecWorkload",
    "Prio3SumWorkload",
    "WorkloadVdaf",
    "as_params",
    "workload_vdaf",
    "workload_vdaf_class",
]


def as_params(vdaf: VdafParams | Mapping[str, Any]) -> VdafParams:
    """A VdafParams from itself or its interop object."""
    return vdaf if isinstance(vdaf, VdafParams) else VdafParams.from_interop(vdaf)


@attrs.frozen
class WorkloadVdaf:
    """One VDAF as the workload and the checker see it. Subclasses fill in the class
    attributes and the methods that apply to them; ``params`` is the task's VDAF."""

    params: VdafParams

    #: the interop type name (``Prio3Histogram``)
    type_name: ClassVar[str] = ""
    #: lower-case names ``--vdaf`` accepts besides ``type_name``
    aliases: ClassVar[tuple[str, ...]] = ()
    #: the parameter that bounds how many reports can be told apart (None: unbounded)
    size_key: ClassVar[str | None] = None
    #: how the checker reads the counted reports off an aggregate: ``vector`` / ``bits`` /
    #: ``count`` / ``prefixes``
    readback: ClassVar[str] = "count"
    #: measurements are listed in the workload (Poplar1), not derived from the report index
    explicit_measurements: ClassVar[bool] = False
    #: collections carry an aggregation parameter (Poplar1: level + candidate prefixes)
    takes_agg_param: ClassVar[bool] = False
    #: the VDAF family (a scenario's expectation may differ per family: ``Scenario.expect_by_family``)
    family: ClassVar[str] = "prio3"

    # --- sizing --------------------------------------------------------------------------

    @property
    def capacity(self) -> int | None:
        """How many reports the workload can tell apart (None: unbounded)."""
        return None if self.size_key is None else getattr(self.params, self.size_key)

    @classmethod
    def default_params(cls, reports: int) -> dict[str, int]:
        """Interop parameters (as ints) of a VDAF of this type able to hold ``reports`` reports."""
        return {}

    @classmethod
    def sized(cls, reports: int, **params: int) -> VdafParams:
        """A VDAF of this type for ``reports`` reports; ``params`` override the sizes chosen."""
        obj: dict[str, Any] = {**cls.default_params(max(reports, 1)), **params}
        try:
            p = VdafParams.from_interop({"type": cls.type_name, **obj})
        except VdafError as exc:
            raise WorkloadError(str(exc)) from exc
        cap = cls(p).capacity
        if cap is not None and cap < reports:
            raise WorkloadError(f"{cls.type_name} with {p.to_interop()} holds {cap} reports, the workload uploads "
                                f"{reports}; raise {cls.size_key}")
        return p

    def resized(self, reports: int) -> VdafParams:
        """This VDAF grown (never shrunk) to hold ``reports`` reports, other parameters kept."""
        params = {k: int(v) for k, v in self.params.to_interop().items() if k != "type"}
        if self.size_key is not None and self.size_key in params:
            params[self.size_key] = max(params[self.size_key], reports)
        return self.sized(reports, **params)

    # --- the self-describing workload -------------------------------------------------------

    def _check_index(self, i: int) -> None:
        cap = self.capacity
        if i < 0 or (cap is not None and i >= cap):
            raise WorkloadError(f"report index {i} does not fit {self.type_name} (capacity {cap}); "
                                f"raise the VDAF's {self.size_key}")

    def measurement(self, i: int) -> Any:
        """Report ``i``'s self-describing measurement in interop form (decimal strings)."""
        raise WorkloadError(f"a {self.type_name} workload needs explicit measurements (faults.heavy_hitters)")

    def check_measurement(self, measurement: Any) -> Any:
        """An explicit measurement of a workload (``WorkloadSpec.measurements``), checked."""
        return measurement

    def interop_measurement(self, measurement: Any) -> Any:
        """An explicit measurement in the interop form the Client role takes."""
        return self.check_measurement(measurement)

    def contribution(self, measurement: Any) -> list[int]:
        """What one recorded measurement adds to the aggregate, as a vector of ints."""
        return [int(measurement)]

    def expected_aggregate(self, indices: Iterable[int]) -> Any:
        """The exact aggregate (interop form) over reports ``indices`` (repeats count twice)."""
        total: list[int] | None = None
        for i in indices:
            vec = self.contribution(self.measurement(i))
            total = vec if total is None else [a + b for a, b in zip(total, vec, strict=True)]
        if total is None:
            total = self.contribution(self.measurement(0)) if self.capacity != 0 else [0]
            total = [0] * len(total)
        return [str(x) for x in total] if self.readback == "vector" else str(total[0])

    def counted_indices(self, result: Any) -> dict[int, int] | None:
        """Report index -> times counted, read off an aggregate (interop form); None when the
        aggregate does not name reports (Count, Poplar1)."""
        return None

    def _result(self, result: Any) -> Any:
        try:
            return self.params.result_from_interop(result)
        except VdafError as exc:
            raise WorkloadError(f"not a {self.type_name} result: {exc}") from exc


@attrs.frozen
class Prio3HistogramWorkload(WorkloadVdaf):
    type_name: ClassVar[str] = "Prio3Histogram"
    aliases: ClassVar[tuple[str, ...]] = ("histogram",)
    size_key: ClassVar[str | None] = "length"
    readback: ClassVar[str] = "vector"

    @classmethod
    def default_params(cls, reports: int) -> dict[str, int]:
        return {"length": max(reports, 2), "chunk_length": 4}

    def measurement(self, i: int) -> Any:
        self._check_index(i)
        return str(i)

    def contribution(self, measurement: Any) -> list[int]:
        vec = [0] * (self.params.length or 0)
        vec[int(measurement)] = 1
        return vec

    def counted_indices(self, result: Any) -> dict[int, int] | None:
        return {i: int(c) for i, c in enumerate(self._result(result)) if int(c)}


@attrs.frozen
class Prio3SumVecWorkload(Prio3HistogramWorkload):
    type_name: ClassVar[str] = "Prio3SumVec"
    aliases: ClassVar[tuple[str, ...]] = ("sumvec",)

    @classmethod
    def default_params(cls, reports: int) -> dict[str, int]:
        return {"length": reports, "bits": 1, "chunk_length": 4}

    def measurement(self, i: int) -> Any:
        self._check_index(i)
        return ["1" if j == i else "0" for j in range(self.params.length or 0)]

    def contribution(self, measurement: Any) -> list[int]:
        return [int(x) for x in measurement]


@attrs.frozen
class Prio3SumWorkload(WorkloadVdaf):
    type_name: ClassVar[str] = "Prio3Sum"
    aliases: ClassVar[tuple[str, ...]] = ("sum",)
    size_key: ClassVar[str | None] = "bits"
    readback: ClassVar[str] = "bits"

    @classmethod
    def default_params(cls, reports: int) -> dict[str, int]:
        return {"bits": reports}

    def measurement(self, i: int) -> Any:
        self._check_index(i)
        return str(1 << i)

    def counted_indices(self, result: Any) -> dict[int, int] | None:
        # exact only while no report counts twice (a double count carries into the next bit)
        n = int(self._result(result))
        return {i: 1 for i in range(n.bit_length()) if n >> i & 1}


@attrs.frozen
class Prio3CountWorkload(WorkloadVdaf):
    type_name: ClassVar[str] = "Prio3Count"
    aliases: ClassVar[tuple[str, ...]] = ("count",)
    readback: ClassVar[str] = "count"

    def measurement(self, i: int) -> Any:
        self._check_index(i)
        return "1"


@attrs.frozen
class Poplar1Workload(WorkloadVdaf):
    type_name: ClassVar[str] = "Poplar1"
    aliases: ClassVar[tuple[str, ...]] = ("poplar1",)
    readback: ClassVar[str] = "prefixes"
    explicit_measurements: ClassVar[bool] = True
    takes_agg_param: ClassVar[bool] = True
    family: ClassVar[str] = "poplar1"

    #: bits of the default heavy-hitters strings
    DEFAULT_BITS: ClassVar[int] = 8

    @classmethod
    def default_params(cls, reports: int) -> dict[str, int]:
        return {"bits": cls.DEFAULT_BITS}

    def contribution(self, measurement: Any) -> list[int]:
        raise WorkloadError("Poplar1 aggregates count prefixes, not reports")

    def check_measurement(self, measurement: Any) -> str:
        """A bit string of ``bits`` bits, most significant first (tree level 0)."""
        bits = self.params.bits
        if not isinstance(measurement, str) or len(measurement) != bits or set(measurement) - {"0", "1"}:
            raise WorkloadError(f"Poplar1 measurement {measurement!r}: expected a string of {bits} bits (0/1)")
        return measurement

    def interop_measurement(self, measurement: Any) -> list[bool]:
        return [c == "1" for c in self.check_measurement(measurement)]


#: type name -> class, in the order campaigns and ``--list`` show them (simplest first)
WORKLOAD_VDAFS: dict[str, type[WorkloadVdaf]] = {
    cls.type_name: cls
    for cls in (Prio3HistogramWorkload, Prio3SumVecWorkload, Prio3SumWorkload, Prio3CountWorkload, Poplar1Workload)
}
_BY_ALIAS = {alias: cls for cls in WORKLOAD_VDAFS.values() for alias in (cls.type_name.lower(), *cls.aliases)}


def workload_vdaf(vdaf: VdafParams | Mapping[str, Any]) -> WorkloadVdaf:
    """The :class:`WorkloadVdaf` of a task's VDAF (WorkloadError for a type the harness cannot judge)."""
    p = as_params(vdaf)
    cls = WORKLOAD_VDAFS.get(p.type)
    if cls is None:
        raise WorkloadError(f"no workload for VDAF {p.type}; known: {', '.join(WORKLOAD_VDAFS)}")
    return cls(p)


def workload_vdaf_class(name: str) -> type[WorkloadVdaf] | None:
    """The class for a type name or alias (case-insensitive), None if unknown."""
    return WORKLOAD_VDAFS.get(name) or _BY_ALIAS.get(name.lower())
