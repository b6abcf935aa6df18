"""The paho client under an ``aiomqtt.Client``: reached here and nowhere else.

aiomqtt builds its paho client in ``__init__`` and keeps it as ``_client``, with no public
handle. Three things the product needs have no public aiomqtt path, so they go through it:

- manual acknowledgement (paho's ``manual_ack_set`` / ``ack``): a job is written to the agent's
  ledger before its PUBACK leaves, or a crash loses it (docs/agent-ledger.md);
- Nagle off on every transport (the socket behind paho's WebSocket wrapper);
- the reason code of a PUBACK (aiomqtt resolves a publish on any PUBACK, success or not).

These are correctness, not speed: there is no plain fallback, so they run on every release and
``tests/test_mqtt_adapter_canaries.py`` fails when an upgrade moves what they use.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho_mqtt


def paho_client(client: aiomqtt.Client) -> paho_mqtt.Client:
    """The paho client an ``aiomqtt.Client`` drives (from the event loop's thread)."""
    paho: paho_mqtt.Client = client._client
    return paho


def client_socket(client: aiomqtt.Client) -> Any:
    """The connection's socket (``socket.socket``, ``ssl.SSLSocket`` or paho's WebSocket
    wrapper), or None when not connected."""
    return paho_client(client).socket()


def set_tcp_nodelay(client: aiomqtt.Client) -> bool:
    """Turn Nagle's algorithm off on a connected ``aiomqtt.Client``'s TCP socket.

    aiomqtt applies ``socket_options`` only when paho hands it a ``socket.socket`` (plain TCP
    and TLS, as ``ssl.SSLSocket`` is one); paho's WebSocket wrapper is skipped, so a WebSocket
    connection keeps Nagle on and a request/reply round trip stalls for a delayed ACK (~40 ms,
    measured 44 ms on loopback). This reaches the descriptor behind any wrapper. Call it right
    after connecting; returns False when there is no TCP socket (not connected).
    """
    sock = client_socket(client)
    if sock is None:
        return False
    # A second socket object on a duplicate descriptor: the option belongs to the socket, so
    # setting it here sets it for paho's connection too; closing it closes only the duplicate.
    with socket.socket(fileno=os.dup(sock.fileno())) as dup:
        if dup.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        dup.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True


def tcp_nodelay(client: aiomqtt.Client) -> int:
    """The TCP_NODELAY option of a connected client's socket (0: Nagle is on)."""
    sock = client_socket(client)
    if sock is None:
        raise ValueError("not connected")
    with socket.socket(fileno=os.dup(sock.fileno())) as dup:
        return dup.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Withhold the PUBACK of each incoming QoS 1 message until :func:`ack`."""
    paho_client(client).manual_ack_set(True)


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Acknowledge ``message`` (QoS 1: PUBACK); a QoS 0 message needs nothing. Call it on the
    client's event loop (aiomqtt drives paho from there)."""
    if message.qos > 0:
        paho_client(client).ack(message.mid, message.qos)


def watch_pubacks(client: aiomqtt.Client, seen: Callable[[int, Any], None]) -> None:
    """Call ``seen(mid, reason code)`` for every PUBACK of the connected ``client`` (aiomqtt's
    own handling goes on: its publish still completes)."""
    paho = paho_client(client)
    aiomqtt_on_publish = paho.on_publish

    def on_publish(*args: Any) -> None:
        seen(args[2], args[3] if len(args) > 3 else None)
        if aiomqtt_on_publish is not None:
            aiomqtt_on_publish(*args)

    paho.on_publish = on_publish
