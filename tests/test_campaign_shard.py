"""Campaign shards, the shared example database and ``faultrun merge`` on the stand-in stack.

The stand-in (:class:`test_campaign.FakeStack`) runs nothing: its target fails any plan that
duplicates a ``leader->helper`` request while 3+ reports are uploaded. The real stack, real
processes and a real ``redis-server`` are ``tests/test_campaign_scale.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_campaign import FakeStack, _buggy

from harness.campaign import driver
from harness.campaign.driver import run_campaign
from harness.campaign.exampledb import SharedDatabase, describe_db
from harness.campaign.merge import merge_campaigns
from harness.campaign.sharding import MAX_SHARDS, Shard, parse_shard, partition, scenario_digest
from harness.check.verdict import VerdictClass
from harness.cli.main import main


def _rows(artifacts: Path) -> list[dict]:
    return [json.loads(x) for x in (artifacts / "examples.jsonl").read_text().splitlines()]


def _write_summary(result, root: Path) -> None:
    (root / "campaign.json").write_text(json.dumps(result.to_dict(), indent=2))


def test_shard_values() -> None:
    assert parse_shard("2/5") == Shard(2, 5) and str(Shard(2, 5)) == "2/5"
    for bad in ("5/5", "-1/3", "1/0", "x", "1-3", f"0/{MAX_SHARDS + 1}"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    # worker i of W inside shard K/N is sub-shard K*W + i of N*W: the W sub-shards tile K
    assert Shard(1, 3).sub(1, 2) == Shard(3, 6)
    assert sorted(Shard(k, 3).sub(i, 2).index for k in range(3) for i in range(2)) == list(range(6))


def test_three_shards_run_disjoint_reproducible_slices(tmp_path: Path) -> None:
    stacks, digests = [], []
    for k in range(3):
        stack = FakeStack(verdict=lambda s: VerdictClass.PASS)
        res = run_campaign(stack, seed=4, examples=12, artifacts=tmp_path / f"s{k}", shard=Shard(k, 3))
        assert res.examples_run == 12 and res.shard == Shard(k, 3)
        # every generated example is of this shard's workload partition, none twice
        assert all(partition(s.workload, 3) == k for s in stack.runs)
        rows = _rows(tmp_path / f"s{k}")
        assert [r["digest"] for r in rows] == [scenario_digest(s) for s in stack.runs]
        assert all(r["phase"] == "generate" for r in rows) and len({r["digest"] for r in rows}) == 12
        stacks.append(stack)
        digests.append({r["digest"] for r in rows})
    assert not digests[0] & digests[1] and not digests[0] & digests[2] and not digests[1] & digests[2]
    again = FakeStack(verdict=lambda s: VerdictClass.PASS)
    run_campaign(again, seed=4, examples=12, artifacts=tmp_path / "again", shard=Shard(1, 3))
    assert again.runs == stacks[1].runs  # same seed + shard = same examples


def test_a_failure_stored_by_one_shard_is_replayed_first_by_a_later_one_and_merged_once(tmp_path: Path) -> None:
    db = tmp_path / "db"  # a directory database, as on a shared volume
    first = run_campaign(FakeStack(), seed=1, examples=300, artifacts=tmp_path / "s0", shard=Shard(0, 3),
                         example_db=db)
    assert len(first.failures) == 1 and first.failures[0].source == "generated"
    _write_summary(first, tmp_path / "s0")
    later = FakeStack()
    second = run_campaign(later, seed=1, examples=300, artifacts=tmp_path / "s1", shard=Shard(1, 3),
                          example_db=db)
    assert _buggy(later.runs[0])  # its very first run is the stored failure
    assert second.replayed == 1 and second.examples_run == 0
    (f,) = second.failures
    assert f.source == "example-db" and f.scenario.plan == first.failures[0].scenario.plan
    assert f.found_wall >= first.failures[0].found_wall
    assert _rows(tmp_path / "s1")[0]["phase"] == "replay"
    _write_summary(second, tmp_path / "s1")
    merged = merge_campaigns([tmp_path / "s0", tmp_path / "s1"])
    (m,) = merged.failures  # one shrunk plan: one failure, reported by both shards
    assert [(x["shard"], x["source"]) for x in m.found_by] == [("0/3", "generated"), ("1/3", "example-db")]
    assert m.found_by[0]["reach_s"] is None and m.found_by[1]["reach_s"] >= 0
    assert merged.missing_shards == (2,) and merged.overlap == 0 and merged.exit_code == 1
    # the same through the command line, from directories moved elsewhere
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "s0", moved / "s0")
    shutil.copytree(tmp_path / "s1", moved / "s1")
    assert main(["merge", str(moved), "--out", str(tmp_path / "out")]) == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["failures"]) == 1 and report["missing_shards"] == [2]
    run_dir = Path(report["failures"][0]["found_by"][0]["run_dir"])
    assert run_dir.is_relative_to(moved) and run_dir.is_dir()
    junit = (tmp_path / "out" / "junit.xml").read_text()
    assert junit.count("<failure") == 1 and "shard 2 (missing)" in junit
    page = (tmp_path / "out" / "report.html").read_text()
    assert "example-db" in page and "Missing shards: 2" in page


def test_a_running_shard_picks_up_a_failure_another_stored_meanwhile(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    finder = run_campaign(FakeStack(), seed=1, examples=300, artifacts=tmp_path / "a", example_db=tmp_path / "db-a")
    (found,) = finder.failures
    target = scenario_digest(found.scenario)
    db_b = tmp_path / "db-b"

    class Arrives(FakeStack):
        """Shard b's target has the bug only for that scenario; the failure reaches b's
        database while b runs its 3rd example."""

        def run_scenario(self, scenario, **kw):
            if len(self.runs) == 2:
                shutil.copytree(tmp_path / "db-a", db_b, dirs_exist_ok=True)
            return super().run_scenario(scenario, **kw)

    stack = Arrives(verdict=lambda s: VerdictClass.VIOLATION if scenario_digest(s) == target else VerdictClass.PASS)
    monkeypatch.setattr(driver, "POLL_S", 0.0)
    res = run_campaign(stack, seed=2, examples=8, artifacts=tmp_path / "b", example_db=db_b, keep_going=True)
    phases = [r["phase"] for r in _rows(tmp_path / "b")]
    assert phases[:3] == ["generate"] * 3 and "replay" in phases and phases[-1] == "generate"
    assert res.examples_run == 8 and res.replayed >= 1
    (f,) = res.failures
    assert f.source == "example-db" and scenario_digest(f.scenario) == target


def test_a_failing_database_never_ends_a_campaign(tmp_path: Path) -> None:
    class Broken:
        def __getattr__(self, name):
            def fail(*a, **k):
                raise ConnectionError("down")
            return fail

    shared = SharedDatabase(Broken(), b"k")  # type: ignore[arg-type]
    shared.save(b"k", b"v")
    assert list(shared.fetch(b"k")) == [] and shared.unseen() == []
    shared.delete(b"k", b"v")
    shared.move(b"k", b"k2", b"v")
    assert shared.errors == 5
    assert describe_db("redis://user:secret@db:6379/0") == "redis://user:***@db:6379/0"
    assert describe_db("redis://db:6379/0") == "redis://db:6379/0"


def test_merge_of_passing_shards_with_one_missing_is_infra(tmp_path: Path) -> None:
    for k in (0, 2):
        res = run_campaign(FakeStack(verdict=lambda s: VerdictClass.PASS), seed=3, examples=3,
                           artifacts=tmp_path / f"s{k}", shard=Shard(k, 3))
        _write_summary(res, tmp_path / f"s{k}")
    merged = merge_campaigns([tmp_path])
    assert merged.examples_run == 6 and not merged.failures and merged.missing_shards == (1,)
    assert merged.exit_code == 3
    assert main(["merge", str(tmp_path / "nothing-here")]) == 2


def test_replay_only_reports_every_stored_failure_and_generates_nothing(tmp_path: Path) -> None:
    """``--replay-only`` (with ``--freeze``: how a night's stored failures become regression cases)."""
    from harness.campaign.freeze import freeze, load_regression

    db = tmp_path / "db"
    found = run_campaign(FakeStack(), seed=1, examples=300, artifacts=tmp_path / "a", example_db=db)
    assert len(found.failures) == 1
    stack = FakeStack()
    res = run_campaign(stack, seed=5, artifacts=tmp_path / "b", example_db=db, replay_only=True, keep_going=True)
    assert res.examples_run == 0 and res.replayed >= 1 and len(res.failures) == 1
    (f,) = res.failures
    assert f.source == "example-db" and f.scenario.plan == found.failures[0].scenario.plan
    case = load_regression(freeze(f, tmp_path / "regressions"))
    assert case["scenario"].plan == f.scenario.plan and case["expected_verdicts"] == ["violation"]
    # nothing stored: nothing run
    empty = FakeStack()
    res = run_campaign(empty, seed=5, artifacts=tmp_path / "c", example_db=tmp_path / "db-empty", replay_only=True)
    assert res.runs == 0 and not empty.runs and res.exit_code == 0
