"""Fault actions: one small frozen type per action, one name -> class table.

Every action is an ``@attrs.frozen`` class whose fields are its parameters
(units in the names: ``delay_ms``) and which has one coroutine
``apply(flow, ctx)``. ``flow`` is the live :class:`mitmproxy.http.HTTPFlow`;
``ctx`` is the per-rule view of the run state (:class:`ActionContext`): the
rule, an RNG derived from the plan seed and the rule id, the history writer,
held flows and the way to send copies upstream. Actions never read the wall
clock or an unseeded RNG to decide anything.

Class attributes (not parameters):

- ``phases``: the phases the action can run in; ``default_phase`` is used when
  the rule's matcher names none.
- ``observes``: the action also wants :meth:`observe` for every message the
  rule's matcher accepts (before the occurrence limits are consulted), e.g.
  reorder releases its held flow on the next matching message.

Adding an action: write the class, add it to :data:`ACTIONS`, document it in
``docs/plans.md``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs
from attrs import validators as v

from dap.constants import ProblemType
from faults import dapcodec
from faults.vocabulary import AUTHENTICATED_KINDS, classify, problem_uri

if TYPE_CHECKING:  # pragma: no cover
    from mitmproxy import http

__all__ = [
    "ACTIONS",
    "Change",
    "EVENT_NAMES",
    "SYNTHESIZERS",
    "Action",
    "ActionContext",
    "Auth",
    "CorruptBytes",
    "CorruptField",
    "Delay",
    "DropRequest",
    "DropResponse",
    "Duplicate",
    "Reorder",
    "ReplayLater",
    "Respond",
    "Synthesize",
    "Truncate",
    "action_class",
    "action_name",
    "change_from_dict",
]

def _int(*extra: Any) -> Any:
    """Validator: a real int (bools refused) plus extra checks."""

    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{attr.name} must be an integer, got {value!r}")

    return v.and_(check, *extra)


#: Named events ``replay-later`` can wait for: ``name -> (kind, status predicate)``.
#: Events named ``manual:<anything>`` are fired through the control channel.
EVENT_NAMES: dict[str, tuple[str, str]] = {
    "collection_finished": ("collection_poll", "200"),
    "collection_created": ("collection_create", "2xx"),
    "collection_deleted": ("collection_delete", "2xx"),
    "upload_done": ("upload", "2xx"),
    "agg_init_done": ("agg_init", "2xx"),
    "agg_continue_done": ("agg_continue", "2xx"),
    "agg_delete_done": ("agg_delete", "2xx"),
    "agg_share_done": ("agg_share", "2xx"),
}


def _valid_event(inst: Any, attr: attrs.Attribute, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not (value in EVENT_NAMES or (value.startswith("manual:") and len(value) > 7)):
        known = ", ".join(sorted(EVENT_NAMES))
        raise ValueError(f"{attr.name} must be one of {known} or 'manual:<name>', got {value!r}")


class ActionContext(Protocol):
    """What an action may use while applying (implemented by the proxy's run state)."""

    rule_id: str
    rng: random.Random
    """Seeded from (plan seed, rule id); the action's own stream."""

    def record(self, **changed: Any) -> None:
        """Write a fault event for this rule and flow to history, now (``changed``: the fields of
        the action's ``Change``)."""

    def send_copy(self, copy: http.HTTPFlow, *, origin: str, delay_ms: int = 0) -> None:
        """Send a request copy upstream (marked: never matched again, recorded)."""

    async def hold(self, flow: http.HTTPFlow, *, max_hold_ms: int) -> str:
        """Hold until released (by :meth:`release_held`, a plan change or the timeout); return why."""

    def release_held(self, by: http.HTTPFlow) -> bool:
        """Release this rule's held flow after ``by`` has gone through. False if none is held."""

    def defer_replay(self, copy: http.HTTPFlow, *, after_event: str | None, after_messages: int | None) -> None:
        """Keep a request copy and send it after an event or N more matching messages."""

    def count_observed(self) -> None:
        """Tell pending replays of this rule that one more matching message went by."""


@attrs.frozen(kw_only=True)
class Change:
    """What one application of an action did: the ``changed`` object of its fault event in
    history. Each action's own ``Change`` adds its fields; every field defaults to None
    (absent from the JSON). Common to all:"""

    #: the action chose to change nothing (why: an empty body, an undecodable message...)
    skipped: str | None = None
    #: the action raised; the flow went on unchanged (a harness bug, recorded)
    action_failed: str | None = None
    #: body-changing actions: the body's ``body_sha256`` after this change (two changes that
    #: undo each other, a bit flipped twice, leave the upstream the original body)
    body_sha256: str | None = None

    @property
    def applied(self) -> bool:
        """The action did what it does (not skipped, did not fail)."""
        return self.skipped is None and self.action_failed is None

    @property
    def changed_anything(self) -> bool:
        """The message is different because of it (a body fault may leave the bytes equal)."""
        return self.applied

    @property
    def copies_made(self) -> int:
        """Requests it sends (or stores to send) upstream besides the original."""
        return 0

    @property
    def copy_credentials_tampered(self) -> bool:
        """The request it sent (a forgery) carries changed credentials."""
        return False

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the event (None fields left out, tuples as lists)."""
        return {a.name: list(x) if isinstance(x, tuple) else x
                for a in attrs.fields(type(self)) if (x := getattr(self, a.name)) is not None}


class Action:
    """What every action shares (toxiproxy keeps this in one wrapper around every toxic): the
    phases it can run in, and what it *means*, declared once here for the proxy, the checker,
    the campaign strategies and the report. Subclasses are frozen attrs classes whose fields
    are the parameters and which implement ``apply``; ``Change`` is the typed record of what
    one application did."""

    #: the phases the action can run in; ``default_phase`` when the rule's matcher names none
    phases: ClassVar[frozenset[str]]
    default_phase: ClassVar[str] = "request"
    #: the action also wants :meth:`observe` for every message the rule's matcher accepts
    observes: ClassVar[bool] = False
    #: it sends extra requests upstream (recorded as flows of their own, ``copy_of`` the original)
    sends_copies: ClassVar[bool] = False
    #: ... and those requests are byte-for-byte the request as it was (not forged)
    copies_verbatim: ClassVar[bool] = False
    #: it changes the body of the message (the Aggregator sees other bytes)
    changes_body: ClassVar[bool] = False
    #: it changes the request's credentials
    tampers_auth: ClassVar[bool] = False
    #: at phase request the proxy answers instead of the upstream (which never sees the request);
    #: at phase response its answer replaces the upstream's
    answers_in_place: ClassVar[bool] = False
    #: the message is lost: a request never delivered, a response the client never gets
    drops: ClassVar[bool] = False
    #: it changes only when the message arrives, never what it says
    timing_only: ClassVar[bool] = False
    Change: ClassVar[type[Change]] = Change

    # and ``async def apply(self, flow, ctx) -> None``: change the live flow, ``ctx.record`` what changed

    def check_target(self, kind: str | None, phase: str) -> None:
        """What the action needs of the messages its rule matches (ValueError, one line, if the
        matcher's kind / phase cannot work); checked when a plan is loaded."""

    def observe(self, flow: http.HTTPFlow, ctx: ActionContext) -> bool:
        """Another message the matcher accepts (``observes`` actions only); True = do not apply."""
        return False


def _opt_tuple(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else tuple(value)


_REQ = frozenset({"request"})
_RESP = frozenset({"response"})
_BOTH = frozenset({"request", "response"})


def _message(flow: http.HTTPFlow, phase: str) -> http.Message:
    return flow.request if phase == "request" else flow.response  # type: ignore[return-value]


def set_body(msg: http.Message, body: bytes) -> None:
    """Replace the raw body and keep ``Content-Length`` truthful (a shorter body is a complete,
    shorter message, not a stalled transfer)."""
    msg.raw_content = body
    if "content-length" in msg.headers or "transfer-encoding" not in msg.headers:
        msg.headers["content-length"] = str(len(body))


def _phase(flow: http.HTTPFlow) -> str:
    return "response" if flow.response is not None else "request"


# --- connection-level ---------------------------------------------------------


@attrs.frozen
class DropRequest(Action):
    """Never forward the request; the client's connection is closed without an answer."""

    phases: ClassVar = _REQ
    default_phase: ClassVar = "request"
    observes: ClassVar = False
    drops: ClassVar = True

    @attrs.frozen(kw_only=True)
    class Change(Change):
        dropped: str | None = None

    async def apply(self, flow: http.HTTPFlow, ctx: ActionContext) -> None:
        ctx.record(dropped="request")
        flow.kill()


@attrs.frozen
class DropResponse(Action):
    """Forward the request (the upstream processes it), then lose the reply: the client's
    connection is closed without a response."""

    phases: ClassVar = _RESP
    default_phase: ClassVar = "response"
    observes: ClassVar = False
    drops: ClassVar = True

    @attrs.frozen(kw_only=True)
    class Change(Change):
        dropped: str | None = None
        upstream_status: int | None = None

    async def apply(self, flow: http.HTTPFlow, ctx: ActionContext) -> None:
        ctx.record(dropped="response", upstream_status=flow.response.status_code if flow.response else None)
        flow.kill()


@attrs.frozen
class Delay(Action):
    """Hold the message ``delay_ms`` plus a seeded jitter in [0, ``jitter_ms``]; other flows go on."""

    delay_ms: int = attrs.field(validator=_int(v.ge(0)))
    jitter_ms: int = attrs.field(default=0, validator=_int(v.ge(0)))

    phases: ClassVar = _BOTH
    default_phase: ClassVar = "request"
    observes: ClassVar = False
    timing_only: ClassVar = True

    @attrs.frozen(kw_only=True)
    class Change(Change):
        delay_ms: int | None = None

    async def apply(self, flow: http.HTTPFlow, ctx: ActionContext) -> None:
        total = self.delay_ms + (ctx.rng.randint(0, self.jitter_ms) if self.jitter_ms else 0)
        ctx.record(delay_ms=total)
        await asyncio.sleep(total / 1000)


@attrs.frozen
class Duplicate(Action):
    """Send ``copies`` extra copies of the request upstream: all at once (``spacing_ms`` 0),
    or the i-th copy ``i * spacing_ms`` after the original. Copies are marked and never
    matched again; their responses are recorded, never shown to the client."""

    copies: int = attrs.field(default=1, validator=_int(v.ge(1), v.le(100)))
    spacing_ms: int = attrs.field(default=0, validator=_int(v.ge(0)))

    phases: ClassVar = _REQ
    default_phase: ClassVar = "request"
    observes: ClassVar = False
    sends_copies: ClassVar = True
    copies_verbatim: ClassVar = True

    @attrs.frozen(kw_only=True)
    class Change(Change):
        copies: int | None = None
        spacing_ms: int | None = None

        @property
        def copies_made(self) -> int:
            return (self.copies or 0) if self.applied else 0

    async def apply(self, flow: http.HTTPFlow, ctx: ActionContext) -> None:
        ctx.record(copies=self.copies, spacing_ms=self.spacing_ms)
        for i in range(self.copies):
            ctx.send_copy(flow.copy(), origin="duplicate", delay_ms=(i + 1) * self.spacing_ms)


@attrs.frozen
class Reorder(Action):
    """Hold the message until the next message this rule's matcher accepts has gone
    through (its response arrived, or for phase response: it was delivered), then deliver
    it. Released, never dropped, on a plan change or after ``max_hold_ms``."""

    max_hold_ms: int = attrs.field(default=30_000, validator=_int(v.ge(1)))

    phases: ClassVar = _BOTH
    default_phase: ClassVar = "request"
    observes: ClassVar = True
    timing_only: ClassVar = True

    @attrs.frozen(kw_only=True)
    class Change(Change):
        held: bool | None = None
        released: str | None = None

    def observe(self, flow: http.HTTPFlow, ctx: ActionContext) -> bool:
        """Another matching message: it overtakes the held one. True = do not hold it too."""
        return ctx.release_held(flow)

    async def apply(self, flow: http.HTTPFlow, ctx: ActionContext) -> None:
        ctx.record(held=True)
        why = await ctx.hold(flow, max_hold_ms=self.max_hold_ms)
        ctx.record(released=why)


@attrs.frozen
class ReplayLater(Action):
    """Keep a copy of the request and send it again later: after the named event
    (``after_event``, see :data:`EVENT_NAMES`) or after ``after_messages`` more messages
    this rule's matcher accepts. Exactly one of the two. The original goes through."""

    after_event: str | None = attrs.field(default=None, validator=_valid_event)
    after_messages: int | None = attrs.field(default=None, validator=v.optional(_int(v.ge(1))))

    phases: ClassVar = _REQ
    default_phase: ClassVar = "request"
    observes: ClassVar = True
    sends_copies: ClassVar = True
    copies_verbatim: ClassVar = True

    @attrs.frozen(kw_only=True)
    class Change(Change):
        stored: bool | None = None
        after_event: str | None = None
        after_messages: int | None = None

        @property
        def copies_made(self) -> int:
            return 1 if self.applied and self.stored else 0

    def __attrs_post_init__(self) -> None:
        if (self.after_event is None) == (self.after_messages is None):
            raise ValueError("replay-later needs exactly one of after_event, after_messages")

    def observe(self, flow: http.HTTPFlow, ctx: ActionContext) -> bool:
        ctx.count_observed()
        return False

    async def apply(self, flow: http.HTTPFlow, ctx: ActionContext) -> None:
        ctx.record(stored=True, after_event=self.after_event, after_messages=self.after_messages)
        ctx.defer_replay(flow.copy(), after_event=self.after_event, after_messages=self.after_messages)


# --- byte-level -----------------------------------------------------------------


@attrs.frozen
class CorruptBytes(Action):
    """Flip ``flips`` distinct, seeded bit positions in the body."""

    flips: int = attrs.field(default=1, validator=_int(v.ge(1)))

    phases: ClassVar = _BOTH
    default_phase: ClassVar = "request"
    observes: ClassVar = False
    changes_body: ClassVar = True

    @attrs.frozen(kw_only=True)
    class Change(Change):
        flipped_bits: tuple[int, ...] | None = attrs.field(default=None, converter=_opt_tuple)

        @property
        def changed_anything(self) -> bool:
            return self.applied and bool(self.flipped_bits)

    async def apply(self, flow: http.HTTPFlow, ctx: ActionContext) -> None:
        msg = _message(flow, _phase(flow))
        body = bytearray(msg.raw_content or b"")
        if not body:
            ctx.record(skipped="empty body")
            return
        bits = ctx.rng.sample(range(len(body) * 8), min(self.flips, len(body) * 8))
        for bit in bits:
            body[bit // 8] ^= 0x80 >> (bit % 8)
        set_body(msg, bytes(body))
        ctx.record(flipped_bits=sorted(bits))


@attrs.frozen
class Truncate(Action):
    """Cut the last ``drop_bytes`` bytes off the body (all of it if it is shorter)."""

    drop_bytes: int = attrs.field(default=1, validator=_int(v.ge(1)))

    phases: ClassVar = _BOTH
    default_phase: ClassVar = "request"
    observes: ClassVar = False
    changes_body: ClassVar = True

    @attrs.frozen(kw_only=True)
    class Change(Change):
        length_before: int | None = None
        length_after: int | None = None

        @property
        def changed_anything(self) -> bool:
            return self.applied and self.length_before != self.length_after

    async def apply(self, flow: http.HTTPFlow, ctx: ActionContext) -> None:
        msg = _message(flow, _phase(flow))
        body = msg.raw_content or b""
        keep = max(0, len(body) - self.drop_bytes)
        set_body(msg, body[:keep])
        ctx.record(length_before=len(body), length_after=keep)


CORRUPT_OPS = ("set", "add", "random", "flip", "zero", "reverse", "shuffle", "drop_first", "duplicate_first")


@attrs.frozen
class CorruptField(Action):
    """Decode the body with the DAP codec, change one field, re-encode.

    ``field`` is a codec field path of the message class for the rule's kind and phase
    (e.g. ``report_metadata.report_id``, ``step``, ``prepare_resps``); validated at load.
    ``op``: ``set`` (``value``: int, or hex for bytes), ``add`` (``value``: int delta),
    ``random`` (seeded, same length), ``flip`` (one seeded bit), ``zero``, and for lists
    ``reverse``, ``shuffle`` (seeded), ``drop_first``, ``duplicate_first``.
    """

    field: str = attrs.field(validator=[v.instance_of(str), v.min_len(1)])
    op: str = attrs.field(default="random", validator=v.in_(CORRUPT_OPS))
    value: int | str | None = attrs.field(default=None, validator=v.optional(v.instance_of((int, str))))

    phases: ClassVar = _BOTH
    default_phase: ClassVar = "request"
    observes: ClassVar = False
    changes_body: ClassVar = True

    @attrs.frozen(kw_only=True)
    class Change(Change):
        field: str | None = None
        op: str | None = None
        before: Any = None
        after: Any = None

        @property
        def changed_anything(self) -> bool:
            return self.applied and self.before != self.after

    def __attrs_post_init__(self) -> None:
        if self.op in ("set", "add") and self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        if self.op == "add" and (isinstance(self.value, bool) or not isinstance(self.value, int)):
            raise ValueError("op 'add' needs an integer value")
        if self.op == "set" and isinstance(self.value, str):
            try:
                bytes.fromhex(self.value)
            except ValueError:
                raise ValueError(f"value {self.value!r} is not hex") from None

    def check_target(self, kind: str | None, phase: str) -> None:
        if kind is None:
            raise ValueError("corrupt-field needs a matcher kind (the field path is checked against its message)")
        try:
            dapcodec.validate_field(kind, phase, self.field, self.op)
        except Exception as exc:
            raise ValueError(f"field {self.field!r}: {str(exc).removeprefix(f'{self.field!r}: ')}") from exc

    async def apply(self, flow: http.HTTPFlow, ctx: ActionContext) -> None:
        phase = _phase(flow)
        msg = _message(flow, phase)
        kind = classify(flow.request.method, flow.request.path).kind
        try:
            new_body, before, after = dapcodec.corrupt_field(
                msg.raw_content or b"", kind, phase, self.field, self.op, self.value, ctx.rng
            )
        except Exception as exc:  # undecodable body or impossible value: record, leave the message alone
            ctx.record(skipped=f"{type(exc).__name__}: {exc}")
            return
        set_body(msg, new_body)
        ctx.record(field=self.field, op=self.op, before=before, after=after)


# --- HTTP-level -----------------------------------------------------------------

AUTH_MODES = ("strip", "wrong_value", "wrong_bearer", "wrong_scheme", "conflicting", "duplicate")
_AUTH_HEADERS = ("DAP-Auth-Token", "Authorization")


@attrs.frozen
class Auth(Action):
    """Tamper with request authentication (``DAP-Auth-Token`` / ``Authorization: Bearer``).

    ``mode``: ``strip`` (remove both headers), ``wrong_value`` (same header, ``value`` or a
    seeded random token of the same length), ``wrong_bearer`` (only ``Authorization: Bearer``
    with a wrong token), ``wrong_scheme`` (token moved to ``Authorization: Basic
    base64(token)``), ``conflicting`` (the genuine credential kept and a wrong one in the other
    header beside it: both headers at once), ``duplicate`` (a second ``DAP-Auth-Token`` header
    carrying ``value``, or the same token).
    """

    mode: str = attrs.field(default="strip", validator=v.in_(AUTH_MODES))
    value: str | None = attrs.field(default=None, validator=v.optional(v.instance_of(str)))

    phases: ClassVar = _REQ
    default_phase: ClassVar = "request"
    observes: ClassVar = False
    tampers_auth: ClassVar = True

    @attrs.frozen(kw_only=True)
    class Change(Change):
        mode: str | None = None
        before: dict[str, list[str]] | None = None
        after: dict[str, list[str]] | None = None

    async def apply(self, flow: http.HTTPFlow, ctx: ActionContext) -> None:
        before, after = tamper_credentials(flow.request.headers, self.mode, self.value, ctx.rng)
        ctx.record(mode=self.mode, before=before, after=after)


def tamper_credentials(h: Any, mode: str, value: str | None, rng: random.Random) -> tuple[dict, dict]:
    """Change a request's credentials in place (``h``: mitmproxy headers) as ``mode`` says
    (see :class:`Auth`); return the credential headers before and after."""
    token = h.get("DAP-Auth-Token")
    auth = h.get("Authorization")
    if token is None and auth and auth.lower().startswith("bearer "):
        token = auth[7:]
    before = {k: h.get_all(k) for k in _AUTH_HEADERS if k in h}
    if mode == "strip":
        for k in _AUTH_HEADERS:
            h.pop(k, None)
    elif mode == "wrong_value":
        wrong = value or _wrong_token(token or "", rng)
        if "DAP-Auth-Token" in h or "Authorization" not in h:
            h["DAP-Auth-Token"] = wrong
        if "Authorization" in h:
            h["Authorization"] = f"Bearer {wrong}"
    elif mode == "wrong_bearer":
        for k in _AUTH_HEADERS:
            h.pop(k, None)
        h["Authorization"] = f"Bearer {value or _wrong_token(token or '', rng)}"
    elif mode == "wrong_scheme":
        for k in _AUTH_HEADERS:
            h.pop(k, None)
        h["Authorization"] = "Basic " + base64.b64encode((value or token or "").encode()).decode()
    elif mode == "conflicting":  # the genuine credential kept, a wrong one in the other header beside it
        wrong = value or _wrong_token(token or "", rng)
        if "Authorization" in h:
            h["DAP-Auth-Token"] = wrong
        else:
            h["Authorization"] = f"Bearer {wrong}"
    else:  # duplicate
        h.add("DAP-Auth-Token", value if value is not None else (token or ""))
    return before, {k: h.get_all(k) for k in _AUTH_HEADERS if k in h}


def _wrong_token(token: str, rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    n = max(len(token), 16)
    while True:
        wrong = "".join(rng.choice(alphabet) for _ in range(n))
        if wrong != token:
            return wrong


@attrs.frozen
class Respond(Action):
    """Answer with ``status`` (and a problem document of ``problem_type`` if given).

    Phase request: instead of forwarding (the upstream never sees it). Phase response:
    after forwarding, in place of the real response ("response lost after commit").
    ``problem_type`` is a DAP token (``batchMismatch``) or a full URI.
    """

    status: int = attrs.field(default=500, validator=_int(v.ge(100), v.le(599)))
    problem_type: str | None = attrs.field(default=None, validator=v.optional(v.instance_of(str)))
    detail: str | None = attrs.field(default=None, validator=v.optional(v.instance_of(str)))

    phases: ClassVar = _BOTH
    default_phase: ClassVar = "request"
    observes: ClassVar = False
    answers_in_place: ClassVar = True

    @attrs.frozen(kw_only=True)
    class Change(Change):
        status: int | None = None
        problem_type: str | None = None
        replaced_status: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.problem_type is not None and ":" not in self.problem_type:

            if ProblemType.from_token(self.problem_type) is None:
                raise ValueError(f"unknown DAP problem type {self.problem_type!r}")

    async def apply(self, flow: http.HTTPFlow, ctx: ActionContext) -> None:
        from mitmproxy import http as mhttp

        real = flow.response.status_code if flow.response is not None else None
        headers: dict[str, str] = {}
        body = b""
        if self.problem_type is not None:
            doc: dict[str, Any] = {"type": problem_uri(self.problem_type), "status": self.status}
            doc["title"] = self.detail or "injected by dap-faultrun"
            task = classify(flow.request.method, flow.request.path).task_id
            if task:
                doc["taskid"] = task
            body = json.dumps(doc).encode()
            headers["Content-Type"] = "application/problem+json"
        flow.response = mhttp.Response.make(self.status, body, headers)
        ctx.record(status=self.status, problem_type=self.problem_type, replaced_status=real)


@attrs.frozen
class Synthesize(Action):
    """Send a message the honest peer never sends, built from the matched flow.

    ``message`` names an entry of :data:`SYNTHESIZERS`:

    - ``continue_step``: an AggregationJobContinueReq with ``step`` for the job of the
      matched agg_init flow (one PrepareContinue per report, payload copied from the init).
    - ``reinit_new_job``: the matched AggregationJobInitReq (or only report ``report_index``)
      PUT again under a new, seeded aggregation job ID.
    - ``reinit_mutated``: the matched AggregationJobInitReq PUT again under the *same* job ID
      with one seeded bit of one Leader ping-pong payload flipped (report ``report_index``,
      default the first): a re-sent init whose body changed (dap-09.md section 10.3).
    - ``continue_mutated``: the matched AggregationJobContinueReq (kind ``agg_continue``)
      POSTed again to the same job at the same step with one seeded bit of report
      ``report_index``'s payload flipped (default the first): a re-sent continuation whose
      body changed (dap-09.md section 10.6). At phase response (the default) it goes out
      after the Helper answered the genuine one.
    - ``collection_mutated``: the matched CollectionReq PUT again under the *same* collection
      job ID with another query (the next interval, or another batch): dap-09.md section 15
      step 3 says it MUST fail with a 4xx.
    - ``agg_share_mutated``: the matched AggregateShareReq POSTed again with
      ``report_count`` one higher: the Helper MUST answer ``batchMismatch`` (section 16).
    - ``delete_job`` / ``delete_collection``: a DELETE of the matched aggregation job /
      collection job.
    - ``forged_copy``: the matched request itself (any authenticated kind) sent again with
      ``credentials`` tampered (required): a forgery of a request the target has seen, e.g. a
      poll of a finished collection job or an AggregateShareReq the Helper answered; it must
      be refused, not answered from what the target stored (section 6).

    ``credentials`` (an :class:`Auth` mode) tampers with the forged request's credentials,
    e.g. a DELETE with a wrong token: it must be refused and change nothing (section 6).

    The synthesized request goes upstream ``delay_ms`` after the match; it is marked and
    recorded like a duplicate. The matched flow itself is untouched.
    """

    message: str = attrs.field(validator=v.in_(("continue_step", "reinit_new_job", "reinit_mutated",
                                                "continue_mutated", "collection_mutated", "agg_share_mutated",
                                                "delete_job", "delete_collection", "forged_copy")))
    step: int = attrs.field(default=1, validator=_int(v.ge(0), v.le(0xFFFF)))
    report_index: int | None = attrs.field(default=None, validator=v.optional(_int(v.ge(0))))
    delay_ms: int = attrs.field(default=0, validator=_int(v.ge(0)))
    #: an :class:`Auth` mode applied to the forged request's credentials (None: the genuine ones)
    credentials: str | None = attrs.field(default=None, validator=v.optional(v.in_(AUTH_MODES)))

    phases: ClassVar = _BOTH
    default_phase: ClassVar = "response"
    observes: ClassVar = False
    sends_copies: ClassVar = True

    @attrs.frozen(kw_only=True)
    class Change(Change):
        message: str | None = None
        step: int | None = None
        report_ids: tuple[str, ...] | None = attrs.field(default=None, converter=_opt_tuple)
        path: str | None = None
        old_job_id: str | None = None
        new_job_id: str | None = None
        mutated_report_id: str | None = None
        detail: str | None = None
        #: the Auth mode the forged request's credentials were changed with
        credentials: str | None = None

        @property
        def copies_made(self) -> int:
            return 1 if self.applied else 0

        @property
        def copy_credentials_tampered(self) -> bool:
            return self.applied and self.credentials is not None

    def check_target(self, kind: str | None, phase: str) -> None:
        base = SYNTHESIZERS[self.message][0]
        if base is None:  # forged_copy: any authenticated request, with tampered credentials
            if kind not in AUTHENTICATED_KINDS:
                raise ValueError(f"synthesize {self.message!r} copies an authenticated request: set kind to one of "
                                 f"{', '.join(sorted(AUTHENTICATED_KINDS))}")
            if self.credentials is None:
                raise ValueError(f"synthesize {self.message!r} needs credentials (an auth mode); without it the "
                                 "copy is a duplicate")
            return
        if kind != base:
            raise ValueError(f"synthesize {self.message!r} is built from an {base} flow: set kind = '{base}'")

    async def apply(self, flow: http.HTTPFlow, ctx: ActionContext) -> None:
        build = SYNTHESIZERS[self.message][1]
        try:
            copy, changed = build(flow, self, ctx)
        except Exception as exc:  # undecodable base message: record, send nothing
            ctx.record(skipped=f"{type(exc).__name__}: {exc}")
            return
        if self.credentials is not None:
            tamper_credentials(copy.request.headers, self.credentials, None, ctx.rng)
            changed["credentials"] = self.credentials
        ctx.record(message=self.message, **changed)
        ctx.send_copy(copy, origin=f"synthesize:{self.message}", delay_ms=self.delay_ms)


def _forged(flow: http.HTTPFlow, method: str, body: bytes | None, message_class: str | None,
            path: str | None = None) -> http.HTTPFlow:
    """A copy of the matched request turned into another one (the proxy sends it, marked)."""
    copy = flow.copy()
    copy.response = None
    copy.request.method = method
    if path is not None:
        copy.request.path = path
    if body is None:
        set_body(copy.request, b"")
        copy.request.headers.pop("Content-Type", None)
    else:
        set_body(copy.request, body)
        copy.request.headers["Content-Type"] = dapcodec.media_type_of(message_class or "")
    return copy


def _synth_continue(flow: http.HTTPFlow, act: Synthesize, ctx: ActionContext) -> tuple[http.HTTPFlow, dict]:
    body, report_ids = dapcodec.continue_from_init(flow.request.raw_content or b"", act.step, act.report_index)
    copy = _forged(flow, "POST", body, "AggregationJobContinueReq")
    return copy, {"step": act.step, "report_ids": report_ids, "path": copy.request.path}


def _synth_reinit(flow: http.HTTPFlow, act: Synthesize, ctx: ActionContext) -> tuple[http.HTTPFlow, dict]:
    body, report_ids = dapcodec.subset_init(flow.request.raw_content or b"", act.report_index)
    old_job = classify(flow.request.method, flow.request.path).job_id
    if old_job is None:
        raise ValueError("matched flow is not an aggregation job request")
    new_job = base64.urlsafe_b64encode(ctx.rng.randbytes(16)).rstrip(b"=").decode()
    path, _, query = flow.request.path.partition("?")
    head, _, _ = path.rstrip("/").rpartition("/")
    copy = _forged(flow, "PUT", body, "AggregationJobInitReq", f"{head}/{new_job}" + (f"?{query}" if query else ""))
    return copy, {"old_job_id": old_job, "new_job_id": new_job, "report_ids": report_ids}


def _synth_mutated(flow: http.HTTPFlow, act: Synthesize, ctx: ActionContext) -> tuple[http.HTTPFlow, dict]:
    body, report_ids, mutated = dapcodec.mutate_init(flow.request.raw_content or b"", act.report_index, ctx.rng)
    copy = _forged(flow, "PUT", body, "AggregationJobInitReq")
    return copy, {"report_ids": report_ids, "mutated_report_id": mutated, "path": copy.request.path}


def _synth_mutated_continue(flow: http.HTTPFlow, act: Synthesize, ctx: ActionContext) -> tuple[http.HTTPFlow, dict]:
    body, report_ids, mutated, step = dapcodec.mutate_continue(flow.request.raw_content or b"", act.report_index,
                                                               ctx.rng)
    copy = _forged(flow, "POST", body, "AggregationJobContinueReq")
    return copy, {"step": step, "report_ids": report_ids, "mutated_report_id": mutated, "path": copy.request.path}


def _synth_collection_mutated(flow: http.HTTPFlow, act: Synthesize,
                              ctx: ActionContext) -> tuple[http.HTTPFlow, dict]:
    body, what = dapcodec.mutate_collection_req(flow.request.raw_content or b"", ctx.rng)
    copy = _forged(flow, "PUT", body, "CollectionReq")
    return copy, {"path": copy.request.path, "detail": what}


def _synth_agg_share_mutated(flow: http.HTTPFlow, act: Synthesize,
                             ctx: ActionContext) -> tuple[http.HTTPFlow, dict]:
    body, before, after = dapcodec.mutate_agg_share_req(flow.request.raw_content or b"")
    copy = _forged(flow, "POST", body, "AggregateShareReq")
    return copy, {"path": copy.request.path, "detail": f"report_count {before} -> {after}"}


def _synth_forged_copy(flow: http.HTTPFlow, act: Synthesize, ctx: ActionContext) -> tuple[http.HTTPFlow, dict]:
    copy = flow.copy()  # the credentials are tampered by Synthesize.apply
    copy.response = None
    return copy, {"path": copy.request.path}


def _synth_delete(flow: http.HTTPFlow, act: Synthesize, ctx: ActionContext) -> tuple[http.HTTPFlow, dict]:
    copy = _forged(flow, "DELETE", None, None, flow.request.path.partition("?")[0])
    return copy, {"path": copy.request.path}


#: Synthesizer name -> (the kind of flow it is built from, None: any authenticated kind;
#: builder(flow, action, ctx) -> (request copy to send, what changed)).
SYNTHESIZERS = {
    "continue_step": ("agg_init", _synth_continue),
    "reinit_new_job": ("agg_init", _synth_reinit),
    "reinit_mutated": ("agg_init", _synth_mutated),
    "continue_mutated": ("agg_continue", _synth_mutated_continue),
    "collection_mutated": ("collection_create", _synth_collection_mutated),
    "agg_share_mutated": ("agg_share", _synth_agg_share_mutated),
    "delete_job": ("agg_init", _synth_delete),
    "delete_collection": ("collection_create", _synth_delete),
    "forged_copy": (None, _synth_forged_copy),
}

#: The one name -> class table.
ACTIONS: dict[str, type[Action]] = {
    "drop-request": DropRequest,
    "drop-response": DropResponse,
    "delay": Delay,
    "duplicate": Duplicate,
    "reorder": Reorder,
    "replay-later": ReplayLater,
    "corrupt-bytes": CorruptBytes,
    "corrupt-field": CorruptField,
    "truncate": Truncate,
    "auth": Auth,
    "respond": Respond,
    "synthesize": Synthesize,
}
_NAMES = {cls: name for name, cls in ACTIONS.items()}


def action_name(action: Any) -> str:
    """The table name of an action instance (``Delay(...)`` -> ``"delay"``)."""
    return _NAMES[type(action)]


def action_class(name: str) -> type[Action]:
    """The action class of a table name (what a fault event in history calls its action)."""
    return ACTIONS[name]


def change_from_dict(action: str, data: Any) -> Change:
    """A fault event's ``changed`` object as the action's typed :class:`Change` (ValueError for a
    field the action does not record)."""
    if isinstance(data, Change):
        return data
    cls = ACTIONS[action].Change if action in ACTIONS else Change
    try:
        return cls(**dict(data or {}))
    except TypeError as exc:
        raise ValueError(f"fault event of action {action!r}: {exc}") from None
