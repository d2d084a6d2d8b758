"""Network rules as values (faults.network): the model, TOML, history, the checker's view, the
strategies, the proxy's triggers and the packet worker's pure parts. No namespaces here
(tests/test_netns_e2e.py runs them)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faults.errors import PlanError
from faults.history import FaultEvent, HistoryWriter, MessageEvent, event_from_dict, event_to_dict
from faults.network import (
    NET_ACTIONS,
    Blackhole,
    Latency,
    Loss,
    NetChange,
    NetRule,
    Partition,
    Rate,
    Reorder,
    Reset,
    Window,
    is_net_action,
    net_action_class,
)
from faults.plan import Plan, dumps_plan, loads_plan, plan_from_dict, plan_to_dict
from faults.scenario import Outcome
from faults.strategies import MAX_CUT_MS, NET_ACTION_ORDER, net_rules, network_scenarios
from faults.vocabulary import LEADER_HELPER, LINK_KINDS, LINKS
from harness.check.flows import fold_flows
from harness.check.validity import unstarted_net_rules
from harness.record import RunRecord
from harness.stack.nfqworker import Packet, build_rst, tcp_checksum
from proxy_addons.nettriggers import NetTriggers

TOML = """
version = 1
seed = 7

[[rules]]
id = "dup"
[rules.match]
kind = "upload"
[rules.action]
type = "duplicate"

[[net_rules]]
id = "cut"
link = "leader->helper"
direction = "response"
[net_rules.window]
after_kind = "agg_init"
after_nth = 2
for_ms = 2500
[net_rules.action]
type = "partition"

[[net_rules]]
id = "lossy"
link = "client->leader"
[net_rules.action]
type = "loss"
probability = 0.2
"""


def test_toml_round_trip_and_defaults() -> None:
    plan = loads_plan(TOML)
    assert [r.id for r in plan.rules] == ["dup"]
    cut, lossy = plan.net_rules
    assert cut == NetRule("cut", LEADER_HELPER, Partition(), direction="response",
                          window=Window(after_kind="agg_init", after_nth=2, for_ms=2500))
    assert lossy.direction == "both" and lossy.window == Window() and lossy.action == Loss(0.2)
    assert cut.directions == ("response",) and lossy.directions == ("request", "response")
    assert cut.event_action == "net-partition" and plan.needs_network
    for fmt in ("toml", "json"):
        text = dumps_plan(plan, fmt)
        assert loads_plan(text, fmt) == plan
        assert dumps_plan(loads_plan(text, fmt), fmt) == text


def test_plans_without_network_rules_are_unchanged() -> None:
    text = 'version = 1\nseed = 3\nrules = []\n'
    plan = loads_plan(text)
    assert plan.net_rules == () and not plan.needs_network
    assert "net_rules" not in plan_to_dict(plan) and dumps_plan(plan) == text


@pytest.mark.parametrize(("patch", "message"), [
    ('type = "partition"', None),
    ('type = "jam"', "unknown net action 'jam'"),
    ('type = "reset"\nafter_bytes = 10', "acts on direction response only"),
    ('type = "loss"', "missing required parameter 'probability'"),
    ('type = "loss"\nprobability = 1.5', "probability must be a number in (0, 1]"),
    ('type = "latency"\ndelay_ms = -1', "delay_ms"),
    ('type = "rate"\nkbit = 1', "kbit"),
])
def test_bad_net_actions_are_one_line_plan_errors(patch: str, message: str | None) -> None:
    text = f'version = 1\n[[net_rules]]\nid = "n"\nlink = "leader->helper"\n[net_rules.action]\n{patch}\n'
    if message is None:
        assert loads_plan(text).net_rules[0].action == Partition()
        return
    with pytest.raises(PlanError) as err:
        loads_plan(text)
    assert str(err.value).startswith("rule 'n': ") and message in str(err.value) and "\n" not in str(err.value)


def test_window_checks() -> None:
    with pytest.raises(ValueError, match="after_event or after_kind"):
        Window(after_event="agg_init_done", after_kind="agg_init")
    with pytest.raises(ValueError, match="need after_kind"):
        Window(after_nth=2)
    with pytest.raises(ValueError, match="no upload messages travel on leader->helper"):
        NetRule("n", LEADER_HELPER, Partition(), window=Window(after_kind="upload"))
    assert Window(after_event="agg_share_done").trigger_text(LEADER_HELPER) == "agg_share_done"
    assert Window().trigger_text(LEADER_HELPER) == "scenario start" and not Window().triggered
    with pytest.raises(PlanError, match="duplicate rule id"):
        plan_from_dict({"version": 1, "rules": [{"id": "x", "action": {"type": "drop-request"}}],
                        "net_rules": [{"id": "x", "link": LEADER_HELPER, "action": {"type": "partition"}}]})


def test_action_table_and_traits() -> None:
    assert set(NET_ACTIONS) == set(NET_ACTION_ORDER)
    assert Partition.cuts and Blackhole.cuts and not Loss.cuts
    assert Latency.slows and Rate.slows and not Rate.uses_nfqueue and Loss.uses_nfqueue
    assert Reset.effect_counter == "resets" and Reorder.effect_counter == "reordered"
    assert is_net_action("net-reset") and not is_net_action("reset") and not is_net_action("net-nope")
    assert net_action_class("net-rate") is Rate and net_action_class("rate") is Rate
    # traits every Action has, all off: the checker's message traits never see a network event as one
    assert not any(getattr(Partition, t) for t in ("changes_body", "drops", "sends_copies", "tampers_auth"))


def _net_event(seq: int, rule: str, state: str, **changed: object) -> FaultEvent:
    return FaultEvent(seq=seq, t_mono=float(seq), t_wall=0.0, rule_id=rule, action="net-partition",
                      link=LEADER_HELPER, kind=None, phase="network", flow_id="", flow_seq=-1,
                      changed=NetChange(state=state, **changed))


def test_history_round_trip_and_writer() -> None:
    ev = _net_event(3, "cut", "stop", stopped_by="for_ms elapsed", packets={"dropped": 4})
    back = event_from_dict(event_to_dict(ev))
    assert back == ev and isinstance(back, FaultEvent) and back.is_network and back.action_class is Partition
    assert back.changed.applied and back.changed.packets == {"dropped": 4}
    w = HistoryWriter(None)
    w.fault(rule_id="cut", action="net-partition", link=LEADER_HELPER, kind=None, phase="network", flow_id="",
            flow_seq=-1, changed=NetChange(state="start", trigger="t+0ms"))
    assert w.events[0].is_network and w.events[0].changed.trigger == "t+0ms"
    with pytest.raises(ValueError, match="network fault event"):
        event_from_dict({**event_to_dict(ev), "changed": {"nonsense": 1}})


def _record(since: int = 0) -> RunRecord:
    from faults.scenario import TaskSpec
    return RunRecord(scenario="s", task_id="t", task=TaskSpec(), base_time=0, history_since_seq=since)


def test_checker_ignores_network_events_per_flow_and_requires_them_to_start() -> None:
    msg = MessageEvent(seq=1, t_mono=1.0, t_wall=0.0, link=LEADER_HELPER, kind="agg_init", phase="request",
                       flow_id="f1", flow_seq=1, method="PUT", path="/tasks/x/aggregation_jobs/y")
    events = [msg, _net_event(2, "cut", "start"), _net_event(3, "cut", "stop", packets={"dropped": 2})]
    assert list(fold_flows(events)) == ["f1"]  # no phantom flow for the network events
    from harness.check.flows import Context
    plan = Plan(net_rules=(NetRule("cut", LEADER_HELPER, Partition()),
                           NetRule("never", LEADER_HELPER, Partition(), window=Window(after_kind="agg_share")),
                           NetRule("rst", LEADER_HELPER, Reset(after_bytes=10), direction="response"),
                           NetRule("opt", LEADER_HELPER, Partition(), optional=True)))
    rst = [FaultEvent(seq=4 + i, t_mono=0.0, t_wall=0.0, rule_id="rst", action="net-reset", link=LEADER_HELPER,
                      kind=None, phase="network", flow_id="", flow_seq=-1,
                      changed=NetChange(state=s, packets={"seen": 3} if s == "stop" else None))
           for i, s in enumerate(("start", "stop"))]
    lines = unstarted_net_rules(Context(_record(), [*events, *rst], None), plan)
    assert len(lines) == 2
    assert "never started: its trigger (agg_share request #1 on leader->helper) never came" in lines[0]
    assert "rst (reset) was active but never took effect (no resets packets)" in lines[1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(network_scenarios())
def test_generated_network_scenarios_are_valid_plans(sc: object) -> None:
    plan = sc.plan  # type: ignore[attr-defined]
    assert plan_from_dict(plan_to_dict(plan)) == plan
    for r in plan.net_rules:
        assert r.optional and r.direction in (*r.action.directions, "both")
        if r.action.cuts:
            assert r.window.for_ms is not None and r.window.for_ms <= MAX_CUT_MS
        if r.window.after_kind is not None:
            assert r.window.after_kind in LINK_KINDS[r.link]
    if plan.net_rules:
        assert sc.expect.outcome is Outcome.PASS_OR_CLEAN_FAILURE and not sc.expect.complete  # type: ignore[attr-defined]


def test_network_strategy_shrinks_to_a_partition_on_the_first_link() -> None:
    from hypothesis import find
    rule = find(net_rules(), lambda r: True, settings=settings(database=None, max_examples=50))
    assert rule.action == Partition() and rule.link == LINKS[0] and rule.direction == "both"
    sc = find(network_scenarios(), lambda s: True, settings=settings(database=None, max_examples=50))
    assert sc.plan.net_rules == ()


@given(st.binary(min_size=0, max_size=300), st.integers(0, 300))
def test_truncated_packets_keep_valid_checksums(data: bytes, keep: int) -> None:
    src, dst = socket.inet_aton("10.213.1.22"), socket.inet_aton("10.213.1.6")
    tcp = bytearray(struct.pack("!HHIIBBHHH", 8083, 40000, 1000, 2000, 5 << 4, 0x18, 500, 0, 0))
    struct.pack_into("!H", tcp, 16, tcp_checksum(src, dst, bytes(tcp) + data))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(data), 1, 0, 63, 6, 0, src, dst))
    p = Packet(bytes(ip) + bytes(tcp) + data)
    assert (p.src, p.sport, p.dst, p.dport, p.seq, p.data_len) == ("10.213.1.22", 8083, "10.213.1.6", 40000, 1000,
                                                                   len(data))
    cut = Packet(p.truncated(keep))
    assert cut.data_len == min(keep, len(data))
    segment = cut.raw[cut.ihl:]
    assert tcp_checksum(src, dst, segment) == 0  # a valid checksum sums to zero with itself included


def test_rst_packets_are_valid() -> None:
    raw = build_rst("10.213.1.22", 8083, "10.213.1.6", 40000, 123456, 789)
    p = Packet(raw)
    assert p.flags == 0x14 and p.seq == 123456 and p.ack == 789 and p.data_len == 0
    assert tcp_checksum(socket.inet_aton(p.src), socket.inet_aton(p.dst), raw[20:]) == 0
    assert Packet(build_rst("10.213.1.6", 40000, "10.213.1.22", 8083, 5, None)).flags == 0x04


def test_proxy_triggers_fire_once_hold_and_ack() -> None:
    plan = Plan(net_rules=(NetRule("a", LEADER_HELPER, Partition(), window=Window(after_kind="agg_init", after_nth=2)),
                           NetRule("b", LEADER_HELPER, Partition(), window=Window(after_event="agg_share_done")),
                           NetRule("t", LEADER_HELPER, Partition(), window=Window(after_ms=5))))
    hist = HistoryWriter(None)
    net = NetTriggers(hist)
    net.set_plan(plan)
    assert [t.rule.id for t in net.triggers] == ["a", "b"]
    kw = {"link": LEADER_HELPER, "events": [], "is_copy": False}
    assert net.match(kind="agg_init", phase="request", flow_seq=1, **kw) == []
    assert net.match(kind="agg_init", phase="request", flow_seq=2, is_copy=True, link=LEADER_HELPER, events=[]) == []
    assert net.match(kind="agg_init", phase="request", flow_seq=3, **kw) == ["a"]
    assert net.match(kind="agg_init", phase="request", flow_seq=4, **kw) == []  # once
    assert net.match(kind="agg_share", phase="response", flow_seq=5, link=LEADER_HELPER, events=["agg_share_done"],
                     is_copy=False) == ["b"]
    assert [e.what for e in hist.events] == ["net_trigger", "net_trigger"]

    async def run() -> tuple[list, bool]:
        net.attached = True
        task = asyncio.ensure_future(net.hold(["a"]))
        await asyncio.sleep(0.01)
        assert not task.done()
        got = await net.wait(0)
        assert net.ack("a")
        await asyncio.wait_for(task, 1)
        return got, net.ack("a")

    got, again = asyncio.run(run())
    assert [g["rule_id"] for g in got] == ["a", "b"] and again is False


def test_netns_without_privileges_is_one_usage_line(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    from harness.errors import UsageError
    from harness.stack import netns
    from harness.stack.backend import get_backend
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(netns, "_has_cap_net_admin", lambda: False)
    why = netns.missing_requirement()
    assert why is not None and "root or CAP_NET_ADMIN" in why and "\n" not in why
    with pytest.raises(UsageError, match="needs root or CAP_NET_ADMIN"):
        get_backend("local", tmp_path, network="netns")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="cannot be combined with --backend docker"):
        get_backend("docker", tmp_path, network="netns")  # type: ignore[arg-type]
