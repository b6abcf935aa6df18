"""JSON codec: one encoder, one typed decoder per message kind, only typed errors out."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from ._document import decode_error
from ._errors import DecodeError, ErrorCode, ProtocolError
from ._messages import METHODS, AgentStatus, Presence, Reply, Request
from ._version import MAX_PAYLOAD_BYTES, PROTOCOL_VERSION

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_request = msgspec.json.Decoder(Request)
_reply: msgspec.json.Decoder[Reply] = msgspec.json.Decoder(Reply)
_presence = msgspec.json.Decoder(Presence)
_status = msgspec.json.Decoder(AgentStatus)
_params = {method: msgspec.json.Decoder(kind) for method, kind in METHODS.items()}


class UnknownMethod(ProtocolError):
    """The request names a method this side does not implement."""

    code = ErrorCode.UNKNOWN_METHOD


class UnsupportedVersion(ProtocolError):
    """The payload speaks a newer protocol version than this side."""

    code = ErrorCode.UNSUPPORTED_VERSION


def encode(message: Any) -> bytes:
    """Encode any protocol Struct to JSON bytes."""
    return _encoder.encode(message)


def _decode(decoder: msgspec.json.Decoder[T], data: bytes, what: str) -> T:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise DecodeError(f"{what} of {len(data)} bytes exceeds the {MAX_PAYLOAD_BYTES} byte limit")
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise decode_error(f"malformed {what}", exc) from exc


def decode_request(data: bytes) -> Request:
    """Decode a request envelope; raises :class:`DecodeError` or :class:`UnsupportedVersion`."""
    request = _decode(_request, data, "request")
    if request.v > PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"request speaks protocol v{request.v}; this agent speaks v{PROTOCOL_VERSION}"
        )
    return request


def decode_params(request: Request) -> Any:
    """Decode the params of ``request`` by its method."""
    decoder = _params.get(request.method)
    if decoder is None:
        raise UnknownMethod(f"unknown method {request.method[:80]!r}")
    return _decode(decoder, bytes(request.params), f"params of {request.method}")


def decode_reply(data: bytes) -> Reply:
    """Decode a reply (accepted, done or failed)."""
    return _decode(_reply, data, "reply")


def decode_presence(data: bytes) -> Presence:
    """Decode a presence message (birth or will)."""
    return _decode(_presence, data, "presence")


def decode_status(data: bytes) -> AgentStatus:
    """Decode an agent status snapshot."""
    return _decode(_status, data, "status")
