"""Running scenarios: a :class:`~harness.run.stack.Stack` (roles + fault proxy, started once)
drives each scenario's workload through the proxy, hands record + history to the checker and
writes the run directory; :mod:`~harness.run.matrix` runs implementation matrices.

::

    from harness.run import Stack
    with Stack.start(artifacts_root=Path("artifacts/x")) as stack:
        result = stack.run_scenario(scenario, timeout_s=60)
"""

from harness.run.stack import RunResult, Stack, check_scenario, resolve_impl

__all__ = ["RunResult", "Stack", "check_scenario", "resolve_impl"]
