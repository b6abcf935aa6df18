"""Who is online, fed by the agents' retained presence and status topics (never by polling).

An agent counts as online only when its presence says so and its status heartbeat has not
expired. Session numbers order presence messages: a will from an older session that arrives after
a newer birth is ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from protocol import (
    AgentStatus,
    DecodeError,
    Presence,
    PrinterState,
    decode_presence,
    decode_status,
)

log = logging.getLogger("cloud_api.registry")


@dataclass
class AgentRecord:
    branch_id: str
    agent_id: str
    presence: Presence | None = None
    status: AgentStatus | None = None
    #: monotonic time after which the status heartbeat counts as stale (None: never expires)
    status_expires: float | None = None
    #: wall-clock time of the last message from this agent
    last_seen: float = 0.0
    #: agent clock minus cloud clock (s), from the last live (not retained) message
    clock_offset: float = 0.0

    @property
    def session(self) -> int:
        return self.presence.session if self.presence else -1

    def online(self, now: float | None = None) -> bool:
        if self.presence is None or self.presence.state != "online" or self.status is None:
            return False
        if self.status.session != self.presence.session:
            return False
        now = time.monotonic() if now is None else now
        return self.status_expires is None or now < self.status_expires

    def printer(self, name: str) -> PrinterState | None:
        if self.status is None:
            return None
        for printer in self.status.printers:
            if printer.name == name:
                return printer
        return None


class Registry:
    def __init__(self) -> None:
        self._agents: dict[tuple[str, str], AgentRecord] = {}
        #: (branch, printer) -> agent id, from the newest presence or status that lists it
        self._printers: dict[tuple[str, str], str] = {}
        #: called with the record whenever an agent announces a new online session
        self.on_online: list[Callable[[AgentRecord], None]] = []

    def _record(self, branch_id: str, agent_id: str) -> AgentRecord:
        key = (branch_id, agent_id)
        record = self._agents.get(key)
        if record is None:
            record = self._agents[key] = AgentRecord(branch_id, agent_id)
        return record

    def on_presence(
        self, branch_id: str, agent_id: str, payload: bytes, *, live: bool = True
    ) -> None:
        if not payload:  # retained message cleared: the agent was removed
            self._forget(branch_id, agent_id)
            return
        try:
            presence = decode_presence(payload)
        except DecodeError as exc:
            log.warning("bad presence from %s/%s: %s", branch_id, agent_id, exc.message)
            return
        record = self._record(branch_id, agent_id)
        if presence.session < record.session:
            log.info(
                "ignoring stale %s of session %d for %s/%s (current session %d)",
                presence.state,
                presence.session,
                branch_id,
                agent_id,
                record.session,
            )
            return
        new_session = presence.state == "online" and (
            record.presence is None
            or record.presence.session != presence.session
            or record.presence.state != "online"
        )
        record.presence = presence
        record.last_seen = time.time()
        for name in presence.printers:
            self._printers[(branch_id, name)] = agent_id
        if new_session:
            for listener in self.on_online:
                listener(record)
        if live and presence.at:
            record.clock_offset = presence.at - record.last_seen

    def on_status(
        self,
        branch_id: str,
        agent_id: str,
        payload: bytes,
        expiry_s: float | None,
        *,
        live: bool = True,
    ) -> None:
        if not payload:
            return
        try:
            status = decode_status(payload)
        except DecodeError as exc:
            log.warning("bad status from %s/%s: %s", branch_id, agent_id, exc.message)
            return
        record = self._record(branch_id, agent_id)
        if record.status is not None and status.session < record.status.session:
            return
        old = {p.name for p in record.status.printers} if record.status else set()
        record.status = status
        record.status_expires = time.monotonic() + expiry_s if expiry_s is not None else None
        record.last_seen = time.time()
        if live and status.at:
            record.clock_offset = status.at - record.last_seen
        for name in old - {p.name for p in status.printers}:
            if self._printers.get((branch_id, name)) == agent_id:
                del self._printers[(branch_id, name)]
        for printer in status.printers:
            self._printers[(branch_id, printer.name)] = agent_id

    def _forget(self, branch_id: str, agent_id: str) -> None:
        self._agents.pop((branch_id, agent_id), None)
        for key in [k for k, v in self._printers.items() if k[0] == branch_id and v == agent_id]:
            del self._printers[key]

    def agent(self, branch_id: str, agent_id: str) -> AgentRecord | None:
        return self._agents.get((branch_id, agent_id))

    def find_printer(self, branch_id: str, printer: str) -> AgentRecord | None:
        """The agent that serves ``printer`` in ``branch_id``, if any agent ever reported it."""
        agent_id = self._printers.get((branch_id, printer))
        return self._agents.get((branch_id, agent_id)) if agent_id else None

    def agents(self, branch_id: str | None = None) -> list[AgentRecord]:
        records = self._agents.values()
        if branch_id is not None:
            records = [r for r in records if r.branch_id == branch_id]  # type: ignore[assignment]
        return sorted(records, key=lambda r: (r.branch_id, r.agent_id))

    def branches(self) -> set[str]:
        return {branch for branch, _ in self._agents}
