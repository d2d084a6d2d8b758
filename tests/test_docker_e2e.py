"""The docker backend on a real engine (marked ``docker``; docs/docker.md says what it costs).

One test, in order, on one private dockerd (a second engine per xdist worker would double the
cost): install Debian's docker.io + debootstrap if missing (root), start dockerd with all its
state in a temp dir, import the cached debootstrap base image (built on the first run), build
the reference image from this checkout's Dockerfile, then

1. ``faultrun --backend docker --impl all=reference`` runs duplicate-report and three more
   catalogue faults (one per link) with all four roles and the proxy in containers;
2. an image missing without ``--pull``, a role that dies at start, SIGINT in the middle of a
   scenario, and a role that never gets ready (timeout) each end cleanly;
3. ``faultrun --backend docker --matrix`` runs two implementation combinations;

and after each step no container or network is left; at the end dockerd is stopped and
nothing of it is left on the host (processes, mounts, its directory, network interfaces).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.stack.dockerd import PrivateDockerd, base_tarball, build_reference_image, ensure_packages, import_base

REPO = Path(__file__).resolve().parent.parent
FAULTS = ("duplicate-report", "drop-agg-init-response", "helper-503-burst", "bad-collector-token")

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


def _faultrun(docker_host: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}, "DOCKER_HOST": docker_host}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=timeout, check=False)


def _state(client: Any) -> tuple[list[str], list[str]]:
    containers = [c.name for c in client.containers.list(all=True)]
    networks = sorted(n.name for n in client.networks.list() if n.name not in ("host", "none", "bridge"))
    return containers, networks


def _assert_clean(client: Any, step: str) -> None:
    assert _state(client) == ([], []), f"after {step}: containers, networks left: {_state(client)}"


def _interfaces() -> set[str]:
    return {p.name for p in Path("/sys/class/net").iterdir()}


def _images_with(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / f"images-{abs(hash(extra))}.toml"
    path.write_text((REPO / "images.toml").read_text() + "\n" + extra)
    return path


def test_docker_backend_on_a_private_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            record_property: Any) -> None:
    timings: dict[str, float] = {}
    t = time.monotonic()
    ensure_packages()  # apt-get install docker.io debootstrap when missing (root); else one-line failure
    timings["packages"] = time.monotonic() - t
    before = _interfaces()
    engine = PrivateDockerd.temporary()
    client = None
    try:
        t = time.monotonic()
        engine.start()
        timings["engine_start"] = time.monotonic() - t
        host = engine.docker_host
        client = engine.client()

        t = time.monotonic()
        import_base(client, base_tarball())  # debootstrap on the first run, then the cached tar
        timings["base_image"] = time.monotonic() - t
        t = time.monotonic()
        build_reference_image(client)
        timings["build_reference_image"] = time.monotonic() - t

        # 1. four catalogue faults, all roles and the proxy in containers --------------------------
        t = time.monotonic()
        out = tmp_path / "run"
        r = _faultrun(host, "--backend", "docker", "--impl", "all=reference", *(x for f in FAULTS for x in ("--fault", f)),
                      "--artifacts", str(out), "--json")
        timings["four_faults"] = time.monotonic() - t
        assert r.returncode == 0, r.stderr[-4000:]
        doc = json.loads(r.stdout)
        assert [(x["scenario"], x["verdict_class"]) for x in doc["results"]] == [(f, "pass") for f in FAULTS]
        _assert_clean(client, "four faults")
        stack = out / "_stack"
        for role in ("leader", "helper", "client", "collector"):
            assert '"event":"start"' in (stack / role / "logs" / f"{role}.log").read_text(), role  # /logs copied out
            assert (stack / role / "logs" / "requests.log").stat().st_size > 0, role
            assert (stack / role / "container.log").stat().st_size > 0, role
        for res in doc["results"]:
            run = Path(res["run_dir"])
            # the proxy container saved this scenario's flows to a file of its own, moved here
            assert not (run / "flows.mitm").is_symlink() and (run / "flows.mitm").stat().st_size > 0, run
            links = {json.loads(line).get("link") for line in (run / "history.jsonl").read_text().splitlines()}
            assert {"client->leader", "collector->leader", "leader->helper"} <= links, (run, links)
            assert (run / "logs" / "leader.container.log").stat().st_size > 0
            assert (run / "report.html").is_file()

        # 2a. an image missing, no --pull: one line, exit 2, nothing started ----------------------
        images = _images_with(tmp_path, '[[helper]]\nname = "absent"\nimage = "faultrun-absent:none"\n')
        r = _faultrun(host, "--backend", "docker", "--images", str(images), "--impl", "all=reference",
                      "--impl", "helper=absent", "--fault", "duplicate-report", "--artifacts", str(tmp_path / "a"))
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == ("faultrun: error: helper 'absent': image faultrun-absent:none is not on the "
                                    "Docker engine; pass --pull to pull it"), r.stderr
        _assert_clean(client, "missing image")

        # 2b. a role that dies at start: exit 3, one line naming it --------------------------------
        images = _images_with(tmp_path, '[[client]]\nname = "broken"\nimage = "dap-faultrun:local"\n'
                                        'args = ["no-such-role"]\n')
        r = _faultrun(host, "--backend", "docker", "--images", str(images), "--impl", "all=reference",
                      "--impl", "client=broken", "--fault", "duplicate-report", "--artifacts", str(tmp_path / "b"))
        assert r.returncode == 3, r.stderr
        first = r.stderr.strip().splitlines()[0]
        assert first.startswith("faultrun: error: client: ") and "usage: ROLE" in first, r.stderr
        assert "Traceback" not in r.stderr
        _assert_clean(client, "a role that dies")

        # 2c. SIGINT in the middle of a scenario (uploads held 60 s by the proxy): exit 130 --------
        plan = tmp_path / "hold.toml"
        plan.write_text('version = 1\nseed = 1\n\n[[rules]]\nid = "hold-uploads"\n[rules.match]\nkind = "upload"\n'
                        '[rules.action]\ntype = "delay"\ndelay_ms = 60000\n')
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}, "DOCKER_HOST": host}
        t = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "--backend", "docker", "--impl", "all=reference",
                                 "--plan", str(plan), "--artifacts", str(tmp_path / "c")], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            held = False
            while time.monotonic() < deadline and proc.poll() is None and not held:
                hist = tmp_path / "c" / "_stack" / "proxy" / "history.jsonl"
                held = hist.is_file() and '"rule_id":"hold-uploads"' in hist.read_text()
                time.sleep(0.1)
            assert held, "the held upload never showed in the proxy's history"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        timings["sigint_case"] = time.monotonic() - t
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == "faultrun: interrupted; every process was stopped", err
        _assert_clean(client, "SIGINT")

        # 2d. a role that never gets ready (timeout): the stack start fails, nothing is left ------
        from harness.errors import InteropError
        from harness.run import Stack
        images = _images_with(tmp_path, '[[collector]]\nname = "deaf"\nimage = "dap-faultrun:local"\n'
                                        'args = ["collector"]\nenv = { DAP_PORT = "9999" }\n')
        monkeypatch.setenv("DOCKER_HOST", host)
        with pytest.raises(InteropError, match=r"collector ready: not ready after 3 s"):
            Stack.start(tmp_path / "d", impl={"all": "reference", "collector": "deaf"}, images=images,
                        backend="docker", ready_timeout_s=3)
        _assert_clean(client, "ready timeout")

        # 3. the implementation matrix: two helper implementations x one fault -------------------
        t = time.monotonic()
        images = _images_with(tmp_path, '[[helper]]\nname = "reference-b"\nimage = "dap-faultrun:local"\n'
                                        'args = ["helper", "--job-size", "3"]\n')
        r = _faultrun(host, "--backend", "docker", "--matrix", "--images", str(images), "--impl", "all=reference",
                      "--impl", "helper=reference,reference-b", "--fault", "duplicate-report",
                      "--artifacts", str(tmp_path / "m"), "--json")
        timings["matrix"] = time.monotonic() - t
        assert r.returncode == 0, r.stderr[-4000:]
        cells = json.loads(r.stdout)["cells"]
        assert [(c["impl"]["helper"], c["verdict_class"]) for c in cells] == [("reference", "pass"),
                                                                             ("reference-b", "pass")]
        assert (tmp_path / "m" / "matrix.html").is_file() and (tmp_path / "m" / "junit.xml").is_file()
        _assert_clean(client, "matrix")
    finally:
        if client is not None:
            client.close()
        t = time.monotonic()
        engine.stop()
        timings["engine_stop"] = time.monotonic() - t
        record_property("docker_timings", json.dumps({k: round(v, 1) for k, v in timings.items()}))
        print("docker test timings (s):", {k: round(v, 1) for k, v in timings.items()})
    assert engine.leftovers() == []
    assert not engine.root.exists()
    assert _interfaces() <= before, f"network interfaces left: {_interfaces() - before}"
