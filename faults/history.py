"""The recorded history: the one schema the proxy writes and the checker reads.

A history is a JSONL file, one event per line, in the order the proxy saw things:

- :class:`MessageEvent` (``"event": "message"``) for every request, response and
  transport error the proxy sees (``phase`` ``request`` / ``response`` / ``error``).
- :class:`FaultEvent` (``"event": "fault"``) for every fault a rule applied, with what it
  changed; network rules (:mod:`faults.network`) record each window opening and closing as a
  fault event with ``phase`` ``network`` and no flow (``flow_id`` "", ``flow_seq`` -1).
- :class:`ControlEvent` (``"event": "control"``) for plan loads, resets, manual events.

Every event has ``seq`` (0, 1, 2... per history file), ``t_mono`` (``time.monotonic()``)
and ``t_wall`` (UNIX seconds). Messages carry the flow's ``flow_seq`` (the order in
which the proxy first saw the flow in this run: stable across identical runs, unlike the
random ``flow_id``) and ``copy_of`` / ``origin`` for copies the proxy itself sent
(duplicates, replays, synthesized messages).

``summary`` is the decoded DAP summary of the body (:class:`Summary`, written by
:func:`faults.dapcodec.summarize`); a fault's ``changed`` is its action's typed
:class:`~faults.actions.Change`.

Every history file starts with a schema line (``{"event": "schema", "history_version": 1}``).
:func:`load_history` reads a file back and names what is wrong with it instead of guessing:
an unknown schema version, a line that is not JSON, a torn last line (the writer was killed
mid-line) -- the checker turns any of these into an inconclusive run. :func:`comparable`
strips the fields that legitimately differ between two runs of the same plan.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import attrs

from faults.actions import Action, Change, action_class, change_from_dict
from faults.network import NET_PHASE, is_net_action, net_action_class, net_change_from_dict

__all__ = [
    "HISTORY_VERSION",
    "ControlEvent",
    "FaultEvent",
    "HistoryWriter",
    "LoadedHistory",
    "RecordingError",
    "MessageEvent",
    "Summary",
    "comparable",
    "event_from_dict",
    "event_to_dict",
    "load_history",
    "read_history",
    "write_history",
]

class RecordingError(Exception):
    """An event could not be written: the traffic it describes must not pass unrecorded."""


HISTORY_VERSION = 1
#: the first line of every history file
SCHEMA_LINE = {"event": "schema", "history_version": HISTORY_VERSION}
log = logging.getLogger(__name__)


def _opt_tuple(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


def _opt_pair(value: Any) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


@attrs.frozen(kw_only=True)
class Summary:
    """The decoded DAP summary of one message body (what the checker needs, not the body).

    Fields are present as they apply to the message; absent ones are None (or empty)."""

    #: the DAP message class (``AggregationJobInitReq``); None for no body / not DAP
    message: str | None = None
    #: IDs in the request path (base64url)
    task_id: str | None = None
    job_id: str | None = None
    #: report IDs the message carries, in order (hex)
    report_ids: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: a Report's time
    time: int | None = None
    config_ids: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    #: list lengths (``{"prepare_inits": 3}``)
    counts: Mapping[str, int] = attrs.field(factory=dict)
    #: AggregationJobResp: report ID -> ``continue`` / ``finished`` / ``reject:<error>``
    prepare_states: Mapping[str, str] = attrs.field(factory=dict)
    step: int | None = None
    report_count: int | None = None
    checksum: str | None = None
    batch_id: str | None = None
    interval: tuple[int, int] | None = attrs.field(default=None, converter=_opt_pair)
    query_type: str | None = None
    #: a problem document's ``type`` (URI) and its DAP token
    problem_type: str | None = None
    problem_token: str | None = None
    #: an init with a non-empty aggregation parameter (Poplar1): its digest
    agg_param_sha256: str | None = None
    #: a body that did not decode: why
    decode_error: str | None = None
    #: first 16 bytes of SHA-256 of the exact body (hex), for every body that decoded
    body_sha256: str | None = None

    @classmethod
    def of(cls, value: Any) -> Summary:
        """A Summary from itself or its JSON object (ValueError for an unknown key)."""
        if isinstance(value, Summary):
            return value
        try:
            return cls(**dict(value or {}))
        except TypeError as exc:
            raise ValueError(f"message summary: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for a in attrs.fields(Summary):
            x = getattr(self, a.name)
            if x is not None and x != () and x != {}:
                out[a.name] = list(x) if isinstance(x, tuple) else dict(x) if isinstance(x, Mapping) else x
        return out


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
    summary: Summary = attrs.field(factory=Summary, converter=Summary.of)
    copy_of: str | None = None
    origin: str | None = None
    error: str | None = None
    event: str = "message"
    #: for a copy: the id of the rule that made it (two rules may forge the same message from
    #: one flow, one with tampered credentials); absent from histories written before it
    copy_rule: str | None = None


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
    changed: Change = attrs.field(factory=Change)
    event: str = "fault"

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.changed, Change):  # read from JSON: the action's own record
            change = net_change_from_dict(self.changed) if is_net_action(self.action) else \
                change_from_dict(self.action, self.changed)
            object.__setattr__(self, "changed", change)

    @property
    def is_network(self) -> bool:
        """A network fault (:mod:`faults.network`): a window opening or closing on a link, no flow."""
        return self.phase == NET_PHASE

    @property
    def action_class(self) -> type[Action]:
        """What the action means (its traits: :class:`faults.actions.Action`)."""
        return net_action_class(self.action) if is_net_action(self.action) else action_class(self.action)

    @property
    def applied(self) -> bool:
        """The action did what it does (not skipped, did not fail)."""
        return self.changed.applied


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
    out = attrs.asdict(ev, recurse=False)
    if isinstance(ev, MessageEvent):
        out["summary"] = ev.summary.to_dict()
    elif isinstance(ev, FaultEvent):
        out["changed"] = ev.changed.to_dict()
    return out


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """One history line as its event (ValueError / KeyError for a line of another shape)."""
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
    #: writes that failed: ``{"seq": the seq it spent, "error": one line}`` (the gap they leave is real)
    failures: list[dict[str, Any]] = attrs.field(factory=list)
    _file: IO[str] | None = attrs.field(default=None, init=False)
    _seq: int = attrs.field(default=0, init=False)
    #: how many times :meth:`rotate` started a new segment
    segments: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if self.path is not None:
            self.path = Path(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._seq = _next_seq(self.path)  # appending to an earlier run: seq keeps growing
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - owned, closed in close()
            if self._file.tell() == 0:
                self._file.write(_ENCODER.encode(SCHEMA_LINE) + "\n")
                self._file.flush()
        else:
            self.keep_in_memory = True

    @property
    def next_seq(self) -> int:
        return self._seq

    def _emit(self, cls: type, event: str, fields: dict[str, Any]) -> None:
        """Write one event. An error (disk full, closed file) propagates: the caller must not let
        the traffic it describes pass unrecorded. The seq is spent either way, so a reader sees
        the gap."""
        seq = self._seq
        self._seq += 1
        data = {"seq": seq, "t_mono": time.monotonic(), "t_wall": time.time(), **fields, "event": event}
        if self.keep_in_memory:
            self.events.append(cls(**data))  # also checks the fields against the schema
        if self._file is not None:
            try:
                self._file.write(_ENCODER.encode(data) + "\n")
                self._file.flush()
            except (OSError, ValueError) as exc:  # disk full, file closed: never silent
                why = f"history {self.path}: seq {seq}: {type(exc).__name__}: {exc}"
                self.failures.append({"seq": seq, "error": why})
                raise RecordingError(why) from exc

    def message(self, **fields: Any) -> None:
        """Record a :class:`MessageEvent` (fields as its attributes, minus seq/times/event)."""
        self._emit(MessageEvent, "message", fields)

    def fault(self, *, changed: Change, **fields: Any) -> None:
        """Record a :class:`FaultEvent` (``changed``: the action's typed record)."""
        self._emit(FaultEvent, "fault", {**fields, "changed": changed.to_dict()})

    def control(self, what: str, **detail: Any) -> None:
        """Record a :class:`ControlEvent`."""
        self._emit(ControlEvent, "control", {"what": what, "detail": detail})

    def rotate(self) -> int:
        """Start a new segment: the file is replaced by one holding only what comes next (the
        seq goes on; in-memory events are dropped). A long-lived proxy calls this at each
        scenario's start, so its history holds one scenario, not the whole campaign. The first
        event of a segment is a ``segment`` control event; returns its seq."""
        self.segments += 1
        self.events.clear()
        if self.path is not None:
            self.close()
            try:
                tmp = self.path.with_name(self.path.name + ".new")
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(_ENCODER.encode(SCHEMA_LINE) + "\n")
                os.replace(tmp, self.path)  # a reader holding the old file reads it to its end
            finally:  # the old file if the new one could not be made: never write nowhere
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - owned, closed in close()
        seq = self._seq
        self.control("segment", first_seq=seq)
        return seq

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


@attrs.frozen
class LoadedHistory:
    """A history file read back: its events, and what is wrong with the file (empty: nothing)."""

    events: tuple[Event, ...]
    problems: tuple[str, ...] = ()


def load_history(path: str | os.PathLike[str], *, since_seq: int = 0) -> LoadedHistory:
    """Read a JSONL history, never guessing: an unknown schema version, a line that is not an
    event and a torn last line (the writer killed mid-line) are named in ``problems``; the events
    before a bad line are kept. A missing file raises FileNotFoundError."""
    events: list[Event] = []
    problems: list[str] = []
    with open(path, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    torn = lines[-1] != b""  # a complete file ends with a newline
    if torn:
        problems.append(f"{path}: the last line is truncated ({len(lines[-1])} bytes without a newline): "
                        "the history ends in a gap")
    for n, line in enumerate(lines[:-1], 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if obj.get("event") == "schema":
                version = obj.get("history_version")
                if version != HISTORY_VERSION:
                    problems.append(f"{path}: history schema version {version!r}; this checker reads "
                                    f"{HISTORY_VERSION}")
                    return LoadedHistory((), tuple(problems))
                continue
            if obj.get("seq", 0) >= since_seq:
                events.append(event_from_dict(obj))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            problems.append(f"{path}:{n}: not a history event ({type(exc).__name__}: {exc}); the events after it "
                            "are not read")
            break
    return LoadedHistory(tuple(events), tuple(problems))


def read_history(path: str | os.PathLike[str], *, since_seq: int = 0) -> list[Event]:
    """Load a JSONL history; a torn last line is skipped, anything else wrong raises ValueError."""
    loaded = load_history(path, since_seq=since_seq)
    bad = [p for p in loaded.problems if "last line is truncated" not in p]
    if bad:
        raise ValueError(bad[0])
    return list(loaded.events)


def write_history(path: str | os.PathLike[str], events: Iterable[Event]) -> None:
    """A history file of ``events`` (a run directory's slice of the proxy's history)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(_ENCODER.encode(SCHEMA_LINE) + "\n")
        for ev in events:
            fh.write(_ENCODER.encode(event_to_dict(ev)) + "\n")


_VOLATILE = frozenset({"seq", "t_mono", "t_wall", "flow_id", "copy_of"})
_VOLATILE_CHANGED = frozenset({"delay_ms_actual", "held_ms", "packets"})  # packets: network counters


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
            changed = d["changed"] if isinstance(d["changed"], dict) else d["changed"].to_dict()
            d["changed"] = {k: val for k, val in changed.items() if k not in _VOLATILE_CHANGED}
        if isinstance(d.get("summary"), Summary):
            d["summary"] = d["summary"].to_dict()
        out.append(d)
    return out
