"""The fault plan: a seed plus rules, as frozen values; TOML/JSON load and dump.

A :class:`Plan` is ``version`` + ``seed`` + ``rules``. A :class:`Rule` is an ``id``, a
:class:`Matcher` (which messages: link, kind, phase, DAP predicates), an action (one of
:data:`faults.actions.ACTIONS`) and :class:`Limits` (which of the matching messages:
nth / every k-th / first n / seeded probability, and at most ``max_fires`` times).

Plans are plain data: ``loads_plan(dumps_plan(p)) == p`` and ``dumps_plan`` of a loaded
text is stable. Every problem found at load raises :class:`~faults.errors.PlanError`
with one line naming the rule.

Serialized shape (TOML shown; JSON is the same tree)::

    version = 1
    seed = 7

    [[rules]]
    id = "slow-init"
    [rules.match]
    link = "leader->helper"
    kind = "agg_init"
    [rules.action]
    type = "delay"
    delay_ms = 250
    [rules.limits]
    first = 2
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import attrs
import tomli_w
from attrs import validators as v

from dap.constants import ProblemType
from faults.actions import ACTIONS, action_name
from faults.errors import PlanError, one_line
from faults.network import NET_ACTIONS, NetRule, Window, net_action_name
from faults.vocabulary import KINDS, LINKS, PHASES

__all__ = [
    "PLAN_VERSION",
    "Limits",
    "Matcher",
    "Plan",
    "Rule",
    "dump_plan",
    "dumps_plan",
    "load_plan",
    "loads_plan",
    "plan_from_dict",
    "plan_to_dict",
]

PLAN_VERSION = 1

_REPORT_KINDS = ("upload", "agg_init", "agg_continue")
_JOB_KINDS = ("agg_init", "agg_continue", "agg_delete", "collection_create", "collection_poll", "collection_delete")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


def _opt_int(lo: int | None = None, hi: int | None = None) -> Any:
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{attr.name} must be an integer, got {value!r}")
        if lo is not None and value < lo:
            raise ValueError(f"{attr.name} must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise ValueError(f"{attr.name} must be <= {hi}, got {value}")

    return check


def _opt_match(regex: re.Pattern[str], what: str) -> Any:
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, str) or not regex.match(value):
            raise ValueError(f"{attr.name} must be {what}, got {value!r}")

    return check


def _to_float(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@attrs.frozen
class Matcher:
    """Which messages a rule looks at. ``None`` means "any".

    ``phase`` None means the action's default phase. DAP predicates need the body decoded:
    ``report_id`` (hex) is carried by the message; ``report_index`` is the n-th distinct
    report ID the proxy has seen in this run (0-based, in order of first appearance on any
    link), carried by the message; ``step`` of a continue request; ``task_id`` / ``job_id``
    as in the URL (base64url); ``status`` and ``problem_type`` (token or URI) of a response.
    """

    link: str | None = attrs.field(default=None, validator=v.optional(v.in_(LINKS)))
    kind: str | None = attrs.field(default=None, validator=v.optional(v.in_(KINDS)))
    phase: str | None = attrs.field(default=None, validator=v.optional(v.in_(PHASES)))
    task_id: str | None = attrs.field(default=None, validator=_opt_match(_B64URL, "base64url"))
    job_id: str | None = attrs.field(default=None, validator=_opt_match(_B64URL, "base64url"))
    report_id: str | None = attrs.field(default=None, validator=_opt_match(_HEX32, "32 hex digits"))
    report_index: int | None = attrs.field(default=None, validator=_opt_int(0))
    step: int | None = attrs.field(default=None, validator=_opt_int(0, 0xFFFF))
    status: int | None = attrs.field(default=None, validator=_opt_int(100, 599))
    problem_type: str | None = attrs.field(default=None, validator=v.optional(v.instance_of(str)))

    @property
    def needs_body(self) -> bool:
        """True if matching needs the decoded DAP summary."""
        return any(x is not None for x in (self.report_id, self.report_index, self.step, self.problem_type))


@attrs.frozen
class Limits:
    """Which matching messages fire: at most one of ``nth`` (only the n-th, 1-based),
    ``every`` (every k-th), ``first`` (the first n), ``probability`` (a seeded draw per
    matching message); none = every matching message. ``max_fires`` caps the total."""

    nth: int | None = attrs.field(default=None, validator=_opt_int(1))
    every: int | None = attrs.field(default=None, validator=_opt_int(1))
    first: int | None = attrs.field(default=None, validator=_opt_int(1))
    probability: float | None = attrs.field(default=None, converter=_to_float)
    max_fires: int | None = attrs.field(default=None, validator=_opt_int(1))

    @probability.validator
    def _check_probability(self, attr: attrs.Attribute, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, float) or math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"probability must be a number in [0, 1], got {value!r}")

    def __attrs_post_init__(self) -> None:
        given = [n for n in ("nth", "every", "first", "probability") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"limits {', '.join(given)} exclude each other: give at most one")


@attrs.frozen
class Rule:
    """One fault: ``id`` + :class:`Matcher` + action + :class:`Limits`.

    ``optional``: the scenario does not need this rule to fire (a probability or ``every``
    that may legitimately never select a message). A rule that is not optional and never
    changes a message makes the run inconclusive: the fault under test did not happen."""

    id: str = attrs.field(validator=[v.instance_of(str), v.min_len(1)])
    match: Matcher = attrs.field(factory=Matcher)
    action: Any = attrs.field(default=None)
    limits: Limits = attrs.field(factory=Limits)
    optional: bool = attrs.field(default=False, validator=v.instance_of(bool))

    @property
    def phase(self) -> str:
        """The effective phase: the matcher's, else the action's default."""
        return self.match.phase or self.action.default_phase

    @property
    def action_name(self) -> str:
        return action_name(self.action)


@attrs.frozen
class Plan:
    """A seed plus rules, in order (earlier rules act first on the same message), plus network
    rules (:mod:`faults.network`: packets of a link while a window is open; they need
    ``--network netns``). Rule ids are unique across both lists."""

    seed: int = attrs.field(default=0, validator=_opt_int(0))
    rules: tuple[Rule, ...] = attrs.field(default=(), converter=tuple)
    version: int = attrs.field(default=PLAN_VERSION)
    net_rules: tuple[NetRule, ...] = attrs.field(default=(), converter=tuple)

    @property
    def needs_network(self) -> bool:
        """The plan has network rules: it runs only under ``--network netns``."""
        return bool(self.net_rules)

    def net_rule(self, rule_id: str) -> NetRule:
        for r in self.net_rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


# --- from / to plain data -----------------------------------------------------------


def _build(cls: type, data: Any, what: str, rule_id: str | None, skip: tuple[str, ...] = ()) -> Any:
    if not isinstance(data, dict):
        raise PlanError(f"{what} must be a table, got {type(data).__name__}", rule_id=rule_id)
    names = [f.name for f in attrs.fields(cls)]
    unknown = sorted(set(data) - set(names) - set(skip))
    if unknown:
        raise PlanError(f"{what}: unknown key {unknown[0]!r} (known: {', '.join(names)})", rule_id=rule_id)
    kwargs = {k: val for k, val in data.items() if k not in skip}
    missing = [f.name for f in attrs.fields(cls) if f.default is attrs.NOTHING and f.name not in kwargs]
    if missing:
        raise PlanError(f"{what}: missing required parameter {missing[0]!r}", rule_id=rule_id)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PlanError(f"{what}: {one_line(exc)}", rule_id=rule_id) from exc


def _build_action(data: Any, rule_id: str) -> Any:
    if not isinstance(data, dict):
        raise PlanError("action must be a table with a 'type'", rule_id=rule_id)
    name = data.get("type")
    if name is None:
        raise PlanError("action: missing 'type'", rule_id=rule_id)
    cls = ACTIONS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise PlanError(f"unknown action {name!r} (known: {', '.join(ACTIONS)})", rule_id=rule_id)
    return _build(cls, data, f"action {name!r}", rule_id, skip=("type",))


def _check_rule(rule: Rule) -> None:
    m, act, rid = rule.match, rule.action, rule.id
    phase = rule.phase
    if phase not in act.phases:
        raise PlanError(
            f"action {rule.action_name!r} cannot run in phase {phase!r} (allowed: {', '.join(sorted(act.phases))})",
            rule_id=rid,
        )
    if (m.status is not None or m.problem_type is not None) and phase != "response":
        raise PlanError("status / problem_type predicates need phase 'response'", rule_id=rid)
    if m.kind is not None:
        if (m.report_id is not None or m.report_index is not None) and m.kind not in _REPORT_KINDS:
            raise PlanError(f"report_id / report_index do not apply to kind {m.kind!r}", rule_id=rid)
        if m.step is not None and m.kind != "agg_continue":
            raise PlanError(f"step applies only to kind 'agg_continue', not {m.kind!r}", rule_id=rid)
        if m.job_id is not None and m.kind not in _JOB_KINDS:
            raise PlanError(f"job_id does not apply to kind {m.kind!r}", rule_id=rid)
    if m.problem_type is not None and ":" not in m.problem_type:
        if ProblemType.from_token(m.problem_type) is None:
            raise PlanError(f"unknown DAP problem type {m.problem_type!r}", rule_id=rid)
    try:
        act.check_target(m.kind, phase)  # what the action itself needs of the messages it matches
    except ValueError as exc:
        raise PlanError(one_line(exc), rule_id=rid) from exc


def plan_from_dict(data: Any) -> Plan:
    """Build and validate a :class:`Plan` from plain data (the TOML/JSON tree)."""
    if not isinstance(data, dict):
        raise PlanError("a plan must be a table / object")
    unknown = sorted(set(data) - {"version", "seed", "rules", "net_rules"})
    if unknown:
        raise PlanError(f"unknown top-level key {unknown[0]!r} (known: version, seed, rules, net_rules)")
    version = data.get("version")
    if version != PLAN_VERSION:
        raise PlanError(f"version must be {PLAN_VERSION}, got {version!r}")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise PlanError(f"seed must be a non-negative integer, got {seed!r}")
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list):
        raise PlanError("rules must be an array of tables")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        if not isinstance(raw, dict):
            raise PlanError(f"rules[{i}] must be a table")
        rid = raw.get("id")
        if not isinstance(rid, str) or not rid:
            raise PlanError(f"rules[{i}]: missing or empty 'id'")
        if rid in seen:
            raise PlanError("duplicate rule id", rule_id=rid)
        seen.add(rid)
        unknown = sorted(set(raw) - {"id", "match", "action", "limits", "optional"})
        if unknown:
            raise PlanError(f"unknown key {unknown[0]!r} (known: id, match, action, limits, optional)", rule_id=rid)
        optional = raw.get("optional", False)
        if not isinstance(optional, bool):
            raise PlanError(f"optional must be true or false, got {optional!r}", rule_id=rid)
        if "action" not in raw:
            raise PlanError("missing 'action'", rule_id=rid)
        rule = Rule(
            id=rid,
            match=_build(Matcher, raw.get("match", {}), "match", rid),
            action=_build_action(raw["action"], rid),
            limits=_build(Limits, raw.get("limits", {}), "limits", rid),
            optional=optional,
        )
        _check_rule(rule)
        rules.append(rule)
    net_rules = _net_rules_from(data.get("net_rules", []), seen)
    return Plan(seed=seed, rules=tuple(rules), version=version, net_rules=net_rules)


_NET_RULE_KEYS = ("id", "link", "direction", "window", "action", "optional")


def _net_rules_from(raw_rules: Any, seen: set[str]) -> tuple[NetRule, ...]:
    """``[[net_rules]]`` (:mod:`faults.network`); ids share one namespace with ``[[rules]]``."""
    if not isinstance(raw_rules, list):
        raise PlanError("net_rules must be an array of tables")
    out: list[NetRule] = []
    for i, raw in enumerate(raw_rules):
        if not isinstance(raw, dict):
            raise PlanError(f"net_rules[{i}] must be a table")
        rid = raw.get("id")
        if not isinstance(rid, str) or not rid:
            raise PlanError(f"net_rules[{i}]: missing or empty 'id'")
        if rid in seen:
            raise PlanError("duplicate rule id", rule_id=rid)
        seen.add(rid)
        unknown = sorted(set(raw) - set(_NET_RULE_KEYS))
        if unknown:
            raise PlanError(f"unknown key {unknown[0]!r} (known: {', '.join(_NET_RULE_KEYS)})", rule_id=rid)
        for key in ("link", "action"):
            if key not in raw:
                raise PlanError(f"missing {key!r}", rule_id=rid)
        act = raw["action"]
        if not isinstance(act, dict):
            raise PlanError("action must be a table with a 'type'", rule_id=rid)
        name = act.get("type")
        cls = NET_ACTIONS.get(name) if isinstance(name, str) else None
        if cls is None:
            raise PlanError(f"unknown net action {name!r} (known: {', '.join(NET_ACTIONS)})", rule_id=rid)
        action = _build(cls, act, f"net action {name!r}", rid, skip=("type",))
        window = _build(Window, raw.get("window", {}), "window", rid)
        optional = raw.get("optional", False)
        if not isinstance(optional, bool):
            raise PlanError(f"optional must be true or false, got {optional!r}", rule_id=rid)
        try:
            rule = NetRule(id=rid, link=raw["link"], action=action, direction=raw.get("direction", "both"),
                           window=window, optional=optional)
        except (TypeError, ValueError) as exc:
            raise PlanError(one_line(exc), rule_id=rid) from exc
        out.append(rule)
    return tuple(out)


def _nondefault(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in attrs.fields(type(value)):
        val = getattr(value, f.name)
        default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default  # type: ignore[attr-defined]
        if val is None or (f.default is not attrs.NOTHING and val == default and f.name != "type"):
            continue
        out[f.name] = val
    return out


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plain-data tree of a plan (defaults and unset fields left out)."""
    rules = []
    for r in plan.rules:
        entry: dict[str, Any] = {"id": r.id}
        match = _nondefault(r.match)
        if match:
            entry["match"] = match
        entry["action"] = {"type": r.action_name, **_nondefault(r.action)}
        limits = _nondefault(r.limits)
        if limits:
            entry["limits"] = limits
        if r.optional:
            entry["optional"] = True
        rules.append(entry)
    out: dict[str, Any] = {"version": plan.version, "seed": plan.seed, "rules": rules}
    if plan.net_rules:  # a plan without them dumps as it always did
        out["net_rules"] = [_net_rule_to_dict(r) for r in plan.net_rules]
    return out


def _net_rule_to_dict(r: NetRule) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": r.id, "link": r.link, "direction": r.direction}
    window = _nondefault(r.window)
    if window:
        entry["window"] = window
    entry["action"] = {"type": net_action_name(r.action), **_nondefault(r.action)}
    if r.optional:
        entry["optional"] = True
    return entry


# --- text ------------------------------------------------------------------------------


def dumps_plan(plan: Plan, fmt: str = "toml") -> str:
    """Serialize a plan as ``"toml"`` or ``"json"`` text."""
    data = plan_to_dict(plan)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt != "toml":
        raise ValueError(f"unknown plan format {fmt!r}")
    return tomli_w.dumps(data)


def loads_plan(text: str, fmt: str | None = None) -> Plan:
    """Parse plan text; ``fmt`` ``"toml"`` / ``"json"``, or None to guess (JSON starts with ``{``)."""
    if fmt is None:
        fmt = "json" if text.lstrip().startswith("{") else "toml"
    try:
        data = json.loads(text) if fmt == "json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PlanError(f"not valid {fmt.upper()}: {one_line(exc)}") from exc
    return plan_from_dict(data)


def load_plan(path: str | Path) -> Plan:
    """Read a plan file (``.json`` is JSON, anything else TOML)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"cannot read plan file {str(p)!r}: {exc.strerror or exc}") from exc
    return loads_plan(text, "json" if p.suffix.lower() == ".json" else "toml")


def dump_plan(plan: Plan, path: str | Path) -> None:
    """Write a plan file (format from the suffix, as :func:`load_plan`)."""
    p = Path(path)
    p.write_text(dumps_plan(plan, "json" if p.suffix.lower() == ".json" else "toml"), encoding="utf-8")
