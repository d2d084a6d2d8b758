"""images.toml parsing: the shipped file, the runner's string form, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ImagesError, UsageError
from harness.stack.backend import LocalBackend
from harness.stack.images import (
    DEFAULT_IMAGES,
    ROLES,
    VDAF_TYPES,
    Timing,
    load_images,
    not_applicable,
    parse_images,
)

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


# --- vdafs: what an implementation supports; timing: how fast a Leader works ------------------------------


def _with(role_block: str, extra: str) -> str:
    """LOCAL with ``extra`` lines added to the first entry of ``role_block`` (e.g. "[[leader]]")."""
    head, _, tail = LOCAL.partition(role_block + "\nname = \"reference\"\n")
    return f'{head}{role_block}\nname = "reference"\n{extra}\n{tail}'


def test_vdafs_declare_what_an_entry_supports_absent_means_all() -> None:
    im = parse_images(_with("[[leader]]", 'vdafs = ["Prio3Count", "Prio3Histogram", "Prio3Count"]'), "v.toml")
    leader = im.default("leader")
    assert leader.vdafs == ("Prio3Count", "Prio3Histogram")  # in order, repeats once
    assert leader.supports("Prio3Count") and not leader.supports("Poplar1")
    helper = im.default("helper")
    assert helper.vdafs is None and all(helper.supports(t) for t in VDAF_TYPES)


@pytest.mark.parametrize(("extra", "needle"), [
    ('vdafs = ["Poplar2"]', "leader.reference.vdafs: unknown VDAF type 'Poplar2' (known: Prio3Count,"),
    ('vdafs = []', "leader.reference.vdafs: must be a non-empty array of VDAF types"),
    ('vdafs = "Prio3Count"', "leader.reference.vdafs: must be a non-empty array of VDAF types"),
    ('timing = { job_interval_ms = 0 }', "leader.reference.timing.job_interval_ms: must be a positive integer"),
    ('timing = { job_interval_ms = 1.5 }', "leader.reference.timing.job_interval_ms: must be a positive integer"),
    ('timing = { job_intervall_ms = 100 }', "leader.reference.timing.job_intervall_ms: unknown key (known: "
                                            "job_interval_ms, request_timeout_ms, give_up_ms)"),
    ('timing = 5', "leader.reference.timing: must be a table of job_interval_ms"),
])
def test_bad_vdafs_or_timing_give_one_line_with_key(extra: str, needle: str) -> None:
    with pytest.raises(ImagesError) as ei:
        parse_images(_with("[[leader]]", extra), "bad.toml")
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("bad.toml:") and needle in msg, msg


def test_timing_is_a_leaders_and_defaults_to_slow() -> None:
    with pytest.raises(ImagesError, match="helper.reference.timing: only a Leader's timing matters"):
        parse_images(_with("[[helper]]", "timing = { job_interval_ms = 100 }"), "t.toml")
    im = parse_images(_with("[[leader]]", "timing = { job_interval_ms = 150, give_up_ms = 9000 }"), "t.toml")
    assert im.default("leader").timing == Timing(job_interval_ms=150, request_timeout_ms=1000, give_up_ms=9000)
    assert parse_images(LOCAL).default("leader").timing == Timing() == Timing(1000, 1000, 20_000)


def test_timing_sets_pauses_and_scenario_timeouts() -> None:
    ref, janus = Timing(200, 1000, 8000), Timing(2000, 1000, 24_000)
    # a Pause(ms=300, job_intervals=1) between two upload halves: 0.5 s for the reference, 2.3 s for Janus
    assert ref.pause_s(300, 1) == pytest.approx(0.5) and janus.pause_s(300, 1) == pytest.approx(2.3)
    assert janus.pause_s(200) == pytest.approx(0.2)  # a plain pause stays what it says
    # the per-scenario timeout: the base, or two give-ups + 10 s when the Leader needs more
    assert ref.scenario_timeout_s(60) == 60 and ref.scenario_timeout_s(20) == 26
    assert janus.scenario_timeout_s(60) == 60 and janus.scenario_timeout_s(30) == 58


def test_shipped_entries_declare_vdafs_and_leader_timing() -> None:
    """Janus 0.7's interop binaries and @divviup/dap have no Poplar1; the reference roles and
    the Janus peer (prio 0.16) have every type. The Leaders' timings: the reference Leader's
    command flags, and Janus's launcher defaults (docs/janus.md)."""
    from faults.catalogue import LEADER_REQUEST_TIMEOUT_MS

    im = load_images()
    prio3 = ("Prio3Count", "Prio3Sum", "Prio3SumVec", "Prio3Histogram")
    for role in ("leader", "helper"):
        assert im.select(role, "janus").vdafs == prio3
        assert im.select(role, "reference").vdafs is None
    assert im.select("client", "divviup-ts").vdafs == prio3
    assert im.select("client", "janus").vdafs is None and im.select("collector", "janus").vdafs is None
    ref = im.select("leader", "reference")
    cmd = ref.command
    assert ref.timing.job_interval_ms == round(float(cmd[cmd.index("--job-interval") + 1]) * 1000)
    assert ref.timing.request_timeout_ms == round(float(cmd[cmd.index("--request-timeout") + 1]) * 1000)
    assert ref.timing.give_up_ms == round(float(cmd[cmd.index("--retry-budget") + 1]) * 1000)
    janus = im.select("leader", "janus")
    cmd = janus.command
    assert janus.timing.request_timeout_ms == int(cmd[cmd.index("--request-timeout-s") + 1]) * 1000
    # a new task: found within one interval, first pass after up to one more
    assert janus.timing.job_interval_ms == 2 * int(cmd[cmd.index("--job-interval-ms") + 1])
    attempts, lease = int(cmd[cmd.index("--max-attempts") + 1]), int(cmd[cmd.index("--lease-s") + 1])
    assert janus.timing.give_up_ms >= attempts * (lease + 1) * 1000
    # the catalogue's delay-beyond-timeout faults hold an answer longer than every Leader's timeout
    for e in im.entries["leader"]:
        assert e.timing.request_timeout_ms < LEADER_REQUEST_TIMEOUT_MS + 300, e.name


def test_not_applicable_names_every_role_that_lacks_the_vdaf() -> None:
    im = load_images()
    impl = {r: im.select(r, "janus") for r in ("leader", "helper", "client", "collector")}
    assert not_applicable(impl, "Prio3Histogram") is None
    assert not_applicable(impl, "Poplar1") == "leader janus and helper janus do not support Poplar1 (images.toml vdafs)"
    impl["helper"] = im.select("helper", "reference")
    assert not_applicable(impl, "Poplar1") == "leader janus does not support Poplar1 (images.toml vdafs)"
    impl = {"leader": im.select("leader", "reference"), "client": im.select("client", "divviup-ts")}
    assert not_applicable(impl, "Poplar1") == "client divviup-ts does not support Poplar1 (images.toml vdafs)"
