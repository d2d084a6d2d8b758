"""The faultrun CLI: one line and exit 2 for every user mistake; a real run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from process_fixtures import procs_mentioning

from faults.workload import (
    apply_overrides,
    counted_indices,
    expected_aggregate,
    measurement_for,
    parse_vdaf,
    vdaf_for,
    with_reports,
)
from harness.cli import main
from harness.stack.images import load_images

FAULTRUN = Path(sys.executable).with_name("faultrun")
REPO = Path(__file__).resolve().parent.parent


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("faultrun: error: ")
    return lines[0]


@pytest.mark.parametrize(("argv", "needle"), [
    (["--fault", "dupliate-report"], "did you mean duplicate-report"),
    (["--fault", "zzzzzzzzzz"], "faultrun --list shows them"),
    (["--all", "--fault", "duplicate-report"], "--all runs the whole catalogue"),
    (["--list", "--all"], "--list cannot be combined"),
    ([], "nothing to run"),
    (["--fault", "duplicate-report", "--vdaf", "Prio3Histo"], "did you mean Prio3Histogram"),
    (["--fault", "duplicate-report", "--vdaf", "Prio3Histogram:length=4"], "holds 4 reports, the workload uploads 8"),
    (["--fault", "duplicate-report", "--vdaf", "Prio3Histogram:length=x"], "length: expected an integer"),
    (["--fault", "duplicate-report", "--vdaf", '{"type": 3'], "--vdaf: not valid JSON"),
    (["--fault", "duplicate-report", "--reports", "0"], "--reports: must be >= 1"),
    (["--fault", "duplicate-report", "--query-type", "hourly"], "invalid choice: 'hourly'"),
    (["--fault", "duplicate-report", "--impl", "leader"], "expected ROLE=NAME"),
    (["--fault", "duplicate-report", "--impl", "auditor=reference"], "unknown role"),
    (["--fault", "duplicate-report", "--impl", "leader=refrence"], "did you mean reference"),
    (["--fault", "duplicate-report", "--impl", "helper=daphne"], "needs the docker backend"),
    (["--fault", "duplicate-report", "--pull"], "--pull needs --backend docker"),
    (["--fault", "duplicate-report", "--timeout", "-1"], "--timeout: must be > 0"),
    (["--fault", "skip-step", "--vdaf", "count"], "--fault skip-step --vdaf count: a Poplar1 tree walk"),
    (["--plan", "/nonexistent/plan.toml"], "file not found"),
    (["analyze", "/nonexistent/dir"], "not a directory"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_user_mistakes_exit_2_with_one_line(argv: list[str], needle: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*argv, "--artifacts", str(tmp_path)] if argv and argv[0] != "analyze" else argv)
    line = _err_line(capsys)
    assert code == 2, line
    assert needle in line, line
    assert not list(tmp_path.glob("*/_stack")), "no stack may start for a usage error"


def test_bad_plan_names_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "p.toml"
    plan.write_text('version = 1\nseed = 1\n[[rules]]\nid = "slow"\n[rules.action]\ntype = "delay"\n')
    assert main(["--plan", str(plan), "--artifacts", str(tmp_path)]) == 2
    line = _err_line(capsys)
    assert f"--plan {plan}: rule 'slow'" in line and "delay_ms" in line


def test_bad_images_names_file_line_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images.toml"
    text = (REPO / "images.toml").read_text().replace('name = "daphne"', 'name = "daphne"\nflavour = "x"')
    images.write_text(text)
    assert main(["--fault", "duplicate-report", "--images", str(images), "--artifacts", str(tmp_path)]) == 2
    line = _err_line(capsys)
    lineno = text.splitlines().index('flavour = "x"') + 1
    assert f"{images}:{lineno}: helper[2].flavour: unknown key" in line


def test_list_prints_faults_and_implementations(capsys: pytest.CaptureFixture[str]) -> None:
    from faults.catalogue import CATALOGUE
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in CATALOGUE:
        assert f"  {name} " in out
    assert "leader    reference" in out and "janus" in out
    assert main(["--list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {f["name"] for f in data["faults"]} == set(CATALOGUE)


def test_subprocess_unknown_fault_and_bad_vdaf_no_traceback() -> None:
    r = subprocess.run([str(FAULTRUN), "--fault", "duplicate-reprt"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        r.stderr.strip()] and "did you mean duplicate-report" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([str(FAULTRUN), "--fault", "duplicate-report", "--vdaf", "Poplar2"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "unknown VDAF 'Poplar2'" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([str(FAULTRUN), "--fault", "duplicate-report", "--vdaf", "poplar1:bits=0"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "vdaf.bits" in r.stderr and "Traceback" not in r.stderr


def test_subprocess_fault_run_end_to_end_then_analyze(tmp_path: Path) -> None:
    junit = tmp_path / "j.xml"
    r = subprocess.run([str(FAULTRUN), "--fault", "duplicate-report", "--artifacts", str(tmp_path / "a"), "--json",
                        "--junit", str(junit), "--seed", "3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    (res,) = data["results"]
    assert res["scenario"] == "duplicate-report" and res["verdict_class"] == "pass" and res["exit_code"] == 0
    run_dir = Path(res["run_dir"])
    assert (run_dir / "report.json").is_file() and junit.is_file()
    faults = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()
              if json.loads(x)["event"] == "fault"]
    assert faults, "the duplicate-report plan must have fired"
    assert json.loads((run_dir / "scenario.json").read_text())["plan"]["seed"] == 3
    r = subprocess.run([str(FAULTRUN), "analyze", str(run_dir), "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["verdict_class"] == "pass"


def test_overrides_rescale_workload_and_vdaf() -> None:
    from faults.catalogue import CATALOGUE
    s = CATALOGUE["duplicate-report"]
    s2 = apply_overrides(s, vdaf=None, reports=20, query_type="fixed_size")
    from faults.workload import upload_count
    assert upload_count(s2.workload) == 20
    assert s2.workload.task.vdaf.length == 20 and s2.workload.task.query_type == "fixed_size"
    s3 = apply_overrides(s, vdaf="sum", reports=None, query_type=None)
    assert s3.workload.task.vdaf.type == "Prio3Sum" and s3.workload.task.vdaf.bits == 8


def test_workload_functions() -> None:
    h = parse_vdaf("Prio3Histogram:length=6,chunk_length=2", 6)
    assert [measurement_for(h, i) for i in range(3)] == ["0", "1", "2"]
    assert expected_aggregate(h, [0, 2, 2]) == ["1", "0", "2", "0", "0", "0"]
    assert counted_indices(h, ["1", "0", "2", "0", "0", "0"]) == {0: 1, 2: 2}
    s = vdaf_for("Prio3Sum", 4)
    assert [measurement_for(s, i) for i in range(4)] == ["1", "2", "4", "8"]
    assert expected_aggregate(s, [0, 3]) == "9" and counted_indices(s, "9") == {0: 1, 3: 1}
    v = vdaf_for("Prio3SumVec", 3)
    assert measurement_for(v, 1) == ["0", "1", "0"] and expected_aggregate(v, [1, 1]) == ["0", "2", "0"]
    c = vdaf_for("count", 3)
    assert measurement_for(c, 2) == "1" and expected_aggregate(c, [0, 1]) == "2" and counted_indices(c, "2") is None
    from faults.errors import WorkloadError
    with pytest.raises(WorkloadError, match="capacity 6"):
        measurement_for(h, 6)
    from faults.scenario import Collect, Pause, Upload, WorkloadSpec
    wl = WorkloadSpec(steps=(Upload(count=4), Pause(), Upload(count=4), Collect()))
    assert [s.count for s in with_reports(wl, 5).steps if isinstance(s, Upload)] == [2, 3]


def test_sigint_stops_every_process(tmp_path: Path) -> None:
    import signal
    import time

    plan = tmp_path / "slow.toml"
    plan.write_text('version = 1\nseed = 1\n[[rules]]\nid = "down"\n[rules.match]\nlink = "leader->helper"\n'
                    '[rules.action]\ntype = "respond"\nstatus = 503\n')
    art = tmp_path / "art"
    # SIGINT ignored in the child, as for a background job of a non-interactive shell (CI):
    # faultrun must still install its own handler.
    p = subprocess.Popen([str(FAULTRUN), "--plan", str(plan), "--artifacts", str(art), "--timeout", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (art / "slow").exists():  # the scenario has started
            time.sleep(0.05)
        assert (art / "slow").exists()
        assert len(procs_mentioning(str(art))) >= 5  # four roles + mitmdump
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
        # If faultrun failed to clean up, do it here so a failing test leaves nothing running
        # (the assertion below still fails).
        settle = time.monotonic() + 2
        while (leftovers := procs_mentioning(str(art))) and time.monotonic() < settle:
            time.sleep(0.1)
        for entry in leftovers:
            try:
                os.kill(int(entry.split(":", 1)[0]), signal.SIGKILL)
            except OSError:
                pass
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not leftovers


def test_a_reader_that_stops_early_changes_neither_the_run_nor_its_exit_status(tmp_path: Path) -> None:
    # `faultrun ... | head -1`: rich's default would exit 1 on the broken pipe, mid-run.
    p = subprocess.Popen([str(FAULTRUN), "--fault", "duplicate-report", "--artifacts", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stdout.readline()
        p.stdout.close()
        err = p.stderr.read()
        p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert "duplicate-report" in first
    assert p.returncode == 0, err
    assert (tmp_path / "duplicate-report" / "report.json").is_file()


# --- not applicable: a scenario whose VDAF a selected implementation lacks (images.toml vdafs) ---------------


def _prio3_only_images(tmp_path: Path) -> Path:
    """The shipped images.toml plus a Leader ``prio3-only``: the reference Leader, declared
    without Poplar1 (as the Janus entries are), so no Janus build is needed."""
    text = (REPO / "images.toml").read_text()
    ref = load_images().select("leader", "reference")
    cmd = ", ".join(json.dumps(c) for c in ref.command)
    text += (f'\n[[leader]]\nname = "prio3-only"\ndoc = "the reference Leader without Poplar1"\ncommand = [{cmd}]\n'
             'vdafs = ["Prio3Count", "Prio3Sum", "Prio3SumVec", "Prio3Histogram"]\n'
             "timing = { job_interval_ms = 200, request_timeout_ms = 1000, give_up_ms = 8000 }\n")
    path = tmp_path / "images.toml"
    path.write_text(text)
    return path


def test_not_applicable_scenarios_are_left_out_in_one_line_each(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    images = _prio3_only_images(tmp_path)
    out_dir = tmp_path / "run"
    code = main(["--fault", "duplicate-report", "--fault", "skip-step", "--impl", "leader=prio3-only",
                 "--images", str(images), "--artifacts", str(out_dir)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [x for x in out.splitlines() if "not applicable" in x]
    assert lines == ["skip-step: not applicable: leader prio3-only does not support Poplar1 (images.toml vdafs)"]
    cells = {c["scenario"]: c for c in json.loads((out_dir / "matrix.json").read_text())["cells"]}
    assert cells["duplicate-report"]["verdict_class"] == "pass"
    na = cells["skip-step"]
    assert (na["verdict_class"], na["exit_code"], na["run_dir"]) == ("n/a", 0, None)
    assert na["not_applicable"] == "leader prio3-only does not support Poplar1 (images.toml vdafs)"
    assert not list(out_dir.glob("skip-step*")), "an n/a scenario gets no run directory"
    html = (out_dir / "matrix.html").read_text()
    assert 'data-class="n/a"' in html and "v-na" in html and "(unexpected)" not in html
    assert "│ skip-step" in out and "n/a" in out  # the terminal table's row


def test_only_not_applicable_scenarios_start_nothing_and_exit_0(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    images = _prio3_only_images(tmp_path)
    code = main(["--fault", "skip-step", "--impl", "leader=prio3-only", "--images", str(images), "--artifacts",
                 str(tmp_path / "run"), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    assert "skip-step: not applicable: leader prio3-only does not support Poplar1" in captured.err
    data = json.loads(captured.out)
    assert data["results"] == [] and data["not_applicable"][0]["scenario"] == "skip-step"
    assert not (tmp_path / "run").exists(), "nothing ran: no stack, no artifacts"


def test_matrix_shows_not_applicable_cells_and_keeps_the_exit_code(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    images = _prio3_only_images(tmp_path)
    out_dir = tmp_path / "m"
    code = main(["--matrix", "--fault", "skip-step", "--impl", "leader=reference,prio3-only", "--impl",
                 "helper=reference", "--impl", "client=reference", "--impl", "collector=reference",
                 "--images", str(images), "--artifacts", str(out_dir), "--timeout", "30"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "  skip-step: not applicable: leader prio3-only does not support Poplar1 (images.toml vdafs)" in out
    assert "1 runs and 1 not applicable" in out
    cells = json.loads((out_dir / "matrix.json").read_text())["cells"]
    by_leader = {c["impl"]["leader"]: c for c in cells}
    assert by_leader["reference"]["verdict_class"] == "pass"
    assert (by_leader["prio3-only"]["verdict_class"], by_leader["prio3-only"]["exit_code"]) == ("n/a", 0)
    assert not any(p.name.startswith("client=reference,leader=prio3-only") for p in out_dir.iterdir()), \
        "a combination with nothing to run starts no stack"
    assert 'data-class="n/a"' in (out_dir / "matrix.html").read_text()


def test_list_marks_not_applicable_faults_for_the_selected_implementations(
        capsys: pytest.CaptureFixture[str]) -> None:
    from faults.catalogue import CATALOGUE
    poplar1 = [n for n, s in CATALOGUE.items() if s.workload.task.vdaf.type == "Poplar1"]
    assert main(["--list", "--impl", "all=janus"]) == 0  # no Janus build needed to list
    out = capsys.readouterr().out
    for name in CATALOGUE:
        line = next(x for x in out.splitlines() if x.startswith(f"  {name} "))
        assert ("n/a (leader janus, helper janus: no Poplar1 (images.toml vdafs))" in line) == (name in poplar1), line
    assert "[vdafs: Prio3Count, Prio3Sum, Prio3SumVec, Prio3Histogram]" in out
    assert main(["--list", "--json", "--impl", "leader=janus"]) == 0
    data = json.loads(capsys.readouterr().out)
    na = {f["name"]: f["not_applicable"] for f in data["faults"] if "not_applicable" in f}
    assert set(na) == set(poplar1) and all("leader janus" in x for x in na.values())
    assert data["implementations"]["leader"][1]["vdafs"] == ["Prio3Count", "Prio3Sum", "Prio3SumVec",
                                                             "Prio3Histogram"]
    assert data["implementations"]["leader"][0]["vdafs"] is None
    # --vdaf count: the Poplar1 tree walks cannot take a Prio3 VDAF
    assert main(["--list", "--vdaf", "count"]) == 0
    out = capsys.readouterr().out
    marked = [n for n in CATALOGUE if f"  {n} " in out and "n/a (--vdaf count" in
              next(x for x in out.splitlines() if x.startswith(f"  {n} "))]
    assert marked == poplar1
    assert main(["--list"]) == 0 and "n/a" not in capsys.readouterr().out.split("implementations")[0]


def test_a_poplar1_walk_under_a_prio3_vdaf_is_not_applicable() -> None:
    from faults.catalogue import CATALOGUE
    from faults.errors import NotApplicable, WorkloadError
    with pytest.raises(NotApplicable) as ei:
        apply_overrides(CATALOGUE["skip-step"], vdaf="Prio3Count", reports=None, query_type=None)
    assert isinstance(ei.value, WorkloadError)  # asked for by name: a usage error (exit 2)
    assert str(ei.value) == "a Poplar1 tree walk (aggregation parameters, two rounds), not a Prio3Count workload"
    # a Prio3 entry under Poplar1 keeps its shape (--vdaf poplar1), and Poplar1 under Poplar1 is fine
    assert apply_overrides(CATALOGUE["duplicate-report"], vdaf="poplar1", reports=None,
                           query_type=None).workload.task.vdaf.type == "Poplar1"
    assert apply_overrides(CATALOGUE["skip-step"], vdaf="poplar1:bits=4", reports=None,
                           query_type=None).workload.task.vdaf.type == "Poplar1"
