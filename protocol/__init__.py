"""The wire contract shared by the cloud API and the branch agents.

Everything that crosses the broker is defined here: msgspec Structs for every message, topic
builders and parsers, the JSON codec, typed error codes and the protocol version. No I/O.
"""

from ._backoff import Backoff
from ._codec import (
    decode_params,
    decode_presence,
    decode_reply,
    decode_request,
    decode_status,
    encode,
)
from ._errors import (
    RETRYABLE,
    DecodeError,
    ErrorCode,
    InvalidId,
    InvalidTopic,
    ProtocolError,
    error_info,
)
from ._ids import is_valid_id, new_job_id, validate_id
from ._messages import (
    METHOD_PRINTER_TEST,
    METHODS,
    Accepted,
    AgentStatus,
    Done,
    ErrorInfo,
    Failed,
    Presence,
    PrinterState,
    PrinterTestParams,
    PrintResult,
    Reply,
    Request,
)
from ._mqtt import (
    CONTENT_TYPE_JSON,
    nodelay_socket_options,
    reply_properties,
    request_properties,
)
from ._topics import (
    ALL_PRESENCE,
    ALL_STATUS,
    TOPIC_PREFIX,
    Topic,
    TopicKind,
    parse_topic,
    presence_topic,
    reply_filter,
    reply_topic,
    request_topic,
    status_topic,
)
from ._version import MAX_PAYLOAD_BYTES, PROTOCOL_VERSION, software_version

__all__ = [
    "ALL_PRESENCE",
    "ALL_STATUS",
    "CONTENT_TYPE_JSON",
    "MAX_PAYLOAD_BYTES",
    "METHODS",
    "METHOD_PRINTER_TEST",
    "PROTOCOL_VERSION",
    "RETRYABLE",
    "TOPIC_PREFIX",
    "Accepted",
    "AgentStatus",
    "Backoff",
    "DecodeError",
    "Done",
    "ErrorCode",
    "ErrorInfo",
    "Failed",
    "InvalidId",
    "InvalidTopic",
    "Presence",
    "PrintResult",
    "PrinterState",
    "PrinterTestParams",
    "ProtocolError",
    "Reply",
    "Request",
    "Topic",
    "TopicKind",
    "decode_params",
    "decode_presence",
    "decode_reply",
    "decode_request",
    "decode_status",
    "encode",
    "error_info",
    "is_valid_id",
    "new_job_id",
    "nodelay_socket_options",
    "parse_topic",
    "presence_topic",
    "reply_filter",
    "reply_properties",
    "reply_topic",
    "request_properties",
    "request_topic",
    "software_version",
    "status_topic",
    "validate_id",
]
