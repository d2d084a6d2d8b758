"""dap.hpke: RFC 9180 vectors, DAP-09 info strings, round trips and every way an open must fail."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dap import hpke
from dap.constants import HpkeAeadId, HpkeKdfId, HpkeKemId, Role
from dap.errors import DecodeError, HpkeError
from dap.messages import (
    BatchSelector,
    HpkeCiphertext,
    HpkeConfig,
    HpkeConfigList,
    Interval,
    PlaintextInputShare,
    ReportMetadata,
)

X25519 = HpkeKemId.X25519_HKDF_SHA256
P256 = HpkeKemId.P256_HKDF_SHA256
SHA256 = HpkeKdfId.HKDF_SHA256

SUITES = [
    pytest.param(hpke.MANDATORY_SUITE, id="x25519-sha256-aes128gcm"),
    pytest.param(hpke.HpkeSuite(X25519, SHA256, HpkeAeadId.CHACHA20_POLY1305), id="x25519-sha256-chacha20poly1305"),
    pytest.param(hpke.HpkeSuite(X25519, SHA256, HpkeAeadId.AES_256_GCM), id="x25519-sha256-aes256gcm"),
    pytest.param(hpke.HpkeSuite(P256, SHA256, HpkeAeadId.AES_128_GCM), id="p256-sha256-aes128gcm"),
    pytest.param(hpke.HpkeSuite(P256, HpkeKdfId.HKDF_SHA512, HpkeAeadId.CHACHA20_POLY1305), id="p256-sha512-chacha20poly1305"),
]

# RFC 9180 appendix A, Base mode, first encryption (sequence number 0). Shared inputs:
RFC_INFO = bytes.fromhex("4f6465206f6e2061204772656369616e2055726e")  # "Ode on a Grecian Urn"
RFC_AAD = bytes.fromhex("436f756e742d30")  # "Count-0"
RFC_PT = bytes.fromhex("4265617574792069732074727574682c20747275746820626561757479")  # "Beauty is truth, truth beauty"


@attrs.frozen
class RfcVector:
    suite: hpke.HpkeSuite
    ikm_e: str
    ikm_r: str
    sk_r: str
    pk_r: str
    enc: str
    ct: str


RFC_VECTORS = [
    pytest.param(
        RfcVector(
            suite=hpke.MANDATORY_SUITE,
            ikm_e="7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234",
            ikm_r="6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037",
            sk_r="4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8",
            pk_r="3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d",
            enc="37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431",
            ct="f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a",
        ),
        id="A.1.1-x25519-aes128gcm",
    ),
    pytest.param(
        RfcVector(
            suite=hpke.HpkeSuite(X25519, SHA256, HpkeAeadId.CHACHA20_POLY1305),
            ikm_e="909a9b35d3dc4713a5e72a4da274b55d3d3821a37e5d099e74a647db583a904b",
            ikm_r="1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df",
            sk_r="8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb",
            pk_r="4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a",
            enc="1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a",
            ct="1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28",
        ),
        id="A.2.1-x25519-chacha20poly1305",
    ),
]

TASK_ID = bytes(range(32))
METADATA = ReportMetadata(bytes(range(100, 116)), 1_700_000_000)
PUBLIC_SHARE = b"\x11" * 32


def flip(data: bytes, index: int) -> bytes:
    """``data`` with the low bit of byte ``index`` flipped."""
    out = bytearray(data)
    out[index] ^= 1
    return bytes(out)


# --- RFC 9180 known answers ---------------------------------------------------------------


@pytest.mark.parametrize("vector", RFC_VECTORS)
def test_rfc9180_base_vector(vector: RfcVector) -> None:
    keypair = hpke.derive_keypair(7, bytes.fromhex(vector.ikm_r), vector.suite)
    assert keypair.private_key.hex() == vector.sk_r
    assert bytes(keypair.config.public_key).hex() == vector.pk_r

    sealed = hpke.seal(keypair.config, RFC_INFO, RFC_AAD, RFC_PT, ephemeral_ikm=bytes.fromhex(vector.ikm_e))
    assert sealed.config_id == 7
    assert bytes(sealed.enc).hex() == vector.enc
    assert bytes(sealed.payload).hex() == vector.ct

    given_ct = HpkeCiphertext(7, bytes.fromhex(vector.enc), bytes.fromhex(vector.ct))
    assert hpke.open(keypair, given_ct, RFC_INFO, RFC_AAD) == RFC_PT


# --- DAP-09 info strings (digest §8) --------------------------------------------------------


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (lambda: hpke.input_share_info(Role.LEADER), "6461702d303920696e7075742073686172650102"),
        (lambda: hpke.input_share_info(Role.HELPER), "6461702d303920696e7075742073686172650103"),
        (lambda: hpke.aggregate_share_info(Role.LEADER), "6461702d3039206167677265676174652073686172650200"),
        (lambda: hpke.aggregate_share_info(Role.HELPER), "6461702d3039206167677265676174652073686172650300"),
    ],
    ids=["input-leader", "input-helper", "aggregate-leader", "aggregate-helper"],
)
def test_info_bytes(info, expected: str) -> None:
    assert info().hex() == expected


@pytest.mark.parametrize("role", [Role.CLIENT, Role.COLLECTOR])
def test_info_only_for_aggregators(role: Role) -> None:
    with pytest.raises(ValueError):
        hpke.input_share_info(role)
    with pytest.raises(ValueError):
        hpke.aggregate_share_info(role)


# --- keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", SUITES)
def test_round_trip(suite: hpke.HpkeSuite) -> None:
    keypair = hpke.generate_keypair(3, suite)
    assert hpke.HpkeSuite.of(keypair.config) == suite
    sealed = hpke.seal(keypair.config, b"info", b"aad", b"plaintext")
    assert sealed.config_id == 3
    assert len(sealed.payload) == len(b"plaintext") + 16  # every supported AEAD has a 16-byte tag
    assert hpke.open(keypair, sealed, b"info", b"aad") == b"plaintext"


@pytest.mark.parametrize("suite", SUITES)
def test_keypair_storage_round_trip(suite: hpke.HpkeSuite) -> None:
    keypair = hpke.generate_keypair(200, suite)
    stored = keypair.to_bytes()
    restored = hpke.HpkeKeypair.from_bytes(stored)
    assert restored == keypair
    assert restored.to_bytes() == stored
    sealed = hpke.seal(keypair.config, b"i", b"a", b"p")
    assert hpke.open(restored, sealed, b"i", b"a") == b"p"


def test_keypair_repr_hides_private_key() -> None:
    keypair = hpke.generate_keypair(1)
    assert keypair.private_key.hex() not in repr(keypair)
    assert repr(keypair.private_key) not in repr(keypair)


def test_keypair_rejects_foreign_private_key() -> None:
    one, other = hpke.generate_keypair(1), hpke.generate_keypair(1)
    with pytest.raises(HpkeError, match="does not match"):
        hpke.HpkeKeypair(one.config, other.private_key)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: b[:-1], id="truncated"),
        pytest.param(lambda b: b + b"\x00", id="trailing"),
        pytest.param(lambda b: b[:1], id="no-length"),
        pytest.param(lambda b: b"", id="empty"),
    ],
)
def test_keypair_from_bad_bytes(mangle) -> None:
    with pytest.raises(HpkeError):
        hpke.HpkeKeypair.from_bytes(mangle(hpke.generate_keypair(1).to_bytes()))


def test_derive_keypair_is_deterministic() -> None:
    a = hpke.derive_keypair(1, b"\x01" * 32)
    assert hpke.derive_keypair(1, b"\x01" * 32) == a
    assert hpke.derive_keypair(1, b"\x02" * 32).config.public_key != a.config.public_key


def test_seal_is_randomised() -> None:
    keypair = hpke.generate_keypair(1)
    first = hpke.seal(keypair.config, b"i", b"a", b"p")
    second = hpke.seal(keypair.config, b"i", b"a", b"p")
    assert first.enc != second.enc
    assert first.payload != second.payload


@pytest.mark.parametrize(
    "suite",
    [
        pytest.param(hpke.HpkeSuite(0x0099, SHA256, HpkeAeadId.AES_128_GCM), id="unknown-kem"),
        pytest.param(hpke.HpkeSuite(X25519, 0x0099, HpkeAeadId.AES_128_GCM), id="unknown-kdf"),
        pytest.param(hpke.HpkeSuite(X25519, SHA256, 0x0099), id="unknown-aead"),
        pytest.param(hpke.HpkeSuite(X25519, SHA256, 0xFFFF), id="export-only-aead"),
    ],
)
def test_unsupported_suite(suite: hpke.HpkeSuite) -> None:
    assert not suite.supported
    with pytest.raises(HpkeError, match="unsupported HPKE suite"):
        hpke.generate_keypair(1, suite)
    config = HpkeConfig(1, suite.kem_id, suite.kdf_id, suite.aead_id, b"\x09" * 32)
    with pytest.raises(HpkeError, match="unsupported HPKE suite"):
        hpke.seal(config, b"i", b"a", b"p")


@pytest.mark.parametrize("public_key", [b"\x01" * 31, b"\x01" * 33], ids=["short", "long"])
def test_seal_to_malformed_public_key(public_key: bytes) -> None:
    config = HpkeConfig(1, X25519, SHA256, HpkeAeadId.AES_128_GCM, public_key)
    with pytest.raises(HpkeError):
        hpke.seal(config, b"i", b"a", b"p")


def test_select_config_takes_first_supported() -> None:
    chacha = hpke.generate_keypair(2, hpke.HpkeSuite(X25519, SHA256, HpkeAeadId.CHACHA20_POLY1305)).config
    mandatory = hpke.generate_keypair(3).config
    unknown = HpkeConfig(1, 0x0099, SHA256, HpkeAeadId.AES_128_GCM, b"\x05" * 32)
    assert hpke.select_config(HpkeConfigList([unknown, chacha, mandatory])) == chacha
    with pytest.raises(HpkeError, match="none of the 1"):
        hpke.select_config(HpkeConfigList([unknown]))


# --- every way opening must fail ------------------------------------------------------------


@pytest.fixture(scope="module")
def sealed() -> tuple[hpke.HpkeKeypair, HpkeCiphertext]:
    keypair = hpke.generate_keypair(9)
    return keypair, hpke.seal(keypair.config, b"info", b"aad", b"the plaintext")


def test_sealed_fixture_opens(sealed) -> None:
    keypair, ciphertext = sealed
    assert hpke.open(keypair, ciphertext, b"info", b"aad") == b"the plaintext"


@pytest.mark.parametrize(
    "attack",
    [
        pytest.param(lambda kp, ct: (hpke.generate_keypair(9), ct, b"info", b"aad"), id="wrong-key"),
        pytest.param(lambda kp, ct: (kp, ct, b"infO", b"aad"), id="wrong-info"),
        pytest.param(lambda kp, ct: (kp, ct, b"info", b"aaD"), id="wrong-aad"),
        pytest.param(lambda kp, ct: (kp, ct, b"info", b""), id="empty-aad"),
        pytest.param(lambda kp, ct: (kp, HpkeCiphertext(9, ct.enc, flip(ct.payload, 0)), b"info", b"aad"), id="payload-first-byte"),
        pytest.param(lambda kp, ct: (kp, HpkeCiphertext(9, ct.enc, flip(ct.payload, -1)), b"info", b"aad"), id="payload-tag"),
        pytest.param(lambda kp, ct: (kp, HpkeCiphertext(9, ct.enc, ct.payload[:-1]), b"info", b"aad"), id="payload-truncated"),
        pytest.param(lambda kp, ct: (kp, HpkeCiphertext(9, ct.enc, ct.payload[:15]), b"info", b"aad"), id="payload-shorter-than-tag"),
        pytest.param(lambda kp, ct: (kp, HpkeCiphertext(9, flip(ct.enc, 3), ct.payload), b"info", b"aad"), id="enc-flipped"),
        pytest.param(lambda kp, ct: (kp, HpkeCiphertext(9, ct.enc[:-1], ct.payload), b"info", b"aad"), id="enc-short"),
        pytest.param(lambda kp, ct: (kp, HpkeCiphertext(9, bytes(32), ct.payload), b"info", b"aad"), id="enc-low-order"),
        pytest.param(lambda kp, ct: (kp, HpkeCiphertext(8, ct.enc, ct.payload), b"info", b"aad"), id="config-id-mismatch"),
    ],
)
def test_open_failure(sealed, attack) -> None:
    keypair, ciphertext = sealed
    with pytest.raises(HpkeError):
        hpke.open(*attack(keypair, ciphertext))


def test_config_id_mismatch_is_named(sealed) -> None:
    keypair, ciphertext = sealed
    with pytest.raises(HpkeError, match="config 8.*config 9"):
        hpke.open(keypair, HpkeCiphertext(8, ciphertext.enc, ciphertext.payload), b"info", b"aad")


_HYPOTHESIS_KEYPAIR = hpke.derive_keypair(4, b"hypothesis round trip key, 32 b.")


@settings(max_examples=25, deadline=None)
@given(info=st.binary(max_size=64), aad=st.binary(max_size=300), plaintext=st.binary(max_size=300))
def test_round_trip_any_bytes(info: bytes, aad: bytes, plaintext: bytes) -> None:
    keypair = _HYPOTHESIS_KEYPAIR
    sealed = hpke.seal(keypair.config, info, aad, plaintext)
    assert hpke.open(keypair, sealed, info, aad) == plaintext


# --- DAP-level helpers -----------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.LEADER, Role.HELPER])
def test_input_share_round_trip(role: Role) -> None:
    keypair = hpke.generate_keypair(1)
    share = PlaintextInputShare([], b"\x07" * 48)
    sealed = hpke.seal_input_share(keypair.config, role, TASK_ID, METADATA, PUBLIC_SHARE, share)
    opened = hpke.open_input_share(keypair, role, TASK_ID, METADATA, PUBLIC_SHARE, sealed)
    assert opened.encode() == share.encode()
    # The same bytes, opened with the raw API, show the info and AAD this module uses.
    aad = TASK_ID + METADATA.encode() + len(PUBLIC_SHARE).to_bytes(4, "big") + PUBLIC_SHARE
    assert hpke.open(keypair, sealed, hpke.input_share_info(role), aad) == share.encode()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda: (Role.HELPER, TASK_ID, METADATA, PUBLIC_SHARE), id="other-aggregator"),
        pytest.param(lambda: (Role.LEADER, flip(TASK_ID, 31), METADATA, PUBLIC_SHARE), id="task-id"),
        pytest.param(lambda: (Role.LEADER, TASK_ID, ReportMetadata(flip(METADATA.report_id, 0), METADATA.time), PUBLIC_SHARE), id="report-id"),
        pytest.param(lambda: (Role.LEADER, TASK_ID, ReportMetadata(METADATA.report_id, METADATA.time + 1), PUBLIC_SHARE), id="time"),
        pytest.param(lambda: (Role.LEADER, TASK_ID, METADATA, flip(PUBLIC_SHARE, 5)), id="public-share"),
        pytest.param(lambda: (Role.LEADER, TASK_ID, METADATA, b""), id="public-share-dropped"),
    ],
)
def test_input_share_bound_to_context(change) -> None:
    keypair = hpke.generate_keypair(1)
    share = PlaintextInputShare([], b"\x07" * 48)
    sealed = hpke.seal_input_share(keypair.config, Role.LEADER, TASK_ID, METADATA, PUBLIC_SHARE, share)
    role, task_id, metadata, public_share = change()
    with pytest.raises(HpkeError):
        hpke.open_input_share(keypair, role, task_id, metadata, public_share, sealed)


def test_input_share_undecodable_plaintext_is_decode_error() -> None:
    keypair = hpke.generate_keypair(1)
    aad = TASK_ID + METADATA.encode() + len(PUBLIC_SHARE).to_bytes(4, "big") + PUBLIC_SHARE
    sealed = hpke.seal(keypair.config, hpke.input_share_info(Role.HELPER), aad, b"\x00\x05oops")
    with pytest.raises(DecodeError):
        hpke.open_input_share(keypair, Role.HELPER, TASK_ID, METADATA, PUBLIC_SHARE, sealed)


def _time_interval(start: int) -> BatchSelector:
    return BatchSelector.time_interval(Interval(start, 3600))


@pytest.mark.parametrize("role", [Role.LEADER, Role.HELPER])
def test_aggregate_share_round_trip(role: Role) -> None:
    collector = hpke.generate_keypair(5)
    selector = _time_interval(1_699_999_200)
    sealed = hpke.seal_aggregate_share(collector.config, role, TASK_ID, b"", selector, b"\x2a" * 16)
    assert sealed.config_id == 5
    assert hpke.open_aggregate_share(collector, role, TASK_ID, b"", selector, sealed) == b"\x2a" * 16
    aad = TASK_ID + bytes(4) + selector.encode()
    assert hpke.open(collector, sealed, hpke.aggregate_share_info(role), aad) == b"\x2a" * 16


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda: (Role.HELPER, TASK_ID, b"", _time_interval(1_699_999_200)), id="other-aggregator"),
        pytest.param(lambda: (Role.LEADER, flip(TASK_ID, 0), b"", _time_interval(1_699_999_200)), id="task-id"),
        pytest.param(lambda: (Role.LEADER, TASK_ID, b"\x00", _time_interval(1_699_999_200)), id="agg-param"),
        pytest.param(lambda: (Role.LEADER, TASK_ID, b"", _time_interval(1_700_002_800)), id="batch-interval"),
    ],
)
def test_aggregate_share_bound_to_context(change) -> None:
    collector = hpke.generate_keypair(5)
    selector = _time_interval(1_699_999_200)
    sealed = hpke.seal_aggregate_share(collector.config, Role.LEADER, TASK_ID, b"", selector, b"\x2a" * 16)
    role, task_id, agg_param, batch_selector = change()
    with pytest.raises(HpkeError):
        hpke.open_aggregate_share(collector, role, task_id, agg_param, batch_selector, sealed)


# --- the direct X25519 path against pyhpke ---------------------------------------------------

X25519_SUITES = [
    pytest.param(hpke.HpkeSuite(X25519, kdf, aead), id=f"{kdf.name}-{aead.name}")
    for kdf in HpkeKdfId for aead in HpkeAeadId
]


@pytest.mark.parametrize("suite", X25519_SUITES)
def test_x25519_direct_path_interoperates_with_pyhpke(suite: hpke.HpkeSuite) -> None:
    """dap.hpke opens X25519 suites without pyhpke: both directions must agree with pyhpke."""
    import pyhpke

    cipher = pyhpke.CipherSuite.new(pyhpke.KEMId(suite.kem_id), pyhpke.KDFId(suite.kdf_id),
                                    pyhpke.AEADId(suite.aead_id))
    keypair = hpke.generate_keypair(5, suite)
    info, aad, plaintext = b"dap-09 input share\x01\x02", b"the aad", b"x" * 100

    enc, sender = cipher.create_sender_context(
        cipher.kem.deserialize_public_key(bytes(keypair.config.public_key)), info)
    from_pyhpke = HpkeCiphertext(5, bytes(enc), bytes(sender.seal(plaintext, aad)))
    assert hpke.open(keypair, from_pyhpke, info, aad) == plaintext
    with pytest.raises(HpkeError):
        hpke.open(keypair, from_pyhpke, info + b"!", aad)

    ours = hpke.seal(keypair.config, info, aad, plaintext)
    recipient = cipher.create_recipient_context(
        bytes(ours.enc), cipher.kem.deserialize_private_key(keypair.private_key), info)
    assert recipient.open(bytes(ours.payload), aad) == plaintext
