"""Accumulation arithmetic shared by the Leader, the Helper and the Poplar1 role code.

* report checksums: ``checksum_of(report_id)`` = SHA-256(report_id), combined with
  :func:`xor_checksum` from :data:`ZERO_CHECKSUM` (DAP-09 §4.4.4.4);
* :func:`bucket_key`: the accumulation bucket of a report, its ``time_precision``
  interval (time_interval) or its batch ID (fixed_size);
* :func:`interval_of`: the smallest aligned interval holding a batch's reports
  (the ``interval`` of a Collection).

Pure functions over the task model; nothing here touches storage or HTTP.
"""

from __future__ import annotations

import hashlib
import struct

from dap.constants import QueryType
from dap.messages import Interval
from dap.roles.task import AggregatorTask

__all__ = ["ZERO_CHECKSUM", "bucket_key", "checksum_of", "interval_of", "xor_checksum"]

ZERO_CHECKSUM = bytes(32)


def checksum_of(report_id: bytes) -> bytes:
    return hashlib.sha256(bytes(report_id)).digest()


def xor_checksum(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(32, "big")


def bucket_key(task: AggregatorTask, time_: int, batch_id: bytes | None) -> bytes:
    """The accumulation bucket of a report: its time_precision interval or its batch ID."""
    if task.query_type == QueryType.FIXED_SIZE:
        assert batch_id is not None
        return bytes(batch_id)
    start = time_ - time_ % task.time_precision
    return struct.pack(">Q", start)


def interval_of(task: AggregatorTask, tmin: int | None, tmax: int | None) -> Interval:
    """Smallest time_precision-aligned interval containing [tmin, tmax]."""
    tp = task.time_precision
    if tmin is None or tmax is None:
        return Interval(0, tp)
    start = tmin - tmin % tp
    end = tmax - tmax % tp + tp
    return Interval(start, end - start)
