"""Many real :class:`branch_agent.Agent` instances in one asyncio loop, for load tests and
benchmarks: provisioned in batches, started together, and crashed without a goodbye so the broker
publishes their Last Wills exactly as it does for a dead process."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import msgspec

from branch_agent import Agent, AgentConfig
from mqtt_adapter import client_socket

from .stack import Stack


class Swarm:
    """``ids`` are ``(branch_id, agent_id)`` pairs; ``config`` overrides each agent's config."""

    def __init__(
        self,
        stack: Stack,
        ids: list[tuple[str, str]],
        *,
        printers: tuple[str, ...] = ("POS-80C",),
        **config: Any,
    ) -> None:
        self.stack = stack
        self.ids = ids
        self.printers = printers
        # Polls and heartbeats of 1,000 agents in one loop: keep them rare unless asked.
        self.config = {"status_poll_interval": 30.0, **config}
        self.agents: dict[tuple[str, str], Agent] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def provision(self) -> None:
        creds = await self.stack.provision_agents(self.ids)
        for key, cred in zip(self.ids, creds, strict=True):
            # printer names may name their agent ("P-{agent}"): a printer belongs to one agent
            names = [p.format(branch=key[0], agent=key[1]) for p in self.printers]
            raw = self.stack.agent_config(*key, cred, list(names), **self.config)
            self.agents[key] = Agent(msgspec.convert(raw, AgentConfig))

    async def start(self) -> None:
        """Start every agent and wait until each has announced itself online (wrap this in
        ``asyncio.timeout``)."""
        for key, agent in self.agents.items():
            self._tasks[key] = asyncio.create_task(agent.run(), name=f"agent:{key[0]}/{key[1]}")
        await asyncio.gather(*(a.connected.wait() for a in self.agents.values()))

    def crash(self, keys: list[tuple[str, str]]) -> None:
        """Simulate a crash: shut each socket down under the agent (no DISCONNECT, so the broker
        sends the will) and end the agent without letting it reconnect or say goodbye."""
        for key in keys:
            agent = self.agents[key]
            client = agent.client
            sock = client_socket(client) if client is not None else None
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                # close it too: the cancelled session never gets to, and a socket left for the
                # garbage collector is a ResourceWarning at some random later moment
                loop = asyncio.get_event_loop()
                with contextlib.suppress(OSError, ValueError):
                    loop.remove_reader(sock.fileno())
                    loop.remove_writer(sock.fileno())
                sock.close()
            agent.stop()  # no reconnect once the broken connection is noticed ...
            self._tasks[key].cancel()  # ... and no goodbye: cancelled before it can send one

    async def stop(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=20)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
