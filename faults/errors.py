"""Errors raised by the fault plan model, the scenario model and the workloads.

All of them mean the same thing to a user: the input (a plan, a scenario, a ``--vdaf`` /
``--reports`` choice) is wrong; the CLI exits 2 with the one-line message::

    FaultError                 base of everything below
    ├── PlanError              the plan is wrong. One line; ``rule_id`` names the rule when
    │                          there is one.
    └── WorkloadError          a workload the VDAF cannot hold, a bad ``--vdaf`` spec, a
        │                      Poplar1 walk that does not fit its bits
        └── NotApplicable      a scenario whose workload cannot take the ``--vdaf`` asked
                               for (a Poplar1 tree walk under a Prio3 VDAF); ``faultrun
                               --all`` leaves such a scenario out instead of failing

Failures of the machinery that runs plans (mitmdump did not start, the control channel is
unreachable) are the harness's: :mod:`harness.errors` (exit 3). Context goes in keyword-only
arguments; lower-level errors are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = ["FaultError", "NotApplicable", "PlanError", "WorkloadError", "one_line"]


def one_line(value: BaseException | str, *, limit: int | None = None) -> str:
    """Any message or exception as one line (whitespace folded), cut to ``limit`` characters.

    attrs validators raise ``ValueError(msg, attribute, ...)``: only ``msg`` is kept. Every
    user-facing error of the project goes through here."""
    if isinstance(value, BaseException):
        args = value.args
        value = args[0] if len(args) > 1 and isinstance(args[0], str) else str(value)
    text = " ".join(str(value).split())
    return text if limit is None or len(text) <= limit else text[: max(limit - 1, 0)] + "…"


class FaultError(Exception):
    """Base class of every error raised by :mod:`faults`: the user's input is wrong (exit 2)."""


class PlanError(FaultError):
    """A plan that cannot be used: unknown name, bad field path, impossible limit...

    ``str(err)`` is always one line: ``rule 'ID': problem`` (or ``plan: problem``
    when no rule is involved).
    """

    def __init__(self, problem: str, *, rule_id: str | None = None) -> None:
        self.problem = one_line(problem)
        self.rule_id = rule_id
        where = f"rule {rule_id!r}" if rule_id is not None else "plan"
        super().__init__(f"{where}: {self.problem}")


class WorkloadError(FaultError):
    """A workload that cannot run: the VDAF cannot hold it, a bad ``--vdaf`` spec, bad measurements."""


class NotApplicable(WorkloadError):
    """A scenario cannot run under the VDAF asked for: its workload needs what that VDAF lacks
    (a Poplar1 heavy-hitters walk, aggregation parameters and two rounds, under Prio3).
    ``str(err)`` is the reason, one line, without the scenario's name."""
