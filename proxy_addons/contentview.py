"""A mitmproxy content view for DAP-09 bodies (``application/dap-*``) and problem documents.

DAP messages are decoded with the codec and shown as an indented tree (IDs base64url,
other bytes hex, enums by name; long byte strings shortened). A body that does not
decode shows the codec's error (field path and offset) and a hex dump.
``application/problem+json`` is pretty-printed with the DAP problem type's description.

Registered on import (``proxy_addons/faultproxy.py`` imports it); on its own: ``mitmweb -s proxy_addons/contentview.py``.
"""

from __future__ import annotations

import json
from typing import Any

from mitmproxy import contentviews
from mitmproxy.contentviews import Contentview, Metadata

__all__ = ["DapContentview", "render_tree"]

_MAX_HEX = 64


def _leaf(value: Any) -> str:
    if isinstance(value, str) and len(value) > _MAX_HEX * 2:
        return f"{value[:_MAX_HEX * 2]}... ({len(value) // 2} bytes)"
    return json.dumps(value) if isinstance(value, str) else str(value)


def render_tree(obj: Any, indent: int = 0) -> list[str]:
    """Lines of an indented tree for a JSON-ready value (dicts, lists, leaves)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(obj, dict):
        for k, val in obj.items():
            if isinstance(val, (dict, list)) and val:
                lines.append(f"{pad}{k}:")
                lines += render_tree(val, indent + 1)
            else:
                lines.append(f"{pad}{k}: {_leaf(val) if not isinstance(val, (dict, list)) else json.dumps(val)}")
    elif isinstance(obj, list):
        for i, val in enumerate(obj):
            if isinstance(val, (dict, list)):
                lines.append(f"{pad}[{i}]")
                lines += render_tree(val, indent + 1)
            else:
                lines.append(f"{pad}[{i}] {_leaf(val)}")
    else:
        lines.append(pad + _leaf(obj))
    return lines


class DapContentview(Contentview):
    """Decoded DAP-09 message tree / problem document."""

    @property
    def name(self) -> str:
        return "DAP"

    @property
    def syntax_highlight(self) -> str:  # type: ignore[override]
        return "yaml"

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        ct = (metadata.content_type or "").split(";", 1)[0].strip().lower()
        if ct == "application/problem+json":
            doc = json.loads(data)
            text = json.dumps(doc, indent=2, ensure_ascii=False)
            if isinstance(doc, dict) and isinstance(doc.get("type"), str):
                from dap.constants import problem_type_from_uri

                pt = problem_type_from_uri(doc["type"])
                text += f"\n# DAP problem: {pt.token} - {pt.description}" if pt else "\n# not a DAP-09 problem type"
            return text
        from dap.codec import to_jsonable
        from dap.errors import DecodeError
        from dap.messages import message_class_for_media_type

        cls = message_class_for_media_type(ct)
        if cls is None:
            raise ValueError(f"not a DAP media type: {ct!r}")
        try:
            msg = cls.decode(data)
        except DecodeError as exc:
            return f"# {cls.__name__}: does not decode: {exc}\n" + data[:512].hex(" ", 8)
        return "\n".join([f"{cls.__name__} ({len(data)} bytes)", *render_tree(to_jsonable(msg), 1)])

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        ct = (metadata.content_type or "").split(";", 1)[0].strip().lower()
        if ct.startswith("application/dap-"):
            return 2.0
        if ct == "application/problem+json" and data:
            return 1.5
        return -1


dap_view = DapContentview()


def register() -> None:
    """Add the view to mitmproxy's registry (done once, on import)."""
    contentviews.add(dap_view)


# Importing registers the view, so `mitmweb -s proxy_addons/contentview.py` works on its own.
register()
addons: list[Any] = []
