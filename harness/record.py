"""What a run recorded: the workload's own view of one scenario run (``record.json``).

The run stage writes a :class:`RunRecord` (uploads, collections, infrastructure errors); the
checker reads it beside the proxy's history. Plain frozen values, JSON round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from faults.scenario import TaskSpec, build, task_from_dict

__all__ = ["CollectionRecord", "RunRecord", "UploadRecord", "run_record_from_dict"]


@attrs.frozen
class UploadRecord:
    index: int
    measurement: Any  # interop form (decimal strings)
    time: int
    status: str  # "success" | "error"
    error: str | None = None
    t_wall: float = 0.0


@attrs.frozen
class CollectionRecord:
    """One Collect step as the harness saw it.

    ``status``: ``complete`` (a result), ``error`` (a DAP error / too many failed polls),
    ``timeout`` (still in progress at the scenario deadline) or ``not_ready``: the harness
    stopped polling early because the history up to seq ``not_ready_seq`` showed that the
    batch cannot reach ``min_batch_size`` (too few reports can be stored in it, or the
    Leader gave up aggregating them; :mod:`harness.check.fill`). The checker re-derives
    that claim from the same history prefix before accepting it.
    """

    label: str
    query: dict[str, Any]
    status: str  # "complete" | "error" | "timeout" | "not_ready"
    result: Any = None  # interop form
    report_count: int | None = None
    interval: tuple[int, int] | None = None
    batch_id: str | None = None
    error: str | None = None
    polls: int = 0
    t_wall: float = 0.0
    #: every error seen while starting / polling (``error`` is the last one)
    errors: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    #: collection_start attempts (the harness retries a failed start, as the interop runner does)
    starts: int = 1
    #: ``not_ready``: the history prefix (seqs below this) the harness's early stop was based on
    not_ready_seq: int | None = None
    #: the interop ``agg_param`` sent with collection_start (base64url; None = none, Prio3)
    agg_param: str | None = None


@attrs.frozen
class RunRecord:
    """What the workload did and observed (``record.json``)."""

    scenario: str
    task_id: str  # base64url
    task: TaskSpec
    base_time: int
    history_since_seq: int  # first history seq of this scenario in the proxy's history
    uploads: tuple[UploadRecord, ...] = ()
    collections: tuple[CollectionRecord, ...] = ()
    fired_events: tuple[str, ...] = ()
    infra_errors: tuple[str, ...] = ()
    started_wall: float = 0.0
    finished_wall: float = 0.0
    #: the fault proxy failed to write its history while this scenario ran (the run is inconclusive)
    recording_failures: tuple[str, ...] = ()
    #: the first history seq after this scenario (None: not recorded, an older run): every seq
    #: from ``history_since_seq`` up to it must be in the history
    history_end_seq: int | None = None


def run_record_from_dict(data: Mapping[str, Any]) -> RunRecord:
    return build(
        RunRecord, data, task=task_from_dict,
        uploads=lambda xs: tuple(build(UploadRecord, x) for x in xs),
        collections=lambda xs: tuple(
            build(CollectionRecord, x, interval=lambda i: None if i is None else tuple(i)) for x in xs),
        fired_events=tuple, infra_errors=tuple, recording_failures=tuple,
    )
