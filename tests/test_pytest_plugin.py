"""harness.pytest_plugin, run in a separate pytest process (pytester) against the reference
implementation on a two-fault subset."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_own="def test_own():\n    assert True\n")
    return pytester.runpytest_subprocess("-p", "harness.pytest_plugin", "-p", "no:cacheprovider", "-p", "no:xdist",
                                         "-p", "no:randomly", *args, timeout=240)


def test_catalogue_subset_runs_as_tests_with_junit(pytester: pytest.Pytester, tmp_path: Path) -> None:
    junit = tmp_path / "out.xml"
    arts = tmp_path / "arts"
    res = _run(pytester, "--dap-images", str(REPO / "images.toml"), "--dap-impl", "leader=reference,helper=reference",
               "--dap-faults", "duplicate-report,bad-leader-token", "--dap-artifacts", str(arts),
               f"--junitxml={junit}", "-v")
    res.assert_outcomes(passed=3)
    res.stdout.fnmatch_lines(["*dap-catalogue::duplicate-report PASSED*", "*dap-catalogue::bad-leader-token PASSED*"])
    cases = {c.get("name") for c in ET.parse(junit).getroot().iter("testcase")}
    assert {"duplicate-report", "bad-leader-token", "test_own"} <= cases  # junit keeps the last "::" part
    # each fault wrote a run directory into the session's stack artifacts
    assert (arts / "duplicate-report" / "report.json").is_file()
    assert (arts / "bad-leader-token" / "report.json").is_file()


def test_a_buggy_implementation_fails_its_item_and_junit_says_why(pytester: pytest.Pytester, tmp_path: Path) -> None:
    # the reference Leader with a test-only bug switch: collection-job PUT skips the token check
    junit = tmp_path / "out.xml"
    res = _run(pytester, "--dap-images", str(REPO / "tests" / "data" / "bug_images.toml"),
               "--dap-impl", "leader=bug-leader-collect-no-auth", "--dap-faults", "bad-collector-token",
               "--dap-artifacts", str(tmp_path / "arts"), f"--junitxml={junit}")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*bad-collector-token: VIOLATION*", "*VIOLATED*auth*"])
    (case,) = [c for c in ET.parse(junit).getroot().iter("testcase") if c.get("name") == "bad-collector-token"]
    assert "VIOLATION" in case.find("failure").get("message", "") + (case.find("failure").text or "")


def test_an_outcome_that_misses_its_expectation_fails_its_item(pytester: pytest.Pytester, tmp_path: Path) -> None:
    # a stored scenario that expects the target to refuse, run where nothing goes wrong: the
    # pass misses the expectation, and the item fails (it used to be reported and then passed)
    import json

    from faults.catalogue import CATALOGUE
    from faults.plan import Plan
    from faults.scenario import Expectation, Outcome, to_dict

    base = CATALOGUE["duplicate-report"]
    scenario = base.__class__(name="expects-refusal", plan=Plan(seed=1), workload=base.workload,
                              expect=Expectation(outcome=Outcome.CLEAN_FAILURE))
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(to_dict(scenario)))
    junit = tmp_path / "out.xml"
    res = _run(pytester, "--dap-scenario", str(path), "--dap-artifacts", str(tmp_path / "arts"),
               f"--junitxml={junit}", "-v")
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*dap-scenario::expects-refusal FAILED*",
                              "*expects-refusal: PASS (expected clean_failure; exit 1)*",
                              "*expected a clean failure, but the run passed*"])
    (case,) = [c for c in ET.parse(junit).getroot().iter("testcase") if c.get("name") == "expects-refusal"]
    assert case.find("failure") is not None


def test_a_bad_scenario_file_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    res = _run(pytester, "--dap-scenario", str(bad))
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([f"*--dap-scenario {bad}:*"])


def test_a_one_example_campaign_item_passes_on_the_reference(pytester: pytest.Pytester, tmp_path: Path) -> None:
    res = _run(pytester, "--dap-faults", "duplicate-report", "--dap-campaign", "1", "--dap-seed", "0",
               "--dap-timeout", "15", "--dap-artifacts", str(tmp_path / "arts"), "-v")
    res.assert_outcomes(passed=3)
    res.stdout.fnmatch_lines(["*dap-campaign::seed0 PASSED*"])
    assert list((tmp_path / "arts" / "campaign-seed0" / "runs").iterdir())  # the campaign ran there


def test_without_dap_options_the_plugin_adds_nothing(pytester: pytest.Pytester) -> None:
    res = _run(pytester)
    res.assert_outcomes(passed=1)


def test_usage_errors_are_reported_before_anything_starts(pytester: pytest.Pytester) -> None:
    res = _run(pytester, "--dap-faults", "no-such-fault")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*--dap-faults: no such fault 'no-such-fault'*"])
    res = _run(pytester, "--dap-impl", "leader")
    assert res.ret == pytest.ExitCode.USAGE_ERROR


def test_the_docker_backend_option_reaches_the_stack(pytester: pytest.Pytester, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # No engine listens on this socket: the item fails with the docker backend's one-line reason,
    # which proves --dap-backend was handed to Stack.start (the local backend would pass).
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    res = _run(pytester, "--dap-faults", "duplicate-report", "--dap-backend", "docker",
               "--dap-artifacts", str(tmp_path / "arts"))
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(["*no Docker engine answers at*"])
