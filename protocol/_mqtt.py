"""MQTT 5 properties of requests and replies (pure data, no I/O).

Correlation data is the job id as ASCII text, so ``mosquitto_pub -D publish correlation-data``
works by hand. The request's Message Expiry Interval is the job's deadline: a request that
expires inside the broker is never delivered, so a ticket never prints late.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Final

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

CONTENT_TYPE_JSON: Final = "application/json"


class _PublishProperties(Properties):
    """paho's ``Properties`` of a PUBLISH packet, cheap to build.

    paho builds three lookup tables in every ``Properties.__init__`` and scans them on every
    attribute set and again in ``pack()``: ~50-75 us per message, a visible share of a request's
    CPU. Here the tables are class attributes (paho only reads them), and the builders below
    store their values and the packed bytes directly. paho calls nothing but ``pack()`` on a
    PUBLISH's properties; setting or deleting any property afterwards drops the packed bytes, so
    ``pack()`` falls back to paho's own packing and stays true to the attributes.
    """

    _tables = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    types = _tables.types
    names = _tables.names
    properties = _tables.properties

    def __init__(self) -> None:  # the tables are shared: paho's __init__ is not needed
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__.pop("_packed", None)
        super().__setattr__(name, value)  # type: ignore[no-untyped-call]

    def __delattr__(self, name: str) -> None:
        self.__dict__.pop("_packed", None)
        super().__delattr__(name)

    def pack(self) -> bytes:
        packed: bytes | None = self.__dict__.get("_packed")
        if packed is None:
            packed = bytes(super().pack())  # type: ignore[no-untyped-call]
        return packed


def _utf8(value: str) -> bytes:
    """An MQTT UTF-8 string: two-byte length, then the bytes (paho's ``writeUTF``)."""
    data = value.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _binary(value: bytes) -> bytes:
    """MQTT binary data: two-byte length, then the bytes (paho's ``writeBytes``)."""
    return struct.pack("!H", len(value)) + value


def _vbi(value: int) -> bytes:
    """An MQTT Variable Byte Integer (paho's ``VariableByteIntegers.encode``)."""
    if not 0 <= value <= 268_435_455:
        raise ValueError(f"Value {value!r} must be in range 0-268435455")
    out = bytearray()
    while True:
        digit, value = value & 0x7F, value >> 7
        out.append(digit | 0x80 if value else digit)
        if not value:
            return bytes(out)


# Property identifiers (MQTT 5, section 2.2.2.2); paho packs them in ascending order.
_MESSAGE_EXPIRY: Final = b"\x02"
_CONTENT_TYPE: Final = b"\x03" + _utf8(CONTENT_TYPE_JSON)
_RESPONSE_TOPIC: Final = b"\x08"
_CORRELATION_DATA: Final = b"\x09"
_USER_PROPERTY: Final = b"\x26"


def _built(values: dict[str, Any], body: bytes) -> Properties:
    props = _PublishProperties()
    state = props.__dict__
    state.update(values)
    state["_packed"] = _vbi(len(body)) + body
    return props


def publish_properties() -> Properties:
    """An empty property set for a PUBLISH packet."""
    return _PublishProperties()


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
        values["UserProperty"] = [("traceparent", traceparent)]
        body += _USER_PROPERTY + _utf8("traceparent") + _utf8(traceparent)
    return _built(values, body)


def reply_properties(correlation_data: bytes | None) -> Properties:
    """Properties of an RPC reply PUBLISH: the request's correlation data, echoed."""
    if correlation_data is None:
        return _built({"ContentType": CONTENT_TYPE_JSON}, _CONTENT_TYPE)
    return _built(
        {"ContentType": CONTENT_TYPE_JSON, "CorrelationData": correlation_data},
        _CONTENT_TYPE + _CORRELATION_DATA + _binary(correlation_data),
    )


def nodelay_socket_options() -> list[tuple[int, int, int]]:
    """Socket options for every MQTT client socket: Nagle off.

    With Nagle's algorithm a request/response round trip on loopback takes ~40-90 ms; without it,
    well under a millisecond.
    """
    import socket

    return [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def set_tcp_nodelay(client: Any) -> bool:
    """Turn Nagle's algorithm off on a connected ``aiomqtt.Client``'s TCP socket.

    aiomqtt applies ``socket_options`` only when paho hands it a ``socket.socket`` (plain TCP
    and TLS, as ``ssl.SSLSocket`` is one); paho's WebSocket wrapper is skipped, so a WebSocket
    connection keeps Nagle on and a request/reply round trip stalls for a delayed ACK (~40 ms,
    measured 44 ms on loopback). This reaches the descriptor behind any wrapper. Call it right
    after connecting; returns False when there is no TCP socket (not connected).
    """
    import os
    import socket

    paho_client = client._client  # aiomqtt exposes no public handle on paho's socket
    sock = paho_client.socket()
    if sock is None:
        return False
    # A second socket object on a duplicate descriptor: the option belongs to the socket, so
    # setting it here sets it for paho's connection too; closing it closes only the duplicate.
    with socket.socket(fileno=os.dup(sock.fileno())) as dup:
        if dup.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        dup.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True
