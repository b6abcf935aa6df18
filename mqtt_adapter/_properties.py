"""MQTT 5 properties of requests, replies and connections (paho ``Properties``).

Correlation data is the job id as ASCII text, so ``mosquitto_pub -D publish correlation-data``
works by hand. The request's Message Expiry Interval is the job's deadline: a request that
expires inside the broker is never delivered, so a ticket never prints late.

On a paho release the fast paths know (:mod:`._versions`), request and reply properties are
packed here once, byte for byte as paho packs them (:class:`._fastprops.FastProperties`);
on any other, they are paho's own ``Properties`` set one attribute at a time.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Final

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol import TRACEPARENT

from ._versions import PAHO

CONTENT_TYPE_JSON: Final = "application/json"


def _utf8(value: str) -> bytes:
    """An MQTT UTF-8 string: two-byte length, then the bytes (paho's ``writeUTF``)."""
    data = value.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _binary(value: bytes) -> bytes:
    """MQTT binary data: two-byte length, then the bytes (paho's ``writeBytes``)."""
    return struct.pack("!H", len(value)) + value


# Property identifiers (MQTT 5, section 2.2.2.2); paho packs them in ascending order.
_MESSAGE_EXPIRY: Final = b"\x02"
_CONTENT_TYPE: Final = b"\x03" + _utf8(CONTENT_TYPE_JSON)
_RESPONSE_TOPIC: Final = b"\x08"
_CORRELATION_DATA: Final = b"\x09"
_USER_PROPERTY: Final = b"\x26"


def _built(values: dict[str, Any], body: bytes) -> Properties:
    if PAHO.ok():
        from ._fastprops import FastProperties

        return FastProperties.prepacked(values, body)
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    return props


def publish_properties() -> Properties:
    """An empty property set for a PUBLISH packet."""
    if PAHO.ok():
        from ._fastprops import FastProperties

        return FastProperties()
    return Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


def connect_properties(*, session_expiry: int) -> Properties:
    """CONNECT properties: how long the broker keeps the session after a disconnect."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry
    return props


def request_properties(
    *,
    response_topic: str,
    correlation_id: str,
    expiry_s: float | None = None,
    traceparent: str | None = None,
) -> Properties:
    """Properties of an RPC request PUBLISH."""
    correlation = correlation_id.encode("ascii")
    values: dict[str, Any] = {}
    body = b""
    if expiry_s is not None:
        expiry = max(1, math.ceil(expiry_s))
        values["MessageExpiryInterval"] = expiry
        body = _MESSAGE_EXPIRY + struct.pack("!L", expiry)
    values["ContentType"] = CONTENT_TYPE_JSON
    values["ResponseTopic"] = response_topic
    values["CorrelationData"] = correlation
    body += (
        _CONTENT_TYPE
        + _RESPONSE_TOPIC
        + _utf8(response_topic)
        + _CORRELATION_DATA
        + _binary(correlation)
    )
    if traceparent:
        values["UserProperty"] = [(TRACEPARENT, traceparent)]
        body += _USER_PROPERTY + _utf8(TRACEPARENT) + _utf8(traceparent)
    return _built(values, body)


def reply_properties(correlation_data: bytes | None, traceparent: str | None = None) -> Properties:
    """Properties of an RPC reply PUBLISH: the request's correlation data, echoed, and its
    ``traceparent`` user property when it had one."""
    values: dict[str, Any] = {"ContentType": CONTENT_TYPE_JSON}
    body = _CONTENT_TYPE
    if correlation_data is not None:
        values["CorrelationData"] = correlation_data
        body += _CORRELATION_DATA + _binary(correlation_data)
    if traceparent:
        values["UserProperty"] = [(TRACEPARENT, traceparent)]
        body += _USER_PROPERTY + _utf8(TRACEPARENT) + _utf8(traceparent)
    return _built(values, body)
