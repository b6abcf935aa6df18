"""Canaries of :mod:`mqtt_adapter`'s reach into paho-mqtt and aiomqtt.

Each fast path (and each use of the paho client under aiomqtt) relies on upstream code that is
not public API. Every test here names exactly what it relies on and fails when an upgrade of
paho-mqtt or aiomqtt changes it: then review the fast path, and only then add the new release to
``mqtt_adapter._versions.KNOWN`` (an unknown release runs the plain public path meanwhile, which
the last tests check). This file and the adapter's own tests are the only places outside
``mqtt_adapter/`` allowed to touch those internals (tests/test_mqtt_adapter_boundaries.py).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import secrets
import socket
import struct

import aiomqtt
import paho.mqtt.client as paho_mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import mqtt_adapter
from mqtt_adapter import (
    AIOMQTT,
    PAHO,
    coalesce_writes,
    handled_at_once,
    install_fast_paths,
    make_client,
    publish_acked,
    publish_properties,
    publish_qos1,
    reply_properties,
    request_properties,
    set_tcp_nodelay,
    tcp_nodelay,
)
from mqtt_adapter._fastpaths import coalesce_paho_writes
from mqtt_adapter._fastprops import FastProperties, uninstall_decoder
from protocol import MAX_PAYLOAD_BYTES, reply_topic, request_topic

from .test_broker_tls import Agent, Broker, _client, _next_payload, agent, tls_broker

__all__ = ["agent", "tls_broker"]  # fixtures, used by name


def test_the_installed_releases_are_the_known_ones() -> None:
    """The fast paths are what the suite measures: on an unknown release they silently step
    aside, so the suite says so here instead. Relies on: each library's ``__version__`` is its
    release (what the guard reads first: a single-file agent carries no package metadata)."""
    from importlib import metadata

    import paho.mqtt

    assert paho.mqtt.__version__ == metadata.version("paho-mqtt")
    assert aiomqtt.__version__ == metadata.version("aiomqtt")
    assert PAHO.ok(), PAHO.installed
    assert AIOMQTT.ok(), AIOMQTT.installed


# --- Properties (mqtt_adapter._fastprops) ------------------------------------------------------


def test_paho_properties_tables_are_what_fast_properties_share() -> None:
    """Relies on: a paho ``Properties`` holds its lookup tables as the instance attributes
    ``types`` (type names, with "UTF-8 Encoded String" and "UTF-8 String Pair"), ``names``
    (spaced name -> identifier) and ``properties`` (identifier -> (type index, packet types)),
    the same for every packet type, and offers ``allowsMultiple(name)`` and
    ``readProperty(buffer, type, maxlen) -> (value, length)``."""
    publish = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    assert publish.types == connect.types and "UTF-8 String Pair" in publish.types
    assert publish.names == connect.names and publish.names["Correlation Data"] == 9
    assert publish.properties == connect.properties
    value_type, packet_types = publish.properties[9]
    assert publish.types[value_type] == "Binary Data" and PacketTypes.PUBLISH in packet_types
    assert publish.allowsMultiple("UserProperty") and not publish.allowsMultiple("ContentType")  # type: ignore[no-untyped-call]
    assert publish.readProperty(b"\x00\x02ab", value_type, 4) == (b"ab", 4)  # type: ignore[no-untyped-call]


def test_paho_properties_live_in_the_instance_dict() -> None:
    """Relies on: paho's ``__setattr__`` stores a property under its unspaced name in
    ``__dict__``, and ``pack()``, ``__str__`` and ``json()`` read them back from there, so a
    ``__dict__`` filled directly (the prepacked builders) reads as if set one by one."""
    paho = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    paho.ResponseTopic = "pm/v1/b/reply/api-1"
    paho.CorrelationData = b"j1"
    assert paho.__dict__["ResponseTopic"] == "pm/v1/b/reply/api-1"
    filled = FastProperties()
    filled.__dict__.update(ResponseTopic="pm/v1/b/reply/api-1", CorrelationData=b"j1")
    assert filled.pack() == paho.pack() and str(filled) == str(paho)
    assert filled.json() == paho.json()


def test_paho_decoders_look_up_properties_when_they_decode() -> None:
    """Relies on: ``paho.mqtt._packet`` holds ``Properties`` as a module global that its
    decoders (``decode_publish`` for PUBLISH, the same for PUBACK) look up on every packet, so
    :func:`install_fast_paths` reaches them by replacing that global."""
    from paho.mqtt import _packet

    block = request_properties(response_topic="pm/v1/b/reply/api-1", correlation_id="j1").pack()
    packet = struct.pack("!H", 3) + b"a/b" + struct.pack("!H", 7) + block + b"payload"

    def decoded_type() -> type:
        result = _packet.decode_publish(0x32, packet, MQTTProtocolVersion.MQTTv5)
        assert result.properties.CorrelationData == b"j1" and result.payload == b"payload"
        return type(result.properties)

    uninstall_decoder()
    try:
        assert _packet.Properties is Properties
        assert decoded_type() is Properties
        assert install_fast_paths() and install_fast_paths()  # idempotent
        assert decoded_type() is FastProperties
    finally:
        install_fast_paths()


# --- coalesced writes (mqtt_adapter._fastpaths.coalesce_writes) -------------------------------


def test_paho_queues_packets_as_coalesce_writes_expects() -> None:
    """Relies on: a paho client keeps its outgoing packets in ``_out_packet``, a deque of dicts
    with exactly the keys command, mid, qos, pos, to_process, packet, info (``_packet_queue``
    builds them), and ``_packet_write()`` (no arguments) sends from its head through
    ``_sock_send`` until the deque is empty, keeping ``pos``/``to_process`` of a packet the
    socket took in part."""
    client = paho_mqtt.Client(CallbackAPIVersion.VERSION2, protocol=paho_mqtt.MQTTv5)
    assert isinstance(client._out_packet, collections.deque)
    assert list(inspect.signature(client._packet_write).parameters) == []
    assert list(inspect.signature(client._packet_queue).parameters) == [
        "command",
        "packet",
        "mid",
        "qos",
        "info",
    ]
    ours, theirs = socket.socketpair()
    with ours, theirs:
        client._sock = ours  # type: ignore[assignment]
        client.on_socket_register_write = lambda *_: None  # queue without writing at once
        sends: list[bytes] = []
        real_send = client._sock_send

        def counted_send(buf: bytes) -> int:
            sends.append(bytes(buf))
            return int(real_send(buf))

        client._sock_send = counted_send  # type: ignore[method-assign]
        pubacks = [bytes([0x40, 2, 0, mid]) for mid in (1, 2, 3)]
        for mid, puback in enumerate(pubacks, 1):
            client._packet_queue(0x40, puback, mid, 1)
        assert set(client._out_packet[0]) == {
            "command",
            "mid",
            "qos",
            "pos",
            "to_process",
            "packet",
            "info",
        }
        assert coalesce_paho_writes(client)
        client._packet_write()
        assert sends == [b"".join(pubacks)]  # one send, every packet in order
        assert not client._out_packet
        assert theirs.recv(100) == b"".join(pubacks)
        client._sock = None


@pytest.mark.parametrize("transport", ["plain", "tls", "wss"])
async def test_coalesced_writes_deliver_every_packet_in_order(
    tls_broker: Broker, agent: Agent, transport: str
) -> None:
    """Packets queued together go out in fewer sends, whole and in order, on every transport;
    a payload larger than one send() can take is written in parts."""
    req = request_topic(agent.branch_id, agent.agent_id)
    count = 200
    async with _client(tls_broker, agent.creds, "plain") as agent_client:
        await agent_client.subscribe(req, qos=1)
        async with _client(tls_broker, tls_broker.cloud, transport) as cloud:
            assert coalesce_writes(cloud)
            cloud.pending_calls_threshold = 10 * count
            paho = cloud._client
            sends = 0
            real_send = paho._sock_send

            def counted_send(buf: bytes) -> int:
                nonlocal sends
                sends += 1
                return int(real_send(buf))

            paho._sock_send = counted_send  # type: ignore[method-assign]
            big = secrets.token_bytes(MAX_PAYLOAD_BYTES)
            payloads = [f"{i:04d}".encode() * 16 for i in range(count)]
            payloads[count // 2] = big
            await asyncio.gather(*(cloud.publish(req, p, qos=1) for p in payloads))
            received = [await _next_payload(agent_client) for _ in payloads]
            assert received == payloads
            assert sends < count / 4, sends
            # QoS 0 and DISCONNECT are sent as paho sends them (it acts on their completion)
            await cloud.publish(req, b"last", qos=0)
        assert await _next_payload(agent_client) == b"last"


# --- acked publish (mqtt_adapter._fastpaths.publish_acked) -----------------------------------


async def test_aiomqtt_resolves_pending_publishes_as_publish_acked_expects() -> None:
    """Relies on: an ``aiomqtt.Client`` keeps ``_pending_publishes`` (mid -> an object whose
    ``set()`` it calls), its PUBACK callback ``_on_publish(client, userdata, mid, reason,
    properties)`` pops the mid and calls ``set()``, ``_outgoing_calls_sem`` is None unless
    ``max_concurrent_outgoing_calls`` is given, and ``timeout`` is a number of seconds."""
    client = aiomqtt.Client("127.0.0.1", 1, timeout=3)
    assert client._pending_publishes == {} and client._outgoing_calls_sem is None
    assert client.timeout == 3
    limited = aiomqtt.Client("127.0.0.1", 1, max_concurrent_outgoing_calls=5)
    assert limited._outgoing_calls_sem is not None
    event = asyncio.Event()
    client._pending_publishes[7] = event
    assert client._client.on_publish == client._on_publish
    client._on_publish(client._client, None, 7, None, None)  # type: ignore[arg-type]
    assert event.is_set() and 7 not in client._pending_publishes


@pytest.mark.parametrize("transport", ["plain", "tls", "wss"])
async def test_publish_qos1_waits_for_each_puback(
    tls_broker: Broker, agent: Agent, transport: str
) -> None:
    req = request_topic(agent.branch_id, agent.agent_id)
    props = request_properties(
        response_topic=reply_topic(agent.branch_id, "api-1", agent.agent_id), correlation_id="j"
    )
    async with _client(tls_broker, agent.creds, "plain") as agent_client:
        await agent_client.subscribe(req, qos=1)
        async with _client(tls_broker, tls_broker.cloud, transport) as cloud:
            payloads = [f"{i}".encode() for i in range(300)]
            acked = publish_acked(cloud, req, payloads[0], props)
            # the fast path is taken, not the fallback: the message went to paho at once
            assert not isinstance(acked, asyncio.Task) and len(cloud._pending_publishes) == 1
            await acked
            await asyncio.gather(*(publish_qos1(cloud, req, p, props) for p in payloads[1:]))
            assert not cloud._pending_publishes  # every PUBACK arrived and was cleaned up
            received = [await _next_payload(agent_client) for _ in payloads]
            assert received == payloads
            # a PUBACK that never comes: the same error as aiomqtt's publish, after its timeout
            cloud.timeout = 0.3
            cloud._client._handle_pubackcomp = lambda cmd: 0  # type: ignore[method-assign,assignment]
            with pytest.raises(aiomqtt.MqttError, match="timed out"):
                await publish_qos1(cloud, req, b"lost ack", props)
            assert not cloud._pending_publishes
    # not connected: paho refuses at once
    with pytest.raises(aiomqtt.MqttCodeError):
        await publish_qos1(cloud, req, b"late", props)


# --- handled at once (mqtt_adapter._fastpaths.handled_at_once) --------------------------------


async def test_aiomqtt_hands_each_message_to_its_queue_put_nowait() -> None:
    """Relies on: aiomqtt builds its incoming queue as ``queue_type(maxsize=...)`` and its
    ``_on_message(client, userdata, message)`` converts paho's message and calls the queue's
    ``put_nowait`` with it, on paho's read, before paho acknowledges it."""
    seen: list[aiomqtt.Message] = []
    queue_type = handled_at_once(seen.append)
    assert queue_type is not None
    client = aiomqtt.Client("127.0.0.1", 1, queue_type=queue_type)
    paho_message = paho_mqtt.MQTTMessage(mid=3, topic=b"pm/v1/b/reply/api-1/a")
    paho_message.payload = b"{}"
    client._on_message(client._client, None, paho_message)
    got = [(m.topic.value, m.payload, m.mid) for m in seen]
    assert got == [("pm/v1/b/reply/api-1/a", b"{}", 3)]


# --- the paho client under aiomqtt (mqtt_adapter._paho: no fallback, correctness) -----------


async def test_aiomqtt_keeps_its_paho_client_as_client() -> None:
    """Relies on: ``aiomqtt.Client._client`` is the ``paho.mqtt.client.Client`` it drives,
    whose ``manual_ack_set(True)`` withholds PUBACKs until ``ack(mid, qos)``, whose
    ``socket()`` is the connection's socket (None unconnected), and whose ``on_publish`` aiomqtt
    sets to its own callback with the version 2 signature (client, userdata, mid, reason code,
    properties)."""
    client = make_client("127.0.0.1", 1, manual_ack=True)
    paho = client._client
    assert isinstance(paho, paho_mqtt.Client)
    assert paho._manual_ack is True  # what manual_ack_set(True) sets
    assert paho.socket() is None
    assert paho.on_publish == client._on_publish
    assert list(inspect.signature(client._on_publish).parameters) == [
        "client",
        "userdata",
        "mid",
        "reason_code",
        "properties",
    ]
    assert callable(paho.ack) and list(inspect.signature(paho.ack).parameters) == ["mid", "qos"]


@pytest.mark.parametrize("transport", ["plain", "tls", "wss"])
async def test_set_tcp_nodelay_reaches_every_transport(
    tls_broker: Broker, agent: Agent, transport: str
) -> None:
    async with _client(tls_broker, agent.creds, transport) as client:
        assert set_tcp_nodelay(client) is True
        assert tcp_nodelay(client) != 0
        # The duplicate descriptor is closed, paho's connection is not.
        await client.subscribe(request_topic(agent.branch_id, agent.agent_id), qos=1)


# --- an unknown release: the plain public path, one warning -----------------------------------


@pytest.fixture
def unknown_releases() -> object:
    PAHO.reset("9.9.0")
    AIOMQTT.reset("9.9.0")
    try:
        yield
    finally:
        PAHO.reset()
        AIOMQTT.reset()
        assert PAHO.ok() and AIOMQTT.ok()


@pytest.mark.usefixtures("unknown_releases")
async def test_an_unknown_release_takes_the_plain_path_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="mqtt_adapter"):
        props = request_properties(
            response_topic="pm/v1/b/reply/api-1", correlation_id="j1", traceparent="00-x"
        )
        assert type(props) is Properties  # paho's own, set one attribute at a time
        reference = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        reference.ContentType = "application/json"
        reference.ResponseTopic = "pm/v1/b/reply/api-1"
        reference.CorrelationData = b"j1"
        reference.UserProperty = ("traceparent", "00-x")
        assert props.pack() == reference.pack()
        assert type(reply_properties(b"j1")) is Properties
        assert type(publish_properties()) is Properties
        client = make_client("127.0.0.1", 1, fast=True, on_message=lambda _: None)
        assert not coalesce_writes(client)
        assert "_packet_write" not in vars(client._client)  # paho's own method stays
        assert handled_at_once(lambda _: None) is None
        with pytest.raises(aiomqtt.MqttError):  # not connected: aiomqtt's own publish
            await publish_acked(client, "a/b", b"x")
        request_properties(response_topic="pm/v1/b/reply/api-1", correlation_id="j2")
    warnings = [r.getMessage() for r in caplog.records if r.name == "mqtt_adapter"]
    assert len(warnings) == 2, warnings  # one per library, not one per call
    assert "paho-mqtt 9.9.0" in warnings[0] and "aiomqtt 9.9.0" in warnings[1]


@pytest.mark.usefixtures("unknown_releases")
def test_an_unknown_paho_leaves_its_decoders_alone() -> None:
    from paho.mqtt import _packet

    uninstall_decoder()
    try:
        assert install_fast_paths() is False
        assert _packet.Properties is Properties
    finally:
        PAHO.reset()
        install_fast_paths()


def test_the_adapter_exports_what_it_documents() -> None:
    assert sorted(mqtt_adapter.__all__) == sorted(set(mqtt_adapter.__all__))
    for name in mqtt_adapter.__all__:
        assert hasattr(mqtt_adapter, name), name
