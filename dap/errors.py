"""Errors raised by the DAP protocol core.

    DapError
    ├── DecodeError   bytes that are not a valid encoding of the message asked for
    │                 (names the field path and the byte offset)
    ├── FieldPathError  a field path that does not exist in a message (path access API)
    ├── HpkeError     HPKE seal/open failed or an unsupported suite was asked for
    └── VdafError     a VDAF operation refused its input (bad encoding, failed proof, ...)
"""

from __future__ import annotations

__all__ = ["DapError", "DecodeError", "FieldPathError", "HpkeError", "VdafError"]


class DapError(Exception):
    """Base class of every error raised by :mod:`dap`."""


class DecodeError(DapError):
    """Bytes that do not decode as the requested message.

    ``path`` is the dotted field path (``AggregationJobInitReq.prepare_inits[3]
    .report_share.report_metadata.time``) and ``offset`` the byte offset in the
    outermost buffer where decoding failed.
    """

    def __init__(self, reason: str, *, path: str = "", offset: int = 0) -> None:
        self.reason = reason
        self.path = path
        self.offset = offset
        super().__init__(f"{path or '<message>'} @ {offset}: {reason}")


class FieldPathError(DapError):
    """A field path that names no field of the message."""


class HpkeError(DapError):
    """HPKE failure: unsupported suite, bad key, or open (decrypt) failure."""


class VdafError(DapError):
    """A VDAF refused its input: malformed share, failed proof, wrong lengths."""
