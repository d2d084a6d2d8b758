"""The generic FLP of VDAF-08 section 7.3 (BBCGGI19 section 4.2) and its gadgets.

A validity circuit (:class:`Valid`) is described in two halves instead of one
``eval`` that calls gadgets one at a time:

* ``wires(meas, joint_rand, num_shares)``: for every gadget, the value of every
  input wire at every call (``wires[i][j][k]`` = wire ``j`` of gadget ``i`` at
  call ``k + 1``), as ints congruent to the field values (unreduced is fine);
* ``combine(meas, joint_rand, num_shares, gadget_outputs)``: the circuit output
  from the gadget outputs (``gadget_outputs[i][k]`` = output of call ``k + 1``).

This covers every circuit in which no gadget input depends on a gadget output,
which is true of all VDAF-08 Prio3 circuits, and lets the prover and the query
handle each wire as one vector. ``Valid.eval`` runs the two halves with real
gadget evaluations (tests use it to check circuits directly).

Speed notes (field elements are plain ints; a 128-bit multiply-and-reduce costs
~0.3 us in CPython, so reductions are what is counted):

* prover: wire values at the ``P``-th roots -> coefficients by an inverse NTT;
  values on the other cosets of the ``N``-th roots (``N`` = the next power of two
  above the gadget polynomial's length) by twisted forward NTTs; the gadget is
  evaluated point-wise on whole columns; one inverse NTT of size ``N`` gives
  the gadget polynomial;
* query: gadget outputs at ``alpha^k`` from the gadget polynomial folded modulo
  ``x^P - 1`` and one forward NTT; wire polynomials are never interpolated: the
  verifier needs ``w_j(t)`` only, which is a dot product of the wire values with
  the Lagrange weights of the roots of unity at ``t`` (a product formula from the
  repeated squares of ``t``, no inversion: ``_GadgetPlan.lagrange_weights``),
  reduced once per wire. A circuit may compute those dot products from its wire
  structure without building the wires (``Valid.wires_at``: the chunked range
  checks need two short dot products per input pair), and one whose output uses
  only the sum of each gadget's outputs (``COMBINE_USES_SUMS``) gets that sum as
  one dot product of the gadget polynomial with constants.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from itertools import accumulate
from operator import add, mul
from typing import Any, ClassVar

from dap.errors import VdafError
from dap.vdaf.field import Field, next_power_of_2
from dap.vdaf.ntt import Ntt, ntt_for

__all__ = [
    "FlpGeneric",
    "Gadget",
    "Mul",
    "ParallelSum",
    "PolyEval",
    "Range2",
    "Valid",
]


# ---------------------------------------------------------------------------
# Gadgets
# ---------------------------------------------------------------------------


class Gadget(ABC):
    """An arithmetic sub-circuit with ``ARITY`` inputs, a polynomial of degree ``DEGREE``.

    ``eval`` works on one input vector, ``eval_columns`` point-wise on columns
    (``columns[j]`` = all values of input ``j``). Both may return unreduced
    ints (any sign); callers reduce.
    """

    ARITY: int
    DEGREE: int

    @abstractmethod
    def eval(self, p: int, inputs: Sequence[int]) -> int: ...

    @abstractmethod
    def eval_columns(self, p: int, columns: Sequence[Sequence[int]]) -> list[int]: ...


class Mul(Gadget):
    """``x0 * x1``."""

    ARITY = 2
    DEGREE = 2

    def eval(self, p: int, inputs: Sequence[int]) -> int:
        return inputs[0] * inputs[1]

    def eval_columns(self, p: int, columns: Sequence[Sequence[int]]) -> list[int]:
        return list(map(mul, columns[0], columns[1]))

    def __repr__(self) -> str:
        return "Mul()"


class Range2(Gadget):
    """``x^2 - x``: zero exactly on {0, 1}."""

    ARITY = 1
    DEGREE = 2

    def eval(self, p: int, inputs: Sequence[int]) -> int:
        x = inputs[0]
        return x * x - x

    def eval_columns(self, p: int, columns: Sequence[Sequence[int]]) -> list[int]:
        return [x * x - x for x in columns[0]]

    def __repr__(self) -> str:
        return "Range2()"


class PolyEval(Gadget):
    """A fixed univariate polynomial, coefficients lowest degree first."""

    ARITY = 1

    def __init__(self, coeffs: Sequence[int]) -> None:
        coeffs = list(coeffs)
        while len(coeffs) > 1 and coeffs[-1] == 0:
            coeffs.pop()
        if len(coeffs) < 2:
            raise ValueError("PolyEval needs a polynomial of degree >= 1")
        self.coeffs = coeffs
        self.DEGREE = len(coeffs) - 1

    def eval(self, p: int, inputs: Sequence[int]) -> int:
        x = inputs[0] % p
        acc = 0
        for c in reversed(self.coeffs):
            acc = (acc * x + c) % p
        return acc

    def eval_columns(self, p: int, columns: Sequence[Sequence[int]]) -> list[int]:
        return [self.eval(p, (x,)) for x in columns[0]]

    def __repr__(self) -> str:
        return f"PolyEval({self.coeffs})"


class ParallelSum(Gadget):
    """``sum_{c < count} sub(x[c*a : (c+1)*a])`` with ``a = sub.ARITY``."""

    def __init__(self, sub_gadget: Gadget, count: int) -> None:
        if count < 1:
            raise ValueError("ParallelSum count must be >= 1")
        self.sub = sub_gadget
        self.count = count
        self.ARITY = sub_gadget.ARITY * count
        self.DEGREE = sub_gadget.DEGREE

    def eval(self, p: int, inputs: Sequence[int]) -> int:
        if isinstance(self.sub, Mul):
            return sum(map(mul, inputs[0::2], inputs[1::2]))
        a = self.sub.ARITY
        return sum(self.sub.eval(p, inputs[c * a : (c + 1) * a]) for c in range(self.count))

    def eval_columns(self, p: int, columns: Sequence[Sequence[int]]) -> list[int]:
        a = self.sub.ARITY
        acc: Any = None
        for c in range(self.count):
            part = self.sub.eval_columns(p, columns[c * a : (c + 1) * a])
            acc = part if acc is None else map(add, acc, part)
        return list(acc)

    def __repr__(self) -> str:
        return f"ParallelSum({self.sub!r}, {self.count})"


# ---------------------------------------------------------------------------
# Validity circuits
# ---------------------------------------------------------------------------


class Valid(ABC):
    """A validity circuit; see the module docstring for the two-halves contract."""

    field: Field
    GADGETS: tuple[Gadget, ...]
    GADGET_CALLS: tuple[int, ...]
    MEAS_LEN: int
    OUTPUT_LEN: int
    JOINT_RAND_LEN: int

    #: Short name used in errors and reprs (``Count``, ``Sum`` ...).
    NAME: ClassVar[str] = "Valid"

    #: True when :meth:`combine` uses the gadget outputs only through their sum per
    #: gadget; the FLP query then takes each sum straight from the gadget polynomial (one
    #: dot product with constants) and calls :meth:`combine_sums`.
    COMBINE_USES_SUMS: ClassVar[bool] = False

    def combine_sums(self, meas: list[int], joint_rand: list[int], num_shares: int, output_sums: list[int]) -> int:
        """:meth:`combine` given ``sum(gadget_outputs[i])`` per gadget (``COMBINE_USES_SUMS``)."""
        raise NotImplementedError(f"{self.NAME} combines individual gadget outputs")

    @abstractmethod
    def encode(self, measurement: Any) -> list[int]:
        """Measurement -> field vector of ``MEAS_LEN``; VdafError if invalid."""

    @abstractmethod
    def truncate(self, meas: list[int]) -> list[int]:
        """Encoded measurement (share) -> output share of ``OUTPUT_LEN``."""

    @abstractmethod
    def decode(self, output: list[int], num_measurements: int) -> Any:
        """Aggregate (sum of aggregate shares) -> aggregate result."""

    @abstractmethod
    def wires(self, meas: list[int], joint_rand: list[int], num_shares: int) -> list[list[list[int]]]:
        """Per gadget, per input wire, the values at calls 1..M (unreduced ints allowed)."""

    @abstractmethod
    def combine(
        self, meas: list[int], joint_rand: list[int], num_shares: int, gadget_outputs: list[list[int]]
    ) -> int:
        """Circuit output (unreduced allowed) from the gadget outputs of calls 1..M."""

    def wires_at(
        self, meas: list[int], joint_rand: list[int], num_shares: int, weights: list[list[int]]
    ) -> list[list[int]]:
        """Per gadget ``i`` and input wire ``j``: ``sum_k wires[i][j][k] * weights[i][k]``.

        The FLP query's only use of the wires (``weights`` are Lagrange weights at the query
        point). ``meas``, ``joint_rand`` and ``weights`` are reduced field elements (an
        override may rely on it); the results may be unreduced ints of any sign. Circuits
        whose wires have structure override this to skip materialising them.
        """
        return [
            [sum(map(mul, wire, w)) for wire in gadget_wires]
            for gadget_wires, w in zip(self.wires(meas, joint_rand, num_shares), weights)
        ]

    def eval(self, meas: list[int], joint_rand: list[int], num_shares: int) -> int:
        """The circuit output computed by actually evaluating the gadgets (reduced)."""
        p = self.field.MODULUS
        outputs = []
        for gadget, wires in zip(self.GADGETS, self.wires(meas, joint_rand, num_shares)):
            calls = zip(*wires)
            outputs.append([gadget.eval(p, [x % p for x in call]) % p for call in calls])
        return self.combine(meas, joint_rand, num_shares, outputs) % p


# ---------------------------------------------------------------------------
# The generic FLP
# ---------------------------------------------------------------------------


class _GadgetPlan:
    """Everything the FLP can precompute for one gadget of one circuit."""

    __slots__ = (
        "gadget", "arity", "degree", "calls", "P", "N", "poly_len",
        "alpha_pows", "ntt_p", "ntt_n", "twists", "p_inv", "modulus", "log_p",
        "outputs_matrix", "level_roots", "level_sizes", "output_sum_coeffs",
    )

    def __init__(self, field: Field, gadget: Gadget, calls: int) -> None:
        p = field.MODULUS
        self.gadget = gadget
        self.arity = gadget.ARITY
        self.degree = gadget.DEGREE
        self.calls = calls
        self.P = next_power_of_2(1 + calls)
        self.poly_len = self.degree * (self.P - 1) + 1
        self.N = next_power_of_2(self.poly_len)
        if self.N > field.GEN_ORDER:
            raise VdafError(f"{field.NAME} has no {self.N}-th roots of unity: circuit too large")
        alpha = field.root_of_unity(self.P)
        self.alpha_pows = list(accumulate([alpha] * (self.P - 1), lambda a, b: a * b % p, initial=1))
        self.ntt_p: Ntt = ntt_for(field, self.P)
        self.ntt_n: Ntt = ntt_for(field, self.N)
        gamma = field.root_of_unity(self.N)
        # Coset s of the N-th roots is gamma^s * (P-th roots): evaluate there by
        # scaling coefficient i by gamma^(s*i) and doing a size-P forward NTT.
        self.twists = []
        for s in range(1, self.N // self.P):
            g = pow(gamma, s, p)
            self.twists.append(list(accumulate([g] * (self.P - 1), lambda a, b: a * b % p, initial=1)))
        self.p_inv = pow(self.P, -1, p)
        self.modulus = p
        # sum_{k=1..M} poly(alpha^k) = sum_i poly[i] * (sum_k alpha^(i*k)): constant weights.
        self.output_sum_coeffs = [
            sum(self.alpha_pows[i * k % self.P] for k in range(1, calls + 1)) % p for i in range(self.poly_len)
        ]
        # Gadget outputs at alpha^1..alpha^M: a precomputed (M x poly_len)
        # Vandermonde product when small, else fold modulo x^P - 1 + one NTT.
        self.outputs_matrix: list[list[int]] | None = None
        if calls * self.poly_len <= 64:
            self.outputs_matrix = [
                [pow(self.alpha_pows[k], i, p) for i in range(self.poly_len)] for k in range(1, calls + 1)
            ]
        # Per level s of the Lagrange product formula (lagrange_weights), top level first:
        # alpha^(-k * 2^s) for k < P / 2^(s+1).
        self.log_p = self.P.bit_length() - 1
        alpha_inv = pow(alpha, -1, p)
        self.level_roots = []
        for s in reversed(range(self.log_p)):
            root = pow(alpha_inv, 1 << s, p)
            count = self.P >> (s + 1)
            self.level_roots.append(list(accumulate([root] * (count - 1), lambda a, b: a * b % p, initial=1)))
        # How many partial products each level keeps: P / 2^s, but only L_0..L_M at the last.
        self.level_sizes = [self.P >> s for s in reversed(range(self.log_p))]
        self.level_sizes[-1] = calls + 1

    def outputs_at_roots(self, poly: list[int]) -> list[int]:
        """``poly(alpha^k)`` for k = 1..M."""
        p = self.modulus
        if self.outputs_matrix is not None:
            return [sum(map(mul, row, poly)) % p for row in self.outputs_matrix]
        P = self.P
        # poly mod (x^P - 1): at a P-th root of unity x^i == x^(i mod P).
        folded = poly[:P]
        for start in range(P, len(poly), P):
            chunk = poly[start : start + P]
            folded[: len(chunk)] = map(add, folded, chunk)
        return self.ntt_p.forward(folded)[1 : self.calls + 1]

    def lagrange_weights(self, t: int) -> list[int]:
        """``L_k(t)`` for k = 0..M for the P-th roots of unity, reduced; VdafError if ``t`` is
        itself a P-th root of unity.

        ``L_k(t) = (1/P) sum_{i<P} (t alpha^-k)^i``, and the geometric sum factors as
        ``prod_{s < log2 P} (1 + x^(2^s))``, so ``L_k(t) = (1/P) prod_s (1 + t^(2^s) alpha^(-k 2^s))``
        (a polynomial identity: exact in the field). The level-s factor depends only on
        ``k mod P/2^s`` and flips the sign of its second term half way round
        (``alpha^(-2^s)`` has order ``P/2^s``); so from the top level down, each level doubles
        the list of partial products. About ``2P`` modular products in all and no inversion:
        cheaper in CPython than an inverse NTT of the powers of t (P = 16: ~40 reductions
        instead of ~80) or a batched inversion (one modular inverse costs ~40 products).
        """
        p = self.modulus
        squares = [t]  # t^(2^s), s = 0..log2 P
        t_pow = t
        for _ in range(self.log_p):
            t_pow = t_pow * t_pow % p
            squares.append(t_pow)
        if t_pow == 1:
            raise VdafError("query randomness is a root of unity: the verifier would leak a gadget output")
        if self.P == 2:  # the one level below, written out: alpha = -1
            return [(1 + t) * self.p_inv % p, (1 - t) * self.p_inv % p]
        weights = [self.p_inv]
        for t_pow, roots, size in zip(reversed(squares[:-1]), self.level_roots, self.level_sizes):
            terms = [t_pow * root % p for root in roots]
            factors = [1 + x for x in terms]
            factors += [1 - x for x in terms]
            weights = [w * f % p for w, f in zip(weights + weights, factors[:size])]
        return weights

class FlpGeneric:
    """FLP from a :class:`Valid` circuit: ``prove``, ``query``, ``decide``."""

    def __init__(self, valid: Valid) -> None:
        if len(valid.GADGETS) != len(valid.GADGET_CALLS) or not valid.GADGETS:
            raise ValueError("circuit needs one call count per gadget, and at least one gadget")
        self.valid = valid
        self.field = valid.field
        self.MEAS_LEN = valid.MEAS_LEN
        self.OUTPUT_LEN = valid.OUTPUT_LEN
        self.JOINT_RAND_LEN = valid.JOINT_RAND_LEN
        self._plans = [_GadgetPlan(self.field, g, m) for g, m in zip(valid.GADGETS, valid.GADGET_CALLS)]
        self.PROVE_RAND_LEN = sum(g.arity for g in self._plans)
        self.QUERY_RAND_LEN = len(self._plans)
        self.PROOF_LEN = sum(g.arity + g.poly_len for g in self._plans)
        self.VERIFIER_LEN = 1 + sum(g.arity + 1 for g in self._plans)

    def __repr__(self) -> str:
        return f"FlpGeneric({self.valid!r})"

    # Delegations to the circuit -------------------------------------------

    def encode(self, measurement: Any) -> list[int]:
        return self.valid.encode(measurement)

    def truncate(self, meas: list[int]) -> list[int]:
        return self.valid.truncate(meas)

    def decode(self, output: list[int], num_measurements: int) -> Any:
        return self.valid.decode(output, num_measurements)

    # Prove ------------------------------------------------------------------

    def prove(self, meas: list[int], prove_rand: list[int], joint_rand: list[int]) -> list[int]:
        """The proof (``PROOF_LEN`` elements) that ``meas`` is valid."""
        self._check_len("measurement", meas, self.MEAS_LEN)
        self._check_len("prove randomness", prove_rand, self.PROVE_RAND_LEN)
        self._check_len("joint randomness", joint_rand, self.JOINT_RAND_LEN)
        p = self.field.MODULUS
        reduce = p.__rmod__
        proof: list[int] = []
        offset = 0
        for plan, wires in zip(self._plans, self.valid.wires(meas, joint_rand, 1)):
            seeds = prove_rand[offset : offset + plan.arity]
            offset += plan.arity
            P, N = plan.P, plan.N
            ratio = N // P
            pad = [0] * (P - 1 - plan.calls)
            columns = []
            for seed, wire in zip(seeds, wires):
                values = [seed]
                values += map(reduce, wire)
                values += pad
                if ratio == 1:
                    columns.append(values)
                    continue
                coeffs = plan.ntt_p.inverse(values)
                column = [0] * N
                column[0::ratio] = values
                for s, twist in enumerate(plan.twists, start=1):
                    column[s::ratio] = plan.ntt_p.forward(list(map(mul, coeffs, twist)))
                columns.append(column)
            evals = plan.gadget.eval_columns(p, columns)
            poly = plan.ntt_n.inverse(evals)
            if any(poly[plan.poly_len :]):
                raise AssertionError("gadget polynomial degree exceeds DEGREE * (P - 1)")
            proof += seeds
            proof += poly[: plan.poly_len]
        return proof

    # Query ------------------------------------------------------------------

    def query(
        self,
        meas: list[int],
        proof: list[int],
        query_rand: list[int],
        joint_rand: list[int],
        num_shares: int,
    ) -> list[int]:
        """This share's verifier (``VERIFIER_LEN`` elements)."""
        if (
            len(meas) != self.MEAS_LEN
            or len(proof) != self.PROOF_LEN
            or len(query_rand) != self.QUERY_RAND_LEN
            or len(joint_rand) != self.JOINT_RAND_LEN
        ):
            self._check_len("measurement share", meas, self.MEAS_LEN)
            self._check_len("proof share", proof, self.PROOF_LEN)
            self._check_len("query randomness", query_rand, self.QUERY_RAND_LEN)
            self._check_len("joint randomness", joint_rand, self.JOINT_RAND_LEN)
        p = self.field.MODULUS
        valid = self.valid
        plans = self._plans

        # Gadget outputs at alpha^1..alpha^M (or only their sums) straight from the gadget
        # polynomials.
        outputs = []
        offset = 0
        for plan in plans:
            start = offset + plan.arity
            offset = start + plan.poly_len
            if valid.COMBINE_USES_SUMS:
                outputs.append(sum(map(mul, plan.output_sum_coeffs, proof[start:offset])))
            else:
                outputs.append(plan.outputs_at_roots(proof[start:offset]))
        if valid.COMBINE_USES_SUMS:
            verifier = [valid.combine_sums(meas, joint_rand, num_shares, outputs) % p]
        else:
            verifier = [valid.combine(meas, joint_rand, num_shares, outputs) % p]
        weights = [plan.lagrange_weights(t) for plan, t in zip(plans, query_rand)]
        # w_j(t) = L_0(t) * seed_j + sum_k L_k(t) * (wire j at call k): the circuit gives the
        # sums (it may do so without materialising the wires).
        wire_sums = valid.wires_at(meas, joint_rand, num_shares, [w[1:] for w in weights])
        offset = 0
        for plan, w, sums, t in zip(plans, weights, wire_sums, query_rand):
            start = offset + plan.arity
            seeds = proof[offset:start]
            offset = start + plan.poly_len
            w0 = w[0]
            verifier += [(seed * w0 + total) % p for seed, total in zip(seeds, sums)]
            acc = 0
            for c in reversed(proof[start:offset]):
                acc = (acc * t + c) % p
            verifier.append(acc)
        return verifier

    # Decide -----------------------------------------------------------------

    def decide(self, verifier: list[int]) -> bool:
        """True iff the (summed) verifier accepts."""
        self._check_len("verifier", verifier, self.VERIFIER_LEN)
        p = self.field.MODULUS
        if verifier[0] % p:
            return False
        offset = 1
        for plan in self._plans:
            x = verifier[offset : offset + plan.arity]
            y = verifier[offset + plan.arity]
            offset += plan.arity + 1
            if (plan.gadget.eval(p, x) - y) % p:
                return False
        return True

    @staticmethod
    def _check_len(what: str, vec: Sequence[int], length: int) -> None:
        if len(vec) != length:
            raise VdafError(f"{what}: expected {length} elements, got {len(vec)}")
