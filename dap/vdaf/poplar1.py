"""Poplar1 (VDAF-08 section 8): prefix counts over ``BITS``-bit strings, two rounds of sketch verification.

:class:`Poplar1` has the same interface as :class:`dap.vdaf.prio3.Prio3`
(``shard``, ``prep_init``, ``prep_shares_to_prep``, ``prep_next``,
``aggregate``, ``unshard`` and the ``encode_*`` / ``decode_*`` pairs), so the
ping-pong functions of :mod:`dap.vdaf.pingpong` run it unchanged; with
``ROUNDS = 2`` the Helper answers ``continue`` and the Leader ``finish``.
Instances: ``Poplar1.with_bits(bits)`` (cached) or ``Poplar1(bits)``.

A measurement is an integer ``alpha < 2^BITS`` or a sequence of ``BITS``
booleans, element 0 = the most significant bit = tree level 0 (the interop
API form). An aggregation parameter is ``(level, prefixes)``
(:class:`Poplar1AggParam`; a plain pair is accepted): ``level < BITS`` and
strictly increasing ``(level+1)``-bit prefixes. The result is one count per
prefix: how many measurements start with it.

Field-element vectors (prep shares, prep messages, output and aggregate
shares) are :class:`Poplar1FieldVec`: Field64 at inner levels, Field255 at the
leaf level; the field travels with the values because the encodings need it.

Decoding is strict everywhere: exact lengths, canonical field elements, and
for the aggregation parameter zero padding bits, at least one prefix and
strictly increasing prefixes (as libprio 0.16 decodes; the VDAF-08 reference
decoder is lenient and leaves the order check to ``prep_init``). The same
rules apply to a parameter passed as an object. Every invalid input, and a
failed sketch, raises :class:`dap.errors.VdafError`.

``rand`` (80 bytes): IDPF keys (32) || Leader's correlated-randomness seed
(16) || Helper's (16) || the seed of the shard XOF (16).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple

import attrs

from dap.errors import VdafError
from dap.vdaf.field import Field, Field64, Field255
from dap.vdaf.idpf import IdpfPoplar, IdpfPublicShare
from dap.vdaf.xof import XofTurboShake128, format_dst

__all__ = [
    "ALGORITHM_ID",
    "Poplar1",
    "Poplar1AggParam",
    "Poplar1FieldVec",
    "Poplar1InputShare",
    "Poplar1PrepState",
    "USAGE_CORR_INNER",
    "USAGE_CORR_LEAF",
    "USAGE_SHARD_RAND",
    "USAGE_VERIFY_RAND",
]

ALGORITHM_ID = 0x00001000
USAGE_SHARD_RAND = 1
USAGE_CORR_INNER = 2
USAGE_CORR_LEAF = 3
USAGE_VERIFY_RAND = 4

#: The level travels as a u16 in the aggregation parameter.
MAX_BITS = 1 << 16


class Poplar1AggParam(NamedTuple):
    """Which tree level to evaluate and the candidate prefixes at that level."""

    level: int
    prefixes: tuple[int, ...]


@attrs.frozen
class Poplar1FieldVec:
    """Elements of ``field`` (Field64 or Field255, by level)."""

    field: Field
    values: tuple[int, ...]


@attrs.frozen
class Poplar1InputShare:
    """An Aggregator's input share (same layout for the Leader and the Helper).

    ``corr_inner`` holds the ``(A, B)`` correlation shares of the inner levels
    (``A(0), B(0), A(1), B(1), ...``, Field64), ``corr_leaf`` the leaf's pair
    (Field255); ``corr_seed`` expands into the ``(a, b, c)`` shares.
    """

    idpf_key: bytes
    corr_seed: bytes
    corr_inner: tuple[int, ...]
    corr_leaf: tuple[int, int]


@attrs.frozen
class Poplar1PrepState:
    """What an Aggregator keeps between the rounds.

    ``sketch_round`` is the round whose prep message comes next: 1 (the
    combined sketch ``X, Y, Z``) or 2 (the verdict: an empty message).
    """

    sketch_round: int
    level: int
    agg_id: int
    corr_a: int
    corr_b: int
    out_share: Poplar1FieldVec


class Poplar1:
    """Poplar1 with ``BITS``-bit measurements; two Aggregators, two rounds."""

    ID: ClassVar[int] = ALGORITHM_ID
    SHARES: ClassVar[int] = 2
    ROUNDS: ClassVar[int] = 2
    NONCE_SIZE: ClassVar[int] = 16
    VERIFY_KEY_SIZE: ClassVar[int] = XofTurboShake128.SEED_SIZE
    RAND_SIZE: ClassVar[int] = 3 * XofTurboShake128.SEED_SIZE + IdpfPoplar.RAND_SIZE

    name = "Poplar1"
    xof = XofTurboShake128

    def __init__(self, bits: int) -> None:
        self.BITS = _checked_bits(bits)
        self.idpf = IdpfPoplar(bits, 2)
        self._dst = {usage: format_dst(0, ALGORITHM_ID, usage) for usage in range(1, 5)}
        seed = XofTurboShake128.SEED_SIZE
        self.INPUT_SHARE_SIZE = 2 * seed + 2 * (bits - 1) * Field64.ENCODED_SIZE + 2 * Field255.ENCODED_SIZE

    @staticmethod
    def with_bits(bits: int) -> Poplar1:
        """The cached instance for ``bits`` (equal parameters give the same object)."""
        return _instance(_checked_bits(bits))

    def __repr__(self) -> str:
        return f"Poplar1(bits={self.BITS})"

    def current_field(self, level: int) -> Field:
        return self.idpf.current_field(level)

    # ------------------------------------------------------------ measurements

    def measurement_to_int(self, measurement: Any) -> int:
        """``alpha`` from an integer or from ``BITS`` booleans (element 0 = most significant bit)."""
        bits = self.BITS
        if isinstance(measurement, bool):
            raise VdafError(f"Poplar1 measurement: expected an integer or {bits} booleans, got {measurement!r}")
        if isinstance(measurement, int):
            if not 0 <= measurement < 1 << bits:
                raise VdafError(f"Poplar1 measurement: {measurement} is not in [0, 2^{bits})")
            return measurement
        if isinstance(measurement, (list, tuple)):
            if len(measurement) != bits:
                raise VdafError(f"Poplar1 measurement: expected {bits} booleans, got {len(measurement)}")
            alpha = 0
            for i, bit in enumerate(measurement):
                if not isinstance(bit, bool):
                    raise VdafError(f"Poplar1 measurement[{i}]: expected a boolean, got {bit!r}")
                alpha = alpha << 1 | bit
            return alpha
        raise VdafError(f"Poplar1 measurement: expected an integer or {bits} booleans, got {measurement!r}")

    def measurement_to_bools(self, alpha: int) -> tuple[bool, ...]:
        """The interop form of ``alpha``: ``BITS`` booleans, most significant bit first."""
        alpha = self.measurement_to_int(alpha)
        return tuple(bool(alpha >> (self.BITS - 1 - i) & 1) for i in range(self.BITS))

    # ---------------------------------------------------------------- sharding

    def shard(self, measurement: Any, nonce: bytes, rand: bytes) -> tuple[IdpfPublicShare, list[Poplar1InputShare]]:
        """The IDPF public share and the two input shares."""
        alpha = self.measurement_to_int(measurement)
        self._check_nonce(nonce)
        if len(rand) != self.RAND_SIZE:
            raise VdafError(f"Poplar1: rand must be {self.RAND_SIZE} bytes, got {len(rand)}")
        bits = self.BITS
        seed = XofTurboShake128.SEED_SIZE
        idpf_rand = rand[: IdpfPoplar.RAND_SIZE]
        corr_seeds = [bytes(rand[32 : 32 + seed]), bytes(rand[32 + seed : 32 + 2 * seed])]
        k_shard = rand[32 + 2 * seed :]

        # One stream for the authenticators, then the Helper's (A, B) shares;
        # it switches between Field64 and Field255 where the reads do.
        shard_xof = XofTurboShake128(k_shard, self._dst[USAGE_SHARD_RAND], nonce)
        auth_inner = shard_xof.next_vec(Field64, bits - 1)
        auth_leaf = shard_xof.next_vec(Field255, 1)[0]
        public_share, keys = self.idpf.gen(
            alpha, [[1, k] for k in auth_inner], [1, auth_leaf], nonce, idpf_rand
        )

        # The sums of both Aggregators' (a, b, c) shares, per level.
        abc_inner = Field64.vec_add(*(self._corr_inner_abc(j, corr_seeds[j], nonce, bits - 1) for j in (0, 1)))
        abc_leaf = Field255.vec_add(*(self._corr_leaf_abc(j, corr_seeds[j], nonce) for j in (0, 1)))
        corr: list[list[int]] = [[], []]
        corr_leaf: list[tuple[int, int]] = []
        for level in range(bits):
            field = self.current_field(level)
            p = field.MODULUS
            if level < bits - 1:
                a, b, c = abc_inner[3 * level : 3 * level + 3]
                k = auth_inner[level]
            else:
                a, b, c = abc_leaf
                k = auth_leaf
            big_a = (-2 * a + k) % p
            big_b = (a * a + b - a * k + c) % p
            helper_a, helper_b = shard_xof.next_vec(field, 2)
            leader_a, leader_b = (big_a - helper_a) % p, (big_b - helper_b) % p
            if level < bits - 1:
                corr[0] += (leader_a, leader_b)
                corr[1] += (helper_a, helper_b)
            else:
                corr_leaf = [(leader_a, leader_b), (helper_a, helper_b)]
        input_shares = [
            Poplar1InputShare(keys[j], corr_seeds[j], tuple(corr[j]), corr_leaf[j]) for j in (0, 1)
        ]
        return public_share, input_shares

    def shard_encoded(self, measurement: Any, nonce: bytes, rand: bytes) -> tuple[bytes, list[bytes]]:
        """:meth:`shard`, returning the wire encodings."""
        public_share, input_shares = self.shard(measurement, nonce, rand)
        return self.encode_public_share(public_share), [self.encode_input_share(s) for s in input_shares]

    # ------------------------------------------------------------- preparation

    def is_valid(self, agg_param: Any, previous_agg_params: Sequence[Any]) -> bool:
        """VDAF-08: a report may be prepared at most once per level (prefixes and order do not matter).

        Reusing a level would reuse that level's correlated randomness. (Later
        drafts also require increasing levels and prefixes extending the
        previous ones; VDAF-08 does not.)
        """
        level = self.agg_param(agg_param).level
        return all(self.agg_param(previous).level != level for previous in previous_agg_params)

    def prep_init(
        self,
        verify_key: bytes,
        agg_id: int,
        agg_param: Any,
        nonce: bytes,
        public_share: IdpfPublicShare,
        input_share: Poplar1InputShare,
    ) -> tuple[Poplar1PrepState, Poplar1FieldVec]:
        """Evaluate the IDPF at the prefixes; the round-1 sketch share."""
        if len(verify_key) != self.VERIFY_KEY_SIZE:
            raise VdafError(f"Poplar1: verify key must be {self.VERIFY_KEY_SIZE} bytes, got {len(verify_key)}")
        self._check_agg_id(agg_id)
        self._check_nonce(nonce)
        level, prefixes = self.agg_param(agg_param)
        self._check_input_share(input_share)
        field = self.current_field(level)
        p = field.MODULUS

        values = self.idpf.eval(agg_id, public_share, input_share.idpf_key, level, prefixes, nonce)
        if level < self.BITS - 1:
            # Generating the elements of the levels below and dropping them is
            # the draft's fast-forward (rejection sampling included).
            a, b, c = self._corr_inner_abc(agg_id, input_share.corr_seed, nonce, level + 1)[3 * level :]
            corr_a, corr_b = input_share.corr_inner[2 * level : 2 * level + 2]
        else:
            a, b, c = self._corr_leaf_abc(agg_id, input_share.corr_seed, nonce)
            corr_a, corr_b = input_share.corr_leaf
        verify_rand = XofTurboShake128.expand_into_vec(
            field, verify_key, self._dst[USAGE_VERIFY_RAND], nonce + level.to_bytes(2, "big"), len(prefixes)
        )
        x, y, z = a, b, c
        for r, (data, auth) in zip(verify_rand, values):
            rd = r * data
            x += rd
            y += r * rd
            z += r * auth
        out_share = Poplar1FieldVec(field, tuple(data for data, _ in values))
        state = Poplar1PrepState(1, level, agg_id, corr_a, corr_b, out_share)
        return state, Poplar1FieldVec(field, (x % p, y % p, z % p))

    def prep_shares_to_prep(self, agg_param: Any, prep_shares: Sequence[Poplar1FieldVec]) -> Poplar1FieldVec | None:
        """Round 1: the combined sketch. Round 2: ``None`` if the sketch checks out, else VdafError."""
        level, _ = self.agg_param(agg_param)
        field = self.current_field(level)
        if len(prep_shares) != 2:
            raise VdafError(f"Poplar1: expected 2 prep shares, got {len(prep_shares)}")
        lengths = set()
        for share in prep_shares:
            self._check_vec(share, field, "prep share")
            lengths.add(len(share.values))
        if len(lengths) != 1 or not lengths <= {1, 3}:
            raise VdafError(f"Poplar1: prep shares must both have 3 (round 1) or 1 (round 2) elements, got {lengths}")
        sketch = field.vec_add(prep_shares[0].values, prep_shares[1].values)
        if len(sketch) == 3:
            return Poplar1FieldVec(field, tuple(sketch))
        if sketch[0] == 0:
            return None
        raise VdafError("Poplar1: sketch verification failed")

    def prep_next(
        self, prep_state: Poplar1PrepState, prep_msg: Poplar1FieldVec | None
    ) -> tuple[Poplar1PrepState, Poplar1FieldVec] | Poplar1FieldVec:
        """Round 1: the round-2 sketch share. Round 2: the output share."""
        if not isinstance(prep_state, Poplar1PrepState):
            raise VdafError(f"Poplar1: not a prep state: {prep_state!r}")
        field = self.current_field(prep_state.level)
        p = field.MODULUS
        if prep_state.sketch_round == 1:
            if prep_msg is None:  # the draft reads a missing round-1 message as zeros
                x = y = z = 0
            else:
                self._check_vec(prep_msg, field, "round-1 prep message")
                if len(prep_msg.values) != 3:
                    raise VdafError(f"Poplar1: round-1 prep message must have 3 elements, got {len(prep_msg.values)}")
                x, y, z = prep_msg.values
            share = (prep_state.agg_id * (x * x - y - z) + prep_state.corr_a * x + prep_state.corr_b) % p
            return attrs.evolve(prep_state, sketch_round=2), Poplar1FieldVec(field, (share,))
        if prep_state.sketch_round == 2:
            if prep_msg is not None:
                raise VdafError("Poplar1: the round-2 prep message must be empty")
            return prep_state.out_share
        raise VdafError(f"Poplar1: prep state in unknown round {prep_state.sketch_round}")

    # ------------------------------------------------------------- aggregation

    def agg_init(self, agg_param: Any) -> Poplar1FieldVec:
        """The empty aggregate share: one zero per prefix."""
        level, prefixes = self.agg_param(agg_param)
        return Poplar1FieldVec(self.current_field(level), (0,) * len(prefixes))

    def agg_update(self, agg_param: Any, agg_share: Poplar1FieldVec, out_share: Poplar1FieldVec) -> Poplar1FieldVec:
        """``agg_share + out_share``."""
        return self._add_checked(self.agg_init(agg_param), agg_share, out_share, "output share")

    def merge(self, agg_param: Any, agg_shares: Sequence[Poplar1FieldVec]) -> Poplar1FieldVec:
        """Sum of aggregate shares (from several jobs)."""
        total = zero = self.agg_init(agg_param)
        for share in agg_shares:
            total = self._add_checked(zero, total, share, "aggregate share")
        return total

    def aggregate(self, agg_param: Any, out_shares: Sequence[Poplar1FieldVec]) -> Poplar1FieldVec:
        """VDAF-08 ``aggregate``: sum of output shares."""
        total = zero = self.agg_init(agg_param)
        for share in out_shares:
            total = self._add_checked(zero, total, share, "output share")
        return total

    def unshard(self, agg_param: Any, agg_shares: Sequence[Poplar1FieldVec], num_measurements: int) -> list[int]:
        """One count per prefix (``num_measurements`` is not needed)."""
        if len(agg_shares) != self.SHARES:
            raise VdafError(f"Poplar1: expected {self.SHARES} aggregate shares, got {len(agg_shares)}")
        return list(self.merge(agg_param, agg_shares).values)

    def _add_checked(
        self, zero: Poplar1FieldVec, left: Poplar1FieldVec, right: Poplar1FieldVec, what: str
    ) -> Poplar1FieldVec:
        for vec in (left, right):
            self._check_vec(vec, zero.field, what)
            if len(vec.values) != len(zero.values):
                raise VdafError(f"Poplar1: {what} must have {len(zero.values)} elements, got {len(vec.values)}")
        return Poplar1FieldVec(zero.field, tuple(zero.field.vec_add(left.values, right.values)))

    # --------------------------------------------------- aggregation parameter

    def agg_param(self, agg_param: Any) -> Poplar1AggParam:
        """``agg_param`` as a checked :class:`Poplar1AggParam` (VdafError if not valid for this instance)."""
        try:
            level, prefixes = agg_param
        except (TypeError, ValueError):
            raise VdafError(f"Poplar1: aggregation parameter must be (level, prefixes), got {agg_param!r}") from None
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < self.BITS:
            raise VdafError(f"Poplar1: level must be an integer in [0, {self.BITS}), got {level!r}")
        if isinstance(prefixes, (str, bytes)) or not isinstance(prefixes, Sequence):
            raise VdafError(f"Poplar1: prefixes must be a sequence of integers, got {prefixes!r}")
        if not 1 <= len(prefixes) < 1 << 32:
            raise VdafError(f"Poplar1: the number of prefixes must be in [1, 2^32), got {len(prefixes)}")
        bound = 1 << (level + 1)
        previous = -1
        for prefix in prefixes:
            if isinstance(prefix, bool) or not isinstance(prefix, int) or not 0 <= prefix < bound:
                raise VdafError(f"Poplar1: prefix {prefix!r} is not a {level + 1}-bit integer")
            if prefix <= previous:
                raise VdafError("Poplar1: prefixes must be strictly increasing (sorted, no duplicates)")
            previous = prefix
        if type(agg_param) is Poplar1AggParam and type(prefixes) is tuple:
            return agg_param
        return Poplar1AggParam(level, tuple(prefixes))

    def encode_agg_param(self, agg_param: Any) -> bytes:
        """``be16(level) || be32(n) || be(P, ceil((level+1) n / 8))``, prefix i at bits ``(level+1) i``."""
        level, prefixes = self.agg_param(agg_param)
        width = level + 1
        packed = 0
        for i, prefix in enumerate(prefixes):
            packed |= prefix << (width * i)
        size = (width * len(prefixes) + 7) // 8
        return level.to_bytes(2, "big") + len(prefixes).to_bytes(4, "big") + packed.to_bytes(size, "big")

    def decode_agg_param(self, encoded: bytes) -> Poplar1AggParam:
        """Strict inverse of :meth:`encode_agg_param` (exact length, zero padding, valid prefixes)."""
        if len(encoded) < 6:
            raise VdafError(f"Poplar1: aggregation parameter needs at least 6 bytes, got {len(encoded)}")
        level = int.from_bytes(encoded[:2], "big")
        count = int.from_bytes(encoded[2:6], "big")
        width = level + 1
        size = (width * count + 7) // 8
        if len(encoded) != 6 + size:
            raise VdafError(
                f"Poplar1: aggregation parameter with level {level} and {count} prefixes must be "
                f"{6 + size} bytes, got {len(encoded)}"
            )
        packed = int.from_bytes(encoded[6:], "big")
        if packed >> (width * count):
            raise VdafError("Poplar1: aggregation parameter has non-zero padding bits")
        mask = (1 << width) - 1
        return self.agg_param((level, tuple((packed >> (width * i)) & mask for i in range(count))))

    # --------------------------------------------------------------- encodings

    def encode_public_share(self, public_share: IdpfPublicShare) -> bytes:
        return self.idpf.encode_public_share(public_share)

    def decode_public_share(self, encoded: bytes) -> IdpfPublicShare:
        return self.idpf.decode_public_share(encoded)

    def encode_input_share(self, input_share: Poplar1InputShare) -> bytes:
        """``idpf_key || corr_seed || corr_inner (Field64) || corr_leaf (Field255)``."""
        self._check_input_share(input_share)
        return b"".join(
            (
                input_share.idpf_key,
                input_share.corr_seed,
                Field64.encode_vec(input_share.corr_inner),
                Field255.encode_vec(input_share.corr_leaf),
            )
        )

    def decode_input_share(self, agg_id: int, encoded: bytes) -> Poplar1InputShare:
        self._check_agg_id(agg_id)
        if len(encoded) != self.INPUT_SHARE_SIZE:
            raise VdafError(f"Poplar1: input share must be {self.INPUT_SHARE_SIZE} bytes, got {len(encoded)}")
        seed = XofTurboShake128.SEED_SIZE
        inner_end = 2 * seed + 2 * (self.BITS - 1) * Field64.ENCODED_SIZE
        inner = Field64.decode_vec(encoded[2 * seed : inner_end], what="Poplar1 input share, inner correlation")
        leaf = Field255.decode_vec(encoded[inner_end:], what="Poplar1 input share, leaf correlation")
        return Poplar1InputShare(
            bytes(encoded[:seed]), bytes(encoded[seed : 2 * seed]), tuple(inner), (leaf[0], leaf[1])
        )

    def encode_prep_share(self, prep_share: Poplar1FieldVec) -> bytes:
        return prep_share.field.encode_vec(prep_share.values)

    def decode_prep_share(self, prep_state: Poplar1PrepState, encoded: bytes) -> Poplar1FieldVec:
        """A sketch share of the round ``prep_state`` is in: 3 elements (round 1) or 1 (round 2)."""
        field, length = self._round_shape(prep_state)
        return Poplar1FieldVec(field, tuple(field.decode_vec_len(encoded, length, what="Poplar1 prep share")))

    def encode_prep_msg(self, prep_msg: Poplar1FieldVec | None) -> bytes:
        return b"" if prep_msg is None else prep_msg.field.encode_vec(prep_msg.values)

    def decode_prep_msg(self, prep_state: Poplar1PrepState, encoded: bytes) -> Poplar1FieldVec | None:
        """Round 1: the 3-element sketch. Round 2: the empty string (``None``)."""
        field, length = self._round_shape(prep_state)
        if length == 1:
            if encoded:
                raise VdafError(f"Poplar1: the round-2 prep message must be empty, got {len(encoded)} bytes")
            return None
        return Poplar1FieldVec(field, tuple(field.decode_vec_len(encoded, 3, what="Poplar1 prep message")))

    def encode_agg_share(self, agg_share: Poplar1FieldVec) -> bytes:
        return agg_share.field.encode_vec(agg_share.values)

    def decode_agg_share(self, agg_param: Any, encoded: bytes) -> Poplar1FieldVec:
        return self._decode_prefix_vec(agg_param, encoded, "aggregate share")

    def encode_out_share(self, out_share: Poplar1FieldVec) -> bytes:
        return out_share.field.encode_vec(out_share.values)

    def decode_out_share(self, agg_param: Any, encoded: bytes) -> Poplar1FieldVec:
        return self._decode_prefix_vec(agg_param, encoded, "output share")

    # ----------------------------------------------------------------- helpers

    def _corr_inner_abc(self, agg_id: int, corr_seed: bytes, nonce: bytes, levels: int) -> list[int]:
        """The ``(a, b, c)`` shares of Aggregator ``agg_id`` for inner levels ``0 .. levels-1``."""
        return XofTurboShake128.expand_into_vec(
            Field64, corr_seed, self._dst[USAGE_CORR_INNER], bytes((agg_id,)) + nonce, 3 * levels
        )

    def _corr_leaf_abc(self, agg_id: int, corr_seed: bytes, nonce: bytes) -> list[int]:
        return XofTurboShake128.expand_into_vec(
            Field255, corr_seed, self._dst[USAGE_CORR_LEAF], bytes((agg_id,)) + nonce, 3
        )

    def _decode_prefix_vec(self, agg_param: Any, encoded: bytes, what: str) -> Poplar1FieldVec:
        level, prefixes = self.agg_param(agg_param)
        field = self.current_field(level)
        return Poplar1FieldVec(field, tuple(field.decode_vec_len(encoded, len(prefixes), what=f"Poplar1 {what}")))

    def _round_shape(self, prep_state: Poplar1PrepState) -> tuple[Field, int]:
        if not isinstance(prep_state, Poplar1PrepState) or prep_state.sketch_round not in (1, 2):
            raise VdafError(f"Poplar1: decoding needs a prep state in round 1 or 2, got {prep_state!r}")
        return self.current_field(prep_state.level), 3 if prep_state.sketch_round == 1 else 1

    def _check_vec(self, vec: Any, field: Field, what: str) -> None:
        if not isinstance(vec, Poplar1FieldVec) or vec.field is not field:
            raise VdafError(f"Poplar1: {what} must be a vector of {field.NAME} elements, got {vec!r}")

    def _check_input_share(self, input_share: Any) -> None:
        seed = XofTurboShake128.SEED_SIZE
        if (
            not isinstance(input_share, Poplar1InputShare)
            or len(input_share.idpf_key) != IdpfPoplar.KEY_SIZE
            or len(input_share.corr_seed) != seed
            or len(input_share.corr_inner) != 2 * (self.BITS - 1)
            or len(input_share.corr_leaf) != 2
        ):
            raise VdafError(f"Poplar1: malformed input share for BITS = {self.BITS}")

    def _check_nonce(self, nonce: bytes) -> None:
        if len(nonce) != self.NONCE_SIZE:
            raise VdafError(f"Poplar1: nonce must be {self.NONCE_SIZE} bytes, got {len(nonce)}")

    def _check_agg_id(self, agg_id: int) -> None:
        if agg_id not in (0, 1):
            raise VdafError(f"Poplar1: aggregator id must be 0 or 1, got {agg_id!r}")


def _checked_bits(bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise VdafError(f"Poplar1 BITS must be an integer in [1, {MAX_BITS}], got {bits!r}")
    return bits


@lru_cache(maxsize=64)
def _instance(bits: int) -> Poplar1:
    return Poplar1(bits)
