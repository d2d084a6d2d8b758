"""The task model: what ``add_task`` registers, immutable for the task's life.

``AggregatorTask.from_interop`` parses an interop ``add_task`` body (interop-api.md
§3.2) strictly and raises :class:`TaskConfigError` with one line naming the bad key.
The parsed task is stored as canonical JSON in the ``tasks`` table and rebuilt
with :meth:`AggregatorTask.from_json` after a restart.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import attrs

from dap.constants import QueryType

__all__ = [
    "AggregatorTask",
    "CollectorTask",
    "TaskConfigError",
    "b64d",
    "b64e",
]


class TaskConfigError(ValueError):
    """An ``add_task`` body that cannot be a task (the message names the key)."""


def b64e(data: bytes) -> str:
    """URL-safe base64 without padding (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(bytes(data)).rstrip(b"=").decode("ascii")


def b64d(text: str, *, length: int | None = None, what: str = "value") -> bytes:
    """Decode URL-safe base64, padded or not; ``length`` checks the decoded size."""
    if not isinstance(text, str):
        raise TaskConfigError(f"{what}: expected a base64url string")
    if any(c in text for c in "+/"):
        raise TaskConfigError(f"{what}: not URL-safe base64")
    stripped = text.rstrip("=")
    try:
        data = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TaskConfigError(f"{what}: not base64url ({exc})") from None
    if length is not None and len(data) != length:
        raise TaskConfigError(f"{what}: {len(data)} bytes, expected {length}")
    return data


def _int(body: dict, key: str, *, optional: bool = False, minimum: int = 0) -> int | None:
    value = body.get(key)
    if value is None:
        if optional:
            return None
        raise TaskConfigError(f"{key}: missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TaskConfigError(f"{key}: expected a JSON number (integer)")
    if value < minimum:
        raise TaskConfigError(f"{key}: must be >= {minimum}")
    return value


def _str(body: dict, key: str, *, optional: bool = False) -> str | None:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise TaskConfigError(f"{key}: expected a non-empty string")
    return value


def _token(body: dict, key: str, *, optional: bool = False) -> str | None:
    value = _str(body, key, optional=optional)
    if value is not None and any(ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        raise TaskConfigError(f"{key}: not a valid HTTP header value")
    return value


def _url(body: dict, key: str) -> str:
    value = _str(body, key)
    assert value is not None
    if not (value.startswith("http://") or value.startswith("https://")):
        raise TaskConfigError(f"{key}: expected an absolute http(s) URL")
    return value


def _vdaf(body: dict) -> dict:
    value = body.get("vdaf")
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise TaskConfigError("vdaf: expected an object with a string 'type'")
    return dict(value)


def _query_type(body: dict) -> int:
    key = "batch_mode" if "batch_mode" in body and "query_type" not in body else "query_type"
    value = _int(body, key)
    if value not in (QueryType.TIME_INTERVAL, QueryType.FIXED_SIZE):
        raise TaskConfigError(f"{key}: {value} is not 1 (time_interval) or 2 (fixed_size)")
    return int(value)


@attrs.frozen
class AggregatorTask:
    """A task as a Leader or Helper knows it."""

    task_id: bytes
    role: str  # "leader" | "helper"
    leader: str
    helper: str
    vdaf: dict
    leader_token: str
    collector_token: str | None
    verify_key: bytes
    max_batch_query_count: int
    query_type: int
    min_batch_size: int
    max_batch_size: int | None
    time_precision: int
    collector_hpke_config: bytes
    task_expiration: int | None

    @classmethod
    def from_interop(cls, body: Any) -> AggregatorTask:
        if not isinstance(body, dict):
            raise TaskConfigError("body: expected a JSON object")
        role = body.get("role")
        if role not in ("leader", "helper"):
            raise TaskConfigError("role: expected 'leader' or 'helper'")
        query_type = _query_type(body)
        max_batch_size = None
        if query_type == QueryType.FIXED_SIZE:
            max_batch_size = _int(body, "max_batch_size", optional=True, minimum=1)
        task = cls(
            task_id=b64d(_str(body, "task_id"), length=32, what="task_id"),
            role=role,
            leader=_url(body, "leader"),
            helper=_url(body, "helper"),
            vdaf=_vdaf(body),
            leader_token=_token(body, "leader_authentication_token"),
            collector_token=(
                _token(body, "collector_authentication_token") if role == "leader" else None
            ),
            verify_key=b64d(_str(body, "vdaf_verify_key"), what="vdaf_verify_key"),
            max_batch_query_count=_int(body, "max_batch_query_count", minimum=1),
            query_type=query_type,
            min_batch_size=_int(body, "min_batch_size", minimum=1),
            max_batch_size=max_batch_size,
            time_precision=_int(body, "time_precision", minimum=1),
            collector_hpke_config=b64d(
                _str(body, "collector_hpke_config"), what="collector_hpke_config"
            ),
            task_expiration=_int(body, "task_expiration", optional=True),
        )
        if task.max_batch_size is not None and task.max_batch_size < task.min_batch_size:
            raise TaskConfigError("max_batch_size: smaller than min_batch_size")
        return task

    def to_json(self) -> str:
        d = attrs.asdict(self)
        d["task_id"] = b64e(self.task_id)
        d["verify_key"] = b64e(self.verify_key)
        d["collector_hpke_config"] = b64e(self.collector_hpke_config)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AggregatorTask:
        d = json.loads(text)
        d["task_id"] = b64d(d["task_id"])
        d["verify_key"] = b64d(d["verify_key"])
        d["collector_hpke_config"] = b64d(d["collector_hpke_config"])
        return cls(**d)

    def same_config(self, other: AggregatorTask) -> bool:
        return self.to_json() == other.to_json()


@attrs.frozen
class CollectorTask:
    """A task as the Collector knows it (interop-api.md §3.3)."""

    task_id: bytes
    leader: str
    vdaf: dict
    collector_token: str
    query_type: int

    @classmethod
    def from_interop(cls, body: Any) -> CollectorTask:
        if not isinstance(body, dict):
            raise TaskConfigError("body: expected a JSON object")
        return cls(
            task_id=b64d(_str(body, "task_id"), length=32, what="task_id"),
            leader=_url(body, "leader"),
            vdaf=_vdaf(body),
            collector_token=_token(body, "collector_authentication_token"),
            query_type=_query_type(body),
        )

    def to_json(self) -> str:
        d = attrs.asdict(self)
        d["task_id"] = b64e(self.task_id)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CollectorTask:
        d = json.loads(text)
        d["task_id"] = b64d(d["task_id"])
        return cls(**d)
