"""Apply a plan's network rules (:mod:`faults.network`) to a netns topology, and record them.

One :class:`NetFaults` per scenario (``Stack.run_scenario`` opens it after loading the plan and
closes it before the plan is unloaded). A thread opens and closes each rule's window: at a
time (``after_ms`` from the scenario's start), or when the fault proxy reports the rule's
trigger message (``GET /net/triggers``, long poll), after which it acknowledges so that the
held message goes on (:mod:`proxy_addons.nettriggers`). Every opening and closing is a fault
event in the proxy's history (``POST /net/event``).

How each action is realised, all inside the topology's router namespace
(:mod:`harness.stack.netns`), on the segment between the link's source and the proxy's
listener for the link (request direction: ``source -> proxy:port``, response: back):

==============  ===========================================================================
partition       iptables ``DROP`` (chain ``FR-DROP``)
blackhole       iptables: connections of the link opened after the start get a connmark;
                unmarked ones (open at the start) are dropped
loss, latency,  iptables ``NFQUEUE`` (chain ``FR-QUEUE``) to the packet worker
reorder,        (:mod:`harness.stack.nfqworker`, NetfilterQueue from PyPI; seeded decisions)
duplicate,
reset
rate            ``htb`` + a ``tbf`` leaf per rule on the router's egress interface (toward
                the proxy for requests, toward the source for responses), selected by ``u32``
==============  ===========================================================================

Drops go before queueing (``FR-DROP`` precedes ``FR-QUEUE`` in ``FORWARD``), so a partition
wins over a latency rule. Everything lives in the router namespace, so removing the
namespace removes every rule and qdisc; :meth:`NetFaults.close` also removes them one by one
at the end of each scenario.
"""

from __future__ import annotations

import contextlib
import heapq
import importlib.util
import itertools
import json
import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import attrs

from faults.network import Blackhole, NetChange, NetRule, Partition, Rate
from faults.plan import Plan
from faults.vocabulary import LINK_ROLES
from harness.errors import BackendError, ControlError, UsageError
from harness.stack.lifetime import forget_child, spawn
from harness.stack.netns import LINK_PORTS, Topology

__all__ = ["NetFaults", "NfqWorker", "nfqueue_missing"]

log = logging.getLogger(__name__)
QUEUE_NUM = 0
_DROP_CHAIN, _QUEUE_CHAIN = "FR-DROP", "FR-QUEUE"
#: how often the trigger poll returns without news (bounds how late a time window starts)
_POLL_MS = 100
_chain_ids = itertools.count(1)
#: connmark bits of blackholes (a new bit each: marks stay on connections after a window)
_mark_bits = itertools.count()


def nfqueue_missing() -> str | None:
    """Why the packet worker cannot run here (None: it can)."""
    if importlib.util.find_spec("netfilterqueue") is None:
        return ("loss, latency, reorder, duplicate and reset need NetfilterQueue (PyPI; built against Debian's "
                "libnetfilter-queue-dev): bash scripts/bootstrap --test installs both")
    return None


class NfqWorker:
    """The packet worker process in the router namespace; commands over its stdin/stdout."""

    def __init__(self, topology: Topology, log_path: Path) -> None:
        self._log = open(log_path, "ab")  # noqa: SIM115 - owned, closed in close()
        cmd = [*topology.exec_prefix("router"), sys.executable, "-m", "harness.stack.nfqworker",
               "--queue", str(QUEUE_NUM)]
        self.proc = spawn(cmd, what="netns packet worker", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=self._log)
        self._lock = threading.Lock()
        ready = self._read(timeout_s=20.0)
        if not ready.get("ready"):
            self.close()
            raise BackendError(f"packet worker did not start: {ready}", role="network")

    def _read(self, timeout_s: float = 10.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        import select
        r, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not r:
            return {"ok": False, "error": "no answer"}
        line = self.proc.stdout.readline()
        if not line:
            return {"ok": False, "error": f"exited ({self.proc.poll()})"}
        return json.loads(line)

    def call(self, **cmd: Any) -> dict[str, Any]:
        with self._lock:
            if self.proc.poll() is not None or self.proc.stdin is None:
                raise BackendError(f"packet worker exited ({self.proc.returncode})", role="network")
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()
            out = self._read()
        if not out.get("ok"):
            raise BackendError(f"packet worker: {out.get('error')}", role="network")
        return out

    def close(self) -> None:
        proc = self.proc
        try:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(3)
        except Exception:
            log.exception("stopping the packet worker")
        finally:
            forget_child(proc.pid)
            with contextlib.suppress(OSError):
                self._log.close()


def _ensure_parent_chains(topo: Topology) -> None:
    r = topo.run("router", ["iptables", "-w", "-S", _DROP_CHAIN], check=False)
    if r.returncode == 0:
        return
    rules = (f"*filter\n:{_DROP_CHAIN} - [0:0]\n:{_QUEUE_CHAIN} - [0:0]\n"
             f"-I FORWARD 1 -j {_QUEUE_CHAIN}\n-I FORWARD 1 -j {_DROP_CHAIN}\nCOMMIT\n")
    topo.run("router", ["iptables-restore", "-w", "--noflush"], stdin=rules)


def _matches(topo: Topology, link: str, direction: str) -> dict[str, Any]:
    """The packets of ``link`` in ``direction`` (single), as addresses and ports."""
    src = topo.addr(LINK_ROLES[link][0])
    proxy, port = topo.addr("proxy"), LINK_PORTS[link]
    if direction == "request":
        return {"dir": "request", "src": src, "dst": proxy, "dport": port}
    return {"dir": "response", "src": proxy, "dst": src, "sport": port}


def _ipt_match(m: dict[str, Any]) -> str:
    out = f"-p tcp -s {m['src']}/32 -d {m['dst']}/32"
    if m.get("sport") is not None:
        out += f" --sport {m['sport']}"
    if m.get("dport") is not None:
        out += f" --dport {m['dport']}"
    return out


@attrs.define
class _Active:
    rule: NetRule
    chain: str | None = None
    parent: str | None = None
    queued: bool = False
    rate_ifaces: tuple[str, ...] = ()
    started_mono: float = 0.0


class _RateTable:
    """The rate rules of one router interface: rebuilt whole on each change (htb + tbf leaves)."""

    def __init__(self) -> None:
        self.by_iface: dict[str, list[tuple[str, Rate, dict[str, Any]]]] = {}

    def sync(self, topo: Topology, iface: str) -> None:
        topo.run("router", ["tc", "qdisc", "del", "dev", iface, "root"], check=False)
        entries = self.by_iface.get(iface, [])
        if not entries:
            return
        lines = [f"qdisc add dev {iface} root handle 1: htb default 1 r2q 1000",
                 f"class add dev {iface} parent 1: classid 1:1 htb rate 10gbit"]
        for i, (_, rate, m) in enumerate(entries):
            cls = 10 + i
            burst = rate.burst_bytes
            lines += [f"class add dev {iface} parent 1: classid 1:{cls} htb rate 10gbit",
                      f"qdisc add dev {iface} parent 1:{cls} handle {cls}: tbf rate {rate.kbit}kbit burst {burst} "
                      f"latency 10s"]
            sel = f"match ip src {m['src']}/32 match ip dst {m['dst']}/32"
            if m.get("sport") is not None:
                sel += f" match ip sport {m['sport']} 0xffff"
            if m.get("dport") is not None:
                sel += f" match ip dport {m['dport']} 0xffff"
            lines.append(f"filter add dev {iface} parent 1: protocol ip prio {i + 1} u32 {sel} flowid 1:{cls}")
        topo.run("router", ["tc", "-batch", "-"], stdin="\n".join(lines) + "\n")

    def counters(self, topo: Topology, iface: str, rule_id: str) -> dict[str, int]:
        entries = self.by_iface.get(iface, [])
        idx = next((i for i, e in enumerate(entries) if e[0] == rule_id), None)
        if idx is None:
            return {}
        r = topo.run("router", ["tc", "-s", "qdisc", "show", "dev", iface], check=False)
        m = re.search(rf"qdisc tbf {10 + idx}: .*?\n\s*Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)",
                      r.stdout, re.S)
        if not m:
            return {}
        return {"bytes": int(m.group(1)), "seen": int(m.group(2)), "dropped": int(m.group(3)),
                "delayed": int(m.group(4))}


@attrs.define(eq=False)
class NetFaults:
    """Opens and closes the windows of one scenario's network rules (see module docstring)."""

    backend: Any
    proxy: Any
    plan: Plan
    t0: float = attrs.field(factory=time.monotonic)
    active: dict[str, _Active] = attrs.field(factory=dict)
    started: set[str] = attrs.field(factory=set)
    _timers: list[tuple[float, int, str, str]] = attrs.field(factory=list)
    _tick: Any = attrs.field(factory=itertools.count)
    _stop: threading.Event = attrs.field(factory=threading.Event)
    _thread: threading.Thread | None = None
    _control: Any = None
    _lock: threading.RLock = attrs.field(factory=threading.RLock)
    _rates: _RateTable = attrs.field(factory=_RateTable)
    _waiting_trigger: set[str] = attrs.field(factory=set)

    @property
    def topology(self) -> Topology:
        topo = getattr(self.backend, "topology", None)
        if topo is None:
            raise UsageError("network rules need the netns network (faultrun --network netns, docs/network.md)")
        return topo

    @classmethod
    def open(cls, backend: Any, proxy: Any, plan: Plan, t0: float | None = None) -> NetFaults:
        """Check what the rules need, attach to the proxy's triggers, start the thread."""
        self = cls(backend=backend, proxy=proxy, plan=plan, t0=time.monotonic() if t0 is None else t0)
        topo = self.topology
        if any(r.action.uses_nfqueue for r in plan.net_rules):
            why = nfqueue_missing()
            if why is not None:
                raise UsageError(why)
            self._worker()
        _ensure_parent_chains(topo)
        self._control = proxy.new_control_client()
        for r in plan.net_rules:
            if r.window.triggered:
                self._waiting_trigger.add(r.id)
            else:
                self._schedule(self.t0 + r.window.after_ms / 1000, "start", r.id)
        if self._waiting_trigger:
            self._control.net_attach(True)
        self._thread = threading.Thread(target=self._loop, name="netfaults", daemon=True)
        self._thread.start()
        return self

    def _worker(self) -> NfqWorker:
        w = self.backend.helpers.get("nfqueue")
        if w is None or w.proc.poll() is not None:
            w = NfqWorker(self.topology, Path(self.backend.workdir) / "nfqworker.log")
            self.backend.helpers["nfqueue"] = w
        return w

    def _schedule(self, at: float, what: str, rule_id: str) -> None:
        heapq.heappush(self._timers, (at, next(self._tick), what, rule_id))

    # --- the thread -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, what, rid = heapq.heappop(self._timers)
                if self._stop.is_set():
                    return
                self._do(what, rid, why="for_ms elapsed" if what == "stop" else None)
            wait = self._timers[0][0] - time.monotonic() if self._timers else 0.5
            if self._waiting_trigger:
                try:
                    triggers = self._control.net_triggers(wait_ms=int(max(min(wait * 1000, _POLL_MS), 0)))
                except ControlError as exc:
                    log.warning("network triggers: %s", exc)
                    self._stop.wait(0.1)
                    continue
                for t in triggers:
                    self._triggered(t)
            else:
                self._stop.wait(max(min(wait, 0.5), 0))

    def _triggered(self, t: dict[str, Any]) -> None:
        rid = t.get("rule_id", "")
        if rid not in self._waiting_trigger:
            return
        self._waiting_trigger.discard(rid)
        rule = self.plan.net_rule(rid)
        what = f"{rule.window.trigger_text(rule.link)} (flow {t.get('flow_seq')})"
        if rule.window.after_ms == 0:
            self._do("start", rid, trigger=what, flow_seq=t.get("flow_seq"))
            if t.get("hold"):
                with contextlib.suppress(ControlError):
                    self._control.net_ack(rid)
        else:
            if t.get("hold"):
                with contextlib.suppress(ControlError):
                    self._control.net_ack(rid)
            self._schedule(time.monotonic() + rule.window.after_ms / 1000, "start", rid)

    def _do(self, what: str, rule_id: str, *, why: str | None = None, trigger: str | None = None,
            flow_seq: int | None = None) -> None:
        with self._lock:
            rule = self.plan.net_rule(rule_id)
            if what == "start":
                if rule_id in self.started:
                    return
                self.started.add(rule_id)
                self._start(rule, trigger or self._time_trigger(rule), flow_seq)
                if rule.window.for_ms is not None:
                    self._schedule(time.monotonic() + rule.window.for_ms / 1000, "stop", rule_id)
            elif rule_id in self.active:
                self._stop_rule(rule, why or "stopped")

    @staticmethod
    def _time_trigger(rule: NetRule) -> str:
        w = rule.window
        return f"t+{w.after_ms}ms" if not w.triggered else f"{w.trigger_text(rule.link)} + {w.after_ms}ms"

    # --- one rule ------------------------------------------------------------------------------------

    def _record(self, rule: NetRule, **changed: Any) -> None:
        change = NetChange(**changed)
        try:
            self._control.net_event(rule.id, rule.event_action, rule.link, change.to_dict())
        except ControlError as exc:
            log.error("recording network fault %s: %s", rule.id, exc)

    def _start(self, rule: NetRule, trigger: str, flow_seq: int | None) -> None:
        topo = self.topology
        act = rule.action
        st = _Active(rule, started_mono=time.monotonic())
        try:
            if isinstance(act, Rate):
                mechanism = "htb+tbf"
                ifaces = []
                for d in rule.directions:
                    m = _matches(topo, rule.link, d)
                    iface = topo.router_if("proxy") if d == "request" else topo.router_if(LINK_ROLES[rule.link][0])
                    self._rates.by_iface.setdefault(iface, []).append((rule.id, act, m))
                    self._rates.sync(topo, iface)
                    ifaces.append(iface)
                st.rate_ifaces = tuple(ifaces)
            else:
                chain = f"FR{next(_chain_ids)}"
                lines = [f":{chain} - [0:0]"]
                if isinstance(act, (Partition, Blackhole)):
                    parent = _DROP_CHAIN
                    if isinstance(act, Blackhole):
                        bit = 1 << (next(_mark_bits) % 31)
                        mark = f"0x{bit:x}/0x{bit:x}"
                        lines.append(f"-A {chain} {_ipt_match(_matches(topo, rule.link, 'request'))} "
                                     f"-m conntrack --ctstate NEW -j CONNMARK --or-mark 0x{bit:x}")
                        lines += [f"-A {chain} {_ipt_match(_matches(topo, rule.link, d))} -m connmark --mark {mark} "
                                  f"-j RETURN" for d in rule.directions]
                        mechanism = "iptables connmark + DROP (connections open at the start)"
                    else:
                        mechanism = "iptables DROP"
                    lines += [f"-A {chain} {_ipt_match(_matches(topo, rule.link, d))} -j DROP"
                              for d in rule.directions]
                else:
                    parent = _QUEUE_CHAIN
                    dirs = rule.directions
                    if rule.action_name == "reset":  # it watches requests to know where a response starts
                        dirs = ("request", "response")
                    ms = [_matches(topo, rule.link, d) for d in dirs]
                    self._worker().call(op="add", id=rule.id, kind=rule.action_name, params=attrs.asdict(act),
                                        seed=self.plan.seed, matches=ms)
                    st.queued = True
                    lines += [f"-A {chain} {_ipt_match(m)} -j NFQUEUE --queue-num {QUEUE_NUM} --queue-bypass"
                              for m in ms]
                    mechanism = "NFQUEUE packet worker"
                lines.append(f"-A {parent} -j {chain}")
                topo.run("router", ["iptables-restore", "-w", "--noflush"],
                         stdin="*filter\n" + "\n".join(lines) + "\nCOMMIT\n")
                st.chain, st.parent = chain, parent
        except (BackendError, UsageError, OSError, subprocess.SubprocessError) as exc:
            log.error("network rule %s could not start: %s", rule.id, exc)
            self._record(rule, action_failed=f"{type(exc).__name__}: {exc}", direction=rule.direction,
                         trigger=trigger, trigger_flow_seq=flow_seq)
            self._undo(st)
            return
        self.active[rule.id] = st
        self._record(rule, state="start", direction=rule.direction, mechanism=mechanism, trigger=trigger,
                     trigger_flow_seq=flow_seq)

    def _undo(self, st: _Active) -> dict[str, int]:
        """Remove what a rule installed; its packet counters."""
        topo = self.topology
        counters: dict[str, int] = {}
        if st.chain is not None:
            r = topo.run("router", ["iptables", "-w", "-L", st.chain, "-n", "-v", "-x"], check=False)
            dropped = sum(int(line.split()[0]) for line in r.stdout.splitlines()[2:]
                          if len(line.split()) > 2 and line.split()[2] == "DROP")
            if st.parent == _DROP_CHAIN:
                counters["dropped"] = dropped
            topo.run("router", ["iptables-restore", "-w", "--noflush"],
                     stdin=f"*filter\n-D {st.parent} -j {st.chain}\n-F {st.chain}\n-X {st.chain}\nCOMMIT\n",
                     check=False)
        if st.queued:
            with contextlib.suppress(BackendError):
                counters.update(self._worker().call(op="remove", id=st.rule.id).get("packets", {}))
        for iface in st.rate_ifaces:
            for k, n in self._rates.counters(topo, iface, st.rule.id).items():
                counters[k] = counters.get(k, 0) + n
            self._rates.by_iface[iface] = [e for e in self._rates.by_iface.get(iface, []) if e[0] != st.rule.id]
            self._rates.sync(topo, iface)
        return counters

    def _stop_rule(self, rule: NetRule, why: str) -> None:
        st = self.active.pop(rule.id)
        try:
            counters = self._undo(st)
        except Exception as exc:  # the namespace goes at close anyway; record what happened
            log.exception("removing network rule %s", rule.id)
            counters = {}
            why = f"{why}; removal failed: {exc}"
        self._record(rule, state="stop", direction=rule.direction, stopped_by=why,
                     packets={k: int(v) for k, v in counters.items()})

    # --- end ------------------------------------------------------------------------------------------

    def close(self, why: str = "scenario end") -> None:
        """Stop the thread and every open window (recorded). Never raises; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        with self._lock:
            for rid in list(self.active):
                try:
                    self._stop_rule(self.plan.net_rule(rid), why)
                except Exception:
                    log.exception("stopping network rule %s", rid)
        if self._control is not None:
            if self._waiting_trigger or any(r.window.triggered for r in self.plan.net_rules):
                with contextlib.suppress(ControlError):
                    self._control.net_attach(False)
            with contextlib.suppress(Exception):
                self._control.close()
            self._control = None
