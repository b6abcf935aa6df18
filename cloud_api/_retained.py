"""Retained publishes of fleet management (printer configurations, releases, pins), each checked
for the broker's verdict.

They go through a short-lived connection of their own, not the API's session: they are rare
(a person changed something), and their PUBACK's reason code matters. aiomqtt resolves a publish
on any PUBACK, success or not; Mosquitto answers a publish its ACL denies with PUBACK 0x87 (Not
authorized) and drops the message. Here a refusal is an error the caller sees, naming the ACL
rule the cloud's role lacks, instead of a configuration reported stored that no agent gets.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aiomqtt

from mqtt_adapter import make_client, watch_pubacks
from protocol import ErrorCode

from ._errors import ApiError
from ._settings import MqttClientSettings

#: Seconds for the connection and the PUBACK.
TIMEOUT_S = 10.0


async def publish_retained(
    mqtt: MqttClientSettings, client_id: str, topic: str, payload: bytes
) -> None:
    """Publish ``payload`` retained at QoS 1 (empty: clear the topic) and wait for a PUBACK that
    says it was accepted; :class:`ApiError` ``BROKER_UNAVAILABLE`` otherwise."""
    client = make_client(
        mqtt.host,
        mqtt.port,
        client_id=f"{client_id}-fleet-{secrets.token_hex(4)}",
        username=mqtt.username,
        password=mqtt.password,
        tls=mqtt.tls,
        ca_file=mqtt.ca_file,
        clean_start=True,
        session_expiry=0,
        timeout=TIMEOUT_S,
    )
    verdict: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_puback(_mid: int, reason: Any) -> None:
        if not verdict.done():
            verdict.set_result(reason)

    try:
        async with client:
            watch_pubacks(client, on_puback)
            await client.publish(topic, payload, qos=1, retain=True)
            reason = await asyncio.wait_for(verdict, TIMEOUT_S)
    except (aiomqtt.MqttError, TimeoutError) as exc:
        raise ApiError(ErrorCode.BROKER_UNAVAILABLE, f"publish to {topic} failed: {exc}") from exc
    if reason is not None and getattr(reason, "is_failure", False):
        raise ApiError(
            ErrorCode.BROKER_UNAVAILABLE,
            f"the broker refused the publish to {topic} ({reason}): the role of "
            f"{mqtt.username!r} needs write access to it (broker/_roles.py, cloud_role)",
        )
