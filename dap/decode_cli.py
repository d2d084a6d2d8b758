"""``dap-decode``: decode one DAP-09 message and print it as a tree or as JSON.

Input (exactly one): a file path, ``-`` for stdin, ``--hex STRING`` or
``--base64url STRING``. Message type: ``--type NAME`` (class name, any case,
e.g. ``aggregationjobinitreq``) or ``--media-type application/dap-...``.
``--list-types`` lists the names and media types.

Output: an indented tree (bytes as hex, long values cut after 32 bytes with
the length noted, ``--full`` to show all; IDs as base64url and hex; ping-pong
payloads decoded underneath when they parse), or ``--json``: one object
``{"type", "media_type", "length", "message"}`` with fields in wire order
(uints as numbers, enums as lower-case names, IDs as base64url, other bytes
as hex, absent ``select`` variants omitted).

Exit status: 0 decoded; 2 for a decode error (one line
``dap-decode: error: <path> @ <offset>: <reason>`` on stderr) and for bad
usage (one line). Never a traceback for either.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from dap.codec import FixedLengthBytes, ListWire, Message, StructWire, to_jsonable
from dap.errors import DecodeError
from dap.messages import (
    MESSAGE_TYPES,
    PingPongMessage,
    PrepareContinue,
    PrepareInit,
    PrepareResp,
    message_class_by_name,
    message_class_for_media_type,
)

__all__ = ["main", "format_tree"]

PROG = "dap-decode"
EXIT_OK = 0
EXIT_USAGE = 2

#: Opaque fields that carry an encoded VDAF ping-pong Message.
_PING_PONG_FIELDS = {(PrepareInit, "payload"), (PrepareResp, "payload"), (PrepareContinue, "payload")}
#: u64 fields that are times: shown with their UTC date as well.
_TIME_FIELDS = {"time", "start"}
_SHORT_BYTES = 32


class _UsageError(Exception):
    """Bad command line or unreadable input: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + error
        raise _UsageError(message)


def _bytes_text(value: bytes, full: bool) -> str:
    n = len(value)
    if n == 0:
        return "(0 bytes)"
    if full or n <= _SHORT_BYTES:
        return f"{value.hex()} ({n} bytes)"
    return f"{value[:_SHORT_BYTES].hex()}… ({n} bytes)"


def _time_note(value: int) -> str:
    try:
        return " (" + dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + ")"
    except (OverflowError, OSError, ValueError):
        return ""


def format_tree(msg: Message, *, full: bool = False, indent: str = "  ") -> list[str]:
    """The lines of a readable tree for ``msg`` (without the heading line)."""
    lines: list[str] = []

    def walk(m: Message, depth: int) -> None:
        pad = indent * depth
        for spec in m._SPECS:
            v = getattr(m, spec.name)
            if v is None and spec.conditional:
                continue
            w = spec.wire
            if isinstance(w, StructWire):
                lines.append(f"{pad}{spec.name}: {type(v).__name__}")
                walk(v, depth + 1)
            elif isinstance(w, ListWire):
                lines.append(f"{pad}{spec.name}: {len(v)} item{'s' if len(v) != 1 else ''}")
                for i, item in enumerate(v):
                    lines.append(f"{pad}{indent}[{i}] {type(item).__name__}")
                    walk(item, depth + 2)
            elif isinstance(v, FixedLengthBytes):
                lines.append(f"{pad}{spec.name}: {v.b64()} (hex {v.hex()})")
            elif isinstance(v, bytes):
                lines.append(f"{pad}{spec.name}: {_bytes_text(v, full)}")
                if (type(m), spec.name) in _PING_PONG_FIELDS:
                    try:
                        inner = PingPongMessage.decode(v)
                    except DecodeError as exc:
                        lines.append(f"{pad}{indent}(not a ping-pong message: {exc})")
                    else:
                        lines.append(f"{pad}{indent}= PingPongMessage")
                        walk(inner, depth + 2)
            elif w.kind == "enum":
                lines.append(f"{pad}{spec.name}: {v.name.lower()} ({int(v)})")
            else:
                note = _time_note(v) if spec.name in _TIME_FIELDS else ""
                lines.append(f"{pad}{spec.name}: {v}{note}")

    walk(msg, 1)
    return lines


def _build_parser() -> _Parser:
    p = _Parser(
        prog=PROG,
        description="Decode one DAP-09 message and print it as a tree (default) or as JSON.",
        epilog="Exit status: 0 decoded; 2 decode error or bad usage.",
    )
    p.add_argument("file", nargs="?", help="file holding the message; '-' reads stdin")
    src = p.add_argument_group("inline input")
    src.add_argument("--hex", metavar="STRING", help="the message as hex (whitespace ignored)")
    src.add_argument("--base64url", metavar="STRING", help="the message as URL-safe base64 (padding optional)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--type", "-t", metavar="NAME", help="message class name, any case (see --list-types)")
    kind.add_argument("--media-type", "-m", metavar="TYPE", help="media type, e.g. application/dap-report")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    p.add_argument("--full", action="store_true", help="do not shorten long byte strings in the tree")
    p.add_argument("--list-types", action="store_true", help="list message names and media types, then exit")
    return p


def _read_input(args: argparse.Namespace) -> bytes:
    given = [name for name, v in (("FILE", args.file), ("--hex", args.hex), ("--base64url", args.base64url)) if v is not None]
    if len(given) != 1:
        raise _UsageError(
            "give exactly one input: FILE, '-', --hex or --base64url"
            + (f" (got {', '.join(given)})" if given else "")
        )
    if args.hex is not None:
        text = "".join(args.hex.split())
        if text[:2].lower() == "0x":
            text = text[2:]
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise _UsageError("--hex: not a hex string") from None
    if args.base64url is not None:
        text = "".join(args.base64url.split()).rstrip("=")
        if not all(c.isalnum() or c in "-_" for c in text) or not text.isascii():
            raise _UsageError("--base64url: not URL-safe base64")
        try:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise _UsageError("--base64url: not URL-safe base64") from None
    if args.file == "-":
        return sys.stdin.buffer.read()
    try:
        with open(args.file, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise _UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from None


def _message_class(args: argparse.Namespace) -> type[Message]:
    if args.type is not None:
        cls = message_class_by_name(args.type)
        if cls is None:
            raise _UsageError(f"unknown message type {args.type!r} (see --list-types)")
        return cls
    if args.media_type is not None:
        cls = message_class_for_media_type(args.media_type)
        if cls is None:
            raise _UsageError(f"unknown media type {args.media_type!r} (see --list-types)")
        return cls
    raise _UsageError("give the message type: --type NAME or --media-type TYPE")


def _list_types() -> str:
    width = max(len(n) for n in MESSAGE_TYPES)
    return "\n".join(f"{name:<{width}}  {cls.MEDIA_TYPE or '-'}" for name, cls in MESSAGE_TYPES.items())


def _run(argv: Sequence[str] | None) -> int:
    args = _build_parser().parse_args(argv)
    if args.list_types:
        print(_list_types())
        return EXIT_OK
    cls = _message_class(args)
    data = _read_input(args)
    try:
        msg = cls.decode(data)
    except DecodeError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        doc: dict[str, Any] = {
            "type": cls.__name__,
            "media_type": cls.MEDIA_TYPE,
            "length": len(data),
            "message": to_jsonable(msg),
        }
        print(json.dumps(doc, indent=2))
    else:
        head = f"{cls.__name__} ({cls.MEDIA_TYPE + ', ' if cls.MEDIA_TYPE else ''}{len(data)} bytes)"
        print("\n".join([head, *format_tree(msg, full=args.full)]))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dap-decode``; returns the exit status."""
    try:
        return _run(argv)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except BrokenPipeError:  # e.g. piped into `head`
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
