"""How a campaign failure is named and rerun: its signature and a one-line ``faultrun`` command."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dap.constants import ProblemType
from faults.actions import action_name
from faults.scenario import Expectation, Scenario, to_dict
from faults.strategies import ACTION_ORDER
from faults.workload import apply_overrides, upload_count
from harness.campaign.result import UNEXPECTED_CLEAN_FAILURE, failure_kind
from harness.check.verdict import CheckReport

__all__ = ["reproduction_command", "signature", "smaller_first"]


def _vdaf_flag(scenario: Scenario) -> str:
    v = scenario.workload.task.vdaf.to_interop()
    params = ",".join(f"{k}={x}" for k, x in v.items() if k != "type")
    return v["type"] + (f":{params}" if params else "")


def _flags_workload(scenario: Scenario) -> list[str] | None:
    """The ``--reports/--vdaf/--query-type`` flags that rebuild this scenario's workload and
    verdict semantics under ``faultrun --plan``, or None if flags cannot express it."""
    if scenario.expect != Expectation():
        return None  # --plan demands an exact, complete aggregate and nothing else; the campaign did not
    n = upload_count(scenario.workload)
    flags = ["--reports", str(n), "--vdaf", _vdaf_flag(scenario), "--query-type", scenario.workload.task.query_type]
    try:
        rebuilt = apply_overrides(Scenario(name=scenario.name, plan=scenario.plan), vdaf=flags[3], reports=n,
                                  query_type=flags[5])
    except Exception:
        return None
    return flags if rebuilt.workload == scenario.workload else None


def _impl_flags(impl: Mapping[str, str] | None, images: Path | None) -> list[str]:
    out: list[str] = []
    for role, name in (impl or {}).items():
        out += ["--impl", f"{role}={name}"]
    if images is not None:
        out += ["--images", str(images)]
    return out


def reproduction_command(scenario: Scenario, plan_file: Path, scenario_file: Path, *,
                         impl: Mapping[str, str] | None = None, images: Path | None = None) -> str:
    """The one-line ``faultrun`` command that reruns a failure (see the module docs)."""
    flags = _flags_workload(scenario)
    if flags is not None:
        argv = ["faultrun", "--plan", str(plan_file), "--seed", str(scenario.plan.seed), *flags]
    else:
        argv = ["faultrun", "--scenario", str(scenario_file), "--seed", str(scenario.plan.seed)]
    net = ["--network", "netns"] if scenario.plan.net_rules else []  # network rules: docs/network.md
    return shlex.join([*argv, *net, *_impl_flags(impl, images)])


def signature(scenario: Scenario, report: CheckReport) -> tuple[str, ...]:
    """Violated invariants (or ``unexpected_clean_failure:<problem>``) + the plan's actions."""
    bad = sorted(v.invariant for v in report.verdicts if v.valid is False)
    if not bad and failure_kind(scenario, report) == UNEXPECTED_CLEAN_FAILURE:
        bad = [f"{UNEXPECTED_CLEAN_FAILURE}:{_failed_how(report)}"]
    acts = sorted({action_name(r.action) for r in scenario.plan.rules})
    return (*bad, "|", *acts)


def _failed_how(report: CheckReport) -> str:
    """How the first failed collection ended: its DAP problem type(s), e.g. ``batchMismatch``,
    or ``not-ready`` / ``timeout`` / ``error`` (later ones often fail because it did)."""
    ev = next((v.evidence for v in report.verdicts if v.invariant == "collections"), {})
    texts = [str(x) for x in (ev.get("clean_failures") or {}).values()][:1]
    found = {p.token for p in ProblemType for t in texts if p.token in t}
    for t in texts:
        if not any(p in t for p in found):
            found.add("not-ready" if "min_batch_size" in t else "timeout" if "deadline" in t else "error")
    return ",".join(sorted(found)) or "no-collection"


def smaller_first(item: tuple[Scenario, Any]) -> tuple[int, ...]:
    """Our own simplicity order (used when hypothesis' final replay did not fail again)."""
    s = item[0]
    return (len(s.plan.rules), sum(ACTION_ORDER.index(action_name(r.action)) for r in s.plan.rules),
            upload_count(s.workload), len(s.workload.steps), len(json.dumps(to_dict(s))))
