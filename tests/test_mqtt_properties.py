"""Request and reply properties are built without paho's slow path; the bytes on the wire are
exactly the ones paho packs from the same properties set one by one."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import protocol as p

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


@given(correlation=st.none() | st.binary(max_size=300))
def test_reply_properties_pack_like_paho(correlation: bytes | None) -> None:
    values: dict[str, Any] = {"ContentType": "application/json"}
    if correlation is not None:
        values["CorrelationData"] = correlation
    fast = p.reply_properties(correlation)
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
