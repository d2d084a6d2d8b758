"""History schema: JSONL writer/reader round trip, torn last line, run-to-run comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faults.actions import CorruptBytes, Delay
from faults.history import (
    ControlEvent,
    FaultEvent,
    HistoryWriter,
    MessageEvent,
    RecordingError,
    comparable,
    load_history,
    read_history,
)


def _fill(w: HistoryWriter) -> None:
    w.control("plan_loaded", seed=1, rules=["a"])
    w.message(link="client->leader", kind="upload", phase="request", flow_id="f-1", flow_seq=1, method="PUT",
              path="/tasks/t/reports", media_type="application/dap-report", body_len=230,
              summary={"report_ids": ["00" * 16], "task_id": "t"})
    w.fault(rule_id="a", action="corrupt-bytes", link="client->leader", kind="upload", phase="request",
            flow_id="f-1", flow_seq=1, changed=CorruptBytes.Change(flipped_bits=(3, 9)))
    w.message(link="client->leader", kind="upload", phase="response", flow_id="f-1", flow_seq=1, method="PUT",
              path="/tasks/t/reports", status=400, summary={"problem_type": "urn:x"})


def test_write_read_round_trip(tmp_path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path, keep_in_memory=True) as w:
        _fill(w)
        mem = list(w.events)
    events = read_history(path)
    assert events == mem
    assert [type(e) for e in events] == [ControlEvent, MessageEvent, FaultEvent, MessageEvent]
    assert [e.seq for e in events] == [0, 1, 2, 3]
    assert events[2].changed.to_dict() == {"flipped_bits": [3, 9]} and events[3].status == 400
    assert read_history(path, since_seq=2) == events[2:]
    schema, _, first = (json.loads(x) for x in path.read_text().splitlines()[:3])
    assert schema == {"event": "schema", "history_version": 1}
    assert first["event"] == "message" and first["summary"]["report_ids"] == ["00" * 16]


def test_torn_last_line_is_skipped_but_torn_middle_line_is_an_error(tmp_path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as w:
        _fill(w)
    text = path.read_text()
    path.write_text(text + '{"seq": 4, "t_mo')
    assert len(read_history(path)) == 4
    lines = text.splitlines()
    path.write_text("\n".join([lines[0], lines[1], lines[2][:10], *lines[3:]]) + "\n")
    with pytest.raises(ValueError, match="not a history event"):
        read_history(path)
    loaded = load_history(path)  # the checker's reader names the problem instead of raising
    assert len(loaded.events) == 1 and "h.jsonl:3: not a history event" in loaded.problems[0]


def test_schema_rejects_unknown_fields() -> None:
    w = HistoryWriter(None)
    with pytest.raises(TypeError):
        w.message(link=None, kind=None, phase="request", flow_id="x", flow_seq=1, method="GET", path="/",
                  colour="red")


def test_comparable_drops_only_volatile_fields(tmp_path) -> None:
    a, b = HistoryWriter(None), HistoryWriter(None)
    _fill(a)
    b.control("something_else")
    _fill(b)
    assert comparable(a.events) == comparable(b.events)  # control events and seq/timings ignored
    c = HistoryWriter(None)
    _fill(c)
    c.fault(rule_id="b", action="delay", link=None, kind=None, phase="request", flow_id="z", flow_seq=2,
            changed=Delay.Change(delay_ms=5))
    assert comparable(a.events) != comparable(c.events)
    assert all("t_mono" not in e and "flow_id" not in e for e in comparable(a.events))


def test_appending_continues_seq(tmp_path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as w:
        _fill(w)
    with HistoryWriter(path) as w:
        w.control("plan_loaded")
    assert [e.seq for e in read_history(path)] == [0, 1, 2, 3, 4]


def test_summary_carries_a_body_hash_for_dap_messages() -> None:
    from dap import messages as m
    from faults.dapcodec import summarize

    pc = (m.PrepareContinue(report_id=m.ReportId(bytes(16)), payload=b"x"),)
    a = m.AggregationJobContinueReq(step=1, prepare_continues=pc).encode()
    b = m.AggregationJobContinueReq(step=2, prepare_continues=pc).encode()
    mt = m.AggregationJobContinueReq.MEDIA_TYPE
    sa, sa2, sb = (summarize("agg_continue", "request", mt, x) for x in (a, a, b))
    assert sa["step"] == 1 and len(sa["body_sha256"]) == 32
    assert sa["body_sha256"] == sa2["body_sha256"] != sb["body_sha256"]
    # problem documents and undecodable bodies carry none
    assert "body_sha256" not in summarize("agg_continue", "response", "application/problem+json", b'{"type": "x"}')
    assert "body_sha256" not in summarize("agg_continue", "request", mt, b"\x00")


def test_load_history_names_a_torn_tail_and_an_unknown_schema(tmp_path) -> None:
    path = tmp_path / "h.jsonl"
    with HistoryWriter(path) as w:
        _fill(w)
    text = path.read_text()
    assert load_history(path).problems == ()
    path.write_text(text + '{"seq": 4, "t_mo')
    loaded = load_history(path)
    assert len(loaded.events) == 4 and "last line is truncated" in loaded.problems[0]
    path.write_text(text.replace('"history_version":1', '"history_version":2'))
    loaded = load_history(path)
    assert loaded.events == () and "schema version 2" in loaded.problems[0]


def test_a_failed_write_raises_and_is_noted_with_its_seq(tmp_path) -> None:
    w = HistoryWriter(tmp_path / "h.jsonl")
    w.control("plan_loaded")
    w._file.close()  # the file is gone from under the writer (disk full, closed fd)
    with pytest.raises(RecordingError, match="seq 1"):
        w.control("event", name="x")
    assert w.failures == [{"seq": 1, "error": w.failures[0]["error"]}] and w.next_seq == 2
    w._file = None


def test_rotate_starts_a_new_segment_and_the_seq_goes_on(tmp_path: Path) -> None:
    from faults.history import HistoryWriter, load_history

    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as w:
        for i in range(5):
            w.control("event", name=f"e{i}")
        assert w.rotate() == 5 and w.segments == 1
        w.control("event", name="after")
    loaded = load_history(path)
    assert not loaded.problems
    assert [(e.seq, e.what) for e in loaded.events] == [(5, "segment"), (6, "event")]
    with HistoryWriter(path) as again:  # a restarted writer goes on after the segment's last seq
        assert again.next_seq == 7
    mem = HistoryWriter(None)
    mem.control("event", name="x")
    mem.rotate()
    assert [e.what for e in mem.events] == ["segment"] and mem.next_seq == 2
