"""Property tests of Prio3 through the DAP ping-pong path.

* honest reports of random valid measurements always prepare, and the result
  is the plain sum;
* a forged but well-encoded input share (a measurement that is not valid) is
  rejected;
* one flipped bit anywhere in the public share, an input share, the Leader's
  ``initialize`` message or the Helper's ``finish`` message stops the report
  from being counted by both Aggregators.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dap.errors import VdafError
from dap.vdaf.pingpong import (
    Finished,
    Rejected,
    ping_pong_helper_init,
    ping_pong_leader_continued,
    ping_pong_leader_init,
)
from dap.vdaf.prio3 import (
    LeaderInputShare,
    Prio3,
    Prio3Count,
    Prio3Histogram,
    Prio3MultiHotHistogram,
    Prio3Sum,
    Prio3SumVec,
    Prio3SumVecWithMultiproof,
)

INSTANCES: list[tuple[Prio3, st.SearchStrategy[Any]]] = [
    (Prio3Count(), st.integers(0, 1)),
    (Prio3Sum(1), st.integers(0, 1)),
    (Prio3Sum(8), st.integers(0, 255)),
    (Prio3Sum(64), st.integers(0, 2**64 - 1)),
    (Prio3SumVec(3, 4, 2), st.lists(st.integers(0, 15), min_size=3, max_size=3)),
    (Prio3SumVec(10, 8, 12), st.lists(st.integers(0, 255), min_size=10, max_size=10)),
    (Prio3Histogram(5, 2), st.integers(0, 4)),
    (Prio3Histogram(12, 4), st.integers(0, 11)),
    (
        Prio3MultiHotHistogram(6, 3, 2),
        st.lists(st.integers(0, 1), min_size=6, max_size=6).filter(lambda m: sum(m) <= 3),
    ),
    (Prio3SumVecWithMultiproof(4, 2, 3, proofs=3), st.lists(st.integers(0, 3), min_size=4, max_size=4)),
]
IDS = [repr(v) for v, _ in INSTANCES]

seeds = st.binary(min_size=16, max_size=16)


def expected_sum(vdaf: Prio3, measurements: list[Any]) -> Any:
    if isinstance(measurements[0], list):
        return [sum(col) for col in zip(*measurements)]
    if vdaf.name == "Prio3Histogram":
        counts = [0] * vdaf.flp.OUTPUT_LEN
        for m in measurements:
            counts[m] += 1
        return counts
    return sum(measurements)


def prepare(
    vdaf: Prio3, verify_key: bytes, nonce: bytes, public_share: bytes, leader_share: bytes, helper_share: bytes
) -> tuple[Any, Any]:
    """Both Aggregators through the ping-pong functions; returns (leader state, helper state)."""
    leader, init = ping_pong_leader_init(vdaf, verify_key, b"", nonce, public_share, leader_share)
    if init is None:
        return leader, None
    helper, reply = ping_pong_helper_init(vdaf, verify_key, b"", nonce, public_share, helper_share, init)
    if reply is None:
        return leader, helper
    leader, _ = ping_pong_leader_continued(vdaf, b"", leader, reply)
    return leader, helper


@pytest.mark.parametrize(("vdaf", "meas"), INSTANCES, ids=IDS)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), verify_key=seeds)
def test_honest_reports_aggregate_to_the_sum(
    vdaf: Prio3, meas: st.SearchStrategy[Any], data: st.DataObject, verify_key: bytes
) -> None:
    measurements = data.draw(st.lists(meas, min_size=1, max_size=4), label="measurements")
    agg = [vdaf.agg_init(None), vdaf.agg_init(None)]
    for m in measurements:
        nonce = data.draw(seeds, label="nonce")
        rand = data.draw(st.binary(min_size=vdaf.RAND_SIZE, max_size=vdaf.RAND_SIZE), label="rand")
        public_share, (leader_share, helper_share) = vdaf.shard_encoded(m, nonce, rand)
        leader, helper = prepare(vdaf, verify_key, nonce, public_share, leader_share, helper_share)
        assert isinstance(leader, Finished), leader
        assert isinstance(helper, Finished), helper
        agg = [vdaf.agg_update(None, agg[0], leader.out_share), vdaf.agg_update(None, agg[1], helper.out_share)]
    encoded = [vdaf.encode_agg_share(a) for a in agg]
    decoded = [vdaf.decode_agg_share(None, e) for e in encoded]
    assert vdaf.unshard(None, decoded, len(measurements)) == expected_sum(vdaf, measurements)


def forge(vdaf: Prio3, leader_share: LeaderInputShare, index: int, delta: int) -> bytes:
    """The Leader's share with ``delta`` added to measurement element ``index`` (still well-encoded)."""
    p = vdaf.field.MODULUS
    meas = list(leader_share.meas_share)
    meas[index] = (meas[index] + delta) % p
    return vdaf.encode_input_share(attrs.evolve(leader_share, meas_share=meas))


@settings(max_examples=15, deadline=None)
@given(verify_key=seeds, nonce=seeds, rand=st.binary(min_size=48, max_size=48))
def test_count_forged_to_two_is_rejected(verify_key: bytes, nonce: bytes, rand: bytes) -> None:
    vdaf = Prio3Count()
    public_share, (leader, helper_share) = vdaf.shard(1, nonce, rand)
    forged = forge(vdaf, leader, 0, 1)  # the shares now add up to 2
    state, _ = prepare(vdaf, verify_key, nonce, b"", forged, vdaf.encode_input_share(helper_share))
    assert not isinstance(state, Finished)
    # Directly: the combined proof must fail.
    states, shares = zip(
        *(
            vdaf.prep_init(verify_key, j, None, nonce, (), vdaf.decode_input_share(j, s))
            for j, s in enumerate([forged, vdaf.encode_input_share(helper_share)])
        )
    )
    with pytest.raises(VdafError, match="verification failed"):
        vdaf.prep_shares_to_prep(None, list(shares))


@pytest.mark.parametrize(
    ("vdaf", "measurement", "index", "delta"),
    [
        (Prio3Sum(8), 3, 0, 1),  # bit 0 becomes 2
        (Prio3Sum(8), 0, 7, -1),  # bit 7 becomes -1
        (Prio3Histogram(12, 4), 2, 5, 1),  # two buckets set
        (Prio3Histogram(12, 4), 2, 2, 1),  # one bucket set to 2
        (Prio3Histogram(12, 4), 2, 2, -1),  # no bucket set
        (Prio3SumVec(3, 4, 2), [1, 2, 3], 4, 1),  # a bit of element 1 becomes 2
        (Prio3MultiHotHistogram(6, 2, 2), [1, 1, 0, 0, 0, 0], 3, 1),  # three ones, max 2
    ],
    ids=repr,
)
@settings(max_examples=5, deadline=None)
@given(verify_key=seeds, nonce=seeds, data=st.data())
def test_forged_measurement_is_rejected(
    vdaf: Prio3, measurement: Any, index: int, delta: int, verify_key: bytes, nonce: bytes, data: st.DataObject
) -> None:
    rand = data.draw(st.binary(min_size=vdaf.RAND_SIZE, max_size=vdaf.RAND_SIZE))
    public_share, (leader, helper_share) = vdaf.shard(measurement, nonce, rand)
    forged = forge(vdaf, leader, index, delta)
    leader_state, helper_state = prepare(
        vdaf, verify_key, nonce, vdaf.encode_public_share(public_share), forged, vdaf.encode_input_share(helper_share)
    )
    assert isinstance(helper_state, Rejected)
    assert not isinstance(leader_state, Finished)


def test_a_forged_public_share_is_caught_by_prep_next() -> None:
    """A Client lying about its joint-randomness parts: both sides disagree with the prep message."""
    vdaf = Prio3Sum(8)
    nonce = bytes(16)
    public_share, shares = vdaf.shard_encoded(5, nonce, bytes(range(80)))
    lied = public_share[:16] + bytes(16)  # Helper's part replaced
    leader, init = ping_pong_leader_init(vdaf, bytes(16), b"", nonce, lied, shares[0])
    helper, reply = ping_pong_helper_init(vdaf, bytes(16), b"", nonce, lied, shares[1], init)
    # The Helper recomputes its own part, the Leader trusts the public share's:
    # either the proof fails (different joint randomness) or prep_next does.
    if isinstance(helper, Finished):
        leader, _ = ping_pong_leader_continued(vdaf, b"", leader, reply)
    assert isinstance(leader, Rejected) or isinstance(helper, Rejected)
    assert not (isinstance(leader, Finished) and isinstance(helper, Finished))


FLIP_INSTANCES = [Prio3Count(), Prio3Sum(8), Prio3Histogram(5, 2), Prio3SumVec(3, 4, 2)]
TARGETS = ["public_share", "leader_share", "helper_share", "init", "reply"]


@pytest.mark.parametrize("vdaf", FLIP_INSTANCES, ids=repr)
@settings(max_examples=40, deadline=None)
@given(data=st.data(), verify_key=seeds, nonce=seeds)
def test_a_flipped_bit_stops_the_report(vdaf: Prio3, data: st.DataObject, verify_key: bytes, nonce: bytes) -> None:
    rand = data.draw(st.binary(min_size=vdaf.RAND_SIZE, max_size=vdaf.RAND_SIZE), label="rand")
    measurement = {"Prio3Count": 1, "Prio3Sum": 77, "Prio3Histogram": 3}.get(vdaf.name, [1, 2, 3])
    public_share, (leader_share, helper_share) = vdaf.shard_encoded(measurement, nonce, rand)
    honest_init = ping_pong_leader_init(vdaf, verify_key, b"", nonce, public_share, leader_share)[1]
    assert honest_init is not None
    honest_reply = ping_pong_helper_init(vdaf, verify_key, b"", nonce, public_share, helper_share, honest_init)[1]
    assert honest_reply is not None
    parts = {
        "public_share": public_share,
        "leader_share": leader_share,
        "helper_share": helper_share,
        "init": honest_init,
        "reply": honest_reply,
    }
    target = data.draw(st.sampled_from([t for t in TARGETS if parts[t]]), label="target")
    bit = data.draw(st.integers(0, 8 * len(parts[target]) - 1), label="bit")
    flipped = bytearray(parts[target])
    flipped[bit // 8] ^= 1 << (bit % 8)
    parts[target] = bytes(flipped)

    leader, init = ping_pong_leader_init(vdaf, verify_key, b"", nonce, parts["public_share"], parts["leader_share"])
    if target == "init":
        init = parts["init"]
    helper: Any = None
    if init is not None:
        helper, reply = ping_pong_helper_init(
            vdaf, verify_key, b"", nonce, parts["public_share"], parts["helper_share"], init
        )
        if target == "reply":
            reply = parts["reply"]
        if reply is not None:
            leader, _ = ping_pong_leader_continued(vdaf, b"", leader, reply)
    assert not (isinstance(leader, Finished) and isinstance(helper, Finished)), (target, bit)
    assert isinstance(leader, Rejected) or isinstance(helper, Rejected) or init is None


def test_encodings_reject_bad_lengths_and_values() -> None:
    vdaf = Prio3Sum(4)
    public_share, (leader_share, helper_share) = vdaf.shard_encoded(3, bytes(16), bytes(80))
    with pytest.raises(VdafError):
        vdaf.decode_public_share(public_share + b"\x00")
    with pytest.raises(VdafError):
        vdaf.decode_input_share(0, leader_share[:-1])
    with pytest.raises(VdafError):
        vdaf.decode_input_share(1, helper_share + b"\x00")
    with pytest.raises(VdafError):
        vdaf.decode_input_share(2, helper_share)
    too_big = b"\xff" * 16 + leader_share[16:]  # first element >= p
    with pytest.raises(VdafError, match="modulus"):
        vdaf.decode_input_share(0, too_big)
    with pytest.raises(VdafError):
        vdaf.decode_prep_share(None, bytes(63))
    with pytest.raises(VdafError):
        vdaf.decode_prep_msg(None, bytes(15))
    with pytest.raises(VdafError):
        vdaf.decode_agg_param(b"\x00")
    with pytest.raises(VdafError):
        vdaf.decode_agg_share(None, bytes(17))
    with pytest.raises(VdafError):
        vdaf.decode_out_share(None, bytes(32))
    count = Prio3Count()
    with pytest.raises(VdafError):
        count.decode_public_share(b"\x00")
    with pytest.raises(VdafError):
        count.decode_prep_msg(None, b"\x00")
    assert count.decode_prep_msg(None, b"") is None
    assert count.encode_agg_param(None) == b""


@pytest.mark.parametrize(
    ("vdaf", "measurement"),
    [
        (Prio3Count(), 2),
        (Prio3Count(), -1),
        (Prio3Count(), "1"),
        (Prio3Count(), 1.0),
        (Prio3Sum(8), 256),
        (Prio3SumVec(3, 4, 2), [1, 2]),
        (Prio3SumVec(3, 4, 2), [1, 2, 16]),
        (Prio3Histogram(5, 2), 5),
        (Prio3MultiHotHistogram(4, 1, 2), [1, 1, 0, 0]),
        (Prio3MultiHotHistogram(4, 1, 2), [2, 0, 0, 0]),
    ],
    ids=repr,
)
def test_invalid_measurements_are_refused(vdaf: Prio3, measurement: Any) -> None:
    with pytest.raises(VdafError):
        vdaf.shard(measurement, bytes(16), bytes(vdaf.RAND_SIZE))


def test_shard_and_prep_argument_checks() -> None:
    vdaf = Prio3Count()
    with pytest.raises(VdafError, match="rand"):
        vdaf.shard(1, bytes(16), bytes(47))
    with pytest.raises(VdafError, match="nonce"):
        vdaf.shard(1, bytes(15), bytes(48))
    _, shares = vdaf.shard(1, bytes(16), bytes(48))
    with pytest.raises(VdafError, match="Helper input share"):
        vdaf.prep_init(bytes(16), 1, None, bytes(16), (), shares[0])
    with pytest.raises(VdafError, match="Leader input share"):
        vdaf.prep_init(bytes(16), 0, None, bytes(16), (), shares[1])
    with pytest.raises(VdafError, match="aggregator id"):
        vdaf.prep_init(bytes(16), 2, None, bytes(16), (), shares[1])
    with pytest.raises(VdafError, match="verify key"):
        vdaf.prep_init(bytes(15), 0, None, bytes(16), (), shares[0])
    with pytest.raises(VdafError, match="prep shares"):
        vdaf.prep_shares_to_prep(None, [])
    with pytest.raises(VdafError, match="aggregate shares"):
        vdaf.unshard(None, [[0]], 1)
    with pytest.raises(VdafError, match="output share"):
        vdaf.aggregate(None, [[0, 0]])
    assert vdaf.is_valid(None, []) and not vdaf.is_valid(None, [None])
    assert vdaf.merge(None, [[1], [2]]) == [3]
