"""Number-theoretic transforms over the FFT-friendly fields (radix 2).

Used by the FLP to move between wire values at the ``P``-th roots of unity and
polynomial coefficients. The transform is a constant-geometry decimation in
frequency: every stage pairs element ``j`` with ``j + n/2`` and writes the sum
and the twiddled difference to ``2j`` and ``2j + 1``, so each stage is a few
whole-list ``map`` calls instead of a Python loop per butterfly. Sums are left
unreduced between stages (they grow by one bit per stage); every product and
the final output are reduced.
"""

from __future__ import annotations

from functools import cache
from operator import add, mul, sub

from dap.vdaf.field import Field

__all__ = ["Ntt", "ntt_for"]


class Ntt:
    """Forward and inverse transform of size ``n`` with root ``field.root_of_unity(n)``.

    ``forward(a)[k] = sum_i a[i] * w^(i*k)``; ``inverse`` undoes it (including
    the ``1/n`` factor). Inputs may be unreduced (any sign); outputs are
    reduced lists.
    """

    __slots__ = ("n", "modulus", "_fwd", "_inv", "_bitrev", "_n_inv", "_fwd_matrix", "_inv_matrix")

    #: Up to this size the transform is a precomputed matrix product (less overhead).
    MATRIX_MAX = 4

    def __init__(self, field: Field, n: int) -> None:
        p = field.MODULUS
        self.n = n
        self.modulus = p
        root = field.root_of_unity(n)
        self._fwd = _stage_twiddles(root, n, p)
        self._inv = _stage_twiddles(pow(root, -1, p), n, p)
        bits = n.bit_length() - 1
        self._bitrev = [int(f"{i:0{bits}b}"[::-1], 2) if bits else 0 for i in range(n)]
        self._n_inv = pow(n, -1, p)
        self._fwd_matrix: list[list[int]] | None = None
        self._inv_matrix: list[list[int]] | None = None
        if n <= self.MATRIX_MAX:
            inv_root = pow(root, -1, p)
            self._fwd_matrix = [[pow(root, i * k, p) for i in range(n)] for k in range(n)]
            self._inv_matrix = [[pow(inv_root, i * k, p) * self._n_inv % p for i in range(n)] for k in range(n)]

    def forward(self, a: list[int]) -> list[int]:
        if self._fwd_matrix is not None:
            return self._matrix(a, self._fwd_matrix)
        return self._run(a, self._fwd, 1)

    def inverse(self, a: list[int]) -> list[int]:
        if self._inv_matrix is not None:
            return self._matrix(a, self._inv_matrix)
        return self._run(a, self._inv, self._n_inv)

    def _matrix(self, a: list[int], matrix: list[list[int]]) -> list[int]:
        if len(a) != self.n:
            raise ValueError(f"NTT of size {self.n} given {len(a)} values")
        p = self.modulus
        return [sum(map(mul, row, a)) % p for row in matrix]

    def _run(self, a: list[int], stages: list[list[int]], scale: int) -> list[int]:
        p = self.modulus
        n = self.n
        if len(a) != n:
            raise ValueError(f"NTT of size {n} given {len(a)} values")
        half = n >> 1
        reduce = p.__rmod__
        for twiddles in stages:
            lo = a[:half]
            hi = a[half:]
            a = [0] * n
            a[0::2] = map(add, lo, hi)
            a[1::2] = map(reduce, map(mul, map(sub, lo, hi), twiddles))
        if scale == 1:
            return list(map(reduce, map(a.__getitem__, self._bitrev)))
        return [a[i] * scale % p for i in self._bitrev]


def _stage_twiddles(root: int, n: int, p: int) -> list[list[int]]:
    """Per stage s, for j < n/2: ``root^(2^s * (j >> s))``."""
    stages = []
    half = n >> 1
    s = 0
    while (1 << s) < n:
        step = pow(root, 1 << s, p)
        powers = [1] * max(half >> s, 1)
        for i in range(1, len(powers)):
            powers[i] = powers[i - 1] * step % p
        stages.append([powers[j >> s] for j in range(half)])
        s += 1
    return stages


@cache
def ntt_for(field: Field, n: int) -> Ntt:
    """The (cached) transform of size ``n`` over ``field``."""
    return Ntt(field, n)
