"""The generic FLP and the Prio3 circuits, checked directly (no sharing)."""

from __future__ import annotations

import random

import pytest

from dap.errors import VdafError
from dap.vdaf.circuits import Count, Histogram, MultiHotHistogram, Sum, SumVec
from dap.vdaf.field import Field64, Field128
from dap.vdaf.flp import FlpGeneric, Mul, ParallelSum, PolyEval, Range2, Valid
from dap.vdaf.prio3 import Prio3Count, Prio3Histogram, Prio3Sum, Prio3SumVec

RNG = random.Random(8)


def rand_vec(valid: Valid, n: int) -> list[int]:
    return [RNG.randrange(valid.field.MODULUS) for _ in range(n)]


# (circuit, valid measurements, invalid encoded measurements)
CASES = [
    (Count(), [0, 1], [[2], [Field64.MODULUS - 1]]),
    (Sum(8), [0, 1, 200, 255], [[2, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 5]]),
    (Sum(1), [0, 1], [[3]]),
    (SumVec(3, 2, 2), [[0, 1, 3], [3, 3, 3]], [[1, 0, 2, 0, 0, 0], [0] * 5 + [7]]),
    (SumVec(10, 8, 12), [[RNG.randrange(256) for _ in range(10)]], [[0] * 79 + [2]]),
    (Histogram(4, 2), [0, 3], [[1, 1, 0, 0], [0, 0, 0, 0], [2, 0, 0, Field128.MODULUS - 1]]),
    (Histogram(12, 4), [0, 5, 11], [[0] * 11 + [2]]),
    (Histogram(5, 7), [4], [[0, 0, 0, 0, 0]]),
    (MultiHotHistogram(4, 2, 2), [[0, 0, 0, 0], [1, 0, 1, 0]], [[1, 1, 1, 0, 1, 1], [1, 1, 0, 0, 0, 0]]),
]


@pytest.mark.parametrize(("valid", "good", "bad"), CASES, ids=[repr(c[0]) for c in CASES])
def test_circuit_output_is_zero_exactly_on_valid_measurements(valid: Valid, good: list, bad: list) -> None:
    for measurement in good:
        meas = valid.encode(measurement)
        assert len(meas) == valid.MEAS_LEN
        joint_rand = rand_vec(valid, valid.JOINT_RAND_LEN)
        assert valid.eval(meas, joint_rand, 1) == 0, measurement
    for meas in bad:
        assert len(meas) == valid.MEAS_LEN
        joint_rand = rand_vec(valid, valid.JOINT_RAND_LEN)
        assert valid.eval(meas, joint_rand, 1) != 0, meas


@pytest.mark.parametrize(("valid", "good", "bad"), CASES, ids=[repr(c[0]) for c in CASES])
def test_prove_query_decide(valid: Valid, good: list, bad: list) -> None:
    flp = FlpGeneric(valid)
    p = valid.field.MODULUS
    for measurement in good:
        meas = valid.encode(measurement)
        joint_rand = rand_vec(valid, flp.JOINT_RAND_LEN)
        proof = flp.prove(meas, rand_vec(valid, flp.PROVE_RAND_LEN), joint_rand)
        assert len(proof) == flp.PROOF_LEN
        query_rand = rand_vec(valid, flp.QUERY_RAND_LEN)
        verifier = flp.query(meas, proof, query_rand, joint_rand, 1)
        assert len(verifier) == flp.VERIFIER_LEN
        assert flp.decide(verifier)

        # Split into two shares: the verifier shares add up to the same verifier.
        meas_0 = rand_vec(valid, len(meas))
        meas_1 = [(m - s) % p for m, s in zip(meas, meas_0)]
        proof_0 = rand_vec(valid, len(proof))
        proof_1 = [(x - s) % p for x, s in zip(proof, proof_0)]
        v0 = flp.query(meas_0, proof_0, query_rand, joint_rand, 2)
        v1 = flp.query(meas_1, proof_1, query_rand, joint_rand, 2)
        assert [(a + b) % p for a, b in zip(v0, v1)] == verifier

        # A tampered proof fails.
        tampered = list(proof)
        tampered[-1] = (tampered[-1] + 1) % p
        assert not flp.decide(flp.query(meas, tampered, query_rand, joint_rand, 1))
    for meas in bad:
        joint_rand = rand_vec(valid, flp.JOINT_RAND_LEN)
        proof = flp.prove(meas, rand_vec(valid, flp.PROVE_RAND_LEN), joint_rand)
        verifier = flp.query(meas, proof, rand_vec(valid, flp.QUERY_RAND_LEN), joint_rand, 1)
        assert not flp.decide(verifier), meas


def test_query_rejects_a_root_of_unity() -> None:
    flp = FlpGeneric(Count())
    meas = [1]
    proof = flp.prove(meas, [3, 4], [])
    with pytest.raises(VdafError, match="root of unity"):
        flp.query(meas, proof, [1], [], 1)
    with pytest.raises(VdafError, match="root of unity"):
        flp.query(meas, proof, [Field64.MODULUS - 1], [], 1)


def test_flp_length_checks() -> None:
    flp = FlpGeneric(Sum(4))
    with pytest.raises(VdafError, match="proof share"):
        flp.query([0] * 4, [0] * (flp.PROOF_LEN - 1), [5], [7], 2)
    with pytest.raises(VdafError, match="measurement"):
        flp.prove([0] * 3, [0] * flp.PROVE_RAND_LEN, [0])
    with pytest.raises(VdafError, match="verifier"):
        flp.decide([0] * (flp.VERIFIER_LEN + 1))


def test_gadgets() -> None:
    p = Field128.MODULUS
    assert Mul().eval(p, [3, 5]) == 15
    assert Range2().eval(p, [3]) == 6
    poly = PolyEval([0, -1, 1])
    assert poly.DEGREE == 2
    assert poly.eval(p, [3]) == 6
    assert poly.eval_columns(p, [[0, 1, 3]]) == [0, 0, 6]
    ps = ParallelSum(Mul(), 3)
    assert (ps.ARITY, ps.DEGREE) == (6, 2)
    assert ps.eval(p, [1, 2, 3, 4, 5, 6]) == 44
    assert ps.eval_columns(p, [[1], [2], [3], [4], [5], [6]]) == [44]
    assert ParallelSum(Range2(), 2).eval(p, [2, 3]) == 8


def test_sum_with_poly_eval_gadget_gives_the_same_proof_as_range2() -> None:
    """divviup-ts builds Sum from PolyEval([0, -1, 1]); the proofs must be identical."""

    class SumPoly(Sum):
        def __init__(self, bits: int) -> None:
            super().__init__(bits)
            self.GADGETS = (PolyEval([0, -1, 1]),)

    meas = Sum(8).encode(77)
    prove_rand, joint_rand = [11], [12345]
    assert FlpGeneric(Sum(8)).prove(meas, prove_rand, joint_rand) == FlpGeneric(SumPoly(8)).prove(
        meas, prove_rand, joint_rand
    )


# Digest section 5 "Concrete sizes" (SHARES = 2, PROOFS = 1).
SIZES = [
    # instance, MEAS, OUT, JR, PRL, QRL, PROOF, VERIFIER, RAND, public, leader, helper, prep share, prep msg, agg
    (Prio3Count(), 1, 1, 0, 2, 1, 5, 4, 48, 0, 48, 32, 32, 0, 8),
    (Prio3Sum(1), 1, 1, 1, 1, 1, 4, 3, 80, 32, 96, 48, 64, 16, 16),
    (Prio3Sum(8), 8, 1, 1, 1, 1, 32, 3, 80, 32, 656, 48, 64, 16, 16),
    (Prio3Sum(32), 32, 1, 1, 1, 1, 128, 3, 80, 32, 2576, 48, 64, 16, 16),
    (Prio3Sum(64), 64, 1, 1, 1, 1, 256, 3, 80, 32, 5136, 48, 64, 16, 16),
    (Prio3SumVec(10, 8, 9), 80, 10, 1, 18, 1, 49, 20, 80, 32, 2080, 48, 336, 16, 160),
    (Prio3SumVec(10, 8, 12), 80, 10, 1, 24, 1, 39, 26, 80, 32, 1920, 48, 432, 16, 160),
    (Prio3Histogram(4, 2), 4, 4, 2, 4, 1, 11, 6, 80, 32, 256, 48, 112, 16, 64),
    (Prio3Histogram(5, 2), 5, 5, 2, 4, 1, 11, 6, 80, 32, 272, 48, 112, 16, 80),
    (Prio3Histogram(12, 4), 12, 12, 2, 8, 1, 15, 10, 80, 32, 448, 48, 176, 16, 192),
]


@pytest.mark.parametrize("row", SIZES, ids=[repr(r[0]) for r in SIZES])
def test_concrete_sizes(row: tuple) -> None:
    vdaf, meas, out, jr, prl, qrl, proof, verifier, rand, public, leader, helper, prep_share, prep_msg, agg = row
    flp = vdaf.flp
    assert (flp.MEAS_LEN, flp.OUTPUT_LEN, flp.JOINT_RAND_LEN) == (meas, out, jr)
    assert (flp.PROVE_RAND_LEN, flp.QUERY_RAND_LEN, flp.PROOF_LEN, flp.VERIFIER_LEN) == (prl, qrl, proof, verifier)
    assert vdaf.RAND_SIZE == rand
    assert (vdaf.VERIFY_KEY_SIZE, vdaf.NONCE_SIZE, vdaf.ROUNDS, vdaf.SHARES) == (16, 16, 1, 2)
    measurement = [0] * out if vdaf.name == "Prio3SumVec" else 0
    nonce = bytes(16)
    public_share, input_shares = vdaf.shard_encoded(measurement, nonce, bytes(range(rand)))
    assert len(public_share) == public
    assert [len(s) for s in input_shares] == [leader, helper]
    states, shares = [], []
    for j in range(2):
        state, share = vdaf.prep_init(
            bytes(16), j, None, nonce, vdaf.decode_public_share(public_share), vdaf.decode_input_share(j, input_shares[j])
        )
        states.append(state)
        shares.append(share)
        assert len(vdaf.encode_prep_share(share)) == prep_share
    msg = vdaf.prep_shares_to_prep(None, shares)
    assert len(vdaf.encode_prep_msg(msg)) == prep_msg
    assert len(vdaf.encode_agg_share(vdaf.aggregate(None, [vdaf.prep_next(states[0], msg)]))) == agg


# The query's shortcuts for the chunked range-check circuits, against their definitions.
STRUCTURED = [c for c in CASES if c[0].COMBINE_USES_SUMS]


@pytest.mark.parametrize(("valid", "good", "bad"), STRUCTURED, ids=[repr(c[0]) for c in STRUCTURED])
@pytest.mark.parametrize("num_shares", [1, 2, 3])
def test_structured_wires_at_equals_the_generic_dot_products(valid: Valid, good: list, bad: list,
                                                              num_shares: int) -> None:
    """Circuit.wires_at (no wires materialised) == Valid.wires_at (from Circuit.wires),
    including zero padding when MEAS_LEN is not a multiple of chunk_length."""
    p = valid.field.MODULUS
    for _ in range(3):
        meas = rand_vec(valid, valid.MEAS_LEN)
        joint_rand = rand_vec(valid, valid.JOINT_RAND_LEN)
        weights = [rand_vec(valid, calls) for calls in valid.GADGET_CALLS]
        fast = valid.wires_at(meas, joint_rand, num_shares, weights)
        generic = Valid.wires_at(valid, meas, joint_rand, num_shares, weights)
        assert [[x % p for x in g] for g in fast] == [[x % p for x in g] for g in generic]


@pytest.mark.parametrize(("valid", "good", "bad"), STRUCTURED, ids=[repr(c[0]) for c in STRUCTURED])
def test_combine_from_output_sums_matches_combine(valid: Valid, good: list, bad: list) -> None:
    """The query combines the gadget-output sums read off the gadget polynomial; the same
    value as combining the individual outputs (the proof's polynomial, evaluated at the roots)."""
    flp = FlpGeneric(valid)
    p = valid.field.MODULUS
    meas = rand_vec(valid, valid.MEAS_LEN)
    joint_rand = rand_vec(valid, valid.JOINT_RAND_LEN)
    proof = rand_vec(valid, flp.PROOF_LEN)  # any polynomial, not only honest ones
    offset, outputs, sums = 0, [], []
    for plan in flp._plans:
        start = offset + plan.arity
        offset = start + plan.poly_len
        poly = proof[start:offset]
        roots = [pow(plan.alpha_pows[1], k, p) for k in range(1, plan.calls + 1)]
        at_roots = [sum(c * pow(x, i, p) for i, c in enumerate(poly)) % p for x in roots]
        outputs.append(at_roots)
        sums.append(sum(map(lambda a, b: a * b, plan.output_sum_coeffs, poly)))
        assert sum(at_roots) % p == sums[-1] % p
    assert (valid.combine_sums(meas, joint_rand, 2, sums) % p
            == valid.combine(meas, joint_rand, 2, outputs) % p)
