"""The API on several brokers: one :class:`MqttLink` per broker of the deployment, their
replies and presence merged (docs/operations.md, "Brokers").

Brokers are independent (no bridge, no cluster): an agent is connected to one of them at a
time, and the API reads every broker. The registry gets every presence and status from every
broker; session numbers (rising on every connect of an agent) decide which is current, so a
stale retained "online" on the broker an agent left loses to its newer session elsewhere. A
request goes out through the broker on which the agent's newest session was heard; when that
broker is down the publish fails (BROKER_UNAVAILABLE), the job waits ``queued`` and the sweeper
sends it once the agent is online again — on whichever broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, cast

import msgspec
from paho.mqtt.properties import Properties

from protocol import (
    DecodeError,
    ErrorCode,
    InvalidTopic,
    TopicKind,
    decode_presence,
    decode_status,
    parse_topic,
)

from ._errors import ApiError
from ._mqtt import MqttLink
from ._registry import Registry
from ._settings import ApiSettings, MqttClientSettings

log = logging.getLogger("cloud_api.mqtt")

#: (branch id, agent id, correlation data, payload) of each reply
ReplyHandler = Callable[[str, str, bytes | None, bytes], None]


class _Tap:
    """The registry as one broker's link sees it: every call goes to the shared registry, and
    the newest session heard of each agent on this broker is noted for routing."""

    def __init__(self, registry: Registry, links: BrokerLinks, index: int) -> None:
        self._registry = registry
        self._links = links
        self._index = index

    def on_presence(
        self, branch_id: str, agent_id: str, payload: bytes, *, live: bool = True
    ) -> None:
        self._registry.on_presence(branch_id, agent_id, payload, live=live)
        with contextlib.suppress(DecodeError):
            presence = decode_presence(payload) if payload else None
            if presence is not None and presence.state == "online":
                self._links.heard(branch_id, agent_id, presence.session, self._index)

    def on_status(
        self, branch_id: str, agent_id: str, payload: bytes, expiry: Any, *, live: bool = True
    ) -> None:
        self._registry.on_status(branch_id, agent_id, payload, expiry, live=live)
        with contextlib.suppress(DecodeError):
            self._links.heard(branch_id, agent_id, decode_status(payload).session, self._index)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._registry, name)


class BrokerLinks(MqttLink):
    """Several broker sessions behind the one-link interface the job service uses.

    ``ready`` is set while at least one broker session is ready."""

    def __init__(self, settings: ApiSettings, registry: Registry, on_reply: ReplyHandler) -> None:
        self.links: list[MqttLink] = []
        super().__init__(settings, registry, on_reply)
        #: (branch, agent) -> (newest session heard, index of the broker it was heard on)
        self._route: dict[tuple[str, str], tuple[int, int]] = {}
        self.endpoints = settings.mqtt.endpoints()
        for index, endpoint in enumerate(self.endpoints):
            one = msgspec.structs.replace(settings, mqtt=endpoint)
            tap = cast(Registry, _Tap(registry, self, index))
            self.links.append(MqttLink(one, tap, on_reply))

    # /metrics reads these of the API's link: the sums over every broker's link (the setters
    # only take MqttLink.__init__'s zeroes)
    @property
    def dropped(self) -> int:
        return sum(link.dropped for link in self.links)

    @dropped.setter
    def dropped(self, value: int) -> None:
        pass

    @property
    def sessions(self) -> int:
        return sum(link.sessions for link in self.links)

    @sessions.setter
    def sessions(self, value: int) -> None:
        pass

    @property
    def on_reply(self) -> ReplyHandler:
        return self._on_reply

    @on_reply.setter
    def on_reply(self, handler: ReplyHandler) -> None:
        self._on_reply = handler
        for link in self.links:
            link.on_reply = handler

    def pairs(self) -> list[tuple[MqttClientSettings, MqttLink]]:
        """Each broker's settings with its link (for adoption: drains on every broker)."""
        return list(zip(self.endpoints, self.links, strict=True))

    def heard(self, branch_id: str, agent_id: str, session: int, index: int) -> None:
        known = self._route.get((branch_id, agent_id))
        if known is None or session >= known[0]:
            if known is not None and known[1] != index:
                log.info("agent %s/%s now on broker %s", branch_id, agent_id, self._name(index))
            self._route[(branch_id, agent_id)] = (session, index)

    def broker_of(self, branch_id: str, agent_id: str) -> int | None:
        known = self._route.get((branch_id, agent_id))
        return known[1] if known is not None else None

    def _name(self, index: int) -> str:
        endpoint = self.endpoints[index]
        return f"{endpoint.host}:{endpoint.port}"

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for index, link in enumerate(self.links):
                group.create_task(link.run(), name=f"mqtt-link-{index}")
            group.create_task(self._watch_ready(), name="mqtt-ready")

    async def _watch_ready(self) -> None:
        while True:
            if any(link.ready.is_set() for link in self.links):
                self.ready.set()
            else:
                self.ready.clear()
            await asyncio.sleep(0.05)

    async def publish(self, topic: str, payload: bytes, properties: Properties) -> None:
        index = None
        with contextlib.suppress(InvalidTopic):
            parsed = parse_topic(topic)
            if parsed.kind is TopicKind.REQUEST:
                index = self.broker_of(parsed.branch_id, parsed.name)
        if index is None:  # an agent never heard of: the first broker that is up
            index = next((i for i, link in enumerate(self.links) if link.ready.is_set()), 0)
        link = self.links[index]
        if not link.ready.is_set():
            raise ApiError(
                ErrorCode.BROKER_UNAVAILABLE,
                f"the broker of this agent ({self._name(index)}) is not connected",
            )
        await link.publish(topic, payload, properties)

    async def follow(self, topic_filter: str) -> None:
        for link in self.links:
            await link.follow(topic_filter)

    async def unfollow(self, topic_filter: str) -> None:
        for link in self.links:
            await link.unfollow(topic_filter)

    async def check(self) -> tuple[bool, str]:
        states = [
            f"{self._name(i)} {'up' if link.ready.is_set() else 'down'}"
            for i, link in enumerate(self.links)
        ]
        return self.ready.is_set(), ", ".join(states)
