"""The shared vocabulary, defined once: links, kinds, phases, problem-type URIs, and the one
classifier (method, path) -> kind.

The classifier follows dap-09.md section 5. Paths may carry a base prefix
(``/dap/``, ``/v09/``): only the suffix ``hpke_config`` or ``tasks/{id}/...`` is
matched. The query string is ignored. A request that is not a DAP endpoint is
kind ``None`` (recorded as ``"other"`` in history).
"""

from __future__ import annotations

import re
from typing import Final

from dap.constants import PROBLEM_TYPE_URN_PREFIX

__all__ = [
    "AUTHENTICATED_KINDS",
    "CLIENT_LEADER",
    "COLLECTOR_LEADER",
    "KINDS",
    "LEADER_HELPER",
    "LINKS",
    "LINK_KINDS",
    "LINK_ROLES",
    "PHASES",
    "Classified",
    "classify",
    "problem_token",
    "problem_uri",
]

#: The three links a fault proxy sits on (a Client reaches the Helper directly: no link).
CLIENT_LEADER: Final = "client->leader"
COLLECTOR_LEADER: Final = "collector->leader"
LEADER_HELPER: Final = "leader->helper"
LINKS: Final = (CLIENT_LEADER, COLLECTOR_LEADER, LEADER_HELPER)
#: link -> (the role that sends the requests, the role that answers them)
LINK_ROLES: Final = {CLIENT_LEADER: ("client", "leader"), COLLECTOR_LEADER: ("collector", "leader"),
                     LEADER_HELPER: ("leader", "helper")}
KINDS: Final = (
    "hpke_config",
    "upload",
    "agg_init",
    "agg_continue",
    "agg_delete",
    "agg_share",
    "collection_create",
    "collection_poll",
    "collection_delete",
)
PHASES: Final = ("request", "response")
#: link -> the kinds of request that travel on it
LINK_KINDS: Final = {
    CLIENT_LEADER: ("upload", "hpke_config"),
    COLLECTOR_LEADER: ("collection_create", "collection_poll", "collection_delete"),
    LEADER_HELPER: ("agg_init", "agg_continue", "agg_share", "agg_delete"),
}
#: kinds whose endpoint authenticates the sender (DAP-Auth-Token / Bearer; dap-09 section 4.3)
AUTHENTICATED_KINDS: Final = frozenset({"agg_init", "agg_continue", "agg_delete", "agg_share",
                                        "collection_create", "collection_poll", "collection_delete"})


def problem_uri(problem_type: str) -> str:
    """A DAP problem token (``batchMismatch``) as its URI; a URI (anything with ``:``) unchanged."""
    return problem_type if ":" in problem_type else PROBLEM_TYPE_URN_PREFIX + problem_type


def problem_token(problem_type: str | None) -> str | None:
    """A problem-type URI as its DAP token (``...:error:batchMismatch`` -> ``batchMismatch``);
    a URI of another namespace unchanged; None/empty -> None."""
    if not problem_type:
        return None
    return problem_type[len(PROBLEM_TYPE_URN_PREFIX):] if problem_type.startswith(PROBLEM_TYPE_URN_PREFIX) \
        else problem_type

_ID = r"([A-Za-z0-9_-]+)"
_HPKE = re.compile(r"(?:^|/)hpke_config/?$")
_TASKS = re.compile(
    rf"(?:^|/)tasks/{_ID}/(?:(reports)|(aggregate_shares)|aggregation_jobs/{_ID}|collection_jobs/{_ID})/?$"
)
_BY_METHOD: Final = {
    "reports": {"PUT": "upload"},
    "aggregate_shares": {"POST": "agg_share"},
    "aggregation_jobs": {"PUT": "agg_init", "POST": "agg_continue", "DELETE": "agg_delete"},
    "collection_jobs": {"PUT": "collection_create", "POST": "collection_poll", "DELETE": "collection_delete"},
}


class Classified:
    """Result of :func:`classify`: ``kind`` plus the IDs found in the path (base64url text)."""

    __slots__ = ("kind", "task_id", "job_id")

    def __init__(self, kind: str | None, task_id: str | None = None, job_id: str | None = None) -> None:
        self.kind = kind
        self.task_id = task_id
        self.job_id = job_id

    def __repr__(self) -> str:
        return f"Classified(kind={self.kind!r}, task_id={self.task_id!r}, job_id={self.job_id!r})"


_NONE = Classified(None)


def classify(method: str, path: str) -> Classified:
    """Map an HTTP method and request path (query allowed) to a DAP kind.

    >>> classify("PUT", "/v09/tasks/abc/reports").kind
    'upload'
    >>> classify("POST", "/tasks/t/collection_jobs/j?x=1").kind
    'collection_poll'
    """
    path = path.split("?", 1)[0].split("#", 1)[0]
    method = method.upper()
    if method == "GET" and _HPKE.search(path):
        return Classified("hpke_config")
    m = _TASKS.search(path)
    if m is None:
        return _NONE
    task, reports, shares, agg_job, coll_job = m.groups()
    if reports:
        family, job = "reports", None
    elif shares:
        family, job = "aggregate_shares", None
    elif agg_job is not None:
        family, job = "aggregation_jobs", agg_job
    else:
        family, job = "collection_jobs", coll_job
    kind = _BY_METHOD[family].get(method)
    if kind is None:
        return _NONE
    return Classified(kind, task, job)
