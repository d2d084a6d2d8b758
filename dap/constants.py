"""DAP-09 constants: media types, problem types, wire enums, HPKE algorithm ids.

Sources: draft-ietf-ppm-dap-09 (digest: ``shared/spec/dap-09.md`` §2, §4.6,
§7.2, §7.3, §8) and VDAF-08 §5.8 for the ping-pong message type.

Wire enums are :class:`enum.IntEnum` so a member *is* its wire value.  The
codec (:mod:`dap.messages`) refuses to decode a value that is not a member.
HPKE algorithm ids are enums for naming only: the codec keeps them as plain
integers, since a config list may carry suites a party does not support.
"""

from __future__ import annotations

import enum

__all__ = [
    "DAP_VERSION",
    "MEDIA_TYPE_HPKE_CONFIG_LIST",
    "MEDIA_TYPE_REPORT",
    "MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ",
    "MEDIA_TYPE_AGGREGATION_JOB_RESP",
    "MEDIA_TYPE_AGGREGATION_JOB_CONTINUE_REQ",
    "MEDIA_TYPE_AGGREGATE_SHARE_REQ",
    "MEDIA_TYPE_AGGREGATE_SHARE",
    "MEDIA_TYPE_COLLECT_REQ",
    "MEDIA_TYPE_COLLECTION",
    "MEDIA_TYPE_PROBLEM_JSON",
    "MEDIA_TYPES",
    "PROBLEM_TYPE_URN_PREFIX",
    "ProblemType",
    "problem_type_from_uri",
    "PrepareError",
    "PrepareRespState",
    "Role",
    "QueryType",
    "FixedSizeQueryType",
    "PingPongType",
    "ExtensionType",
    "HpkeKemId",
    "HpkeKdfId",
    "HpkeAeadId",
]

#: The version label inside HPKE ``info`` strings.
DAP_VERSION = "dap-09"

# --- media types (dap-09.md §4.6; exact strings, no parameters) -------------
MEDIA_TYPE_HPKE_CONFIG_LIST = "application/dap-hpke-config-list"
MEDIA_TYPE_REPORT = "application/dap-report"
MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ = "application/dap-aggregation-job-init-req"
MEDIA_TYPE_AGGREGATION_JOB_RESP = "application/dap-aggregation-job-resp"
MEDIA_TYPE_AGGREGATION_JOB_CONTINUE_REQ = "application/dap-aggregation-job-continue-req"
MEDIA_TYPE_AGGREGATE_SHARE_REQ = "application/dap-aggregate-share-req"
MEDIA_TYPE_AGGREGATE_SHARE = "application/dap-aggregate-share"
MEDIA_TYPE_COLLECT_REQ = "application/dap-collect-req"  # "collect", not "collection"
MEDIA_TYPE_COLLECTION = "application/dap-collection"
MEDIA_TYPE_PROBLEM_JSON = "application/problem+json"

#: Every DAP message media type (not the problem document one).
MEDIA_TYPES: tuple[str, ...] = (
    MEDIA_TYPE_HPKE_CONFIG_LIST,
    MEDIA_TYPE_REPORT,
    MEDIA_TYPE_AGGREGATION_JOB_INIT_REQ,
    MEDIA_TYPE_AGGREGATION_JOB_RESP,
    MEDIA_TYPE_AGGREGATION_JOB_CONTINUE_REQ,
    MEDIA_TYPE_AGGREGATE_SHARE_REQ,
    MEDIA_TYPE_AGGREGATE_SHARE,
    MEDIA_TYPE_COLLECT_REQ,
    MEDIA_TYPE_COLLECTION,
)

# --- problem types (dap-09.md §7.2) ------------------------------------------
PROBLEM_TYPE_URN_PREFIX = "urn:ietf:params:ppm:dap:error:"


class ProblemType(enum.Enum):
    """A DAP-09 problem type: ``token``, ``uri`` and a short ``description``.

    ``ProblemType.from_token("batchMismatch")`` and :func:`problem_type_from_uri`
    look members up. Tokens outside this table (e.g. Janus's ``invalidTask``)
    are not DAP-09 problem types and have no member.
    """

    INVALID_MESSAGE = ("invalidMessage", "The message type for a response was incorrect or the payload was malformed.")
    UNRECOGNIZED_TASK = ("unrecognizedTask", "An endpoint received a message with an unknown task ID.")
    UNRECOGNIZED_AGGREGATION_JOB = ("unrecognizedAggregationJob", "An endpoint received a message with an unknown aggregation job ID.")
    OUTDATED_CONFIG = ("outdatedConfig", "The message was generated using an outdated configuration.")
    REPORT_REJECTED = ("reportRejected", "Report could not be processed for an unspecified reason.")
    REPORT_TOO_EARLY = ("reportTooEarly", "Report could not be processed because its timestamp is too far in the future.")
    BATCH_INVALID = ("batchInvalid", "The batch implied by the query is invalid.")
    INVALID_BATCH_SIZE = ("invalidBatchSize", "The number of reports included in the batch is invalid.")
    BATCH_QUERIED_TOO_MANY_TIMES = ("batchQueriedTooManyTimes", "The batch described by the query has been queried too many times.")
    BATCH_MISMATCH = ("batchMismatch", "Leader and helper disagree on reports aggregated in a batch.")
    UNAUTHORIZED_REQUEST = ("unauthorizedRequest", "The request's authorization is not valid.")
    MISSING_TASK_ID = ("missingTaskID", "HPKE configuration was requested without specifying a task ID.")
    STEP_MISMATCH = ("stepMismatch", "The leader and helper are not on the same step of VDAF preparation.")
    BATCH_OVERLAP = ("batchOverlap", "The queried batch overlaps with a previously queried batch.")

    def __init__(self, token: str, description: str) -> None:
        self.token = token
        self.description = description

    @property
    def uri(self) -> str:
        """``urn:ietf:params:ppm:dap:error:<token>``."""
        return PROBLEM_TYPE_URN_PREFIX + self.token

    @classmethod
    def from_token(cls, token: str) -> ProblemType | None:
        """The member whose token is ``token`` (case-sensitive), or None."""
        return _PROBLEM_BY_TOKEN.get(token)

    def __str__(self) -> str:
        return self.token


_PROBLEM_BY_TOKEN = {p.token: p for p in ProblemType}


def problem_type_from_uri(uri: str) -> ProblemType | None:
    """The :class:`ProblemType` for a problem document ``type`` URI, or None if unknown.

    Surrounding whitespace is ignored; the comparison is otherwise exact.
    """
    uri = uri.strip()
    if not uri.startswith(PROBLEM_TYPE_URN_PREFIX):
        return None
    return _PROBLEM_BY_TOKEN.get(uri[len(PROBLEM_TYPE_URN_PREFIX):])


# --- wire enums ----------------------------------------------------------------


class PrepareError(enum.IntEnum):
    """Per-report rejection code inside ``PrepareResp`` (dap-09.md §7.3), 1 byte."""

    BATCH_COLLECTED = 0
    REPORT_REPLAYED = 1
    REPORT_DROPPED = 2
    HPKE_UNKNOWN_CONFIG_ID = 3
    HPKE_DECRYPT_ERROR = 4
    VDAF_PREP_ERROR = 5
    BATCH_SATURATED = 6
    TASK_EXPIRED = 7
    INVALID_MESSAGE = 8
    REPORT_TOO_EARLY = 9


class PrepareRespState(enum.IntEnum):
    """``PrepareResp.prepare_resp_state``, 1 byte."""

    CONTINUE = 0
    FINISHED = 1
    REJECT = 2


class Role(enum.IntEnum):
    """Protocol role, 1 byte (used in HPKE ``info`` strings)."""

    COLLECTOR = 0
    CLIENT = 1
    LEADER = 2
    HELPER = 3


class QueryType(enum.IntEnum):
    """Query type, 1 byte.

    Value 0 is reserved by the draft (testing) and has no layout in any
    ``select``; it is deliberately not a member, so the codec rejects it.
    """

    TIME_INTERVAL = 1
    FIXED_SIZE = 2


class FixedSizeQueryType(enum.IntEnum):
    """``FixedSizeQuery.query_type``, 1 byte."""

    BY_BATCH_ID = 0
    CURRENT_BATCH = 1


class PingPongType(enum.IntEnum):
    """VDAF-08 ping-pong ``Message.type`` (§5.8), 1 byte."""

    INITIALIZE = 0
    CONTINUE = 1
    FINISH = 2


class ExtensionType(enum.IntEnum):
    """Report extension types, 2 bytes. DAP-09 defines only the placeholder TBD(0).

    The codec keeps ``Extension.extension_type`` as a plain ``u16``: an unknown
    extension is a per-report ``invalid_message`` rejection, not a decode error.
    """

    TBD = 0


class HpkeKemId(enum.IntEnum):
    """RFC 9180 KEM ids (dap-09.md §8). X25519 is the mandatory one."""

    P256_HKDF_SHA256 = 0x0010
    X25519_HKDF_SHA256 = 0x0020


class HpkeKdfId(enum.IntEnum):
    """RFC 9180 KDF ids."""

    HKDF_SHA256 = 0x0001
    HKDF_SHA384 = 0x0002
    HKDF_SHA512 = 0x0003


class HpkeAeadId(enum.IntEnum):
    """RFC 9180 AEAD ids."""

    AES_128_GCM = 0x0001
    AES_256_GCM = 0x0002
    CHACHA20_POLY1305 = 0x0003
