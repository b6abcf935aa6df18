"""MQTT 5 properties of requests and replies (pure data, no I/O).

Correlation data is the job id as ASCII text, so ``mosquitto_pub -D publish correlation-data``
works by hand. The request's Message Expiry Interval is the job's deadline: a request that
expires inside the broker is never delivered, so a ticket never prints late.
"""

from __future__ import annotations

import math
from typing import Any, Final

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

CONTENT_TYPE_JSON: Final = "application/json"


def publish_properties() -> Properties:
    """An empty property set for a PUBLISH packet."""
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
    props = publish_properties()
    props.ResponseTopic = response_topic
    props.CorrelationData = correlation_id.encode("ascii")
    props.ContentType = CONTENT_TYPE_JSON
    if expiry_s is not None:
        props.MessageExpiryInterval = max(1, math.ceil(expiry_s))
    if traceparent:
        props.UserProperty = [("traceparent", traceparent)]
    return props


def reply_properties(correlation_data: bytes | None) -> Properties:
    """Properties of an RPC reply PUBLISH: the request's correlation data, echoed."""
    props = publish_properties()
    props.ContentType = CONTENT_TYPE_JSON
    if correlation_data is not None:
        props.CorrelationData = correlation_data
    return props


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
