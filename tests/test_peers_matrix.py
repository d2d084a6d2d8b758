"""The independent peers as harness roles: a slice of the fault matrix through the local backend.

One :class:`harness.run.Stack` per peer combination (``images.toml`` entries: the divviup-ts
Client, the Janus Client, the Janus Collector; every other role the reference one) runs, one
after the other, a no-fault flow and the faults ``duplicate-report``, ``drop-upload-response``,
``drop-agg-share-response``, ``duplicate-collection-create`` and ``bad-collector-token`` for
Prio3Count, Sum, Histogram and SumVec (the workload's VDAF replaced as ``faultrun --vdaf`` does).
Every run must pass (exit code 0, verdict ``pass``, no invariant violated or unknown) and its
collection must return the exact aggregate over all 8 reports: in each of these scenarios
every report reaches the Leader and must be counted exactly once.

One test per peer combination (so the two xdist workers share three stacks); a failure lists
every failed run with its run directory. The peers are built by ``bash scripts/bootstrap
--test``; a missing one FAILS here.
"""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import pytest
from peers_fixtures import require_janus, require_node
from roles_fixtures import expected_result

from dap.vdaf.params import VdafParams
from faults.catalogue import CATALOGUE
from harness.run import Stack

FAULTS = ["duplicate-report", "drop-upload-response", "drop-agg-share-response",
          "duplicate-collection-create", "bad-collector-token"]
VDAFS = [
    {"type": "Prio3Count"},
    {"type": "Prio3Sum", "bits": "8"},
    {"type": "Prio3Histogram", "length": "16", "chunk_length": "4"},
    {"type": "Prio3SumVec", "length": "8", "bits": "8", "chunk_length": "12"},
]
COMBOS = {"client=divviup-ts": {"client": "divviup-ts"}, "client=janus": {"client": "janus"},
          "collector=janus": {"collector": "janus"}}


def _no_fault():
    """The default workload (8 uploads, one collection) under an empty plan."""
    base = CATALOGUE["duplicate-report"]
    return attrs.evolve(base, name="no-fault", plan=attrs.evolve(base.plan, rules=()), spec_section="",
                        doc="No fault: the plain interop flow.")


def _with_vdaf(scenario, vdaf: dict):
    """The scenario with its workload's VDAF replaced (as harness/cli.py apply_overrides does)."""
    wl = scenario.workload
    task = attrs.evolve(wl.task, vdaf=VdafParams.from_interop(vdaf))
    return attrs.evolve(scenario, workload=attrs.evolve(wl, task=task))


def _problems(result, vdaf: dict) -> list[str]:
    report = result.report
    out = []
    if result.exit_code != 0 or report.verdict_class.value != "pass":
        out.append(f"exit {result.exit_code}, verdict {report.verdict_class.value}: {report.summary}")
    for v in report.verdicts:
        if v.valid is not True:
            out.append(f"{v.invariant}: {v.valid} {v.detail[:300]}")
    expected = expected_result(vdaf, [u.measurement for u in result.record.uploads])
    for c in result.record.collections:
        if c.status != "complete" or c.result != expected or c.report_count != len(result.record.uploads):
            out.append(f"collection {c.label}: {c.status} count={c.report_count} result={c.result} "
                       f"(expected {expected}) error={(c.error or '')[:300]}")
    if not result.record.collections:
        out.append("no collection")
    out += [f"infra: {e}" for e in result.record.infra_errors]
    return out


@pytest.mark.parametrize("combo", list(COMBOS))
def test_peer_fault_slice(combo: str, tmp_path: Path) -> None:
    impl = COMBOS[combo]
    require_janus()
    if impl.get("client") == "divviup-ts":
        require_node()
    scenarios = [_no_fault()] + [CATALOGUE[name] for name in FAULTS]
    failures = []
    runs = 0
    started = time.monotonic()
    with Stack.start(artifacts_root=tmp_path, impl=impl) as stack:
        for vdaf in VDAFS:
            for scenario in scenarios:
                s = _with_vdaf(scenario, vdaf)
                result = stack.run_scenario(s, timeout_s=30, report_html=False)
                runs += 1
                problems = _problems(result, vdaf)
                if problems:
                    failures.append(f"{s.name} {vdaf['type']} ({result.run_dir}):\n    " + "\n    ".join(problems))
    elapsed = time.monotonic() - started
    assert not failures, f"{combo}: {len(failures)} of {runs} runs failed ({elapsed:.0f} s):\n" + "\n".join(failures)
