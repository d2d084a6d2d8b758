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

pyhpke (0.6.5) does the work; its single-shot ``CipherSuite.seal/open`` are not implemented, so
one sender/recipient context is created per message, exactly as Base-mode single shot is defined.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import Any

import attrs
import pyhpke
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
    cipher = _cipher_suite(HpkeSuite.of(config))
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
    cipher = _cipher_suite(keypair.suite)
    try:
        context = cipher.create_recipient_context(bytes(ciphertext.enc), keypair._key, bytes(info))
        return bytes(context.open(bytes(ciphertext.payload), bytes(aad)))
    except _CRYPTO_ERRORS as exc:
        raise HpkeError(f"HPKE open with config {keypair.config.id} failed") from exc


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
