"""IDs, construction checks, media-type/name lookups and the constants module."""

from __future__ import annotations

import os
import pickle

import attrs
import pytest

from dap import constants as C
from dap.codec import (
    AggregationJobId,
    BatchId,
    CollectionJobId,
    ReportId,
    ReportIdChecksum,
    TaskId,
)
from dap.messages import (
    HTTP_MESSAGE_TYPES,
    MESSAGE_TYPES,
    AggregationJobInitReq,
    HpkeConfig,
    HpkeConfigList,
    Interval,
    PartialBatchSelector,
    PingPongMessage,
    PrepareInit,
    PrepareResp,
    Query,
    Report,
    ReportMetadata,
    message_class_by_name,
    message_class_for_media_type,
)

ID_TYPES = [(TaskId, 32), (ReportId, 16), (AggregationJobId, 16), (CollectionJobId, 16), (BatchId, 32), (ReportIdChecksum, 32)]


@pytest.mark.parametrize(("cls", "n"), ID_TYPES)
def test_id_length_and_base64url(cls, n):
    assert cls.LEN == n
    raw = bytes(range(256 - n, 256))
    ident = cls(raw)
    assert ident == raw and isinstance(ident, bytes)
    text = ident.b64()
    assert "=" not in text and "+" not in text and "/" not in text
    assert len(text) == {16: 22, 32: 43}[n]
    assert cls.from_b64(text) == ident
    assert cls.from_b64(text + "=" * (-len(text) % 4)) == ident  # padded accepted
    assert type(cls.from_b64(text)) is cls
    assert len(cls.random()) == n and cls.random() != cls.random()
    assert pickle.loads(pickle.dumps(ident)) == ident
    assert eval(repr(ident), {cls.__name__: cls}) == ident  # noqa: S307 - own repr


@pytest.mark.parametrize(("cls", "n"), ID_TYPES)
def test_id_rejects_wrong_input(cls, n):
    with pytest.raises(ValueError, match=f"must be {n} bytes, got {n - 1}"):
        cls(bytes(n - 1))
    with pytest.raises(ValueError):
        cls(bytes(n + 1))
    with pytest.raises(TypeError):
        cls(n)  # bytes(n) would silently make n zero bytes
    with pytest.raises(TypeError):
        cls("a" * n)
    with pytest.raises(ValueError):
        cls.from_b64("not base64!")
    with pytest.raises(ValueError):
        cls.from_b64("AAAA")  # valid base64, wrong length


def test_message_fields_convert_plain_bytes_to_ids():
    md = ReportMetadata(report_id=os.urandom(16), time=123)
    assert type(md.report_id) is ReportId
    assert type(PartialBatchSelector.fixed_size(bytes(32)).batch_id) is BatchId
    with pytest.raises(ValueError):
        ReportMetadata(report_id=bytes(15), time=1)


@pytest.mark.parametrize(
    ("make", "exc"),
    [
        (lambda: HpkeConfig(256, 0x20, 1, 1, b"k"), ValueError),  # u8
        (lambda: HpkeConfig(-1, 0x20, 1, 1, b"k"), ValueError),
        (lambda: HpkeConfig(1, 0x10000, 1, 1, b"k"), ValueError),  # u16
        (lambda: HpkeConfig(1.0, 0x20, 1, 1, b"k"), TypeError),
        (lambda: HpkeConfig(True, 0x20, 1, 1, b"k"), TypeError),
        (lambda: Interval(2**64, 0), ValueError),  # u64
        (lambda: Interval(0, "1"), TypeError),
        (lambda: HpkeConfig(1, 0x20, 1, 1, "key"), TypeError),
        (lambda: HpkeConfig(1, 0x20, 1, 1, bytes(0x10000)), ValueError),  # vec16 max
        (lambda: PrepareResp(bytes(16), 7), ValueError),  # unknown PrepareRespState
        (lambda: PrepareResp.reject(bytes(16), 10), ValueError),  # unknown PrepareError
        (lambda: PrepareResp(bytes(16), C.PrepareRespState.FINISHED, payload=b"x"), ValueError),
        (lambda: PrepareResp(bytes(16), C.PrepareRespState.CONTINUE), ValueError),
        (lambda: PingPongMessage(C.PingPongType.FINISH, prep_share=b""), ValueError),
        (lambda: Query(C.QueryType.TIME_INTERVAL), ValueError),
        (lambda: Query(0), ValueError),  # reserved query type is not constructible
        (lambda: HpkeConfigList([b"not a config"]), TypeError),
        (lambda: HpkeConfigList(b"\x00"), TypeError),
        (lambda: AggregationJobInitReq(b"", PartialBatchSelector.time_interval(), [Interval(0, 0)]), TypeError),
        (lambda: PrepareInit(Interval(0, 0), b""), TypeError),
    ],
)
def test_construction_checks(make, exc):
    with pytest.raises(exc):
        make()


def test_messages_are_frozen_and_hashable():
    md = ReportMetadata(bytes(16), 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        md.time = 2
    assert {md, ReportMetadata(bytes(16), 1)} == {md}
    cfgs = HpkeConfigList([HpkeConfig(1, 0x20, 1, 1, b"k")])
    assert isinstance(cfgs.configs, tuple)


def test_unknown_hpke_suites_decode():
    cfg = HpkeConfig(9, 0xFFFF, 0x1234, 0x00FF, b"\x01")
    lst = HpkeConfigList.decode(HpkeConfigList([cfg]).encode())
    assert lst.configs[0].kem_id == 0xFFFF and lst.configs[0].aead_id == 0xFF


def test_media_types_on_classes():
    expected = {
        "HpkeConfigList": "application/dap-hpke-config-list",
        "Report": "application/dap-report",
        "AggregationJobInitReq": "application/dap-aggregation-job-init-req",
        "AggregationJobResp": "application/dap-aggregation-job-resp",
        "AggregationJobContinueReq": "application/dap-aggregation-job-continue-req",
        "AggregateShareReq": "application/dap-aggregate-share-req",
        "AggregateShare": "application/dap-aggregate-share",
        "CollectionReq": "application/dap-collect-req",
        "Collection": "application/dap-collection",
    }
    assert {c.__name__: c.MEDIA_TYPE for c in HTTP_MESSAGE_TYPES} == expected
    assert set(expected.values()) == set(C.MEDIA_TYPES)
    for name, media_type in expected.items():
        assert message_class_for_media_type(media_type) is MESSAGE_TYPES[name]
    assert message_class_for_media_type("application/dap-report; charset=utf-8") is Report
    assert message_class_for_media_type("application/dap-collection-req") is None
    assert message_class_for_media_type(None) is None
    assert all(c.MEDIA_TYPE is None for c in MESSAGE_TYPES.values() if c not in HTTP_MESSAGE_TYPES)


def test_message_class_by_name():
    assert message_class_by_name("aggregationjobinitreq") is AggregationJobInitReq
    assert message_class_by_name(" PingPongMessage ") is PingPongMessage
    assert message_class_by_name("nothing") is None
    assert len(MESSAGE_TYPES) == 26


def test_problem_types():
    assert len(C.ProblemType) == 14
    tokens = {p.token for p in C.ProblemType}
    assert tokens == {
        "invalidMessage", "unrecognizedTask", "unrecognizedAggregationJob", "outdatedConfig",
        "reportRejected", "reportTooEarly", "batchInvalid", "invalidBatchSize",
        "batchQueriedTooManyTimes", "batchMismatch", "unauthorizedRequest", "missingTaskID",
        "stepMismatch", "batchOverlap",
    }  # fmt: skip
    p = C.ProblemType.BATCH_MISMATCH
    assert p.uri == "urn:ietf:params:ppm:dap:error:batchMismatch"
    assert p.description and str(p) == "batchMismatch"
    for member in C.ProblemType:
        assert C.problem_type_from_uri(member.uri) is member
        assert C.ProblemType.from_token(member.token) is member
    assert C.problem_type_from_uri(" urn:ietf:params:ppm:dap:error:stepMismatch\n") is C.ProblemType.STEP_MISMATCH
    assert C.problem_type_from_uri("urn:ietf:params:ppm:dap:error:invalidTask") is None  # Janus-only
    assert C.problem_type_from_uri("urn:ietf:params:ppm:dap:error:batchmismatch") is None  # case matters
    assert C.problem_type_from_uri("about:blank") is None


def test_wire_enum_values():
    assert [int(e) for e in C.PrepareError] == list(range(10))
    assert C.PrepareError.REPORT_TOO_EARLY == 9 and C.PrepareError.INVALID_MESSAGE == 8
    assert (C.Role.COLLECTOR, C.Role.CLIENT, C.Role.LEADER, C.Role.HELPER) == (0, 1, 2, 3)
    assert (C.QueryType.TIME_INTERVAL, C.QueryType.FIXED_SIZE) == (1, 2) and 0 not in set(C.QueryType)
    assert (C.FixedSizeQueryType.BY_BATCH_ID, C.FixedSizeQueryType.CURRENT_BATCH) == (0, 1)
    assert (C.PrepareRespState.CONTINUE, C.PrepareRespState.FINISHED, C.PrepareRespState.REJECT) == (0, 1, 2)
    assert (C.PingPongType.INITIALIZE, C.PingPongType.CONTINUE, C.PingPongType.FINISH) == (0, 1, 2)
    assert (C.HpkeKemId.X25519_HKDF_SHA256, C.HpkeKdfId.HKDF_SHA256, C.HpkeAeadId.AES_128_GCM) == (0x20, 1, 1)
    assert C.HpkeKemId.P256_HKDF_SHA256 == 0x10 and C.HpkeAeadId.CHACHA20_POLY1305 == 3
    assert C.DAP_VERSION == "dap-09"
