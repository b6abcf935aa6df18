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


class _Staged(msgspec.Struct):
    stage: str = ""


_stage = msgspec.json.Decoder(_Staged)


class UnknownMethod(ProtocolError):
    """The request names a method this side does not implement."""

    code = ErrorCode.UNKNOWN_METHOD


class UnsupportedVersion(DecodeError):
    """The payload speaks a protocol version this side does not (newer, or no version at all:
    zero or negative). A :class:`DecodeError`: whoever drops malformed messages drops these."""

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


def _check_version(v: int, what: str) -> None:
    if not 1 <= v <= PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"{what} speaks protocol v{v}; this side speaks v1 to v{PROTOCOL_VERSION}"
        )


def decode_request(data: bytes) -> Request:
    """Decode a request envelope; raises :class:`DecodeError` or :class:`UnsupportedVersion`."""
    request = _decode(_request, data, "request")
    _check_version(request.v, "request")
    return request


def decode_params(request: Request) -> Any:
    """Decode the params of ``request`` by its method."""
    decoder = _params.get(request.method)
    if decoder is None:
        raise UnknownMethod(f"unknown method {request.method[:80]!r}")
    return _decode(decoder, bytes(request.params), f"params of {request.method}")


def decode_reply(data: bytes) -> Reply:
    """Decode a reply (accepted, done or failed); a version this side does not speak raises
    :class:`UnsupportedVersion`, a :class:`DecodeError`."""
    reply = _decode(_reply, data, "reply")
    _check_version(reply.v, "reply")
    return reply


def reply_stage(data: bytes) -> str:
    """The ``stage`` tag of an encoded reply, without decoding the rest ("" if it has none or
    is not JSON): what an outbox needs to tell progress from a final."""
    try:
        return _stage.decode(data).stage
    except (msgspec.DecodeError, UnicodeDecodeError):
        return ""


def decode_presence(data: bytes) -> Presence:
    """Decode a presence message (birth or will)."""
    presence = _decode(_presence, data, "presence")
    _check_version(presence.v, "presence")
    return presence


def decode_status(data: bytes) -> AgentStatus:
    """Decode an agent status snapshot."""
    status = _decode(_status, data, "status")
    _check_version(status.v, "status")
    return status
