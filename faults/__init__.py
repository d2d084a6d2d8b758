"""Fault plans: rules, matchers, actions and limits as frozen values; plan I/O; history schema.

Public names (see the submodules for details)::

    from faults import Plan, Rule, Matcher, Limits, load_plan, loads_plan, dumps_plan
    from faults import ACTIONS, PlanError, HistoryWriter, read_history
"""

from faults.actions import ACTIONS, EVENT_NAMES, SYNTHESIZERS, action_name
from faults.errors import FaultError, PlanError
from faults.history import ControlEvent, FaultEvent, HistoryWriter, MessageEvent, comparable, read_history
from faults.plan import (
    PLAN_VERSION,
    Limits,
    Matcher,
    Plan,
    Rule,
    dump_plan,
    dumps_plan,
    load_plan,
    loads_plan,
    plan_from_dict,
    plan_to_dict,
)
from faults.vocabulary import KINDS, LINKS, PHASES, classify

__all__ = [
    "ACTIONS", "EVENT_NAMES", "SYNTHESIZERS", "action_name",
    "KINDS", "LINKS", "PHASES", "classify",
    "FaultError", "PlanError", "WorkloadError",
    "ControlEvent", "FaultEvent", "HistoryWriter", "MessageEvent", "comparable", "read_history",
    "PLAN_VERSION", "Limits", "Matcher", "Plan", "Rule",
    "dump_plan", "dumps_plan", "load_plan", "loads_plan", "plan_from_dict", "plan_to_dict",
]
