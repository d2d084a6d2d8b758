"""HPKE (RFC 9180, Base mode, single shot) as DAP-09 uses it (dap-09 digest §8).

Three layers, each built on the one before:

* suites and keys: :class:`HpkeSuite`, :func:`generate_keypair`, :func:`derive_keypair`,
  :class:`HpkeKeypair` (the public :class:`~dap.messages.HpkeConfig` plus the private key,
  storable with :meth:`HpkeKeypair.to_bytes`), :func:`select_config` (the Client's choice);
* :func:`seal` / :func:`open` on raw ``info`` and ``aad`` bytes, producing and consuming
  :class:`~dap.messages.HpkeCiphertext`;
* DAP: the exact ``info`` strings (:func:`input_share_info`, :func:`aggregate_share_info`) and
  helpers that build the AAD from message classes (:func:`seal_input_share`,
  :func:`open_input_share`, :func:`seal_aggregate_share`, :func:`open_aggregate_share`).

Every failure of the cryptography (unsupported suite, malformed key or ``enc``, wrong key,
config-id mismatch, failed AEAD open) is an :class:`~dap.errors.HpkeError`; a plaintext that
opens but does not decode is the codec's :class:`~dap.errors.DecodeError` (DAP tells the two
apart: PrepareError ``hpke_decrypt_error`` vs ``invalid_message``).

Suites with DHKEM(X25519, HKDF-SHA256) (DAP's mandatory KEM) run on :class:`_X25519Base`, a
direct RFC 9180 Base-mode single-shot implementation over ``cryptography``'s X25519 and AEADs and
``hmac.digest`` (an open costs about a third less CPU than through pyhpke's context objects, which
matters: every upload is opened by both Aggregators). Every other suite goes through pyhpke (0.6.5); its
single-shot ``CipherSuite.seal/open`` are not implemented, so one sender/recipient context is
created per message, exactly as Base-mode single shot is defined. The tests check both paths
against the RFC 9180 vectors and against each other.
"""

from __future__ import annotations

import functools
import hmac
import os
import struct
from typing import Any

import attrs
import pyhpke
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from dap.constants import HpkeAeadId, HpkeKdfId, HpkeKemId, Role
from dap.errors import DecodeError, HpkeError
from dap.messages import (
    AggregateShareAad,
    BatchSelector,
    HpkeCiphertext,
    HpkeConfig,
    HpkeConfigList,
    InputShareAad,
    PlaintextInputShare,
    ReportMetadata,
)

__all__ = [
    "MANDATORY_SUITE",
    "HpkeKeypair",
    "HpkeSuite",
    "aggregate_share_info",
    "derive_keypair",
    "generate_keypair",
    "input_share_info",
    "open",
    "open_aggregate_share",
    "open_input_share",
    "seal",
    "seal_aggregate_share",
    "seal_input_share",
    "select_config",
]

# pyhpke implements every RFC 9180 DHKEM (P-256/384/521, X25519, X448), all three HKDFs and
# all three AEADs; any combination is accepted here. dap.constants names the ones DAP-09 lists.

# Nsk (RFC 9180 §7.1): the length of a serialised private key.
_PRIVATE_KEY_LEN = {
    KEMId.DHKEM_P256_HKDF_SHA256: 32,
    KEMId.DHKEM_P384_HKDF_SHA384: 48,
    KEMId.DHKEM_P521_HKDF_SHA512: 66,
    KEMId.DHKEM_X25519_HKDF_SHA256: 32,
    KEMId.DHKEM_X448_HKDF_SHA512: 56,
}
_EC_KEMS = frozenset(
    {KEMId.DHKEM_P256_HKDF_SHA256, KEMId.DHKEM_P384_HKDF_SHA384, KEMId.DHKEM_P521_HKDF_SHA512}
)
# pyhpke's export-only AEAD cannot seal, so it is not a DAP suite.
_AEADS = frozenset({AEADId.AES128_GCM, AEADId.AES256_GCM, AEADId.CHACHA20_POLY1305})

# Errors the crypto layer raises for bad keys, bad enc or a failed open.
_CRYPTO_ERRORS = (pyhpke.PyHPKEError, ValueError)

# The ASCII labels of DAP-09 §"Input share encryption" / "Aggregate share encryption".
_INPUT_SHARE_LABEL = b"dap-09 input share"
_AGGREGATE_SHARE_LABEL = b"dap-09 aggregate share"


@attrs.frozen
class HpkeSuite:
    """An RFC 9180 (KEM, KDF, AEAD) triple, as the three ids of an ``HpkeConfig``."""

    kem_id: int = attrs.field(converter=int)
    kdf_id: int = attrs.field(converter=int)
    aead_id: int = attrs.field(converter=int)

    @classmethod
    def of(cls, config: HpkeConfig) -> HpkeSuite:
        return cls(config.kem_id, config.kdf_id, config.aead_id)

    @property
    def supported(self) -> bool:
        try:
            _cipher_suite(self)
        except HpkeError:
            return False
        return True


MANDATORY_SUITE = HpkeSuite(
    HpkeKemId.X25519_HKDF_SHA256, HpkeKdfId.HKDF_SHA256, HpkeAeadId.AES_128_GCM
)
"""DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-128-GCM, the suite every party must support."""


@functools.cache
def _cipher_suite(suite: HpkeSuite) -> CipherSuite:
    try:
        kem, kdf, aead = KEMId(suite.kem_id), KDFId(suite.kdf_id), AEADId(suite.aead_id)
    except ValueError:
        raise HpkeError(f"unsupported HPKE suite {_describe(suite)}") from None
    if aead not in _AEADS:
        raise HpkeError(f"unsupported HPKE suite {_describe(suite)}: export-only AEAD")
    return CipherSuite.new(kem, kdf, aead)


def _describe(suite: HpkeSuite) -> str:
    return f"(kem 0x{suite.kem_id:04x}, kdf 0x{suite.kdf_id:04x}, aead 0x{suite.aead_id:04x})"


def _private_key_bytes(suite: HpkeSuite, key: Any) -> bytes:
    """SerializePrivateKey (RFC 9180 §7.1.2): raw for X25519/X448, big-endian scalar for EC."""
    kem = KEMId(suite.kem_id)
    if kem in _EC_KEMS:
        return int(key.raw.private_numbers().private_value).to_bytes(_PRIVATE_KEY_LEN[kem], "big")
    return bytes(key.to_private_bytes())


@attrs.frozen
class HpkeKeypair:
    """An Aggregator's (or Collector's) HPKE config with its private key.

    ``config`` is what is published in an ``HpkeConfigList``; ``private_key`` is the RFC 9180
    serialised private key (32 bytes for X25519 and P-256). Construction checks that the key
    belongs to ``config.public_key`` and raises :class:`HpkeError` otherwise.
    """

    config: HpkeConfig
    private_key: bytes = attrs.field(converter=bytes, repr=False)
    _key: Any = attrs.field(init=False, repr=False, eq=False)
    # For X25519 suites: (the cryptography private key, the serialised public key), so an
    # open does not parse the key again.
    _x25519: tuple[X25519PrivateKey, bytes] | None = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        suite = HpkeSuite.of(self.config)
        kem = _cipher_suite(suite).kem
        try:
            key = kem.deserialize_private_key(self.private_key)
            public = kem.deserialize_public_key(bytes(self.config.public_key))
        except _CRYPTO_ERRORS as exc:
            raise HpkeError(f"malformed HPKE key for config {self.config.id}: {exc}") from exc
        if _public_key_bytes(key) != public.to_public_bytes():
            raise HpkeError(f"private key does not match the public key of config {self.config.id}")
        object.__setattr__(self, "_key", key)
        fast = None
        if _x25519_base(suite) is not None:
            fast = (X25519PrivateKey.from_private_bytes(self.private_key),
                    bytes(self.config.public_key))
        object.__setattr__(self, "_x25519", fast)

    @property
    def suite(self) -> HpkeSuite:
        return HpkeSuite.of(self.config)

    def to_bytes(self) -> bytes:
        """``vec16(encoded HpkeConfig) || vec16(private_key)``, for storage (e.g. SQLite)."""
        config = self.config.encode()
        return _vec16(config) + _vec16(self.private_key)

    @classmethod
    def from_bytes(cls, data: bytes) -> HpkeKeypair:
        """Inverse of :meth:`to_bytes`; :class:`HpkeError` if the bytes are not a keypair."""
        data = bytes(data)
        config_bytes, rest = _split_vec16(data, "config")
        private_key, rest = _split_vec16(rest, "private_key")
        if rest:
            raise HpkeError(f"stored HPKE keypair has {len(rest)} trailing bytes")
        try:
            config = HpkeConfig.decode(config_bytes)
        except DecodeError as exc:
            raise HpkeError(f"stored HPKE keypair has a bad config: {exc}") from exc
        return cls(config, private_key)


def _vec16(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def _split_vec16(data: bytes, field: str) -> tuple[bytes, bytes]:
    if len(data) < 2:
        raise HpkeError(f"stored HPKE keypair is truncated in {field}")
    (length,) = struct.unpack_from(">H", data)
    if len(data) < 2 + length:
        raise HpkeError(f"stored HPKE keypair is truncated in {field}")
    return data[2 : 2 + length], data[2 + length :]


def _public_key_bytes(private_key: Any) -> bytes:
    """SerializePublicKey of the public half of a pyhpke private key."""
    public = pyhpke.KEMKey.from_pyca_cryptography_key(private_key.raw.public_key())
    return bytes(public.to_public_bytes())


def derive_keypair(config_id: int, ikm: bytes, suite: HpkeSuite = MANDATORY_SUITE) -> HpkeKeypair:
    """DeriveKeyPair (RFC 9180 §7.1.3) from ``ikm``: the same ``ikm`` always gives the same key.

    Use it where a run must be reproducible from a seed; ``ikm`` should hold at least Nsk
    (32 for X25519/P-256) bytes of secret entropy.
    """
    kem = _cipher_suite(suite).kem
    try:
        pair = kem.derive_key_pair(bytes(ikm))
    except _CRYPTO_ERRORS as exc:
        raise HpkeError(f"cannot derive an HPKE key pair: {exc}") from exc
    config = HpkeConfig(
        config_id, suite.kem_id, suite.kdf_id, suite.aead_id, pair.public_key.to_public_bytes()
    )
    return HpkeKeypair(config, _private_key_bytes(suite, pair.private_key))


def generate_keypair(config_id: int, suite: HpkeSuite = MANDATORY_SUITE) -> HpkeKeypair:
    """A fresh random key pair for ``suite``, published under ``config_id``."""
    kem = _cipher_suite(suite).kem
    return derive_keypair(config_id, os.urandom(_PRIVATE_KEY_LEN[kem.id]), suite)


def select_config(config_list: HpkeConfigList) -> HpkeConfig:
    """The Client's choice (digest §8): the first config whose suite is supported here."""
    for config in config_list.configs:
        if HpkeSuite.of(config).supported:
            return config
    raise HpkeError(f"none of the {len(config_list.configs)} HPKE configs has a supported suite")


def seal(
    config: HpkeConfig,
    info: bytes,
    aad: bytes,
    plaintext: bytes,
    *,
    ephemeral_ikm: bytes | None = None,
) -> HpkeCiphertext:
    """SealBase to ``config``'s public key.

    ``ephemeral_ikm`` derives the ephemeral key deterministically (RFC 9180 test vectors,
    reproducible runs); by default it is random, as the protocol requires.
    """
    suite = HpkeSuite.of(config)
    fast = _x25519_base(suite)
    if fast is not None:
        return HpkeCiphertext(config.id, *fast.seal(config, info, aad, plaintext, ephemeral_ikm))
    cipher = _cipher_suite(suite)
    try:
        public = cipher.kem.deserialize_public_key(bytes(config.public_key))
        ephemeral = None if ephemeral_ikm is None else cipher.kem.derive_key_pair(bytes(ephemeral_ikm))
        enc, context = cipher.create_sender_context(public, bytes(info), eks=ephemeral)
        payload = context.seal(bytes(plaintext), bytes(aad))
    except _CRYPTO_ERRORS as exc:
        raise HpkeError(f"HPKE seal to config {config.id} failed: {exc}") from exc
    return HpkeCiphertext(config.id, enc, payload)


def open(keypair: HpkeKeypair, ciphertext: HpkeCiphertext, info: bytes, aad: bytes) -> bytes:  # noqa: A001
    """OpenBase with ``keypair``; :class:`HpkeError` on a config-id mismatch or any failure."""
    if ciphertext.config_id != keypair.config.id:
        raise HpkeError(
            f"ciphertext is for HPKE config {ciphertext.config_id}, key is config {keypair.config.id}"
        )
    if keypair._x25519 is not None:
        fast = _x25519_base(keypair.suite)
        assert fast is not None
        return fast.open(keypair, ciphertext, info, aad)
    cipher = _cipher_suite(keypair.suite)
    try:
        context = cipher.create_recipient_context(bytes(ciphertext.enc), keypair._key, bytes(info))
        return bytes(context.open(bytes(ciphertext.payload), bytes(aad)))
    except _CRYPTO_ERRORS as exc:
        raise HpkeError(f"HPKE open with config {keypair.config.id} failed") from exc


# --- RFC 9180 Base mode, single shot, for DHKEM(X25519, HKDF-SHA256) ------------------------

_HASH_OF_KDF = {KDFId.HKDF_SHA256: "sha256", KDFId.HKDF_SHA384: "sha384",
                KDFId.HKDF_SHA512: "sha512"}
# AEAD id -> (cryptography class, Nk); Nn is 12 for all three.
_AEAD_OF_ID = {AEADId.AES128_GCM: (AESGCM, 16), AEADId.AES256_GCM: (AESGCM, 32),
               AEADId.CHACHA20_POLY1305: (ChaCha20Poly1305, 32)}
# An empty HKDF-Extract salt means Nh zero bytes.
_ZERO_SALT = {"sha256": bytes(32), "sha384": bytes(48), "sha512": bytes(64)}
_KEM_X25519_SUITE_ID = b"KEM" + struct.pack(">H", KEMId.DHKEM_X25519_HKDF_SHA256.value)


def _labeled_extract(hash_name: str, suite_id: bytes, salt: bytes, label: bytes,
                     ikm: bytes) -> bytes:
    """LabeledExtract (RFC 9180 §4): HKDF-Extract = HMAC(salt or Nh zeros, labeled ikm)."""
    return hmac.digest(salt or _ZERO_SALT[hash_name], b"HPKE-v1" + suite_id + label + ikm, hash_name)


def _labeled_expand(hash_name: str, suite_id: bytes, prk: bytes, label: bytes, info: bytes,
                    length: int) -> bytes:
    """LabeledExpand (RFC 9180 §4): HKDF-Expand of the labeled info, ``length`` bytes."""
    labeled_info = struct.pack(">H", length) + b"HPKE-v1" + suite_id + label + info
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(prk, block + labeled_info + bytes((counter,)), hash_name)
        out += block
        counter += 1
    return out[:length]


def _single_block_expand_input(suite_id: bytes, label: bytes, info: bytes, length: int) -> bytes:
    """The HMAC input of the first (and, for ``length <= Nh``, only) HKDF-Expand block of
    LabeledExpand (RFC 9180 §4): ``labeled_info || 0x01``."""
    return struct.pack(">H", length) + b"HPKE-v1" + suite_id + label + info + b"\x01"


# LabeledExtract("", "eae_prk", dh) and LabeledExpand(eae_prk, "shared_secret", enc || pkR, 32)
# of DHKEM(X25519, HKDF-SHA256) (RFC 9180 §4.1), up to their per-message parts.
_EAE_PRK_PREFIX = b"HPKE-v1" + _KEM_X25519_SUITE_ID + b"eae_prk"
_SHARED_SECRET_PREFIX = struct.pack(">H", 32) + b"HPKE-v1" + _KEM_X25519_SUITE_ID + b"shared_secret"


class _X25519Base:
    """Base-mode SealBase / OpenBase with DHKEM(X25519, HKDF-SHA256) and one KDF/AEAD pair.

    The key schedule's ``psk_id_hash`` and ``info_hash`` depend only on ``info`` (DAP uses four
    fixed ones), so they are cached per ``info`` (as the HMAC inputs that derive the key and
    the base nonce).
    """

    def __init__(self, suite: HpkeSuite) -> None:
        self.hash_name = _HASH_OF_KDF[KDFId(suite.kdf_id)]
        self.aead_class, self.nk = _AEAD_OF_ID[AEADId(suite.aead_id)]
        self.suite_id = b"HPKE" + struct.pack(">HHH", suite.kem_id, suite.kdf_id, suite.aead_id)
        self._expand_inputs: dict[bytes, tuple[bytes, bytes]] = {}

    def _key_and_nonce_inputs(self, info: bytes) -> tuple[bytes, bytes]:
        """The HMAC inputs of ``LabeledExpand(secret, "key", ctx, Nk)`` and
        ``LabeledExpand(secret, "base_nonce", ctx, 12)``: they depend on ``info`` only (the
        key schedule context holds ``psk_id_hash`` and ``info_hash``); cached per ``info``."""
        inputs = self._expand_inputs.get(info)
        if inputs is None:
            h, sid = self.hash_name, self.suite_id
            ctx = (b"\x00" + _labeled_extract(h, sid, b"", b"psk_id_hash", b"")
                   + _labeled_extract(h, sid, b"", b"info_hash", info))
            inputs = (_single_block_expand_input(sid, b"key", ctx, self.nk),
                      _single_block_expand_input(sid, b"base_nonce", ctx, 12))
            if len(self._expand_inputs) < 64:
                self._expand_inputs[info] = inputs
        return inputs

    def _aead(self, dh: bytes, enc: bytes, pk_r: bytes, info: bytes) -> tuple[Any, bytes]:
        """(AEAD keyed for this message, base_nonce) from the DH output (sequence number 0).

        Every LabeledExpand here asks for at most Nh bytes (32 from SHA-256 for the KEM's
        shared secret; Nk <= 32 and Nn = 12 from a KDF with Nh >= 32), so each is the single
        HKDF-Expand block ``HMAC(prk, labeled_info || 0x01)`` truncated: five HMACs in all,
        with every constant part of their inputs prepared once.
        """
        h = self.hash_name
        eae_prk = hmac.digest(_ZERO_SALT["sha256"], _EAE_PRK_PREFIX + dh, "sha256")
        shared_secret = hmac.digest(eae_prk, _SHARED_SECRET_PREFIX + enc + pk_r + b"\x01", "sha256")
        secret = hmac.digest(shared_secret, b"HPKE-v1" + self.suite_id + b"secret", h)
        key_input, nonce_input = self._key_and_nonce_inputs(bytes(info))
        key = hmac.digest(secret, key_input, h)[: self.nk]
        nonce = hmac.digest(secret, nonce_input, h)[:12]
        return self.aead_class(key), nonce

    def seal(self, config: HpkeConfig, info: bytes, aad: bytes, plaintext: bytes,
             ephemeral_ikm: bytes | None) -> tuple[bytes, bytes]:
        """(enc, ciphertext) for ``config``'s public key."""
        pk_r = bytes(config.public_key)
        try:
            public = X25519PublicKey.from_public_bytes(pk_r)
            if ephemeral_ikm is None:
                ephemeral = X25519PrivateKey.generate()
            else:  # DeriveKeyPair (RFC 9180 §7.1.3) for X25519
                dkp_prk = _labeled_extract("sha256", _KEM_X25519_SUITE_ID, b"", b"dkp_prk",
                                           bytes(ephemeral_ikm))
                ephemeral = X25519PrivateKey.from_private_bytes(_labeled_expand(
                    "sha256", _KEM_X25519_SUITE_ID, dkp_prk, b"sk", b"", 32))
            dh = ephemeral.exchange(public)
        except ValueError as exc:  # malformed public key, or an all-zero shared secret
            raise HpkeError(f"HPKE seal to config {config.id} failed: {exc}") from exc
        enc = ephemeral.public_key().public_bytes_raw()
        aead, nonce = self._aead(dh, enc, pk_r, info)
        return enc, aead.encrypt(nonce, bytes(plaintext), bytes(aad))

    def open(self, keypair: HpkeKeypair, ciphertext: HpkeCiphertext, info: bytes,
             aad: bytes) -> bytes:
        assert keypair._x25519 is not None
        private, pk_r = keypair._x25519
        enc = bytes(ciphertext.enc)
        try:
            dh = private.exchange(X25519PublicKey.from_public_bytes(enc))
            aead, nonce = self._aead(dh, enc, pk_r, info)
            return aead.decrypt(nonce, bytes(ciphertext.payload), bytes(aad))
        except (ValueError, InvalidTag) as exc:
            raise HpkeError(f"HPKE open with config {keypair.config.id} failed") from exc


@functools.cache
def _x25519_base(suite: HpkeSuite) -> _X25519Base | None:
    """The direct implementation for ``suite`` if its KEM is X25519, else None (pyhpke)."""
    try:
        kem, kdf, aead = KEMId(suite.kem_id), KDFId(suite.kdf_id), AEADId(suite.aead_id)
    except ValueError:
        return None
    if kem != KEMId.DHKEM_X25519_HKDF_SHA256 or kdf not in _HASH_OF_KDF or aead not in _AEAD_OF_ID:
        return None
    return _X25519Base(suite)


def _aggregator(role: Role) -> int:
    if role not in (Role.LEADER, Role.HELPER):
        raise ValueError(f"role must be the Leader or the Helper, not {role!r}")
    return int(role)


def input_share_info(role: Role) -> bytes:
    """``"dap-09 input share" || 0x01 (Client) || role`` for the receiving Aggregator."""
    return _INPUT_SHARE_LABEL + bytes([int(Role.CLIENT), _aggregator(role)])


def aggregate_share_info(role: Role) -> bytes:
    """``"dap-09 aggregate share" || role || 0x00 (Collector)`` for the sending Aggregator."""
    return _AGGREGATE_SHARE_LABEL + bytes([_aggregator(role), int(Role.COLLECTOR)])


def _input_share_aad(task_id: bytes, metadata: ReportMetadata, public_share: bytes) -> bytes:
    return InputShareAad(task_id, metadata, public_share).encode()


def seal_input_share(
    config: HpkeConfig,
    role: Role,
    task_id: bytes,
    metadata: ReportMetadata,
    public_share: bytes,
    input_share: PlaintextInputShare,
) -> HpkeCiphertext:
    """Client side: seal ``input_share`` for the Aggregator ``role`` whose config is ``config``."""
    aad = _input_share_aad(task_id, metadata, public_share)
    return seal(config, input_share_info(role), aad, input_share.encode())


def open_input_share(
    keypair: HpkeKeypair,
    role: Role,
    task_id: bytes,
    metadata: ReportMetadata,
    public_share: bytes,
    ciphertext: HpkeCiphertext,
) -> PlaintextInputShare:
    """Aggregator ``role``: open and decode its input share (HpkeError, then DecodeError)."""
    aad = _input_share_aad(task_id, metadata, public_share)
    plaintext = open(keypair, ciphertext, input_share_info(role), aad)
    return PlaintextInputShare.decode(plaintext)


def seal_aggregate_share(
    config: HpkeConfig,
    role: Role,
    task_id: bytes,
    agg_param: bytes,
    batch_selector: BatchSelector,
    aggregate_share: bytes,
) -> HpkeCiphertext:
    """Aggregator ``role``: seal its encoded aggregate share to the Collector's ``config``."""
    aad = AggregateShareAad(task_id, agg_param, batch_selector).encode()
    return seal(config, aggregate_share_info(role), aad, aggregate_share)


def open_aggregate_share(
    keypair: HpkeKeypair,
    role: Role,
    task_id: bytes,
    agg_param: bytes,
    batch_selector: BatchSelector,
    ciphertext: HpkeCiphertext,
) -> bytes:
    """Collector: open the aggregate share that Aggregator ``role`` sealed (raw VDAF bytes)."""
    aad = AggregateShareAad(task_id, agg_param, batch_selector).encode()
    return open(keypair, ciphertext, aggregate_share_info(role), aad)
