"""Helper aggregation-job init idempotency under re-sends, at the HTTP level.

A byte-identical init PUT for a known job must be answered with the stored response
(201, same bytes) however it arrives: re-sent after the first answer was lost
(drop-agg-init-response, delay-beyond-timeout), duplicated while the first is still being
processed (duplicate-agg-init: the second request passes the lookup outside the transaction
and must find the job inside it), or replayed after the batch was collected
(replay-agg-init-after-collection). None of them may be a 500 (a second insert of the job's
report_aggs rows) and nothing may be counted twice; a different body stays 409.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from roles_fixtures import RoleProcess
from test_roles_helper_http import FakeLeader, checksum

from dap.messages import AggregationJobResp


@pytest.fixture(scope="module")
def helper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoleProcess]:
    with RoleProcess("helper", tmp_path_factory.mktemp("helper-idem")) as p:
        yield p


def _rids(preps: list) -> list[bytes]:
    return [p.report_share.report_metadata.report_id for p, _ in preps]


def test_identical_reinit_sequential_concurrent_and_after_collection(helper: RoleProcess) -> None:
    ld = FakeLeader(helper, max_batch_query_count=1)
    jobs = []
    with httpx.Client(timeout=10) as http:
        # Job A: answered, then re-sent several times (the Leader never saw the answer).
        preps_a = [ld.prep("1") for _ in range(8)]
        url_a, body_a = ld.job_url(), ld.init_body([p for p, _ in preps_a])
        first = http.put(url_a, content=body_a, headers=ld.headers())
        assert first.status_code == 201, first.text
        for _ in range(5):
            again = http.put(url_a, content=body_a, headers=ld.headers())
            assert again.status_code == 201, (again.status_code, again.text)
            assert again.content == first.content
        jobs.append((url_a, body_a, first.content))

    # Job B: the same init sent by several clients at once (the duplicated request is in
    # flight before the first is answered), repeated over fresh jobs to hit the race.
    all_preps = list(preps_a)
    for _ in range(6):
        preps = [ld.prep("1") for _ in range(8)]
        all_preps += preps
        url, body = ld.job_url(), ld.init_body([p for p, _ in preps])
        n = 6
        barrier = threading.Barrier(n)
        got: list[httpx.Response | BaseException] = []

        def put(url: str = url, body: bytes = body, barrier: threading.Barrier = barrier) -> None:
            try:
                with httpx.Client(timeout=10) as c:
                    barrier.wait(5)
                    got.append(c.put(url, content=body, headers=ld.headers()))
            except BaseException as exc:  # noqa: BLE001 - reported by the assert below
                got.append(exc)

        threads = [threading.Thread(target=put) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert len(got) == n, got
        statuses = [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in got]
        assert statuses == [201] * n, statuses
        bodies = {r.content for r in got}  # type: ignore[union-attr]
        assert len(bodies) == 1
        resp = AggregationJobResp.decode(bodies.pop())
        assert [bytes(p.report_id) for p in resp.prepare_resps] == [bytes(r) for r in _rids(preps)]
        jobs.append((url, body, resp.encode()))

    with httpx.Client(timeout=10) as http:
        # Nothing counted twice: the batch holds exactly the distinct reports.
        rids = _rids(all_preps)
        share = ld.post_share(ld.share_req(len(rids), checksum(rids)))
        assert share.status_code == 200, share.text
        # Replayed after the batch was collected: still the stored response, not a 500.
        for url, body, stored in jobs:
            r = http.put(url, content=body, headers=ld.headers())
            assert r.status_code == 201, (r.status_code, r.text)
            assert r.content == stored
        # A different body for a known job is still a conflict.
        mutated = ld.init_body([p for p, _ in preps_a[:7]])
        assert http.put(url_a, content=mutated, headers=ld.headers()).status_code == 409
        # And the count did not move: the same aggregate-share request is replayed as stored.
        again = ld.post_share(ld.share_req(len(rids), checksum(rids)))
        assert again.status_code == 200 and again.content == share.content
