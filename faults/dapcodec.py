"""Everything the fault machinery asks of the DAP codec, in one place.

- which message class a (kind, phase) carries (:func:`message_class`);
- field-path checks for ``corrupt-field`` at plan load (:func:`validate_field`);
- the field change itself (:func:`corrupt_field`);
- builders for synthesized messages (:func:`continue_from_init`, :func:`subset_init`);
- the decoded summary recorded in history (:func:`summarize`), which never raises.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import attrs

from dap import codec, messages
from dap.constants import problem_type_from_uri

__all__ = [
    "BODY_CLASSES",
    "body_digest",
    "continue_from_init",
    "corrupt_field",
    "decode_body",
    "media_type_of",
    "message_class",
    "mutate_continue",
    "mutate_init",
    "subset_init",
    "summarize",
    "validate_field",
]



#: (kind, phase) -> message class name of the body (absent: no DAP body).
BODY_CLASSES: dict[tuple[str, str], str] = {
    ("hpke_config", "response"): "HpkeConfigList",
    ("upload", "request"): "Report",
    ("agg_init", "request"): "AggregationJobInitReq",
    ("agg_init", "response"): "AggregationJobResp",
    ("agg_continue", "request"): "AggregationJobContinueReq",
    ("agg_continue", "response"): "AggregationJobResp",
    ("agg_share", "request"): "AggregateShareReq",
    ("agg_share", "response"): "AggregateShare",
    ("collection_create", "request"): "CollectionReq",
    ("collection_poll", "response"): "Collection",
}

LIST_OPS = frozenset({"reverse", "shuffle", "drop_first", "duplicate_first"})


def message_class(kind: str | None, phase: str) -> type | None:
    """The message class a (kind, phase) body is, or None if it carries no DAP message."""
    name = BODY_CLASSES.get((kind or "", phase))
    return None if name is None else messages.MESSAGE_TYPES[name]


def media_type_of(class_name: str) -> str:
    return messages.MESSAGE_TYPES[class_name].MEDIA_TYPE


def validate_field(kind: str, phase: str, path: str, op: str | None = None) -> None:
    """Raise ValueError (or the codec's FieldPathError) if ``path``/``op`` cannot apply."""
    cls = message_class(kind, phase)
    if cls is None:
        raise ValueError(f"kind {kind!r} carries no DAP message in phase {phase!r}")
    wire = codec.validate_path(cls, path)
    is_list = isinstance(wire, codec.ListWire)
    is_struct = isinstance(wire, codec.StructWire)
    if op is None:
        return
    if op in LIST_OPS and not is_list:
        raise ValueError(f"op {op!r} needs a list field; {path!r} is {wire.describe()}")
    if op not in LIST_OPS and (is_list or is_struct):
        raise ValueError(f"op {op!r} needs a leaf field; {path!r} is {wire.describe()} (use reverse/shuffle/...)")


def decode_body(kind: str | None, phase: str, body: bytes) -> Any:
    cls = message_class(kind, phase)
    if cls is None:
        raise ValueError(f"kind {kind!r} carries no DAP message in phase {phase!r}")
    return cls.decode(body)


def _wire_at(cls: type, path: str) -> Any:
    return codec.validate_path(cls, path)


def _new_leaf(wire: Any, old: Any, op: str, value: Any, rng: random.Random) -> Any:
    if isinstance(wire, codec.EnumWire):
        members = list(wire.enum_cls) if hasattr(wire, "enum_cls") else list(type(old))
        if op == "set":
            return value
        if op == "zero":
            return members[0]
        others = [m for m in members if m != old] or members
        return rng.choice(others)
    if isinstance(wire, codec.UInt):
        bits = 8 * wire.width
        if op == "set":
            return value
        if op == "add":
            return (old + value) % (1 << bits)
        if op == "random":
            new = rng.getrandbits(bits)
            return new if new != old else (old + 1) % (1 << bits)
        if op == "flip":
            return old ^ (1 << rng.randrange(bits))
        if op == "zero":
            return 0
    if isinstance(wire, (codec.Opaque, codec.FixedBytes)):
        old = bytes(old)
        if op == "set":
            return bytes.fromhex(value) if isinstance(value, str) else value
        if op == "zero":
            return bytes(len(old))
        if op == "random":
            if not old:
                return old
            new = rng.randbytes(len(old))
            return new if new != old else bytes(b ^ 0xFF for b in old)
        if op == "flip":
            if not old:
                return old
            bit = rng.randrange(len(old) * 8)
            buf = bytearray(old)
            buf[bit // 8] ^= 0x80 >> (bit % 8)
            return bytes(buf)
        if op == "add":
            n = len(old)
            return ((int.from_bytes(old, "big") + value) % (1 << (8 * n))).to_bytes(n, "big") if n else old
    raise ValueError(f"op {op!r} does not apply to {wire.describe()}")


def _new_list(old: tuple, op: str, rng: random.Random) -> tuple:
    items = list(old)
    if op == "reverse":
        items.reverse()
    elif op == "shuffle":
        rng.shuffle(items)
    elif op == "drop_first":
        items = items[1:]
    elif op == "duplicate_first":
        items = items[:1] + items
    return tuple(items)


def _show(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return f"<list of {len(value)}>"
    if hasattr(value, "name") and isinstance(value, int):
        return int(value)
    return value


def corrupt_field(
    body: bytes, kind: str, phase: str, path: str, op: str, value: Any, rng: random.Random
) -> tuple[bytes, Any, Any]:
    """Decode ``body`` as the (kind, phase) message, change ``path`` by ``op``, re-encode.

    ``path`` may use ``[*]``: every match changes (each with its own draw). Returns
    ``(new body, before, after)`` with ``before``/``after`` JSON-ready (one value or a list).
    """
    msg = decode_body(kind, phase, body)
    wire = _wire_at(type(msg), path)
    paths = codec.expand_path(msg, path)
    if not paths:
        raise ValueError(f"{path!r} matches nothing in this message")
    befores, afters = [], []
    for p in paths:
        old = codec.get_field(msg, p)
        new = _new_list(old, op, rng) if op in LIST_OPS else _new_leaf(wire, old, op, value, rng)
        msg = codec.replace_field(msg, p, new)
        befores.append(_show(old))
        afters.append(_show(codec.get_field(msg, p)))
    if op in LIST_OPS:
        befores = [[_summ_item(x) for x in codec.get_field(decode_body(kind, phase, body), p)] for p in paths]
        afters = [[_summ_item(x) for x in codec.get_field(msg, p)] for p in paths]
    one = len(paths) == 1
    return msg.encode(), befores[0] if one else befores, afters[0] if one else afters


def _summ_item(item: Any) -> Any:
    """A short identity for a list element (its report ID if it has one)."""
    for attr in ("report_id",):
        if hasattr(item, attr):
            return bytes(getattr(item, attr)).hex()
    if hasattr(item, "report_share"):
        return bytes(item.report_share.report_metadata.report_id).hex()
    return type(item).__name__


def continue_from_init(init_body: bytes, step: int, report_index: int | None) -> tuple[bytes, list[str]]:
    """An AggregationJobContinueReq at ``step`` for the reports of an init request."""
    m = messages
    init = m.AggregationJobInitReq.decode(init_body)
    inits = init.prepare_inits if report_index is None else (init.prepare_inits[report_index],)
    conts = tuple(
        m.PrepareContinue(report_id=pi.report_share.report_metadata.report_id, payload=pi.payload) for pi in inits
    )
    req = m.AggregationJobContinueReq(step=step, prepare_continues=conts)
    return req.encode(), [bytes(c.report_id).hex() for c in conts]


def subset_init(init_body: bytes, report_index: int | None) -> tuple[bytes, list[str]]:
    """The init request again, optionally with only report ``report_index``."""
    m = messages
    init = m.AggregationJobInitReq.decode(init_body)
    if report_index is not None:
        init = attrs.evolve(init, prepare_inits=(init.prepare_inits[report_index],))
    return init.encode(), [bytes(pi.report_share.report_metadata.report_id).hex() for pi in init.prepare_inits]


def mutate_init(init_body: bytes, report_index: int | None, rng: random.Random) -> tuple[bytes, list[str], str]:
    """The init request with one seeded bit of one Leader ping-pong payload flipped.

    The report is ``report_index`` (default the first). Returns ``(body, report IDs, the
    mutated report's ID)``; the body always differs from ``init_body``.
    """
    m = messages
    init = m.AggregationJobInitReq.decode(init_body)
    i = 0 if report_index is None else report_index
    pi = init.prepare_inits[i]
    payload = bytearray(bytes(pi.payload))
    if payload:
        bit = rng.randrange(len(payload) * 8)
        payload[bit // 8] ^= 0x80 >> (bit % 8)
    else:
        payload = bytearray(b"\x00")
    inits = list(init.prepare_inits)
    inits[i] = attrs.evolve(pi, payload=bytes(payload))
    init = attrs.evolve(init, prepare_inits=tuple(inits))
    ids = [bytes(p.report_share.report_metadata.report_id).hex() for p in init.prepare_inits]
    return init.encode(), ids, ids[i]


def mutate_continue(continue_body: bytes, report_index: int | None,
                    rng: random.Random) -> tuple[bytes, list[str], str, int]:
    """The AggregationJobContinueReq with one seeded bit of one ping-pong payload flipped.

    Same job, same ``step``: a re-sent continuation whose body changed (dap-09.md section
    10.6). The report is ``report_index`` (default the first). Returns ``(body, report IDs,
    the mutated report's ID, step)``; the body always differs from ``continue_body``.
    """
    m = messages
    req = m.AggregationJobContinueReq.decode(continue_body)
    i = 0 if report_index is None else report_index
    pc = req.prepare_continues[i]
    payload = bytearray(bytes(pc.payload))
    if payload:
        bit = rng.randrange(len(payload) * 8)
        payload[bit // 8] ^= 0x80 >> (bit % 8)
    else:
        payload = bytearray(b"\x00")
    conts = list(req.prepare_continues)
    conts[i] = attrs.evolve(pc, payload=bytes(payload))
    req = attrs.evolve(req, prepare_continues=tuple(conts))
    ids = [bytes(c.report_id).hex() for c in req.prepare_continues]
    return req.encode(), ids, ids[i], req.step


def mutate_collection_req(body: bytes, rng: random.Random) -> tuple[bytes, str]:
    """The CollectionReq with another query: time_interval -> the next interval of the same
    length; fixed_size -> a seeded batch ID (or the current batch if one was named). Returns
    ``(body, what changed)``; the body always differs."""
    m = messages
    req = m.CollectionReq.decode(body)
    q = req.query
    if q.batch_interval is not None:
        iv = q.batch_interval
        new_q = attrs.evolve(q, batch_interval=attrs.evolve(iv, start=iv.start + iv.duration))
        what = f"batch interval [{iv.start}, +{iv.duration}) -> [{iv.start + iv.duration}, +{iv.duration})"
    elif q.fixed_size_query is not None and q.fixed_size_query.batch_id is None:
        new_q = m.Query.fixed_size_by_batch_id(rng.randbytes(32))
        what = "current batch -> a batch ID"
    else:
        new_q = m.Query.fixed_size_current_batch()
        what = "batch ID -> another batch"
    out = attrs.evolve(req, query=new_q).encode()
    return out, what


def mutate_agg_share_req(body: bytes) -> tuple[bytes, int, int]:
    """The AggregateShareReq with ``report_count`` one higher (checksum kept): ``(body, before, after)``."""
    req = messages.AggregateShareReq.decode(body)
    return attrs.evolve(req, report_count=req.report_count + 1).encode(), req.report_count, req.report_count + 1


# --- summaries ---------------------------------------------------------------------------------


def _problem(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return {"decode_error": f"problem+json: {exc}"}
    if not isinstance(doc, dict):
        return {"decode_error": "problem+json: not an object"}
    out: dict[str, Any] = {"problem_type": doc.get("type")}
    if isinstance(doc.get("type"), str):

        pt = problem_type_from_uri(doc["type"])
        out["problem_token"] = pt.token if pt else None
    return out


def summarize(kind: str | None, phase: str, media_type: str | None, body: bytes) -> dict[str, Any]:
    """The decoded DAP summary of a body for history. Never raises.

    Keys present as they apply: ``message`` (class name), ``report_ids`` (hex),
    ``step``, ``counts`` (``{"prepare_inits": n, ...}``), ``prepare_states``
    (``{report_id: "continue"|"finished"|"reject:<error>"}``), ``report_count``,
    ``batch_id``, ``interval``, ``config_ids``, ``problem_type``/``problem_token``,
    ``agg_param_sha256`` (an init with a non-empty aggregation parameter),
    ``decode_error``; ``body_sha256`` (first 16 bytes of the SHA-256 of the exact body,
    hex) for every body that decoded as a DAP message.
    """
    mt = (media_type or "").split(";", 1)[0].strip().lower()
    if mt == "application/problem+json":
        return _problem(body)
    try:
        cls = message_class(kind, phase)
        if cls is None:
            cls = messages.message_class_for_media_type(mt) if mt else None
        if cls is None or (not body and phase == "response"):
            return {}
        msg = cls.decode(body)
    except Exception as exc:  # DecodeError, or anything odd: recorded, never raised
        return {"decode_error": " ".join(str(exc).split())[:300]}
    try:
        out = _summary_of(msg)
    except Exception as exc:  # pragma: no cover - defensive: summary must not break the hook
        return {"message": type(msg).__name__, "decode_error": f"summary: {exc}"}
    # identity of the exact bytes: the checker groups repeated requests (and compares
    # replayed responses) by it; a body changed in flight hashes differently
    out["body_sha256"] = body_digest(body)
    return out


def body_digest(body: bytes) -> str:
    """A message body's ``body_sha256`` (the first 16 bytes of its SHA-256, hex)."""
    return hashlib.sha256(body).hexdigest()[:32]


def _summary_of(msg: Any) -> dict[str, Any]:
    name = type(msg).__name__
    out: dict[str, Any] = {"message": name}
    if name == "Report":
        out["report_ids"] = [bytes(msg.report_metadata.report_id).hex()]
        out["time"] = msg.report_metadata.time
        out["config_ids"] = [msg.leader_encrypted_input_share.config_id, msg.helper_encrypted_input_share.config_id]
    elif name == "AggregationJobInitReq":
        out["report_ids"] = [bytes(p.report_share.report_metadata.report_id).hex() for p in msg.prepare_inits]
        out["counts"] = {"prepare_inits": len(msg.prepare_inits)}
        if msg.agg_param:  # Poplar1: a report may be prepared once per aggregation parameter
            out["agg_param_sha256"] = hashlib.sha256(bytes(msg.agg_param)).hexdigest()[:32]
        if msg.part_batch_selector.batch_id is not None:
            out["batch_id"] = msg.part_batch_selector.batch_id.b64()
    elif name == "AggregationJobResp":
        out["report_ids"] = [bytes(p.report_id).hex() for p in msg.prepare_resps]
        out["counts"] = {"prepare_resps": len(msg.prepare_resps)}
        states = {}
        for p in msg.prepare_resps:
            st = p.prepare_resp_state.name.lower()
            if p.prepare_error is not None:
                st += ":" + p.prepare_error.name.lower()
            states[bytes(p.report_id).hex()] = st
        out["prepare_states"] = states
    elif name == "AggregationJobContinueReq":
        out["step"] = msg.step
        out["report_ids"] = [bytes(p.report_id).hex() for p in msg.prepare_continues]
        out["counts"] = {"prepare_continues": len(msg.prepare_continues)}
    elif name == "AggregateShareReq":
        out["report_count"] = msg.report_count
        out["checksum"] = bytes(msg.checksum).hex()
        if msg.agg_param:
            out["agg_param_sha256"] = hashlib.sha256(bytes(msg.agg_param)).hexdigest()[:32]
        bs = msg.batch_selector
        if bs.batch_id is not None:
            out["batch_id"] = bs.batch_id.b64()
        if bs.batch_interval is not None:
            out["interval"] = [bs.batch_interval.start, bs.batch_interval.duration]
    elif name == "Collection":
        out["report_count"] = msg.report_count
        out["interval"] = [msg.interval.start, msg.interval.duration]
        if msg.part_batch_selector.batch_id is not None:
            out["batch_id"] = msg.part_batch_selector.batch_id.b64()
    elif name == "CollectionReq":
        if msg.agg_param:
            out["agg_param_sha256"] = hashlib.sha256(bytes(msg.agg_param)).hexdigest()[:32]
        q = msg.query
        out["query_type"] = q.query_type.name.lower()
        if q.batch_interval is not None:
            out["interval"] = [q.batch_interval.start, q.batch_interval.duration]
    elif name == "HpkeConfigList":
        out["config_ids"] = [c.id for c in msg.configs]
    elif name == "AggregateShare":
        out["config_ids"] = [msg.encrypted_aggregate_share.config_id]
    return out
