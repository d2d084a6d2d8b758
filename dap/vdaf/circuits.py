"""The Prio3 validity circuits of VDAF-08 section 7.4 (+ the experimental MultiHot one).

Each circuit is a :class:`dap.vdaf.flp.Valid`: measurement encoding and
checks, the wires of every gadget call, and the output from the gadget outputs.
The Histogram circuit follows the reference code and the official vectors, not
the draft prose (no extra ``r`` factor on each range-check term; see
``shared/spec/vdaf-08-prio3.md``, "Known discrepancies" 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from itertools import accumulate
from operator import mul
from typing import Any

from dap.errors import VdafError
from dap.vdaf.field import Field, Field64, Field128
from dap.vdaf.flp import Mul, ParallelSum, Range2, Valid

__all__ = ["Count", "Histogram", "MultiHotHistogram", "Sum", "SumVec"]


def _as_int(value: Any, what: str) -> int:
    """``value`` as an int; bools count as 0/1, anything else non-integral is an error."""
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, int):
        raise VdafError(f"{what} must be an integer, got {type(value).__name__} {value!r}")
    return value


def _check_param(name: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise VdafError(f"parameter {name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise VdafError(f"parameter {name} must be {bound}, got {value}")
    return value


@cache
def _shares_inv(p: int, num_shares: int) -> int:
    """``1 / num_shares`` mod p (cached: a modular inverse is slow in CPython)."""
    return pow(num_shares, -1, p)


@cache
def _lane_bits(p: int, calls: int) -> int:
    """Bits that hold any sum of ``calls`` products of two elements of ``[0, p)``."""
    return (calls * (p - 1) ** 2).bit_length()


def _range_check_wires(
    p: int, meas: list[int], r: int, calls: int, chunk: int, shares_inv: int
) -> list[list[int]]:
    """Wires of ``calls`` calls of ``ParallelSum(Mul, chunk)`` over ``meas``, zero padded.

    Input pair j of call i: ``(r^(i*chunk+j+1) * m, m - shares_inv)`` with
    ``m = meas[i*chunk+j]`` (0 past the end): the powers of r run on across
    calls and padding.
    """
    n = calls * chunk
    padded = meas + [0] * (n - len(meas)) if n > len(meas) else meas
    # r^1 .. r^n: a block of chunk powers, then whole blocks scaled by r^chunk.
    block = list(accumulate([r] * chunk, lambda a, b: a * b % p))
    step = block[-1]
    powers = list(block)
    scale = 1
    for _ in range(calls - 1):
        scale = scale * step % p
        powers += [scale * x % p for x in block]
    weighted = list(map(mul, powers, padded))
    shifted = [m - shares_inv for m in padded]
    wires = []
    for j in range(chunk):
        wires.append(weighted[j::chunk])
        wires.append(shifted[j::chunk])
    return wires


class Count(Valid):
    """Prio3Count: measurement 0 or 1; ``Mul(m, m) - m``."""

    NAME = "Count"
    GADGETS = (Mul(),)
    GADGET_CALLS = (1,)
    MEAS_LEN = 1
    OUTPUT_LEN = 1
    JOINT_RAND_LEN = 0

    def __init__(self, field: Field = Field64) -> None:
        self.field = field

    def __repr__(self) -> str:
        return "Count()"

    def encode(self, measurement: Any) -> list[int]:
        m = _as_int(measurement, "Count measurement")
        if m not in (0, 1):
            raise VdafError(f"Count measurement must be 0 or 1, got {m}")
        return [m]

    def truncate(self, meas: list[int]) -> list[int]:
        return meas

    def decode(self, output: list[int], num_measurements: int) -> int:
        return output[0]

    def wires(self, meas: list[int], joint_rand: list[int], num_shares: int) -> list[list[list[int]]]:
        return [[meas, meas]]

    def combine(
        self, meas: list[int], joint_rand: list[int], num_shares: int, gadget_outputs: list[list[int]]
    ) -> int:
        return gadget_outputs[0][0] - meas[0]


class Sum(Valid):
    """Prio3Sum(bits): an integer in [0, 2^bits) as bits, each checked with Range2."""

    NAME = "Sum"
    OUTPUT_LEN = 1
    JOINT_RAND_LEN = 1

    def __init__(self, bits: int, field: Field = Field128) -> None:
        _check_param("bits", bits, 1)
        if field.MODULUS >> bits == 0:
            raise VdafError(f"parameter bits={bits} too large for {field.NAME}")
        self.field = field
        self.bits = bits
        self.GADGETS = (Range2(),)
        self.GADGET_CALLS = (bits,)
        self.MEAS_LEN = bits
        p = field.MODULUS
        self._weights = [(1 << i) % p for i in range(bits)]

    def __repr__(self) -> str:
        return f"Sum(bits={self.bits})"

    def encode(self, measurement: Any) -> list[int]:
        m = _as_int(measurement, "Sum measurement")
        if not 0 <= m < (1 << self.bits):
            raise VdafError(f"Sum measurement must be in [0, 2^{self.bits}), got {m}")
        return self.field.encode_into_bit_vector(m, self.bits)

    def truncate(self, meas: list[int]) -> list[int]:
        return [sum(map(mul, self._weights, meas)) % self.field.MODULUS]

    def decode(self, output: list[int], num_measurements: int) -> int:
        return output[0]

    def wires(self, meas: list[int], joint_rand: list[int], num_shares: int) -> list[list[list[int]]]:
        return [[meas]]

    def combine(
        self, meas: list[int], joint_rand: list[int], num_shares: int, gadget_outputs: list[list[int]]
    ) -> int:
        p = self.field.MODULUS
        r = joint_rand[0]
        powers = accumulate([r] * self.bits, lambda a, b: a * b % p)
        return sum(map(mul, powers, gadget_outputs[0]))


class _ChunkedRangeCheck(Valid):
    """Circuits whose one gadget is ParallelSum(Mul, chunk_length) over a 0/1 range check of
    the whole encoded measurement (SumVec, Histogram, MultiHotHistogram); each adds its own
    ``combine``. Their outputs are vectors of counts."""

    chunk_length: int
    COMBINE_USES_SUMS = True  # the range check is the sum of the gadget outputs

    def decode(self, output: list[int], num_measurements: int) -> list[int]:
        return list(output)

    def combine(
        self, meas: list[int], joint_rand: list[int], num_shares: int, gadget_outputs: list[list[int]]
    ) -> int:
        return self.combine_sums(meas, joint_rand, num_shares, [sum(gadget_outputs[0])])

    def wires(self, meas: list[int], joint_rand: list[int], num_shares: int) -> list[list[list[int]]]:
        p = self.field.MODULUS
        shares_inv = _shares_inv(p, num_shares)
        return [
            _range_check_wires(p, meas, joint_rand[0], self.GADGET_CALLS[0], self.chunk_length, shares_inv)
        ]

    def wires_at(
        self, meas: list[int], joint_rand: list[int], num_shares: int, weights: list[list[int]]
    ) -> list[list[int]]:
        """:meth:`Valid.wires_at` from the wire structure of :func:`_range_check_wires`.

        With ``q = weights[0]``, ``c = chunk_length``, ``m`` the zero-padded measurement and
        ``R = r^c``, for input pair ``j``:

        * ``sum_k q_k * r^(k*c+j+1) * m[k*c+j] = r^(j+1) * sum_k (R^k q_k) * m[k*c+j]``
        * ``sum_k q_k * (m[k*c+j] - 1/shares) = sum_k q_k * m[k*c+j] - (1/shares) * sum(q)``

        so the query needs ``2 * calls`` modular products for the weights and two plain dot
        products per pair, instead of the ``calls * c`` weighted wire values and a dot
        product per wire. The two dot products of a pair run as one, on packed weights
        ``z_k = R^k q_k + q_k * 2^B``: with every ``m`` and ``q_k`` in ``[0, p)`` and
        ``R^k q_k`` reduced, ``sum_k R^k q_k m[k*c+j] < calls * p^2 <= 2^B``, so the low ``B``
        bits of ``sum_k z_k m[k*c+j]`` are the first sum and the rest is the second (half the
        big-integer operations).
        """
        p = self.field.MODULUS
        (q,) = weights
        calls = self.GADGET_CALLS[0]
        chunk = self.chunk_length
        n = calls * chunk
        padded = meas + [0] * (n - len(meas)) if n > len(meas) else meas
        r_powers = list(accumulate([joint_rand[0]] * chunk, lambda a, b: a * b % p))  # r^1..r^c
        step = r_powers[-1]
        bits = _lane_bits(p, calls)
        packed = [q[0] + (q[0] << bits)]  # R^0 q_0 = q_0
        scale = 1
        for k in range(1, calls):
            scale = scale * step % p
            packed.append(scale * q[k] % p + (q[k] << bits))
        low = (1 << bits) - 1
        shift = _shares_inv(p, num_shares) * sum(q)
        sums = []
        for j in range(chunk):
            both = sum(map(mul, padded[j::chunk], packed))
            sums.append(r_powers[j] * (both & low))
            sums.append((both >> bits) - shift)
        return [sums]


class SumVec(_ChunkedRangeCheck):
    """Prio3SumVec(length, bits, chunk_length): ``length`` integers in [0, 2^bits)."""

    NAME = "SumVec"
    JOINT_RAND_LEN = 1

    def __init__(self, length: int, bits: int, chunk_length: int, field: Field = Field128) -> None:
        _check_param("length", length, 1)
        _check_param("bits", bits, 1)
        _check_param("chunk_length", chunk_length, 1)
        if field.MODULUS >> bits == 0:
            raise VdafError(f"parameter bits={bits} too large for {field.NAME}")
        self.field = field
        self.length = length
        self.bits = bits
        self.chunk_length = chunk_length
        self.MEAS_LEN = length * bits
        self.OUTPUT_LEN = length
        self.GADGETS = (ParallelSum(Mul(), chunk_length),)
        self.GADGET_CALLS = ((self.MEAS_LEN + chunk_length - 1) // chunk_length,)
        p = field.MODULUS
        self._weights = [(1 << i) % p for i in range(bits)]

    def __repr__(self) -> str:
        return f"SumVec(length={self.length}, bits={self.bits}, chunk_length={self.chunk_length})"

    def encode(self, measurement: Any) -> list[int]:
        if isinstance(measurement, (str, bytes)) or not isinstance(measurement, Sequence):
            raise VdafError(f"SumVec measurement must be a list of {self.length} integers")
        if len(measurement) != self.length:
            raise VdafError(f"SumVec measurement must have {self.length} elements, got {len(measurement)}")
        out: list[int] = []
        bound = 1 << self.bits
        for i, value in enumerate(measurement):
            v = _as_int(value, f"SumVec measurement[{i}]")
            if not 0 <= v < bound:
                raise VdafError(f"SumVec measurement[{i}] must be in [0, 2^{self.bits}), got {v}")
            out += [(v >> b) & 1 for b in range(self.bits)]
        return out

    def truncate(self, meas: list[int]) -> list[int]:
        p = self.field.MODULUS
        bits = self.bits
        w = self._weights
        return [sum(map(mul, w, meas[i : i + bits])) % p for i in range(0, len(meas), bits)]

    def combine_sums(self, meas: list[int], joint_rand: list[int], num_shares: int, output_sums: list[int]) -> int:
        return output_sums[0]


class Histogram(_ChunkedRangeCheck):
    """Prio3Histogram(length, chunk_length): a bucket index, encoded one-hot."""

    NAME = "Histogram"
    JOINT_RAND_LEN = 2

    def __init__(self, length: int, chunk_length: int, field: Field = Field128) -> None:
        _check_param("length", length, 1)
        _check_param("chunk_length", chunk_length, 1)
        self.field = field
        self.length = length
        self.chunk_length = chunk_length
        self.MEAS_LEN = length
        self.OUTPUT_LEN = length
        self.GADGETS = (ParallelSum(Mul(), chunk_length),)
        self.GADGET_CALLS = ((length + chunk_length - 1) // chunk_length,)

    def __repr__(self) -> str:
        return f"Histogram(length={self.length}, chunk_length={self.chunk_length})"

    def encode(self, measurement: Any) -> list[int]:
        m = _as_int(measurement, "Histogram measurement")
        if not 0 <= m < self.length:
            raise VdafError(f"Histogram measurement must be a bucket index in [0, {self.length}), got {m}")
        out = [0] * self.length
        out[m] = 1
        return out

    def truncate(self, meas: list[int]) -> list[int]:
        return meas

    def combine_sums(self, meas: list[int], joint_rand: list[int], num_shares: int, output_sums: list[int]) -> int:
        p = self.field.MODULUS
        shares_inv = _shares_inv(p, num_shares)
        range_check = output_sums[0] % p
        sum_check = (sum(meas) - shares_inv) % p
        r = joint_rand[1]
        return r * range_check + r * r % p * sum_check


class MultiHotHistogram(_ChunkedRangeCheck):
    """Experimental Prio3MultiHotHistogram(length, max_count, chunk_length) of the VDAF-08 poc.

    The measurement is ``length`` bits with at most ``max_count`` ones; the
    encoding appends ``offset + count`` in ``bit_length(max_count)`` bits with
    ``offset = 2^bits - 1 - max_count`` so that an overflow shows as a carry.
    """

    NAME = "MultiHotHistogram"
    JOINT_RAND_LEN = 2

    def __init__(self, length: int, max_count: int, chunk_length: int, field: Field = Field128) -> None:
        _check_param("length", length, 1)
        _check_param("max_count", max_count, 1, length)
        _check_param("chunk_length", chunk_length, 1)
        self.field = field
        self.length = length
        self.max_count = max_count
        self.chunk_length = chunk_length
        self.bits_for_count = max_count.bit_length()
        self.offset = (1 << self.bits_for_count) - 1 - max_count
        self.MEAS_LEN = length + self.bits_for_count
        self.OUTPUT_LEN = length
        self.GADGETS = (ParallelSum(Mul(), chunk_length),)
        self.GADGET_CALLS = ((self.MEAS_LEN + chunk_length - 1) // chunk_length,)

    def __repr__(self) -> str:
        return (
            f"MultiHotHistogram(length={self.length}, max_count={self.max_count}, "
            f"chunk_length={self.chunk_length})"
        )

    def encode(self, measurement: Any) -> list[int]:
        if isinstance(measurement, (str, bytes)) or not isinstance(measurement, Sequence):
            raise VdafError(f"MultiHotHistogram measurement must be a list of {self.length} bits")
        if len(measurement) != self.length:
            raise VdafError(
                f"MultiHotHistogram measurement must have {self.length} elements, got {len(measurement)}"
            )
        bits = [_as_int(b, f"MultiHotHistogram measurement[{i}]") for i, b in enumerate(measurement)]
        if any(b not in (0, 1) for b in bits):
            raise VdafError("MultiHotHistogram measurement elements must be 0 or 1")
        count = sum(bits)
        if count > self.max_count:
            raise VdafError(f"MultiHotHistogram measurement has {count} ones, more than {self.max_count}")
        return bits + self.field.encode_into_bit_vector(self.offset + count, self.bits_for_count)

    def truncate(self, meas: list[int]) -> list[int]:
        return meas[: self.length]

    def combine_sums(self, meas: list[int], joint_rand: list[int], num_shares: int, output_sums: list[int]) -> int:
        p = self.field.MODULUS
        shares_inv = _shares_inv(p, num_shares)
        range_check = output_sums[0] % p
        claimed = self.field.decode_from_bit_vector(meas[self.length :])
        count_check = (self.offset * shares_inv + sum(meas[: self.length]) - claimed) % p
        r = joint_rand[1]
        return r * range_check + r * r % p * count_check
