"""Hypothesis strategies for every DAP-09 message (and the ping-pong Message).

Built bottom-up from small parts — integers, byte strings, IDs — into
sub-structures and messages, so tests can swap any part (e.g. ``reports(
public_shares=st.just(b""))``). Every strategy yields messages that
*decode*: non-empty where the wire format demands it.

Shrinking: integers shrink toward 0, byte strings toward the shortest allowed
(``b""`` or one zero byte), lists toward their minimum length, IDs toward all
zeros, and every ``one_of`` lists its simplest variant first (e.g.
``PartialBatchSelector`` time_interval before fixed_size, ``PrepareResp``
finished before reject before continue), so a failing example shrinks to the
plainest message that still fails. Sizes are kept small (``max_size`` knobs)
so round-trip tests stay fast.

Entry points: :func:`messages` (any message class), :func:`messages_of`
(one class), :func:`encoded_messages` (class and its encoding), and one
function per class (``reports()``, ``aggregation_job_init_reqs()``, ...).
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from dap import messages as m
from dap.codec import FixedLengthBytes, Message
from dap.constants import HpkeAeadId, HpkeKdfId, HpkeKemId, PrepareError, QueryType

__all__ = [
    "opaque",
    "u8s",
    "u16s",
    "u64s",
    "ids",
    "task_ids",
    "report_ids",
    "batch_ids",
    "aggregation_job_ids",
    "collection_job_ids",
    "checksums",
    "ping_pong_messages",
    "hpke_configs",
    "hpke_config_lists",
    "hpke_ciphertexts",
    "intervals",
    "report_metadata",
    "reports",
    "extensions",
    "plaintext_input_shares",
    "input_share_aads",
    "fixed_size_queries",
    "queries",
    "partial_batch_selectors",
    "batch_selectors",
    "report_shares",
    "prepare_inits",
    "aggregation_job_init_reqs",
    "prepare_resps",
    "aggregation_job_resps",
    "prepare_continues",
    "aggregation_job_continue_reqs",
    "collection_reqs",
    "collections",
    "aggregate_share_reqs",
    "aggregate_shares",
    "aggregate_share_aads",
    "STRATEGIES",
    "messages_of",
    "messages",
    "encoded_messages",
]


# --- parts ----------------------------------------------------------------------


def opaque(min_size: int = 0, max_size: int = 16) -> st.SearchStrategy[bytes]:
    """Byte strings of ``min_size..max_size`` bytes; shrinks to zero bytes of ``min_size``."""
    if not 0 <= min_size <= max_size:
        raise InvalidArgument(f"need 0 <= min_size <= max_size, got {min_size}, {max_size}")
    return st.binary(min_size=min_size, max_size=max_size)


def u8s() -> st.SearchStrategy[int]:
    """Any u8; shrinks to 0."""
    return st.integers(0, 0xFF)


def u16s() -> st.SearchStrategy[int]:
    """Any u16; shrinks to 0."""
    return st.integers(0, 0xFFFF)


def u64s() -> st.SearchStrategy[int]:
    """Any u64; shrinks to 0."""
    return st.integers(0, 2**64 - 1)


def ids(id_cls: type[FixedLengthBytes]) -> st.SearchStrategy[FixedLengthBytes]:
    """IDs of type ``id_cls``; shrink to all zeros."""
    if not (isinstance(id_cls, type) and issubclass(id_cls, FixedLengthBytes) and id_cls.LEN > 0):
        raise InvalidArgument(f"ids() needs a FixedLengthBytes subclass, got {id_cls!r}")
    return st.binary(min_size=id_cls.LEN, max_size=id_cls.LEN).map(id_cls)


def task_ids() -> st.SearchStrategy[m.TaskId]:
    return ids(m.TaskId)  # type: ignore[return-value]


def report_ids() -> st.SearchStrategy[m.ReportId]:
    return ids(m.ReportId)  # type: ignore[return-value]


def batch_ids() -> st.SearchStrategy[m.BatchId]:
    return ids(m.BatchId)  # type: ignore[return-value]


def aggregation_job_ids() -> st.SearchStrategy[m.AggregationJobId]:
    return ids(m.AggregationJobId)  # type: ignore[return-value]


def collection_job_ids() -> st.SearchStrategy[m.CollectionJobId]:
    return ids(m.CollectionJobId)  # type: ignore[return-value]


def checksums() -> st.SearchStrategy[m.ReportIdChecksum]:
    return ids(m.ReportIdChecksum)  # type: ignore[return-value]


def _known_or_any(known: type, any_: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    # Known algorithm ids first (they shrink to the first member), then any value.
    return st.one_of(st.sampled_from([int(x) for x in known]), any_)


def _check_max(name: str, value: int, minimum: int = 0) -> None:
    if not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name} must be an int >= {minimum}, got {value!r}")


# --- ping-pong ----------------------------------------------------------------------


def ping_pong_messages(payloads: st.SearchStrategy[bytes] | None = None) -> st.SearchStrategy[m.PingPongMessage]:
    """initialize | finish | continue (in that order); payloads shrink to ``b""``."""
    p = payloads if payloads is not None else opaque(max_size=24)
    return st.one_of(
        st.builds(m.PingPongMessage.initialize, p),
        st.builds(m.PingPongMessage.finish, p),
        st.builds(m.PingPongMessage.continue_, p, p),
    )


# --- HPKE -----------------------------------------------------------------------------


def hpke_configs() -> st.SearchStrategy[m.HpkeConfig]:
    """HpkeConfig with known suite ids first, then arbitrary u16s (unknown suites
    must decode); public key 1..40 bytes. Shrinks to id 0, P-256/SHA-256/AES-128."""
    return st.builds(
        m.HpkeConfig,
        id=u8s(),
        kem_id=_known_or_any(HpkeKemId, u16s()),
        kdf_id=_known_or_any(HpkeKdfId, u16s()),
        aead_id=_known_or_any(HpkeAeadId, u16s()),
        public_key=opaque(1, 40),
    )


def hpke_config_lists(max_configs: int = 3) -> st.SearchStrategy[m.HpkeConfigList]:
    """1..max_configs configs (ids may repeat: the codec does not police that)."""
    _check_max("max_configs", max_configs, 1)
    return st.builds(m.HpkeConfigList, st.lists(hpke_configs(), min_size=1, max_size=max_configs))


def hpke_ciphertexts() -> st.SearchStrategy[m.HpkeCiphertext]:
    """enc 1..40 bytes, payload 1..48 bytes; shrinks to one zero byte each."""
    return st.builds(m.HpkeCiphertext, config_id=u8s(), enc=opaque(1, 40), payload=opaque(1, 48))


# --- upload -------------------------------------------------------------------------------


def intervals() -> st.SearchStrategy[m.Interval]:
    return st.builds(m.Interval, start=u64s(), duration=u64s())


def report_metadata() -> st.SearchStrategy[m.ReportMetadata]:
    return st.builds(m.ReportMetadata, report_id=report_ids(), time=u64s())


def reports(public_shares: st.SearchStrategy[bytes] | None = None) -> st.SearchStrategy[m.Report]:
    """Report; the public share shrinks to empty (as for Prio3Count)."""
    return st.builds(
        m.Report,
        report_metadata=report_metadata(),
        public_share=public_shares if public_shares is not None else opaque(max_size=32),
        leader_encrypted_input_share=hpke_ciphertexts(),
        helper_encrypted_input_share=hpke_ciphertexts(),
    )


def extensions() -> st.SearchStrategy[m.Extension]:
    """Any u16 type (TBD(0) first), data 0..8 bytes."""
    return st.builds(m.Extension, extension_type=u16s(), extension_data=opaque(max_size=8))


def plaintext_input_shares(max_extensions: int = 2) -> st.SearchStrategy[m.PlaintextInputShare]:
    """Shrinks to no extensions and an empty payload."""
    _check_max("max_extensions", max_extensions)
    return st.builds(
        m.PlaintextInputShare,
        extensions=st.lists(extensions(), max_size=max_extensions),
        payload=opaque(max_size=32),
    )


def input_share_aads() -> st.SearchStrategy[m.InputShareAad]:
    return st.builds(m.InputShareAad, task_id=task_ids(), report_metadata=report_metadata(), public_share=opaque(max_size=32))


# --- queries and selectors -------------------------------------------------------------


def fixed_size_queries() -> st.SearchStrategy[m.FixedSizeQuery]:
    """current_batch (no fields) first, then by_batch_id."""
    return st.one_of(st.just(m.FixedSizeQuery.current_batch()), st.builds(m.FixedSizeQuery.by_batch_id, batch_ids()))


def queries() -> st.SearchStrategy[m.Query]:
    """time_interval first, then fixed_size."""
    return st.one_of(
        st.builds(m.Query.time_interval, intervals()),
        st.builds(m.Query, query_type=st.just(QueryType.FIXED_SIZE), fixed_size_query=fixed_size_queries()),
    )


def partial_batch_selectors() -> st.SearchStrategy[m.PartialBatchSelector]:
    """time_interval (no fields) first, then fixed_size."""
    return st.one_of(
        st.just(m.PartialBatchSelector.time_interval()), st.builds(m.PartialBatchSelector.fixed_size, batch_ids())
    )


def batch_selectors() -> st.SearchStrategy[m.BatchSelector]:
    """time_interval first, then fixed_size."""
    return st.one_of(
        st.builds(m.BatchSelector.time_interval, intervals()), st.builds(m.BatchSelector.fixed_size, batch_ids())
    )


# --- aggregation --------------------------------------------------------------------------


def report_shares() -> st.SearchStrategy[m.ReportShare]:
    return st.builds(
        m.ReportShare,
        report_metadata=report_metadata(),
        public_share=opaque(max_size=32),
        encrypted_input_share=hpke_ciphertexts(),
    )


def _ping_pong_payloads() -> st.SearchStrategy[bytes]:
    # Raw bytes first (shrink to b""), then well-formed ping-pong encodings.
    return st.one_of(opaque(max_size=24), ping_pong_messages().map(lambda p: p.encode()))


def prepare_inits() -> st.SearchStrategy[m.PrepareInit]:
    """payload: raw bytes (shrinks to b"") or a ping-pong encoding."""
    return st.builds(m.PrepareInit, report_share=report_shares(), payload=_ping_pong_payloads())


def aggregation_job_init_reqs(max_inits: int = 3) -> st.SearchStrategy[m.AggregationJobInitReq]:
    """1..max_inits PrepareInits; agg_param shrinks to empty (Prio3)."""
    _check_max("max_inits", max_inits, 1)
    return st.builds(
        m.AggregationJobInitReq,
        agg_param=opaque(max_size=8),
        part_batch_selector=partial_batch_selectors(),
        prepare_inits=st.lists(prepare_inits(), min_size=1, max_size=max_inits),
    )


def prepare_resps() -> st.SearchStrategy[m.PrepareResp]:
    """finished, then reject (any PrepareError), then continue."""
    return st.one_of(
        st.builds(m.PrepareResp.finished, report_ids()),
        st.builds(m.PrepareResp.reject, report_ids(), st.sampled_from(PrepareError)),
        st.builds(m.PrepareResp.continue_, report_ids(), _ping_pong_payloads()),
    )


def aggregation_job_resps(max_resps: int = 3) -> st.SearchStrategy[m.AggregationJobResp]:
    _check_max("max_resps", max_resps, 1)
    return st.builds(m.AggregationJobResp, st.lists(prepare_resps(), min_size=1, max_size=max_resps))


def prepare_continues() -> st.SearchStrategy[m.PrepareContinue]:
    return st.builds(m.PrepareContinue, report_id=report_ids(), payload=_ping_pong_payloads())


def aggregation_job_continue_reqs(max_continues: int = 3) -> st.SearchStrategy[m.AggregationJobContinueReq]:
    """step shrinks to 0 (which a Helper must refuse, but it encodes)."""
    _check_max("max_continues", max_continues, 1)
    return st.builds(
        m.AggregationJobContinueReq,
        step=u16s(),
        prepare_continues=st.lists(prepare_continues(), min_size=1, max_size=max_continues),
    )


# --- collection ------------------------------------------------------------------------------


def collection_reqs() -> st.SearchStrategy[m.CollectionReq]:
    return st.builds(m.CollectionReq, query=queries(), agg_param=opaque(max_size=8))


def collections() -> st.SearchStrategy[m.Collection]:
    return st.builds(
        m.Collection,
        part_batch_selector=partial_batch_selectors(),
        report_count=u64s(),
        interval=intervals(),
        leader_encrypted_agg_share=hpke_ciphertexts(),
        helper_encrypted_agg_share=hpke_ciphertexts(),
    )


def aggregate_share_reqs() -> st.SearchStrategy[m.AggregateShareReq]:
    return st.builds(
        m.AggregateShareReq,
        batch_selector=batch_selectors(),
        agg_param=opaque(max_size=8),
        report_count=u64s(),
        checksum=checksums(),
    )


def aggregate_shares() -> st.SearchStrategy[m.AggregateShare]:
    return st.builds(m.AggregateShare, encrypted_aggregate_share=hpke_ciphertexts())


def aggregate_share_aads() -> st.SearchStrategy[m.AggregateShareAad]:
    return st.builds(m.AggregateShareAad, task_id=task_ids(), agg_param=opaque(max_size=8), batch_selector=batch_selectors())


# --- lookups ----------------------------------------------------------------------------------

#: Message class -> strategy factory, simplest classes first.
STRATEGIES: dict[type[Message], Callable[[], st.SearchStrategy[Message]]] = {
    m.PartialBatchSelector: partial_batch_selectors,
    m.FixedSizeQuery: fixed_size_queries,
    m.Interval: intervals,
    m.ReportMetadata: report_metadata,
    m.BatchSelector: batch_selectors,
    m.Query: queries,
    m.PingPongMessage: ping_pong_messages,
    m.Extension: extensions,
    m.HpkeCiphertext: hpke_ciphertexts,
    m.HpkeConfig: hpke_configs,
    m.HpkeConfigList: hpke_config_lists,
    m.PrepareContinue: prepare_continues,
    m.PrepareResp: prepare_resps,
    m.PlaintextInputShare: plaintext_input_shares,
    m.InputShareAad: input_share_aads,
    m.AggregateShare: aggregate_shares,
    m.AggregateShareAad: aggregate_share_aads,
    m.AggregateShareReq: aggregate_share_reqs,
    m.CollectionReq: collection_reqs,
    m.Collection: collections,
    m.Report: reports,
    m.ReportShare: report_shares,
    m.PrepareInit: prepare_inits,
    m.AggregationJobResp: aggregation_job_resps,
    m.AggregationJobContinueReq: aggregation_job_continue_reqs,
    m.AggregationJobInitReq: aggregation_job_init_reqs,
}


def messages_of(cls: type[Message]) -> st.SearchStrategy[Message]:
    """The strategy for message class ``cls``."""
    try:
        return STRATEGIES[cls]()
    except (KeyError, TypeError):
        raise InvalidArgument(f"no strategy for {cls!r}; known: {', '.join(c.__name__ for c in STRATEGIES)}") from None


def messages() -> st.SearchStrategy[Message]:
    """Any message of any class; shrinks toward the simplest one (a time_interval
    PartialBatchSelector, one byte)."""
    return st.one_of(*(f() for f in STRATEGIES.values()))


def encoded_messages() -> st.SearchStrategy[tuple[type[Message], bytes]]:
    """``(class, encoding)`` pairs of valid messages."""
    return messages().map(lambda msg: (type(msg), msg.encode()))
