"""dap-faultrun's harness: run scenarios against DAP aggregators and judge them.

The stages, in data-path order (docs/architecture.md): :mod:`harness.stack` (processes: roles,
fault proxy, interop API), :mod:`harness.run` (drive a scenario's workload on a stack),
:mod:`harness.check` (invariants over the recorded history), :mod:`harness.report` (run
directories, JUnit, terminal, HTML), then :mod:`harness.campaign` and :mod:`harness.cli`.
"""

from pathlib import Path

#: The repository root (images.toml, the Dockerfile, tests/regressions live here).
REPO = Path(__file__).resolve().parent.parent
