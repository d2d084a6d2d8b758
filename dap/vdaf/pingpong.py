"""The VDAF ping-pong topology (VDAF-08 section 5.8) that DAP-09 aggregation uses.

Two Aggregators take turns: the Leader opens with ``initialize(prep_share)``,
each side combines the two prep shares of a round when it holds both, and the
side that computes the last prep message sends ``finish(prep_msg)``. Payloads
are :class:`dap.messages.PingPongMessage` encodings; the functions here take
and return those bytes, exactly what travels in ``PrepareInit.payload`` /
``PrepareResp.payload`` / ``PrepareContinue.payload``.

Every function returns ``(state, outbound)``: ``state`` is :class:`Continued`
(waiting for the peer), :class:`Finished` (holding an output share) or
:class:`Rejected`; ``outbound`` is the encoded message to send, or ``None``.
A :class:`dap.errors.VdafError` or :class:`dap.errors.DecodeError` (bad share,
failed proof, malformed message) turns into ``Rejected`` with the reason;
other exceptions are bugs and propagate.

Flow for a 1-round VDAF (Prio3), per report::

    Leader  ping_pong_leader_init            -> Continued(round 0), initialize(share_0)
    Helper  ping_pong_helper_init(inbound)   -> Finished(out_1),    finish(prep_msg)
    Leader  ping_pong_leader_continued(...)  -> Finished(out_0),    None

For 2 rounds (Poplar1) the Helper answers ``continue(prep_msg, share)`` and
stays Continued; the Leader's ``ping_pong_leader_continued`` then finishes and
sends ``finish``, which the Helper consumes with ``ping_pong_helper_continued``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeAlias

import attrs

from dap.errors import DecodeError, VdafError
from dap.messages import PingPongMessage, PingPongType

__all__ = [
    "Continued",
    "Finished",
    "PingPongVdaf",
    "Rejected",
    "State",
    "ping_pong_continued",
    "ping_pong_helper_continued",
    "ping_pong_helper_init",
    "ping_pong_leader_continued",
    "ping_pong_leader_init",
    "ping_pong_transition",
]


class PingPongVdaf(Protocol):
    """The part of the VDAF interface the ping-pong functions use."""

    ROUNDS: int

    def prep_init(
        self, verify_key: bytes, agg_id: int, agg_param: Any, nonce: bytes, public_share: Any, input_share: Any
    ) -> tuple[Any, Any]: ...

    def prep_shares_to_prep(self, agg_param: Any, prep_shares: Sequence[Any]) -> Any: ...

    def prep_next(self, prep_state: Any, prep_msg: Any) -> Any: ...

    def decode_agg_param(self, encoded: bytes) -> Any: ...

    def decode_public_share(self, encoded: bytes) -> Any: ...

    def decode_input_share(self, agg_id: int, encoded: bytes) -> Any: ...

    def encode_prep_share(self, prep_share: Any) -> bytes: ...

    def decode_prep_share(self, prep_state: Any, encoded: bytes) -> Any: ...

    def encode_prep_msg(self, prep_msg: Any) -> bytes: ...

    def decode_prep_msg(self, prep_state: Any, encoded: bytes) -> Any: ...


@attrs.frozen
class Continued:
    """Waiting for the peer's next message; ``prep_round`` counts from 0."""

    prep_state: Any
    prep_round: int


@attrs.frozen
class Finished:
    """Preparation succeeded; ``out_share`` is ready to aggregate."""

    out_share: Any


@attrs.frozen
class Rejected:
    """Preparation failed; ``reason`` says why (for logs, not for the wire)."""

    reason: str = ""


State: TypeAlias = Continued | Finished | Rejected

_FAILURES = (VdafError, DecodeError)


def ping_pong_leader_init(
    vdaf: PingPongVdaf,
    verify_key: bytes,
    agg_param: bytes,
    nonce: bytes,
    public_share: bytes,
    input_share: bytes,
) -> tuple[State, bytes | None]:
    """Leader: ``prep_init`` as Aggregator 0 and the ``initialize`` message."""
    try:
        prep_state, prep_share = vdaf.prep_init(
            verify_key,
            0,
            vdaf.decode_agg_param(agg_param),
            nonce,
            vdaf.decode_public_share(public_share),
            vdaf.decode_input_share(0, input_share),
        )
        outbound = PingPongMessage.initialize(vdaf.encode_prep_share(prep_share)).encode()
    except _FAILURES as exc:
        return Rejected(str(exc)), None
    return Continued(prep_state, 0), outbound


def ping_pong_helper_init(
    vdaf: PingPongVdaf,
    verify_key: bytes,
    agg_param: bytes,
    nonce: bytes,
    public_share: bytes,
    input_share: bytes,
    inbound: bytes,
) -> tuple[State, bytes | None]:
    """Helper: ``prep_init`` as Aggregator 1, combine with the Leader's share, answer."""
    try:
        decoded_param = vdaf.decode_agg_param(agg_param)
        prep_state, prep_share = vdaf.prep_init(
            verify_key,
            1,
            decoded_param,
            nonce,
            vdaf.decode_public_share(public_share),
            vdaf.decode_input_share(1, input_share),
        )
        message = PingPongMessage.decode(inbound)
        if message.type != PingPongType.INITIALIZE:
            return Rejected(f"expected an initialize message, got {message.type.name.lower()}"), None
        prep_shares = [vdaf.decode_prep_share(prep_state, message.prep_share), prep_share]
        return ping_pong_transition(vdaf, decoded_param, prep_shares, prep_state, 0)
    except _FAILURES as exc:
        return Rejected(str(exc)), None


def ping_pong_transition(
    vdaf: PingPongVdaf,
    agg_param: Any,
    prep_shares: Sequence[Any],
    prep_state: Any,
    prep_round: int,
) -> tuple[State, bytes]:
    """Combine a round's prep shares (Leader's first) and step; raises on failure.

    After the last round: ``Finished`` and ``finish(prep_msg)``; otherwise
    ``Continued`` in the next round and ``continue(prep_msg, prep_share)``.
    """
    prep_msg = vdaf.prep_shares_to_prep(agg_param, prep_shares)
    encoded_msg = vdaf.encode_prep_msg(prep_msg)
    out = vdaf.prep_next(prep_state, prep_msg)
    if prep_round + 1 == vdaf.ROUNDS:
        return Finished(out), PingPongMessage.finish(encoded_msg).encode()
    next_state, prep_share = out
    outbound = PingPongMessage.continue_(encoded_msg, vdaf.encode_prep_share(prep_share)).encode()
    return Continued(next_state, prep_round + 1), outbound


def ping_pong_continued(
    vdaf: PingPongVdaf,
    is_leader: bool,
    agg_param: bytes,
    state: State,
    inbound: bytes,
) -> tuple[State, bytes | None]:
    """Either side, on a ``continue`` or ``finish`` message while ``Continued``."""
    if not isinstance(state, Continued):
        return Rejected(f"received a message in state {type(state).__name__}"), None
    try:
        message = PingPongMessage.decode(inbound)
        if message.type == PingPongType.INITIALIZE:
            return Rejected("unexpected initialize message"), None
        prep_round = state.prep_round
        prep_msg = vdaf.decode_prep_msg(state.prep_state, message.prep_msg)
        out = vdaf.prep_next(state.prep_state, prep_msg)
        if prep_round + 1 < vdaf.ROUNDS and message.type == PingPongType.CONTINUE:
            next_state, prep_share = out
            prep_shares = [vdaf.decode_prep_share(next_state, message.prep_share), prep_share]
            if is_leader:
                prep_shares.reverse()
            return ping_pong_transition(vdaf, vdaf.decode_agg_param(agg_param), prep_shares, next_state, prep_round + 1)
        if prep_round + 1 == vdaf.ROUNDS and message.type == PingPongType.FINISH:
            return Finished(out), None
        return Rejected(f"unexpected {message.type.name.lower()} message in round {prep_round}"), None
    except _FAILURES as exc:
        return Rejected(str(exc)), None


def ping_pong_leader_continued(
    vdaf: PingPongVdaf, agg_param: bytes, state: State, inbound: bytes
) -> tuple[State, bytes | None]:
    """Leader, on the Helper's ``continue`` / ``finish``."""
    return ping_pong_continued(vdaf, True, agg_param, state, inbound)


def ping_pong_helper_continued(
    vdaf: PingPongVdaf, agg_param: bytes, state: State, inbound: bytes
) -> tuple[State, bytes | None]:
    """Helper, on the Leader's ``continue`` / ``finish``."""
    return ping_pong_continued(vdaf, False, agg_param, state, inbound)
