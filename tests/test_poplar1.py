"""Poplar1: the official VDAF-08 vectors byte for byte, the DAP ping-pong flow, strict encodings.

Vectors are loaded like the Prio3 ones (``../shared/spec/test-vectors`` beside
the checkout, or ``VDAF_TEST_VECTORS_DIR``); a missing file FAILS. The files
record the aggregation parameter unencoded; its encodings below are those of
the test-vector README (and libprio's KATs).
"""

from __future__ import annotations

import base64
import os
import random
from collections import Counter
from typing import Any

import attrs
import pytest
from test_prio3_vectors import load

from dap.errors import VdafError
from dap.messages import PingPongMessage
from dap.vdaf import VdafParams, vdaf_from_interop
from dap.vdaf.field import Field64, Field255
from dap.vdaf.pingpong import (
    Continued,
    Finished,
    Rejected,
    ping_pong_helper_continued,
    ping_pong_helper_init,
    ping_pong_leader_continued,
    ping_pong_leader_init,
)
from dap.vdaf.poplar1 import Poplar1, Poplar1AggParam, Poplar1FieldVec, Poplar1PrepState

POPLAR1_FILES = ["Poplar1_0.json", "Poplar1_1.json", "Poplar1_2.json", "Poplar1_3.json"]

#: Encoded aggregation parameters of the four vector files (test-vectors/README.md).
VECTOR_AGG_PARAMS = {
    "Poplar1_0.json": "00000000000202",
    "Poplar1_1.json": "000100000004e4",
    "Poplar1_2.json": "0002000000040d10",
    "Poplar1_3.json": "0003000000070fd97531",
}

VERIFY_KEY = bytes(range(16))


def hx(data: bytes) -> str:
    return data.hex()


def elements_hex(vec: Poplar1FieldVec) -> list[str]:
    size = vec.field.ENCODED_SIZE
    return [x.to_bytes(size, "little").hex() for x in vec.values]


# ------------------------------------------------------------------ vectors


@pytest.mark.parametrize("name", POPLAR1_FILES)
def test_poplar1_vector(name: str) -> None:
    vec = load(name)
    vdaf = Poplar1.with_bits(vec["bits"])
    assert vdaf.SHARES == vec["shares"] == 2
    verify_key = bytes.fromhex(vec["verify_key"])
    level, prefixes = vec["agg_param"]
    agg_param = vdaf.agg_param((level, prefixes))
    encoded_param = vdaf.encode_agg_param(agg_param)
    assert hx(encoded_param) == VECTOR_AGG_PARAMS[name]
    assert vdaf.decode_agg_param(encoded_param) == agg_param == Poplar1AggParam(level, tuple(prefixes))
    field = Field64 if level < vec["bits"] - 1 else Field255
    out_shares: list[list[Poplar1FieldVec]] = []

    for i, case in enumerate(vec["prep"]):
        nonce = bytes.fromhex(case["nonce"])
        rand = bytes.fromhex(case["rand"])
        assert len(rand) == vdaf.RAND_SIZE == 80

        # Client: shard from the recorded randomness.
        public_share, input_shares = vdaf.shard(case["measurement"], nonce, rand)
        assert hx(vdaf.encode_public_share(public_share)) == case["public_share"], f"prep[{i}].public_share"
        assert [hx(vdaf.encode_input_share(s)) for s in input_shares] == case["input_shares"], (
            f"prep[{i}].input_shares"
        )

        # Aggregators: from the recorded encodings, not from our own objects.
        decoded_public = vdaf.decode_public_share(bytes.fromhex(case["public_share"]))
        assert decoded_public == public_share
        states, round1 = [], []
        for j in (0, 1):
            decoded_input = vdaf.decode_input_share(j, bytes.fromhex(case["input_shares"][j]))
            assert decoded_input == input_shares[j]
            state, share = vdaf.prep_init(
                verify_key, j, vdaf.decode_agg_param(encoded_param), nonce, decoded_public, decoded_input
            )
            states.append(state)
            round1.append(share)
        assert [hx(vdaf.encode_prep_share(s)) for s in round1] == case["prep_shares"][0], f"prep[{i}] round 1"
        assert all(s.field is field for s in round1)
        decoded_round1 = [
            vdaf.decode_prep_share(states[j], bytes.fromhex(s)) for j, s in enumerate(case["prep_shares"][0])
        ]
        assert decoded_round1 == round1
        sketch = vdaf.prep_shares_to_prep(agg_param, decoded_round1)
        assert hx(vdaf.encode_prep_msg(sketch)) == case["prep_messages"][0]
        assert vdaf.decode_prep_msg(states[0], bytes.fromhex(case["prep_messages"][0])) == sketch

        next_states, round2 = zip(*(vdaf.prep_next(state, sketch) for state in states))
        assert [hx(vdaf.encode_prep_share(s)) for s in round2] == case["prep_shares"][1], f"prep[{i}] round 2"
        decoded_round2 = [
            vdaf.decode_prep_share(next_states[j], bytes.fromhex(s)) for j, s in enumerate(case["prep_shares"][1])
        ]
        assert decoded_round2 == list(round2)
        verdict = vdaf.prep_shares_to_prep(agg_param, decoded_round2)
        assert verdict is None and vdaf.encode_prep_msg(verdict) == b"" == bytes.fromhex(case["prep_messages"][1])
        assert vdaf.decode_prep_msg(next_states[0], b"") is None

        outs = [vdaf.prep_next(state, verdict) for state in next_states]
        assert [elements_hex(out) for out in outs] == case["out_shares"], f"prep[{i}].out_shares"
        for j, out in enumerate(outs):
            encoded = vdaf.encode_out_share(out)
            assert hx(encoded) == "".join(case["out_shares"][j])
            assert vdaf.decode_out_share(agg_param, encoded) == out
        out_shares.append(outs)

    agg_shares = [vdaf.aggregate(agg_param, [outs[j] for outs in out_shares]) for j in (0, 1)]
    assert [hx(vdaf.encode_agg_share(s)) for s in agg_shares] == vec["agg_shares"]
    decoded = [vdaf.decode_agg_share(agg_param, bytes.fromhex(s)) for s in vec["agg_shares"]]
    assert decoded == agg_shares
    assert vdaf.unshard(agg_param, decoded, len(vec["prep"])) == vec["agg_result"]


@pytest.mark.parametrize("name", POPLAR1_FILES)
def test_poplar1_vector_through_ping_pong(name: str) -> None:
    """Init, the Helper's continue, the Leader's finish: the vector's bytes in DAP-09 framing."""
    vec = load(name)
    vdaf = Poplar1.with_bits(vec["bits"])
    verify_key = bytes.fromhex(vec["verify_key"])
    agg_param = bytes.fromhex(VECTOR_AGG_PARAMS[name])
    for case in vec["prep"]:
        nonce = bytes.fromhex(case["nonce"])
        public_share = bytes.fromhex(case["public_share"])
        leader_share, helper_share = (bytes.fromhex(s) for s in case["input_shares"])
        leader, init = ping_pong_leader_init(vdaf, verify_key, agg_param, nonce, public_share, leader_share)
        assert isinstance(leader, Continued) and leader.prep_round == 0
        share0 = bytes.fromhex(case["prep_shares"][0][0])
        assert init == PingPongMessage.initialize(share0).encode()
        assert init == b"\x00" + len(share0).to_bytes(4, "big") + share0

        helper, reply = ping_pong_helper_init(vdaf, verify_key, agg_param, nonce, public_share, helper_share, init)
        assert isinstance(helper, Continued) and helper.prep_round == 1
        sketch = bytes.fromhex(case["prep_messages"][0])
        helper_round2 = bytes.fromhex(case["prep_shares"][1][1])
        assert reply == PingPongMessage.continue_(sketch, helper_round2).encode()

        leader, finish = ping_pong_leader_continued(vdaf, agg_param, leader, reply)
        assert isinstance(leader, Finished)
        assert finish == bytes.fromhex("0200000000")
        helper, last = ping_pong_helper_continued(vdaf, agg_param, helper, finish)
        assert isinstance(helper, Finished) and last is None
        assert [elements_hex(leader.out_share), elements_hex(helper.out_share)] == case["out_shares"]
        leaf = vec["agg_param"][0] == vec["bits"] - 1
        assert (len(init), len(reply)) == ((101, 137) if leaf else (29, 41))


# ------------------------------------------------------ measurements, sizes


def test_measurement_forms() -> None:
    vdaf = Poplar1.with_bits(4)
    nonce, rand = bytes(16), bytes(range(80))
    assert vdaf.measurement_to_int([True, True, False, True]) == 13
    assert vdaf.measurement_to_bools(13) == (True, True, False, True)
    assert vdaf.shard_encoded([True, True, False, True], nonce, rand) == vdaf.shard_encoded(13, nonce, rand)
    assert vdaf.shard_encoded((True, True, False, True), nonce, rand) == vdaf.shard_encoded(13, nonce, rand)
    for bad in (16, -1, True, [True] * 3, [True] * 5, [1, 1, 0, 1], "1101", None, 13.0):
        with pytest.raises(VdafError, match="measurement"):
            vdaf.shard(bad, nonce, rand)
    with pytest.raises(VdafError, match="nonce"):
        vdaf.shard(13, bytes(15), rand)
    with pytest.raises(VdafError, match="rand"):
        vdaf.shard(13, nonce, rand[:79])
    for bits in (0, 2**16 + 1, True, "4"):
        with pytest.raises(VdafError, match="BITS"):
            Poplar1.with_bits(bits)  # type: ignore[arg-type]
    assert Poplar1.with_bits(4) is Poplar1.with_bits(4)
    assert (Poplar1.ID, Poplar1.ROUNDS, Poplar1.NONCE_SIZE, Poplar1.VERIFY_KEY_SIZE) == (0x1000, 2, 16, 16)


@pytest.mark.parametrize(
    ("bits", "public", "input_share"), [(1, 81, 96), (4, 177, 144), (16, 564, 336), (256, 8304, 4176)]
)
def test_share_sizes(bits: int, public: int, input_share: int) -> None:
    vdaf = Poplar1.with_bits(bits)
    public_share, input_shares = vdaf.shard_encoded(random.Random(bits).getrandbits(bits), bytes(16), os.urandom(80))
    assert len(public_share) == public
    assert [len(s) for s in input_shares] == [input_share, input_share]


# ---------------------------------------------------- aggregation parameter


@pytest.mark.parametrize(
    ("level", "prefixes", "encoded"),
    [
        (0, [0, 1], "00000000000202"),
        (1, [0, 1, 2, 3], "000100000004e4"),
        (2, [0, 2, 4, 6], "0002000000040d10"),
        (3, [1, 3, 5, 7, 9, 13, 15], "0003000000070fd97531"),
        (2, list(range(8)), "000200000008fac688"),
        (9, [0b0110110010, 0b1011011010], "0009000000020b69b2"),
        (15, [0xCAFE], "000f00000001cafe"),
    ],
)
def test_agg_param_encoding(level: int, prefixes: list[int], encoded: str) -> None:
    vdaf = Poplar1.with_bits(16)
    assert hx(vdaf.encode_agg_param((level, prefixes))) == encoded
    assert vdaf.decode_agg_param(bytes.fromhex(encoded)) == Poplar1AggParam(level, tuple(prefixes))
    assert len(bytes.fromhex(encoded)) == 6 + ((level + 1) * len(prefixes) + 7) // 8


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("00000000000102", "padding"),  # libprio KAT: padding bit set
        ("00000000000201", "strictly increasing"),  # [1, 0]
        ("00000000000200", "strictly increasing"),  # [0, 0]
        ("00000000000203", "strictly increasing"),  # [1, 1]
        ("0000000000", "at least 6 bytes"),
        ("000000000002", "must be 7 bytes"),
        ("0000000000020200", "must be 7 bytes"),
        ("000000000000", "number of prefixes"),  # no prefixes
        ("0010000000010000ff", "level"),  # level 16 >= BITS
        ("ffff00000001" + "00" * 8192, "level"),
    ],
)
def test_agg_param_decoding_is_strict(encoded: str, message: str) -> None:
    with pytest.raises(VdafError, match=message):
        Poplar1.with_bits(16).decode_agg_param(bytes.fromhex(encoded))


@pytest.mark.parametrize(
    ("agg_param", "message"),
    [
        ((1, [2, 1]), "strictly increasing"),
        ((1, [1, 1]), "strictly increasing"),
        ((1, [0, 4]), "2-bit"),
        ((1, [-1]), "2-bit"),
        ((1, [True]), "2-bit"),
        ((4, [0]), "level"),
        ((-1, [0]), "level"),
        ((1, []), "number of prefixes"),
        ((1, "01"), "sequence"),
        ((1,), r"\(level, prefixes\)"),
        (None, r"\(level, prefixes\)"),
    ],
)
def test_invalid_agg_params_are_refused_everywhere(agg_param: Any, message: str) -> None:
    vdaf = Poplar1.with_bits(4)
    nonce = bytes(16)
    public_share, input_shares = vdaf.shard(13, nonce, bytes(80))
    with pytest.raises(VdafError, match=message):
        vdaf.encode_agg_param(agg_param)
    with pytest.raises(VdafError, match=message):
        vdaf.prep_init(VERIFY_KEY, 0, agg_param, nonce, public_share, input_shares[0])
    with pytest.raises(VdafError, match=message):
        vdaf.agg_init(agg_param)


def test_is_valid_allows_each_level_once() -> None:
    """VDAF-08: no level twice for one report; prefixes and level order do not matter."""
    vdaf = Poplar1.with_bits(8)
    assert vdaf.is_valid((0, [0, 1]), [])
    assert vdaf.is_valid((1, [2, 3]), [(0, [0, 1])])
    # Same level again, even with other prefixes: refused (it would reuse correlated randomness).
    assert not vdaf.is_valid((1, [0, 1]), [(0, [0, 1]), (1, [2, 3])])
    assert not vdaf.is_valid((0, [0, 1]), [(0, [0, 1])])
    # Skipping levels and going back to an unused level are both allowed in VDAF-08
    # (draft-09 and later require increasing levels; VDAF-08 does not).
    assert vdaf.is_valid((5, [7]), [(0, [0, 1])])
    assert vdaf.is_valid((2, [1]), [(0, [0, 1]), (5, [7])])
    assert not vdaf.is_valid((5, [1]), [(0, [0, 1]), (5, [7]), (2, [1])])
    # Decoded parameters work the same way; a malformed one is an error, not "invalid".
    previous = [vdaf.decode_agg_param(vdaf.encode_agg_param((3, [1, 2])))]
    assert not vdaf.is_valid(vdaf.decode_agg_param(vdaf.encode_agg_param((3, [5]))), previous)
    with pytest.raises(VdafError):
        vdaf.is_valid((8, [0]), [])
    with pytest.raises(VdafError):
        vdaf.is_valid((1, [1, 0]), [])


# ---------------------------------------------------------- strict decoding


def shard_vector_report(bits: int = 4) -> tuple[Poplar1, bytes, bytes, list[bytes]]:
    vdaf = Poplar1.with_bits(bits)
    nonce = bytes(range(16))
    public_share, input_shares = vdaf.shard_encoded(13 % (1 << bits), nonce, bytes(range(80)))
    return vdaf, nonce, public_share, input_shares


def test_public_and_input_share_decoding_is_strict() -> None:
    vdaf, _, public_share, (leader_share, helper_share) = shard_vector_report()
    for bad in (public_share[:-1], public_share + b"\x00", b""):
        with pytest.raises(VdafError, match="public share"):
            vdaf.decode_public_share(bad)
    for agg_id in (0, 1):
        for bad in (leader_share[:-1], leader_share + b"\x00", b""):
            with pytest.raises(VdafError, match="input share must be 144 bytes"):
                vdaf.decode_input_share(agg_id, bad)
    with pytest.raises(VdafError, match="aggregator id"):
        vdaf.decode_input_share(2, helper_share)
    # Non-canonical Field64 in the inner correlation (bytes 32..79) ...
    bad = bytearray(helper_share)
    bad[40:48] = Field64.MODULUS.to_bytes(8, "little")
    with pytest.raises(VdafError, match="inner correlation.*modulus"):
        vdaf.decode_input_share(1, bytes(bad))
    # ... and Field255 values >= p (top bit set, or p itself) in the leaf correlation.
    bad = bytearray(leader_share)
    bad[-1] |= 0x80
    with pytest.raises(VdafError, match="leaf correlation.*modulus"):
        vdaf.decode_input_share(0, bytes(bad))
    bad = bytearray(leader_share)
    bad[-32:] = Field255.MODULUS.to_bytes(32, "little")
    with pytest.raises(VdafError, match="leaf correlation.*modulus"):
        vdaf.decode_input_share(0, bytes(bad))


def test_prep_and_aggregate_decoding_is_strict() -> None:
    vdaf, nonce, public_share, input_shares = shard_vector_report()
    for level, field in ((1, Field64), (3, Field255)):
        agg_param = (level, [0, 1])
        decoded_public = vdaf.decode_public_share(public_share)
        decoded_input = vdaf.decode_input_share(0, input_shares[0])
        state, share = vdaf.prep_init(VERIFY_KEY, 0, agg_param, nonce, decoded_public, decoded_input)
        size = field.ENCODED_SIZE
        encoded = vdaf.encode_prep_share(share)
        assert len(encoded) == 3 * size
        non_canonical = field.MODULUS.to_bytes(size, "little") + encoded[size:]
        for bad, message in [
            (encoded[:-1], "3 .* elements"),
            (encoded + bytes(size), "3 .* elements"),
            (non_canonical, "modulus"),
        ]:
            with pytest.raises(VdafError, match=message):
                vdaf.decode_prep_share(state, bad)
            with pytest.raises(VdafError, match=message):
                vdaf.decode_prep_msg(state, bad)
        with pytest.raises(VdafError, match="3 .* elements"):
            vdaf.decode_prep_msg(state, b"")  # round 1 always carries the sketch
        sketch = vdaf.decode_prep_msg(state, encoded)
        round2, share2 = vdaf.prep_next(state, sketch)
        assert len(vdaf.encode_prep_share(share2)) == size
        with pytest.raises(VdafError, match="1 .* elements"):
            vdaf.decode_prep_share(round2, encoded)
        with pytest.raises(VdafError, match="must be empty"):
            vdaf.decode_prep_msg(round2, b"\x00")
        for bad in (bytes(size), bytes(3 * size), field.MODULUS.to_bytes(size, "little") * 2):
            with pytest.raises(VdafError):
                vdaf.decode_agg_share(agg_param, bad)
            with pytest.raises(VdafError):
                vdaf.decode_out_share(agg_param, bad)
        assert vdaf.decode_agg_share(agg_param, bytes(2 * size)) == vdaf.agg_init(agg_param)
    with pytest.raises(VdafError, match="prep state"):
        vdaf.decode_prep_share(None, b"")  # type: ignore[arg-type]


# --------------------------------------------------------------- preparation


def prepare_locally(vdaf: Poplar1, agg_param: Any, nonce: bytes, public_share: Any, input_shares: Any,
                    verify_key: bytes = VERIFY_KEY) -> list[Poplar1FieldVec]:
    states, shares = zip(
        *(vdaf.prep_init(verify_key, j, agg_param, nonce, public_share, input_shares[j]) for j in (0, 1))
    )
    sketch = vdaf.prep_shares_to_prep(agg_param, shares)
    states, shares = zip(*(vdaf.prep_next(state, sketch) for state in states))
    verdict = vdaf.prep_shares_to_prep(agg_param, shares)
    return [vdaf.prep_next(state, verdict) for state in states]


def test_sketch_rejects_tampered_reports() -> None:
    vdaf = Poplar1.with_bits(6)
    nonce = os.urandom(16)
    alpha = 0b101101
    public_share, input_shares = vdaf.shard(alpha, nonce, os.urandom(80))
    for level in (2, 5):
        on_path = alpha >> (5 - level)
        agg_param = (level, sorted([on_path, on_path ^ 1]))
        outs = prepare_locally(vdaf, agg_param, nonce, public_share, input_shares)
        assert vdaf.unshard(agg_param, outs, 1) == [int(p == on_path) for p in agg_param[1]]
        field = vdaf.current_field(level)
        # A client that programs 2 instead of 1 on the path (the data correction is off by one).
        words = list(public_share)
        word = words[level]
        words[level] = attrs.evolve(word, value=((word.value[0] + 1) % field.MODULUS, word.value[1]))
        with pytest.raises(VdafError, match="sketch verification failed"):
            prepare_locally(vdaf, agg_param, nonce, tuple(words), input_shares)
        # A wrong correlation share (A) makes the round-2 sum non-zero as well.
        share = input_shares[1]
        if level < 5:
            inner = list(share.corr_inner)
            inner[2 * level] = (inner[2 * level] + 1) % field.MODULUS
            tampered = attrs.evolve(share, corr_inner=tuple(inner))
        else:
            tampered = attrs.evolve(share, corr_leaf=((share.corr_leaf[0] + 1) % field.MODULUS, share.corr_leaf[1]))
        with pytest.raises(VdafError, match="sketch verification failed"):
            prepare_locally(vdaf, agg_param, nonce, public_share, [input_shares[0], tampered])
        # Verify keys must agree between the Aggregators.
        states, shares = zip(
            *(vdaf.prep_init(bytes([j]) * 16, j, agg_param, nonce, public_share, input_shares[j]) for j in (0, 1))
        )
        sketch = vdaf.prep_shares_to_prep(agg_param, shares)
        with pytest.raises(VdafError, match="sketch verification failed"):
            vdaf.prep_shares_to_prep(agg_param, [vdaf.prep_next(s, sketch)[1] for s in states])


def test_prep_input_errors() -> None:
    vdaf = Poplar1.with_bits(4)
    nonce = bytes(16)
    public_share, input_shares = vdaf.shard(13, nonce, bytes(80))
    agg_param = (1, [0, 3])
    for args, message in [
        ((VERIFY_KEY[:15], 0, agg_param, nonce, public_share, input_shares[0]), "verify key"),
        ((VERIFY_KEY, 2, agg_param, nonce, public_share, input_shares[0]), "aggregator id"),
        ((VERIFY_KEY, 0, agg_param, nonce[:15], public_share, input_shares[0]), "nonce"),
        ((VERIFY_KEY, 0, agg_param, nonce, public_share, b"share"), "malformed input share"),
        ((VERIFY_KEY, 0, agg_param, nonce, public_share[:3], input_shares[0]), "correction words"),
    ]:
        with pytest.raises(VdafError, match=message):
            vdaf.prep_init(*args)  # type: ignore[arg-type]
    state, share = vdaf.prep_init(VERIFY_KEY, 0, agg_param, nonce, public_share, input_shares[0])
    inner_zero = Poplar1FieldVec(Field64, (0,))
    for shares, message in [
        ([share], "2 prep shares"),
        ([share, share, share], "2 prep shares"),
        ([share, inner_zero], "3 \\(round 1\\) or 1"),
        ([share, Poplar1FieldVec(Field255, (0, 0, 0))], "Field64"),
        ([Poplar1FieldVec(Field64, (0, 0)), Poplar1FieldVec(Field64, (0, 0))], "3 \\(round 1\\) or 1"),
    ]:
        with pytest.raises(VdafError, match=message):
            vdaf.prep_shares_to_prep(agg_param, shares)
    with pytest.raises(VdafError, match="3 elements"):
        vdaf.prep_next(state, Poplar1FieldVec(Field64, (0, 0)))
    with pytest.raises(VdafError, match="Field64"):
        vdaf.prep_next(state, Poplar1FieldVec(Field255, (0, 0, 0)))
    round2, _ = vdaf.prep_next(state, None)  # the draft reads a missing round-1 message as zeros
    assert isinstance(round2, Poplar1PrepState) and round2.sketch_round == 2
    with pytest.raises(VdafError, match="must be empty"):
        vdaf.prep_next(round2, Poplar1FieldVec(Field64, (0, 0, 0)))
    with pytest.raises(VdafError, match="unknown round"):
        vdaf.prep_next(attrs.evolve(round2, sketch_round=3), None)
    with pytest.raises(VdafError, match="not a prep state"):
        vdaf.prep_next("state", None)  # type: ignore[arg-type]


def test_aggregate_merge_unshard() -> None:
    vdaf = Poplar1.with_bits(5)
    measurements = [0b10110, 0b10111, 0b00001, 0b10110, 0b11111]
    agg_param = vdaf.agg_param((2, [0b000, 0b101, 0b111]))
    out_shares = [[], []]
    for alpha in measurements:
        nonce = os.urandom(16)
        public_share, input_shares = vdaf.shard(alpha, nonce, os.urandom(80))
        for j, out in enumerate(prepare_locally(vdaf, agg_param, nonce, public_share, input_shares)):
            out_shares[j].append(out)
    totals = [vdaf.aggregate(agg_param, shares) for shares in out_shares]
    assert vdaf.unshard(agg_param, totals, len(measurements)) == [1, 3, 1]
    # Two jobs merged give the same aggregate share; agg_update is one step of aggregate.
    parts = [vdaf.aggregate(agg_param, out_shares[0][:2]), vdaf.aggregate(agg_param, out_shares[0][2:])]
    assert vdaf.merge(agg_param, parts) == totals[0]
    assert vdaf.agg_update(agg_param, vdaf.agg_init(agg_param), out_shares[0][0]) == out_shares[0][0]
    assert vdaf.aggregate(agg_param, []) == vdaf.agg_init(agg_param) == Poplar1FieldVec(Field64, (0, 0, 0))
    with pytest.raises(VdafError, match="3 elements"):
        vdaf.aggregate(agg_param, [Poplar1FieldVec(Field64, (1, 2))])
    with pytest.raises(VdafError, match="Field64"):
        vdaf.aggregate(agg_param, [Poplar1FieldVec(Field255, (1, 2, 3))])
    with pytest.raises(VdafError, match="2 aggregate shares"):
        vdaf.unshard(agg_param, totals[:1], 5)


# --------------------------------------------------- DAP ping-pong, all levels


class Aggregators:
    """A Leader and a Helper running one aggregation job per parameter through pingpong.py.

    Every report keeps the parameters it was aggregated with, and each new
    parameter goes through ``is_valid`` first (DAP-09's ``report_replayed``).
    Aggregate shares travel in their wire encoding.
    """

    def __init__(self, vdaf: Poplar1, reports: list[tuple[bytes, bytes, list[bytes]]]) -> None:
        self.vdaf = vdaf
        self.verify_key = os.urandom(16)
        self.reports = reports
        self.used: list[list[bytes]] = [[] for _ in reports]

    def collect(self, agg_param: Poplar1AggParam) -> list[int]:
        vdaf = self.vdaf
        encoded_param = vdaf.encode_agg_param(agg_param)
        leader_outs, helper_outs = [], []
        for index, (nonce, public_share, (leader_share, helper_share)) in enumerate(self.reports):
            previous = [vdaf.decode_agg_param(p) for p in self.used[index]]
            assert vdaf.is_valid(vdaf.decode_agg_param(encoded_param), previous)
            self.used[index].append(encoded_param)
            leader, init = ping_pong_leader_init(
                vdaf, self.verify_key, encoded_param, nonce, public_share, leader_share
            )
            assert isinstance(leader, Continued) and init is not None
            helper, reply = ping_pong_helper_init(
                vdaf, self.verify_key, encoded_param, nonce, public_share, helper_share, init
            )
            assert isinstance(helper, Continued) and reply is not None
            leader, finish = ping_pong_leader_continued(vdaf, encoded_param, leader, reply)
            assert isinstance(leader, Finished) and finish is not None
            helper, last = ping_pong_helper_continued(vdaf, encoded_param, helper, finish)
            assert isinstance(helper, Finished) and last is None
            leader_outs.append(leader.out_share)
            helper_outs.append(helper.out_share)
        decoded = vdaf.decode_agg_param(encoded_param)
        wire = [vdaf.encode_agg_share(vdaf.aggregate(decoded, outs)) for outs in (leader_outs, helper_outs)]
        return vdaf.unshard(decoded, [vdaf.decode_agg_share(decoded, w) for w in wire], len(self.reports))


def shard_reports(vdaf: Poplar1, measurements: list[Any]) -> list[tuple[bytes, bytes, list[bytes]]]:
    reports = []
    for measurement in measurements:
        nonce = os.urandom(16)
        public_share, input_shares = vdaf.shard_encoded(measurement, nonce, os.urandom(vdaf.RAND_SIZE))
        reports.append((nonce, public_share, input_shares))
    return reports


def prefix_counts(measurements: list[int], bits: int, level: int) -> Counter[int]:
    return Counter(m >> (bits - 1 - level) for m in measurements)


def test_two_party_heavy_hitters_walk_over_every_level() -> None:
    """Levels 0 .. BITS-1, each level's candidates = children of the previous level's non-zero prefixes."""
    bits = 10
    vdaf = Poplar1.with_bits(bits)
    rng = random.Random(11)
    measurements = [0b1011001110] * 3 + [0b1011000000] * 2 + [rng.getrandbits(bits) for _ in range(3)]
    # Clients use the interop form (booleans, most significant bit first).
    aggregators = Aggregators(vdaf, shard_reports(vdaf, [vdaf.measurement_to_bools(m) for m in measurements]))
    candidates = [0, 1]
    for level in range(bits):
        counts = aggregators.collect(Poplar1AggParam(level, tuple(candidates)))
        expected = prefix_counts(measurements, bits, level)
        assert counts == [expected[p] for p in candidates], level
        assert sum(counts) == len(measurements)  # every path is among the candidates
        survivors = [p for p, c in zip(candidates, counts) if c >= 1]
        candidates = sorted(child for p in survivors for child in (2 * p, 2 * p + 1))
    assert set(survivors) == set(measurements)
    # Every report now has every level: any further parameter is a replay.
    for index in range(len(measurements)):
        previous = [vdaf.decode_agg_param(p) for p in aggregators.used[index]]
        assert not vdaf.is_valid((bits - 1, [0]), previous)
        assert not vdaf.is_valid((0, [1]), previous)


def test_two_party_prep_at_bits_256_with_64_prefixes() -> None:
    bits = 256
    vdaf = Poplar1.with_bits(bits)
    rng = random.Random(256)
    measurements = [rng.getrandbits(bits) for _ in range(3)]
    measurements.append(measurements[0])
    aggregators = Aggregators(vdaf, shard_reports(vdaf, measurements))
    for level in (0, 7, 200, 254, 255):
        chosen = {m >> (bits - 1 - level) for m in measurements}
        while len(chosen) < min(64, 2 << level):  # pad with random prefixes (mostly off every path)
            chosen.add(rng.getrandbits(level + 1))
        candidates = tuple(sorted(chosen))
        expected = prefix_counts(measurements, bits, level)
        assert aggregators.collect(Poplar1AggParam(level, candidates)) == [expected[p] for p in candidates], level


def test_ping_pong_rejections() -> None:
    bits = 4
    vdaf = Poplar1.with_bits(bits)
    (nonce, public_share, (leader_share, helper_share)), = shard_reports(vdaf, [13])
    agg_param = vdaf.encode_agg_param((1, [2, 3]))
    leader, init = ping_pong_leader_init(vdaf, VERIFY_KEY, agg_param, nonce, public_share, leader_share)
    assert init is not None
    helper, reply = ping_pong_helper_init(vdaf, VERIFY_KEY, agg_param, nonce, public_share, helper_share, init)
    assert isinstance(helper, Continued) and reply is not None

    # Bad aggregation parameters: both sides reject at init.
    for bad_param in (b"", vdaf.encode_agg_param((1, [2, 3]))[:-1], bytes.fromhex("00000000000201"),
                      bytes.fromhex("0004000000010f")):
        state, out = ping_pong_leader_init(vdaf, VERIFY_KEY, bad_param, nonce, public_share, leader_share)
        assert isinstance(state, Rejected) and out is None
        state, out = ping_pong_helper_init(vdaf, VERIFY_KEY, bad_param, nonce, public_share, helper_share, init)
        assert isinstance(state, Rejected) and out is None

    # A flipped bit in the Leader's round-1 share: the Helper cannot tell, the Leader's verdict rejects.
    flipped = bytearray(init)
    flipped[5] ^= 1  # lowest bit of the first sketch element (after type and length)
    helper2, reply2 = ping_pong_helper_init(
        vdaf, VERIFY_KEY, agg_param, nonce, public_share, helper_share, bytes(flipped)
    )
    assert isinstance(helper2, Continued) and reply2 is not None
    state, out = ping_pong_leader_continued(vdaf, agg_param, leader, reply2)
    assert isinstance(state, Rejected) and "sketch" in state.reason and out is None

    # Wrong message kinds and lengths.
    message = PingPongMessage.decode(reply)
    assert message.prep_msg is not None and message.prep_share is not None
    for inbound in (
        PingPongMessage.finish(message.prep_msg).encode(),  # finish where continue is due
        init,  # initialize
        PingPongMessage.continue_(message.prep_msg[:-1], message.prep_share).encode(),
        PingPongMessage.continue_(message.prep_msg, message.prep_share + b"\x00").encode(),
        reply[:-1],
    ):
        state, out = ping_pong_leader_continued(vdaf, agg_param, leader, inbound)
        assert isinstance(state, Rejected) and out is None, inbound.hex()
    leader, finish = ping_pong_leader_continued(vdaf, agg_param, leader, reply)
    assert isinstance(leader, Finished) and finish is not None
    for inbound in (
        PingPongMessage.finish(b"\x00").encode(),  # the verdict must be empty
        PingPongMessage.continue_(b"", b"").encode(),  # no third round
        init,
    ):
        state, out = ping_pong_helper_continued(vdaf, agg_param, helper, inbound)
        assert isinstance(state, Rejected) and out is None, inbound.hex()
    state, out = ping_pong_helper_continued(vdaf, agg_param, helper, finish)
    assert isinstance(state, Finished) and out is None


# ----------------------------------------------------------- interop params


def test_interop_params() -> None:
    params = VdafParams.from_interop({"type": "Poplar1", "bits": "16"})
    assert params.build() is Poplar1.with_bits(16) is vdaf_from_interop({"type": "Poplar1", "bits": 16})
    assert params.to_interop() == {"type": "Poplar1", "bits": "16"}
    assert VdafParams.from_interop({"type": "Poplar1", "bits": "256"}).build() is Poplar1.with_bits(256)
    for obj, message in [
        ({"type": "Poplar1"}, "vdaf.bits: required"),
        ({"type": "Poplar1", "bits": "0"}, r"vdaf.bits: must be an integer in \[1, 65536\]"),
        ({"type": "Poplar1", "bits": str(2**16 + 1)}, "vdaf.bits"),
        ({"type": "Poplar1", "bits": "4", "length": "2"}, "unexpected key"),
    ]:
        with pytest.raises(VdafError, match=message):
            VdafParams.from_interop(obj)
    # Prio3Sum keeps its own bound on bits.
    with pytest.raises(VdafError, match=r"\[1, 127\]"):
        VdafParams.from_interop({"type": "Prio3Sum", "bits": "128"})

    small = VdafParams.from_interop({"type": "Poplar1", "bits": "4"})
    measurement = small.measurement_from_interop([True, True, False, True])
    assert measurement == (True, True, False, True)
    assert small.build().measurement_to_int(measurement) == 13
    assert small.measurement_to_interop(measurement) == [True, True, False, True]
    for bad in ([True, False], [True] * 5, ["true"] * 4, [1, 1, 0, 1], "1101", 13):
        with pytest.raises(VdafError, match="measurement"):
            small.measurement_from_interop(bad)
    assert small.result_to_interop([0, 0, 3]) == ["0", "0", "3"]
    assert small.result_from_interop(["0", "2"]) == [0, 2]

    # agg_param: base64url of the VDAF encoding, unpadded (padded accepted).
    agg_param = Poplar1AggParam(3, (1, 3, 5, 7, 9, 13, 15))
    text = small.agg_param_to_interop(agg_param)
    assert base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).hex() == VECTOR_AGG_PARAMS["Poplar1_3.json"]
    assert "=" not in text
    assert small.agg_param_from_interop(text) == agg_param
    padded = base64.urlsafe_b64encode(bytes.fromhex("000100000004e4")).decode()
    assert padded.endswith("=") and small.agg_param_from_interop(padded) == (1, (0, 1, 2, 3))
    for bad in ("AAAAAAACAQ", "AAAA+AACAg", "not base64!", None, ""):
        with pytest.raises(VdafError):
            small.agg_param_from_interop(bad)
    count = VdafParams.from_interop({"type": "Prio3Count"})
    assert count.agg_param_from_interop("") is None
    assert count.agg_param_to_interop(None) == ""
    with pytest.raises(VdafError):
        count.agg_param_from_interop("AA")
