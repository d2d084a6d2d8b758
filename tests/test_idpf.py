"""IdpfPoplar and XofFixedKeyAes128: the official VDAF-08 vectors, a node-by-node oracle, strict decoding.

The vectors are loaded like the Prio3 ones (``../shared/spec/test-vectors``
beside the checkout, or ``VDAF_TEST_VECTORS_DIR``); a missing file FAILS.

:func:`reference_eval` is a deliberately naive evaluation written from the
digest (one streaming XofFixedKeyAes128 per node, no batching, no sharing of
common prefixes); :meth:`IdpfPoplar.eval` must agree with it exactly.
"""

from __future__ import annotations

import random

import pytest
from Crypto.Cipher import AES
from Crypto.Hash import TurboSHAKE128
from test_prio3_vectors import load

from dap.errors import VdafError
from dap.vdaf.field import Field, Field64, Field128, Field255
from dap.vdaf.idpf import DST_CONVERT, DST_EXTEND, CorrectionWord, IdpfPoplar, IdpfPublicShare
from dap.vdaf.xof import FixedKeyAes128, XofFixedKeyAes128

BINDER = b"some nonce"

#: Fields whose samples are rejected about half of the time (moduli just above a
#: power of two, so the sampling mask keeps one bit too many): they force the
#: rejection path of ``convert``. The IDPF only adds and negates values.
TOY_INNER = Field("ToyInner", modulus=2**63 + 29, encoded_size=8, gen=1, gen_order=1)
TOY_LEAF = Field("ToyLeaf", modulus=2**254 + 79, encoded_size=32, gen=1, gen_order=1)


# --------------------------------------------------------------------- XOF


def test_xof_fixed_key_aes128_vector() -> None:
    vec = load("XofFixedKeyAes128.json")
    seed, dst, binder = (bytes.fromhex(vec[k]) for k in ("seed", "dst", "binder"))
    assert XofFixedKeyAes128.derive_seed(seed, dst, binder).hex() == vec["derived_seed"]
    expanded = XofFixedKeyAes128.expand_into_vec(Field128, seed, dst, binder, vec["length"])
    assert Field128.encode_vec(expanded).hex() == vec["expanded_vec_field128"]
    # Byte-granular reads that start and end inside blocks give the same stream.
    stream = XofFixedKeyAes128(seed, dst, binder)
    pieces = b"".join(stream.next(7) for _ in range(100))
    assert pieces == XofFixedKeyAes128(seed, dst, binder).next(700)
    assert pieces.hex().startswith(vec["expanded_vec_field128"])


def test_fixed_key_aes128_matches_a_per_block_construction() -> None:
    """Batch hashing against the construction written block by block with PyCryptodome's AES."""
    dst, binder = DST_EXTEND, b"binder"
    key = TurboSHAKE128.new(domain=2, data=bytes((len(dst),)) + dst + binder).read(16)
    aes = AES.new(key, AES.MODE_ECB)

    def block_hash(block: bytes) -> bytes:
        lo, hi = block[:8], block[8:]
        sigma = hi + bytes(a ^ b for a, b in zip(hi, lo))
        return bytes(a ^ b for a, b in zip(aes.encrypt(sigma), sigma))

    def block(seed: bytes, counter: int) -> bytes:
        return bytes(a ^ b for a, b in zip(seed, counter.to_bytes(16, "little")))

    rng = random.Random(7)
    seeds = [rng.randbytes(16) for _ in range(9)]
    hasher = FixedKeyAes128(dst, binder)
    for count in (1, 2, 5):
        expected = b"".join(block_hash(block(s, i)) for s in seeds for i in range(count))
        assert hasher.streams(b"".join(seeds), count) == expected
    # Counters beyond one byte (block 300 onwards) and a streaming read across them.
    expected = b"".join(block_hash(block(seeds[0], i)) for i in range(298, 303))
    assert hasher.stream(seeds[0], 298, 5) == expected
    xof = XofFixedKeyAes128(seeds[0], dst, binder)
    xof.next(298 * 16 + 3)
    assert xof.next(5 * 16 - 3) == expected[3:]


def test_fixed_key_aes128_input_checks() -> None:
    with pytest.raises(VdafError, match="16 bytes"):
        XofFixedKeyAes128(bytes(15), DST_EXTEND, b"")
    with pytest.raises(VdafError, match="255"):
        XofFixedKeyAes128(bytes(16), bytes(256), b"")
    with pytest.raises(VdafError, match="whole number of blocks"):
        FixedKeyAes128(DST_EXTEND, b"").hash_blocks(bytes(17))
    # The key depends on dst and binder only: another binder, another stream.
    one = XofFixedKeyAes128(bytes(16), DST_EXTEND, b"a").next(32)
    assert one != XofFixedKeyAes128(bytes(16), DST_EXTEND, b"b").next(32)
    assert one != XofFixedKeyAes128(bytes(16), DST_CONVERT, b"a").next(32)


# ------------------------------------------------------------------- oracle


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right))


def reference_extend(seed: bytes, binder: bytes) -> tuple[list[bytes], list[int]]:
    stream = XofFixedKeyAes128(seed, DST_EXTEND, binder).next(32)
    halves = [bytearray(stream[:16]), bytearray(stream[16:])]
    ctrl = [halves[0][0] & 1, halves[1][0] & 1]
    for half in halves:
        half[0] &= 0xFE
    return [bytes(h) for h in halves], ctrl


def reference_convert(
    idpf: IdpfPoplar, level: int, seed: bytes, binder: bytes, rejections: list[int]
) -> tuple[bytes, list[int]]:
    """Next seed and value; counts the samples rejected among the first ``VALUE_LEN`` chunks."""
    field = idpf.current_field(level)
    xof = XofFixedKeyAes128(seed, DST_CONVERT, binder)
    next_seed = xof.next(16)
    head = XofFixedKeyAes128(seed, DST_CONVERT, binder).next(16 + idpf.VALUE_LEN * field.ENCODED_SIZE)
    first = field.decode_raw(head[16:])
    rejections.append(sum((x & field.SAMPLE_MASK) >= field.MODULUS for x in first))
    return next_seed, xof.next_vec(field, idpf.VALUE_LEN)


def reference_eval(
    idpf: IdpfPoplar,
    agg_id: int,
    public_share: IdpfPublicShare,
    key: bytes,
    level: int,
    prefixes: list[int],
    binder: bytes,
    rejections: list[int] | None = None,
) -> list[list[int]]:
    rejections = [] if rejections is None else rejections
    out = []
    for prefix in prefixes:
        seed, ctrl = key, agg_id
        for current in range(level + 1):
            word = public_share[current]
            bit = (prefix >> (level - current)) & 1
            seeds, ctrls = reference_extend(seed, binder)
            if ctrl:
                seeds = [_xor(s, word.seed) for s in seeds]
                ctrls = [ctrls[0] ^ word.ctrl[0], ctrls[1] ^ word.ctrl[1]]
            ctrl = ctrls[bit]
            seed, value = reference_convert(idpf, current, seeds[bit], binder, rejections)
            if ctrl:
                value = idpf.current_field(current).vec_add(value, list(word.value))
        field = idpf.current_field(level)
        out.append(field.vec_neg(value) if agg_id else value)
    return out


def betas(idpf: IdpfPoplar, rng: random.Random) -> tuple[list[list[int]], list[int]]:
    inner = [[rng.randrange(idpf.field_inner.MODULUS) for _ in range(idpf.VALUE_LEN)] for _ in range(idpf.BITS - 1)]
    leaf = [rng.randrange(idpf.field_leaf.MODULUS) for _ in range(idpf.VALUE_LEN)]
    return inner, leaf


def check_point_function(idpf: IdpfPoplar, alpha: int, inner: list[list[int]], leaf: list[int],
                         public_share: IdpfPublicShare, keys: list[bytes], level: int, prefixes: list[int],
                         binder: bytes) -> None:
    shares = [idpf.eval(j, public_share, keys[j], level, prefixes, binder) for j in (0, 1)]
    field = idpf.current_field(level)
    beta = inner[level] if level < idpf.BITS - 1 else leaf
    on_path = alpha >> (idpf.BITS - 1 - level)
    for prefix, left, right in zip(prefixes, *shares):
        expected = beta if prefix == on_path else [0] * idpf.VALUE_LEN
        assert field.vec_add(left, right) == expected, (level, prefix)


# ------------------------------------------------------------------ vectors


def test_idpf_poplar_vector() -> None:
    vec = load("IdpfPoplar_0.json")
    idpf = IdpfPoplar(vec["bits"], 2)
    inner = [[int(x) for x in beta] for beta in vec["beta_inner"]]
    leaf = [int(x) for x in vec["beta_leaf"]]
    binder = bytes.fromhex(vec["binder"])
    alpha = int(vec["alpha"])
    public_share, keys = idpf.gen(alpha, inner, leaf, binder, bytes(range(32)))
    encoded = idpf.encode_public_share(public_share)
    assert encoded.hex() == vec["public_share"]
    assert [k.hex() for k in keys] == vec["keys"]
    assert len(encoded) == idpf.PUBLIC_SHARE_SIZE == 371
    decoded = idpf.decode_public_share(bytes.fromhex(vec["public_share"]))
    assert decoded == public_share
    # Every node of every level: beta on alpha's path, zero elsewhere.
    for level in range(idpf.BITS):
        check_point_function(idpf, alpha, inner, leaf, decoded, keys, level, list(range(2 << level)), binder)


def test_eval_matches_the_node_by_node_oracle() -> None:
    rng = random.Random(2024)
    idpf = IdpfPoplar(7, 2)
    alpha = 0b1011001
    inner, leaf = betas(idpf, rng)
    binder = bytes(range(16))
    public_share, keys = idpf.gen(alpha, inner, leaf, binder, rng.randbytes(32))
    for level in (0, 3, 5, 6):
        candidates = list(range(2 << level))
        for size in (1, 3, len(candidates)):
            prefixes = rng.sample(candidates, min(size, len(candidates)))  # any order, not sorted
            if alpha >> (6 - level) not in prefixes:
                prefixes[0] = alpha >> (6 - level)
            for j in (0, 1):
                assert idpf.eval(j, public_share, keys[j], level, prefixes, binder) == reference_eval(
                    idpf, j, public_share, keys[j], level, prefixes, binder
                ), (level, prefixes, j)
        check_point_function(idpf, alpha, inner, leaf, public_share, keys, level, candidates, binder)


def test_convert_rejection_sampling() -> None:
    """With fields that reject half of their samples, gen and eval still agree with the oracle."""
    rng = random.Random(5)
    idpf = IdpfPoplar(5, 3, field_inner=TOY_INNER, field_leaf=TOY_LEAF)
    alpha = 0b01101
    inner, leaf = betas(idpf, rng)
    public_share, keys = idpf.gen(alpha, inner, leaf, BINDER, rng.randbytes(32))
    rejections: list[int] = []
    for level in range(idpf.BITS):
        prefixes = list(range(2 << level))
        for j in (0, 1):
            assert idpf.eval(j, public_share, keys[j], level, prefixes, BINDER) == reference_eval(
                idpf, j, public_share, keys[j], level, prefixes, BINDER, rejections
            )
        check_point_function(idpf, alpha, inner, leaf, public_share, keys, level, prefixes, BINDER)
    assert sum(rejections) > 10  # the fallback path really ran


def test_large_tree_with_many_prefixes() -> None:
    """BITS 256, 64 prefixes sharing only their first few bits, including alpha's."""
    rng = random.Random(9)
    idpf = IdpfPoplar(256, 2)
    alpha = rng.getrandbits(256)
    inner, leaf = betas(idpf, rng)
    public_share, keys = idpf.gen(alpha, inner, leaf, BINDER, rng.randbytes(32))
    prefixes = sorted({rng.getrandbits(256) for _ in range(63)} | {alpha})
    check_point_function(idpf, alpha, inner, leaf, public_share, keys, 255, prefixes, BINDER)
    level = 200
    prefixes = sorted({p >> 55 for p in prefixes} | {(alpha >> 55) ^ 1})
    check_point_function(idpf, alpha, inner, leaf, public_share, keys, level, prefixes, BINDER)


# ---------------------------------------------------------------- encodings


@pytest.mark.parametrize(("bits", "size"), [(1, 81), (4, 177), (16, 564), (256, 8304)])
def test_public_share_size(bits: int, size: int) -> None:
    idpf = IdpfPoplar(bits, 2)
    assert idpf.PUBLIC_SHARE_SIZE == size
    rng = random.Random(bits)
    inner, leaf = betas(idpf, rng)
    public_share, _ = idpf.gen(rng.getrandbits(bits), inner, leaf, BINDER, rng.randbytes(32))
    encoded = idpf.encode_public_share(public_share)
    assert len(encoded) == size
    assert idpf.decode_public_share(encoded) == public_share


def test_public_share_decoding_is_strict() -> None:
    vec = load("IdpfPoplar_0.json")
    idpf = IdpfPoplar(vec["bits"], 2)
    good = bytes.fromhex(vec["public_share"])
    # 10 levels -> 20 control bits in 3 bytes; the top 4 bits of byte 2 are padding.
    assert idpf.decode_public_share(good)
    for bad, message in [
        (good[:-1], "371 bytes"),
        (good + b"\x00", "371 bytes"),
        (b"", "371 bytes"),
        (good[:2] + bytes((good[2] | 0x10,)) + good[3:], "padding"),
    ]:
        with pytest.raises(VdafError, match=message):
            idpf.decode_public_share(bad)
    # Non-canonical elements: Field64 p at level 0, Field255 with the top bit set at the leaf.
    first_value = 3 + 16
    bad = bytearray(good)
    bad[first_value : first_value + 8] = Field64.MODULUS.to_bytes(8, "little")
    with pytest.raises(VdafError, match="level 0 value.*modulus"):
        idpf.decode_public_share(bytes(bad))
    bad = bytearray(good)
    bad[-1] |= 0x80
    with pytest.raises(VdafError, match="level 9 value.*modulus"):
        idpf.decode_public_share(bytes(bad))
    bad = bytearray(good)
    bad[-32:] = Field255.MODULUS.to_bytes(32, "little")
    with pytest.raises(VdafError, match="modulus"):
        idpf.decode_public_share(bytes(bad))


def test_gen_and_eval_input_errors() -> None:
    idpf = IdpfPoplar(4, 2)
    inner, leaf = [[1, 2]] * 3, [1, 2]
    public_share, keys = idpf.gen(5, inner, leaf, BINDER, bytes(32))
    for args, message in [
        ((16, inner, leaf, BINDER, bytes(32)), "alpha"),
        ((-1, inner, leaf, BINDER, bytes(32)), "alpha"),
        ((True, inner, leaf, BINDER, bytes(32)), "alpha"),
        ((5, inner[:2], leaf, BINDER, bytes(32)), "inner beta"),
        ((5, inner, [1], BINDER, bytes(32)), "2 elements"),
        ((5, [[1, Field64.MODULUS]] * 3, leaf, BINDER, bytes(32)), "Field64"),
        ((5, inner, [1, Field255.MODULUS], BINDER, bytes(32)), "Field255"),
        ((5, inner, leaf, BINDER, bytes(31)), "rand"),
    ]:
        with pytest.raises(VdafError, match=message):
            idpf.gen(*args)  # type: ignore[arg-type]
    for args, message in [
        ((2, public_share, keys[0], 0, [0], BINDER), "aggregator id"),
        ((0, public_share, keys[0], 4, [0], BINDER), "level"),
        ((0, public_share, keys[0], 1, [4], BINDER), "2-bit"),
        ((0, public_share, keys[0], 1, [-1], BINDER), "2-bit"),
        ((0, public_share, keys[0], 1, [1, 1], BINDER), "duplicate"),
        ((0, public_share, keys[0][:15], 1, [1], BINDER), "key"),
        ((0, public_share[:3], keys[0], 1, [1], BINDER), "correction words"),
        ((0, bytes(4), keys[0], 1, [1], BINDER), "correction words"),
        ((0, (*public_share[:3], CorrectionWord(bytes(16), (0, 2), (0, 0))), keys[0], 1, [1], BINDER), "malformed"),
    ]:
        with pytest.raises(VdafError, match=message):
            idpf.eval(*args)  # type: ignore[arg-type]
    with pytest.raises(VdafError):
        IdpfPoplar(0, 2)
    with pytest.raises(VdafError):
        IdpfPoplar(4, 0)
