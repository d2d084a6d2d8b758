"""VDAF parameters as the interop test API writes them, and the one table that maps them to instances.

The interop API (``shared/spec/interop-api.md`` section 2.1) describes a VDAF
as ``{"type": "Prio3Histogram", "length": "12", "chunk_length": "4"}`` with
decimal-string parameters (JSON numbers are accepted too). Measurements and
aggregate results travel as decimal strings or arrays of them (section 3.1 and
``collection_poll``).

:class:`VdafParams` is the parsed, immutable, printable form (it can sit in a
plan or a task definition); :meth:`VdafParams.build` returns the (cached)
:class:`dap.vdaf.prio3.Prio3` or :class:`dap.vdaf.poplar1.Poplar1` instance.
Everything type-specific lives in :data:`_KINDS`: which parameters a type
takes (and their bounds), how to build it, how its measurements and results
are written and checked. Poplar1 (``{"type": "Poplar1", "bits": "<n>"}``)
takes an array of ``bits`` booleans as measurement (element 0 = most
significant bit = tree level 0), gives an array of decimal strings (one count
per candidate prefix), and needs an aggregation parameter: the interop API
carries it as base64url of its VDAF encoding (``""`` for Prio3), see
:meth:`VdafParams.agg_param_from_interop`.

Errors are :class:`dap.errors.VdafError` with a one-line message naming the
offending key.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import attrs

from dap.errors import VdafError
from dap.vdaf.poplar1 import MAX_BITS as POPLAR1_MAX_BITS
from dap.vdaf.poplar1 import Poplar1
from dap.vdaf.prio3 import Prio3, Prio3Count, Prio3Histogram, Prio3Sum, Prio3SumVec

__all__ = ["VDAF_TYPES", "Vdaf", "VdafParams", "vdaf_from_interop"]

#: Every VDAF instance :meth:`VdafParams.build` can return.
Vdaf: TypeAlias = Prio3 | Poplar1

#: Upper bound on lengths, chunk lengths and the encoded measurement length
#: (``length * bits`` for SumVec): the FLP precomputes tables of that order.
MAX_PARAM = 1 << 16
_DECIMAL = re.compile(r"[0-9]+")


def _parse_uint(value: Any, what: str) -> int:
    """A decimal string (digits only) or a JSON integer, as a non-negative int."""
    if isinstance(value, bool):
        raise VdafError(f"{what}: expected a decimal string, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    else:
        raise VdafError(f"{what}: expected a decimal string, got {value!r}")
    if number < 0:
        raise VdafError(f"{what}: must not be negative, got {number}")
    return number


def _parse_uint_list(value: Any, what: str) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise VdafError(f"{what}: expected an array of decimal strings, got {value!r}")
    return [_parse_uint(v, f"{what}[{i}]") for i, v in enumerate(value)]


def _flp_check(vdaf: Any, measurement: Any) -> None:
    """Prio3: the circuit's encoder range-checks the measurement (VdafError if out of range)."""
    vdaf.flp.encode(measurement)


@attrs.frozen
class _Kind:
    """How one interop VDAF type is parameterised, built and written.

    ``check_measurement(vdaf, measurement)`` raises VdafError for a parsed
    measurement the instance cannot shard; ``bounds`` overrides
    :data:`_BOUNDS` for this type.
    """

    params: tuple[str, ...]
    build: Callable[[VdafParams], Vdaf]
    parse_measurement: Callable[[Any], Any]
    format_measurement: Callable[[Any], Any]
    vector_result: bool
    check_measurement: Callable[[Any, Any], None] = _flp_check
    bounds: Mapping[str, tuple[int, int]] = attrs.field(factory=dict)


def _scalar_in(value: Any) -> int:
    return _parse_uint(value, "measurement")


def _scalar_out(value: Any) -> str:
    return str(int(value))


def _vector_in(value: Any) -> list[int]:
    return _parse_uint_list(value, "measurement")


def _vector_out(value: Sequence[Any]) -> list[str]:
    return [str(int(v)) for v in value]


def _bools_in(value: Any) -> tuple[bool, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise VdafError(f"measurement: expected an array of booleans, got {value!r}")
    for i, bit in enumerate(value):
        if not isinstance(bit, bool):
            raise VdafError(f"measurement[{i}]: expected a boolean, got {bit!r}")
    return tuple(value)


def _bools_out(value: Sequence[bool]) -> list[bool]:
    return [bool(bit) for bit in value]


def _poplar1_check(vdaf: Any, measurement: Any) -> None:
    vdaf.measurement_to_int(measurement)  # VdafError unless exactly BITS booleans (or an int in range)


def _count_in(value: Any) -> int:
    if value in ("0", "1", 0, 1) and not isinstance(value, bool):
        return int(value)
    raise VdafError(f"measurement: Prio3Count takes \"0\" or \"1\", got {value!r}")


_KINDS: dict[str, _Kind] = {
    "Prio3Count": _Kind(
        params=(),
        build=lambda p: Prio3Count(),
        parse_measurement=_count_in,
        format_measurement=_scalar_out,
        vector_result=False,
    ),
    "Prio3Sum": _Kind(
        params=("bits",),
        build=lambda p: Prio3Sum(p.bits),
        parse_measurement=_scalar_in,
        format_measurement=_scalar_out,
        vector_result=False,
    ),
    "Prio3SumVec": _Kind(
        params=("bits", "length", "chunk_length"),
        build=lambda p: Prio3SumVec(p.length, p.bits, p.chunk_length),
        parse_measurement=_vector_in,
        format_measurement=_vector_out,
        vector_result=True,
    ),
    "Prio3Histogram": _Kind(
        params=("length", "chunk_length"),
        build=lambda p: Prio3Histogram(p.length, p.chunk_length),
        parse_measurement=_scalar_in,
        format_measurement=_scalar_out,
        vector_result=True,
    ),
    "Poplar1": _Kind(
        params=("bits",),
        build=lambda p: Poplar1.with_bits(p.bits),
        parse_measurement=_bools_in,
        format_measurement=_bools_out,
        vector_result=True,
        check_measurement=_poplar1_check,
        bounds={"bits": (1, POPLAR1_MAX_BITS)},
    ),
}

#: The interop VDAF type names this module knows (``{"type": ...}``), in table order.
VDAF_TYPES: tuple[str, ...] = tuple(_KINDS)

#: Per parameter: (smallest, largest) accepted value, unless the type's ``bounds`` say otherwise.
_BOUNDS: dict[str, tuple[int, int]] = {
    "bits": (1, 127),
    "length": (1, MAX_PARAM),
    "chunk_length": (1, MAX_PARAM),
}


@attrs.frozen
class VdafParams:
    """One VDAF configuration: the interop ``type`` and its integer parameters."""

    type: str
    bits: int | None = None
    length: int | None = None
    chunk_length: int | None = None

    def __attrs_post_init__(self) -> None:
        kind = _KINDS.get(self.type)
        if kind is None:
            raise VdafError(f"vdaf.type: unsupported VDAF type {self.type!r}; known: {', '.join(_KINDS)}")
        for name, default_bounds in _BOUNDS.items():
            low, high = kind.bounds.get(name, default_bounds)
            value = getattr(self, name)
            if name not in kind.params:
                if value is not None:
                    raise VdafError(f"vdaf.{name}: not a parameter of {self.type}")
                continue
            if value is None:
                raise VdafError(f"vdaf.{name}: required for {self.type}")
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise VdafError(f"vdaf.{name}: must be an integer in [{low}, {high}], got {value!r}")
        if self.type == "Prio3SumVec" and (self.length or 0) * (self.bits or 0) > MAX_PARAM:
            raise VdafError(f"vdaf: length * bits must be at most {MAX_PARAM}, got {self.length}*{self.bits}")

    @classmethod
    def from_interop(cls, obj: Mapping[str, Any]) -> VdafParams:
        """Parse the interop API's VDAF object (decimal strings or JSON integers)."""
        if not isinstance(obj, Mapping):
            raise VdafError(f"vdaf: expected a JSON object, got {obj!r}")
        vdaf_type = obj.get("type")
        if not isinstance(vdaf_type, str):
            raise VdafError(f"vdaf.type: expected a string, got {vdaf_type!r}")
        kind = _KINDS.get(vdaf_type)
        if kind is None:
            raise VdafError(f"vdaf.type: unsupported VDAF type {vdaf_type!r}; known: {', '.join(_KINDS)}")
        unknown = sorted(set(obj) - {"type", *kind.params})
        if unknown:
            raise VdafError(f"vdaf: unexpected key(s) {', '.join(unknown)} for {vdaf_type}")
        values: dict[str, int] = {}
        for name in kind.params:
            if name not in obj:
                raise VdafError(f"vdaf.{name}: required for {vdaf_type}")
            values[name] = _parse_uint(obj[name], f"vdaf.{name}")
        return cls(vdaf_type, **values)

    def to_interop(self) -> dict[str, str]:
        """The interop API's VDAF object (decimal strings)."""
        out = {"type": self.type}
        for name in _KINDS[self.type].params:
            out[name] = str(getattr(self, name))
        return out

    def build(self) -> Vdaf:
        """The VDAF instance (cached: equal parameters give the same object)."""
        try:
            return _KINDS[self.type].build(self)
        except ValueError as exc:  # e.g. a circuit too large for the field
            raise VdafError(f"vdaf: {self.type} with {self.to_interop()} is not usable: {exc}") from exc

    # Measurements and results in the interop encodings --------------------

    def measurement_from_interop(self, value: Any) -> Any:
        """Interop measurement -> what the instance's ``shard`` takes (range-checked)."""
        kind = _KINDS[self.type]
        measurement = kind.parse_measurement(value)
        kind.check_measurement(self.build(), measurement)
        return measurement

    def measurement_to_interop(self, measurement: Any) -> Any:
        return _KINDS[self.type].format_measurement(measurement)

    def result_to_interop(self, result: Any) -> str | list[str]:
        """Aggregate result -> decimal string (Count, Sum) or array of them."""
        if _KINDS[self.type].vector_result:
            return _vector_out(result)
        return _scalar_out(result)

    def result_from_interop(self, value: Any) -> int | list[int]:
        if _KINDS[self.type].vector_result:
            return _parse_uint_list(value, "result")
        return _parse_uint(value, "result")

    # Aggregation parameters in the interop encoding -------------------------

    def agg_param_from_interop(self, value: Any) -> Any:
        """Interop ``agg_param`` (base64url of the VDAF encoding, padded or not) -> the decoded parameter.

        Prio3: ``""`` -> ``None``. Poplar1: a
        :class:`dap.vdaf.poplar1.Poplar1AggParam`, strictly decoded.
        """
        if not isinstance(value, str) or any(c in value for c in "+/"):
            raise VdafError(f"agg_param: expected a base64url string, got {value!r}")
        stripped = value.rstrip("=")
        try:
            encoded = base64.b64decode(stripped + "=" * (-len(stripped) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VdafError(f"agg_param: not base64url ({exc})") from None
        return self.build().decode_agg_param(encoded)

    def agg_param_to_interop(self, agg_param: Any) -> str:
        """A decoded aggregation parameter -> unpadded base64url of its encoding (``""`` for Prio3)."""
        encoded = self.build().encode_agg_param(agg_param)
        return base64.urlsafe_b64encode(encoded).rstrip(b"=").decode("ascii")


def vdaf_from_interop(obj: Mapping[str, Any]) -> Vdaf:
    """Shortcut: the VDAF instance for an interop VDAF object."""
    return VdafParams.from_interop(obj).build()
