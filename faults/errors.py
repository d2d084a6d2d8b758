"""Errors raised by the fault plan model and the fault proxy.

Split by who is at fault (the harness maps them to exit codes)::

    FaultError                 base of everything below
    ├── PlanError              the plan (or a usage option) is wrong: exit 2.
    │                          One line; ``rule_id`` names the rule when there is one.
    └── ProxyError             the harness side failed: exit 3.
        ├── ProxyStartError    mitmdump did not start / did not listen in time
        └── ControlError       the control channel refused a request or is unreachable

Context goes in keyword-only arguments; lower-level errors (mitmproxy, httpx,
OSError) are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = ["FaultError", "PlanError", "ProxyError", "ProxyStartError", "ControlError"]


class FaultError(Exception):
    """Base class of every error raised by :mod:`faults` and :mod:`proxy_addons`."""


class PlanError(FaultError):
    """A plan that cannot be used: unknown name, bad field path, impossible limit...

    ``str(err)`` is always one line: ``rule 'ID': problem`` (or ``plan: problem``
    when no rule is involved).
    """

    def __init__(self, problem: str, *, rule_id: str | None = None) -> None:
        self.problem = " ".join(str(problem).split())  # always one line
        self.rule_id = rule_id
        where = f"rule {rule_id!r}" if rule_id is not None else "plan"
        super().__init__(f"{where}: {self.problem}")


class ProxyError(FaultError):
    """The fault proxy (the harness's own machinery) failed."""


class ProxyStartError(ProxyError):
    """mitmdump exited or did not listen on every port in time.

    ``log_tail`` holds the end of the child's output.
    """

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        self.log_tail = log_tail
        # One line for the user; the tail of mitmdump's log stays available (``-v`` prints it).
        super().__init__(message)


class ControlError(ProxyError):
    """A control-channel request failed (``status`` is the HTTP status, 0 if unreachable)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        self.status = status
        super().__init__(message)
