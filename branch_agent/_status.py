"""What the cloud sees of the agent: its presence (birth, goodbye, will) and its retained
status snapshot (printers, queue, health), refreshed on change and every heartbeat.

A burst of changes (a queue filling and draining) becomes one snapshot, published once it has
settled (``status_debounce``); the heartbeat republishes it with a message expiry, so a stale
retained "online" ages out after a broker restart (docs/presence.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import time
from typing import TYPE_CHECKING

import aiomqtt
import psutil

from mqtt_adapter import publish_properties
from protocol import AgentStatus, Presence, UpdateInfo, encode, software_version

from ._discovery import discovered
from ._jobs import Jobs, PrinterSlot
from ._printers import PrinterReading

if TYPE_CHECKING:
    from agent_config import AgentConfig

    from ._fleet import Fleet

log = logging.getLogger("branch_agent")


class StatusReporting:
    """The agent's presence and status (a part of :class:`branch_agent.Agent`)."""

    config: AgentConfig
    branch_id: str
    agent_id: str
    printers: dict[str, PrinterSlot]
    jobs: Jobs
    fleet: Fleet
    _session: int
    _started_at: float
    _process: psutil.Process
    _status_topic: str
    #: Set when the status the cloud sees changed (or may have: a printer's reading).
    _status_dirty: asyncio.Event
    _status_check: asyncio.TimerHandle | None
    _published_view: tuple[object, ...]

    def _presence(self, state: str, reason: str = "") -> bytes:
        return encode(
            Presence(
                state=state,  # type: ignore[arg-type]
                session=self._session,
                branch_id=self.branch_id,
                agent_id=self.agent_id,
                version=software_version(),
                at=time.time(),
                reason=reason,
                printers=list(self.printers),
            )
        )

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()  # the session's first status went out just before
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(last + self.config.heartbeat_interval):
                    await self._status_dirty.wait()
            self._status_dirty.clear()
            await self._publish_status(client)
            last = loop.time()

    def _status_changed(self) -> None:
        """The queue or a printer changed: compare what the cloud sees once the burst settled.

        A burst of changes (a queue filling and draining) becomes one snapshot. A job that went
        straight to an idle printer and printed changes nothing the cloud sees: its
        last_printed_at rides on the heartbeat, instead of one status message per ticket.
        """
        if self._status_check is None:
            self._status_check = asyncio.get_running_loop().call_later(
                self.config.status_debounce, self._check_status
            )

    def _check_status(self) -> None:
        self._status_check = None
        if self._visible_status() != self._published_view:
            self._status_dirty.set()

    def _visible_status(self) -> tuple[object, ...]:
        """What a status change is published for: queue depth and each printer's condition."""
        return (
            self.jobs.queue_depth,
            tuple(
                (name, s.reading.online, s.reading.paper, s.reading.cover_open, s.last_error)
                for name, s in self.printers.items()
            ),
        )

    async def _publish_status(self, client: aiomqtt.Client) -> None:
        self._published_view = self._visible_status()
        self._status_dirty.clear()
        props = publish_properties()
        props.MessageExpiryInterval = self.config.heartbeat_expiry
        await client.publish(
            self._status_topic, encode(self.status()), qos=1, retain=True, properties=props
        )

    def status(self) -> AgentStatus:
        now = time.time()
        found = discovered(self.config, on_change=self._status_dirty.set)
        with self._process.oneshot():
            cpu = self._process.cpu_percent()
            rss = self._process.memory_info().rss
        return AgentStatus(
            branch_id=self.branch_id,
            agent_id=self.agent_id,
            session=self._session,
            version=software_version(),
            os=f"{platform.system()} {platform.release()}",
            started_at=self._started_at,
            uptime_s=round(now - self._started_at, 3),
            cpu_percent=cpu,
            rss_bytes=rss,
            queue_depth=self.jobs.queue_depth,
            printers=[p.state() for p in self.printers.values()],
            at=now,
            discovered=[p.name for p in found],
            discovered_printers=found,
            config_version=self.fleet.config.version,
            config_error=self.fleet.config.error,
            update=self.fleet.updater.info if self.fleet.updater else UpdateInfo(),
        )

    async def _poll_printers(self) -> None:
        while True:
            for printer in self.printers.values():
                try:
                    reading = await asyncio.to_thread(printer.backend.status)
                except Exception as exc:  # a backend bug must not freeze the reported status
                    log.exception("reading the status of %s failed", printer.backend.name)
                    reading = PrinterReading(online=False, detail=f"status failed: {exc}")
                if reading != printer.reading:
                    printer.reading = reading
                    self._status_changed()
            await asyncio.sleep(self.config.status_poll_interval)
