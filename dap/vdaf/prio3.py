"""Prio3 (VDAF-08 section 7): one class, parameterised by circuit, field, proofs and ID.

:class:`Prio3` implements the whole VDAF interface with the VDAF-08 method
names (``shard``, ``prep_init``, ``prep_shares_to_prep``, ``prep_next``,
``aggregate``, ``unshard``) plus the ``encode_*`` / ``decode_*`` pairs for
every message. The standard instances are built by the factories at the
bottom (:func:`Prio3Count`, :func:`Prio3Sum`, :func:`Prio3SumVec`,
:func:`Prio3Histogram`, and the test-only :func:`Prio3MultiHotHistogram`,
:func:`Prio3SumVecWithMultiproof`); they are cached, as building a large
instance precomputes NTT tables.

Every invalid input (wrong lengths, elements out of range, a failed proof, a
joint-randomness mismatch, a bad measurement) raises
:class:`dap.errors.VdafError`.

Layout of ``rand`` (``RAND_SIZE`` bytes, 16-byte seeds): per Helper j = 1..
SHARES-1 ``k_meas[j], k_proofs[j]`` (``, k_blind[j]`` with joint randomness),
then ``k_blind[leader]`` (joint randomness only), then ``k_prove``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from operator import add
from typing import Any, ClassVar, TypeAlias

import attrs

from dap.errors import VdafError
from dap.vdaf.circuits import Count, Histogram, MultiHotHistogram, Sum, SumVec
from dap.vdaf.field import Field, Field64, Field128
from dap.vdaf.flp import FlpGeneric, Valid
from dap.vdaf.xof import Xof, XofTurboShake128, format_dst

__all__ = [
    "HelperInputShare",
    "InputShare",
    "LeaderInputShare",
    "OutShare",
    "Prio3",
    "Prio3Count",
    "Prio3Histogram",
    "Prio3MultiHotHistogram",
    "Prio3PrepShare",
    "Prio3PrepState",
    "Prio3Sum",
    "Prio3SumVec",
    "Prio3SumVecWithMultiproof",
    "PublicShare",
    "USAGE_JOINT_RANDOMNESS",
    "USAGE_JOINT_RAND_PART",
    "USAGE_JOINT_RAND_SEED",
    "USAGE_MEAS_SHARE",
    "USAGE_PROOF_SHARE",
    "USAGE_PROVE_RANDOMNESS",
    "USAGE_QUERY_RANDOMNESS",
]

USAGE_MEAS_SHARE = 1
USAGE_PROOF_SHARE = 2
USAGE_JOINT_RANDOMNESS = 3
USAGE_PROVE_RANDOMNESS = 4
USAGE_QUERY_RANDOMNESS = 5
USAGE_JOINT_RAND_SEED = 6
USAGE_JOINT_RAND_PART = 7

#: The joint-randomness parts, one per Aggregator; empty without joint randomness.
PublicShare: TypeAlias = tuple[bytes, ...]
#: An output share and an aggregate share are field vectors of OUTPUT_LEN.
OutShare: TypeAlias = list[int]


@attrs.frozen
class LeaderInputShare:
    """Aggregator 0's input share: its measurement and proofs shares in full."""

    meas_share: list[int]
    proofs_share: list[int]
    k_blind: bytes | None
    #: The wire encoding of ``meas_share`` when the share was decoded from the wire: the
    #: joint-randomness binder contains exactly these bytes, so they need not be rebuilt.
    meas_encoded: bytes | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class HelperInputShare:
    """An Aggregator j >= 1's input share: seeds that expand into its shares."""

    k_meas: bytes
    k_proofs: bytes
    k_blind: bytes | None


InputShare: TypeAlias = LeaderInputShare | HelperInputShare


@attrs.frozen
class Prio3PrepState:
    """What an Aggregator keeps between ``prep_init`` and ``prep_next``."""

    out_share: list[int]
    corrected_joint_rand_seed: bytes | None


@attrs.frozen
class Prio3PrepShare:
    """An Aggregator's verifier share(s) and its joint-randomness part."""

    verifiers_share: list[int]
    joint_rand_part: bytes | None


class Prio3:
    """A Prio3 instance. ``SHARES`` Aggregators, ``PROOFS`` proofs, one round."""

    ROUNDS: ClassVar[int] = 1
    NONCE_SIZE: ClassVar[int] = 16

    def __init__(
        self,
        *,
        name: str,
        algorithm_id: int,
        valid: Valid,
        shares: int = 2,
        proofs: int = 1,
        xof: type[Xof] = XofTurboShake128,
    ) -> None:
        if not 2 <= shares <= 255:
            raise VdafError(f"Prio3 SHARES must be in [2, 255], got {shares}")
        if not 1 <= proofs <= 255:
            raise VdafError(f"Prio3 PROOFS must be in [1, 255], got {proofs}")
        if not 0 <= algorithm_id < 2**32:
            raise VdafError(f"Prio3 algorithm ID must fit in 32 bits, got {algorithm_id}")
        self.name = name
        self.ID = algorithm_id
        self.SHARES = shares
        self.PROOFS = proofs
        self.xof = xof
        self.flp = FlpGeneric(valid)
        self.field: Field = valid.field
        seed = xof.SEED_SIZE
        self.VERIFY_KEY_SIZE = seed
        self.uses_joint_rand = self.flp.JOINT_RAND_LEN > 0
        self.RAND_SIZE = seed * (1 + 2 * (shares - 1) + (shares if self.uses_joint_rand else 0))
        self._dst = {u: format_dst(0, algorithm_id, u) for u in range(1, 8)}
        self._proofs_byte = bytes((proofs,))
        self._zero_seed = bytes(seed)
        flp = self.flp
        e = self.field.ENCODED_SIZE
        self._proofs_len = flp.PROOF_LEN * proofs
        self._leader_share_size = e * (flp.MEAS_LEN + self._proofs_len) + (seed if self.uses_joint_rand else 0)
        self._helper_share_size = seed * (3 if self.uses_joint_rand else 2)
        self._verifiers_len = flp.VERIFIER_LEN * proofs
        self._prep_share_size = e * self._verifiers_len + (seed if self.uses_joint_rand else 0)

    def __repr__(self) -> str:
        extra = f", shares={self.SHARES}" if self.SHARES != 2 else ""
        return f"{self.name}({self.flp.valid!r}{extra})"

    # ------------------------------------------------------------------ XOF use

    def _helper_meas_share(self, agg_id: int, k_meas: bytes) -> tuple[list[int], bytes]:
        """The measurement share and its encoding (what the joint-randomness binder holds)."""
        return self.xof.expand_into_vec_encoded(
            self.field, k_meas, self._dst[USAGE_MEAS_SHARE], bytes((agg_id,)), self.flp.MEAS_LEN
        )

    def _helper_proofs_share(self, agg_id: int, k_proofs: bytes) -> list[int]:
        return self.xof.expand_into_vec(
            self.field,
            k_proofs,
            self._dst[USAGE_PROOF_SHARE],
            bytes((self.PROOFS, agg_id)),
            self._proofs_len,
        )

    def _joint_rand_part(
        self, agg_id: int, k_blind: bytes, meas_share: list[int], nonce: bytes, meas_encoded: bytes | None = None
    ) -> bytes:
        if meas_encoded is None:
            meas_encoded = self.field.encode_vec(meas_share)
        binder = bytes((agg_id,)) + nonce + meas_encoded
        return self.xof.derive_seed(k_blind, self._dst[USAGE_JOINT_RAND_PART], binder)

    def _joint_rand_seed(self, parts: Sequence[bytes]) -> bytes:
        return self.xof.derive_seed(self._zero_seed, self._dst[USAGE_JOINT_RAND_SEED], b"".join(parts))

    def _joint_rands(self, seed: bytes) -> list[int]:
        return self.xof.expand_into_vec(
            self.field,
            seed,
            self._dst[USAGE_JOINT_RANDOMNESS],
            self._proofs_byte,
            self.flp.JOINT_RAND_LEN * self.PROOFS,
        )

    def _query_rands(self, verify_key: bytes, nonce: bytes) -> list[int]:
        return self.xof.expand_into_vec(
            self.field,
            verify_key,
            self._dst[USAGE_QUERY_RANDOMNESS],
            self._proofs_byte + nonce,
            self.flp.QUERY_RAND_LEN * self.PROOFS,
        )

    # ---------------------------------------------------------------- sharding

    def shard(self, measurement: Any, nonce: bytes, rand: bytes) -> tuple[PublicShare, list[InputShare]]:
        """Split ``measurement`` into the public share and one input share per Aggregator."""
        self._check_nonce(nonce)
        if len(rand) != self.RAND_SIZE:
            raise VdafError(f"{self.name}: rand must be {self.RAND_SIZE} bytes, got {len(rand)}")
        flp = self.flp
        field = self.field
        size = self.xof.SEED_SIZE
        seeds = [rand[i : i + size] for i in range(0, len(rand), size)]
        per_helper = 3 if self.uses_joint_rand else 2
        meas = flp.encode(measurement)

        leader_meas = meas
        helpers: list[HelperInputShare] = []
        parts: list[bytes] = [b""]
        for j in range(1, self.SHARES):
            group = seeds[(j - 1) * per_helper : j * per_helper]
            k_blind = group[2] if self.uses_joint_rand else None
            helpers.append(HelperInputShare(k_meas=group[0], k_proofs=group[1], k_blind=k_blind))
            share, share_encoded = self._helper_meas_share(j, group[0])
            leader_meas = field.vec_sub(leader_meas, share)
            if k_blind is not None:
                parts.append(self._joint_rand_part(j, k_blind, share, nonce, share_encoded))
        rest = seeds[(self.SHARES - 1) * per_helper :]
        if self.uses_joint_rand:
            leader_blind, k_prove = rest
            parts[0] = self._joint_rand_part(0, leader_blind, leader_meas, nonce)
            joint_rands = self._joint_rands(self._joint_rand_seed(parts))
            public_share: PublicShare = tuple(parts)
        else:
            (k_prove,) = rest
            leader_blind = None
            joint_rands = []
            public_share = ()

        prove_rands = self.xof.expand_into_vec(
            field,
            k_prove,
            self._dst[USAGE_PROVE_RANDOMNESS],
            self._proofs_byte,
            flp.PROVE_RAND_LEN * self.PROOFS,
        )
        proofs: list[int] = []
        prl, jrl = flp.PROVE_RAND_LEN, flp.JOINT_RAND_LEN
        for i in range(self.PROOFS):
            proofs += flp.prove(meas, prove_rands[i * prl : (i + 1) * prl], joint_rands[i * jrl : (i + 1) * jrl])
        leader_proofs = proofs
        for j, helper in enumerate(helpers, start=1):
            leader_proofs = field.vec_sub(leader_proofs, self._helper_proofs_share(j, helper.k_proofs))
        leader = LeaderInputShare(meas_share=leader_meas, proofs_share=leader_proofs, k_blind=leader_blind)
        return public_share, [leader, *helpers]

    def shard_encoded(self, measurement: Any, nonce: bytes, rand: bytes) -> tuple[bytes, list[bytes]]:
        """:meth:`shard`, returning the wire encodings."""
        public_share, input_shares = self.shard(measurement, nonce, rand)
        return self.encode_public_share(public_share), [self.encode_input_share(s) for s in input_shares]

    # ------------------------------------------------------------- preparation

    def is_valid(self, agg_param: None, previous_agg_params: Sequence[None]) -> bool:
        """An input share may be prepared once, ever."""
        return len(previous_agg_params) == 0

    def prep_init(
        self,
        verify_key: bytes,
        agg_id: int,
        agg_param: None,
        nonce: bytes,
        public_share: PublicShare,
        input_share: InputShare,
    ) -> tuple[Prio3PrepState, Prio3PrepShare]:
        """Expand this Aggregator's share, query the proof(s); return state and prep share."""
        if len(verify_key) != self.VERIFY_KEY_SIZE:
            raise VdafError(f"{self.name}: verify key must be {self.VERIFY_KEY_SIZE} bytes, got {len(verify_key)}")
        if len(nonce) != self.NONCE_SIZE:
            self._check_nonce(nonce)
        if agg_param is not None:
            self._check_agg_param(agg_param)
        flp = self.flp
        if agg_id == 0:
            if type(input_share) is not LeaderInputShare:
                raise VdafError(f"{self.name}: Aggregator 0 needs a Leader input share")
            meas_share = input_share.meas_share
            meas_encoded = input_share.meas_encoded
            proofs_share = input_share.proofs_share
            if len(meas_share) != flp.MEAS_LEN or len(proofs_share) != self._proofs_len:
                raise VdafError(f"{self.name}: Leader input share has the wrong length")
        else:
            self._check_agg_id(agg_id)
            if type(input_share) is not HelperInputShare:
                raise VdafError(f"{self.name}: Aggregator {agg_id} needs a Helper input share")
            meas_share, meas_encoded = self._helper_meas_share(agg_id, input_share.k_meas)
            proofs_share = self._helper_proofs_share(agg_id, input_share.k_proofs)

        if self.uses_joint_rand:
            if input_share.k_blind is None or len(public_share) != self.SHARES:
                raise VdafError(f"{self.name}: missing blind or joint-randomness parts")
            part = self._joint_rand_part(agg_id, input_share.k_blind, meas_share, nonce, meas_encoded)
            parts = list(public_share)
            parts[agg_id] = part
            corrected_seed: bytes | None = self._joint_rand_seed(parts)
            joint_rands = self._joint_rands(corrected_seed)
        else:
            if public_share or input_share.k_blind is not None:
                raise VdafError(f"{self.name}: unexpected joint-randomness data")
            part = None
            corrected_seed = None
            joint_rands = []

        query_rands = self._query_rands(verify_key, nonce)
        if self.PROOFS == 1:
            verifiers = flp.query(meas_share, proofs_share, query_rands, joint_rands, self.SHARES)
        else:
            verifiers = []
            pl, ql, jl = flp.PROOF_LEN, flp.QUERY_RAND_LEN, flp.JOINT_RAND_LEN
            for i in range(self.PROOFS):
                verifiers += flp.query(
                    meas_share,
                    proofs_share[i * pl : (i + 1) * pl],
                    query_rands[i * ql : (i + 1) * ql],
                    joint_rands[i * jl : (i + 1) * jl],
                    self.SHARES,
                )
        return (
            Prio3PrepState(flp.valid.truncate(meas_share), corrected_seed),
            Prio3PrepShare(verifiers, part),
        )

    def prep_shares_to_prep(self, agg_param: None, prep_shares: Sequence[Prio3PrepShare]) -> bytes | None:
        """Sum the verifier shares, decide every proof; the joint-rand seed (or None)."""
        self._check_agg_param(agg_param)
        if len(prep_shares) != self.SHARES:
            raise VdafError(f"{self.name}: expected {self.SHARES} prep shares, got {len(prep_shares)}")
        p = self.field.MODULUS
        verifier: Any = None
        for share in prep_shares:
            if len(share.verifiers_share) != self._verifiers_len:
                raise VdafError(f"{self.name}: prep share has the wrong length")
            v = share.verifiers_share
            verifier = v if verifier is None else map(add, verifier, v)
        verifier = [x % p for x in verifier]
        vl = self.flp.VERIFIER_LEN
        for i in range(self.PROOFS):
            if not self.flp.decide(verifier[i * vl : (i + 1) * vl]):
                raise VdafError(f"{self.name}: proof verification failed")
        if not self.uses_joint_rand:
            return None
        parts: list[bytes] = []
        for share in prep_shares:
            if share.joint_rand_part is None:
                raise VdafError(f"{self.name}: prep share lacks its joint-randomness part")
            parts.append(share.joint_rand_part)
        return self._joint_rand_seed(parts)

    def prep_next(self, prep_state: Prio3PrepState, prep_msg: bytes | None) -> OutShare:
        """The output share, once the combined joint-rand seed matches ours."""
        if prep_msg != prep_state.corrected_joint_rand_seed:
            raise VdafError(f"{self.name}: joint randomness mismatch (public share was not honest)")
        return prep_state.out_share

    # -------------------------------------------------------- aggregation

    def agg_init(self, agg_param: None) -> list[int]:
        """The empty aggregate share."""
        self._check_agg_param(agg_param)
        return [0] * self.flp.OUTPUT_LEN

    def agg_update(self, agg_param: None, agg_share: list[int], out_share: OutShare) -> list[int]:
        """``agg_share + out_share`` (a new list)."""
        return self._add_checked(agg_share, out_share, "output share")

    def merge(self, agg_param: None, agg_shares: Sequence[list[int]]) -> list[int]:
        """Sum of aggregate shares (from several batches or jobs)."""
        total = self.agg_init(agg_param)
        for share in agg_shares:
            total = self._add_checked(total, share, "aggregate share")
        return total

    def aggregate(self, agg_param: None, out_shares: Sequence[OutShare]) -> list[int]:
        """VDAF-08 ``aggregate``: sum of output shares.

        Summed column by column and reduced once per column (not once per share and
        element): an aggregation job adds hundreds of shares at a time.
        """
        total = self.agg_init(agg_param)
        length = len(total)
        for share in out_shares:
            if len(share) != length:
                raise VdafError(f"{self.name}: output share must have {length} elements, got {len(share)}")
        if not out_shares:
            return total
        p = self.field.MODULUS
        return [sum(column) % p for column in zip(*out_shares)]

    def unshard(self, agg_param: None, agg_shares: Sequence[list[int]], num_measurements: int) -> Any:
        """The aggregate result from every Aggregator's aggregate share."""
        if len(agg_shares) != self.SHARES:
            raise VdafError(f"{self.name}: expected {self.SHARES} aggregate shares, got {len(agg_shares)}")
        return self.flp.decode(self.merge(agg_param, agg_shares), num_measurements)

    def _add_checked(self, left: list[int], right: list[int], what: str) -> list[int]:
        if len(right) != self.flp.OUTPUT_LEN:
            raise VdafError(f"{self.name}: {what} must have {self.flp.OUTPUT_LEN} elements, got {len(right)}")
        return self.field.vec_add(left, right)

    # --------------------------------------------------------------- encodings

    def encode_public_share(self, public_share: PublicShare) -> bytes:
        return b"".join(public_share)

    def decode_public_share(self, encoded: bytes) -> PublicShare:
        if not self.uses_joint_rand:
            if encoded:
                raise VdafError(f"{self.name}: public share must be empty, got {len(encoded)} bytes")
            return ()
        size = self.xof.SEED_SIZE
        if len(encoded) != size * self.SHARES:
            raise VdafError(f"{self.name}: public share must be {size * self.SHARES} bytes, got {len(encoded)}")
        return tuple(encoded[i : i + size] for i in range(0, len(encoded), size))

    def encode_input_share(self, input_share: InputShare) -> bytes:
        blind = input_share.k_blind or b""
        if isinstance(input_share, LeaderInputShare):
            return self.field.encode_vec(input_share.meas_share) + self.field.encode_vec(input_share.proofs_share) + blind
        return input_share.k_meas + input_share.k_proofs + blind

    def check_input_share(self, agg_id: int, encoded: bytes) -> None:
        """The checks of :meth:`decode_input_share` (same VdafError), without decoding.

        For an Aggregator that only stores the share for later (the Leader at upload):
        checking that every element is below the modulus does not need the elements.
        """
        self._check_agg_id(agg_id)
        if agg_id != 0:
            self.decode_input_share(agg_id, encoded)  # seeds only: nothing to save
            return
        if len(encoded) != self._leader_share_size:
            raise VdafError(
                f"{self.name}: Leader input share must be {self._leader_share_size} bytes, got {len(encoded)}"
            )
        size = self.xof.SEED_SIZE
        vectors = encoded[: len(encoded) - size] if self.uses_joint_rand else encoded
        self.field.check_vec(vectors, what="Leader input share")

    def decode_input_share(self, agg_id: int, encoded: bytes) -> InputShare:
        self._check_agg_id(agg_id)
        size = self.xof.SEED_SIZE
        blind = encoded[-size:] if self.uses_joint_rand else None
        if agg_id == 0:
            if len(encoded) != self._leader_share_size:
                raise VdafError(
                    f"{self.name}: Leader input share must be {self._leader_share_size} bytes, got {len(encoded)}"
                )
            vectors = encoded[: len(encoded) - size] if self.uses_joint_rand else encoded
            vec = self.field.decode_vec(vectors, what="Leader input share")
            n = self.flp.MEAS_LEN
            # Strict decoding (every element below the modulus) makes these bytes the
            # canonical encoding of the measurement share.
            return LeaderInputShare(
                meas_share=vec[:n], proofs_share=vec[n:], k_blind=blind,
                meas_encoded=vectors[: n * self.field.ENCODED_SIZE] if self.uses_joint_rand else None,
            )
        if len(encoded) != self._helper_share_size:
            raise VdafError(
                f"{self.name}: Helper input share must be {self._helper_share_size} bytes, got {len(encoded)}"
            )
        return HelperInputShare(k_meas=encoded[:size], k_proofs=encoded[size : 2 * size], k_blind=blind)

    def encode_prep_share(self, prep_share: Prio3PrepShare) -> bytes:
        return self.field.encode_vec(prep_share.verifiers_share) + (prep_share.joint_rand_part or b"")

    def decode_prep_share(self, prep_state: Prio3PrepState | None, encoded: bytes) -> Prio3PrepShare:
        """``prep_state`` is unused by Prio3 (the length is fixed by the instance)."""
        if len(encoded) != self._prep_share_size:
            raise VdafError(f"{self.name}: prep share must be {self._prep_share_size} bytes, got {len(encoded)}")
        if self.uses_joint_rand:
            size = self.xof.SEED_SIZE
            return Prio3PrepShare(
                verifiers_share=self.field.decode_vec(encoded[:-size], what="prep share"),
                joint_rand_part=encoded[-size:],
            )
        return Prio3PrepShare(verifiers_share=self.field.decode_vec(encoded, what="prep share"), joint_rand_part=None)

    def encode_prep_msg(self, prep_msg: bytes | None) -> bytes:
        return prep_msg or b""

    def decode_prep_msg(self, prep_state: Prio3PrepState | None, encoded: bytes) -> bytes | None:
        if not self.uses_joint_rand:
            if encoded:
                raise VdafError(f"{self.name}: prep message must be empty, got {len(encoded)} bytes")
            return None
        if len(encoded) != self.xof.SEED_SIZE:
            raise VdafError(f"{self.name}: prep message must be {self.xof.SEED_SIZE} bytes, got {len(encoded)}")
        return encoded

    def encode_agg_param(self, agg_param: None) -> bytes:
        self._check_agg_param(agg_param)
        return b""

    def decode_agg_param(self, encoded: bytes) -> None:
        if encoded:
            raise VdafError(f"{self.name}: aggregation parameter must be empty, got {len(encoded)} bytes")
        return None

    def encode_agg_share(self, agg_share: list[int]) -> bytes:
        return self.field.encode_vec(agg_share)

    def decode_agg_share(self, agg_param: None, encoded: bytes) -> list[int]:
        return self.field.decode_vec_len(encoded, self.flp.OUTPUT_LEN, what="aggregate share")

    def encode_out_share(self, out_share: OutShare) -> bytes:
        return self.field.encode_vec(out_share)

    def decode_out_share(self, agg_param: None, encoded: bytes) -> OutShare:
        return self.field.decode_vec_len(encoded, self.flp.OUTPUT_LEN, what="output share")

    # ------------------------------------------------------------------ checks

    def _check_nonce(self, nonce: bytes) -> None:
        if len(nonce) != self.NONCE_SIZE:
            raise VdafError(f"{self.name}: nonce must be {self.NONCE_SIZE} bytes, got {len(nonce)}")

    def _check_agg_id(self, agg_id: int) -> None:
        if not 0 <= agg_id < self.SHARES:
            raise VdafError(f"{self.name}: aggregator id {agg_id} not in [0, {self.SHARES})")

    def _check_agg_param(self, agg_param: None) -> None:
        if agg_param is not None:
            raise VdafError(f"{self.name} has no aggregation parameter, got {agg_param!r}")


# ---------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------

#: Test-only algorithm ID the VDAF-08 reference code uses for its experimental variants.
TEST_ONLY_ID = 0xFFFFFFFF


@cache
def Prio3Count(*, shares: int = 2) -> Prio3:  # noqa: N802 - named like the VDAF
    """Prio3Count (ID 0, Field64)."""
    return Prio3(name="Prio3Count", algorithm_id=0, valid=Count(Field64), shares=shares)


@cache
def Prio3Sum(bits: int, *, shares: int = 2) -> Prio3:  # noqa: N802
    """Prio3Sum (ID 1, Field128)."""
    return Prio3(name="Prio3Sum", algorithm_id=1, valid=Sum(bits, Field128), shares=shares)


@cache
def Prio3SumVec(length: int, bits: int, chunk_length: int, *, shares: int = 2) -> Prio3:  # noqa: N802
    """Prio3SumVec (ID 2, Field128)."""
    return Prio3(
        name="Prio3SumVec", algorithm_id=2, valid=SumVec(length, bits, chunk_length, Field128), shares=shares
    )


@cache
def Prio3Histogram(length: int, chunk_length: int, *, shares: int = 2) -> Prio3:  # noqa: N802
    """Prio3Histogram (ID 3, Field128)."""
    return Prio3(
        name="Prio3Histogram", algorithm_id=3, valid=Histogram(length, chunk_length, Field128), shares=shares
    )


@cache
def Prio3MultiHotHistogram(length: int, max_count: int, chunk_length: int, *, shares: int = 2) -> Prio3:  # noqa: N802
    """Experimental Prio3MultiHotHistogram of the VDAF-08 reference code (test-only ID)."""
    return Prio3(
        name="Prio3MultiHotHistogram",
        algorithm_id=TEST_ONLY_ID,
        valid=MultiHotHistogram(length, max_count, chunk_length, Field128),
        shares=shares,
    )


@cache
def Prio3SumVecWithMultiproof(  # noqa: N802
    length: int, bits: int, chunk_length: int, *, proofs: int, field: Field = Field64, shares: int = 2
) -> Prio3:
    """SumVec with several proofs over a smaller field (VDAF-08 reference code, test-only ID)."""
    return Prio3(
        name="Prio3SumVecWithMultiproof",
        algorithm_id=TEST_ONLY_ID,
        valid=SumVec(length, bits, chunk_length, field),
        shares=shares,
        proofs=proofs,
    )
