"""Extendable-output functions (VDAF-08 section 6.2) and domain separation tags.

:class:`Xof` is the interface every XOF implements (``SEED_SIZE``, a stream
opened from ``(seed, dst, binder)`` and read with :meth:`Xof.next`); the
derived operations ``next_vec``, ``derive_seed`` and ``expand_into_vec`` are
written once on the base class. Prio3 and Poplar1 use :class:`XofTurboShake128`;
Poplar1's IDPF uses :class:`XofFixedKeyAes128`, whose keyed block hash
:class:`FixedKeyAes128` is also exposed so the IDPF can hash the seeds of many
tree nodes in one AES call.

TurboSHAKE128 comes from PyCryptodome (``Crypto.Hash.TurboSHAKE128``), AES-128
from ``cryptography``; there is no Keccak or AES code in this project.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import lru_cache
from typing import Any, ClassVar, Final

from Crypto.Hash import TurboSHAKE128
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from dap.errors import VdafError
from dap.vdaf.field import Field

__all__ = ["VERSION", "FixedKeyAes128", "Xof", "XofFixedKeyAes128", "XofTurboShake128", "format_dst"]

#: VDAF draft version that goes into every domain separation tag.
VERSION: Final = 8


def format_dst(algo_class: int, algo_id: int, usage: int) -> bytes:
    """``byte(VERSION) || byte(algo_class) || be32(algo_id) || be16(usage)``."""
    if not (0 <= algo_class < 256 and 0 <= algo_id < 2**32 and 0 <= usage < 2**16):
        raise VdafError(f"bad DST parameters class={algo_class} id={algo_id:#x} usage={usage}")
    return bytes((VERSION, algo_class)) + algo_id.to_bytes(4, "big") + usage.to_bytes(2, "big")


class Xof(ABC):
    """One XOF stream, keyed by a seed and bound to a DST and a binder string."""

    SEED_SIZE: ClassVar[int]

    __slots__ = ()

    @abstractmethod
    def __init__(self, seed: bytes, dst: bytes, binder: bytes) -> None: ...

    @abstractmethod
    def next(self, length: int) -> bytes:
        """The next ``length`` bytes of the stream."""

    def next_vec(self, field: Field, length: int) -> list[int]:
        """``length`` field elements by rejection sampling (VDAF-08 section 6.2).

        Each ``ENCODED_SIZE`` chunk is read as a little-endian integer, masked
        with ``field.SAMPLE_MASK`` and kept only if below the modulus; rejected
        chunks are consumed. Reading ``k`` chunks at once and then the missing
        ones is the same stream as reading them one by one.
        """
        size = field.ENCODED_SIZE
        modulus = field.MODULUS
        mask = field.SAMPLE_MASK
        out: list[int] = []
        need = length
        while need > 0:
            chunk = field.decode_raw(self.next(need * size))
            if not field.FULL_MASK:
                chunk = [x & mask for x in chunk]
            if max(chunk) < modulus:
                out += chunk
            else:
                out += [x for x in chunk if x < modulus]
            need = length - len(out)
        return out

    @classmethod
    def derive_seed(cls, seed: bytes, dst: bytes, binder: bytes) -> bytes:
        """The first ``SEED_SIZE`` bytes of the stream."""
        return cls(seed, dst, binder).next(cls.SEED_SIZE)

    @classmethod
    def expand_into_vec(cls, field: Field, seed: bytes, dst: bytes, binder: bytes, length: int) -> list[int]:
        """``length`` elements of ``field`` from a fresh stream."""
        return cls(seed, dst, binder).next_vec(field, length)

    @classmethod
    def expand_into_vec_encoded(
        cls, field: Field, seed: bytes, dst: bytes, binder: bytes, length: int
    ) -> tuple[list[int], bytes]:
        """:meth:`expand_into_vec` and ``field.encode_vec`` of the result."""
        vec = cls.expand_into_vec(field, seed, dst, binder, length)
        return vec, field.encode_vec(vec)


class XofTurboShake128(Xof):
    """TurboSHAKE128 with domain byte 0x01 over ``byte(len(dst)) || dst || seed || binder``.

    ``derive_seed`` and ``expand_into_vec`` know their output length up front
    and use PyCryptodome's one-shot Keccak entry point when it is available
    (one C call instead of a hash object); a rejected field element falls back
    to the streaming object. Both paths are the same TurboSHAKE128.
    """

    SEED_SIZE: ClassVar[int] = 16

    __slots__ = ("_message", "_stream")

    def __init__(self, seed: bytes, dst: bytes, binder: bytes) -> None:
        self._message = _turboshake_message(seed, dst, binder)
        self._stream: Any = None

    def next(self, length: int) -> bytes:
        if self._stream is None:
            self._stream = TurboSHAKE128.new(domain=1, data=self._message)
        return self._stream.read(length)

    @classmethod
    def derive_seed(cls, seed: bytes, dst: bytes, binder: bytes) -> bytes:
        if _oneshot is None:
            return super().derive_seed(seed, dst, binder)
        return bytes(_oneshot(_turboshake_message(seed, dst, binder), 16))

    @classmethod
    def expand_into_vec(cls, field: Field, seed: bytes, dst: bytes, binder: bytes, length: int) -> list[int]:
        fast = _expand_oneshot(field, _turboshake_message(seed, dst, binder), length)
        if fast is not None:
            return fast[0]
        return cls(seed, dst, binder).next_vec(field, length)

    @classmethod
    def expand_into_vec_encoded(
        cls, field: Field, seed: bytes, dst: bytes, binder: bytes, length: int
    ) -> tuple[list[int], bytes]:
        fast = _expand_oneshot(field, _turboshake_message(seed, dst, binder), length)
        if fast is not None:
            return fast
        return super().expand_into_vec_encoded(field, seed, dst, binder, length)


class FixedKeyAes128:
    """The keyed block hash of XofFixedKeyAes128 for one ``(dst, binder)`` (VDAF-08 section 6.2.2).

    The AES-128 key is ``TurboSHAKE128(byte(len(dst)) || dst || binder, D = 0x02)``
    (16 bytes; the seed is not absorbed), so it is shared by every seed used
    with the same DST and binder. Block ``i`` of a seed's stream is
    ``H(seed XOR le128(i))`` with ``H(B) = AES_K(sigma(B)) XOR sigma(B)`` and
    ``sigma(lo || hi) = hi || (hi XOR lo)`` (8-byte halves).

    ECB keeps no state between blocks, so one ``update`` call hashes any number
    of concatenated blocks; sigma and the final XOR are done on one big integer
    per batch, so the per-block cost stays in C. An instance holds an OpenSSL
    context: do not share one between threads.
    """

    __slots__ = ("_encrypt",)

    def __init__(self, dst: bytes, binder: bytes) -> None:
        if len(dst) > 255:
            raise VdafError(f"XofFixedKeyAes128 dst must be at most 255 bytes, got {len(dst)}")
        key = TurboSHAKE128.new(domain=2, data=b"".join((bytes((len(dst),)), dst, binder))).read(16)
        self._encrypt = Cipher(algorithms.AES128(key), modes.ECB()).encryptor().update

    def hash_blocks(self, blocks: bytes) -> bytes:
        """``H`` applied to each 16-byte block of ``blocks`` (length a multiple of 16)."""
        size = len(blocks)
        if size % 16:
            raise VdafError(f"FixedKeyAes128: {size} bytes is not a whole number of blocks")
        x = int.from_bytes(blocks, "little")
        # Little-endian: bytes 0..7 of block j are bits [128j, 128j + 64) of x.
        lo = x & _low_halves_mask(size // 16)
        hi = x ^ lo
        sigma = (hi >> 64) | (hi ^ (lo << 64))
        encrypted = int.from_bytes(self._encrypt(sigma.to_bytes(size, "little")), "little")
        return (encrypted ^ sigma).to_bytes(size, "little")

    def stream(self, seed: bytes, start: int, count: int) -> bytes:
        """Blocks ``start .. start + count - 1`` of ``seed``'s stream."""
        base = int.from_bytes(seed, "little")
        return self.hash_blocks(b"".join([(base ^ i).to_bytes(16, "little") for i in range(start, start + count)]))

    def streams(self, seeds: bytes, count: int) -> bytes:
        """The first ``count`` blocks of the stream of each of the concatenated 16-byte ``seeds``, seed after seed."""
        if count == 1:
            return self.hash_blocks(seeds)
        repeated = b"".join([seeds[i : i + 16] * count for i in range(0, len(seeds), 16)])
        counters = int.from_bytes(_counter_blocks(count) * (len(seeds) // 16), "little")
        return self.hash_blocks((int.from_bytes(repeated, "little") ^ counters).to_bytes(len(repeated), "little"))


@lru_cache(maxsize=64)
def _low_halves_mask(blocks: int) -> int:
    """Ones in the low 8 bytes of each of ``blocks`` little-endian 16-byte blocks."""
    return int.from_bytes((b"\xff" * 8 + bytes(8)) * blocks, "little")


@lru_cache(maxsize=16)
def _counter_blocks(count: int) -> bytes:
    """``le128(0) || le128(1) || ... || le128(count - 1)``."""
    return b"".join([i.to_bytes(16, "little") for i in range(count)])


class XofFixedKeyAes128(Xof):
    """The fixed-key AES-128 XOF of VDAF-08 (Poplar1's IDPF): ``H(seed ^ 0) || H(seed ^ 1) || ...``.

    The block counter starts at 0 (the draft's security section sketches a PRG
    starting at 1; the algorithm and the official vectors start at 0).
    """

    SEED_SIZE: ClassVar[int] = 16

    __slots__ = ("_hash", "_seed", "_buffer", "_next_block")

    def __init__(self, seed: bytes, dst: bytes, binder: bytes) -> None:
        if len(seed) != 16:
            raise VdafError(f"XofFixedKeyAes128 seed must be 16 bytes, got {len(seed)}")
        self._hash = FixedKeyAes128(dst, binder)
        self._seed = bytes(seed)
        self._buffer = b""
        self._next_block = 0

    def next(self, length: int) -> bytes:
        missing = length - len(self._buffer)
        if missing > 0:
            blocks = (missing + 15) // 16
            self._buffer += self._hash.stream(self._seed, self._next_block, blocks)
            self._next_block += blocks
        out = self._buffer[:length]
        self._buffer = self._buffer[length:]
        return out


def _turboshake_message(seed: bytes, dst: bytes, binder: bytes) -> bytes:
    if len(seed) != 16:
        raise VdafError(f"XofTurboShake128 seed must be 16 bytes, got {len(seed)}")
    if len(dst) > 255:
        raise VdafError(f"XofTurboShake128 dst must be at most 255 bytes, got {len(dst)}")
    return b"".join((bytes((len(dst),)), dst, seed, binder))


def _expand_oneshot(field: Field, message: bytes, length: int) -> tuple[list[int], bytes] | None:
    """``length`` elements and their encoding from one one-shot call, or None (no one-shot
    path, a masked field, or a rejected chunk: the caller then streams).

    Without a rejection the stream bytes are the encoding: every chunk was kept unmasked
    (``FULL_MASK``) and below the modulus, and ``encode_vec`` writes exactly those
    little-endian chunks back.
    """
    if _oneshot is None or length == 0 or not field.FULL_MASK:
        return None
    stream = bytes(_oneshot(message, length * field.ENCODED_SIZE))
    vec = field.decode_raw(stream)
    if max(vec) < field.MODULUS:
        return vec, stream
    return None


def _load_oneshot() -> Callable[[bytes, int], Any] | None:
    """PyCryptodome's ``keccak_oneshot`` (12 rounds, capacity 32, domain 0x01), if usable.

    This is a private entry point of the same C Keccak that ``TurboSHAKE128``
    wraps; it is used only after it reproduces the public API on a few inputs
    (short and multi-block), otherwise the public API is used everywhere.
    """
    try:
        from Crypto.Hash.keccak import _raw_keccak_lib  # noqa: PLC0415
        from Crypto.Util import _raw_api  # noqa: PLC0415

        ffi = _raw_api.ffi  # only the cffi backend has it
        oneshot_c = _raw_keccak_lib.keccak_oneshot
    except (ImportError, AttributeError):
        return None
    new = ffi.new
    buffer = ffi.buffer

    def oneshot(message: bytes, length: int) -> Any:
        """The first ``length`` output bytes, as a cffi buffer (bytes-like)."""
        out = new("uint8_t[]", length)
        if oneshot_c(message, len(message), out, length, 32, 12, 1):
            raise RuntimeError("keccak_oneshot failed")
        return buffer(out)

    try:
        for message, length in ((b"", 16), (bytes(range(200)), 16), (b"\x08" * 33, 500)):
            if bytes(oneshot(message, length)) != TurboSHAKE128.new(domain=1, data=message).read(length):
                return None
    except Exception:  # noqa: BLE001 - any surprise means: do not use the private path
        return None
    return oneshot


_oneshot = _load_oneshot()
