"""Field-path API: get, replace, iterate, expand, validate, and their errors."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_codec_fixtures import COLLECTION_REQ_CURRENT, INIT_REQ, JOB_RESP, REPORT

from dap import strategies as dst
from dap.codec import (
    ListWire,
    StructWire,
    expand_path,
    field_patterns,
    get_field,
    iter_field_paths,
    iter_fields,
    parse_path,
    replace_field,
    validate_path,
)
from dap.constants import PrepareError
from dap.errors import DapError, FieldPathError
from dap.messages import (
    MESSAGE_TYPES,
    AggregationJobInitReq,
    AggregationJobResp,
    CollectionReq,
    PartialBatchSelector,
    PingPongMessage,
    PrepareResp,
    Report,
    ReportId,
)

TIME = "prepare_inits[0].report_share.report_metadata.time"


def _two_inits() -> AggregationJobInitReq:
    second = replace_field(INIT_REQ.prepare_inits[0], "report_share.report_metadata.report_id", b"\x02" * 16)
    return replace_field(INIT_REQ, "prepare_inits", (*INIT_REQ.prepare_inits, second))


def test_get_field_leaf_submessage_list():
    assert get_field(INIT_REQ, TIME) == 1_700_000_000
    assert get_field(INIT_REQ, "AggregationJobInitReq." + TIME) == 1_700_000_000  # DecodeError-style path
    assert get_field(INIT_REQ, "prepare_inits[-1].report_share.encrypted_input_share.enc") == b"\xaa\xbb"
    assert get_field(INIT_REQ, "part_batch_selector") == PartialBatchSelector.fixed_size(b"\xbb" * 32)
    assert get_field(INIT_REQ, "prepare_inits") == INIT_REQ.prepare_inits
    assert get_field(JOB_RESP, "prepare_resps[1].payload") is None  # absent variant


def test_replace_leaf_returns_new_message():
    new = replace_field(INIT_REQ, TIME, 5)
    assert get_field(new, TIME) == 5
    assert get_field(INIT_REQ, TIME) == 1_700_000_000  # original unchanged
    assert AggregationJobInitReq.decode(new.encode()) == new
    assert new.encode() != INIT_REQ.encode()


def test_replace_bytes_with_other_length_reencodes_prefix():
    path = "prepare_inits[0].report_share.encrypted_input_share.payload"
    shorter = replace_field(INIT_REQ, path, b"\xcc")
    wire = shorter.encode()
    assert len(wire) == len(INIT_REQ.encode()) - 2
    assert AggregationJobInitReq.decode(wire) == shorter
    assert wire[37:41] == (53 - 2).to_bytes(4, "big")  # list byte length follows
    longer = replace_field(INIT_REQ, "prepare_inits[0].payload", bytes(1000))
    assert get_field(AggregationJobInitReq.decode(longer.encode()), "prepare_inits[0].payload") == bytes(1000)


def test_replace_id_accepts_plain_bytes():
    new = replace_field(INIT_REQ, "prepare_inits[0].report_share.report_metadata.report_id", b"\x01" * 16)
    value = get_field(new, "prepare_inits[0].report_share.report_metadata.report_id")
    assert isinstance(value, ReportId) and value == b"\x01" * 16


def test_replace_wildcard_sets_every_element():
    two = _two_inits()
    new = replace_field(two, "prepare_inits[*].report_share.report_metadata.time", 7)
    assert [get_field(new, f"prepare_inits[{i}].report_share.report_metadata.time") for i in range(2)] == [7, 7]
    assert get_field(new, "prepare_inits[1].report_share.report_metadata.report_id") == b"\x02" * 16


def test_replace_list_reorders():
    two = _two_inits()
    swapped = replace_field(two, "prepare_inits", tuple(reversed(two.prepare_inits)))
    assert swapped.prepare_inits[0] == two.prepare_inits[1]
    assert AggregationJobInitReq.decode(swapped.encode()) == swapped


def test_replace_enum_and_variant():
    new = replace_field(JOB_RESP, "prepare_resps[2].prepare_error", PrepareError.REPORT_REPLAYED)
    assert new.prepare_resps[2].prepare_error is PrepareError.REPORT_REPLAYED
    new = replace_field(JOB_RESP, "prepare_resps[2].prepare_error", 9)  # ints are converted
    assert new.prepare_resps[2].prepare_error is PrepareError.REPORT_TOO_EARLY
    # swap a whole element for another variant
    new = replace_field(JOB_RESP, "prepare_resps[0]", PrepareResp.finished(b"\x0a" * 16))
    assert AggregationJobResp.decode(new.encode()) == new


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        ("prepare_inits[0].report_share.report_metadata.report_id", b"short", "must be 16 bytes"),
        (TIME, 2**64, "out of range for u64"),
        (TIME, -1, "out of range"),
        (TIME, "soon", "needs an int"),
        (TIME, True, "needs an int"),
        ("part_batch_selector.query_type", 9, "unknown QueryType value 9"),
        ("prepare_inits[0].payload", "text", "needs bytes"),
        ("prepare_inits", [1, 2], "must be a PrepareInit"),
        ("part_batch_selector.batch_id", None, "needs batch_id"),
    ],
)
def test_replace_refused_values(path, value, fragment):
    with pytest.raises(FieldPathError, match=fragment) as info:
        replace_field(INIT_REQ, path, value)
    assert isinstance(info.value.__cause__, (TypeError, ValueError))


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("prepare_inits[0].report_share.report_metadata.tme", re.escape("ReportMetadata has no field 'tme' (fields: report_id, time)")),
        ("nope", "AggregationJobInitReq has no field 'nope'"),
        ("prepare_inits[5].payload", r"index \[5\] out of range for prepare_inits \(length 1\)"),
        ("prepare_inits[-2].payload", "out of range"),
        ("prepare_inits.payload", "is a list"),
        ("agg_param.x", "leaf"),
        ("agg_param[0]", "leaf"),
        ("part_batch_selector[0]", "not a list"),
        ("prepare_inits[*].payload", "concrete path"),
        ("prepare_inits[0]..payload", "malformed field path"),
        ("[0]", "malformed"),
        ("prepare_inits[x]", "malformed"),
        ("", "malformed"),
        ("AggregationJobInitReq", "names the whole message"),
    ],
)
def test_get_field_errors(path, fragment):
    with pytest.raises(FieldPathError, match=fragment):
        get_field(INIT_REQ, path)


def test_get_absent_variant_subfield_is_an_error():
    with pytest.raises(FieldPathError, match="absent"):
        get_field(COLLECTION_REQ_CURRENT, "query.batch_interval.start")
    with pytest.raises(FieldPathError, match="absent"):
        replace_field(COLLECTION_REQ_CURRENT, "query.batch_interval.start", 1)


def test_field_path_error_is_a_dap_error():
    assert issubclass(FieldPathError, DapError)


def test_iter_field_paths_lists_every_leaf_in_wire_order():
    paths = list(iter_field_paths(REPORT))
    assert paths == [
        "report_metadata.report_id",
        "report_metadata.time",
        "public_share",
        "leader_encrypted_input_share.config_id",
        "leader_encrypted_input_share.enc",
        "leader_encrypted_input_share.payload",
        "helper_encrypted_input_share.config_id",
        "helper_encrypted_input_share.enc",
        "helper_encrypted_input_share.payload",
    ]
    resp_paths = list(iter_field_paths(JOB_RESP))
    assert "prepare_resps[0].payload" in resp_paths
    assert "prepare_resps[1].payload" not in resp_paths  # finished: absent variant skipped
    assert "prepare_resps[2].prepare_error" in resp_paths
    assert "prepare_inits[0].report_share.report_metadata.report_id" in list(iter_field_paths(INIT_REQ))


def test_iter_fields_with_containers():
    pairs = dict(iter_fields(INIT_REQ, leaves_only=False))
    assert pairs["prepare_inits"] == INIT_REQ.prepare_inits
    assert pairs["prepare_inits[0]"] == INIT_REQ.prepare_inits[0]
    assert pairs["prepare_inits[0].report_share.report_metadata"] == INIT_REQ.prepare_inits[0].report_share.report_metadata


def test_validate_path_without_instance():
    wire = validate_path(AggregationJobInitReq, "prepare_inits[*].report_share.report_metadata.time")
    assert (wire.kind, wire.describe()) == ("uint", "u64")
    assert validate_path(AggregationJobInitReq, "prepare_inits[3].payload").kind == "bytes"
    assert validate_path(AggregationJobInitReq, "AggregationJobInitReq.prepare_inits[*].report_share.report_metadata.report_id").kind == "id"
    assert isinstance(validate_path(AggregationJobInitReq, "prepare_inits"), ListWire)
    assert isinstance(validate_path(AggregationJobInitReq, "prepare_inits[*]"), StructWire)
    assert validate_path(AggregationJobResp, "prepare_resps[*].prepare_error").kind == "enum"
    assert validate_path(CollectionReq, "query.fixed_size_query.batch_id").kind == "id"


@pytest.mark.parametrize(
    ("cls", "pattern", "fragment"),
    [
        (AggregationJobInitReq, "prepare_inits[*].report_share.report_metadata.tim", "has no field 'tim'"),
        (AggregationJobInitReq, "prepare_inits.report_share", "is a list; use"),
        (AggregationJobInitReq, "agg_param[*]", "leaf"),
        (AggregationJobInitReq, "part_batch_selector[*].query_type", "not a list"),
        (Report, "report_metadata.time.seconds", "leaf"),
        (Report, "prepare_inits[*]", "Report has no field 'prepare_inits'"),
        (Report, "Report", "whole message"),
        (Report, "a b", "malformed"),
    ],
)
def test_validate_path_errors(cls, pattern, fragment):
    with pytest.raises(FieldPathError, match=fragment):
        validate_path(cls, pattern)


def test_expand_path():
    two = _two_inits()
    assert expand_path(two, "prepare_inits[*].payload") == ["prepare_inits[0].payload", "prepare_inits[1].payload"]
    assert expand_path(two, "prepare_inits[-1].payload") == ["prepare_inits[1].payload"]
    assert expand_path(two, "prepare_inits[7].payload") == []
    assert expand_path(JOB_RESP, "prepare_resps[*].payload") == ["prepare_resps[0].payload"]
    assert expand_path(COLLECTION_REQ_CURRENT, "query.batch_interval.start") == []
    with pytest.raises(FieldPathError):
        expand_path(two, "prepare_inits[*].nope")


def test_field_patterns_cover_all_leaves():
    pats = list(field_patterns(AggregationJobInitReq))
    assert "prepare_inits[*].report_share.report_metadata.time" in pats
    assert "part_batch_selector.batch_id" in pats
    for cls in MESSAGE_TYPES.values():
        for pattern in field_patterns(cls):
            assert validate_path(cls, pattern).kind in {"uint", "enum", "bytes", "id"}
        for pattern in field_patterns(cls, leaves_only=False):
            validate_path(cls, pattern)


def test_parse_path_tokens():
    assert parse_path("a[0].b[*].c[-1]") == ("a", 0, "b", "*", "c", -1)


@settings(max_examples=150, deadline=None)
@given(msg=dst.messages(), data=st.data())
def test_every_iterated_path_gets_replaces_and_validates(msg, data):
    """Each leaf path reads the value iter_fields gave, validates against the class
    as a pattern, and replacing it with itself changes nothing."""
    pairs = list(iter_fields(msg))
    assert pairs, "every message has at least one leaf"
    for path, value in pairs:
        assert get_field(msg, path) == value
        pattern = re.sub(r"\[\d+\]", "[*]", path)
        validate_path(type(msg), pattern)
        assert path in expand_path(msg, pattern)
    path, value = data.draw(st.sampled_from(pairs))
    assert replace_field(msg, path, value) == msg


@settings(max_examples=100, deadline=None)
@given(msg=dst.ping_pong_messages(), payload=st.binary(max_size=40))
def test_replaced_bytes_survive_a_round_trip(msg, payload):
    path = "prep_share" if msg.prep_share is not None else "prep_msg"
    new = replace_field(msg, path, payload)
    assert PingPongMessage.decode(new.encode()) == new
    assert get_field(new, path) == payload
