"""Strict decoding: every failure is one DecodeError naming field path and byte offset."""

from __future__ import annotations

import pytest
from test_codec_fixtures import (
    AGG_SHARE_REQ_BYTES,
    COLLECTION_REQ_CURRENT_BYTES,
    HPKE_CONFIG_LIST_BYTES,
    INIT_REQ_BYTES,
    JOB_RESP_BYTES,
    PLAINTEXT_BYTES,
    REPORT_BYTES,
)

from dap.errors import DapError, DecodeError
from dap.messages import (
    MESSAGE_TYPES,
    AggregateShareReq,
    AggregationJobInitReq,
    AggregationJobResp,
    CollectionReq,
    HpkeCiphertext,
    HpkeConfigList,
    PingPongMessage,
    PlaintextInputShare,
    Report,
)


def decode_error(cls, data) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        cls.decode(data)
    return info.value


def patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new):]


def test_error_names_path_and_offset_in_message():
    # INIT_REQ_BYTES: the element's metadata.time is at 57..65; cut 3 bytes into it.
    err = decode_error(AggregationJobInitReq, INIT_REQ_BYTES[:60])
    assert err.path == "AggregationJobInitReq.prepare_inits[0].report_share.report_metadata.time"
    assert err.offset == 57
    assert err.reason.startswith("truncated (need 8 bytes, have 3)")
    assert "list length prefix announced 53 bytes, 19 present" in err.reason
    assert str(err).startswith("AggregationJobInitReq.prepare_inits[0].report_share.report_metadata.time @ 57: truncated")
    assert isinstance(err, DapError)


@pytest.mark.parametrize(
    ("cut", "path", "offset"),
    [
        (0, "AggregationJobInitReq.agg_param", 0),
        (3, "AggregationJobInitReq.agg_param", 0),
        (4, "AggregationJobInitReq.part_batch_selector.query_type", 4),
        (20, "AggregationJobInitReq.part_batch_selector.batch_id", 5),
        (39, "AggregationJobInitReq.prepare_inits", 37),
        (45, "AggregationJobInitReq.prepare_inits[0].report_share.report_metadata.report_id", 41),
        (71, "AggregationJobInitReq.prepare_inits[0].report_share.encrypted_input_share.enc", 70),
        (80, "AggregationJobInitReq.prepare_inits[0].report_share.encrypted_input_share.payload", 74),
        (93, "AggregationJobInitReq.prepare_inits[0].payload", 81),
    ],
)
def test_truncation_points(cut, path, offset):
    err = decode_error(AggregationJobInitReq, INIT_REQ_BYTES[:cut])
    assert (err.path, err.offset) == (path, offset)
    assert err.reason.startswith("truncated")


def test_every_proper_prefix_fails():
    for cls, data in [(Report, REPORT_BYTES), (AggregationJobResp, JOB_RESP_BYTES), (HpkeConfigList, HPKE_CONFIG_LIST_BYTES)]:
        for cut in range(len(data)):
            err = decode_error(cls, data[:cut])
            assert err.path.startswith(cls.__name__)
            assert 0 <= err.offset <= cut


def test_trailing_byte():
    err = decode_error(AggregationJobInitReq, INIT_REQ_BYTES + b"\x00")
    assert (err.path, err.offset, err.reason) == ("AggregationJobInitReq", 94, "1 byte left over after the message")
    err = decode_error(Report, REPORT_BYTES + b"\x00\x01")
    assert (err.offset, err.reason) == (230, "2 bytes left over after the message")


@pytest.mark.parametrize(
    ("cls", "data", "offset", "new", "path", "reason"),
    [
        (AggregationJobInitReq, INIT_REQ_BYTES, 4, b"\x03", "AggregationJobInitReq.part_batch_selector.query_type", "unknown QueryType value 3"),
        (AggregationJobInitReq, INIT_REQ_BYTES, 4, b"\x00", "AggregationJobInitReq.part_batch_selector.query_type", "unknown QueryType value 0"),
        (AggregationJobResp, JOB_RESP_BYTES, 20, b"\x03", "AggregationJobResp.prepare_resps[0].prepare_resp_state", "unknown PrepareRespState value 3"),
        (AggregationJobResp, JOB_RESP_BYTES, 4 + 26 + 17 + 17, b"\x0a", "AggregationJobResp.prepare_resps[2].prepare_error", "unknown PrepareError value 10"),
        (CollectionReq, COLLECTION_REQ_CURRENT_BYTES, 1, b"\x02", "CollectionReq.query.fixed_size_query.query_type", "unknown FixedSizeQueryType value 2"),
        (AggregateShareReq, AGG_SHARE_REQ_BYTES, 0, b"\xff", "AggregateShareReq.batch_selector.query_type", "unknown QueryType value 255"),
    ],
)
def test_unknown_enum_value(cls, data, offset, new, path, reason):
    err = decode_error(cls, patched(data, offset, new))
    assert (err.path, err.offset, err.reason) == (path, offset, reason)


def test_unknown_ping_pong_type():
    err = decode_error(PingPongMessage, b"\x03\x00\x00\x00\x00")
    assert (err.path, err.offset, err.reason) == ("PingPongMessage.type", 0, "unknown PingPongType value 3")


def test_ping_pong_strict_layout():
    # finish carries only prep_msg; a continue-shaped body after finish is trailing data.
    err = decode_error(PingPongMessage, bytes.fromhex("02" "00000000" "00000000"))
    assert (err.path, err.offset) == ("PingPongMessage", 5)
    err = decode_error(PingPongMessage, bytes.fromhex("01" "00000000"))
    assert (err.path, err.offset) == ("PingPongMessage.prep_share", 5)


def test_bad_length_prefix():
    # enc prefix (offset 70) claims 255 bytes; only 22 remain.
    err = decode_error(AggregationJobInitReq, patched(INIT_REQ_BYTES, 70, b"\x00\xff"))
    assert err.path == "AggregationJobInitReq.prepare_inits[0].report_share.encrypted_input_share.enc"
    assert (err.offset, err.reason) == (70, "truncated (length prefix 255, have 22 bytes)")
    # list prefix claims more than present and the element decodes fine: the prefix is named.
    err = decode_error(AggregationJobInitReq, patched(INIT_REQ_BYTES, 37, b"\x00\x00\x00\x36"))
    assert (err.path, err.offset) == ("AggregationJobInitReq.prepare_inits", 37)
    assert err.reason == "truncated (list length prefix 54, have 53 bytes)"
    # a 4-GiB prefix must not allocate anything
    err = decode_error(Report, patched(REPORT_BYTES, 24, b"\xff\xff\xff\xff"))
    assert (err.path, err.offset) == ("Report.public_share", 24)


def test_element_straddling_list_end():
    # list says 60 bytes; the last element's prepare_error byte (offset 64) is beyond it.
    err = decode_error(AggregationJobResp, patched(JOB_RESP_BYTES, 0, b"\x00\x00\x00\x3c"))
    assert (err.path, err.offset) == ("AggregationJobResp.prepare_resps[2].prepare_error", 64)
    assert err.reason == "element straddles the end of the list: truncated (need 1 byte, have 0)"
    # list says 30 bytes: element [1] starts at 30 with only 4 bytes left in the list.
    err = decode_error(AggregationJobResp, patched(JOB_RESP_BYTES, 0, b"\x00\x00\x00\x1e"))
    assert (err.path, err.offset) == ("AggregationJobResp.prepare_resps[1].report_id", 30)
    assert err.reason.startswith("element straddles the end of the list")
    # a vector inside an element that runs past the list end
    err = decode_error(PlaintextInputShare, patched(PLAINTEXT_BYTES, 0, b"\x00\x05"))
    assert (err.path, err.offset) == ("PlaintextInputShare.extensions[0].extension_data", 4)
    assert err.reason.startswith("element straddles the end of the list: truncated (length prefix 2, have 1 byte)")


@pytest.mark.parametrize(
    ("cls", "data", "path", "offset"),
    [
        (AggregationJobInitReq, bytes.fromhex("00000000" "01" "00000000"), "AggregationJobInitReq.prepare_inits", 5),
        (AggregationJobResp, bytes.fromhex("00000000"), "AggregationJobResp.prepare_resps", 0),
        (HpkeConfigList, bytes.fromhex("0000"), "HpkeConfigList.configs", 0),
        (HpkeCiphertext, bytes.fromhex("01" "0000" "00000001" "00"), "HpkeCiphertext.enc", 1),
        (HpkeCiphertext, bytes.fromhex("01" "0001" "00" "00000000"), "HpkeCiphertext.payload", 4),
    ],
)
def test_below_lower_bound(cls, data, path, offset):
    err = decode_error(cls, data)
    assert (err.path, err.offset) == (path, offset)
    assert "below minimum 1" in err.reason


def test_lower_bound_not_enforced_on_construction_but_on_decode():
    empty = AggregationJobInitReq.decode(INIT_REQ_BYTES)
    from dap.codec import replace_field

    empty = replace_field(empty, "prepare_inits", ())
    wire = empty.encode()
    assert wire.endswith(b"\x00\x00\x00\x00")
    err = decode_error(AggregationJobInitReq, wire)
    assert err.path == "AggregationJobInitReq.prepare_inits"


@pytest.mark.parametrize("cls", list(MESSAGE_TYPES.values()), ids=list(MESSAGE_TYPES))
def test_empty_input(cls):
    err = decode_error(cls, b"")
    assert err.offset == 0 and err.reason.startswith("truncated")
    assert err.path.startswith(cls.__name__ + ".")


def test_non_bytes_input_is_a_decode_error():
    err = decode_error(Report, "not bytes")
    assert err.path == "Report" and err.reason == "input is str, not bytes"
    assert decode_error(Report, 230).reason == "input is int, not bytes"
    assert Report.decode(bytearray(REPORT_BYTES)) == Report.decode(memoryview(REPORT_BYTES))
