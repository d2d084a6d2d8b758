"""Campaigns on several stacks at once: one spawned process per worker, results merged."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue as queue_mod
import signal
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from harness.campaign.driver import run_campaign
from harness.campaign.minimize import REPLAYS
from harness.campaign.result import CampaignProgress, CampaignResult, InfraRun, result_from_dict
from harness.campaign.sharding import Shard
from harness.errors import HarnessError, InfraError

__all__ = ["run_campaign_workers"]


def _worker_main(index: int, params: dict[str, Any], events: Any, found: Any = None) -> None:
    """One worker process: its own Stack (own ports, own state dirs) and campaign."""
    from harness.run import Stack  # in the spawned worker only

    def sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, sigterm)
    logging.basicConfig(level=logging.WARNING)
    try:
        root = Path(params["artifacts"])
        with Stack.start(artifacts_root=root / "stack", impl=params["impl"], images=params["images"],
                         backend=params["backend"], network=params.get("network", "loopback")) as stack:
            result = run_campaign(
                stack, seed=params["seed"], examples=params["examples"], time_budget_s=params["time_budget_s"],
                vdaf=params["vdaf"], artifacts=root, keep_going=params["keep_going"], database=params["database"],
                timeout_s=params["timeout_s"], shrink_budget_s=params["shrink_budget_s"], worker=index,
                progress=lambda p: events.put(("progress", index, attrs.asdict(p))),
                stop=None if found is None else found.is_set, shard=Shard(*params["shard"]),
                example_db=params["example_db"], keep_runs=params["keep_runs"], replay_only=params["replay_only"],
                replays=params.get("replays", REPLAYS))
        events.put(("done", index, result.to_dict()))
    except KeyboardInterrupt:
        events.put(("error", index, "interrupted"))
    except Exception as exc:
        code = exc.exit_code if isinstance(exc, HarnessError) else 3
        events.put(("error", index, f"{type(exc).__name__}: {exc}", code))


def run_campaign_workers(workers: int, *, seed: int, artifacts: Path, impl: Mapping[str, str] | None = None,
                         images: Path | None = None, backend: str = "local", network: str = "loopback",
                         examples: int | None = None,
                         time_budget_s: float | None = None, vdaf: str | None = None, keep_going: bool = False,
                         database: bool = True, timeout_s: float | None = None, shrink_budget_s: float = 300.0,
                         progress: Callable[[CampaignProgress], None] | None = None, shard: Shard | None = None,
                         example_db: str | Path | None = None, keep_runs: bool = False, replays: int = REPLAYS,
                         replay_only: bool = False) -> CampaignResult:
    """``workers`` independent stacks in spawned processes, one campaign each, merged into one
    result: worker ``i`` runs sub-shard ``i`` of ``workers`` (of ``shard``, if given:
    :meth:`Shard.sub`) of the campaign ``seed``, in ``<artifacts>/worker-<i>``, examples
    split. They share one example database (``example_db``, default
    ``<artifacts>/hypothesis-db``). Without ``keep_going`` the first failure any worker finds
    ends the others' generation (they finish the example in progress; the finder shrinks it).
    Every process is stopped on return, error or Ctrl-C."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    artifacts = Path(artifacts).resolve()
    whole = shard or Shard(0, 1)
    if example_db is None and database:
        example_db = artifacts / "hypothesis-db"
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    found = ctx.Event()  # set once a worker is shrinking a failure (without keep_going)
    procs = []
    t0 = time.monotonic()
    for i in range(workers):
        n = None if examples is None else examples // workers + (1 if i < examples % workers else 0)
        if n == 0:
            continue
        sub = whole.sub(i, workers)
        params = {"artifacts": str(artifacts / f"worker-{i}"), "impl": dict(impl or {}),
                  "images": None if images is None else str(images), "backend": backend, "network": network,
                  "seed": seed,
                  "examples": n, "time_budget_s": time_budget_s, "vdaf": vdaf, "keep_going": keep_going,
                  "database": database, "timeout_s": timeout_s, "shrink_budget_s": shrink_budget_s,
                  "shard": (sub.index, sub.count), "example_db": None if example_db is None else str(example_db),
                  "keep_runs": keep_runs, "replay_only": replay_only, "replays": replays}
        p = ctx.Process(target=_worker_main, args=(i, params, events, None if keep_going else found),
                        name=f"faultrun-campaign-{i}")
        p.start()
        procs.append(p)
    results: dict[int, CampaignResult] = {}
    errors: dict[int, tuple[str, int]] = {}
    latest: dict[int, dict[str, Any]] = {}
    try:
        while len(results) + len(errors) < len(procs):
            try:
                msg = events.get(timeout=0.5)
            except queue_mod.Empty:
                for i, p in enumerate(procs):
                    if not p.is_alive() and i not in results and i not in errors:
                        with contextlib.suppress(queue_mod.Empty):  # its last message may be in flight
                            msg = events.get(timeout=2.0)
                            break
                        errors[i] = (f"worker {i} exited with code {p.exitcode}", 3)
                else:
                    continue
            kind, i = msg[0], msg[1]
            if kind == "progress":
                latest[i] = msg[2]
                if msg[2]["phase"] == "shrink":
                    found.set()
                if progress is not None:
                    progress(_merge_progress(latest, t0))
            elif kind == "done":
                results[i] = result_from_dict(msg[2])
            else:
                errors[i] = (msg[2], msg[3] if len(msg) > 3 else 130)
    finally:
        for p in procs:
            if p.is_alive():
                p.join(timeout=5.0 if (results or errors) else 0.1)
            if p.is_alive():
                p.terminate()  # SIGTERM -> KeyboardInterrupt in the worker: its Stack closes
                p.join(timeout=15.0)
            if p.is_alive():
                p.kill()
                p.join()
        events.close()
    if errors and not results:
        raise InfraError("; ".join(f"worker {i}: {e}" for i, (e, _) in sorted(errors.items())))
    merged_verdicts: Counter[str] = Counter()
    for r in results.values():
        merged_verdicts.update(r.verdicts)
    ordered = [results[i] for i in sorted(results)]
    infra = tuple(x for r in ordered for x in r.infra_runs)
    infra += tuple(InfraRun(artifacts / f"worker-{i}", e) for i, (e, _) in sorted(errors.items()))
    return CampaignResult(
        seed=seed, examples_run=sum(r.examples_run for r in ordered), runs=sum(r.runs for r in ordered),
        failures=tuple(f for r in ordered for f in r.failures), verdicts=dict(merged_verdicts),
        elapsed_s=time.monotonic() - t0, artifacts=artifacts, infra_runs=infra,
        infra_aborted=bool(errors) or any(r.infra_aborted for r in ordered),
        worker_elapsed_s=tuple(x for r in ordered for x in r.worker_elapsed_s), shard=shard,
        replayed=sum(r.replayed for r in ordered),
        started_wall=min((r.started_wall for r in ordered), default=0.0),
        finished_wall=max((r.finished_wall for r in ordered), default=0.0),
        example_db=next((r.example_db for r in ordered), None), db_errors=sum(r.db_errors for r in ordered))


def _merge_progress(latest: Mapping[int, Mapping[str, Any]], t0: float) -> CampaignProgress:
    verdicts: Counter[str] = Counter()
    for p in latest.values():
        verdicts.update(p["verdicts"])
    phases = {p["phase"] for p in latest.values()}
    return CampaignProgress(
        examples_run=sum(p["examples_run"] for p in latest.values()), runs=sum(p["runs"] for p in latest.values()),
        failures=sum(p["failures"] for p in latest.values()), verdicts=dict(verdicts),
        phase="shrink" if "shrink" in phases else "generate", elapsed_s=time.monotonic() - t0,
        last=next(reversed(latest.values()))["last"] if latest else "", worker=-1)
