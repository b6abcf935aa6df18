"""MQTT 5 properties of requests and replies (pure data, no I/O).

Correlation data is the job id as ASCII text, so ``mosquitto_pub -D publish correlation-data``
works by hand. The request's Message Expiry Interval is the job's deadline: a request that
expires inside the broker is never delivered, so a ticket never prints late.
"""

from __future__ import annotations

import asyncio
import math
import re
import struct
from typing import Any, Final

from paho.mqtt.exception import MalformedPacket, MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

from ._trace import TRACEPARENT

CONTENT_TYPE_JSON: Final = "application/json"


class _Properties(Properties):
    """paho's ``Properties``, cheap to build and to decode into.

    paho builds three lookup tables in every ``Properties.__init__`` and scans them on every
    attribute set, in ``pack()`` and in ``unpack()``: ~50-75 us per message, a visible share of
    a request's CPU in the API and in the agent. Here the tables are class attributes (paho only
    reads them) and the lookups are precomputed:

    - the builders below store their values and the packed bytes directly (paho calls nothing
      but ``pack()`` on a PUBLISH's properties); setting or deleting any property afterwards
      drops the packed bytes, so ``pack()`` falls back to paho's own packing;
    - ``unpack()`` (paho's packet decoders build one for every PUBLISH and PUBACK they read)
      decodes as paho does, with paho's own value readers, checks and error messages; a value
      paho would range-check goes through paho's ``__setattr__``.
    """

    _tables = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    types = _tables.types
    names = _tables.names
    properties = _tables.properties

    def __init__(self, packetType: int = PacketTypes.PUBLISH) -> None:
        self.__dict__["packetType"] = packetType  # the tables are shared: no paho __init__

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

    def clear(self) -> None:
        state = self.__dict__
        state.pop("_packed", None)
        for name in _PROPERTY_NAMES:
            state.pop(name, None)

    def unpack(self, buffer: bytes | bytearray) -> tuple[Properties, int]:
        self.clear()
        state = self.__dict__
        packet_type = state["packetType"]
        propslen, vbi_len = VariableByteIntegers.decode(buffer)  # type: ignore[no-untyped-call]
        buffer = buffer[vbi_len:]
        left = propslen
        while left > 0:
            identifier, id_len = VariableByteIntegers.decode(buffer)  # type: ignore[no-untyped-call]
            buffer = buffer[id_len:]
            left -= id_len
            name, value_type, packet_types, multiple, checked = _BY_IDENTIFIER[identifier]
            value: Any
            if value_type == _UTF8_PAIR:
                key, key_len = _read_utf(buffer, left)
                text, text_len = _read_utf(buffer[key_len:], left - key_len)
                value, value_len = (key, text), key_len + text_len
            elif value_type == _UTF8:
                value, value_len = _read_utf(buffer, left)
            else:
                value, value_len = self.readProperty(buffer, value_type, left)  # type: ignore[no-untyped-call]
            buffer = buffer[value_len:]
            left -= value_len
            if not multiple and name in state:
                # paho's message, as paho words it
                raise MQTTException(f"Property '{property}' must not exist more than once")
            if checked or packet_type not in packet_types:
                setattr(self, name, value)  # paho's checks and messages
            elif multiple:
                state[name] = [*state.get(name, ()), value]
            else:
                state[name] = value
        return self, propslen + vbi_len


def _identifiers() -> dict[int, tuple[str, int, list[int], bool, bool]]:
    """Property identifier -> (attribute name, value type, packet types, repeatable, range
    checked), from paho's own tables."""
    tables = _Properties._tables
    checked = {
        "ReceiveMaximum",
        "TopicAlias",
        "TopicAliasMaximum",
        "MaximumPacketSize",
        "SubscriptionIdentifier",
        "RequestResponseInformation",
        "RequestProblemInformation",
        "PayloadFormatIndicator",
    }
    by_identifier = {}
    for spaced, identifier in tables.names.items():
        name = spaced.replace(" ", "")
        value_type, packet_types = tables.properties[identifier]
        repeatable = bool(tables.allowsMultiple(name))  # type: ignore[no-untyped-call]
        by_identifier[identifier] = (name, value_type, packet_types, repeatable, name in checked)
    return by_identifier


_BY_IDENTIFIER: Final = _identifiers()
_UTF8: Final = _Properties._tables.types.index("UTF-8 Encoded String")
_UTF8_PAIR: Final = _Properties._tables.types.index("UTF-8 String Pair")
#: What MQTT 5 forbids in a UTF-8 string (section 1.5.4): surrogates, U+0000, U+FEFF.
_FORBIDDEN: Final = re.compile("[\ud800-\udfff\x00\ufeff]")


def _read_utf(buffer: bytes | bytearray, maxlen: int) -> tuple[str, int]:
    """paho's ``readUTF`` (same checks, same errors), with the character check as one regular
    expression search instead of a Python loop over the characters (~15 us for a
    ``traceparent`` user property)."""
    if maxlen < 2:
        raise MalformedPacket("Not enough data to read string length")
    length: int = struct.unpack("!H", buffer[:2])[0]
    if length > maxlen - 2:
        raise MalformedPacket("Length delimited string too long")
    text = bytes(buffer[2 : 2 + length]).decode("utf-8")
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        char = bad.group()
        if char == "\x00":
            raise MalformedPacket("[MQTT-1.5.4-2] Null found in UTF-8 data")
        if char == "\ufeff":
            raise MalformedPacket("[MQTT-1.5.4-3] U+FEFF in UTF-8 data")
        raise MalformedPacket("[MQTT-1.5.4-1] D800-DFFF found in UTF-8 data")
    return text, length + 2


_PROPERTY_NAMES: Final = tuple(entry[0] for entry in _BY_IDENTIFIER.values())


def _install_in_paho() -> None:
    """paho's packet decoders build a ``Properties`` for every PUBLISH and PUBACK they read (an
    API instance reads four per test print, an agent three per job): let them build ours."""
    try:
        from paho.mqtt import _packet
    except ImportError:  # pragma: no cover - a paho without the module: leave it as it is
        return
    if getattr(_packet, "Properties", None) is Properties:
        setattr(_packet, "Properties", _Properties)  # noqa: B010 (not re-exported by paho)


_install_in_paho()


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
    props = _Properties()
    state = props.__dict__
    state.update(values)
    state["_packed"] = _vbi(len(body)) + body
    return props


def publish_properties() -> Properties:
    """An empty property set for a PUBLISH packet."""
    return _Properties()


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


#: MQTT control packet types (the high nibble of a packet's first byte).
_PUBLISH: Final = 0x30
_PUBACK: Final = 0x40
_DISCONNECT: Final = 0xE0


def coalesce_writes(client: Any) -> None:
    """Let a connected-or-not ``aiomqtt.Client`` write all the packets it has queued with one
    ``send()``, not one each.

    aiomqtt writes when the socket is writable, once per turn of the event loop, and paho then
    sends every queued packet with its own ``send()``: under load that is one system call (and
    on loopback one trip through the TCP stack and one wake-up of the broker) per PUBACK and per
    PUBLISH. Here the queued packets are joined first. paho acts on the completion of only two
    kinds of packet, a QoS 0 PUBLISH (``on_publish``) and a DISCONNECT; those are sent as paho
    sends them, and only packets between them are joined. A partly sent packet keeps its place:
    its unsent bytes lead the joined buffer, and paho's own bookkeeping (``pos``,
    ``to_process``) carries a joined buffer that the socket takes in parts. MQTT allows several
    packets in one WebSocket frame, so the WebSocket transport may join too.
    """
    paho_client = client._client  # aiomqtt exposes no public handle on paho's client
    write_one_by_one = getattr(paho_client, "_packet_write", None)
    if write_one_by_one is None or not hasattr(paho_client, "_out_packet"):
        return  # a paho this was not written against: leave it as it is

    def packet_write() -> Any:
        queued = paho_client._out_packet
        if len(queued) > 1 and _joinable(queued[0]) and _joinable(queued[1]):
            parts = []
            while queued and _joinable(queued[0]):
                packet = queued.popleft()
                pos = packet["pos"]
                parts.append(packet["packet"][pos:] if pos else packet["packet"])
            joined = b"".join(parts)
            queued.appendleft(
                {
                    "command": _PUBACK,  # any command paho does nothing on completion for
                    "mid": 0,
                    "qos": 0,
                    "pos": 0,
                    "to_process": len(joined),
                    "packet": joined,
                    "info": None,
                }
            )
        return write_one_by_one()

    paho_client._packet_write = packet_write


def _joinable(packet: dict[str, Any]) -> bool:
    kind = packet["command"] & 0xF0
    return kind != _DISCONNECT and not (kind == _PUBLISH and packet["qos"] == 0)


def publish_acked(
    client: Any, topic: str, payload: bytes, properties: Properties | None = None
) -> asyncio.Future[None]:
    """Hand a QoS 1 message to an ``aiomqtt.Client``'s paho client now; the future completes on
    its PUBACK (aiomqtt's own PUBACK callback resolves it).

    Raises ``aiomqtt.MqttCodeError`` when paho refuses the message (no connection). A message
    whose PUBACK never comes leaves its future pending: the caller times out or gives up on it
    with the session. aiomqtt's ``publish`` costs a coroutine, an event, a ``wait_for`` and two
    scans of every pending call per message; a client limiting its concurrent calls
    (``max_concurrent_outgoing_calls``), or an aiomqtt this was not written against, goes
    through that ``publish`` instead, which holds the limit.
    """
    import aiomqtt
    import paho.mqtt.client as paho_mqtt

    pending = getattr(client, "_pending_publishes", None)  # mid -> what on_publish .set()s
    if getattr(client, "_outgoing_calls_sem", True) is not None or pending is None:
        fallback: asyncio.Future[None] = asyncio.ensure_future(
            client.publish(topic, payload, qos=1, properties=properties)
        )
        return fallback
    info = client._client.publish(topic, payload, 1, False, properties)
    if info.rc != paho_mqtt.MQTT_ERR_SUCCESS:
        raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
    acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    acked.add_done_callback(lambda _: pending.pop(info.mid, None))
    pending[info.mid] = _Acked(acked)
    return acked


async def publish_qos1(client: Any, topic: str, payload: bytes, properties: Properties) -> None:
    """``await client.publish(topic, payload, qos=1, properties=properties)`` of an
    ``aiomqtt.Client`` through :func:`publish_acked`: the same errors (``MqttCodeError`` when
    paho refuses the message, ``MqttError`` after the client's ``timeout`` without a PUBACK),
    without aiomqtt's per-call overhead."""
    acked = publish_acked(client, topic, payload, properties)
    within = client.timeout  # aiomqtt's: math.inf waits for ever
    timer = None
    if within != math.inf:
        timer = asyncio.get_running_loop().call_later(within, _time_out, acked)
    try:
        await acked
    finally:
        if timer is not None:
            timer.cancel()


class _Acked:
    """What aiomqtt's PUBACK callback sets: resolves the publisher's future."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def set(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


def _time_out(acked: asyncio.Future[None]) -> None:
    if not acked.done():
        import aiomqtt

        acked.set_exception(aiomqtt.MqttError("Operation timed out"))
