"""The checker: invariants over one stored run (record + history), Jepsen style.

:func:`~harness.check.checker.check` composes the invariants of
:mod:`~harness.check.invariants` over a :class:`~harness.check.flows.Context` (the history
folded per flow) and returns a :class:`~harness.check.verdict.CheckReport`. Nothing here
talks to a process: a stored run directory is enough (``faultrun analyze``).
"""

from harness.check.checker import check
from harness.check.verdict import CheckReport, Verdict, VerdictClass

__all__ = ["CheckReport", "Verdict", "VerdictClass", "check"]
