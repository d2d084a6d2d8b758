"""The official VDAF-08 Prio3 and XofTurboShake128 vectors, reproduced byte for byte.

The vectors live outside the repository, in ``../shared/spec/test-vectors`` next
to the checkout (override with ``VDAF_TEST_VECTORS_DIR``). A missing directory
or file is a FAILURE, never a skip: these tests are the proof that
``dap.vdaf`` is VDAF-08.

Parameters the files do not record (algorithm ID, field, PROOFS) come from the
directory's README table; the factories in :mod:`dap.vdaf.prio3` hold them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from dap.vdaf.field import Field128
from dap.vdaf.pingpong import (
    Continued,
    Finished,
    ping_pong_helper_init,
    ping_pong_leader_continued,
    ping_pong_leader_init,
)
from dap.vdaf.prio3 import (
    Prio3,
    Prio3Count,
    Prio3Histogram,
    Prio3MultiHotHistogram,
    Prio3Sum,
    Prio3SumVec,
    Prio3SumVecWithMultiproof,
)
from dap.vdaf.xof import XofTurboShake128, format_dst

ENV_VAR = "VDAF_TEST_VECTORS_DIR"

PRIO3_FILES = [
    "Prio3Count_0.json",
    "Prio3Count_1.json",
    "Prio3Sum_0.json",
    "Prio3Sum_1.json",
    "Prio3SumVec_0.json",
    "Prio3SumVec_1.json",
    "Prio3Histogram_0.json",
    "Prio3Histogram_1.json",
    "Prio3MultiHotHistogram_0.json",
    "Prio3MultiHotHistogram_1.json",
    "Prio3SumVecWithMultiproof_0.json",
]


def vectors_dir() -> Path:
    override = os.environ.get(ENV_VAR)
    path = Path(override) if override else Path(__file__).resolve().parents[1].parent / "shared/spec/test-vectors"
    if not path.is_dir():
        pytest.fail(
            f"VDAF-08 test vectors not found at {path} (expected ../shared/spec/test-vectors beside the "
            f"checkout, or set {ENV_VAR})",
            pytrace=False,
        )
    return path


def load(name: str) -> dict[str, Any]:
    path = vectors_dir() / name
    if not path.is_file():
        pytest.fail(f"test vector {path} is missing", pytrace=False)
    return json.loads(path.read_text())


def instance(name: str, vec: dict[str, Any]) -> Prio3:
    """The instance a vector file was generated with (hidden parameters per the README)."""
    shares = vec["shares"]
    kind = name.rsplit("_", 1)[0]
    if kind == "Prio3Count":
        return Prio3Count(shares=shares)
    if kind == "Prio3Sum":
        return Prio3Sum(vec["bits"], shares=shares)
    if kind == "Prio3SumVec":
        return Prio3SumVec(vec["length"], vec["bits"], vec["chunk_length"], shares=shares)
    if kind == "Prio3Histogram":
        return Prio3Histogram(vec["length"], vec["chunk_length"], shares=shares)
    if kind == "Prio3MultiHotHistogram":
        return Prio3MultiHotHistogram(vec["length"], vec["max_count"], vec["chunk_length"], shares=shares)
    if kind == "Prio3SumVecWithMultiproof":
        return Prio3SumVecWithMultiproof(vec["length"], vec["bits"], vec["chunk_length"], proofs=4, shares=shares)
    raise AssertionError(f"no instance for {name}")


def hx(data: bytes) -> str:
    return data.hex()


@pytest.mark.parametrize("name", PRIO3_FILES)
def test_prio3_vector(name: str) -> None:
    vec = load(name)
    vdaf = instance(name, vec)
    assert vdaf.SHARES == vec["shares"]
    verify_key = bytes.fromhex(vec["verify_key"])
    assert vec["agg_param"] is None
    agg_param = vdaf.decode_agg_param(b"")
    out_shares: list[list[list[int]]] = []

    for i, case in enumerate(vec["prep"]):
        nonce = bytes.fromhex(case["nonce"])
        rand = bytes.fromhex(case["rand"])
        assert len(rand) == vdaf.RAND_SIZE, f"prep[{i}]: RAND_SIZE"

        # Client: shard from the recorded randomness.
        public_share, input_shares = vdaf.shard(case["measurement"], nonce, rand)
        assert hx(vdaf.encode_public_share(public_share)) == case["public_share"], f"prep[{i}].public_share"
        assert [hx(vdaf.encode_input_share(s)) for s in input_shares] == case["input_shares"], (
            f"prep[{i}].input_shares"
        )

        # Aggregators: from the recorded encodings, not from our own objects.
        states, prep_shares = [], []
        for j in range(vdaf.SHARES):
            state, prep_share = vdaf.prep_init(
                verify_key,
                j,
                agg_param,
                nonce,
                vdaf.decode_public_share(bytes.fromhex(case["public_share"])),
                vdaf.decode_input_share(j, bytes.fromhex(case["input_shares"][j])),
            )
            states.append(state)
            prep_shares.append(prep_share)
        assert [hx(vdaf.encode_prep_share(s)) for s in prep_shares] == case["prep_shares"][0], (
            f"prep[{i}].prep_shares"
        )
        decoded_shares = [vdaf.decode_prep_share(states[j], bytes.fromhex(s)) for j, s in enumerate(case["prep_shares"][0])]
        assert decoded_shares == prep_shares
        prep_msg = vdaf.prep_shares_to_prep(agg_param, decoded_shares)
        assert [hx(vdaf.encode_prep_msg(prep_msg))] == case["prep_messages"], f"prep[{i}].prep_messages"
        assert vdaf.decode_prep_msg(states[0], bytes.fromhex(case["prep_messages"][0])) == prep_msg

        outs = [vdaf.prep_next(state, prep_msg) for state in states]
        e = vdaf.field.ENCODED_SIZE
        assert [[x.to_bytes(e, "little").hex() for x in out] for out in outs] == case["out_shares"], (
            f"prep[{i}].out_shares"
        )
        for j, out in enumerate(outs):
            assert vdaf.decode_out_share(agg_param, vdaf.encode_out_share(out)) == out
            assert hx(vdaf.encode_out_share(out)) == "".join(case["out_shares"][j])
        out_shares.append(outs)

    agg_shares = [vdaf.aggregate(agg_param, [outs[j] for outs in out_shares]) for j in range(vdaf.SHARES)]
    assert [hx(vdaf.encode_agg_share(s)) for s in agg_shares] == vec["agg_shares"]
    decoded = [vdaf.decode_agg_share(agg_param, bytes.fromhex(s)) for s in vec["agg_shares"]]
    assert vdaf.unshard(agg_param, decoded, len(vec["prep"])) == vec["agg_result"]


@pytest.mark.parametrize("name", [n for n in PRIO3_FILES if n.endswith("_0.json")])
def test_prio3_vector_through_ping_pong(name: str) -> None:
    """The two-party (``_0``) vectors through the DAP ping-pong functions: same bytes, same outputs."""
    vec = load(name)
    vdaf = instance(name, vec)
    verify_key = bytes.fromhex(vec["verify_key"])
    for case in vec["prep"]:
        nonce = bytes.fromhex(case["nonce"])
        public_share = bytes.fromhex(case["public_share"])
        leader_share, helper_share = (bytes.fromhex(s) for s in case["input_shares"])
        leader, outbound = ping_pong_leader_init(vdaf, verify_key, b"", nonce, public_share, leader_share)
        assert isinstance(leader, Continued) and outbound is not None
        share0 = bytes.fromhex(case["prep_shares"][0][0])
        assert outbound == b"\x00" + len(share0).to_bytes(4, "big") + share0
        helper, reply = ping_pong_helper_init(vdaf, verify_key, b"", nonce, public_share, helper_share, outbound)
        assert isinstance(helper, Finished) and reply is not None
        msg = bytes.fromhex(case["prep_messages"][0])
        assert reply == b"\x02" + len(msg).to_bytes(4, "big") + msg
        leader, last = ping_pong_leader_continued(vdaf, b"", leader, reply)
        assert isinstance(leader, Finished) and last is None
        e = vdaf.field.ENCODED_SIZE
        assert [x.to_bytes(e, "little").hex() for x in leader.out_share] == case["out_shares"][0]
        assert [x.to_bytes(e, "little").hex() for x in helper.out_share] == case["out_shares"][1]


def test_xof_turboshake128_vector() -> None:
    vec = load("XofTurboShake128.json")
    seed = bytes.fromhex(vec["seed"])
    dst = bytes.fromhex(vec["dst"])
    binder = bytes.fromhex(vec["binder"])
    assert XofTurboShake128.derive_seed(seed, dst, binder).hex() == vec["derived_seed"]
    expected = vec["expanded_vec_field128"]
    # The one-shot path and the streaming path must both give the vector.
    fast = XofTurboShake128.expand_into_vec(Field128, seed, dst, binder, vec["length"])
    assert Field128.encode_vec(fast).hex() == expected
    stream = XofTurboShake128(seed, dst, binder)
    slow = stream.next_vec(Field128, 7) + stream.next_vec(Field128, vec["length"] - 7)
    assert Field128.encode_vec(slow).hex() == expected
    # The derived seed is the first SEED_SIZE bytes of the same stream.
    assert XofTurboShake128(seed, dst, binder).next(16).hex() == vec["derived_seed"]


def test_dst_layout() -> None:
    # Digest section 3: Prio3Sum, usage 7 -> 0800000000010007.
    assert format_dst(0, 1, 7).hex() == "0800000000010007"
    assert format_dst(1, 0x1000, 65535).hex() == "080100001000ffff"
