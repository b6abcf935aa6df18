"""Drain a dead API instance's MQTT session on one broker.

The dead instance's persistent session (``clean_start=False``, its own client id) holds every
reply that reached its reply topic after it died. A survivor connects with that client id and
``clean_start=False`` (the broker resumes the session and delivers what it queued), hands every
reply to its own reply handling, and — because the CONNECT carries a session expiry of 0 — ends
the session when it disconnects: nothing queues there any more.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

import aiomqtt

from protocol import (
    InvalidTopic,
    TopicKind,
    connect_properties,
    nodelay_socket_options,
    parse_topic,
)

from .._settings import MqttClientSettings

log = logging.getLogger("cloud_api.instances")


def client_id(instance_id: str) -> str:
    """The MQTT client id of an API instance (its session on every broker)."""
    return f"cloud-{instance_id}"


async def drain_session(
    mqtt: MqttClientSettings,
    instance_id: str,
    on_reply: Callable[[str, str, bytes | None, bytes], None],
    *,
    quiet: float = 0.3,
    limit: float = 2.0,
) -> int:
    """Resume ``instance_id``'s session on the broker of ``mqtt``, hand each reply queued there
    to ``on_reply(branch, agent, correlation, payload)`` until none came for ``quiet`` seconds
    (at most ``limit``), then end the session. Returns the number of replies handed over.

    ``limit`` keeps the drain short while agents still answer on the dead instance's topic:
    the caller subscribed to that topic before, so what arrives after the session ended
    reaches it there."""
    tls_context = ssl.create_default_context(cafile=mqtt.ca_file) if mqtt.tls else None
    client = aiomqtt.Client(
        mqtt.host,
        mqtt.port,
        username=mqtt.username,
        password=mqtt.password,
        identifier=client_id(instance_id),
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        # expiry 0: the resumed session ends with this connection
        properties=connect_properties(session_expiry=0),
        keepalive=mqtt.keepalive,
        tls_context=tls_context,
        socket_options=nodelay_socket_options(),
        timeout=10,
    )
    replies = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    async with client:
        iterator = client.messages.__aiter__()
        while loop.time() < end:
            try:
                async with asyncio.timeout(min(quiet, end - loop.time())):
                    message = await iterator.__anext__()
            except TimeoutError:
                break
            try:
                topic = parse_topic(message.topic.value)
            except InvalidTopic:
                continue
            if topic.kind is not TopicKind.REPLY:
                continue  # queued presence/status is old news: the live view comes elsewhere
            payload = message.payload if isinstance(message.payload, bytes) else b""
            correlation = getattr(message.properties, "CorrelationData", None)
            on_reply(topic.branch_id, topic.agent_id, correlation, payload)
            replies += 1
    log.info(
        "drained the session of %s on %s:%s: %d replies", instance_id, mqtt.host, mqtt.port, replies
    )
    return replies
