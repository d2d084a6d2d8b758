"""``--network netns`` end to end (needs root or CAP_NET_ADMIN, as CI has): a netns stack runs the
no-fault flow and three network entries to their verdicts; an interrupted run (SIGINT in the
middle of a partition) leaves the host's namespaces, links, iptables and nft rule sets as they
were; the namespaces of a harness killed with kill -9 are swept by the next start.

Snapshots of the host are compared with the interfaces other tests may create meanwhile left
out: the root-side veths of *other* harness processes (``frn<pid>x<k>``), and docker's bridges
and veths (tests/test_docker_e2e.py, in parallel under xdist). Nothing of this test's own
harness may remain.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from faults.catalogue import CATALOGUE
from faults.history import FaultEvent
from faults.plan import Plan
from harness.check.verdict import VerdictClass, expectation_met
from harness.run import Stack
from harness.stack.netns import missing_requirement, sweep

REPO = Path(__file__).resolve().parent.parent
FAULTRUN = Path(sys.executable).with_name("faultrun")

pytestmark = pytest.mark.skipif(missing_requirement() is not None, reason=str(missing_requirement()))

#: three network entries end to end: a cut link (iptables), a TCP reset and packet loss (NFQUEUE)
ENTRIES = ("partition-leader-helper", "reset-mid-agg-share", "loss-20-all-links")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack.start(artifacts_root=tmp_path_factory.mktemp("netns"), network="netns") as s:
        yield s


def _explain(result: object) -> str:
    report = result.report  # type: ignore[attr-defined]
    return "\n".join([f"run dir: {result.run_dir}", report.summary,  # type: ignore[attr-defined]
                      *(f"  {v.invariant}: {v.valid} {v.detail}" for v in report.verdicts if v.valid is not True)])


def test_no_fault_flow_in_namespaces(stack: Stack) -> None:
    topo = stack.backend.topology  # type: ignore[attr-defined]
    assert stack.network == "netns" and topo is not None
    # every role, and the proxy, is on its own address in its own namespace
    assert {c.base_url for c in stack.clients.values()} == {f"http://{topo.addr(r)}:8080/"
                                                           for r in ("leader", "helper", "client", "collector")}
    assert stack.proxy is not None and stack.proxy.url("leader->helper").startswith(f"http://{topo.addr('proxy')}:")
    scenario = attrs.evolve(CATALOGUE["duplicate-report"], name="no-fault", plan=Plan())
    result = stack.run_scenario(scenario, timeout_s=30)
    assert result.report.verdict_class is VerdictClass.PASS, _explain(result)
    # nothing routes out: a role's namespace reaches only the run's /24
    r = topo.run("client", ["ip", "route"], check=False)
    assert "default" not in r.stdout and topo.subnet in r.stdout


@pytest.mark.parametrize("name", ENTRIES)
def test_network_entry(stack: Stack, name: str) -> None:
    scenario = CATALOGUE[name]
    result = stack.run_scenario(scenario, timeout_s=40)
    report = result.report
    why = _explain(result)
    assert not [v.invariant for v in report.verdicts if v.valid is False], why
    assert expectation_met(report.verdict_class, scenario.expect), why
    assert report.verdict_class.value == scenario.expect.outcome.value, why
    net = [e for e in result.history if isinstance(e, FaultEvent) and e.is_network]
    for rule in scenario.plan.net_rules:  # every window opened and closed, in history
        states = [e.changed.state for e in net if e.rule_id == rule.id]
        assert states == ["start", "stop"], (rule.id, states, why)
    assert report.verdict_class is not VerdictClass.INCONCLUSIVE and not report.reasons, why
    if name == "reset-mid-agg-share":
        stop = next(e for e in net if e.changed.state == "stop")
        assert stop.changed.packets and stop.changed.packets.get("resets") == 1
    # the rules are gone after the scenario: the router's fault chains are empty
    topo = stack.backend.topology  # type: ignore[attr-defined]
    r = topo.run("router", ["iptables-save"], check=False)
    assert not re.search(r"^:FR\d+ ", r.stdout, re.M), r.stdout


def test_loopback_refuses_network_entries() -> None:
    r = subprocess.run([str(FAULTRUN), "--fault", "partition-leader-helper"], capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert r.returncode == 2 and "--network netns" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# --- cleanup ---------------------------------------------------------------------------------------

_FOREIGN = re.compile(r"\b(frn(\d+)x\d+|frn-(\d+)-\S+|br-[0-9a-f]+|veth[0-9a-f]+)\b")


def _host_state(own_pids: set[int]) -> dict[str, list[str]]:
    """The host's network state, minus other processes' own interfaces (see the module doc)."""

    def run(*cmd: str) -> list[str]:
        if shutil.which(cmd[0]) is None:
            return [f"{cmd[0]}: not installed"]
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30).stdout
        return [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("#")]

    def keep(line: str) -> bool:
        for m in _FOREIGN.finditer(line):
            pid = m.group(2) or m.group(3)
            if pid is None or int(pid) not in own_pids:
                return False
        return True

    links = [re.sub(r"^\d+: ", "", ln) for ln in run("ip", "-o", "link")]  # ifindex numbers are not state
    return {"netns": [ln for ln in run("ip", "netns", "list") if keep(ln)],
            "link": sorted(ln for ln in links if keep(ln)),
            "iptables": run("iptables-save"), "nft": run("nft", "list", "ruleset")}


def _ours(state: dict[str, list[str]], pid: int) -> list[str]:
    return [ln for lines in state.values() for ln in lines if f"frn-{pid}-" in ln or f"frn{pid}x" in ln]


def test_sigint_mid_partition_leaves_the_host_as_it_was(tmp_path: Path) -> None:
    before = _host_state(set())
    art = tmp_path / "art"
    proc = subprocess.Popen([str(FAULTRUN), "--network", "netns", "--fault", "partition-leader-helper",
                             "--artifacts", str(art)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    history = art / "_stack" / "proxy" / "history.jsonl"
    deadline = time.monotonic() + 60
    started = False
    while time.monotonic() < deadline and proc.poll() is None and not started:
        time.sleep(0.05)
        if history.is_file():
            for line in history.read_text().splitlines():
                if '"net-partition"' in line and '"start"' in line:
                    started = True
    assert started, "the partition never started"
    during = _host_state({proc.pid})
    assert _ours(during, proc.pid), "the run's namespaces are not there mid-partition"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0, out
    after = _host_state({proc.pid})
    assert not _ours(after, proc.pid), _ours(after, proc.pid)
    assert after == before


def test_kill_9_leftovers_are_swept(tmp_path: Path) -> None:
    code = ("import sys, time\nfrom harness.stack.netns import Topology\nt = Topology().create()\n"
            "print(t.router, flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    router = proc.stdout.readline().strip()
    assert router.startswith(f"frn-{proc.pid}-") and (Path("/run/netns") / router).exists()
    proc.kill()
    proc.wait(10)
    removed = sweep()
    assert any(f"pid {proc.pid}" in x for x in removed), removed
    assert not _ours(_host_state({proc.pid}), proc.pid)


def test_json_summary_of_a_network_run(tmp_path: Path) -> None:
    r = subprocess.run([str(FAULTRUN), "--network", "netns", "--fault", "blackhole-agg-init", "--json",
                        "--artifacts", str(tmp_path / "a")], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert doc["results"][0]["verdict_class"] == "pass"
