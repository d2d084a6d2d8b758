"""What the roles need from a VDAF, in bytes: a thin adapter over :mod:`dap.vdaf`.

:func:`vdaf_ops` maps an interop VDAF object (interop-api.md §2.1) to a
:class:`VdafOps` through :mod:`dap.vdaf.params`; the preparation steps call the
ping-pong functions of :mod:`dap.vdaf.pingpong`. Aggregate shares are stored
and exchanged in their VDAF wire encoding. Only single-round VDAFs (Prio3) are
served by the reference Aggregators.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from dap.errors import DapError, VdafError
from dap.roles.task import TaskConfigError
from dap.vdaf import params as vdaf_params
from dap.vdaf.pingpong import (
    Continued,
    Finished,
    Rejected,
    ping_pong_helper_init,
    ping_pong_leader_continued,
    ping_pong_leader_init,
)

__all__ = ["VdafOps", "vdaf_ops"]


class VdafOps:
    """Byte-level operations of one VDAF instance (agg_param is always empty: Prio3)."""

    def __init__(self, params: vdaf_params.VdafParams) -> None:
        vdaf = params.build()
        if getattr(vdaf, "ROUNDS", None) != 1:
            raise TaskConfigError(f"vdaf: {params.type} is not served (only Prio3)")
        self.vdaf = vdaf
        self.params = params
        self.verify_key_size = vdaf.VERIFY_KEY_SIZE

    # --- checks ----------------------------------------------------------------------

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
        try:
            self.vdaf.decode_input_share(agg_id, bytes(payload))
        except DapError:
            return False
        return True

    # --- preparation -----------------------------------------------------------------

    def leader_init(self, verify_key: bytes, report_id: bytes, public_share: bytes,
                    input_share: bytes) -> tuple[Any, bytes]:
        state, outbound = ping_pong_leader_init(
            self.vdaf, verify_key, b"", bytes(report_id), bytes(public_share), bytes(input_share))
        if not isinstance(state, Continued) or outbound is None:
            raise VdafError(getattr(state, "reason", "leader init failed"))
        return state, outbound

    def leader_continued(self, state: Any, inbound: bytes) -> Any:
        """The Leader's output share after the Helper's message; VdafError if rejected."""
        new_state, outbound = ping_pong_leader_continued(self.vdaf, b"", state, bytes(inbound))
        if isinstance(new_state, Finished) and outbound is None:
            return new_state.out_share
        raise VdafError(getattr(new_state, "reason", "") or "Leader preparation did not finish")

    def helper_init(self, verify_key: bytes, report_id: bytes, public_share: bytes,
                    input_share: bytes, inbound: bytes) -> tuple[Any, bytes]:
        """(out_share, outbound finish message); DecodeError for an undecodable input
        share (-> invalid_message), VdafError for any other failure (-> vdaf_prep_error)."""
        from dap.errors import DecodeError

        if not self.input_share_ok(1, input_share):
            raise DecodeError("Helper input share does not decode")
        state, outbound = ping_pong_helper_init(
            self.vdaf, verify_key, b"", bytes(report_id), bytes(public_share), bytes(input_share),
            bytes(inbound))
        if isinstance(state, Finished) and outbound is not None:
            return state.out_share, outbound
        if isinstance(state, Rejected):
            raise VdafError(state.reason or "Helper preparation rejected")
        raise VdafError("multi-round preparation is not served")

    # --- aggregation -----------------------------------------------------------------

    def aggregate(self, out_shares: list[Any]) -> bytes:
        return self.vdaf.encode_agg_share(self.vdaf.aggregate(None, out_shares))

    def merge(self, a: bytes, b: bytes) -> bytes:
        v = self.vdaf
        return v.encode_agg_share(
            v.merge(None, [v.decode_agg_share(None, bytes(a)), v.decode_agg_share(None, bytes(b))]))

    def empty_share(self) -> bytes:
        return self.vdaf.encode_agg_share(self.vdaf.agg_init(None))

    # --- client and collector --------------------------------------------------------

    def parse_measurement(self, value: Any) -> Any:
        return self.params.measurement_from_interop(value)

    def shard(self, measurement: Any, report_id: bytes) -> tuple[bytes, bytes, bytes]:
        """(public_share, leader input share, helper input share), encoded."""
        public_share, shares = self.vdaf.shard_encoded(
            measurement, bytes(report_id), os.urandom(self.vdaf.RAND_SIZE))
        return public_share, shares[0], shares[1]

    def unshard(self, leader_share: bytes, helper_share: bytes, count: int) -> Any:
        v = self.vdaf
        return v.unshard(None, [v.decode_agg_share(None, leader_share),
                                v.decode_agg_share(None, helper_share)], count)

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
