"""IdpfPoplar, the incremental distributed point function of VDAF-08 section 8.3 (from BBCGGI21).

``gen(alpha, beta_inner, beta_leaf, binder, rand)`` splits the point function
"``beta_L`` on the ``(L+1)``-bit prefix of ``alpha`` at every level ``L``, zero
elsewhere" into two 16-byte keys and a public share of ``BITS`` correction
words; ``eval(agg_id, public_share, key, level, prefixes, binder)`` gives an
Aggregator its additive share of the value at each ``(level+1)``-bit prefix.
Values are vectors of ``VALUE_LEN`` elements of Field64 at the inner levels
``0 .. BITS-2`` and of Field255 at the leaf level ``BITS-1``.

The tree walk uses XofFixedKeyAes128 (DST class 1, algorithm 0; usage 0
``extend``, usage 1 ``convert``; binder = the nonce). Both AES keys depend only
on the binder, so :meth:`IdpfPoplar.eval` derives them once and hashes all
nodes of a level in one batch (:class:`dap.vdaf.xof.FixedKeyAes128`); it walks
the tree once for all prefixes, so a node shared by several prefixes is
expanded once, and on the levels above the requested one it computes only the
next seed of each node, not its value (the seed is the first block of the
``convert`` stream).

Prefixes are ``(level+1)``-bit integers read most significant bit first: the
prefix of ``alpha`` at level ``L`` is ``alpha >> (BITS - 1 - L)``. (The draft's
prose says ``L``-bit / ``< 2^level``; its code and the vectors use ``level+1``
bits.)

Every invalid input raises :class:`dap.errors.VdafError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import ClassVar, TypeAlias

import attrs

from dap.errors import VdafError
from dap.vdaf.field import Field, Field64, Field255
from dap.vdaf.xof import FixedKeyAes128, XofFixedKeyAes128, format_dst

__all__ = ["DST_CONVERT", "DST_EXTEND", "CorrectionWord", "IdpfPoplar", "IdpfPublicShare"]

#: ``format_dst(1, 0, usage)``: IdpfPoplar is algorithm 0 of the IDPF class (1).
DST_EXTEND = format_dst(1, 0, 0)
DST_CONVERT = format_dst(1, 0, 1)

SEED_SIZE = XofFixedKeyAes128.SEED_SIZE


@attrs.frozen
class CorrectionWord:
    """One level's correction: seed, the (left, right) control bits, the value correction."""

    seed: bytes
    ctrl: tuple[int, int]
    value: tuple[int, ...]


#: The public share: one correction word per level, level 0 first.
IdpfPublicShare: TypeAlias = tuple[CorrectionWord, ...]

#: One node after ``extend``: (left seed, right seed, left control bit, right control bit),
#: seeds as little-endian integers (XOR and the control-bit steal are integer operations).
_Expanded: TypeAlias = tuple[int, int, int, int]


class IdpfPoplar:
    """IdpfPoplar for ``bits``-bit inputs and ``value_len``-element values.

    ``field_inner`` / ``field_leaf`` default to VDAF-08's Field64 / Field255;
    they are parameters so that tests can exercise rejection sampling in
    ``convert`` with a field whose samples are often rejected.
    """

    SHARES: ClassVar[int] = 2
    KEY_SIZE: ClassVar[int] = SEED_SIZE
    RAND_SIZE: ClassVar[int] = 2 * SEED_SIZE

    def __init__(
        self, bits: int, value_len: int, *, field_inner: Field = Field64, field_leaf: Field = Field255
    ) -> None:
        if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
            raise VdafError(f"IdpfPoplar BITS must be a positive integer, got {bits!r}")
        if isinstance(value_len, bool) or not isinstance(value_len, int) or value_len < 1:
            raise VdafError(f"IdpfPoplar VALUE_LEN must be a positive integer, got {value_len!r}")
        self.BITS = bits
        self.VALUE_LEN = value_len
        self.field_inner = field_inner
        self.field_leaf = field_leaf
        self._ctrl_size = (2 * bits + 7) // 8
        self._inner_cw_size = SEED_SIZE + value_len * field_inner.ENCODED_SIZE
        self._leaf_cw_size = SEED_SIZE + value_len * field_leaf.ENCODED_SIZE
        self.PUBLIC_SHARE_SIZE = self._ctrl_size + (bits - 1) * self._inner_cw_size + self._leaf_cw_size

    def __repr__(self) -> str:
        return f"IdpfPoplar(bits={self.BITS}, value_len={self.VALUE_LEN})"

    def current_field(self, level: int) -> Field:
        return self.field_inner if level < self.BITS - 1 else self.field_leaf

    # ------------------------------------------------------------------ gen

    def gen(
        self,
        alpha: int,
        beta_inner: Sequence[Sequence[int]],
        beta_leaf: Sequence[int],
        binder: bytes,
        rand: bytes,
    ) -> tuple[IdpfPublicShare, list[bytes]]:
        """The public share and the two keys (``rand[:16]``, ``rand[16:]``) for ``alpha``."""
        bits = self.BITS
        if isinstance(alpha, bool) or not isinstance(alpha, int) or not 0 <= alpha < 1 << bits:
            raise VdafError(f"IdpfPoplar: alpha must be an integer in [0, 2^{bits}), got {alpha!r}")
        if len(beta_inner) != bits - 1:
            raise VdafError(f"IdpfPoplar: expected {bits - 1} inner beta values, got {len(beta_inner)}")
        betas = [*beta_inner, beta_leaf]
        for level, beta in enumerate(betas):
            self._check_value(level, beta, "beta")
        if len(rand) != self.RAND_SIZE:
            raise VdafError(f"IdpfPoplar: rand must be {self.RAND_SIZE} bytes, got {len(rand)}")
        keys = [bytes(rand[:SEED_SIZE]), bytes(rand[SEED_SIZE:])]
        extend = FixedKeyAes128(DST_EXTEND, binder)
        convert = FixedKeyAes128(DST_CONVERT, binder)

        seeds = keys[0] + keys[1]
        ctrl = [0, 1]
        words: list[CorrectionWord] = []
        for level in range(bits):
            field = self.current_field(level)
            p = field.MODULUS
            keep = (alpha >> (bits - 1 - level)) & 1
            (l0, r0, tl0, tr0), (l1, r1, tl1, tr1) = _extend_all(extend, seeds)
            seed_cw = (l0 ^ l1) if keep else (r0 ^ r1)  # the "lose" side must collapse
            ctrl_cw = (tl0 ^ tl1 ^ keep ^ 1, tr0 ^ tr1 ^ keep)
            keep_seeds = (r0, r1) if keep else (l0, l1)
            keep_ctrls = (tr0, tr1) if keep else (tl0, tl1)
            converted = b"".join(
                (keep_seeds[j] ^ (seed_cw if ctrl[j] else 0)).to_bytes(SEED_SIZE, "little") for j in (0, 1)
            )
            seeds, (w0, w1) = self._convert_all(convert, level, converted, binder)
            # Both control bits are updated with the previous level's bits.
            ctrl = [keep_ctrls[j] ^ (ctrl[j] & ctrl_cw[keep]) for j in (0, 1)]
            w_cw = [(b - x + y) % p for b, x, y in zip(betas[level], w0, w1)]
            if ctrl[1]:  # signed by the Helper's control bit after this level's update
                w_cw = [-x % p for x in w_cw]
            words.append(CorrectionWord(seed_cw.to_bytes(SEED_SIZE, "little"), ctrl_cw, tuple(w_cw)))
        return tuple(words), keys

    # ----------------------------------------------------------------- eval

    def eval(
        self,
        agg_id: int,
        public_share: IdpfPublicShare,
        key: bytes,
        level: int,
        prefixes: Sequence[int],
        binder: bytes,
    ) -> list[list[int]]:
        """This Aggregator's share of the value at each prefix (in the given order).

        The Leader's and the Helper's shares sum to ``beta_level`` at the
        prefix of ``alpha`` and to zero at every other prefix.
        """
        if agg_id not in (0, 1):
            raise VdafError(f"IdpfPoplar: aggregator id must be 0 or 1, got {agg_id!r}")
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < self.BITS:
            raise VdafError(f"IdpfPoplar: level must be in [0, {self.BITS}), got {level!r}")
        if len(key) != self.KEY_SIZE:
            raise VdafError(f"IdpfPoplar: key must be {self.KEY_SIZE} bytes, got {len(key)}")
        self._check_public_share(public_share)
        bound = 1 << (level + 1)
        for prefix in prefixes:
            if isinstance(prefix, bool) or not isinstance(prefix, int) or not 0 <= prefix < bound:
                raise VdafError(f"IdpfPoplar: prefix {prefix!r} is not a {level + 1}-bit integer")
        if len(set(prefixes)) != len(prefixes):
            raise VdafError("IdpfPoplar: duplicate prefixes")
        extend = FixedKeyAes128(DST_EXTEND, binder)
        convert = FixedKeyAes128(DST_CONVERT, binder)

        # The frontier: the nodes of the previous level that some prefix passes
        # through, sorted by prefix, with their seeds (concatenated) and control
        # bits. It starts at the root: no bits, the key, the Aggregator's bit.
        frontier = [0]
        seeds = bytes(key)
        ctrls = [agg_id]
        for current in range(level + 1):
            children = sorted({prefix >> (level - current) for prefix in prefixes})
            position = {prefix: i for i, prefix in enumerate(frontier)}
            # Block r of the extended frontier is child (r & 1) of frontier node r >> 1.
            blocks = [2 * position[child >> 1] | (child & 1) for child in children]
            child_seeds, ctrls = _extend_select(extend, seeds, ctrls, public_share[current], blocks)
            frontier = children
            if current < level:
                # Above the requested level only the next seed is needed: the
                # first block of the convert stream.
                seeds = convert.streams(child_seeds, 1)
        _, values = self._convert_all(convert, level, child_seeds, binder)

        field = self.current_field(level)
        p = field.MODULUS
        correction = public_share[level].value
        shares: dict[int, list[int]] = {}
        for prefix, ctrl, value in zip(frontier, ctrls, values):
            if ctrl:
                value = [x + w for x, w in zip(value, correction)]
            shares[prefix] = [-x % p for x in value] if agg_id else [x % p for x in value]
        return [shares[prefix] for prefix in prefixes]

    # ------------------------------------------------------------ encodings

    def encode_public_share(self, public_share: IdpfPublicShare) -> bytes:
        """Packed control bits (LSB first: level L's left, right = bits 2L, 2L+1), then per level seed || value."""
        self._check_public_share(public_share)
        packed = 0
        for level, word in enumerate(public_share):
            packed |= word.ctrl[0] << (2 * level) | word.ctrl[1] << (2 * level + 1)
        parts = [packed.to_bytes(self._ctrl_size, "little")]
        for level, word in enumerate(public_share):
            parts.append(word.seed)
            parts.append(self.current_field(level).encode_vec(word.value))
        return b"".join(parts)

    def decode_public_share(self, encoded: bytes) -> IdpfPublicShare:
        """Strict inverse of :meth:`encode_public_share` (exact length, zero padding bits, elements < p)."""
        if len(encoded) != self.PUBLIC_SHARE_SIZE:
            raise VdafError(
                f"IdpfPoplar: public share must be {self.PUBLIC_SHARE_SIZE} bytes, got {len(encoded)}"
            )
        packed = int.from_bytes(encoded[: self._ctrl_size], "little")
        if packed >> (2 * self.BITS):
            raise VdafError("IdpfPoplar: public share has non-zero control-bit padding")
        words: list[CorrectionWord] = []
        offset = self._ctrl_size
        for level in range(self.BITS):
            field = self.current_field(level)
            size = self._leaf_cw_size if level == self.BITS - 1 else self._inner_cw_size
            seed = bytes(encoded[offset : offset + SEED_SIZE])
            value = field.decode_vec(
                encoded[offset + SEED_SIZE : offset + size], what=f"IdpfPoplar public share, level {level} value"
            )
            ctrl = ((packed >> (2 * level)) & 1, (packed >> (2 * level + 1)) & 1)
            words.append(CorrectionWord(seed, ctrl, tuple(value)))
            offset += size
        return tuple(words)

    # -------------------------------------------------------------- helpers

    def _convert_all(
        self, convert: FixedKeyAes128, level: int, seeds: bytes, binder: bytes
    ) -> tuple[bytes, list[list[int]]]:
        """``convert(level, seed)`` for each of the concatenated seeds: the next seeds (concatenated), the values.

        The blocks that hold ``VALUE_LEN`` elements when none is rejected are
        hashed in one batch; a seed whose stream has a rejected sample is redone
        with a streaming XOF (probability about 2^-31 per Field64 value).
        """
        field = self.current_field(level)
        value_size = self.VALUE_LEN * field.ENCODED_SIZE
        blocks = (SEED_SIZE + value_size + 15) // 16
        stride = 16 * blocks
        stream = convert.streams(seeds, blocks)
        modulus = field.MODULUS
        mask = None if field.FULL_MASK else field.SAMPLE_MASK
        next_seeds: list[bytes] = []
        values: list[list[int]] = []
        for k in range(len(seeds) // SEED_SIZE):
            start = k * stride
            next_seeds.append(stream[start : start + SEED_SIZE])
            value = field.decode_raw(stream[start + SEED_SIZE : start + SEED_SIZE + value_size])
            if mask is not None:
                value = [x & mask for x in value]
            if max(value) >= modulus:
                xof = XofFixedKeyAes128(seeds[k * SEED_SIZE : (k + 1) * SEED_SIZE], DST_CONVERT, binder)
                xof.next(SEED_SIZE)
                value = xof.next_vec(field, self.VALUE_LEN)
            values.append(value)
        return b"".join(next_seeds), values

    def _check_value(self, level: int, value: Sequence[int], what: str) -> None:
        field = self.current_field(level)
        if len(value) != self.VALUE_LEN:
            raise VdafError(
                f"IdpfPoplar: {what} at level {level} must have {self.VALUE_LEN} elements, got {len(value)}"
            )
        for x in value:
            if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < field.MODULUS:
                raise VdafError(f"IdpfPoplar: {what} at level {level} is not a {field.NAME} element: {x!r}")

    def _check_public_share(self, public_share: IdpfPublicShare) -> None:
        if not isinstance(public_share, (tuple, list)) or len(public_share) != self.BITS:
            count = len(public_share) if isinstance(public_share, (tuple, list)) else type(public_share).__name__
            raise VdafError(f"IdpfPoplar: public share must have {self.BITS} correction words, got {count}")
        for level, word in enumerate(public_share):
            if (
                not isinstance(word, CorrectionWord)
                or len(word.seed) != SEED_SIZE
                or len(word.ctrl) != 2
                or word.ctrl[0] not in (0, 1)
                or word.ctrl[1] not in (0, 1)
            ):
                raise VdafError(f"IdpfPoplar: malformed correction word at level {level}")
            self._check_value(level, word.value, "correction word")


def _extend_all(extend: FixedKeyAes128, seeds: bytes) -> list[_Expanded]:
    """``extend(seed)`` for each of the concatenated seeds: two child seeds and their control bits.

    The control bit of a child is bit 0 of its seed's first byte, which is
    then cleared in the seed (bit 0 of the little-endian integer).
    """
    stream = extend.streams(seeds, 2)
    from_bytes = int.from_bytes
    out: list[_Expanded] = []
    for start in range(0, len(stream), 32):
        left = from_bytes(stream[start : start + 16], "little")
        right = from_bytes(stream[start + 16 : start + 32], "little")
        out.append((left & ~1, right & ~1, left & 1, right & 1))
    return out


def _extend_select(
    extend: FixedKeyAes128, seeds: bytes, ctrls: list[int], word: CorrectionWord, blocks: list[int]
) -> tuple[bytes, list[int]]:
    """One level of evaluation for a whole frontier: extend, correct, keep the children in ``blocks``.

    ``seeds`` are the frontier's concatenated seeds and ``ctrls`` its control
    bits; block ``r`` of the extension is child ``r & 1`` of node ``r >> 1``.
    A node with control bit 1 XORs the correction word's seed into both
    children and its control bits into theirs. Clearing the stolen control
    bits and applying the seed corrections are one big-integer operation each.
    """
    stream = extend.streams(seeds, 2)
    size = len(stream)
    first_bytes = stream[::16]  # bit 0 of a block's first byte is its control bit
    both = word.seed * 2
    none = bytes(2 * SEED_SIZE)
    correction = int.from_bytes(b"".join([both if ctrl else none for ctrl in ctrls]), "little")
    cleared = int.from_bytes(stream, "little") & ~_control_bits_mask(size // 16)
    corrected = (cleared ^ correction).to_bytes(size, "little")
    child_seeds = b"".join([corrected[16 * r : 16 * r + 16] for r in blocks])
    cw_ctrl = word.ctrl
    child_ctrls = [(first_bytes[r] & 1) ^ (ctrls[r >> 1] & cw_ctrl[r & 1]) for r in blocks]
    return child_seeds, child_ctrls


@lru_cache(maxsize=64)
def _control_bits_mask(blocks: int) -> int:
    """Bit 0 of each of ``blocks`` little-endian 16-byte blocks."""
    return int.from_bytes((b"\x01" + bytes(15)) * blocks, "little")
