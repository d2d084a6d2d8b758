"""The fast paths of dap.vdaf against their straightforward definitions, on random inputs.

Each fast path must give exactly what the plain computation gives (the official vectors in
test_prio3_vectors.py pin the wire bytes; these tests also reach inputs the vectors do not:
other sizes, out-of-range elements, the fallbacks).
"""

from __future__ import annotations

import random

import pytest

from dap.errors import VdafError
from dap.vdaf.field import Field, Field64, Field128, Field255
from dap.vdaf.flp import Mul, Range2, _GadgetPlan
from dap.vdaf.prio3 import Prio3, Prio3Count, Prio3Histogram, Prio3Sum, Prio3SumVec
from dap.vdaf.xof import XofTurboShake128

RNG = random.Random(11)


def _error(fn) -> str | None:
    try:
        fn()
    except VdafError as exc:
        return str(exc)
    return None


# --- Lagrange weights: product formula == the Lagrange basis ----------------------------


@pytest.mark.parametrize("field", [Field64, Field128])
@pytest.mark.parametrize("calls", [1, 2, 3, 7, 10, 31, 80])
def test_lagrange_weights_are_the_lagrange_basis_at_t(field: Field, calls: int) -> None:
    """L_k(t) = prod_{j != k} (t - alpha^j) / (alpha^k - alpha^j) over the P-th roots."""
    p = field.MODULUS
    plan = _GadgetPlan(field, Mul(), calls)
    roots = [pow(plan.alpha_pows[1], j, p) for j in range(plan.P)]
    for _ in range(3):
        t = RNG.randrange(p)
        expected = []
        for k in range(calls + 1):
            num = den = 1
            for j, root in enumerate(roots):
                if j != k:
                    num = num * (t - root) % p
                    den = den * (roots[k] - root) % p
            expected.append(num * pow(den, -1, p) % p)
        assert plan.lagrange_weights(t) == expected


def test_lagrange_weights_refuse_a_root_of_unity() -> None:
    plan = _GadgetPlan(Field128, Range2(), 5)  # P = 8
    for k in range(plan.P):
        with pytest.raises(VdafError, match="root of unity"):
            plan.lagrange_weights(plan.alpha_pows[k])


# --- Field decoding: the struct split and the check-only path ---------------------------


def _edge_values(field: Field) -> list[int]:
    p, width = field.MODULUS, 8 * field.ENCODED_SIZE
    return [0, 1, p - 2, p - 1, p, p + 1, (1 << width) - 1, RNG.randrange(p), RNG.randrange(1 << width)]


@pytest.mark.parametrize("field", [Field64, Field128, Field255])
def test_decode_raw_is_little_endian_per_element(field: Field) -> None:
    size = field.ENCODED_SIZE
    for count in (0, 1, 2, 17, 151):
        data = bytes(RNG.randrange(256) for _ in range(count * size))
        expected = [int.from_bytes(data[i : i + size], "little") for i in range(0, len(data), size)]
        assert field.decode_raw(data) == expected


@pytest.mark.parametrize("field", [Field64, Field128, Field255])
def test_check_vec_agrees_with_decode_vec(field: Field) -> None:
    """Same acceptance and the same error (which element, or the length) on mixed inputs."""
    size = field.ENCODED_SIZE
    edges = _edge_values(field)
    for _ in range(400):
        values = [RNG.choice(edges) if RNG.random() < 0.2 else RNG.randrange(field.MODULUS)
                  for _ in range(RNG.randrange(0, 40))]
        data = b"".join(v.to_bytes(size, "little") for v in values)
        if RNG.random() < 0.1:
            data = data[: -RNG.randrange(1, size)] if data else b"\x00"
        assert _error(lambda: field.check_vec(data, what="v")) == _error(lambda: field.decode_vec(data, what="v"))


# --- XOF: the stream bytes as the encoding ------------------------------------------------


@pytest.mark.parametrize("field", [Field64, Field128, Field255])
@pytest.mark.parametrize("one_shot", [True, False])
def test_expand_into_vec_encoded(field: Field, one_shot: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """(expand_into_vec, encode_vec of it), on the one-shot path and on the streaming one."""
    import dap.vdaf.xof as xof_module

    if not one_shot:
        monkeypatch.setattr(xof_module, "_oneshot", None)
    for length in (1, 5, 100):
        seed = RNG.randbytes(16)
        args = (field, seed, b"\x08\x00\x00\x00\x00\x03\x00\x01", b"\x01", length)
        vec, encoded = XofTurboShake128.expand_into_vec_encoded(*args)
        assert vec == XofTurboShake128.expand_into_vec(*args)
        assert encoded == field.encode_vec(vec)


# --- Prio3: the Leader's check-only input share path ------------------------------------


INSTANCES = [Prio3Count(), Prio3Sum(8), Prio3SumVec(3, 2, 2), Prio3Histogram(100, 10)]


@pytest.mark.parametrize("vdaf", INSTANCES, ids=repr)
def test_check_input_share_agrees_with_decode_input_share(vdaf: Prio3) -> None:
    field = vdaf.field
    size = field.ENCODED_SIZE
    measurement = {"Prio3Count": 1, "Prio3Sum": 200, "Prio3SumVec": [1, 3, 0], "Prio3Histogram": 42}[vdaf.name]
    _, (leader, helper) = vdaf.shard_encoded(measurement, RNG.randbytes(16), RNG.randbytes(vdaf.RAND_SIZE))
    vectors_len = len(leader) - (16 if vdaf.uses_joint_rand else 0)
    candidates = [(0, leader), (1, helper), (0, leader[:-1]), (0, leader + b"\x00"), (1, helper[:-1]), (2, helper)]
    for bad in (field.MODULUS, (1 << (8 * size)) - 1):
        i = RNG.randrange(vectors_len // size)
        candidates.append((0, leader[: i * size] + bad.to_bytes(size, "little") + leader[(i + 1) * size :]))
    for agg_id, encoded in candidates:
        assert (_error(lambda: vdaf.check_input_share(agg_id, encoded))
                == _error(lambda: vdaf.decode_input_share(agg_id, encoded)))
