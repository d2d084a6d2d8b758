"""Per-run state of the fault proxy: everything that changes while a plan runs.

The plan (:class:`faults.plan.Plan`) is immutable; :class:`RunState` holds what the
toxiproxy design calls the stub: match counters and fire counts per rule, the two
seeded RNG streams per rule (one decides *whether* a rule fires, one is the action's
own), held flows (reorder), stored copies waiting to be replayed, the report-index
registry and the per-flow sequence numbers. Loading a new plan or a reset replaces
all of it and releases held flows; stored replays are discarded (and recorded so).

:class:`RuleContext` is the view an action gets (:class:`faults.actions.ActionContext`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable
from typing import Any

import attrs

from faults.actions import EVENT_NAMES, action_name
from faults.dapcodec import body_digest
from faults.history import HistoryWriter
from faults.plan import Plan, Rule

__all__ = ["FlowInfo", "RunState", "RuleContext", "derive_rng", "events_for"]

log = logging.getLogger(__name__)

META_FAULTS = "faultrun.faults"
META_COPY = "faultrun.copy"


def derive_rng(seed: int, rule_id: str, stream: str) -> random.Random:
    """A deterministic RNG for (plan seed, rule id, stream name)."""
    digest = hashlib.sha256(f"{seed}\x00{rule_id}\x00{stream}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def events_for(kind: str | None, status: int | None) -> list[str]:
    """Named events a response of ``kind`` with ``status`` fires (see EVENT_NAMES)."""
    if kind is None or status is None:
        return []
    out = []
    for name, (ev_kind, pred) in EVENT_NAMES.items():
        if ev_kind != kind:
            continue
        if (pred == "2xx" and 200 <= status < 300) or pred == str(status):
            out.append(name)
    return out


@attrs.define
class FlowInfo:
    """What the proxy knows about one flow (kept outside flow.metadata: not serializable)."""

    link: str | None
    kind: str | None
    task_id: str | None
    job_id: str | None
    flow_seq: int
    method: str
    path: str
    copy: dict[str, Any] | None = None
    req_summary: dict[str, Any] = attrs.field(factory=dict)
    resp_summary: dict[str, Any] = attrs.field(factory=dict)
    release: list[asyncio.Future] = attrs.field(factory=list)
    answered: bool = False

    def report_ids(self, phase: str) -> list[str]:
        ids = list(self.req_summary.get("report_ids", ()))
        if phase == "response":
            ids += self.resp_summary.get("report_ids", ())
        return ids


@attrs.define
class _Held:
    flow_id: str
    future: asyncio.Future


@attrs.define
class _Pending:
    rule_id: str
    copy: Any
    of_flow_id: str
    after_event: str | None
    remaining: int | None


@attrs.define
class _RuleState:
    rule: Rule
    decide: random.Random
    rng: random.Random
    seen: int = 0
    fires: int = 0


@attrs.define
class RunState:
    """Mutable state of one run of one plan. ``sender`` sends a request copy upstream."""

    plan: Plan
    history: HistoryWriter
    sender: Callable[[Any], None]
    rules: dict[str, _RuleState] = attrs.field(factory=dict)
    by_phase: dict[str, tuple[_RuleState, ...]] = attrs.field(factory=dict)
    holds: dict[str, _Held] = attrs.field(factory=dict)
    pending: list[_Pending] = attrs.field(factory=list)
    report_index: dict[str, int] = attrs.field(factory=dict)
    flow_seq: int = 0
    tasks: set[asyncio.Task] = attrs.field(factory=set)
    candidate_cache: dict[tuple[str, str | None], tuple[_RuleState, ...]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self._build()

    def _build(self) -> None:
        self.rules = {
            r.id: _RuleState(r, derive_rng(self.plan.seed, r.id, "decide"), derive_rng(self.plan.seed, r.id, "action"))
            for r in self.plan.rules
        }
        self.by_phase = {
            phase: tuple(rs for rs in self.rules.values() if rs.rule.phase == phase) for phase in ("request", "response")
        }
        self.candidate_cache = {}

    def candidates(self, phase: str, kind: str | None) -> tuple[_RuleState, ...]:
        """Rules of ``phase`` whose matcher kind is ``kind`` or any (in plan order; cached)."""
        key = (phase, kind)
        found = self.candidate_cache.get(key)
        if found is None:
            found = tuple(rs for rs in self.by_phase[phase] if rs.rule.match.kind in (None, kind))
            self.candidate_cache[key] = found
        return found

    # --- plan lifecycle ---------------------------------------------------------------

    def replace_plan(self, plan: Plan, *, why: str) -> None:
        """New plan (or a reset with the same one): fresh counters and RNGs, held flows released."""
        released = self.release_all(why=why)
        dropped = len(self.pending)
        for p in self.pending:
            self.history.control("replay_discarded", rule_id=p.rule_id, of_flow_id=p.of_flow_id)
        self.pending.clear()
        self.plan = plan
        self.report_index.clear()
        self.flow_seq = 0
        self._build()
        self.history.control(why, seed=plan.seed, rules=[r.id for r in plan.rules], released=released,
                             replays_discarded=dropped)

    def release_all(self, *, why: str) -> int:
        n = 0
        for held in list(self.holds.values()):
            if not held.future.done():
                held.future.set_result(why)
                n += 1
        self.holds.clear()
        return n

    # --- matching bookkeeping ---------------------------------------------------------------

    def next_flow_seq(self) -> int:
        self.flow_seq += 1
        return self.flow_seq

    def register_reports(self, report_ids: list[str]) -> None:
        for rid in report_ids:
            if rid not in self.report_index:
                self.report_index[rid] = len(self.report_index)

    def decide(self, rs: _RuleState) -> bool:
        """Count one match of the rule; True if it fires now (limits + seeded draw)."""
        rs.seen += 1
        lim = rs.rule.limits
        if lim.max_fires is not None and rs.fires >= lim.max_fires:
            return False
        n = rs.seen
        if lim.nth is not None:
            fire = n == lim.nth
        elif lim.every is not None:
            fire = n % lim.every == 0
        elif lim.first is not None:
            fire = n <= lim.first
        elif lim.probability is not None:
            fire = rs.decide.random() < lim.probability
        else:
            fire = True
        if fire:
            rs.fires += 1
        return fire

    # --- copies, replays, events ------------------------------------------------------------------

    def send(self, copy: Any, *, origin: str, rule_id: str, of_flow_id: str, delay_ms: int = 0) -> None:
        copy.metadata[META_COPY] = {"origin": origin, "rule_id": rule_id, "of": of_flow_id}
        copy.metadata.pop(META_FAULTS, None)
        copy.response = None
        copy.error = None
        if delay_ms <= 0:
            self._send_now(copy)
            return
        task = asyncio.get_running_loop().create_task(self._send_later(copy, delay_ms))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send_later(self, copy: Any, delay_ms: int) -> None:
        await asyncio.sleep(delay_ms / 1000)
        self._send_now(copy)

    def _send_now(self, copy: Any) -> None:
        try:
            self.sender(copy)
        except Exception:  # a failed copy must not break the flow that caused it; it is recorded
            log.exception("faultrun: sending a copy failed")
            self.history.control("copy_failed", origin=copy.metadata.get(META_COPY))

    def fire_event(self, name: str) -> int:
        """Send every stored copy waiting for event ``name``; return how many."""
        due = [p for p in self.pending if p.after_event == name]
        for p in due:
            self.pending.remove(p)
            self.send(p.copy, origin="replay-later", rule_id=p.rule_id, of_flow_id=p.of_flow_id)
        return len(due)

    def observed(self, rule_id: str) -> None:
        for p in [p for p in self.pending if p.rule_id == rule_id and p.remaining is not None]:
            p.remaining -= 1
            if p.remaining <= 0:
                self.pending.remove(p)
                self.send(p.copy, origin="replay-later", rule_id=p.rule_id, of_flow_id=p.of_flow_id)

    def status(self) -> dict[str, Any]:
        return {
            "seed": self.plan.seed,
            "rules": {rid: {"seen": rs.seen, "fires": rs.fires} for rid, rs in self.rules.items()},
            "held": sorted(self.holds),
            "pending_replays": len(self.pending),
            "history_seq": self.history.next_seq,
            "recording_failures": self.history.failures[-100:],
            "reports_seen": len(self.report_index),
        }


@attrs.define
class RuleContext:
    """The :class:`faults.actions.ActionContext` for one rule applied to one flow."""

    state: RunState
    rs: _RuleState
    flow: Any
    info: FlowInfo
    phase: str

    @property
    def rule_id(self) -> str:
        return self.rs.rule.id

    @property
    def rng(self) -> random.Random:
        return self.rs.rng

    def record(self, **changed: Any) -> None:
        action = self.rs.rule.action
        name = action_name(action)
        if action.changes_body and "skipped" not in changed and "action_failed" not in changed:
            msg = self.flow.request if self.phase == "request" else self.flow.response
            if msg is not None:
                changed.setdefault("body_sha256", body_digest(msg.raw_content or b""))
        self.state.history.fault(
            rule_id=self.rule_id, action=name, link=self.info.link, kind=self.info.kind, phase=self.phase,
            flow_id=self.flow.id, flow_seq=self.info.flow_seq, changed=type(action).Change(**changed),
        )
        applied = self.flow.metadata.setdefault(META_FAULTS, [])
        if not applied or applied[-1] != {"rule_id": self.rule_id, "action": name, "phase": self.phase}:
            applied.append({"rule_id": self.rule_id, "action": name, "phase": self.phase})

    def send_copy(self, copy: Any, *, origin: str, delay_ms: int = 0) -> None:
        self.state.send(copy, origin=origin, rule_id=self.rule_id, of_flow_id=self.flow.id, delay_ms=delay_ms)

    async def hold(self, flow: Any, *, max_hold_ms: int) -> str:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self.state.holds[self.rule_id] = _Held(flow.id, fut)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), max_hold_ms / 1000)
        except TimeoutError:
            return "timeout"
        finally:
            held = self.state.holds.get(self.rule_id)
            if held is not None and held.future is fut:
                del self.state.holds[self.rule_id]

    def release_held(self, by: Any) -> bool:
        held = self.state.holds.get(self.rule_id)
        if held is None or held.flow_id == by.id:
            return False
        del self.state.holds[self.rule_id]
        self.info.release.append(held.future)
        return True

    def defer_replay(self, copy: Any, *, after_event: str | None, after_messages: int | None) -> None:
        self.state.pending.append(_Pending(self.rule_id, copy, self.flow.id, after_event, after_messages))

    def count_observed(self) -> None:
        self.state.observed(self.rule_id)
