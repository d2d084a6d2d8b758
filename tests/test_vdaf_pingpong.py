"""The VDAF-08 ping-pong functions: concrete payloads, state machine, failure handling."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pytest

from dap.errors import VdafError
from dap.messages import PingPongMessage
from dap.vdaf.pingpong import (
    Continued,
    Finished,
    Rejected,
    ping_pong_helper_continued,
    ping_pong_helper_init,
    ping_pong_leader_continued,
    ping_pong_leader_init,
)
from dap.vdaf.prio3 import Prio3Count, Prio3Histogram, Prio3Sum

VERIFY_KEY = bytes(range(16))
NONCE = bytes(range(16, 32))


def shard(vdaf, measurement):  # noqa: ANN001, ANN201 - test helper
    return vdaf.shard_encoded(measurement, NONCE, os.urandom(vdaf.RAND_SIZE))


def test_count_payloads() -> None:
    vdaf = Prio3Count()
    public_share, (leader_share, helper_share) = shard(vdaf, 1)
    leader, init = ping_pong_leader_init(vdaf, VERIFY_KEY, b"", NONCE, public_share, leader_share)
    assert isinstance(leader, Continued) and leader.prep_round == 0
    assert init is not None and len(init) == 37 and init[:5] == bytes.fromhex("0000000020")
    helper, reply = ping_pong_helper_init(vdaf, VERIFY_KEY, b"", NONCE, public_share, helper_share, init)
    assert isinstance(helper, Finished)
    assert reply == bytes.fromhex("0200000000")
    leader, last = ping_pong_leader_continued(vdaf, b"", leader, reply)
    assert isinstance(leader, Finished) and last is None
    assert vdaf.unshard(None, [[x] for x in (leader.out_share[0], helper.out_share[0])], 1) == 1


@pytest.mark.parametrize("vdaf", [Prio3Sum(8), Prio3Histogram(12, 4)], ids=repr)
def test_joint_rand_payloads(vdaf) -> None:  # noqa: ANN001
    public_share, (leader_share, helper_share) = shard(vdaf, 3)
    leader, init = ping_pong_leader_init(vdaf, VERIFY_KEY, b"", NONCE, public_share, leader_share)
    assert init is not None and init[0] == 0
    helper, reply = ping_pong_helper_init(vdaf, VERIFY_KEY, b"", NONCE, public_share, helper_share, init)
    assert isinstance(helper, Finished)
    assert reply is not None and len(reply) == 21 and reply[:5] == bytes.fromhex("0200000010")
    leader, last = ping_pong_leader_continued(vdaf, b"", leader, reply)
    assert isinstance(leader, Finished) and last is None


def test_helper_rejects_wrong_inbound() -> None:
    vdaf = Prio3Count()
    public_share, (leader_share, helper_share) = shard(vdaf, 0)
    _, init = ping_pong_leader_init(vdaf, VERIFY_KEY, b"", NONCE, public_share, leader_share)
    assert init is not None
    prep_share = PingPongMessage.decode(init).prep_share
    for inbound in (
        PingPongMessage.finish(b"").encode(),
        PingPongMessage.continue_(b"", prep_share).encode(),
        init[:-1],  # truncated
        init + b"\x00",  # trailing byte
        b"\x07" + init[1:],  # unknown type
        PingPongMessage.initialize(prep_share[:-8]).encode(),  # short prep share
    ):
        state, out = ping_pong_helper_init(vdaf, VERIFY_KEY, b"", NONCE, public_share, helper_share, inbound)
        assert isinstance(state, Rejected) and out is None, inbound.hex()
        assert state.reason


def test_leader_continued_rejections() -> None:
    vdaf = Prio3Count()
    public_share, (leader_share, helper_share) = shard(vdaf, 1)
    leader, init = ping_pong_leader_init(vdaf, VERIFY_KEY, b"", NONCE, public_share, leader_share)
    _, reply = ping_pong_helper_init(vdaf, VERIFY_KEY, b"", NONCE, public_share, helper_share, init)
    assert reply is not None
    assert isinstance(ping_pong_leader_continued(vdaf, b"", leader, init)[0], Rejected)  # initialize
    cont = PingPongMessage.continue_(b"", b"").encode()
    assert isinstance(ping_pong_leader_continued(vdaf, b"", leader, cont)[0], Rejected)  # continue in last round
    assert isinstance(ping_pong_leader_continued(vdaf, b"", leader, b"\x02")[0], Rejected)  # malformed
    bad_msg = PingPongMessage.finish(b"\x00" * 16).encode()  # Count has no joint rand: must be empty
    assert isinstance(ping_pong_leader_continued(vdaf, b"", leader, bad_msg)[0], Rejected)
    finished, _ = ping_pong_leader_continued(vdaf, b"", leader, reply)
    assert isinstance(finished, Finished)
    again, out = ping_pong_leader_continued(vdaf, b"", finished, reply)  # not Continued any more
    assert isinstance(again, Rejected) and out is None
    assert isinstance(ping_pong_leader_continued(vdaf, b"", Rejected(), reply)[0], Rejected)


def test_init_rejections() -> None:
    vdaf = Prio3Sum(4)
    public_share, (leader_share, helper_share) = shard(vdaf, 9)
    for args in (
        (VERIFY_KEY, b"\x00", NONCE, public_share, leader_share),  # Prio3 agg param must be empty
        (VERIFY_KEY[:15], b"", NONCE, public_share, leader_share),
        (VERIFY_KEY, b"", NONCE[:15], public_share, leader_share),
        (VERIFY_KEY, b"", NONCE, public_share[:-1], leader_share),
        (VERIFY_KEY, b"", NONCE, public_share, leader_share + b"\x00"),
        (VERIFY_KEY, b"", NONCE, public_share, helper_share),
    ):
        state, out = ping_pong_leader_init(vdaf, *args)
        assert isinstance(state, Rejected) and out is None


class ToyTwoRound:
    """A 2-round toy VDAF: it checks that both Aggregators hold the same secret.

    Round 1 share = secret; message 1 = (share_0, share_1) in Aggregator order;
    round 2 share = secret + 1000 * agg_id; message 2 = "ok" when the round-2
    shares are consistent. The output share is the secret. Orders matter:
    swapping the Leader's and Helper's shares makes a different message.
    """

    ROUNDS = 2

    def prep_init(self, verify_key, agg_id, agg_param, nonce, public_share, input_share):  # noqa: ANN001, ANN201
        return (1, agg_id, input_share), input_share

    def prep_shares_to_prep(self, agg_param, prep_shares: Sequence[int]):  # noqa: ANN001, ANN201
        a, b = prep_shares
        if a >= 1000 or b >= 1000:  # round 2
            if b - a != 1000:
                raise VdafError("round-2 shares disagree (or are out of order)")
            return None
        if a != b:
            raise VdafError("secrets differ")
        return (a, b)

    def prep_next(self, prep_state, prep_msg):  # noqa: ANN001, ANN201
        rnd, agg_id, secret = prep_state
        if rnd == 1:
            if prep_msg != (secret, secret):
                raise VdafError("bad round-1 message")
            return (2, agg_id, secret), secret + 1000 * agg_id
        if prep_msg is not None:
            raise VdafError("bad round-2 message")
        return secret

    def decode_agg_param(self, encoded: bytes) -> None:
        return None

    def decode_public_share(self, encoded: bytes) -> None:
        return None

    def decode_input_share(self, agg_id: int, encoded: bytes) -> int:
        return int.from_bytes(encoded, "big")

    def encode_prep_share(self, prep_share: int) -> bytes:
        return prep_share.to_bytes(2, "big")

    def decode_prep_share(self, prep_state, encoded: bytes) -> int:  # noqa: ANN001
        if len(encoded) != 2:
            raise VdafError("prep share length")
        return int.from_bytes(encoded, "big")

    def encode_prep_msg(self, prep_msg) -> bytes:  # noqa: ANN001
        return b"" if prep_msg is None else bytes(prep_msg)

    def decode_prep_msg(self, prep_state, encoded: bytes):  # noqa: ANN001, ANN201
        return tuple(encoded) if encoded else None


def test_two_round_flow() -> None:
    """The Poplar1-shaped flow: init, Helper continue, Leader finish, Helper finished."""
    vdaf = ToyTwoRound()
    leader, init = ping_pong_leader_init(vdaf, b"", b"", b"", b"", b"\x07")
    assert isinstance(leader, Continued) and init == bytes.fromhex("00 00000002 0007")
    helper, reply = ping_pong_helper_init(vdaf, b"", b"", b"", b"", b"\x07", init)
    assert isinstance(helper, Continued) and helper.prep_round == 1
    # continue(prep_msg = (7, 7), Helper's round-2 share = 1007)
    assert reply == bytes.fromhex("01 00000002 0707 00000002 03ef")
    leader, finish = ping_pong_leader_continued(vdaf, b"", leader, reply)
    assert isinstance(leader, Finished) and leader.out_share == 7
    assert finish == bytes.fromhex("02 00000000")
    helper, last = ping_pong_helper_continued(vdaf, b"", helper, finish)
    assert isinstance(helper, Finished) and helper.out_share == 7 and last is None


def test_two_round_flow_rejections() -> None:
    vdaf = ToyTwoRound()
    leader, init = ping_pong_leader_init(vdaf, b"", b"", b"", b"", b"\x07")
    helper, reply = ping_pong_helper_init(vdaf, b"", b"", b"", b"", b"\x08", init)
    assert isinstance(helper, Rejected) and reply is None  # secrets differ
    helper, reply = ping_pong_helper_init(vdaf, b"", b"", b"", b"", b"\x07", init)
    assert reply is not None
    # finish where a continue is needed (round 0 of 2): Rejected.
    early_finish = PingPongMessage.finish(bytes((7, 7))).encode()
    assert isinstance(ping_pong_leader_continued(vdaf, b"", leader, early_finish)[0], Rejected)
    # the Helper gets a continue in its last round: Rejected.
    leader2, finish = ping_pong_leader_continued(vdaf, b"", leader, reply)
    assert isinstance(leader2, Finished)
    late_continue = PingPongMessage.continue_(b"", b"\x00\x01").encode()
    assert isinstance(ping_pong_helper_continued(vdaf, b"", helper, late_continue)[0], Rejected)
    # a non-empty final message fails prep_next: Rejected.
    bad_finish = PingPongMessage.finish(b"\x01").encode()
    assert isinstance(ping_pong_helper_continued(vdaf, b"", helper, bad_finish)[0], Rejected)
    assert isinstance(ping_pong_helper_continued(vdaf, b"", helper, finish)[0], Finished)
