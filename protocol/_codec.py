"""JSON codec: one encoder, one typed decoder per message kind, only typed errors out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ._document import decode_error
from ._errors import DecodeError, ErrorCode, ProtocolError
from ._messages import METHODS, AgentStatus, Presence, Reply, Request
from ._version import MAX_PAYLOAD_BYTES, PROTOCOL_VERSION

_encoder = msgspec.json.Encoder()


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


def typed_decoder(
    kind: Any, what: str, *, max_bytes: int | None = MAX_PAYLOAD_BYTES, invalid: str = "invalid"
) -> Callable[[bytes], Any]:
    """A decoder of JSON into ``kind`` that raises only :class:`DecodeError` (naming the field;
    :class:`~protocol.ContentTooLarge` for content over its limit), for messages that carry
    protocol Structs but are not on the wire themselves, such as the API's submitted job.
    ``max_bytes``: refuse longer input before decoding (None: the caller bounds it). The one
    decode path of every message kind: the wire messages below are decoded by it too."""
    decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(kind)

    def decode(data: bytes) -> Any:
        if max_bytes is not None and len(data) > max_bytes:
            raise DecodeError(f"{what} of {len(data)} bytes exceeds the {max_bytes} byte limit")
        try:
            return decoder.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise decode_error(f"{invalid} {what}", exc) from exc

    return decode


_request: Callable[[bytes], Request] = typed_decoder(Request, "request", invalid="malformed")
_reply: Callable[[bytes], Reply] = typed_decoder(Reply, "reply", invalid="malformed")
_presence: Callable[[bytes], Presence] = typed_decoder(Presence, "presence", invalid="malformed")
_status: Callable[[bytes], AgentStatus] = typed_decoder(AgentStatus, "status", invalid="malformed")
_params = {
    method: typed_decoder(kind, f"params of {method}", invalid="malformed")
    for method, kind in METHODS.items()
}


def _check_version(v: int, what: str) -> None:
    if not 1 <= v <= PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"{what} speaks protocol v{v}; this side speaks v1 to v{PROTOCOL_VERSION}"
        )


def decode_request(data: bytes) -> Request:
    """Decode a request envelope; raises :class:`DecodeError` or :class:`UnsupportedVersion`."""
    request = _request(data)
    _check_version(request.v, "request")
    return request


def decode_params(request: Request) -> Any:
    """Decode the params of ``request`` by its method."""
    decoder = _params.get(request.method)
    if decoder is None:
        raise UnknownMethod(f"unknown method {request.method[:80]!r}")
    return decoder(bytes(request.params))


def decode_reply(data: bytes) -> Reply:
    """Decode a reply (accepted, done or failed); a version this side does not speak raises
    :class:`UnsupportedVersion`, a :class:`DecodeError`."""
    reply = _reply(data)
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
    presence = _presence(data)
    _check_version(presence.v, "presence")
    return presence


def decode_status(data: bytes) -> AgentStatus:
    """Decode an agent status snapshot."""
    status = _status(data)
    _check_version(status.v, "status")
    return status
