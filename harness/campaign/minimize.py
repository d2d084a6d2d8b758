"""After hypothesis' shrink: drop the rules a failure does not need, then replay it.

Hypothesis shrinks by its own measure (fewer and smaller choices), which can keep rules a
failure does not need -- two rules that each would do, a probe riding along. A final
delta-debugging pass (after Zeller's ddmin) first tries each remaining rule alone -- most
failures need one, and a run without the needed rule usually passes quickly, while a failing
run may last until the scenario's timeout -- and else runs the scenario without each rule in
turn, keeping a removal when the run still fails the same way (the same violated invariants
or unexpected clean failure: the signature's failure part, :func:`same_failure`). Each
candidate's expectation is re-derived from its own plan (``expect_for``): without a lossy
rule a plan may become one the protocol must recover from.

Then the final scenario is replayed a few times (:func:`replay`): "reproduces 3/3" is a
deterministic failure, "1/3" one that depends on timing -- said, never hidden.

Pure control flow over a ``run`` callable, so the logic is tested without a stack
(``tests/test_campaign_minimize.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs

from faults.scenario import Scenario

__all__ = ["REPLAYS", "Minimized", "failure_part", "minimize", "replay", "same_failure"]

#: How often the final example is replayed ("reproduces N/3").
REPLAYS = 3


def failure_part(signature: tuple[str, ...]) -> tuple[str, ...]:
    """A failure signature's failure part (before ``|``; after it come the plan's actions)."""
    return signature[:signature.index("|")] if "|" in signature else signature


def same_failure(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    return failure_part(a) == failure_part(b)


@attrs.frozen
class Minimized:
    scenario: Scenario
    #: the last failing run's result (of ``scenario``)
    result: Any
    #: rules removed, in order
    removed: tuple[str, ...] = ()
    #: runs made (each removal tried once)
    runs: int = 0
    #: the budget ran out before every rule was tried
    cut_short: bool = False


def minimize(scenario: Scenario, result: Any, *, run: Callable[[Scenario], Any | None],
             fails: Callable[[Scenario, Any], bool], expect_for: Callable[[Scenario], Scenario],
             budget_s: float, clock: Callable[[], float] = time.monotonic) -> Minimized:
    """Remove each rule that the failure does not need, until none can go (or the budget is
    spent). ``run(scenario)`` -> a result or None (the run could not be judged: the rule is
    kept); ``fails(scenario, result)`` -> whether it is the same failure; ``expect_for`` gives
    a candidate scenario its expectation. A run is started only while the time left covers
    the previous run's duration."""
    start = clock()
    removed: list[str] = []
    runs = 0
    last_s = 0.0

    def with_rules(rules: tuple[Any, ...]) -> Scenario:
        return expect_for(attrs.evolve(scenario, plan=attrs.evolve(scenario.plan, rules=rules)))

    if len(scenario.plan.rules) > 2:  # with two, "each alone" is "each removed": the loop below
        for rule in reversed(scenario.plan.rules):  # the last (often a probe) first
            if clock() - start + last_s > budget_s:
                return Minimized(scenario, result, tuple(removed), runs, cut_short=True)
            candidate = with_rules((rule,))
            t0 = clock()
            got = run(candidate)
            last_s = clock() - t0
            runs += 1
            if got is not None and fails(candidate, got):
                gone = tuple(r.id for r in scenario.plan.rules if r.id != rule.id)
                return Minimized(candidate, got, gone, runs)
    changed = True
    while changed and len(scenario.plan.rules) > 1:
        changed = False
        for rule in reversed(scenario.plan.rules):  # the last (often a probe) first
            if len(scenario.plan.rules) <= 1:
                break
            if clock() - start + last_s > budget_s:
                return Minimized(scenario, result, tuple(removed), runs, cut_short=True)
            candidate = with_rules(tuple(r for r in scenario.plan.rules if r.id != rule.id))
            t0 = clock()
            got = run(candidate)
            last_s = clock() - t0
            runs += 1
            if got is not None and fails(candidate, got):
                scenario, result = candidate, got
                removed.append(rule.id)
                changed = True
    return Minimized(scenario, result, tuple(removed), runs)


def replay(scenario: Scenario, *, run: Callable[[Scenario], Any | None], fails: Callable[[Scenario, Any], bool],
           times: int = REPLAYS) -> int:
    """How many of ``times`` fresh runs of ``scenario`` fail the same way."""
    n = 0
    for _ in range(times):
        got = run(scenario)
        if got is not None and fails(scenario, got):
            n += 1
    return n
