"""The Leader's retries against a faulty Leader->Helper link (the real fault proxy in between).

The harness's :class:`~proxy_addons.FaultProxy` sits on the Leader->Helper link with a plan
that answers 503 / 429 itself, drops a request, forwards a request and then replaces the
Helper's response with a 500 (the "lost response" case, where only the Helper's idempotent
replay keeps counts exact), or holds a response beyond the Leader's request timeout. Request
rules with ``nth = 1`` form a script: a rule that answers or drops a message hides it from the
rules after it, so each later rule's first match is the next message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from roles_fixtures import Deployment

from faults.actions import Delay, DropRequest, Respond
from faults.plan import Limits, Matcher, Plan, Rule
from harness.stack.proxy import FaultProxy

COUNT = {"type": "Prio3Count"}
L2H = "leader->helper"


def _rule(rule_id: str, action: object, phase: str, **limits: int) -> Rule:
    return Rule(id=rule_id, match=Matcher(link=L2H, phase=phase), action=action, limits=Limits(**limits))


#: 503, 429, dropped, lost (500 after the Helper ran), slow (Helper ran, Leader timed out),
#: then later another lost and slow response and one more 503.
SCRIPT = Plan(seed=1, rules=(
    _rule("r503", Respond(status=503), "request", nth=1),
    _rule("r429", Respond(status=429), "request", nth=1),
    _rule("drop", DropRequest(), "request", nth=1),
    _rule("r503-late", Respond(status=503), "request", nth=6),
    _rule("lose", Respond(status=500), "response", nth=1),
    _rule("slow", Delay(delay_ms=1500), "response", nth=2),
    _rule("lose-again", Respond(status=500), "response", nth=4),
    _rule("slow-again", Delay(delay_ms=1500), "response", nth=5),
))
ALWAYS_503 = Plan(seed=1, rules=(_rule("always-503", Respond(status=503), "request"),))


class Proxied:
    """A Deployment whose Leader reaches the Helper through the fault proxy."""

    def __init__(self, d: Deployment, proxy: FaultProxy) -> None:
        self.d, self.proxy = d, proxy
        self.url = proxy.url(L2H) + "/"

    def history(self) -> list:
        return self.proxy.control.history()

    def messages(self, method: str | None = None, phase: str = "request") -> list:
        return [e for e in self.history() if e.event == "message" and e.link == L2H and e.phase == phase
                and (method is None or e.method == method)]

    def fired(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.history():
            if e.event == "fault":
                out[e.rule_id] = out.get(e.rule_id, 0) + 1
        return out


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Deployment, Proxied]]:
    d = Deployment(tmp_path, leader_args=("--job-size", "5", "--retry-budget", "4",
                                          "--request-timeout", "0.5"))
    proxy = FaultProxy({L2H: d.helper.url.rstrip("/")}, workdir=tmp_path / "proxy", plan=Plan())
    try:
        proxy.start()
        yield d, Proxied(d, proxy)
    finally:
        proxy.close()
        d.close()


def test_retries_and_lost_responses_count_once(setup: tuple[Deployment, Proxied]) -> None:
    d, proxy = setup
    # The Leader reaches the Helper through the proxy; the Client reaches the real Helper.
    t = d.add_task(COUNT, min_batch_size=10, helper_for_leader=proxy.url)
    # The Leader's traffic to the Helper is scripted:
    proxy.proxy.control.load_plan(SCRIPT)
    for _ in range(10):
        assert d.upload(t, "1")["status"] == "success"
    r = d.collect(t, timeout=60)
    assert r["status"] == "complete" and r["report_count"] == 10 and r["result"] == "10", r
    puts = proxy.messages("PUT")
    # Every retry re-sent the same message as the first attempt for that job (length, reports).
    by_path: dict[str, set[tuple[int, tuple[str, ...]]]] = {}
    for e in puts:
        by_path.setdefault(e.path, set()).add((e.body_len, tuple(e.summary.report_ids or ())))
    assert all(len(bodies) == 1 for bodies in by_path.values()), by_path
    assert len(puts) > len(by_path)  # there were retries
    fired = proxy.fired()
    assert fired.get("r503") == fired.get("r429") == fired.get("drop") == 1, fired
    assert fired.get("lose") == 1  # and at least one lost response
    assert fired.get("slow") == 1  # and one timed out after the Helper ran


def test_budget_exhausted_abandons_and_deletes(setup: tuple[Deployment, Proxied]) -> None:
    d, proxy = setup
    import sqlite3
    import time

    t = d.add_task(COUNT, helper_for_leader=proxy.url)
    proxy.proxy.control.load_plan(ALWAYS_503)
    assert d.upload(t, "1")["status"] == "success"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proxy.messages("DELETE"):
            break
        time.sleep(0.1)
    deletes = proxy.messages("DELETE")
    assert deletes, proxy.history()[-3:]
    con = sqlite3.connect(d.leader.state_dir / "leader.sqlite3")
    try:
        states = con.execute("SELECT state, detail FROM agg_jobs").fetchall()
        reports = con.execute("SELECT state FROM reports").fetchall()
    finally:
        con.close()
    assert [s for s, _ in states] == ["abandoned"] and "budget" in states[0][1]
    assert reports == [("failed",)]
    # 501 would not have been retried; 503 was, more than once.
    assert len(proxy.messages("PUT")) >= 3
    assert proxy.fired().get("always-503", 0) >= 3
