"""The recorded history: the one schema the proxy writes and the checker reads.

A history is a JSONL file, one event per line, in the order the proxy saw things:

- :class:`MessageEvent` (``"event": "message"``) for every request, response and
  transport error the proxy sees (``phase`` ``request`` / ``response`` / ``error``).
- :class:`FaultEvent` (``"event": "fault"``) for every fault a rule applied, with what it
  changed.
- :class:`ControlEvent` (``"event": "control"``) for plan loads, resets, manual events.

Every event has ``seq`` (0, 1, 2... per history file), ``t_mono`` (``time.monotonic()``)
and ``t_wall`` (UNIX seconds). Messages carry the flow's ``flow_seq`` (the order in
which the proxy first saw the flow in this run: stable across identical runs, unlike the
random ``flow_id``) and ``copy_of`` / ``origin`` for copies the proxy itself sent
(duplicates, replays, synthesized messages).

``summary`` is the decoded DAP summary (see :func:`faults.summary.summarize`): ``task_id``,
``job_id`` (path, base64url), ``report_ids`` (hex), ``step``, ``counts``,
``problem_type``, ``decode_error`` for a body that did not decode.

:func:`read_history` loads a file back into events; :func:`comparable` strips the fields
that legitimately differ between two runs of the same plan over the same traffic.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import IO, Any

import attrs

__all__ = [
    "HISTORY_VERSION",
    "ControlEvent",
    "FaultEvent",
    "HistoryWriter",
    "MessageEvent",
    "comparable",
    "event_from_dict",
    "event_to_dict",
    "read_history",
]

HISTORY_VERSION = 1
log = logging.getLogger(__name__)


@attrs.frozen
class MessageEvent:
    seq: int
    t_mono: float
    t_wall: float
    link: str | None
    kind: str | None
    phase: str
    flow_id: str
    flow_seq: int
    method: str
    path: str
    status: int | None = None
    media_type: str | None = None
    body_len: int = 0
    summary: dict[str, Any] = attrs.field(factory=dict)
    copy_of: str | None = None
    origin: str | None = None
    error: str | None = None
    event: str = "message"


@attrs.frozen
class FaultEvent:
    seq: int
    t_mono: float
    t_wall: float
    rule_id: str
    action: str
    link: str | None
    kind: str | None
    phase: str
    flow_id: str
    flow_seq: int
    changed: dict[str, Any] = attrs.field(factory=dict)
    event: str = "fault"


@attrs.frozen
class ControlEvent:
    seq: int
    t_mono: float
    t_wall: float
    what: str
    detail: dict[str, Any] = attrs.field(factory=dict)
    event: str = "control"


Event = MessageEvent | FaultEvent | ControlEvent
_CLASSES: dict[str, type] = {"message": MessageEvent, "fault": FaultEvent, "control": ControlEvent}


def event_to_dict(ev: Event) -> dict[str, Any]:
    return attrs.asdict(ev, recurse=False)


def event_from_dict(data: dict[str, Any]) -> Event:
    cls = _CLASSES[data["event"]]
    names = {f.name for f in attrs.fields(cls)}
    return cls(**{k: val for k, val in data.items() if k in names})


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def _next_seq(path: Path) -> int:
    """1 + the last complete event's seq in an existing history file (0 if none)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            tail = fh.read().split(b"\n")
    except FileNotFoundError:
        return 0
    for line in reversed(tail[:-1] if tail and tail[-1] != b"" else tail):
        try:
            return int(json.loads(line)["seq"]) + 1
        except (ValueError, KeyError, TypeError):
            continue
    return 0


_ENCODER = json.JSONEncoder(default=_jsonable, separators=(",", ":"))


@attrs.define
class HistoryWriter:
    """Owner of one JSONL history file (append; one line per event, flushed).

    ``path`` None keeps events only in memory (``events``), as in-process tests do.
    """

    path: Path | None = None
    keep_in_memory: bool = False
    events: list[Event] = attrs.field(factory=list)
    _file: IO[str] | None = attrs.field(default=None, init=False)
    _seq: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if self.path is not None:
            self.path = Path(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._seq = _next_seq(self.path)  # appending to an earlier run: seq keeps growing
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - owned, closed in close()
        else:
            self.keep_in_memory = True

    @property
    def next_seq(self) -> int:
        return self._seq

    def _emit(self, cls: type, event: str, fields: dict[str, Any]) -> None:
        seq = self._seq
        self._seq += 1
        data = {"seq": seq, "t_mono": time.monotonic(), "t_wall": time.time(), **fields, "event": event}
        if self.keep_in_memory:
            self.events.append(cls(**data))  # also checks the fields against the schema
        if self._file is not None:
            self._file.write(_ENCODER.encode(data) + "\n")
            self._file.flush()

    def message(self, **fields: Any) -> None:
        """Record a :class:`MessageEvent` (fields as its attributes, minus seq/times/event)."""
        self._emit(MessageEvent, "message", fields)

    def fault(self, **fields: Any) -> None:
        """Record a :class:`FaultEvent`."""
        self._emit(FaultEvent, "fault", fields)

    def control(self, what: str, **detail: Any) -> None:
        """Record a :class:`ControlEvent`."""
        self._emit(ControlEvent, "control", {"what": what, "detail": detail})

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                log.exception("closing history file %s", self.path)
            self._file = None

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_file", None) is not None:
            warnings.warn(f"HistoryWriter for {self.path} collected while open", ResourceWarning, stacklevel=1)
            self.close()


def read_history(path: str | os.PathLike[str], *, since_seq: int = 0) -> list[Event]:
    """Load a JSONL history. A torn last line (proxy killed mid-write) is skipped."""
    events: list[Event] = []
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise
        if data.get("seq", 0) >= since_seq:
            events.append(event_from_dict(data))
    return events


_VOLATILE = frozenset({"seq", "t_mono", "t_wall", "flow_id", "copy_of"})
_VOLATILE_CHANGED = frozenset({"delay_ms_actual", "held_ms"})


def comparable(events: list[Event] | list[dict[str, Any]], *, kinds: tuple[str, ...] = ("message", "fault")) -> list[dict]:
    """Events as dicts without timings and random flow ids, for run-to-run comparison."""
    out = []
    for ev in events:
        d = dict(ev) if isinstance(ev, dict) else event_to_dict(ev)
        if d.get("event") not in kinds:
            continue
        for k in _VOLATILE:
            d.pop(k, None)
        if "changed" in d:
            d["changed"] = {k: val for k, val in d["changed"].items() if k not in _VOLATILE_CHANGED}
        out.append(d)
    return out
