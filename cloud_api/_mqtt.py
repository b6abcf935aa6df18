"""The API's MQTT 5 session: one connection, subscriptions made before anything is sent,
reconnect with capped backoff and full jitter (:class:`mqtt_adapter.SessionLoop`), and dispatch
of every inbound message."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable

import aiomqtt
from paho.mqtt.properties import Properties

from mqtt_adapter import SessionLoop, install_fast_paths, make_client, publish_qos1
from protocol import (
    ALL_PRESENCE,
    ALL_STATUS,
    MAX_PAYLOAD_BYTES,
    ErrorCode,
    InvalidTopic,
    TopicKind,
    parse_topic,
    reply_filter,
    run_traced,
)

from ._errors import ApiError
from ._ratelimit import RateLimiter
from ._registry import Registry
from ._settings import ApiSettings, MqttClientSettings

log = logging.getLogger("cloud_api.mqtt")


class MqttLink:
    """Owns the API's broker session. ``ready`` is set once every subscription is in place and
    the retained presence/status snapshot has been read."""

    def __init__(
        self,
        settings: ApiSettings,
        registry: Registry,
        on_reply: Callable[[str, str, bytes | None, bytes], None],
    ) -> None:
        self.settings = settings
        self.registry = registry
        #: called with (branch id, agent id, correlation data, payload) for every reply; the
        #: agent id comes from the topic, which the broker lets only that agent publish on
        self.on_reply = on_reply
        self.ready = asyncio.Event()
        self._mqtt: aiomqtt.Client | None = None
        self._handled = 0
        #: reply filters of other instances this one adopted (:mod:`cloud_api.instances`),
        #: subscribed again after every reconnect
        self.adopted_filters: set[str] = set()
        #: messages per agent (a junk flood from one stolen login costs a bounded share)
        self.limiter = RateLimiter(
            settings.mqtt_rate_per_agent, settings.mqtt_burst_per_agent, what="agent"
        )
        #: messages dropped because their agent sent more than its rate
        self.dropped = 0
        #: broker sessions opened (``/metrics``: more than one means it reconnected)
        self.sessions = 0
        install_fast_paths()

    def _make_client(self, mqtt: MqttClientSettings) -> aiomqtt.Client:
        return make_client(
            mqtt.host,
            mqtt.port,
            client_id=f"cloud-{self.settings.instance_id}",
            username=mqtt.username,
            password=mqtt.password,
            tls=mqtt.tls,
            ca_file=mqtt.ca_file,
            clean_start=False,
            session_expiry=mqtt.session_expiry,
            keepalive=mqtt.keepalive,
            max_inflight=1000,
            # aiomqtt logs a warning on every publish while more than 10 await their PUBACK;
            # for the API that is ordinary load (a third of all publishes at 64 in flight).
            pending_calls_threshold=1000,
            on_message=self._handle,
            fast=True,
        )

    async def run(self) -> None:
        loop = SessionLoop([self.settings.mqtt], log=log)
        await loop.run(self._make_client, functools.partial(self._serve, loop), ended=self._down)

    async def _serve(
        self, loop: SessionLoop[MqttClientSettings], client: aiomqtt.Client, _: object
    ) -> None:
        await client.subscribe([(ALL_PRESENCE, 1), (ALL_STATUS, 1)])
        reader = asyncio.create_task(self._read(client), name="mqtt-reader")
        try:
            # Replies subscription last: its SUBACK comes after the retained presence/status
            # snapshot on the wire, so once we hold it and the reader has gone quiet, the
            # registry is warm.
            await client.subscribe(reply_filter(self.settings.instance_id), qos=1)
            for adopted in sorted(self.adopted_filters):
                await client.subscribe(adopted, qos=1)
            await self._settle()
            self._mqtt = client
            self.sessions += 1
            self.ready.set()
            loop.connected()
            log.info("connected to broker %s:%s", self.settings.mqtt.host, self.settings.mqtt.port)
            await reader
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader

    def _down(self) -> None:
        self.ready.clear()
        self._mqtt = None

    async def _settle(self, quiet: float = 0.05, limit: float = 2.0) -> None:
        """Wait until the retained snapshot has been handled (no message for ``quiet`` s)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        seen = -1
        while seen != self._handled and loop.time() < end:
            seen = self._handled
            await asyncio.sleep(quiet)

    async def _read(self, client: aiomqtt.Client) -> None:
        """Until the session ends: messages are handled as they are read (``_handle``), so the
        iterator never yields (on a known aiomqtt); it raises when the connection is lost."""
        async for message in client.messages:
            self._handle(message)

    def _handle(self, message: aiomqtt.Message) -> None:
        self._handled += 1
        try:
            self.dispatch(message)
        except Exception:  # a bad message must never take the session down
            log.exception("error handling message on %s", message.topic)

    def dispatch(self, message: aiomqtt.Message) -> None:
        try:
            topic = parse_topic(message.topic.value)
        except InvalidTopic:
            log.warning("ignoring message on unexpected topic %s", message.topic.value[:200])
            return
        if self.limiter.wait((topic.branch_id, topic.agent_id)) > 0:
            self.dropped += 1
            log.warning(
                "dropping a message from agent %s/%s: over %g messages per second",
                topic.branch_id,
                topic.agent_id,
                self.limiter.rate,
            )
            return
        payload = message.payload if isinstance(message.payload, bytes) else b""
        props = message.properties
        # A message is a clock sample only when it is live: not retained (old news), and not
        # read before ``ready`` — at connect, the persistent session delivers what was queued
        # while the API was away, unretained but as old as the outage (cloud_api/_clock.py).
        live = not message.retain and self.ready.is_set()
        match topic.kind:
            case TopicKind.REPLY:
                # under the trace the agent sent back: the job's log lines carry its trace id
                correlation = getattr(props, "CorrelationData", None)
                run_traced(
                    props, self.on_reply, topic.branch_id, topic.agent_id, correlation, payload
                )
            case TopicKind.PRESENCE:
                self.registry.on_presence(topic.branch_id, topic.name, payload, live=live)
            case TopicKind.STATUS:
                self.registry.on_status(
                    topic.branch_id,
                    topic.name,
                    payload,
                    getattr(props, "MessageExpiryInterval", None),
                    live=live,
                )
            case _:
                log.warning("ignoring message on %s", message.topic.value[:200])

    async def follow(self, topic_filter: str) -> None:
        """Also read ``topic_filter`` (a dead instance's replies), now and after reconnects."""
        self.adopted_filters.add(topic_filter)
        client = self._mqtt
        if client is not None:
            await client.subscribe(topic_filter, qos=1)

    async def unfollow(self, topic_filter: str) -> None:
        self.adopted_filters.discard(topic_filter)
        client = self._mqtt
        if client is not None:
            await client.unsubscribe(topic_filter)

    async def check(self) -> tuple[bool, str]:
        """Readiness: subscribed and holding the retained presence/status snapshot."""
        mqtt = self.settings.mqtt
        if self.ready.is_set():
            return True, f"connected to {mqtt.host}:{mqtt.port}"
        return False, f"not connected to {mqtt.host}:{mqtt.port}"

    async def publish(self, topic: str, payload: bytes, properties: Properties) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            # Checked here, not left to the broker: Mosquitto 2.0 answers an oversized QoS 1
            # PUBLISH with PUBACK 0x95, which paho treats as a protocol error and drops the
            # whole session (every pending request of this API instance with it).
            raise ApiError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"message of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES} byte limit",
            )
        client = self._mqtt
        if client is None:
            raise ApiError(ErrorCode.BROKER_UNAVAILABLE, "the API is not connected to the broker")
        try:
            await publish_qos1(client, topic, payload, properties)
        except aiomqtt.MqttError as exc:
            raise ApiError(ErrorCode.BROKER_UNAVAILABLE, f"publish failed: {exc}") from exc
