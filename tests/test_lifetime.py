"""Nothing the harness starts outlives it, and a role that dies is infrastructure, never a
verdict (harness.stack.lifetime, harness.run.Stack.dead / heal)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_fixtures import pid_of, procs_mentioning, reap, wait_gone, wait_pids_gone

from harness.stack import lifetime

REPO = Path(__file__).resolve().parent.parent
FAULTRUN = Path(sys.executable).with_name("faultrun")
#: the Leader->Helper link down for good: the scenario stays busy (the Leader retries) until killed
SLOW_PLAN = ('version = 1\nseed = 1\n[[rules]]\nid = "down"\n[rules.match]\nlink = "leader->helper"\n'
             '[rules.action]\ntype = "respond"\nstatus = 503\n')


def _start_faultrun(tmp_path: Path, *argv: str) -> tuple[subprocess.Popen, Path]:
    plan = tmp_path / "slow.toml"
    plan.write_text(SLOW_PLAN)
    art = tmp_path / "art"
    # A registry of children of its own (TMPDIR): killed, this faultrun leaves its entries
    # behind, and another test's in-process `faultrun` must not sweep them (and say so on
    # its stderr) while they are still dying.
    (tmp_path / "tmp").mkdir()
    p = subprocess.Popen([str(FAULTRUN), "--plan", str(plan), *argv, "--artifacts", str(art), "--timeout", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                         env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (art / "slow").exists():  # the scenario has started
        time.sleep(0.05)
    assert (art / "slow").exists(), p.stderr.read() if p.poll() is not None else "no scenario started"
    assert len(procs_mentioning(str(art))) >= 5  # four roles + mitmdump
    return p, art


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGHUP])
def test_a_killed_or_hung_up_faultrun_leaves_nothing_running(tmp_path: Path, how: signal.Signals) -> None:
    p, art = _start_faultrun(tmp_path)
    try:
        p.send_signal(how)
        p.communicate(timeout=60)
        left = wait_gone(str(art), 5.0)  # the kernel's SIGTERM (PR_SET_PDEATHSIG) or faultrun's own cleanup
        assert not left, left
        registry = tmp_path / "tmp" / f"dap-faultrun-{os.getuid()}" / "children"
        recorded = [json.loads(f.read_text())["pid"] for f in registry.glob("*.json")]
        assert len(recorded) == (5 if how == signal.SIGKILL else 0)  # only an orderly stop forgets them
        assert not wait_pids_gone(recorded, 5.0)  # each recorded child itself, not just its command line
        with pytest.MonkeyPatch.context() as mp:  # and a later sweep finds nobody left to kill
            mp.setattr(lifetime.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
            assert lifetime.sweep() == []
        assert not any(registry.glob("*.json"))
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        reap(str(art))
    if how == signal.SIGHUP:  # handled like SIGTERM: an orderly stop
        assert p.returncode == 130


def test_the_sweep_reaps_children_whose_owner_is_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifetime.tempfile, "gettempdir", lambda: str(tmp_path))
    owner = subprocess.Popen([sys.executable, "-c", "pass"])
    owner.wait()  # an owner that is gone
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    mine = subprocess.Popen(["sleep", "60"], start_new_session=True)
    zombie = subprocess.Popen(["true"], start_new_session=True)
    zombie_start = lifetime._start_time(zombie.pid)
    try:
        assert not wait_pids_gone([zombie.pid], 5.0)  # exited; not reaped (no wait()), so a zombie
        reg = tmp_path / f"dap-faultrun-{os.getuid()}" / "children"
        reg.mkdir(parents=True)
        (reg / f"{orphan.pid}.json").write_text(json.dumps({
            "pid": orphan.pid, "start": lifetime._start_time(orphan.pid), "owner": owner.pid, "owner_start": 1,
            "what": "leader reference"}))
        lifetime.record_child(mine.pid, "helper reference")  # owned by this live process: kept
        (reg / "99999999.json").write_text(json.dumps({"pid": 99999999, "start": 5, "owner": owner.pid,
                                                       "owner_start": 1}))  # long gone: only forgotten
        (reg / f"{zombie.pid}.json").write_text(json.dumps({  # exited, not yet reaped: only forgotten
            "pid": zombie.pid, "start": zombie_start, "owner": owner.pid, "owner_start": 1}))
        killed = lifetime.sweep()
        assert killed == [f"leader reference pid {orphan.pid} (owner {owner.pid} is gone)"]
        assert orphan.wait(timeout=5) == -signal.SIGKILL
        assert mine.poll() is None and (reg / f"{mine.pid}.json").exists()
        assert sorted(p.name for p in reg.iterdir()) == [f"{mine.pid}.json"]
    finally:
        for proc in (orphan, mine, zombie):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_exit_text() -> None:
    assert lifetime.exit_text(-9) == "was killed by SIGKILL" and lifetime.exit_text(3) == "exited with status 3"


@pytest.mark.parametrize("victim", ["_stack/helper", "_stack/leader", "mitmdump"])
def test_a_role_or_proxy_killed_mid_scenario_is_infra_and_the_next_scenario_runs_on_a_fresh_stack(
        tmp_path: Path, victim: str) -> None:
    p, art = _start_faultrun(tmp_path, "--fault", "duplicate-report")
    try:
        os.kill(pid_of(str(art), victim), signal.SIGKILL)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        reap(str(art))
    # the killed scenario is infrastructure (3), the next one ran on a restarted stack and passed
    assert p.returncode == 3, out + err
    slow = json.loads((art / "slow" / "report.json").read_text())
    assert slow["verdict_class"] == "infra"
    assert '<error message="infra' in (art / "slow" / "junit.xml").read_text()  # JUnit: an error, not a failure
    role = "proxy" if victim == "mitmdump" else victim.split("/")[-1]
    assert any(r.startswith(f"{role}: ") and "was killed by SIGKILL" in r for r in slow["reasons"]), slow["reasons"]
    assert json.loads((art / "duplicate-report" / "report.json").read_text())["verdict_class"] == "pass"
