"""Reading the counted set S off an aggregate, from the recorded measurements.

The workload is self-describing (:mod:`faults.workload`); the checker rebuilds each upload's
contribution from ``UploadRecord.measurement`` (never from the workload's code, so a changed
workload cannot make the checker agree with itself) and decodes S, with a note on how strong
the evidence is for the VDAF at hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from faults.vdafs import workload_vdaf
from harness.record import CollectionRecord

__all__ = ["Counted", "decode_counted", "ints"]


@attrs.frozen
class Counted:
    """What one completed collection counted, read off its aggregate."""

    label: str
    multiplicity: dict[int, int]  # upload index -> times counted (only indices decided)
    undetermined: tuple[int, ...] = ()  # indices whose membership the aggregate cannot tell
    unexplained: dict[str, Any] = attrs.field(factory=dict)  # bucket -> residue (forged/garbage)
    report_count: int | None = None
    exact: bool = True
    note: str = ""
    problems: tuple[str, ...] = ()  # inconsistencies found while decoding (weak evidence)

    @property
    def counted(self) -> list[int]:
        return sorted(i for i, m in self.multiplicity.items() if m > 0)

    @property
    def double(self) -> list[int]:
        return sorted(i for i, m in self.multiplicity.items() if m > 1)


def ints(value: Any) -> list[int]:
    if isinstance(value, (list, tuple)):
        return [int(x) for x in value]
    return [int(value)]


def decode_counted(vdaf: Any, c: CollectionRecord, measurements: Mapping[int, Any]) -> Counted:
    """Read the counted set S (index -> multiplicity) off a completed collection's result, the
    way the VDAF's workload makes its aggregate readable (:mod:`faults.vdafs`, ``readback``)."""
    wv = workload_vdaf(vdaf)
    agg = ints(c.result)
    if wv.readback == "vector":
        return _decode_vector(c, agg, {i: wv.contribution(m) for i, m in measurements.items()})
    if wv.readback == "bits":
        return _decode_sum(c, agg[0], {i: wv.contribution(m)[0] for i, m in measurements.items()})
    if wv.readback == "prefixes":
        # one count per candidate prefix: which reports were counted is not readable off the
        # aggregate; the counts are judged by harness.check.poplar1
        return Counted(c.label, {}, tuple(sorted(measurements)), {}, c.report_count, False,
                       f"{wv.type_name}: the aggregate counts prefixes, not reports; per-prefix counts are checked "
                       "by the poplar1 invariant, here only report_count")
    return _decode_count(c, agg[0], {i: wv.contribution(m)[0] for i, m in measurements.items()})


def _decode_vector(c: CollectionRecord, agg: list[int], contrib: dict[int, list[int]]) -> Counted:
    n = len(agg)
    problems = []
    owners: dict[int, list[int]] = {}
    for i, vec in contrib.items():
        if len(vec) != n:
            problems.append(f"upload {i}: contribution length {len(vec)} != aggregate length {n}")
            continue
        for k, x in enumerate(vec):
            if x:
                owners.setdefault(k, []).append(i)
    mult: dict[int, int] = {}
    unresolved = []
    unexplained: dict[str, Any] = {}
    for i, vec in contrib.items():
        if len(vec) != n:
            continue
        private = [k for k, x in enumerate(vec) if x and owners.get(k) == [i]]
        if not private and any(vec):
            unresolved.append(i)
            continue
        if not any(vec):
            unresolved.append(i)  # an all-zero contribution is invisible
            continue
        k = private[0]
        q, r = divmod(agg[k], vec[k])
        if r:
            unexplained[str(k)] = agg[k]
            continue
        mult[i] = q
    residue = list(agg)
    for i, m in mult.items():
        for k, x in enumerate(contrib[i]):
            residue[k] -= m * x
    shared = {k for i in unresolved for k, x in enumerate(contrib[i]) if x}
    for k, r in enumerate(residue):
        if r and k not in shared and str(k) not in unexplained:
            unexplained[str(k)] = r
    exact = not unresolved
    note = ""
    if unresolved:
        bound = [sum(contrib[i][k] for i in unresolved) for k in range(n)]
        over = {str(k): residue[k] for k in shared if residue[k] < 0 or residue[k] > bound[k]}
        unexplained.update(over)
        note = (f"{len(unresolved)} upload(s) share buckets with others: their membership is bounded, "
                f"not decided (weaker evidence)")
    total = sum(mult.values())
    return Counted(c.label, mult, tuple(sorted(unresolved)), unexplained, c.report_count, exact, note,
                   tuple(problems) + ((f"report_count {c.report_count} != |S| {total}",)
                                      if exact and c.report_count is not None and c.report_count != total else ()))


def _decode_sum(c: CollectionRecord, agg: int, values: dict[int, int]) -> Counted:
    nonzero = {i: v for i, v in values.items() if v}
    powers = all(v > 0 and v & (v - 1) == 0 for v in nonzero.values()) and len(set(nonzero.values())) == len(nonzero)
    zero = tuple(sorted(i for i, v in values.items() if not v))
    if not powers:
        total = sum(nonzero.values())
        unexplained = {"sum": agg} if agg > total else {}
        return Counted(c.label, {}, tuple(sorted(values)), unexplained, c.report_count, False,
                       "Sum measurements are not distinct powers of two: only 0 <= aggregate <= sum of uploads "
                       "is checked (weak evidence)")
    by_bit = {v.bit_length() - 1: i for i, v in nonzero.items()}
    mult = {i: 0 for i in nonzero}
    unexplained: dict[str, Any] = {}
    bit = 0
    rest = agg
    while rest:
        if rest & 1:
            if bit in by_bit:
                mult[by_bit[bit]] = 1
            else:
                unexplained[f"bit{bit}"] = 1
        rest >>= 1
        bit += 1
    problems = []
    pop = sum(mult.values()) + len(unexplained)
    if c.report_count is not None and not zero and pop != c.report_count:
        problems.append(f"popcount(aggregate)={pop} != report_count {c.report_count}: a report counted twice "
                        f"(carry into the next bit) or a count that lies")
    return Counted(c.label, mult, zero, unexplained, c.report_count, not zero and not problems,
                   "Sum: S read off the bits of the aggregate; a double count carries into the next bit, so it "
                   "is detected through report_count (weaker than a histogram)", tuple(problems))


def _decode_count(c: CollectionRecord, agg: int, values: dict[int, int]) -> Counted:
    problems = []
    ones = sum(1 for v in values.values() if v == 1)
    if c.report_count is not None and agg > c.report_count:
        problems.append(f"count {agg} > report_count {c.report_count}")
    if c.report_count is not None and ones == len(values) and agg != c.report_count:
        problems.append(f"every measurement is 1 but count {agg} != report_count {c.report_count}")
    unexplained = {"count": agg} if agg > ones else {}
    return Counted(c.label, {}, tuple(sorted(values)), unexplained, c.report_count, False,
                   "Count: which reports were counted cannot be read off the aggregate; only count <= "
                   "report_count <= uploads is checked (weakest evidence)", tuple(problems))
