"""Request and reply properties are built without paho's slow path (:mod:`mqtt_adapter`); the
bytes on the wire are exactly the ones paho packs from the same properties set one by one, and
paho's packet decoders, once given our ``Properties``, decode exactly as with theirs."""

from __future__ import annotations

import math
import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

import mqtt_adapter as p

topics = st.text(min_size=1, max_size=300).filter(lambda t: "\x00" not in t)
job_ids = st.text(alphabet="0123456789abcdefABCDEF-_", min_size=0, max_size=64)
expiries = st.none() | st.floats(min_value=-10, max_value=4e9, allow_nan=False)
traceparents = st.none() | st.text(max_size=80)


def slow(**values: Any) -> Properties:
    """What paho builds with its own ``Properties``, attribute by attribute."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    return props


@given(topic=topics, job_id=job_ids, expiry=expiries, traceparent=traceparents)
def test_request_properties_pack_like_paho(
    topic: str, job_id: str, expiry: float | None, traceparent: str | None
) -> None:
    fast = p.request_properties(
        response_topic=topic, correlation_id=job_id, expiry_s=expiry, traceparent=traceparent
    )
    values: dict[str, Any] = {
        "ResponseTopic": topic,
        "CorrelationData": job_id.encode("ascii"),
        "ContentType": "application/json",
    }
    if expiry is not None:
        values["MessageExpiryInterval"] = max(1, math.ceil(expiry))
    if traceparent:
        values["UserProperty"] = [("traceparent", traceparent)]
    reference = slow(**values)
    assert fast.pack() == reference.pack()
    # the attributes read the same as paho's (logs, tests, anything that inspects them)
    assert str(fast) == str(reference)
    assert fast.json() == reference.json()


@given(correlation=st.none() | st.binary(max_size=300), traceparent=traceparents)
def test_reply_properties_pack_like_paho(
    correlation: bytes | None, traceparent: str | None
) -> None:
    values: dict[str, Any] = {"ContentType": "application/json"}
    if correlation is not None:
        values["CorrelationData"] = correlation
    if traceparent:
        values["UserProperty"] = [("traceparent", traceparent)]
    fast = p.reply_properties(correlation, traceparent)
    reference = slow(**values)
    assert fast.pack() == reference.pack()
    assert str(fast) == str(reference)


def test_a_property_set_later_is_packed_too() -> None:
    props = p.request_properties(response_topic="pm/v1/b/reply/api-1", correlation_id="j1")
    props.MessageExpiryInterval = 7
    props.UserProperty = ("k", "v")
    reference = slow(
        ResponseTopic="pm/v1/b/reply/api-1",
        CorrelationData=b"j1",
        ContentType="application/json",
        MessageExpiryInterval=7,
        UserProperty=("k", "v"),
    )
    assert props.pack() == reference.pack()
    del props.UserProperty
    assert (
        props.pack()
        == slow(
            ResponseTopic="pm/v1/b/reply/api-1",
            CorrelationData=b"j1",
            ContentType="application/json",
            MessageExpiryInterval=7,
        ).pack()
    )


def test_empty_publish_properties_behave_like_paho() -> None:
    props = p.publish_properties()
    assert props.isEmpty() and props.pack() == b"\x00"
    props.MessageExpiryInterval = 30
    assert props.pack() == slow(MessageExpiryInterval=30).pack()
    decoded = p.publish_properties()
    decoded.unpack(props.pack())
    assert decoded.MessageExpiryInterval == 30


# --- decoding: paho's packet decoders build our Properties; they must decode as paho's ------

_reference = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
packet_types = st.sampled_from([*range(1, 16), PacketTypes.WILLMESSAGE])
identifiers = st.sampled_from(sorted(_reference.names.values()))
strings = st.text(max_size=20)


def applicable(packet_type: int) -> list[int]:
    return sorted(i for i, (_, types) in _reference.properties.items() if packet_type in types)


@st.composite
def encoded_property(draw: st.DrawFn, packet_type: int) -> bytes:
    """One property as paho writes it: mostly one that applies to ``packet_type``, with a value
    of its type (in range or not)."""
    usual = applicable(packet_type)
    identifier = draw(st.sampled_from(usual) if usual and draw(st.integers(0, 4)) else identifiers)
    value_type = _reference.properties[identifier][0]
    name = _reference.types[value_type]
    value: Any
    if name == "Byte":
        value = draw(st.integers(0, 255))
    elif name == "Two Byte Integer":
        value = draw(st.integers(0, 0xFFFF))
    elif name == "Four Byte Integer":
        value = draw(st.integers(0, 0xFFFFFFFF))
    elif name == "Variable Byte Integer":
        value = draw(st.integers(0, 268_435_455))
    elif name == "Binary Data":
        value = draw(st.binary(max_size=20))
    elif name == "UTF-8 Encoded String":
        value = draw(strings)
    else:
        value = (draw(strings), draw(strings))
    return bytes(_reference.writeProperty(identifier, value_type, value))  # type: ignore[no-untyped-call]


@st.composite
def property_blocks(draw: st.DrawFn, packet_type: int = PacketTypes.PUBLISH) -> bytes:
    """A properties block: length, then properties; sometimes cut short or with bytes added."""
    body = b"".join(draw(st.lists(encoded_property(packet_type), max_size=6)))
    block = bytes(VariableByteIntegers.encode(len(body))) + body  # type: ignore[no-untyped-call]
    match draw(st.integers(0, 5)):
        case 0:
            return block[: draw(st.integers(0, len(block)))]
        case 1:
            return block + draw(st.binary(max_size=8))
        case 2:
            return draw(st.binary(max_size=40))
        case _:
            return block


def decoded(props: Properties, block: bytes) -> tuple[Any, ...]:
    try:
        _, length = props.unpack(block)
    except Exception as exc:
        return ("raised", type(exc), str(exc))
    return ("decoded", length, str(props), props.json(), props.isEmpty(), props.pack())


@given(data=st.data(), packet_type=packet_types)
def test_properties_decode_like_paho(data: st.DataObject, packet_type: int) -> None:
    block = data.draw(property_blocks(packet_type))
    fast = p.publish_properties()
    fast.packetType = packet_type
    reference = Properties(packet_type)  # type: ignore[no-untyped-call]
    assert decoded(fast, block) == decoded(reference, block)


@given(
    topic=st.text(max_size=30),
    qos=st.integers(0, 2),
    block=property_blocks(),
    payload=st.binary(max_size=30),
)
def test_paho_decodes_publish_packets_as_it_would_without_us(
    topic: str, qos: int, block: bytes, payload: bytes
) -> None:
    from paho.mqtt import _packet
    from paho.mqtt.enums import MQTTProtocolVersion

    encoded_topic = topic.encode()
    packet = struct.pack("!H", len(encoded_topic)) + encoded_topic
    if qos:
        packet += struct.pack("!H", 7)
    packet += block + payload
    header = 0x30 | qos << 1

    def decode() -> tuple[Any, ...]:
        try:
            result = _packet.decode_publish(header, packet, MQTTProtocolVersion.MQTTv5)
        except Exception as exc:
            return ("raised", type(exc), str(exc))
        props = result.properties
        return (result.topic, result.mid, result.payload, str(props), props and props.json())

    assert p.install_fast_paths()
    ours = decode()
    assert getattr(_packet, "Properties") is not Properties  # noqa: B009
    setattr(_packet, "Properties", Properties)  # noqa: B010
    try:
        theirs = decode()
    finally:
        setattr(_packet, "Properties", type(p.publish_properties()))  # noqa: B010
    assert ours == theirs


def test_decoded_reply_properties_read_as_paho_reads_them() -> None:
    block = p.reply_properties(b"0123").pack()
    props = p.publish_properties()
    props.unpack(block)
    assert props.CorrelationData == b"0123" and props.ContentType == "application/json"
    assert props.pack() == block
    props.UserProperty = ("a", "1")
    props.unpack(block)  # a reused object forgets what it held
    assert not hasattr(props, "UserProperty") and props.pack() == block


@given(
    text=st.text(max_size=80) | st.sampled_from(["a\x00b", "\ufeffx", "x\ud800"]),
    cut=st.integers(0, 3),
)
def test_strings_are_read_as_paho_reads_them(text: str, cut: int) -> None:
    """The UTF-8 reader behind the fast ``unpack``: paho's result, or paho's error."""
    from paho.mqtt.properties import readUTF

    from mqtt_adapter._fastprops import read_utf as _read_utf

    encoded = text.encode("utf-8", "surrogatepass")
    buffer = struct.pack("!H", len(encoded)) + encoded
    maxlen = len(buffer) - cut
    try:
        expected: object = readUTF(buffer, maxlen)
    except Exception as exc:
        expected = (type(exc), str(exc))
    try:
        got: object = _read_utf(buffer, maxlen)
    except Exception as exc:
        got = (type(exc), str(exc))
    assert got == expected
