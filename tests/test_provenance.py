"""code.json: the identity of the code that produced a run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.report import provenance

REPO = Path(__file__).resolve().parent.parent


def _tree(tmp_path: Path) -> Path:
    for pkg in provenance.SOURCE_PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(f"# {pkg}\n")
    return tmp_path


def test_sources_digest_changes_with_any_source_byte_and_path(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    before = provenance.sources_digest(root)
    assert provenance.sources_digest(root) == before  # deterministic
    (root / "dap" / "__init__.py").write_text("# dap \n")
    edited = provenance.sources_digest(root)
    assert edited != before
    (root / "dap" / "__init__.py").rename(root / "dap" / "other.py")
    assert provenance.sources_digest(root) != edited  # same bytes, other path


def test_sources_digest_ignores_non_python_files(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    before = provenance.sources_digest(root)
    (root / "harness" / "notes.txt").write_text("not code")
    assert provenance.sources_digest(root) == before


def test_code_identity_of_this_checkout() -> None:
    provenance.code_identity.cache_clear()  # computed now, from the tree as it is now
    ident = provenance.code_identity()
    assert ident["sources_sha256"] == provenance.sources_digest(REPO)
    if shutil.which("git") and (REPO / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        assert ident["git_commit"] == head
        assert isinstance(ident["git_dirty"], bool)
    else:
        pytest.fail("the test suite runs from a git checkout (CI clones the repo)")


def test_run_dir_holds_code_json(tmp_path: Path) -> None:
    from faults.plan import Plan
    from faults.scenario import Scenario, TaskSpec
    from harness.record import RunRecord
    from harness.report.rundir import write_run_dir

    scenario = Scenario(name="probe", plan=Plan())
    record = RunRecord(scenario="probe", task_id="AAAA", task=TaskSpec(), base_time=0, history_since_seq=0)
    write_run_dir(tmp_path, scenario=scenario, record=record, history=(), report=None, log_slices={}, flows=None)
    assert json.loads((tmp_path / "code.json").read_text()) == provenance.code_identity()
