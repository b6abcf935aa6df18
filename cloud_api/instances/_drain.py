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
from collections.abc import Callable

from mqtt_adapter import make_client
from protocol import InvalidTopic, TopicKind, parse_topic

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
    client = make_client(
        mqtt.host,
        mqtt.port,
        client_id=client_id(instance_id),
        username=mqtt.username,
        password=mqtt.password,
        tls=mqtt.tls,
        ca_file=mqtt.ca_file,
        clean_start=False,
        session_expiry=0,  # the resumed session ends with this connection
        keepalive=mqtt.keepalive,
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
