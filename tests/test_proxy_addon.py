"""The fault proxy addon in-process (taddons/tflow, real DAP bodies, no sockets)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mitmproxy import exceptions, http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow
from proxy_fixtures import (
    JOB_B64,
    TASK_B64,
    agg_resp,
    continue_req,
    init_req,
    job_path,
    report,
    rid,
    upload_path,
)

from dap import messages as m
from faults import dapcodec, loads_plan
from faults.history import FaultEvent, HistoryWriter, MessageEvent, comparable
from proxy_addons.addon import FaultProxyAddon, parse_links
from proxy_addons.contentview import DapContentview

PORTS = {"client->leader": 8081, "leader->helper": 8082, "collector->leader": 8083}


class Harness:
    def __init__(self, addon: FaultProxyAddon, tctx: taddons.context) -> None:
        self.addon = addon
        self.tctx = tctx
        self.sent: list[http.HTTPFlow] = []
        addon.sender = self.sent.append

    def plan(self, text: str) -> None:
        self.addon.set_plan(loads_plan(text), why="plan_loaded")

    def flow(self, method: str, path: str, body: bytes = b"", *, link: str = "client->leader",
             media: str | None = None, headers: dict[str, str] | None = None) -> http.HTTPFlow:
        hdrs = dict(headers or {})
        if media:
            hdrs["Content-Type"] = media
        req = http.Request.make(method, f"http://127.0.0.1:9999{path}", body, hdrs)
        f = tflow.tflow(req=req)
        f.client_conn.proxy_mode = ProxyMode.parse(f"reverse:http://127.0.0.1:9999@{PORTS[link]}")
        return f

    async def request(self, f: http.HTTPFlow) -> http.HTTPFlow:
        await self.addon.request(f)
        return f

    async def respond(self, f: http.HTTPFlow, status: int = 200, body: bytes = b"",
                      media: str | None = None) -> http.HTTPFlow:
        """Give the flow an upstream response and run the response hook (if not killed)."""
        if f.error is not None:
            await self.addon.error(f)
            return f
        if f.response is None:
            f.response = http.Response.make(status, body, {"Content-Type": media} if media else {})
        await self.addon.response(f)  # like mitmproxy: no error hook after a kill in the response hook
        return f

    async def roundtrip(self, f: http.HTTPFlow, status: int = 200, body: bytes = b"",
                        media: str | None = None) -> http.HTTPFlow:
        await self.request(f)
        return await self.respond(f, status, body, media)

    def events(self, cls: type = MessageEvent) -> list[Any]:
        return [e for e in self.addon.history.events if isinstance(e, cls)]

    def faults(self, rule_id: str | None = None) -> list[FaultEvent]:
        return [e for e in self.events(FaultEvent) if rule_id is None or e.rule_id == rule_id]


def run(body: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        addon = FaultProxyAddon()
        with taddons.context(addon) as tctx:
            tctx.configure(addon, faultrun_links="8081=client->leader,8082=leader->helper,8083=collector->leader")
            await body(Harness(addon, tctx))

    asyncio.run(main())


def upload(h: Harness, i: int) -> http.HTTPFlow:
    return h.flow("PUT", upload_path("/v09"), report(i).encode(), media=m.Report.MEDIA_TYPE)


def init(h: Harness, ids: list[int], job: str = JOB_B64) -> http.HTTPFlow:
    return h.flow("PUT", job_path(job), init_req(ids).encode(), link="leader->helper",
                  media=m.AggregationJobInitReq.MEDIA_TYPE)


PLAN_HEAD = "version = 1\nseed = 7\n"


def rule(rid_: str, action: str, match: str = "", limits: str = "") -> str:
    out = f'\n[[rules]]\nid = "{rid_}"\n'
    if match:
        out += f"[rules.match]\n{match}\n"
    out += f"[rules.action]\n{action}\n"
    if limits:
        out += f"[rules.limits]\n{limits}\n"
    return out


# --- options ---------------------------------------------------------------------------------------


def test_parse_links() -> None:
    assert parse_links("8081=client->leader, 8082=leader->helper") == {8081: "client->leader", 8082: "leader->helper"}
    for bad, needle in [("8081", "PORT=LINK"), ("x=client->leader", "port number"), ("8081=a->b", "unknown link"),
                        ("1=client->leader,1=leader->helper", "given twice"), ("70000=client->leader", "range")]:
        with pytest.raises(ValueError, match=needle):
            parse_links(bad)


def test_configure_errors_are_one_line(tmp_path) -> None:
    bad_plan = tmp_path / "bad.toml"
    bad_plan.write_text('version = 1\n[[rules]]\nid = "x1"\n[rules.action]\ntype = "delay"\n')
    addon = FaultProxyAddon()
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError) as info:
            tctx.configure(addon, faultrun_links="8081=nowhere")
        assert str(info.value) == "faultrun_links: unknown link 'nowhere' (known: client->leader, collector->leader, leader->helper)"
        with pytest.raises(exceptions.OptionsError) as info:
            tctx.configure(addon, faultrun_plan=str(bad_plan))
        assert str(info.value) == "faultrun_plan: rule 'x1': action 'delay': missing required parameter 'delay_ms'"
        with pytest.raises(exceptions.OptionsError, match="needs faultrun_token_file"):
            tctx.configure(addon, faultrun_control=12345)
        good = tmp_path / "good.toml"
        good.write_text(PLAN_HEAD + rule("d", "type = 'drop-request'"))
        tctx.configure(addon, faultrun_plan=str(good))
        assert [r.id for r in addon.state.plan.rules] == ["d"]


# --- history ---------------------------------------------------------------------------------------


def test_history_records_dap_summaries() -> None:
    async def body(h: Harness) -> None:
        await h.roundtrip(upload(h, 1), 201)
        f = init(h, [1, 2])
        await h.roundtrip(f, 200, agg_resp([1, 2]).encode(), m.AggregationJobResp.MEDIA_TYPE)
        c = h.flow("POST", job_path(), continue_req(2, [1]).encode(), link="leader->helper",
                   media=m.AggregationJobContinueReq.MEDIA_TYPE)
        await h.roundtrip(c, 400, b'{"type": "urn:ietf:params:ppm:dap:error:stepMismatch"}', "application/problem+json")
        await h.roundtrip(h.flow("PUT", upload_path(), b"\x00\x01garbage", media=m.Report.MEDIA_TYPE), 400)
        ev = h.events()
        assert [(e.link, e.kind, e.phase) for e in ev[:2]] == [("client->leader", "upload", "request"),
                                                              ("client->leader", "upload", "response")]
        assert list(ev[0].summary.report_ids) == [rid(1).hex()] and ev[0].summary.task_id == TASK_B64
        assert ev[1].status == 201
        assert list(ev[2].summary.report_ids) == [rid(1).hex(), rid(2).hex()]
        assert ev[2].summary.counts == {"prepare_inits": 2} and ev[2].summary.job_id == JOB_B64
        assert ev[3].summary.prepare_states == {rid(1).hex(): "finished", rid(2).hex(): "finished"}
        assert ev[4].kind == "agg_continue" and ev[4].summary.step == 2
        assert ev[5].summary.problem_type == "urn:ietf:params:ppm:dap:error:stepMismatch"
        assert ev[5].summary.problem_token == "stepMismatch"
        assert ev[6].summary.decode_error is not None and ev[6].summary.decode_error.startswith("Report.")
        assert [e.flow_seq for e in ev] == [1, 1, 2, 2, 3, 3, 4, 4]

    run(body)


# --- limits and determinism --------------------------------------------------------------------------


def _fire_pattern(limits: str, seed: int = 7, n: int = 12) -> list[bool]:
    pattern: list[bool] = []

    async def body(h: Harness) -> None:
        h.plan(f"version = 1\nseed = {seed}\n" + rule("r", "type = 'respond'\nstatus = 503", "kind = 'upload'", limits))
        for i in range(n):
            f = await h.request(upload(h, i))
            pattern.append(f.response is not None and f.response.status_code == 503)

    run(body)
    return pattern


def test_limits_nth_every_first_max() -> None:
    assert [i for i, x in enumerate(_fire_pattern("nth = 3")) if x] == [2]
    assert [i for i, x in enumerate(_fire_pattern("every = 4")) if x] == [3, 7, 11]
    assert [i for i, x in enumerate(_fire_pattern("first = 2")) if x] == [0, 1]
    assert [i for i, x in enumerate(_fire_pattern("every = 2\nmax_fires = 2")) if x] == [1, 3]
    assert all(_fire_pattern(""))


def test_probability_is_seeded() -> None:
    a = _fire_pattern("probability = 0.5", seed=1, n=40)
    assert a == _fire_pattern("probability = 0.5", seed=1, n=40)
    assert a != _fire_pattern("probability = 0.5", seed=2, n=40)
    assert 5 < sum(a) < 35
    assert not any(_fire_pattern("probability = 0.0"))


def test_link_and_kind_matching() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD + rule("r", "type = 'drop-request'", "link = 'leader->helper'"))
        up = await h.request(upload(h, 1))
        assert up.error is None
        ini = await h.request(init(h, [1]))
        assert ini.error is not None and ini.error.msg == "Connection killed."
        assert [f.flow_seq for f in h.faults("r")] == [2]

    run(body)


def test_dap_predicates() -> None:
    async def body(h: Harness) -> None:
        h.plan(
            PLAN_HEAD
            + rule("by-id", "type = 'respond'\nstatus = 418", f"kind = 'agg_init'\nreport_id = '{rid(5).hex()}'")
            + rule("by-index", "type = 'respond'\nstatus = 419", "kind = 'agg_init'\nreport_index = 1")
            + rule("by-step", "type = 'respond'\nstatus = 420", "kind = 'agg_continue'\nstep = 3")
            + rule("by-problem", "type = 'respond'\nstatus = 421",
                   "kind = 'agg_share'\nphase = 'response'\nproblem_type = 'batchMismatch'")
            + rule("by-status", "type = 'respond'\nstatus = 422", "kind = 'collection_poll'\nphase = 'response'\nstatus = 202")
        )
        for i in (9, 8):  # report index 0 = 09.., 1 = 08..
            await h.roundtrip(upload(h, i))
        assert (await h.request(init(h, [5]))).response.status_code == 418
        assert (await h.request(init(h, [9]))).response is None
        assert (await h.request(init(h, [7, 8]))).response.status_code == 419
        cont = lambda s: h.flow("POST", job_path(), continue_req(s, [9]).encode(), link="leader->helper")  # noqa: E731
        assert (await h.request(cont(2))).response is None
        assert (await h.request(cont(3))).response.status_code == 420
        share = h.flow("POST", f"/tasks/{TASK_B64}/aggregate_shares", b"", link="leader->helper")
        await h.roundtrip(share, 400, b'{"type":"urn:ietf:params:ppm:dap:error:batchMismatch"}', "application/problem+json")
        assert share.response.status_code == 421
        share2 = h.flow("POST", f"/tasks/{TASK_B64}/aggregate_shares", b"", link="leader->helper")
        await h.roundtrip(share2, 400, b'{"type":"urn:ietf:params:ppm:dap:error:batchInvalid"}', "application/problem+json")
        assert share2.response.status_code == 400
        poll = h.flow("POST", f"/tasks/{TASK_B64}/collection_jobs/{JOB_B64}", link="collector->leader")
        assert (await h.roundtrip(poll, 202)).response.status_code == 422
        poll2 = h.flow("POST", f"/tasks/{TASK_B64}/collection_jobs/{JOB_B64}", link="collector->leader")
        assert (await h.roundtrip(poll2, 200)).response.status_code == 200

    run(body)


# --- actions ------------------------------------------------------------------------------------------


def test_drop_request_and_drop_response() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD + rule("dq", "type = 'drop-request'", "kind = 'upload'")
               + rule("dr", "type = 'drop-response'", "kind = 'agg_init'"))
        f = await h.roundtrip(upload(h, 1))
        assert f.error.msg == "Connection killed." and f.response is None
        g = await h.roundtrip(init(h, [1]), 200, agg_resp([1]).encode())
        assert g.error.msg == "Connection killed." and g.response.status_code == 200
        assert [e.phase for e in h.events() if e.flow_seq == 2] == ["request", "response", "error"]
        assert h.faults("dr")[0].changed.to_dict() == {"dropped": "response", "upstream_status": 200}

    run(body)


def test_corrupt_field_report_id_and_prepare_resp_order() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD
               + rule("rid", "type = 'corrupt-field'\nfield = 'report_metadata.report_id'\nop = 'flip'", "kind = 'upload'")
               + rule("order", "type = 'corrupt-field'\nfield = 'prepare_resps'\nop = 'reverse'",
                      "kind = 'agg_init'\nphase = 'response'")
               + rule("time", "type = 'corrupt-field'\nfield = 'prepare_inits[*].report_share.report_metadata.time'\nop = 'add'\nvalue = 3600",
                      "kind = 'agg_init'"))
        f = await h.request(upload(h, 1))
        got = m.Report.decode(f.request.raw_content)
        orig = report(1)
        assert got.report_metadata.report_id != orig.report_metadata.report_id
        diff = int.from_bytes(got.report_metadata.report_id, "big") ^ int.from_bytes(rid(1), "big")
        assert bin(diff).count("1") == 1  # exactly one bit
        assert (got.report_metadata.time, got.leader_encrypted_input_share) == (
            orig.report_metadata.time, orig.leader_encrypted_input_share)
        g = init(h, [1, 2, 3])
        await h.roundtrip(g, 200, agg_resp([1, 2, 3]).encode(), m.AggregationJobResp.MEDIA_TYPE)
        sent = m.AggregationJobInitReq.decode(g.request.raw_content)
        assert [pi.report_share.report_metadata.time for pi in sent.prepare_inits] == [1_700_003_600] * 3
        resp = m.AggregationJobResp.decode(g.response.raw_content)
        assert [bytes(p.report_id) for p in resp.prepare_resps] == [rid(3), rid(2), rid(1)]
        ev = h.faults("order")[0]
        assert ev.changed.before == [rid(i).hex() for i in (1, 2, 3)]
        assert ev.changed.after == [rid(i).hex() for i in (3, 2, 1)]

    run(body)


def test_corrupt_field_undecodable_body_is_recorded_not_raised() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD + rule("rid", "type = 'corrupt-field'\nfield = 'report_metadata.time'", "kind = 'upload'"))
        f = await h.request(h.flow("PUT", upload_path(), b"\x01\x02"))
        assert f.request.raw_content == b"\x01\x02" and f.error is None
        assert "DecodeError" in h.faults("rid")[0].changed.skipped

    run(body)


def test_corrupt_bytes_and_truncate_are_seeded() -> None:
    bodies: list[bytes] = []

    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD + rule("cb", "type = 'corrupt-bytes'\nflips = 3", "kind = 'upload'")
               + rule("tr", "type = 'truncate'\ndrop_bytes = 10", "kind = 'agg_init'"))
        f = await h.request(upload(h, 1))
        bodies.append(f.request.raw_content)
        g = await h.request(init(h, [1]))
        assert g.request.raw_content == init_req([1]).encode()[:-10]
        # each body change records the body it left (changes that undo each other are visible)
        assert h.faults("cb")[0].changed.body_sha256 == dapcodec.body_digest(f.request.raw_content)
        assert h.faults("tr")[0].changed.body_sha256 == dapcodec.body_digest(g.request.raw_content)

    run(body)
    run(body)
    orig = report(1).encode()
    assert bodies[0] == bodies[1] != orig
    assert sum(bin(a ^ b).count("1") for a, b in zip(bodies[0], orig, strict=True)) == 3


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("strip", lambda h: "dap-auth-token" not in h and "authorization" not in h),
        ("wrong_value", lambda h: h["dap-auth-token"] not in ("", "secret-token-123") and len(h["dap-auth-token"]) == 16),
        ("wrong_scheme", lambda h: h["authorization"] == "Basic c2VjcmV0LXRva2VuLTEyMw==" and "dap-auth-token" not in h),
        ("duplicate", lambda h: h.get_all("dap-auth-token") == ["secret-token-123", "secret-token-123"]),
        ("wrong_bearer", lambda h: "dap-auth-token" not in h and h["authorization"].startswith("Bearer ")
         and h["authorization"][7:] not in ("", "secret-token-123")),
        # the genuine token kept, a wrong Bearer beside it
        ("conflicting", lambda h: h["dap-auth-token"] == "secret-token-123" and h["authorization"].startswith("Bearer ")
         and h["authorization"][7:] != "secret-token-123"),
    ],
)
def test_auth_modes(mode: str, check: Callable[[Any], bool]) -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD + rule("a", f"type = 'auth'\nmode = '{mode}'", "kind = 'agg_init'"))
        f = init(h, [1])
        f.request.headers["DAP-Auth-Token"] = "secret-token-123"
        await h.request(f)
        assert check(f.request.headers)

    run(body)


def test_respond_before_and_after_forwarding() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD
               + rule("pre", "type = 'respond'\nstatus = 400\nproblem_type = 'invalidMessage'", "kind = 'upload'")
               + rule("post", "type = 'respond'\nstatus = 500", "kind = 'agg_share'\nphase = 'response'")
               + rule("never", "type = 'respond'\nstatus = 555", "kind = 'upload'\nphase = 'response'"))
        f = await h.roundtrip(upload(h, 1))
        assert f.response.status_code == 400
        doc = json.loads(f.response.content)
        assert doc["type"] == "urn:ietf:params:ppm:dap:error:invalidMessage" and doc["taskid"] == TASK_B64
        assert f.response.headers["content-type"] == "application/problem+json"
        assert h.faults("never") == []  # a proxy-made answer is not matched by response rules
        g = h.flow("POST", f"/tasks/{TASK_B64}/aggregate_shares", b"x", link="leader->helper")
        await h.roundtrip(g, 200, b"share", "application/dap-aggregate-share")
        assert g.response.status_code == 500 and h.faults("post")[0].changed.replaced_status == 200

    run(body)


def test_duplicate_copies_are_marked_and_not_matched_again() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD + rule("dup", "type = 'duplicate'\ncopies = 2", "kind = 'upload'"))
        f = await h.request(upload(h, 1))
        assert len(h.sent) == 2
        for c in h.sent:
            assert c.request.raw_content == f.request.raw_content and c.response is None
            assert c.metadata["faultrun.copy"] == {"origin": "duplicate", "rule_id": "dup", "of": f.id}
            c.live = True
            c.is_replay = "request"
            await h.request(c)  # the copy comes back through the proxy: recorded, never matched
        assert len(h.sent) == 2 and len(h.faults("dup")) == 1
        copies = [e for e in h.events() if e.origin == "duplicate"]
        assert len(copies) == 2 and all(e.copy_of == f.id and e.copy_rule == "dup" for e in copies)

    run(body)


def test_synthesize_continue_and_reinit() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD
               + rule("cont", "type = 'synthesize'\nmessage = 'continue_step'\nstep = 5", "kind = 'agg_init'", "nth = 1")
               + rule("reinit", "type = 'synthesize'\nmessage = 'reinit_new_job'\nreport_index = 1",
                      "kind = 'agg_init'", "nth = 2"))
        f = init(h, [1, 2])
        await h.roundtrip(f, 200, agg_resp([1, 2]).encode(), m.AggregationJobResp.MEDIA_TYPE)
        assert len(h.sent) == 1
        c = h.sent[0]
        assert (c.request.method, c.request.path) == ("POST", job_path())
        assert c.request.headers["content-type"] == m.AggregationJobContinueReq.MEDIA_TYPE
        creq = m.AggregationJobContinueReq.decode(c.request.raw_content)
        assert creq.step == 5 and [bytes(p.report_id) for p in creq.prepare_continues] == [rid(1), rid(2)]
        g = init(h, [3, 4])
        await h.roundtrip(g, 200, agg_resp([3, 4]).encode(), m.AggregationJobResp.MEDIA_TYPE)
        r = h.sent[1]
        assert r.request.method == "PUT" and r.request.path.startswith(f"/tasks/{TASK_B64}/aggregation_jobs/")
        new_job = r.request.path.rsplit("/", 1)[1]
        assert new_job != JOB_B64 and len(new_job) == 22
        ireq = m.AggregationJobInitReq.decode(r.request.raw_content)
        assert [bytes(p.report_share.report_metadata.report_id) for p in ireq.prepare_inits] == [rid(4)]
        assert h.faults("reinit")[0].changed.new_job_id == new_job

    run(body)


def test_replay_later_after_messages_and_event() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD
               + rule("n", "type = 'replay-later'\nafter_messages = 2", "kind = 'upload'", "nth = 1")
               + rule("ev", "type = 'replay-later'\nafter_event = 'collection_finished'", "kind = 'agg_init'", "nth = 1"))
        first = await h.roundtrip(upload(h, 1))
        await h.roundtrip(upload(h, 2))
        assert h.sent == []
        await h.roundtrip(upload(h, 3))
        assert len(h.sent) == 1 and m.Report.decode(h.sent[0].request.raw_content) == report(1)
        assert h.sent[0].metadata["faultrun.copy"]["of"] == first.id
        await h.roundtrip(init(h, [1]), 200, agg_resp([1]).encode())
        poll = lambda: h.flow("POST", f"/tasks/{TASK_B64}/collection_jobs/{JOB_B64}", link="collector->leader")  # noqa: E731
        await h.roundtrip(poll(), 202)
        assert len(h.sent) == 1
        await h.roundtrip(poll(), 200)
        assert len(h.sent) == 2 and h.sent[1].request.method == "PUT" and "/aggregation_jobs/" in h.sent[1].request.path

    run(body)


def test_replay_later_discarded_on_plan_change() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD + rule("ev", "type = 'replay-later'\nafter_event = 'manual:go'", "kind = 'upload'"))
        await h.roundtrip(upload(h, 1))
        h.plan(PLAN_HEAD)
        assert h.addon.fire_event("manual:go") == 0 and h.sent == []
        assert any(getattr(e, "what", "") == "replay_discarded" for e in h.addon.history.events)

    run(body)


def test_reorder_request_released_after_next_match() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD + rule("ro", "type = 'reorder'", "kind = 'upload'", "nth = 1"))
        order: list[int] = []
        a, b = upload(h, 1), upload(h, 2)

        async def go(f: http.HTTPFlow, i: int) -> None:
            await h.request(f)
            order.append(i)

        ta = asyncio.create_task(go(a, 1))
        await asyncio.sleep(0.05)
        assert not ta.done()  # held
        await go(b, 2)
        await asyncio.sleep(0.05)
        assert not ta.done()  # still held until b's response is back
        await h.respond(b)
        await asyncio.wait_for(ta, 1)
        assert order == [2, 1]
        assert [e.changed.to_dict() for e in h.faults("ro")] == [{"held": True}, {"released": "after flow 2"}]

    run(body)


def test_reorder_released_on_plan_change_and_timeout() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD + rule("ro", "type = 'reorder'\nmax_hold_ms = 100000", "kind = 'upload'"))
        t = asyncio.create_task(h.request(upload(h, 1)))
        await asyncio.sleep(0.05)
        assert not t.done()
        h.plan(PLAN_HEAD)
        f = await asyncio.wait_for(t, 1)
        assert f.error is None and f.response is None  # released and forwarded, never dropped
        assert h.faults("ro")[-1].changed.to_dict() == {"released": "plan_loaded"}
        h.plan(PLAN_HEAD + rule("ro2", "type = 'reorder'\nmax_hold_ms = 50", "kind = 'upload'"))
        f2 = await asyncio.wait_for(h.request(upload(h, 2)), 1)
        assert f2.error is None and h.faults("ro2")[-1].changed.to_dict() == {"released": "timeout"}

    run(body)


def test_delay_does_not_block_other_flows() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD + rule("slow", "type = 'delay'\ndelay_ms = 300\njitter_ms = 20", "kind = 'upload'"))
        t0 = time.monotonic()
        slow = asyncio.create_task(h.request(upload(h, 1)))
        await asyncio.sleep(0.01)
        await h.request(init(h, [1]))
        fast_done = time.monotonic() - t0
        await slow
        slow_done = time.monotonic() - t0
        assert fast_done < 0.15 and slow_done >= 0.3
        assert 300 <= h.faults("slow")[0].changed.delay_ms <= 320

    run(body)


def test_same_plan_same_traffic_same_history() -> None:
    plan = (PLAN_HEAD
            + rule("p", "type = 'corrupt-bytes'\nflips = 2", "kind = 'upload'", "probability = 0.5")
            + rule("j", "type = 'delay'\ndelay_ms = 1\njitter_ms = 30", "kind = 'agg_init'")
            + rule("w", "type = 'auth'\nmode = 'wrong_value'", "link = 'leader->helper'", "every = 2"))
    runs: list[list[dict]] = []

    async def body(h: Harness) -> None:
        h.plan(plan)
        for i in range(8):
            await h.roundtrip(upload(h, i), 201)
            await h.roundtrip(init(h, [i]), 200, agg_resp([i]).encode(), m.AggregationJobResp.MEDIA_TYPE)
        runs.append(comparable(h.addon.history.events))

    run(body)
    run(body)
    assert runs[0] == runs[1]
    assert sum(1 for e in runs[0] if e["event"] == "fault" and e["rule_id"] == "p") in range(1, 8)


# --- content view -------------------------------------------------------------------------------------


def test_contentview_renders_dap_and_problem() -> None:
    from mitmproxy.contentviews import Metadata

    view = DapContentview()
    meta = Metadata(content_type=m.Report.MEDIA_TYPE)
    assert view.render_priority(report(1).encode(), meta) > 1
    text = view.prettify(report(1).encode(), meta)
    assert text.startswith("Report (")
    assert "report_id: " in text and "time: 1700000000" in text
    bad = view.prettify(b"\x00\x01", meta)
    assert "does not decode" in bad and "Report.report_metadata" in bad
    pj = Metadata(content_type="application/problem+json")
    out = view.prettify(b'{"type":"urn:ietf:params:ppm:dap:error:batchMismatch"}', pj)
    assert "batchMismatch - Leader and helper disagree" in out
    assert view.render_priority(b"x", Metadata(content_type="text/html")) < 0
    ini = view.prettify(init_req([1, 2]).encode(), Metadata(content_type=m.AggregationJobInitReq.MEDIA_TYPE))
    assert "prepare_inits:" in ini and "[1]" in ini


def test_reorder_responses() -> None:
    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD + rule("ro", "type = 'reorder'", "kind = 'agg_init'\nphase = 'response'", "nth = 1"))
        done: list[int] = []
        a, b = init(h, [1]), init(h, [2])
        await h.request(a)
        await h.request(b)

        async def deliver(f: http.HTTPFlow, i: int) -> None:
            await h.respond(f, 200, agg_resp([i]).encode(), m.AggregationJobResp.MEDIA_TYPE)
            done.append(i)

        ta = asyncio.create_task(deliver(a, 1))
        await asyncio.sleep(0.05)
        assert not ta.done()  # a's response is held
        await deliver(b, 2)
        await asyncio.wait_for(ta, 1)
        assert done == [2, 1]
        assert a.response.status_code == 200 and a.error is None  # delivered, not dropped

    run(body)


# --- lossless records ---------------------------------------------------------------------------------


def test_a_failed_history_write_refuses_the_flow_and_is_reported(tmp_path: Any) -> None:
    async def body(h: Harness) -> None:
        h.tctx.configure(h.addon, faultrun_history=str(tmp_path / "history.jsonl"))
        h.plan(PLAN_HEAD + rule("dup", 'type = "duplicate"', 'kind = "upload"'))
        ok = await h.roundtrip(upload(h, 1), 201)
        assert ok.response.status_code == 201 and len(h.sent) == 1  # recorded, duplicated, forwarded
        h.addon.history._file.close()  # the disk is gone from under the proxy
        f = await h.request(upload(h, 2))
        # not forwarded unrecorded: answered by the proxy, naming itself, and no fault applied
        assert f.response is not None and f.response.status_code == 502
        doc = json.loads(f.response.content)
        assert doc["status"] == 502 and "dap-faultrun fault proxy" in doc["title"]
        assert f.response.headers["Content-Type"] == "application/problem+json"
        assert len(h.sent) == 1
        failures = h.addon.state.status()["recording_failures"]
        assert failures and failures[0]["seq"] >= 0 and "ValueError" in failures[0]["error"]
        h.addon.history._file = None

    run(body)


def test_a_failed_fault_record_refuses_the_flow(tmp_path: Any) -> None:
    async def body(h: Harness) -> None:
        class FailsOnFaults(HistoryWriter):
            def fault(self, **kw: Any) -> None:
                self._file.close()  # the disk fills just as the fault is written
                super().fault(**kw)

        h.addon.history = h.addon.state.history = FailsOnFaults(tmp_path / "history.jsonl")
        h.plan(PLAN_HEAD + rule("drop", 'type = "drop-request"', 'kind = "upload"'))
        f = await h.request(upload(h, 1))
        # the drop was never recorded, so it did not happen: the proxy refuses the flow instead
        assert f.response is not None and f.response.status_code == 502 and f.error is None
        assert h.addon.state.status()["recording_failures"]
        h.addon.history._file = None

    run(body)


def _share_req(count: int = 8) -> m.AggregateShareReq:
    iv = m.Interval(1_700_000_000, 3600)
    return m.AggregateShareReq(m.BatchSelector.time_interval(iv), b"", count, bytes(32))


def _collection_req() -> m.CollectionReq:
    return m.CollectionReq(m.Query.time_interval(m.Interval(1_700_000_000, 3600)), b"")


def test_synthesize_forgeries_of_collection_side_requests() -> None:
    """collection_mutated / agg_share_mutated / delete_* / forged_copy: what each sends."""
    coll_path = f"/tasks/{TASK_B64}/collection_jobs/{JOB_B64}"
    share_path = f"/tasks/{TASK_B64}/aggregate_shares"

    async def body(h: Harness) -> None:
        h.plan(PLAN_HEAD
               + rule("coll", "type = 'synthesize'\nmessage = 'collection_mutated'", "kind = 'collection_create'")
               + rule("del", "type = 'synthesize'\nmessage = 'delete_collection'\ncredentials = 'strip'",
                      "kind = 'collection_create'")
               + rule("share", "type = 'synthesize'\nmessage = 'agg_share_mutated'", "kind = 'agg_share'")
               + rule("forge", "type = 'synthesize'\nmessage = 'forged_copy'\ncredentials = 'wrong_bearer'",
                      "kind = 'agg_share'"))
        c = h.flow("PUT", coll_path, _collection_req().encode(), link="collector->leader",
                   media=m.CollectionReq.MEDIA_TYPE, headers={"DAP-Auth-Token": "collector-token"})
        await h.roundtrip(c, 201)
        mutated, delete = h.sent
        assert (mutated.request.method, mutated.request.path) == ("PUT", coll_path)
        q = m.CollectionReq.decode(mutated.request.raw_content).query.batch_interval
        assert (q.start, q.duration) == (1_700_000_000 + 3600, 3600)  # the next interval
        assert mutated.request.headers["DAP-Auth-Token"] == "collector-token"  # genuine credentials
        assert (delete.request.method, delete.request.path, delete.request.raw_content) == ("DELETE", coll_path, b"")
        assert "DAP-Auth-Token" not in delete.request.headers and "content-type" not in delete.request.headers
        assert h.faults("del")[0].changed.credentials == "strip"
        assert h.faults("del")[0].changed.copy_credentials_tampered
        assert not h.faults("coll")[0].changed.copy_credentials_tampered

        s = h.flow("POST", share_path, _share_req().encode(), link="leader->helper",
                   media=m.AggregateShareReq.MEDIA_TYPE, headers={"DAP-Auth-Token": "leader-token"})
        await h.roundtrip(s, 200, b"share", m.AggregateShare.MEDIA_TYPE)
        more, forged = h.sent[2:]
        assert m.AggregateShareReq.decode(more.request.raw_content).report_count == 9
        assert h.faults("share")[0].changed.detail == "report_count 8 -> 9"
        assert forged.request.raw_content == s.request.raw_content and forged.response is None
        assert "DAP-Auth-Token" not in forged.request.headers
        assert forged.request.headers["Authorization"] not in ("Bearer leader-token", "")
        assert forged.metadata["faultrun.copy"]["origin"] == "synthesize:forged_copy"

    run(body)


@pytest.mark.parametrize(("action", "match", "error"), [
    ("message = 'forged_copy'", "kind = 'agg_share'", "needs credentials"),
    ("message = 'forged_copy'\ncredentials = 'strip'", "kind = 'upload'", "copies an authenticated request"),
    ("message = 'collection_mutated'", "kind = 'agg_share'", "set kind = 'collection_create'"),
])
def test_synthesize_target_errors_are_one_line(action: str, match: str, error: str) -> None:
    from faults.errors import PlanError

    with pytest.raises(PlanError) as exc:
        loads_plan(PLAN_HEAD + rule("x", f"type = 'synthesize'\n{action}", match))
    assert error in str(exc.value) and "\n" not in str(exc.value)
