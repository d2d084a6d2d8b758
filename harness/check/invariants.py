"""The invariants the checker composes, one small function ``fn(ctx) -> Verdict`` each.

What each one calls a failure, and what it does not, is in :mod:`harness.check.checker` and
``docs/invariants.md``. Add one by writing the function and naming it in :data:`INVARIANTS`.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.check.conformance import (
    batch_agreement,
    collection_jobs,
    helper_order,
    leader_jobs,
    leader_late_jobs,
    leader_retries,
)
from harness.check.counted import Counted, decode_counted
from harness.check.counting import collections, completeness, rejected_uploads, safety
from harness.check.flows import Context, Flow
from harness.check.poplar1 import poplar1, step_skew
from harness.check.protocol import BARE_4XX, PROBLEM_TYPES, anti_replay, auth, error_typing, idempotency
from harness.check.verdict import Verdict

__all__ = ["BARE_4XX", "INVARIANTS", "PROBLEM_TYPES", "Context", "Counted", "Flow", "Verdict", "decode_counted"]

#: The invariants, composed by name (order = report order).
INVARIANTS: dict[str, Callable[[Context], Verdict]] = {
    "safety": safety,
    "completeness": completeness,
    "collections": collections,
    "auth": auth,
    "idempotency": idempotency,
    "anti-replay": anti_replay,
    "error-typing": error_typing,
    "rejected-uploads": rejected_uploads,
    "poplar1": poplar1,
    "step-skew": step_skew,
    # who broke which rule (harness.check.conformance)
    "leader-jobs": leader_jobs,
    "leader-late-jobs": leader_late_jobs,
    "leader-retries": leader_retries,
    "helper-order": helper_order,
    "batch-agreement": batch_agreement,
    "collection-jobs": collection_jobs,
}
