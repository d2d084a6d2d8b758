"""Message triggers of network rules: the proxy says when a window must open.

A network rule (:mod:`faults.network`) whose window opens on a message (``after_kind`` /
``after_event``) is applied by the harness (it owns the namespaces and the packet filter),
but only the proxy sees the message. When the message goes by, the proxy records a
``net_trigger`` control event and queues the trigger for the harness, which long-polls
``GET /net/triggers`` on the control channel. While a harness is attached (``POST
/net/attach``), the triggering message itself is held until the harness acknowledges
(``POST /net/ack?rule=ID``) that the rule is in place, at most :data:`HOLD_S`: so a
partition "after the first AggregationJobInitReq" is on the wire before that request goes
upstream, and its answer is lost at the TCP level, every time.

The harness records the window's start and stop itself (``POST /net/event``: a fault event
with ``phase`` ``network``), so they share the history's seq order with the messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import attrs

from faults.history import HistoryWriter
from faults.network import NetRule
from faults.plan import Plan

__all__ = ["HOLD_S", "NetTriggers"]

log = logging.getLogger(__name__)
#: the longest a triggering message waits for the harness's acknowledgement
HOLD_S = 5.0


@attrs.define
class _Trigger:
    rule: NetRule
    seen: int = 0
    fired: bool = False


@attrs.define
class NetTriggers:
    """Per-plan trigger state (reset on every plan load) plus the harness's attachment."""

    history: HistoryWriter
    attached: bool = False
    triggers: list[_Trigger] = attrs.field(factory=list)
    pending: list[dict[str, Any]] = attrs.field(factory=list)
    holds: dict[str, asyncio.Future] = attrs.field(factory=dict)
    _wakeup: asyncio.Event | None = None

    def set_plan(self, plan: Plan) -> None:
        """A new plan: fresh counters; held messages released, unacknowledged triggers dropped."""
        self.release_all()
        self.pending.clear()
        self.triggers = [_Trigger(r) for r in plan.net_rules if r.window.triggered]

    def release_all(self) -> int:
        n = 0
        for fut in self.holds.values():
            if not fut.done():
                fut.set_result("released")
                n += 1
        self.holds.clear()
        return n

    def match(self, *, link: str | None, kind: str | None, phase: str, events: list[str], flow_seq: int,
              is_copy: bool) -> list[str]:
        """One recorded message: the ids of the rules whose trigger it is (each fires once)."""
        if is_copy or not self.triggers:
            return []
        fired = []
        for t in self.triggers:
            if t.fired:
                continue
            w = t.rule.window
            if w.after_event is not None:
                hit = phase == "response" and w.after_event in events
            else:
                hit = (kind == w.after_kind and phase == w.after_phase and link == (w.after_link or t.rule.link))
                if hit:
                    t.seen += 1
                    hit = t.seen == w.after_nth
            if hit:
                t.fired = True
                fired.append(t.rule.id)
                self.history.control("net_trigger", rule_id=t.rule.id, link=link, kind=kind, phase=phase,
                                     flow_seq=flow_seq)
                self.pending.append({"rule_id": t.rule.id, "link": link, "kind": kind, "phase": phase,
                                     "flow_seq": flow_seq, "hold": self.attached})
        if fired and self._wakeup is not None:
            self._wakeup.set()
        return fired

    async def hold(self, rule_ids: list[str]) -> None:
        """Hold the triggering message until the harness acknowledged every rule (or HOLD_S)."""
        if not self.attached or not rule_ids:
            return
        loop = asyncio.get_running_loop()
        futs = []
        for rid in rule_ids:
            fut = loop.create_future()
            self.holds[rid] = fut
            futs.append(fut)
        try:
            await asyncio.wait_for(asyncio.gather(*futs), HOLD_S)
        except TimeoutError:
            log.warning("faultrun: network trigger(s) %s not acknowledged within %.0f s", rule_ids, HOLD_S)
            self.history.control("net_trigger_timeout", rules=rule_ids)
        finally:
            for rid in rule_ids:
                self.holds.pop(rid, None)

    def ack(self, rule_id: str) -> bool:
        fut = self.holds.pop(rule_id, None)
        if fut is None or fut.done():
            return False
        fut.set_result("acknowledged")
        return True

    async def wait(self, timeout_s: float) -> list[dict[str, Any]]:
        """The queued triggers (emptied); waits up to ``timeout_s`` for one if none is queued."""
        if not self.pending and timeout_s > 0:
            self._wakeup = asyncio.Event()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout_s)
            except TimeoutError:
                pass
            finally:
                self._wakeup = None
        out, self.pending = self.pending, []
        return out
