"""Pinned wire bytes, written by hand from dap-09.md §1/§4 and vdaf-08-prio3.md §8.

Each fixture lists its bytes field by field; the test checks that the message
encodes to exactly those bytes and that the bytes decode back to the message.
"""

from __future__ import annotations

import pytest

from dap.constants import PrepareError, PrepareRespState, QueryType
from dap.messages import (
    AggregateShare,
    AggregateShareAad,
    AggregateShareReq,
    AggregationJobContinueReq,
    AggregationJobInitReq,
    AggregationJobResp,
    BatchSelector,
    Collection,
    CollectionReq,
    Extension,
    HpkeCiphertext,
    HpkeConfig,
    HpkeConfigList,
    InputShareAad,
    Interval,
    PartialBatchSelector,
    PingPongMessage,
    PlaintextInputShare,
    PrepareContinue,
    PrepareInit,
    PrepareResp,
    Query,
    Report,
    ReportMetadata,
    ReportShare,
)


def h(*parts: str) -> bytes:
    return bytes.fromhex("".join(parts))


RID = bytes(range(16))  # 000102030405060708090a0b0c0d0e0f
T = 1_700_000_000  # 0x6553f100

# A Prio3Count report (X25519, no extensions): 230 bytes per dap-09.md §4.2.
REPORT = Report(
    ReportMetadata(RID, T),
    b"",
    HpkeCiphertext(1, b"\x11" * 32, b"\x22" * 70),
    HpkeCiphertext(1, b"\x33" * 32, b"\x44" * 54),
)
REPORT_BYTES = h(
    "000102030405060708090a0b0c0d0e0f",  # report_metadata.report_id
    "000000006553f100",  # report_metadata.time = 1700000000
    "00000000",  # public_share: vec32, empty for Prio3Count
    "01",  # leader_encrypted_input_share.config_id
    "0020", "11" * 32,  # .enc: vec16, 32-byte X25519 encapsulated key
    "00000046", "22" * 70,  # .payload: vec32, 70 = (2+4+48) plaintext + 16 tag
    "01",  # helper_encrypted_input_share.config_id
    "0020", "33" * 32,  # .enc
    "00000036", "44" * 54,  # .payload: 54 = (2+4+32) + 16
)

HPKE_CONFIG_LIST = HpkeConfigList([HpkeConfig(7, 0x0020, 0x0001, 0x0001, b"\x55" * 32)])
HPKE_CONFIG_LIST_BYTES = h(
    "0029",  # list16: 41 bytes of configs follow
    "07",  # configs[0].id
    "0020",  # .kem_id DHKEM(X25519, HKDF-SHA256)
    "0001",  # .kdf_id HKDF-SHA256
    "0001",  # .aead_id AES-128-GCM
    "0020", "55" * 32,  # .public_key: vec16
)

INIT_REQ = AggregationJobInitReq(
    b"",
    PartialBatchSelector.fixed_size(b"\xbb" * 32),
    [
        PrepareInit(
            ReportShare(
                ReportMetadata(bytes(range(0xF0, 0x100)), T),
                b"",
                HpkeCiphertext(1, b"\xaa\xbb", b"\xcc\xdd\xee"),
            ),
            PingPongMessage.initialize(b"\x01\x02\x03\x04").encode(),
        )
    ],
)
INIT_REQ_BYTES = h(
    "00000000",  # agg_param: vec32, empty (Prio3)                         @0
    "02",  # part_batch_selector.query_type = fixed_size                    @4
    "bb" * 32,  # part_batch_selector.batch_id                              @5
    "00000035",  # prepare_inits: list32, 53 bytes                          @37
    "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",  # [0].report_share.report_metadata.report_id @41
    "000000006553f100",  # [0].report_share.report_metadata.time                   @57
    "00000000",  # [0].report_share.public_share                            @65
    "01",  # [0].report_share.encrypted_input_share.config_id               @69
    "0002", "aabb",  # .enc                                                  @70
    "00000003", "ccddee",  # .payload                                        @74
    "00000009",  # [0].payload: vec32, 9 bytes                               @81
    "00", "00000004", "01020304",  # ping-pong initialize(prep_share)        @85
)

JOB_RESP = AggregationJobResp(
    [
        PrepareResp.continue_(b"\x0a" * 16, PingPongMessage.finish(b"").encode()),
        PrepareResp.finished(b"\x0b" * 16),
        PrepareResp.reject(b"\x0c" * 16, PrepareError.VDAF_PREP_ERROR),
    ]
)
JOB_RESP_BYTES = h(
    "0000003d",  # prepare_resps: list32, 61 = 26 + 17 + 18 bytes
    "0a" * 16, "00",  # [0].report_id, prepare_resp_state = continue
    "00000005", "02", "00000000",  # [0].payload: ping-pong finish(prep_msg = empty), Prio3Count
    "0b" * 16, "01",  # [1].report_id, finished (no more fields)
    "0c" * 16, "02", "05",  # [2].report_id, reject, prepare_error = vdaf_prep_error
)

CONTINUE_REQ = AggregationJobContinueReq(1, [PrepareContinue(b"\x0d" * 16, PingPongMessage.continue_(b"", b"").encode())])
CONTINUE_REQ_BYTES = h(
    "0001",  # step = 1
    "0000001d",  # prepare_continues: list32, 29 bytes
    "0d" * 16,  # [0].report_id
    "00000009", "01", "00000000", "00000000",  # [0].payload: ping-pong continue(prep_msg=, prep_share=)
)

COLLECTION_REQ = CollectionReq(Query.time_interval(Interval(T, 3600)), b"")
COLLECTION_REQ_BYTES = h(
    "01",  # query.query_type = time_interval
    "000000006553f100",  # query.batch_interval.start
    "0000000000000e10",  # query.batch_interval.duration = 3600
    "00000000",  # agg_param
)

COLLECTION_REQ_CURRENT = CollectionReq(Query.fixed_size_current_batch(), b"\x09")
COLLECTION_REQ_CURRENT_BYTES = h(
    "02",  # query.query_type = fixed_size
    "01",  # query.fixed_size_query.query_type = current_batch (no batch_id)
    "00000001", "09",  # agg_param
)

COLLECTION = Collection(
    PartialBatchSelector.time_interval(),
    2,
    Interval(T, 60),
    HpkeCiphertext(5, b"\x01", b"\x02\x03"),
    HpkeCiphertext(5, b"\x04", b"\x05"),
)
COLLECTION_BYTES = h(
    "01",  # part_batch_selector.query_type = time_interval (no batch_id)
    "0000000000000002",  # report_count
    "000000006553f100", "000000000000003c",  # interval.start, .duration = 60
    "05", "0001", "01", "00000002", "0203",  # leader_encrypted_agg_share
    "05", "0001", "04", "00000001", "05",  # helper_encrypted_agg_share
)

AGG_SHARE_REQ = AggregateShareReq(BatchSelector.fixed_size(b"\xcc" * 32), b"", 10, b"\xdd" * 32)
AGG_SHARE_REQ_BYTES = h(
    "02", "cc" * 32,  # batch_selector: fixed_size, batch_id
    "00000000",  # agg_param
    "000000000000000a",  # report_count = 10
    "dd" * 32,  # checksum
)

AGG_SHARE = AggregateShare(HpkeCiphertext(255, b"\xee", b"\xff"))
AGG_SHARE_BYTES = h("ff", "0001", "ee", "00000001", "ff")  # encrypted_aggregate_share

AGG_SHARE_AAD = AggregateShareAad(b"\x77" * 32, b"", BatchSelector.time_interval(Interval(0, 1)))
AGG_SHARE_AAD_BYTES = h(
    "77" * 32,  # task_id
    "00000000",  # agg_param
    "01", "0000000000000000", "0000000000000001",  # batch_selector: time_interval [0, 1)
)

INPUT_SHARE_AAD = InputShareAad(b"\x66" * 32, ReportMetadata(RID, T), b"\xab")
INPUT_SHARE_AAD_BYTES = h(
    "66" * 32,  # task_id
    "000102030405060708090a0b0c0d0e0f", "000000006553f100",  # metadata
    "00000001", "ab",  # public_share
)

PLAINTEXT = PlaintextInputShare([Extension(0, b"\xab\xcd")], b"\x01\x02\x03")
PLAINTEXT_BYTES = h(
    "0006",  # extensions: list16, 6 bytes
    "0000", "0002", "abcd",  # [0].extension_type = TBD(0), extension_data
    "00000003", "010203",  # payload
)

# VDAF-08 ping-pong framing, Prio3Count sizes (vdaf-08-prio3.md §8).
PP_INIT = PingPongMessage.initialize(b"\x5a" * 32)
PP_INIT_BYTES = h("00", "00000020", "5a" * 32)  # initialize, prep_share (32 bytes): 37 bytes
PP_FINISH = PingPongMessage.finish(b"")
PP_FINISH_BYTES = h("02", "00000000")  # finish, prep_msg empty: 5 bytes
PP_CONTINUE = PingPongMessage.continue_(b"\xab\xcd", b"\xef")
PP_CONTINUE_BYTES = h("01", "00000002", "abcd", "00000001", "ef")  # continue: prep_msg, prep_share

FIXTURES = [
    pytest.param(REPORT, REPORT_BYTES, id="Report-prio3count"),
    pytest.param(HPKE_CONFIG_LIST, HPKE_CONFIG_LIST_BYTES, id="HpkeConfigList"),
    pytest.param(INIT_REQ, INIT_REQ_BYTES, id="AggregationJobInitReq-fixed_size"),
    pytest.param(JOB_RESP, JOB_RESP_BYTES, id="AggregationJobResp"),
    pytest.param(CONTINUE_REQ, CONTINUE_REQ_BYTES, id="AggregationJobContinueReq"),
    pytest.param(COLLECTION_REQ, COLLECTION_REQ_BYTES, id="CollectionReq-time_interval"),
    pytest.param(COLLECTION_REQ_CURRENT, COLLECTION_REQ_CURRENT_BYTES, id="CollectionReq-current_batch"),
    pytest.param(COLLECTION, COLLECTION_BYTES, id="Collection"),
    pytest.param(AGG_SHARE_REQ, AGG_SHARE_REQ_BYTES, id="AggregateShareReq-fixed_size"),
    pytest.param(AGG_SHARE, AGG_SHARE_BYTES, id="AggregateShare"),
    pytest.param(AGG_SHARE_AAD, AGG_SHARE_AAD_BYTES, id="AggregateShareAad"),
    pytest.param(INPUT_SHARE_AAD, INPUT_SHARE_AAD_BYTES, id="InputShareAad"),
    pytest.param(PLAINTEXT, PLAINTEXT_BYTES, id="PlaintextInputShare"),
    pytest.param(PP_INIT, PP_INIT_BYTES, id="PingPong-initialize"),
    pytest.param(PP_FINISH, PP_FINISH_BYTES, id="PingPong-finish"),
    pytest.param(PP_CONTINUE, PP_CONTINUE_BYTES, id="PingPong-continue"),
]


@pytest.mark.parametrize(("msg", "wire"), FIXTURES)
def test_encode_matches_pinned_bytes(msg, wire):
    assert msg.encode() == wire


@pytest.mark.parametrize(("msg", "wire"), FIXTURES)
def test_decode_pinned_bytes(msg, wire):
    decoded = type(msg).decode(wire)
    assert decoded == msg
    assert decoded.encode() == wire


def test_prio3count_report_is_230_bytes():
    assert len(REPORT_BYTES) == 230
    assert len(PP_INIT_BYTES) == 37 and len(PP_FINISH_BYTES) == 5


def test_decoded_fields_have_wire_types():
    resp = AggregationJobResp.decode(JOB_RESP_BYTES)
    states = [r.prepare_resp_state for r in resp.prepare_resps]
    assert states == [PrepareRespState.CONTINUE, PrepareRespState.FINISHED, PrepareRespState.REJECT]
    assert resp.prepare_resps[2].prepare_error is PrepareError.VDAF_PREP_ERROR
    assert resp.prepare_resps[1].payload is None and resp.prepare_resps[0].prepare_error is None
    assert PingPongMessage.decode(resp.prepare_resps[0].payload) == PP_FINISH
    req = AggregationJobInitReq.decode(INIT_REQ_BYTES)
    assert req.part_batch_selector.query_type is QueryType.FIXED_SIZE
    assert type(req.part_batch_selector.batch_id).__name__ == "BatchId"
    assert type(req.prepare_inits[0].report_share.report_metadata.report_id).__name__ == "ReportId"
    assert req.prepare_inits[0].report_share.report_metadata.report_id.b64() == "8PHy8_T19vf4-fr7_P3-_w"
    assert type(AggregateShareReq.decode(AGG_SHARE_REQ_BYTES).checksum).__name__ == "ReportIdChecksum"
