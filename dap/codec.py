"""DAP-09 wire codec primitives and the field-path API.

Wire conventions (TLS presentation language, ``shared/spec/dap-09.md`` §1):
big-endian unsigned integers; ``vecN`` = bytes behind an N-byte *byte count*;
``listN`` = structs behind an N-byte *total encoded byte length*; a lower bound
of 1 means non-empty; every message is decoded completely.

Building blocks
---------------
- Fixed-length identifiers: :class:`TaskId` (32), :class:`ReportId` (16),
  :class:`AggregationJobId` (16), :class:`CollectionJobId` (16),
  :class:`BatchId` (32), :class:`ReportIdChecksum` (32). Subclasses of
  ``bytes`` with ``LEN``, length-checked on construction, ``.b64()`` /
  ``from_b64()`` (URL-safe base64, unpadded; padded input accepted).
- Wire types (one per field, in the field's attrs metadata): :class:`UInt`
  (``U8``/``U16``/``U32``/``U64``), :class:`EnumWire`, :class:`Opaque`
  (``vec8/16/32``), :class:`FixedBytes` (IDs), :class:`StructWire`,
  :class:`ListWire` (``list16/32``). Each converts/validates a Python value,
  encodes it, decodes it from a buffer with an explicit end bound, and renders
  it as JSON. Messages only describe their fields; the wire types do the work.
- :class:`Message`: base of every message; :func:`message` turns an annotated
  class into a frozen attrs class with ``encode()`` / ``decode()``;
  :func:`wire_field` declares a field (``when=`` for ``select`` variants).

Construction rules: integers must fit their width, IDs their length, byte
strings their prefix; enums must be known members; ``select`` variants must be
consistent with their selector (absent variant fields are ``None``). Lower
bounds (``<1..>``: non-empty) are *not* enforced on construction so that a
fault plan can build e.g. an empty ``prepare_inits`` — such a message encodes,
but :meth:`Message.decode` rejects it.

Decoding is strict and raises only :class:`~dap.errors.DecodeError`, whose
``path`` names the field (``AggregationJobInitReq.prepare_inits[3].report_share
.report_metadata.time``) and ``offset`` the absolute byte offset in the input.

Field paths
-----------
A path is dotted field names with ``[i]`` list indices, optionally led by the
message class name (so a DecodeError path can be fed back):
``prepare_inits[0].report_share.report_metadata.report_id``. A *pattern* may use
``[*]`` for every element. Negative indices count from the end.

- :func:`get_field` (concrete path) -> value (leaf or sub-message or tuple)
- :func:`replace_field` (path or pattern) -> new message; the new value goes
  through the field's converter, so a bytes field may change length (its
  prefix follows on ``encode()``) but an ID must keep its length.
- :func:`iter_field_paths` / :func:`iter_fields` -> every present leaf
- :func:`expand_path` -> the concrete paths a pattern matches in a message
- :func:`validate_path` (class, pattern) -> the target's wire type; checks a
  fault plan without an instance. :func:`field_patterns` lists all patterns.

All path errors raise :class:`~dap.errors.FieldPathError`, including a value
the field refuses (the converter's ``TypeError``/``ValueError`` is chained).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Self

import attrs

from dap.errors import DecodeError, FieldPathError

__all__ = [
    "FixedLengthBytes",
    "TaskId",
    "ReportId",
    "AggregationJobId",
    "CollectionJobId",
    "BatchId",
    "ReportIdChecksum",
    "Wire",
    "UInt",
    "U8",
    "U16",
    "U32",
    "U64",
    "EnumWire",
    "Opaque",
    "FixedBytes",
    "StructWire",
    "ListWire",
    "FieldSpec",
    "Message",
    "message",
    "wire_field",
    "message_fields",
    "to_jsonable",
    "get_field",
    "replace_field",
    "iter_field_paths",
    "iter_fields",
    "expand_path",
    "validate_path",
    "field_patterns",
    "parse_path",
]


# ---------------------------------------------------------------------------
# Fixed-length identifiers
# ---------------------------------------------------------------------------

_BYTES_LIKE = (bytes, bytearray, memoryview)


class FixedLengthBytes(bytes):
    """``bytes`` of exactly ``LEN`` bytes; compares equal to plain bytes."""

    LEN: ClassVar[int] = 0

    def __new__(cls, value: bytes | bytearray | memoryview) -> Self:
        if type(value) is cls:
            return value  # type: ignore[return-value]
        if not isinstance(value, _BYTES_LIKE):
            raise TypeError(f"{cls.__name__} needs bytes, got {type(value).__name__}")
        if len(value) != cls.LEN:
            raise ValueError(f"{cls.__name__} must be {cls.LEN} bytes, got {len(value)}")
        return super().__new__(cls, value)

    @classmethod
    def from_b64(cls, text: str) -> Self:
        """Parse URL-safe base64, padded or not. Raises ValueError on bad input."""
        if not isinstance(text, str):
            raise TypeError(f"{cls.__name__}.from_b64 needs str, got {type(text).__name__}")
        stripped = text.rstrip("=")
        if not re.fullmatch(r"[A-Za-z0-9_-]*", stripped):
            raise ValueError(f"not URL-safe base64: {text!r}")
        try:
            raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"not URL-safe base64: {text!r}") from exc
        return cls(raw)

    @classmethod
    def random(cls) -> Self:
        """A fresh ID from the OS CSPRNG."""
        import os

        return cls(os.urandom(cls.LEN))

    def b64(self) -> str:
        """URL-safe base64 without padding (the form used in DAP URLs)."""
        return base64.urlsafe_b64encode(self).rstrip(b"=").decode("ascii")

    def __repr__(self) -> str:
        return f"{type(self).__name__}.from_b64({self.b64()!r})"

    __str__ = b64

    def __reduce__(self):  # pickling must re-run __new__ with bytes
        return (type(self), (bytes(self),))


class TaskId(FixedLengthBytes):
    """DAP task ID, 32 bytes."""

    LEN = 32


class ReportId(FixedLengthBytes):
    """Report ID, 16 bytes (also the VDAF nonce)."""

    LEN = 16


class AggregationJobId(FixedLengthBytes):
    """Aggregation job ID, 16 bytes."""

    LEN = 16


class CollectionJobId(FixedLengthBytes):
    """Collection job ID, 16 bytes."""

    LEN = 16


class BatchId(FixedLengthBytes):
    """Batch ID (fixed_size query type), 32 bytes."""

    LEN = 32


class ReportIdChecksum(FixedLengthBytes):
    """XOR of SHA-256(report_id) over a batch, 32 bytes."""

    LEN = 32


# ---------------------------------------------------------------------------
# Decode failure plumbing
# ---------------------------------------------------------------------------


class _Fail(Exception):
    """Internal decode failure; gathers path segments while unwinding.

    ``segs`` is innermost-first; :meth:`Message.decode` reverses it and turns
    the whole thing into one :class:`DecodeError`. ``limit`` is the end bound
    that was hit for truncations (lets a list say "straddles its end").
    """

    __slots__ = ("reason", "offset", "segs", "limit")

    def __init__(self, reason: str, offset: int, limit: int = -1) -> None:
        self.reason = reason
        self.offset = offset
        self.segs: list[str] = []
        self.limit = limit


def _nbytes(n: int) -> str:
    return f"{n} byte" if n == 1 else f"{n} bytes"


def _truncated(need: int, pos: int, end: int) -> _Fail:
    return _Fail(f"truncated (need {_nbytes(need)}, have {end - pos})", pos, end)


# ---------------------------------------------------------------------------
# Wire types
# ---------------------------------------------------------------------------


class Wire:
    """How one field is represented on the wire.

    ``kind`` is one of ``uint``, ``enum``, ``bytes``, ``id``, ``struct``,
    ``list`` — what a fault action may do with the field.
    """

    kind: ClassVar[str] = ""

    def describe(self) -> str:
        raise NotImplementedError

    def convert(self, value: Any) -> Any:
        """Validate and normalise a Python value (attrs converter)."""
        raise NotImplementedError

    def encode_into(self, value: Any, out: bytearray) -> None:
        raise NotImplementedError

    def decode_from(self, buf: bytes, pos: int, end: int) -> tuple[Any, int]:
        raise NotImplementedError

    def to_jsonable(self, value: Any) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<wire {self.describe()}>"


def _check_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} needs an int, got {type(value).__name__}")
    return int(value)


class UInt(Wire):
    """Unsigned big-endian integer of ``width`` bytes."""

    kind = "uint"

    def __init__(self, width: int) -> None:
        self.width = width
        self.max = (1 << (8 * width)) - 1
        self.name = f"u{8 * width}"

    def describe(self) -> str:
        return self.name

    def convert(self, value: Any) -> int:
        v = _check_int(value, self.name)
        if not 0 <= v <= self.max:
            raise ValueError(f"{v} out of range for {self.name} (0..{self.max})")
        return v

    def encode_into(self, value: int, out: bytearray) -> None:
        out += value.to_bytes(self.width, "big")

    def decode_from(self, buf: bytes, pos: int, end: int) -> tuple[int, int]:
        npos = pos + self.width
        if npos > end:
            raise _truncated(self.width, pos, end)
        return int.from_bytes(buf[pos:npos], "big"), npos

    def to_jsonable(self, value: int) -> int:
        return value


U8 = UInt(1)
U16 = UInt(2)
U32 = UInt(4)
U64 = UInt(8)


class EnumWire(Wire):
    """An :class:`enum.IntEnum` carried as an unsigned integer; unknown values refused."""

    kind = "enum"

    def __init__(self, enum_cls: type[enum.IntEnum], width: int = 1) -> None:
        self.enum_cls = enum_cls
        self.width = width
        self.uint = UInt(width)
        self.members = {int(m): m for m in enum_cls}

    def describe(self) -> str:
        return f"{self.enum_cls.__name__}({self.uint.name})"

    def convert(self, value: Any) -> enum.IntEnum:
        if isinstance(value, self.enum_cls):
            return value
        v = _check_int(value, self.enum_cls.__name__)
        try:
            return self.members[v]
        except KeyError:
            raise ValueError(f"unknown {self.enum_cls.__name__} value {v}") from None

    def encode_into(self, value: enum.IntEnum, out: bytearray) -> None:
        out += int(value).to_bytes(self.width, "big")

    def decode_from(self, buf: bytes, pos: int, end: int) -> tuple[enum.IntEnum, int]:
        npos = pos + self.width
        if npos > end:
            raise _truncated(self.width, pos, end)
        v = int.from_bytes(buf[pos:npos], "big")
        try:
            return self.members[v], npos
        except KeyError:
            raise _Fail(f"unknown {self.enum_cls.__name__} value {v}", pos) from None

    def to_jsonable(self, value: enum.IntEnum) -> str:
        return value.name.lower()


class Opaque(Wire):
    """Variable-length bytes behind a ``prefix``-byte length (``vec8/16/32``)."""

    kind = "bytes"

    def __init__(self, prefix: int, min_len: int = 0) -> None:
        self.prefix = prefix
        self.min_len = min_len
        self.max_len = (1 << (8 * prefix)) - 1
        self.name = f"vec{8 * prefix}"

    def describe(self) -> str:
        return f"{self.name}<{self.min_len}..>"

    def convert(self, value: Any) -> bytes:
        if not isinstance(value, _BYTES_LIKE):
            raise TypeError(f"{self.name} needs bytes, got {type(value).__name__}")
        if len(value) > self.max_len:
            raise ValueError(f"{len(value)} bytes do not fit a {self.name} (max {self.max_len})")
        return bytes(value)

    def encode_into(self, value: bytes, out: bytearray) -> None:
        out += len(value).to_bytes(self.prefix, "big")
        out += value

    def decode_from(self, buf: bytes, pos: int, end: int) -> tuple[bytes, int]:
        start = pos + self.prefix
        if start > end:
            raise _truncated(self.prefix, pos, end)
        n = int.from_bytes(buf[pos:start], "big")
        stop = start + n
        if stop > end:
            raise _Fail(f"truncated (length prefix {n}, have {_nbytes(end - start)})", pos, end)
        if n < self.min_len:
            raise _Fail(f"length {n} below minimum {self.min_len}", pos)
        return buf[start:stop], stop

    def to_jsonable(self, value: bytes) -> str:
        return value.hex()


class FixedBytes(Wire):
    """Exactly ``id_cls.LEN`` bytes, no prefix, decoded as ``id_cls``."""

    kind = "id"

    def __init__(self, id_cls: type[FixedLengthBytes]) -> None:
        self.id_cls = id_cls
        self.len = id_cls.LEN
        self._new = bytes.__new__

    def describe(self) -> str:
        return f"{self.id_cls.__name__}[{self.len}]"

    def convert(self, value: Any) -> FixedLengthBytes:
        return self.id_cls(value)

    def encode_into(self, value: bytes, out: bytearray) -> None:
        out += value

    def decode_from(self, buf: bytes, pos: int, end: int) -> tuple[FixedLengthBytes, int]:
        npos = pos + self.len
        if npos > end:
            raise _truncated(self.len, pos, end)
        return self._new(self.id_cls, buf[pos:npos]), npos

    def to_jsonable(self, value: FixedLengthBytes) -> str:
        return value.b64()


class StructWire(Wire):
    """A nested message."""

    kind = "struct"

    def __init__(self, cls: type[Message]) -> None:
        self.cls = cls

    def describe(self) -> str:
        return self.cls.__name__

    def convert(self, value: Any) -> Message:
        if not isinstance(value, self.cls):
            raise TypeError(f"needs a {self.cls.__name__}, got {type(value).__name__}")
        return value

    def encode_into(self, value: Message, out: bytearray) -> None:
        value._encode_into(out)

    def decode_from(self, buf: bytes, pos: int, end: int) -> tuple[Message, int]:
        return self.cls._decode_from(buf, pos, end)

    def to_jsonable(self, value: Message) -> dict[str, Any]:
        return to_jsonable(value)


class ListWire(Wire):
    """Structs behind a ``prefix``-byte *total byte length* (``list16/32``)."""

    kind = "list"

    def __init__(self, prefix: int, elem: StructWire, min_len: int = 0) -> None:
        self.prefix = prefix
        self.elem = elem
        self.min_len = min_len
        self.max_len = (1 << (8 * prefix)) - 1
        self.name = f"list{8 * prefix}"

    def describe(self) -> str:
        return f"{self.name}<{self.elem.describe()}>"

    def convert(self, value: Any) -> tuple[Message, ...]:
        if isinstance(value, (str, *_BYTES_LIKE)) or not isinstance(value, Iterable):
            raise TypeError(f"{self.name} needs a sequence of {self.elem.describe()}")
        items = tuple(value)
        for i, item in enumerate(items):
            if not isinstance(item, self.elem.cls):
                raise TypeError(f"element [{i}] must be a {self.elem.describe()}, got {type(item).__name__}")
        return items

    def encode_into(self, value: tuple[Message, ...], out: bytearray) -> None:
        at = len(out)
        out += bytes(self.prefix)
        for item in value:
            item._encode_into(out)
        n = len(out) - at - self.prefix
        if n > self.max_len:
            raise ValueError(f"{n} bytes of elements do not fit a {self.name} (max {self.max_len})")
        out[at:at + self.prefix] = n.to_bytes(self.prefix, "big")

    def decode_from(self, buf: bytes, pos: int, end: int) -> tuple[tuple[Message, ...], int]:
        start = pos + self.prefix
        if start > end:
            raise _truncated(self.prefix, pos, end)
        n = int.from_bytes(buf[pos:start], "big")
        stop = start + n
        if stop > end:
            # A truncated body: name the element where the bytes ran out, if any.
            self._decode_items(buf, start, end, end, note=f"; the list length prefix announced {n} bytes, {end - start} present")
            raise _Fail(f"truncated (list length prefix {n}, have {_nbytes(end - start)})", pos, end)
        if n < self.min_len:
            raise _Fail(f"length {n} below minimum {self.min_len} (list must not be empty)", pos)
        return self._decode_items(buf, start, stop, end), stop

    def _decode_items(self, buf: bytes, start: int, stop: int, end: int, note: str = "") -> tuple[Message, ...]:
        decode = self.elem.cls._decode_from
        items = []
        p = start
        while p < stop:
            try:
                item, p = decode(buf, p, stop)
            except _Fail as e:
                if e.limit == stop and stop < end:
                    e.reason = f"element straddles the end of the list: {e.reason}"
                e.reason += note
                e.segs.append(f"[{len(items)}]")
                raise
            items.append(item)
        return tuple(items)

    def to_jsonable(self, value: tuple[Message, ...]) -> list[Any]:
        return [to_jsonable(v) for v in value]


# ---------------------------------------------------------------------------
# Messages
# ---------------------------------------------------------------------------

_WIRE_KEY = "dap.wire"
_WHEN_KEY = "dap.when"


@attrs.frozen
class FieldSpec:
    """One field of a message: name, wire type and (for ``select`` variants)
    the selector field and the selector values for which it is present."""

    name: str
    wire: Wire
    when_field: str | None = None
    when_values: frozenset[Any] = frozenset()
    when_index: int = -1

    @property
    def conditional(self) -> bool:
        return self.when_field is not None


def wire_field(wire: Wire, *, when: tuple[str, Iterable[Any]] | None = None, doc: str = "") -> Any:
    """Declare a message field carried as ``wire``.

    ``when=("selector", {values})`` makes it a ``select`` variant: present
    (non-None) exactly when the earlier field ``selector`` is one of
    ``values``; it defaults to None.
    """
    metadata = {_WIRE_KEY: wire, _WHEN_KEY: None, "doc": doc}
    if when is None:
        return attrs.field(converter=wire.convert, metadata=metadata)
    sel, values = when
    metadata[_WHEN_KEY] = (sel, frozenset(values))
    conv = wire.convert

    def optional(value: Any) -> Any:
        return None if value is None else conv(value)

    return attrs.field(default=None, converter=optional, metadata=metadata)


class Message:
    """Base of every DAP message (and sub-structure).

    Subclasses are built with :func:`message`; ``MEDIA_TYPE`` is set on the
    classes that travel as HTTP bodies.
    """

    __slots__ = ()
    MEDIA_TYPE: ClassVar[str | None] = None
    _SPECS: ClassVar[tuple[FieldSpec, ...]] = ()
    _NAMES: ClassVar[tuple[str, ...]] = ()
    _COND: ClassVar[tuple[FieldSpec, ...]] = ()

    def __attrs_post_init__(self) -> None:
        for spec in self._COND:
            present = getattr(self, spec.name) is not None
            sel = getattr(self, spec.when_field)  # type: ignore[arg-type]
            if present != (sel in spec.when_values):
                need = "needs" if not present else "must not have"
                raise ValueError(f"{type(self).__name__} with {spec.when_field}={sel!r} {need} {spec.name}")

    def encode(self) -> bytes:
        """The wire encoding."""
        out = bytearray()
        self._encode_into(out)
        return bytes(out)

    def _encode_into(self, out: bytearray) -> None:
        # Generic version; :func:`message` installs a generated one per class.
        for spec in self._SPECS:
            v = getattr(self, spec.name)
            if v is None:
                continue  # absent select variant (validated at construction)
            spec.wire.encode_into(v, out)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Self:
        """Decode exactly one message from ``data``; raises only DecodeError."""
        if not isinstance(data, _BYTES_LIKE):  # bytes(5) would be five zero bytes
            raise DecodeError(f"input is {type(data).__name__}, not bytes", path=cls.__name__)
        buf = bytes(data)
        end = len(buf)
        try:
            msg, pos = cls._decode_from(buf, 0, end)
            if pos != end:
                raise _Fail(f"{_nbytes(end - pos)} left over after the message", pos)
        except _Fail as e:
            raise DecodeError(e.reason, path=cls.__name__ + "".join(reversed(e.segs)), offset=e.offset) from None
        except RecursionError as exc:  # pragma: no cover - schemas have fixed depth
            raise DecodeError("nesting too deep", path=cls.__name__) from exc
        return msg

    @classmethod
    def _decode_from(cls, buf: bytes, pos: int, end: int) -> tuple[Self, int]:
        # Replaced per class by a generated function in :func:`message`.
        raise NotImplementedError


def message_fields(cls: type[Message]) -> tuple[FieldSpec, ...]:
    """The wire fields of a message class, in wire order."""
    return cls._SPECS


_CODEGEN_COUNTER = 0


def _opaque_fail(pos: int, start: int, n: int, end: int, min_len: int) -> _Fail:
    if start + n > end:
        return _Fail(f"truncated (length prefix {n}, have {_nbytes(end - start)})", pos, end)
    return _Fail(f"length {n} below minimum {min_len}", pos)


def _decode_lines(i: int, wire: Wire, ns: dict[str, Any]) -> list[str]:
    """Source lines decoding field ``i`` into ``v{i}``, advancing ``pos``.

    uints, enums, IDs and byte strings are inlined (these dominate real
    messages); other wire types call their ``decode_from``.
    """
    if isinstance(wire, (UInt, EnumWire, FixedBytes)):
        width = wire.len if isinstance(wire, FixedBytes) else wire.width
        lines = [f"n_ = pos + {width}", "if n_ > end:", f"    raise _truncated({width}, pos, end)"]
        if isinstance(wire, FixedBytes):
            ns[f"id{i}"] = wire.id_cls
            lines.append(f"v{i} = _newb(id{i}, buf[pos:n_])")
        elif width == 1:
            lines.append(f"v{i} = buf[pos]")
        else:
            lines.append(f"v{i} = _int(buf[pos:n_], 'big')")
        if isinstance(wire, EnumWire):
            ns[f"m{i}"] = wire.members
            ns[f"enum{i}"] = wire.enum_cls.__name__
            lines += [
                "try:",
                f"    v{i} = m{i}[v{i}]",
                "except KeyError:",
                f"    raise _Fail(f'unknown {{enum{i}}} value {{v{i}}}', pos) from None",
            ]
        return [*lines, "pos = n_"]
    if isinstance(wire, Opaque):
        p = wire.prefix
        return [
            f"s_ = pos + {p}",
            "if s_ > end:",
            f"    raise _truncated({p}, pos, end)",
            "n_ = " + ("buf[pos]" if p == 1 else "_int(buf[pos:s_], 'big')"),
            "e_ = s_ + n_",
            f"if e_ > end or n_ < {wire.min_len}:",
            f"    raise _opaque_fail(pos, s_, n_, end, {wire.min_len})",
            f"v{i} = buf[s_:e_]",
            "pos = e_",
        ]
    # Sub-messages call their class's generated decoder directly.
    ns[f"w{i}"] = wire.cls._decode_from if isinstance(wire, StructWire) else wire.decode_from
    return [f"v{i}, pos = w{i}(buf, pos, end)"]


def _encode_lines(i: int, wire: Wire, ns: dict[str, Any]) -> list[str]:
    """Source lines appending ``v`` (field ``i``) to ``out``."""
    if isinstance(wire, (UInt, EnumWire)):
        return [f"out += v.to_bytes({wire.width}, 'big')"]
    if isinstance(wire, FixedBytes):
        return ["out += v"]
    if isinstance(wire, Opaque):
        return [f"out += len(v).to_bytes({wire.prefix}, 'big')", "out += v"]
    if isinstance(wire, StructWire):
        return ["v._encode_into(out)"]
    ns[f"w{i}"] = wire.encode_into
    return [f"w{i}(v, out)"]


def _compile(cls: type[Message], what: str, lines: list[str], ns: dict[str, Any]) -> Any:
    global _CODEGEN_COUNTER
    _CODEGEN_COUNTER += 1
    src = "\n".join(lines)
    exec(compile(src, f"<dap.codec {what} {cls.__name__} #{_CODEGEN_COUNTER}>", "exec"), ns)  # noqa: S102
    return ns[what]


def _build_decoder(cls: type[Message]) -> Any:
    """Generate ``_decode_from(buf, pos, end)`` for ``cls``: straight-line code.

    Each field step sits in a ``try`` that adds the field name to a failure's
    path. Values are assigned with ``object.__setattr__`` on a bare instance:
    the decoder has already enforced everything the converters would check.
    """
    ns: dict[str, Any] = {
        "_Fail": _Fail,
        "_truncated": _truncated,
        "_opaque_fail": _opaque_fail,
        "_int": int.from_bytes,
        "_newb": bytes.__new__,
        "_new": object.__new__,
        "_set": object.__setattr__,
        "cls": cls,
    }
    lines = ["def _decode_from(buf, pos, end):"]
    for i, spec in enumerate(cls._SPECS):
        indent = "    "
        if spec.conditional:
            ns[f"c{i}"] = spec.when_values
            lines.append(f"    if v{spec.when_index} in c{i}:")
            indent = "        "
        lines.append(f"{indent}try:")
        lines += [f"{indent}    {line}" for line in _decode_lines(i, spec.wire, ns)]
        lines.append(f"{indent}except _Fail as e:")
        lines.append(f"{indent}    e.segs.append('.{spec.name}')")
        lines.append(f"{indent}    raise")
        if spec.conditional:
            lines.append("    else:")
            lines.append(f"        v{i} = None")
    lines.append("    obj = _new(cls)")
    for i, spec in enumerate(cls._SPECS):
        # The slot's member descriptor: cheaper than object.__setattr__.
        ns[f"set{i}"] = cls.__dict__[spec.name].__set__
        lines.append(f"    set{i}(obj, v{i})")
    lines.append("    return obj, pos")
    return _compile(cls, "_decode_from", lines, ns)


def _build_encoder(cls: type[Message]) -> Any:
    """Generate ``_encode_into(self, out)`` for ``cls``; absent variants are skipped."""
    ns: dict[str, Any] = {}
    lines = ["def _encode_into(self, out):"]
    for i, spec in enumerate(cls._SPECS):
        lines.append(f"    v = self.{spec.name}")
        indent = "    "
        if spec.conditional:
            lines.append("    if v is not None:")
            indent = "        "
        lines += [f"{indent}{line}" for line in _encode_lines(i, spec.wire, ns)]
    if len(lines) == 1:
        lines.append("    pass")
    return _compile(cls, "_encode_into", lines, ns)


def message(cls: type) -> Any:
    """Class decorator: a frozen attrs message with generated codec.

    Fields must be declared with :func:`wire_field`, in wire order.
    """
    cls = attrs.frozen(cls)
    specs = []
    names: dict[str, int] = {}
    for i, a in enumerate(attrs.fields(cls)):
        wire = a.metadata.get(_WIRE_KEY)
        if wire is None:
            raise TypeError(f"{cls.__name__}.{a.name} is not a wire_field")
        when = a.metadata.get(_WHEN_KEY)
        if when is None:
            specs.append(FieldSpec(a.name, wire))
        else:
            sel, values = when
            if sel not in names:
                raise TypeError(f"{cls.__name__}.{a.name}: selector {sel!r} must be an earlier field")
            specs.append(FieldSpec(a.name, wire, sel, values, names[sel]))
        names[a.name] = i
    cls._SPECS = tuple(specs)
    cls._NAMES = tuple(s.name for s in specs)
    cls._COND = tuple(s for s in specs if s.conditional)
    cls._decode_from = staticmethod(_build_decoder(cls))
    cls._encode_into = _build_encoder(cls)
    return cls


def to_jsonable(msg: Message) -> dict[str, Any]:
    """A JSON-ready dict of a message: fields in wire order; absent variants omitted.

    uints -> int; enums -> lower-case member name; IDs -> base64url (unpadded);
    other bytes -> lower-case hex; sub-messages -> dicts; lists -> lists.
    """
    out: dict[str, Any] = {}
    for spec in msg._SPECS:
        v = getattr(msg, spec.name)
        if v is None and spec.conditional:
            continue
        out[spec.name] = spec.wire.to_jsonable(v)
    return out


# ---------------------------------------------------------------------------
# Field paths
# ---------------------------------------------------------------------------

_PATH_RE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[(?:\*|-?\d+)\])*")
_TOKEN_RE = re.compile(r"([A-Za-z_]\w*)|\[(\*|-?\d+)\]")
_WILD = "*"


def parse_path(path: str) -> tuple[str | int, ...]:
    """Split a path into tokens: field names (str), indices (int), ``"*"``.

    Grammar: ``name ( "." name | "[" (int | "*") "]" )*``. Raises
    FieldPathError for anything else.
    """
    if not isinstance(path, str) or _PATH_RE.fullmatch(path) is None:
        raise FieldPathError(
            f"malformed field path {path!r} (expected e.g. 'prepare_inits[0].report_share.report_metadata.time')"
        )
    tokens: list[str | int] = []
    for name, idx in _TOKEN_RE.findall(path):
        if name:
            tokens.append(name)
        else:
            tokens.append(_WILD if idx == _WILD else int(idx))
    return tuple(tokens)


def _strip_class(cls: type[Message], tokens: tuple[str | int, ...]) -> tuple[str | int, ...]:
    if tokens and tokens[0] == cls.__name__ and cls.__name__ not in cls._NAMES:
        return tokens[1:]
    return tokens


def _format(tokens: Iterable[str | int]) -> str:
    out = []
    for t in tokens:
        if isinstance(t, int) or t == _WILD:
            out.append(f"[{t}]")
        else:
            out.append(f".{t}" if out else t)
    return "".join(out)


def _spec(cls: type[Message], name: str | int, done: list[str | int], path: str) -> FieldSpec:
    if not isinstance(name, str) or name == _WILD:
        raise FieldPathError(f"{path!r}: {cls.__name__} at {_format(done) or '<root>'} is not a list; index [{name}] not allowed")
    for spec in cls._SPECS:
        if spec.name == name:
            return spec
    raise FieldPathError(
        f"{path!r}: {cls.__name__} has no field {name!r} (fields: {', '.join(cls._NAMES)})"
    )


def validate_path(cls: type[Message], pattern: str) -> Wire:
    """Check ``pattern`` against message class ``cls``; return the target's wire type.

    Indices and ``[*]`` are allowed only after list fields; a path may stop at
    a sub-message or a list. A ``select`` variant field is accepted (it may be
    absent in a given message: :func:`expand_path` then matches nothing there).
    """
    tokens = _strip_class(cls, parse_path(pattern))
    if not tokens:
        raise FieldPathError(f"{pattern!r} names the whole message, not a field")
    wire: Wire = StructWire(cls)
    done: list[str | int] = []
    for tok in tokens:
        if isinstance(wire, StructWire):
            wire = _spec(wire.cls, tok, done, pattern).wire
        elif isinstance(wire, ListWire):
            if isinstance(tok, str) and tok != _WILD:
                raise FieldPathError(f"{pattern!r}: {_format(done)} is a list; use [i] or [*] before .{tok}")
            wire = wire.elem
        else:
            raise FieldPathError(f"{pattern!r}: {_format(done)} is a {wire.describe()} leaf; nothing below it")
        done.append(tok)
    return wire


def field_patterns(cls: type[Message], *, leaves_only: bool = True) -> Iterator[str]:
    """Every field pattern of ``cls`` (lists as ``[*]``), depth-first in wire order."""

    def walk(c: type[Message], prefix: str) -> Iterator[str]:
        for spec in c._SPECS:
            p = f"{prefix}.{spec.name}" if prefix else spec.name
            w = spec.wire
            if isinstance(w, StructWire):
                if not leaves_only:
                    yield p
                yield from walk(w.cls, p)
            elif isinstance(w, ListWire):
                if not leaves_only:
                    yield p
                    yield p + "[*]"
                yield from walk(w.elem.cls, p + "[*]")
            else:
                yield p

    return walk(cls, "")


def _index(seq: tuple[Any, ...], idx: int, done: list[str | int], path: str) -> int:
    n = len(seq)
    real = idx + n if idx < 0 else idx
    if not 0 <= real < n:
        raise FieldPathError(f"{path!r}: index [{idx}] out of range for {_format(done)} (length {n})")
    return real


def get_field(msg: Message, path: str) -> Any:
    """The value at a concrete ``path`` (no ``[*]``): leaf, sub-message, tuple, or None
    for an absent ``select`` variant. Raises FieldPathError."""
    tokens = _strip_class(type(msg), parse_path(path))
    if not tokens:
        raise FieldPathError(f"{path!r} names the whole message, not a field")
    if _WILD in tokens:
        raise FieldPathError(f"{path!r}: get_field needs a concrete path; use expand_path for [*]")
    value: Any = msg
    done: list[str | int] = []
    for tok in tokens:
        if isinstance(value, Message):
            spec = _spec(type(value), tok, done, path)
            value = getattr(value, spec.name)
        elif isinstance(value, tuple):
            if not isinstance(tok, int):
                raise FieldPathError(f"{path!r}: {_format(done)} is a list; use [i] before .{tok}")
            value = value[_index(value, tok, done, path)]
        elif value is None:
            raise FieldPathError(f"{path!r}: {_format(done)} is absent in this message")
        else:
            raise FieldPathError(f"{path!r}: {_format(done)} is a leaf; nothing below it")
        done.append(tok)
    return value


def _replace(value: Any, tokens: tuple[str | int, ...], new: Any, done: list[str | int], path: str) -> Any:
    if not tokens:
        return new
    tok, rest = tokens[0], tokens[1:]
    if isinstance(value, Message):
        spec = _spec(type(value), tok, done, path)
        child = getattr(value, spec.name)
        if rest and child is None:
            raise FieldPathError(f"{path!r}: {_format([*done, tok])} is absent in this message")
        replaced = _replace(child, rest, new, [*done, tok], path)
        try:
            return attrs.evolve(value, **{spec.name: replaced})
        except (TypeError, ValueError) as exc:
            raise FieldPathError(f"{path!r}: cannot set {_format([*done, tok])}: {exc}") from exc
    if isinstance(value, tuple):
        if isinstance(tok, str) and tok != _WILD:
            raise FieldPathError(f"{path!r}: {_format(done)} is a list; use [i] or [*] before .{tok}")
        items = list(value)
        targets = range(len(items)) if tok == _WILD else [_index(value, tok, done, path)]  # type: ignore[arg-type]
        for i in targets:
            items[i] = _replace(items[i], rest, new, [*done, i], path)
        return tuple(items)
    raise FieldPathError(f"{path!r}: {_format(done)} is a leaf; nothing below it")


def replace_field(msg: Message, path: str, value: Any) -> Message:
    """A copy of ``msg`` with the field at ``path`` (or every match of a ``[*]``
    pattern) set to ``value``. The value is converted/validated like a
    constructor argument; refusals raise FieldPathError. ``msg`` is unchanged.
    """
    tokens = _strip_class(type(msg), parse_path(path))
    if not tokens:
        raise FieldPathError(f"{path!r} names the whole message, not a field")
    return _replace(msg, tokens, value, [], path)


def iter_fields(msg: Message, *, leaves_only: bool = True) -> Iterator[tuple[str, Any]]:
    """``(path, value)`` for every present field, depth-first in wire order.

    With ``leaves_only=False`` sub-messages and lists are yielded too (before
    their contents). Absent ``select`` variants are skipped.
    """

    def walk(m: Message, prefix: str) -> Iterator[tuple[str, Any]]:
        for spec in m._SPECS:
            v = getattr(m, spec.name)
            if v is None and spec.conditional:
                continue
            p = f"{prefix}.{spec.name}" if prefix else spec.name
            if isinstance(spec.wire, StructWire):
                if not leaves_only:
                    yield p, v
                yield from walk(v, p)
            elif isinstance(spec.wire, ListWire):
                if not leaves_only:
                    yield p, v
                for i, item in enumerate(v):
                    if not leaves_only:
                        yield f"{p}[{i}]", item
                    yield from walk(item, f"{p}[{i}]")
            else:
                yield p, v

    return walk(msg, "")


def iter_field_paths(msg: Message, *, leaves_only: bool = True) -> Iterator[str]:
    """Every present leaf path of ``msg`` (see :func:`iter_fields`)."""
    return (p for p, _ in iter_fields(msg, leaves_only=leaves_only))


def expand_path(msg: Message, pattern: str) -> list[str]:
    """The concrete paths in ``msg`` matched by ``pattern`` (``[*]`` = each element).

    The pattern is first validated against the class (FieldPathError if it can
    never match); absent ``select`` variants and empty lists give no match.
    """
    validate_path(type(msg), pattern)
    tokens = _strip_class(type(msg), parse_path(pattern))
    out: list[str] = []

    def walk(value: Any, rest: tuple[str | int, ...], done: list[str | int]) -> None:
        if value is None:
            return
        if not rest:
            out.append(_format(done))
            return
        tok, tail = rest[0], rest[1:]
        if isinstance(value, Message):
            walk(getattr(value, tok), tail, [*done, tok])  # type: ignore[arg-type]
        elif isinstance(value, tuple):
            if tok == _WILD:
                for i, item in enumerate(value):
                    walk(item, tail, [*done, i])
            else:
                n = len(value)
                real = tok + n if tok < 0 else tok  # type: ignore[operator]
                if 0 <= real < n:
                    walk(value[real], tail, [*done, real])

    walk(msg, tokens, [])
    return out
