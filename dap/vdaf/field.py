"""Prime fields of VDAF-08: Field64, Field128 (Prio3) and Field255 (Poplar1's leaf level).

Elements are plain Python ``int`` in ``[0, MODULUS)``; vectors are ``list[int]``.
A :class:`Field` instance holds the constants and the vector helpers, so the
hot paths never allocate per-element objects. Encoding is little-endian,
``ENCODED_SIZE`` bytes per element, no length prefix (VDAF-08 section 6.1).

Decoding is strict: the length must be a multiple of ``ENCODED_SIZE`` and
every element must be below the modulus, otherwise :class:`VdafError`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import repeat
from operator import add, sub
from typing import Final

from dap.errors import VdafError

__all__ = ["Field", "Field64", "Field128", "Field255", "next_power_of_2"]

def next_power_of_2(n: int) -> int:
    """The smallest power of two ``>= n`` (``n >= 1``)."""
    if n < 1:
        raise ValueError(f"next_power_of_2 needs n >= 1, got {n}")
    return 1 << (n - 1).bit_length()


class Field:
    """One prime field: its constants and vector operations on ``list[int]``.

    ``GEN`` generates the multiplicative subgroup of order ``GEN_ORDER`` (a power
    of two) that the FLP takes its evaluation points from; a field the FLP never
    uses (Field255) has ``GEN = 1``, ``GEN_ORDER = 1``: only the trivial subgroup.
    ``SAMPLE_MASK`` is applied to each little-endian chunk before the rejection
    test in ``Xof.next_vec`` (all ones for Field64 / Field128; the low 255 bits
    for Field255, whose top encoded bit is cleared, not rejected).
    """

    __slots__ = ("NAME", "MODULUS", "ENCODED_SIZE", "GEN", "GEN_ORDER", "SAMPLE_MASK", "FULL_MASK", "decode_raw")

    NAME: str
    MODULUS: int
    ENCODED_SIZE: int
    GEN: int
    GEN_ORDER: int
    SAMPLE_MASK: int
    #: True when SAMPLE_MASK keeps every bit of an ENCODED_SIZE chunk (no masking needed).
    FULL_MASK: bool
    #: Unchecked little-endian split of ``data`` (length a multiple of ENCODED_SIZE).
    decode_raw: Callable[[bytes], list[int]]

    def __init__(self, name: str, modulus: int, encoded_size: int, gen: int, gen_order: int) -> None:
        self.NAME = name
        self.MODULUS = modulus
        self.ENCODED_SIZE = encoded_size
        self.GEN = gen
        self.GEN_ORDER = gen_order
        self.SAMPLE_MASK = (1 << (modulus - 1).bit_length()) - 1
        self.FULL_MASK = self.SAMPLE_MASK == (1 << (8 * encoded_size)) - 1
        if pow(gen, gen_order, modulus) != 1 or (gen_order > 1 and pow(gen, gen_order // 2, modulus) == 1):
            raise ValueError(f"{name}: generator does not have order {gen_order}")
        if encoded_size == 8:
            self.decode_raw = _decode_u64
        else:
            self.decode_raw = _decode_generic(encoded_size)

    def __repr__(self) -> str:
        return self.NAME

    def __reduce__(self) -> str:
        # Pickle by name: the module-level instance is the canonical one.
        return self.NAME

    # -- encoding -----------------------------------------------------------

    def encode_vec(self, vec: Sequence[int]) -> bytes:
        """Concatenated little-endian encodings of (already reduced) elements."""
        size = self.ENCODED_SIZE
        return b"".join([x.to_bytes(size, "little") for x in vec])

    def decode_vec(self, data: bytes, *, what: str = "field vector") -> list[int]:
        """Strict inverse of :meth:`encode_vec`; ``what`` names the value in errors."""
        size = self.ENCODED_SIZE
        if len(data) % size:
            raise VdafError(
                f"{what}: length {len(data)} is not a multiple of {self.NAME}'s {size}-byte elements"
            )
        vec = self.decode_raw(data)
        if vec and max(vec) >= self.MODULUS:
            bad = next(i for i, x in enumerate(vec) if x >= self.MODULUS)
            raise VdafError(f"{what}: element {bad} is not below the {self.NAME} modulus")
        return vec

    def check_vec(self, data: bytes, *, what: str = "field vector") -> None:
        """The checks of :meth:`decode_vec` (same errors), without building the vector.

        An element at or above the modulus has a most significant byte at least the
        modulus's; only the elements whose top byte gets there (few, for random shares) are
        decoded and compared.
        """
        size = self.ENCODED_SIZE
        if len(data) % size:
            raise VdafError(
                f"{what}: length {len(data)} is not a multiple of {self.NAME}'s {size}-byte elements"
            )
        tops = data[size - 1 :: size]
        top_byte = self.MODULUS >> (8 * size - 8)
        if not tops.translate(None, _bytes_below(top_byte)):  # every top byte is below it
            return
        for i, top in enumerate(tops):
            if top >= top_byte and int.from_bytes(data[i * size : (i + 1) * size], "little") >= self.MODULUS:
                raise VdafError(f"{what}: element {i} is not below the {self.NAME} modulus")

    def decode_vec_len(self, data: bytes, length: int, *, what: str = "field vector") -> list[int]:
        """:meth:`decode_vec` that also insists on exactly ``length`` elements."""
        if len(data) != length * self.ENCODED_SIZE:
            raise VdafError(
                f"{what}: expected {length} {self.NAME} elements "
                f"({length * self.ENCODED_SIZE} bytes), got {len(data)} bytes"
            )
        return self.decode_vec(data, what=what)

    # -- arithmetic ---------------------------------------------------------

    def vec_add(self, left: Sequence[int], right: Sequence[int]) -> list[int]:
        if len(left) != len(right):
            raise VdafError(f"vector lengths differ: {len(left)} != {len(right)}")
        return list(map(self.MODULUS.__rmod__, map(add, left, right)))

    def vec_sub(self, left: Sequence[int], right: Sequence[int]) -> list[int]:
        if len(left) != len(right):
            raise VdafError(f"vector lengths differ: {len(left)} != {len(right)}")
        return list(map(self.MODULUS.__rmod__, map(sub, left, right)))

    def vec_neg(self, vec: Sequence[int]) -> list[int]:
        return [-x % self.MODULUS for x in vec]

    def inv(self, x: int) -> int:
        if x % self.MODULUS == 0:
            raise VdafError(f"{self.NAME}: zero has no inverse")
        return pow(x, -1, self.MODULUS)

    def root_of_unity(self, n: int) -> int:
        """The primitive ``n``-th root ``GEN^(GEN_ORDER / n)`` (``n`` a power of two)."""
        if n < 1 or n & (n - 1) or self.GEN_ORDER % n:
            raise VdafError(f"{self.NAME} has no subgroup of order {n}")
        return pow(self.GEN, self.GEN_ORDER // n, self.MODULUS)

    # -- bit vectors (VDAF-08 section 6.1.1) ----------------------------------

    def encode_into_bit_vector(self, value: int, bits: int) -> list[int]:
        """``bits`` elements, least significant bit first; error if ``value >= 2^bits``."""
        if not 0 <= value < (1 << bits):
            raise VdafError(f"value {value} does not fit in {bits} bits")
        return [(value >> i) & 1 for i in range(bits)]

    def decode_from_bit_vector(self, vec: Sequence[int]) -> int:
        """``sum(2^i * vec[i])`` in the field; error if the field cannot hold ``len(vec)`` bits."""
        if self.MODULUS >> len(vec) == 0:
            raise VdafError(f"{self.NAME} cannot represent {len(vec)}-bit values")
        acc = 0
        for bit in reversed(vec):
            acc = (acc << 1) + bit
        return acc % self.MODULUS


@lru_cache(maxsize=64)
def _u64_struct(count: int) -> struct.Struct:
    """A compiled ``<countQ`` unpacker (bounded cache: lengths come from the wire)."""
    return struct.Struct(f"<{count}Q")


@lru_cache(maxsize=8)
def _bytes_below(top: int) -> bytes:
    """The byte values below ``top`` (a ``bytes.translate`` deletion set)."""
    return bytes(range(top))


def _decode_u64(data: bytes) -> list[int]:
    return list(_u64_struct(len(data) >> 3).unpack(data))


@lru_cache(maxsize=64)
def _chunks_struct(size: int, count: int) -> struct.Struct:
    """A compiled splitter of ``count`` ``size``-byte strings (bounded cache, as above)."""
    return struct.Struct(f"{size}s" * count)


def _decode_generic(size: int) -> Callable[[bytes], list[int]]:
    # One C call splits the data, one map converts: no Python-level loop per element
    # (about 40% less time than combining two unpacked u64 words per Field128 element).
    def decode(data: bytes) -> list[int]:
        return list(map(int.from_bytes, _chunks_struct(size, len(data) // size).unpack(data), repeat("little")))

    return decode


#: p = 2^32 * 4294967295 + 1 (used by Prio3Count and the multiproof test variant).
Field64: Final = Field(
    "Field64",
    modulus=2**32 * 4294967295 + 1,
    encoded_size=8,
    gen=0x185629DCDA58878C,
    gen_order=2**32,
)

#: p = 2^66 * 4611686018427387897 + 1 (Prio3Sum, SumVec, Histogram, MultiHot).
Field128: Final = Field(
    "Field128",
    modulus=2**66 * 4611686018427387897 + 1,
    encoded_size=16,
    gen=0x6D278FBF4F60228B1F9B2759C5109F06,
    gen_order=2**66,
)

#: p = 2^255 - 19 (Poplar1's IDPF leaf level). No FFT subgroup: Poplar1 runs no FLP.
Field255: Final = Field(
    "Field255",
    modulus=2**255 - 19,
    encoded_size=32,
    gen=1,
    gen_order=1,
)

assert Field64.GEN == pow(7, 4294967295, Field64.MODULUS)
assert Field128.GEN == pow(7, 4611686018427387897, Field128.MODULUS)
