"""Typed error codes and the protocol's exceptions.

Exception tree::

    ProtocolError
    ├── DecodeError      a payload that is not a valid message of the expected kind
    ├── InvalidTopic     a topic outside the PrinterMaster tree
    └── InvalidId        a branch, agent, printer or requester id outside the safe character set
"""

from __future__ import annotations

import enum
from typing import Final


class ErrorCode(enum.StrEnum):
    """Every failure a caller can see, on the wire and over HTTP."""

    INVALID_REQUEST = "INVALID_REQUEST"
    UNKNOWN_METHOD = "UNKNOWN_METHOD"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    PRINTER_NOT_FOUND = "PRINTER_NOT_FOUND"
    PRINTER_OFFLINE = "PRINTER_OFFLINE"
    PAPER_OUT = "PAPER_OUT"
    COVER_OPEN = "COVER_OPEN"
    PRINTER_ERROR = "PRINTER_ERROR"
    AGENT_OFFLINE = "AGENT_OFFLINE"
    AGENT_UNREACHABLE = "AGENT_UNREACHABLE"
    PRINT_TIMEOUT = "PRINT_TIMEOUT"
    EXPIRED = "EXPIRED"
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
    CANCELLED = "CANCELLED"
    BROKER_UNAVAILABLE = "BROKER_UNAVAILABLE"
    INTERNAL = "INTERNAL"
    #: A remote printer configuration the agent refused (it keeps the one it had).
    CONFIG_INVALID = "CONFIG_INVALID"
    #: A release the agent refused: bad signature, hash mismatch, failed download or install.
    UPDATE_REFUSED = "UPDATE_REFUSED"
    # Failures of the HTTP edge itself (never sent by an agent).
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"


#: Codes where sending the same request again may succeed without anyone fixing anything.
RETRYABLE: Final[frozenset[ErrorCode]] = frozenset(
    {
        ErrorCode.PRINTER_OFFLINE,
        ErrorCode.AGENT_OFFLINE,
        ErrorCode.AGENT_UNREACHABLE,
        ErrorCode.BROKER_UNAVAILABLE,
        ErrorCode.INTERNAL,
        ErrorCode.RATE_LIMITED,
    }
)


class ProtocolError(Exception):
    """Root of every error raised by :mod:`protocol`."""

    code: ErrorCode = ErrorCode.INVALID_REQUEST

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DecodeError(ProtocolError):
    """A payload could not be decoded into the expected message."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        #: Where in the payload it went wrong, msgspec style (``$.blocks[3].size``), if known.
        self.path = path


class InvalidTopic(ProtocolError):
    """A topic string is not part of the PrinterMaster topic tree."""


class InvalidId(ProtocolError):
    """An id contains characters outside the safe set or is too long."""
