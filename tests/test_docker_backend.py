"""The docker backend without an engine: user mistakes are one line; images.toml docker keys;
the implementation matrix (combinations, filters, and a real local-backend matrix run).

The real-engine test is tests/test_docker_e2e.py (marked ``docker``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.errors import ImagesError, UsageError
from harness.run.matrix import combo_label, combos
from harness.stack.docker import _split_ref, engine_is_local
from harness.stack.images import load_images, parse_images, parse_impl

REPO = Path(__file__).resolve().parent.parent
FAULTRUN = [sys.executable, "-m", "harness.cli"]


def faultrun(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    full_env.update(env or {})
    return subprocess.run([*FAULTRUN, *args], capture_output=True, text=True, env=full_env, cwd=cwd or REPO,
                          timeout=timeout, check=False)


@pytest.mark.parametrize(("host", "local"), [
    ("", True), ("unix:///var/run/docker.sock", True), ("unix:///tmp/x/docker.sock", True),
    ("tcp://127.0.0.1:2375", True), ("tcp://localhost:2376", True), ("tcp://[::1]:2375", True),
    ("tcp://192.0.2.7:2376", False), ("ssh://builder@example.org", False), ("ssh://localhost", False),
])
def test_engine_is_local(host: str, local: bool) -> None:
    assert engine_is_local(host) is local


def test_image_refs_split_with_a_default_tag() -> None:
    assert _split_ref("dap-faultrun:local") == ("dap-faultrun", "local")
    assert _split_ref("us-west2-docker.pkg.dev/x/janus/janus_interop_client:0.7.28") == (
        "us-west2-docker.pkg.dev/x/janus/janus_interop_client", "0.7.28")
    assert _split_ref("localhost:5000/img") == ("localhost:5000/img", "latest")


@pytest.mark.parametrize(("docker_host", "code", "needle"), [
    ("bogus://nowhere", 2, "--backend docker: DOCKER_HOST=bogus://nowhere:"),
    ("unix:///nonexistent/faultrun/docker.sock", 3,
     "no Docker engine answers at DOCKER_HOST=unix:///nonexistent/faultrun/docker.sock: No such file or directory"),
    ("tcp://192.0.2.7:2376", 2, "names another machine"),
])
def test_docker_engine_mistakes_are_one_line(tmp_path: Path, docker_host: str, code: int, needle: str) -> None:
    r = faultrun("--backend", "docker", "--fault", "duplicate-report", "--artifacts", str(tmp_path / "a"),
                 env={"DOCKER_HOST": docker_host})
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("faultrun: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr


def test_pull_needs_the_docker_backend(tmp_path: Path) -> None:
    r = faultrun("--pull", "--fault", "duplicate-report", "--artifacts", str(tmp_path / "a"))
    assert r.returncode == 2
    assert r.stderr.strip() == "faultrun: error: --pull needs --backend docker"


def test_shipped_reference_entries_run_under_both_backends() -> None:
    im = load_images()
    for role in ("leader", "helper", "client", "collector"):
        ref = im.select(role, "reference")
        assert ref.backends == ("local", "docker") and ref.kind == "local+docker"
        assert ref.image == "dap-faultrun:local" and ref.args is not None and ref.args[0] == role
    leader_args = im.select("leader", "reference").args
    assert leader_args is not None and leader_args[leader_args.index("--request-timeout") + 1] == "1"
    daphne = im.select("helper", "daphne")
    assert daphne.port == 8788 and daphne.backends == ("docker",)
    for role, name in (("client", "janus"), ("leader", "janus"), ("helper", "janus"), ("collector", "janus")):
        image = im.select(role, name).image
        assert image is not None
        major, minor, patch = (int(x) for x in image.rsplit(":", 1)[1].split("."))
        assert (major, minor) == (0, 7) and patch >= 12, image


def test_args_need_an_image_and_must_be_strings() -> None:
    base = "\n".join(f'[[{r}]]\nname = "x"\nimage = "img"\n' for r in ("helper", "client", "collector"))
    with pytest.raises(ImagesError, match=r"leader.x.args: 'args' \(the container's command\) needs 'image'"):
        parse_images(base + '[[leader]]\nname = "x"\ncommand = ["a", "{port}"]\nargs = ["leader"]\n', "t.toml")
    with pytest.raises(ImagesError, match=r"leader.x.args: must be an array of strings"):
        parse_images(base + '[[leader]]\nname = "x"\nimage = "img"\nargs = [1]\n', "t.toml")
    with pytest.raises(ImagesError, match=r"leader.x: needs 'command' \(local backend\) or 'image'"):
        parse_images(base + '[[leader]]\nname = "x"\n', "t.toml")
    im = parse_images(base + '[[leader]]\nname = "x"\nimage = "img"\nargs = ["leader", "-v"]\nport = 8788\n', "t.toml")
    assert im.default("leader").args == ("leader", "-v") and im.default("leader").port == 8788


def test_matrix_combinations_filters_and_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JANUS_BIN_DIR", raising=False)  # no Janus build here: its local entries cannot run
    monkeypatch.delenv("JANUS_SRC", raising=False)
    im = load_images()
    docker_all = combos(im, {}, "docker")
    assert len(docker_all) == 3 * 2 * 3 * 2  # client x leader x helper x collector, as in images.toml
    local_all = combos(im, {}, "local")  # the reference roles plus the local peers (peers/, docs/images.md)
    assert len(local_all) == 3 * 1 * 1 * 2
    assert {(c["client"].name, c["collector"].name) for c in local_all} == {
        (client, collector) for client in ("reference", "divviup-ts", "janus") for collector in ("reference", "janus")}
    assert all(c[r].name == "reference" for c in local_all for r in ("leader", "helper"))
    mixed = combos(im, parse_impl(["leader=janus", "all=reference"]), "docker")
    assert [combo_label(c) for c in mixed] == ["client=reference,leader=janus,helper=reference,collector=reference"]
    two = combos(im, parse_impl(["helper=reference,janus", "all=reference"]), "docker")
    assert [c["helper"].name for c in two] == ["reference", "janus"]
    with pytest.raises(UsageError, match="no helper implementation the local backend can run among daphne"):
        combos(im, parse_impl(["helper=daphne"]), "local")
    with pytest.raises(UsageError, match="helper daphne cannot run under --backend local"):
        combos(im, parse_impl(["helper=reference,daphne"]), "local")
    with pytest.raises(UsageError, match="leader janus cannot run here: JANUS_BIN_DIR not set"):
        combos(im, parse_impl(["leader=janus"]), "local")
    with pytest.raises(ImagesError, match="did you mean janus"):
        combos(im, parse_impl(["leader=januss"]), "docker")
    with pytest.raises(UsageError, match="unknown role"):
        parse_impl(["observer=x"])


def test_local_matrix_writes_one_result_matrix(tmp_path: Path) -> None:
    """Two helper implementations x two faults on the local backend: JSON, JUnit and HTML cells."""
    images = tmp_path / "images.toml"
    images.write_text((REPO / "images.toml").read_text() + '''
[[helper]]
name = "reference-b"
doc = "the reference Helper again, under another name (a second column)"
command = ["{python}", "-m", "dap.roles", "--role", "helper", "--host", "{host}", "--port", "{port}",
           "--state-dir", "{state_dir}"]
''')
    out = tmp_path / "m"
    r = faultrun("--matrix", "--images", str(images), "--impl", "all=reference", "--impl", "helper=reference,reference-b",
                 "--fault", "duplicate-report", "--fault", "bad-leader-token", "--artifacts", str(out), "--json",
                 timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(r.stdout)
    assert [c["label"] for c in doc["combos"]] == [
        "client=reference,leader=reference,helper=reference,collector=reference",
        "client=reference,leader=reference,helper=reference-b,collector=reference"]
    cells = doc["cells"]
    assert len(cells) == 4 and {c["verdict_class"] for c in cells} == {"pass"}
    for c in cells:
        assert (out / c["run_dir"] / "report.html").is_file()
        assert (out / c["run_dir"] / "scenario.json").is_file()
    assert json.loads((out / "matrix.json").read_text())["cells"] == cells
    suites = ET.parse(out / "junit.xml").getroot().findall("testsuite")
    assert sorted(s.get("name") for s in suites) == sorted(
        f"faultrun.{c['combo']}.{c['scenario']}" for c in cells)
    html = (out / "matrix.html").read_text()
    for c in cells:
        link = "/".join(Path(c["run_dir"]).parts).replace("=", "%3D").replace(",", "%2C") + "/report.html"
        assert link in html, link
