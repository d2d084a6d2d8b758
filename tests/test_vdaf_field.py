"""Fields, NTTs and the XOF layer of dap.vdaf (the parts below the FLP)."""

from __future__ import annotations

import random

import pytest
from Crypto.Hash import TurboSHAKE128
from hypothesis import given, settings
from hypothesis import strategies as st

from dap.errors import VdafError
from dap.vdaf.field import Field, Field64, Field128, next_power_of_2
from dap.vdaf.ntt import ntt_for
from dap.vdaf.xof import Xof, XofTurboShake128

FIELDS = [Field64, Field128]


def test_field_constants() -> None:
    assert Field64.MODULUS == 18446744069414584321 == 0xFFFFFFFF00000001
    assert Field128.MODULUS == 340282366920938462946865773367900766209 == 0xFFFFFFFFFFFFFFE40000000000000001
    assert (Field64.ENCODED_SIZE, Field128.ENCODED_SIZE) == (8, 16)
    for field in FIELDS:
        assert pow(field.GEN, field.GEN_ORDER, field.MODULUS) == 1
        assert pow(field.GEN, field.GEN_ORDER // 2, field.MODULUS) == field.MODULUS - 1


@pytest.mark.parametrize("field", FIELDS, ids=repr)
@given(data=st.data())
@settings(max_examples=30, deadline=None)
def test_vec_encode_decode_round_trip(field: Field, data: st.DataObject) -> None:
    vec = data.draw(st.lists(st.integers(0, field.MODULUS - 1), max_size=20))
    encoded = field.encode_vec(vec)
    assert len(encoded) == len(vec) * field.ENCODED_SIZE
    assert field.decode_vec(encoded) == vec


@pytest.mark.parametrize("field", FIELDS, ids=repr)
def test_decode_is_strict(field: Field) -> None:
    size = field.ENCODED_SIZE
    # Little-endian: 1 encodes as 01 00 .. 00.
    assert field.encode_vec([1]) == b"\x01" + bytes(size - 1)
    with pytest.raises(VdafError, match="multiple"):
        field.decode_vec(bytes(size + 1))
    with pytest.raises(VdafError, match="modulus"):
        field.decode_vec(bytes(size) + field.MODULUS.to_bytes(size, "little"))
    with pytest.raises(VdafError, match="modulus"):
        field.decode_vec(b"\xff" * size)
    assert field.decode_vec((field.MODULUS - 1).to_bytes(size, "little")) == [field.MODULUS - 1]
    with pytest.raises(VdafError, match="expected 2"):
        field.decode_vec_len(bytes(size * 3), 2)


def test_vector_arithmetic_and_bits() -> None:
    p = Field128.MODULUS
    assert Field128.vec_add([p - 1, 2], [1, 3]) == [0, 5]
    assert Field128.vec_sub([0, 5], [1, 3]) == [p - 1, 2]
    assert Field128.vec_neg([0, 1]) == [0, p - 1]
    with pytest.raises(VdafError):
        Field128.vec_add([1], [1, 2])
    assert Field64.encode_into_bit_vector(6, 4) == [0, 1, 1, 0]
    assert Field64.decode_from_bit_vector([0, 1, 1, 0]) == 6
    with pytest.raises(VdafError):
        Field64.encode_into_bit_vector(16, 4)
    with pytest.raises(VdafError):
        Field64.decode_from_bit_vector([0] * 64)
    assert Field64.inv(2) * 2 % Field64.MODULUS == 1
    with pytest.raises(VdafError):
        Field64.inv(0)
    assert [next_power_of_2(n) for n in (1, 2, 3, 5, 64, 65)] == [1, 2, 4, 8, 64, 128]


@pytest.mark.parametrize("field", FIELDS, ids=repr)
@pytest.mark.parametrize("n", [1, 2, 4, 8, 32, 128])
def test_ntt_matches_naive_dft(field: Field, n: int) -> None:
    rng = random.Random(n)
    p = field.MODULUS
    values = [rng.randrange(p) for _ in range(n)]
    root = field.root_of_unity(n)
    naive = [sum(v * pow(root, i * k, p) for i, v in enumerate(values)) % p for k in range(n)]
    ntt = ntt_for(field, n)
    assert ntt.forward(values) == naive
    assert ntt.inverse(naive) == values
    # Unreduced and negative inputs are accepted.
    assert ntt.forward([v - p for v in values]) == naive


def test_turboshake128_kat() -> None:
    # RFC 9861 / digest section 3: TurboSHAKE128(M = empty, D = 0x07), 32 bytes.
    assert TurboSHAKE128.new(domain=7).read(32).hex() == (
        "5a223ad30b3b8c66a243048cfced430f54e7529287d15150b973133adfac6a2f"
    )


def test_xof_input_checks() -> None:
    with pytest.raises(VdafError, match="16 bytes"):
        XofTurboShake128(bytes(15), b"", b"")
    with pytest.raises(VdafError, match="255"):
        XofTurboShake128.derive_seed(bytes(16), bytes(256), b"")
    with pytest.raises(VdafError, match="16 bytes"):
        XofTurboShake128.expand_into_vec(Field64, bytes(17), b"", b"", 0)


def test_xof_streams_are_consistent() -> None:
    seed, dst, binder = bytes(range(16)), b"dst", b"binder"
    stream = XofTurboShake128(seed, dst, binder)
    first = stream.next(10) + stream.next(90)
    assert first == XofTurboShake128(seed, dst, binder).next(100)
    expected = TurboSHAKE128.new(domain=1, data=bytes([3]) + dst + seed + binder).read(100)
    assert first == expected
    assert XofTurboShake128.derive_seed(seed, dst, binder) == expected[:16]
    vec = XofTurboShake128.expand_into_vec(Field64, seed, dst, binder, 12)
    assert vec == XofTurboShake128(seed, dst, binder).next_vec(Field64, 12)
    assert Field64.encode_vec(vec) == expected[:96]  # no rejection in this stream


class _ScriptedXof(Xof):
    """An XOF whose stream is a fixed byte string (to force rejections)."""

    SEED_SIZE = 16
    __slots__ = ("_data", "_pos")

    def __init__(self, seed: bytes, dst: bytes, binder: bytes) -> None:
        self._data = seed
        self._pos = 0

    def next(self, length: int) -> bytes:
        out = self._data[self._pos : self._pos + length]
        assert len(out) == length, "scripted stream exhausted"
        self._pos += length
        return out


def test_next_vec_rejection_sampling_consumes_rejected_chunks() -> None:
    p = Field64.MODULUS
    chunks = [5, p, 7, 2**64 - 1, p - 1, 9]
    stream = b"".join(x.to_bytes(8, "little") for x in chunks)
    xof = _ScriptedXof(stream, b"", b"")
    # p and 2^64-1 are rejected and skipped; the stream continues after them.
    assert xof.next_vec(Field64, 3) == [5, 7, p - 1]
    assert xof.next_vec(Field64, 1) == [9]


def test_public_api_fallback_gives_the_same_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PyCryptodome's one-shot entry point, the public TurboSHAKE128 API is used."""
    import dap.vdaf.xof as xof_module

    seed, dst, binder = bytes(range(16)), b"\x08\x00\x00\x00\x00\x00\x00\x01", b"\x01"
    fast_seed = XofTurboShake128.derive_seed(seed, dst, binder)
    fast_vec = XofTurboShake128.expand_into_vec(Field128, seed, dst, binder, 33)
    monkeypatch.setattr(xof_module, "_oneshot", None)
    assert XofTurboShake128.derive_seed(seed, dst, binder) == fast_seed
    assert XofTurboShake128.expand_into_vec(Field128, seed, dst, binder, 33) == fast_vec


# --- Field255 (Poplar1's leaf level) ------------------------------------------------


def test_field255_constants_and_strict_decoding() -> None:
    import pickle

    from dap.vdaf.field import Field255

    p = Field255.MODULUS
    assert p == 2**255 - 19 == 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFED
    assert Field255.ENCODED_SIZE == 32
    # No FFT subgroup beyond the trivial one: Poplar1 runs no FLP.
    assert (Field255.GEN, Field255.GEN_ORDER) == (1, 1)
    with pytest.raises(VdafError):
        Field255.root_of_unity(2)
    assert Field255.encode_vec([1, p - 1]) == b"\x01" + bytes(31) + (p - 1).to_bytes(32, "little")
    assert Field255.decode_vec(Field255.encode_vec([1, p - 1])) == [1, p - 1]
    with pytest.raises(VdafError, match="multiple"):
        Field255.decode_vec(bytes(33))
    for bad in (p, 2**255 - 1, 2**255, 2**256 - 1):  # >= p, including every value with bit 255 set
        with pytest.raises(VdafError, match="modulus"):
            Field255.decode_vec(bytes(32) + bad.to_bytes(32, "little"))
    assert Field255.vec_add([p - 1], [5]) == [4]
    assert Field255.vec_neg([1]) == [p - 1]
    assert pickle.loads(pickle.dumps(Field255)) is Field255


def test_field255_sampling_masks_the_top_bit() -> None:
    """VDAF-08 next_vec: clear bit 255, then reject only values in [p, 2^255)."""
    from dap.vdaf.field import Field255

    p = Field255.MODULUS
    top = 1 << 255
    chunks = [top | 5, p, top | (p - 1), 2**255 - 1, 7, top | p]
    stream = b"".join(x.to_bytes(32, "little") for x in chunks)
    xof = _ScriptedXof(stream, b"", b"")
    # top|5 -> 5 (masked, kept); p and 2^255-1 and top|p rejected; top|(p-1) -> p-1.
    assert xof.next_vec(Field255, 3) == [5, p - 1, 7]
    with pytest.raises(AssertionError, match="exhausted"):
        xof.next_vec(Field255, 1)  # only top|p is left, and it is rejected


def test_xof_fixed_key_aes128_streams_are_consistent() -> None:
    from dap.vdaf.field import Field255
    from dap.vdaf.xof import FixedKeyAes128, XofFixedKeyAes128

    seed, dst, binder = bytes(range(16)), b"\x08\x01\x00\x00\x00\x00\x00\x01", b"nonce"
    whole = XofFixedKeyAes128(seed, dst, binder).next(200)
    stream = XofFixedKeyAes128(seed, dst, binder)
    assert stream.next(1) + stream.next(16) + stream.next(0) + stream.next(183) == whole
    assert XofFixedKeyAes128.derive_seed(seed, dst, binder) == whole[:16]
    assert FixedKeyAes128(dst, binder).stream(seed, 0, 13)[:200] == whole
    vec = XofFixedKeyAes128.expand_into_vec(Field255, seed, dst, binder, 3)
    assert vec == [int.from_bytes(whole[i : i + 32], "little") & (2**255 - 1) for i in (0, 32, 64)]
