"""DAP-09 messages (``shared/spec/dap-09.md`` §4) and the VDAF-08 ping-pong Message.

Every class is a frozen attrs class whose fields are in wire order, with
``encode() -> bytes`` and the strict classmethod ``decode(data)`` (raises
only :class:`dap.errors.DecodeError`, naming field path and byte offset).
Field names follow the DAP-09 draft (where Janus 0.7 says ``metadata`` for
``ReportShare`` and ``InputShareAad``, the draft says ``report_metadata``;
the draft wins, the bytes are the same).
ID fields accept plain bytes (converted to the ID type); integers are
range-checked; ``select`` variants are ``None`` when absent. Lower bounds
(non-empty lists/vectors) are only enforced by ``decode`` — see
:mod:`dap.codec`. Wire types: ``u8/u16/u64``; ``vecN<min..>`` bytes behind an
N-bit byte count; ``listN<T>`` structs behind an N-bit total byte length.

============================  =================================================================  ==========================================
class                         fields (wire type)                                                 media type (``MEDIA_TYPE``)
============================  =================================================================  ==========================================
HpkeConfig                    id u8, kem_id u16, kdf_id u16, aead_id u16, public_key vec16<1..>   -
HpkeConfigList                configs list16<HpkeConfig><1..>                                    application/dap-hpke-config-list
HpkeCiphertext                config_id u8, enc vec16<1..>, payload vec32<1..>                   -
Interval                      start u64, duration u64                                            -
ReportMetadata                report_id ReportId[16], time u64                                   -
Report                        report_metadata ReportMetadata, public_share vec32,                application/dap-report
                              leader_encrypted_input_share HpkeCiphertext,
                              helper_encrypted_input_share HpkeCiphertext
Extension                     extension_type u16, extension_data vec16                           -
PlaintextInputShare           extensions list16<Extension>, payload vec32                        -
InputShareAad                 task_id TaskId[32], report_metadata ReportMetadata,                -
                              public_share vec32
FixedSizeQuery                query_type FixedSizeQueryType(u8),                                 -
                              batch_id BatchId[32] (by_batch_id only)
Query                         query_type QueryType(u8), batch_interval Interval (time_interval)  -
                              | fixed_size_query FixedSizeQuery (fixed_size)
PartialBatchSelector          query_type QueryType(u8), batch_id BatchId[32] (fixed_size only)   -
BatchSelector                 query_type QueryType(u8), batch_interval Interval (time_interval)  -
                              | batch_id BatchId[32] (fixed_size)
ReportShare                   report_metadata ReportMetadata, public_share vec32,                -
                              encrypted_input_share HpkeCiphertext
PrepareInit                   report_share ReportShare, payload vec32 (ping-pong message)        -
AggregationJobInitReq         agg_param vec32, part_batch_selector PartialBatchSelector,         application/dap-aggregation-job-init-req
                              prepare_inits list32<PrepareInit><1..>
PrepareResp                   report_id ReportId[16], prepare_resp_state PrepareRespState(u8),   -
                              payload vec32 (continue) | prepare_error PrepareError(u8) (reject)
AggregationJobResp            prepare_resps list32<PrepareResp><1..>                             application/dap-aggregation-job-resp
PrepareContinue               report_id ReportId[16], payload vec32                              -
AggregationJobContinueReq     step u16, prepare_continues list32<PrepareContinue><1..>           application/dap-aggregation-job-continue-req
CollectionReq                 query Query, agg_param vec32                                       application/dap-collect-req
Collection                    part_batch_selector PartialBatchSelector, report_count u64,        application/dap-collection
                              interval Interval, leader_encrypted_agg_share HpkeCiphertext,
                              helper_encrypted_agg_share HpkeCiphertext
AggregateShareReq             batch_selector BatchSelector, agg_param vec32, report_count u64,  application/dap-aggregate-share-req
                              checksum ReportIdChecksum[32]
AggregateShare                encrypted_aggregate_share HpkeCiphertext                           application/dap-aggregate-share
AggregateShareAad             task_id TaskId[32], agg_param vec32, batch_selector BatchSelector  -
PingPongMessage               type PingPongType(u8), prep_msg vec32 (continue, finish),          - (VDAF-08 §5.8; PrepareInit/Resp payload)
                              prep_share vec32 (initialize, continue)
============================  =================================================================  ==========================================

Lookups: :data:`MESSAGE_TYPES` (class name -> class, every class above),
:func:`message_class_by_name` (case-insensitive), :func:`message_class_for_media_type`.
"""

from __future__ import annotations

from typing import ClassVar

from dap import constants as C
from dap.codec import (
    U8,
    U16,
    U64,
    AggregationJobId,
    BatchId,
    CollectionJobId,
    EnumWire,
    FixedBytes,
    ListWire,
    Message,
    Opaque,
    ReportId,
    ReportIdChecksum,
    StructWire,
    TaskId,
    message,
    wire_field,
)
from dap.constants import (
    FixedSizeQueryType,
    PingPongType,
    PrepareError,
    PrepareRespState,
    QueryType,
)

__all__ = [
    # re-exported identifiers and enums
    "TaskId",
    "ReportId",
    "AggregationJobId",
    "CollectionJobId",
    "BatchId",
    "ReportIdChecksum",
    "PingPongType",
    "PrepareError",
    "PrepareRespState",
    "QueryType",
    "FixedSizeQueryType",
    "Message",
    # messages
    "PingPongMessage",
    "HpkeConfig",
    "HpkeConfigList",
    "HpkeCiphertext",
    "Interval",
    "ReportMetadata",
    "Report",
    "Extension",
    "PlaintextInputShare",
    "InputShareAad",
    "FixedSizeQuery",
    "Query",
    "PartialBatchSelector",
    "BatchSelector",
    "ReportShare",
    "PrepareInit",
    "AggregationJobInitReq",
    "PrepareResp",
    "AggregationJobResp",
    "PrepareContinue",
    "AggregationJobContinueReq",
    "CollectionReq",
    "Collection",
    "AggregateShareReq",
    "AggregateShare",
    "AggregateShareAad",
    # lookups
    "MESSAGE_TYPES",
    "HTTP_MESSAGE_TYPES",
    "message_class_by_name",
    "message_class_for_media_type",
]

_VEC16 = Opaque(2)
_VEC16_NONEMPTY = Opaque(2, min_len=1)
_VEC32 = Opaque(4)
_VEC32_NONEMPTY = Opaque(4, min_len=1)
_QUERY_TYPE = EnumWire(QueryType)

_TI = {QueryType.TIME_INTERVAL}
_FS = {QueryType.FIXED_SIZE}


# --- VDAF-08 ping-pong --------------------------------------------------------


@message
class PingPongMessage(Message):
    """VDAF-08 ping-pong ``Message``: ``initialize(prep_share)``,
    ``continue(prep_msg, prep_share)`` or ``finish(prep_msg)``."""

    type: PingPongType = wire_field(EnumWire(PingPongType))
    prep_msg: bytes | None = wire_field(_VEC32, when=("type", {PingPongType.CONTINUE, PingPongType.FINISH}))
    prep_share: bytes | None = wire_field(_VEC32, when=("type", {PingPongType.INITIALIZE, PingPongType.CONTINUE}))

    @classmethod
    def initialize(cls, prep_share: bytes) -> PingPongMessage:
        return cls(PingPongType.INITIALIZE, prep_share=prep_share)

    @classmethod
    def continue_(cls, prep_msg: bytes, prep_share: bytes) -> PingPongMessage:
        return cls(PingPongType.CONTINUE, prep_msg=prep_msg, prep_share=prep_share)

    @classmethod
    def finish(cls, prep_msg: bytes) -> PingPongMessage:
        return cls(PingPongType.FINISH, prep_msg=prep_msg)


# --- HPKE -----------------------------------------------------------------------


@message
class HpkeConfig(Message):
    """An Aggregator's HPKE public key and suite. Suite ids are plain ints
    (see :class:`dap.constants.HpkeKemId` etc.): unknown suites still decode."""

    id: int = wire_field(U8)
    kem_id: int = wire_field(U16)
    kdf_id: int = wire_field(U16)
    aead_id: int = wire_field(U16)
    public_key: bytes = wire_field(_VEC16_NONEMPTY)


@message
class HpkeConfigList(Message):
    """Non-empty list of HpkeConfig, most preferred first (ids should be distinct)."""

    MEDIA_TYPE: ClassVar[str] = C.MEDIA_TYPE_HPKE_CONFIG_LIST
    configs: tuple[HpkeConfig, ...] = wire_field(ListWire(2, StructWire(HpkeConfig), min_len=1))


@message
class HpkeCiphertext(Message):
    """HPKE ``enc`` and AEAD ``payload`` under the config ``config_id``."""

    config_id: int = wire_field(U8)
    enc: bytes = wire_field(_VEC16_NONEMPTY)
    payload: bytes = wire_field(_VEC32_NONEMPTY)


# --- upload -------------------------------------------------------------------------


@message
class Interval(Message):
    """``[start, start + duration)`` in seconds."""

    start: int = wire_field(U64)
    duration: int = wire_field(U64)

    @property
    def end(self) -> int:
        return self.start + self.duration


@message
class ReportMetadata(Message):
    report_id: ReportId = wire_field(FixedBytes(ReportId))
    time: int = wire_field(U64)


@message
class Report(Message):
    MEDIA_TYPE: ClassVar[str] = C.MEDIA_TYPE_REPORT
    report_metadata: ReportMetadata = wire_field(StructWire(ReportMetadata))
    public_share: bytes = wire_field(_VEC32)
    leader_encrypted_input_share: HpkeCiphertext = wire_field(StructWire(HpkeCiphertext))
    helper_encrypted_input_share: HpkeCiphertext = wire_field(StructWire(HpkeCiphertext))


@message
class Extension(Message):
    """Report extension; ``extension_type`` is a plain u16 (unknown types decode)."""

    extension_type: int = wire_field(U16)
    extension_data: bytes = wire_field(_VEC16)


@message
class PlaintextInputShare(Message):
    """The HPKE plaintext of an input share."""

    extensions: tuple[Extension, ...] = wire_field(ListWire(2, StructWire(Extension)))
    payload: bytes = wire_field(_VEC32)


@message
class InputShareAad(Message):
    """HPKE AAD for input shares."""

    task_id: TaskId = wire_field(FixedBytes(TaskId))
    report_metadata: ReportMetadata = wire_field(StructWire(ReportMetadata))
    public_share: bytes = wire_field(_VEC32)


# --- queries and batch selectors ----------------------------------------------------


@message
class FixedSizeQuery(Message):
    query_type: FixedSizeQueryType = wire_field(EnumWire(FixedSizeQueryType))
    batch_id: BatchId | None = wire_field(FixedBytes(BatchId), when=("query_type", {FixedSizeQueryType.BY_BATCH_ID}))

    @classmethod
    def by_batch_id(cls, batch_id: bytes) -> FixedSizeQuery:
        return cls(FixedSizeQueryType.BY_BATCH_ID, batch_id)

    @classmethod
    def current_batch(cls) -> FixedSizeQuery:
        return cls(FixedSizeQueryType.CURRENT_BATCH)


@message
class Query(Message):
    query_type: QueryType = wire_field(_QUERY_TYPE)
    batch_interval: Interval | None = wire_field(StructWire(Interval), when=("query_type", _TI))
    fixed_size_query: FixedSizeQuery | None = wire_field(StructWire(FixedSizeQuery), when=("query_type", _FS))

    @classmethod
    def time_interval(cls, batch_interval: Interval) -> Query:
        return cls(QueryType.TIME_INTERVAL, batch_interval=batch_interval)

    @classmethod
    def fixed_size_by_batch_id(cls, batch_id: bytes) -> Query:
        return cls(QueryType.FIXED_SIZE, fixed_size_query=FixedSizeQuery.by_batch_id(batch_id))

    @classmethod
    def fixed_size_current_batch(cls) -> Query:
        return cls(QueryType.FIXED_SIZE, fixed_size_query=FixedSizeQuery.current_batch())


@message
class PartialBatchSelector(Message):
    query_type: QueryType = wire_field(_QUERY_TYPE)
    batch_id: BatchId | None = wire_field(FixedBytes(BatchId), when=("query_type", _FS))

    @classmethod
    def time_interval(cls) -> PartialBatchSelector:
        return cls(QueryType.TIME_INTERVAL)

    @classmethod
    def fixed_size(cls, batch_id: bytes) -> PartialBatchSelector:
        return cls(QueryType.FIXED_SIZE, batch_id)


@message
class BatchSelector(Message):
    query_type: QueryType = wire_field(_QUERY_TYPE)
    batch_interval: Interval | None = wire_field(StructWire(Interval), when=("query_type", _TI))
    batch_id: BatchId | None = wire_field(FixedBytes(BatchId), when=("query_type", _FS))

    @classmethod
    def time_interval(cls, batch_interval: Interval) -> BatchSelector:
        return cls(QueryType.TIME_INTERVAL, batch_interval=batch_interval)

    @classmethod
    def fixed_size(cls, batch_id: bytes) -> BatchSelector:
        return cls(QueryType.FIXED_SIZE, batch_id=batch_id)


# --- aggregation -------------------------------------------------------------------


@message
class ReportShare(Message):
    report_metadata: ReportMetadata = wire_field(StructWire(ReportMetadata))
    public_share: bytes = wire_field(_VEC32)
    encrypted_input_share: HpkeCiphertext = wire_field(StructWire(HpkeCiphertext))


@message
class PrepareInit(Message):
    """``payload`` is the Leader's encoded :class:`PingPongMessage`."""

    report_share: ReportShare = wire_field(StructWire(ReportShare))
    payload: bytes = wire_field(_VEC32)


@message
class AggregationJobInitReq(Message):
    MEDIA_TYPE: ClassVar[str] = C.MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ
    agg_param: bytes = wire_field(_VEC32)
    part_batch_selector: PartialBatchSelector = wire_field(StructWire(PartialBatchSelector))
    prepare_inits: tuple[PrepareInit, ...] = wire_field(ListWire(4, StructWire(PrepareInit), min_len=1))


@message
class PrepareResp(Message):
    """``payload`` (continue only) is an encoded :class:`PingPongMessage`;
    ``prepare_error`` is present for reject only."""

    report_id: ReportId = wire_field(FixedBytes(ReportId))
    prepare_resp_state: PrepareRespState = wire_field(EnumWire(PrepareRespState))
    payload: bytes | None = wire_field(_VEC32, when=("prepare_resp_state", {PrepareRespState.CONTINUE}))
    prepare_error: PrepareError | None = wire_field(
        EnumWire(PrepareError), when=("prepare_resp_state", {PrepareRespState.REJECT})
    )

    @classmethod
    def continue_(cls, report_id: bytes, payload: bytes) -> PrepareResp:
        return cls(report_id, PrepareRespState.CONTINUE, payload=payload)

    @classmethod
    def finished(cls, report_id: bytes) -> PrepareResp:
        return cls(report_id, PrepareRespState.FINISHED)

    @classmethod
    def reject(cls, report_id: bytes, prepare_error: PrepareError | int) -> PrepareResp:
        return cls(report_id, PrepareRespState.REJECT, prepare_error=prepare_error)


@message
class AggregationJobResp(Message):
    MEDIA_TYPE: ClassVar[str] = C.MEDIA_TYPE_AGGREGATION_JOB_RESP
    prepare_resps: tuple[PrepareResp, ...] = wire_field(ListWire(4, StructWire(PrepareResp), min_len=1))


@message
class PrepareContinue(Message):
    report_id: ReportId = wire_field(FixedBytes(ReportId))
    payload: bytes = wire_field(_VEC32)


@message
class AggregationJobContinueReq(Message):
    MEDIA_TYPE: ClassVar[str] = C.MEDIA_TYPE_AGGREGATION_JOB_CONTINUE_REQ
    step: int = wire_field(U16)
    prepare_continues: tuple[PrepareContinue, ...] = wire_field(
        ListWire(4, StructWire(PrepareContinue), min_len=1)
    )


# --- collection ------------------------------------------------------------------------


@message
class CollectionReq(Message):
    MEDIA_TYPE: ClassVar[str] = C.MEDIA_TYPE_COLLECT_REQ
    query: Query = wire_field(StructWire(Query))
    agg_param: bytes = wire_field(_VEC32)


@message
class Collection(Message):
    MEDIA_TYPE: ClassVar[str] = C.MEDIA_TYPE_COLLECTION
    part_batch_selector: PartialBatchSelector = wire_field(StructWire(PartialBatchSelector))
    report_count: int = wire_field(U64)
    interval: Interval = wire_field(StructWire(Interval))
    leader_encrypted_agg_share: HpkeCiphertext = wire_field(StructWire(HpkeCiphertext))
    helper_encrypted_agg_share: HpkeCiphertext = wire_field(StructWire(HpkeCiphertext))


@message
class AggregateShareReq(Message):
    MEDIA_TYPE: ClassVar[str] = C.MEDIA_TYPE_AGGREGATE_SHARE_REQ
    batch_selector: BatchSelector = wire_field(StructWire(BatchSelector))
    agg_param: bytes = wire_field(_VEC32)
    report_count: int = wire_field(U64)
    checksum: ReportIdChecksum = wire_field(FixedBytes(ReportIdChecksum))


@message
class AggregateShare(Message):
    MEDIA_TYPE: ClassVar[str] = C.MEDIA_TYPE_AGGREGATE_SHARE
    encrypted_aggregate_share: HpkeCiphertext = wire_field(StructWire(HpkeCiphertext))


@message
class AggregateShareAad(Message):
    """HPKE AAD for aggregate shares."""

    task_id: TaskId = wire_field(FixedBytes(TaskId))
    agg_param: bytes = wire_field(_VEC32)
    batch_selector: BatchSelector = wire_field(StructWire(BatchSelector))


# --- lookups ----------------------------------------------------------------------------

#: The classes that travel as HTTP bodies, in endpoint order.
HTTP_MESSAGE_TYPES: tuple[type[Message], ...] = (
    HpkeConfigList,
    Report,
    AggregationJobInitReq,
    AggregationJobResp,
    AggregationJobContinueReq,
    CollectionReq,
    Collection,
    AggregateShareReq,
    AggregateShare,
)

#: Class name -> class, for every message class (HTTP bodies first).
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.__name__: cls
    for cls in (
        *HTTP_MESSAGE_TYPES,
        HpkeConfig,
        HpkeCiphertext,
        Interval,
        ReportMetadata,
        Extension,
        PlaintextInputShare,
        InputShareAad,
        FixedSizeQuery,
        Query,
        PartialBatchSelector,
        BatchSelector,
        ReportShare,
        PrepareInit,
        PrepareResp,
        PrepareContinue,
        AggregateShareAad,
        PingPongMessage,
    )
}

_BY_LOWER_NAME = {name.lower(): cls for name, cls in MESSAGE_TYPES.items()}
_BY_MEDIA_TYPE = {cls.MEDIA_TYPE: cls for cls in HTTP_MESSAGE_TYPES}


def message_class_by_name(name: str) -> type[Message] | None:
    """The message class called ``name`` (case-insensitive), or None."""
    return _BY_LOWER_NAME.get(name.strip().lower())


def message_class_for_media_type(media_type: str | None) -> type[Message] | None:
    """The message class for a ``Content-Type`` value, or None if it is no DAP type.

    Parameters (``; charset=...``), surrounding space and case are ignored for
    the lookup — whether a peer must refuse such a header is a separate
    question (Janus and divviup-ts require the exact string).
    """
    if not media_type:
        return None
    return _BY_MEDIA_TYPE.get(media_type.split(";", 1)[0].strip().lower())
