"""What the roles need from a VDAF, in bytes: a thin adapter over :mod:`dap.vdaf`.

:func:`vdaf_ops` maps an interop VDAF object (interop-api.md §2.1) to a
:class:`VdafOps` through :mod:`dap.vdaf.params`; the preparation steps call the
ping-pong functions of :mod:`dap.vdaf.pingpong`. Aggregate shares are stored
and exchanged in their VDAF wire encoding.

Two shapes are served: single-round VDAFs with an empty aggregation parameter
(Prio3: the job finishes inside the init PUT) and two-round VDAFs that need an
aggregation parameter (Poplar1: init PUT, then one AggregationJobContinueReq at
step 1; aggregation happens per collection, see :mod:`dap.roles.param_leader`).
Every operation takes the *encoded* aggregation parameter (``b""`` for Prio3,
the default) and decodes it here.
"""

from __future__ import annotations

import os
import struct
from functools import lru_cache
from typing import Any

from dap.errors import DapError, DecodeError, VdafError
from dap.roles.task import TaskConfigError
from dap.vdaf import params as vdaf_params
from dap.vdaf.pingpong import (
    Continued,
    Finished,
    Rejected,
    State,
    ping_pong_helper_continued,
    ping_pong_helper_init,
    ping_pong_leader_continued,
    ping_pong_leader_init,
)
from dap.vdaf.poplar1 import Poplar1, Poplar1PrepState

__all__ = ["VdafOps", "vdaf_ops"]


class VdafOps:
    """Byte-level operations of one VDAF instance; ``agg_param`` arguments are encoded."""

    def __init__(self, params: vdaf_params.VdafParams) -> None:
        vdaf = params.build()
        self.vdaf = vdaf
        self.params = params
        self.verify_key_size = vdaf.VERIFY_KEY_SIZE
        #: Whether aggregation needs a parameter chosen by the Collector (Poplar1): the
        #: Leader then aggregates per collection job, not per upload.
        self.needs_agg_param = not self.agg_param_ok(b"")
        rounds = getattr(vdaf, "ROUNDS", None)
        # The roles drive exactly these two shapes (dap/roles/param_leader.py and the
        # Prio3 path of dap/roles/leader.py); anything else would need more job steps.
        if (rounds, self.needs_agg_param) not in ((1, False), (2, True)):
            raise TaskConfigError(
                f"vdaf: {params.type} is not served ({rounds} rounds, aggregation parameter"
                f" {'required' if self.needs_agg_param else 'empty'})")

    def _param(self, agg_param: bytes) -> Any:
        return self.vdaf.decode_agg_param(bytes(agg_param))

    # --- checks ----------------------------------------------------------------------

    def is_valid(self, agg_param: bytes, previous: list[bytes]) -> bool:
        """VDAF ``is_valid``: may a report used with ``previous`` params be prepared with this one?"""
        return self.vdaf.is_valid(self._param(agg_param), [self._param(p) for p in previous])

    def agg_param_ok(self, agg_param: bytes) -> bool:
        try:
            self.vdaf.decode_agg_param(bytes(agg_param))
        except DapError:
            return False
        return True

    def public_share_ok(self, public_share: bytes) -> bool:
        try:
            self.vdaf.decode_public_share(bytes(public_share))
        except DapError:
            return False
        return True

    def input_share_ok(self, agg_id: int, payload: bytes) -> bool:
        # A VDAF with a check-only path (Prio3) skips building the share it would throw away.
        check = getattr(self.vdaf, "check_input_share", self.vdaf.decode_input_share)
        try:
            check(agg_id, bytes(payload))
        except DapError:
            return False
        return True

    # --- preparation -----------------------------------------------------------------

    def leader_init(self, verify_key: bytes, report_id: bytes, public_share: bytes,
                    input_share: bytes, agg_param: bytes = b"") -> tuple[Any, bytes]:
        state, outbound = ping_pong_leader_init(
            self.vdaf, verify_key, bytes(agg_param), bytes(report_id), bytes(public_share),
            bytes(input_share))
        if not isinstance(state, Continued) or outbound is None:
            raise VdafError(getattr(state, "reason", "leader init failed"))
        return state, outbound

    def leader_continued(self, state: Any, inbound: bytes, agg_param: bytes = b"") -> Any:
        """Single round: the Leader's output share after the Helper's finish; VdafError if rejected."""
        new_state, outbound = ping_pong_leader_continued(self.vdaf, bytes(agg_param), state,
                                                         bytes(inbound))
        if isinstance(new_state, Finished) and outbound is None:
            return new_state.out_share
        raise VdafError(getattr(new_state, "reason", "") or "Leader preparation did not finish")

    def leader_step(self, state: Any, inbound: bytes, agg_param: bytes) -> tuple[State, bytes | None]:
        """Multi-round: the Leader's ping-pong transition on the Helper's ``continue``.

        For Poplar1 this is ``Finished(out_share)`` with the ``finish`` message to send at
        step 1, or ``Rejected`` (sketch verification failed: the report is left out).
        """
        return ping_pong_leader_continued(self.vdaf, bytes(agg_param), state, bytes(inbound))

    def helper_init(self, verify_key: bytes, report_id: bytes, public_share: bytes,
                    input_share: bytes, inbound: bytes, agg_param: bytes = b"") -> tuple[Any, bytes]:
        """Single round: (out_share, outbound finish message); DecodeError for an undecodable
        input share (-> invalid_message), VdafError for any other failure (-> vdaf_prep_error)."""
        state, outbound = self.helper_init_step(verify_key, report_id, public_share, input_share,
                                                inbound, agg_param)
        if isinstance(state, Finished):
            return state.out_share, outbound
        raise VdafError("this VDAF needs more than one round (served by dap.roles.param_helper)")

    def helper_init_step(self, verify_key: bytes, report_id: bytes, public_share: bytes,
                         input_share: bytes, inbound: bytes,
                         agg_param: bytes) -> tuple[Continued | Finished, bytes]:
        """Any number of rounds: the Helper's state after init and the message to answer with.

        ``Continued`` (Poplar1: waiting for step 1) or ``Finished`` (Prio3); DecodeError /
        VdafError as :meth:`helper_init`.
        """
        if not self.input_share_ok(1, input_share):
            raise DecodeError("Helper input share does not decode")
        state, outbound = ping_pong_helper_init(
            self.vdaf, verify_key, bytes(agg_param), bytes(report_id), bytes(public_share),
            bytes(input_share), bytes(inbound))
        if isinstance(state, Rejected) or outbound is None:
            raise VdafError(getattr(state, "reason", "") or "Helper preparation rejected")
        return state, outbound

    def helper_continued(self, state: Any, inbound: bytes, agg_param: bytes) -> tuple[State, bytes | None]:
        """The Helper's transition on the Leader's step-1 (or later) message."""
        return ping_pong_helper_continued(self.vdaf, bytes(agg_param), state, bytes(inbound))

    # --- prep state at rest (the Helper keeps it between init and step 1) -------------

    def encode_prep_state(self, state: Continued) -> bytes:
        """A Helper's ``Continued`` state as bytes, so it survives a restart (Poplar1 only).

        Layout: ``u8 ping-pong round || u8 sketch round || u16 level || u8 agg_id ||
        corr_a || corr_b || output share`` (field elements in the level's field).
        """
        ps = state.prep_state
        if not isinstance(self.vdaf, Poplar1) or not isinstance(ps, Poplar1PrepState):
            raise VdafError(f"no stored form for the prep state of {self.params.type}")
        field = self.vdaf.current_field(ps.level)
        return (struct.pack(">BBHB", state.prep_round, ps.sketch_round, ps.level, ps.agg_id)
                + field.encode_vec([ps.corr_a, ps.corr_b])
                + self.vdaf.encode_out_share(ps.out_share))

    def decode_prep_state(self, data: bytes, agg_param: bytes) -> Continued:
        if not isinstance(self.vdaf, Poplar1):
            raise VdafError(f"no stored form for the prep state of {self.params.type}")
        prep_round, sketch_round, level, agg_id = struct.unpack(">BBHB", data[:5])
        field = self.vdaf.current_field(level)
        corr_end = 5 + 2 * field.ENCODED_SIZE
        corr_a, corr_b = field.decode_vec_len(data[5:corr_end], 2, what="stored prep state")
        out_share = self.vdaf.decode_out_share(self._param(agg_param), data[corr_end:])
        return Continued(Poplar1PrepState(sketch_round, level, agg_id, corr_a, corr_b, out_share),
                         prep_round)

    def encode_out_share(self, out_share: Any) -> bytes:
        return self.vdaf.encode_out_share(out_share)

    def decode_out_share(self, data: bytes, agg_param: bytes) -> Any:
        return self.vdaf.decode_out_share(self._param(agg_param), bytes(data))

    # --- aggregation -----------------------------------------------------------------

    def aggregate(self, out_shares: list[Any], agg_param: bytes = b"") -> bytes:
        return self.vdaf.encode_agg_share(self.vdaf.aggregate(self._param(agg_param), out_shares))

    def merge(self, a: bytes, b: bytes, agg_param: bytes = b"") -> bytes:
        v = self.vdaf
        param = self._param(agg_param)
        return v.encode_agg_share(
            v.merge(param, [v.decode_agg_share(param, bytes(a)), v.decode_agg_share(param, bytes(b))]))

    def empty_share(self, agg_param: bytes = b"") -> bytes:
        return self.vdaf.encode_agg_share(self.vdaf.agg_init(self._param(agg_param)))

    # --- client and collector --------------------------------------------------------

    def parse_measurement(self, value: Any) -> Any:
        return self.params.measurement_from_interop(value)

    def shard(self, measurement: Any, report_id: bytes) -> tuple[bytes, bytes, bytes]:
        """(public_share, leader input share, helper input share), encoded."""
        public_share, shares = self.vdaf.shard_encoded(
            measurement, bytes(report_id), os.urandom(self.vdaf.RAND_SIZE))
        return public_share, shares[0], shares[1]

    def unshard(self, leader_share: bytes, helper_share: bytes, count: int,
                agg_param: bytes = b"") -> Any:
        v = self.vdaf
        param = self._param(agg_param)
        return v.unshard(param, [v.decode_agg_share(param, leader_share),
                                 v.decode_agg_share(param, helper_share)], count)

    def result_to_interop(self, result: Any) -> Any:
        return self.params.result_to_interop(result)


@lru_cache(maxsize=64)
def _cached(key: str) -> VdafOps:
    import json

    spec = json.loads(key)
    try:
        return VdafOps(vdaf_params.VdafParams.from_interop(spec))
    except (DapError, ValueError, TypeError, KeyError) as exc:
        raise TaskConfigError(str(exc)) from None


def vdaf_ops(spec: dict) -> VdafOps:
    """The :class:`VdafOps` for an interop VDAF object; TaskConfigError if unsupported."""
    import json

    if not isinstance(spec, dict):
        raise TaskConfigError("vdaf: expected an object")
    return _cached(json.dumps(spec, sort_keys=True))
