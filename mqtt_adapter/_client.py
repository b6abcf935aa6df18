"""The one place an MQTT client is built: :func:`make_client` (asyncio, aiomqtt), or
:func:`make_paho_client` for a synchronous tool.

Every connection of the product (the API's session, its retained and drain connections, the
agent, the provisioning admin, the tools) comes from here, so each gets the same MQTT 5 setup:
TLS from a CA file or PEM text, Nagle off on every transport (docs: a round trip costs ~1 ms
instead of ~40-90 ms), session expiry as a CONNECT property, and, on request, manual PUBACKs
and the fast paths (:mod:`._fastpaths`).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any, Literal, Self

import aiomqtt
import paho.mqtt.client as paho_mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ._fastpaths import coalesce_writes, handled_at_once
from ._paho import ack, enable_manual_ack, set_tcp_nodelay
from ._properties import connect_properties

#: aiomqtt's last-will description (topic, payload, qos, retain, properties).
Will = aiomqtt.Will

#: What :func:`make_client` does about Nagle's algorithm: ``True`` turns it off on every
#: transport (socket options, then the socket behind paho's WebSocket wrapper once connected);
#: ``"socket_options"`` only through aiomqtt's socket options (which miss WebSockets);
#: ``False`` leaves it on (a tool that measures the difference).
Nodelay = bool | Literal["socket_options"]


def nodelay_socket_options() -> list[tuple[int, int, int]]:
    """Socket options for an MQTT client socket: Nagle off.

    With Nagle's algorithm a request/response round trip on loopback takes ~40-90 ms; without
    it, well under a millisecond.
    """
    return [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def client_tls_context(ca_file: str | None = None, ca_pem: str | None = None) -> ssl.SSLContext:
    """A verifying client context: the system CAs unless ``ca_file``/``ca_pem`` name one."""
    return ssl.create_default_context(cafile=ca_file, cadata=ca_pem)


class Client(aiomqtt.Client):
    """An ``aiomqtt.Client`` as :func:`make_client` builds it: ``ack(message)`` sends a
    message's PUBACK when the client was built with ``manual_ack=True``."""

    def __init__(
        self, *args: Any, manual_ack: bool = False, nodelay_on_enter: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.manual_ack = manual_ack
        self._nodelay_on_enter = nodelay_on_enter
        if manual_ack:
            enable_manual_ack(self)

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        if self._nodelay_on_enter:
            # socket_options miss paho's WebSocket wrapper: Nagle off on every transport.
            set_tcp_nodelay(self)
        return self

    def ack(self, message: aiomqtt.Message) -> None:
        """Acknowledge ``message`` (QoS 1: PUBACK); only a ``manual_ack`` client needs to."""
        if not self.manual_ack:
            raise RuntimeError("this client acknowledges every message itself")
        ack(self, message)


def make_client(
    host: str,
    port: int,
    *,
    client_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    tls: bool = False,
    ca_file: str | None = None,
    ca_pem: str | None = None,
    tls_context: ssl.SSLContext | None = None,
    transport: Literal["tcp", "websockets", "unix"] = "tcp",
    websocket_path: str | None = None,
    clean_start: bool | None = None,
    session_expiry: int | None = None,
    keepalive: int = 60,
    timeout: float = 10,
    will: aiomqtt.Will | None = None,
    manual_ack: bool = False,
    max_inflight: int | None = None,
    pending_calls_threshold: int | None = None,
    on_message: Callable[[aiomqtt.Message], None] | None = None,
    nodelay: Nodelay = True,
    fast: bool = False,
) -> Client:
    """An MQTT 5 client, not yet connected (``async with`` connects it).

    ``tls``: verify the broker against ``ca_file``/``ca_pem`` (system CAs without them), unless
    ``tls_context`` is given, which then wins. ``clean_start`` None: aiomqtt's default (clean on
    the first connect only). ``session_expiry`` goes in the CONNECT properties (0: the session
    ends with the connection). ``manual_ack``: no PUBACK until :meth:`Client.ack`.
    ``pending_calls_threshold``: publishes awaiting their PUBACK before aiomqtt logs a warning
    on every further one. ``on_message``: each message is handed to it as paho reads it
    (``client.messages`` then yields nothing; on an unknown aiomqtt it yields every message,
    so read it and call the same handler). ``fast``: this client's packets leave in batches
    (:func:`coalesce_writes`); publish with :func:`publish_qos1` / :func:`publish_acked`.
    """
    if tls and tls_context is None:
        tls_context = client_tls_context(ca_file, ca_pem)
    kwargs: dict[str, Any] = {}
    if clean_start is not None:
        kwargs["clean_start"] = clean_start
    if session_expiry is not None:
        kwargs["properties"] = connect_properties(session_expiry=session_expiry)
    if transport == "websockets":
        kwargs["websocket_path"] = websocket_path
    if on_message is not None:
        kwargs["queue_type"] = handled_at_once(on_message)
    client = Client(
        host,
        port,
        username=username,
        password=password,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        will=will,
        keepalive=keepalive,
        transport=transport,
        tls_context=tls_context,
        socket_options=nodelay_socket_options() if nodelay else (),
        max_inflight_messages=max_inflight,
        timeout=timeout,
        manual_ack=manual_ack,
        nodelay_on_enter=nodelay is True,
        **kwargs,
    )
    if pending_calls_threshold is not None:
        client.pending_calls_threshold = pending_calls_threshold
    if fast:
        coalesce_writes(client)
    return client


def make_paho_client(
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    tls: bool = False,
    ca_file: str | None = None,
    ca_pem: str | None = None,
    transport: Literal["tcp", "websockets", "unix"] = "tcp",
    websocket_path: str | None = None,
    connect_timeout: float | None = None,
) -> paho_mqtt.Client:
    """A plain paho MQTT 5 client for a synchronous tool (the agent's doctor runs its steps one
    by one on paho's network thread): the same login, TLS and transport setup as
    :func:`make_client`, callback API version 2, no automatic reconnect. Not connected."""
    client = paho_mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho_mqtt.MQTTv5,
        transport=transport,
        reconnect_on_failure=False,
    )
    if username is not None:
        client.username_pw_set(username, password)
    if tls:
        client.tls_set_context(client_tls_context(ca_file, ca_pem))
    if transport == "websockets":
        client.ws_set_options(path=websocket_path or "/mqtt")
    if connect_timeout is not None:
        client.connect_timeout = connect_timeout
    return client
