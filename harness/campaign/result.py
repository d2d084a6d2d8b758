"""Campaign results as values: what one run of a campaign found, and its progress."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from faults.scenario import Scenario, scenario_from_dict, to_dict
from harness.campaign.sharding import Shard
from harness.check.verdict import CheckReport, VerdictClass, check_report_from_dict, expectation_met

__all__ = ["UNEXPECTED_CLEAN_FAILURE", "VIOLATION", "CampaignFailure", "CampaignProgress", "CampaignResult",
           "InfraRun", "derive_seed", "failure_kind", "result_from_dict"]


#: :func:`failure_kind` values (labels in the summary and ``CampaignResult.verdicts``).
VIOLATION = "violation"
UNEXPECTED_CLEAN_FAILURE = "unexpected_clean_failure"


def failure_kind(scenario: Scenario, report: CheckReport) -> str | None:
    """``violation``, ``unexpected_clean_failure`` (a clean failure where the expectation
    demands ``pass``) or None (not a failure of the target)."""
    vc = report.verdict_class
    if vc == VerdictClass.VIOLATION:
        return VIOLATION
    if vc == VerdictClass.CLEAN_FAILURE and not expectation_met(vc, scenario.expect, report.optional):
        return UNEXPECTED_CLEAN_FAILURE
    return None


@attrs.frozen
class CampaignFailure:
    """One shrunk failure: the scenario, its report, where it ran and how to rerun it."""

    scenario: Scenario
    report: CheckReport
    run_dir: Path
    plan_file: Path
    scenario_file: Path
    command: str
    seed: int
    #: violated invariants + actions of the plan: failures with the same one are one bug
    signature: tuple[str, ...]
    #: hypothesis' final replay of the shrunk example failed again (False: seen once)
    reproduced: bool = True
    frozen: Path | None = None
    #: :func:`failure_kind`: ``violation`` or ``unexpected_clean_failure``
    kind: str = VIOLATION
    #: ``generated`` (this campaign's generation found it) or ``example-db`` (a stored failure,
    #: e.g. another shard's, replayed)
    source: str = "generated"
    #: wall-clock time of the first failing run of it here, and when it was written (shrunk)
    found_wall: float = 0.0
    reported_wall: float = 0.0
    #: rules the final one-rule-at-a-time pass removed after hypothesis' shrink
    #: (:mod:`harness.campaign.minimize`)
    removed_rules: tuple[str, ...] = ()
    #: fresh runs of the final scenario that failed the same way, of ``replays`` ("reproduces
    #: 2/3": a failure that depends on timing); ``replays`` 0: not replayed
    reproduces: int = 0
    replays: int = 0


@attrs.frozen
class InfraRun:
    run_dir: Path
    summary: str


@attrs.frozen
class CampaignResult:
    seed: int
    #: generated examples run (not counting shrink and replay runs)
    examples_run: int
    #: every scenario run, shrinking included
    runs: int
    failures: tuple[CampaignFailure, ...]
    #: verdict class -> runs; a clean failure the expectation did not allow is counted as
    #: ``unexpected_clean_failure`` instead of ``clean_failure``
    verdicts: Mapping[str, int]
    elapsed_s: float
    artifacts: Path
    infra_runs: tuple[InfraRun, ...] = ()
    infra_aborted: bool = False
    #: each worker's own measured time (stack start excluded; the example running at the
    #: budget's end included): rates are examples over these, never over the budget
    worker_elapsed_s: tuple[float, ...] = attrs.field(default=(), converter=tuple)
    #: the slice of the campaign this ran (:mod:`harness.campaign.sharding`); None: all of it
    shard: Shard | None = None
    #: stored failures replayed from the example database (not counted in examples_run)
    replayed: int = 0
    started_wall: float = 0.0
    finished_wall: float = 0.0
    #: the example database (a directory, or a redis URL without its password); None: none
    example_db: str | None = None
    #: example-database operations that failed (skipped; the campaign went on)
    db_errors: int = 0

    @property
    def elapsed(self) -> float:
        return self.elapsed_s

    @property
    def verdict_counts(self) -> Mapping[str, int]:
        return self.verdicts

    @property
    def exit_code(self) -> int:
        """faultrun's: 1 any failure, 3 infra stopped the campaign (or every run was infra), else 0."""
        if self.failures:
            return 1
        infra = self.verdicts.get(VerdictClass.INFRA.value, 0)
        if self.infra_aborted or (self.runs and infra == self.runs):
            return 3
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "examples_run": self.examples_run, "runs": self.runs,
            "verdicts": dict(self.verdicts), "elapsed_s": round(self.elapsed_s, 3),
            "artifacts": str(self.artifacts), "infra_aborted": self.infra_aborted, "exit_code": self.exit_code,
            "worker_elapsed_s": [round(x, 3) for x in self.worker_elapsed_s],
            "shard": None if self.shard is None else self.shard.to_dict(), "replayed": self.replayed,
            "started_wall": round(self.started_wall, 3), "finished_wall": round(self.finished_wall, 3),
            "example_db": self.example_db, "db_errors": self.db_errors,
            "infra_runs": [{"run_dir": str(r.run_dir), "summary": r.summary} for r in self.infra_runs],
            "failures": [{
                "kind": f.kind, "command": f.command, "seed": f.seed, "signature": list(f.signature),
                "reproduced": f.reproduced, "source": f.source, "found_wall": round(f.found_wall, 3),
                "reported_wall": round(f.reported_wall, 3), "removed_rules": list(f.removed_rules),
                "reproduces": f.reproduces, "replays": f.replays,
                "run_dir": str(f.run_dir), "plan_file": str(f.plan_file), "scenario_file": str(f.scenario_file),
                "summary": f.report.summary, "frozen": None if f.frozen is None else str(f.frozen),
                "scenario": to_dict(f.scenario), "report": to_dict(f.report),
            } for f in self.failures],
        }


@attrs.frozen
class CampaignProgress:
    """Passed to ``progress`` after every run."""

    examples_run: int
    runs: int
    failures: int
    verdicts: Mapping[str, int]
    phase: str  # "generate" | "shrink"
    elapsed_s: float
    last: str = ""
    worker: int = 0


def derive_seed(seed: int, index: int) -> int:
    """Worker ``index``'s seed: a stable 32-bit hash of (seed, index)."""
    return int.from_bytes(hashlib.sha256(f"faultrun-campaign:{seed}:{index}".encode()).digest()[:4], "big")


def result_from_dict(data: Mapping[str, Any]) -> CampaignResult:
    failures = tuple(CampaignFailure(
        scenario=scenario_from_dict(f["scenario"]), report=check_report_from_dict(f["report"]),
        run_dir=Path(f["run_dir"]), plan_file=Path(f["plan_file"]), scenario_file=Path(f["scenario_file"]),
        command=f["command"], seed=f["seed"], signature=tuple(f["signature"]), reproduced=f["reproduced"],
        frozen=None if f["frozen"] is None else Path(f["frozen"]), kind=f.get("kind", VIOLATION),
        source=f.get("source", "generated"), found_wall=f.get("found_wall", 0.0),
        reported_wall=f.get("reported_wall", 0.0), removed_rules=tuple(f.get("removed_rules", ())),
        reproduces=f.get("reproduces", 0), replays=f.get("replays", 0))
        for f in data["failures"])
    shard = data.get("shard")
    return CampaignResult(seed=data["seed"], examples_run=data["examples_run"], runs=data["runs"], failures=failures,
                          verdicts=data["verdicts"], elapsed_s=data["elapsed_s"], artifacts=Path(data["artifacts"]),
                          infra_runs=tuple(InfraRun(Path(r["run_dir"]), r["summary"]) for r in data["infra_runs"]),
                          infra_aborted=data["infra_aborted"], worker_elapsed_s=data.get("worker_elapsed_s", ()),
                          shard=None if shard is None else Shard(shard["index"], shard["count"]),
                          replayed=data.get("replayed", 0), started_wall=data.get("started_wall", 0.0),
                          finished_wall=data.get("finished_wall", 0.0), example_db=data.get("example_db"),
                          db_errors=data.get("db_errors", 0))
