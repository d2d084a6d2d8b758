"""Test-only bug switches of the reference roles: dap-faultrun's self-validation.

NEVER FOR PRODUCTION. Each switch turns the reference Leader or Helper into an aggregator
with one realistic DAP-09 bug, so the harness can show that its catalogue, checker and
campaigns catch it (``tests/test_selfcheck.py``, ``docs/self-validation.md``). A switch is
a few lines in the role, guarded by :func:`active`.

Switches are read once at process start (:func:`configure`, called by ``python -m
dap.roles``) from two environment variables::

    DAP_FAULTRUN_TEST_MODE=1  DAP_FAULTRUN_BUGS=helper-reinit-reaccumulate,...

Without ``DAP_FAULTRUN_TEST_MODE=1`` any requested bug makes the role refuse to start with
one line and exit status 2; an unknown name too. In-process users (unit tests building an
:class:`~dap.roles.aggregator.Aggregator` directly) never get a bug unless they call
:func:`configure` themselves.

The switches (role: where the lines are):

``helper-reinit-reaccumulate`` (Helper, ``helper_init``)
    A repeated, byte-identical aggregation-job init is prepared again instead of answered
    with the stored response; the Helper's anti-replay treats reports of the job being
    (re)processed as its own, so their output shares are accumulated a second time.
``helper-replay-per-job`` (Helper, ``helper_init``)
    Anti-replay only within one job: a report ID seen in another aggregation job of the
    task is not ``report_replayed``.
``helper-share-recompute`` (Helper, ``aggregate_share``)
    A repeated AggregateShareReq is computed again (a new query, re-sealed with fresh HPKE
    randomness) instead of the stored encrypted share being replayed.
``helper-reinit-no-conflict`` (Helper, ``helper_init``)
    An init PUT for a known job ID with a different body is processed as new (an upsert)
    instead of 409; as above, reports of that job are not replays of themselves.
``leader-collect-no-auth`` (Leader, ``collection_put``)
    The Collector's token is not checked on the collection-job PUT.
``leader-accept-future`` (Leader, ``upload``)
    Far-future reports are accepted at upload (no ``reportTooEarly``).
``leader-rebuild-retry`` (Leader driver, ``_retry_job``)
    A failed/timed-out aggregation-job PUT is not re-sent byte for byte: the Leader puts
    its reports back to ``pending`` and re-builds them into a new job under a NEW job ID.
    If the first PUT reached the Helper, the Helper rightly answers ``report_replayed`` and
    the Leader drops those reports that the Helper has counted.
``accept-late-reports`` (both Aggregators: ``upload``, job creation, ``helper_init``)
    Reports for an already collected batch are accepted and aggregated, so a later
    collection of the same batch is recomputed with them.
``leader-collect-overwrite`` (Leader, ``collection_put``)
    A PUT for a known collection job ID with a *different* CollectionReq is accepted (201)
    and overwrites the job (an upsert) instead of failing with 409 (dap-09 §15 step 3).
``helper-share-no-auth`` (Helper, ``aggregate_share``, also Poplar1)
    The Leader's token is not checked on AggregateShareReq: any credential, or none, is
    accepted.
``leader-any-auth`` (Leader, collection-job PUT, poll POST and DELETE)
    A credential is required but never compared: any ``Authorization`` header (any scheme,
    any value) or any ``DAP-Auth-Token`` is accepted. No credential at all is still 403.
``leader-double-offer`` (Leader, ``store_uploads``)
    De-duplication misses reports that already left ``pending``: a repeated upload of a
    report ID is stored again as a new pending report (an upsert), so the creator offers it
    to the Helper in a second aggregation job (dap-09 §12: the Leader MUST ignore it). A
    correct Helper answers that second offer ``report_replayed``.
``leader-abandon-on-503`` (Leader driver, ``_drive_job`` and Poplar1 ``ParamLeader._drive``)
    One retryable Helper answer to an aggregation-job request (429, or 5xx but 501) makes
    the Leader abandon the job at once (reports failed, DELETE sent) instead of retrying
    the same bytes within ``--retry-budget``.
``helper-resp-reorder`` (Helper, ``helper_init``, Poplar1 init and continue)
    The AggregationJobResp lists the PrepareResps in reverse request order (dap-09 §10.2
    step 6); a correct Leader aborts the job. A one-report job is unaffected.
``leader-late-jobs`` (Leader, ``store_uploads`` and ``_create_one_job``; time_interval)
    A report for a batch whose AggregateShareReq has left is accepted at upload (no
    ``reportRejected``) and put into a new aggregation job (dap-09 §16 step 5); a correct
    Helper answers ``batch_collected``. Unlike ``accept-late-reports``, the Helper is correct.
``helper-continue-reaccumulate`` (Helper, Poplar1 ``ParamHelper.continue_``)
    The step's prep states are kept as a checkpoint and a repeated, byte-identical
    continuation (same step) is run again from them instead of answered with the stored
    response, so its output shares are accumulated a second time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["BUGS", "BugConfigError", "TEST_MODE_VAR", "BUGS_VAR", "active", "configure", "enabled"]

TEST_MODE_VAR = "DAP_FAULTRUN_TEST_MODE"
BUGS_VAR = "DAP_FAULTRUN_BUGS"

#: name -> (roles it lives in, one line)
BUGS: dict[str, tuple[tuple[str, ...], str]] = {
    "helper-reinit-reaccumulate": (("helper",), "a repeated init is prepared and accumulated again, not replayed"),
    "helper-replay-per-job": (("helper",), "anti-replay only within one aggregation job"),
    "helper-share-recompute": (("helper",), "a repeated AggregateShareReq is recomputed and re-sealed, not replayed"),
    "helper-reinit-no-conflict": (("helper",), "an init with a known job ID and another body is processed, no 409"),
    "leader-collect-no-auth": (("leader",), "collection-job PUT does not check the Collector's token"),
    "leader-accept-future": (("leader",), "far-future reports accepted at upload (no reportTooEarly)"),
    "leader-rebuild-retry": (("leader",), "a retried init is re-built under a new job ID, not re-sent"),
    "accept-late-reports": (("leader", "helper"), "reports for a collected batch accepted; re-collection recomputed"),
    "leader-collect-overwrite": (("leader",), "a collection-job PUT with a known job ID and another request overwrites it, no 409"),
    "helper-share-no-auth": (("helper",), "AggregateShareReq does not check the Leader's token"),
    "leader-any-auth": (("leader",), "collection-job PUT/POST/DELETE accept any credential (any scheme, any value)"),
    "leader-double-offer": (("leader",), "a re-uploaded report is stored again and offered to the Helper in a second job"),
    "leader-abandon-on-503": (("leader",), "one retryable Helper answer abandons the aggregation job, no retry"),
    "helper-resp-reorder": (("helper",), "AggregationJobResp lists the PrepareResps in reverse request order"),
    "leader-late-jobs": (("leader",), "reports for a batch whose AggregateShareReq left are accepted and put into new jobs"),
    "helper-continue-reaccumulate": (("helper",), "a repeated continue is run again from kept prep states, not replayed"),
}

_active: frozenset[str] = frozenset()


class BugConfigError(ValueError):
    """A bug was requested without test mode, or an unknown bug was named (one line)."""


def configure(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """Read the switches from ``environ`` (default ``os.environ``); set and return them."""
    global _active
    env = os.environ if environ is None else environ
    names = [n.strip() for n in env.get(BUGS_VAR, "").split(",") if n.strip()]
    if not names:
        _active = frozenset()
        return _active
    if env.get(TEST_MODE_VAR, "") != "1":
        raise BugConfigError(f"{BUGS_VAR}={','.join(names)} requested, but bug switches are test-only: "
                             f"refused unless {TEST_MODE_VAR}=1")
    unknown = [n for n in names if n not in BUGS]
    if unknown:
        raise BugConfigError(f"{BUGS_VAR}: unknown bug {unknown[0]!r} (known: {', '.join(BUGS)})")
    _active = frozenset(names)
    return _active


def active(name: str) -> bool:
    """Whether the bug switch ``name`` is on in this process."""
    assert name in BUGS, name
    return name in _active


def enabled() -> frozenset[str]:
    return _active


def reprocesses_jobs() -> bool:
    """A Helper bug that prepares an already known aggregation job again (an upsert)."""
    return bool(_active & {"helper-reinit-reaccumulate", "helper-reinit-no-conflict"})


def not_a_replay(seen_in_job: bytes, job_id: bytes) -> bool:
    """Whether a buggy Helper takes a report ID already seen in ``seen_in_job`` as new in ``job_id``."""
    if seen_in_job == job_id:
        return reprocesses_jobs()  # "these are this job's own reports"
    return "helper-replay-per-job" in _active  # anti-replay scoped to one job


def skips_auth(kind: str, has_credential: bool) -> bool:
    """Whether a buggy Aggregator lets a request of ``kind`` (``collection_put``,
    ``collection_post``, ``collection_delete``, ``agg_share``) through without comparing its
    credential; ``has_credential``: an ``Authorization`` or ``DAP-Auth-Token`` header is there."""
    if kind == "collection_put" and "leader-collect-no-auth" in _active:
        return True  # the Collector's token is not checked on the PUT
    if kind == "agg_share" and "helper-share-no-auth" in _active:
        return True  # the Leader's token is not checked on AggregateShareReq
    # a credential is required, its scheme and value are never compared
    return kind.startswith("collection_") and has_credential and "leader-any-auth" in _active


__all__ += ["not_a_replay", "reprocesses_jobs", "skips_auth"]
