"""The independent peers (peers/, docs/images.md) against the reference roles, as processes.

- every peer answers ``ready`` (with and without a body), 404 for an unknown test path and
  400 for a body that is not a JSON object, like the reference roles;
- the divviup-ts Client and the Janus Client upload Prio3Count, Sum, Histogram and SumVec
  reports to the reference Leader / Helper (time_interval and fixed_size); the reference
  Collector gets the exact aggregate;
- the Janus Collector collects from the reference Aggregators: time_interval, fixed_size
  current_batch and by batch ID, the exact aggregate, interval and batch ID; Poplar1 with an
  aggregation parameter (Janus Client + Janus Collector);
- the three Clients answer the same bad upload requests alike (status and HTTP code).

The peers are built by ``bash scripts/bootstrap --test``; a missing one FAILS these tests
with the command that builds it. Every process a test starts is stopped by it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers_fixtures import PeerProcess
from roles_fixtures import Deployment, b64, expected_result, random_measurement

N = 10
VDAFS = [
    {"type": "Prio3Count"},
    {"type": "Prio3Sum", "bits": "8"},
    {"type": "Prio3Histogram", "length": "5", "chunk_length": "2"},
    {"type": "Prio3SumVec", "bits": "8", "length": "10", "chunk_length": "12"},
]
PEERS = ["divviup-ts-client", "janus-client", "janus-collector"]


@pytest.fixture
def dep(tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(tmp_path)
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[list[PeerProcess]]:
    """Started peers, all stopped at teardown; a test appends what it starts."""
    started: list[PeerProcess] = []
    try:
        yield started
    finally:
        for p in started:
            p.close()


def _start(peers: list[PeerProcess], name: str, tmp_path: Path) -> PeerProcess:
    p = PeerProcess(name, tmp_path / "peers")
    peers.append(p)
    return p


@pytest.mark.parametrize("name", PEERS)
def test_ready_and_test_api_errors(name: str, peers: list[PeerProcess], tmp_path: Path) -> None:
    p = _start(peers, name, tmp_path)
    assert p.post("internal/test/ready", content=b"").status_code == 200  # the runner sends no body
    r = p.post("internal/test/ready", {})
    assert r.status_code == 200 and r.json() == {}
    r = p.post("internal/test/no_such_endpoint", {})
    assert r.status_code == 404 and r.json()["status"] == "error"
    endpoint = "upload" if name.endswith("client") else "add_task"
    for bad in (b"not json", b"[1, 2]"):
        r = p.post(f"internal/test/{endpoint}", content=bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["status"] == "error"


def _upload_all(client: PeerProcess, dep: Deployment, query_type: int, rng: random.Random) -> list[tuple[dict, dict, list]]:
    out = []
    for vdaf in VDAFS:
        t = dep.add_task(vdaf, query_type, min_batch_size=N, max_batch_size=N if query_type == 2 else None)
        ms = [random_measurement(vdaf, rng) for _ in range(N)]
        for m in ms:
            r = client.call("upload", {"task_id": t["task_id"], "leader": t["leader"], "helper": t["helper"],
                                       "vdaf": vdaf, "measurement": m, "time_precision": t["time_precision"]})
            assert r == {"status": "success"}, (client.name, vdaf, m, r, client.log_tail())
        out.append((t, vdaf, ms))
    return out


@pytest.mark.parametrize("query_type", [1, 2], ids=["time", "fixed"])
@pytest.mark.parametrize("client_name", ["divviup-ts-client", "janus-client"])
def test_peer_client_uploads_are_aggregated_exactly(client_name: str, query_type: int, dep: Deployment,
                                                     peers: list[PeerProcess], tmp_path: Path) -> None:
    client = _start(peers, client_name, tmp_path)
    for t, vdaf, ms in _upload_all(client, dep, query_type, random.Random(query_type)):
        r = dep.collect(t, timeout=60)  # the reference Collector
        assert r["status"] == "complete", (vdaf, r)
        assert r["report_count"] == N
        assert r["result"] == expected_result(vdaf, ms), vdaf


def _use_collector(dep: Deployment, collector: PeerProcess) -> None:
    """Replace the Deployment's reference Collector by ``collector`` (the reference one stops)."""
    dep.collector.close()
    dep.collector = collector  # type: ignore[assignment]


@pytest.mark.parametrize("query_type", [1, 2], ids=["time", "fixed"])
def test_janus_collector_collects_exactly(query_type: int, dep: Deployment, peers: list[PeerProcess],
                                          tmp_path: Path) -> None:
    _use_collector(dep, _start(peers, "janus-collector", tmp_path))
    rng = random.Random(10 + query_type)
    for vdaf in VDAFS:
        t = dep.add_task(vdaf, query_type, min_batch_size=N, max_batch_size=N if query_type == 2 else None,
                         max_batch_query_count=2)
        ms = [random_measurement(vdaf, rng) for _ in range(N)]
        for m in ms:
            assert dep.upload(t, m) == {"status": "success"}  # the reference Client
        r = dep.collect(t, timeout=60)
        assert r["status"] == "complete", (vdaf, r)
        assert r["report_count"] == N
        assert r["result"] == expected_result(vdaf, ms), vdaf
        tp = t["time_precision"]
        assert r["interval_duration"] == tp and r["interval_start"] % tp == 0
        if query_type == 1:
            assert "batch_id" not in r
            continue
        # fixed_size: the batch again, by its ID (max_batch_query_count = 2)
        again = dep.collect(t, query={"type": 2, "subtype": 0, "batch_id": r["batch_id"]}, timeout=60)
        assert again["status"] == "complete", again
        assert (again["result"], again["batch_id"], again["report_count"]) == (r["result"], r["batch_id"], N)


def test_janus_collector_errors(dep: Deployment, peers: list[PeerProcess], tmp_path: Path) -> None:
    col = _start(peers, "janus-collector", tmp_path)
    _use_collector(dep, col)
    unknown = "A" * 43
    r = col.call("collection_start", {"task_id": unknown, "agg_param": "", "query": {"type": 2, "subtype": 1}})
    assert r["status"] == "error" and "unknown task" in r["error"]
    assert col.call("collection_poll", {"handle": "nope"})["status"] == "error"
    body = {"task_id": unknown, "leader": dep.leader.url, "vdaf": {"type": "Prio3Nope"},
            "collector_authentication_token": "collector-x", "query_type": 1}
    assert col.call("add_task", body)["status"] == "error"
    body["vdaf"] = {"type": "Prio3Count"}
    first = col.call("add_task", body)
    assert first["status"] == "success"
    assert col.call("add_task", body) == first  # the same registration: the same HPKE config
    assert col.call("add_task", {**body, "query_type": 2})["status"] == "error"  # conflicting
    # a task the Leader does not know: the PUT is refused (unrecognizedTask), status error
    body["leader"] = dep.leader.url
    r = col.call("collection_start", {"task_id": unknown, "agg_param": "", "query": {"type": 2, "subtype": 1}})
    assert r["status"] == "error" and "unrecognizedTask" in r["error"], r


def test_janus_client_and_collector_poplar1(dep: Deployment, peers: list[PeerProcess], tmp_path: Path) -> None:
    from dap.vdaf.params import VdafParams
    from faults.heavy_hitters import agg_param_interop

    client = _start(peers, "janus-client", tmp_path)
    _use_collector(dep, _start(peers, "janus-collector", tmp_path))
    vdaf = {"type": "Poplar1", "bits": "4"}
    params = VdafParams.from_interop(vdaf)
    t = dep.add_task(vdaf, 1, min_batch_size=6, max_batch_query_count=4)
    words = ["1010", "1010", "1011", "0001", "1010", "0111"]
    for w in words:
        r = client.call("upload", {"task_id": t["task_id"], "leader": t["leader"], "helper": t["helper"],
                                   "vdaf": vdaf, "measurement": [c == "1" for c in w],
                                   "time_precision": t["time_precision"]})
        assert r == {"status": "success"}, r
    for level, prefixes in ((0, ["0", "1"]), (1, ["00", "01", "10", "11"]), (3, ["1010", "1011", "1111"])):
        agg = agg_param_interop(params, level, prefixes)
        r = dep.collector.call("collection_start", {"task_id": t["task_id"], "agg_param": agg,
                                                    "query": dep.query_for(t)})
        assert r["status"] == "success", r
        r = dep.poll(r["handle"], timeout=60)
        assert r["status"] == "complete", (level, r)
        want = [str(sum(w.startswith(p) for w in words)) for p in prefixes]
        assert r["result"] == want, (level, prefixes)
        assert r["report_count"] == len(words)


BAD_UPLOADS = {
    "task_id not 32 bytes": {"task_id": "AAAA"},
    "unsupported VDAF": {"vdaf": {"type": "Prio3Nope"}},
    "Count measurement 2": {"measurement": "2"},
    "Count measurement not a string": {"measurement": [1]},
    "time_precision missing": {"time_precision": None},
    "time negative": {"time": -5},
    "far-future report (reportTooEarly)": {"time": 4_000_000_000},
    "unknown task at the Leader": {"task_id": b64(bytes([7]) * 32)},
}


def test_clients_answer_alike(dep: Deployment, peers: list[PeerProcess], tmp_path: Path) -> None:
    """The reference, divviup-ts and Janus Clients give the same status for the same request."""
    clients = [dep.client, _start(peers, "divviup-ts-client", tmp_path), _start(peers, "janus-client", tmp_path)]
    t = dep.add_task({"type": "Prio3Count"}, 1)
    good = {"task_id": t["task_id"], "leader": t["leader"], "helper": t["helper"], "vdaf": {"type": "Prio3Count"},
            "measurement": "1", "time_precision": t["time_precision"], "time": int(time.time())}
    for c in clients:
        r = c.post("internal/test/upload", good)
        assert (r.status_code, r.json()) == (200, {"status": "success"}), (getattr(c, "name", "reference"), r.text)
    for what, change in BAD_UPLOADS.items():
        body = {k: v for k, v in {**good, **change}.items() if v is not None}
        answers = []
        for c in clients:
            r = c.post("internal/test/upload", body)
            answers.append((r.status_code, r.json().get("status")))
        assert answers == [(200, "error")] * 3, (what, answers)
    r = dep.collect(t)
    assert r["status"] == "complete" and r["result"] == "3", r  # only the three good uploads
