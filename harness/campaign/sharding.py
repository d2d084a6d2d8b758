"""Shards of a campaign: N disjoint, reproducible slices of one campaign's example space.

A campaign is its seed (and its generation options: VDAF, rule and report bounds). Shard
``K/N`` runs hypothesis with the campaign's own seed over the same strategy, but keeps only
the generated examples whose *workload* falls in partition ``K``::

    partition(workload) = int(sha256(canonical JSON of the workload)[:8]) mod N

so two shards never run the same scenario (different workloads, different scenarios), the
same seed + shard runs the same examples again, and N shards together cover what one
process would generate, N times as fast. The workload is drawn before the plan
(:func:`faults.strategies.scenarios`), so an example of another shard is rejected after
~1 ms of generation, before its plan (~20 ms) is drawn. Hypothesis learns nothing wrong
from the rejections: they are invalid examples, never failures.

The filter applies to *generation* only. Examples replayed from the example database (found
by another shard) and shrink steps run whatever their partition: a shrunk failure may end in
any workload. ``--workers W`` inside shard ``K/N`` runs sub-shards ``K*W + i`` of ``N*W``.

Hypothesis gives up generating when fewer than ~1 % of its attempts are valid, so N is
bounded by :data:`MAX_SHARDS`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs

from faults.scenario import to_dict

__all__ = ["MAX_SHARDS", "Shard", "parse_shard", "partition", "scenario_digest", "workload_digest"]

#: The largest N: one example in N is kept, and hypothesis stops below ~1 % valid examples.
MAX_SHARDS = 64


@attrs.frozen
class Shard:
    """Shard ``index`` of ``count`` (``0 <= index < count``)."""

    index: int
    count: int

    def __attrs_post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"shard count must be 1..{MAX_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be 0..{self.count - 1}, got {self.index}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def sub(self, worker: int, workers: int) -> Shard:
        """Worker ``worker`` of ``workers`` inside this shard: sub-shard ``index*workers + worker``."""
        return Shard(self.index * workers + worker, self.count * workers)

    def keeps(self, workload: Any) -> bool:
        return self.count == 1 or partition(workload, self.count) == self.index

    def to_dict(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count}


def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> :class:`Shard` (ValueError with one line otherwise)."""
    k, sep, n = text.strip().partition("/")
    try:
        if not sep:
            raise ValueError
        index, count = int(k), int(n)
    except ValueError:
        raise ValueError(f"not a shard: {text!r} (K/N, e.g. 0/3)") from None
    return Shard(index, count)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(to_dict(value), sort_keys=True, default=str).encode()).hexdigest()


def workload_digest(workload: Any) -> str:
    return _digest(workload)


def scenario_digest(scenario: Any) -> str:
    """What identifies an example: its scenario, name excluded (generated ones share it)."""
    return _digest(attrs.evolve(scenario, name=""))[:32]


def partition(workload: Any, count: int) -> int:
    """The shard (of ``count``) that generates examples with this workload."""
    return int(workload_digest(workload)[:16], 16) % count
