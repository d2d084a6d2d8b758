"""images.toml parsing: the shipped file, the runner's string form, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ImagesError, UsageError
from harness.stack.backend import LocalBackend
from harness.stack.images import DEFAULT_IMAGES, ROLES, load_images, parse_images

LOCAL = """
[[leader]]
name = "reference"
command = ["{python}", "-m", "dap.roles", "--role", "leader", "--port", "{port}", "--state-dir", "{state_dir}"]
[[helper]]
name = "reference"
command = ["{python}", "-m", "dap.roles", "--role", "helper", "--port", "{port}", "--state-dir", "{state_dir}"]
[[client]]
name = "reference"
command = ["{python}", "-m", "dap.roles", "--role", "client", "--port", "{port}", "--state-dir", "{state_dir}"]
[[collector]]
name = "reference"
command = ["{python}", "-m", "dap.roles", "--role", "collector", "--port", "{port}", "--state-dir", "{state_dir}"]
"""


def test_shipped_images_default_to_reference_and_list_public_images() -> None:
    im = load_images()
    assert im.path == DEFAULT_IMAGES
    for role in ROLES:
        assert im.default(role).name == "reference"
        assert im.default(role).kind == "local+docker"  # a command and the reference image
    janus = im.select("leader", "janus")
    assert janus.kind == "local+docker"  # a user's build through harness/stack/janus.py, or the image
    assert janus.command[:3] == ("{python}", "-m", "harness.stack.janus")
    # the Janus client/collector: locally our peer over the published crates, or Janus's image
    assert im.select("client", "janus").kind == im.select("collector", "janus").kind == "local+docker"
    assert janus.image.startswith("us-west2-docker.pkg.dev/divviup-artifacts-public/janus/janus_interop_aggregator:0.7.")
    assert int(janus.image.rsplit(".", 1)[1]) >= 12
    assert "divviup_ts_interop_client" in im.select("client", "divviup-ts").image
    assert im.select("helper", "daphne").kind == "docker"
    cmd = im.default("leader").render(python="PY", port="1234", host="127.0.0.1", state_dir="/s", repo="/r")
    assert cmd[:3] == ["PY", "-m", "dap.roles"] and "1234" in cmd and "/s" in cmd
    # the catalogue's delay-beyond-timeout relies on the Leader's 1 s request timeout
    assert cmd[cmd.index("--request-timeout") + 1] == "1"


def test_runner_string_form_is_read() -> None:
    text = "\n".join(f'{r} = ["example.org/x/{r}_img:1.2"]' for r in ROLES)
    im = parse_images(text, "runner.toml")
    e = im.default("leader")
    assert (e.name, e.image, e.kind) == ("leader_img:1.2", "example.org/x/leader_img:1.2", "docker")


@pytest.mark.parametrize(("text", "needle"), [
    (LOCAL + "\n[[leader]\nname = 'x'\n",                                          # TOML syntax, line
     f"bad.toml:{(LOCAL + chr(10)).count(chr(10)) + 1}: Expected"),
    (LOCAL + "\n[[leader]]\nname = \"other\"\ndoc = \"neither\"\n",
     "leader.other: needs 'command' (local backend) or 'image' (docker backend), or both"),
    (LOCAL.replace('"--role", "client", "--port", "{port}"', '"--role", "client", "--port", "8080"'),
     "client.reference.command: must contain {port}"),
    (LOCAL.replace("{state_dir}\"]\n[[client]]", "{statedir}\"]\n[[client]]"), "helper.reference.command: bad placeholder"),
    (LOCAL + "\n[[leader]]\nname = \"reference\"\nimage = \"y\"\n", "leader.name: duplicate name 'reference'"),
    (LOCAL + "\n[[leader]]\nname = \"other\"\nimage = \"y\"\ncolour = 1\n", "leader[1].colour: unknown key"),
    (LOCAL.split("[[collector]]")[0], "collector: missing"),
    (LOCAL + "\n[[observer]]\nname = 'x'\nimage = 'y'\n", "observer: unknown role"),
])
def test_bad_images_give_one_line_with_file_and_key(text: str, needle: str) -> None:
    with pytest.raises(ImagesError) as ei:
        parse_images(text, "bad.toml")
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith("bad.toml"), msg
    assert needle in msg, msg


def test_unknown_key_error_names_its_line() -> None:
    text = LOCAL + "\n[[leader]]\nname = \"other\"\nimage = \"y\"\ncolour = 1\n"
    with pytest.raises(ImagesError) as ei:
        parse_images(text, "f.toml")
    assert ei.value.line == text.splitlines().index("colour = 1") + 1


def test_select_unknown_name_lists_near_names(tmp_path: Path) -> None:
    im = load_images()
    with pytest.raises(ImagesError, match=r"no leader implementation named 'refrence'; did you mean reference"):
        im.select("leader", "refrence")
    missing = tmp_path / "nope.toml"
    with pytest.raises(ImagesError, match=r"nope.toml: file not found"):
        load_images(missing)


def test_local_backend_refuses_container_entries_in_one_line(tmp_path: Path) -> None:
    im = load_images()
    backend = LocalBackend(tmp_path)
    try:
        with pytest.raises(UsageError, match="needs the docker backend"):
            backend.start("helper", im.select("helper", "daphne"))
        assert backend.procs == {}
    finally:
        backend.close()


def test_an_entry_that_needs_the_environment_says_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    monkeypatch.delenv("JANUS_BIN_DIR", raising=False)
    monkeypatch.delenv("JANUS_SRC", raising=False)
    janus = load_images().select("leader", "janus")
    assert janus.needs_env == ("JANUS_BIN_DIR", "JANUS_SRC") and janus.missing("local") == "JANUS_BIN_DIR not set"
    assert janus.missing("local", {"JANUS_BIN_DIR": "/x", "JANUS_SRC": "/y"}) is None
    assert janus.missing("docker") is None
    assert main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "janus" in listed and "[local: cannot run here: JANUS_BIN_DIR not set]" in listed
    assert main(["--fault", "duplicate-report", "--impl", "leader=janus", "--artifacts", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "faultrun: error: leader 'janus' cannot run here: JANUS_BIN_DIR not set (docs/images.md)"
    with pytest.raises(ImagesError, match="needs_env: must be an array"):
        parse_images('[[leader]]\nname = "x"\ncommand = ["a", "{port}"]\nneeds_env = "JANUS"\n')
