"""What the agent hands to fleet management: remote printer configuration
(:mod:`._remote_config`) and signed updates (:mod:`._update`).

The agent calls four things: :meth:`Fleet.topics` (subscribed with its request topic),
:meth:`Fleet.handle` (first look at every incoming message), :meth:`Fleet.on_connected` and the
status fields :attr:`Fleet.config`/:attr:`Fleet.updater`. Everything else lives here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import aiomqtt

from agent_config import AgentConfig
from protocol import config_topic

from ._remote_config import RemoteConfig
from ._update import Updater

if TYPE_CHECKING:
    from ._agent import Agent

log = logging.getLogger("branch_agent.fleet")


class Fleet:
    def __init__(self, config: AgentConfig) -> None:
        self.config = RemoteConfig(config)
        self.updater: Updater | None = None
        self._config_topic = config_topic(config.branch_id, config.agent_id)
        self._release_topics: frozenset[str] = frozenset()

    @property
    def agent_config(self) -> AgentConfig:
        """The agent's config with the printers of the last applied remote configuration."""
        return self.config.config

    def attach(self, agent: Agent) -> None:
        self.config.attach(agent)
        self.updater = Updater(agent, agent.config.update)
        self._release_topics = frozenset(self.updater.topics())

    @property
    def exit_code(self) -> int:
        return self.updater.exit_code if self.updater else 0

    def topics(self) -> list[str]:
        return [self._config_topic, *sorted(self._release_topics)]

    def on_connected(self) -> None:
        if self.updater is not None:
            self.updater.on_connected()

    def handle(self, message: aiomqtt.Message) -> bool:
        """True when ``message`` was ours (handled; the caller only acknowledges it)."""
        topic = message.topic.value
        if topic != self._config_topic and topic not in self._release_topics:
            return False
        payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        try:
            if topic == self._config_topic:
                self.config.receive(bytes(payload))
            elif self.updater is not None:
                self.updater.receive(topic, bytes(payload))
        except Exception:  # never take the session down
            log.exception("handling %s failed", topic)
        return True
